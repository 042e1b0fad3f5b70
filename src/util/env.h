// The file layer under the log, the home copy and everything else boostvol
// stores (LevelDB's Env, reduced to what a block cache needs).
//
// Every byte boostvol reads or writes on FAST or SLOW goes through a Dir and
// the Files it opens, so a test can substitute an implementation that records
// unsynced writes and drops them at a simulated power cut, or injects errors
// (tests/lib/fault_injection_env.h). SQLite is the one exception: it does its
// own I/O on meta.db (see docs/metadata.md for why that is safe); tests cut
// its power through a SQLite VFS instead (tests/lib/fault_injection_vfs.h,
// OpenOptions::sqlite_vfs).
//
// Rules kept by every implementation:
//  - Names passed to a Dir are single path components: no '/', not "." or "..".
//    Files are opened relative to the directory's descriptor with O_NOFOLLOW,
//    so a symlink planted in FAST or SLOW is refused (ELOOP), never followed.
//  - Files are created 0600; nothing boostvol creates is readable by others.
//  - WriteAt/ReadAt transfer the whole range or fail (they retry EINTR and
//    short transfers). ReadAt zero-fills the part of the range past EOF.
//  - Sync() is fdatasync: when it returns OK every WriteAt that returned
//    before it began is durable. A failed Sync may have dropped those writes
//    (DESIGN.md 7, fsyncgate): the caller must rewrite before syncing again.
//
// Thread-safety: Env, Dir and File methods are safe to call concurrently;
// concurrent writes to overlapping ranges of one File are the caller's problem.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <sys/types.h>

#include "boostvol/status.h"

namespace boostvol {

struct FileInfo {
  uint64_t size = 0;
  int64_t mtime_ns = 0;
  int64_t ctime_ns = 0;
  uint64_t blocks_512 = 0;  // allocated 512-byte blocks (sparseness)
  uint32_t mode = 0;
  uint32_t uid = 0;
  // Identity: which file this is (a path that leads elsewhere now, or a file
  // unlinked while held open, is told by these).
  uint64_t dev = 0;
  uint64_t ino = 0;
  uint64_t nlink = 0;
};

class File {
 public:
  virtual ~File() = default;
  virtual Status ReadAt(uint64_t offset, void* buf, size_t n) = 0;
  virtual Status WriteAt(uint64_t offset, const void* buf, size_t n) = 0;
  // WriteAt of whole 4096-byte blocks (offset, n and buf 4096-aligned) that
  // bypasses the page cache where the file system allows it (O_DIRECT): for
  // the log's records, which are written once and rarely read back soon.
  // Durability is WriteAt's: Sync() is still what makes it durable. The
  // default is WriteAt.
  virtual Status WriteAtDirect(uint64_t offset, const void* buf, size_t n) { return WriteAt(offset, buf, n); }
  // WriteAtDirect of `count` pieces laid end to end from `offset`, all in
  // flight at once where the system allows it (native AIO): the log's
  // records that queued up behind one another. The pieces may reach the disk
  // in any order. Each meets WriteAtDirect's alignment. The default writes
  // them one at a time.
  struct Piece {
    const void* data;
    size_t n;
  };
  virtual Status WriteAtDirectV(uint64_t offset, const Piece* pieces, size_t count) {
    for (size_t i = 0; i < count; offset += pieces[i].n, i++) {
      Status s = WriteAtDirect(offset, pieces[i].data, pieces[i].n);
      if (!s.ok()) return s;
    }
    return Status::OK();
  }
  // fdatasync.
  virtual Status Sync() = 0;
  virtual Status Truncate(uint64_t size) = 0;
  // Reserves [offset, offset+len) (fallocate mode 0).
  virtual Status Allocate(uint64_t offset, uint64_t len) = 0;
  // Deallocates [offset, offset+len); reads of it return zeros afterwards.
  virtual Status PunchHole(uint64_t offset, uint64_t len) = 0;
  // The end of the run of bytes from `offset` that nothing has ever written
  // (a hole, or space reserved by Allocate and never written), which read as
  // zeros: writing zeros there changes no byte. *end == offset when `offset`
  // may hold written data, or when the file system cannot tell (the default:
  // callers must treat every byte as written).
  virtual Status NeverWrittenRun(uint64_t offset, uint64_t* end) {
    *end = offset;
    return Status::OK();
  }
  // A hint that [offset, offset+len) will not be read again soon: its clean
  // pages leave the page cache (posix_fadvise DONTNEED). For the log: its
  // O_DIRECT writes ran 30% slower while pages of it were cached (docs/
  // tuning.md, "The log's page cache"). Never fails; the default does nothing.
  virtual void DropCache(uint64_t offset, uint64_t len) {}
  virtual Status Stat(FileInfo* info) = 0;
  // For messages: the path this file was opened as.
  virtual const std::string& name() const = 0;
};

enum class OpenMode {
  kReadOnly,        // must exist
  kReadWrite,       // must exist
  kCreate,          // read-write, created 0600 if missing
  kCreateExclusive  // read-write, must not exist yet (O_EXCL)
};

// An exclusive, advisory lock on a file (flock). Released when destroyed or
// when the process dies, so a crashed daemon never leaves a stale lock.
class FileLock {
 public:
  virtual ~FileLock() = default;
};

class Dir {
 public:
  virtual ~Dir() = default;
  virtual Status OpenFile(const std::string& name, OpenMode mode, std::unique_ptr<File>* file) = 0;
  // OK with *exists=false when absent; a symlink counts as present and is
  // reported by Open* as an error.
  virtual Status Exists(const std::string& name, bool* exists) = 0;
  virtual Status Rename(const std::string& from, const std::string& to) = 0;
  virtual Status Remove(const std::string& name) = 0;  // NotFound if absent
  // fsync of the directory itself (makes creates/renames durable).
  virtual Status Sync() = 0;
  // Takes an exclusive lock on `name` (created 0600 if missing) without
  // waiting; Busy if another process holds it. `owner_note` (e.g. "pid 123")
  // is written into the file for the refusal message of the next taker.
  virtual Status LockFile(const std::string& name, const std::string& owner_note,
                          std::unique_ptr<FileLock>* lock) = 0;
  // Reads the note written by the current holder of a lock file ("" if none).
  virtual std::string LockOwnerNote(const std::string& name) = 0;
  virtual Status Stat(const std::string& name, FileInfo* info) = 0;
  // The path the directory was opened as (for messages and for SQLite).
  virtual const std::string& path() const = 0;
};

class Env {
 public:
  virtual ~Env() = default;
  // Opens an existing directory. The path given by the user may itself be a
  // symlink (it is theirs); what is inside is never followed.
  virtual Status OpenDir(const std::string& path, std::unique_ptr<Dir>* dir) = 0;

  // The real file system (POSIX, Linux). Never destroyed.
  static Env* Posix();
};

// Validates a single path component for Dir methods.
bool IsPlainName(const std::string& name);

}  // namespace boostvol
