#include "util/spare_cpu.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <thread>

namespace boostvol {
namespace {

uint64_t NowNs() {
  return static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch()).count());
}

TEST(SpareCpuMeterTest, FirstSampleHasNoIntervalThenIdleIsBoundedByTheCpus) {
  SpareCpuMeter m;
  ASSERT_TRUE(m.ok()) << "/proc/stat is not readable";
  EXPECT_LT(m.Sample(NowNs(), 0), 0);  // no interval yet
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  const double spare = m.Sample(NowNs(), 0);
  const long cpus = ::sysconf(_SC_NPROCESSORS_ONLN);
  EXPECT_GE(spare, 0);
  // Idle time cannot exceed every CPU for the whole interval (a clock tick
  // of slack at each end).
  EXPECT_LE(spare, static_cast<double>(cpus) * 1.2 + 0.1);
}

TEST(SpareCpuMeterTest, PollingTimeCountsAsSpare) {
  SpareCpuMeter m;
  ASSERT_TRUE(m.ok());
  const uint64_t t0 = NowNs();
  m.Sample(t0, 0);
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  const uint64_t t1 = NowNs();
  // Say a reader polled for three times the interval (three readers at once):
  // that alone is three CPUs' worth of spare time.
  const double spare = m.Sample(t1, 3 * (t1 - t0));
  EXPECT_GE(spare, 3.0);
}

}  // namespace
}  // namespace boostvol
