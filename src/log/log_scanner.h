// LogScanner: replays the log from the migration watermark to its tail, for
// recovery (rebuild the index) and for `boostvol check`.
//
// The recovery rules (docs/log_format.md, "Recovery"), numbered as there:
//  R1. Replay starts at the watermark: segment W.segment_seq, block 0, record
//      W.record_seq. Everything before it is home.
//  R2. The record expected next (seq, segment) is looked for where the last
//      one ended, and, if not there, at block 0 of the next segment (the
//      writer moves on when a record does not fit).
//  R3. A record is accepted only if its header and every data block check,
//      it carries the expected seq and segment, and its prev_crc chains to
//      the header before it. So a record left from an earlier lap of the
//      ring, or from a tail discarded by an earlier recovery, is never taken.
//  R4. The first record that is not accepted ends the log: it and everything
//      after it were never covered by an fsync (a torn tail) and are dropped,
//      so the image is a prefix of the writes in log order.
//  R5. ...unless there is proof it was durable: meta.db recorded its segment
//      as sealed (durable), or the record after it is intact and says
//      (durable_seq) that it was. Then it is corruption: recovery refuses to
//      mount and names `boostvol check`.
//
// Thread-compatible; reads the log file only.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "boostvol/status.h"
#include "log/log_writer.h"
#include "meta/meta_store.h"
#include "util/env.h"

namespace boostvol::log {

struct ScanOptions {
  File* log = nullptr;
  Uuid uuid{};
  uint32_t segment_blocks = 0;
  uint32_t segment_count = 0;
  meta::Watermark start;
  // Highest record seq meta.db proves durable (R5); 0 if none.
  uint64_t known_durable_seq = 0;
  // Called for every zero range of every accepted record, in log order and
  // before that record's data blocks (log_format.h); may be empty.
  std::function<void(uint64_t first, uint32_t count, uint64_t segment_seq)> on_zero;
  // Called every few MiB with (records so far, -).
  std::function<void(uint64_t records)> progress;
  // The options every scan of a volume's log starts from (mount, check,
  // repair): the log file, the volume's identity and geometry, where the
  // scan starts and what meta.db proves durable. Callbacks stay empty.
  static ScanOptions ForLog(File* log, const Uuid& uuid, uint32_t segment_blocks, uint32_t segment_count,
                            const meta::Watermark& start, uint64_t known_durable_seq) {
    ScanOptions so;
    so.log = log;
    so.uuid = uuid;
    so.segment_blocks = segment_blocks;
    so.segment_count = segment_count;
    so.start = start;
    so.known_durable_seq = known_durable_seq;
    return so;
  }
};

struct ScanResult {
  std::vector<LiveSegment> live;  // oldest first; back() is the tail's segment
  meta::TailState tail;
  uint64_t records = 0;
  uint64_t blocks = 0;
  bool torn_tail = false;      // R4 dropped something at the tail
  std::string torn_detail;
};

// Calls on_block(lba, pos, crc) for every data block of every accepted
// record, in log order (later calls supersede earlier ones for an lba).
// Returns Corruption per R5 (message names the record, position and
// `boostvol check`), IoError if the log cannot be read.
Status ScanLog(const ScanOptions& options, const std::function<void(uint64_t lba, uint32_t pos, uint32_t crc)>& on_block,
               ScanResult* result);

// Reads and fully verifies the record whose header is at absolute log block
// `pos`, expecting `seq` in segment `segment_seq` (prev_crc unchecked when
// prev_crc is nullptr). On OK, *hdr is filled and `data` (resized) holds its
// blocks. Corruption says which check failed.
Status ReadRecord(File* log, const Uuid& uuid, uint32_t pos, uint64_t seq, uint64_t segment_seq,
                  const uint32_t* prev_crc, uint32_t blocks_left_in_segment, RecordHeader* hdr,
                  std::vector<uint8_t>* data);

}  // namespace boostvol::log
