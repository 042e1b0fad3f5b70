// RateMeter: write and migration rates, and the drain ETA, from samples of
// the volume's byte counters taken about once a second by the daemon.
//
// The rates are over the samples of the last `window` (default 10 s): bytes
// counted between the oldest and the newest sample, divided by the time
// between them. The ETA is the dirty bytes of the newest sample divided by the
// migration rate: "at the rate it is going now", not a promise.
//
// Thread-safety: thread-safe (one internal mutex).
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>

#include "control/status_json.h"
#include "util/thread_annotations.h"

namespace boostvol::control {

class RateMeter {
 public:
  using Clock = std::chrono::steady_clock;
  explicit RateMeter(Clock::duration window = std::chrono::seconds(10)) : window_(window) {}

  void AddSample(Clock::time_point t, uint64_t bytes_written, uint64_t migrated_bytes, uint64_t dirty_bytes);
  StatusRates Rates() const;

 private:
  struct Sample {
    Clock::time_point t;
    uint64_t written, migrated, dirty;
  };
  const Clock::duration window_;
  mutable Mutex mu_;
  std::deque<Sample> samples_ BV_GUARDED_BY(mu_);
};

}  // namespace boostvol::control
