// RepairVolume: `boostvol check --repair FAST`, offline. Brings a volume the
// mount refuses (R5 in src/log/log_scanner.h: a record that was durable fails
// its checks) back to the longest consistent prefix of its log.
//
// What it does, in this order (each step is safe to crash in: running repair
// again finishes the job):
//  1. Takes FAST/lock (Busy while mounted). meta.db's volume row must be
//     readable: the geometry (uuid, segment size and count) cannot be
//     recovered from anywhere else, so without it repair refuses.
//  2. Reads what meta.db claims: sealed segments and the clean-stop
//     checkpoint. Rows that fail their checks are noted and dropped later
//     (the log is authoritative).
//  3. Scans the log from the home's watermark with log::ScanLog, as a mount
//     would. The cut is the first record the scan could not accept (where
//     ScanLog returns Corruption) or, if earlier, the first accepted record
//     holding a block beyond the image. Every record before the cut is kept
//     and never written to.
//  4. Walks the headers after the cut that still decode, to report which
//     image blocks lose their newest copy (their older copy is at home or in
//     a kept record).
//  5. Changes the log: a log of the wrong size is resized to the geometry
//     (zeros: any record in a missing part is dropped); the header block at
//     the cut is overwritten with zeros, at both places R2 looks for it (where
//     the last kept record ends and block 0 of the next segment); fdatasync.
//     A zeroed header is never valid, so the next scan ends at the cut.
//  6. Changes meta.db (MetaStore::ForgetSegmentsFrom): sealed rows of the
//     segments from the cut on are freed, the checkpoint is dropped and the
//     stop marked unclean, so meta.db no longer claims the dropped records
//     durable and the next mount replays the log. Log before meta.db: a crash
//     between the two leaves meta.db claiming records the log no longer
//     holds, which the mount refuses and a second repair fixes.
//  7. Scans again to prove the next mount will accept the log.
#include <algorithm>
#include <cstring>
#include <limits>
#include <set>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include "boostvol/volume.h"
#include "home/home_factory.h"
#include "log/log_scanner.h"
#include "meta/meta_store.h"
#include "util/env.h"

namespace boostvol {
namespace {

using log::kBlockSize;

// Where a record's header is, or is expected: segment seq and the block
// offset inside that segment.
struct LogPoint {
  uint64_t record_seq = 0;
  uint64_t segment_seq = 0;
  uint32_t offset = 0;
};

std::string Refuse(const std::string& fast_dir, const std::string& what) {
  return what + ". Repair cannot rebuild the volume's identity and geometry (uuid, segment size and count) from the "
                "log alone; restore " + fast_dir + "/meta.db from a copy, or move " + fast_dir +
         " away and create a new volume (the home copy holds every block migrated before the damage)";
}

// Follows the log from `from` through every header that still decodes with
// the expected seq and segment (data blocks and chaining are not checked: the
// records are being dropped, this only says what they held).
void WalkDropped(File* logf, const log::Uuid& uuid, const meta::VolumeRow& row, uint64_t start_segment, LogPoint from,
                 std::set<uint64_t>* lbas, uint64_t* records) {
  auto hdr = std::make_unique<log::RecordHeader>();
  uint8_t block[kBlockSize];
  auto try_at = [&](uint64_t seg, uint32_t off, uint64_t seq) {
    if (row.segment_blocks - off < 2) return false;
    uint64_t pos = (seg % row.segment_count) * row.segment_blocks + off;
    return logf->ReadAt(pos * kBlockSize, block, kBlockSize).ok() && log::DecodeHeader(block, uuid, hdr.get()).ok() &&
           hdr->record_seq == seq && hdr->segment_seq == seg && off + 1 + hdr->nblocks <= row.segment_blocks;
  };
  uint64_t seg = from.segment_seq;
  uint32_t off = from.offset;
  uint64_t seq = from.record_seq;
  const uint64_t bound = uint64_t{row.segment_count} * row.segment_blocks;  // records in one lap, at most
  for (uint64_t n = 0; n < bound; n++) {
    if (try_at(seg, off, seq)) {
      // found where the last one ended
    } else if (off > 0 && seg + 1 - start_segment < row.segment_count && try_at(seg + 1, 0, seq)) {
      seg++;
      off = 0;
    } else {
      break;
    }
    for (uint32_t i = 0; i < hdr->nblocks; i++) lbas->insert(hdr->entries[i].lba);
    off += 1 + hdr->nblocks;
    seq++;
    (*records)++;
  }
}

}  // namespace

Status RepairVolume(const std::string& fast_dir, const ProgressFn& progress, RepairReport* report, Env* env) {
  if (env == nullptr) env = Env::Posix();
  *report = RepairReport{};
  std::unique_ptr<Dir> fast;
  Status s = env->OpenDir(fast_dir, &fast);
  if (!s.ok()) return Status::InvalidArgument("cannot open FAST directory " + fast_dir + ": " + s.ToString());
  bool exists = false;
  BV_RETURN_IF_ERROR(fast->Exists("meta.db", &exists));
  if (!exists) return Status::NotFound("no boostvol volume in " + fast_dir + " (meta.db is missing); nothing to repair");
  std::unique_ptr<FileLock> lock;
  s = fast->LockFile("lock", "pid " + std::to_string(getpid()) + " (repair)", &lock);
  if (s.IsBusy())
    return Status::Busy("the volume in " + fast_dir + " is in use (" + fast->LockOwnerNote("lock") +
                        "); unmount it before repairing");
  BV_RETURN_IF_ERROR(s);

  // 1. Identity and geometry.
  std::unique_ptr<meta::MetaStore> meta;
  s = meta::MetaStore::Open(fast_dir + "/meta.db", false, &meta);
  if (!s.ok()) {
    if (s.IsBusy() || s.code() == Status::Code::kIoError) return s;
    return Status::Corruption(Refuse(fast_dir, "meta.db cannot be opened (" + s.message() + ")"));
  }
  meta::VolumeRow row;
  s = meta->LoadVolume(&row);
  if (!s.ok()) return Status::Corruption(Refuse(fast_dir, "meta.db's volume row is unreadable (" + s.message() + ")"));
  log::Uuid uuid{};
  if (!log::UuidFromString(row.uuid, &uuid)) return Status::Corruption(Refuse(fast_dir, "meta.db: volume.uuid is malformed"));
  const uint64_t image_blocks = row.image_size / kBlockSize;
  const uint64_t log_bytes = uint64_t{row.segment_blocks} * row.segment_count * kBlockSize;
  std::vector<std::string> fixes;  // what was changed, for the summary

  // 2. What meta.db claims. The home's watermark is authoritative (as at mount).
  std::unique_ptr<home::Home> home;
  home::HomeOpenReport hr;
  home::HomeOptions ho;
  ho.use_journal = row.home_journal;
  s = home::OpenHome(env, row.home, uuid, row.image_size, ho, &home, &hr);
  if (s.IsCorruption())
    return Status::Corruption("the home copy cannot be opened, so the log's starting point is unknown: " + s.message());
  BV_RETURN_IF_ERROR(s);
  const meta::Watermark start = home->watermark();
  meta::Watermark meta_wm;
  s = meta->LoadWatermark(&meta_wm);
  if (!s.ok()) return Status::Corruption("meta.db's watermark row is unreadable (" + s.message() + "); repair does not rebuild it");
  if (start.record_seq < meta_wm.record_seq) {
    return Status::Corruption("the home copy in " + row.home + " is older (record " + std::to_string(start.record_seq) +
                              ") than meta.db says (record " + std::to_string(meta_wm.record_seq) +
                              "): it was replaced or restored behind the cache's back; repair cannot bring back "
                              "what was migrated to it");
  }
  bool drop_catalogue = false, drop_checkpoint = false;
  std::vector<meta::SealedSegment> sealed;
  s = meta->LoadSealedSegments(&sealed);
  if (s.IsCorruption()) {
    spdlog::warn("repair: meta.db's segment rows are damaged ({}); dropping them, the log is authoritative", s.message());
    drop_catalogue = true;
    sealed.clear();
  } else {
    BV_RETURN_IF_ERROR(s);
  }
  uint64_t known_durable = 0;
  for (const auto& x : sealed)
    if (x.segment_seq >= start.segment_seq) known_durable = std::max(known_durable, x.last_record);
  meta::Checkpoint cp;
  bool have_cp = false;
  s = meta->LoadCheckpoint(&cp, &have_cp);
  if (s.IsCorruption()) {
    spdlog::warn("repair: meta.db's checkpoint is damaged ({}); dropping it", s.message());
    drop_checkpoint = true;
  } else {
    BV_RETURN_IF_ERROR(s);
    // A clean stop flushed every record before its tail.
    if (have_cp && cp.tail.next_record_seq > start.record_seq)
      known_durable = std::max(known_durable, cp.tail.next_record_seq - 1);
  }

  // 3. The log, scanned as a mount would (a short file reads as zeros past its end).
  std::unique_ptr<File> logf;
  bool log_missing = false;
  BV_RETURN_IF_ERROR(fast->Exists("log", &log_missing));
  log_missing = !log_missing;
  BV_RETURN_IF_ERROR(fast->OpenFile("log", OpenMode::kCreate, &logf));
  FileInfo li;
  BV_RETURN_IF_ERROR(logf->Stat(&li));

  auto slot_start = [&](uint64_t seg) { return static_cast<uint32_t>((seg % row.segment_count) * row.segment_blocks); };
  log::ScanOptions so =
      log::ScanOptions::ForLog(logf.get(), uuid, row.segment_blocks, row.segment_count, start, known_durable);
  if (progress) so.progress = [&](uint64_t r) { progress(Progress{"repair", r, 0, "records"}); };

  // Follows record boundaries from the blocks reported: within a record the
  // data blocks are consecutive; a record's first block follows its header.
  LogPoint end{start.record_seq, start.segment_seq, 0};  // where the next record is expected
  uint32_t last_pos = std::numeric_limits<uint32_t>::max();
  LogPoint cur;           // the record being reported
  bool bad_lba = false;   // a kept record would hold a block beyond the image
  LogPoint bad_lba_at;
  auto on_block = [&](uint64_t lba, uint32_t pos, uint32_t) {
    if (last_pos == std::numeric_limits<uint32_t>::max() || pos != last_pos + 1) {  // a new record
      uint32_t slot = pos / row.segment_blocks;
      if (slot != end.segment_seq % row.segment_count) {  // R2 moved on to the next segment
        end.segment_seq++;
      }
      cur = LogPoint{end.record_seq, end.segment_seq, pos - 1 - slot_start(end.segment_seq)};
      end.record_seq++;
    }
    last_pos = pos;
    end.offset = pos + 1 - slot_start(end.segment_seq);
    if (lba >= image_blocks && !bad_lba) {
      bad_lba = true;
      bad_lba_at = cur;
    }
  };
  log::ScanResult sr;
  Status scan = log::ScanLog(so, on_block, &sr);
  if (!scan.ok() && !scan.IsCorruption()) return scan;

  // The cut: the first record not kept.
  bool cut = false;
  LogPoint at;
  uint64_t kept = sr.records;
  if (!scan.ok()) {
    cut = true;
    at = end;
    spdlog::warn("repair: {}", scan.message());
  }
  if (bad_lba && (!cut || bad_lba_at.record_seq < at.record_seq)) {
    cut = true;
    at = bad_lba_at;
    kept = at.record_seq - start.record_seq;
    spdlog::warn("repair: record {} holds a block beyond the image's end", at.record_seq);
  }

  // 4. What the dropped records held.
  std::set<uint64_t> lost;
  uint64_t walked = 0;
  if (cut) {
    WalkDropped(logf.get(), uuid, row, start.segment_seq, at, &lost, &walked);
    report->records_dropped = std::max(walked, known_durable >= at.record_seq ? known_durable - at.record_seq + 1 : 0);
  }
  for (uint64_t lba : lost)
    if (lba < image_blocks) report->lost_blocks.push_back(lba);
  report->records_kept = kept;

  // 5. The log.
  if (li.size != log_bytes) {
    BV_RETURN_IF_ERROR(logf->Truncate(log_bytes));
    fixes.push_back(log_missing ? "FAST/log was missing: recreated (" + std::to_string(log_bytes) + " bytes of zeros)"
                                : "FAST/log was " + std::to_string(li.size) + " bytes: resized to " +
                                      std::to_string(log_bytes));
  }
  if (cut) {
    uint8_t zeros[kBlockSize];
    std::memset(zeros, 0, sizeof zeros);
    if (row.segment_blocks - at.offset >= 2)
      BV_RETURN_IF_ERROR(logf->WriteAt(uint64_t{slot_start(at.segment_seq) + at.offset} * kBlockSize, zeros, kBlockSize));
    if (at.offset > 0 && at.segment_seq + 1 - start.segment_seq < row.segment_count)
      BV_RETURN_IF_ERROR(logf->WriteAt(uint64_t{slot_start(at.segment_seq + 1)} * kBlockSize, zeros, kBlockSize));
    fixes.push_back("invalidated the log from record " + std::to_string(at.record_seq) + " (segment " +
                    std::to_string(at.segment_seq) + ", block " + std::to_string(at.offset) + ")");
  }
  if (cut || li.size != log_bytes) {
    BV_RETURN_IF_ERROR(logf->Sync());
    if (log_missing) BV_RETURN_IF_ERROR(fast->Sync());
  }

  // 6. meta.db: forget what it claimed from the cut's segment on.
  uint64_t forget_from = std::numeric_limits<uint64_t>::max();
  if (cut) {
    forget_from = at.segment_seq + 1;
    for (const auto& x : sealed)
      if (x.last_record >= at.record_seq) forget_from = std::min(forget_from, x.segment_seq);
  }
  if (drop_catalogue) forget_from = 0;
  if (cut || drop_catalogue || drop_checkpoint) {
    BV_RETURN_IF_ERROR(meta->ForgetSegmentsFrom(forget_from));
    if (drop_catalogue) fixes.push_back("dropped meta.db's damaged segment rows (rebuilt from the log at the next mount)");
    else if (cut) fixes.push_back("meta.db no longer records segments from " + std::to_string(forget_from) + " as sealed");
    if (drop_checkpoint) fixes.push_back("dropped meta.db's damaged checkpoint (the next mount replays the log)");
  }

  // 7. Proof: the log now scans the way the next mount will scan it.
  if (!fixes.empty()) {
    sealed.clear();
    BV_RETURN_IF_ERROR(meta->LoadSealedSegments(&sealed));
    so.known_durable_seq = 0;
    for (const auto& x : sealed)
      if (x.segment_seq >= start.segment_seq) so.known_durable_seq = std::max(so.known_durable_seq, x.last_record);
    log::ScanResult again;
    bool beyond = false;
    s = log::ScanLog(so, [&](uint64_t lba, uint32_t, uint32_t) { beyond |= lba >= image_blocks; }, &again);
    if (!s.ok()) return Status::Corruption("the log is still damaged after repair: " + s.message());
    if (beyond) return Status::Corruption("the log still holds a block beyond the image's end after repair");
    report->records_kept = again.records;
  }

  std::string summary;
  if (fixes.empty()) {
    summary = "nothing to repair: " + std::to_string(sr.records) + " log records from record " +
              std::to_string(start.record_seq) + " are consistent";
  } else {
    summary = "repaired: kept " + std::to_string(report->records_kept) + " log records from record " +
              std::to_string(start.record_seq) + ", dropped " + std::to_string(report->records_dropped) +
              "; " + std::to_string(report->lost_blocks.size()) + " image blocks lost their newest copy";
    if (report->records_dropped > walked)
      summary += " (" + std::to_string(report->records_dropped - walked) +
                 " dropped records were unreadable: the blocks they held are not known)";
    for (const std::string& f : fixes) summary += "; " + f;
  }
  report->summary = summary;
  spdlog::info("repair of {}: {}", fast_dir, summary);
  return Status::OK();
}

}  // namespace boostvol
