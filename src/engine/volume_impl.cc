#include "engine/volume_impl.h"

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <spdlog/spdlog.h>
#include <thread>

#include "engine/segment_extents.h"
#include "engine/tunables.h"
#include "log/record.h"
#include "util/blocking_hint.h"

namespace boostvol {

using log::kBlockSize;

VolumeImpl::~VolumeImpl() {
  if (!closed_ && writer_) {
    Status s = Close();
    if (!s.ok()) spdlog::error("closing the volume failed: {}", s.ToString());
  }
}

namespace {
bool IsZeroBlock(const uint8_t* p) {
  static const uint8_t kZero[kBlockSize] = {};
  return std::memcmp(p, kZero, kBlockSize) == 0;
}
}  // namespace

uint64_t VolumeImpl::NowMs() const {
  return static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now().time_since_epoch()).count());
}

Status VolumeImpl::ReadBlocks(uint64_t lba0, uint32_t n, uint8_t* out) {
  thread_local std::vector<Version> where;
  // For blocks not in the index: 1 = covered by a pending zero range, 2 = a
  // read cache hit, 0 = read home (with its read cache ticket).
  thread_local std::vector<uint8_t> zero;
  thread_local std::vector<uint64_t> ticket;
  where.resize(n);
  zero.assign(n, 0);
  ticket.resize(n);
  ReadCache* rc = read_cache_.get();
  for (uint32_t i = 0; i < n; i++) PrefetchIndex(lba0 + i);  // the misses of a multi-block read overlap
  {
    ReaderLock l(&index_mu_);
    const bool any_zeros = !pending_zeros_.empty();
    for (uint32_t i = 0; i < n; i++) {
      where[i].cached = index_->Lookup(static_cast<uint32_t>(lba0 + i), &where[i].value);
      if (where[i].cached) slot_readers_[SlotOf(where[i].value.pos)].fetch_add(1, std::memory_order_acquire);
      else if (any_zeros) zero[i] = pending_zeros_.Covers(lba0 + i);
      if (!where[i].cached && !zero[i] && rc) ticket[i] = rc->TicketFor(lba0 + i);
    }
  }
  auto release_slots = [&] {
    for (uint32_t k = 0; k < n; k++)
      if (where[k].cached) slot_readers_[SlotOf(where[k].value.pos)].fetch_sub(1, std::memory_order_release);
  };
  // Clean blocks the read cache holds (verified there; a bad slot is a miss).
  if (rc) {
    bool would_block = false;
    for (uint32_t i = 0; i < n && !would_block; i++)
      if (!where[i].cached && !zero[i] && rc->Read(lba0 + i, out + size_t{i} * kBlockSize, &would_block)) zero[i] = 2;
    if (would_block) {
      release_slots();
      return Status::WouldBlock();
    }
  }
  Status result;
  // Runs [first, end) of blocks that live only at home. They are read after
  // the cached blocks' slots are released: a home read may wait for the home
  // (home_read_timeout_s), and the migrator must not wait for it to free
  // those slots.
  thread_local std::vector<std::pair<uint32_t, uint32_t>> home_runs;
  home_runs.clear();
  // Counted once per call, not per block (the counters are shared atomics).
  uint64_t from_cache = 0, from_home = 0;
  uint32_t i = 0;
  while (i < n) {
    uint8_t* dst = out + size_t{i} * kBlockSize;
    if (!where[i].cached && zero[i]) {
      if (zero[i] == 1) std::memset(dst, 0, kBlockSize);
      from_cache++;
      i++;
      continue;
    }
    if (!where[i].cached) {  // read from home below, once the log slots are let go
      uint32_t j = i + 1;
      while (j < n && !where[j].cached && !zero[j]) j++;
      home_runs.emplace_back(i, j);
      from_home += j - i;
      i = j;
      continue;
    }
    // A run of cached blocks at consecutive log positions, none buffered.
    if (writer_->ReadBuffered(where[i].value.pos, dst)) {
      i++;
      from_cache++;
      continue;
    }
    uint32_t j = i + 1;
    while (j < n && where[j].cached && where[j].value.pos == where[j - 1].value.pos + 1 && SlotOf(where[j].value.pos) == SlotOf(where[i].value.pos)) j++;
    Status s = log_file_->ReadAt(uint64_t{where[i].value.pos} * kBlockSize, dst, size_t{j - i} * kBlockSize);
    if (s.IsWouldBlock()) {
      release_slots();
      return s;
    }
    if (!s.ok() && result.ok()) result = s;
    from_cache += j - i;
    i = j;
  }
  // Verify every cached block; a block still in a buffer when the run was
  // read from the file is re-read from its buffer (it was written meanwhile).
  for (i = 0; i < n && result.ok(); i++) {
    if (!where[i].cached) continue;
    uint8_t* dst = out + size_t{i} * kBlockSize;
    if (log::BlockCrc(lba0 + i, dst) == where[i].value.crc) continue;
    if (writer_->ReadBuffered(where[i].value.pos, dst) && log::BlockCrc(lba0 + i, dst) == where[i].value.crc) continue;
    Status s = log_file_->ReadAt(uint64_t{where[i].value.pos} * kBlockSize, dst, kBlockSize);
    if (s.IsWouldBlock()) {
      release_slots();
      return s;
    }
    if (s.ok() && log::BlockCrc(lba0 + i, dst) == where[i].value.crc) continue;
    checksum_failures_++;
    spdlog::error("image block {} (log block {}) fails its checksum; the read returns EIO. "
                  "The cached copy is damaged; run `boostvol check` after unmounting",
                  lba0 + i, where[i].value.pos);
    result = Status::IoError(5, "checksum mismatch on the cached copy of image block " + std::to_string(lba0 + i));
  }
  release_slots();
  for (size_t r = 0; r < home_runs.size() && result.ok(); r++) {
    const auto [first, end] = home_runs[r];
    result = ReadHome((lba0 + first) * kBlockSize, out + size_t{first} * kBlockSize, size_t{end - first} * kBlockSize);
  }
  // Only a read that is done changes state (a WouldBlock is read again).
  if (result.IsWouldBlock()) return result;
  if (result.ok() && rc)
    for (const auto& [first, end] : home_runs)
      for (uint32_t k = first; k < end; k++) rc->OnHomeRead(lba0 + k, out + size_t{k} * kBlockSize, ticket[k]);
  if (from_cache) read_blocks_cache_.fetch_add(from_cache, std::memory_order_relaxed);
  if (from_home) read_blocks_home_.fetch_add(from_home, std::memory_order_relaxed);
  return result;
}

Status VolumeImpl::ReadHome(uint64_t offset, uint8_t* dst, size_t n) {
  // DESIGN.md 4: a read of a block that lives only at home fails after
  // bounded retries, and only that read; nothing else changes state. The
  // bound is home_read_timeout_s: a filesystem above that sees a metadata
  // read fail shuts down (XFS does, mid-transaction), so an outage shorter
  // than the bound only delays the read. Three quick tries at least.
  static constexpr int kQuickTries = 3;  // 0.1 s and 0.2 s apart; then every 0.4 s, 0.8 s, 1 s, ...
  const auto start = std::chrono::steady_clock::now();
  const auto deadline = start + std::chrono::seconds(home_read_timeout_s_.load(std::memory_order_relaxed));
  Status s;
  int attempt = 0;
  for (;;) {
    s = home_->Read(offset, dst, n);
    // In a NoWaitScope a failed read is retried on a thread that may wait
    // (the waits below), not here.
    if (!s.ok() && NoWait()) return Status::WouldBlock();
    if (s.ok()) {
      if (uint64_t failed = home_read_errors_.Cleared())
        spdlog::info("reads of the home copy work again ({} read(s) failed meanwhile)", failed);
      if (uint64_t waited = home_read_waits_.Cleared())
        spdlog::info("the home copy is readable again; {} read(s) had waited for it", waited);
      return s;
    }
    attempt++;
    const auto now = std::chrono::steady_clock::now();
    if (attempt >= kQuickTries && (now >= deadline || stopping_ || closed_)) break;
    uint64_t more = 0;
    if (attempt == kQuickTries && home_read_waits_.Occurred(&more) == RepeatedError::kFirst)
      spdlog::warn("a read of {} bytes at offset {} from the home copy fails ({}); it is retried for up to {} s "
                   "(home_read_timeout_s) before it returns EIO, so the filesystem above waits instead of failing. "
                   "Check the slow directory (later such waits are not logged until it is back)",
                   n, offset, s.ToString(), home_read_timeout_s_.load(std::memory_order_relaxed));
    auto pause = std::chrono::milliseconds(std::min(50 << std::min(attempt, 5), 1000));
    if (attempt >= kQuickTries && now + pause > deadline)
      pause = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now) + std::chrono::milliseconds(1);
    std::this_thread::sleep_for(pause);
  }
  home_read_failures_++;
  uint64_t more = 0;
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  switch (home_read_errors_.Occurred(&more)) {
    case RepeatedError::kFirst:
      spdlog::error("reading {} bytes at offset {} from the home copy failed {} times in {:.1f} s: {}. This read "
                    "returns EIO; blocks held in the cache stay readable, writes are accepted. Check the slow "
                    "directory; `boostvol set MNT home_read_timeout_s=N` makes reads wait longer for it. (Further "
                    "failed home reads are counted, one line a minute)",
                    n, offset, attempt, secs, s.ToString());
      break;
    case RepeatedError::kSummary:
      spdlog::error("{} more read(s) of the home copy failed with EIO in the last minute; last: {}", more,
                    s.ToString());
      break;
    case RepeatedError::kQuiet: break;
  }
  return Status::IoError(s.err() ? s.err() : 5, "the home copy cannot be read: " + s.message());
}

Status VolumeImpl::ReadBlockVersion(uint64_t lba, uint8_t* out, Version* v) {
  {
    ReaderLock l(&index_mu_);
    v->cached = index_->Lookup(static_cast<uint32_t>(lba), &v->value);
    v->epoch = migrate_epoch_;
  }
  return ReadBlocks(lba, 1, out);
}

bool VolumeImpl::VersionStillCurrent(uint64_t lba, const Version& v) {
  ReaderLock l(&index_mu_);
  IndexValue now;
  bool cached = index_->Lookup(static_cast<uint32_t>(lba), &now);
  if (cached != v.cached) return false;
  if (cached) return now == v.value;
  return migrate_epoch_ == v.epoch;
}

Status VolumeImpl::Read(uint64_t offset, size_t len, void* buf) {
  if (offset > size() || len > size() - offset) return Status::InvalidArgument("read beyond the end of the image");
  if (len == 0) return Status::OK();
  Status s = ReadUncounted(offset, len, buf);
  if (!s.IsWouldBlock()) {  // a WouldBlock (NoWaitScope) is read again and counted then
    reads_++;
    bytes_read_ += len;
  }
  return s;
}

Status VolumeImpl::ReadUncounted(uint64_t offset, size_t len, void* buf) {
  uint64_t lba0 = offset / kBlockSize;
  uint64_t lba_end = (offset + len + kBlockSize - 1) / kBlockSize;
  uint8_t* dst = static_cast<uint8_t*>(buf);
  constexpr uint32_t kChunk = 256;
  // Inside a NoWaitScope a WouldBlock must leave nothing changed; a chunk
  // already read would have been counted (and its home blocks offered to
  // the read cache), so a read of more than one chunk is not tried at all.
  if (lba_end - lba0 > kChunk && NoWait()) return Status::WouldBlock();
  if (offset % kBlockSize == 0 && len % kBlockSize == 0) {
    for (uint64_t lba = lba0; lba < lba_end; lba += kChunk) {
      uint32_t n = static_cast<uint32_t>(std::min<uint64_t>(kChunk, lba_end - lba));
      BV_RETURN_IF_ERROR(ReadBlocks(lba, n, dst + (lba - lba0) * kBlockSize));
    }
    return Status::OK();
  }
  thread_local std::vector<uint8_t> tmp;
  tmp.resize(size_t{kChunk} * kBlockSize);
  for (uint64_t lba = lba0; lba < lba_end; lba += kChunk) {
    uint32_t n = static_cast<uint32_t>(std::min<uint64_t>(kChunk, lba_end - lba));
    BV_RETURN_IF_ERROR(ReadBlocks(lba, n, tmp.data()));
    uint64_t chunk_start = lba * kBlockSize, chunk_end = (lba + n) * kBlockSize;
    uint64_t from = std::max(chunk_start, offset), to = std::min(chunk_end, offset + len);
    std::memcpy(dst + (from - offset), tmp.data() + (from - chunk_start), to - from);
  }
  return Status::OK();
}

Status VolumeImpl::Write(uint64_t offset, size_t len, const void* buf) {
  if (offset > size() || len > size() - offset) return Status::InvalidArgument("write beyond the end of the image");
  if (len == 0) return Status::OK();
  writes_++;
  bytes_written_ += len;
  const uint8_t* src = static_cast<const uint8_t*>(buf);
  uint64_t lba0 = offset / kBlockSize;
  uint64_t lba_end = (offset + len + kBlockSize - 1) / kBlockSize;
  uint64_t n = lba_end - lba0;

  // Partial first/last blocks are merged with their current contents.
  struct Partial {
    uint64_t lba;
    Version v;
    alignas(16) uint8_t data[kBlockSize];
  };
  // The calling thread's own (no allocation per write; Write never re-enters
  // itself on a thread).
  thread_local Partial partial[2];
  int npartial = 0;
  bool head_partial = offset % kBlockSize != 0 || (n == 1 && len < kBlockSize);
  bool tail_partial = (offset + len) % kBlockSize != 0 && !(n == 1 && head_partial);
  auto merge = [&](Partial* p) -> Status {
    for (int backoff_ms = 100, tries = 0;; backoff_ms = std::min(backoff_ms * 2, 5000), tries++) {
      Status s = ReadBlockVersion(p->lba, p->data, &p->v);
      if (s.ok()) break;
      // A cached copy that fails its checks cannot be merged into: this
      // write truly cannot be served. A block that lives only at home while
      // the home cannot be read is different: the write waits for the home
      // (DESIGN.md 4), it never fails because the home is away.
      if (p->v.cached || closed_) return s;
      uint64_t more = 0;
      if (tries == 0 && merge_waits_.Occurred(&more) == RepeatedError::kFirst)
        spdlog::warn("a {}-byte write into image block {} must merge with the block's home copy, which cannot be read "
                     "now ({}); the write waits for the home to come back (later such waits are not logged "
                     "until it is back)",
                     len, p->lba, s.message());
      std::this_thread::sleep_for(std::chrono::milliseconds(backoff_ms));
    }
    if (uint64_t n_waited = merge_waits_.Cleared())
      spdlog::info("the home copy is readable again; {} partial write(s) had waited for it", n_waited);
    uint64_t block_start = p->lba * kBlockSize;
    uint64_t from = std::max(block_start, offset), to = std::min(block_start + kBlockSize, offset + len);
    std::memcpy(p->data + (from - block_start), src + (from - offset), to - from);
    return Status::OK();
  };
  if (head_partial) partial[npartial++].lba = lba0;
  if (tail_partial) partial[npartial++].lba = lba_end - 1;
  for (int i = 0; i < npartial; i++) BV_RETURN_IF_ERROR(merge(&partial[i]));

  // Checksums outside the lock; all-zero blocks (zero_detect) are logged as
  // zero ranges and need none.
  thread_local std::vector<uint32_t> crcs;
  thread_local std::vector<uint8_t> zeroblk;
  thread_local std::vector<const uint8_t*> ptrs;
  crcs.resize(n);
  zeroblk.assign(n, 0);
  ptrs.resize(n);
  auto block_ptr = [&](uint64_t lba) -> const uint8_t* {
    for (int i = 0; i < npartial; i++)
      if (partial[i].lba == lba) return partial[i].data;
    return src + (lba * kBlockSize - offset);
  };
  const bool detect = zero_detect_.load(std::memory_order_relaxed);
  auto prepare = [&](uint64_t i) {
    PrefetchIndex(lba0 + i);  // its miss overlaps the crc; the slot is hot when AppendRun places the block
    const uint8_t* p = ptrs[i] = block_ptr(lba0 + i);
    zeroblk[i] = detect && IsZeroBlock(p);
    if (!zeroblk[i]) crcs[i] = log::BlockCrc(lba0 + i, p);
  };
  for (uint64_t i = 0; i < n; i++) prepare(i);

  if (degraded_) {
    MutexLock l(&write_mu_);
    BV_RETURN_IF_ERROR(WriteThroughLocked(offset, len, src));
    last_write_ms_ = NowMs();
    return Status::OK();
  }
  const WriteMode mode = static_cast<WriteMode>(write_mode_.load(std::memory_order_relaxed));
  const bool relaxed = bypass_relaxed_.load(std::memory_order_relaxed);
  // Sequential streams are tracked only while bypass is on (the default,
  // sequential_cutoff=0, costs the write path nothing here).
  const uint64_t cutoff = sequential_cutoff_.load(std::memory_order_relaxed);
  bool tracked = cutoff == 0, direct = false, drained = false, drained_clean = false;
  uint64_t stream_run = 0;
  for (;;) {
    bool drain_first = false;
    {
      MutexLock l(&write_mu_);
      if (degraded_) {
        BV_RETURN_IF_ERROR(WriteThroughLocked(offset, len, src));
        break;
      }
      if (!tracked) {
        tracked = true;
        stream_run = TrackStreamLocked(offset, len);
      }
      bool stale = false;
      for (int i = 0; i < npartial; i++) stale |= !VersionStillCurrent(partial[i].lba, partial[i].v);
      // Home-direct: whole blocks only (a partial block merges with its
      // current copy, which the log orders), and only blocks with no copy in
      // the log (rule (a), docs/policies.md); with bypass_order=prefix only
      // while the log holds nothing not yet home (DESIGN.md 2.7).
      if (!stale && npartial == 0) {
        const bool want = mode != WriteMode::kWriteback || (cutoff > 0 && stream_run >= cutoff);
        bool allowed = false;
        if (want && !direct_unsupported_) {
          if (relaxed) {
            allowed = !AnyCachedLocked(lba0, n);
          } else {
            uint64_t dirty = 0;
            allowed = LogAllHomeLocked(&dirty);
            // A little left to go home (typically the stream's own first
            // sequential_cutoff bytes): wait for it once, then bypass.
            if (!allowed && !drained && dirty * kBlockSize <= std::max(kBypassDrainMaxBytes, 2 * cutoff) &&
                NowMs() >= bypass_drain_quiet_until_ms_.load(std::memory_order_relaxed))
              drain_first = true;
            // Waited, and other writers dirtied the log again: log for a while.
            if (!allowed && drained_clean) bypass_drain_quiet_until_ms_ = NowMs() + 1000;
          }
        }
        if (allowed) {
          Status ds = WriteDirectLocked(offset, len, src);
          if (ds.ok()) {
            bypassed_bytes_ += len;
            direct = true;
            break;
          }
          if (ds.code() == Status::Code::kUnsupported) {
            // This kind of home (RBD, for now) has no home-direct writes: said once, then not tried again.
            direct_unsupported_ = true;
            spdlog::info("{} takes no home-direct writes ({}); write_mode and sequential_cutoff have no effect, "
                         "every write goes through the log",
                         home_->Describe(), ds.message());
          }
          uint64_t more = 0;
          if (!direct_unsupported_ && direct_errors_.Occurred(&more) != RepeatedError::kQuiet)
            spdlog::warn("a home-direct write of {} bytes at {} was not done ({}); it goes through the log instead "
                         "(nothing is lost; this line at most once a minute{})",
                         len, offset, ds.ToString(), more ? ", " + std::to_string(more) + " more" : std::string());
        }
      }
      if (!stale && !drain_first) {
        Status s;
        uint64_t zero_blocks = 0;
        for (uint64_t i = 0; i < n && s.ok();) {
          uint64_t j = i + 1;
          if (!zeroblk[i]) {
            // A run of data blocks: one hold of the log's lock, one of index_mu_ per record.
            while (j < n && !zeroblk[j]) j++;
            s = writer_->AppendRun(lba0 + i, static_cast<uint32_t>(j - i), &ptrs[i], &crcs[i],
                                   &VolumeImpl::IndexPlacedRun, this);
            i = j;
            continue;
          }
          while (j < n && zeroblk[j]) j++;
          s = writer_->AppendZero(lba0 + i, static_cast<uint32_t>(j - i), &VolumeImpl::ZeroPlaced, this);
          if (s.ok()) zero_blocks += j - i;
          i = j;
        }
        zero_block_bytes_ += zero_blocks * kBlockSize;
        if (!s.ok()) {
          if (!writer_->failed()) return s;  // only a stopping volume
          // The log failed under us: what went in is in its failure state;
          // the degraded path writes all of it home, then this write whole.
          BV_RETURN_IF_ERROR(EnterDegradedLocked());
          BV_RETURN_IF_ERROR(WriteThroughLocked(offset, len, src));
        }
        break;
      }
    }
    if (drain_first) {
      // Not under write_mu_: other writers go on (and may dirty the log
      // again; then this write is logged after all).
      drained = true;
      Status ds = DrainForBypass();
      drained_clean = ds.ok();
      if (!ds.ok()) {
        spdlog::debug("waiting for the log to go home before a home-direct write: {}; logging meanwhile",
                      ds.ToString());
      }
      continue;
    }
    // A concurrent write or a migration changed a block we merged into: merge again.
    for (int i = 0; i < npartial; i++) {
      BV_RETURN_IF_ERROR(merge(&partial[i]));
      prepare(partial[i].lba - lba0);
    }
  }
  // Write-through: a logged write is acknowledged once durable too.
  if (mode == WriteMode::kWritethrough && !direct && !degraded_) BV_RETURN_IF_ERROR(writer_->Sync());
  // Stored at most once a millisecond: the migrator's idle check reads this
  // line, and a store per write would take it back from that core each time.
  const uint64_t now = NowMs();
  if (last_write_ms_.load(std::memory_order_relaxed) != now) last_write_ms_.store(now, std::memory_order_relaxed);
  return Status::OK();
}

uint64_t VolumeImpl::TrackStreamLocked(uint64_t offset, uint64_t len) {
  stream_clock_++;
  Stream* lru = &streams_[0];
  Stream* hit = nullptr;
  for (Stream& st : streams_) {
    if (st.run > 0 && st.next == offset) {
      // Two streams meeting at one offset: the longer one continues, the other ends.
      if (hit == nullptr || st.run > hit->run) hit = &st;
    }
    if (st.used < lru->used) lru = &st;
  }
  if (hit != nullptr) {
    for (Stream& st : streams_)
      if (&st != hit && st.run > 0 && st.next == offset) st = Stream{};
    uint64_t before = hit->run;
    hit->run += len;
    hit->next = offset + len;
    hit->used = stream_clock_;
    return before;
  }
  *lru = Stream{offset + len, len, stream_clock_};
  return 0;
}

bool VolumeImpl::AnyCachedLocked(uint64_t lba0, uint64_t n) {
  // Stable while write_mu_ is held: only appends (under write_mu_) add index
  // entries or pending zeros; the migrator only removes them.
  ReaderLock l(&index_mu_);
  const bool any_zeros = !pending_zeros_.empty();
  IndexValue v;
  for (uint64_t i = 0; i < n; i++) {
    if (index_->Lookup(static_cast<uint32_t>(lba0 + i), &v)) return true;
    if (any_zeros && pending_zeros_.Covers(lba0 + i)) return true;
  }
  return false;
}

bool VolumeImpl::LogAllHomeLocked(uint64_t* dirty_blocks) {
  // Every logged write leaves, until its batch is durable at home, an index
  // entry for each of its blocks (or a newer write's entry, or a pending zero
  // range over it): IndexPlacedRun/ZeroPlaced run inside AppendRun/AppendZero
  // under write_mu_, and OnMigrated removes entries only after
  // Home::ApplyBatch made the batch durable and moved the home's watermark
  // past it. So an empty index and no
  // pending zeros mean that the home alone holds the image as of the last
  // logged write. Stable while write_mu_ is held (only appends add entries).
  ReaderLock l(&index_mu_);
  *dirty_blocks = index_->size() + pending_zeros_.blocks();
  return index_->size() == 0 && pending_zeros_.empty();
}

Status VolumeImpl::DrainForBypass() {
  // While migration fails (the home is away), no write waits for it: logged.
  if (migrator_->GetStats().failing_since_unix != 0) return Status::Busy("migration is failing");
  // Seal the open segment so that its records can go home now, not after idle_migrate_ms.
  writer_->SealSegment();
  BV_RETURN_IF_ERROR(writer_->Sync());
  const uint64_t deadline = NowMs() + kBypassDrainWaitMs;
  for (;;) {
    {
      ReaderLock l(&index_mu_);
      if (index_->size() == 0 && pending_zeros_.empty()) return Status::OK();
    }
    if (closed_) return Status::Aborted("the volume is stopping");
    if (NowMs() >= deadline) return Status::Busy("the log did not go home within the wait");
    bool did = false;
    // Run by this thread (or waits for the migrator's batch in progress).
    // A failing home: give up at once, the write is logged.
    BV_RETURN_IF_ERROR(migrator_->MigrateOnce(&did));
    // Nothing sealed is left to take home, yet the log is not all home: what
    // is dirty was written after this wait sealed the log, into the open
    // segment (other writers). Waiting would only run out the deadline: the
    // write is logged now (bench/write-modes.sh: partial-block writes beside
    // writethrough made each whole-block write wait the full 5 s).
    if (!did) {
      ReaderLock l(&index_mu_);
      if (index_->size() == 0 && pending_zeros_.empty()) return Status::OK();
      return Status::Busy("the log was written to again while its older part went home");
    }
  }
}

Status VolumeImpl::WriteDirectLocked(uint64_t offset, size_t len, const uint8_t* src) {
  // Every write before this one in the single order (write_mu_) that went to
  // the log is made durable first: a crash can then never keep this write
  // and lose an earlier one (DESIGN.md 2.3). Free when the log is synced.
  BV_RETURN_IF_ERROR(writer_->Sync());
  {
    // The migrator reads gap blocks from home and writes them back in its
    // batch; none may be read before this write and applied after it.
    MutexLock hl(migrator_->home_write_mu());
    // Durable at home on OK (written and fdatasync'ed): no later log record
    // exists yet (write_mu_ is held), so none can become durable before it
    // (rule (b)), and the fsync barrier needs nothing more for it.
    BV_RETURN_IF_ERROR(home_->WriteDirect(offset, src, len));
  }
  if (uint64_t n = direct_errors_.Cleared()) spdlog::info("home-direct writes work again ({} went to the log)", n);
  if (!direct_said_ && bypass_relaxed_) {
    direct_said_ = true;
    spdlog::warn("writing straight home ({}): while the log holds older writes not yet home, {} alone is not "
                 "crash-consistent (DESIGN.md 2.7; a crash with FAST intact still recovers a prefix). Set "
                 "bypass_order=prefix (the default) to keep it (docs/policies.md)",
                 static_cast<WriteMode>(write_mode_.load()) == WriteMode::kWriteback
                     ? std::string("a sequential stream past sequential_cutoff")
                     : std::string("write_mode=") + WriteModeName(static_cast<WriteMode>(write_mode_.load())),
                 home_->Describe());
  }
  // A partial write that merged the old home copy of one of these blocks must merge again,
  // and a clean copy in the read cache (or a promotion in flight) is now stale.
  WriterLock il(&index_mu_);
  migrate_epoch_++;
  if (read_cache_) read_cache_->Invalidate(offset / kBlockSize, (offset + len + kBlockSize - 1) / kBlockSize);
  return Status::OK();
}

void VolumeImpl::ZeroPlaced(void* ctx, uint64_t first, uint32_t count, uint64_t segment_seq) {
  VolumeImpl* self = static_cast<VolumeImpl*>(ctx);
  WriterLock l(&self->index_mu_);
  self->index_->RemoveRange(first, first + count);
  self->pending_zeros_.Add(first, first + count, segment_seq);
  self->migrate_epoch_++;  // a merge that read these blocks must read them again
  if (self->read_cache_) self->read_cache_->Invalidate(first, first + count);
}

Status VolumeImpl::Zero(uint64_t offset, uint64_t len, bool discard) {
  if (offset > size() || len > size() - offset) return Status::InvalidArgument("zero range beyond the end of the image");
  if (len == 0) return Status::OK();
  (discard ? trimmed_bytes_ : zeroed_bytes_) += len;
  uint64_t first = (offset + kBlockSize - 1) / kBlockSize;  // first whole block
  uint64_t end = (offset + len) / kBlockSize;               // past the last whole block
  if (first >= end) {                                       // within one block, or straddling two
    std::vector<uint8_t> z(len, 0);
    return Write(offset, len, z.data());
  }
  // Unaligned edges are partial writes of zeros (merged with the block).
  static const std::vector<uint8_t> kZeros(kBlockSize, 0);
  if (offset < first * kBlockSize) BV_RETURN_IF_ERROR(Write(offset, first * kBlockSize - offset, kZeros.data()));
  {
    MutexLock l(&write_mu_);
    BV_RETURN_IF_ERROR(ZeroBlocksLocked(first, end));
  }
  if (offset + len > end * kBlockSize) BV_RETURN_IF_ERROR(Write(end * kBlockSize, offset + len - end * kBlockSize, kZeros.data()));
  last_write_ms_ = NowMs();
  return Status::OK();
}

Status VolumeImpl::ZeroBlocksLocked(uint64_t first, uint64_t end) {
  if (degraded_) return ZeroThroughLocked(first, end);
  constexpr uint64_t kMaxRun = uint64_t{1} << 31;  // a zero entry's count is a u32
  for (uint64_t b = first; b < end;) {
    uint64_t run = std::min(kMaxRun, end - b);
    Status s = writer_->AppendZero(b, static_cast<uint32_t>(run), &VolumeImpl::ZeroPlaced, this);
    if (!s.ok()) {
      if (!writer_->failed()) return s;  // only a stopping volume
      BV_RETURN_IF_ERROR(EnterDegradedLocked());
      return ZeroThroughLocked(b, end);
    }
    b += run;
  }
  return Status::OK();
}

Status VolumeImpl::ZeroThroughLocked(uint64_t first, uint64_t end) {
  for (int backoff_ms = 100;; backoff_ms = std::min(backoff_ms * 2, 5000)) {
    Status s = home_->ZeroThrough(first * kBlockSize, (end - first) * kBlockSize);
    if (s.ok()) break;
    if (closed_) return s;
    std::this_thread::sleep_for(std::chrono::milliseconds(backoff_ms));
  }
  WriterLock il(&index_mu_);
  index_->RemoveRange(first, end);
  pending_zeros_.Erase(first, end);
  migrate_epoch_++;
  if (read_cache_) read_cache_->Invalidate(first, end);
  return Status::OK();
}

void VolumeImpl::IndexPlacedRun(void* ctx, const log::LogWriter::Placed* blocks, size_t n) {
  VolumeImpl* self = static_cast<VolumeImpl*>(ctx);
  WriterLock l(&self->index_mu_);
  for (size_t i = 0; i < n; i++) self->index_->Put(static_cast<uint32_t>(blocks[i].lba), IndexValue{blocks[i].pos, blocks[i].crc});
  // A run's blocks are consecutive image blocks (AppendRun).
  if (self->read_cache_) self->read_cache_->Invalidate(blocks[0].lba, blocks[n - 1].lba + 1);
}

Status VolumeImpl::Flush() {
  flushes_++;
  if (!degraded_) {
    Status s = writer_->Sync();
    if (s.ok() || !writer_->failed()) return s;
    MutexLock l(&write_mu_);
    BV_RETURN_IF_ERROR(EnterDegradedLocked());
  }
  // Write-through: the barrier is the home's sync. Retried until it holds:
  // an fsync is never acknowledged before the data is durable.
  for (int backoff_ms = 100;; backoff_ms = std::min(backoff_ms * 2, 5000)) {
    Status s = home_->SyncThrough();
    if (s.ok()) return s;
    if (closed_) return s;
    std::this_thread::sleep_for(std::chrono::milliseconds(backoff_ms));
  }
}

void VolumeImpl::FlushAhead() {
  if (!degraded_) writer_->SyncAhead();  // degraded: Flush() syncs the home, nothing to start early
}

Status VolumeImpl::WriteThroughLocked(uint64_t offset, size_t len, const uint8_t* src) {
  for (int backoff_ms = 100;; backoff_ms = std::min(backoff_ms * 2, 5000)) {
    Status s = home_->WriteThrough(offset, src, len);
    if (s.ok()) break;
    if (closed_) return s;
    std::this_thread::sleep_for(std::chrono::milliseconds(backoff_ms));
  }
  // A block whose only copy was in the unreadable log is readable again.
  WriterLock il(&index_mu_);
  index_->RemoveRange(offset / kBlockSize, (offset + len + kBlockSize - 1) / kBlockSize);
  pending_zeros_.Erase(offset / kBlockSize, (offset + len + kBlockSize - 1) / kBlockSize);
  migrate_epoch_++;
  if (read_cache_) read_cache_->Invalidate(offset / kBlockSize, (offset + len + kBlockSize - 1) / kBlockSize);
  return Status::OK();
}

Status VolumeImpl::EnterDegradedLocked() {
  if (degraded_) return Status::OK();
  spdlog::error("the log on FAST has failed: draining what it holds home, then writing through to {}",
                home_->Describe());
  log::LogWriter::FailureState fs;
  writer_->TakeFailureState(&fs);
  // 1. Durable records still in the log go home in batches (the migrator
  //    thread is kept out by the migrator's run lock).
  std::vector<uint64_t> unreadable;
  BV_RETURN_IF_ERROR(migrator_->MigrateSegments(fs.durable_segments, &unreadable));
  // 2. Blocks never made durable in the log are still in RAM: write them
  //    home in log order (a later copy overwrites an earlier one).
  for (const auto& b : fs.undurable) {
    for (int backoff_ms = 100;; backoff_ms = std::min(backoff_ms * 2, 5000)) {
      Status s = b.zero_count > 0 ? home_->ZeroThrough(b.lba * kBlockSize, uint64_t{b.zero_count} * kBlockSize)
                                  : home_->WriteThrough(b.lba * kBlockSize, b.data.data(), kBlockSize);
      if (s.ok()) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(backoff_ms));
    }
  }
  for (int backoff_ms = 100;; backoff_ms = std::min(backoff_ms * 2, 5000)) {
    if (home_->SyncThrough().ok()) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(backoff_ms));
  }
  // 3. Index: blocks now home read from home; what remains points into
  //    unreadable segments (lost: reads of them fail, writes revive them).
  uint64_t lost = 0;
  {
    WriterLock l(&index_mu_);
    for (const auto& b : fs.undurable)
      if (b.zero_count == 0) index_->RemoveIf(static_cast<uint32_t>(b.lba), IndexValue{b.pos, b.crc});
    // Every zero range is home now (migrated, or just written through), and
    // from here on writes go home directly: none may shadow them.
    pending_zeros_.Clear();
    migrate_epoch_++;
    lost = index_->size();
    if (lost > 0) {
      std::string addrs;
      int shown = 0;
      index_->ForEach([&](uint32_t lba, IndexValue) {
        if (shown++ < 32) addrs += (addrs.empty() ? "" : ", ") + std::to_string(lba);
      });
      spdlog::error("{} image block(s) had their only copy in the unreadable part of the log; reads of them fail "
                    "until they are written again. Blocks: {}{}",
                    lost, addrs, lost > 32 ? ", ..." : "");
    }
  }
  lost_blocks_ = lost;
  // 4. Move the home's watermark past every record ever issued, so that no
  //    log copy is replayed over write-through data at the next mount.
  home::Batch bump;
  bump.end.segment_seq = fs.current_segment + 1;
  bump.end.record_seq = fs.next_seq;
  for (int backoff_ms = 100;; backoff_ms = std::min(backoff_ms * 2, 5000)) {
    Status s = home_->ApplyBatch(bump);
    if (s.ok()) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(backoff_ms));
  }
  degraded_ = true;
  spdlog::error("volume degraded to write-through: {} durable segments and {} buffered blocks went home; "
                "writes now go straight to {}. Remount after fixing FAST to use the cache again",
                fs.durable_segments.size(), fs.undurable.size(), home_->Describe());
  return Status::OK();
}

Status VolumeImpl::Drain(const ProgressFn& progress) { return migrator_->Drain(progress); }

Status VolumeImpl::MigrateOnce(bool* did) {
  Housekeeping();
  return migrator_->MigrateOnce(did);
}

void VolumeImpl::OnMigrated(const std::vector<meta::IndexEntry>& migrated, uint64_t first_segment, uint64_t end_segment) {
  {
    WriterLock l(&index_mu_);
    for (const meta::IndexEntry& e : migrated) index_->RemoveIf(e.lba, IndexValue{e.pos, e.crc});
    pending_zeros_.RemoveTaggedBefore(end_segment);  // the batch's zero ranges are home
    migrate_epoch_++;
  }
  // No new reader can find a position in these slots now; wait out the old ones.
  for (uint64_t seg = first_segment; seg < end_segment; seg++) {
    uint32_t slot = static_cast<uint32_t>(seg % row_.segment_count);
    while (slot_readers_[slot].load(std::memory_order_acquire) != 0) std::this_thread::yield();
  }
}

void VolumeImpl::OnSegmentDurable(log::DurableSegment d) {
  {
    const log::LiveSegment& seg = d.segment;
    PendingSealed p;
    p.row = meta::SealedSegment{seg.segment_seq, static_cast<uint32_t>(seg.segment_seq % row_.segment_count),
                                seg.first_record, seg.last_record, seg.data_blocks};
    p.blocks = std::move(d.blocks);
    p.have_blocks = d.have_blocks;
    MutexLock l(&pending_mu_);
    pending_sealed_.push_back(std::move(p));
  }
  // Not migrator_: this runs on the flusher thread, which starts before Open
  // has made the migrator (a data race TSan found).
  if (Migrator* m = kick_migrator_.load(std::memory_order_acquire)) m->Kick();
}

void VolumeImpl::Housekeeping() {
  if (NowMs() - last_counters_save_ms_.load() >= 10000) {
    last_counters_save_ms_ = NowMs();
    SaveCounters();
  }
  std::vector<PendingSealed> pending;
  {
    MutexLock l(&pending_mu_);
    pending.swap(pending_sealed_);
  }
  if (pending.empty()) return;
  // For the dirty_extents view only: a failure just leaves them out. The
  // blocks come from the log writer; only a segment begun before this mount
  // has its record headers read back from the log.
  std::vector<meta::SealedSegment> segs;
  std::vector<std::vector<meta::SegmentExtent>> extents;
  for (PendingSealed& p : pending) {
    if (!p.have_extents) {
      if (p.have_blocks) {
        p.extents = ExtentsOfBlocks(std::move(p.blocks), meta::kMaxSegmentExtents);
        p.blocks = {};
      } else {
        Status es = ReadSegmentExtents(log_file_.get(), uuid_, row_.segment_blocks, row_.segment_count, p.row,
                                       meta::kMaxSegmentExtents, &p.extents);
        if (!es.ok()) spdlog::debug("not recording the extents of segment {}: {}", p.row.segment_seq, es.ToString());
      }
      p.have_extents = true;
    }
    segs.push_back(p.row);
    extents.push_back(p.extents);
  }
  Status s = meta_->AddSealedSegments(segs, extents);
  if (!s.ok()) {
    uint64_t more = 0;
    if (meta_errors_.Occurred(&more) != RepeatedError::kQuiet)
      spdlog::warn("recording sealed segments in meta.db failed (retried; this line at most once a "
                   "minute{}): {}. The log does not depend on it (recovery reads the log); check FAST",
                   more ? ", " + std::to_string(more) + " more failures" : std::string(), s.ToString());
    MutexLock l(&pending_mu_);
    pending_sealed_.insert(pending_sealed_.begin(), std::make_move_iterator(pending.begin()),
                           std::make_move_iterator(pending.end()));
  } else if (uint64_t n = meta_errors_.Cleared()) {
    spdlog::info("meta.db records sealed segments again (after {} failed attempts)", n);
  }
}

Status VolumeImpl::ApplyTunable(const std::string& key, const std::string& value) {
  TunableValues v;
  BV_RETURN_IF_ERROR(ParseTunable(key, value, &v));
  if (key == "migrate_start_fraction") migrator_->SetStartFraction(v.migrate_start_fraction);
  else if (key == "idle_migrate_ms") migrator_->SetIdleMs(v.idle_migrate_ms);
  else if (key == "max_batch_bytes") migrator_->SetMaxBatchBytes(v.max_batch_bytes);
  else if (key == "migrate_gap_blocks") migrator_->SetGapBlocks(v.migrate_gap_blocks);
  else if (key == "zero_detect") zero_detect_ = v.zero_detect;
  else if (key == "home_read_timeout_s") home_read_timeout_s_ = v.home_read_timeout_s;
  else if (key == "write_mode") write_mode_ = static_cast<uint8_t>(v.write_mode);
  else if (key == "sequential_cutoff") sequential_cutoff_ = v.sequential_cutoff;
  else if (key == "bypass_order") {
    bypass_relaxed_ = v.bypass_order == BypassOrder::kRelaxed;
    if (bypass_relaxed_)
      spdlog::warn("bypass_order=relaxed: home-direct writes (write_mode writethrough/writearound, sequential "
                   "streams past sequential_cutoff) go home while older writes are still only in the log, so {} "
                   "ALONE IS NOT CRASH-CONSISTENT (DESIGN.md 2.7 is given up): if FAST is lost for good, the home "
                   "may hold a later write without an earlier one. A crash with FAST intact still recovers a prefix. "
                   "`boostvol set FAST bypass_order=prefix` restores it (docs/policies.md)",
                   home_->Describe());
  }
  else if (key == "read_promote" || key == "read_promote_hits" || key == "read_cache_size") {
    {
      MutexLock l(&rc_config_mu_);
      if (key == "read_promote") ParsePromotePolicy(v.read_promote, &read_promote_);
      else if (key == "read_promote_hits") read_promote_hits_ = v.read_promote_hits;
      else read_cache_size_ = v.read_cache_size;
    }
    if (read_cache_) return ConfigureReadCache();  // else: at open, once all are read
  }
  return Status::OK();
}

Status VolumeImpl::ConfigureReadCache() {
  MutexLock l(&rc_config_mu_);
  const uint64_t log_bytes = uint64_t{row_.segment_blocks} * row_.segment_count * kBlockSize;
  uint64_t bytes = read_cache_size_ != 0 ? read_cache_size_ : log_bytes / 4;
  // Never more slots than the image has blocks (a larger cache could not fill).
  uint64_t blocks = std::min<uint64_t>({bytes / kBlockSize, image_blocks_, 0xFFFFFF00ull});
  if (!read_cache_->has_file()) {
    bool exists = false;
    if (read_promote_ != PromotePolicy::kOff || (fast_->Exists("readcache", &exists).ok() && exists)) {
      std::unique_ptr<File> f;
      Status os = fast_->OpenFile("readcache", OpenMode::kCreate, &f);
      if (!os.ok()) {
        spdlog::error("cannot open the read cache file {}/readcache ({}); read caching stays off. Check FAST, "
                      "then set read_promote again",
                      fast_path_, os.ToString());
        return os;
      }
      read_cache_->AttachFile(std::move(f));
    }
  }
  Status s = read_cache_->Configure(static_cast<uint32_t>(blocks), read_promote_, read_promote_hits_);
  if (!s.ok()) {
    spdlog::error("the read cache is off: {}. Reads go home as without it; free space on FAST or set a smaller "
                  "read_cache_size, then set read_promote again",
                  s.ToString());
    return s;
  }
  if (read_promote_ != PromotePolicy::kOff)
    spdlog::info("read cache: {} blocks ({} bytes) in FAST/readcache, promotion {}{}", blocks, blocks * kBlockSize,
                 PromotePolicyName(read_promote_),
                 read_promote_ == PromotePolicy::kNhit ? " after " + std::to_string(read_promote_hits_) + " reads"
                                                       : std::string());
  return Status::OK();
}

Status VolumeImpl::SetTunable(const std::string& key, const std::string& value) {
  if (key == "write_mode") {
    TunableValues v;
    BV_RETURN_IF_ERROR(ParseTunable(key, value, &v));
    if (v.write_mode != WriteMode::kWriteback && static_cast<WriteMode>(write_mode_.load()) == WriteMode::kWriteback) {
      // Away from write-back: what the log holds goes home first, so that the
      // new mode finds its blocks uncached (rule (a)) and fsync-cheap.
      spdlog::info("write_mode {}: draining the log home first", value);
      BV_RETURN_IF_ERROR(migrator_->Drain(ProgressFn()));
    }
  }
  BV_RETURN_IF_ERROR(ApplyTunable(key, value));
  Status s = meta_->SetSetting(key, value);
  if (!s.ok()) spdlog::error("tunable {}={} applied but not saved in meta.db: {}", key, value, s.ToString());
  else spdlog::info("tunable {} set to {}", key, value);
  migrator_->Kick();
  return s;
}

std::vector<std::pair<std::string, std::string>> VolumeImpl::GetTunables() {
  TunableValues v;
  v.migrate_start_fraction = migrator_->start_fraction();
  v.idle_migrate_ms = migrator_->idle_ms();
  v.max_batch_bytes = migrator_->max_batch_bytes();
  v.migrate_gap_blocks = migrator_->gap_blocks();
  v.zero_detect = zero_detect_;
  v.home_read_timeout_s = home_read_timeout_s_;
  v.write_mode = static_cast<WriteMode>(write_mode_.load());
  v.sequential_cutoff = sequential_cutoff_;
  v.bypass_order = bypass_relaxed_ ? BypassOrder::kRelaxed : BypassOrder::kPrefix;
  {
    MutexLock l(&rc_config_mu_);
    v.read_promote = PromotePolicyName(read_promote_);
    v.read_promote_hits = read_promote_hits_;
    v.read_cache_size = read_cache_size_;
  }
  return TunablesToStrings(v);
}

VolumeStatus VolumeImpl::GetStatus() {
  VolumeStatus st;
  st.uuid = row_.uuid;
  st.fast_dir = fast_path_;
  st.home = home_->Describe();
  st.image_size = row_.image_size;
  st.cache_bytes = uint64_t{row_.segment_blocks} * row_.segment_count * kBlockSize;
  st.log_total_blocks = uint64_t{row_.segment_blocks} * row_.segment_count;
  st.segments_total = row_.segment_count;
  {
    ReaderLock l(&index_mu_);
    st.dirty_blocks = index_->size();
    st.index_memory_bytes = index_->MemoryBytes();
    st.pending_zero_blocks = pending_zeros_.blocks();
  }
  std::string log_error;
  if (writer_) {
    log::LogWriter::Stats ws = writer_->GetStats();
    log_error = ws.last_error;
    st.segments_live = ws.live_segments;
    st.log_used_blocks = ws.live_blocks;
    st.next_record = ws.next_seq;
    st.durable_record = ws.durable_seq;
    st.write_waits = ws.append_waits;
    st.syncs_ahead = ws.syncs_ahead;
    st.log_buffer_resident_bytes = writer_->BufferPoolResidentBytes();
    st.writers_waiting = ws.waiting_for_space;
    if (ws.failing && st.health == "healthy") {
      st.health = "fast-dir-error";
      st.last_error = "writes to the log on FAST are failing and being retried: " + ws.last_error;
    }
  }
  st.watermark_record = home_->watermark().record_seq;
  if (migrator_) {
    Migrator::Stats ms = migrator_->GetStats();
    st.migrator_state = ms.state;
    st.migrated_blocks = migrated_blocks_base_ + ms.blocks;
    st.migrated_bytes = migrated_bytes_base_ + ms.bytes;
    st.migration_batches = migration_batches_base_ + ms.batches;
    st.failing_since_unix = ms.failing_since_unix > 0 ? static_cast<uint64_t>(ms.failing_since_unix) : 0;
    st.next_retry_unix = ms.next_retry_unix > 0 && ms.state == "backoff" ? static_cast<uint64_t>(ms.next_retry_unix) : 0;
    st.home_zeroed_bytes = ms.zero_bytes;
    if (ms.failing_since_unix != 0) {
      st.health = "home-unreachable";
      st.last_error = ms.last_error;
    } else if (ms.batch_running_ms > 5000) {
      st.health = "home-slow";
      st.last_error = "a migration batch has waited on the home for " + std::to_string(ms.batch_running_ms / 1000) +
                      " s (a hung network mount?)";
    }
    if (!ms.meta_error.empty() && st.health == "healthy") {
      st.health = "fast-dir-error";
      st.last_error = "meta.db refuses commits: " + ms.meta_error;
    }
  }
  if (degraded_) {
    st.health = "degraded-write-through";
    std::string home_error = st.failing_since_unix != 0 ? "; the home fails too: " + st.last_error : "";
    st.last_error = "the log on FAST failed" + (log_error.empty() ? std::string() : " (" + log_error + ")") +
                    "; writes go straight home" + home_error;
    if (lost_blocks_ > 0)
      st.last_error += "; " + std::to_string(lost_blocks_.load()) + " block(s) lost with the unreadable log";
  }
  if (home_read_failures_ > 0 && st.last_error.empty())
    st.last_error = std::to_string(home_read_failures_.load()) + " read(s) of the home copy failed";
  if (checksum_failures_ > 0 && st.last_error.empty())
    st.last_error = std::to_string(checksum_failures_.load()) + " cached block(s) failed their checksum";
  st.reads = reads_;
  st.writes = writes_;
  st.flushes = flushes_;
  st.bytes_read = bytes_read_;
  st.bytes_written = bytes_written_;
  st.read_blocks_cache = read_blocks_cache_;
  st.read_blocks_home = read_blocks_home_;
  st.trimmed_bytes = trimmed_bytes_;
  st.zeroed_bytes = zeroed_bytes_;
  st.zero_block_bytes = zero_block_bytes_;
  st.bypassed_bytes = bypassed_bytes_;
  st.bypass_order = bypass_relaxed_ ? "relaxed" : "prefix";
  if (read_cache_) {
    ReadCache::Stats rs = read_cache_->GetStats();
    st.read_cache_hits = rc_hits_base_ + rs.hits;
    st.read_cache_misses = rc_misses_base_ + rs.misses;
    st.read_cache_promotions = rc_promotions_base_ + rs.promotions;
    st.read_cache_evictions = rc_evictions_base_ + rs.evictions;
    st.read_cache_invalidations = rs.invalidations;
    st.read_cache_blocks = rs.used_blocks;
    st.read_cache_capacity_blocks = rs.capacity_blocks;
    st.read_cache_memory_bytes = read_cache_->MemoryBytes();
    st.read_promote = PromotePolicyName(read_cache_->policy());
  }
  st.mount_count = mount_count_;
  st.clean_open = clean_open_;
  return st;
}

void VolumeImpl::RestoreCounters() {
  std::vector<std::pair<std::string, int64_t>> saved;
  if (Status s = meta_->LoadCounters(&saved); !s.ok()) {
    spdlog::warn("reading the saved counters from meta.db failed ({}); counting from 0 for this mount", s.ToString());
    return;
  }
  for (const auto& [name, value] : saved) {
    if (value < 0) continue;
    const uint64_t u = static_cast<uint64_t>(value);
    if (name == "writes") writes_ = u;
    else if (name == "reads") reads_ = u;
    else if (name == "bytes_written") bytes_written_ = u;
    else if (name == "bytes_read") bytes_read_ = u;
    else if (name == "flushes") flushes_ = u;
    else if (name == "read_blocks_cache") read_blocks_cache_ = u;
    else if (name == "read_blocks_home") read_blocks_home_ = u;
    else if (name == "trimmed_bytes") trimmed_bytes_ = u;
    else if (name == "zeroed_bytes") zeroed_bytes_ = u;
    else if (name == "zero_block_bytes") zero_block_bytes_ = u;
    else if (name == "bypassed_bytes") bypassed_bytes_ = u;
    else if (name == "read_cache_hits") rc_hits_base_ = u;
    else if (name == "read_cache_misses") rc_misses_base_ = u;
    else if (name == "read_cache_promotions") rc_promotions_base_ = u;
    else if (name == "read_cache_evictions") rc_evictions_base_ = u;
    // The migration.* totals are added to by each committed batch: the authority.
    else if (name == "migration.blocks") migrated_blocks_base_ = u;
    else if (name == "migration.bytes") migrated_bytes_base_ = u;
    else if (name == "migration.batches") migration_batches_base_ = u;
  }
}

void VolumeImpl::SaveCounters() {
  VolumeStatus st = GetStatus();
  Status cs = meta_->SaveCounters({{"writes", static_cast<int64_t>(st.writes)},
                                   {"reads", static_cast<int64_t>(st.reads)},
                                   {"bytes_written", static_cast<int64_t>(st.bytes_written)},
                                   {"bytes_read", static_cast<int64_t>(st.bytes_read)},
                                   {"flushes", static_cast<int64_t>(st.flushes)},
                                   {"read_blocks_cache", static_cast<int64_t>(st.read_blocks_cache)},
                                   {"read_blocks_home", static_cast<int64_t>(st.read_blocks_home)},
                                   {"dirty_blocks", static_cast<int64_t>(st.dirty_blocks)},
                                   {"migrated_blocks", static_cast<int64_t>(st.migrated_blocks)},
                                   {"migration_batches", static_cast<int64_t>(st.migration_batches)},
                                   {"trimmed_bytes", static_cast<int64_t>(st.trimmed_bytes)},
                                   {"zeroed_bytes", static_cast<int64_t>(st.zeroed_bytes)},
                                   {"zero_block_bytes", static_cast<int64_t>(st.zero_block_bytes)},
                                   {"bypassed_bytes", static_cast<int64_t>(st.bypassed_bytes)},
                                   {"read_cache_hits", static_cast<int64_t>(st.read_cache_hits)},
                                   {"read_cache_misses", static_cast<int64_t>(st.read_cache_misses)},
                                   {"read_cache_promotions", static_cast<int64_t>(st.read_cache_promotions)},
                                   {"read_cache_evictions", static_cast<int64_t>(st.read_cache_evictions)}});
  if (!cs.ok()) spdlog::warn("saving counters in meta.db failed: {}", cs.ToString());
}

std::string VolumeImpl::EncodePendingZeros() {
  std::string out;
  ReaderLock l(&index_mu_);
  for (const ZeroMap::Range& r : pending_zeros_.All()) {
    if (!out.empty()) out += ' ';
    out += std::to_string(r.first) + "+" + std::to_string(r.end - r.first) + "@" + std::to_string(r.tag);
  }
  return out;
}

void VolumeImpl::BeginClose() {
  stopping_ = true;
  if (migrator_) migrator_->RequestStop();
}

Status VolumeImpl::Close() {
  if (closed_.exchange(true)) return Status::OK();
  Status result;
  if (!writer_) {  // never fully opened
    lock_.reset();
    return result;
  }
  // The log made durable before waiting on the migrator, which may wait on
  // the home: a stop cut short there (cmd_mount's stop watchdog, a kill)
  // then finds the writes in the log. SyncAhead, not Sync: it never waits.
  // Nothing writes any more (FUSE has ended), so it syncs unless the flusher
  // is syncing already; a failing FAST must not hold the stop (the flusher,
  // or Stop below, retries and reports).
  writer_->SyncAhead();
  if (migrator_) migrator_->Stop();
  meta::Checkpoint cp;
  if (writer_) {
    Status s = writer_->Stop(&cp.tail);
    if (!s.ok()) {
      spdlog::error("stopping the log failed: {}; the next mount will recover from the log", s.ToString());
      result = s;
    }
  }
  Housekeeping();
  SaveCounters();
  bool zeros_saved = false;
  if (result.ok() && writer_) {
    // Pending zero ranges go beside the checkpoint, written first: a
    // checkpoint is only ever read with the ranges of its own stop.
    std::string zeros = EncodePendingZeros();
    if (zeros.size() > 60000) {
      spdlog::info("{} bytes of pending zero ranges: no checkpoint; the next mount replays the log", zeros.size());
    } else {
      zeros_saved = true;
      Status zs = meta_->SetSetting("checkpoint.pending_zeros", zeros);
      if (!zs.ok()) {
        spdlog::error("saving the pending zero ranges failed: {}; the next mount will recover from the log", zs.ToString());
        result = zs;
      }
    }
  }
  if (result.ok() && writer_ && zeros_saved) {
    cp.watermark = home_->watermark();
    {
      ReaderLock l(&index_mu_);
      cp.entries.reserve(index_->size());
      index_->ForEach([&](uint32_t lba, IndexValue v) { cp.entries.push_back(meta::IndexEntry{lba, v.pos, v.crc}); });
    }
    Status s = meta_->SaveCheckpoint(cp);
    if (!s.ok()) {
      spdlog::error("writing the checkpoint failed: {}; the next mount will recover from the log", s.ToString());
      result = s;
    } else {
      spdlog::info("clean stop: checkpoint of {} cached blocks written", cp.entries.size());
    }
  }
  writer_.reset();
  kick_migrator_.store(nullptr, std::memory_order_release);
  migrator_.reset();
  lock_.reset();
  return result;
}

}  // namespace boostvol
