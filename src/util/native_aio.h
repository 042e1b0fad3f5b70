// NativeAio: several O_DIRECT writes in flight at once, with Linux's native
// asynchronous I/O (io_submit), for WriteAtDirectV (env_posix.cc).
//
// Why: the log's flusher wrote its records one pwrite at a time, and a
// single 1-2 MiB direct write at a time kept the disk of the development VM
// at about 1.6 GB/s under a sequential stream, where 16 in flight (what a loop
// device over a plain file sends) reach 2.5 GB/s (docs/tuning.md, "Log
// writes in flight").
//
// Thread-safety: thread-safe (one context, used under a mutex: the log does
// its I/O from one thread at a time anyway).
#pragma once

#include <linux/aio_abi.h>
#include <sys/types.h>

#include <cstddef>
#include <cstdint>

#include "util/thread_annotations.h"

namespace boostvol {

class NativeAio {
 public:
  static constexpr size_t kMaxInFlight = 64;

  NativeAio() = default;
  ~NativeAio();
  NativeAio(const NativeAio&) = delete;
  NativeAio& operator=(const NativeAio&) = delete;

  struct Write {
    const void* data;
    size_t n;
    uint64_t offset;
  };
  // Submits every write (at most kMaxInFlight; `fd` opened O_DIRECT) and
  // returns once the kernel has finished every one it accepted: result[i] is
  // the bytes written or -errno (-ECANCELED: never submitted). The caller
  // finishes what is short. Returns false, having written nothing, when this
  // kernel or process has no native AIO (io_setup failed): said once.
  bool WriteAll(int fd, const Write* writes, size_t count, ssize_t* result) BV_EXCLUDES(mu_);

 private:
  Mutex mu_;
  aio_context_t ctx_ BV_GUARDED_BY(mu_) = 0;  // 0 until the first WriteAll
  bool unavailable_ BV_GUARDED_BY(mu_) = false;
};

}  // namespace boostvol
