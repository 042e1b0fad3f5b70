// VolumeImpl: the engine behind boostvol::Volume (include/boostvol/volume.h).
//
// Read path: look up each block in the index (under index_mu_ shared); a block
// in the index is read from its write buffer or the log and its checksum is
// verified; a block not in the index is read from home. While a reader uses a
// log position it holds a count on that segment slot (slot_readers_), and the
// migrator does not release a slot until its count is zero. Home runs are read
// after those counts are dropped: a home read may wait for the home.
//
// Write path: partial blocks are merged with the block's current contents
// first (optimistically, validated under write_mu_ against the index and the
// migration epoch, retried if a concurrent write or migration intervened);
// then, under write_mu_, every block is appended to the log, and indexed by
// the LogWriter's callback before its record can be sealed (so the migrator
// never takes a block the index does not know). The log order equals the
// order in which writes take write_mu_: overlapping writes are ordered
// (DESIGN.md 2.4).
//
// Zero ranges (TRIM, write-zeroes, all-zero blocks; docs/policies.md): a zero
// range is appended to the log under write_mu_ like a write; when it is
// placed, its blocks' index entries are removed (older logged copies lose)
// and it is added to pending_zeros_, tagged with its segment. A read looks
// in the index first (a later write wins), then pending_zeros_ (zeros), then
// home. A migration batch applies its zero ranges at home before its data and
// then drops the ranges of its segments from pending_zeros_. A clean stop
// saves pending_zeros_ beside the checkpoint (meta.db setting
// checkpoint.pending_zeros); recovery rebuilds it from the log.
//
// Read cache (docs/policies.md "Read caching", src/cache/read_cache.h): a
// block neither in the index nor in pending_zeros_ is looked up in the clean
// read cache on FAST before home; a block read from home is offered to it
// with a ticket taken under index_mu_ at the lookup. Every path that changes
// what a block reads as (IndexPlacedRun, ZeroPlaced, write-through, and any
// path writing home behind the index) calls read_cache_->Invalidate() with
// index_mu_ held exclusively, after the change: slots are dropped and
// promotions in flight are discarded.
//
// Lock order: write_mu_ -> LogWriter::mu_ -> index_mu_ -> ReadCache::mu_ (checked by clang).
#pragma once

#include <atomic>
#include <memory>
#include <vector>

#include "boostvol/volume.h"
#include "cache/read_cache.h"
#include "home/home.h"
#include "index/block_index.h"
#include "index/zero_map.h"
#include "log/log_writer.h"
#include "meta/meta_store.h"
#include "migrate/migrator.h"
#include "util/env.h"
#include "util/repeated_error.h"
#include "util/thread_annotations.h"

namespace boostvol {

class VolumeImpl : public Volume {
 public:
  VolumeImpl() = default;
  ~VolumeImpl() override;

  uint64_t size() const override { return row_.image_size; }
  Status Read(uint64_t offset, size_t len, void* buf) override;
  Status Write(uint64_t offset, size_t len, const void* buf) override;
  Status Zero(uint64_t offset, uint64_t len, bool discard) override;
  Status Flush() override;
  void FlushAhead() override;
  Status Drain(const ProgressFn& progress) override;
  VolumeStatus GetStatus() override;
  Status SetTunable(const std::string& key, const std::string& value) override;
  std::vector<std::pair<std::string, std::string>> GetTunables() override;
  void BeginClose() override;
  Status Close() override;

  // Migrates one batch now (tests drive migration by hand with this).
  Status MigrateOnce(bool* did);
  // The read cache (tests: hooks and stats).
  ReadCache* read_cache_for_test() { return read_cache_.get(); }

 private:
  friend Status Volume::Open(const OpenOptions&, std::unique_ptr<Volume>*);
  friend class VolumeOpener;

  struct Version {
    bool cached = false;
    IndexValue value;
    uint64_t epoch = 0;
  };

  // Read() without its counters.
  Status ReadUncounted(uint64_t offset, size_t len, void* buf);
  // Reads n whole blocks starting at lba into out (n <= 256). Inside a NoWaitScope returns
  // WouldBlock, having changed nothing, when any part would wait for I/O.
  Status ReadBlocks(uint64_t lba, uint32_t n, uint8_t* out);
  // DESIGN.md 4, "fast dir fails": drains what the failed log still holds
  // home and switches every later write to write-through.
  Status EnterDegradedLocked() BV_REQUIRES(write_mu_);
  Status WriteThroughLocked(uint64_t offset, size_t len, const uint8_t* src) BV_REQUIRES(write_mu_);
  // Home-direct writes (write modes, sequential bypass; docs/policies.md).
  // The run length of the sequential stream this write continues, before it
  // (0 for a new stream); records the write in streams_.
  uint64_t TrackStreamLocked(uint64_t offset, uint64_t len) BV_REQUIRES(write_mu_);
  // Rule (a): true if any block of [lba0, lba0+n) has a copy in the log
  // (an index entry) or lies in a pending zero range.
  bool AnyCachedLocked(uint64_t lba0, uint64_t n) BV_REQUIRES(write_mu_);
  // bypass_order=prefix (DESIGN.md 2.7): true if the log holds nothing that is
  // not home yet (no index entry, no pending zero range): a home-direct write
  // then leaves the home alone at a prefix of the writes. *dirty_blocks gets
  // how many blocks are not home yet.
  bool LogAllHomeLocked(uint64_t* dirty_blocks) BV_REQUIRES(write_mu_);
  // bypass_order=prefix: a write that would go home-direct but finds at most
  // a little not yet home waits (without write_mu_) for the migrator to take
  // it home, at most kBypassDrainWaitMs. OK once the log held nothing dirty.
  Status DrainForBypass() BV_EXCLUDES(write_mu_);
  // Rule (b): makes every earlier log record durable, then writes the whole
  // blocks home and syncs them, all before write_mu_ is released (so no later
  // record exists yet). On error nothing is acknowledged: log the write.
  Status WriteDirectLocked(uint64_t offset, size_t len, const uint8_t* src) BV_REQUIRES(write_mu_);
  // Reads from home; while the home cannot be read, retries with backoff for
  // up to home_read_timeout_s (three quick tries in any case; no more once
  // a stop has begun), then fails with EIO. Only this read fails.
  Status ReadHome(uint64_t offset, uint8_t* dst, size_t n);
  // Reads one block and reports the version it read (for merging).
  Status ReadBlockVersion(uint64_t lba, uint8_t* out, Version* v);
  // BlockIndex::Prefetch without index_mu_ (index_ is set once, at open).
  void PrefetchIndex(uint64_t lba) BV_NO_THREAD_SAFETY_ANALYSIS { index_->Prefetch(static_cast<uint32_t>(lba)); }
  // LogWriter::PlacedBatchFn: indexes the blocks of a write as they enter a
  // record (one exclusive hold of index_mu_ per record, not per block).
  static void IndexPlacedRun(void* ctx, const log::LogWriter::Placed* blocks, size_t n);
  // LogWriter::ZeroPlacedFn: drops the range's index entries, adds it to pending_zeros_.
  static void ZeroPlaced(void* ctx, uint64_t first, uint32_t count, uint64_t segment_seq);
  // Appends zero ranges for whole blocks [first, end) (or writes them through when degraded).
  Status ZeroBlocksLocked(uint64_t first, uint64_t end) BV_REQUIRES(write_mu_);
  Status ZeroThroughLocked(uint64_t first, uint64_t end) BV_REQUIRES(write_mu_);
  // The pending zero ranges as text for meta.db, and back (clean stop).
  std::string EncodePendingZeros() BV_EXCLUDES(index_mu_);
  bool VersionStillCurrent(uint64_t lba, const Version& v) BV_REQUIRES(write_mu_);
  void OnMigrated(const std::vector<meta::IndexEntry>& migrated, uint64_t first_segment, uint64_t end_segment);
  void OnSegmentDurable(log::DurableSegment seg);
  void Housekeeping();
  Status ApplyTunable(const std::string& key, const std::string& value);
  // Applies read_promote / read_promote_hits / read_cache_size to read_cache_.
  Status ConfigureReadCache() BV_EXCLUDES(rc_config_mu_);
  void SaveCounters();
  // At open: the totals SaveCounters and CommitMigration left in meta.db carry
  // on, so counters are over the volume's life (docs/status-json.md).
  void RestoreCounters();
  uint64_t NowMs() const;
  uint32_t SlotOf(uint32_t pos) const { return pos / row_.segment_blocks; }

  // Fixed after Open.
  Env* env_ = nullptr;
  std::string fast_path_;
  std::unique_ptr<Dir> fast_;
  std::unique_ptr<FileLock> lock_;
  std::unique_ptr<meta::MetaStore> meta_;
  std::unique_ptr<home::Home> home_;
  std::unique_ptr<File> log_file_;
  meta::VolumeRow row_;
  log::Uuid uuid_{};
  uint64_t image_blocks_ = 0;
  uint64_t mount_count_ = 0;
  bool clean_open_ = false;

  Mutex write_mu_ BV_ACQUIRED_BEFORE(index_mu_);
  SharedMutex index_mu_;
  std::unique_ptr<BlockIndex> index_ BV_PT_GUARDED_BY(index_mu_);
  uint64_t migrate_epoch_ BV_GUARDED_BY(index_mu_) = 0;
  ZeroMap pending_zeros_ BV_GUARDED_BY(index_mu_);  // zero ranges logged, not yet home
  std::unique_ptr<std::atomic<uint32_t>[]> slot_readers_;

  std::unique_ptr<log::LogWriter> writer_;
  std::unique_ptr<Migrator> migrator_;
  // The migrator to kick when a segment becomes durable. The log writer's
  // flusher thread reads it; it is set once the migrator exists (after the
  // writer has started) and cleared before the migrator goes away.
  std::atomic<Migrator*> kick_migrator_{nullptr};

  // A durable segment that meta.db does not list yet; Housekeeping records
  // it with its extents (for the dirty_extents view).
  struct PendingSealed {
    meta::SealedSegment row;
    std::vector<uint64_t> blocks;  // its data blocks, when the log writer knew them (have_blocks)
    bool have_blocks = false;
    std::vector<meta::SegmentExtent> extents;  // worked out once (have_extents), kept for a retry
    bool have_extents = false;
  };
  Mutex pending_mu_;
  std::vector<PendingSealed> pending_sealed_ BV_GUARDED_BY(pending_mu_);

  std::atomic<uint64_t> last_write_ms_{0};
  std::atomic<uint64_t> last_counters_save_ms_{0};
  std::atomic<uint64_t> reads_{0}, writes_{0}, flushes_{0}, bytes_read_{0}, bytes_written_{0};
  std::atomic<uint64_t> read_blocks_cache_{0}, read_blocks_home_{0}, checksum_failures_{0}, home_read_failures_{0};
  uint64_t migrated_blocks_base_ = 0, migrated_bytes_base_ = 0, migration_batches_base_ = 0;  // RestoreCounters
  std::atomic<uint64_t> trimmed_bytes_{0}, zeroed_bytes_{0}, zero_block_bytes_{0};
  std::atomic<bool> zero_detect_{true};  // tunable zero_detect
  std::atomic<uint8_t> write_mode_{0};   // tunable write_mode (WriteMode)
  std::atomic<uint64_t> sequential_cutoff_{0};  // tunable sequential_cutoff (0 = off)
  std::atomic<uint64_t> bypassed_bytes_{0};  // bytes written home-direct
  std::atomic<bool> bypass_relaxed_{false};  // tunable bypass_order (false: prefix)
  // bypass_order=prefix: a write that finds at most this much not yet home
  // (or 2 x sequential_cutoff if larger) waits for it to go home, then bypasses.
  static constexpr uint64_t kBypassDrainMaxBytes = 8ull << 20;
  static constexpr uint64_t kBypassDrainWaitMs = 5000;
  // After a wait that did not leave the log clean (other writers dirtied it
  // again), no new wait before this time (NowMs): writes are logged meanwhile.
  // While migration fails, no write waits either (Migrator::GetStats).
  std::atomic<uint64_t> bypass_drain_quiet_until_ms_{0};
  struct Stream {
    uint64_t next = 0;  // the offset that continues it
    uint64_t run = 0;   // bytes written in sequence so far
    uint64_t used = 0;  // LRU clock
  };
  static constexpr int kStreams = 8;
  Stream streams_[kStreams] BV_GUARDED_BY(write_mu_);
  uint64_t stream_clock_ BV_GUARDED_BY(write_mu_) = 0;
  RepeatedError direct_errors_;  // home-direct writes refused or failing (logged instead)
  bool direct_unsupported_ BV_GUARDED_BY(write_mu_) = false;  // the home has no WriteDirect
  bool direct_said_ BV_GUARDED_BY(write_mu_) = false;         // the 2.7 warning, once a mount
  // Read cache: made at open after the saved tunables are read; never reset.
  std::unique_ptr<ReadCache> read_cache_;
  Mutex rc_config_mu_;
  PromotePolicy read_promote_ BV_GUARDED_BY(rc_config_mu_) = PromotePolicy::kOff;
  uint32_t read_promote_hits_ BV_GUARDED_BY(rc_config_mu_) = 2;
  uint64_t read_cache_size_ BV_GUARDED_BY(rc_config_mu_) = 0;  // 0 = a quarter of the log
  uint64_t rc_hits_base_ = 0, rc_misses_base_ = 0, rc_promotions_base_ = 0, rc_evictions_base_ = 0;  // RestoreCounters
  std::atomic<bool> closed_{false};
  std::atomic<bool> stopping_{false};   // BeginClose: reads stop waiting for the home
  std::atomic<uint32_t> home_read_timeout_s_{kDefaultHomeReadTimeoutS};
  std::atomic<bool> degraded_{false};   // write-through: the log has failed
  std::atomic<uint64_t> lost_blocks_{0};  // blocks whose only copy was in an unreadable log
  RepeatedError home_read_errors_;        // one log line per outage, not per read
  RepeatedError home_read_waits_;         // reads waiting for an unreadable home (one line per outage)
  RepeatedError merge_waits_;             // partial writes waiting for an unreadable home
  RepeatedError meta_errors_;             // meta.db refusing sealed-segment commits (FAST full, failing)
};

}  // namespace boostvol
