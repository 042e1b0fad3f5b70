#include "control/rate_meter.h"

namespace boostvol::control {

void RateMeter::AddSample(Clock::time_point t, uint64_t bytes_written, uint64_t migrated_bytes, uint64_t dirty_bytes) {
  MutexLock l(&mu_);
  samples_.push_back(Sample{t, bytes_written, migrated_bytes, dirty_bytes});
  // Keep one sample at or before the window's start, so the window is full.
  while (samples_.size() > 2 && t - samples_[1].t >= window_) samples_.pop_front();
}

StatusRates RateMeter::Rates() const {
  MutexLock l(&mu_);
  StatusRates r;
  if (samples_.size() < 2) return r;
  const Sample& a = samples_.front();
  const Sample& b = samples_.back();
  const double secs = std::chrono::duration<double>(b.t - a.t).count();
  if (secs < 0.5) return r;
  r.window_s = static_cast<uint64_t>(secs + 0.5);
  // Counters only grow; a restart of the counters (never in one daemon) reads as 0.
  auto per_s = [&](uint64_t from, uint64_t to) {
    return to > from ? static_cast<uint64_t>(static_cast<double>(to - from) / secs) : 0;
  };
  r.write_bytes_per_s = per_s(a.written, b.written);
  r.migrate_bytes_per_s = per_s(a.migrated, b.migrated);
  if (b.dirty == 0) {
    r.drain_eta_known = true;
    r.drain_eta_s = 0;
  } else if (r.migrate_bytes_per_s > 0) {
    r.drain_eta_known = true;
    r.drain_eta_s = (b.dirty + r.migrate_bytes_per_s - 1) / r.migrate_bytes_per_s;
  }
  return r;
}

}  // namespace boostvol::control
