// RepeatedError: one log line per outage, not one per I/O.
//
// An error that repeats for every I/O while a device is away (a home read
// that fails, a write that waits for the home) is logged in full the first
// time; later occurrences are counted and summarized at most once per
// `interval`; the first success after a run of failures is reported once.
//
//   switch (e.Occurred(&suppressed)) {
//     case RepeatedError::kFirst: spdlog::error(...full message...); break;
//     case RepeatedError::kSummary: spdlog::warn("{} more ...", suppressed); break;
//     case RepeatedError::kQuiet: break;
//   }
//   if (uint64_t n = e.Cleared()) spdlog::info("works again after {} failures", n);
//
// Thread-safety: thread-safe.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>

#include "util/thread_annotations.h"

namespace boostvol {

class RepeatedError {
 public:
  enum Action { kFirst, kSummary, kQuiet };

  explicit RepeatedError(std::chrono::seconds interval = std::chrono::seconds(60)) : interval_(interval) {}

  // Records one occurrence; *suppressed is set (for kSummary) to the number
  // of occurrences not logged since the last line.
  Action Occurred(uint64_t* suppressed) BV_EXCLUDES(mu_) {
    MutexLock l(&mu_);
    const auto now = std::chrono::steady_clock::now();
    run_++;
    active_.store(true, std::memory_order_relaxed);
    if (run_ == 1) {
      last_line_ = now;
      unlogged_ = 0;
      return kFirst;
    }
    unlogged_++;
    if (now - last_line_ < interval_) return kQuiet;
    last_line_ = now;
    *suppressed = unlogged_;
    unlogged_ = 0;
    return kSummary;
  }

  // Ends a run: returns how many occurrences it had (0 if none was running).
  // Cheap when no run is going on (one relaxed load): fine on every I/O.
  uint64_t Cleared() BV_EXCLUDES(mu_) {
    if (!active_.load(std::memory_order_relaxed)) return 0;
    MutexLock l(&mu_);
    active_.store(false, std::memory_order_relaxed);
    uint64_t n = run_;
    run_ = 0;
    unlogged_ = 0;
    return n;
  }

 private:
  const std::chrono::steady_clock::duration interval_;
  std::atomic<bool> active_{false};
  Mutex mu_;
  uint64_t run_ BV_GUARDED_BY(mu_) = 0;
  uint64_t unlogged_ BV_GUARDED_BY(mu_) = 0;
  std::chrono::steady_clock::time_point last_line_ BV_GUARDED_BY(mu_);
};

}  // namespace boostvol
