// Reads inside a NoWaitScope (src/util/blocking_hint.h), as the FUSE server's
// workers make them (fuse_server.cc, do_read): what the page cache holds is
// read at once; a read that would wait for the disk returns WouldBlock and
// changes nothing (no counter moves), and the same read outside the scope
// returns the data.
#include <fcntl.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "boostvol/volume.h"
#include "lib/page_cache.h"
#include "lib/small_volume.h"
#include "lib/temp_dirs.h"
#include "util/blocking_hint.h"

namespace boostvol {
namespace {

using test::EvictPageCache;
using test::TempDirs;

constexpr uint64_t kBlock = 4096;
constexpr uint64_t kImage = 2 << 20;  // 512 blocks

struct Fixture {
  TempDirs dirs;
  std::unique_ptr<Volume> vol;

  void SetUp(const std::vector<uint8_t>* home_block4 = nullptr) {
    Status s = CreateVolume(test::SmallVolumeOptions(dirs, kImage, 256 << 10, 16384));
    ASSERT_TRUE(s.ok()) << s.ToString();
    if (home_block4 != nullptr) {  // data on the disk at home (a hole reads as zeros without waiting)
      int fd = ::open((dirs.slow() + "/image").c_str(), O_WRONLY | O_CLOEXEC);
      ASSERT_GE(fd, 0);
      ASSERT_EQ(::pwrite(fd, home_block4->data(), kBlock, 4 * kBlock), static_cast<ssize_t>(kBlock));
      ::close(fd);
    }
    OpenOptions oo;
    oo.fast_dir = dirs.fast();
    oo.start_migrator = false;
    s = Volume::Open(oo, &vol);
    ASSERT_TRUE(s.ok()) << s.ToString();
  }
  void TearDown() {
    if (vol) {
      EXPECT_TRUE(vol->Close().ok());
    }
  }
  // A read that returned WouldBlock was not counted anywhere.
  void ExpectNothingCounted(const VolumeStatus& before) {
    const VolumeStatus now = vol->GetStatus();
    EXPECT_EQ(now.reads, before.reads);
    EXPECT_EQ(now.bytes_read, before.bytes_read);
    EXPECT_EQ(now.read_blocks_cache, before.read_blocks_cache);
    EXPECT_EQ(now.read_blocks_home, before.read_blocks_home);
  }
  Status ReadNoWait(uint64_t lba, uint32_t blocks, std::vector<uint8_t>* out) {
    out->assign(blocks * kBlock, 0);
    NoWaitScope no_wait(true);
    return vol->Read(lba * kBlock, out->size(), out->data());
  }
};

TEST(NoWaitReadTest, ALogReadThatWouldWaitReturnsWouldBlockAndCountsNothing) {
  Fixture f;
  ASSERT_NO_FATAL_FAILURE(f.SetUp());
  std::vector<uint8_t> data(kBlock, 0xAB), got;
  ASSERT_TRUE(f.vol->Write(7 * kBlock, kBlock, data.data()).ok());
  ASSERT_TRUE(f.vol->Flush().ok());  // the record is in the log file, no longer in a buffer
  ASSERT_NO_FATAL_FAILURE(EvictPageCache(f.dirs.fast() + "/log"));
  const VolumeStatus before = f.vol->GetStatus();

  Status s = f.ReadNoWait(7, 1, &got);
  EXPECT_TRUE(s.IsWouldBlock()) << s.ToString();
  f.ExpectNothingCounted(before);

  // Outside the scope the read waits, and fills the page cache...
  got.assign(kBlock, 0);
  ASSERT_TRUE(f.vol->Read(7 * kBlock, kBlock, got.data()).ok());
  EXPECT_EQ(got, data);
  // ... so the next one inside it is served at once.
  s = f.ReadNoWait(7, 1, &got);
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(got, data);
  EXPECT_EQ(f.vol->GetStatus().reads, before.reads + 2);
  f.TearDown();
}

TEST(NoWaitReadTest, AHomeReadThatWouldWaitReturnsWouldBlockAndCountsNothing) {
  Fixture f;
  const std::vector<uint8_t> home(kBlock, 0x3E);
  ASSERT_NO_FATAL_FAILURE(f.SetUp(&home));
  std::vector<uint8_t> data(kBlock, 0x5C), got;
  // Block 3 is in the log's buffer (served at once); block 4 lives only at home.
  ASSERT_TRUE(f.vol->Write(3 * kBlock, kBlock, data.data()).ok());
  ASSERT_NO_FATAL_FAILURE(EvictPageCache(f.dirs.slow() + "/image"));
  const VolumeStatus before = f.vol->GetStatus();

  Status s = f.ReadNoWait(3, 2, &got);
  EXPECT_TRUE(s.IsWouldBlock()) << s.ToString();
  f.ExpectNothingCounted(before);

  got.assign(2 * kBlock, 0xFF);
  ASSERT_TRUE(f.vol->Read(3 * kBlock, 2 * kBlock, got.data()).ok());
  EXPECT_TRUE(std::equal(data.begin(), data.end(), got.begin()));
  EXPECT_EQ(std::vector<uint8_t>(got.begin() + kBlock, got.end()), home);
  const VolumeStatus after = f.vol->GetStatus();
  EXPECT_EQ(after.reads, before.reads + 1);
  EXPECT_EQ(after.read_blocks_cache, before.read_blocks_cache + 1);
  EXPECT_EQ(after.read_blocks_home, before.read_blocks_home + 1);
  f.TearDown();
}

// A read of more than one 256-block chunk is not tried inside the scope: a
// first chunk read and counted before a second one would wait could not be
// undone.
TEST(NoWaitReadTest, AReadOfMoreThanOneChunkIsNotTried) {
  Fixture f;
  ASSERT_NO_FATAL_FAILURE(f.SetUp());
  std::vector<uint8_t> data(kBlock, 0x77), got;
  ASSERT_TRUE(f.vol->Write(0, kBlock, data.data()).ok());  // in the log's buffer: readable at once
  const VolumeStatus before = f.vol->GetStatus();
  Status s = f.ReadNoWait(0, 256, &got);
  ASSERT_TRUE(s.ok()) << s.ToString();  // one chunk: served
  s = f.ReadNoWait(0, 257, &got);
  EXPECT_TRUE(s.IsWouldBlock()) << s.ToString();
  const VolumeStatus after = f.vol->GetStatus();
  EXPECT_EQ(after.reads, before.reads + 1);
  EXPECT_EQ(after.read_blocks_cache + after.read_blocks_home, before.read_blocks_cache + before.read_blocks_home + 256);
  f.TearDown();
}

}  // namespace
}  // namespace boostvol
