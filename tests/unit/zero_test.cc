// Zero ranges (TRIM, write-zeroes, all-zero blocks; docs/policies.md): the
// pieces (ZeroMap, BlockIndex::RemoveRange, the record's zero entries) and the
// engine end to end: reads after a zero range, ordering with writes before
// and after migration, clean and crash reopen, space freed at home, log space
// saved by zero detection.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <cstring>
#include <random>
#include <vector>

#include "boostvol/volume.h"
#include "engine/volume_impl.h"
#include "index/block_index.h"
#include "index/zero_map.h"
#include "lib/fault_injection_env.h"
#include "lib/image_model.h"
#include "lib/small_volume.h"
#include "lib/temp_dirs.h"
#include "log/record.h"

namespace boostvol {
namespace {

using log::kBlockSize;

TEST(ZeroMapTest, AddOverridesSplitsAndMerges) {
  ZeroMap m;
  m.Add(10, 20, 1);
  m.Add(20, 30, 1);  // extends in place
  EXPECT_EQ(m.ranges(), 1u);
  EXPECT_EQ(m.blocks(), 20u);
  m.Add(15, 18, 2);  // splits the older range, newer tag inside
  EXPECT_EQ(m.ranges(), 3u);
  EXPECT_EQ(m.blocks(), 20u);
  uint64_t tag = 0;
  ASSERT_TRUE(m.Covers(16, &tag));
  EXPECT_EQ(tag, 2u);
  ASSERT_TRUE(m.Covers(14, &tag));
  EXPECT_EQ(tag, 1u);
  EXPECT_FALSE(m.Covers(30));
  EXPECT_FALSE(m.Covers(9));
  EXPECT_EQ(m.CoveredRun(12, 100), 3u);
  m.RemoveTaggedBefore(2);
  EXPECT_EQ(m.blocks(), 3u);
  EXPECT_TRUE(m.Covers(15));
  EXPECT_FALSE(m.Covers(14));
  m.Add(0, 100, 3);
  EXPECT_EQ(m.ranges(), 1u);
  m.Erase(40, 60);
  EXPECT_EQ(m.blocks(), 80u);
  EXPECT_FALSE(m.Covers(50));
  EXPECT_TRUE(m.Covers(60));
}

TEST(ZeroMapTest, RandomOpsMatchABitmap) {
  std::mt19937_64 rng(3);
  ZeroMap m;
  std::vector<int64_t> model(500, -1);  // tag per block, -1 = not covered
  for (int i = 0; i < 3000; i++) {
    uint64_t a = rng() % 500, b = a + 1 + rng() % 60;
    b = std::min<uint64_t>(b, 500);
    uint64_t tag = static_cast<uint64_t>(i / 50);
    switch (rng() % 6) {
      case 0:
        m.Erase(a, b);
        for (uint64_t k = a; k < b; k++) model[k] = -1;
        break;
      case 1:
        m.RemoveTaggedBefore(tag);
        for (auto& t : model)
          if (t >= 0 && static_cast<uint64_t>(t) < tag) t = -1;
        break;
      default:
        m.Add(a, b, tag);
        for (uint64_t k = a; k < b; k++) model[k] = static_cast<int64_t>(tag);
    }
    uint64_t covered = 0;
    for (uint64_t k = 0; k < 500; k++) {
      uint64_t t;
      bool c = m.Covers(k, &t);
      ASSERT_EQ(c, model[k] >= 0) << "block " << k << " op " << i;
      if (c) {
        ASSERT_EQ(static_cast<int64_t>(t), model[k]);
        covered++;
      }
    }
    ASSERT_EQ(m.blocks(), covered);
  }
}

TEST(BlockIndexTest, RemoveRangeBothWays) {
  BlockIndex idx(1000);
  for (uint32_t l = 0; l < 800; l++) idx.Put(l * 3, IndexValue{l, l});
  EXPECT_EQ(idx.RemoveRange(30, 60), 10u);  // per block
  EXPECT_EQ(idx.size(), 790u);
  EXPECT_EQ(idx.RemoveRange(600, uint64_t{1} << 40), 600u);  // one pass over the table
  EXPECT_EQ(idx.size(), 190u);
  IndexValue v;
  EXPECT_TRUE(idx.Lookup(27, &v));
  EXPECT_FALSE(idx.Lookup(33, &v));
  EXPECT_TRUE(idx.Lookup(597, &v));
  EXPECT_FALSE(idx.Lookup(600, &v));
  size_t n = 0;
  idx.ForEach([&](uint32_t lba, IndexValue) { n += lba < 600 && !(lba >= 30 && lba < 60); });
  EXPECT_EQ(n, 190u);
}

TEST(RecordZeroTest, ZeroEntriesRoundTripAsVersion2) {
  log::Uuid u = log::NewRandomUuid();
  log::RecordHeader h;
  h.uuid = u;
  h.record_seq = 5;
  h.nblocks = 1;
  std::vector<uint8_t> data(kBlockSize, 7);
  h.entries[0] = {42, log::BlockCrc(42, data.data())};
  h.nzero = 2;
  h.zeros[0] = {100, 5};
  h.zeros[1] = {uint64_t{1} << 30, 0x7FFFFFFFu};
  std::vector<uint8_t> block(kBlockSize);
  log::EncodeHeader(&h, block.data());
  EXPECT_EQ(block[4], 2) << "a record with zero entries is version 2";
  log::RecordHeader d;
  ASSERT_TRUE(log::DecodeHeader(block.data(), u, &d).ok());
  EXPECT_EQ(d.nblocks, 1u);
  ASSERT_EQ(d.nzero, 2u);
  EXPECT_EQ(d.zeros[0].first, 100u);
  EXPECT_EQ(d.zeros[0].count, 5u);
  EXPECT_EQ(d.zeros[1].first, uint64_t{1} << 30);
  EXPECT_EQ(d.zeros[1].count, 0x7FFFFFFFu);
  // A zero-only record has no data block.
  h.nblocks = 0;
  log::EncodeHeader(&h, block.data());
  ASSERT_TRUE(log::DecodeHeader(block.data(), u, &d).ok());
  EXPECT_EQ(d.nblocks, 0u);
  // Without zero entries the record stays version 1, byte for byte as before.
  h.nblocks = 1;
  h.nzero = 0;
  log::EncodeHeader(&h, block.data());
  EXPECT_EQ(block[4], 1);
}

TEST(RecordZeroTest, InconsistentZeroHeadersAreCorruption) {
  log::Uuid u = log::NewRandomUuid();
  log::RecordHeader h;
  h.uuid = u;
  h.nzero = 1;
  h.zeros[0] = {10, 0};  // an empty range
  std::vector<uint8_t> block(kBlockSize);
  log::EncodeHeader(&h, block.data());
  log::RecordHeader d;
  EXPECT_TRUE(log::DecodeHeader(block.data(), u, &d).IsCorruption());
  h.zeros[0] = {log::kMaxImageBlocks - 1, 2};  // past any image
  log::EncodeHeader(&h, block.data());
  EXPECT_TRUE(log::DecodeHeader(block.data(), u, &d).IsCorruption());
  h.nzero = 0;  // no entry at all
  log::EncodeHeader(&h, block.data());
  EXPECT_TRUE(log::DecodeHeader(block.data(), u, &d).IsCorruption());
}

constexpr uint64_t kImage = 2 << 20;  // 512 blocks

struct Fixture {
  test::TempDirs dirs;
  test::FaultInjectionEnv env{Env::Posix()};
  std::unique_ptr<Volume> vol;
  bool real_env = false;  // Env::Posix() (for st_blocks of a real punched file)

  void Create(uint64_t cache = 2 << 20) {
    Status s = CreateVolume(test::SmallVolumeOptions(dirs, kImage, cache, 16384, real_env ? Env::Posix() : &env));
    ASSERT_TRUE(s.ok()) << s.ToString();
  }
  Status Open() {
    OpenOptions oo;
    oo.fast_dir = dirs.fast();
    oo.env = real_env ? Env::Posix() : &env;
    oo.start_migrator = false;
    return Volume::Open(oo, &vol);
  }
  VolumeImpl* impl() { return static_cast<VolumeImpl*>(vol.get()); }
  std::vector<uint8_t> ReadAll() {
    std::vector<uint8_t> out(kImage);
    Status s = vol->Read(0, kImage, out.data());
    EXPECT_TRUE(s.ok()) << s.ToString();
    return out;
  }
  void Write(uint64_t off, uint64_t len, uint8_t fill, test::ImageModel* m) {
    std::vector<uint8_t> d(len);
    for (uint64_t i = 0; i < len; i++) d[i] = static_cast<uint8_t>(fill + i * 7);
    Status s = vol->Write(off, len, d.data());
    ASSERT_TRUE(s.ok()) << s.ToString();
    m->Apply(off, d.data(), len);
  }
  void Zero(uint64_t off, uint64_t len, test::ImageModel* m, bool discard = true) {
    Status s = vol->Zero(off, len, discard);
    ASSERT_TRUE(s.ok()) << s.ToString();
    std::vector<uint8_t> z(len, 0);
    m->Apply(off, z.data(), len);
  }
  std::vector<uint8_t> HomeImage() {
    std::unique_ptr<Dir> slow;
    EXPECT_TRUE(Env::Posix()->OpenDir(dirs.slow(), &slow).ok());
    std::unique_ptr<File> img;
    EXPECT_TRUE(slow->OpenFile("image", OpenMode::kReadOnly, &img).ok());
    std::vector<uint8_t> home(kImage);
    EXPECT_TRUE(img->ReadAt(0, home.data(), kImage).ok());
    return home;
  }
};

// Invariant: a zero range wins over older copies (log and home), a later write
// wins over the zero range, in every place the data can be (RAM buffer, log,
// home) and after a drain.
TEST(VolumeZeroTest, TrimThenWriteThenTrimKeepsOrder) {
  Fixture f;
  f.Create();
  ASSERT_TRUE(f.Open().ok());
  test::ImageModel model(kImage);
  f.Write(0, 64 * kBlockSize, 1, &model);  // blocks 0..63
  ASSERT_TRUE(f.vol->Drain(nullptr).ok());  // now home
  f.Write(16 * kBlockSize, 8 * kBlockSize, 2, &model);  // in the log
  f.Zero(8 * kBlockSize, 20 * kBlockSize, &model);      // over home and log copies
  ASSERT_EQ(f.ReadAll(), model.image());
  f.Write(10 * kBlockSize, 2 * kBlockSize, 3, &model);  // same record, after the zeros
  f.Zero(11 * kBlockSize, 1 * kBlockSize, &model);      // seals it: zeros of a record come before its data
  ASSERT_EQ(f.ReadAll(), model.image());
  EXPECT_GT(f.vol->GetStatus().pending_zero_blocks, 0u);
  ASSERT_TRUE(f.vol->Flush().ok());
  bool did;
  ASSERT_TRUE(f.impl()->MigrateOnce(&did).ok());
  ASSERT_EQ(f.ReadAll(), model.image());
  f.Write(9 * kBlockSize, kBlockSize, 4, &model);
  f.Zero(0, 4 * kBlockSize + 100, &model);  // unaligned tail edge
  f.Zero(5 * kBlockSize + 7, 3000, &model);  // inside one block
  ASSERT_EQ(f.ReadAll(), model.image());
  ASSERT_TRUE(f.vol->Drain(nullptr).ok());
  VolumeStatus st = f.vol->GetStatus();
  EXPECT_EQ(st.pending_zero_blocks, 0u);
  EXPECT_EQ(st.dirty_blocks, 0u);
  EXPECT_GT(st.home_zeroed_bytes, 0u);
  EXPECT_EQ(st.trimmed_bytes, 20 * kBlockSize + kBlockSize + 4 * kBlockSize + 100 + 3000);
  ASSERT_EQ(f.ReadAll(), model.image());
  ASSERT_EQ(f.HomeImage(), model.image());
}

// Invariant: pending zero ranges survive a clean stop (saved beside the
// checkpoint) and a crash (replayed from the log).
TEST(VolumeZeroTest, PendingZerosSurviveCleanStopAndCrash) {
  for (bool crash : {false, true}) {
    SCOPED_TRACE(crash ? "crash" : "clean stop");
    Fixture f;
    f.Create();
    ASSERT_TRUE(f.Open().ok());
    test::ImageModel model(kImage);
    f.Write(0, 100 * kBlockSize, 5, &model);
    ASSERT_TRUE(f.vol->Drain(nullptr).ok());
    f.Write(50 * kBlockSize, 10 * kBlockSize, 6, &model);
    f.Zero(20 * kBlockSize, 40 * kBlockSize, &model);
    f.Write(30 * kBlockSize, kBlockSize, 7, &model);
    ASSERT_TRUE(f.vol->Flush().ok());
    if (crash) {
      // An unflushed write keeps the dying volume from stopping cleanly (no
      // checkpoint): the next open replays the log.
      std::vector<uint8_t> late(kBlockSize, 0x5a);
      ASSERT_TRUE(f.vol->Write(200 * kBlockSize, kBlockSize, late.data()).ok());
      ASSERT_TRUE(f.env.PowerCut(test::PowerCutMode::kDropUnsynced, 1).ok());
      f.vol.reset();
    } else {
      ASSERT_TRUE(f.vol->Close().ok());
      f.vol.reset();
    }
    ASSERT_TRUE(f.Open().ok());
    EXPECT_EQ(f.vol->GetStatus().clean_open, !crash);
    EXPECT_EQ(f.vol->GetStatus().pending_zero_blocks, 40u);  // block 30's newer copy wins by the index
    ASSERT_EQ(f.ReadAll(), model.image());
    ASSERT_TRUE(f.vol->Drain(nullptr).ok());
    ASSERT_EQ(f.HomeImage(), model.image());
  }
}

// All-zero blocks of a write are logged as zero ranges: no data in the log
// (measured by the log blocks used), unless zero_detect is off.
TEST(VolumeZeroTest, ZeroBlocksAreRecordedNotStored) {
  uint64_t used[2];
  for (int detect = 0; detect < 2; detect++) {
    Fixture f;
    f.Create();
    ASSERT_TRUE(f.Open().ok());
    ASSERT_TRUE(f.vol->SetTunable("zero_detect", detect ? "on" : "off").ok());
    test::ImageModel model(kImage);
    f.Write(0, 128 * kBlockSize, 9, &model);
    ASSERT_TRUE(f.vol->Drain(nullptr).ok());
    uint64_t before = f.vol->GetStatus().log_used_blocks;
    std::vector<uint8_t> z(128 * kBlockSize, 0);
    for (int i = 0; i < 4; i++) z[(i * 40 + 3) * kBlockSize + 17] = 1;  // 4 non-zero blocks
    ASSERT_TRUE(f.vol->Write(0, z.size(), z.data()).ok());
    model.Apply(0, z.data(), z.size());
    ASSERT_EQ(f.ReadAll(), model.image());
    ASSERT_TRUE(f.vol->Flush().ok());
    used[detect] = f.vol->GetStatus().log_used_blocks - before;
    EXPECT_EQ(f.vol->GetStatus().zero_block_bytes, detect ? 124 * kBlockSize : 0);
    ASSERT_TRUE(f.vol->Drain(nullptr).ok());
    ASSERT_EQ(f.HomeImage(), model.image());
  }
  EXPECT_LE(used[1], 8u) << "4 data blocks and a header or two";
  EXPECT_GE(used[0], 128u);
}

// A zero range migrated home frees the blocks of SLOW/image (a real file
// system: st_blocks drops).
TEST(VolumeZeroTest, TrimFreesBlocksAtHome) {
  Fixture f;
  f.real_env = true;
  f.Create(8 << 20);  // the whole image fits in the log
  ASSERT_TRUE(f.Open().ok());
  test::ImageModel model(kImage);
  f.Write(0, kImage, 3, &model);
  ASSERT_TRUE(f.vol->Drain(nullptr).ok());
  struct stat st;
  ASSERT_EQ(0, ::stat((f.dirs.slow() + "/image").c_str(), &st));
  const uint64_t before = static_cast<uint64_t>(st.st_blocks) * 512;
  f.Zero(kImage / 4, kImage / 2, &model);
  ASSERT_TRUE(f.vol->Drain(nullptr).ok());
  ASSERT_EQ(0, ::stat((f.dirs.slow() + "/image").c_str(), &st));
  const uint64_t after = static_cast<uint64_t>(st.st_blocks) * 512;
  EXPECT_LE(after + kImage / 2 - 64 * 1024, before) << "before " << before << " after " << after;
  ASSERT_EQ(f.ReadAll(), model.image());
  ASSERT_EQ(f.HomeImage(), model.image());
}

// `boostvol check` reads zero entries: a volume holding zero ranges is
// consistent, and the ranges are named in the summary.
TEST(VolumeZeroTest, CheckAcceptsAndCountsZeroRanges) {
  Fixture f;
  f.Create();
  ASSERT_TRUE(f.Open().ok());
  test::ImageModel model(kImage);
  f.Write(0, 16 * kBlockSize, 1, &model);
  f.Zero(4 * kBlockSize, 8 * kBlockSize, &model);
  ASSERT_TRUE(f.vol->Close().ok());
  f.vol.reset();
  CheckReport report;
  Status s = CheckVolume(f.dirs.fast(), nullptr, &report, &f.env);
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_TRUE(report.problems.empty()) << report.problems.front();
  EXPECT_EQ(report.dirty_blocks, 8u);
  EXPECT_NE(report.summary.find("1 zero ranges of 8 blocks"), std::string::npos) << report.summary;
}

// DESIGN.md 4 with zero ranges: when the log fails for good, zero ranges still
// in RAM or in the log go home in order (holes or zeros), later zero ranges
// go straight home, and nothing flushed is lost.
TEST(VolumeZeroTest, FailedLogDegradesWithZeroRangesInOrder) {
  Fixture f;
  f.Create();
  OpenOptions oo;
  oo.fast_dir = f.dirs.fast();
  oo.env = &f.env;
  oo.start_migrator = false;
  oo.log_fail_after_ms = 300;
  ASSERT_TRUE(Volume::Open(oo, &f.vol).ok());
  test::ImageModel model(kImage);
  f.Write(0, 64 * kBlockSize, 1, &model);
  ASSERT_TRUE(f.vol->Drain(nullptr).ok());
  f.Zero(4 * kBlockSize, 8 * kBlockSize, &model);     // durable in the log
  f.Write(6 * kBlockSize, kBlockSize, 2, &model);
  ASSERT_TRUE(f.vol->Flush().ok());
  f.Zero(20 * kBlockSize, 10 * kBlockSize, &model);   // only in a RAM buffer
  f.Write(22 * kBlockSize, kBlockSize, 3, &model);
  test::FaultRule r;
  r.path_prefix = f.dirs.fast() + "/log";
  r.op = test::FaultOp::kWrite;
  f.env.InjectFault(r);
  r.op = test::FaultOp::kSync;
  f.env.InjectFault(r);
  f.Zero(40 * kBlockSize, 4 * kBlockSize + 10, &model);  // degrades, then goes home directly
  ASSERT_TRUE(f.vol->Flush().ok());
  EXPECT_EQ(f.vol->GetStatus().health, "degraded-write-through");
  model.MarkFlushed();
  ASSERT_EQ(f.ReadAll(), model.image());
  ASSERT_TRUE(f.env.PowerCut(test::PowerCutMode::kDropUnsynced, 1).ok());
  f.vol.reset();
  f.env.ClearFaults();
  ASSERT_TRUE(f.Open().ok());
  ASSERT_EQ(f.ReadAll(), model.image());
  ASSERT_EQ(f.HomeImage(), model.image());
}

}  // namespace
}  // namespace boostvol
