// Names the calling thread, so that `top -H`, `ps -L`, perf and gdb say which
// of the daemon's threads is which (docs/architecture.md, "Threads").
// Thread-safety: affects only the calling thread.
#pragma once

#include <pthread.h>

namespace boostvol {

// `name` is at most 15 characters (the kernel's limit); a longer one is
// refused by the kernel and the thread keeps its old name.
inline void NameThisThread(const char* name) { (void)pthread_setname_np(pthread_self(), name); }

}  // namespace boostvol
