// Pins the log format's worked example (docs/log_format.md).
#include "log/record.h"

#include <gtest/gtest.h>

#include <cstring>
#include <vector>

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

}  // namespace
}  // namespace boostvol::log
