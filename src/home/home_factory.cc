#include "home/home_factory.h"

#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include <spdlog/spdlog.h>

#include "home/home_journal.h"
#include "home/rbd_home.h"
#include "util/env.h"

namespace boostvol::home {

namespace {

bool IsDirUri(const std::string& uri) { return uri.rfind("dir:/", 0) == 0; }
bool IsRbdUri(const std::string& uri) { return uri.rfind("rbd:", 0) == 0; }

// The URI's target with the options' overrides.
Status RbdTargetOf(const std::string& uri, const HomeOptions& o, RbdTarget* t) {
  BV_RETURN_IF_ERROR(ParseRbdUri(uri, t));
  if (!o.ceph_conf.empty()) t->ceph_conf = o.ceph_conf;
  if (!o.ceph_id.empty()) t->ceph_id = o.ceph_id;
  return Status::OK();
}

std::string HostName() {
  char host[256] = {};
  (void)gethostname(host, sizeof host - 1);
  return host;
}

// Takes SLOW/boostvol-home.lock: Busy naming the holder when another cache (or adopt) has this home.
Status LockDirHome(Dir* dir, const std::string& note, std::unique_ptr<FileLock>* lock) {
  Status s = dir->LockFile(kDirHomeLockFile, note + " pid " + std::to_string(getpid()) + " on " + HostName(), lock);
  if (s.IsBusy()) {
    return Status::Busy("the home in " + dir->path() + " is in use by another cache (" +
                        dir->LockOwnerNote(kDirHomeLockFile) +
                        "); exactly one cache may write a home: unmount that one first");
  }
  if (!s.ok() && s.code() == Status::Code::kIoError && s.err() != 0) {
    // The first write boostvol makes in SLOW: name the cause here, since the
    // mount's message shows only this text (a read-only or full SLOW).
    std::string m = s.message() + " (" + std::strerror(s.err()) + ")";
    if (s.err() == EROFS) m += ": SLOW is read-only; boostvol writes the home copy, so mount SLOW read-write";
    return Status::IoError(s.err(), m);
  }
  return s;
}

// A directory home that also holds the home's lock for as long as it lives.
class LockedHome final : public Home {
 public:
  LockedHome(std::unique_ptr<Home> inner, std::unique_ptr<Dir> dir, std::unique_ptr<FileLock> lock)
      : inner_(std::move(inner)), dir_(std::move(dir)), lock_(std::move(lock)) {}
  ~LockedHome() override {
    inner_.reset();  // the home first, then the lock
    lock_.reset();
  }
  uint64_t size() const override { return inner_->size(); }
  meta::Watermark watermark() const override { return inner_->watermark(); }
  Status Read(uint64_t offset, void* buf, size_t n) override { return inner_->Read(offset, buf, n); }
  Status ApplyBatch(const Batch& batch) override { return inner_->ApplyBatch(batch); }
  bool streams_batches() const override { return inner_->streams_batches(); }
  Status Restamp() override { return inner_->Restamp(); }
  std::string Describe() const override { return inner_->Describe(); }
  Status WriteThrough(uint64_t offset, const void* data, size_t n) override {
    return inner_->WriteThrough(offset, data, n);
  }
  Status SyncThrough() override { return inner_->SyncThrough(); }
  Status ZeroThrough(uint64_t offset, uint64_t n) override { return inner_->ZeroThrough(offset, n); }
  Status WriteDirect(uint64_t offset, const void* data, size_t n) override {
    return inner_->WriteDirect(offset, data, n);
  }
  bool direct_mark_for_test() const override { return inner_->direct_mark_for_test(); }

 private:
  std::unique_ptr<Home> inner_;
  std::unique_ptr<Dir> dir_;
  std::unique_ptr<FileLock> lock_;
};

// Reads SLOW/boostvol-home.
Status ReadDirStamp(Dir* dir, Stamp* st) {
  bool exists = false;
  BV_RETURN_IF_ERROR(dir->Exists(kStampFile, &exists));
  if (!exists) {
    return Status::NotFound(dir->path() + " holds no boostvol-home stamp: it is not the home of a boostvol volume");
  }
  std::unique_ptr<File> f;
  BV_RETURN_IF_ERROR(dir->OpenFile(kStampFile, OpenMode::kReadOnly, &f));
  FileInfo info;
  BV_RETURN_IF_ERROR(f->Stat(&info));
  if (info.size > kMaxStampBytes) return Status::Corruption(f->name() + " is larger than any stamp");
  std::string text(info.size, '\0');
  if (!text.empty()) BV_RETURN_IF_ERROR(f->ReadAt(0, text.data(), text.size()));
  return DecodeStamp(text, f->name(), st);
}

Status InspectDirHome(Dir* dir, HomeSummary* out) {
  *out = HomeSummary();
  Stamp st;
  BV_RETURN_IF_ERROR(ReadDirStamp(dir, &st));
  out->stamped = true;
  out->previous_uuid = log::UuidToString(st.uuid);
  out->image_size = st.image_size;
  out->watermark = st.watermark;
  bool exists = false;
  BV_RETURN_IF_ERROR(dir->Exists(kImageFile, &exists));
  if (!exists) return Status::NotFound(dir->path() + " has a stamp but no image: the home copy was deleted");
  BV_RETURN_IF_ERROR(dir->Exists(kJournalFile, &exists));
  if (exists) {
    std::unique_ptr<File> j;
    BV_RETURN_IF_ERROR(dir->OpenFile(kJournalFile, OpenMode::kReadOnly, &j));
    JournalState state = JournalState::kEmpty;
    Journal journal;
    std::string why;
    BV_RETURN_IF_ERROR(ReadJournal(j.get(), st.uuid, st.image_size, &state, &journal, &why));
    out->journal_pending = state == JournalState::kValid && !journal.intent_only() &&
                           journal.base.segment_seq == st.watermark.segment_seq &&
                           journal.base.record_seq == st.watermark.record_seq;
  }
  return Status::OK();
}

Status AdoptDirHome(Env* env, const std::string& path, const log::Uuid& new_uuid, uint64_t image_size,
                    AdoptReport* report) {
  std::unique_ptr<Dir> dir;
  BV_RETURN_IF_ERROR(env->OpenDir(path, &dir));
  std::unique_ptr<FileLock> lock;
  BV_RETURN_IF_ERROR(LockDirHome(dir.get(), "boostvol create --adopt", &lock));
  BV_RETURN_IF_ERROR(InspectDirHome(dir.get(), &report->found));
  if (report->found.image_size != image_size) {
    return Status::InvalidArgument(path + " holds an image of " + std::to_string(report->found.image_size) +
                                   " bytes, not " + std::to_string(image_size) + " (omit --size with --adopt)");
  }
  log::Uuid old_uuid{};
  if (!log::UuidFromString(report->found.previous_uuid, &old_uuid)) return Status::Corruption("bad uuid in the stamp");
  {
    // Opening it as the old volume finishes a pending batch from its journal (or discards a torn or stale one).
    std::unique_ptr<Home> old;
    HomeOpenReport hr;
    BV_RETURN_IF_ERROR(OpenDirectoryHome(env, path, old_uuid, image_size, true, &old, &hr));
    report->journal_replayed = hr.journal_replayed;
    if (hr.changed_behind_back) spdlog::warn("adopting {}: {}", path, hr.change_detail);
  }
  // The journal must be empty before the stamp names a new volume (an old one would read as another volume's).
  std::unique_ptr<File> j;
  BV_RETURN_IF_ERROR(dir->OpenFile(kJournalFile, OpenMode::kCreate, &j));
  BV_RETURN_IF_ERROR(j->Truncate(0));
  BV_RETURN_IF_ERROR(j->Sync());
  std::unique_ptr<File> image;
  BV_RETURN_IF_ERROR(dir->OpenFile(kImageFile, OpenMode::kReadOnly, &image));
  FileInfo info;
  BV_RETURN_IF_ERROR(image->Stat(&info));
  Stamp st;
  st.uuid = new_uuid;
  st.image_size = image_size;
  st.watermark = meta::Watermark();
  st.image_mtime_ns = info.mtime_ns;
  st.image_ctime_ns = info.ctime_ns;
  st.image_blocks = info.blocks_512;
  const std::string text = EncodeStamp(st);
  std::unique_ptr<File> tmp;
  BV_RETURN_IF_ERROR(dir->OpenFile(kStampTmpFile, OpenMode::kCreate, &tmp));
  BV_RETURN_IF_ERROR(tmp->Truncate(0));
  BV_RETURN_IF_ERROR(tmp->WriteAt(0, text.data(), text.size()));
  BV_RETURN_IF_ERROR(tmp->Sync());
  tmp.reset();
  BV_RETURN_IF_ERROR(dir->Rename(kStampTmpFile, kStampFile));
  return dir->Sync();
}

std::string AdoptSummary(const std::string& uri, const AdoptReport& r) {
  std::string s;
  if (!r.found.stamped) {
    s = uri + " is a plain image (no boostvol stamp): adopted as it is.";
  } else if (r.journal_replayed) {
    s = uri + " was the home of volume " + r.found.previous_uuid +
        ", whose cache was lost in the middle of a migration batch: the batch was finished from the home's journal. "
        "The home holds every write of that volume before record " +
        std::to_string(r.found.watermark.record_seq) + " plus that batch (a crash-consistent prefix).";
  } else {
    s = uri + " was the home of volume " + r.found.previous_uuid + ", left clean (no batch in flight): it holds every " +
        "write of that volume before record " + std::to_string(r.found.watermark.record_seq) +
        ". If that volume's cache still held newer writes, they are not in it (a crash-consistent prefix).";
  }
  s += " The old cache, if it ever comes back, is refused by this home.";
  return s;
}

std::string RecoverSummary(const std::string& uri, const RecoverReport& r) {
  if (!r.found.stamped) return uri + " is a plain image (no boostvol stamp): nothing to recover.";
  std::string s;
  if (r.journal_replayed) {
    s = "The cache of volume " + r.found.previous_uuid + " was lost in the middle of a migration batch: the batch " +
        "was finished from the home's journal.";
  } else {
    s = "No migration batch was pending (the journal was empty, torn or already applied): nothing to finish.";
  }
  s += " The home copy now holds every write of that volume before record " +
       std::to_string(r.found.watermark.record_seq) + ": a stale but crash-consistent image, usable without boostvol.";
  if (r.changed_behind_back) s += " Note: " + r.change_detail + ".";
  return s;
}

}  // namespace

std::string HomeUriFromArgument(const std::string& slow) {
  if (slow.rfind("rbd:", 0) == 0 || slow.rfind("dir:", 0) == 0) return slow;
  char* r = ::realpath(slow.c_str(), nullptr);
  std::string abs = r ? std::string(r) : slow;
  std::free(r);
  return "dir:" + abs;
}

Status ValidateHomeUri(const std::string& uri) {
  if (IsDirUri(uri)) return Status::OK();
  if (IsRbdUri(uri)) {
    RbdTarget t;
    return ParseRbdUri(uri, &t);
  }
  return Status::InvalidArgument("unknown kind of home '" + uri +
                                 "' (expected dir:/absolute/path or rbd:POOL/IMAGE[:conf=PATH][:id=NAME])");
}

Status CreateHome(Env* env, const std::string& uri, const log::Uuid& uuid, uint64_t image_size,
                  const HomeOptions& options) {
  BV_RETURN_IF_ERROR(ValidateHomeUri(uri));
  if (IsRbdUri(uri)) {
    RbdTarget t;
    BV_RETURN_IF_ERROR(RbdTargetOf(uri, options, &t));
    return CreateRbdHome(t, uuid, image_size);
  }
  return CreateDirectoryHome(env, uri.substr(4), uuid, image_size);
}

Status OpenHome(Env* env, const std::string& uri, const log::Uuid& uuid, uint64_t image_size,
                const HomeOptions& options, std::unique_ptr<Home>* out, HomeOpenReport* report) {
  BV_RETURN_IF_ERROR(ValidateHomeUri(uri));
  if (IsRbdUri(uri)) {
    RbdTarget t;
    BV_RETURN_IF_ERROR(RbdTargetOf(uri, options, &t));
    return OpenRbdHome(t, uuid, image_size, options.use_journal, out, report);
  }
  const std::string path = uri.substr(4);
  std::unique_ptr<Dir> dir;
  Status s = env->OpenDir(path, &dir);
  if (!s.ok()) return Status::IoError(s.err(), "opening SLOW " + path + ": " + s.message());
  std::unique_ptr<FileLock> lock;
  BV_RETURN_IF_ERROR(LockDirHome(dir.get(), "boostvol volume " + log::UuidToString(uuid), &lock));
  std::unique_ptr<Home> inner;
  BV_RETURN_IF_ERROR(OpenDirectoryHome(env, path, uuid, image_size, options.use_journal, &inner, report));
  *out = std::make_unique<LockedHome>(std::move(inner), std::move(dir), std::move(lock));
  return Status::OK();
}

Status InspectHome(Env* env, const std::string& uri, const HomeOptions& options, HomeSummary* out) {
  BV_RETURN_IF_ERROR(ValidateHomeUri(uri));
  if (IsRbdUri(uri)) {
    RbdTarget t;
    BV_RETURN_IF_ERROR(RbdTargetOf(uri, options, &t));
    return InspectRbdHome(t, out);
  }
  std::unique_ptr<Dir> dir;
  BV_RETURN_IF_ERROR(env->OpenDir(uri.substr(4), &dir));
  std::unique_ptr<FileLock> lock;
  BV_RETURN_IF_ERROR(LockDirHome(dir.get(), "boostvol create --adopt (inspecting)", &lock));
  return InspectDirHome(dir.get(), out);
}

Status RecoverHome(Env* env, const std::string& uri, const HomeOptions& options, RecoverReport* report) {
  *report = RecoverReport();
  BV_RETURN_IF_ERROR(InspectHome(env, uri, options, &report->found));
  if (report->found.stamped) {
    log::Uuid uuid{};
    if (!log::UuidFromString(report->found.previous_uuid, &uuid)) return Status::Corruption("bad uuid in the stamp");
    HomeOptions o = options;
    o.use_journal = true;  // a journal left by the lost cache must be finished whatever the volume's setting
    std::unique_ptr<Home> home;
    HomeOpenReport hr;
    BV_RETURN_IF_ERROR(OpenHome(env, uri, uuid, report->found.image_size, o, &home, &hr));
    report->journal_replayed = hr.journal_replayed;
    report->changed_behind_back = hr.changed_behind_back;
    report->change_detail = hr.change_detail;
    report->found.watermark = home->watermark();
  }
  report->summary = RecoverSummary(uri, *report);
  spdlog::info("recovered the home {}: {}", uri, report->summary);
  return Status::OK();
}

Status AdoptHome(Env* env, const std::string& uri, const log::Uuid& new_uuid, uint64_t image_size,
                 const HomeOptions& options, AdoptReport* report) {
  *report = AdoptReport();
  BV_RETURN_IF_ERROR(ValidateHomeUri(uri));
  if (IsRbdUri(uri)) {
    RbdTarget t;
    BV_RETURN_IF_ERROR(RbdTargetOf(uri, options, &t));
    BV_RETURN_IF_ERROR(AdoptRbdHome(t, new_uuid, image_size, report));
  } else {
    BV_RETURN_IF_ERROR(AdoptDirHome(env, uri.substr(4), new_uuid, image_size, report));
  }
  report->summary = AdoptSummary(uri, *report);
  spdlog::info("adopted {} as the home of volume {}: {}", uri, log::UuidToString(new_uuid), report->summary);
  return Status::OK();
}

}  // namespace boostvol::home
