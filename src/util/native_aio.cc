#include "util/native_aio.h"

#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <spdlog/spdlog.h>

namespace boostvol {

NativeAio::~NativeAio() {
  MutexLock l(&mu_);
  if (ctx_ != 0) (void)::syscall(SYS_io_destroy, ctx_);
}

bool NativeAio::WriteAll(int fd, const Write* writes, size_t count, ssize_t* result) {
  MutexLock l(&mu_);
  if (count > kMaxInFlight) std::abort();  // a caller's bug (PosixFile::WriteAtDirectV checks)
  if (ctx_ == 0 && !unavailable_ && ::syscall(SYS_io_setup, kMaxInFlight, &ctx_) != 0) {
    unavailable_ = true;
    ctx_ = 0;
    spdlog::info("native AIO is unavailable ({}): the log writes one request at a time, which is slower for long "
                 "sequential streams (raise /proc/sys/fs/aio-max-nr if it is full)",
                 std::strerror(errno));
  }
  if (unavailable_) return false;
  const aio_context_t ctx = ctx_;

  iocb cbs[kMaxInFlight];
  iocb* ptrs[kMaxInFlight];
  for (size_t i = 0; i < count; i++) {
    std::memset(&cbs[i], 0, sizeof(cbs[i]));
    cbs[i].aio_lio_opcode = IOCB_CMD_PWRITE;
    cbs[i].aio_fildes = static_cast<uint32_t>(fd);
    cbs[i].aio_buf = reinterpret_cast<uint64_t>(writes[i].data);
    cbs[i].aio_nbytes = writes[i].n;
    cbs[i].aio_offset = static_cast<int64_t>(writes[i].offset);
    cbs[i].aio_data = i;
    ptrs[i] = &cbs[i];
    result[i] = -ECANCELED;
  }
  size_t submitted = 0, completed = 0;
  io_event events[kMaxInFlight];
  // Reaps at least one completion. The kernel owns the buffers of a
  // submitted write until it completes, so nothing returns before that.
  auto reap = [&] {
    for (;;) {
      long got = ::syscall(SYS_io_getevents, ctx, 1, kMaxInFlight, events, nullptr);
      if (got >= 0) {
        for (long k = 0; k < got; k++) result[events[k].data] = static_cast<ssize_t>(events[k].res);
        completed += static_cast<size_t>(got);
        return;
      }
      if (errno == EINTR) continue;
      spdlog::critical("io_getevents failed ({}) with direct writes in flight: stopping", std::strerror(errno));
      std::abort();
    }
  };
  while (submitted < count) {
    long r = ::syscall(SYS_io_submit, ctx, static_cast<long>(count - submitted), ptrs + submitted);
    if (r > 0) {
      submitted += static_cast<size_t>(r);
    } else if (r < 0 && errno == EINTR) {
      continue;
    } else if (r < 0 && errno == EAGAIN && completed < submitted) {
      reap();
    } else {
      break;  // the rest stays -ECANCELED: the caller writes it another way
    }
  }
  while (completed < submitted) reap();
  return true;
}

}  // namespace boostvol
