// Fuzzes recovery: log::ScanLog (src/log/log_scanner.h, rules R1-R5) over a
// tiny log in memory.
//
// Input (structure-aware, so that valid records exist to be damaged): a
// geometry (4..8 blocks per segment, 3..5 segments), a watermark, a
// known-durable seq, then commands: append a well-formed record the way the
// LogWriter lays it out (possibly moving on to the next segment early), flip
// a bit, zero a block, or paste raw input bytes into a block.
// Checks: never crashes; returns OK or Corruption only; every block reported
// is inside the log, matches its crc, and belongs to a record whose header
// decodes with the next consecutive seq starting at the watermark; the result
// (records, tail, live segments) agrees with what was reported; and a log
// nobody damaged is accepted completely (R3 accepts every valid record).
#include <cstdint>
#include <cstring>
#include <memory>
#include <vector>

#include "fuzz/fuzz_util.h"
#include "log/log_format.h"
#include "log/log_scanner.h"
#include "log/record.h"

using namespace boostvol;
using namespace boostvol::log;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  fuzz::Input in(data, size);
  const uint32_t sb = kMinSegmentBlocks + in.Byte() % 5;
  const uint32_t sc = kMinSegments + in.Byte() % 3;
  const uint64_t log_blocks = uint64_t{sb} * sc;
  meta::Watermark start;
  start.segment_seq = in.Byte();
  start.record_seq = 1 + in.U16();
  const uint8_t kd = in.Byte();
  const uint64_t known_durable = kd == 0 ? 0 : start.record_seq + kd % 16;
  Uuid uuid{};
  for (size_t i = 0; i < uuid.size(); i++) uuid[i] = static_cast<uint8_t>(0xA0 + i);

  fuzz::MemFile logf(log_blocks * kBlockSize);
  auto slot_start = [&](uint64_t s) { return (s % sc) * sb; };
  uint64_t seg = start.segment_seq, seq = start.record_seq;
  uint32_t used = 0, prev_crc = 0;
  bool damaged = false;
  auto hdr = std::make_unique<RecordHeader>();
  std::vector<uint8_t> block(kBlockSize);
  for (int cmd = 0; cmd < 64 && !in.empty(); cmd++) {
    uint8_t op = in.Byte() % 8;
    if (op <= 3) {  // append a record
      uint32_t n = 1 + in.Byte() % std::min<uint32_t>(3, sb - 1);
      if (used + 1 + n > sb) {
        if (seg + 1 - start.segment_seq >= sc) break;  // the ring is full
        seg++;
        used = 0;
      }
      *hdr = RecordHeader{};
      hdr->uuid = uuid;
      hdr->record_seq = seq;
      hdr->segment_seq = seg;
      hdr->durable_seq = seq - 1 - in.Byte() % 2;
      hdr->prev_crc = prev_crc;
      hdr->nblocks = n;
      uint64_t base = (slot_start(seg) + used) * kBlockSize;
      for (uint32_t i = 0; i < n; i++) {
        uint64_t lba = (op == 3) ? in.U64() & kLbaMask : in.U16();
        uint8_t fill = in.Byte();
        for (size_t j = 0; j < kBlockSize; j++) block[j] = static_cast<uint8_t>(fill + j * (i + 1));
        hdr->entries[i].lba = lba;
        hdr->entries[i].block_crc = BlockCrc(lba, block.data());
        (void)logf.WriteAt(base + (i + 1) * kBlockSize, block.data(), kBlockSize);
      }
      EncodeHeader(hdr.get(), block.data());
      (void)logf.WriteAt(base, block.data(), kBlockSize);
      prev_crc = hdr->header_crc;
      used += 1 + n;
      seq++;
    } else if (op == 4) {  // the writer moved on early (SealSegment)
      if (used == 0 || seg + 1 - start.segment_seq >= sc) continue;
      seg++;
      used = 0;
    } else if (op == 5) {  // flip a bit
      uint64_t bit = in.U32() % (log_blocks * kBlockSize * 8);
      logf.bytes()[bit / 8] ^= static_cast<uint8_t>(1u << (bit % 8));
      damaged = true;
    } else if (op == 6) {  // zero a block
      uint64_t b = in.U16() % log_blocks;
      std::memset(logf.bytes().data() + b * kBlockSize, 0, kBlockSize);
      damaged = true;
    } else {  // paste raw bytes
      uint64_t at = in.U32() % (log_blocks * kBlockSize);
      size_t n = std::min<size_t>({in.Byte(), in.left(), log_blocks * kBlockSize - at});
      std::memcpy(logf.bytes().data() + at, in.Take(n), n);
      damaged = true;
    }
  }
  const uint64_t built_end = seq;  // seq after the last record built

  ScanOptions so;
  so.log = &logf;
  so.uuid = uuid;
  so.segment_blocks = sb;
  so.segment_count = sc;
  so.start = start;
  so.known_durable_seq = known_durable;
  uint64_t progress_calls = 0;
  so.progress = [&](uint64_t) { progress_calls++; };

  uint64_t records = 0, blocks = 0;
  uint32_t last_pos = UINT32_MAX, left_in_record = 0;
  auto check_hdr = std::make_unique<RecordHeader>();
  auto on_block = [&](uint64_t lba, uint32_t pos, uint32_t crc) {
    FUZZ_CHECK(pos < log_blocks, "block at %u beyond the log (%llu blocks)", pos,
               static_cast<unsigned long long>(log_blocks));
    FUZZ_CHECK(lba <= kLbaMask, "lba %llu has kind bits", static_cast<unsigned long long>(lba));
    if (left_in_record == 0) {  // the first block of a record: its header is just before it
      FUZZ_CHECK(pos % sb != 0, "a record's data at block 0 of a segment");
      uint8_t h[kBlockSize];
      (void)logf.ReadAt(uint64_t{pos - 1} * kBlockSize, h, kBlockSize);
      FUZZ_CHECK(DecodeHeader(h, uuid, check_hdr.get()).ok(), "accepted a record whose header does not decode");
      FUZZ_CHECK(check_hdr->record_seq == start.record_seq + records, "accepted seq %llu, expected %llu",
                 static_cast<unsigned long long>(check_hdr->record_seq),
                 static_cast<unsigned long long>(start.record_seq + records));
      FUZZ_CHECK(check_hdr->segment_seq >= start.segment_seq && check_hdr->segment_seq - start.segment_seq < sc &&
                     slot_start(check_hdr->segment_seq) == (pos - 1) / sb * sb,
                 "record in the wrong slot");
      FUZZ_CHECK((pos - 1) % sb + 1 + check_hdr->nblocks <= sb, "record overruns its segment");
      left_in_record = check_hdr->nblocks;
      records++;
    } else {
      FUZZ_CHECK(pos == last_pos + 1, "a record's data blocks are not consecutive");
    }
    uint32_t i = check_hdr->nblocks - left_in_record;
    FUZZ_CHECK(check_hdr->entries[i].lba == lba && check_hdr->entries[i].block_crc == crc, "block differs from its entry");
    uint8_t b[kBlockSize];
    (void)logf.ReadAt(uint64_t{pos} * kBlockSize, b, kBlockSize);
    FUZZ_CHECK(BlockCrc(lba, b) == crc, "accepted a block that fails its crc");
    left_in_record--;
    last_pos = pos;
    blocks++;
  };
  ScanResult r;
  Status s = ScanLog(so, on_block, &r);
  FUZZ_CHECK(s.ok() || s.IsCorruption(), "ScanLog: %s", s.ToString().c_str());
  FUZZ_CHECK(left_in_record == 0, "a record's blocks were reported only in part");
  FUZZ_CHECK(r.records == records && r.blocks == blocks, "result counts differ from the blocks reported");
  if (s.IsCorruption()) {
    // R5: only with proof that the record that ended the log was durable.
    FUZZ_CHECK(damaged || start.record_seq + records <= known_durable, "Corruption on an undamaged log: %s",
               s.ToString().c_str());
    return 0;
  }
  FUZZ_CHECK(r.tail.next_record_seq == start.record_seq + records, "tail seq");
  FUZZ_CHECK(r.tail.segment_seq >= start.segment_seq && r.tail.segment_seq - start.segment_seq < sc, "tail segment");
  FUZZ_CHECK(r.tail.next_block_in_segment <= sb, "tail block");
  FUZZ_CHECK(!r.live.empty() && r.live.front().segment_seq == start.segment_seq &&
                 r.live.back().segment_seq == r.tail.segment_seq,
             "live segments do not span watermark..tail");
  uint64_t live_records = 0;
  for (size_t i = 0; i < r.live.size(); i++) {
    const LiveSegment& l = r.live[i];
    FUZZ_CHECK(l.segment_seq == start.segment_seq + i, "live segments not consecutive");
    FUZZ_CHECK(l.used_blocks <= sb, "live segment overfull");
    if (l.first_record != 0) live_records += l.last_record - l.first_record + 1;
    if (i + 1 < r.live.size()) FUZZ_CHECK(l.sealed && l.durable, "a segment before the tail is not sealed");
  }
  FUZZ_CHECK(live_records == records, "live segments hold %llu records, %llu accepted",
             static_cast<unsigned long long>(live_records), static_cast<unsigned long long>(records));
  if (!damaged) {
    FUZZ_CHECK(r.tail.next_record_seq == built_end, "an undamaged log was not accepted completely (%llu of %llu)",
               static_cast<unsigned long long>(records), static_cast<unsigned long long>(built_end - start.record_seq));
  }
  (void)progress_calls;
  return 0;
}
