// The engine end to end, in process: read/write/flush/migrate/reopen against
// a model, and power cuts through the fault-injection Env checked with the
// prefix oracle (DESIGN.md 2.2, 2.3, 2.7).
#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>
#include <random>

#include "boostvol/volume.h"
#include "engine/volume_impl.h"
#include "lib/fault_injection_env.h"
#include "lib/image_model.h"
#include "lib/temp_dirs.h"

namespace boostvol {
namespace {

using test::FaultInjectionEnv;
using test::ImageModel;
using test::PowerCutMode;
using test::TempDirs;

constexpr uint64_t kImage = 2 << 20;  // 512 blocks

struct Fixture {
  TempDirs dirs;
  FaultInjectionEnv env{Env::Posix()};
  std::unique_ptr<Volume> vol;

  void Create(uint32_t segment_size = 16384, uint64_t cache = 256 << 10) {
    CreateOptions co;
    co.fast_dir = dirs.fast();
    co.slow_dir = dirs.slow();
    co.image_size = kImage;
    co.cache_size = cache;
    co.segment_size = segment_size;
    co.env = &env;
    Status s = CreateVolume(co);
    ASSERT_TRUE(s.ok()) << s.ToString();
  }
  Status Open(bool migrator = false) {
    OpenOptions oo;
    oo.fast_dir = dirs.fast();
    oo.env = &env;
    oo.start_migrator = migrator;
    oo.migrate_start_fraction = 0.25;
    oo.idle_migrate_ms = 50;
    return Volume::Open(oo, &vol);
  }
  VolumeImpl* impl() { return static_cast<VolumeImpl*>(vol.get()); }
  std::vector<uint8_t> ReadAll() {
    std::vector<uint8_t> out(kImage);
    Status s = vol->Read(0, kImage, out.data());
    EXPECT_TRUE(s.ok()) << s.ToString();
    return out;
  }
  // Keeps room in the tiny log when no migrator thread runs.
  void MakeRoom() {
    VolumeStatus st = vol->GetStatus();
    if (st.segments_live + 6 >= st.segments_total) {
      Status s = vol->Drain(nullptr);
      ASSERT_TRUE(s.ok()) << s.ToString();
    }
  }
};

void RandomWrite(std::mt19937_64& rng, Volume* vol, ImageModel* model) {
  uint64_t len;
  switch (rng() % 4) {
    case 0: len = 512 * (1 + rng() % 8); break;       // sub-block
    case 1: len = 4096; break;                        // one block
    case 2: len = 4096 * (1 + rng() % 16); break;     // up to 64 KiB aligned
    default: len = 1 + rng() % 20000; break;          // anything
  }
  uint64_t off = (rng() % 2) ? (rng() % (kImage / 4096)) * 4096 : rng() % kImage;
  if (off + len > kImage) off = kImage - len;
  std::vector<uint8_t> data(len);
  uint64_t seed = rng();
  for (size_t i = 0; i < len; i++) data[i] = static_cast<uint8_t>((seed >> (i % 56)) + i * 131);
  if (seed % 8 == 0) {
    // Zero-filled blocks inside the write (logged as zero ranges).
    uint64_t a = rng() % len, b = a + rng() % (len - a + 1);
    std::memset(data.data() + a, 0, b - a);
  }
  Status s = vol->Write(off, len, data.data());
  ASSERT_TRUE(s.ok()) << s.ToString();
  model->Apply(off, data.data(), len);
}

// TRIM / write-zeroes of a random range (aligned, unaligned, large).
void RandomZero(std::mt19937_64& rng, Volume* vol, ImageModel* model) {
  uint64_t len = rng() % 3 == 0 ? 1 + rng() % 9000 : 4096 * (1 + rng() % 96);
  uint64_t off = (rng() % 2) ? (rng() % (kImage / 4096)) * 4096 : rng() % kImage;
  if (off + len > kImage) off = kImage - len;
  Status s = vol->Zero(off, len, rng() % 2 == 0);
  ASSERT_TRUE(s.ok()) << s.ToString();
  std::vector<uint8_t> z(len, 0);
  model->Apply(off, z.data(), len);
}

TEST(VolumeTest, WritesReadBackThroughBufferLogAndHome) {
  Fixture f;
  f.Create();
  ASSERT_TRUE(f.Open().ok());
  ImageModel model(kImage);
  std::mt19937_64 rng(7);
  for (int i = 0; i < 400; i++) {
    f.MakeRoom();
    RandomWrite(rng, f.vol.get(), &model);
    if (i % 37 == 0) {
      ASSERT_EQ(f.ReadAll(), model.image()) << "after write " << i;
    }
    if (i % 50 == 0) {
      ASSERT_TRUE(f.vol->Flush().ok());
    }
  }
  ASSERT_EQ(f.ReadAll(), model.image());
  ASSERT_TRUE(f.vol->Drain(nullptr).ok());
  EXPECT_EQ(f.vol->GetStatus().dirty_blocks, 0u);
  ASSERT_EQ(f.ReadAll(), model.image());
}

TEST(VolumeTest, DrainMakesHomeByteIdentical) {
  Fixture f;
  f.Create();
  ASSERT_TRUE(f.Open().ok());
  ImageModel model(kImage);
  std::mt19937_64 rng(11);
  for (int i = 0; i < 200; i++) {
    f.MakeRoom();
    RandomWrite(rng, f.vol.get(), &model);
  }
  ASSERT_TRUE(f.vol->Drain(nullptr).ok());
  ASSERT_TRUE(f.vol->Close().ok());
  std::unique_ptr<Dir> slow;
  ASSERT_TRUE(Env::Posix()->OpenDir(f.dirs.slow(), &slow).ok());
  std::unique_ptr<File> img;
  ASSERT_TRUE(slow->OpenFile("image", OpenMode::kReadOnly, &img).ok());
  std::vector<uint8_t> home(kImage);
  ASSERT_TRUE(img->ReadAt(0, home.data(), kImage).ok());
  EXPECT_EQ(home, model.image());
}

TEST(VolumeTest, CleanReopenUsesCheckpointAndKeepsData) {
  Fixture f;
  f.Create();
  ASSERT_TRUE(f.Open().ok());
  ImageModel model(kImage);
  std::mt19937_64 rng(3);
  for (int i = 0; i < 60; i++) {
    f.MakeRoom();
    RandomWrite(rng, f.vol.get(), &model);
  }
  ASSERT_TRUE(f.vol->Close().ok());
  f.vol.reset();
  ASSERT_TRUE(f.Open().ok());
  EXPECT_TRUE(f.vol->GetStatus().clean_open);
  ASSERT_EQ(f.ReadAll(), model.image());
  // And it keeps working after the clean reopen.
  for (int i = 0; i < 60; i++) {
    f.MakeRoom();
    RandomWrite(rng, f.vol.get(), &model);
  }
  ASSERT_EQ(f.ReadAll(), model.image());
}

TEST(VolumeTest, SecondOpenOfSameFastIsRefused) {
  Fixture f;
  f.Create();
  ASSERT_TRUE(f.Open().ok());
  std::unique_ptr<Volume> second;
  OpenOptions oo;
  oo.fast_dir = f.dirs.fast();
  Status s = Volume::Open(oo, &second);
  EXPECT_TRUE(s.IsBusy()) << s.ToString();
  EXPECT_NE(s.message().find("already in use"), std::string::npos) << s.message();
}

TEST(VolumeTest, LogFullWritersWaitForMigratorInsteadOfFailing) {
  Fixture f;
  f.Create(16384, 16384 * 4);  // a 4-segment log: it wraps constantly
  ASSERT_TRUE(f.Open(/*migrator=*/true).ok());
  ImageModel model(kImage);
  std::mt19937_64 rng(5);
  for (int i = 0; i < 300; i++) RandomWrite(rng, f.vol.get(), &model);
  ASSERT_EQ(f.ReadAll(), model.image());
  EXPECT_GT(f.vol->GetStatus().migration_batches, 0u);
}

TEST(VolumeTest, FailedLogDegradesToWriteThroughAndLosesNothingFlushed) {
  Fixture f;
  f.Create();
  OpenOptions oo;
  oo.fast_dir = f.dirs.fast();
  oo.env = &f.env;
  oo.start_migrator = false;
  oo.log_fail_after_ms = 300;
  ASSERT_TRUE(Volume::Open(oo, &f.vol).ok());
  ImageModel model(kImage);
  std::mt19937_64 rng(21);
  for (int i = 0; i < 30; i++) {
    f.MakeRoom();
    RandomWrite(rng, f.vol.get(), &model);
  }
  ASSERT_TRUE(f.vol->Flush().ok());
  for (int i = 0; i < 3; i++) RandomWrite(rng, f.vol.get(), &model);  // some only in RAM buffers
  // FAST/log now fails for good: every write and sync of it (reads work: the
  // durable part of the log can still be drained home).
  test::FaultRule r;
  r.path_prefix = f.dirs.fast() + "/log";
  r.op = test::FaultOp::kWrite;
  int rule = f.env.InjectFault(r);
  r.op = test::FaultOp::kSync;
  f.env.InjectFault(r);
  for (int i = 0; i < 40; i++) {
    RandomWrite(rng, f.vol.get(), &model);  // never fails
    if (i % 10 == 0) {
      ASSERT_TRUE(f.vol->Flush().ok());      // never acknowledged unless durable (at home)
    }
  }
  EXPECT_GT(f.env.Counters(rule).fired, 0u);
  EXPECT_EQ(f.vol->GetStatus().health, "degraded-write-through");
  ASSERT_TRUE(f.vol->Flush().ok());
  model.MarkFlushed();
  ASSERT_EQ(f.ReadAll(), model.image());
  // Power goes; FAST comes back healthy. Everything flushed is there.
  ASSERT_TRUE(f.env.PowerCut(PowerCutMode::kDropUnsynced, 1).ok());
  f.vol.reset();
  f.env.ClearFaults();
  ASSERT_TRUE(f.Open().ok());
  EXPECT_EQ(f.vol->GetStatus().health, "healthy");
  ASSERT_EQ(f.ReadAll(), model.image());
}

// The randomized model check: writes (some with zero-filled blocks), zero
// ranges (TRIM / write-zeroes), flushes, migrations and power cuts in
// every mode on either directory; after each cut the image must be a prefix
// of the write history that includes everything flushed.
void PowerCutRun(uint64_t seed, int steps) {
  SCOPED_TRACE("seed " + std::to_string(seed) + " (replay: BOOSTVOL_SEED=" + std::to_string(seed) + ")");
  Fixture f;
  f.Create();
  ASSERT_TRUE(f.Open().ok());
  ImageModel model(kImage);
  std::mt19937_64 rng(seed);
  int cuts = 0;
  for (int step = 0; step < steps; step++) {
    unsigned op = rng() % 100;
    if (op < 62) {
      f.MakeRoom();
      RandomWrite(rng, f.vol.get(), &model);
    } else if (op < 70) {
      f.MakeRoom();
      RandomZero(rng, f.vol.get(), &model);
    } else if (op < 82) {
      ASSERT_TRUE(f.vol->Flush().ok());
      model.MarkFlushed();
    } else if (op < 90) {
      bool did;
      ASSERT_TRUE(f.impl()->MigrateOnce(&did).ok());
    } else {
      // A power cut, possibly in the middle of a migration batch.
      PowerCutMode mode = static_cast<PowerCutMode>(rng() % 3);
      std::string scope = rng() % 4 == 0 ? f.dirs.fast() : (rng() % 3 == 0 ? f.dirs.slow() : "");
      if (rng() % 2) {
        test::FaultRule r;
        r.path_prefix = rng() % 2 ? f.dirs.slow() : f.dirs.fast();
        r.op = test::FaultOp::kWrite;
        r.skip = rng() % 6;
        f.env.InjectFault(r);
        bool did;
        (void)f.impl()->MigrateOnce(&did);  // fails part-way
        f.env.ClearFaults();
      }
      ASSERT_TRUE(f.env.PowerCut(mode, rng(), scope).ok());
      f.vol.reset();  // the daemon died with the power
      Status s = f.Open();
      ASSERT_TRUE(s.ok()) << "reopen after a power cut (mode " << static_cast<int>(mode) << ", scope '" << scope
                          << "'): " << s.ToString();
      std::vector<uint8_t> got = f.ReadAll();
      uint64_t k;
      std::string why;
      ASSERT_TRUE(model.CheckPrefix(got, &k, &why))
          << why << " (writes " << model.writes() << ", flushed " << model.flushed() << ", cut " << cuts << ")";
      model.Reset(got);
      cuts++;
    }
  }
}

TEST(VolumeTest, PowerCutsLeaveAPrefixIncludingEveryFlush) {
  const char* fixed = std::getenv("BOOSTVOL_SEED");
  if (fixed) {
    PowerCutRun(std::strtoull(fixed, nullptr, 10), 400);
    return;
  }
  // BOOSTVOL_QUICK=1: fewer runs, for the slow sanitizer builds (scripts/sanitize.sh).
  auto flag = [](const char* name) {
    const char* v = std::getenv(name);
    return v != nullptr && std::string(v) == "1";
  };
  int runs = flag("BOOSTVOL_LONG") ? 2000 : flag("BOOSTVOL_QUICK") ? 8 : 40;
  for (int i = 0; i < runs; i++) {
    PowerCutRun(1000 + i, 150);
    if (HasFatalFailure()) return;
  }
}

}  // namespace
}  // namespace boostvol
