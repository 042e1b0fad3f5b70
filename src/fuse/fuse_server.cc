// The FUSE low-level server: thin sfs_<op> entry points (libfuse callbacks)
// that call do_<op> workers. Every failure ends in exactly one
// fuse_reply_err, through Fail(), which also logs it; no exception leaves an
// entry point (Guard()).
#define FUSE_USE_VERSION 312  // the newest API level libfuse 3.14 defines
#include <cstdlib>
#include <fuse_lowlevel.h>

#include "fuse/fuse_server.h"

#include "util/blocking_hint.h"
#include "util/spare_cpu.h"
#include "util/task_pool.h"
#include "util/thread_name.h"

#include <fcntl.h>
#include <poll.h>
#include <linux/falloc.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <chrono>
#include <cstring>
#include <ctime>
#include <deque>
#include <exception>
#include <memory>
#include <spdlog/spdlog.h>
#include <system_error>
#include <thread>
#include <vector>

namespace boostvol {
namespace {

constexpr fuse_ino_t kRootIno = FUSE_ROOT_ID;  // 1
constexpr fuse_ino_t kImageIno = 2;
constexpr const char* kImageName = "image";
// Attributes change only through this server, so the kernel may keep them.
constexpr double kAttrTimeout = 3600.0;
constexpr unsigned kMaxWrite = 1u << 20;
constexpr unsigned kMaxPollUs = 100000;
// Threads that serve reads waiting for a disk or the home (do_read): enough
// to keep a fast disk busy with random reads; on a hung home, reads past
// these wait in the pool's queue while the FUSE workers go on serving.
constexpr unsigned kMaxReadThreads = 32;

// ---------------------------------------------------------------------------
// libfuse's own messages go to spdlog; the last one is kept for errors.

Mutex g_fuse_log_mu;
std::string g_last_fuse_message BV_GUARDED_BY(g_fuse_log_mu);

void FuseLogToSpdlog(enum fuse_log_level level, const char* fmt, va_list ap) {
  char buf[1024];
  std::vsnprintf(buf, sizeof(buf), fmt, ap);
  std::string msg(buf);
  while (!msg.empty() && (msg.back() == '\n' || msg.back() == ' ')) msg.pop_back();
  if (level <= FUSE_LOG_ERR) {
    MutexLock l(&g_fuse_log_mu);
    g_last_fuse_message = msg;
  }
  if (level <= FUSE_LOG_ERR) spdlog::error("libfuse: {}", msg);
  else if (level <= FUSE_LOG_NOTICE) spdlog::info("libfuse: {}", msg);
  else spdlog::debug("libfuse: {}", msg);
}

std::string TakeLastFuseMessage() {
  MutexLock l(&g_fuse_log_mu);
  std::string m;
  m.swap(g_last_fuse_message);
  return m.empty() ? std::string("no details from libfuse") : m;
}

// ---------------------------------------------------------------------------
// Diagnostic write trace (docs/testing.md, "Write trace"): off unless the
// environment variable BOOSTVOL_WRITE_TRACE names a file. One line per event,
// appended with one write(2) (O_APPEND), so that a SIGKILL loses nothing that
// was written before it:
//   S <pid>                                 the daemon started tracing
//   W <id> <offset> <length> <pieces>       a write request arrived (before Volume::Write); a punch hole or
//                                           zero range is traced as a write of zeros
//   K <id> <ack>                            ... and was acknowledged, as the <ack>th write of this run
//   F <acked_at_begin> <acked_at_end>       an fsync returned success; it began after <acked_at_begin> acks
// <pieces>: per 4 KiB image block the write touches, block:first:end:crc (bytes [first, end) of the block,
// crc = CRC-32 as zlib computes it, hex), comma-separated. tests/lib/write_trace_check.py reads it.
// Off by default; when on, it costs a CRC pass and two small appends per write.

uint32_t ZlibCrc32(const unsigned char* p, size_t n) {
  static const auto kTable = [] {
    std::array<uint32_t, 256> t{};
    for (uint32_t i = 0; i < 256; i++) {
      uint32_t c = i;
      for (int k = 0; k < 8; k++) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
      t[i] = c;
    }
    return t;
  }();
  uint32_t c = 0xFFFFFFFFu;
  for (size_t i = 0; i < n; i++) c = kTable[(c ^ p[i]) & 0xFF] ^ (c >> 8);
  return c ^ 0xFFFFFFFFu;
}

class WriteTrace {
 public:
  WriteTrace() {
    const char* path = std::getenv("BOOSTVOL_WRITE_TRACE");
    if (path == nullptr || *path == '\0') return;
    fd_ = ::open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd_ < 0) {
      spdlog::warn("BOOSTVOL_WRITE_TRACE={}: cannot open it ({}); no write trace", path, std::strerror(errno));
      return;
    }
    spdlog::warn("diagnostic write trace on: appending every write and fsync to {} (BOOSTVOL_WRITE_TRACE)", path);
    Append("S " + std::to_string(getpid()) + "\n");
  }
  ~WriteTrace() {
    if (fd_ >= 0) ::close(fd_);
  }
  bool on() const { return fd_ >= 0; }

  // data == nullptr: a zero range (fallocate punch hole / zero range), traced
  // as a write of zeros.
  uint64_t Arrived(uint64_t off, size_t len, const char* data) {
    static const std::array<unsigned char, 4096> kZeros{};
    const uint64_t id = next_id_.fetch_add(1) + 1;
    std::string line = "W " + std::to_string(id) + " " + std::to_string(off) + " " + std::to_string(len) + " ";
    char piece[64];
    for (uint64_t pos = off; pos < off + len;) {
      const uint64_t blk = pos / 4096, first = pos % 4096, end = std::min<uint64_t>(4096, first + (off + len - pos));
      const uint32_t crc = ZlibCrc32(
          data ? reinterpret_cast<const unsigned char*>(data) + (pos - off) : kZeros.data(), end - first);
      std::snprintf(piece, sizeof(piece), "%s%llu:%llu:%llu:%08x", pos == off ? "" : ",",
                    static_cast<unsigned long long>(blk), static_cast<unsigned long long>(first),
                    static_cast<unsigned long long>(end), crc);
      line += piece;
      pos += end - first;
    }
    Append(line + "\n");
    return id;
  }
  void Acked(uint64_t id) { Append("K " + std::to_string(id) + " " + std::to_string(acked_.fetch_add(1) + 1) + "\n"); }
  uint64_t acked() const { return acked_.load(); }
  void Fsynced(uint64_t acked_at_begin) {
    Append("F " + std::to_string(acked_at_begin) + " " + std::to_string(acked_.load()) + "\n");
  }

 private:
  void Append(const std::string& line) {
    if (::write(fd_, line.data(), line.size()) != static_cast<ssize_t>(line.size())) {
      spdlog::warn("write trace: an append failed or was short ({}); the trace is incomplete", std::strerror(errno));
    }
  }
  int fd_ = -1;
  std::atomic<uint64_t> next_id_{0}, acked_{0};
};

WriteTrace& Trace() {
  static WriteTrace trace;
  return trace;
}

// ---------------------------------------------------------------------------
// The server's state: the volume and the two inodes' attributes.

struct InodeAttrs {
  mode_t mode = 0;
  uid_t uid = 0;
  gid_t gid = 0;
  timespec atime{}, mtime{}, ctime{};
};

class Server {
 public:
  Server(Volume* volume, uid_t uid, gid_t gid, bool writeback_cache)
      : writeback_cache(writeback_cache), volume_(volume), size_(volume->size()) {
    timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    MutexLock l(&mu_);
    root_ = InodeAttrs{S_IFDIR | 0700, uid, gid, now, now, now};
    image_ = InodeAttrs{S_IFREG | 0600, uid, gid, now, now, now};
  }

  Volume* volume() const { return volume_; }
  uint64_t size() const { return size_; }
  const bool writeback_cache;  // asked for with -o writeback_cache
  std::atomic<int64_t> open_handles{0};
  // Where reads that would wait for I/O are served (do_read); null: on the
  // FUSE worker itself. Set before the first request, cleared after the last.
  TaskPool* read_pool = nullptr;

  // Syncing ahead of an expected fsync (docs/tuning.md, "The fsync path"):
  // a client that writes one block and then fsyncs, again and again (a
  // database's commits, fio --fsync=1 at QD1), gets its write acknowledged
  // at once and the log synced right after, on this thread, while its fsync
  // is still on the way; the fsync then finds the write durable. The guess
  // comes from the last 8 fsyncs: at least 7 of them came after exactly one
  // write. A wrong guess costs an early fdatasync, never correctness: only
  // the fsync's own Flush() acknowledges durability.
  // Relaxed atomics: a guess, read and updated by any FUSE worker.
  // The count only needs to tell 0, 1 and more: past 2 a write only reads
  // it, so writes without fsyncs do not bounce its cache line between CPUs.
  bool NoteWriteExpectFsync() {
    if (writes_since_fsync_.load(std::memory_order_relaxed) >= 2) return false;
    const uint32_t n = writes_since_fsync_.fetch_add(1, std::memory_order_relaxed) + 1;
    return n == 1 && __builtin_popcount(fsync_history_.load(std::memory_order_relaxed) & 0xFFu) >= 7;
  }
  void NoteFsync() {
    const bool after_one = writes_since_fsync_.exchange(0, std::memory_order_relaxed) == 1;
    const uint32_t h = fsync_history_.load(std::memory_order_relaxed);
    fsync_history_.store(((h << 1) | (after_one ? 1u : 0u)) & 0xFFu, std::memory_order_relaxed);
  }

  // Fills *st for ino (1 or 2); false for any other inode.
  bool Stat(fuse_ino_t ino, struct stat* st) {
    std::memset(st, 0, sizeof(*st));
    MutexLock l(&mu_);
    const InodeAttrs* a;
    if (ino == kRootIno) {
      a = &root_;
      st->st_nlink = 2;
      st->st_size = 4096;
    } else if (ino == kImageIno) {
      a = &image_;
      st->st_nlink = 1;
      st->st_size = static_cast<off_t>(size_);
    } else {
      return false;
    }
    st->st_ino = ino;
    st->st_mode = a->mode;
    st->st_uid = a->uid;
    st->st_gid = a->gid;
    st->st_blksize = 4096;
    st->st_blocks = (st->st_size + 511) / 512;
    st->st_atim = a->atime;
    st->st_mtim = a->mtime;
    st->st_ctim = a->ctime;
    return true;
  }

  // Applies chmod/chown/utimens (size is checked by the caller).
  // Returns 0 or an errno.
  int SetAttr(fuse_ino_t ino, const struct stat& in, int to_set, const fuse_ctx* ctx) {
    MutexLock l(&mu_);
    InodeAttrs* a = ino == kRootIno ? &root_ : &image_;
    const bool privileged = ctx->uid == 0;
    const bool owner = ctx->uid == a->uid;
    if ((to_set & FUSE_SET_ATTR_MODE) && !privileged && !owner) return EPERM;
    if ((to_set & FUSE_SET_ATTR_UID) && !privileged && in.st_uid != a->uid) return EPERM;
    if ((to_set & FUSE_SET_ATTR_GID) && !privileged && !owner) return EPERM;
    const int times = FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_MTIME | FUSE_SET_ATTR_ATIME_NOW | FUSE_SET_ATTR_MTIME_NOW;
    const bool explicit_times = to_set & (FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_MTIME);
    if ((to_set & times) && !privileged && !owner && explicit_times) return EPERM;
    timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    if (to_set & FUSE_SET_ATTR_MODE) a->mode = (a->mode & S_IFMT) | (in.st_mode & 07777);
    if (to_set & FUSE_SET_ATTR_UID) a->uid = in.st_uid;
    if (to_set & FUSE_SET_ATTR_GID) a->gid = in.st_gid;
    if (to_set & FUSE_SET_ATTR_ATIME_NOW) a->atime = now;
    else if (to_set & FUSE_SET_ATTR_ATIME) a->atime = in.st_atim;
    if (to_set & FUSE_SET_ATTR_MTIME_NOW) a->mtime = now;
    else if (to_set & FUSE_SET_ATTR_MTIME) a->mtime = in.st_mtim;
    a->ctime = (to_set & FUSE_SET_ATTR_CTIME) ? in.st_ctim : now;
    return 0;
  }

  void TouchImageMtime() {
    timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    MutexLock l(&mu_);
    image_.mtime = now;
    image_.ctime = now;
  }

 private:
  Volume* const volume_;
  const uint64_t size_;
  Mutex mu_;
  InodeAttrs root_ BV_GUARDED_BY(mu_);
  InodeAttrs image_ BV_GUARDED_BY(mu_);
  std::atomic<uint32_t> writes_since_fsync_{0};
  std::atomic<uint32_t> fsync_history_{0};  // bit i: the i-th last fsync came after exactly one write
};

Server* S(fuse_req_t req) { return static_cast<Server*>(fuse_req_userdata(req)); }

int ErrnoOf(const Status& s) { return s.err() > 0 ? s.err() : EIO; }

// How loud a failed request is: engine failures are errors, refusals are
// worth an info line, expected misses are debug.
enum class Loud { kDebug, kInfo, kError };

void Fail(fuse_req_t req, int err, Loud loud, const char* op, const std::string& what) {
  const fuse_ctx* ctx = fuse_req_ctx(req);
  const int pid = ctx != nullptr ? static_cast<int>(ctx->pid) : 0;
  switch (loud) {
    case Loud::kDebug: spdlog::debug("FUSE {} -> {} (pid {}): {}", op, strerrorname_np(err), pid, what); break;
    case Loud::kInfo: spdlog::info("FUSE {} -> {} (pid {}): {}", op, strerrorname_np(err), pid, what); break;
    case Loud::kError: spdlog::error("FUSE {} -> {} (pid {}): {}", op, strerrorname_np(err), pid, what); break;
  }
  fuse_reply_err(req, err);
}

// Runs a do_<op> worker; an exception (allocation failure) becomes EIO for
// that request instead of unwinding into libfuse. Workers reply last, so a
// throw always happens before any reply.
template <class F>
void Guard(fuse_req_t req, const char* op, F&& f) noexcept {
  try {
    f();
  } catch (const std::exception& e) {
    Fail(req, EIO, Loud::kError, op, std::string("internal error: ") + e.what());
  } catch (...) {
    Fail(req, EIO, Loud::kError, op, "internal error: unknown exception");
  }
}

std::string InoName(fuse_ino_t ino) {
  if (ino == kRootIno) return "/";
  if (ino == kImageIno) return "/image";
  return "inode " + std::to_string(ino);
}

// A growable per-thread buffer for reads and scattered writes.
char* ThreadBuffer(size_t n) {
  thread_local std::unique_ptr<char[]> buf;
  thread_local size_t cap = 0;
  if (cap < n) {
    buf.reset(new char[n]);
    cap = n;
  }
  return buf.get();
}

bool FillEntry(Server* s, fuse_ino_t ino, fuse_entry_param* e) {
  std::memset(e, 0, sizeof(*e));
  if (!s->Stat(ino, &e->attr)) return false;
  e->ino = ino;
  e->generation = 1;
  e->attr_timeout = kAttrTimeout;
  e->entry_timeout = kAttrTimeout;
  return true;
}

// ---------------------------------------------------------------------------
// Workers.

void do_lookup(fuse_req_t req, fuse_ino_t parent, const char* name) {
  if (parent == kImageIno) return Fail(req, ENOTDIR, Loud::kDebug, "lookup", std::string("/image/") + name);
  if (parent != kRootIno) return Fail(req, ENOENT, Loud::kDebug, "lookup", "unknown parent " + InoName(parent));
  fuse_entry_param e;
  fuse_ino_t ino = 0;
  if (std::strcmp(name, kImageName) == 0) ino = kImageIno;
  else if (std::strcmp(name, ".") == 0 || std::strcmp(name, "..") == 0) ino = kRootIno;
  if (ino == 0 || !FillEntry(S(req), ino, &e)) {
    return Fail(req, ENOENT, Loud::kDebug, "lookup", std::string("/") + name + " does not exist (only /image does)");
  }
  fuse_reply_entry(req, &e);
}

void do_getattr(fuse_req_t req, fuse_ino_t ino) {
  struct stat st;
  if (!S(req)->Stat(ino, &st)) return Fail(req, ENOENT, Loud::kInfo, "getattr", InoName(ino) + " does not exist");
  fuse_reply_attr(req, &st, kAttrTimeout);
}

void do_setattr(fuse_req_t req, fuse_ino_t ino, struct stat* attr, int to_set) {
  Server* s = S(req);
  struct stat cur;
  if (!s->Stat(ino, &cur)) return Fail(req, ENOENT, Loud::kInfo, "setattr", InoName(ino) + " does not exist");
  if (to_set & FUSE_SET_ATTR_SIZE) {
    if (ino == kRootIno) return Fail(req, EISDIR, Loud::kInfo, "setattr", "cannot truncate the root directory");
    if (static_cast<uint64_t>(attr->st_size) != s->size()) {
      return Fail(req, EINVAL, Loud::kInfo, "setattr",
                  "the image has a fixed size of " + std::to_string(s->size()) + " bytes; refused truncate to " +
                      std::to_string(attr->st_size));
    }
  }
  if (int err = s->SetAttr(ino, *attr, to_set, fuse_req_ctx(req)); err != 0) {
    return Fail(req, err, Loud::kInfo, "setattr",
                "uid " + std::to_string(fuse_req_ctx(req)->uid) + " may not change the owner, mode or times of " +
                    InoName(ino));
  }
  s->Stat(ino, &cur);
  fuse_reply_attr(req, &cur, kAttrTimeout);
}

void do_open(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  if (ino == kRootIno) return Fail(req, EISDIR, Loud::kInfo, "open", "/ is a directory");
  if (ino != kImageIno) return Fail(req, ENOENT, Loud::kInfo, "open", InoName(ino) + " does not exist");
  // Like a block device: O_TRUNC is ignored (FUSE_CAP_ATOMIC_O_TRUNC hands it
  // to us instead of a truncating setattr).
  if (fi->flags & O_TRUNC) spdlog::debug("FUSE open /image with O_TRUNC: ignored, the image has a fixed size");
  // Only this server changes the image, so cached pages stay valid across
  // opens. O_DIRECT is left to the kernel's own direct I/O path (it keeps the
  // page cache coherent, which FOPEN_DIRECT_IO does not on every kernel).
  fi->keep_cache = 1;
  fi->direct_io = 0;
  S(req)->open_handles.fetch_add(1);
  if (fuse_reply_open(req, fi) != 0) S(req)->open_handles.fetch_sub(1);  // interrupted: no release follows
}

void ReplyRead(fuse_req_t req, uint64_t off, size_t len, const char* buf, const Status& st) {
  if (!st.ok()) {
    return Fail(req, ErrnoOf(st), Loud::kError, "read",
                "offset " + std::to_string(off) + " length " + std::to_string(len) + ": " + st.ToString());
  }
  fuse_reply_buf(req, buf, len);
}

void do_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off) {
  Server* s = S(req);
  if (ino != kImageIno) return Fail(req, EISDIR, Loud::kInfo, "read", InoName(ino) + " is not the image");
  if (off < 0) return Fail(req, EINVAL, Loud::kInfo, "read", "negative offset");
  const uint64_t uoff = static_cast<uint64_t>(off);
  if (uoff >= s->size() || size == 0) {
    fuse_reply_buf(req, nullptr, 0);
    return;
  }
  const size_t len = static_cast<size_t>(std::min<uint64_t>(size, s->size() - uoff));
  char* buf = ThreadBuffer(len);
  if (s->read_pool == nullptr) return ReplyRead(req, uoff, len, buf, s->volume()->Read(uoff, len, buf));
  // Reads that would block (docs/tuning.md, "FUSE threads"): the worker
  // reads what the page cache and the log's buffers hold at once; a read
  // that would wait for a disk (or a home that fails) goes whole to the read
  // pool, and the worker reads the next request meanwhile. (Handing the
  // reading role to another worker instead held cold 4k random reads at
  // QD16 to one hand-off's wake-up each.)
  Status st;
  {
    NoWaitScope no_wait(true);
    st = s->volume()->Read(uoff, len, buf);
  }
  if (!st.IsWouldBlock()) return ReplyRead(req, uoff, len, buf, st);
  s->read_pool->Submit([req, uoff, len] {
    Guard(req, "read", [&] {
      char* pool_buf = ThreadBuffer(len);
      ReplyRead(req, uoff, len, pool_buf, S(req)->volume()->Read(uoff, len, pool_buf));
    });
  });
}

void do_write_buf(fuse_req_t req, fuse_ino_t ino, fuse_bufvec* in_buf, off_t off) {
  Server* s = S(req);
  if (ino != kImageIno) return Fail(req, EISDIR, Loud::kInfo, "write", InoName(ino) + " is not the image");
  if (off < 0) return Fail(req, EINVAL, Loud::kInfo, "write", "negative offset");
  const uint64_t uoff = static_cast<uint64_t>(off);
  size_t len = fuse_buf_size(in_buf);
  if (len == 0) {
    fuse_reply_write(req, 0);
    return;
  }
  if (uoff >= s->size()) {
    return Fail(req, ENOSPC, Loud::kInfo, "write",
                "offset " + std::to_string(uoff) + " is at or past the end of the image (" + std::to_string(s->size()) +
                    " bytes)");
  }
  len = static_cast<size_t>(std::min<uint64_t>(len, s->size() - uoff));  // crossing the end: short write

  const char* data;
  const fuse_buf& b0 = in_buf->buf[in_buf->idx];
  if (in_buf->count - in_buf->idx == 1 && !(b0.flags & FUSE_BUF_IS_FD) && b0.size - in_buf->off >= len) {
    data = static_cast<const char*>(b0.mem) + in_buf->off;  // already in memory: no copy
  } else {
    char* buf = ThreadBuffer(len);
    fuse_bufvec dst = FUSE_BUFVEC_INIT(len);
    dst.buf[0].mem = buf;
    ssize_t got = fuse_buf_copy(&dst, in_buf, static_cast<fuse_buf_copy_flags>(0));
    if (got < 0) {
      return Fail(req, static_cast<int>(-got), Loud::kError, "write", "copying the request's data failed");
    }
    len = static_cast<size_t>(got);
    data = buf;
  }
  const uint64_t trace_id = Trace().on() ? Trace().Arrived(uoff, len, data) : 0;
  Status st = s->volume()->Write(uoff, len, data);
  if (!st.ok()) {
    return Fail(req, ErrnoOf(st), Loud::kError, "write",
                "offset " + std::to_string(uoff) + " length " + std::to_string(len) + ": " + st.ToString());
  }
  s->TouchImageMtime();
  if (trace_id != 0) Trace().Acked(trace_id);
  const bool fsync_expected = s->NoteWriteExpectFsync();
  fuse_reply_write(req, len);
  // No hand-off before it (AboutToBlock): the request most likely waiting
  // by now is that very fsync, which this thread then answers at once.
  if (fsync_expected) s->volume()->FlushAhead();
}

void do_fsync(fuse_req_t req, const char* op) {
  AboutToBlock();  // the barrier waits for an fdatasync: other requests go on meanwhile
  const uint64_t acked_at_begin = Trace().on() ? Trace().acked() : 0;
  S(req)->NoteFsync();
  Status st = S(req)->volume()->Flush();
  if (!st.ok()) return Fail(req, ErrnoOf(st), Loud::kError, op, st.ToString());
  if (Trace().on()) Trace().Fsynced(acked_at_begin);
  fuse_reply_err(req, 0);
}

void do_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, bool plus) {
  const char* op = plus ? "readdirplus" : "readdir";
  if (ino != kRootIno) return Fail(req, ENOTDIR, Loud::kInfo, op, InoName(ino) + " is not a directory");
  struct Ent {
    const char* name;
    fuse_ino_t ino;
  };
  static const Ent kEntries[] = {{".", kRootIno}, {"..", kRootIno}, {kImageName, kImageIno}};
  Server* s = S(req);
  size = std::min<size_t>(size, 64 * 1024);
  char* buf = ThreadBuffer(size);
  size_t used = 0;
  for (off_t i = std::max<off_t>(off, 0); i < 3; ++i) {
    const Ent& ent = kEntries[i];
    size_t n;
    if (plus) {
      fuse_entry_param e;
      FillEntry(s, ent.ino, &e);
      n = fuse_add_direntry_plus(req, buf + used, size - used, ent.name, &e, i + 1);
    } else {
      struct stat st;
      std::memset(&st, 0, sizeof(st));
      st.st_ino = ent.ino;
      st.st_mode = ent.ino == kRootIno ? S_IFDIR : S_IFREG;
      n = fuse_add_direntry(req, buf + used, size - used, ent.name, &st, i + 1);
    }
    if (n > size - used) break;  // did not fit; the kernel asks again
    used += n;
  }
  fuse_reply_buf(req, buf, used);
}

void do_statfs(fuse_req_t req) {
  struct statvfs sv;
  std::memset(&sv, 0, sizeof(sv));
  sv.f_bsize = 4096;
  sv.f_frsize = 4096;
  sv.f_blocks = S(req)->size() / 4096;
  sv.f_bfree = 0;  // nothing can be created here
  sv.f_bavail = 0;
  sv.f_files = 2;
  sv.f_ffree = 0;
  sv.f_favail = 0;
  sv.f_namemax = 255;
  fuse_reply_statfs(req, &sv);
}

void do_fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t offset, off_t length) {
  Server* s = S(req);
  if (ino != kImageIno) return Fail(req, ENODEV, Loud::kInfo, "fallocate", InoName(ino) + " is not the image");
  if (offset < 0 || length <= 0) return Fail(req, EINVAL, Loud::kInfo, "fallocate", "bad range");
  const uint64_t end = static_cast<uint64_t>(offset) + static_cast<uint64_t>(length);
  if (mode == (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE) || (mode & ~FALLOC_FL_KEEP_SIZE) == FALLOC_FL_ZERO_RANGE) {
    // Discard (the loop device's punch hole) and write-zeroes (zero range):
    // logged as a zero range, in order with writes (docs/policies.md).
    const bool punch = (mode & FALLOC_FL_PUNCH_HOLE) != 0;
    if (end > s->size() && !(mode & FALLOC_FL_KEEP_SIZE))
      return Fail(req, EFBIG, Loud::kInfo, "fallocate", "the image has a fixed size and cannot grow");
    const uint64_t from = std::min<uint64_t>(static_cast<uint64_t>(offset), s->size());
    const uint64_t to = std::min<uint64_t>(end, s->size());
    const uint64_t trace_id = Trace().on() && to > from ? Trace().Arrived(from, to - from, nullptr) : 0;
    Status st = s->volume()->Zero(from, to - from, punch);
    if (!st.ok()) {
      return Fail(req, ErrnoOf(st), Loud::kError, punch ? "fallocate(punch hole)" : "fallocate(zero range)",
                  "offset " + std::to_string(from) + " length " + std::to_string(to - from) + ": " + st.ToString());
    }
    s->TouchImageMtime();
    if (trace_id != 0) Trace().Acked(trace_id);
    fuse_reply_err(req, 0);
    return;
  }
  if ((mode & ~FALLOC_FL_KEEP_SIZE) != 0) {
    // Collapse / insert range / unshare / punch without keep-size: the image's
    // size is fixed and it shares nothing.
    return Fail(req, EOPNOTSUPP, Loud::kDebug, "fallocate", "mode " + std::to_string(mode) + " is not supported");
  }
  if (end > s->size() && !(mode & FALLOC_FL_KEEP_SIZE)) {
    return Fail(req, EFBIG, Loud::kInfo, "fallocate", "the image has a fixed size and cannot grow");
  }
  // Within the image, every block already has room (the log takes writes
  // without ever failing for space), so there is nothing to reserve.
  fuse_reply_err(req, 0);
}

// ---------------------------------------------------------------------------
// Entry points.

void sfs_init(void* userdata, fuse_conn_info* conn) {
  const Server* server = static_cast<const Server*>(userdata);
  conn->max_write = kMaxWrite;
  if (conn->capable & FUSE_CAP_ATOMIC_O_TRUNC) conn->want |= FUSE_CAP_ATOMIC_O_TRUNC;
  if (conn->capable & FUSE_CAP_ASYNC_DIO) conn->want |= FUSE_CAP_ASYNC_DIO;
  // The writeback cache (DESIGN.md 7: it reorders writes and delays them past
  // the daemon's view): only when asked for (-o writeback_cache), for a
  // buffered loop, whose writes then reach the daemon in large asynchronous
  // batches instead of one synchronous FUSE write at a time. fsync still
  // writes every dirty page back and then syncs the log. The price: the
  // kernel keeps the image's mtime itself and no longer drops cached pages
  // when it moves, so a buffered reader racing an O_DIRECT write can cache
  // old data (tests/e2e/page_cache.sh); docs/tuning.md "Writeback cache".
  conn->want &= ~static_cast<unsigned>(FUSE_CAP_WRITEBACK_CACHE);
  if (server->writeback_cache) {
    if (conn->capable & FUSE_CAP_WRITEBACK_CACHE) {
      conn->want |= FUSE_CAP_WRITEBACK_CACHE;
      spdlog::warn("FUSE writeback cache on (-o writeback_cache): for a buffered loop device (--loop-direct-io off). "
                   "Buffered readers of the image may see data older than a concurrent O_DIRECT write; unsynced "
                   "writes wait in the kernel's page cache, not in the log, and are lost if the daemon dies");
    } else {
      spdlog::warn("-o writeback_cache: this kernel's FUSE has no writeback cache; writes go through as without it");
    }
  }
  // auto_inval_data (libfuse's default) stays on, although every change to
  // the image comes through this mount: an asynchronous O_DIRECT write (a
  // loop device with --direct-io=on) drops the cached pages it covers only
  // before it is sent, so a buffered read racing it can cache the old data;
  // the mtime that write moves makes the kernel drop such pages at the next
  // attribute refresh (docs/tuning.md "Page cache of the image").
  conn->time_gran = 1;
  spdlog::info("FUSE session ready: proto {}.{}, max_write {}, max_readahead {}, capable {:#x}, want {:#x}",
               conn->proto_major, conn->proto_minor, conn->max_write, conn->max_readahead, conn->capable, conn->want);
}

void sfs_lookup(fuse_req_t req, fuse_ino_t parent, const char* name) {
  Guard(req, "lookup", [&] { do_lookup(req, parent, name); });
}
void sfs_forget(fuse_req_t req, fuse_ino_t, uint64_t) { fuse_reply_none(req); }  // two fixed inodes
void sfs_forget_multi(fuse_req_t req, size_t, fuse_forget_data*) { fuse_reply_none(req); }
void sfs_getattr(fuse_req_t req, fuse_ino_t ino, fuse_file_info*) {
  Guard(req, "getattr", [&] { do_getattr(req, ino); });
}
void sfs_setattr(fuse_req_t req, fuse_ino_t ino, struct stat* attr, int to_set, fuse_file_info*) {
  Guard(req, "setattr", [&] { do_setattr(req, ino, attr, to_set); });
}
void sfs_readlink(fuse_req_t req, fuse_ino_t ino) {
  Fail(req, EINVAL, Loud::kInfo, "readlink", InoName(ino) + " is not a symlink");
}

// Namespace changes: this mount holds one file, forever.
void Refuse(fuse_req_t req, const char* op, const std::string& name) {
  Guard(req, op, [&] {
    Fail(req, EPERM, Loud::kInfo, op, "'" + name + "': this mount holds only /image; nothing can be created, removed, renamed or linked");
  });
}
void sfs_mknod(fuse_req_t req, fuse_ino_t, const char* name, mode_t, dev_t) { Refuse(req, "mknod", name); }
void sfs_mkdir(fuse_req_t req, fuse_ino_t, const char* name, mode_t) { Refuse(req, "mkdir", name); }
void sfs_unlink(fuse_req_t req, fuse_ino_t, const char* name) { Refuse(req, "unlink", name); }
void sfs_rmdir(fuse_req_t req, fuse_ino_t, const char* name) { Refuse(req, "rmdir", name); }
void sfs_symlink(fuse_req_t req, const char*, fuse_ino_t, const char* name) { Refuse(req, "symlink", name); }
void sfs_rename(fuse_req_t req, fuse_ino_t, const char* name, fuse_ino_t, const char*, unsigned) {
  Refuse(req, "rename", name);
}
void sfs_link(fuse_req_t req, fuse_ino_t, fuse_ino_t, const char* name) { Refuse(req, "link", name); }
void sfs_create(fuse_req_t req, fuse_ino_t, const char* name, mode_t, fuse_file_info*) { Refuse(req, "create", name); }

void sfs_open(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  Guard(req, "open", [&] { do_open(req, ino, fi); });
}
void sfs_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info*) {
  Guard(req, "read", [&] { do_read(req, ino, size, off); });
}
void sfs_write_buf(fuse_req_t req, fuse_ino_t ino, fuse_bufvec* in_buf, off_t off, fuse_file_info*) {
  Guard(req, "write", [&] { do_write_buf(req, ino, in_buf, off); });
}
// close(2): nothing to make durable (fsync is the barrier).
void sfs_flush(fuse_req_t req, fuse_ino_t, fuse_file_info*) { fuse_reply_err(req, 0); }
void sfs_release(fuse_req_t req, fuse_ino_t ino, fuse_file_info*) {
  if (ino == kImageIno) S(req)->open_handles.fetch_sub(1);
  fuse_reply_err(req, 0);
}
void sfs_fsync(fuse_req_t req, fuse_ino_t, int, fuse_file_info*) {
  Guard(req, "fsync", [&] { do_fsync(req, "fsync"); });
}
void sfs_opendir(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  Guard(req, "opendir", [&] {
    if (ino != kRootIno) return Fail(req, ENOTDIR, Loud::kInfo, "opendir", InoName(ino) + " is not a directory");
    fi->cache_readdir = 1;
    fuse_reply_open(req, fi);
  });
}
void sfs_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info*) {
  Guard(req, "readdir", [&] { do_readdir(req, ino, size, off, false); });
}
void sfs_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info*) {
  Guard(req, "readdirplus", [&] { do_readdir(req, ino, size, off, true); });
}
void sfs_releasedir(fuse_req_t req, fuse_ino_t, fuse_file_info*) { fuse_reply_err(req, 0); }
void sfs_fsyncdir(fuse_req_t req, fuse_ino_t, int, fuse_file_info*) {
  Guard(req, "fsyncdir", [&] { do_fsync(req, "fsyncdir"); });
}
void sfs_statfs(fuse_req_t req, fuse_ino_t) {
  Guard(req, "statfs", [&] { do_statfs(req); });
}
void sfs_setxattr(fuse_req_t req, fuse_ino_t ino, const char* name, const char*, size_t, int) {
  Guard(req, "setxattr", [&] {
    Fail(req, EOPNOTSUPP, Loud::kInfo, "setxattr", std::string(name) + " on " + InoName(ino) + ": no extended attributes here");
  });
}
// ENOSYS, not ENODATA: the kernel then never asks again on this mount (and
// answers EOPNOTSUPP itself). With ENODATA it asked for security.capability
// before every write (file_remove_privs): a third FUSE round trip for each
// 4k write + fsync, and one more per write at QD16.
void sfs_getxattr(fuse_req_t req, fuse_ino_t ino, const char* name, size_t) {
  Guard(req, "getxattr", [&] { Fail(req, ENOSYS, Loud::kDebug, "getxattr", std::string(name) + " on " + InoName(ino)); });
}
void sfs_listxattr(fuse_req_t req, fuse_ino_t, size_t size) {
  if (size == 0) fuse_reply_xattr(req, 0);
  else fuse_reply_buf(req, nullptr, 0);
}
void sfs_removexattr(fuse_req_t req, fuse_ino_t ino, const char* name) {
  Guard(req, "removexattr", [&] { Fail(req, ENODATA, Loud::kDebug, "removexattr", std::string(name) + " on " + InoName(ino)); });
}
void sfs_fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t offset, off_t length, fuse_file_info*) {
  Guard(req, "fallocate", [&] { do_fallocate(req, ino, mode, offset, length); });
}

const fuse_lowlevel_ops kOps = [] {
  fuse_lowlevel_ops o{};
  o.init = sfs_init;
  o.lookup = sfs_lookup;
  o.forget = sfs_forget;
  o.getattr = sfs_getattr;
  o.setattr = sfs_setattr;
  o.readlink = sfs_readlink;
  o.mknod = sfs_mknod;
  o.mkdir = sfs_mkdir;
  o.unlink = sfs_unlink;
  o.rmdir = sfs_rmdir;
  o.symlink = sfs_symlink;
  o.rename = sfs_rename;
  o.link = sfs_link;
  o.open = sfs_open;
  o.read = sfs_read;
  o.flush = sfs_flush;
  o.release = sfs_release;
  o.fsync = sfs_fsync;
  o.opendir = sfs_opendir;
  o.readdir = sfs_readdir;
  o.releasedir = sfs_releasedir;
  o.fsyncdir = sfs_fsyncdir;
  o.statfs = sfs_statfs;
  o.setxattr = sfs_setxattr;
  o.getxattr = sfs_getxattr;
  o.listxattr = sfs_listxattr;
  o.removexattr = sfs_removexattr;
  o.create = sfs_create;
  o.write_buf = sfs_write_buf;
  o.forget_multi = sfs_forget_multi;
  o.fallocate = sfs_fallocate;
  o.readdirplus = sfs_readdirplus;
  return o;
}();

bool DroppedOption(const std::string& o) {
  static const char* const kMountOnly[] = {"defaults", "nofail", "_netdev", "auto", "noauto", "user", "users", "nouser",
                                           "owner", "group", "rw"};
  for (const char* m : kMountOnly) {
    if (o == m) return true;
  }
  return o.rfind("x-", 0) == 0 || o.rfind("comment=", 0) == 0 || o.rfind("fsname=", 0) == 0 ||
         o.rfind("subtype=", 0) == 0;
}

bool ParseId(const std::string& o, const char* key, unsigned* out) {
  const size_t k = std::strlen(key);
  if (o.compare(0, k, key) != 0) return false;
  char* end = nullptr;
  errno = 0;
  unsigned long v = std::strtoul(o.c_str() + k, &end, 10);
  if (errno != 0 || end == o.c_str() + k || *end != '\0' || v > 0xfffffffeUL) return false;
  *out = static_cast<unsigned>(v);
  return true;
}

class Args {
 public:
  void Add(const std::string& s) { store_.push_back(s); }
  fuse_args Get() {
    ptrs_.clear();
    for (auto& s : store_) ptrs_.push_back(s.data());
    ptrs_.push_back(nullptr);
    return FUSE_ARGS_INIT(static_cast<int>(store_.size()), ptrs_.data());
  }

 private:
  std::vector<std::string> store_;
  std::vector<char*> ptrs_;
};

// ---------------------------------------------------------------------------
// The request loop (docs/tuning.md, "FUSE threads").
//
// One thread at a time reads /dev/fuse (the reader) and serves what it read
// on the spot; a read that would wait for a disk goes to the read pool
// (do_read). Before it waits for anything else (an fsync, a write's merge
// with a block read from the home: blocking_hint.h) it hands the reading
// role to another thread. A monitor (the thread that called RunFuseServer) looks every
// millisecond: when the reader has been inside the same request for a whole
// tick (a write waiting for log space or merging with a slow home, a 1 MiB
// write), the reading role goes to another thread (an idle one, else a
// new one, up to max_threads), so the requests behind it are not held up; the
// slow thread finishes its request, then idles until a hand-off needs it.
//
// Why not libfuse's fuse_session_loop_mt: it keeps a thread per request in
// flight, every one of them in read(2) on /dev/fuse, so every request costs a
// wakeup and the threads fight over the FUSE input queue's lock. On the
// 2-core development VM that loop gave 4.2k 4k random-write IOPS where one
// thread gave 32k. BOOSTVOL_FUSE_LOOP=libfuse brings it back, for comparison.
//
// Stopping: libfuse's signal handlers (SIGTERM, SIGINT, SIGHUP) and
// FuseStopper end the session (fuse_session_exit); the monitor sees it within
// a tick, signals (SIGTERM) every worker in read(2) until it has left it, lets
// requests in progress finish, and joins every worker. Unmounting ends
// read(2) with ENODEV.
class FuseLoop {
 public:
  FuseLoop(fuse_session* se, unsigned max_threads, unsigned poll_us)
      : se_(se), max_threads_(std::max(2u, max_threads)), poll_us_(poll_us) {}

  // Serves until the session ends. Returns 0, or -EAGAIN if no thread could
  // be started.
  int Run() {
    const int fd = fuse_session_fd(se_), flags = ::fcntl(fd, F_GETFL);
    if (flags < 0 || ::fcntl(fd, F_SETFL, flags | O_NONBLOCK) != 0) {
      // Served all the same: read(2) then blocks, and there is no polling.
      spdlog::warn("cannot make /dev/fuse non-blocking ({}): FUSE polling is off", std::strerror(errno));
    }
    {
      MutexLock l(&mu_);
      if (!StartReaderLocked()) return -EAGAIN;
    }
    auto tick = kTick;
    uint64_t last_state = 0;
    int quiet_ticks = 0;
    while (!fuse_session_exited(se_)) {
      {
        MutexLock l(&mu_);
        if (ended_) break;
        cv_.WaitFor(tick);  // a worker that saw the session end wakes it early
        if (ended_) break;
      }
      const uint64_t state = reader_state_.load(std::memory_order_acquire);
      const uint64_t reader = reader_gen_.load(std::memory_order_acquire) & 0xFFFFFFFFu;
      const bool busy = (state & 1) != 0 && (state >> 32) == reader;
      if (busy && state == last_state) {  // the reader is inside the same request as a tick ago
        MutexLock l(&mu_);
        HandOffLocked();
      }
      // Idle for a while: look less often (a slow request is then handed off
      // after up to kSlowTick).
      quiet_ticks = (busy || state != last_state) ? 0 : quiet_ticks + 1;
      tick = quiet_ticks > 200 ? kSlowTick : kTick;
      slow_ticks_.store(tick == kSlowTick, std::memory_order_relaxed);
      last_state = state;
      if (poll_us_ > 0) GovernPolling();
    }
    // Every worker leaves: idle ones at once, those in read(2) when a signal
    // interrupts it (sent again until they are gone: one that lands just
    // before read(2) is not seen), busy ones after their request.
    fuse_session_exit(se_);
    std::vector<std::thread> threads;
    for (;;) {
      {
        MutexLock l(&mu_);
        ended_ = true;
        idle_cv_.SignalAll();
        bool all_done = true;
        for (Worker& w : workers_) {
          if (w.done) continue;
          all_done = false;
          // Only one in read(2): a request in progress finishes undisturbed.
          if (w.in_read.load(std::memory_order_acquire)) pthread_kill(w.handle, SIGTERM);
        }
        if (all_done) {
          for (Worker& w : workers_) threads.push_back(std::move(w.thread));
          spdlog::debug("FUSE loop: {} worker thread(s), {} hand-off(s) of the reader, polling switched on/off {} time(s)",
                        workers_.size(), handoffs_, poll_switches_);
          break;
        }
      }
      usleep(10 * 1000);
    }
    for (std::thread& t : threads) t.join();
    return 0;
  }

 private:
  static constexpr std::chrono::milliseconds kTick{1};
  static constexpr std::chrono::milliseconds kSlowTick{20};

  struct Worker {
    std::thread thread;
    pthread_t handle{};
    bool done = false;                // has left its loop; never calls into libfuse again
    std::atomic<bool> in_read{false};  // in (or about to enter) read(2) on /dev/fuse
  };

  // A new thread that holds the reading role from the start.
  bool StartReaderLocked() BV_REQUIRES(mu_) {
    if (workers_.size() - finished_ >= max_threads_) return false;
    const uint64_t old_gen = reader_gen_.load(std::memory_order_relaxed), gen = old_gen + 1;
    reader_gen_.store(gen, std::memory_order_release);  // before the thread looks at it
    workers_.emplace_back();
    Worker* w = &workers_.back();  // a deque: stays where it is
    try {
      w->thread = std::thread([this, w, gen] { WorkerLoop(w, gen); });
    } catch (const std::system_error& e) {
      workers_.pop_back();
      reader_gen_.store(old_gen, std::memory_order_release);  // the current reader carries on
      if (!thread_start_failed_) spdlog::warn("cannot start another FUSE worker thread: {}", e.what());
      thread_start_failed_ = true;
      return false;
    }
    w->handle = w->thread.native_handle();
    return true;
  }

  // The reader is stuck in a request: the role goes to an idle worker, else
  // to a new one (while fewer than max_threads run).
  void HandOffLocked() BV_REQUIRES(mu_) {
    if (ended_ || handoff_pending_) return;
    if (idle_ > 0) {
      reader_gen_.fetch_add(1, std::memory_order_acq_rel);
      handoff_pending_ = true;
      idle_cv_.Signal();
      handoffs_++;
    } else if (StartReaderLocked()) {
      handoffs_++;
    }
  }

  // blocking_hint.h: the reader is about to wait (a log or home read that
  // missed the page cache, an fsync): hand the role over now rather than
  // after a tick, if a request is already waiting. If none is, the thread
  // keeps the role: a hand-off costs a wake-up (at QD1, 4k write + fsync
  // went 3354-3537 -> 3596-4014 IOPS without it), and the monitor hands the
  // role over within a tick if one comes meanwhile. After a quiet spell the
  // monitor looks only every kSlowTick, so then the role goes at once.
  struct HookCtx {
    FuseLoop* loop;
    const uint64_t* gen;
  };
  static void AboutToBlockHook(void* ctx) {
    auto* h = static_cast<HookCtx*>(ctx);
    FuseLoop* loop = h->loop;
    if (loop->reader_gen_.load(std::memory_order_acquire) != *h->gen) return;  // not the reader
    if (!loop->slow_ticks_.load(std::memory_order_relaxed)) {
      pollfd p{fuse_session_fd(loop->se_), POLLIN, 0};
      if (::poll(&p, 1, 0) == 0) return;  // nothing waiting (an error or a signal: hand off)
    }
    MutexLock l(&loop->mu_);
    if (loop->reader_gen_.load(std::memory_order_acquire) == *h->gen) loop->HandOffLocked();
  }

  void WorkerLoop(Worker* self, uint64_t gen) {
    NameThisThread("bv-fuse");
    fuse_buf buf{};
    HookCtx hook{this, &gen};
    PollState poll;
    uint64_t requests = 0;  // started by this worker (reader_state_)
    SetBlockingHook(&FuseLoop::AboutToBlockHook, &hook);
    for (;;) {
      // Serve requests while this thread holds the reading role.
      while (!fuse_session_exited(se_) && reader_gen_.load(std::memory_order_acquire) == gen) {
        self->in_read.store(true, std::memory_order_release);
        if (fuse_session_exited(se_)) {  // a stop signal that came before the flag was up
          self->in_read.store(false, std::memory_order_release);
          break;
        }
        const int res = fuse_session_receive_buf(se_, &buf);
        if (res == -EAGAIN) {
          // Nothing waiting (the descriptor is non-blocking: when requests
          // queue up, each costs one read(2) and no poll(2)). Poll for a
          // while if it pays, else sleep in poll(2) until one comes.
          if (poll_us_ == 0 || !PollForRequest(&poll)) {
            pollfd p{fuse_session_fd(se_), POLLIN, 0};
            (void)::poll(&p, 1, -1);  // EINTR (a stop signal): the loop looks at the session
          }
          self->in_read.store(false, std::memory_order_release);
          continue;
        }
        self->in_read.store(false, std::memory_order_release);
        if (res == -EINTR) continue;
        if (res <= 0) {  // 0: unmounted (libfuse has ended the session)
          if (res < 0) spdlog::error("reading a FUSE request failed: {}", std::strerror(-res));
          fuse_session_exit(se_);
          break;
        }
        // A generation belongs to one thread, so this thread's own count
        // tells its requests apart.
        const uint64_t started = (gen << 32) | ((++requests & 0x7FFFFFFFu) << 1) | 1;
        reader_state_.store(started, std::memory_order_release);
        fuse_session_process_buf(se_, &buf);
        // Between requests, unless another reader has started one since (this
        // thread was handed off): that one's state stays.
        uint64_t expected = started;
        reader_state_.compare_exchange_strong(expected, started & ~uint64_t{1}, std::memory_order_acq_rel);
      }
      MutexLock l(&mu_);
      if (ended_ || fuse_session_exited(se_)) break;
      // Handed off: idle until the role comes back.
      idle_++;
      while (!ended_ && !handoff_pending_) idle_cv_.Wait();
      idle_--;
      if (ended_) break;
      handoff_pending_ = false;
      gen = reader_gen_.load(std::memory_order_acquire);
    }
    SetBlockingHook(nullptr, nullptr);
    std::free(buf.mem);
    MutexLock l(&mu_);
    self->done = true;
    finished_++;
    if (fuse_session_exited(se_)) {
      ended_ = true;
      cv_.Signal();
    }
  }

  // Polling only while the machine has CPU to spare (the monitor decides,
  // every kGovernPeriodNs): when every CPU is busy with real work (4k reads of
  // cached blocks at QD16 kept both CPUs of the development VM busy), a
  // polling reader takes a CPU the threads that bring and complete requests
  // need (there it cost 22-30% of the reads' IOPS). Spare means idle (from
  // /proc/stat) plus the time the readers spent polling, in CPUs; below
  // kPollOffSpare polling stops, above kPollOnSpare it starts again.
  void GovernPolling() {
    const uint64_t now = static_cast<uint64_t>(
        std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
            .count());
    if (now - last_govern_ns_ < kGovernPeriodNs) return;
    last_govern_ns_ = now;
    const double spare = spare_cpu_.Sample(now, polled_ns_.exchange(0, std::memory_order_relaxed));
    if (spare < 0) return;  // the first sample, or no /proc/stat: polling stays as it is
    const bool allowed = poll_allowed_.load(std::memory_order_relaxed);
    if (allowed && spare < kPollOffSpare) {
      poll_allowed_.store(false, std::memory_order_relaxed);
      poll_switches_++;
      spdlog::debug("FUSE polling off: {:.2f} CPUs to spare", spare);
    } else if (!allowed && spare > kPollOnSpare) {
      poll_allowed_.store(true, std::memory_order_relaxed);
      poll_switches_++;
      spdlog::debug("FUSE polling on: {:.2f} CPUs to spare", spare);
    }
  }
  static constexpr uint64_t kGovernPeriodNs = 50'000'000;
  static constexpr double kPollOffSpare = 0.4, kPollOnSpare = 0.6;
  SpareCpuMeter spare_cpu_;
  uint64_t last_govern_ns_ = 0;  // the monitor's own
  uint64_t poll_switches_ = 0;   // the monitor's own
  std::atomic<bool> poll_allowed_{true};
  std::atomic<bool> slow_ticks_{false};  // the monitor looks only every kSlowTick (AboutToBlockHook)
  std::atomic<uint64_t> polled_ns_{0};  // readers' polling time since the last GovernPolling

  // Busy-polls /dev/fuse for up to poll_us_, once a read found no request,
  // before the reader sleeps in poll(2) (docs/tuning.md, "Polling"): a
  // request that comes meanwhile is read without the sleep and wake-up (on a
  // VM an idle vCPU halts, and waking it takes an inter-processor interrupt).
  // Returns early when a request is there, the session ends, or a signal
  // comes.
  //
  // Polling only while it pays: a poll that ends without a request (the
  // requests come slower than poll_us_, or the CPU is oversubscribed and the
  // kernel threads that bring them are not running) makes the reader skip
  // polling the next 1, 2, 4 ... 256 times it finds no request waiting; a
  // poll that finds one resets that. The state is the calling worker's own
  // (two workers can both be reading for a moment around a hand-off).
  struct PollState {
    unsigned misses = 0;  // polls in a row that found nothing
    unsigned skip = 0;    // empty reads left before the next poll
  };
  // True when a request (or an error, a signal) is there to read.
  bool PollForRequest(PollState* st) {
    if (!poll_allowed_.load(std::memory_order_relaxed)) return false;
    if (st->skip > 0) {
      st->skip--;
      return false;
    }
    pollfd p{fuse_session_fd(se_), POLLIN, 0};
    const auto start = std::chrono::steady_clock::now(), until = start + std::chrono::microseconds(poll_us_);
    auto now = start;
    bool found = false;
    while (!fuse_session_exited(se_)) {
      if (::poll(&p, 1, 0) != 0) {  // a request (or an error, a signal: read(2) reports it)
        found = true;
        break;
      }
      now = std::chrono::steady_clock::now();
      if (now >= until) break;
    }
    if (found) {
      now = std::chrono::steady_clock::now();
      st->misses = 0;
    } else {
      st->misses = std::min(st->misses + 1, kMaxPollBackoffShift);
      st->skip = 1u << (st->misses - 1);
    }
    polled_ns_.fetch_add(static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(now - start).count()),
                         std::memory_order_relaxed);
    return found;
  }
  static constexpr unsigned kMaxPollBackoffShift = 9;  // skip at most 256 reads

  fuse_session* const se_;
  const size_t max_threads_;
  const unsigned poll_us_;
  // What the reader is doing, for the monitor: the low 32 bits of the
  // reader's generation << 32 | how many requests this worker has started
  // (mod 2^31) << 1 | 1 while it is inside the last one. Only the thread that
  // started a request clears its bit, and only if no request started since:
  // a handed-off thread that finishes late never hides the new reader's
  // request, and two threads blocked at once are not mistaken for none (a
  // single counter, odd inside a request, read two blocked requests as
  // "between requests": the monitor then never handed off again, and nobody
  // read /dev/fuse until one of them finished).
  std::atomic<uint64_t> reader_state_{0};
  // The reading role's generation: a worker whose generation differs is not
  // the reader (any more). Changed under mu_ only.
  std::atomic<uint64_t> reader_gen_{0};
  Mutex mu_;
  CondVar cv_{&mu_};       // wakes the monitor
  CondVar idle_cv_{&mu_};  // wakes an idle worker
  std::deque<Worker> workers_ BV_GUARDED_BY(mu_);
  size_t finished_ BV_GUARDED_BY(mu_) = 0;
  unsigned idle_ BV_GUARDED_BY(mu_) = 0;
  bool handoff_pending_ BV_GUARDED_BY(mu_) = false;
  bool ended_ BV_GUARDED_BY(mu_) = false;
  bool thread_start_failed_ BV_GUARDED_BY(mu_) = false;
  uint64_t handoffs_ BV_GUARDED_BY(mu_) = 0;
};

}  // namespace

// ---------------------------------------------------------------------------

bool FuseStopper::Attach(fuse_session* se, pthread_t loop_thread) {
  MutexLock l(&mu_);
  if (stop_requested_) return false;
  se_ = se;
  loop_thread_ = loop_thread;
  return true;
}

void FuseStopper::Detach() {
  MutexLock l(&mu_);
  se_ = nullptr;
}

void FuseStopper::RequestStop() {
  // libfuse's MT loop waits in sem_wait(); a signal that lands just before it
  // would be lost, so keep knocking until the loop has returned (bounded).
  for (int i = 0; i < 100; ++i) {
    {
      MutexLock l(&mu_);
      stop_requested_ = true;
      if (se_ == nullptr) return;
      fuse_session_exit(se_);
      pthread_kill(loop_thread_, SIGTERM);
    }
    usleep(100 * 1000);
  }
  spdlog::error("the FUSE loop did not stop within 10 s of a stop request");
}

std::vector<std::string> SplitMountOptions(const std::string& s) {
  std::vector<std::string> out;
  std::string cur;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 1 < s.size()) {
      cur += s[i];
      cur += s[++i];
    } else if (s[i] == ',') {
      if (!cur.empty()) out.push_back(cur);
      cur.clear();
    } else {
      cur += s[i];
    }
  }
  if (!cur.empty()) out.push_back(cur);
  return out;
}

std::string EscapeMountOptionValue(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == ',' || c == '\\') out += '\\';
    out += c;
  }
  return out;
}

Status ParseMountOptions(const std::vector<std::string>& options, ParsedMountOptions* out) {
  *out = ParsedMountOptions{};
  for (const std::string& o : options) {
    if (o.empty() || DroppedOption(o)) continue;
    unsigned v = 0;
    if (o.rfind("uid=", 0) == 0) {
      if (!ParseId(o, "uid=", &v)) return Status::InvalidArgument("bad mount option '" + o + "': expected uid=NUMBER");
      out->uid = v;
      continue;
    }
    if (o.rfind("gid=", 0) == 0) {
      if (!ParseId(o, "gid=", &v)) return Status::InvalidArgument("bad mount option '" + o + "': expected gid=NUMBER");
      out->gid = v;
      continue;
    }
    if (o.rfind("poll_us=", 0) == 0) {
      if (!ParseId(o, "poll_us=", &out->poll_us) || out->poll_us > kMaxPollUs) {
        return Status::InvalidArgument("bad mount option '" + o + "': expected poll_us=MICROSECONDS, 0 (never poll) to " +
                                       std::to_string(kMaxPollUs));
      }
      continue;
    }
    if (o == "writeback_cache") {
      out->writeback_cache = true;
      continue;
    }
    if (o == "default_permissions") continue;
    out->fuse_options += "," + o;
  }
  return Status::OK();
}

Status RunFuseServer(Volume* volume, const FuseServerOptions& opts) {
  struct stat mst;
  if (::stat(opts.mountpoint.c_str(), &mst) != 0) {
    return Status::InvalidArgument("mountpoint " + opts.mountpoint + ": " + std::strerror(errno));
  }
  if (!S_ISDIR(mst.st_mode)) return Status::InvalidArgument("mountpoint " + opts.mountpoint + " is not a directory");

  ParsedMountOptions parsed;
  if (Status s = ParseMountOptions(opts.options, &parsed); !s.ok()) return s;
  const unsigned uid = parsed.uid.value_or(::geteuid()), gid = parsed.gid.value_or(::getegid());
  const unsigned poll_us = parsed.poll_us;
  std::string fuse_opts = "default_permissions,subtype=boostvol";
  if (!opts.fsname.empty()) fuse_opts += ",fsname=" + EscapeMountOptionValue(opts.fsname);
  fuse_opts += parsed.fuse_options;

  fuse_set_log_func(FuseLogToSpdlog);
  Args args;
  args.Add("boostvol");
  args.Add("-o");
  args.Add(fuse_opts);
  fuse_args fargs = args.Get();

  Server server(volume, uid, gid, parsed.writeback_cache);
  fuse_session* se = fuse_session_new(&fargs, &kOps, sizeof(kOps), &server);
  if (se == nullptr) {
    return Status::InvalidArgument("FUSE rejected the mount options '" + fuse_opts + "': " + TakeLastFuseMessage());
  }
  struct SessionCloser {
    fuse_session* se;
    ~SessionCloser() { fuse_session_destroy(se); }
  } closer{se};

  if (fuse_session_mount(se, opts.mountpoint.c_str()) != 0) {
    return Status::IoError(EIO, "cannot mount FUSE on " + opts.mountpoint + ": " + TakeLastFuseMessage());
  }
  if (fuse_set_signal_handlers(se) != 0) {
    fuse_session_unmount(se);
    return Status::IoError(EIO, "cannot install signal handlers: " + TakeLastFuseMessage());
  }
  spdlog::info("mounted {} on {} (image {} bytes, options {}, poll_us {})", opts.fsname, opts.mountpoint, volume->size(),
               fuse_opts, poll_us);

  const bool run = opts.stopper == nullptr || opts.stopper->Attach(se, pthread_self());
  if (opts.on_mounted) opts.on_mounted();

  int rc = 0;
  if (run) {
    // The signals the caller may have blocked while other threads started
    // must reach this thread (and the workers it creates).
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    pthread_sigmask(SIG_UNBLOCK, &set, nullptr);

    Trace();  // opens BOOSTVOL_WRITE_TRACE, if set, before the first request
    unsigned idle = opts.max_idle_threads, max = opts.max_threads;
    if (const char* t = std::getenv("BOOSTVOL_FUSE_THREADS")) {  // experiments; see docs/tuning.md
      idle = max = static_cast<unsigned>(std::max(1, std::atoi(t)));
    }
    const char* loop_kind = std::getenv("BOOSTVOL_FUSE_LOOP");
    if (loop_kind != nullptr && std::strcmp(loop_kind, "libfuse") == 0) {
      spdlog::info("BOOSTVOL_FUSE_LOOP=libfuse: libfuse's multithreaded loop ({} idle, {} threads at most)", idle, max);
      fuse_loop_config* cfg = fuse_loop_cfg_create();
      fuse_loop_cfg_set_clone_fd(cfg, 1);
      fuse_loop_cfg_set_idle_threads(cfg, idle);
      fuse_loop_cfg_set_max_threads(cfg, max);
      rc = fuse_session_loop_mt(se, cfg);
      fuse_loop_cfg_destroy(cfg);
    } else {
      TaskPool read_pool("bv-read", kMaxReadThreads);
      server.read_pool = &read_pool;
      FuseLoop loop(se, max, poll_us);
      rc = loop.Run();
      spdlog::debug("FUSE read pool: {} thread(s)", read_pool.threads());
      read_pool.Stop();  // every read handed to it is answered before the session goes
      server.read_pool = nullptr;
      fuse_session_reset(se);
    }

    pthread_sigmask(SIG_BLOCK, &set, nullptr);
  }
  if (opts.stopper != nullptr) opts.stopper->Detach();

  if (rc > 0) spdlog::info("FUSE loop ended on signal {} ({})", rc, strsignal(rc));
  else if (rc < 0) spdlog::error("FUSE loop ended with error: {}", std::strerror(-rc));
  else spdlog::info("FUSE loop ended (unmounted or stop requested)");
  if (int64_t open = server.open_handles.load(); open > 0) {
    spdlog::warn("{} open handle(s) of /image remain (a loop device?); their I/O fails from now on", open);
  }
  fuse_remove_signal_handlers(se);
  fuse_session_unmount(se);
  spdlog::info("unmounted {}", opts.mountpoint);
  return Status::OK();
}

}  // namespace boostvol
