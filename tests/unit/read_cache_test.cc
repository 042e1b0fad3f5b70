// The read cache (src/cache/read_cache.h; docs/policies.md "Read caching"):
// the unit (CLOCK vs FIFO, the lba -> slot table against a model, checksum
// and read errors, invalidation tickets, nhit counting) and the engine with
// it (reads of cached blocks never touch home, writes and zero ranges drop
// slots before and after migration, a promotion racing a write is discarded
// -- and the same race serves stale data when the validation is skipped --,
// FAST errors only skip promotions, a reopen starts cold, counters).
#include "cache/read_cache.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <random>
#include <thread>
#include <vector>

#include "boostvol/volume.h"
#include "engine/volume_impl.h"
#include "lib/fault_injection_env.h"
#include "lib/page_cache.h"
#include "lib/small_volume.h"
#include "lib/temp_dirs.h"
#include "meta/meta_store.h"
#include "log/record.h"
#include "util/blocking_hint.h"

namespace boostvol {
namespace {

using log::kBlockSize;

std::vector<uint8_t> Block(uint64_t lba, uint8_t salt) {
  std::vector<uint8_t> b(kBlockSize);
  for (size_t i = 0; i < kBlockSize; i++) b[i] = static_cast<uint8_t>(lba * 31 + salt + i * 7);
  return b;
}

struct UnitFixture {
  test::TempDirs dirs;
  std::unique_ptr<Dir> fast;
  std::unique_ptr<ReadCache> rc;
  explicit UnitFixture(uint32_t slots, PromotePolicy p = PromotePolicy::kAlways, uint32_t hits = 2,
                       EvictionOrder order = EvictionOrder::kClock) {
    EXPECT_TRUE(Env::Posix()->OpenDir(dirs.fast(), &fast).ok());
    std::unique_ptr<File> f;
    EXPECT_TRUE(fast->OpenFile("readcache", OpenMode::kCreate, &f).ok());
    rc = std::make_unique<ReadCache>(std::move(f), order);
    Status s = rc->Configure(slots, p, hits);
    EXPECT_TRUE(s.ok()) << s.ToString();
  }
  void Promote(uint64_t lba, uint8_t salt = 0) {
    auto b = Block(lba, salt);
    rc->OnHomeRead(lba, b.data(), rc->TicketFor(lba));
  }
  bool Has(uint64_t lba, uint8_t salt = 0) {
    std::vector<uint8_t> out(kBlockSize);
    if (!rc->Read(lba, out.data())) return false;
    EXPECT_EQ(out, Block(lba, salt)) << "block " << lba;
    return true;
  }
};

TEST(ReadCacheTest, PromotesAndServesVerifiedCopies) {
  UnitFixture f(8);
  EXPECT_FALSE(f.Has(5));
  f.Promote(5);
  EXPECT_TRUE(f.Has(5));
  EXPECT_FALSE(f.Has(6));
  ReadCache::Stats st = f.rc->GetStats();
  EXPECT_EQ(st.hits, 1u);
  EXPECT_EQ(st.misses, 2u);
  EXPECT_EQ(st.promotions, 1u);
  EXPECT_EQ(st.used_blocks, 1u);
  EXPECT_EQ(st.capacity_blocks, 8u);
  // The file is preallocated to the slots and private.
  FileInfo fi;
  ASSERT_TRUE(f.fast->Stat("readcache", &fi).ok());
  EXPECT_EQ(fi.size, 8 * kBlockSize);
  EXPECT_EQ(fi.mode & 077, 0u);
}

TEST(ReadCacheTest, ClockGivesReferencedBlocksASecondChanceFifoDoesNot) {
  for (EvictionOrder order : {EvictionOrder::kClock, EvictionOrder::kFifo}) {
    UnitFixture f(4, PromotePolicy::kAlways, 2, order);
    for (uint64_t lba = 0; lba < 4; lba++) f.Promote(lba);
    EXPECT_TRUE(f.Has(0));
    EXPECT_TRUE(f.Has(1));
    f.Promote(10);  // needs a victim
    EXPECT_TRUE(f.Has(10));
    EXPECT_EQ(f.rc->GetStats().evictions, 1u);
    if (order == EvictionOrder::kClock) {
      EXPECT_TRUE(f.Has(0));   // referenced: kept
      EXPECT_TRUE(f.Has(1));
      EXPECT_FALSE(f.Has(2));  // the first unreferenced one
      EXPECT_TRUE(f.Has(3));
    } else {
      EXPECT_FALSE(f.Has(0));  // oldest goes, referenced or not
      EXPECT_TRUE(f.Has(1));
      EXPECT_TRUE(f.Has(2));
    }
  }
}

// Random promotions, hits and invalidations against a model of what may be
// cached: the open-addressing table (backward-shift deletion) never loses a
// block it holds nor returns one it dropped, and never holds more than its slots.
TEST(ReadCacheTest, TableMatchesAModelUnderRandomOperations) {
  UnitFixture f(64);
  std::mt19937_64 rng(7);
  std::map<uint64_t, uint8_t> cached;  // lba -> salt of the copy promoted (may have been evicted)
  std::map<uint64_t, uint8_t> salt;    // current home contents
  for (int i = 0; i < 20000; i++) {
    uint64_t lba = rng() % 300;
    switch (rng() % 4) {
      case 0:
      case 1: {
        std::vector<uint8_t> out(kBlockSize);
        if (f.rc->Read(lba, out.data())) {
          ASSERT_TRUE(cached.count(lba)) << "block " << lba << " served after it was dropped";
          ASSERT_EQ(out, Block(lba, salt[lba])) << "stale block " << lba;
        } else {
          f.Promote(lba, salt[lba]);
          cached[lba] = salt[lba];
        }
        break;
      }
      case 2: {  // the block changes
        uint64_t end = lba + 1 + rng() % 4;
        for (uint64_t b = lba; b < end; b++) {
          salt[b]++;
          cached.erase(b);
        }
        f.rc->Invalidate(lba, end);
        break;
      }
      default: break;
    }
    ASSERT_LE(f.rc->GetStats().used_blocks, 64u);
  }
  // Everything still held reads back exactly.
  uint64_t held = 0;
  for (uint64_t lba = 0; lba < 300; lba++) {
    std::vector<uint8_t> out(kBlockSize);
    if (f.rc->Read(lba, out.data())) {
      held++;
      ASSERT_EQ(out, Block(lba, salt[lba]));
    }
  }
  EXPECT_EQ(held, f.rc->GetStats().used_blocks);
  EXPECT_GT(held, 32u);
  EXPECT_GT(f.rc->GetStats().evictions, 100u);
  EXPECT_GT(f.rc->GetStats().invalidations, 100u);
  // RAM per cached block (slot 13 bytes + table 4-byte entries at load <= 2/3);
  // the fixed part (nhit table, buckets) aside.
  UnitFixture big(1 << 16);
  const size_t fixed = ReadCache::kBuckets * 8;  // (the nhit table is only made for nhit)
  const double per_block = static_cast<double>(big.rc->MemoryBytes() - fixed) / (1 << 16);
  std::printf("read cache RAM: %.1f bytes per cached block (65536 slots)\n", per_block);
  EXPECT_LE(per_block, 25.0);
}

// The eviction order, measured (not timed): hit ratio of CLOCK and FIFO for
// the same zipf(1.2) trace over 16384 blocks with 2048 slots (promote on
// every miss), and of nhit(2) with CLOCK. CLOCK keeps the hot blocks that FIFO
// pushes out in turn; the figures are in docs/policies.md.
TEST(ReadCacheTest, ClockBeatsFifoOnASkewedTrace) {
  constexpr uint32_t kBlocks = 16384, kSlots = 2048, kAccesses = 200000;
  std::vector<double> cdf(kBlocks);
  double sum = 0;
  for (uint32_t r = 0; r < kBlocks; r++) cdf[r] = (sum += 1.0 / std::pow(r + 1.0, 1.2));
  std::vector<uint32_t> lba_of_rank(kBlocks);
  for (uint32_t r = 0; r < kBlocks; r++) lba_of_rank[r] = r;
  std::mt19937_64 rng(11);
  std::shuffle(lba_of_rank.begin(), lba_of_rank.end(), rng);
  std::vector<uint32_t> trace(kAccesses);
  std::uniform_real_distribution<double> u(0, sum);
  for (auto& t : trace) t = lba_of_rank[std::lower_bound(cdf.begin(), cdf.end(), u(rng)) - cdf.begin()];
  auto ratio = [&](EvictionOrder order, PromotePolicy p) {
    UnitFixture f(kSlots, p, 2, order);
    std::vector<uint8_t> out(kBlockSize);
    uint64_t hits = 0;
    for (uint32_t lba : trace) {
      if (f.rc->Read(lba, out.data())) hits++;
      else f.Promote(lba);
    }
    return static_cast<double>(hits) / kAccesses;
  };
  const double clock = ratio(EvictionOrder::kClock, PromotePolicy::kAlways);
  const double fifo = ratio(EvictionOrder::kFifo, PromotePolicy::kAlways);
  const double nhit = ratio(EvictionOrder::kClock, PromotePolicy::kNhit);
  std::printf("zipf(1.2), 16384 blocks, 2048 slots, 200000 reads: hit ratio CLOCK %.3f, FIFO %.3f, "
              "nhit(2)+CLOCK %.3f\n",
              clock, fifo, nhit);
  EXPECT_GT(clock, fifo);
}

TEST(ReadCacheTest, ChecksumMismatchDropsTheSlot) {
  UnitFixture f(8);
  f.Promote(3);
  // Damage the slot on disk (slot 0: the first fill).
  std::unique_ptr<File> raw;
  ASSERT_TRUE(f.fast->OpenFile("readcache", OpenMode::kReadWrite, &raw).ok());
  uint8_t junk[16] = {1, 2, 3};
  ASSERT_TRUE(raw->WriteAt(100, junk, sizeof(junk)).ok());
  EXPECT_FALSE(f.Has(3));
  ReadCache::Stats st = f.rc->GetStats();
  EXPECT_EQ(st.errors, 1u);
  EXPECT_EQ(st.used_blocks, 0u);
  f.Promote(3);  // promoted again, fine
  EXPECT_TRUE(f.Has(3));
}

TEST(ReadCacheTest, InvalidationDropsSlotsAndDiscardsPromotionsWithOldTickets) {
  UnitFixture f(16);
  f.Promote(1);
  f.Promote(2);
  f.rc->Invalidate(2, 3);
  EXPECT_TRUE(f.Has(1));
  EXPECT_FALSE(f.Has(2));
  // A ticket taken before a change is refused after it.
  const uint64_t t = f.rc->TicketFor(7);
  f.rc->Invalidate(7, 8);
  auto b = Block(7, 0);
  f.rc->OnHomeRead(7, b.data(), t);
  EXPECT_FALSE(f.Has(7));
  // A huge range (a TRIM of everything) drops all and bumps every bucket.
  const uint64_t t9 = f.rc->TicketFor(9);
  f.rc->Invalidate(0, uint64_t{1} << 30);
  EXPECT_FALSE(f.Has(1));
  EXPECT_NE(f.rc->TicketFor(9), t9);
  EXPECT_EQ(f.rc->GetStats().used_blocks, 0u);
}

TEST(ReadCacheTest, NhitPromotesAtTheNthHomeReadWithinTheWindow) {
  UnitFixture f(16, PromotePolicy::kNhit, 3);
  f.Promote(4);
  f.Promote(4);
  EXPECT_FALSE(f.Has(4));
  f.Promote(4);
  EXPECT_TRUE(f.Has(4));
  // Out of the window: the count starts over.
  f.Promote(5);
  f.Promote(5);
  for (uint64_t i = 0; i < ReadCache::kNhitWindow + 1; i++) f.Promote(7);  // (5 stays in the table)
  f.Promote(5);
  EXPECT_FALSE(f.Has(5));
  f.Promote(5);
  f.Promote(5);
  EXPECT_TRUE(f.Has(5));
  // 4-way sets, as many entries as slots (at least 8192): 6000 blocks read
  // once each are nearly all still counted at their second read.
  UnitFixture g(8192, PromotePolicy::kNhit, 2);
  for (int pass = 0; pass < 2; pass++)
    for (uint64_t lba = 0; lba < 6000; lba++) g.Promote(lba * 13);
  EXPECT_GE(g.rc->GetStats().promotions, 5900u);
  // Off: nothing is promoted, the file holds nothing.
  ASSERT_TRUE(f.rc->Configure(16, PromotePolicy::kOff, 1).ok());
  f.Promote(6);
  EXPECT_FALSE(f.Has(6));
  FileInfo fi;
  ASSERT_TRUE(f.fast->Stat("readcache", &fi).ok());
  EXPECT_EQ(fi.size, 0u);
}

// ---- The engine with a read cache ----

constexpr uint64_t kImage = 2 << 20;  // 512 blocks

struct VolFixture {
  test::TempDirs dirs;
  test::FaultInjectionEnv env{Env::Posix()};
  std::unique_ptr<Volume> vol;

  void Create() {
    Status s = CreateVolume(test::SmallVolumeOptions(dirs, kImage, 2 << 20, 16384, &env));
    ASSERT_TRUE(s.ok()) << s.ToString();
  }
  Status Open() {
    OpenOptions oo;
    oo.fast_dir = dirs.fast();
    oo.env = &env;
    oo.start_migrator = false;
    return Volume::Open(oo, &vol);
  }
  VolumeImpl* impl() { return static_cast<VolumeImpl*>(vol.get()); }
  ReadCache* rc() { return impl()->read_cache_for_test(); }
  void WriteBlock(uint64_t lba, uint8_t salt) {
    auto b = Block(lba, salt);
    Status s = vol->Write(lba * kBlockSize, kBlockSize, b.data());
    ASSERT_TRUE(s.ok()) << s.ToString();
  }
  std::vector<uint8_t> ReadBlock(uint64_t lba) {
    std::vector<uint8_t> out(kBlockSize);
    Status s = vol->Read(lba * kBlockSize, kBlockSize, out.data());
    EXPECT_TRUE(s.ok()) << s.ToString();
    return out;
  }
  void Drain() {
    Status s = vol->Drain(nullptr);
    ASSERT_TRUE(s.ok()) << s.ToString();
  }
  // Blocks [0, n) with salt 1, written and migrated: they live only at home.
  void Setup(uint64_t n, const char* policy = "always") {
    Create();
    ASSERT_TRUE(Open().ok());
    for (uint64_t lba = 0; lba < n; lba++) WriteBlock(lba, 1);
    Drain();
    Status s = vol->SetTunable("read_promote", policy);
    ASSERT_TRUE(s.ok()) << s.ToString();
  }
};

TEST(VolumeReadCacheTest, CachedBlocksAreReadWithoutTouchingHome) {
  VolFixture f;
  f.Setup(64);
  for (uint64_t lba = 0; lba < 64; lba++) ASSERT_EQ(f.ReadBlock(lba), Block(lba, 1));
  VolumeStatus st = f.vol->GetStatus();
  EXPECT_EQ(st.read_cache_promotions, 64u);
  EXPECT_EQ(st.read_cache_blocks, 64u);
  EXPECT_EQ(st.read_cache_capacity_blocks, 128u);  // a quarter of the 2 MiB log
  EXPECT_EQ(st.read_promote, "always");
  // Home unreadable: every cached block still reads, from FAST.
  test::FaultRule r;
  r.path_prefix = f.dirs.slow();
  r.op = test::FaultOp::kRead;
  int id = f.env.InjectFault(r);
  std::vector<uint8_t> all(64 * kBlockSize);
  Status s = f.vol->Read(0, all.size(), all.data());
  ASSERT_TRUE(s.ok()) << s.ToString();
  for (uint64_t lba = 0; lba < 64; lba++)
    ASSERT_EQ(0, std::memcmp(all.data() + lba * kBlockSize, Block(lba, 1).data(), kBlockSize));
  EXPECT_EQ(f.env.Counters(id).matched, 0u) << "a read of cached blocks touched the slow dir";
  f.env.ClearFaults();
  EXPECT_EQ(f.vol->GetStatus().read_cache_hits, 64u);
}

TEST(VolumeReadCacheTest, WritesAndZeroRangesDropCachedCopiesBeforeAndAfterMigration) {
  VolFixture f;
  f.Setup(32);
  for (uint64_t lba = 0; lba < 32; lba++) f.ReadBlock(lba);  // all promoted
  f.WriteBlock(3, 2);
  ASSERT_TRUE(f.vol->Zero(8 * kBlockSize, 4 * kBlockSize, true).ok());
  // A partial write merges with the cached copy, then replaces it.
  std::vector<uint8_t> part(100, 0xAB);
  ASSERT_TRUE(f.vol->Write(20 * kBlockSize + 50, part.size(), part.data()).ok());
  auto expect20 = Block(20, 1);
  std::memset(expect20.data() + 50, 0xAB, 100);
  const std::vector<uint8_t> zeros(kBlockSize, 0);
  for (int pass = 0; pass < 2; pass++) {
    SCOPED_TRACE(pass == 0 ? "before migration" : "after migration");
    EXPECT_EQ(f.ReadBlock(3), Block(3, 2));
    for (uint64_t lba = 8; lba < 12; lba++) EXPECT_EQ(f.ReadBlock(lba), zeros);
    EXPECT_EQ(f.ReadBlock(20), expect20);
    EXPECT_EQ(f.ReadBlock(4), Block(4, 1));
    f.Drain();
  }
  // Read once more from home (promoted anew) and again from the cache.
  EXPECT_EQ(f.ReadBlock(3), Block(3, 2));
  EXPECT_EQ(f.ReadBlock(3), Block(3, 2));
  EXPECT_GE(f.vol->GetStatus().read_cache_invalidations, 6u);
}

// A FUSE worker reads inside a NoWaitScope (fuse_server.cc, do_read): a
// cached block whose slot is not in the page cache is neither a miss nor a
// bad slot; the read returns WouldBlock, the slot stays, nothing is counted,
// and the same read outside the scope is a hit.
TEST(VolumeReadCacheTest, ACachedBlockThatWouldWaitIsReadAgainNotDropped) {
  VolFixture f;
  f.Setup(8);
  for (uint64_t lba = 0; lba < 8; lba++) ASSERT_EQ(f.ReadBlock(lba), Block(lba, 1));  // all promoted
  const VolumeStatus before = f.vol->GetStatus();
  ASSERT_EQ(before.read_cache_blocks, 8u);
  ASSERT_NO_FATAL_FAILURE(test::EvictPageCache(f.dirs.fast() + "/readcache"));
  std::vector<uint8_t> out(kBlockSize);
  Status s;
  {
    NoWaitScope no_wait(true);
    s = f.vol->Read(5 * kBlockSize, kBlockSize, out.data());
  }
  EXPECT_TRUE(s.IsWouldBlock()) << s.ToString();
  VolumeStatus now = f.vol->GetStatus();
  EXPECT_EQ(now.read_cache_blocks, 8u);
  EXPECT_EQ(now.read_cache_hits, before.read_cache_hits);
  EXPECT_EQ(now.read_cache_misses, before.read_cache_misses);
  EXPECT_EQ(now.read_blocks_home, before.read_blocks_home);
  EXPECT_EQ(now.reads, before.reads);
  EXPECT_EQ(f.ReadBlock(5), Block(5, 1));
  now = f.vol->GetStatus();
  EXPECT_EQ(now.read_cache_hits, before.read_cache_hits + 1);
  EXPECT_EQ(now.read_blocks_home, before.read_blocks_home);
}

// A home-direct write (write modes, sequential bypass: docs/policies.md) changes
// the home behind the index; the cached copies of its blocks must go with it.
TEST(VolumeReadCacheTest, HomeDirectWritesDropCachedCopies) {
  VolFixture f;
  f.Setup(32);
  for (uint64_t lba = 0; lba < 32; lba++) ASSERT_EQ(f.ReadBlock(lba), Block(lba, 1));  // all promoted
  ASSERT_EQ(f.vol->GetStatus().read_cache_blocks, 32u);
  Status s = f.vol->SetTunable("write_mode", "writearound");  // the log is all home: writes go home directly
  ASSERT_TRUE(s.ok()) << s.ToString();
  const uint64_t bypassed = f.vol->GetStatus().bypassed_bytes;
  std::vector<uint8_t> eight(8 * kBlockSize);
  for (uint64_t i = 0; i < 8; i++) {
    auto b = Block(4 + i, 3);
    std::memcpy(eight.data() + i * kBlockSize, b.data(), kBlockSize);
  }
  s = f.vol->Write(4 * kBlockSize, eight.size(), eight.data());
  ASSERT_TRUE(s.ok()) << s.ToString();
  ASSERT_EQ(f.vol->GetStatus().bypassed_bytes, bypassed + eight.size()) << "the write was not home-direct";
  for (uint64_t lba = 0; lba < 32; lba++) EXPECT_EQ(f.ReadBlock(lba), Block(lba, lba >= 4 && lba < 12 ? 3 : 1)) << lba;
  EXPECT_GE(f.vol->GetStatus().read_cache_invalidations, 8u);
}

// A block read from home while a write of it is placed must not be promoted:
// after the write migrates home the cache would serve the old data. The hook
// runs between the slot's write and the validation, and writes the block.
TEST(VolumeReadCacheTest, PromotionRacingAWriteIsDiscarded) {
  for (bool skip : {false, true}) {
    SCOPED_TRACE(skip ? "validation skipped (must go stale)" : "validated");
    VolFixture f;
    f.Setup(4);
    f.rc()->SkipValidationForTest(skip);
    bool once = false;
    f.rc()->SetPromoteHookForTest([&](uint64_t lba) {
      if (lba != 2 || once) return;
      once = true;
      f.WriteBlock(2, 9);
    });
    EXPECT_EQ(f.ReadBlock(2), Block(2, 1));  // the read began before the write: old data is right
    ASSERT_TRUE(once);
    f.Drain();  // the write is home, the index forgets it
    f.rc()->SetPromoteHookForTest(nullptr);
    if (!skip) {
      EXPECT_EQ(f.ReadBlock(2), Block(2, 9));
      EXPECT_EQ(f.rc()->GetStats().discarded, 1u);
    } else {
      EXPECT_EQ(f.ReadBlock(2), Block(2, 1)) << "without validation the race should have left a stale slot";
    }
  }
}

// Concurrency: a writer, two readers and a migrator on 48 blocks with a
// 32-slot read cache (evictions, promotions racing writes, migrations taking
// blocks out of the index). Every block carries its version; a read must
// return a version at least as new as the last write of that block that
// returned before the read began, and intact contents.
TEST(VolumeReadCacheTest, ConcurrentReadsNeverSeeOlderThanACompletedWrite) {
  constexpr uint64_t kBlocks = 48;
  VolFixture f;
  f.Setup(kBlocks);
  ASSERT_TRUE(f.vol->SetTunable("read_cache_size", "128K").ok());
  ASSERT_TRUE(f.vol->SetTunable("migrate_start_fraction", "0").ok());  // blocks go home (and leave the index) soon
  auto make = [](uint64_t lba, uint32_t version) {
    std::vector<uint8_t> b = Block(lba, static_cast<uint8_t>(version));
    std::memcpy(b.data(), &version, sizeof(version));
    return b;
  };
  // Setup wrote Block(lba, 1): version 0 is "salt 1 with its first bytes"; rewrite as version 1.
  for (uint64_t lba = 0; lba < kBlocks; lba++) {
    auto b = make(lba, 1);
    ASSERT_TRUE(f.vol->Write(lba * kBlockSize, kBlockSize, b.data()).ok());
  }
  f.Drain();
  std::vector<std::atomic<uint32_t>> done(kBlocks);
  for (auto& d : done) d = 1;
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> bad{0}, reads{0};
  std::thread writer([&] {
    std::mt19937_64 rng(5);
    std::vector<uint32_t> version(kBlocks, 1);
    for (int i = 0; i < 3000; i++) {
      uint64_t lba = rng() % kBlocks;
      auto b = make(lba, ++version[lba]);
      if (!f.vol->Write(lba * kBlockSize, kBlockSize, b.data()).ok()) bad++;
      done[lba] = version[lba];
      if (i % 4 == 0) (void)f.vol->Flush();  // seals segments for the migrator
      std::this_thread::yield();
    }
    stop = true;
  });
  std::thread migrator([&] {
    while (!stop) {
      bool did;
      if (!f.impl()->MigrateOnce(&did).ok()) bad++;
      if (!did) std::this_thread::yield();
    }
  });
  auto reader = [&](uint64_t seed) {
    std::mt19937_64 rng(seed);
    std::vector<uint8_t> out(kBlockSize);
    while (!stop) {
      uint64_t lba = rng() % kBlocks;
      uint32_t before = done[lba];
      if (!f.vol->Read(lba * kBlockSize, kBlockSize, out.data()).ok()) {
        bad++;
        continue;
      }
      uint32_t v;
      std::memcpy(&v, out.data(), sizeof(v));
      if (v < before || out != make(lba, v)) {
        bad++;
        ADD_FAILURE() << "block " << lba << " read version " << v << ", a write of version " << before
                      << " had returned before the read";
      }
      reads++;
    }
  };
  std::thread r1(reader, 1), r2(reader, 2);
  writer.join();
  migrator.join();
  r1.join();
  r2.join();
  EXPECT_EQ(bad.load(), 0u);
  ReadCache::Stats st = f.rc()->GetStats();
  std::printf("concurrent: %llu reads, %llu read cache hits, %llu promotions, %llu evictions, %llu invalidations, "
              "%llu promotions discarded\n",
              static_cast<unsigned long long>(reads.load()), static_cast<unsigned long long>(st.hits),
              static_cast<unsigned long long>(st.promotions), static_cast<unsigned long long>(st.evictions),
              static_cast<unsigned long long>(st.invalidations), static_cast<unsigned long long>(st.discarded));
  // Final state: everything drained, read twice (home, then the cache).
  f.Drain();
  for (int pass = 0; pass < 2; pass++)
    for (uint64_t lba = 0; lba < kBlocks; lba++) {
      std::vector<uint8_t> got = f.ReadBlock(lba);
      ASSERT_EQ(got, make(lba, done[lba])) << "block " << lba << " pass " << pass;
    }
}

TEST(VolumeReadCacheTest, NhitPromotesOnTheSecondRead) {
  VolFixture f;
  f.Setup(8, "nhit");
  f.ReadBlock(5);
  EXPECT_EQ(f.vol->GetStatus().read_cache_promotions, 0u);
  f.ReadBlock(5);
  EXPECT_EQ(f.vol->GetStatus().read_cache_promotions, 1u);
  f.ReadBlock(5);
  EXPECT_EQ(f.vol->GetStatus().read_cache_hits, 1u);
  ASSERT_TRUE(f.vol->SetTunable("read_promote_hits", "0").code() == Status::Code::kInvalidArgument);
  ASSERT_TRUE(f.vol->SetTunable("read_promote", "sometimes").code() == Status::Code::kInvalidArgument);
  ASSERT_TRUE(f.vol->SetTunable("read_cache_size", "64K").ok());  // live: resized, emptied
  VolumeStatus st = f.vol->GetStatus();
  EXPECT_EQ(st.read_cache_capacity_blocks, 16u);
  EXPECT_EQ(st.read_cache_blocks, 0u);
}

// FAST space: no FAST/readcache while read caching was never on; switching it
// off (live, or offline before a mount) frees the file's space.
TEST(VolumeReadCacheTest, OffUsesNoFastSpace) {
  VolFixture f;
  f.Create();
  ASSERT_TRUE(f.Open().ok());
  std::unique_ptr<Dir> fast;
  ASSERT_TRUE(Env::Posix()->OpenDir(f.dirs.fast(), &fast).ok());
  bool exists = true;
  ASSERT_TRUE(fast->Exists("readcache", &exists).ok());
  EXPECT_FALSE(exists);
  ASSERT_TRUE(f.vol->SetTunable("read_promote", "always").ok());
  FileInfo fi;
  ASSERT_TRUE(fast->Stat("readcache", &fi).ok());
  EXPECT_EQ(fi.size, 128 * kBlockSize);
  EXPECT_EQ(fi.mode & 077, 0u);
  ASSERT_TRUE(f.vol->SetTunable("read_promote", "off").ok());
  ASSERT_TRUE(fast->Stat("readcache", &fi).ok());
  EXPECT_EQ(fi.size, 0u);
  ASSERT_TRUE(f.vol->SetTunable("read_promote", "always").ok());
  ASSERT_TRUE(f.vol->Close().ok());
  f.vol.reset();
  {  // what `boostvol set FAST read_promote=off` does while unmounted
    std::unique_ptr<meta::MetaStore> meta;
    ASSERT_TRUE(meta::MetaStore::Open(f.dirs.fast() + "/meta.db", false, &meta).ok());
    ASSERT_TRUE(meta->SetSetting("read_promote", "off").ok());
  }
  ASSERT_TRUE(fast->Stat("readcache", &fi).ok());
  EXPECT_EQ(fi.size, 128 * kBlockSize);
  ASSERT_TRUE(f.Open().ok());
  ASSERT_TRUE(fast->Stat("readcache", &fi).ok());
  EXPECT_EQ(fi.size, 0u);
}

TEST(VolumeReadCacheTest, FastErrorsOnlySkipPromotionsAndHitsFallBackHome) {
  VolFixture f;
  f.Setup(8);
  test::FaultRule r;
  r.path_prefix = f.dirs.fast() + "/readcache";
  r.op = test::FaultOp::kWrite;
  f.env.InjectFault(r);
  EXPECT_EQ(f.ReadBlock(1), Block(1, 1));  // promotion fails, the read does not
  f.env.ClearFaults();
  EXPECT_EQ(f.vol->GetStatus().read_cache_blocks, 0u);
  EXPECT_EQ(f.ReadBlock(1), Block(1, 1));  // promoted now
  EXPECT_EQ(f.vol->GetStatus().read_cache_blocks, 1u);
  r.op = test::FaultOp::kRead;
  f.env.InjectFault(r);
  EXPECT_EQ(f.ReadBlock(1), Block(1, 1));  // the cached copy cannot be read: home
  f.env.ClearFaults();
  VolumeStatus st = f.vol->GetStatus();
  EXPECT_EQ(st.read_cache_hits, 0u);
  EXPECT_EQ(st.read_cache_blocks, 1u);  // dropped, then promoted again from the home read
  EXPECT_EQ(f.rc()->GetStats().errors, 2u);
  EXPECT_EQ(f.ReadBlock(1), Block(1, 1));
  EXPECT_EQ(f.vol->GetStatus().read_cache_hits, 1u);
}

TEST(VolumeReadCacheTest, ReopenStartsColdAndKeepsCountersAndSettings) {
  for (bool crash : {false, true}) {
    SCOPED_TRACE(crash ? "after a power cut" : "after a clean stop");
    VolFixture f;
    f.Setup(16);
    for (int pass = 0; pass < 2; pass++)
      for (uint64_t lba = 0; lba < 16; lba++) f.ReadBlock(lba);
    if (crash) {
      ASSERT_TRUE(f.env.PowerCut(test::PowerCutMode::kKeepRandomSubset, 3).ok());
      f.vol.reset();
    } else {
      ASSERT_TRUE(f.vol->Close().ok());
      f.vol.reset();
    }
    ASSERT_TRUE(f.Open().ok());
    VolumeStatus st = f.vol->GetStatus();
    EXPECT_EQ(st.read_cache_blocks, 0u);
    EXPECT_EQ(st.read_promote, "always");
    if (!crash) {
      EXPECT_EQ(st.read_cache_hits, 16u);  // saved at the clean stop
    }
    for (uint64_t lba = 0; lba < 16; lba++) ASSERT_EQ(f.ReadBlock(lba), Block(lba, 1));
  }
}

}  // namespace
}  // namespace boostvol
