// CheckVolume: `boostvol check FAST`, offline. Verifies meta.db, the home
// stamp and every live record of the log (checksums, chaining), and reports
// what it finds without changing anything but what recovery itself would
// finish (a complete home journal is applied by opening the home).
#include <algorithm>
#include <spdlog/spdlog.h>
#include <unistd.h>
#include <unordered_set>

#include "boostvol/volume.h"
#include "home/home_factory.h"
#include "log/log_scanner.h"
#include "meta/meta_store.h"
#include "util/env.h"

namespace boostvol {

Status CheckVolume(const std::string& fast_dir, const ProgressFn& progress, CheckReport* report, Env* env) {
  if (env == nullptr) env = Env::Posix();
  *report = CheckReport{};
  std::unique_ptr<Dir> fast;
  BV_RETURN_IF_ERROR(env->OpenDir(fast_dir, &fast));
  bool exists = false;
  BV_RETURN_IF_ERROR(fast->Exists("meta.db", &exists));
  if (!exists) return Status::NotFound("no boostvol volume in " + fast_dir + " (meta.db is missing)");
  std::unique_ptr<FileLock> lock;
  Status s = fast->LockFile("lock", "pid " + std::to_string(getpid()) + " (check)", &lock);
  if (s.IsBusy())
    return Status::Busy("the volume in " + fast_dir + " is in use (" + fast->LockOwnerNote("lock") + "); unmount it before checking");
  BV_RETURN_IF_ERROR(s);

  auto problem = [&](const std::string& p) { report->problems.push_back(p); };
  std::unique_ptr<meta::MetaStore> meta;
  BV_RETURN_IF_ERROR(meta::MetaStore::Open(fast_dir + "/meta.db", false, &meta));
  std::string integrity;
  s = meta->IntegrityCheck(&integrity);
  if (!s.ok()) problem("meta.db integrity check: " + s.ToString() + " " + integrity);
  meta::VolumeRow row;
  s = meta->LoadVolume(&row);
  if (!s.ok()) {
    problem("meta.db volume row: " + s.message());
    report->summary = "meta.db is damaged; the volume cannot be checked further";
    return Status::OK();
  }
  log::Uuid uuid{};
  log::UuidFromString(row.uuid, &uuid);
  uint64_t log_blocks = uint64_t{row.segment_blocks} * row.segment_count;

  std::unique_ptr<File> logf;
  s = fast->OpenFile("log", OpenMode::kReadOnly, &logf);
  if (!s.ok()) {
    problem("FAST/log: " + s.ToString());
    report->summary = "the log cannot be opened";
    return Status::OK();
  }
  FileInfo li;
  BV_RETURN_IF_ERROR(logf->Stat(&li));
  if (li.size != log_blocks * log::kBlockSize)
    problem("FAST/log is " + std::to_string(li.size) + " bytes; meta.db says " + std::to_string(log_blocks * log::kBlockSize));

  std::unique_ptr<home::Home> home;
  home::HomeOpenReport hr;
  home::HomeOptions ho;
  ho.use_journal = row.home_journal;
  s = home::OpenHome(env, row.home, uuid, row.image_size, ho, &home, &hr);
  if (!s.ok()) {
    problem("home: " + s.ToString());
    report->summary = "the home copy cannot be opened";
    return Status::OK();
  }
  if (hr.changed_behind_back) problem("home copy changed outside boostvol: " + hr.change_detail);
  meta::Watermark mwm;
  BV_RETURN_IF_ERROR(meta->LoadWatermark(&mwm));
  meta::Watermark start = home->watermark();
  if (start.record_seq < mwm.record_seq) problem("home watermark is older than meta.db's");

  std::vector<meta::SealedSegment> sealed;
  BV_RETURN_IF_ERROR(meta->LoadSealedSegments(&sealed));
  uint64_t known = 0;
  for (const auto& x : sealed)
    if (x.segment_seq >= start.segment_seq) known = std::max(known, x.last_record);

  log::ScanOptions so =
      log::ScanOptions::ForLog(logf.get(), uuid, row.segment_blocks, row.segment_count, start, known);
  const uint64_t expect = known >= start.record_seq ? known - start.record_seq + 1 : 0;  // 0: not known
  if (progress)
    so.progress = [&](uint64_t r) { progress(Progress{"check", r, expect ? std::max(expect, r + 1) : 0, "records"}); };
  std::unordered_set<uint64_t> dirty;
  uint64_t zero_ranges = 0, zero_blocks = 0;
  so.on_zero = [&](uint64_t first, uint32_t count, uint64_t) {
    if ((first + count) * log::kBlockSize > row.image_size)
      problem("log holds a zero range of image blocks " + std::to_string(first) + "+" + std::to_string(count) +
              " beyond the image");
    zero_ranges++;
    zero_blocks += count;
    // Older logged copies of these blocks lose (docs/log_format.md, "Zero entries").
    if (count < dirty.size()) {
      for (uint64_t b = first; b < first + count; b++) dirty.erase(b);
    } else {
      for (auto it = dirty.begin(); it != dirty.end();) it = *it >= first && *it < first + count ? dirty.erase(it) : std::next(it);
    }
  };
  log::ScanResult sr;
  s = log::ScanLog(so, [&](uint64_t lba, uint32_t, uint32_t) {
    if (lba * log::kBlockSize >= row.image_size) problem("log holds image block " + std::to_string(lba) + " beyond the image");
    dirty.insert(lba);
  }, &sr);
  if (!s.ok()) problem("log: " + s.message());
  if (progress && sr.records > 0) progress(Progress{"check", sr.records, sr.records, "records"});
  report->records_checked = sr.records;
  report->blocks_checked = sr.blocks;
  report->dirty_blocks = dirty.size();
  report->summary = std::to_string(sr.records) + " log records (" + std::to_string(sr.blocks) + " blocks, " +
                    std::to_string(dirty.size()) + " distinct image blocks not yet home" +
                    (zero_ranges > 0 ? ", " + std::to_string(zero_ranges) + " zero ranges of " +
                                           std::to_string(zero_blocks) + " blocks"
                                     : std::string()) +
                    ") verified; " +
                    (report->problems.empty() ? "volume is consistent" : std::to_string(report->problems.size()) + " problem(s)");
  return Status::OK();
}

}  // namespace boostvol
