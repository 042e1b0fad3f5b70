// Clang thread-safety annotations (checked with -Wthread-safety; no-ops elsewhere).
//
// Every mutex in the engine is a boostvol::Mutex so that lock order and the
// data each lock guards are checked by the compiler, not by prose.
#pragma once

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <shared_mutex>

#if defined(__clang__)
#define BV_THREAD_ANNOTATION(x) __attribute__((x))
#else
#define BV_THREAD_ANNOTATION(x)
#endif

#define BV_CAPABILITY(x) BV_THREAD_ANNOTATION(capability(x))
#define BV_SCOPED_CAPABILITY BV_THREAD_ANNOTATION(scoped_lockable)
#define BV_GUARDED_BY(x) BV_THREAD_ANNOTATION(guarded_by(x))
#define BV_PT_GUARDED_BY(x) BV_THREAD_ANNOTATION(pt_guarded_by(x))
#define BV_ACQUIRED_BEFORE(...) BV_THREAD_ANNOTATION(acquired_before(__VA_ARGS__))
#define BV_ACQUIRED_AFTER(...) BV_THREAD_ANNOTATION(acquired_after(__VA_ARGS__))
#define BV_REQUIRES(...) BV_THREAD_ANNOTATION(requires_capability(__VA_ARGS__))
#define BV_REQUIRES_SHARED(...) BV_THREAD_ANNOTATION(requires_shared_capability(__VA_ARGS__))
#define BV_ACQUIRE(...) BV_THREAD_ANNOTATION(acquire_capability(__VA_ARGS__))
#define BV_ACQUIRE_SHARED(...) BV_THREAD_ANNOTATION(acquire_shared_capability(__VA_ARGS__))
#define BV_RELEASE(...) BV_THREAD_ANNOTATION(release_capability(__VA_ARGS__))
#define BV_RELEASE_SHARED(...) BV_THREAD_ANNOTATION(release_shared_capability(__VA_ARGS__))
#define BV_EXCLUDES(...) BV_THREAD_ANNOTATION(locks_excluded(__VA_ARGS__))
#define BV_NO_THREAD_SAFETY_ANALYSIS BV_THREAD_ANNOTATION(no_thread_safety_analysis)

namespace boostvol {

// An exclusive mutex the analysis understands.
class BV_CAPABILITY("mutex") Mutex {
 public:
  void Lock() BV_ACQUIRE() { mu_.lock(); }
  void Unlock() BV_RELEASE() { mu_.unlock(); }
  // For condition variables: the underlying std::mutex.
  std::mutex& native() { return mu_; }

 private:
  std::mutex mu_;
};

// A reader/writer mutex the analysis understands.
class BV_CAPABILITY("shared_mutex") SharedMutex {
 public:
  void Lock() BV_ACQUIRE() { mu_.lock(); }
  void Unlock() BV_RELEASE() { mu_.unlock(); }
  void LockShared() BV_ACQUIRE_SHARED() { mu_.lock_shared(); }
  void UnlockShared() BV_RELEASE_SHARED() { mu_.unlock_shared(); }

 private:
  std::shared_mutex mu_;
};

class BV_SCOPED_CAPABILITY MutexLock {
 public:
  explicit MutexLock(Mutex* mu) BV_ACQUIRE(mu) : mu_(mu) { mu_->Lock(); }
  ~MutexLock() BV_RELEASE() { mu_->Unlock(); }
  MutexLock(const MutexLock&) = delete;
  MutexLock& operator=(const MutexLock&) = delete;

 private:
  Mutex* mu_;
};

class BV_SCOPED_CAPABILITY WriterLock {
 public:
  explicit WriterLock(SharedMutex* mu) BV_ACQUIRE(mu) : mu_(mu) { mu_->Lock(); }
  ~WriterLock() BV_RELEASE() { mu_->Unlock(); }
  WriterLock(const WriterLock&) = delete;
  WriterLock& operator=(const WriterLock&) = delete;

 private:
  SharedMutex* mu_;
};

class BV_SCOPED_CAPABILITY ReaderLock {
 public:
  explicit ReaderLock(SharedMutex* mu) BV_ACQUIRE_SHARED(mu) : mu_(mu) { mu_->LockShared(); }
  ~ReaderLock() BV_RELEASE() { mu_->UnlockShared(); }
  ReaderLock(const ReaderLock&) = delete;
  ReaderLock& operator=(const ReaderLock&) = delete;

 private:
  SharedMutex* mu_;
};

// A condition variable bound to a boostvol::Mutex. Wait() must be called with
// the mutex held; it is released while waiting. (The analysis cannot name
// the bound mutex in an attribute, so callers are not checked here.)
class CondVar {
 public:
  explicit CondVar(Mutex* mu) : mu_(mu) {}
  void Wait() {
    std::unique_lock<std::mutex> lk(mu_->native(), std::adopt_lock);
    cv_.wait(lk);
    lk.release();
  }
  // Returns false on timeout.
  template <class Rep, class Period>
  bool WaitFor(std::chrono::duration<Rep, Period> d) {
    std::unique_lock<std::mutex> lk(mu_->native(), std::adopt_lock);
    bool woke = cv_.wait_for(lk, d) == std::cv_status::no_timeout;
    lk.release();
    return woke;
  }
  void Signal() { cv_.notify_one(); }
  void SignalAll() { cv_.notify_all(); }

 private:
  Mutex* const mu_;
  std::condition_variable cv_;
};

}  // namespace boostvol
