// FaultInjectionVfs: a SQLite VFS for tests that simulates power cuts of
// meta.db, the counterpart of FaultInjectionEnv (fault_injection_env.h) for
// the one file boostvol does not write through its Env.
//
// It wraps SQLite's default VFS ("unix") and is registered under its own name
// (not as the default): a test opens meta.db through it with
// CreateOptions/OpenOptions::sqlite_vfs = vfs.name(). Files are tracked by
// the full path SQLite opens them by (meta.db, meta.db-wal; the -shm
// wal-index is transient and SQLite rebuilds it from the WAL after a crash,
// so it is passed through untracked).
//
// Model (what is "durable"), as in FaultInjectionEnv, in 512-byte sectors:
//  - The first time a sector is dirtied after an xSync of its file (xWrite,
//    a shrinking xTruncate), its contents as of that sync are read through the
//    wrapped file and remembered, with the file's size at the sync. A
//    successful xSync makes the file's current contents and size durable.
//  - A file that did not exist when it was opened has synced size 0 until its
//    first xSync (SQLite syncs the directory then).
//  - SIMPLIFICATION: xDelete is durable at once (SQLite deletes only a WAL
//    whose every frame is checkpointed and synced into the database, so
//    undoing the delete would only bring back redundant frames).
//
// PowerCut(mode, seed, dir_prefix) reverts, on disk, every file whose path is
// under dir_prefix ("" = all): kDropUnsynced reverts every unsynced sector
// and the size; kKeepRandomSubset keeps each unsynced sector with
// probability 1/2 (the size grows to cover the highest kept sector);
// kTornLastWrite keeps a prefix of the sectors of the last xWrite in scope and
// reverts everything else. Then every handle open on a file in scope is dead:
// reads, writes, truncates, syncs and xFileSize return SQLITE_IOERR_*, and
// xDelete of a path in scope fails until the path is opened again, so the
// dead connection (closed after the cut, like a daemon dying with the power)
// changes nothing more. Locks and the wal-index are passed through, so
// closing it works.
//
// CrashAfter(n): the power goes out at the (n+1)-th write, truncate or sync
// of a file in scope from now on: that operation and every later one in
// scope fail with SQLITE_IOERR_* and do nothing, and on_crash (if set) runs
// once on that thread (tests use it to fail the engine's own I/O from the
// same instant through FaultInjectionEnv). The test then calls PowerCut. So a
// cut lands inside a SQLite commit (between its WAL frame writes, or between
// those and the WAL sync, or inside a checkpoint's copy into meta.db).
//
// Thread-safety: all methods are thread-safe (one mutex, held around the
// wrapped I/O too). One instance per name; it must outlive every connection
// opened through it.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>

#include "boostvol/status.h"
#include "lib/fault_injection_env.h"
#include "util/thread_annotations.h"

struct sqlite3_vfs;
struct sqlite3_file;

namespace boostvol::test {

struct VfsCounters {
  uint64_t writes = 0;  // xWrite calls that reached the disk
  uint64_t syncs = 0;   // successful xSync calls
  uint64_t failed = 0;  // operations failed by a crash or a dead handle
};

class FaultInjectionVfs {
 public:
  static constexpr uint64_t kSectorSize = 512;

  // Registers the VFS under `name` (which must not be registered yet).
  explicit FaultInjectionVfs(std::string name = "boostvol-fault");
  // Unregisters it. Every connection opened through it must be closed.
  ~FaultInjectionVfs();
  FaultInjectionVfs(const FaultInjectionVfs&) = delete;
  FaultInjectionVfs& operator=(const FaultInjectionVfs&) = delete;

  const char* name() const { return name_.c_str(); }

  Status PowerCut(PowerCutMode mode, uint64_t seed, const std::string& dir_prefix = "",
                  PowerCutReport* report = nullptr) BV_EXCLUDES(mu_);

  // Arms the crash described above; n = 0 crashes at the next operation.
  void CrashAfter(uint64_t n, const std::string& dir_prefix = "", std::function<void()> on_crash = nullptr)
      BV_EXCLUDES(mu_);
  // True once an armed crash has happened (until the next PowerCut).
  bool crashed() const BV_EXCLUDES(mu_);

  // Unsynced sectors of the file at `path` (its directory is resolved like
  // SQLite's paths; 0 if untracked). For assertions.
  uint64_t UnsyncedSectors(const std::string& path) const BV_EXCLUDES(mu_);
  VfsCounters counters() const BV_EXCLUDES(mu_);

 private:
  struct FileState;
  struct VFile;
  friend struct FaultVfsGlue;

  static bool InScope(const std::string& path, const std::string& prefix);
  // Counts down an armed crash; true if the operation must fail.
  bool CrashesNow(const std::string& path) BV_REQUIRES(mu_);
  // Remembers the synced contents of sectors [first, last] of the file.
  int SaveSectors(FileState* st, sqlite3_file* real, uint64_t first, uint64_t last) BV_REQUIRES(mu_);
  Status CutFile(FileState* st, PowerCutMode mode, bool is_last_writer, uint64_t seed, PowerCutReport* report)
      BV_REQUIRES(mu_);

  const std::string name_;
  std::unique_ptr<sqlite3_vfs> vfs_;
  sqlite3_vfs* base_ = nullptr;

  mutable Mutex mu_;
  std::map<std::string, std::shared_ptr<FileState>> files_ BV_GUARDED_BY(mu_);
  std::set<VFile*> open_ BV_GUARDED_BY(mu_);
  std::set<std::string> dead_paths_ BV_GUARDED_BY(mu_);  // xDelete refused until reopened
  bool armed_ BV_GUARDED_BY(mu_) = false;
  bool crashed_ BV_GUARDED_BY(mu_) = false;
  uint64_t crash_countdown_ BV_GUARDED_BY(mu_) = 0;
  std::string crash_scope_ BV_GUARDED_BY(mu_);
  std::function<void()> on_crash_ BV_GUARDED_BY(mu_);
  uint64_t write_seq_ BV_GUARDED_BY(mu_) = 0;
  VfsCounters counters_ BV_GUARDED_BY(mu_);
};

}  // namespace boostvol::test
