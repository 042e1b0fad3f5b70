// StopWatchdog (src/cli/stop_watchdog.h).
#include "cli/stop_watchdog.h"

#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <spdlog/spdlog.h>

#include "util/thread_name.h"

namespace boostvol::cli {

int StopWaitSeconds() {
  const char* v = std::getenv("BOOSTVOL_STOP_WAIT");
  if (v == nullptr || *v == '\0') return kDefaultStopWaitSeconds;
  char* end = nullptr;
  long n = std::strtol(v, &end, 10);
  if (*end != '\0' || n < 0 || n > 86400) {
    spdlog::warn("BOOSTVOL_STOP_WAIT='{}' is not a number of seconds (0..86400); using {} s", v,
                 kDefaultStopWaitSeconds);
    return kDefaultStopWaitSeconds;
  }
  return static_cast<int>(n);
}

StopWatchdog::StopWatchdog(int seconds, std::string fast_dir, int exit_code)
    : fast_dir_(std::move(fast_dir)), exit_code_(exit_code) {
  if (seconds > 0) thread_ = std::thread([this, seconds] { Run(seconds); });
}

StopWatchdog::~StopWatchdog() { Disarm(); }

void StopWatchdog::Disarm() {
  {
    MutexLock l(&mu_);
    disarmed_ = true;
    cv_.SignalAll();
  }
  if (thread_.joinable()) thread_.join();
}

void StopWatchdog::Run(int seconds) {
  NameThisThread("bv-stopdog");
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(seconds);
  {
    MutexLock l(&mu_);
    while (!disarmed_) {
      const auto now = std::chrono::steady_clock::now();
      if (now >= deadline) break;
      cv_.WaitFor(deadline - now);
    }
    if (disarmed_) return;
  }
  spdlog::error("stopping has waited {} s for the home (a drain or a migration batch whose calls do not return: a "
                "hung mount or cluster?); exiting WITHOUT a checkpoint. Nothing is lost: every write is in the log "
                "in {}, and the next mount recovers it. Check the home before mounting again (BOOSTVOL_STOP_WAIT "
                "sets this wait, 0 = for ever)",
                seconds, fast_dir_);
  spdlog::default_logger()->flush();
  ::_exit(exit_code_);
}

}  // namespace boostvol::cli
