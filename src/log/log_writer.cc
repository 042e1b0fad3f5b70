#include "log/log_writer.h"
#include "util/thread_name.h"

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <vector>

#include <spdlog/spdlog.h>
#include <sys/mman.h>
#include <unistd.h>

namespace boostvol::log {
namespace {

using Clock = std::chrono::steady_clock;
constexpr auto kSyncInterval = std::chrono::milliseconds(200);
// Pre-zeroing (LogWriter::PrezeroAfter): how far past a record the flusher
// writes zeros, and the most bytes written since the last sync for which it
// still pays (past that, one metadata commit per sync is a small part of it).
constexpr uint64_t kPrezeroBytes = uint64_t{1} << 20;
constexpr uint64_t kPrezeroMaxBytesPerSync = uint64_t{128} << 10;

// kPrezeroBytes of zeros, block-aligned for O_DIRECT; allocated once, kept.
const uint8_t* PrezeroBuffer() {
  static const uint8_t* const zeros = [] {
    auto* p = static_cast<uint8_t*>(std::aligned_alloc(kBlockSize, kPrezeroBytes));
    if (p == nullptr) std::abort();  // 1 MiB, once
    std::memset(p, 0, kPrezeroBytes);
    return p;
  }();
  return zeros;
}

}  // namespace

void LogWriter::AlignedFree::operator()(uint8_t* p) const { std::free(p); }

struct LogWriter::Buffer {
  BufState state = BufState::kFree;
  uint8_t* mem = nullptr;  // header block + kMaxRecordBlocks data blocks, in pool_
  RecordHeader hdr;
  uint32_t start_pos = 0;   // absolute log block of the header
  uint32_t max_blocks = 0;  // data blocks that fit
  uint32_t index = 0;       // in buffers_ and held_
  Clock::time_point opened_at;
};

LogWriter::LogWriter(const LogWriterOptions& o)
    : file_(o.log),
      uuid_(o.uuid),
      segment_blocks_(o.segment_blocks),
      segment_count_(o.segment_count),
      max_record_age_ms_(o.max_record_age_ms),
      fail_after_ms_(o.fail_after_ms),
      on_segment_durable_(o.on_segment_durable) {
  MutexLock l(&mu_);
  // One allocation for every buffer, in transparent huge pages where the
  // kernel has them (madvise mode): the copy into a buffer and the pinning of
  // its pages for the O_DIRECT write touch a few huge pages instead of 257
  // small ones per record.
  const uint32_t nbuf = std::max<uint32_t>(o.buffers, 2);
  const size_t stride = size_t{kBlockSize} * (1 + kMaxRecordBlocks);
  constexpr size_t kHuge = size_t{2} << 20;
  const size_t pool_bytes = (stride * nbuf + kHuge - 1) / kHuge * kHuge;
  void* pool = std::aligned_alloc(kHuge, pool_bytes);
  if (pool == nullptr) std::abort();
  (void)::madvise(pool, pool_bytes, MADV_HUGEPAGE);  // a hint; EINVAL without THP is fine
  pool_.reset(static_cast<uint8_t*>(pool));
  pool_bytes_ = pool_bytes;
  held_.reset(new std::atomic<uint64_t>[nbuf]);
  for (uint32_t i = 0; i < nbuf; i++) {
    auto b = std::make_unique<Buffer>();
    b->mem = pool_.get() + stride * i;
    b->index = i;
    held_[i].store(kHeldNone, std::memory_order_relaxed);
    buffers_.push_back(std::move(b));
  }
  placed_.reserve(kMaxRecordBlocks);
  io_batch_.reserve(nbuf);
  next_seq_ = o.tail.next_record_seq;
  prev_crc_ = o.tail.prev_crc;
  durable_seq_ = o.durable_seq;
  written_seq_ = o.durable_seq;
  for (const LiveSegment& s : o.live) live_.push_back(s);
  if (live_.empty() || live_.back().segment_seq != o.tail.segment_seq) {
    LiveSegment cur;
    cur.segment_seq = o.tail.segment_seq;
    cur.used_blocks = o.tail.next_block_in_segment;
    live_.push_back(cur);
  }
  flusher_ = std::thread([this] { FlusherLoop(); });
}

LogWriter::~LogWriter() {
  bool running;
  {
    MutexLock l(&mu_);
    running = !stopping_;
  }
  if (running) {
    meta::TailState t;
    (void)Stop(&t);
  }
  if (flusher_.joinable()) flusher_.join();
}

uint64_t LogWriter::BufferPoolResidentBytes() const {
  const size_t page = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
  std::vector<unsigned char> in_core((pool_bytes_ + page - 1) / page);
  if (::mincore(pool_.get(), pool_bytes_, in_core.data()) != 0) return 0;  // only a report: 0 = unknown
  uint64_t pages = 0;
  for (unsigned char c : in_core) pages += c & 1;
  return pages * page;
}

LiveSegment* LogWriter::CurrentSegmentLocked() { return &live_.back(); }

bool LogWriter::BufferHolds(const Buffer& b, uint32_t pos) const {
  return pos > b.start_pos && pos <= b.start_pos + b.hdr.nblocks;
}

void LogWriter::PublishHeldLocked(size_t i, const Buffer* b) {
  // Every position the buffer can come to hold (its data blocks up to
  // max_blocks): a superset is enough, ReadBuffered checks under mu_.
  const uint64_t v =
      b == nullptr ? kHeldNone : (uint64_t{b->start_pos + 1} << 32) | uint64_t{b->start_pos + b->max_blocks};
  held_[i].store(v, std::memory_order_release);
}

Status LogWriter::OpenRecordLocked() {
  for (;;) {
    if (failed_) return Status::IoError(5, "the log on FAST has failed");
    if (stopping_) return Status::Aborted("the log is stopping");
    LiveSegment* cur = CurrentSegmentLocked();
    if (cur->sealed || segment_blocks_ - cur->used_blocks < 2) {
      cur->sealed = true;
      if (live_.size() >= segment_count_) {
        // Every slot holds data not yet home: wait for the migrator.
        if (!waiting_for_space_) {
          append_waits_++;
          spdlog::info("log full ({} segments live): writes wait for the migrator to free a segment", live_.size());
        }
        waiting_for_space_ = true;
        flusher_cv_.Signal();  // let the flusher finish sealing the last segment
        space_cv_.Wait();
        continue;
      }
      waiting_for_space_ = false;
      LiveSegment next;
      next.segment_seq = cur->segment_seq + 1;
      live_.push_back(next);
      flusher_cv_.Signal();  // the sealed segment may already be durable
      continue;
    }
    Buffer* free_buf = nullptr;
    for (auto& b : buffers_) {
      if (b->state == BufState::kFree) {
        free_buf = b.get();
        break;
      }
    }
    if (free_buf == nullptr) {
      flusher_cv_.Signal();
      space_cv_.Wait();
      continue;
    }
    waiting_for_space_ = false;
    Buffer* b = free_buf;
    b->state = BufState::kFilling;
    b->hdr.uuid = uuid_;
    b->hdr.record_seq = next_seq_++;
    b->hdr.segment_seq = cur->segment_seq;
    b->hdr.nblocks = 0;
    b->hdr.nzero = 0;
    b->start_pos = static_cast<uint32_t>((cur->segment_seq % segment_count_) * segment_blocks_ + cur->used_blocks);
    b->max_blocks = std::min<uint32_t>(kMaxRecordBlocks, segment_blocks_ - cur->used_blocks - 1);
    b->opened_at = Clock::now();
    // Before any block of it is placed (indexed): a reader that finds one
    // of its positions in the index sees this range (index_mu_ orders them).
    PublishHeldLocked(b->index, b);
    if (cur->first_record == 0) cur->first_record = b->hdr.record_seq;
    open_ = b;
    return Status::OK();
  }
}

void LogWriter::WakeFlusherForAgeLocked(const Buffer& b) {
  last_record_started_ = b.opened_at;
  // Only when the flusher would sleep past the record's sealing time: a
  // wake-up per record cost a context switch per 4k write + fsync at QD1.
  if (flusher_wakes_at_ > b.opened_at + std::chrono::milliseconds(max_record_age_ms_)) flusher_cv_.Signal();
}

void LogWriter::SealRecordLocked(bool wake_flusher) {
  Buffer* b = open_;
  open_ = nullptr;
  b->hdr.durable_seq = durable_seq_;
  b->hdr.prev_crc = prev_crc_;
  EncodeHeader(&b->hdr, b->mem);
  prev_crc_ = b->hdr.header_crc;
  LiveSegment* cur = CurrentSegmentLocked();
  cur->used_blocks += 1 + b->hdr.nblocks;
  cur->data_blocks += b->hdr.nblocks;
  cur->last_record = b->hdr.record_seq;
  // One map lookup per record; one allocation per segment (begun here), none per record.
  std::vector<uint64_t>* blocks = nullptr;
  if (cur->first_record == b->hdr.record_seq) {
    blocks = &blocks_by_segment_[cur->segment_seq];
    blocks->clear();
    blocks->reserve(segment_blocks_);
  } else if (auto it = blocks_by_segment_.find(cur->segment_seq); it != blocks_by_segment_.end()) {
    blocks = &it->second;
  }
  if (blocks != nullptr) {
    for (uint32_t i = 0; i < b->hdr.nblocks; i++) blocks->push_back(b->hdr.entries[i].lba & kLbaMask);
  }
  if (segment_blocks_ - cur->used_blocks < 2) cur->sealed = true;
  b->state = BufState::kQueued;
  queue_.push_back(b);
  if (wake_flusher) flusher_cv_.Signal();
}

Status LogWriter::AppendRun(uint64_t lba0, uint32_t n, const uint8_t* const* blocks, const uint32_t* crcs,
                            PlacedBatchFn placed, void* ctx) {
  MutexLock l(&mu_);
  if (failed_) return Status::IoError(5, "the log on FAST has failed");
  if (stopping_) return Status::Aborted("the log is stopping");
  // placed_ holds the blocks of the open record not yet handed to `placed`;
  // it is handed over before the record is sealed and before mu_ can be
  // released (OpenRecordLocked may wait), so no record leaves with a block
  // the caller has not indexed.
  placed_.clear();
  Status s;
  for (uint32_t k = 0; k < n; k++) {
    if (open_ == nullptr) {
      s = OpenRecordLocked();
      if (!s.ok()) break;
    }
    Buffer* b = open_;
    uint32_t i = b->hdr.nblocks++;
    std::memcpy(b->mem + size_t{kBlockSize} * (1 + i), blocks[k], kBlockSize);
    b->hdr.entries[i] = RecordEntry{lba0 + k, crcs[k]};
    placed_.push_back(Placed{lba0 + k, b->start_pos + 1 + i, crcs[k]});
    if (b->hdr.nblocks == b->max_blocks || b->hdr.nblocks + b->hdr.nzero == kMaxRecordEntries) {
      placed(ctx, placed_.data(), placed_.size());
      placed_.clear();
      SealRecordLocked();
    } else if (i == 0 && b->hdr.nzero == 0) {
      b->opened_at = Clock::now();
      WakeFlusherForAgeLocked(*b);
    }
  }
  if (!placed_.empty()) {
    placed(ctx, placed_.data(), placed_.size());
    placed_.clear();
  }
  return s;
}

Status LogWriter::AppendZero(uint64_t first, uint32_t count, ZeroPlacedFn placed, void* ctx) {
  MutexLock l(&mu_);
  if (failed_) return Status::IoError(5, "the log on FAST has failed");
  if (stopping_) return Status::Aborted("the log is stopping");
  if (open_ != nullptr) {
    // A record's zero ranges apply before its data blocks: a data block of
    // this record inside the range would wrongly win over the zeros.
    const RecordHeader& h = open_->hdr;
    bool overlaps = false;
    for (uint32_t i = 0; i < h.nblocks && !overlaps; i++)
      overlaps = h.entries[i].lba >= first && h.entries[i].lba - first < count;
    if (overlaps) SealRecordLocked();
  }
  if (open_ == nullptr) BV_RETURN_IF_ERROR(OpenRecordLocked());
  Buffer* b = open_;
  RecordHeader& h = b->hdr;
  bool fresh = h.nblocks + h.nzero == 0;
  if (h.nzero > 0 && h.zeros[h.nzero - 1].first + h.zeros[h.nzero - 1].count == first &&
      uint64_t{h.zeros[h.nzero - 1].count} + count <= 0xFFFFFFFFull) {
    h.zeros[h.nzero - 1].count += count;
  } else {
    h.zeros[h.nzero++] = ZeroEntry{first, count};
  }
  placed(ctx, first, count, h.segment_seq);
  if (h.nblocks + h.nzero == kMaxRecordEntries) {
    SealRecordLocked();
  } else if (fresh) {
    b->opened_at = Clock::now();
    WakeFlusherForAgeLocked(*b);
  }
  return Status::OK();
}

bool LogWriter::ReadBuffered(uint32_t pos, uint8_t* out) {
  // Without mu_ first: the caller found `pos` in its index, so the range
  // published when the record was opened is visible, or a later one. A
  // range cleared means the pwrite of the record returned first (the file
  // has the block); one reused for a newer record cannot hold `pos` while
  // the index still points there (the segment slot was not released).
  bool maybe = false;
  for (size_t i = 0; i < buffers_.size() && !maybe; i++) {
    const uint64_t h = held_[i].load(std::memory_order_acquire);
    maybe = pos >= (h >> 32) && pos <= static_cast<uint32_t>(h);
  }
  if (!maybe) return false;
  MutexLock l(&mu_);
  for (auto& b : buffers_) {
    if (b->state == BufState::kFree || b->state == BufState::kWritten) continue;
    if (BufferHolds(*b, pos)) {
      std::memcpy(out, b->mem + size_t{kBlockSize} * (pos - b->start_pos), kBlockSize);
      return true;
    }
  }
  return false;
}

Status LogWriter::Sync() {
  MutexLock l(&mu_);
  if (open_ != nullptr) SealRecordLocked(/*wake_flusher=*/false);  // the loop below tells it if it must
  uint64_t target = next_seq_ - 1;
  if (target <= durable_seq_) return Status::OK();
  sync_wanted_seq_ = std::max(sync_wanted_seq_, target);
  bool flusher_told = false;
  while (durable_seq_ < target) {
    if (failed_) return Status::IoError(5, "the log on FAST has failed");
    if (flusher_exited_) return Status::IoError(5, "the log stopped before the sync completed");
    if (CallerMayDoIoLocked()) {
      // Nobody is writing or syncing: this thread writes and syncs itself
      // (every record queued, its own among them), which spares the flusher's
      // wake-up and the wake-up back; the flusher keeps everything else.
      if (!CallerWriteAndSyncLocked("an fsync")) flusher_told = true;
      continue;
    }
    if (!flusher_told) {
      flusher_cv_.Signal();
      flusher_told = true;
    }
    durable_cv_.WaitFor(std::chrono::milliseconds(100));
  }
  return Status::OK();
}

void LogWriter::SyncAhead() {
  MutexLock l(&mu_);
  if (failed_ || flusher_exited_ || !CallerMayDoIoLocked()) return;  // not sealed: the record may still grow
  if (open_ != nullptr) SealRecordLocked(/*wake_flusher=*/false);
  const uint64_t target = next_seq_ - 1;
  if (target <= durable_seq_) return;
  sync_wanted_seq_ = std::max(sync_wanted_seq_, target);  // as for a Sync(): the records get pre-zeroing (W6)
  syncs_ahead_++;
  (void)CallerWriteAndSyncLocked("a sync ahead of an expected fsync");
}

bool LogWriter::CallerMayDoIoLocked() const {
  return !io_busy_ && !caller_io_failed_ && failures_ == 0 && !stopping_;
}

bool LogWriter::CallerWriteAndSyncLocked(const char* why) {
  io_busy_ = true;
  Status s = queue_.empty() ? Status::OK() : WriteQueuedLocked();
  const bool write_failed = !s.ok();  // which step failed, for the warning
  if (s.ok()) s = SyncWrittenLocked();
  io_busy_ = false;
  if (!s.ok()) {
    // The flusher retries, with its back-off, and counts failures towards
    // fail_after_ms; callers wait for it from now on.
    caller_io_failed_ = true;
    last_error_ = s.ToString();
    spdlog::warn("log {} for {} failed, the flusher retries: {}", write_failed ? "write" : "fdatasync", why, s.ToString());
    flusher_cv_.Signal();
    return false;
  }
  // As when the flusher syncs: a segment this made durable is marked so
  // before the caller goes on (the flusher announces it).
  MarkDurableSegmentsLocked();
  if (flusher_wants_io_ || !to_announce_.empty() || !queue_.empty()) {
    flusher_wants_io_ = false;
    flusher_cv_.Signal();
  }
  return true;
}

uint64_t LogWriter::SealSegment() {
  MutexLock l(&mu_);
  if (open_ != nullptr) SealRecordLocked();
  LiveSegment* cur = CurrentSegmentLocked();
  if (cur->first_record != 0) cur->sealed = true;
  flusher_cv_.Signal();
  return cur->first_record != 0 ? cur->segment_seq + 1 : cur->segment_seq;
}

std::vector<LiveSegment> LogWriter::MigratableSegments() {
  MutexLock l(&mu_);
  std::vector<LiveSegment> out;
  for (const LiveSegment& s : live_) {
    if (!s.durable) break;
    out.push_back(s);
  }
  return out;
}

void LogWriter::ReleaseSegmentsBefore(uint64_t segment_seq) {
  MutexLock l(&mu_);
  while (!live_.empty() && live_.front().segment_seq < segment_seq && live_.front().durable) {
    uint64_t released = live_.front().segment_seq;
    live_.pop_front();
    if (live_.empty()) {
      LiveSegment next;
      next.segment_seq = released + 1;
      live_.push_back(next);
    }
  }
  space_cv_.SignalAll();
}

size_t LogWriter::RecordBytes(const Buffer& b) { return size_t{kBlockSize} * (1 + b.hdr.nblocks); }

Status LogWriter::WriteBuffers(Buffer* const* bufs, size_t n) {
  // Past the page cache: a record is read back rarely (reads of blocks not
  // yet in the page cache, the migrator), and copying every logged byte into
  // the page cache cost more CPU than the rest of the write path together
  // (docs/tuning.md, "Hot path"). Sync() still makes it durable.
  File::Piece pieces[kMaxRecordsPerWrite];
  for (size_t i = 0; i < n; i++) pieces[i] = File::Piece{bufs[i]->mem, RecordBytes(*bufs[i])};
  return file_->WriteAtDirectV(uint64_t{bufs[0]->start_pos} * kBlockSize, pieces, n);
}

bool LogWriter::NoteFailureLocked(const Status& s, const char* what) {
  write_retries_++;
  last_error_ = s.ToString();
  if (failures_++ == 0) {
    failing_since_ = std::chrono::steady_clock::now();
    spdlog::error("log {} failed, retrying: {}", what, s.ToString());
  }
  if (std::chrono::steady_clock::now() - failing_since_ >= std::chrono::milliseconds(fail_after_ms_)) {
    spdlog::error("the log on FAST has failed for {} ms ({} attempts, last: {}); the volume degrades to "
                  "write-through to the home copy. Check FAST's storage; remount to use the cache again",
                  fail_after_ms_, failures_, s.ToString());
    failed_ = true;
    return true;
  }
  return stopping_ && failures_ > 3;
}

void LogWriter::PrezeroAfter(uint64_t begin, uint64_t end, uint64_t* prezeroed_end) {
  const uint64_t from = std::max(begin, *prezeroed_end);
  *prezeroed_end = end;
  uint64_t never_written_end = from;
  Status s = file_->NeverWrittenRun(from, &never_written_end);
  // Only bytes never written (they read as zeros) are zeroed, so no byte of
  // the log changes, whatever lap the log is on.
  const uint64_t zero_end = std::min(never_written_end, end + kPrezeroBytes) / kBlockSize * kBlockSize;
  if (s.ok() && never_written_end > from && zero_end > end) {
    s = file_->WriteAtDirect(end, PrezeroBuffer(), zero_end - end);
    if (s.ok()) *prezeroed_end = zero_end;
  }
  if (!s.ok() && !prezero_error_logged_) {
    prezero_error_logged_ = true;
    spdlog::warn("writing zeros ahead of the log's records failed ({}); syncs of small writes stay slower on fresh "
                 "log space, nothing else changes (the log's own writes report real failures)",
                 s.ToString());
  }
}

Status LogWriter::WriteQueuedLocked() {
  std::vector<Buffer*>& batch = io_batch_;  // reserved for every buffer: no allocation per call
  batch.assign(queue_.begin(), queue_.end());
  const bool sync_awaited = sync_wanted_seq_ > durable_seq_;
  mu_.Unlock();
  Status s;
  size_t done = 0;
  while (done < batch.size()) {
    // The records that follow one another in the file go in one write.
    size_t end = done + 1;
    while (end < batch.size() && end - done < kMaxRecordsPerWrite &&
           batch[end]->start_pos == batch[end - 1]->start_pos + 1 + batch[end - 1]->hdr.nblocks)
      end++;
    const uint64_t begin = uint64_t{batch[done]->start_pos} * kBlockSize;
    uint64_t bytes = 0;
    for (size_t i = done; i < end; i++) bytes += RecordBytes(*batch[i]);
    if (sync_awaited && written_since_sync_ + bytes <= kPrezeroMaxBytesPerSync && begin + bytes > prezeroed_end_)
      PrezeroAfter(begin, begin + bytes, &prezeroed_end_);
    s = WriteBuffers(batch.data() + done, end - done);
    if (!s.ok()) break;
    written_since_sync_ += bytes;
    done = end;
  }
  mu_.Lock();
  for (size_t i = 0; i < done; i++) {
    queue_.pop_front();
    batch[i]->state = BufState::kWritten;
    PublishHeldLocked(batch[i]->index, nullptr);  // after its pwrite returned
    written_.push_back(batch[i]);
    written_seq_ = batch[i]->hdr.record_seq;
  }
  return s;
}

Status LogWriter::SyncWrittenLocked() {
  const uint64_t target = written_seq_;
  mu_.Unlock();
  Status s = file_->Sync();
  mu_.Lock();
  syncs_++;
  last_sync_ = Clock::now();
  written_since_sync_ = 0;
  if (s.ok()) {
    if (failures_ > 0) spdlog::info("log writes recovered after {} failures", failures_);
    failures_ = 0;
    caller_io_failed_ = false;
    durable_seq_ = std::max(durable_seq_, target);
    while (!written_.empty() && written_.front()->hdr.record_seq <= durable_seq_) {
      written_.front()->state = BufState::kFree;
      written_.pop_front();
    }
    durable_cv_.SignalAll();
    space_cv_.SignalAll();
    return s;
  }
  // fsyncgate: the kernel may have dropped the pages. Rewrite every record
  // not known durable before syncing again.
  while (!written_.empty()) {
    Buffer* b = written_.back();
    written_.pop_back();
    b->state = BufState::kQueued;
    PublishHeldLocked(b->index, b);  // read from the buffer again, as before it was written
    queue_.push_front(b);
  }
  written_seq_ = durable_seq_;
  return s;
}

void LogWriter::MarkDurableSegmentsLocked() {
  bool marked = false;
  for (LiveSegment& s : live_) {
    if (s.sealed && !s.durable && s.first_record != 0 && s.last_record <= durable_seq_ &&
        (open_ == nullptr || open_->hdr.segment_seq != s.segment_seq)) {
      s.durable = true;
      DurableSegment d;
      d.segment = s;
      if (auto it = blocks_by_segment_.find(s.segment_seq); it != blocks_by_segment_.end()) {
        d.blocks = std::move(it->second);
        d.have_blocks = true;
        blocks_by_segment_.erase(it);
      }
      to_announce_.push_back(std::move(d));
      marked = true;
    }
  }
  if (marked) space_cv_.SignalAll();
}

void LogWriter::FlusherLoop() {
  NameThisThread("bv-log-flush");
  MutexLock l(&mu_);
  // Under mu_: a Sync() caller may already be syncing (TSan found the
  // unlocked write racing a sync ahead right after open).
  last_sync_ = Clock::now();
  for (;;) {
    // Seal an open record that has waited long enough.
    if (open_ != nullptr && open_->hdr.nblocks + open_->hdr.nzero > 0 &&
        Clock::now() - open_->opened_at >= std::chrono::milliseconds(max_record_age_ms_)) {
      SealRecordLocked();
    }
    // Segments that became durable: announced from here, without mu_.
    MarkDurableSegmentsLocked();
    if (!to_announce_.empty()) {
      std::vector<DurableSegment> now_durable;
      now_durable.swap(to_announce_);
      if (on_segment_durable_) {
        mu_.Unlock();
        for (DurableSegment& s : now_durable) on_segment_durable_(std::move(s));
        mu_.Lock();
      }
      continue;
    }
    // A thread in Sync() is writing and syncing itself: wait for it.
    if (io_busy_) {
      flusher_wants_io_ = true;
      flusher_cv_.WaitFor(kSyncInterval);
      continue;
    }

    bool segment_waiting = false;
    for (const LiveSegment& s : live_)
      if (s.sealed && !s.durable && s.first_record != 0) segment_waiting = true;
    bool no_free_buffer = std::none_of(buffers_.begin(), buffers_.end(),
                                       [](const auto& b) { return b->state == BufState::kFree; });
    bool want_sync = written_seq_ > durable_seq_ &&
                     (sync_wanted_seq_ > durable_seq_ || segment_waiting || no_free_buffer || stopping_ ||
                      Clock::now() - last_sync_ >= kSyncInterval);

    if (queue_.empty() && !want_sync) {
      if (stopping_ && open_ == nullptr && written_.empty()) break;
      // Sleep until the open record is due for sealing, else a sync interval.
      const Clock::time_point now = Clock::now();
      Clock::time_point deadline = now + kSyncInterval;
      const auto record_age = std::chrono::milliseconds(max_record_age_ms_);
      if (open_ != nullptr && open_->hdr.nblocks + open_->hdr.nzero > 0) {
        deadline = std::min(deadline, open_->opened_at + record_age);
      } else if (last_record_started_ > now - kSyncInterval) {
        // Writes are coming in: look again within a record's age rather
        // than be woken by the next record (WakeFlusherForAgeLocked). With
        // 4k write + fsync at QD1, every record is sealed and synced by its
        // fsync (SyncAhead) and the flusher woke twice per write for nothing.
        deadline = std::min(deadline, now + record_age);
      }
      flusher_wakes_at_ = deadline;
      if (deadline > now) flusher_cv_.WaitFor(std::chrono::duration_cast<std::chrono::microseconds>(deadline - now));
      flusher_wakes_at_ = Clock::time_point::min();
      continue;
    }

    // Write every queued record, in order; then sync what is written (group
    // commit). io_busy_ keeps Sync() callers from doing either meanwhile.
    io_busy_ = true;
    const bool writing = !queue_.empty();
    Status s = writing ? WriteQueuedLocked() : SyncWrittenLocked();
    io_busy_ = false;
    if (s.ok()) continue;  // re-evaluate: more may have queued, a sync may be due
    if (NoteFailureLocked(s, writing ? "write" : "fdatasync")) break;
    flusher_cv_.WaitFor(std::chrono::milliseconds(std::min(1000, 10 << std::min(failures_, 6))));
  }
  flusher_exited_ = true;
  durable_cv_.SignalAll();
  space_cv_.SignalAll();
}

Status LogWriter::Stop(meta::TailState* tail) {
  {
    MutexLock l(&mu_);
    if (open_ != nullptr) SealRecordLocked();
    stopping_ = true;  // the flusher writes and syncs what is left, then exits
    flusher_cv_.Signal();
    space_cv_.SignalAll();
  }
  if (flusher_.joinable()) flusher_.join();
  MutexLock l(&mu_);
  Status result;
  if (durable_seq_ + 1 < next_seq_)
    result = Status::IoError(5, "records " + std::to_string(durable_seq_ + 1) + ".." + std::to_string(next_seq_ - 1) +
                                    " could not be made durable before stopping");
  // The tail stays in the current segment even when it is sealed: the next
  // mount knows it is sealed from meta.db and moves on when a slot is free.
  const LiveSegment& cur = live_.back();
  tail->next_record_seq = next_seq_;
  tail->prev_crc = prev_crc_;
  tail->segment_seq = cur.segment_seq;
  tail->next_block_in_segment = cur.used_blocks;
  return result;
}

bool LogWriter::failed() {
  MutexLock l(&mu_);
  return failed_;
}

void LogWriter::TakeFailureState(FailureState* out) {
  MutexLock l(&mu_);
  if (open_ != nullptr) SealRecordLocked();
  *out = FailureState{};
  auto take = [&](Buffer* b) {
    for (uint32_t i = 0; i < b->hdr.nzero; i++) {
      PendingBlock pb;
      pb.lba = b->hdr.zeros[i].first;
      pb.pos = pb.crc = 0;
      pb.zero_count = b->hdr.zeros[i].count;
      out->undurable.push_back(std::move(pb));
    }
    for (uint32_t i = 0; i < b->hdr.nblocks; i++) {
      PendingBlock pb;
      pb.lba = b->hdr.entries[i].lba;
      pb.pos = b->start_pos + 1 + i;
      pb.crc = b->hdr.entries[i].block_crc;
      const uint8_t* d = b->mem + size_t{kBlockSize} * (1 + i);
      pb.data.assign(d, d + kBlockSize);
      out->undurable.push_back(std::move(pb));
    }
  };
  for (Buffer* b : written_) take(b);
  for (Buffer* b : queue_) take(b);
  for (const LiveSegment& seg : live_) {
    if (seg.first_record == 0 || seg.first_record > durable_seq_) continue;
    LiveSegment t = seg;
    t.last_record = std::min(seg.last_record, durable_seq_);
    t.sealed = t.durable = true;
    out->durable_segments.push_back(t);
  }
  out->durable_seq = durable_seq_;
  out->next_seq = next_seq_;
  out->current_segment = live_.back().segment_seq;
}

LogWriter::Stats LogWriter::GetStats() {
  MutexLock l(&mu_);
  Stats s{};
  s.next_seq = next_seq_;
  s.durable_seq = durable_seq_;
  s.written_seq = written_seq_;
  s.oldest_segment = live_.front().segment_seq;
  s.current_segment = live_.back().segment_seq;
  s.live_segments = static_cast<uint32_t>(live_.size());
  s.free_segments = segment_count_ - s.live_segments;
  for (const LiveSegment& seg : live_) s.live_blocks += seg.used_blocks;
  s.append_waits = append_waits_;
  s.syncs = syncs_;
  s.syncs_ahead = syncs_ahead_;
  s.write_retries = write_retries_;
  s.waiting_for_space = waiting_for_space_;
  s.failing = failures_ > 0;
  s.last_error = last_error_;
  return s;
}

}  // namespace boostvol::log
