// boostvol's engine, as the FUSE server, the CLI and the tests see it.
//
// A Volume is one cached image: writes are appended to the log on FAST and
// acknowledged; a background migrator copies them home to SLOW; reads return
// the newest copy (write buffer, then log, then home). See ../../docs and
// ../shared/DESIGN.md for the promises; the important ones:
//  - Write() returns once the engine holds the data (like a disk's volatile
//    cache). Flush() is the barrier: when it returns OK, every Write() that
//    returned before Flush() began survives kill -9 and a power cut.
//  - After a crash the image reads as a prefix of the writes in log order.
//  - Writes never fail because the log is full or the home is unreachable:
//    they wait (backpressure). Only an I/O that truly cannot be served fails.
//
// Thread-safety: every method may be called from any thread concurrently,
// except Close(), which must be the last call.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "boostvol/status.h"
#include "boostvol/tunable_defaults.h"

namespace boostvol {

class Env;

struct Progress {
  std::string what;  // "recovery", "drain", "check", "preallocating the log"
  uint64_t done = 0;
  uint64_t total = 0;
  std::string unit;  // "blocks", "records", "MiB"
};
using ProgressFn = std::function<void(const Progress&)>;

struct CreateOptions {
  std::string fast_dir;
  std::string slow_dir;
  uint64_t image_size = 0;          // bytes, multiple of 4096
  uint64_t cache_size = 0;          // bytes of log on FAST; 0 = default (min(image, 1 GiB))
  uint32_t segment_size = 4 << 20;  // bytes per log segment
  bool home_journal = true;         // DESIGN.md 2.7 (false: home is unsafe without FAST)
  // Tunables saved in meta.db at create (e.g. {"write_mode", "writearound"}); validated first.
  std::vector<std::pair<std::string, std::string>> tunables;
  Env* env = nullptr;               // nullptr = the real file system
  const char* sqlite_vfs = nullptr;  // SQLite VFS for meta.db (tests); nullptr = SQLite's default
  // Start a fresh cache on the existing home in slow_dir (a directory home or rbd:POOL/IMAGE) instead of
  // creating one: image_size may be 0 (the home's size is used). Refused while another cache holds the home.
  bool adopt = false;
  std::string* adopt_summary = nullptr;  // if set, receives what adopt found and did (for the user)
  // How the log's space on FAST is set aside (docs/tuning.md "Log preallocation"):
  //   full   reserved (fallocate), then written once with zeros: the log's first lap runs as fast as the later
  //          ones (ext4 and xfs convert each write into never-written space at its completion, which cost a
  //          1M sequential stream about a quarter of its speed). Costs one write of the whole log at create.
  //   falloc reserved only: a quick create; the first lap pays the conversions.
  bool preallocate_full = true;
  ProgressFn progress;  // optional: the zeroing of a full preallocation of 512 MiB or more (MiB)
};

// Creates a new volume. Refuses, changing nothing: missing or unwritable
// directories, FAST and SLOW the same directory, an existing volume in either,
// sizes that do not fit (cache smaller than 3 segments, image > 16 TiB).
Status CreateVolume(const CreateOptions& options);


struct OpenOptions {
  std::string fast_dir;
  Env* env = nullptr;           // nullptr = the real file system
  const char* sqlite_vfs = nullptr;  // SQLite VFS for meta.db (tests); nullptr = SQLite's default
  ProgressFn progress;          // recovery progress; may be empty
  // Migrator tunables (defaults documented in docs/tuning.md).
  double migrate_start_fraction = kDefaultMigrateStartFraction;
  uint32_t idle_migrate_ms = kDefaultIdleMigrateMs;
  uint32_t max_batch_bytes = kDefaultMaxBatchBytes;
  bool start_migrator = true;           // tests may drive migration by hand
  // After this long of continuous failures writing FAST/log, the volume
  // degrades to write-through to the home (DESIGN.md 4).
  uint32_t log_fail_after_ms = 10000;
};

struct VolumeStatus {
  std::string uuid;
  std::string fast_dir;
  std::string home;
  std::string health = "healthy";  // healthy | home-unreachable | degraded-write-through | ...
  std::string last_error;
  std::string migrator_state;      // idle | migrating | retrying | backoff | stopped
  uint64_t image_size = 0;
  uint64_t cache_bytes = 0;        // log capacity
  uint64_t dirty_blocks = 0;       // blocks whose newest copy is only in the log
  uint64_t log_used_blocks = 0;    // blocks of log in use (live segments)
  uint64_t log_total_blocks = 0;
  uint64_t segments_total = 0;
  uint64_t segments_live = 0;
  uint64_t watermark_record = 0;   // records below this are home
  uint64_t next_record = 0;
  uint64_t durable_record = 0;     // records up to this are fsync'ed
  uint64_t reads = 0, writes = 0, flushes = 0;
  uint64_t bytes_read = 0, bytes_written = 0;
  uint64_t read_blocks_cache = 0;  // blocks served from buffer or log
  uint64_t read_blocks_home = 0;   // blocks served from home
  uint64_t migrated_blocks = 0, migrated_bytes = 0, migration_batches = 0;
  uint64_t write_waits = 0;        // writes that waited for log space
  uint64_t syncs_ahead = 0;        // log syncs started ahead of an expected fsync (Volume::FlushAhead)
  uint64_t index_memory_bytes = 0;
  uint64_t log_buffer_resident_bytes = 0;  // the log writer's record buffers now in RAM (a fixed cost)
  // Zero ranges (docs/policies.md): bytes discarded (TRIM, FUSE punch-hole),
  // bytes zeroed (write-zeroes, FUSE zero-range), bytes of written blocks
  // found all-zero and logged as zero ranges instead of data (log space
  // saved), bytes zeroed at home by migration (holes punched), and blocks
  // currently covered by zero ranges not yet home.
  uint64_t trimmed_bytes = 0, zeroed_bytes = 0, zero_block_bytes = 0, home_zeroed_bytes = 0;
  uint64_t bypassed_bytes = 0;  // written straight home (write modes, sequential bypass)
  std::string bypass_order = "prefix";  // tunable bypass_order: prefix | relaxed (docs/policies.md)
  uint64_t pending_zero_blocks = 0;
  // Read cache (docs/policies.md "Read caching"): the promotion policy, and
  // blocks served from it, looked up and not found (read home), promoted,
  // evicted (CLOCK), dropped because the block was written or zeroed; slots
  // in use and in all; its RAM.
  std::string read_promote = "off";
  uint64_t read_cache_hits = 0, read_cache_misses = 0, read_cache_promotions = 0, read_cache_evictions = 0;
  uint64_t read_cache_invalidations = 0;
  uint64_t read_cache_blocks = 0, read_cache_capacity_blocks = 0, read_cache_memory_bytes = 0;
  uint64_t mount_count = 0;
  bool clean_open = false;         // opened from a clean-stop checkpoint
  // Faults (docs/faults.md): since when migration has been failing (unix
  // seconds, 0 = it works), when the migrator's next retry starts (0 = not
  // backing off now), and whether writers are waiting for log space now.
  uint64_t failing_since_unix = 0;
  uint64_t next_retry_unix = 0;
  bool writers_waiting = false;
};

class Volume {
 public:
  // Opens (and recovers, if the last stop was not clean) the volume in
  // options.fast_dir. Takes the volume lock: a second Open of the same FAST
  // returns Busy naming the holder.
  static Status Open(const OpenOptions& options, std::unique_ptr<Volume>* out);
  virtual ~Volume() = default;

  virtual uint64_t size() const = 0;
  // offset and len need not be aligned; the range must lie within size().
  virtual Status Read(uint64_t offset, size_t len, void* buf) = 0;
  virtual Status Write(uint64_t offset, size_t len, const void* buf) = 0;
  // Makes [offset, offset+len) read as zeros, in order with writes (like a
  // Write of zeros, but whole blocks are logged as a zero range: no data in
  // the log, a hole at home). `discard` only picks the counter (TRIM vs
  // write-zeroes); both read back as zeros. Unaligned edges are merged like
  // a partial write. The range must lie within size().
  virtual Status Zero(uint64_t offset, uint64_t len, bool discard) = 0;
  // The fsync barrier.
  virtual Status Flush() = 0;
  // A hint that a Flush() is expected soon: if the log is idle, starts making
  // the writes so far durable now, on the calling thread (the Flush() then
  // finds them durable). Never waits for other I/O, never fails; not a
  // barrier: only Flush() says the data is durable.
  virtual void FlushAhead() = 0;
  // Migrates every block written before the call home, durably; reports progress.
  virtual Status Drain(const ProgressFn& progress) = 0;
  virtual VolumeStatus GetStatus() = 0;
  // Live tunables (docs/tuning.md), persisted in meta.db's settings table and
  // applied at once: migrate_start_fraction (0..1), idle_migrate_ms,
  // max_batch_bytes. InvalidArgument for an unknown key or a bad value.
  virtual Status SetTunable(const std::string& key, const std::string& value) = 0;
  virtual std::vector<std::pair<std::string, std::string>> GetTunables() = 0;
  // The first step of a stop, which never waits: the migrator takes no new
  // batch, and a Drain in progress returns Aborted once its current batch
  // attempt returns (a drain must not hold a stop up while the home is away).
  // Thread-safe. Close() still does the whole stop.
  virtual void BeginClose() = 0;
  // Clean stop: flush, stop the migrator, write the checkpoint, release the lock.
  virtual Status Close() = 0;
};

struct CheckReport {
  uint64_t records_checked = 0;
  uint64_t blocks_checked = 0;
  uint64_t dirty_blocks = 0;
  std::vector<std::string> problems;  // empty = consistent
  std::string summary;
};

struct RepairReport {
  uint64_t records_kept = 0;       // records of the consistent prefix kept
  uint64_t records_dropped = 0;    // records after the damage, dropped
  std::vector<uint64_t> lost_blocks;  // image blocks whose newest copy was dropped
  std::string summary;
};

// Offline repair (`boostvol check --repair`): brings a damaged volume back to
// a consistent prefix of its log: keeps every record before the first damaged
// one, drops the rest (reporting which image blocks lose their newest copy),
// rebuilds meta.db's catalogue if it is damaged, and leaves a volume that
// mounts. Never touches a record it keeps.
Status RepairVolume(const std::string& fast_dir, const ProgressFn& progress, RepairReport* report, Env* env = nullptr);

// Offline check (the volume must not be mounted; Busy otherwise): verifies
// meta.db's integrity and ranges, every live log record's checksums and
// chaining against the watermark, and the home stamp. Changes nothing.
Status CheckVolume(const std::string& fast_dir, const ProgressFn& progress, CheckReport* report, Env* env = nullptr);

struct RecoverHomeOptions {
  std::string slow;       // the home: a SLOW directory or rbd:POOL/IMAGE
  std::string ceph_conf;  // for an rbd: home (empty: the URI's or the default)
  std::string ceph_id;
  Env* env = nullptr;     // nullptr = the real file system
};

struct RecoverHomeReport {
  bool journal_replayed = false;  // a migration batch the lost cache left half applied was finished
  std::string summary;            // what was found and done, for the user
};

// `boostvol recover-home SLOW`: after FAST was lost for good, makes the home
// copy usable without boostvol (DESIGN.md 2.7). Finishes a migration batch the
// lost cache left half applied (from the home's redo journal), changes nothing
// else; the stamp keeps naming the volume. Busy while a cache holds the home.
Status RecoverHome(const RecoverHomeOptions& options, RecoverHomeReport* report);

}  // namespace boostvol
