// See fault_injection_vfs.h for the model.

#include "lib/fault_injection_vfs.h"

#include <sqlite3.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <new>
#include <random>
#include <sys/stat.h>
#include <unistd.h>
#include <vector>

namespace boostvol::test {
namespace {

constexpr uint64_t kSector = FaultInjectionVfs::kSectorSize;

// True if `path` is `prefix` or lies under it (component-wise).
bool PathUnder(const std::string& path, const std::string& prefix) {
  if (prefix.empty()) return true;
  if (path.compare(0, prefix.size(), prefix) != 0) return false;
  return path.size() == prefix.size() || prefix.back() == '/' || path[prefix.size()] == '/';
}

// The scope as SQLite will see paths: MetaStore resolves the directory of
// meta.db (realpath), so resolve the prefix the same way when it exists.
std::string Resolve(const std::string& prefix) {
  if (prefix.empty()) return prefix;
  char* real = ::realpath(prefix.c_str(), nullptr);
  if (real == nullptr) return prefix;
  std::string r = real;
  std::free(real);
  return r;
}

}  // namespace

// What is durable of one file. Guarded by FaultInjectionVfs::mu_.
struct FaultInjectionVfs::FileState {
  std::string path;
  bool dirty = false;        // written since the last xSync
  uint64_t synced_size = 0;  // valid when dirty
  // sector index -> its contents as of the last xSync (512 bytes).
  std::map<uint64_t, std::vector<uint8_t>> saved;
  uint64_t last_write_seq = 0;
  uint64_t last_write_first = 0;
  uint64_t last_write_count = 0;
};

// Our sqlite3_file; the wrapped VFS's file follows it in the same allocation.
struct FaultInjectionVfs::VFile {
  sqlite3_file base;  // must be first
  FaultInjectionVfs* vfs;
  std::shared_ptr<FileState> st;  // null: untracked (temp files)
  bool dead;
  sqlite3_file* real() { return reinterpret_cast<sqlite3_file*>(reinterpret_cast<char*>(this) + Offset()); }
  static size_t Offset() { return (sizeof(VFile) + 15) & ~size_t{15}; }
};

// The C entry points SQLite calls.
struct FaultVfsGlue {
  using V = FaultInjectionVfs;
  using VF = FaultInjectionVfs::VFile;

  static V* Self(sqlite3_vfs* vfs) { return static_cast<V*>(vfs->pAppData); }
  static VF* F(sqlite3_file* f) { return reinterpret_cast<VF*>(f); }

  // ---- file methods ----

  static int Close(sqlite3_file* f) {
    VF* vf = F(f);
    V* v = vf->vfs;
    int rc = vf->real()->pMethods != nullptr ? vf->real()->pMethods->xClose(vf->real()) : SQLITE_OK;
    {
      MutexLock l(&v->mu_);
      v->open_.erase(vf);
    }
    vf->~VF();
    return rc;
  }

  static int Read(sqlite3_file* f, void* buf, int n, sqlite3_int64 off) {
    VF* vf = F(f);
    V* v = vf->vfs;
    MutexLock l(&v->mu_);
    if (vf->dead) {
      v->counters_.failed++;
      return SQLITE_IOERR_READ;
    }
    return vf->real()->pMethods->xRead(vf->real(), buf, n, off);
  }

  static int Write(sqlite3_file* f, const void* buf, int n, sqlite3_int64 off) {
    VF* vf = F(f);
    V* v = vf->vfs;
    std::function<void()> hook;
    int rc;
    {
      MutexLock l(&v->mu_);
      rc = WriteLocked(v, vf, buf, n, off, &hook);
    }
    if (hook) hook();
    return rc;
  }

  static int WriteLocked(V* v, VF* vf, const void* buf, int n, sqlite3_int64 off, std::function<void()>* hook)
      BV_REQUIRES(v->mu_) {
    if (FailsNow(v, vf, hook)) return SQLITE_IOERR_WRITE;
    if (vf->st && n > 0) {
      FaultInjectionVfs::FileState* st = vf->st.get();
      const uint64_t first = static_cast<uint64_t>(off) / kSector;
      const uint64_t last = (static_cast<uint64_t>(off) + n - 1) / kSector;
      int rc = v->SaveSectors(st, vf->real(), first, last);
      if (rc != SQLITE_OK) return rc;
      st->last_write_seq = ++v->write_seq_;
      st->last_write_first = first;
      st->last_write_count = last - first + 1;
    }
    int rc = vf->real()->pMethods->xWrite(vf->real(), buf, n, off);
    if (rc == SQLITE_OK) v->counters_.writes++;
    return rc;
  }

  static void TakeHook(V* v, std::function<void()>* hook) BV_REQUIRES(v->mu_) {
    if (v->crashed_ && v->on_crash_) {
      *hook = std::move(v->on_crash_);
      v->on_crash_ = nullptr;
    }
  }

  // True if this I/O must fail: the file's connection is dead, or the armed
  // crash point is reached now. Counts the failure and hands out the crash
  // hook (the caller runs it after dropping mu_).
  static bool FailsNow(V* v, VF* vf, std::function<void()>* hook) BV_REQUIRES(v->mu_) {
    if (!vf->dead && !(vf->st && v->CrashesNow(vf->st->path))) return false;
    v->counters_.failed++;
    TakeHook(v, hook);
    return true;
  }

  static int Truncate(sqlite3_file* f, sqlite3_int64 size) {
    VF* vf = F(f);
    V* v = vf->vfs;
    std::function<void()> hook;
    int rc;
    {
      MutexLock l(&v->mu_);
      if (FailsNow(v, vf, &hook)) {
        rc = SQLITE_IOERR_TRUNCATE;
      } else {
        rc = SQLITE_OK;
        if (vf->st) {
          sqlite3_int64 cur = 0;
          rc = vf->real()->pMethods->xFileSize(vf->real(), &cur);
          if (rc == SQLITE_OK && cur > size) {
            rc = v->SaveSectors(vf->st.get(), vf->real(), static_cast<uint64_t>(size) / kSector,
                                (static_cast<uint64_t>(cur) - 1) / kSector);
          } else if (rc == SQLITE_OK) {
            rc = v->SaveSectors(vf->st.get(), vf->real(), 1, 0);  // only records the synced size
          }
        }
        if (rc == SQLITE_OK) rc = vf->real()->pMethods->xTruncate(vf->real(), size);
      }
    }
    if (hook) hook();
    return rc;
  }

  static int Sync(sqlite3_file* f, int flags) {
    VF* vf = F(f);
    V* v = vf->vfs;
    std::function<void()> hook;
    int rc;
    {
      MutexLock l(&v->mu_);
      if (FailsNow(v, vf, &hook)) {
        rc = SQLITE_IOERR_FSYNC;
      } else {
        rc = vf->real()->pMethods->xSync(vf->real(), flags);
        if (rc == SQLITE_OK) {
          v->counters_.syncs++;
          if (vf->st) {
            vf->st->dirty = false;
            vf->st->saved.clear();
          }
        }
      }
    }
    if (hook) hook();
    return rc;
  }

  static int FileSize(sqlite3_file* f, sqlite3_int64* size) {
    VF* vf = F(f);
    MutexLock l(&vf->vfs->mu_);
    if (vf->dead) return SQLITE_IOERR_FSTAT;
    return vf->real()->pMethods->xFileSize(vf->real(), size);
  }

  // Locks, file controls and the wal-index go straight through.
  static int Lock(sqlite3_file* f, int level) { return F(f)->real()->pMethods->xLock(F(f)->real(), level); }
  static int Unlock(sqlite3_file* f, int level) { return F(f)->real()->pMethods->xUnlock(F(f)->real(), level); }
  static int CheckReservedLock(sqlite3_file* f, int* out) {
    return F(f)->real()->pMethods->xCheckReservedLock(F(f)->real(), out);
  }
  static int FileControl(sqlite3_file* f, int op, void* arg) {
    // mmap would let reads bypass xRead; the page cache is enough for tests.
    if (op == SQLITE_FCNTL_MMAP_SIZE) {
      if (arg != nullptr) *static_cast<sqlite3_int64*>(arg) = 0;
      return SQLITE_OK;
    }
    return F(f)->real()->pMethods->xFileControl(F(f)->real(), op, arg);
  }
  static int SectorSize(sqlite3_file* f) { return F(f)->real()->pMethods->xSectorSize(F(f)->real()); }
  static int DeviceCharacteristics(sqlite3_file* f) {
    return F(f)->real()->pMethods->xDeviceCharacteristics(F(f)->real());
  }
  static int ShmMap(sqlite3_file* f, int page, int size, int extend, void volatile** out) {
    return F(f)->real()->pMethods->xShmMap(F(f)->real(), page, size, extend, out);
  }
  static int ShmLock(sqlite3_file* f, int offset, int n, int flags) {
    return F(f)->real()->pMethods->xShmLock(F(f)->real(), offset, n, flags);
  }
  static void ShmBarrier(sqlite3_file* f) { F(f)->real()->pMethods->xShmBarrier(F(f)->real()); }
  static int ShmUnmap(sqlite3_file* f, int del) { return F(f)->real()->pMethods->xShmUnmap(F(f)->real(), del); }

  static constexpr sqlite3_io_methods kMethods = {
      2,  // iVersion: with the wal-index (shm) methods, without xFetch (no mmap)
      Close, Read, Write, Truncate, Sync, FileSize, Lock, Unlock, CheckReservedLock, FileControl, SectorSize,
      DeviceCharacteristics, ShmMap, ShmLock, ShmBarrier, ShmUnmap, nullptr, nullptr};

  // ---- VFS methods ----

  static int Open(sqlite3_vfs* vfs, const char* name, sqlite3_file* f, int flags, int* out_flags) {
    V* v = Self(vfs);
    VF* vf = new (f) VF{};
    vf->base.pMethods = nullptr;
    vf->vfs = v;
    vf->dead = false;
    bool existed = true;
    if (name != nullptr) {
      struct stat sb;
      existed = ::lstat(name, &sb) == 0;
    }
    int rc = v->base_->xOpen(v->base_, name, vf->real(), flags, out_flags);
    if (rc != SQLITE_OK) {
      vf->~VF();
      return rc;
    }
    vf->base.pMethods = &kMethods;
    MutexLock l(&v->mu_);
    if (name != nullptr) {
      std::string path = name;
      auto& st = v->files_[path];
      if (!st) {
        st = std::make_shared<FaultInjectionVfs::FileState>();
        st->path = path;
        if (!existed) {  // nothing of it is durable yet
          st->dirty = true;
          st->synced_size = 0;
        }
      }
      vf->st = st;
      v->dead_paths_.erase(path);
    }
    v->open_.insert(vf);
    return SQLITE_OK;
  }

  static int Delete(sqlite3_vfs* vfs, const char* name, int sync_dir) {
    V* v = Self(vfs);
    {
      MutexLock l(&v->mu_);
      std::string path = name;
      if (v->dead_paths_.count(path) != 0 || v->CrashesNow(path)) {
        v->counters_.failed++;
        return SQLITE_IOERR_DELETE;
      }
      v->files_.erase(path);
    }
    return v->base_->xDelete(v->base_, name, sync_dir);
  }

  static int Access(sqlite3_vfs* vfs, const char* name, int flags, int* out) {
    return Self(vfs)->base_->xAccess(Self(vfs)->base_, name, flags, out);
  }
  static int FullPathname(sqlite3_vfs* vfs, const char* name, int n, char* out) {
    return Self(vfs)->base_->xFullPathname(Self(vfs)->base_, name, n, out);
  }
  static void* DlOpen(sqlite3_vfs* vfs, const char* name) { return Self(vfs)->base_->xDlOpen(Self(vfs)->base_, name); }
  static void DlError(sqlite3_vfs* vfs, int n, char* msg) { Self(vfs)->base_->xDlError(Self(vfs)->base_, n, msg); }
  static void (*DlSym(sqlite3_vfs* vfs, void* h, const char* sym))(void) {
    return Self(vfs)->base_->xDlSym(Self(vfs)->base_, h, sym);
  }
  static void DlClose(sqlite3_vfs* vfs, void* h) { Self(vfs)->base_->xDlClose(Self(vfs)->base_, h); }
  static int Randomness(sqlite3_vfs* vfs, int n, char* out) {
    return Self(vfs)->base_->xRandomness(Self(vfs)->base_, n, out);
  }
  static int Sleep(sqlite3_vfs* vfs, int us) { return Self(vfs)->base_->xSleep(Self(vfs)->base_, us); }
  static int CurrentTime(sqlite3_vfs* vfs, double* t) { return Self(vfs)->base_->xCurrentTime(Self(vfs)->base_, t); }
  static int GetLastError(sqlite3_vfs* vfs, int n, char* msg) {
    return Self(vfs)->base_->xGetLastError(Self(vfs)->base_, n, msg);
  }
  static int CurrentTimeInt64(sqlite3_vfs* vfs, sqlite3_int64* t) {
    return Self(vfs)->base_->xCurrentTimeInt64(Self(vfs)->base_, t);
  }
};

FaultInjectionVfs::FaultInjectionVfs(std::string name) : name_(std::move(name)) {
  base_ = sqlite3_vfs_find(nullptr);
  vfs_ = std::make_unique<sqlite3_vfs>();
  sqlite3_vfs* v = vfs_.get();
  std::memset(v, 0, sizeof *v);
  v->iVersion = 2;
  v->szOsFile = static_cast<int>(VFile::Offset()) + base_->szOsFile;
  v->mxPathname = base_->mxPathname;
  v->zName = name_.c_str();
  v->pAppData = this;
  v->xOpen = FaultVfsGlue::Open;
  v->xDelete = FaultVfsGlue::Delete;
  v->xAccess = FaultVfsGlue::Access;
  v->xFullPathname = FaultVfsGlue::FullPathname;
  v->xDlOpen = FaultVfsGlue::DlOpen;
  v->xDlError = FaultVfsGlue::DlError;
  v->xDlSym = FaultVfsGlue::DlSym;
  v->xDlClose = FaultVfsGlue::DlClose;
  v->xRandomness = FaultVfsGlue::Randomness;
  v->xSleep = FaultVfsGlue::Sleep;
  v->xCurrentTime = FaultVfsGlue::CurrentTime;
  v->xGetLastError = FaultVfsGlue::GetLastError;
  v->xCurrentTimeInt64 = FaultVfsGlue::CurrentTimeInt64;
  sqlite3_vfs_register(v, /*makeDflt=*/0);
}

FaultInjectionVfs::~FaultInjectionVfs() { sqlite3_vfs_unregister(vfs_.get()); }

bool FaultInjectionVfs::InScope(const std::string& path, const std::string& prefix) {
  return PathUnder(path, prefix);
}

bool FaultInjectionVfs::CrashesNow(const std::string& path) {
  if (crashed_) return InScope(path, crash_scope_);
  if (!armed_ || !InScope(path, crash_scope_)) return false;
  if (crash_countdown_ > 0) {
    crash_countdown_--;
    return false;
  }
  armed_ = false;
  crashed_ = true;
  return true;
}

int FaultInjectionVfs::SaveSectors(FileState* st, sqlite3_file* real, uint64_t first, uint64_t last) {
  if (!st->dirty) {
    sqlite3_int64 size = 0;
    int rc = real->pMethods->xFileSize(real, &size);
    if (rc != SQLITE_OK) return rc;
    st->dirty = true;
    st->synced_size = static_cast<uint64_t>(size);
  }
  for (uint64_t s = first; s <= last; s++) {
    if (st->saved.count(s) != 0) continue;
    std::vector<uint8_t> old(kSector, 0);
    if (s * kSector < st->synced_size) {
      int rc = real->pMethods->xRead(real, old.data(), static_cast<int>(kSector), static_cast<sqlite3_int64>(s * kSector));
      if (rc != SQLITE_OK && rc != SQLITE_IOERR_SHORT_READ) return rc;  // a short read zero-fills
    }
    st->saved.emplace(s, std::move(old));
  }
  return SQLITE_OK;
}

void FaultInjectionVfs::CrashAfter(uint64_t n, const std::string& dir_prefix, std::function<void()> on_crash) {
  MutexLock l(&mu_);
  armed_ = true;
  crashed_ = false;
  crash_countdown_ = n;
  crash_scope_ = Resolve(dir_prefix);
  on_crash_ = std::move(on_crash);
}

bool FaultInjectionVfs::crashed() const {
  MutexLock l(&mu_);
  return crashed_;
}

uint64_t FaultInjectionVfs::UnsyncedSectors(const std::string& path) const {
  size_t slash = path.rfind('/');
  const std::string full = slash == std::string::npos ? path : Resolve(path.substr(0, slash)) + path.substr(slash);
  MutexLock l(&mu_);
  auto it = files_.find(full);
  return it == files_.end() ? 0 : it->second->saved.size();
}

VfsCounters FaultInjectionVfs::counters() const {
  MutexLock l(&mu_);
  return counters_;
}

Status FaultInjectionVfs::CutFile(FileState* st, PowerCutMode mode, bool is_last_writer, uint64_t seed,
                                  PowerCutReport* report) {
  if (!st->dirty) return Status::OK();
  // Raw I/O: every SQLite handle on this file is dead from now on.
  int fd = ::open(st->path.c_str(), O_RDWR | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return Status::OK();  // deleted (durable at once)
    return Status::IoError(errno, "simulated power cut: opening " + st->path);
  }
  struct stat sb;
  if (::fstat(fd, &sb) != 0) {
    int e = errno;
    ::close(fd);
    return Status::IoError(e, "simulated power cut: fstat " + st->path);
  }
  const uint64_t cur = static_cast<uint64_t>(sb.st_size);
  std::mt19937_64 rng(seed);
  uint64_t torn_keep = 0;
  if (mode == PowerCutMode::kTornLastWrite && is_last_writer) torn_keep = rng() % (st->last_write_count + 1);
  std::map<uint64_t, bool> keep;
  for (const auto& [sector, old] : st->saved) {
    bool k = false;
    if (mode == PowerCutMode::kKeepRandomSubset) {
      k = (rng() & 1u) != 0;
    } else if (mode == PowerCutMode::kTornLastWrite && is_last_writer) {
      k = sector >= st->last_write_first && sector < st->last_write_first + torn_keep;
    }
    keep[sector] = k;
  }
  bool shrink_kept = cur < st->synced_size && mode == PowerCutMode::kKeepRandomSubset && (rng() & 1u) != 0;
  if (cur < st->synced_size && !shrink_kept) {
    for (auto& [sector, k] : keep)
      if ((sector + 1) * kSector > cur) k = false;  // the undone shrink brings them back
  }
  uint64_t target = shrink_kept ? cur : st->synced_size;
  if (!shrink_kept) {
    for (const auto& [sector, k] : keep)
      if (k) target = std::max(target, std::min(cur, (sector + 1) * kSector));
  }
  Status s;
  for (const auto& [sector, old] : st->saved) {
    if (keep[sector]) {
      report->sectors_kept++;
      continue;
    }
    report->sectors_reverted++;
    if (::pwrite(fd, old.data(), kSector, static_cast<off_t>(sector * kSector)) != static_cast<ssize_t>(kSector)) {
      s = Status::IoError(errno, "simulated power cut: reverting " + st->path);
      break;
    }
  }
  if (s.ok() && ::ftruncate(fd, static_cast<off_t>(target)) != 0) {
    s = Status::IoError(errno, "simulated power cut: truncating " + st->path);
  }
  if (s.ok() && target != cur) report->files_resized++;
  ::close(fd);
  return s;
}

Status FaultInjectionVfs::PowerCut(PowerCutMode mode, uint64_t seed, const std::string& dir_prefix,
                                   PowerCutReport* report) {
  PowerCutReport local;
  if (report == nullptr) report = &local;
  const std::string scope = Resolve(dir_prefix);
  MutexLock l(&mu_);
  // The last writer in scope (for kTornLastWrite).
  FileState* last = nullptr;
  for (auto& [path, st] : files_) {
    if (!InScope(path, scope) || !st->dirty) continue;
    if (last == nullptr || st->last_write_seq > last->last_write_seq) last = st.get();
  }
  std::mt19937_64 seeds(seed);
  Status result;
  for (auto it = files_.begin(); it != files_.end();) {
    if (!InScope(it->first, scope)) {
      ++it;
      continue;
    }
    Status s = CutFile(it->second.get(), mode, it->second.get() == last, seeds(), report);
    if (result.ok()) result = s;
    dead_paths_.insert(it->first);
    it = files_.erase(it);
  }
  for (VFile* vf : open_) {
    if (vf->st && InScope(vf->st->path, scope) && !vf->dead) {
      vf->dead = true;
      vf->st.reset();  // the state starts afresh at the next open
      report->handles_killed++;
    }
  }
  armed_ = false;
  crashed_ = false;
  on_crash_ = nullptr;
  return result;
}

}  // namespace boostvol::test
