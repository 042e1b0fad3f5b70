// A per-thread hint that the thread is about to block in I/O.
//
// The FUSE server's request loop lets one thread read and serve requests; a
// thread that is about to wait (a log read that misses the page cache, an
// fsync) calls AboutToBlock() first, and the loop hands the reading role to
// another thread at once, so the requests behind it go on being served
// (fuse_server.cc, "The request loop"). Threads without a hook (the migrator,
// tests) pay one thread-local load.
//
// A FUSE worker serving a read goes one step further (NoWaitScope): a file
// read that would wait returns Status::WouldBlock() at once, and the server
// hands the whole read to a thread that may wait (fuse_server.cc, "Reads that
// would block"), so the worker never waits for a disk read at all.
#pragma once

namespace boostvol {

using BlockingHook = void (*)(void* ctx);

namespace internal {
struct BlockingHookSlot {
  BlockingHook fn = nullptr;
  void* ctx = nullptr;
};
inline thread_local BlockingHookSlot g_blocking_hook;
inline thread_local bool g_no_wait = false;
}  // namespace internal

// Sets (fn != nullptr) or clears the calling thread's hook.
inline void SetBlockingHook(BlockingHook fn, void* ctx) { internal::g_blocking_hook = {fn, ctx}; }

// True if the calling thread has a hook (then it is worth finding out whether
// an I/O would block, e.g. with RWF_NOWAIT).
inline bool HasBlockingHook() { return internal::g_blocking_hook.fn != nullptr; }

// Tells the calling thread's hook, if any, that it is about to block.
inline void AboutToBlock() {
  const internal::BlockingHookSlot& s = internal::g_blocking_hook;
  if (s.fn != nullptr) s.fn(s.ctx);
}

// While one lives, reads on the calling thread that would wait for I/O
// return Status::WouldBlock() instead (File::ReadAt). Code that runs inside
// one passes a WouldBlock through untouched: it is not a failure, it is not
// logged, counted or retried, and nothing may have changed state for it.
class NoWaitScope {
 public:
  explicit NoWaitScope(bool on) : prev_(internal::g_no_wait) { internal::g_no_wait = on; }
  ~NoWaitScope() { internal::g_no_wait = prev_; }
  NoWaitScope(const NoWaitScope&) = delete;
  NoWaitScope& operator=(const NoWaitScope&) = delete;

 private:
  const bool prev_;
};

inline bool NoWait() { return internal::g_no_wait; }

}  // namespace boostvol
