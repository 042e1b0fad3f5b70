// ExtentsOfBlocks: the runs a sealed segment's blocks make, for meta.db's
// segment_extents (the dirty_extents view).
#include "engine/segment_extents.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace boostvol {
namespace {

std::string Show(const std::vector<meta::SegmentExtent>& v) {
  std::string s;
  for (const auto& e : v)
    s += (s.empty() ? "" : " ") + std::to_string(e.first_block) + "+" + std::to_string(e.blocks) + "/" +
         std::to_string(e.dirty_blocks);
  return s;
}

TEST(SegmentExtents, RunsOfSortedDistinctBlocks) {
  EXPECT_EQ(Show(ExtentsOfBlocks({}, 64)), "");
  EXPECT_EQ(Show(ExtentsOfBlocks({7}, 64)), "7+1/1");
  // Any order, repeats (a block rewritten within the segment) count once.
  EXPECT_EQ(Show(ExtentsOfBlocks({12, 10, 11, 11, 20, 3, 21, 10}, 64)), "3+1/1 10+3/3 20+2/2");
}

TEST(SegmentExtents, TooManyRunsMergeAcrossTheSmallestGaps) {
  // Runs at 0, 10, 12, 100, 102, 1000: gaps 9, 1, 87, 1, 897.
  const std::vector<uint64_t> blocks = {0, 10, 12, 100, 102, 1000};
  EXPECT_EQ(Show(ExtentsOfBlocks(blocks, 6)), "0+1/1 10+1/1 12+1/1 100+1/1 102+1/1 1000+1/1");
  EXPECT_EQ(Show(ExtentsOfBlocks(blocks, 4)), "0+1/1 10+3/2 100+3/2 1000+1/1");
  EXPECT_EQ(Show(ExtentsOfBlocks(blocks, 3)), "0+13/3 100+3/2 1000+1/1");
  EXPECT_EQ(Show(ExtentsOfBlocks(blocks, 1)), "0+1001/6");
  // Random 4 KiB writes over a whole segment stay within the bound, and no
  // block is lost: the dirty counts add up.
  std::vector<uint64_t> many;
  for (uint64_t i = 0; i < 1024; i++) many.push_back((i * 2654435761u) % 1000003);
  auto v = ExtentsOfBlocks(many, meta::kMaxSegmentExtents);
  EXPECT_LE(v.size(), meta::kMaxSegmentExtents);
  uint64_t dirty = 0;
  for (size_t i = 0; i < v.size(); i++) {
    dirty += v[i].dirty_blocks;
    EXPECT_LE(v[i].dirty_blocks, v[i].blocks);
    if (i > 0) {
      EXPECT_GT(v[i].first_block, v[i - 1].first_block + v[i - 1].blocks - 1);
    }
  }
  EXPECT_EQ(dirty, 1024u);
}

}  // namespace
}  // namespace boostvol
