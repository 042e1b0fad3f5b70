// A per-thread hint that the thread is about to block in I/O.
//
// The FUSE server's request loop lets one thread read and serve requests; a
// thread that is about to wait (a log read that misses the page cache, an
// fsync) calls AboutToBlock() first, and the loop hands the reading role to
// another thread at once, so the requests behind it go on being served
// (fuse_server.cc, "The request loop"). Threads without a hook (the migrator,
// tests) pay one thread-local load.
#pragma once

namespace boostvol {

using BlockingHook = void (*)(void* ctx);

namespace internal {
struct BlockingHookSlot {
  BlockingHook fn = nullptr;
  void* ctx = nullptr;
};
inline thread_local BlockingHookSlot g_blocking_hook;
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

}  // namespace boostvol
