// MetaStore: the volume's persistent metadata in FAST/meta.db (SQLite, WAL).
//
// Schema: src/meta/schema.sql (the one place it is defined and documented;
// PRAGMA user_version = kSchemaVersion). People read it with the sqlite3 CLI
// through the views defined there.
//
// Rules (DESIGN.md section 3):
//  - Never called on the per-write path. Commits are batched: per sealed
//    segment (batch of them), per migration batch, per checkpoint, and a
//    periodic counters save.
//  - The log never depends on meta.db being newer than itself: recovery trusts
//    the log's checksums; meta.db gives the starting point (watermark) and
//    hints (sealed segments prove durability, used to tell corruption from a
//    torn tail).
//  - Everything read back is untrusted: ranges are validated and violations
//    return Corruption naming the table and column.
//
// Thread-safety: all methods are serialized by an internal mutex; one
// MetaStore per process per meta.db.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "boostvol/status.h"
#include "util/thread_annotations.h"

struct sqlite3;

namespace boostvol::meta {

inline constexpr int kSchemaVersion = 1;

// The single row of table `volume`: identity and geometry, fixed at create.
struct VolumeRow {
  std::string uuid;            // 36-char lowercase 8-4-4-4-12
  uint32_t format_version = 1;
  uint64_t image_size = 0;     // bytes, multiple of block_size
  uint32_t block_size = 4096;
  uint32_t segment_blocks = 0; // blocks per segment (log_format.h limits)
  uint32_t segment_count = 0;  // segments in the ring
  std::string home;            // "dir:/absolute/path/of/SLOW"
  int64_t created_unix = 0;
  bool home_journal = true;    // DESIGN.md 2.7; false = home may be torn if FAST is lost
};

// A run of image blocks a sealed segment holds (table segment_extents, for
// the dirty_extents view). Nearby runs may be merged: then blocks >
// dirty_blocks.
inline constexpr size_t kMaxSegmentExtents = 64;  // rows per segment in segment_extents
struct SegmentExtent {
  uint64_t first_block = 0;
  uint32_t blocks = 0;
  uint32_t dirty_blocks = 0;
};

// A segment whose records are all durable in the log and not yet home.
struct SealedSegment {
  uint64_t segment_seq = 0;
  uint32_t slot = 0;            // segment_seq % segment_count
  uint64_t first_record = 0;    // record seqs it holds, inclusive
  uint64_t last_record = 0;
  uint32_t data_blocks = 0;
};

// Everything before (segment_seq, record_seq) is durable at home; the log
// replays from here. Both start at (0, 1) for a new volume.
struct Watermark {
  uint64_t segment_seq = 0;
  uint64_t record_seq = 1;
};

// Where the log writer resumes after a clean stop.
struct TailState {
  uint64_t next_record_seq = 1;
  uint64_t segment_seq = 0;          // segment the next record goes into
  uint32_t next_block_in_segment = 0;
  uint32_t prev_crc = 0;             // header_crc of record next_record_seq-1
};

struct IndexEntry {
  uint32_t lba = 0;   // image block
  uint32_t pos = 0;   // log block (absolute block number in FAST/log)
  uint32_t crc = 0;   // block_crc of that copy
};

// Written at a clean stop: the whole index as of `tail`, so the next mount
// reads no log (DESIGN.md 7, "startup proportional to cache size").
struct Checkpoint {
  TailState tail;
  Watermark watermark;
  std::vector<IndexEntry> entries;
};

struct MigrationStats {
  uint64_t blocks = 0;
  uint64_t bytes = 0;
  uint64_t extents = 0;
};

class MetaStore {
 public:
  // Creates `db_path` (must not exist; 0600), WAL mode, the schema, the volume
  // row, `segment_count` free rows in `segments`, watermark (0,1).
  // `vfs` names a registered SQLite VFS to do the file I/O (tests: a
  // power-cut simulation, tests/lib/fault_injection_vfs.h); nullptr = the
  // default one.
  static Status Create(const std::string& db_path, const VolumeRow& v, std::unique_ptr<MetaStore>* out,
                       const char* vfs = nullptr);
  // Opens an existing meta.db without following a symlink; checks
  // user_version and the tables. read_only opens with SQLITE_OPEN_READONLY;
  // otherwise the schema's additions (the part of schema.sql after its
  // BOOSTVOL-SCHEMA-ADDITIONS marker, idempotent) are applied, so a volume
  // created by an older boostvol gains the newer views. vfs names a SQLite VFS
  // (tests cut power with one); nullptr is the default VFS.
  static Status Open(const std::string& db_path, bool read_only, std::unique_ptr<MetaStore>* out,
                     const char* vfs = nullptr);
  ~MetaStore();

  Status LoadVolume(VolumeRow* v);
  // How many times the volume has been mounted (volume.mount_count).
  Status LoadMountCount(uint64_t* mount_count);
  Status LoadWatermark(Watermark* w);
  // Sealed segments at or after the watermark, in seq order.
  Status LoadSealedSegments(std::vector<SealedSegment>* out);
  // One transaction: each segment's row becomes 'sealed' with its ranges.
  // `extents` is empty or has one list per segment: the image blocks it
  // holds, which replace the segment_extents rows of its slot (only the
  // dirty_extents view reads them; never loaded back).
  Status AddSealedSegments(const std::vector<SealedSegment>& segs,
                           const std::vector<std::vector<SegmentExtent>>& extents = {});
  // One transaction: the watermark moves to `wm`; rows of segments before it
  // become 'free' (and their segment_extents rows go); stats are added to
  // the counters.
  Status CommitMigration(const Watermark& wm, const MigrationStats& stats);
  // For `boostvol check --repair` (RepairVolume) only, offline. One
  // transaction: every 'sealed' row of a segment >= segment_seq (and every
  // sealed row whose segment_seq is missing) becomes 'free', the checkpoint
  // is deleted and the stop is marked unclean, so meta.db no longer claims
  // records from that segment on durable and the next mount replays the log.
  // ForgetSegmentsFrom(0) drops every sealed row (a damaged catalogue).
  Status ForgetSegmentsFrom(uint64_t segment_seq);

  // One transaction: stores the checkpoint and marks the stop clean.
  Status SaveCheckpoint(const Checkpoint& cp);
  // *found=false unless the last stop was clean and a checkpoint is stored.
  // A checkpoint that fails validation (blob length, crc, ranges against the
  // volume row) returns Corruption.
  Status LoadCheckpoint(Checkpoint* cp, bool* found);
  // At mount, before the first write: drops the checkpoint, marks the volume
  // dirty (unclean until SaveCheckpoint), increments and returns mount_count.
  Status BeginMount(uint64_t* mount_count);

  // Counters (name -> value), saved periodically and at stop; additive ones
  // are stored as totals.
  Status SaveCounters(const std::vector<std::pair<std::string, int64_t>>& counters);
  Status LoadCounters(std::vector<std::pair<std::string, int64_t>>* counters);

  Status GetSetting(const std::string& key, std::string* value, bool* found);
  Status SetSetting(const std::string& key, const std::string& value);

  // Runs PRAGMA integrity_check (for `boostvol check`).
  Status IntegrityCheck(std::string* report);

  const std::string& path() const { return path_; }

 private:
  MetaStore(sqlite3* db, std::string path);
  Status Exec(const char* sql) BV_REQUIRES(mu_);

  Mutex mu_;
  sqlite3* db_ BV_GUARDED_BY(mu_);
  const std::string path_;
  bool extents_table_ = false;  // segment_extents exists (set once at open)
};

}  // namespace boostvol::meta
