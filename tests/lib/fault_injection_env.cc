// See fault_injection_env.h for the model.

#include "lib/fault_injection_env.h"

#include <algorithm>
#include <cstring>

namespace boostvol::test {
namespace {

constexpr uint64_t kSector = FaultInjectionEnv::kSectorSize;

std::string NormalizeDir(std::string path) {
  while (path.size() > 1 && path.back() == '/') path.pop_back();
  return path;
}

std::string Join(const std::string& dir, const std::string& name) {
  return dir == "/" ? "/" + name : dir + "/" + name;
}

// True if `path` is `prefix` or lies under it (component-wise).
bool PathUnder(const std::string& path, const std::string& prefix) {
  if (prefix.empty()) return true;
  if (path.compare(0, prefix.size(), prefix) != 0) return false;
  return path.size() == prefix.size() || prefix.back() == '/' || path[prefix.size()] == '/';
}

bool AllZero(const std::string& s) {
  return std::all_of(s.begin(), s.end(), [](char c) { return c == 0; });
}

Status PowerCutError(const std::string& path) { return Status::IoError(EIO, "simulated power cut: " + path); }

}  // namespace

// Liveness of one handed-out File/Dir/FileLock. Guarded by FaultInjectionEnv::mu_.
struct FaultInjectionEnv::Handle {
  std::string path;
  bool dead = false;
  std::unique_ptr<FileLock> lock;  // FaultLock only: the wrapped lock
};

// What is durable of one file. Guarded by FaultInjectionEnv::mu_.
struct FaultInjectionEnv::FileState {
  std::string dir;  // normalized
  std::string name;
  uint64_t synced_size = 0;
  // sector index -> its contents as of the last Sync ("" = all zeros).
  std::map<uint64_t, std::string> saved;
  // The last WriteAt since the last Sync: global sequence and sector range.
  uint64_t last_write_seq = 0;
  uint64_t last_write_first = 0;
  uint64_t last_write_count = 0;

  std::string path() const { return Join(dir, name); }
};

// A directory operation not yet made durable by Dir::Sync.
struct FaultInjectionEnv::DirOp {
  enum class Kind { kCreate, kRename } kind;
  std::string dir;   // normalized
  std::string from;  // kCreate: the created name
  std::string to;
  bool replaced = false;          // kRename over an existing file
  std::string replaced_contents;  // its synced contents
};

struct FaultInjectionEnv::Rule {
  int id;
  FaultRule rule;
  std::mt19937_64 rng;
};

// ---------------------------------------------------------------- handles

class FaultInjectionEnv::FaultFile final : public File {
 public:
  FaultFile(FaultInjectionEnv* env, std::unique_ptr<File> base, std::shared_ptr<FileState> st,
            std::shared_ptr<Handle> h)
      : env_(env), base_(std::move(base)), st_(std::move(st)), h_(std::move(h)) {}

  Status ReadAt(uint64_t offset, void* buf, size_t n) override {
    MutexLock l(&env_->mu_);
    if (h_->dead) return PowerCutError(h_->path);
    BV_RETURN_IF_ERROR(env_->CheckFault(FaultOp::kRead, st_->path(), "reading"));
    return base_->ReadAt(offset, buf, n);
  }

  Status WriteAt(uint64_t offset, const void* buf, size_t n) override {
    MutexLock l(&env_->mu_);
    if (h_->dead) return PowerCutError(h_->path);
    BV_RETURN_IF_ERROR(env_->CheckFault(FaultOp::kWrite, st_->path(), "writing"));
    if (n == 0) return base_->WriteAt(offset, buf, n);
    uint64_t first = offset / kSector, last = (offset + n - 1) / kSector;
    BV_RETURN_IF_ERROR(env_->SaveSectors(st_.get(), base_.get(), first, last));
    Status s = base_->WriteAt(offset, buf, n);
    st_->last_write_seq = ++env_->write_seq_;
    st_->last_write_first = first;
    st_->last_write_count = last - first + 1;
    return s;
  }

  Status Sync() override {
    MutexLock l(&env_->mu_);
    if (h_->dead) return PowerCutError(h_->path);
    Status fault = env_->CheckFault(FaultOp::kSync, st_->path(), "syncing");
    if (!fault.ok()) {
      // fsyncgate: the kernel dropped the dirty pages and will not say so again.
      Status r = env_->RevertAll(st_.get());
      return r.ok() ? fault : r;
    }
    BV_RETURN_IF_ERROR(base_->Sync());
    FileInfo info;
    BV_RETURN_IF_ERROR(base_->Stat(&info));
    st_->saved.clear();
    st_->synced_size = info.size;
    st_->last_write_seq = 0;
    return Status::OK();
  }

  Status Truncate(uint64_t size) override {
    MutexLock l(&env_->mu_);
    if (h_->dead) return PowerCutError(h_->path);
    BV_RETURN_IF_ERROR(env_->CheckFault(FaultOp::kWrite, st_->path(), "truncating"));
    FileInfo info;
    BV_RETURN_IF_ERROR(base_->Stat(&info));
    if (size < info.size) {
      BV_RETURN_IF_ERROR(env_->SaveSectors(st_.get(), base_.get(), size / kSector, (info.size - 1) / kSector));
    }
    return base_->Truncate(size);
  }

  Status Allocate(uint64_t offset, uint64_t len) override {
    MutexLock l(&env_->mu_);
    if (h_->dead) return PowerCutError(h_->path);
    BV_RETURN_IF_ERROR(env_->CheckFault(FaultOp::kWrite, st_->path(), "allocating"));
    return base_->Allocate(offset, len);  // contents unchanged; only the size may grow
  }

  Status PunchHole(uint64_t offset, uint64_t len) override {
    MutexLock l(&env_->mu_);
    if (h_->dead) return PowerCutError(h_->path);
    BV_RETURN_IF_ERROR(env_->CheckFault(FaultOp::kWrite, st_->path(), "punching a hole in"));
    FileInfo info;
    BV_RETURN_IF_ERROR(base_->Stat(&info));
    uint64_t end = std::min(offset + len, info.size);
    if (len > 0 && offset < end) {
      BV_RETURN_IF_ERROR(env_->SaveSectors(st_.get(), base_.get(), offset / kSector, (end - 1) / kSector));
    }
    return base_->PunchHole(offset, len);
  }

  Status NeverWrittenRun(uint64_t offset, uint64_t* end) override {
    MutexLock l(&env_->mu_);
    if (h_->dead) return PowerCutError(h_->path);
    BV_RETURN_IF_ERROR(env_->CheckFault(FaultOp::kAny, st_->path(), "looking for data in"));
    return base_->NeverWrittenRun(offset, end);
  }

  void DropCache(uint64_t offset, uint64_t len) override {
    MutexLock l(&env_->mu_);
    if (!h_->dead) base_->DropCache(offset, len);  // clean pages only: no byte, synced or not, changes
  }

  Status Stat(FileInfo* info) override {
    MutexLock l(&env_->mu_);
    if (h_->dead) return PowerCutError(h_->path);
    BV_RETURN_IF_ERROR(env_->CheckFault(FaultOp::kAny, st_->path(), "stat of"));
    return base_->Stat(info);
  }

  const std::string& name() const override { return base_->name(); }

 private:
  FaultInjectionEnv* const env_;
  const std::unique_ptr<File> base_;
  const std::shared_ptr<FileState> st_;
  const std::shared_ptr<Handle> h_;
};

class FaultInjectionEnv::FaultLock final : public FileLock {
 public:
  FaultLock(FaultInjectionEnv* env, std::shared_ptr<Handle> h) : env_(env), h_(std::move(h)) {}
  ~FaultLock() override {
    MutexLock l(&env_->mu_);
    h_->lock.reset();
  }

 private:
  FaultInjectionEnv* const env_;
  const std::shared_ptr<Handle> h_;
};

class FaultInjectionEnv::FaultDir final : public Dir {
 public:
  FaultDir(FaultInjectionEnv* env, std::unique_ptr<Dir> base, std::string dir, std::shared_ptr<Handle> h)
      : env_(env), base_(std::move(base)), dir_(std::move(dir)), h_(std::move(h)) {}

  Status OpenFile(const std::string& name, OpenMode mode, std::unique_ptr<File>* file) override {
    MutexLock l(&env_->mu_);
    if (h_->dead) return PowerCutError(h_->path);
    BV_RETURN_IF_ERROR(env_->CheckFault(FaultOp::kOpen, Join(dir_, name), "opening"));
    bool creating = mode == OpenMode::kCreate || mode == OpenMode::kCreateExclusive;
    bool existed = true;
    if (creating && IsPlainName(name) && !base_->Exists(name, &existed).ok()) existed = true;
    std::unique_ptr<File> base_file;
    BV_RETURN_IF_ERROR(base_->OpenFile(name, mode, &base_file));
    if (creating && !existed) {
      env_->dir_ops_.push_back({DirOp::Kind::kCreate, dir_, name, "", false, ""});
      env_->files_.erase(Join(dir_, name));  // a stale record (file removed behind our back)
    }
    FileInfo info;
    BV_RETURN_IF_ERROR(base_file->Stat(&info));
    auto st = env_->StateFor(dir_, name, info.size);
    *file = std::make_unique<FaultFile>(env_, std::move(base_file), std::move(st), env_->NewHandle(Join(dir_, name)));
    return Status::OK();
  }

  Status Exists(const std::string& name, bool* exists) override {
    MutexLock l(&env_->mu_);
    if (h_->dead) return PowerCutError(h_->path);
    BV_RETURN_IF_ERROR(env_->CheckFault(FaultOp::kAny, Join(dir_, name), "checking"));
    return base_->Exists(name, exists);
  }

  Status Rename(const std::string& from, const std::string& to) override {
    MutexLock l(&env_->mu_);
    if (h_->dead) return PowerCutError(h_->path);
    BV_RETURN_IF_ERROR(env_->CheckFault(FaultOp::kDirOp, Join(dir_, from), "renaming"));
    DirOp op{DirOp::Kind::kRename, dir_, from, to, false, ""};
    bool to_exists = false;
    if (IsPlainName(to) && IsPlainName(from) && base_->Exists(to, &to_exists).ok() && to_exists) {
      BV_RETURN_IF_ERROR(SyncedContents(to, &op.replaced_contents));
      op.replaced = true;
    }
    BV_RETURN_IF_ERROR(base_->Rename(from, to));
    auto& files = env_->files_;
    files.erase(Join(dir_, to));
    auto it = files.find(Join(dir_, from));
    if (it != files.end()) {
      std::shared_ptr<FileState> st = it->second;
      files.erase(it);
      st->name = to;
      files[st->path()] = st;
    }
    env_->dir_ops_.push_back(std::move(op));
    return Status::OK();
  }

  // Durable at once (see the header).
  Status Remove(const std::string& name) override {
    MutexLock l(&env_->mu_);
    if (h_->dead) return PowerCutError(h_->path);
    BV_RETURN_IF_ERROR(env_->CheckFault(FaultOp::kDirOp, Join(dir_, name), "removing"));
    BV_RETURN_IF_ERROR(base_->Remove(name));
    env_->files_.erase(Join(dir_, name));
    return Status::OK();
  }

  Status Sync() override {
    MutexLock l(&env_->mu_);
    if (h_->dead) return PowerCutError(h_->path);
    BV_RETURN_IF_ERROR(env_->CheckFault(FaultOp::kSync, dir_, "syncing directory"));
    BV_RETURN_IF_ERROR(base_->Sync());
    auto& ops = env_->dir_ops_;
    ops.erase(std::remove_if(ops.begin(), ops.end(), [&](const DirOp& op) { return op.dir == dir_; }), ops.end());
    return Status::OK();
  }

  Status LockFile(const std::string& name, const std::string& owner_note, std::unique_ptr<FileLock>* lock) override {
    MutexLock l(&env_->mu_);
    if (h_->dead) return PowerCutError(h_->path);
    BV_RETURN_IF_ERROR(env_->CheckFault(FaultOp::kOpen, Join(dir_, name), "locking"));
    std::unique_ptr<FileLock> base_lock;
    BV_RETURN_IF_ERROR(base_->LockFile(name, owner_note, &base_lock));
    auto h = env_->NewHandle(Join(dir_, name));
    h->lock = std::move(base_lock);
    *lock = std::make_unique<FaultLock>(env_, std::move(h));
    return Status::OK();
  }

  std::string LockOwnerNote(const std::string& name) override {
    MutexLock l(&env_->mu_);
    if (h_->dead) return "";
    return base_->LockOwnerNote(name);
  }

  Status Stat(const std::string& name, FileInfo* info) override {
    MutexLock l(&env_->mu_);
    if (h_->dead) return PowerCutError(h_->path);
    BV_RETURN_IF_ERROR(env_->CheckFault(FaultOp::kAny, Join(dir_, name), "stat of"));
    return base_->Stat(name, info);
  }

  const std::string& path() const override { return base_->path(); }

 private:
  // The contents of `name` as of its last Sync (its unsynced sectors replaced
  // by their saved contents, cut to the synced size).
  Status SyncedContents(const std::string& name, std::string* out) BV_REQUIRES(env_->mu_) {
    std::unique_ptr<File> f;
    BV_RETURN_IF_ERROR(base_->OpenFile(name, OpenMode::kReadOnly, &f));
    FileInfo info;
    BV_RETURN_IF_ERROR(f->Stat(&info));
    std::string data(info.size, '\0');
    BV_RETURN_IF_ERROR(f->ReadAt(0, data.data(), data.size()));
    auto it = env_->files_.find(Join(dir_, name));
    if (it == env_->files_.end()) {
      *out = std::move(data);
      return Status::OK();
    }
    const FileState& st = *it->second;
    for (const auto& [sector, old] : st.saved) {
      uint64_t off = sector * kSector;
      if (data.size() < off + kSector) data.resize(off + kSector, '\0');
      if (old.empty()) {
        std::memset(data.data() + off, 0, kSector);
      } else {
        std::memcpy(data.data() + off, old.data(), kSector);
      }
    }
    data.resize(st.synced_size, '\0');
    *out = std::move(data);
    return Status::OK();
  }

  FaultInjectionEnv* const env_;
  const std::unique_ptr<Dir> base_;
  const std::string dir_;  // normalized
  const std::shared_ptr<Handle> h_;
};

// ---------------------------------------------------------------- the env

FaultInjectionEnv::FaultInjectionEnv(Env* base) : base_(base) {}
FaultInjectionEnv::~FaultInjectionEnv() = default;

Status FaultInjectionEnv::OpenDir(const std::string& path, std::unique_ptr<Dir>* dir) {
  MutexLock l(&mu_);
  std::string norm = NormalizeDir(path);
  BV_RETURN_IF_ERROR(CheckFault(FaultOp::kOpen, norm, "opening directory"));
  std::unique_ptr<Dir> base_dir;
  BV_RETURN_IF_ERROR(base_->OpenDir(path, &base_dir));
  *dir = std::make_unique<FaultDir>(this, std::move(base_dir), norm, NewHandle(norm));
  return Status::OK();
}

int FaultInjectionEnv::InjectFault(const FaultRule& rule) {
  MutexLock l(&mu_);
  int id = next_rule_id_++;
  FaultRule r = rule;
  r.path_prefix = NormalizeDir(r.path_prefix);
  rules_.push_back(std::make_unique<Rule>(Rule{id, r, std::mt19937_64(rule.seed)}));
  counters_[id] = FaultCounters{};
  return id;
}

void FaultInjectionEnv::ClearFaults() {
  MutexLock l(&mu_);
  rules_.clear();
}

FaultCounters FaultInjectionEnv::Counters(int rule_id) const {
  MutexLock l(&mu_);
  auto it = counters_.find(rule_id);
  return it == counters_.end() ? FaultCounters{} : it->second;
}

uint64_t FaultInjectionEnv::UnsyncedSectors(const std::string& path) const {
  MutexLock l(&mu_);
  auto it = files_.find(path);
  return it == files_.end() ? 0 : it->second->saved.size();
}

Status FaultInjectionEnv::CheckFault(FaultOp op, const std::string& path, const char* what) {
  for (auto& r : rules_) {
    if (r->rule.op != FaultOp::kAny && r->rule.op != op) continue;
    if (!PathUnder(path, r->rule.path_prefix)) continue;
    FaultCounters& c = counters_[r->id];
    ++c.matched;
    if (c.matched <= r->rule.skip) continue;
    if (r->rule.count >= 0 && c.fired >= static_cast<uint64_t>(r->rule.count)) continue;
    if (r->rule.probability < 1.0) {
      double draw = std::uniform_real_distribution<double>(0.0, 1.0)(r->rng);
      if (draw >= r->rule.probability) continue;
    }
    ++c.fired;
    return Status::IoError(r->rule.err, std::string("injected fault: ") + what + " " + path);
  }
  return Status::OK();
}

std::shared_ptr<FaultInjectionEnv::FileState> FaultInjectionEnv::StateFor(const std::string& dir,
                                                                          const std::string& name,
                                                                          uint64_t size_now) {
  std::string path = Join(dir, name);
  auto it = files_.find(path);
  if (it != files_.end()) return it->second;
  auto st = std::make_shared<FileState>();
  st->dir = dir;
  st->name = name;
  st->synced_size = size_now;  // nothing unsynced is known about a file we have not touched
  files_[path] = st;
  return st;
}

std::shared_ptr<FaultInjectionEnv::Handle> FaultInjectionEnv::NewHandle(const std::string& path) {
  if (handles_.size() >= 64) {
    handles_.erase(std::remove_if(handles_.begin(), handles_.end(),
                                  [](const std::weak_ptr<Handle>& w) { return w.expired(); }),
                   handles_.end());
  }
  auto h = std::make_shared<Handle>();
  h->path = path;
  handles_.push_back(h);
  return h;
}

Status FaultInjectionEnv::OpenBase(const FileState& st, std::unique_ptr<File>* file) {
  std::unique_ptr<Dir> dir;
  BV_RETURN_IF_ERROR(base_->OpenDir(st.dir, &dir));
  return dir->OpenFile(st.name, OpenMode::kReadWrite, file);
}

Status FaultInjectionEnv::SaveSectors(FileState* st, File* base, uint64_t first, uint64_t last) {
  std::string buf(kSector, '\0');
  for (uint64_t s = first; s <= last; ++s) {
    if (st->saved.count(s) != 0) continue;  // already holds the synced contents
    BV_RETURN_IF_ERROR(base->ReadAt(s * kSector, buf.data(), kSector));  // zero-fills past EOF
    st->saved[s] = AllZero(buf) ? std::string() : buf;
  }
  return Status::OK();
}

Status FaultInjectionEnv::RevertAll(FileState* st) {
  std::unique_ptr<File> f;
  BV_RETURN_IF_ERROR(OpenBase(*st, &f));
  const std::string zeros(kSector, '\0');
  for (const auto& [sector, old] : st->saved) {
    BV_RETURN_IF_ERROR(f->WriteAt(sector * kSector, old.empty() ? zeros.data() : old.data(), kSector));
  }
  BV_RETURN_IF_ERROR(f->Truncate(st->synced_size));
  st->saved.clear();
  st->last_write_seq = 0;
  return Status::OK();
}

Status FaultInjectionEnv::CutFile(FileState* st, PowerCutMode mode, bool is_last_writer, std::mt19937_64* rng,
                                  PowerCutReport* report) {
  std::unique_ptr<File> f;
  Status s = OpenBase(*st, &f);
  if (s.IsNotFound()) return Status::OK();  // removed behind our back
  BV_RETURN_IF_ERROR(s);
  FileInfo info;
  BV_RETURN_IF_ERROR(f->Stat(&info));
  const uint64_t cur = info.size;
  if (st->saved.empty() && cur == st->synced_size) return Status::OK();

  // Which sectors keep their current contents.
  std::map<uint64_t, bool> keep;
  uint64_t torn_keep = 0;
  if (mode == PowerCutMode::kTornLastWrite && is_last_writer) torn_keep = (*rng)() % (st->last_write_count + 1);
  for (const auto& [sector, old] : st->saved) {
    bool k = false;
    if (mode == PowerCutMode::kKeepRandomSubset) {
      k = ((*rng)() & 1u) != 0;
    } else if (mode == PowerCutMode::kTornLastWrite && is_last_writer) {
      k = sector >= st->last_write_first && sector < st->last_write_first + torn_keep;
    }
    keep[sector] = k;
  }
  bool shrink_kept = false;
  if (cur < st->synced_size) {
    if (mode == PowerCutMode::kKeepRandomSubset) shrink_kept = ((*rng)() & 1u) != 0;
    if (!shrink_kept) {
      // The shrink is undone, so what it cut off must come back.
      for (auto& [sector, k] : keep) {
        if ((sector + 1) * kSector > cur) k = false;
      }
    }
  }
  uint64_t target = shrink_kept ? cur : st->synced_size;
  if (!shrink_kept) {
    for (const auto& [sector, k] : keep) {
      if (k) target = std::max(target, std::min(cur, (sector + 1) * kSector));
    }
  }

  const std::string zeros(kSector, '\0');
  for (const auto& [sector, old] : st->saved) {
    if (keep[sector]) {
      ++report->sectors_kept;
      continue;
    }
    ++report->sectors_reverted;
    BV_RETURN_IF_ERROR(f->WriteAt(sector * kSector, old.empty() ? zeros.data() : old.data(), kSector));
  }
  BV_RETURN_IF_ERROR(f->Truncate(target));
  if (target != cur) ++report->files_resized;
  return Status::OK();
}

Status FaultInjectionEnv::UndoDirOp(const DirOp& op, PowerCutReport* report) {
  std::unique_ptr<Dir> dir;
  Status ds = base_->OpenDir(op.dir, &dir);
  if (ds.IsNotFound()) return Status::OK();  // the directory itself is gone (a test removed it)
  BV_RETURN_IF_ERROR(ds);
  ++report->dir_ops_undone;
  if (op.kind == DirOp::Kind::kCreate) {
    Status s = dir->Remove(op.from);
    return s.IsNotFound() ? Status::OK() : s;
  }
  Status s = dir->Rename(op.to, op.from);
  if (!s.ok() && !s.IsNotFound()) return s;
  if (op.replaced) {
    std::unique_ptr<File> f;
    BV_RETURN_IF_ERROR(dir->OpenFile(op.to, OpenMode::kCreate, &f));
    BV_RETURN_IF_ERROR(f->Truncate(0));
    BV_RETURN_IF_ERROR(f->WriteAt(0, op.replaced_contents.data(), op.replaced_contents.size()));
  }
  return Status::OK();
}

Status FaultInjectionEnv::PowerCut(PowerCutMode mode, uint64_t seed, const std::string& dir_prefix,
                                   PowerCutReport* report) {
  MutexLock l(&mu_);
  PowerCutReport local;
  if (report == nullptr) report = &local;
  *report = PowerCutReport{};
  const std::string prefix = NormalizeDir(dir_prefix);
  std::mt19937_64 rng(seed);
  Status first_error;

  // 1. File contents and sizes (in path order, so a seed reproduces).
  FileState* last_writer = nullptr;
  for (auto& [path, st] : files_) {
    if (!PathUnder(path, prefix) || st->last_write_seq == 0) continue;
    if (last_writer == nullptr || st->last_write_seq > last_writer->last_write_seq) last_writer = st.get();
  }
  for (auto it = files_.begin(); it != files_.end();) {
    if (!PathUnder(it->first, prefix)) {
      ++it;
      continue;
    }
    Status s = CutFile(it->second.get(), mode, it->second.get() == last_writer, &rng, report);
    if (!s.ok() && first_error.ok()) first_error = s;
    it = files_.erase(it);
  }

  // 2. Directory operations, newest first.
  for (size_t i = dir_ops_.size(); i-- > 0;) {
    if (!PathUnder(dir_ops_[i].dir, prefix)) continue;
    Status s = UndoDirOp(dir_ops_[i], report);
    if (!s.ok() && first_error.ok()) first_error = s;
    dir_ops_.erase(dir_ops_.begin() + static_cast<std::ptrdiff_t>(i));
  }

  // 3. Every handle in scope dies; locks are released.
  for (auto& w : handles_) {
    std::shared_ptr<Handle> h = w.lock();
    if (!h || h->dead || !PathUnder(h->path, prefix)) continue;
    h->dead = true;
    h->lock.reset();
    ++report->handles_killed;
  }
  handles_.erase(std::remove_if(handles_.begin(), handles_.end(),
                                [](const std::weak_ptr<Handle>& w) {
                                  auto h = w.lock();
                                  return !h || h->dead;
                                }),
                 handles_.end());
  return first_error;
}

}  // namespace boostvol::test
