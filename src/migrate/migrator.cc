#include "migrate/migrator.h"

#include <algorithm>
#include <chrono>
#include <ctime>
#include <memory>
#include <spdlog/spdlog.h>

#include "index/zero_map.h"
#include "log/log_scanner.h"
#include "util/thread_name.h"

namespace boostvol {

std::atomic<void (*)()> g_migrator_after_gap_reads_for_test{nullptr};

namespace {

struct BlockRef {
  uint32_t lba;
  uint32_t order;  // position in the batch: later wins
  uint32_t pos;
  uint32_t crc;
};

}  // namespace

// A batch frees nothing until it is home, so its size decides how long
// writers may wait for log space: small batches while they wait (space comes
// back in small steps at the home's pace rather than in bursts after long
// pauses), at most half the free log space otherwise (the batch should end
// before writers fill the rest), large ones in an explicit drain (denser
// batches merge better).
uint64_t BatchByteLimit(const BatchLimitInputs& in) {
  uint64_t limit = in.max_batch_bytes;
  // What writers waiting for space get: about kWaitBatchSeconds of the home's
  // recent pace, one segment until a batch has shown it (or while the home is
  // slower than two segments per second, as it is for sparse random blocks on
  // a disk that pays per request: a larger batch is not faster per block
  // there). A dense backlog (a sequential stream) moves home many segments
  // per second, and a batch of one segment would pay the batch's fixed syncs
  // (journal, image, stamp) for every segment.
  constexpr double kWaitBatchSeconds = 0.5;
  const uint64_t wait_segs = std::max<uint64_t>(1, static_cast<uint64_t>(in.segments_per_s * kWaitBatchSeconds));
  const uint64_t wait_limit = std::min<uint64_t>(std::max<uint64_t>(limit, 1), wait_segs * in.segment_bytes);
  if (in.waiting_for_space) return wait_limit;
  if (in.draining) {
    // A drain's batch: the denser, the fewer passes over the home. A batch
    // streamed to the home does not grow the memory with it: 16x, at most
    // 1 GiB unless max_batch_bytes says more; one held in memory (a home that
    // does not stream) 4x.
    return in.streams_batches ? std::max<uint64_t>(limit, std::min<uint64_t>(limit * 16, uint64_t{1} << 30))
                              : limit * 4;
  }
  limit = std::min<uint64_t>(limit, std::max<uint64_t>(uint64_t{in.free_segments} * in.segment_bytes / 2, 1));
  if (in.under_pressure) {
    // Under log pressure: about kBatchTargetSeconds of the home's recent
    // pace (one segment until a batch has shown it).
    constexpr double kBatchTargetSeconds = 2.0;
    limit = std::min<uint64_t>(
        limit, std::max<uint64_t>(1, static_cast<uint64_t>(in.segments_per_s * kBatchTargetSeconds)) * in.segment_bytes);
  }
  // Never less than a waiting writer would get: on a (nearly) full log, half
  // the free space is next to nothing, and writers wait for this batch
  // whether or not one was waiting at the instant it was chosen.
  return std::max(limit, wait_limit);
}

Migrator::Migrator(const MigratorOptions& options)
    : o_(options),
      start_fraction_(options.start_fraction),
      idle_ms_(options.idle_ms),
      max_batch_bytes_(options.max_batch_bytes) {
  MutexLock l(&mu_);
  stats_.state = "idle";
}

Migrator::~Migrator() { Stop(); }

void Migrator::Start() {
  thread_ = std::thread([this] { Loop(); });
}

void Migrator::RequestStop() {
  stopping_ = true;
  MutexLock l(&mu_);
  stop_ = true;
  stats_.state = "stopped";
  cv_.SignalAll();
}

void Migrator::Stop() {
  RequestStop();
  if (thread_.joinable()) thread_.join();
}

void Migrator::Kick() {
  MutexLock l(&mu_);
  kicked_ = true;
  cv_.SignalAll();
}

Migrator::Stats Migrator::GetStats() {
  MutexLock l(&mu_);
  Stats st = stats_;
  st.meta_error = meta_error_;
  if (st.state == "migrating")
    st.batch_running_ms = static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                                    std::chrono::steady_clock::now() - batch_started_)
                                                    .count());
  return st;
}

bool Migrator::ShouldMigrate(const std::vector<log::LiveSegment>& segs) {
  log::LogWriter::Stats ws = o_.writer->GetStats();
  {
    MutexLock l(&mu_);
    // While failing, every backoff ends in a retry: the home's return is
    // noticed (and reported) without waiting for log pressure.
    if (drainers_ > 0 || (stats_.failing_since_unix != 0 && !segs.empty())) return true;
  }
  if (ws.waiting_for_space) return true;
  if (ws.live_segments >= start_fraction_.load() * o_.segment_count) return true;
  if (o_.idle_for_ms && o_.idle_for_ms() >= idle_ms_.load()) {
    if (segs.empty()) o_.writer->SealSegment();  // let the open segment go home too
    return true;
  }
  return false;
}

void Migrator::Loop() {
  NameThisThread("bv-migrate");
  int backoff_s = 1;
  for (;;) {
    {
      MutexLock l(&mu_);
      if (stop_) return;
    }
    if (o_.housekeeping) o_.housekeeping();
    if (o_.writer->failed()) {  // the volume drains the failed log itself (MigrateSegments)
      MutexLock l(&mu_);
      if (stop_) return;
      stats_.state = "idle";
      cv_.WaitFor(std::chrono::milliseconds(500));
      continue;
    }
    std::vector<log::LiveSegment> segs = o_.writer->MigratableSegments();
    bool did = false;
    Status s;
    if (!segs.empty() && ShouldMigrate(segs)) s = MigrateOnce(&did);
    else if (segs.empty()) ShouldMigrate(segs);  // may seal an idle segment
    MutexLock l(&mu_);
    if (stop_) return;
    if (!s.ok()) {
      stats_.state = "backoff";
      stats_.next_retry_unix = std::time(nullptr) + backoff_s;
      cv_.WaitFor(std::chrono::seconds(backoff_s));
      if (stats_.failing_since_unix == 0) stats_.state = "idle";  // a drain's batch succeeded meanwhile
      // Capped low: when the home comes back, writers waiting for log space
      // should not wait long for the next try.
      backoff_s = std::min(backoff_s * 2, 8);
      continue;
    }
    backoff_s = 1;
    if (stats_.failing_since_unix == 0) stats_.state = "idle";
    if (!did && !kicked_) cv_.WaitFor(std::chrono::milliseconds(100));
    kicked_ = false;
  }
}

Status Migrator::MigrateOnce(bool* did) {
  MutexLock run(&run_mu_);
  *did = false;
  std::vector<log::LiveSegment> segs = o_.writer->MigratableSegments();
  if (segs.empty()) return Status::OK();
  // Take whole segments up to the batch size (at least one): BatchByteLimit.
  bool draining;
  double segments_per_s;
  {
    MutexLock l(&mu_);
    draining = drainers_ > 0;
    segments_per_s = segments_per_s_;
  }
  const log::LogWriter::Stats ws = o_.writer->GetStats();
  BatchLimitInputs in;
  in.max_batch_bytes = max_batch_bytes_.load();
  in.segment_bytes = uint64_t{o_.segment_blocks} * log::kBlockSize;
  in.waiting_for_space = ws.waiting_for_space;
  in.draining = draining;
  in.streams_batches = o_.home->streams_batches();
  in.under_pressure = ws.live_segments >= start_fraction_.load() * o_.segment_count;
  in.free_segments = ws.free_segments;
  in.segments_per_s = segments_per_s;
  const uint64_t limit = BatchByteLimit(in);
  size_t take = 0;
  uint64_t bytes = 0;
  while (take < segs.size() && (take == 0 || bytes + uint64_t{segs[take].data_blocks} * log::kBlockSize <= limit)) {
    bytes += uint64_t{segs[take].data_blocks} * log::kBlockSize;
    take++;
  }
  // Never a batch that ends below what the home already holds: a failed
  // attempt whose journal was synced is finished by the home at the start of
  // the next ApplyBatch, moving the home's watermark to that attempt's end,
  // while the batch size may have shrunk since (pressure changed). (The home
  // also accepts such a batch as done: it was refused on every retry before,
  // found under a real ENOSPC on SLOW; the log stayed full for good.)
  const uint64_t home_end_segment = o_.home->watermark().segment_seq;
  while (take < segs.size() && segs[take - 1].segment_seq + 1 < home_end_segment) take++;
  segs.resize(take);
  {
    MutexLock l(&mu_);
    stats_.state = stats_.failing_since_unix != 0 ? "retrying" : "migrating";
    batch_started_ = std::chrono::steady_clock::now();
  }
  Status s = MigrateBatch(segs);
  MutexLock l(&mu_);
  if (s.code() == Status::Code::kAborted && stopping_) {
    stats_.state = "stopped";
    return Status::OK();  // abandoned for a stop before anything was written home
  }
  if (s.ok()) {
    *did = true;
    const double secs =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - batch_started_).count();
    if (secs > 0) {
      const double rate = static_cast<double>(segs.size()) / secs;
      segments_per_s_ = segments_per_s_ == 0 ? rate : 0.7 * segments_per_s_ + 0.3 * rate;
    }
    if (stats_.failing_since_unix != 0)
      spdlog::info("migration to {} works again after {} s and {} failed attempts", o_.home->Describe(),
                   std::time(nullptr) - stats_.failing_since_unix, stats_.failures - failures_before_outage_);
    stats_.failing_since_unix = 0;
    stats_.next_retry_unix = 0;
    stats_.last_error.clear();
    stats_.state = "idle";
  } else {
    const std::string text = s.ToString();
    const auto now = std::chrono::steady_clock::now();
    if (stats_.failing_since_unix == 0) {
      stats_.failing_since_unix = std::time(nullptr);
      failures_before_outage_ = stats_.failures;
      last_reminder_ = now;
      spdlog::error("migration to {} failed: {}. Writes continue into the log (they wait only if it fills up); "
                    "retrying with backoff (a retry at least every 8 s). Check that the slow directory is mounted, "
                    "reachable, writable and has space",
                    o_.home->Describe(), text);
    } else if (s.err() != last_err_) {
      spdlog::warn("migration to {} still fails, now with: {}", o_.home->Describe(), text);
    } else if (now - last_reminder_ >= std::chrono::minutes(10)) {
      last_reminder_ = now;
      spdlog::warn("migration to {} has failed for {} s ({} attempts): {}", o_.home->Describe(),
                   std::time(nullptr) - stats_.failing_since_unix, stats_.failures + 1 - failures_before_outage_, text);
    }
    last_err_ = s.err();
    stats_.failures++;
    stats_.last_error = text;
    stats_.state = "backoff";  // both callers (the loop, a drain) wait before the next attempt
    // Set here too, in the same hold of mu_ as the state: a status taken
    // before the caller sets its own backoff must not show "backoff" with no
    // retry time (tests/e2e/fault_slow_gone.sh caught that window).
    const int64_t soonest = static_cast<int64_t>(std::time(nullptr)) + 1;
    if (stats_.next_retry_unix < soonest) stats_.next_retry_unix = soonest;
  }
  return s;
}

void Migrator::DropBatchPages(const std::vector<log::LiveSegment>& segs) {
  if (segs.empty()) return;
  // One range of the ring: from the first segment's slot through the last
  // one's, and on past it as far as the kernel may have read ahead (into the
  // next segments, or the free space the writer fills next).
  const uint64_t seg_bytes = uint64_t{o_.segment_blocks} * log::kBlockSize;
  const uint64_t log_bytes = seg_bytes * o_.segment_count;
  const uint64_t begin = segs.front().segment_seq % o_.segment_count * seg_bytes;
  const uint64_t len = std::min(
      log_bytes, (segs.back().segment_seq - segs.front().segment_seq + 1) * seg_bytes + kReadaheadSlackBytes);
  o_.log->DropCache(begin, std::min(len, log_bytes - begin));
  if (begin + len > log_bytes) o_.log->DropCache(0, begin + len - log_bytes);
}

Status Migrator::MigrateBatch(const std::vector<log::LiveSegment>& segs, bool* log_failed) {
  if (log_failed) *log_failed = false;
  // 1. Read and verify every record of the batch, keeping only where each
  // block is (the data is read again from the log below, once the newest copy
  // of each block is known: a batch's memory is its write buffer, not a copy
  // of its records too).
  std::vector<uint8_t> record_data;  // one record's blocks at a time
  std::vector<BlockRef> refs;
  auto hdr = std::make_unique<log::RecordHeader>();
  uint32_t order = 0;
  // The batch's zero ranges, tagged with their order (a record's zero ranges
  // come before its data blocks: log_format.h).
  ZeroMap zeros;
  for (const log::LiveSegment& seg : segs) {
    uint32_t used = 0;
    uint32_t slot_start = static_cast<uint32_t>((seg.segment_seq % o_.segment_count) * o_.segment_blocks);
    for (uint64_t seq = seg.first_record; seq <= seg.last_record; seq++) {
      Status s = log::ReadRecord(o_.log, o_.uuid, slot_start + used, seq, seg.segment_seq, nullptr,
                                 o_.segment_blocks - used, hdr.get(), &record_data);
      if (!s.ok()) {
        if (log_failed) *log_failed = true;
        return Status::Corruption("log record " + std::to_string(seq) + " in segment " +
                                  std::to_string(seg.segment_seq) + " cannot be migrated: " + s.message() +
                                  ". Run `boostvol check FAST`");
      }
      for (uint32_t i = 0; i < hdr->nzero; i++)
        zeros.Add(hdr->zeros[i].first, hdr->zeros[i].first + hdr->zeros[i].count, order++);
      for (uint32_t i = 0; i < hdr->nblocks; i++)
        refs.push_back(BlockRef{static_cast<uint32_t>(hdr->entries[i].lba), order++, slot_start + used + 1 + i,
                                hdr->entries[i].block_crc});
      used += 1 + hdr->nblocks;
    }
  }
  record_data = std::vector<uint8_t>();
  // 2. Newest copy within the batch per block, sorted by address.
  std::sort(refs.begin(), refs.end(), [](const BlockRef& a, const BlockRef& b) {
    return a.lba != b.lba ? a.lba < b.lba : a.order > b.order;
  });
  refs.erase(std::unique(refs.begin(), refs.end(), [](const BlockRef& a, const BlockRef& b) { return a.lba == b.lba; }),
             refs.end());
  // A block zeroed after its newest data copy in the batch stays zero.
  if (!zeros.empty()) {
    refs.erase(std::remove_if(refs.begin(), refs.end(),
                              [&](const BlockRef& r) {
                                uint64_t tag;
                                return zeros.Covers(r.lba, &tag) && tag > r.order;
                              }),
               refs.end());
  }
  // Spans: runs of dirty blocks whose gaps are at most gap_blocks. A span of
  // three or more extents is written whole, its gaps read from home first:
  // one read and one write instead of one write per extent (on a disk that
  // pays per request, random writes become sequential ones).
  const uint32_t gap = gap_blocks_.load();
  struct Span {
    size_t first, last;  // indexes into refs
    uint32_t extents;
  };
  std::vector<Span> spans;
  for (size_t i = 0; i < refs.size(); i++) {
    bool joins = i > 0 && refs[i].lba - refs[i - 1].lba - 1 <= gap &&
                 refs[i].lba - refs[spans.back().first].lba < (64u << 20) / log::kBlockSize;
    if (!joins) {
      spans.push_back(Span{i, i, 1});
    } else {
      if (refs[i].lba != refs[i - 1].lba + 1) spans.back().extents++;
      spans.back().last = i;
    }
  }
  home::Batch batch;
  batch.end.segment_seq = segs.back().segment_seq + 1;
  batch.end.record_seq = segs.back().last_record + 1;
  uint64_t zero_bytes = 0;
  for (const ZeroMap::Range& z : zeros.All()) {
    uint64_t off = z.first * log::kBlockSize, len = (z.end - z.first) * log::kBlockSize;
    if (!batch.zeros.empty() && batch.zeros.back().offset + batch.zeros.back().length == off)
      batch.zeros.back().length += len;
    else
      batch.zeros.push_back(home::ZeroExtent{off, len});
    zero_bytes += len;
  }
  // Reads refs[i..] from the log into dst: the longest run (up to refs[last])
  // of blocks consecutive both in the image and in the log, in one read;
  // verifies each block's checksum. Returns the run's length, 0 on failure.
  Status read_status;
  bool log_read_failed = false;
  auto ReadRun = [&](size_t i, size_t last, uint8_t* dst) -> size_t {
    size_t n = 1;
    while (i + n <= last && refs[i + n].lba == refs[i].lba + n && refs[i + n].pos == refs[i].pos + n) n++;
    read_status = o_.log->ReadAt(uint64_t{refs[i].pos} * log::kBlockSize, dst, n * log::kBlockSize);
    for (size_t k = 0; read_status.ok() && k < n; k++) {
      if (log::BlockCrc(refs[i + k].lba, dst + k * log::kBlockSize) != refs[i + k].crc)
        read_status = Status::Corruption("log block " + std::to_string(refs[i + k].pos) + " (image block " +
                                         std::to_string(refs[i + k].lba) + ") fails its checksum");
    }
    if (read_status.ok()) return n;
    log_read_failed = true;
    read_status = Status::Corruption("image block " + std::to_string(refs[i].lba) + " in segments " +
                                     std::to_string(segs.front().segment_seq) + ".." +
                                     std::to_string(segs.back().segment_seq) + " cannot be migrated: " +
                                     read_status.ToString() + ". Run `boostvol check FAST`");
    return 0;
  };
  // The batch's new bytes for [offset, offset + n), a range inside one
  // extent: the dirty blocks from the log, the gap blocks of a filled span
  // from home (zeros where the batch zeroes them). The home streams the batch
  // through a bounded buffer (Batch::source); homes that do not get it
  // materialized below.
  bool gap_hook_ran = false;  // the test hook runs after a batch's first gap read
  auto source = [&](uint64_t offset, uint8_t* dst, size_t n) -> Status {
    const uint64_t lba0 = offset / log::kBlockSize, nb = n / log::kBlockSize;
    size_t i = std::lower_bound(refs.begin(), refs.end(), lba0,
                                [](const BlockRef& r, uint64_t lba) { return r.lba < lba; }) -
               refs.begin();
    size_t end = std::lower_bound(refs.begin() + i, refs.end(), lba0 + nb,
                                  [](const BlockRef& r, uint64_t lba) { return r.lba < lba; }) -
                 refs.begin();
    if (end - i < nb) {  // gap blocks in range: the home's bytes first
      BV_RETURN_IF_ERROR(o_.home->Read(offset, dst, n));
      if (!zeros.empty())
        for (uint64_t k = 0; k < nb; k++)
          if (zeros.Covers(lba0 + k)) std::memset(dst + k * log::kBlockSize, 0, log::kBlockSize);
      if (!gap_hook_ran) {
        gap_hook_ran = true;
        if (auto hook = g_migrator_after_gap_reads_for_test.load(); hook != nullptr) hook();
      }
    }
    while (i < end) {
      size_t run = ReadRun(i, end - 1, dst + (refs[i].lba - lba0) * log::kBlockSize);
      if (run == 0) return read_status;
      i += run;
    }
    return Status::OK();
  };
  // Extents: a filled span is one extent (gaps included); any other span is
  // one extent per run of consecutive dirty blocks. The runs of dirty blocks
  // are the journal's extents when some gap is filled.
  uint64_t filled_blocks = 0;
  std::vector<home::Extent> runs;
  for (const Span& sp : spans) {
    for (size_t i = sp.first; i <= sp.last; i++) {
      if (i > sp.first && refs[i].lba == refs[i - 1].lba + 1)
        runs.back().length += log::kBlockSize;
      else
        runs.push_back(home::Extent{uint64_t{refs[i].lba} * log::kBlockSize, static_cast<uint32_t>(log::kBlockSize), nullptr});
    }
    if (sp.extents >= 3) {
      uint64_t first_lba = refs[sp.first].lba, n = refs[sp.last].lba - first_lba + 1;
      batch.extents.push_back(home::Extent{first_lba * log::kBlockSize, static_cast<uint32_t>(n * log::kBlockSize), nullptr});
      filled_blocks += n - (sp.last - sp.first + 1);
    } else {
      batch.extents.insert(batch.extents.end(), runs.end() - sp.extents, runs.end());
    }
  }
  if (filled_blocks > 0) {
    batch.journal_extents = std::move(runs);
    spdlog::debug("batch: {} dirty blocks in {} extents, {} gap blocks filled from home", refs.size(),
                  batch.extents.size(), filled_blocks);
  }
  // Gap blocks are read from home (below, or while the home streams the
  // batch) and written back by ApplyBatch: no home-direct write may come in
  // between (docs/policies.md, "Why the order holds", step 4). The lock is
  // not held over the meta.db commit below.
  {
    MutexLock home_write(&home_write_mu_);
    std::unique_ptr<uint8_t[]> buf;  // only for a home that does not stream batches
    auto abandon = [] { return Status::Aborted("the migrator is stopping; the batch is taken up again at the next mount"); };
    if (o_.home->streams_batches()) {
      batch.source = source;
    } else {
      uint64_t total = 0;
      for (const home::Extent& e : batch.extents) total += e.length;
      buf.reset(new uint8_t[total]);
      uint8_t* out = buf.get();
      for (home::Extent& e : batch.extents) {
        if (stopping_) return abandon();
        Status s = source(e.offset, out, e.length);
        if (!s.ok()) {
          if (log_failed && log_read_failed) *log_failed = true;
          return s;
        }
        e.data = out;
        out += e.length;
      }
      size_t k = 0;
      for (home::Extent& j : batch.journal_extents) {
        while (batch.extents[k].offset + batch.extents[k].length <= j.offset) k++;
        j.data = batch.extents[k].data + (j.offset - batch.extents[k].offset);
      }
    }
    if (stopping_) return abandon();
    {
      Status s = o_.home->ApplyBatch(batch);
      if (!s.ok()) {
        if (log_failed && log_read_failed) *log_failed = true;
        return s;
      }
    }
    buf.reset();
  }

  // The batch's log pages, cached by the reads above, leave the page cache:
  // the log's O_DIRECT writes are slower while any are cached (File::DropCache).
  DropBatchPages(segs);

  // 3. Blocks whose newest copy was in the batch now read from home.
  std::vector<meta::IndexEntry> migrated;
  migrated.reserve(refs.size());
  for (const BlockRef& r : refs) migrated.push_back(meta::IndexEntry{r.lba, r.pos, r.crc});
  if (o_.on_applied) o_.on_applied(migrated, segs.front().segment_seq, batch.end.segment_seq);

  // 4. Record it.
  meta::MigrationStats ms;
  ms.blocks = refs.size();
  ms.bytes = refs.size() * uint64_t{log::kBlockSize};
  ms.extents = batch.extents.size() + batch.zeros.size();
  Status cs = o_.meta->CommitMigration(batch.end, ms);
  {
    MutexLock l(&mu_);
    if (!cs.ok()) {
      // The home's stamp, durable before this step and authoritative at
      // mount, already records the batch; the next successful commit (or the
      // next mount) brings meta.db up to it. Not freeing the segments here
      // would make writers wait forever on a full or broken FAST.
      if (meta_error_.empty())
        spdlog::warn("recording a migration batch in meta.db failed ({}); the home's stamp has it, so the log "
                     "space is freed anyway. Check FAST (full? read-only?)",
                     cs.ToString());
      meta_error_ = cs.ToString();
    } else if (!meta_error_.empty()) {
      spdlog::info("meta.db accepts commits again");
      meta_error_.clear();
    }
  }

  // 5. The slots may be reused.
  if (!draining_failed_log_) o_.writer->ReleaseSegmentsBefore(batch.end.segment_seq);
  MutexLock l(&mu_);
  stats_.batches++;
  stats_.blocks += ms.blocks;
  stats_.bytes += ms.bytes;
  stats_.extents += ms.extents;
  stats_.zero_bytes += zero_bytes;
  spdlog::debug("migrated segments {}..{}: {} blocks in {} extents", segs.front().segment_seq, segs.back().segment_seq,
                ms.blocks, ms.extents);
  return Status::OK();
}

Status Migrator::MigrateSegments(const std::vector<log::LiveSegment>& segs, std::vector<uint64_t>* unreadable) {
  MutexLock run(&run_mu_);
  draining_failed_log_ = true;
  int backoff_ms = 100;
  for (const log::LiveSegment& seg : segs) {
    if (seg.segment_seq < o_.home->watermark().segment_seq) continue;  // already home
    for (;;) {
      bool log_failed = false;
      Status s = MigrateBatch({seg}, &log_failed);
      if (s.ok()) break;
      if (log_failed) {
        spdlog::error("segment {} of the failed log cannot be read ({}); its blocks are lost", seg.segment_seq,
                      s.ToString());
        unreadable->push_back(seg.segment_seq);
        break;
      }
      {
        MutexLock l(&mu_);
        if (stop_) return Status::Aborted("the volume is stopping");
        stats_.state = "backoff";
        stats_.last_error = s.ToString();
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(backoff_ms));
      backoff_ms = std::min(backoff_ms * 2, 5000);
    }
  }
  return Status::OK();
}

Status Migrator::Drain(const ProgressFn& progress) {
  {
    MutexLock l(&mu_);
    drainers_++;
  }
  uint64_t boundary = o_.writer->SealSegment();
  Status s = o_.writer->Sync();
  uint64_t start_seg = o_.home->watermark().segment_seq;
  uint64_t total = boundary > start_seg ? boundary - start_seg : 0;
  int backoff_ms = 100;
  while (s.ok()) {
    uint64_t wm = o_.home->watermark().segment_seq;
    if (progress) progress(Progress{"drain", wm > start_seg ? std::min(wm - start_seg, total) : 0, total, "segments"});
    if (wm >= boundary) break;
    {
      MutexLock l(&mu_);
      if (stop_) {
        s = Status::Aborted("the volume is stopping");
        break;
      }
    }
    bool did = false;
    Status m = MigrateOnce(&did);
    if (!m.ok()) {
      // Wait through the outage; the error is logged and shown in status.
      std::this_thread::sleep_for(std::chrono::milliseconds(backoff_ms));
      backoff_ms = std::min(backoff_ms * 2, 5000);
    } else if (!did) {
      // Segments become migratable once the flusher has made them durable.
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    } else {
      backoff_ms = 100;
    }
  }
  // The home's watermark moves in step 2 of a batch; if the background
  // thread applied the last one, wait until its steps 3-5 (index, meta.db,
  // log space) are done too, so that a status taken after Drain shows them.
  if (s.ok()) {
    MutexLock run(&run_mu_);
  }
  MutexLock l(&mu_);
  drainers_--;
  return s;
}

}  // namespace boostvol
