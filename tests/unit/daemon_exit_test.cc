// DaemonExitWatch (src/cli/daemon_exit.h): `boostvol unmount` returns only
// once the daemon's process is gone, not as soon as it released FAST/lock.
// A child process stands in for the daemon: it takes FAST/lock the way the
// daemon does (Dir::LockFile, note "pid N"), releases it on a word from the
// test, and exits some time later.
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <csignal>
#include <string>

#include "cli/daemon_exit.h"
#include "lib/temp_dirs.h"
#include "util/env.h"

namespace boostvol::cli {
namespace {

using Clock = std::chrono::steady_clock;

class DaemonExitWatchTest : public ::testing::Test {
 protected:
  void TearDown() override {
    if (child_ > 0) {
      ::kill(child_, SIGKILL);
      ::waitpid(child_, nullptr, 0);
    }
    for (int fd : go_) {
      if (fd >= 0) ::close(fd);
    }
  }

  // Forks the stand-in daemon. It holds FAST/lock until a byte arrives on
  // go_[1] (or for ever if `release` is false), then exits `linger_ms` after
  // releasing it. The note names `note_pid`, or the child itself if 0.
  // Returns once the lock is held.
  void StartHolder(bool release, int linger_ms, pid_t note_pid = 0) {
    int ready[2];
    ASSERT_EQ(0, ::pipe(ready));
    ASSERT_EQ(0, ::pipe(go_));
    child_ = ::fork();
    ASSERT_GE(child_, 0);
    if (child_ == 0) {
      std::unique_ptr<Dir> dir;
      std::unique_ptr<FileLock> lock;
      if (!Env::Posix()->OpenDir(fast_, &dir).ok()) ::_exit(2);
      const pid_t named = note_pid != 0 ? note_pid : ::getpid();
      if (!dir->LockFile("lock", "pid " + std::to_string(named), &lock).ok()) ::_exit(3);
      char c = 1;
      if (::write(ready[1], &c, 1) != 1) ::_exit(4);
      if (!release) {
        for (;;) ::pause();
      }
      if (::read(go_[0], &c, 1) != 1) ::_exit(5);
      lock.reset();  // FAST/lock is free from here on
      ::usleep(static_cast<useconds_t>(linger_ms) * 1000);
      ::_exit(0);
    }
    ::close(ready[1]);
    char c = 0;
    ASSERT_EQ(1, ::read(ready[0], &c, 1)) << "the stand-in daemon did not take the lock";
    ::close(ready[0]);
  }
  void Release() {
    char c = 1;
    ASSERT_EQ(1, ::write(go_[1], &c, 1));
  }
  // True if the child has exited (a zombie of ours counts), without waiting.
  bool ChildExited() {
    int st = 0;
    pid_t r = ::waitpid(child_, &st, WNOHANG);
    if (r == child_) {
      child_ = -1;
      return true;
    }
    return false;
  }

  test::TempDirs dirs_;
  const std::string fast_ = dirs_.fast();
  pid_t child_ = -1;
  int go_[2] = {-1, -1};
};

TEST_F(DaemonExitWatchTest, WaitsForTheProcessNotOnlyForTheLock) {
  StartHolder(/*release=*/true, /*linger_ms=*/400);
  DaemonExitWatch watch(fast_);  // taken while the lock is held, as unmount does before unmounting
  Release();
  std::string note;
  ASSERT_TRUE(watch.Wait(Clock::now() + std::chrono::seconds(30), &note));
  // The lock went at once; the process lingered 400 ms more. A wait on the
  // lock alone returns in between, and the child is still running then.
  EXPECT_TRUE(ChildExited()) << "Wait returned while the lock holder's process was still running";
}

// A daemon in another pid namespace writes its own number, which may name an
// unrelated process here: that process (this test, which never exits) must
// not be waited for, only the lock.
TEST_F(DaemonExitWatchTest, APidThatDoesNotHoldTheLockIsNotWaitedFor) {
  StartHolder(/*release=*/true, /*linger_ms=*/0, /*note_pid=*/::getpid());
  DaemonExitWatch watch(fast_);
  Release();
  std::string note;
  EXPECT_TRUE(watch.Wait(Clock::now() + std::chrono::seconds(30), &note))
      << "waited for a process that never held the lock: " << note;
}

TEST_F(DaemonExitWatchTest, NobodyHoldingTheLockReturnsAtOnce) {
  DaemonExitWatch watch(fast_);
  std::string note = "x";
  ASSERT_TRUE(watch.Wait(Clock::now() + std::chrono::seconds(30), &note));
}

TEST_F(DaemonExitWatchTest, AHolderThatNeverLetsGoTimesOutNamingItsPid) {
  StartHolder(/*release=*/false, 0);
  DaemonExitWatch watch(fast_);
  std::string note;
  bool told = false;
  const auto t0 = Clock::now();
  EXPECT_FALSE(watch.Wait(t0 + std::chrono::milliseconds(2500), &note, [&](const std::string&) { told = true; }));
  EXPECT_EQ("pid " + std::to_string(child_), note);
  EXPECT_TRUE(told) << "the slow-wait callback runs after two seconds";
  EXPECT_GE(Clock::now() - t0, std::chrono::milliseconds(2500));
}

}  // namespace
}  // namespace boostvol::cli
