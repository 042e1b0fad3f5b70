// TaskPool (src/util/task_pool.h): every task runs exactly once, tasks run
// side by side up to the thread cap, Stop() runs what is still queued, and a
// task submitted after Stop() runs on the caller.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "util/task_pool.h"

namespace boostvol {
namespace {

// A gate tasks wait at until the test opens it (bounded, so a bug fails the
// test instead of hanging it).
class Gate {
 public:
  void Open() {
    std::lock_guard<std::mutex> l(mu_);
    open_ = true;
    cv_.notify_all();
  }
  bool Wait() {
    std::unique_lock<std::mutex> l(mu_);
    return cv_.wait_for(l, std::chrono::seconds(30), [&] { return open_; });
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool open_ = false;
};

// Waits (bounded) until pred() holds.
template <class Pred>
bool Eventually(Pred pred) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (!pred()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return true;
}

TEST(TaskPoolTest, BlockedTasksRunSideBySideUpToTheCap) {
  TaskPool pool("test-pool", 4);
  Gate gate;
  std::atomic<int> running{0}, done{0};
  for (int i = 0; i < 6; i++) {
    pool.Submit([&] {
      running++;
      EXPECT_TRUE(gate.Wait());
      running--;
      done++;
    });
  }
  // Four run at once, each blocked; the other two wait for a thread.
  ASSERT_TRUE(Eventually([&] { return running.load() == 4; }));
  EXPECT_EQ(pool.threads(), 4u);
  gate.Open();
  ASSERT_TRUE(Eventually([&] { return done.load() == 6; }));
  EXPECT_EQ(pool.threads(), 4u);  // idle threads are used again, not added
  pool.Stop();
  EXPECT_EQ(pool.threads(), 0u);  // joined
}

TEST(TaskPoolTest, StopRunsEveryQueuedTaskOnce) {
  TaskPool pool("test-pool", 1);
  Gate gate;
  std::atomic<int> ran{0};
  pool.Submit([&] {
    EXPECT_TRUE(gate.Wait());
    ran++;
  });
  for (int i = 0; i < 100; i++) pool.Submit([&] { ran++; });
  std::thread opener([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    gate.Open();
  });
  pool.Stop();  // waits for the blocked task, then runs the 100 queued behind it
  opener.join();
  EXPECT_EQ(ran.load(), 101);
}

TEST(TaskPoolTest, ATaskSubmittedAfterStopRunsOnTheCaller) {
  TaskPool pool("test-pool", 2);
  pool.Stop();
  std::thread::id ran_on;
  pool.Submit([&] { ran_on = std::this_thread::get_id(); });
  EXPECT_EQ(ran_on, std::this_thread::get_id());
}

TEST(TaskPoolTest, ManySubmittersEveryTaskOnce) {
  std::atomic<int> ran{0};
  {
    TaskPool pool("test-pool", 3);
    std::vector<std::thread> submitters;
    for (int t = 0; t < 4; t++)
      submitters.emplace_back([&] {
        for (int i = 0; i < 2500; i++) pool.Submit([&] { ran++; });
      });
    for (auto& t : submitters) t.join();
  }  // the destructor stops the pool
  EXPECT_EQ(ran.load(), 10000);
}

}  // namespace
}  // namespace boostvol
