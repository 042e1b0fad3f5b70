// CreateVolume: lays out a new volume. Order: validate everything first, then
// FAST/log, then the home in SLOW, then FAST/meta.db last (its presence marks
// a complete volume). A failure removes what this call created.
#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include "boostvol/volume.h"
#include "home/home_factory.h"
#include "log/log_format.h"
#include "log/record.h"
#include "engine/tunables.h"
#include "meta/meta_store.h"
#include "util/env.h"

namespace boostvol {

using log::kBlockSize;

namespace {

Status CheckDir(const std::string& role, const std::string& path) {
  struct stat st;
  if (path.empty()) return Status::InvalidArgument(role + " directory not given");
  if (::stat(path.c_str(), &st) != 0)
    return Status::InvalidArgument(role + " directory " + path + " does not exist (create it first)");
  if (!S_ISDIR(st.st_mode)) return Status::InvalidArgument(role + " " + path + " is not a directory");
  if (::access(path.c_str(), W_OK | X_OK) != 0)
    return Status::InvalidArgument(role + " directory " + path + " is not writable by this user");
  return Status::OK();
}

// Writes zeros over [0, bytes) of a fresh log (CreateOptions::preallocate_full): what reads as zeros already, now
// in space the file system counts as written. Direct I/O in 8 MiB steps, so the page cache is left alone.
// Progress in MiB for logs of 512 MiB or more.
Status WriteZeros(File* f, uint64_t bytes, const ProgressFn& progress) {
  constexpr size_t kStep = size_t{8} << 20;
  std::unique_ptr<void, decltype(&std::free)> zeros(std::aligned_alloc(kBlockSize, kStep), &std::free);
  if (zeros == nullptr) return Status::IoError(ENOMEM, "no memory for the log's preallocation");
  std::memset(zeros.get(), 0, kStep);
  // Shown for a log of 512 MiB or more (a smaller one takes well under a second on an SSD), in MiB.
  const bool show = progress && bytes >= (uint64_t{512} << 20);
  Progress p{"preallocating the log", 0, bytes >> 20, "MiB"};
  for (uint64_t done = 0; done < bytes;) {
    const size_t n = static_cast<size_t>(std::min<uint64_t>(kStep, bytes - done));
    Status s = f->WriteAtDirect(done, zeros.get(), n);
    if (!s.ok()) {
      if (s.err() == ENOSPC) return Status::NoSpace("FAST has no room to write the " + std::to_string(bytes) + "-byte log");
      return s;
    }
    done += n;
    p.done = done >> 20;
    if (show) progress(p);
  }
  return Status::OK();
}

}  // namespace

Status CreateVolume(const CreateOptions& o) {
  Env* env = o.env ? o.env : Env::Posix();
  BV_RETURN_IF_ERROR(CheckDir("FAST", o.fast_dir));
  home::HomeOptions ho;
  ho.use_journal = o.home_journal;
  uint64_t image_size = o.image_size;
  if (o.adopt) {
    // The adopted home decides the size; the lock check here is repeated by AdoptHome below.
    if (o.slow_dir.rfind("rbd:", 0) != 0) BV_RETURN_IF_ERROR(CheckDir("SLOW", o.slow_dir));
    home::HomeSummary hs;
    Status hs_status = home::InspectHome(env, home::HomeUriFromArgument(o.slow_dir), ho, &hs);
    if (hs_status.IsNotFound() && o.slow_dir.rfind("rbd:", 0) != 0)
      return Status::NotFound(hs_status.message() + " (adopting a plain image file is not supported; see docs/rbd-home.md)");
    if (!hs_status.ok()) return hs_status;
    if (image_size != 0 && image_size != hs.image_size)
      return Status::InvalidArgument("--size " + std::to_string(image_size) + " differs from the adopted home's " +
                                     std::to_string(hs.image_size) + " bytes (omit --size with --adopt)");
    image_size = hs.image_size;
  }
  const bool slow_is_dir = o.slow_dir.rfind("rbd:", 0) != 0;
  if (slow_is_dir) BV_RETURN_IF_ERROR(CheckDir("SLOW", o.slow_dir));
  struct stat fs, ss;
  if (slow_is_dir && ::stat(o.fast_dir.c_str(), &fs) == 0 && ::stat(o.slow_dir.c_str(), &ss) == 0 &&
      fs.st_dev == ss.st_dev && fs.st_ino == ss.st_ino)
    return Status::InvalidArgument("FAST and SLOW are the same directory; the cache and the home need their own");
  if (image_size == 0 || image_size % kBlockSize != 0)
    return Status::InvalidArgument("image size must be a positive multiple of 4 KiB");
  for (const auto& [key, value] : o.tunables) {
    TunableValues tv;
    BV_RETURN_IF_ERROR(ParseTunable(key, value, &tv));
  }
  if (image_size / kBlockSize > log::kMaxImageBlocks) return Status::InvalidArgument("image size is over the 16 TiB limit");
  if (o.segment_size % kBlockSize != 0 || o.segment_size / kBlockSize < log::kMinSegmentBlocks ||
      o.segment_size / kBlockSize > log::kMaxSegmentBlocks)
    return Status::InvalidArgument("segment size must be a multiple of 4 KiB between 16 KiB and 256 MiB");
  uint64_t cache = o.cache_size ? o.cache_size : std::min<uint64_t>(image_size, uint64_t{1} << 30);
  uint64_t segment_count = cache / o.segment_size;
  if (segment_count < log::kMinSegments)
    return Status::InvalidArgument("cache size " + std::to_string(cache) + " holds fewer than " +
                                   std::to_string(log::kMinSegments) + " segments of " + std::to_string(o.segment_size) +
                                   " bytes; give a larger --cache-size or a smaller --segment-size");
  if (segment_count * (o.segment_size / kBlockSize) >= 0xFFFFFFFFull)
    return Status::InvalidArgument("cache size is over the 16 TiB limit");

  std::unique_ptr<Dir> fast, slow;
  BV_RETURN_IF_ERROR(env->OpenDir(o.fast_dir, &fast));
  if (slow_is_dir) BV_RETURN_IF_ERROR(env->OpenDir(o.slow_dir, &slow));
  for (const char* name : {"meta.db", "log", "meta.db-wal"}) {
    bool e = false;
    BV_RETURN_IF_ERROR(fast->Exists(name, &e));
    if (e && std::string(name) == "log") {
      // meta.db (looked for first) is written last: a log without it is a create that did not finish
      // (interrupted while it preallocated the log, say), or a volume whose meta.db was deleted. Never overwritten.
      return Status::Busy("FAST " + o.fast_dir + " holds a log but no meta.db: a create that was interrupted, or a " +
                          "volume whose meta.db was deleted; refusing to overwrite it. If it is an interrupted " +
                          "create, remove " + o.fast_dir + "/log and create again");
    }
    if (e) return Status::Busy("FAST " + o.fast_dir + " already holds a volume (" + name + " exists); refusing to overwrite it");
  }
  for (const char* name : {"boostvol-home", "image"}) {
    if (!slow || o.adopt) break;
    bool e = false;
    BV_RETURN_IF_ERROR(slow->Exists(name, &e));
    if (e) return Status::Busy("SLOW " + o.slow_dir + " already holds a home copy (" + name + " exists); refusing to overwrite it");
  }
  std::unique_ptr<FileLock> lock;
  Status s = fast->LockFile("lock", "pid " + std::to_string(getpid()) + " (create)", &lock);
  if (s.IsBusy()) return Status::Busy("FAST " + o.fast_dir + " is in use: " + s.message());
  BV_RETURN_IF_ERROR(s);

  log::Uuid uuid = log::NewRandomUuid();
  const std::string home_uri = home::HomeUriFromArgument(o.slow_dir);
  uint64_t log_bytes = segment_count * o.segment_size;
  bool created_log = false, created_home = false;
  auto undo = [&](Status why) {
    if (created_home && slow) {
      (void)slow->Remove("image");
      (void)slow->Remove("boostvol-home");
      (void)slow->Remove("boostvol-journal");
    }
    if (created_log) (void)fast->Remove("log");
    (void)fast->Remove("meta.db");
    spdlog::error("creating the volume failed, nothing was left behind: {}", why.ToString());
    return why;
  };

  {
    std::unique_ptr<File> logf;
    s = fast->OpenFile("log", OpenMode::kCreateExclusive, &logf);
    if (!s.ok()) return undo(s);
    created_log = true;
    s = logf->Allocate(0, log_bytes);
    if (!s.ok()) {
      if (s.err() == ENOSPC) return undo(Status::NoSpace("FAST has no room for a " + std::to_string(log_bytes) + "-byte log"));
      s = logf->Truncate(log_bytes);  // a file system without fallocate
    }
    if (s.ok() && o.preallocate_full) s = WriteZeros(logf.get(), log_bytes, o.progress);
    if (s.ok()) s = logf->Sync();
    if (!s.ok()) return undo(s);
  }
  if (o.adopt) {
    // Never undone: an adopted home keeps its data; if what follows fails, adopting it again is safe.
    home::AdoptReport ar;
    s = home::AdoptHome(env, home_uri, uuid, image_size, ho, &ar);
    if (!s.ok()) return undo(s);
    if (o.adopt_summary) *o.adopt_summary = ar.summary;
  } else {
    s = home::CreateHome(env, home_uri, uuid, image_size, ho);
    if (!s.ok()) return undo(s);  // it removes what it made itself
    created_home = true;
  }

  meta::VolumeRow row;
  row.uuid = log::UuidToString(uuid);
  row.image_size = image_size;
  row.block_size = kBlockSize;
  row.segment_blocks = o.segment_size / kBlockSize;
  row.segment_count = static_cast<uint32_t>(segment_count);
  row.home = home_uri;
  row.created_unix = std::time(nullptr);
  row.home_journal = o.home_journal;
  std::unique_ptr<meta::MetaStore> meta;
  s = meta::MetaStore::Create(o.fast_dir + "/meta.db", row, &meta, o.sqlite_vfs);
  if (!s.ok()) return undo(s);
  for (const auto& [key, value] : o.tunables) {
    if (s.ok()) s = meta->SetSetting(key, value);
  }
  meta.reset();
  if (!s.ok()) return undo(s);
  s = fast->Sync();
  if (s.ok() && slow) s = slow->Sync();
  if (!s.ok()) return undo(s);
  if (!o.home_journal)
    spdlog::warn("volume created WITHOUT the home journal: if FAST is lost, the home copy in {} may be a mix of "
                 "old and new blocks that no filesystem checker can repair", o.slow_dir);
  spdlog::info("created volume {}: image {} bytes, cache {} bytes ({} segments of {} bytes)", row.uuid, image_size,
               log_bytes, segment_count, o.segment_size);
  return Status::OK();
}

}  // namespace boostvol
