#include "cli/daemon_exit.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <thread>

#include "cli/mounts.h"

namespace boostvol::cli {
namespace {

// "pid 123", "pid 123 (check)" -> 123; 0 if the note says no pid.
int PidFromNote(const std::string& note) {
  if (note.rfind("pid ", 0) != 0) return 0;
  char* end = nullptr;
  const long v = std::strtol(note.c_str() + 4, &end, 10);
  if (end == note.c_str() + 4 || v <= 0 || v > (1L << 22)) return 0;
  return static_cast<int>(v);
}

// True if process `pid` has the file (dev, ino) open. False if not, or if its
// descriptors cannot be listed (another user's process, or gone).
bool HasFileOpen(int pid, dev_t dev, ino_t ino) {
  const std::string dir = "/proc/" + std::to_string(pid) + "/fd/";
  for (const std::string& fd : ListDir(dir)) {
    struct stat st;
    if (::stat((dir + fd).c_str(), &st) == 0 && st.st_dev == dev && st.st_ino == ino) return true;
  }
  return false;
}

}  // namespace

DaemonExitWatch::DaemonExitWatch(const std::string& fast_dir) : fast_dir_(fast_dir) {
  std::string note;
  if (!VolumeLockHeld(fast_dir_, &note)) return;
  pid_ = PidFromNote(note);
  if (pid_ == 0) return;
  // Opened while the lock is (just) held: if the holder exited in between,
  // pidfd_open fails (ESRCH) or finds a zombie, and either way Gone() sees it.
  pidfd_ = static_cast<int>(::syscall(SYS_pidfd_open, pid_, 0));
  // Without a pidfd (ENOSYS before Linux 5.3), only the lock is waited for.
  if (pidfd_ < 0) return;
  // The pid is the holder's in its own pid namespace: a daemon started in a
  // container writes a number that may name another process here. Only a
  // process that has FAST/lock open is waited for; any other, or one whose
  // descriptors this user cannot list, leaves the lock as all there is.
  struct stat lock_st;
  const std::string lock_path = fast_dir_ + "/lock";
  if (::fstatat(AT_FDCWD, lock_path.c_str(), &lock_st, AT_SYMLINK_NOFOLLOW) != 0 ||
      !HasFileOpen(pid_, lock_st.st_dev, lock_st.st_ino)) {
    ::close(pidfd_);
    pidfd_ = -1;
  }
}

DaemonExitWatch::~DaemonExitWatch() {
  if (pidfd_ >= 0) ::close(pidfd_);
}

bool DaemonExitWatch::Wait(std::chrono::steady_clock::time_point deadline, std::string* note,
                           const std::function<void(const std::string&)>& on_slow) {
  const auto start = std::chrono::steady_clock::now();
  bool told = false;
  while (!Gone(note, 50)) {
    const auto now = std::chrono::steady_clock::now();
    if (now >= deadline) return false;
    if (!told && now - start > std::chrono::seconds(2)) {
      if (on_slow) on_slow(*note);
      told = true;
    }
  }
  return true;
}

bool DaemonExitWatch::Gone(std::string* note, int wait_ms) {
  if (VolumeLockHeld(fast_dir_, note)) {
    std::this_thread::sleep_for(std::chrono::milliseconds(wait_ms));
    return false;
  }
  if (pidfd_ < 0) return true;
  // A pidfd polls readable once the process has exited (zombie or reaped).
  struct pollfd p = {pidfd_, POLLIN, 0};
  int rc = ::poll(&p, 1, wait_ms);
  if (rc < 0 && errno != EINTR) return true;  // cannot watch: the lock is all we have
  if (rc > 0) return true;
  *note = "pid " + std::to_string(pid_);
  return false;
}

}  // namespace boostvol::cli
