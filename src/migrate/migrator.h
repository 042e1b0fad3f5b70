// Migrator: copies dirty data home, in batches of whole sealed segments.
//
// A batch is a run of consecutive sealed, durable segments starting at the
// migration watermark. For every image block written in the batch the copy
// to write home is the newest one *within the batch* (or none, if a zero range
// in the batch comes after it), so after the batch the
// home holds exactly the image as of the batch's last record (DESIGN.md 2.7:
// home is always a prefix). Blocks are sorted by address and merged into
// extents, and Home::ApplyBatch makes the batch crash-atomic and durable.
//
// Order of a batch (each step only after the one before succeeded):
//   1. read the batch's records from the log, verifying every checksum, and
//      keep only (image block, log position, crc) of each block: 16 bytes per
//      block of the batch, not its data (with the extent lists built from
//      them, at most ~48 bytes per block while the batch runs);
//   2. Home::ApplyBatch (journal, zero ranges, in-place writes, fdatasync,
//      stamp). A home that streams batches (a directory) reads the bytes
//      through Batch::source in 1 MiB chunks: the dirty blocks again from the
//      log (checksums verified again), the gap blocks of a filled span from
//      home; so a batch's memory does not grow with its size. Other homes get
//      the batch materialized in one buffer. The journal holds the dirty runs
//      only (Batch::journal_extents), not the filled gaps;
//   3. on_applied: the volume drops index entries that still point into the
//      batch (those blocks now read from home) and waits out readers;
//   4. MetaStore::CommitMigration (watermark, freed segments, counters);
//   5. LogWriter::ReleaseSegmentsBefore: the slots may be reused (rule 6).
// A failure at any step leaves the segments live; the batch is retried whole
// after a capped exponential backoff (1 s .. 8 s). Writes keep going into the
// log meanwhile, and wait only when the log is full (for as long as the home
// is away: there is no bound, see docs/faults.md "Backpressure").
//
// Health (Stats): while batches fail, state is "backoff" between attempts
// (next_retry_unix says when the next one starts) and "retrying" during one;
// it is "idle"/"migrating" only while the home works. The first failure of
// an outage is logged once (error), a changed cause once (warning), a
// reminder every 10 minutes, and the recovery once (info): never one line per
// attempt or per I/O.
//
// When: when live segments exceed start_fraction of the ring, when a writer
// waits for space, when a drain is requested, and when the volume has been
// idle for idle_ms (the open segment is then sealed so all of it can go).
//
// How much (BatchByteLimit): whole segments up to max_batch_bytes, and at
// most half the free log space (a batch frees nothing until it is home: it
// should end before writers fill the rest); while writers wait for space,
// about half a second of the home's recent pace (one segment until a batch
// has shown it, or while the home moves fewer than two segments a second, as
// for sparse random blocks), so that space comes back in small steps at the
// home's pace instead of in bursts after long stalls, yet a dense backlog (a
// sequential stream) does not pay a batch's fixed syncs per segment (and no
// batch is smaller than that, writers waiting or not: on a full log half the
// free space is next to nothing); during
// an explicit drain 16 times max_batch_bytes, up to 1 GiB (denser batches mean fewer passes over the home; 4 times for a
// home that does not stream batches, which holds them in memory). Above
// start_fraction also no more than the home migrated in about two seconds in
// recent batches, one segment until a batch has shown that pace (writers may
// wait for a batch in progress: on a disk that pays per request, a batch of
// sparse blocks is slow however it is merged, and a larger one is not faster
// per block).
//
// Thread-safety: public methods are thread-safe. One background thread.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "boostvol/status.h"
#include "boostvol/volume.h"
#include "home/home.h"
#include "log/log_writer.h"
#include "meta/meta_store.h"
#include "util/thread_annotations.h"

namespace boostvol {

// Tests only: called by a batch after it read its gap blocks from home and
// before the home applies it (widens the window the home-direct write lock
// closes, so a test can show it is needed). Null in production.
extern std::atomic<void (*)()> g_migrator_after_gap_reads_for_test;

// The inputs of a batch's size (MigrateOnce takes whole segments up to
// BatchByteLimit bytes of data, at least one).
struct BatchLimitInputs {
  uint64_t max_batch_bytes = kDefaultMaxBatchBytes;
  uint64_t segment_bytes = 0;
  bool waiting_for_space = false;  // a writer waits for log space
  bool draining = false;           // an explicit drain runs
  bool streams_batches = true;     // Home::streams_batches()
  bool under_pressure = false;     // live segments >= start_fraction of the ring
  uint64_t free_segments = 0;
  double segments_per_s = 0;       // the home's recent pace, 0 until a batch ran
};
uint64_t BatchByteLimit(const BatchLimitInputs& in);

struct MigratorOptions {
  File* log = nullptr;
  log::Uuid uuid{};
  uint32_t segment_blocks = 0;
  uint32_t segment_count = 0;
  log::LogWriter* writer = nullptr;
  home::Home* home = nullptr;
  meta::MetaStore* meta = nullptr;
  double start_fraction = kDefaultMigrateStartFraction;
  uint32_t idle_ms = kDefaultIdleMigrateMs;
  uint64_t max_batch_bytes = kDefaultMaxBatchBytes;
  // Step 3 above: `migrated` holds (lba, pos, crc) of the copies now home;
  // `released_before` is the segment seq the slots below which will be freed.
  std::function<void(const std::vector<meta::IndexEntry>& migrated, uint64_t first_segment, uint64_t end_segment)>
      on_applied;
  // Milliseconds since the last write (for idle migration).
  std::function<uint64_t()> idle_for_ms;
  // Work to do on the migrator thread before each decision (meta commits).
  std::function<void()> housekeeping;
};

class Migrator {
 public:
  explicit Migrator(const MigratorOptions& options);
  ~Migrator();
  Migrator(const Migrator&) = delete;
  Migrator& operator=(const Migrator&) = delete;

  void Start();
  // Stops the thread. A batch in progress is abandoned if it has not begun
  // writing home yet (it is read again after the next mount), else finished.
  void Stop();
  // Stop() without the wait: the thread takes no new batch, and a Drain in
  // progress returns Aborted once its current batch attempt returns.
  // Thread-safe; Stop() still joins the thread.
  void RequestStop();
  void Kick();   // re-evaluate now (a segment became durable, a writer waits)

  // Migrates one batch if any segment is migratable; *did = whether it did.
  // For tests and for Drain; the background thread uses it too.
  Status MigrateOnce(bool* did) BV_EXCLUDES(mu_);

  // Held by a batch from its first read of gap blocks from home until the
  // home has applied it; home-direct writes (docs/policies.md) take it too,
  // so that a gap block read before such a write is never written back over
  // it. Lock order: the volume's write_mu_ before this.
  Mutex* home_write_mu() { return &home_write_mu_; }

  // Migrates exactly these segments (a failed log's durable part, see
  // LogWriter::TakeFailureState), retrying home failures with backoff for as
  // long as it takes. Segments whose log records cannot be read are skipped
  // and their seqs returned in *unreadable (their blocks are lost).
  Status MigrateSegments(const std::vector<log::LiveSegment>& segs, std::vector<uint64_t>* unreadable)
      BV_EXCLUDES(mu_);

  // Returns once every block written before the call is home (durably).
  // Waits through home outages (retrying); fails only if stopped.
  Status Drain(const ProgressFn& progress) BV_EXCLUDES(mu_);

  // Live tunables (thread-safe).
  void SetStartFraction(double f) { start_fraction_ = f; }
  void SetIdleMs(uint32_t ms) { idle_ms_ = ms; }
  void SetMaxBatchBytes(uint64_t b) { max_batch_bytes_ = b; }
  void SetGapBlocks(uint32_t g) { gap_blocks_ = g; }
  uint32_t gap_blocks() const { return gap_blocks_; }
  double start_fraction() const { return start_fraction_; }
  uint32_t idle_ms() const { return idle_ms_; }
  uint64_t max_batch_bytes() const { return max_batch_bytes_; }

  struct Stats {
    std::string state;  // idle | migrating | retrying | backoff | stopped
    std::string last_error;
    uint64_t batches = 0, blocks = 0, bytes = 0, extents = 0, failures = 0;
    uint64_t zero_bytes = 0;  // bytes of zero ranges applied at home (holes punched)
    int64_t failing_since_unix = 0;  // 0 when healthy
    int64_t next_retry_unix = 0;     // while in backoff: when the next attempt starts
    uint64_t batch_running_ms = 0;   // how long the batch in progress has run
    std::string meta_error;          // meta.db refuses commits (FAST full or broken)
  };
  Stats GetStats() BV_EXCLUDES(mu_);

 private:
  void Loop();
  // Drops the page cache of the log slots of `segs`, and of the readahead
  // past the last one (kReadaheadSlackBytes): File::DropCache.
  void DropBatchPages(const std::vector<log::LiveSegment>& segs);
  // More than the kernel reads ahead of a buffered read on most disks
  // (read_ahead_kb: 128 KiB by default, 2.5 MiB on this virtio disk).
  static constexpr uint64_t kReadaheadSlackBytes = uint64_t{8} << 20;
  // *log_failed tells a failure to read the log from a failure of the home.
  Status MigrateBatch(const std::vector<log::LiveSegment>& segs, bool* log_failed = nullptr) BV_REQUIRES(run_mu_);
  bool ShouldMigrate(const std::vector<log::LiveSegment>& segs);

  const MigratorOptions o_;
  std::atomic<double> start_fraction_;
  std::atomic<uint32_t> idle_ms_;
  std::atomic<uint64_t> max_batch_bytes_;
  std::atomic<uint32_t> gap_blocks_{64};
  std::atomic<bool> stopping_{false};  // Stop() was called: abandon a batch not yet applied
  Mutex run_mu_ BV_ACQUIRED_BEFORE(mu_);  // one batch at a time
  bool draining_failed_log_ BV_GUARDED_BY(run_mu_) = false;
  Mutex home_write_mu_;
  Mutex mu_;
  CondVar cv_{&mu_};
  bool stop_ BV_GUARDED_BY(mu_) = false;
  bool kicked_ BV_GUARDED_BY(mu_) = false;
  int drainers_ BV_GUARDED_BY(mu_) = 0;
  Stats stats_ BV_GUARDED_BY(mu_);
  std::string meta_error_ BV_GUARDED_BY(mu_);
  std::chrono::steady_clock::time_point last_reminder_ BV_GUARDED_BY(mu_);
  int last_err_ BV_GUARDED_BY(mu_) = 0;
  uint64_t failures_before_outage_ BV_GUARDED_BY(mu_) = 0;  // errno of the last failure (a change is logged)
  std::chrono::steady_clock::time_point batch_started_ BV_GUARDED_BY(mu_);
  // Segments migrated per second of batch time, over recent batches (0 until
  // one ran): sizes batches under log pressure (BatchByteLimit).
  double segments_per_s_ BV_GUARDED_BY(mu_) = 0;
  std::thread thread_;
};

}  // namespace boostvol
