// LogWriter: appends blocks to the log through a small pool of in-memory
// record buffers, and makes them durable with group commit.
//
// Write path: AppendRun() copies a run of blocks, under one hold of the lock,
// into the open record buffer (the "RAM buffer" of DESIGN.md) and hands each
// block's log position to the caller at once. A full
// record (or one sealed by Sync/SealSegment/age) is queued to the flusher
// thread, which writes the queued records in seq order (those that follow
// one another in the file together, all in flight at once: WriteBuffers) and
// calls fdatasync when someone waits in Sync(), when a segment completes, or every
// kSyncIntervalMs. One fdatasync covers every record written before it.
// A Sync() (or SyncAhead(), for an fsync expected soon) that finds nobody
// writing or syncing (io_busy_) does both itself
// (docs/tuning.md, "The fsync path"); only one thread does log I/O at a time.
//
// Invariants:
//  1. Records are written to the file in seq order, each at the position it
//     was given when opened; records never cross a segment end. Records
//     written together may reach the disk in any order: none is durable
//     before the fdatasync after them, and recovery stops at the first
//     record that does not check (log_scanner.h R4).
//  2. durable_seq() only grows; every record <= durable_seq() was written
//     and fdatasync'ed without error after it was written.
//  3. A buffer is recycled only once its record is durable, so after a failed
//     fdatasync (which may have dropped the pages, DESIGN.md 7) every
//     non-durable record is rewritten from its buffer before the next sync.
//  4. A segment slot is reused only after ReleaseSegmentsBefore() says so
//     (the migrator, once the segment is durable at home and in meta.db).
//     When no slot is free, AppendRun waits (backpressure): writes never fail
//     because the log is full.
//  5. A block position placed by AppendRun is readable at once: from its
//     buffer (ReadBuffered) until the record is written, from the file after.
//
// Thread-safety: all public methods are thread-safe. AppendRun and
// AppendZero calls must be serialized by the caller (VolumeImpl::write_mu_)
// so that the order of those calls is the log order the caller observes.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <thread>
#include <string>
#include <vector>

#include "boostvol/status.h"
#include "log/log_format.h"
#include "log/record.h"
#include "meta/meta_store.h"
#include "util/env.h"
#include "util/thread_annotations.h"

namespace boostvol::log {

// A live segment: in use between the migration watermark and the tail.
struct LiveSegment {
  uint64_t segment_seq = 0;
  uint64_t first_record = 0;  // 0 while the segment holds no record
  uint64_t last_record = 0;
  uint32_t data_blocks = 0;
  uint32_t used_blocks = 0;   // header + data blocks laid out so far
  bool sealed = false;        // no more records will go into it
  bool durable = false;       // sealed and every record durable
};

// A segment that has just become durable (LogWriterOptions::on_segment_durable).
struct DurableSegment {
  LiveSegment segment;
  // The image blocks of its data entries, in log order (a block written twice
  // is there twice), when this writer wrote every record of it
  // (have_blocks). A segment begun before the volume was opened (the tail
  // recovery continues) has only its record headers in the log to tell them.
  std::vector<uint64_t> blocks;
  bool have_blocks = false;
};

struct LogWriterOptions {
  File* log = nullptr;  // FAST/log, owned by the caller, outlives the writer
  Uuid uuid{};
  uint32_t segment_blocks = 0;
  uint32_t segment_count = 0;
  meta::TailState tail;               // where the next record goes
  std::vector<LiveSegment> live;      // live segments from recovery, oldest first (the tail's last)
  uint64_t durable_seq = 0;           // records <= this are durable
  // Record buffers in the pool (1 MiB each, touched as they are used): 64
  // let a sequential stream keep the log busy (docs/tuning.md, "Log writes
  // in flight": 1M writes went 1560 -> 1801 MB/s from 16).
  uint32_t buffers = 64;
  uint32_t max_record_age_ms = 20;    // seal an open record after this long
  // After this long of continuous write or sync failures the log is declared
  // failed (DESIGN.md 4): AppendRun, AppendZero and Sync return IoError at once, and the
  // volume degrades to write-through (TakeUndurable hands it the blocks).
  uint32_t fail_after_ms = 10000;
  // Called (from the flusher thread, no lock held) when a segment becomes
  // durable and sealed: the migrator may take it, meta.db may record it.
  std::function<void(DurableSegment)> on_segment_durable;
};

class LogWriter {
 public:
  explicit LogWriter(const LogWriterOptions& options);
  ~LogWriter();  // Stop()s if needed
  LogWriter(const LogWriter&) = delete;
  LogWriter& operator=(const LogWriter&) = delete;

  // A block's place in the log, as handed to a PlacedBatchFn.
  struct Placed {
    uint64_t lba;
    uint32_t pos;
    uint32_t crc;
  };
  // Called under mu_ with the blocks of one record just placed (n >= 1),
  // before that record can be sealed: the caller indexes them there, so the
  // migrator can never take a block the index does not know yet. One call
  // per record a write touches, so the caller locks its index once, not
  // once per block.
  using PlacedBatchFn = void (*)(void* ctx, const Placed* blocks, size_t n);

  // Appends blocks[i] (4096 bytes each, BlockCrc crcs[i]) for image blocks
  // lba0, lba0+1, ... lba0+n-1, in that order, under one hold of mu_ (unless
  // it must wait for space). Waits while no buffer or no segment is free;
  // fails only once Stop() has begun or the log has failed; on a failure
  // the blocks before it stay appended and placed.
  Status AppendRun(uint64_t lba0, uint32_t n, const uint8_t* const* blocks, const uint32_t* crcs,
                   PlacedBatchFn placed, void* ctx) BV_EXCLUDES(mu_);

  // Called under mu_ when a zero range enters a record of `segment_seq`,
  // before that record can be sealed (same contract as PlacedBatchFn).
  using ZeroPlacedFn = void (*)(void* ctx, uint64_t first, uint32_t count, uint64_t segment_seq);

  // Appends a zero range (image blocks [first, first+count) read as zeros,
  // no data block; log_format.h). Ordered with AppendRun: if the open record
  // already holds a data block in the range, it is sealed first (a record's
  // zero ranges apply before its data). Extends the open record's last zero
  // range when this one follows it. Same waits and failures as AppendRun.
  Status AppendZero(uint64_t first, uint32_t count, ZeroPlacedFn placed, void* ctx) BV_EXCLUDES(mu_);

  // Copies the block at `pos` if it is still held in a buffer not yet
  // written to the file; false otherwise (read it from the file). A
  // position no buffer holds (the usual case: a block already written) is
  // answered without mu_, from each buffer's published range.
  bool ReadBuffered(uint32_t pos, uint8_t* out) BV_EXCLUDES(mu_);

  // The fsync barrier: returns once every block appended before the call is
  // durable. Retries failed writes/syncs (rewriting, never just re-syncing);
  // returns an error only if Stop() interrupts it.
  Status Sync() BV_EXCLUDES(mu_);
  // Starts what a Sync() would do, for an fsync that is expected soon, and
  // only if nobody is writing or syncing the log: writes and syncs every
  // record queued, on the calling thread. Otherwise returns at once. Never
  // waits for others and reports nothing: a failure is the flusher's to
  // retry, as for Sync(). Only ever makes records durable sooner.
  void SyncAhead() BV_EXCLUDES(mu_);

  // Ends the open segment: the next record starts a new one, so everything
  // appended so far can be migrated. No-op on an empty segment. Returns B:
  // every block appended before the call is in a segment with seq < B.
  uint64_t SealSegment() BV_EXCLUDES(mu_);

  // Live segments that are sealed and durable, oldest first: what the
  // migrator may take.
  std::vector<LiveSegment> MigratableSegments() BV_EXCLUDES(mu_);
  // Frees every segment with seq < `segment_seq` for reuse.
  void ReleaseSegmentsBefore(uint64_t segment_seq) BV_EXCLUDES(mu_);

  // Flushes and syncs everything, stops the flusher; returns the tail to
  // resume from. Further Appends fail.
  Status Stop(meta::TailState* tail) BV_EXCLUDES(mu_);

  // True once the log has failed for good (see fail_after_ms).
  bool failed() BV_EXCLUDES(mu_);

  // What a failed log still holds.
  struct PendingBlock {
    uint64_t lba;
    uint32_t pos, crc;
    std::vector<uint8_t> data;  // 4096 bytes; empty for a zero range
    uint32_t zero_count = 0;    // > 0: blocks [lba, lba+zero_count) read as zeros
  };
  struct FailureState {
    std::vector<PendingBlock> undurable;   // appended, never made durable, in log order (a record's zeros first)
    std::vector<LiveSegment> durable_segments;  // live segments trimmed to their durable records
    uint64_t durable_seq = 0;
    uint64_t next_seq = 0;
    uint64_t current_segment = 0;
  };
  // Only after failed(): everything the caller needs to finish the log's job.
  void TakeFailureState(FailureState* out) BV_EXCLUDES(mu_);

  struct Stats {
    uint64_t next_seq, durable_seq, written_seq;
    uint64_t oldest_segment, current_segment;
    uint32_t live_segments, free_segments;
    uint64_t live_blocks;  // blocks of log in live segments
    uint64_t append_waits, syncs, write_retries;
    uint64_t syncs_ahead;  // SyncAhead() calls that wrote and synced (successfully or not)
    bool waiting_for_space;
    bool failing;  // log writes or syncs are failing and being retried
    std::string last_error;  // the last failure of a log write or sync ("" if none yet)
  };
  Stats GetStats() BV_EXCLUDES(mu_);

  uint64_t log_blocks() const { return uint64_t{segment_blocks_} * segment_count_; }

  // Bytes of the record-buffer pool now in RAM (mincore): buffers count once
  // they are first used, in huge pages where the kernel gives them. A fixed
  // cost of at most `buffers` MiB, not a cost per cached block; bench/run.sh
  // leaves it out of the memory per block. Thread-safe (reads no state).
  uint64_t BufferPoolResidentBytes() const;

 private:
  struct Buffer;
  enum class BufState { kFree, kFilling, kQueued, kWritten };

  void FlusherLoop();
  // The flusher's two steps, also run by a Sync() caller when nobody else
  // is doing them; the caller sets io_busy_ first and clears it after. Both
  // release mu_ during the I/O.
  // Writes every queued record in seq order; the written ones move to
  // written_. Returns the first failure (the rest stay queued).
  Status WriteQueuedLocked() BV_REQUIRES(mu_);
  // True when a Sync() or SyncAhead() caller may do the log I/O itself:
  // nobody else is, and no failure is being retried by the flusher.
  bool CallerMayDoIoLocked() const BV_REQUIRES(mu_);
  // A caller's write of the queued records and fdatasync (io_busy_ held
  // meanwhile). On failure hands the retries to the flusher and returns
  // false; `why` names the caller in the warning.
  bool CallerWriteAndSyncLocked(const char* why) BV_REQUIRES(mu_);
  // fdatasync; on success every written record is durable and its buffer
  // free; on failure every written record is queued again (invariant 3).
  Status SyncWrittenLocked() BV_REQUIRES(mu_);
  // Marks durable every sealed segment whose records all are, and queues it
  // in to_announce_ for the flusher's on_segment_durable call.
  void MarkDurableSegmentsLocked() BV_REQUIRES(mu_);
  // Counts a failed write or sync; true when it is time to give up.
  bool NoteFailureLocked(const Status& s, const char* what) BV_REQUIRES(mu_);
  Status OpenRecordLocked() BV_REQUIRES(mu_);
  void SealRecordLocked(bool wake_flusher = true) BV_REQUIRES(mu_);
  // A record got its first entry: makes sure the flusher looks at it when it
  // is max_record_age_ms old (to seal it).
  void WakeFlusherForAgeLocked(const Buffer& b) BV_REQUIRES(mu_);
  bool BufferHolds(const Buffer& b, uint32_t pos) const;
  // Publishes the log positions buffer i may hold (its data blocks while it
  // is filling or queued; none once written or free) for ReadBuffered's
  // lock-free check: set before a block of it is placed, cleared only after
  // its pwrite returned.
  void PublishHeldLocked(size_t i, const Buffer* b) BV_REQUIRES(mu_);
  // Writes n records that follow one another in the file with one
  // WriteAtDirectV, all in flight at once (one 1 MiB pwrite at a time held a
  // sequential stream to ~1.6 GB/s: docs/tuning.md, "Log writes in flight").
  Status WriteBuffers(Buffer* const* bufs, size_t n);
  static constexpr size_t kMaxRecordsPerWrite = 16;
  static size_t RecordBytes(const Buffer& b);  // header block + data blocks
  // Fresh log space is reserved but never written (an unwritten extent), and
  // the first write to it changes the file's metadata, so the fdatasync after
  // it also commits the file system's journal: on ext4 that made 4k write +
  // fsync at QD1 about 25% slower on a fresh log than on one that had wrapped.
  // Before writing a small record that a sync waits for, the flusher writes
  // zeros over the never-written bytes (NeverWrittenRun) in the kPrezeroBytes
  // after it, so the next records overwrite written space: one journal
  // commit per kPrezeroBytes instead of one per sync. [begin, end) is the
  // record's byte range; *prezeroed_end is the end of the bytes handled.
  // Only by the holder of io_busy_.
  void PrezeroAfter(uint64_t begin, uint64_t end, uint64_t* prezeroed_end);
  LiveSegment* CurrentSegmentLocked() BV_REQUIRES(mu_);

  File* const file_;
  const Uuid uuid_;
  const uint32_t segment_blocks_;
  const uint32_t segment_count_;
  const uint32_t max_record_age_ms_;
  const uint32_t fail_after_ms_;
  const std::function<void(DurableSegment)> on_segment_durable_;

  Mutex mu_;
  CondVar space_cv_{&mu_};    // buffers or segments freed
  CondVar flusher_cv_{&mu_};  // work for the flusher
  CondVar durable_cv_{&mu_};  // durable_seq advanced
  struct AlignedFree {
    void operator()(uint8_t* p) const;
  };
  std::unique_ptr<uint8_t, AlignedFree> pool_;  // every buffer's memory (fixed after construction)
  size_t pool_bytes_ = 0;
  std::vector<std::unique_ptr<Buffer>> buffers_;  // fixed pool; Buffer fields guarded by mu_
  // Per buffer: (first << 32) | last, the data positions it may hold, or
  // kHeldNone. Written under mu_ (release), read without it (acquire).
  static constexpr uint64_t kHeldNone = uint64_t{1} << 32;  // first 1 > last 0
  std::unique_ptr<std::atomic<uint64_t>[]> held_;
  std::vector<Placed> placed_ BV_GUARDED_BY(mu_);  // AppendRun's blocks of the open record
  Buffer* open_ BV_GUARDED_BY(mu_) = nullptr;
  std::deque<Buffer*> queue_ BV_GUARDED_BY(mu_);      // sealed, not yet written, seq order
  std::deque<Buffer*> written_ BV_GUARDED_BY(mu_);    // written, not yet durable, seq order
  std::deque<LiveSegment> live_ BV_GUARDED_BY(mu_);   // oldest first; back() is the current segment
  uint64_t next_seq_ BV_GUARDED_BY(mu_);
  uint32_t prev_crc_ BV_GUARDED_BY(mu_);
  uint64_t durable_seq_ BV_GUARDED_BY(mu_);
  uint64_t written_seq_ BV_GUARDED_BY(mu_);
  uint64_t sync_wanted_seq_ BV_GUARDED_BY(mu_) = 0;  // someone waits for this to be durable
  // Someone (the flusher or a Sync() caller) is writing records or syncing
  // the log with mu_ released: nobody else may start either.
  bool io_busy_ BV_GUARDED_BY(mu_) = false;
  bool flusher_wants_io_ BV_GUARDED_BY(mu_) = false;  // the flusher waits for io_busy_ to clear
  // When the flusher, asleep with nothing to do, wakes up by itself;
  // time_point::min() while it is awake (or waiting for something that
  // will wake it).
  std::chrono::steady_clock::time_point flusher_wakes_at_ BV_GUARDED_BY(mu_) =
      std::chrono::steady_clock::time_point::min();
  // When the newest record got its first entry (WakeFlusherForAgeLocked).
  std::chrono::steady_clock::time_point last_record_started_ BV_GUARDED_BY(mu_) =
      std::chrono::steady_clock::time_point::min();
  // A Sync() caller's write or sync failed: callers leave the retries to the
  // flusher until it has synced successfully again.
  bool caller_io_failed_ BV_GUARDED_BY(mu_) = false;
  std::vector<DurableSegment> to_announce_ BV_GUARDED_BY(mu_);  // durable, on_segment_durable not yet called
  // The data blocks of each segment whose first record this writer sealed,
  // until the segment is announced durable (DurableSegment::blocks): 8 bytes
  // per block of the one or two segments not yet durable. Spares reading
  // every record header back from the log for meta.db's extents (one disk
  // read per record, as many reads as fsyncs at QD1).
  std::map<uint64_t, std::vector<uint64_t>> blocks_by_segment_ BV_GUARDED_BY(mu_);
  std::chrono::steady_clock::time_point last_sync_ BV_GUARDED_BY(mu_);  // the last fdatasync's end
  // Owned by whoever holds io_busy_:
  uint64_t written_since_sync_ = 0;  // bytes of records written since the last fdatasync
  uint64_t prezeroed_end_ = 0;       // PrezeroAfter's progress
  std::vector<Buffer*> io_batch_;    // WriteQueuedLocked's copy of queue_ (capacity: every buffer)
  bool stopping_ BV_GUARDED_BY(mu_) = false;
  bool flusher_exited_ BV_GUARDED_BY(mu_) = false;
  bool failed_ BV_GUARDED_BY(mu_) = false;
  int failures_ BV_GUARDED_BY(mu_) = 0;  // consecutive failures
  std::string last_error_ BV_GUARDED_BY(mu_);
  std::chrono::steady_clock::time_point failing_since_ BV_GUARDED_BY(mu_);
  bool waiting_for_space_ BV_GUARDED_BY(mu_) = false;
  uint64_t append_waits_ BV_GUARDED_BY(mu_) = 0;
  uint64_t syncs_ BV_GUARDED_BY(mu_) = 0;
  uint64_t syncs_ahead_ BV_GUARDED_BY(mu_) = 0;
  uint64_t write_retries_ BV_GUARDED_BY(mu_) = 0;
  bool prezero_error_logged_ = false;  // owned by the holder of io_busy_
  std::thread flusher_;
};

}  // namespace boostvol::log
