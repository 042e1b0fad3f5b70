// Fuzzes log::DecodeHeader (src/log/record.h) on arbitrary 4096-byte blocks.
//
// Input: byte 0 = flags (bit 0: store a correct header_crc before decoding,
// so the field checks behind the crc are reached; bit 1: use another uuid
// than the block's), then the block (zero-padded).
// Checks: never crashes or reads out of bounds (ASan/UBSan); a block that
// decodes re-encodes (EncodeHeader) to a block that decodes to the same
// header, and that equals the input byte for byte (the decoder rejects
// nonzero flags and reserved bytes, so every decoded block is canonical).
#include <cstdint>
#include <cstring>
#include <memory>

#include "fuzz/fuzz_util.h"
#include "log/record.h"
#include "util/crc32c.h"

using namespace boostvol;
using namespace boostvol::log;

namespace {

bool SameHeader(const RecordHeader& a, const RecordHeader& b) {
  if (a.uuid != b.uuid || a.record_seq != b.record_seq || a.segment_seq != b.segment_seq ||
      a.durable_seq != b.durable_seq || a.prev_crc != b.prev_crc || a.nblocks != b.nblocks || a.nzero != b.nzero)
    return false;
  for (uint32_t i = 0; i < a.nblocks; i++)
    if (a.entries[i].lba != b.entries[i].lba || a.entries[i].block_crc != b.entries[i].block_crc) return false;
  for (uint32_t i = 0; i < a.nzero; i++)
    if (a.zeros[i].first != b.zeros[i].first || a.zeros[i].count != b.zeros[i].count) return false;
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  fuzz::Input in(data, size);
  uint8_t flags = in.Byte();
  static uint8_t block[kBlockSize];
  std::memset(block, 0, sizeof block);
  size_t n = std::min<size_t>(in.left(), kBlockSize);
  std::memcpy(block, in.Take(n), n);
  if (flags & 1) {
    uint32_t crc = crc32c::Value(block, kHeaderCrcOffset);
    std::memcpy(block + kHeaderCrcOffset, &crc, 4);
  }
  Uuid uuid{};
  std::memcpy(uuid.data(), block + 8, 16);
  if (flags & 2) uuid[0] ^= 1;

  auto h = std::make_unique<RecordHeader>();
  Status s = DecodeHeader(block, uuid, h.get());
  if (!s.ok()) {
    FUZZ_CHECK(s.IsCorruption(), "DecodeHeader returned %s", s.ToString().c_str());
    return 0;
  }
  FUZZ_CHECK(!(flags & 2), "a header of another volume decoded");
  FUZZ_CHECK(h->nblocks <= kMaxRecordBlocks && h->nblocks + h->nzero >= 1 &&
                 h->nblocks + h->nzero <= kMaxRecordEntries,
             "nblocks %u nzero %u", h->nblocks, h->nzero);
  for (uint32_t i = 0; i < h->nzero; i++)
    FUZZ_CHECK(h->zeros[i].count >= 1 && h->zeros[i].first + h->zeros[i].count <= kMaxImageBlocks, "zero range");
  uint32_t stored;
  std::memcpy(&stored, block + kHeaderCrcOffset, 4);
  FUZZ_CHECK(h->header_crc == stored, "header_crc not the stored crc");

  static uint8_t again[kBlockSize];
  auto copy = std::make_unique<RecordHeader>(*h);
  EncodeHeader(copy.get(), again);
  auto h2 = std::make_unique<RecordHeader>();
  s = DecodeHeader(again, uuid, h2.get());
  FUZZ_CHECK(s.ok(), "re-encoded header does not decode: %s", s.ToString().c_str());
  FUZZ_CHECK(SameHeader(*h, *h2), "re-encoded header decodes differently");
  // The decoder interprets every byte (fields, entries, and the reserved
  // bytes it requires to be zero), so a decoded block is canonical: it
  // re-encodes to exactly the same 4096 bytes.
  FUZZ_CHECK(std::memcmp(block, again, kBlockSize) == 0, "a decoded header is not canonical");
  FUZZ_CHECK(copy->header_crc == h->header_crc, "same bytes, different crc");
  return 0;
}
