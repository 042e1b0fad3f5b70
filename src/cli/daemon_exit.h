// Waiting for the daemon of a volume to be gone, not only to have released
// FAST/lock.
//
// The daemon releases FAST/lock after its checkpoint and then exits; between
// the two it is still a process whose command line names FAST (destructors,
// log flush). A caller that promises "the daemon has stopped" (unmount, a
// failed `mount --loop`) must wait for the process too, or a script that
// checks for leftovers right after finds one.
//
// The pid is taken from the lock note ("pid N") while the lock is held, so it
// names the daemon and no later process; a pidfd then tells its exit without
// any pid-reuse race. It is waited for only if that process has FAST/lock
// open (a pid written in another pid namespace may name someone else here);
// otherwise the wait is for the lock alone. Not thread-safe (one waiter).
#pragma once

#include <chrono>
#include <functional>
#include <string>

namespace boostvol::cli {

class DaemonExitWatch {
 public:
  // Captures the holder of FAST/lock, if one holds it now. Call it before
  // asking the daemon to stop.
  explicit DaemonExitWatch(const std::string& fast_dir);
  ~DaemonExitWatch();
  DaemonExitWatch(const DaemonExitWatch&) = delete;
  DaemonExitWatch& operator=(const DaemonExitWatch&) = delete;

  // Waits until FAST/lock is free and the captured process (if any) has
  // exited. Returns false at `deadline`; *note is then what the holder wrote
  // in the lock, or "pid N" if only the exit is missing. `on_slow`, if given,
  // runs once after two seconds of waiting (to tell a person why nothing
  // happens).
  bool Wait(std::chrono::steady_clock::time_point deadline, std::string* note,
            const std::function<void(const std::string&)>& on_slow = nullptr);

 private:
  // One step: true when both the lock is free and the process is gone.
  bool Gone(std::string* note, int wait_ms);

  std::string fast_dir_;
  int pid_ = 0;
  int pidfd_ = -1;
};

}  // namespace boostvol::cli
