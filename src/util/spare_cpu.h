// SpareCpuMeter: how much CPU the machine left unused over an interval, from
// /proc/stat, counting as unused the time the caller says it burnt busy-
// polling (src/fuse/fuse_server.cc, "Polling" in docs/tuning.md): polling
// pays when the machine has a CPU to spare and the requests wait for
// wake-ups, and costs throughput when every CPU is busy with real work.
//
// Thread-compatible: one caller (the FUSE loop's monitor).
#pragma once

#include <cstdint>

namespace boostvol {

class SpareCpuMeter {
 public:
  SpareCpuMeter();
  ~SpareCpuMeter();
  SpareCpuMeter(const SpareCpuMeter&) = delete;
  SpareCpuMeter& operator=(const SpareCpuMeter&) = delete;

  // False when /proc/stat cannot be read (then Sample always returns -1).
  bool ok() const { return fd_ >= 0; }

  // CPUs' worth of idle time (idle + iowait, plus polled_ns, the polling
  // time since the last call) per second of wall time since the last call;
  // -1 on the first call or when /proc/stat is unreadable.
  double Sample(uint64_t now_ns, uint64_t polled_ns);

 private:
  bool ReadIdleNs(uint64_t* idle_ns);

  int fd_ = -1;
  uint64_t ns_per_tick_ = 0;
  uint64_t last_now_ns_ = 0;
  uint64_t last_idle_ns_ = 0;
  bool have_last_ = false;
};

}  // namespace boostvol
