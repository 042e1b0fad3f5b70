#include "cli/daemon_exit.h"

#include <poll.h>
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
}

DaemonExitWatch::~DaemonExitWatch() {
  if (pidfd_ >= 0) ::close(pidfd_);
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
