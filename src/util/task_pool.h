// TaskPool: runs tasks that may block (a read that must wait for the disk) on
// threads of its own, so the thread that hands one over goes on at once.
//
// Threads start on demand: a task that finds no idle thread starts one, up to
// max_threads; after that tasks wait in a queue (first come, first served)
// for a thread to free up. Idle threads stay until Stop().
//
// Invariant: every task submitted runs exactly once, even one submitted when
// no thread can be started (it then runs on the submitting thread).
//
// Thread-safety: Submit() may be called from any number of threads at once.
// Stop() is called once, after the last Submit(); it runs every task still
// queued, then joins the threads. The destructor calls Stop().
#pragma once

#include <deque>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "util/thread_annotations.h"

namespace boostvol {

class TaskPool {
 public:
  // thread_name: what the threads are called (at most 15 characters show).
  TaskPool(std::string thread_name, unsigned max_threads);
  ~TaskPool();
  TaskPool(const TaskPool&) = delete;
  TaskPool& operator=(const TaskPool&) = delete;

  void Submit(std::function<void()> task) BV_EXCLUDES(mu_);
  void Stop() BV_EXCLUDES(mu_);

  // Threads started and not yet joined: 0 after Stop() (for logs and tests).
  size_t threads() const BV_EXCLUDES(mu_);

 private:
  void ThreadLoop() BV_EXCLUDES(mu_);

  const std::string thread_name_;
  const unsigned max_threads_;
  mutable Mutex mu_;
  CondVar cv_{&mu_};  // a task was queued, or Stop()
  std::deque<std::function<void()>> queue_ BV_GUARDED_BY(mu_);
  std::vector<std::thread> threads_ BV_GUARDED_BY(mu_);
  unsigned idle_ BV_GUARDED_BY(mu_) = 0;
  bool stopping_ BV_GUARDED_BY(mu_) = false;
  bool start_failed_ BV_GUARDED_BY(mu_) = false;  // logged once
};

}  // namespace boostvol
