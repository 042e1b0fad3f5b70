#include "util/spare_cpu.h"

#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>

namespace boostvol {

SpareCpuMeter::SpareCpuMeter() {
  fd_ = ::open("/proc/stat", O_RDONLY | O_CLOEXEC);
  const long hz = ::sysconf(_SC_CLK_TCK);
  ns_per_tick_ = hz > 0 ? 1000000000ull / static_cast<uint64_t>(hz) : 10000000ull;
}

SpareCpuMeter::~SpareCpuMeter() {
  if (fd_ >= 0) ::close(fd_);
}

bool SpareCpuMeter::ReadIdleNs(uint64_t* idle_ns) {
  // The first line: "cpu  user nice system idle iowait irq softirq ..." in
  // clock ticks, summed over every CPU.
  char buf[512];
  const ssize_t n = ::pread(fd_, buf, sizeof buf - 1, 0);
  if (n <= 0) return false;
  buf[n] = '\0';
  unsigned long long user, nice, system, idle, iowait;
  if (std::strncmp(buf, "cpu ", 4) != 0 ||
      std::sscanf(buf + 4, "%llu %llu %llu %llu %llu", &user, &nice, &system, &idle, &iowait) != 5) {
    return false;
  }
  *idle_ns = (idle + iowait) * ns_per_tick_;
  return true;
}

double SpareCpuMeter::Sample(uint64_t now_ns, uint64_t polled_ns) {
  uint64_t idle_ns = 0;
  if (fd_ < 0 || !ReadIdleNs(&idle_ns)) return -1;
  const bool had = have_last_;
  const uint64_t d_idle = idle_ns - last_idle_ns_, d_now = now_ns - last_now_ns_;
  last_idle_ns_ = idle_ns;
  last_now_ns_ = now_ns;
  have_last_ = true;
  if (!had || d_now == 0) return -1;
  return static_cast<double>(d_idle + polled_ns) / static_cast<double>(d_now);
}

}  // namespace boostvol
