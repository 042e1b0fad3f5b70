// StopWatchdog: bounds how long the daemon's stop may wait once its FUSE session has ended.
//
// A stop waits on the home twice: for a drain in progress (Volume::BeginClose makes it return once its current
// batch attempt returns) and for the migrator's batch (Volume::Close joins it). Both return on their own when the
// home fails, even slowly (a network home's calls time out); a home whose calls never return (a hung mount, a
// wedged client library) would keep the daemon, its lock on FAST and `boostvol unmount` waiting for ever.
//
// Armed at construction; Disarm() (or the destructor) once the volume is closed. If `seconds` pass first, it logs
// what it waited for and ends the process with _exit(exit_code). That leaves the volume as a kill -9 does:
// Volume::Close syncs the log before it waits on the migrator (unless the log is failing), so the writes are in the
// log and the next mount recovers them (DESIGN.md 3); `boostvol unmount` reports the stop as not clean. A thread
// stuck in an uninterruptible kernel wait (D state) still delays the process's exit: no user-space code can end it.
//
// Thread-safe. seconds == 0: never fires (the stop waits as long as it takes).
#ifndef BOOSTVOL_CLI_STOP_WATCHDOG_H_
#define BOOSTVOL_CLI_STOP_WATCHDOG_H_

#include <string>
#include <thread>

#include "util/thread_annotations.h"

namespace boostvol::cli {

// The bound for a stop, in seconds: $BOOSTVOL_STOP_WAIT if set (0 = no bound), else kDefaultStopWaitSeconds.
inline constexpr int kDefaultStopWaitSeconds = 60;
int StopWaitSeconds();

class StopWatchdog {
 public:
  StopWatchdog(int seconds, std::string fast_dir, int exit_code);
  ~StopWatchdog();
  StopWatchdog(const StopWatchdog&) = delete;
  StopWatchdog& operator=(const StopWatchdog&) = delete;

  void Disarm();

 private:
  void Run(int seconds);

  const std::string fast_dir_;
  const int exit_code_;
  Mutex mu_;
  CondVar cv_{&mu_};
  bool disarmed_ BV_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace boostvol::cli

#endif  // BOOSTVOL_CLI_STOP_WATCHDOG_H_
