// Pins the log format's worked example (docs/log_format.md).
#include "log/record.h"

#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "util/crc32c.h"

namespace boostvol::log {
namespace {

TEST(RecordTest, WorkedExampleFromTheFormatDoc) {
  Uuid u;
  ASSERT_TRUE(UuidFromString("389f23cd-8651-488d-9121-2e256ba1c447", &u));
  std::vector<uint8_t> ab(kBlockSize, 0xAB), zero(kBlockSize, 0);
  EXPECT_EQ(BlockCrc(100, ab.data()), 0xb73a7bcbu);
  EXPECT_EQ(BlockCrc(101, zero.data()), 0x18bcb39fu);
  RecordHeader h;
  h.uuid = u;
  h.record_seq = 7;
  h.segment_seq = 2;
  h.durable_seq = 6;
  h.prev_crc = 0;
  h.nblocks = 2;
  h.entries[0] = {100, BlockCrc(100, ab.data())};
  h.entries[1] = {101, BlockCrc(101, zero.data())};
  std::vector<uint8_t> block(kBlockSize);
  EncodeHeader(&h, block.data());
  EXPECT_EQ(h.header_crc, 0x0173c7c7u);
  const uint8_t first[] = {0x42, 0x56, 0x4c, 0x52, 0x01, 0x00, 0x00, 0x00, 0x38, 0x9f, 0x23, 0xcd};
  EXPECT_EQ(std::memcmp(block.data(), first, sizeof first), 0);

  RecordHeader d;
  ASSERT_TRUE(DecodeHeader(block.data(), u, &d).ok());
  EXPECT_EQ(d.record_seq, 7u);
  EXPECT_EQ(d.nblocks, 2u);
  EXPECT_EQ(d.entries[1].lba, 101u);
  block[100] ^= 1;  // any flipped bit fails the header check
  EXPECT_TRUE(DecodeHeader(block.data(), u, &d).IsCorruption());
}

TEST(RecordTest, RejectsOtherVolumesAndBadCounts) {
  Uuid u = NewRandomUuid(), other = NewRandomUuid();
  RecordHeader h;
  h.uuid = u;
  h.record_seq = 1;
  h.nblocks = 1;
  std::vector<uint8_t> block(kBlockSize);
  EncodeHeader(&h, block.data());
  RecordHeader d;
  EXPECT_TRUE(DecodeHeader(block.data(), other, &d).IsCorruption());
  EXPECT_TRUE(DecodeHeader(block.data(), u, &d).ok());
}


// Bytes the format reserves (flags at 6, the u64 at 56, everything between the
// last entry and header_crc) must be zero: a header that sets any of them is
// rejected even when its crc is right (untrusted input, docs/log_format.md).
TEST(RecordTest, RejectsUnknownFlagsAndNonzeroReservedBytes) {
  Uuid u = NewRandomUuid();
  RecordHeader h;
  h.uuid = u;
  h.record_seq = 3;
  h.nblocks = 2;
  h.entries[0] = {10, 1};
  h.entries[1] = {11, 2};
  std::vector<uint8_t> good(kBlockSize);
  EncodeHeader(&h, good.data());
  RecordHeader d;
  ASSERT_TRUE(DecodeHeader(good.data(), u, &d).ok());
  const size_t after_entries = kHeaderFixedSize + 2 * kEntrySize;
  for (size_t off : {size_t{6}, size_t{7}, size_t{60}, size_t{63}, after_entries, size_t{kHeaderCrcOffset - 1}}) {
    SCOPED_TRACE("byte " + std::to_string(off));
    std::vector<uint8_t> bad = good;
    bad[off] = 0x01;
    uint32_t crc = crc32c::Value(bad.data(), kHeaderCrcOffset);  // a correct crc: only the new check stops it
    std::memcpy(bad.data() + kHeaderCrcOffset, &crc, 4);
    Status s = DecodeHeader(bad.data(), u, &d);
    EXPECT_TRUE(s.IsCorruption()) << s.ToString();
    EXPECT_NE(s.message().find(off < 8 ? "flags" : "reserved"), std::string::npos) << s.message();
  }
  // Offset 56 is nzero: a version 1 record claiming zero entries is corrupt.
  {
    std::vector<uint8_t> bad = good;
    bad[56] = 0x01;
    uint32_t crc = crc32c::Value(bad.data(), kHeaderCrcOffset);
    std::memcpy(bad.data() + kHeaderCrcOffset, &crc, 4);
    EXPECT_TRUE(DecodeHeader(bad.data(), u, &d).IsCorruption());
  }
  // The last byte of the entries themselves is data, not reserved.
  std::vector<uint8_t> entry = good;
  entry[after_entries - 1] = 0x01;
  uint32_t crc = crc32c::Value(entry.data(), kHeaderCrcOffset);
  std::memcpy(entry.data() + kHeaderCrcOffset, &crc, 4);
  EXPECT_TRUE(DecodeHeader(entry.data(), u, &d).ok());
}

}  // namespace
}  // namespace boostvol::log
