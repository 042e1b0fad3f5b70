#include "util/task_pool.h"

#include <spdlog/spdlog.h>

#include <system_error>
#include <utility>

#include "util/thread_name.h"

namespace boostvol {

TaskPool::TaskPool(std::string thread_name, unsigned max_threads)
    : thread_name_(std::move(thread_name)), max_threads_(max_threads == 0 ? 1 : max_threads) {}

TaskPool::~TaskPool() { Stop(); }

void TaskPool::Submit(std::function<void()> task) {
  bool wake = false, run_here = false;
  {
    MutexLock l(&mu_);
    if (stopping_) {
      run_here = true;
    } else {
      queue_.push_back(std::move(task));
      // Every idle thread is woken for a task of its own: one that is
      // already awake (woken for an earlier task, not yet back for it) takes
      // the next from the queue anyway.
      if (queue_.size() <= idle_) {
        wake = true;
      } else if (threads_.size() < max_threads_) {
        try {
          threads_.emplace_back([this] { ThreadLoop(); });
        } catch (const std::system_error& e) {
          if (!start_failed_) {
            spdlog::warn("cannot start another '{}' thread ({} running): {}; tasks wait for a running one{}",
                         thread_name_, threads_.size(), e.what(),
                         threads_.empty() ? " (with none, each runs on the thread that hands it over)" : "");
          }
          start_failed_ = true;
          if (threads_.empty()) {  // nobody would ever take it
            task = std::move(queue_.back());
            queue_.pop_back();
            run_here = true;
          }
        }
      }  // else queued: the next thread to free up takes it
    }
  }
  // Woken after the lock is let go, so the thread does not wake only to
  // wait for it.
  if (wake) cv_.Signal();
  if (run_here) task();  // after Stop(), or when no thread at all can be started
}

void TaskPool::ThreadLoop() {
  NameThisThread(thread_name_.c_str());
  for (;;) {
    std::function<void()> task;
    {
      MutexLock l(&mu_);
      while (queue_.empty() && !stopping_) {
        idle_++;
        cv_.Wait();
        idle_--;
      }
      if (queue_.empty()) return;  // stopping, and nothing left to run
      task = std::move(queue_.front());
      queue_.pop_front();
    }
    task();
  }
}

void TaskPool::Stop() {
  std::vector<std::thread> threads;
  {
    MutexLock l(&mu_);
    stopping_ = true;
    cv_.SignalAll();
    threads.swap(threads_);
  }
  for (std::thread& t : threads) t.join();
  // A task queued while no thread ran (none could be started) runs here.
  for (;;) {
    std::function<void()> task;
    {
      MutexLock l(&mu_);
      if (queue_.empty()) return;
      task = std::move(queue_.front());
      queue_.pop_front();
    }
    task();
  }
}

size_t TaskPool::threads() const {
  MutexLock l(&mu_);
  return threads_.size();
}

}  // namespace boostvol
