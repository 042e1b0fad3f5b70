// Env::Posix(): the real file layer (Linux). See env.h for the contract.
//
// Every directory is held open as an O_DIRECTORY descriptor and every file
// inside it is opened with openat(..., O_NOFOLLOW): a symlink planted inside
// FAST or SLOW fails with ELOOP and is never followed. Descriptors are owned
// by a ScopedFd (closed exactly once, in its destructor).
//
// Thread-safety: a PosixFile/PosixDir holds an fd that never changes after
// construction, and pread/pwrite/fstatat/... are thread-safe, so no lock is
// needed in this file (NativeAio, for WriteAtDirectV, has its own).
//
// Errors: every failure is Status::IoError(errno, "<what> <full path>"),
// except a missing name, which is Status::NotFound (err() is ENOENT in both
// readings, so callers may test either IsNotFound() or err() == ENOENT).

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <limits>
#include <mutex>
#include <spdlog/spdlog.h>
#include <string>

#include "util/blocking_hint.h"
#include "util/env.h"
#include "util/native_aio.h"

namespace boostvol {
namespace {

class ScopedFd {
 public:
  ScopedFd() = default;
  explicit ScopedFd(int fd) : fd_(fd) {}
  ~ScopedFd() { Reset(); }
  ScopedFd(ScopedFd&& o) noexcept : fd_(o.Release()) {}
  ScopedFd& operator=(ScopedFd&& o) noexcept {
    if (this != &o) {
      Reset();
      fd_ = o.Release();
    }
    return *this;
  }
  ScopedFd(const ScopedFd&) = delete;
  ScopedFd& operator=(const ScopedFd&) = delete;

  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  int Release() {
    int fd = fd_;
    fd_ = -1;
    return fd;
  }
  void Reset() {
    // close() is not retried on EINTR: on Linux the fd is released anyway.
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

 private:
  int fd_ = -1;
};

std::string JoinPath(const std::string& dir, const std::string& name) {
  if (!dir.empty() && dir.back() == '/') return dir + name;
  return dir + "/" + name;
}

// Builds the Status for a failed call; `what` says what was being done
// ("opening", "reading 4096 bytes at 0 of"), `path` is the full path.
Status ErrnoStatus(int err, const std::string& what, const std::string& path) {
  if (err == ENOENT) return Status::NotFound(what + " " + path + ": no such file or directory");
  if (err == ELOOP) {
    return Status::IoError(err, what + " " + path +
                                    ": it is a symbolic link; boostvol never follows links inside FAST or SLOW");
  }
  return Status::IoError(err, what + " " + path);
}

Status InvalidName(const std::string& dir, const std::string& name) {
  return Status::InvalidArgument("\"" + name + "\" is not a plain file name (inside " + dir + ")");
}

Status FillInfo(const struct stat& st, FileInfo* info) {
  info->size = static_cast<uint64_t>(st.st_size);
  info->mtime_ns = static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
  info->ctime_ns = static_cast<int64_t>(st.st_ctim.tv_sec) * 1000000000 + st.st_ctim.tv_nsec;
  info->blocks_512 = static_cast<uint64_t>(st.st_blocks);
  info->mode = static_cast<uint32_t>(st.st_mode);
  info->uid = static_cast<uint32_t>(st.st_uid);
  info->dev = static_cast<uint64_t>(st.st_dev);
  info->ino = static_cast<uint64_t>(st.st_ino);
  info->nlink = static_cast<uint64_t>(st.st_nlink);
  return Status::OK();
}

// Offsets must fit off_t, including offset + n.
bool RangeFits(uint64_t offset, uint64_t n) {
  constexpr uint64_t kMax = static_cast<uint64_t>(std::numeric_limits<off_t>::max());
  return offset <= kMax && n <= kMax - offset;
}

std::string RangeText(uint64_t offset, uint64_t n) {
  return std::to_string(n) + " bytes at offset " + std::to_string(offset) + " of";
}

class PosixFile final : public File {
 public:
  PosixFile(ScopedFd fd, std::string path) : fd_(std::move(fd)), path_(std::move(path)) {}

  Status ReadAt(uint64_t offset, void* buf, size_t n) override {
    if (!RangeFits(offset, n)) return Status::IoError(EOVERFLOW, "reading " + RangeText(offset, n) + " " + path_);
    auto* p = static_cast<char*>(buf);
    size_t done = 0;
    if ((HasBlockingHook() || NoWait()) && n > 0) {
      // A FUSE worker: from the page cache without waiting if it can;
      // otherwise it gives up (NoWaitScope) or says it is about to block
      // (blocking_hint.h) first. A short read (EOF) or a file system
      // without RWF_NOWAIT counts as "would wait".
      iovec iov{p, n};
      ssize_t r;
      do {
        r = ::preadv2(fd_.get(), &iov, 1, static_cast<off_t>(offset), RWF_NOWAIT);
      } while (r < 0 && errno == EINTR);
      if (r > 0) done = static_cast<size_t>(r);
      if (done == n) return Status::OK();
      if (NoWait()) return Status::WouldBlock();
      AboutToBlock();
    }
    while (done < n) {
      ssize_t r = ::pread(fd_.get(), p + done, n - done, static_cast<off_t>(offset + done));
      if (r < 0) {
        if (errno == EINTR) continue;
        return ErrnoStatus(errno, "reading " + RangeText(offset, n), path_);
      }
      if (r == 0) {  // EOF: the rest reads as zeros
        std::memset(p + done, 0, n - done);
        break;
      }
      done += static_cast<size_t>(r);
    }
    return Status::OK();
  }

  Status WriteAt(uint64_t offset, const void* buf, size_t n) override {
    if (!RangeFits(offset, n)) return Status::IoError(EOVERFLOW, "writing " + RangeText(offset, n) + " " + path_);
    const auto* p = static_cast<const char*>(buf);
    size_t done = 0;
    while (done < n) {
      ssize_t r = ::pwrite(fd_.get(), p + done, n - done, static_cast<off_t>(offset + done));
      if (r < 0) {
        if (errno == EINTR) continue;
        return ErrnoStatus(errno, "writing " + RangeText(offset, n), path_);
      }
      if (r == 0) return Status::IoError(EIO, "writing " + RangeText(offset, n) + " " + path_ + ": no progress");
      done += static_cast<size_t>(r);
    }
    return Status::OK();
  }

  // O_DIRECT through a second descriptor of the same file, opened on first
  // use (/proc/self/fd/N reopens this very inode, no path lookup in FAST).
  // Where O_DIRECT is refused (no /proc, tmpfs on old kernels, a file system
  // without it) the write is a plain WriteAt, and stays one.
  Status WriteAtDirect(uint64_t offset, const void* buf, size_t n) override {
    constexpr uintptr_t kAlign = 4096;
    if (offset % kAlign != 0 || n % kAlign != 0 || reinterpret_cast<uintptr_t>(buf) % kAlign != 0)
      return WriteAt(offset, buf, n);
    if (!RangeFits(offset, n)) return Status::IoError(EOVERFLOW, "writing " + RangeText(offset, n) + " " + path_);
    const int fd = DirectFd();
    if (fd < 0) return WriteAt(offset, buf, n);
    const auto* p = static_cast<const char*>(buf);
    size_t done = 0;
    while (done < n) {
      ssize_t r = ::pwrite(fd, p + done, n - done, static_cast<off_t>(offset + done));
      if (r < 0) {
        if (errno == EINTR) continue;
        if (errno == EINVAL) {  // O_DIRECT refused after all: buffered from now on
          if (!direct_off_.exchange(true))
            spdlog::warn("{}: direct I/O (O_DIRECT) writes fail with EINVAL; writing through the page cache instead",
                         path_);
          return WriteAt(offset + done, p + done, n - done);
        }
        return ErrnoStatus(errno, "writing " + RangeText(offset, n), path_);
      }
      if (r == 0) return Status::IoError(EIO, "writing " + RangeText(offset, n) + " " + path_ + ": no progress");
      done += static_cast<size_t>(r);
      if (done < n && done % kAlign != 0) return WriteAt(offset + done, p + done, n - done);  // odd short write
    }
    return Status::OK();
  }

  // Several records at once (docs/tuning.md, "Log writes in flight"): every
  // piece is its own write, all in flight together (NativeAio). Anything
  // else (no native AIO, a piece it cannot write directly) goes one piece at
  // a time; what comes back short is finished by WriteAtDirect, which also
  // reports the errors.
  Status WriteAtDirectV(uint64_t offset, const Piece* pieces, size_t count) override {
    constexpr uintptr_t kAlign = 4096;
    NativeAio::Write writes[NativeAio::kMaxInFlight];
    bool aligned = count >= 2 && count <= NativeAio::kMaxInFlight && offset % kAlign == 0;
    uint64_t total = 0;
    for (size_t i = 0; aligned && i < count; i++) {
      aligned = pieces[i].n % kAlign == 0 && reinterpret_cast<uintptr_t>(pieces[i].data) % kAlign == 0;
      writes[i] = NativeAio::Write{pieces[i].data, pieces[i].n, offset + total};
      total += pieces[i].n;
    }
    const int fd = aligned && RangeFits(offset, total) ? DirectFd() : -1;
    ssize_t done[NativeAio::kMaxInFlight];
    if (fd < 0 || !aio_.WriteAll(fd, writes, count, done)) return File::WriteAtDirectV(offset, pieces, count);
    for (size_t i = 0; i < count; i++) {
      const size_t got = done[i] > 0 ? static_cast<size_t>(done[i]) : 0;
      if (got >= pieces[i].n) continue;
      BV_RETURN_IF_ERROR(
          WriteAtDirect(writes[i].offset + got, static_cast<const char*>(pieces[i].data) + got, pieces[i].n - got));
    }
    return Status::OK();
  }

  Status Sync() override {
    // EINTR is retried: it reports no write-back error, so nothing was dropped.
    while (::fdatasync(fd_.get()) != 0) {
      if (errno != EINTR) return ErrnoStatus(errno, "syncing (fdatasync)", path_);
    }
    return Status::OK();
  }

  Status Truncate(uint64_t size) override {
    if (!RangeFits(size, 0)) return Status::IoError(EOVERFLOW, "truncating " + path_);
    while (::ftruncate(fd_.get(), static_cast<off_t>(size)) != 0) {
      if (errno != EINTR) return ErrnoStatus(errno, "truncating to " + std::to_string(size) + " bytes", path_);
    }
    return Status::OK();
  }

  Status Allocate(uint64_t offset, uint64_t len) override { return Fallocate(0, "allocating", offset, len); }

  Status PunchHole(uint64_t offset, uint64_t len) override {
    return Fallocate(FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, "punching a hole of", offset, len);
  }

  // SEEK_DATA skips holes and, on ext4 and XFS, unwritten extents whose
  // pages are not in the page cache (file systems without support report
  // every byte as data, which is the safe answer).
  Status NeverWrittenRun(uint64_t offset, uint64_t* end) override {
    *end = offset;
    if (!RangeFits(offset, 0)) return Status::OK();
    const off_t data = ::lseek(fd_.get(), static_cast<off_t>(offset), SEEK_DATA);
    if (data >= 0) {
      *end = std::max<uint64_t>(offset, static_cast<uint64_t>(data));
      return Status::OK();
    }
    if (errno != ENXIO) return ErrnoStatus(errno, "looking for data (SEEK_DATA) at " + std::to_string(offset) + " in", path_);
    // No data at or after offset: never written up to the end of the file.
    struct stat st;
    if (::fstat(fd_.get(), &st) != 0) return ErrnoStatus(errno, "stat of", path_);
    *end = std::max<uint64_t>(offset, static_cast<uint64_t>(st.st_size));
    return Status::OK();
  }

  void DropCache(uint64_t offset, uint64_t len) override {
    (void)::posix_fadvise(fd_.get(), static_cast<off_t>(offset), static_cast<off_t>(len), POSIX_FADV_DONTNEED);
  }

  Status Stat(FileInfo* info) override {
    struct stat st;
    if (::fstat(fd_.get(), &st) != 0) return ErrnoStatus(errno, "stat of", path_);
    return FillInfo(st, info);
  }

  const std::string& name() const override { return path_; }

 private:
  Status Fallocate(int mode, const char* what, uint64_t offset, uint64_t len) {
    if (len == 0) return Status::OK();  // fallocate rejects len 0 with EINVAL
    if (!RangeFits(offset, len)) {
      return Status::IoError(EOVERFLOW, std::string(what) + " " + RangeText(offset, len) + " " + path_);
    }
    while (::fallocate(fd_.get(), mode, static_cast<off_t>(offset), static_cast<off_t>(len)) != 0) {
      if (errno != EINTR) return ErrnoStatus(errno, std::string(what) + " " + RangeText(offset, len), path_);
    }
    return Status::OK();
  }

  // The O_DIRECT descriptor (opened at the first direct write), or -1 when
  // writes go through the page cache instead (no O_DIRECT here, or it
  // refused a write with EINVAL).
  int DirectFd() {
    std::call_once(direct_once_, [this] { OpenDirect(); });
    return direct_off_.load(std::memory_order_relaxed) ? -1 : direct_fd_.get();
  }

  void OpenDirect() {
    const std::string proc = "/proc/self/fd/" + std::to_string(fd_.get());
    int fd;
    do {
      fd = ::open(proc.c_str(), O_WRONLY | O_DIRECT | O_CLOEXEC);
    } while (fd < 0 && errno == EINTR);
    if (fd < 0) {
      spdlog::info("{}: no direct I/O (reopening it with O_DIRECT: {}); writes go through the page cache", path_,
                   std::strerror(errno));
      return;
    }
    ScopedFd sfd(fd);
    struct stat a, b;
    if (::fstat(fd_.get(), &a) != 0 || ::fstat(sfd.get(), &b) != 0 || a.st_dev != b.st_dev || a.st_ino != b.st_ino ||
        !S_ISREG(b.st_mode)) {
      spdlog::warn("{}: reopening it for direct I/O gave another file; writes go through the page cache", path_);
      return;
    }
    direct_fd_ = std::move(sfd);
  }

  const ScopedFd fd_;
  const std::string path_;
  NativeAio aio_;  // WriteAtDirectV's
  std::once_flag direct_once_;
  ScopedFd direct_fd_;  // set once, under direct_once_
  std::atomic<bool> direct_off_{false};
};

class PosixFileLock final : public FileLock {
 public:
  explicit PosixFileLock(ScopedFd fd) : fd_(std::move(fd)) {}
  // Closing the (only) descriptor of the open file description drops the flock.

 private:
  ScopedFd fd_;
};

// Opens `name` in `dirfd` without following links and refuses anything but a
// regular file (O_NONBLOCK keeps a planted FIFO from hanging the open; it is
// cleared again before the fd is used).
Status OpenRegular(int dirfd, const std::string& path, const std::string& name, int flags, ScopedFd* out) {
  int fd;
  do {
    fd = ::openat(dirfd, name.c_str(), flags | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK, 0600);
  } while (fd < 0 && errno == EINTR);
  if (fd < 0) return ErrnoStatus(errno, "opening", path);
  ScopedFd sfd(fd);
  struct stat st;
  if (::fstat(sfd.get(), &st) != 0) return ErrnoStatus(errno, "stat of", path);
  if (!S_ISREG(st.st_mode)) {
    int err = S_ISDIR(st.st_mode) ? EISDIR : EINVAL;
    return Status::IoError(err, "opening " + path + ": not a regular file");
  }
  int fl = ::fcntl(sfd.get(), F_GETFL);
  if (fl < 0 || ::fcntl(sfd.get(), F_SETFL, fl & ~O_NONBLOCK) != 0) return ErrnoStatus(errno, "fcntl of", path);
  *out = std::move(sfd);
  return Status::OK();
}

class PosixDir final : public Dir {
 public:
  PosixDir(ScopedFd fd, std::string path) : fd_(std::move(fd)), path_(std::move(path)) {}

  Status OpenFile(const std::string& name, OpenMode mode, std::unique_ptr<File>* file) override {
    if (!IsPlainName(name)) return InvalidName(path_, name);
    int flags = 0;
    switch (mode) {
      case OpenMode::kReadOnly: flags = O_RDONLY; break;
      case OpenMode::kReadWrite: flags = O_RDWR; break;
      case OpenMode::kCreate: flags = O_RDWR | O_CREAT; break;
      case OpenMode::kCreateExclusive: flags = O_RDWR | O_CREAT | O_EXCL; break;
    }
    ScopedFd fd;
    std::string path = JoinPath(path_, name);
    BV_RETURN_IF_ERROR(OpenRegular(fd_.get(), path, name, flags, &fd));
    *file = std::make_unique<PosixFile>(std::move(fd), std::move(path));
    return Status::OK();
  }

  Status Exists(const std::string& name, bool* exists) override {
    if (!IsPlainName(name)) return InvalidName(path_, name);
    struct stat st;
    if (::fstatat(fd_.get(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0) {
      *exists = true;
      return Status::OK();
    }
    if (errno == ENOENT) {
      *exists = false;
      return Status::OK();
    }
    return ErrnoStatus(errno, "checking whether this exists:", JoinPath(path_, name));
  }

  Status Rename(const std::string& from, const std::string& to) override {
    if (!IsPlainName(from)) return InvalidName(path_, from);
    if (!IsPlainName(to)) return InvalidName(path_, to);
    if (::renameat(fd_.get(), from.c_str(), fd_.get(), to.c_str()) != 0) {
      return ErrnoStatus(errno, "renaming " + JoinPath(path_, from) + " to", JoinPath(path_, to));
    }
    return Status::OK();
  }

  Status Remove(const std::string& name) override {
    if (!IsPlainName(name)) return InvalidName(path_, name);
    if (::unlinkat(fd_.get(), name.c_str(), 0) != 0) return ErrnoStatus(errno, "removing", JoinPath(path_, name));
    return Status::OK();
  }

  Status Sync() override {
    while (::fsync(fd_.get()) != 0) {
      if (errno != EINTR) return ErrnoStatus(errno, "syncing directory", path_);
    }
    return Status::OK();
  }

  Status LockFile(const std::string& name, const std::string& owner_note, std::unique_ptr<FileLock>* lock) override {
    if (!IsPlainName(name)) return InvalidName(path_, name);
    std::string path = JoinPath(path_, name);
    ScopedFd fd;
    BV_RETURN_IF_ERROR(OpenRegular(fd_.get(), path, name, O_RDWR | O_CREAT, &fd));
    int r;
    do {
      r = ::flock(fd.get(), LOCK_EX | LOCK_NB);
    } while (r != 0 && errno == EINTR);
    if (r != 0) {
      if (errno == EWOULDBLOCK) {
        std::string note = ReadNote(fd.get());
        return Status::Busy(path + " is locked by " + (note.empty() ? std::string("another process") : note));
      }
      return ErrnoStatus(errno, "locking", path);
    }
    // We hold the lock: replace the previous holder's note with ours.
    if (::ftruncate(fd.get(), 0) != 0) return ErrnoStatus(errno, "truncating lock file", path);
    size_t done = 0;
    while (done < owner_note.size()) {
      ssize_t w = ::pwrite(fd.get(), owner_note.data() + done, owner_note.size() - done, static_cast<off_t>(done));
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) return ErrnoStatus(w < 0 ? errno : EIO, "writing the owner note into lock file", path);
      done += static_cast<size_t>(w);
    }
    *lock = std::make_unique<PosixFileLock>(std::move(fd));
    return Status::OK();
  }

  std::string LockOwnerNote(const std::string& name) override {
    if (!IsPlainName(name)) return "";
    ScopedFd fd;
    if (!OpenRegular(fd_.get(), JoinPath(path_, name), name, O_RDONLY, &fd).ok()) return "";
    return ReadNote(fd.get());
  }

  Status Stat(const std::string& name, FileInfo* info) override {
    if (!IsPlainName(name)) return InvalidName(path_, name);
    struct stat st;
    if (::fstatat(fd_.get(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
      return ErrnoStatus(errno, "stat of", JoinPath(path_, name));
    }
    return FillInfo(st, info);
  }

  const std::string& path() const override { return path_; }

 private:
  // The note is short ("pid 123"); at most 4 KiB is read, trailing newlines
  // and NULs are dropped. "" on any error.
  static std::string ReadNote(int fd) {
    char buf[4096];
    size_t done = 0;
    while (done < sizeof(buf)) {
      ssize_t r = ::pread(fd, buf + done, sizeof(buf) - done, static_cast<off_t>(done));
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) break;
      done += static_cast<size_t>(r);
    }
    std::string note(buf, done);
    while (!note.empty() && (note.back() == '\n' || note.back() == '\0')) note.pop_back();
    return note;
  }

  const ScopedFd fd_;
  const std::string path_;
};

class PosixEnv final : public Env {
 public:
  Status OpenDir(const std::string& path, std::unique_ptr<Dir>* dir) override {
    if (path.empty()) return Status::InvalidArgument("empty directory path");
    int fd;
    // The user's path may be a symlink (it is theirs): no O_NOFOLLOW here.
    do {
      fd = ::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    } while (fd < 0 && errno == EINTR);
    if (fd < 0) {
      if (errno == ENOTDIR) return Status::IoError(ENOTDIR, "opening directory " + path + ": not a directory");
      return ErrnoStatus(errno, "opening directory", path);
    }
    *dir = std::make_unique<PosixDir>(ScopedFd(fd), path);
    return Status::OK();
  }
};

}  // namespace

Env* Env::Posix() {
  static Env* const env = new PosixEnv();  // never destroyed (env.h)
  return env;
}

bool IsPlainName(const std::string& name) {
  if (name.empty() || name == "." || name == "..") return false;
  return name.find('/') == std::string::npos && name.find('\0') == std::string::npos;
}

}  // namespace boostvol
