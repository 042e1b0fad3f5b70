// The FUSE low-level server that exposes a Volume as MOUNTPOINT/image.
//
// The mount holds exactly two inodes: the root directory (1, mode 0700) and
// the regular file `image` (2, mode 0600, size = Volume::size()), both owned
// by the daemon's uid/gid unless -o uid=N / gid=N say otherwise. The image
// behaves like a block device:
//  - its size never changes: O_TRUNC at open is ignored (as for /dev/sdX),
//    truncate to another size and fallocate beyond the end are EINVAL/EFBIG;
//  - a write past the end is ENOSPC, a write crossing it is short; a read
//    past the end returns 0 bytes, one crossing it is short;
//  - fsync/fdatasync (what a loop device sends for FLUSH and FUA) is
//    Volume::Flush(): it is acknowledged only after Flush returned OK;
//  - nothing can be created, removed, renamed or linked: EPERM; setxattr is
//    EOPNOTSUPP (so `cp -a` carries on), getxattr ENODATA, listxattr empty;
//  - chmod/chown/utimens change in-memory attributes only (lost at unmount).
// The kernel page cache is used for buffered opens (keep_cache); O_DIRECT
// opens get direct_io. FUSE's writeback cache is never enabled (DESIGN.md 7).
// `default_permissions` is always passed, so the kernel checks modes.
//
// Risks: a loop device on this mount can deadlock under memory pressure
// unless the daemon has PR_SET_IO_FLUSHER (the CLI sets it before any thread
// exists; the workers inherit it).
//
// Every failed request is logged once through spdlog: engine failures at
// error, refused requests at info, expected misses (ENOENT lookup, ENODATA
// getxattr) at debug.
//
// Thread-safety: RunFuseServer serves requests on worker threads it starts
// (one reads /dev/fuse at a time; a slow request hands reading over to
// another, fuse_server.cc "The request loop") and watches them from the
// calling thread; FuseStopper::RequestStop may be called from any thread.
#pragma once

#include <pthread.h>

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "boostvol/status.h"
#include "boostvol/volume.h"
#include "util/thread_annotations.h"

struct fuse_session;

namespace boostvol {

// Lets another thread (the control socket's `stop`) end RunFuseServer.
class FuseStopper {
 public:
  // Makes the running loop exit (or the next RunFuseServer return at once).
  // The loop thread is woken with SIGTERM, whose handler libfuse installs.
  void RequestStop();

  // For RunFuseServer.
  bool Attach(fuse_session* se, pthread_t loop_thread);
  void Detach();

 private:
  Mutex mu_;
  bool stop_requested_ BV_GUARDED_BY(mu_) = false;
  fuse_session* se_ BV_GUARDED_BY(mu_) = nullptr;
  pthread_t loop_thread_ BV_GUARDED_BY(mu_){};
};

struct FuseServerOptions {
  std::string mountpoint;
  // Shown as the mount's source in /proc/self/mountinfo: "boostvol:FAST"
  // (how `boostvol status MOUNTPOINT` finds FAST).
  std::string fsname;
  // Mount options as for -o, one per element (allow_other, ro, uid=N, ...).
  // Options that only mean something to mount(8)/fstab (defaults, nofail,
  // _netdev, auto, noauto, user, users, x-*, comment=*) are dropped.
  std::vector<std::string> options;
  unsigned max_idle_threads = 16;  // only for BOOSTVOL_FUSE_LOOP=libfuse
  unsigned max_threads = 64;       // worker threads at most (hand-offs past this wait)
  // Called once, on the calling thread, when the mount is live.
  std::function<void()> on_mounted;
  // Optional; see FuseStopper.
  FuseStopper* stopper = nullptr;
};

// Mounts, serves until unmounted, SIGTERM/SIGINT/SIGHUP or RequestStop, then
// unmounts. Does not Close() the volume. Returns an error if the mount could
// not be made (the message includes libfuse's own).
Status RunFuseServer(Volume* volume, const FuseServerOptions& opts);

// The -o options RunFuseServer understands, split from those it passes to
// libfuse. Parsing them is all the checking boostvol does before libfuse's
// own (at mount time), so `boostvol mount` calls this before it opens the
// volume: a bad option is refused with nothing on disk changed.
struct ParsedMountOptions {
  std::optional<unsigned> uid, gid;  // owner of the image (default: the daemon's)
  unsigned poll_us = 50;             // poll_us=N, docs/tuning.md "Polling"
  // writeback_cache: the kernel's FUSE writeback cache (docs/tuning.md
  // "Writeback cache"): for a buffered loop only; opt-in, because a buffered
  // reader racing an O_DIRECT write of the image may then cache old data.
  bool writeback_cache = false;
  std::string fuse_options;          // ",opt1,opt2": the rest, for libfuse
};
Status ParseMountOptions(const std::vector<std::string>& options, ParsedMountOptions* out);

// Splits "a,b,c" into options, honouring backslash-escaped commas.
std::vector<std::string> SplitMountOptions(const std::string& s);

// Escapes ',' and '\' for use inside one -o value (fsname=...).
std::string EscapeMountOptionValue(const std::string& s);

}  // namespace boostvol
