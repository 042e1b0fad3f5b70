// Volume::Open: takes the volume lock, opens metadata, log and home, and
// rebuilds the index: from the clean-stop checkpoint when there is one (no
// log read), else by replaying the log from the migration watermark
// (src/log/log_scanner.h has the recovery rules).
#include <algorithm>
#include <cstring>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include "engine/volume_impl.h"
#include "engine/tunables.h"
#include "home/home_factory.h"
#include "log/log_scanner.h"

namespace boostvol {

using log::kBlockSize;

// Builds a VolumeImpl step by step; any failure leaves nothing changed on disk
// except what recovery legitimately finishes (a journal replay at home).
class VolumeOpener {
 public:
  static Status Open(const OpenOptions& o, std::unique_ptr<VolumeImpl>* out) {
    auto v = std::make_unique<VolumeImpl>();
    v->env_ = o.env ? o.env : Env::Posix();
    v->fast_path_ = o.fast_dir;
    Status s = v->env_->OpenDir(o.fast_dir, &v->fast_);
    if (!s.ok()) return Status::InvalidArgument("cannot open FAST directory " + o.fast_dir + ": " + s.ToString());
    bool exists = false;
    BV_RETURN_IF_ERROR(v->fast_->Exists("meta.db", &exists));
    if (!exists)
      return Status::NotFound("no boostvol volume in " + o.fast_dir + " (meta.db is missing); create one with `boostvol create`");
    s = v->fast_->LockFile("lock", "pid " + std::to_string(getpid()), &v->lock_);
    if (s.IsBusy()) {
      return Status::Busy("the volume in " + o.fast_dir + " is already in use (" + v->fast_->LockOwnerNote("lock") +
                          "); unmount it first");
    }
    BV_RETURN_IF_ERROR(s);
    BV_RETURN_IF_ERROR(meta::MetaStore::Open(o.fast_dir + "/meta.db", false, &v->meta_, o.sqlite_vfs));
    BV_RETURN_IF_ERROR(v->meta_->LoadVolume(&v->row_));
    meta::VolumeRow& row = v->row_;
    if (!log::UuidFromString(row.uuid, &v->uuid_)) return Status::Corruption("meta.db: volume.uuid is malformed");
    v->image_blocks_ = row.image_size / kBlockSize;
    const uint64_t log_blocks = uint64_t{row.segment_blocks} * row.segment_count;

    // The log.
    BV_RETURN_IF_ERROR(v->fast_->OpenFile("log", OpenMode::kReadWrite, &v->log_file_));
    FileInfo li;
    BV_RETURN_IF_ERROR(v->log_file_->Stat(&li));
    if (li.size != log_blocks * kBlockSize) {
      return Status::Corruption("FAST/log is " + std::to_string(li.size) + " bytes, but meta.db says " +
                                std::to_string(log_blocks * kBlockSize) + "; run `boostvol check " + o.fast_dir + "`");
    }

    // The home.
    const std::string& slow = row.home;
    home::HomeOpenReport report;
    home::HomeOptions ho;
    ho.use_journal = row.home_journal;
    BV_RETURN_IF_ERROR(home::OpenHome(v->env_, row.home, v->uuid_, row.image_size, ho, &v->home_, &report));
    if (report.journal_replayed) spdlog::info("finished a migration batch interrupted by a crash (home journal replayed)");

    // Where the log starts: the home's watermark is authoritative.
    meta::Watermark meta_wm;
    BV_RETURN_IF_ERROR(v->meta_->LoadWatermark(&meta_wm));
    meta::Watermark start = v->home_->watermark();
    if (start.record_seq < meta_wm.record_seq) {
      return Status::Corruption("the home copy in " + slow + " is older (record " + std::to_string(start.record_seq) +
                                ") than meta.db says it is (record " + std::to_string(meta_wm.record_seq) +
                                "): it was replaced or restored behind the cache's back. Refusing to mount");
    }
    std::vector<meta::SealedSegment> sealed;
    BV_RETURN_IF_ERROR(v->meta_->LoadSealedSegments(&sealed));
    sealed.erase(std::remove_if(sealed.begin(), sealed.end(),
                                [&](const meta::SealedSegment& x) { return x.segment_seq < start.segment_seq; }),
                 sealed.end());
    uint64_t known_durable = 0;
    for (const auto& x : sealed) known_durable = std::max(known_durable, x.last_record);

    v->index_ = std::make_unique<BlockIndex>(log_blocks);
    v->slot_readers_.reset(new std::atomic<uint32_t>[row.segment_count]);
    for (uint32_t i = 0; i < row.segment_count; i++) v->slot_readers_[i] = 0;

    log::LogWriterOptions wo;
    wo.log = v->log_file_.get();
    wo.uuid = v->uuid_;
    wo.segment_blocks = row.segment_blocks;
    wo.segment_count = row.segment_count;
    wo.fail_after_ms = o.log_fail_after_ms;

    meta::Checkpoint cp;
    bool have_cp = false;
    s = v->meta_->LoadCheckpoint(&cp, &have_cp);
    if (!s.ok()) {
      spdlog::warn("the clean-stop checkpoint in meta.db is unusable ({}); rebuilding the index from the log", s.ToString());
      have_cp = false;
    }
    if (have_cp && !UseCheckpoint(v.get(), cp, start, sealed, &wo)) have_cp = false;
    if (!have_cp) {
      BV_RETURN_IF_ERROR(Replay(v.get(), o, start, known_durable, &wo));
    }
    v->clean_open_ = have_cp;

    // A home changed behind our back is harmless only if we hold nothing for it.
    if (report.changed_behind_back) {
      size_t dirty;
      {
        ReaderLock l(&v->index_mu_);
        dirty = v->index_->size();
      }
      if (dirty > 0) {
        return Status::Busy("the home copy (" + slow + ") was modified outside boostvol (" + report.change_detail +
                            ") while the cache holds " + std::to_string(dirty) +
                            " blocks not yet written home; mounting would overlay stale cached blocks on it. "
                            "Restore the home copy, or if the outside change is what you want, discard the cache "
                            "(move FAST away) and create a new volume");
      }
      spdlog::warn("the home copy ({}) was modified outside boostvol ({}); the cache holds no dirty blocks, "
                   "so the change is accepted", slow, report.change_detail);
      BV_RETURN_IF_ERROR(v->home_->Restamp());
    }

    // Everything replayed must be durable before new records chain onto it.
    BV_RETURN_IF_ERROR(v->log_file_->Sync());
    BV_RETURN_IF_ERROR(v->meta_->BeginMount(&v->mount_count_));
    v->RestoreCounters();

    VolumeImpl* raw = v.get();
    wo.on_segment_durable = [raw](log::DurableSegment seg) { raw->OnSegmentDurable(std::move(seg)); };
    v->writer_ = std::make_unique<log::LogWriter>(wo);
    // Segments already durable from before: the migrator may take them.
    for (const log::LiveSegment& seg : wo.live)
      if (seg.durable) {
        MutexLock l(&v->pending_mu_);
        if (std::none_of(sealed.begin(), sealed.end(), [&](const auto& x) { return x.segment_seq == seg.segment_seq; })) {
          VolumeImpl::PendingSealed p;  // its blocks: read back from its record headers
          p.row = meta::SealedSegment{seg.segment_seq, static_cast<uint32_t>(seg.segment_seq % row.segment_count),
                                      seg.first_record, seg.last_record, seg.data_blocks};
          v->pending_sealed_.push_back(std::move(p));
        }
      }

    MigratorOptions mo;
    mo.log = v->log_file_.get();
    mo.uuid = v->uuid_;
    mo.segment_blocks = row.segment_blocks;
    mo.segment_count = row.segment_count;
    mo.writer = v->writer_.get();
    mo.home = v->home_.get();
    mo.meta = v->meta_.get();
    mo.start_fraction = o.migrate_start_fraction;
    mo.idle_ms = o.idle_migrate_ms;
    mo.max_batch_bytes = o.max_batch_bytes;
    mo.on_applied = [raw](const std::vector<meta::IndexEntry>& m, uint64_t a, uint64_t b) { raw->OnMigrated(m, a, b); };
    mo.idle_for_ms = [raw]() -> uint64_t {
      uint64_t last = raw->last_write_ms_.load();
      uint64_t now = raw->NowMs();
      return now > last ? now - last : 0;
    };
    mo.housekeeping = [raw] { raw->Housekeeping(); };
    v->migrator_ = std::make_unique<Migrator>(mo);
    v->kick_migrator_.store(v->migrator_.get(), std::memory_order_release);
    for (const std::string& key : TunableNames()) {
      std::string value;
      bool found = false;
      if (v->meta_->GetSetting(key, &value, &found).ok() && found) {
        Status ts = v->ApplyTunable(key, value);
        if (!ts.ok()) spdlog::warn("ignoring the saved tunable {}={}: {}", key, value, ts.message());
      }
    }
    // The read cache starts empty at every open (nothing in FAST/readcache is
    // trusted from before: a crash, a home restored behind our back); its
    // file is only sized here. A FAST error leaves it off, never the mount.
    // FAST/readcache is opened (made) only when read caching is on, or to
    // free the space of one left from a mount that had it on.
    v->read_cache_ = std::make_unique<ReadCache>(nullptr);
    (void)v->ConfigureReadCache();  // logged there
    // meta.db may lag the home's watermark after a crash between the two.
    if (start.record_seq > meta_wm.record_seq) {
      Status ms = v->meta_->CommitMigration(start, meta::MigrationStats{});
      if (!ms.ok()) spdlog::warn("bringing meta.db's watermark up to the home's failed: {}", ms.ToString());
    }
    v->last_write_ms_ = v->NowMs();
    if (o.start_migrator) v->migrator_->Start();
    {
      ReaderLock l(&v->index_mu_);
      // The first mount after create has nothing to recover: the log is empty.
      spdlog::info("volume {} open: {} of image, {} dirty blocks in the log, {}", row.uuid, row.image_size,
                   v->index_->size(),
                   have_cp ? "clean start" : v->mount_count_ == 1 ? "new volume (first mount)" : "recovered from the log");
    }
    *out = std::move(v);
    return Status::OK();
  }

 private:
  // Clean stop: the index and the tail come from meta.db; no log is read but
  // one header at the tail, which must not hold a record the checkpoint does
  // not know (meta.db older than the log).
  static bool UseCheckpoint(VolumeImpl* v, const meta::Checkpoint& cp, const meta::Watermark& start,
                            const std::vector<meta::SealedSegment>& sealed, log::LogWriterOptions* wo) {
    const meta::VolumeRow& row = v->row_;
    if (cp.watermark.record_seq != start.record_seq || cp.tail.next_record_seq < start.record_seq ||
        cp.tail.segment_seq < start.segment_seq || cp.tail.segment_seq - start.segment_seq >= row.segment_count ||
        cp.tail.next_block_in_segment > row.segment_blocks) {
      spdlog::warn("the checkpoint does not match the home watermark; rebuilding the index from the log");
      return false;
    }
    // The live slots run from start.segment_seq to the tail's segment.
    auto live_slot = [&](uint32_t pos) {
      uint64_t slot = pos / row.segment_blocks;
      uint64_t first = start.segment_seq % row.segment_count;
      uint64_t dist = (slot + row.segment_count - first) % row.segment_count;
      return dist <= cp.tail.segment_seq - start.segment_seq;
    };
    for (const meta::IndexEntry& e : cp.entries) {
      if (e.lba >= v->image_blocks_ || !live_slot(e.pos)) {
        spdlog::warn("the checkpoint holds an entry outside the live log; rebuilding the index from the log");
        return false;
      }
    }
    uint8_t block[kBlockSize];
    auto hdr = std::make_unique<log::RecordHeader>();
    if (row.segment_blocks - cp.tail.next_block_in_segment >= 2) {
      uint64_t pos = (cp.tail.segment_seq % row.segment_count) * row.segment_blocks + cp.tail.next_block_in_segment;
      if (v->log_file_->ReadAt(pos * kBlockSize, block, kBlockSize).ok() &&
          log::DecodeHeader(block, v->uuid_, hdr.get()).ok() && hdr->record_seq == cp.tail.next_record_seq &&
          hdr->prev_crc == cp.tail.prev_crc) {
        spdlog::warn("the log holds records newer than meta.db's checkpoint; rebuilding the index from the log");
        return false;
      }
    }
    // The log must hold what the checkpoint indexes (meta.db newer than the
    // log, e.g. the log restored from an old copy): walk the last segment's
    // records up to the tail and check the last one chains to tail.prev_crc.
    if (!LastSegmentMatches(v, cp, start, sealed)) {
      spdlog::warn("the log does not hold the records meta.db's checkpoint ends with; rebuilding the index from the log");
      return false;
    }
    // The pending zero ranges saved beside the checkpoint (none if an older
    // boostvol wrote it: it could not log zero ranges).
    ZeroMap zeros;
    {
      std::string text;
      bool found = false;
      if (!v->meta_->GetSetting("checkpoint.pending_zeros", &text, &found).ok() ||
          !ParsePendingZeros(text, v->image_blocks_, start.segment_seq, cp.tail.segment_seq, &zeros)) {
        spdlog::warn("the pending zero ranges saved with the checkpoint are unusable; rebuilding from the log");
        return false;
      }
    }
    {
      WriterLock l(&v->index_mu_);
      for (const meta::IndexEntry& e : cp.entries) v->index_->Put(e.lba, IndexValue{e.pos, e.crc});
      v->pending_zeros_ = std::move(zeros);
    }
    wo->tail = cp.tail;
    wo->durable_seq = cp.tail.next_record_seq - 1;
    uint64_t next_first = start.record_seq;
    for (const meta::SealedSegment& x : sealed) {
      if (x.segment_seq > cp.tail.segment_seq) break;
      log::LiveSegment seg;
      seg.segment_seq = x.segment_seq;
      seg.first_record = x.first_record;
      seg.last_record = x.last_record;
      seg.data_blocks = x.data_blocks;
      seg.used_blocks = x.segment_seq == cp.tail.segment_seq ? cp.tail.next_block_in_segment : row.segment_blocks;
      seg.sealed = seg.durable = true;
      wo->live.push_back(seg);
      next_first = x.last_record + 1;
    }
    if (wo->live.empty() || wo->live.back().segment_seq != cp.tail.segment_seq) {
      log::LiveSegment cur;
      cur.segment_seq = cp.tail.segment_seq;
      cur.used_blocks = cp.tail.next_block_in_segment;
      if (cp.tail.next_record_seq > next_first) {
        cur.first_record = next_first;
        cur.last_record = cp.tail.next_record_seq - 1;
      }
      wo->live.push_back(cur);
    }
    return true;
  }

  // Parses "first+count@segment ..." (VolumeImpl::EncodePendingZeros) as
  // untrusted input: every range inside the image, every segment live.
  static bool ParsePendingZeros(const std::string& text, uint64_t image_blocks, uint64_t first_seg, uint64_t last_seg,
                                ZeroMap* out) {
    size_t i = 0;
    auto num = [&](uint64_t* v) {
      size_t j = i;
      *v = 0;
      while (j < text.size() && text[j] >= '0' && text[j] <= '9' && j - i < 19) *v = *v * 10 + (text[j++] - '0');
      bool ok = j > i;
      i = j;
      return ok;
    };
    while (i < text.size()) {
      uint64_t first, count, seg;
      if (!num(&first) || i >= text.size() || text[i++] != '+' || !num(&count) || i >= text.size() ||
          text[i++] != '@' || !num(&seg))
        return false;
      if (i < text.size() && text[i++] != ' ') return false;
      if (count == 0 || first >= image_blocks || count > image_blocks - first || seg < first_seg || seg > last_seg)
        return false;
      out->Add(first, first + count, seg);
    }
    return true;
  }

  // True if the records of the checkpoint's last segment are in the log, in
  // order, ending with the record whose header_crc is tail.prev_crc.
  static bool LastSegmentMatches(VolumeImpl* v, const meta::Checkpoint& cp, const meta::Watermark& start,
                                 const std::vector<meta::SealedSegment>& sealed) {
    const meta::VolumeRow& row = v->row_;
    if (cp.tail.next_record_seq == start.record_seq) return true;  // no record since the watermark
    uint64_t seg = cp.tail.segment_seq, first = start.record_seq;
    uint32_t end_block = cp.tail.next_block_in_segment;
    for (const meta::SealedSegment& x : sealed) {
      if (x.segment_seq < seg) first = x.last_record + 1;
    }
    if (end_block == 0 || first >= cp.tail.next_record_seq) {
      // The tail segment is empty: the last record ends the sealed segment before it.
      const meta::SealedSegment* last = nullptr;
      for (const meta::SealedSegment& x : sealed)
        if (x.segment_seq < seg) last = &x;
      if (last == nullptr) return false;
      seg = last->segment_seq;
      first = last->first_record;
      end_block = row.segment_blocks;
    }
    auto hdr = std::make_unique<log::RecordHeader>();
    std::vector<uint8_t> data;
    uint32_t slot_start = static_cast<uint32_t>((seg % row.segment_count) * row.segment_blocks);
    uint32_t used = 0;
    for (uint64_t r = first; r < cp.tail.next_record_seq; r++) {
      if (used >= end_block) return false;
      if (!log::ReadRecord(v->log_file_.get(), v->uuid_, slot_start + used, r, seg, nullptr,
                           row.segment_blocks - used, hdr.get(), &data).ok())
        return false;
      used += 1 + hdr->nblocks;
    }
    return hdr->header_crc == cp.tail.prev_crc;
  }

  static Status Replay(VolumeImpl* v, const OpenOptions& o, const meta::Watermark& start, uint64_t known_durable,
                       log::LogWriterOptions* wo) {
    const meta::VolumeRow& row = v->row_;
    spdlog::info("the last stop was not clean: replaying the log from record {}", start.record_seq);
    log::ScanOptions so =
        log::ScanOptions::ForLog(v->log_file_.get(), v->uuid_, row.segment_blocks, row.segment_count, start, known_durable);
    // Records up to the last sealed segment meta.db knows: nearly all there is
    // (the rest is the segment being written into). 0: not known.
    const uint64_t expect = known_durable >= start.record_seq ? known_durable - start.record_seq + 1 : 0;
    if (o.progress)
      so.progress = [&](uint64_t records) {
        o.progress(Progress{"recovery", records, expect ? std::max(expect, records + 1) : 0, "records"});
      };
    log::ScanResult sr;
    Status s;
    {
      WriterLock l(&v->index_mu_);
      BlockIndex* index = v->index_.get();
      uint64_t image_blocks = v->image_blocks_;
      bool bad_lba = false;
      ZeroMap* zeros = &v->pending_zeros_;
      so.on_zero = [&](uint64_t first, uint32_t count, uint64_t seg) {
        if (first >= image_blocks || count > image_blocks - first) {
          bad_lba = true;
          return;
        }
        index->RemoveRange(first, first + count);  // older logged copies lose
        zeros->Add(first, first + count, seg);
      };
      s = log::ScanLog(so, [&](uint64_t lba, uint32_t pos, uint32_t crc) {
        if (lba >= image_blocks) {
          bad_lba = true;
          return;
        }
        index->Put(static_cast<uint32_t>(lba), IndexValue{pos, crc});
      }, &sr);
      if (s.ok() && bad_lba) s = Status::Corruption("the log holds a block beyond the image's end; run `boostvol check`");
    }
    BV_RETURN_IF_ERROR(s);
    if (o.progress && sr.records > 0) o.progress(Progress{"recovery", sr.records, sr.records, "records"});
    if (!sr.torn_detail.empty() && sr.records > 0)
      spdlog::info("log replay ended at {} (never covered by an fsync; discarded)", sr.torn_detail);
    spdlog::info("replayed {} records ({} blocks) from the log", sr.records, sr.blocks);
    wo->tail = sr.tail;
    wo->live = sr.live;
    wo->durable_seq = sr.tail.next_record_seq - 1;
    return Status::OK();
  }
};

Status Volume::Open(const OpenOptions& options, std::unique_ptr<Volume>* out) {
  std::unique_ptr<VolumeImpl> v;
  Status s = VolumeOpener::Open(options, &v);
  if (!s.ok()) {
    if (v) v->closed_ = true;
    return s;
  }
  *out = std::move(v);
  return Status::OK();
}

}  // namespace boostvol
