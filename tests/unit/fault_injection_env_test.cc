#include "lib/fault_injection_env.h"

#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cerrno>
#include <cstdlib>
#include <set>
#include <string>
#include <thread>
#include <vector>

namespace boostvol::test {
namespace {

constexpr size_t kS = FaultInjectionEnv::kSectorSize;

class FaultInjectionEnvTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* tmp = std::getenv("TMPDIR");
    std::string tmpl = std::string(tmp != nullptr ? tmp : "/tmp") + "/bv_fault_XXXXXX";
    ASSERT_NE(nullptr, ::mkdtemp(tmpl.data()));
    root_ = tmpl;
    fast_ = root_ + "/fast";
    slow_ = root_ + "/slow";
    ASSERT_EQ(0, ::mkdir(fast_.c_str(), 0700));
    ASSERT_EQ(0, ::mkdir(slow_.c_str(), 0700));
    ASSERT_TRUE(env_.OpenDir(fast_, &dir_).ok());
  }
  void TearDown() override {
    dir_.reset();
    std::string cmd = "rm -rf '" + root_ + "'";
    ASSERT_EQ(0, std::system(cmd.c_str()));
  }

  // Reads `name` in `dir` straight from the real file system.
  std::string ReadReal(const std::string& dir, const std::string& name) {
    std::unique_ptr<Dir> d;
    EXPECT_TRUE(Env::Posix()->OpenDir(dir, &d).ok());
    std::unique_ptr<File> f;
    Status s = d->OpenFile(name, OpenMode::kReadOnly, &f);
    if (!s.ok()) return "<" + s.ToString() + ">";
    FileInfo info;
    EXPECT_TRUE(f->Stat(&info).ok());
    std::string data(info.size, '\0');
    EXPECT_TRUE(f->ReadAt(0, data.data(), data.size()).ok());
    return data;
  }
  bool ExistsReal(const std::string& path) {
    struct stat st;
    return ::lstat(path.c_str(), &st) == 0;
  }
  std::unique_ptr<File> Create(Dir* d, const std::string& name) {
    std::unique_ptr<File> f;
    Status s = d->OpenFile(name, OpenMode::kCreate, &f);
    EXPECT_TRUE(s.ok()) << s.ToString();
    return f;
  }
  // A synced file of `n` bytes of `fill`, whose directory entry is durable.
  std::unique_ptr<File> SyncedFile(const std::string& name, size_t n, char fill) {
    auto f = Create(dir_.get(), name);
    std::string data(n, fill);
    EXPECT_TRUE(f->WriteAt(0, data.data(), n).ok());
    EXPECT_TRUE(f->Sync().ok());
    EXPECT_TRUE(dir_->Sync().ok());
    return f;
  }

  FaultInjectionEnv env_{Env::Posix()};
  std::string root_, fast_, slow_;
  std::unique_ptr<Dir> dir_;
};

TEST_F(FaultInjectionEnvTest, DropUnsyncedRevertsInPlaceOverwrites) {
  auto f = SyncedFile("log", 4 * kS, 'A');
  std::string b(kS + 100, 'B');
  ASSERT_TRUE(f->WriteAt(kS - 50, b.data(), b.size()).ok());  // dirties sectors 0..2
  EXPECT_EQ(3u, env_.UnsyncedSectors(fast_ + "/log"));
  char c;
  ASSERT_TRUE(f->ReadAt(kS, &c, 1).ok());
  EXPECT_EQ('B', c);  // the page cache sees it

  PowerCutReport r;
  ASSERT_TRUE(env_.PowerCut(PowerCutMode::kDropUnsynced, 1, "", &r).ok());
  EXPECT_EQ(3u, r.sectors_reverted);
  EXPECT_EQ(0u, r.sectors_kept);
  EXPECT_EQ(std::string(4 * kS, 'A'), ReadReal(fast_, "log"));
}

TEST_F(FaultInjectionEnvTest, SyncMakesWritesDurable) {
  auto f = SyncedFile("log", 2 * kS, 'A');
  ASSERT_TRUE(f->WriteAt(0, "xyz", 3).ok());
  ASSERT_TRUE(f->Sync().ok());
  EXPECT_EQ(0u, env_.UnsyncedSectors(fast_ + "/log"));
  ASSERT_TRUE(f->WriteAt(kS, "q", 1).ok());
  ASSERT_TRUE(env_.PowerCut(PowerCutMode::kDropUnsynced, 1).ok());
  std::string want(2 * kS, 'A');
  want.replace(0, 3, "xyz");
  EXPECT_EQ(want, ReadReal(fast_, "log"));
}

TEST_F(FaultInjectionEnvTest, SizesRevert) {
  auto grow = SyncedFile("grow", 1000, 'G');
  std::string more(5000, 'M');
  ASSERT_TRUE(grow->WriteAt(1000, more.data(), more.size()).ok());
  ASSERT_TRUE(grow->Allocate(0, 1 << 16).ok());
  auto shrink = SyncedFile("shrink", 3000, 'S');
  ASSERT_TRUE(shrink->Truncate(700).ok());
  auto punch = SyncedFile("punch", 4 * kS, 'P');
  Status s = punch->PunchHole(kS, 2 * kS);
  if (s.err() != EOPNOTSUPP) {
    ASSERT_TRUE(s.ok()) << s.ToString();
  }

  ASSERT_TRUE(env_.PowerCut(PowerCutMode::kDropUnsynced, 9).ok());
  EXPECT_EQ(std::string(1000, 'G'), ReadReal(fast_, "grow"));
  EXPECT_EQ(std::string(3000, 'S'), ReadReal(fast_, "shrink"));
  EXPECT_EQ(std::string(4 * kS, 'P'), ReadReal(fast_, "punch"));
}

// Runs one scenario into a fresh directory `sub` and returns the result.
std::string RandomSubsetOnce(FaultInjectionEnv* env, const std::string& dir,
                             uint64_t seed) {
  std::unique_ptr<Dir> d;
  EXPECT_TRUE(env->OpenDir(dir, &d).ok());
  std::unique_ptr<File> f;
  EXPECT_TRUE(d->OpenFile("f", OpenMode::kCreate, &f).ok());
  std::string old(64 * kS, 'o');
  EXPECT_TRUE(f->WriteAt(0, old.data(), old.size()).ok());
  EXPECT_TRUE(f->Sync().ok());
  EXPECT_TRUE(d->Sync().ok());
  std::string neu(64 * kS, 'n');
  EXPECT_TRUE(f->WriteAt(0, neu.data(), neu.size()).ok());
  EXPECT_TRUE(env->PowerCut(PowerCutMode::kKeepRandomSubset, seed, dir).ok());
  std::unique_ptr<Dir> real;
  EXPECT_TRUE(Env::Posix()->OpenDir(dir, &real).ok());
  std::unique_ptr<File> rf;
  EXPECT_TRUE(real->OpenFile("f", OpenMode::kReadOnly, &rf).ok());
  std::string got(64 * kS, '\0');
  EXPECT_TRUE(rf->ReadAt(0, got.data(), got.size()).ok());
  return got;
}

TEST_F(FaultInjectionEnvTest, KeepRandomSubsetIsPerSectorAndReproducible) {
  std::vector<std::string> dirs;
  for (int i = 0; i < 3; ++i) {
    dirs.push_back(root_ + "/r" + std::to_string(i));
    ASSERT_EQ(0, ::mkdir(dirs.back().c_str(), 0700));
  }
  std::string a = RandomSubsetOnce(&env_, dirs[0], 1234);
  std::string b = RandomSubsetOnce(&env_, dirs[1], 1234);
  std::string c = RandomSubsetOnce(&env_, dirs[2], 99);
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
  size_t kept = 0;
  for (size_t s = 0; s < 64; ++s) {
    std::string sector = a.substr(s * kS, kS);
    bool all_new = sector == std::string(kS, 'n');
    bool all_old = sector == std::string(kS, 'o');
    ASSERT_TRUE(all_new || all_old) << "sector " << s << " is a mix";
    kept += all_new;
  }
  EXPECT_GT(kept, 0u);
  EXPECT_LT(kept, 64u);
}

TEST_F(FaultInjectionEnvTest, TornLastWriteKeepsAPrefix) {
  std::set<size_t> prefixes;
  for (uint64_t seed = 0; seed < 12; ++seed) {
    auto f = SyncedFile("log", 32 * kS, 'o');
    std::string early(kS, 'e');
    ASSERT_TRUE(f->WriteAt(20 * kS, early.data(), early.size()).ok());  // unsynced, then dropped
    std::string last(16 * kS, 'L');
    ASSERT_TRUE(f->WriteAt(2 * kS, last.data(), last.size()).ok());
    ASSERT_TRUE(env_.PowerCut(PowerCutMode::kTornLastWrite, seed).ok());
    std::string got = ReadReal(fast_, "log");
    ASSERT_EQ(32 * kS, got.size());
    size_t k = 0;
    while (k < 16 && got.substr((2 + k) * kS, kS) == std::string(kS, 'L')) ++k;
    std::string want(32 * kS, 'o');
    want.replace(2 * kS, k * kS, std::string(k * kS, 'L'));
    ASSERT_EQ(want, got) << "seed " << seed << ": not a prefix of the last write";
    prefixes.insert(k);
    EXPECT_EQ(EIO, dir_->Sync().err());  // dir_ died with the cut; reopen it
    ASSERT_TRUE(env_.OpenDir(fast_, &dir_).ok());
    ASSERT_TRUE(dir_->Remove("log").ok());
    ASSERT_TRUE(dir_->Sync().ok());
  }
  EXPECT_GE(prefixes.size(), 3u) << "the tear point should vary with the seed";
}

TEST_F(FaultInjectionEnvTest, UnsyncedCreateAndRenameAreUndone) {
  auto keep = SyncedFile("stamp", 10, 'K');  // durable: content and entry
  auto tmp = Create(dir_.get(), "stamp.tmp");
  ASSERT_TRUE(tmp->WriteAt(0, "new stamp", 9).ok());
  ASSERT_TRUE(tmp->Sync().ok());  // data synced, directory not
  ASSERT_TRUE(dir_->Rename("stamp.tmp", "stamp").ok());
  auto fresh = Create(dir_.get(), "fresh");
  EXPECT_EQ("new stamp", ReadReal(fast_, "stamp"));

  PowerCutReport r;
  ASSERT_TRUE(env_.PowerCut(PowerCutMode::kDropUnsynced, 3, "", &r).ok());
  EXPECT_EQ(3u, r.dir_ops_undone);
  EXPECT_EQ(std::string(10, 'K'), ReadReal(fast_, "stamp"));
  EXPECT_FALSE(ExistsReal(fast_ + "/stamp.tmp"));
  EXPECT_FALSE(ExistsReal(fast_ + "/fresh"));
}

TEST_F(FaultInjectionEnvTest, DirSyncMakesRenameDurable) {
  auto keep = SyncedFile("stamp", 10, 'K');
  auto tmp = Create(dir_.get(), "stamp.tmp");
  ASSERT_TRUE(tmp->WriteAt(0, "new stamp", 9).ok());
  ASSERT_TRUE(tmp->Sync().ok());
  ASSERT_TRUE(dir_->Rename("stamp.tmp", "stamp").ok());
  ASSERT_TRUE(dir_->Sync().ok());
  ASSERT_TRUE(env_.PowerCut(PowerCutMode::kDropUnsynced, 3).ok());
  EXPECT_EQ("new stamp", ReadReal(fast_, "stamp"));
}

TEST_F(FaultInjectionEnvTest, RemoveIsDurableAtOnce) {
  auto f = SyncedFile("old", 10, 'x');
  f.reset();
  ASSERT_TRUE(dir_->Remove("old").ok());
  ASSERT_TRUE(env_.PowerCut(PowerCutMode::kDropUnsynced, 3).ok());
  EXPECT_FALSE(ExistsReal(fast_ + "/old"));
}

TEST_F(FaultInjectionEnvTest, HandlesDieAndLocksAreReleased) {
  auto f = SyncedFile("log", kS, 'a');
  std::unique_ptr<FileLock> lock;
  ASSERT_TRUE(dir_->LockFile("lock", "pid 1", &lock).ok());
  std::unique_ptr<Dir> again;
  ASSERT_TRUE(env_.OpenDir(fast_, &again).ok());
  std::unique_ptr<FileLock> second;
  EXPECT_TRUE(again->LockFile("lock", "pid 2", &second).IsBusy());
  again.reset();

  PowerCutReport r;
  ASSERT_TRUE(env_.PowerCut(PowerCutMode::kDropUnsynced, 1, "", &r).ok());
  EXPECT_GE(r.handles_killed, 3u);
  char buf[4];
  Status s = f->ReadAt(0, buf, 4);
  EXPECT_EQ(EIO, s.err());
  EXPECT_NE(std::string::npos, s.message().find("simulated power cut")) << s.message();
  EXPECT_EQ(EIO, f->WriteAt(0, buf, 4).err());
  EXPECT_EQ(EIO, f->Sync().err());
  FileInfo info;
  EXPECT_EQ(EIO, f->Stat(&info).err());
  EXPECT_EQ(EIO, dir_->Sync().err());
  std::unique_ptr<File> g;
  EXPECT_EQ(EIO, dir_->OpenFile("log", OpenMode::kReadOnly, &g).err());

  // The volume can be opened again through the same env.
  ASSERT_TRUE(env_.OpenDir(fast_, &again).ok());
  ASSERT_TRUE(again->LockFile("lock", "pid 2", &second).ok());
  EXPECT_EQ("pid 2", again->LockOwnerNote("lock"));
  ASSERT_TRUE(again->OpenFile("log", OpenMode::kReadWrite, &g).ok());
  ASSERT_TRUE(g->ReadAt(0, buf, 4).ok());
  EXPECT_EQ('a', buf[0]);
  lock.reset();  // destroying a dead lock is harmless
}

TEST_F(FaultInjectionEnvTest, PowerCutCanBeLimitedToOneDirectory) {
  auto f = SyncedFile("log", kS, 'a');
  std::unique_ptr<Dir> slow;
  ASSERT_TRUE(env_.OpenDir(slow_ + "/", &slow).ok());
  auto home = Create(slow.get(), "image");
  ASSERT_TRUE(home->WriteAt(0, "home", 4).ok());
  ASSERT_TRUE(f->WriteAt(0, "fast", 4).ok());

  ASSERT_TRUE(env_.PowerCut(PowerCutMode::kDropUnsynced, 1, slow_).ok());
  EXPECT_FALSE(ExistsReal(slow_ + "/image"));  // never synced anything
  EXPECT_EQ(EIO, home->WriteAt(0, "x", 1).err());
  ASSERT_TRUE(f->WriteAt(4, "!", 1).ok());  // FAST still has power
  EXPECT_EQ(1u, env_.UnsyncedSectors(fast_ + "/log"));
  EXPECT_EQ("fast!", ReadReal(fast_, "log").substr(0, 5));
}

TEST_F(FaultInjectionEnvTest, FaultRulesFireAndCount) {
  auto f = SyncedFile("log", kS, 'a');
  char buf[8];

  FaultRule always;
  always.path_prefix = fast_ + "/log";
  always.op = FaultOp::kRead;
  int id = env_.InjectFault(always);
  Status s = f->ReadAt(0, buf, 8);
  EXPECT_EQ(EIO, s.err());
  EXPECT_NE(std::string::npos, s.message().find("injected")) << s.message();
  EXPECT_EQ(EIO, f->ReadAt(0, buf, 8).err());
  EXPECT_TRUE(f->WriteAt(0, "w", 1).ok());  // other ops pass
  EXPECT_EQ(2u, env_.Counters(id).matched);
  EXPECT_EQ(2u, env_.Counters(id).fired);
  env_.ClearFaults();
  EXPECT_TRUE(f->ReadAt(0, buf, 8).ok());
  EXPECT_EQ(2u, env_.Counters(id).fired);

  FaultRule skip_then_two;
  skip_then_two.path_prefix = fast_;  // a directory covers its files
  skip_then_two.op = FaultOp::kWrite;
  skip_then_two.err = ENOSPC;
  skip_then_two.skip = 2;
  skip_then_two.count = 2;
  id = env_.InjectFault(skip_then_two);
  std::vector<int> errs;
  for (int i = 0; i < 6; ++i) errs.push_back(f->WriteAt(0, "w", 1).err());
  EXPECT_EQ((std::vector<int>{0, 0, ENOSPC, ENOSPC, 0, 0}), errs);
  EXPECT_EQ(6u, env_.Counters(id).matched);
  EXPECT_EQ(2u, env_.Counters(id).fired);
  env_.ClearFaults();

  FaultRule other_dir;
  other_dir.path_prefix = fast_ + "/lo";  // not a component prefix of ".../log"
  id = env_.InjectFault(other_dir);
  EXPECT_TRUE(f->ReadAt(0, buf, 8).ok());
  EXPECT_EQ(0u, env_.Counters(id).matched);
  env_.ClearFaults();

  FaultRule coin;
  coin.op = FaultOp::kAny;
  coin.probability = 0.5;
  coin.seed = 77;
  id = env_.InjectFault(coin);
  int failed = 0;
  for (int i = 0; i < 200; ++i) failed += !f->ReadAt(0, buf, 8).ok();
  EXPECT_EQ(200u, env_.Counters(id).matched);
  EXPECT_EQ(static_cast<uint64_t>(failed), env_.Counters(id).fired);
  EXPECT_GT(failed, 50);
  EXPECT_LT(failed, 150);
  env_.ClearFaults();

  FaultRule open;
  open.op = FaultOp::kOpen;
  open.err = EACCES;
  id = env_.InjectFault(open);
  std::unique_ptr<File> g;
  EXPECT_EQ(EACCES, dir_->OpenFile("log", OpenMode::kReadOnly, &g).err());
  std::unique_ptr<Dir> d;
  EXPECT_EQ(EACCES, env_.OpenDir(slow_, &d).err());
  EXPECT_EQ(2u, env_.Counters(id).fired);
  env_.ClearFaults();
}

TEST_F(FaultInjectionEnvTest, FailedSyncDropsTheDirtyData) {
  auto f = SyncedFile("image", 4 * kS, 'o');
  std::string neu(2 * kS, 'n');
  ASSERT_TRUE(f->WriteAt(kS, neu.data(), neu.size()).ok());
  ASSERT_TRUE(f->WriteAt(4 * kS, neu.data(), neu.size()).ok());  // grows the file
  FaultRule once;
  once.path_prefix = fast_ + "/image";
  once.op = FaultOp::kSync;
  once.count = 1;
  int id = env_.InjectFault(once);
  EXPECT_EQ(EIO, f->Sync().err());
  EXPECT_EQ(1u, env_.Counters(id).fired);
  // The retry "succeeds", but the data is gone (fsyncgate).
  EXPECT_TRUE(f->Sync().ok());
  EXPECT_EQ(std::string(4 * kS, 'o'), ReadReal(fast_, "image"));
  // Rewriting, then syncing, is what makes it durable.
  ASSERT_TRUE(f->WriteAt(kS, neu.data(), neu.size()).ok());
  ASSERT_TRUE(f->Sync().ok());
  ASSERT_TRUE(env_.PowerCut(PowerCutMode::kDropUnsynced, 1).ok());
  std::string want(4 * kS, 'o');
  want.replace(kS, 2 * kS, neu);
  EXPECT_EQ(want, ReadReal(fast_, "image"));
}

TEST_F(FaultInjectionEnvTest, ConcurrentWritersAndACut) {
  auto f = SyncedFile("log", 64 * kS, 'o');
  std::vector<std::thread> ts;
  for (int t = 0; t < 4; ++t) {
    ts.emplace_back([&, t] {
      std::string s(kS, static_cast<char>('a' + t));
      for (int i = t; i < 64; i += 4) {
        EXPECT_TRUE(f->WriteAt(static_cast<uint64_t>(i) * kS, s.data(), s.size()).ok());
        if (i % 8 == 0) {
          EXPECT_TRUE(f->Sync().ok());
        }
      }
    });
  }
  for (auto& t : ts) t.join();
  ASSERT_TRUE(f->Sync().ok());
  ASSERT_TRUE(env_.PowerCut(PowerCutMode::kKeepRandomSubset, 5).ok());
  std::string got = ReadReal(fast_, "log");
  for (int i = 0; i < 64; ++i) {
    EXPECT_EQ(std::string(kS, static_cast<char>('a' + i % 4)), got.substr(i * kS, kS)) << i;
  }
}

}  // namespace
}  // namespace boostvol::test
