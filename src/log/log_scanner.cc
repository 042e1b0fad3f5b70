#include "log/log_scanner.h"

#include <memory>
#include <spdlog/spdlog.h>

namespace boostvol::log {

Status ReadRecord(File* log, const Uuid& uuid, uint32_t pos, uint64_t seq, uint64_t segment_seq,
                  const uint32_t* prev_crc, uint32_t blocks_left_in_segment, RecordHeader* hdr,
                  std::vector<uint8_t>* data) {
  if (blocks_left_in_segment < 2) return Status::Corruption("no room for a record");
  uint8_t block[kBlockSize];
  BV_RETURN_IF_ERROR(log->ReadAt(uint64_t{pos} * kBlockSize, block, kBlockSize));
  BV_RETURN_IF_ERROR(DecodeHeader(block, uuid, hdr));
  if (hdr->record_seq != seq)
    return Status::Corruption("found record " + std::to_string(hdr->record_seq) + ", expected " + std::to_string(seq));
  if (hdr->segment_seq != segment_seq) return Status::Corruption("record is in the wrong segment");
  if (prev_crc != nullptr && hdr->prev_crc != *prev_crc) return Status::Corruption("record does not chain to the one before");
  if (hdr->nblocks + 1 > blocks_left_in_segment) return Status::Corruption("record overruns its segment");
  data->resize(size_t{hdr->nblocks} * kBlockSize);
  BV_RETURN_IF_ERROR(log->ReadAt(uint64_t{pos + 1} * kBlockSize, data->data(), data->size()));
  for (uint32_t i = 0; i < hdr->nblocks; i++) {
    if (BlockCrc(hdr->entries[i].lba, data->data() + size_t{i} * kBlockSize) != hdr->entries[i].block_crc)
      return Status::Corruption("data block " + std::to_string(i) + " (image block " + std::to_string(hdr->entries[i].lba) +
                                ") fails its checksum");
  }
  return Status::OK();
}

Status ScanLog(const ScanOptions& o, const std::function<void(uint64_t, uint32_t, uint32_t)>& on_block, ScanResult* r) {
  auto hdr = std::make_unique<RecordHeader>();
  std::vector<uint8_t> data;
  uint64_t seg = o.start.segment_seq;
  uint32_t used = 0;  // blocks laid out in `seg`
  uint64_t expect = o.start.record_seq;
  uint32_t prev_crc = 0;
  bool have_prev = false;
  LiveSegment cur;
  cur.segment_seq = seg;
  *r = ScanResult{};

  auto slot_start = [&](uint64_t s) { return static_cast<uint32_t>((s % o.segment_count) * o.segment_blocks); };
  auto accept = [&](uint32_t pos) {
    if (o.on_zero)
      for (uint32_t i = 0; i < hdr->nzero; i++) o.on_zero(hdr->zeros[i].first, hdr->zeros[i].count, hdr->segment_seq);
    for (uint32_t i = 0; i < hdr->nblocks; i++) on_block(hdr->entries[i].lba, pos + 1 + i, hdr->entries[i].block_crc);
    if (cur.first_record == 0) cur.first_record = expect;
    cur.last_record = expect;
    cur.data_blocks += hdr->nblocks;
    used += 1 + hdr->nblocks;
    cur.used_blocks = used;
    prev_crc = hdr->header_crc;
    have_prev = true;
    r->records++;
    r->blocks += hdr->nblocks;
    expect++;
    if (o.progress && (r->records & 255) == 0) o.progress(r->records);
  };

  for (;;) {
    // R2: where the last record ended...
    Status here = Status::Corruption("no room left in the segment");
    if (o.segment_blocks - used >= 2) {
      here = ReadRecord(o.log, o.uuid, slot_start(seg) + used, expect, seg, have_prev ? &prev_crc : nullptr,
                        o.segment_blocks - used, hdr.get(), &data);
      if (here.ok()) {
        accept(slot_start(seg) + used);
        continue;
      }
      if (!here.IsCorruption()) return here;  // an I/O error is not a torn tail
    }
    // ...or at the start of the next segment, if this one holds records.
    Status next = Status::Corruption("segment holds no record");
    if (used > 0 && seg + 1 - o.start.segment_seq < o.segment_count) {
      next = ReadRecord(o.log, o.uuid, slot_start(seg + 1), expect, seg + 1, have_prev ? &prev_crc : nullptr,
                        o.segment_blocks, hdr.get(), &data);
      if (next.ok()) {
        cur.sealed = true;
        cur.durable = true;
        r->live.push_back(cur);
        seg++;
        used = 0;
        cur = LiveSegment{};
        cur.segment_seq = seg;
        accept(slot_start(seg));
        continue;
      }
      if (!next.IsCorruption()) return next;
    }
    break;
  }

  // R5: is the record that ended the log provably durable?
  uint64_t failed = expect;
  std::string where = "record " + std::to_string(failed) + " (segment " + std::to_string(seg) + ", log block " +
                      std::to_string(slot_start(seg) + used) + ")";
  if (failed <= o.known_durable_seq) {
    return Status::Corruption(where + " fails its checks (" + (used > 0 ? "" : "") +
                              "it should hold data that meta.db records as durable); the log is damaged. "
                              "Run `boostvol check FAST` for details");
  }
  // If its header is intact, look at the record right after it.
  uint8_t block[kBlockSize];
  if (o.segment_blocks - used >= 2 &&
      o.log->ReadAt(uint64_t{slot_start(seg) + used} * kBlockSize, block, kBlockSize).ok() &&
      DecodeHeader(block, o.uuid, hdr.get()).ok() && hdr->record_seq == failed && hdr->segment_seq == seg &&
      (!have_prev || hdr->prev_crc == prev_crc) && used + 1 + hdr->nblocks + 2 <= o.segment_blocks) {
    uint32_t failed_crc = hdr->header_crc;
    uint32_t after = slot_start(seg) + used + 1 + hdr->nblocks;
    auto next_hdr = std::make_unique<RecordHeader>();
    if (o.log->ReadAt(uint64_t{after} * kBlockSize, block, kBlockSize).ok() &&
        DecodeHeader(block, o.uuid, next_hdr.get()).ok() && next_hdr->record_seq == failed + 1 &&
        next_hdr->prev_crc == failed_crc && next_hdr->durable_seq >= failed) {
      return Status::Corruption(where + " has a damaged data block, but the record after it proves it was durable; "
                                "the log is damaged. Run `boostvol check FAST` for details");
    }
  }
  if (o.segment_blocks - used >= 2 || used > 0) {
    // Anything that failed here is a torn tail (or simply the end).
    r->torn_detail = where;
  }
  cur.used_blocks = used;
  if (o.segment_blocks - used < 2) cur.sealed = true;
  r->live.push_back(cur);
  r->tail.next_record_seq = expect;
  r->tail.segment_seq = seg;
  r->tail.next_block_in_segment = used;
  r->tail.prev_crc = have_prev ? prev_crc : 0;
  return Status::OK();
}

}  // namespace boostvol::log
