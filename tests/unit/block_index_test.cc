#include "index/block_index.h"

#include <gtest/gtest.h>
#include <random>
#include <unordered_map>

namespace boostvol {
namespace {

TEST(BlockIndexTest, PutLookupRemoveIf) {
  BlockIndex idx(100);
  IndexValue v;
  EXPECT_FALSE(idx.Lookup(5, &v));
  idx.Put(5, {10, 111});
  ASSERT_TRUE(idx.Lookup(5, &v));
  EXPECT_EQ(v.pos, 10u);
  idx.Put(5, {11, 222});  // replace
  EXPECT_EQ(idx.size(), 1u);
  EXPECT_FALSE(idx.RemoveIf(5, {10, 111}));  // a newer copy wins
  EXPECT_TRUE(idx.RemoveIf(5, {11, 222}));
  EXPECT_FALSE(idx.Lookup(5, &v));
  EXPECT_EQ(idx.size(), 0u);
}

TEST(BlockIndexTest, RandomAgainstModelAtFullLoad) {
  const uint64_t kMax = 5000;
  BlockIndex idx(kMax);
  std::unordered_map<uint32_t, IndexValue> model;
  std::mt19937 rng(42);
  for (int step = 0; step < 200000; step++) {
    uint32_t lba = rng() % 20000;
    if (rng() % 3 != 0 && model.size() < kMax) {
      IndexValue v{static_cast<uint32_t>(rng()), static_cast<uint32_t>(rng())};
      idx.Put(lba, v);
      model[lba] = v;
    } else if (auto it = model.find(lba); it != model.end()) {
      ASSERT_TRUE(idx.RemoveIf(lba, it->second));
      model.erase(it);
    }
    if (step % 10000 == 0) {
      ASSERT_EQ(idx.size(), model.size());
      for (auto& [k, v] : model) {
        IndexValue got;
        ASSERT_TRUE(idx.Lookup(k, &got)) << k;
        ASSERT_EQ(got, v);
      }
    }
  }
  size_t seen = 0;
  idx.ForEach([&](uint32_t lba, IndexValue v) {
    seen++;
    ASSERT_EQ(model.at(lba), v);
  });
  EXPECT_EQ(seen, model.size());
}

TEST(BlockIndexTest, MemoryPerCachedBlockAtFullCache) {
  // The documented bound: at most 24 bytes per cached block when the log is full.
  for (uint64_t blocks : {1000ull, 4096ull, 262144ull, 524288ull, 600000ull}) {
    BlockIndex idx(blocks);
    EXPECT_LE(static_cast<double>(idx.MemoryBytes()) / blocks, 15.1) << blocks;
  }
}

}  // namespace
}  // namespace boostvol
