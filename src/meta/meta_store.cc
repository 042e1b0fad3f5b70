// MetaStore over SQLite. The schema is src/meta/schema.sql (compiled in as
// boostvol::kSchemaSql); docs/metadata.md explains it for people.
//
// How this file keeps the rules of meta_store.h:
//  - One connection per MetaStore, opened with SQLITE_OPEN_NOFOLLOW (the
//    directory part of the path is resolved with realpath first, so only a
//    symlink planted as meta.db itself, or inside FAST, is refused) and
//    SQLITE_OPEN_FULLMUTEX; every method also holds mu_.
//  - Writes run in BEGIN IMMEDIATE ... COMMIT (Txn); a Txn that is not
//    committed rolls back when it goes out of scope.
//  - Every value read is checked: its SQLite type, its range, and its
//    consistency with the volume row. A violation is Status::Corruption
//    naming table.column and pointing at `boostvol check FAST`. Values about
//    to be written are checked by the same functions and refused with
//    InvalidArgument, so a caller's bug shows up at write time, not at the
//    next mount.
//  - We never open(2)/close(2) meta.db or its -wal/-shm while SQLite has them
//    open: closing any descriptor of a file drops the process's POSIX locks on
//    it, SQLite's included. Permissions of -wal/-shm are fixed by path.
#include "meta/meta_store.h"

#include <fcntl.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <limits>
#include <string_view>

#include <spdlog/spdlog.h>

#include "log/log_format.h"
#include "schema_sql.h"
#include "util/crc32c.h"
#include "util/repeated_error.h"

namespace boostvol::meta {
namespace {

constexpr int32_t kApplicationId = 0x42564D44;  // "BVMD": `file meta.db` names it
constexpr int kBusyTimeoutMs = 5000;
constexpr int kHistoryRowsPerCounter = 1000;
constexpr size_t kMaxNameLen = 128;                // counter names, setting keys
constexpr size_t kMaxSettingValueLen = 64 * 1024;  // setting values
constexpr size_t kMaxHomeLen = 4096;
constexpr int64_t kMaxInt = std::numeric_limits<int64_t>::max();
constexpr uint32_t kMaxU32 = std::numeric_limits<uint32_t>::max();

const char* const kTables[] = {"volume", "segments", "watermark", "checkpoint",
                               "counters", "counters_history", "settings"};
const char* const kViews[] = {"status", "segments_live", "stats", "dirty_extents", "stats_history"};
// schema.sql: what follows this line is idempotent and run at every read-write open.
constexpr std::string_view kAdditionsMarker = "-- BOOSTVOL-SCHEMA-ADDITIONS";

int64_t NowUnix() { return static_cast<int64_t>(std::time(nullptr)); }

std::string DirOf(const std::string& path) {
  size_t p = path.rfind('/');
  if (p == std::string::npos) return ".";
  if (p == 0) return "/";
  return path.substr(0, p);
}

std::string BaseOf(const std::string& path) {
  size_t p = path.rfind('/');
  return p == std::string::npos ? path : path.substr(p + 1);
}

// For messages: at most 64 characters, anything unprintable as '?'.
std::string Printable(std::string_view s) {
  std::string out;
  for (char c : s.substr(0, 64)) out += (c >= 0x20 && c < 0x7f) ? c : '?';
  if (s.size() > 64) out += "...";
  return out;
}

Status Logged(Status s) {
  spdlog::error("meta: {}", s.ToString());
  return s;
}

// FAST full, read-only or failing: the same commit fails again on every
// retry (the migrator's housekeeping retries every 100 ms). The first error
// is logged in full, then one summary line a minute.
Status LoggedRepeating(Status s) {
  static RepeatedError errors;
  uint64_t more = 0;
  switch (errors.Occurred(&more)) {
    case RepeatedError::kFirst:
      spdlog::error("meta: {} (further meta.db errors of this kind: one line a minute)", s.ToString());
      break;
    case RepeatedError::kSummary:
      spdlog::error("meta: {} more meta.db error(s) in the last minute; last: {}", more, s.ToString());
      break;
    case RepeatedError::kQuiet: break;
  }
  return s;
}

std::string CheckHint(const std::string& path) {
  return "; meta.db is damaged or was edited by hand: run `boostvol check " + DirOf(path) + "`";
}

// Stored metadata failed a check. `what` names table.column and the problem.
Status Corrupt(const std::string& path, const std::string& what) {
  return Logged(Status::Corruption(path + ": " + what + CheckHint(path)));
}

// A caller asked to store something that would not pass the checks on read.
Status Refused(const std::string& path, const std::string& doing, const std::string& what) {
  return Logged(Status::InvalidArgument(path + ": refusing " + doing + ": " + what));
}

// Every SQLite error becomes a Status carrying sqlite3_errmsg and what was
// being done.
Status FromSqlite(sqlite3* db, int rc, const std::string& path, const std::string& doing) {
  std::string msg = path + ": " + doing + ": " + (db != nullptr ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
  int sys = db != nullptr ? sqlite3_system_errno(db) : 0;
  switch (rc & 0xff) {
    case SQLITE_NOTADB:
      return Logged(Status::Corruption(msg + " (this is not a SQLite database: overwritten, truncated or damaged?)" +
                                       CheckHint(path)));
    case SQLITE_CORRUPT:
      return Logged(Status::Corruption(msg + " (the SQLite file is damaged)" + CheckHint(path)));
    case SQLITE_FULL:
      return LoggedRepeating(Status::NoSpace(msg));
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
      return Logged(Status::Busy(msg + " (another process is writing meta.db)"));
    case SQLITE_READONLY:
      return LoggedRepeating(Status::IoError(EROFS, msg));
    case SQLITE_PERM:
    case SQLITE_AUTH:
      return Logged(Status::IoError(EACCES, msg));
    case SQLITE_NOMEM:
      return Logged(Status::IoError(ENOMEM, msg));
    case SQLITE_TOOBIG:
      return Logged(Status::InvalidArgument(msg));
    case SQLITE_CONSTRAINT:
      return Logged(Status::InvalidArgument(msg + " (a value breaks a constraint of the schema)"));
    case SQLITE_CANTOPEN:
    case SQLITE_IOERR:
    default:
      return LoggedRepeating(Status::IoError(sys != 0 ? sys : EIO, msg));
  }
}

// The connection and the path (for messages) that helpers work on. Members
// build one while holding mu_.
struct Db {
  sqlite3* db;
  const std::string& path;
};

Status ExecSql(const Db& d, const char* sql, const std::string& doing) {
  char* err = nullptr;
  int rc = sqlite3_exec(d.db, sql, nullptr, nullptr, &err);
  sqlite3_free(err);  // sqlite3_errmsg says the same
  if (rc != SQLITE_OK) return FromSqlite(d.db, rc, d.path, doing);
  return Status::OK();
}

// A prepared statement (finalized on scope exit). Bind errors are kept and
// reported by the next Step.
class Stmt {
 public:
  explicit Stmt(const Db& d) : d_(d) {}
  ~Stmt() { sqlite3_finalize(st_); }
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;

  Status Prepare(const char* sql, std::string doing) {
    doing_ = std::move(doing);
    int rc = sqlite3_prepare_v2(d_.db, sql, -1, &st_, nullptr);
    if (rc != SQLITE_OK) return FromSqlite(d_.db, rc, d_.path, "preparing a statement for " + doing_);
    return Status::OK();
  }
  void BindInt(int i, int64_t v) { Note(sqlite3_bind_int64(st_, i, v)); }
  void BindText(int i, const std::string& s) {
    Note(sqlite3_bind_text64(st_, i, s.data(), s.size(), SQLITE_TRANSIENT, SQLITE_UTF8));
  }
  // `p` must stay valid until the statement is reset or finalized.
  void BindBlob(int i, const void* p, size_t n) {
    static const char kEmpty = 0;  // a null pointer would store NULL, not an empty blob
    Note(sqlite3_bind_blob64(st_, i, n != 0 ? p : &kEmpty, n, SQLITE_STATIC));
  }
  void BindNull(int i) { Note(sqlite3_bind_null(st_, i)); }

  // *row is true when a row is ready to read.
  Status Step(bool* row) {
    *row = false;
    if (bind_rc_ != SQLITE_OK) return FromSqlite(d_.db, bind_rc_, d_.path, "binding values for " + doing_);
    int rc = sqlite3_step(st_);
    if (rc == SQLITE_ROW) {
      *row = true;
      return Status::OK();
    }
    if (rc == SQLITE_DONE) return Status::OK();
    return FromSqlite(d_.db, rc, d_.path, doing_);
  }
  // Runs a statement that returns no rows.
  Status Run() {
    bool row = false;
    return Step(&row);
  }
  // Ready to bind and run again.
  void Reset() {
    sqlite3_reset(st_);  // returns the last Step's error, already reported
    sqlite3_clear_bindings(st_);
    bind_rc_ = SQLITE_OK;
  }
  sqlite3_stmt* get() const { return st_; }

 private:
  void Note(int rc) {
    if (bind_rc_ == SQLITE_OK) bind_rc_ = rc;
  }
  Db d_;
  sqlite3_stmt* st_ = nullptr;
  std::string doing_;
  int bind_rc_ = SQLITE_OK;
};

// BEGIN [IMMEDIATE] ... COMMIT; rolls back unless committed.
class Txn {
 public:
  explicit Txn(const Db& d) : d_(d) {}
  ~Txn() {
    if (active_ && sqlite3_get_autocommit(d_.db) == 0) {
      int rc = sqlite3_exec(d_.db, "ROLLBACK", nullptr, nullptr, nullptr);
      if (rc != SQLITE_OK) spdlog::error("meta: {}: rolling back: {}", d_.path, sqlite3_errmsg(d_.db));
    }
  }
  Txn(const Txn&) = delete;
  Txn& operator=(const Txn&) = delete;

  // write: BEGIN IMMEDIATE (takes the write lock now, so COMMIT does not
  // fail on a lock); otherwise a read snapshot.
  Status Begin(bool write, const std::string& doing) {
    doing_ = doing;
    BV_RETURN_IF_ERROR(ExecSql(d_, write ? "BEGIN IMMEDIATE" : "BEGIN", "starting a transaction for " + doing_));
    active_ = true;
    return Status::OK();
  }
  Status Commit() {
    BV_RETURN_IF_ERROR(ExecSql(d_, "COMMIT", "committing " + doing_));
    active_ = false;
    return Status::OK();
  }

 private:
  Db d_;
  std::string doing_;
  bool active_ = false;
};

const char* TypeName(int t) {
  switch (t) {
    case SQLITE_INTEGER: return "an integer";
    case SQLITE_FLOAT: return "a real number";
    case SQLITE_TEXT: return "text";
    case SQLITE_BLOB: return "a blob";
    case SQLITE_NULL: return "NULL";
  }
  return "of an unknown type";
}

// Reads the columns of one result row, checking each value's type and range.
class Row {
 public:
  Row(const Stmt& st, const std::string& path, const char* table) : st_(st.get()), path_(path), table_(table) {}

  Status Int(int col, const char* column, int64_t lo, int64_t hi, int64_t* out) const {
    int t = sqlite3_column_type(st_, col);
    if (t != SQLITE_INTEGER) return Corrupt(path_, Name(column) + " is " + TypeName(t) + ", not an integer");
    int64_t v = sqlite3_column_int64(st_, col);
    if (v < lo || v > hi) {
      return Corrupt(path_, Name(column) + " = " + std::to_string(v) + " is outside " + std::to_string(lo) + ".." +
                                std::to_string(hi));
    }
    *out = v;
    return Status::OK();
  }
  Status U64(int col, const char* column, uint64_t* out) const {
    int64_t v = 0;
    BV_RETURN_IF_ERROR(Int(col, column, 0, kMaxInt, &v));
    *out = static_cast<uint64_t>(v);
    return Status::OK();
  }
  Status U32(int col, const char* column, uint32_t* out) const {
    int64_t v = 0;
    BV_RETURN_IF_ERROR(Int(col, column, 0, kMaxU32, &v));
    *out = static_cast<uint32_t>(v);
    return Status::OK();
  }
  Status Bool(int col, const char* column, bool* out) const {
    int64_t v = 0;
    BV_RETURN_IF_ERROR(Int(col, column, 0, 1, &v));
    *out = v == 1;
    return Status::OK();
  }
  bool IsNull(int col) const { return sqlite3_column_type(st_, col) == SQLITE_NULL; }
  Status Text(int col, const char* column, size_t max_len, std::string* out) const {
    int t = sqlite3_column_type(st_, col);
    if (t != SQLITE_TEXT) return Corrupt(path_, Name(column) + " is " + TypeName(t) + ", not text");
    const unsigned char* p = sqlite3_column_text(st_, col);
    size_t n = static_cast<size_t>(sqlite3_column_bytes(st_, col));
    if (n > max_len) return Corrupt(path_, Name(column) + " is " + std::to_string(n) + " bytes long, more than " +
                                               std::to_string(max_len));
    out->assign(p != nullptr ? reinterpret_cast<const char*>(p) : "", n);
    return Status::OK();
  }
  // A blob of exactly `want` bytes.
  Status Blob(int col, const char* column, size_t want, const uint8_t** data) const {
    int t = sqlite3_column_type(st_, col);
    if (t != SQLITE_BLOB) return Corrupt(path_, Name(column) + " is " + TypeName(t) + ", not a blob");
    const void* p = sqlite3_column_blob(st_, col);
    size_t n = static_cast<size_t>(sqlite3_column_bytes(st_, col));
    if (n != want) {
      return Corrupt(path_, Name(column) + " is " + std::to_string(n) + " bytes long; " + std::to_string(want) +
                                " expected");
    }
    *data = static_cast<const uint8_t*>(p);
    return Status::OK();
  }

 private:
  std::string Name(const char* column) const { return std::string(table_) + "." + column; }
  sqlite3_stmt* st_;
  const std::string& path_;
  const char* table_;
};

// ---- Checks shared by reads (-> Corruption) and writes (-> InvalidArgument).
// Each returns "" or what is wrong, naming table.column.

bool IsUuid(const std::string& s) {
  if (s.size() != 36) return false;
  for (size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    if (i == 8 || i == 13 || i == 18 || i == 23) {
      if (c != '-') return false;
    } else if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) {
      return false;
    }
  }
  return true;
}

uint64_t LogBlocks(const VolumeRow& v) { return uint64_t{v.segment_count} * v.segment_blocks; }
uint64_t ImageBlocks(const VolumeRow& v) { return v.image_size / log::kBlockSize; }

std::string VolumeProblem(const VolumeRow& v) {
  if (!IsUuid(v.uuid)) return "volume.uuid '" + Printable(v.uuid) + "' is not a lowercase 8-4-4-4-12 UUID";
  if (v.format_version != 1) {
    return "volume.format_version = " + std::to_string(v.format_version) + " is not 1, the one this boostvol knows";
  }
  if (v.block_size != log::kBlockSize) return "volume.block_size = " + std::to_string(v.block_size) + " is not 4096";
  if (v.segment_blocks < log::kMinSegmentBlocks || v.segment_blocks > log::kMaxSegmentBlocks) {
    return "volume.segment_blocks = " + std::to_string(v.segment_blocks) + " is outside " +
           std::to_string(log::kMinSegmentBlocks) + ".." + std::to_string(log::kMaxSegmentBlocks);
  }
  if (v.segment_count < log::kMinSegments) {
    return "volume.segment_count = " + std::to_string(v.segment_count) + " is below the minimum " +
           std::to_string(log::kMinSegments);
  }
  if (LogBlocks(v) > kMaxU32) {
    return "volume.segment_count = " + std::to_string(v.segment_count) + " segments of " +
           std::to_string(v.segment_blocks) + " blocks make a log of 2^32 blocks or more (log positions are 32-bit)";
  }
  if (v.image_size == 0 || v.image_size % log::kBlockSize != 0 ||
      v.image_size > log::kMaxImageBlocks * log::kBlockSize) {
    return "volume.image_size = " + std::to_string(v.image_size) +
           " is not a positive multiple of 4096 up to " + std::to_string(log::kMaxImageBlocks * log::kBlockSize);
  }
  if (v.home.empty() || v.home.size() > kMaxHomeLen) return "volume.home is empty or too long";
  size_t colon = v.home.find(':');
  bool scheme_ok = colon != std::string::npos && colon > 0 && colon + 1 < v.home.size();
  for (size_t i = 0; scheme_ok && i < colon; ++i) scheme_ok = v.home[i] >= 'a' && v.home[i] <= 'z';
  for (char c : v.home) scheme_ok = scheme_ok && static_cast<unsigned char>(c) >= 0x20 && c != 0x7f;
  if (!scheme_ok) return "volume.home '" + Printable(v.home) + "' is not of the form 'dir:/path'";
  return "";
}

std::string WatermarkProblem(const Watermark& w) {
  if (w.segment_seq > static_cast<uint64_t>(kMaxInt)) return "watermark.segment_seq is out of range";
  if (w.record_seq == 0 || w.record_seq > static_cast<uint64_t>(kMaxInt)) {
    return "watermark.record_seq = " + std::to_string(w.record_seq) + " is outside 1..2^63-1";
  }
  return "";
}

// One sealed segment on its own. Its place relative to the watermark is not
// checked here: meta.db's watermark may lag the home's (a crash between the
// home stamp and CommitMigration), and the home's is the authority.
std::string SegmentProblem(const VolumeRow& v, const SealedSegment& s) {
  std::string where = "segments (slot " + std::to_string(s.slot) + ", segment_seq " + std::to_string(s.segment_seq) + ")";
  if (s.slot >= v.segment_count) {
    return where + ": slot is outside 0.." + std::to_string(v.segment_count - 1);
  }
  if (s.segment_seq > static_cast<uint64_t>(kMaxInt)) return where + ": segment_seq is out of range";
  if (s.segment_seq % v.segment_count != s.slot) {
    return where + ": slot is not segment_seq % segment_count (" + std::to_string(s.segment_seq % v.segment_count) +
           ")";
  }
  if (s.first_record == 0 || s.first_record > s.last_record || s.last_record > static_cast<uint64_t>(kMaxInt)) {
    return where + ": first_record " + std::to_string(s.first_record) + " .. last_record " +
           std::to_string(s.last_record) + " is not a valid range";
  }
  if (s.last_record - s.first_record >= v.segment_blocks) {
    return where + ": holds more records than a segment has blocks";
  }
  if (s.data_blocks > v.segment_blocks) {
    return where + ": data_blocks = " + std::to_string(s.data_blocks) + " is more than segment_blocks";
  }
  return "";
}

std::string CheckpointProblem(const VolumeRow& v, const Checkpoint& cp) {
  const TailState& t = cp.tail;
  std::string wm = WatermarkProblem(cp.watermark);
  if (!wm.empty()) return "checkpoint." + wm;
  if (t.next_record_seq == 0 || t.next_record_seq > static_cast<uint64_t>(kMaxInt)) {
    return "checkpoint.next_record_seq = " + std::to_string(t.next_record_seq) + " is outside 1..2^63-1";
  }
  if (t.segment_seq > static_cast<uint64_t>(kMaxInt)) return "checkpoint.segment_seq is out of range";
  if (t.next_block_in_segment > v.segment_blocks) {
    return "checkpoint.next_block_in_segment = " + std::to_string(t.next_block_in_segment) +
           " is more than segment_blocks (" + std::to_string(v.segment_blocks) + ")";
  }
  if (t.segment_seq < cp.watermark.segment_seq || t.segment_seq - cp.watermark.segment_seq > v.segment_count) {
    return "checkpoint.segment_seq = " + std::to_string(t.segment_seq) +
           " is not within segment_count segments after the checkpoint's watermark (segment " +
           std::to_string(cp.watermark.segment_seq) + ")";
  }
  if (t.next_record_seq < cp.watermark.record_seq) {
    return "checkpoint.next_record_seq = " + std::to_string(t.next_record_seq) +
           " is before the checkpoint's watermark record " + std::to_string(cp.watermark.record_seq);
  }
  const uint64_t log_blocks = LogBlocks(v);
  const uint64_t image_blocks = ImageBlocks(v);
  if (cp.entries.size() > log_blocks || cp.entries.size() > image_blocks) {
    return "checkpoint.entry_count = " + std::to_string(cp.entries.size()) +
           " is more than the log's or the image's blocks";
  }
  for (size_t i = 0; i < cp.entries.size(); ++i) {
    const IndexEntry& e = cp.entries[i];
    if (e.lba >= image_blocks) {
      return "checkpoint.entries[" + std::to_string(i) + "]: lba " + std::to_string(e.lba) +
             " is past the image's last block " + std::to_string(image_blocks - 1);
    }
    if (e.pos >= log_blocks) {
      return "checkpoint.entries[" + std::to_string(i) + "]: pos " + std::to_string(e.pos) +
             " is past the log's last block " + std::to_string(log_blocks - 1);
    }
  }
  std::vector<uint32_t> lbas;
  lbas.reserve(cp.entries.size());
  for (const IndexEntry& e : cp.entries) lbas.push_back(e.lba);
  std::sort(lbas.begin(), lbas.end());
  auto dup = std::adjacent_find(lbas.begin(), lbas.end());
  if (dup != lbas.end()) return "checkpoint.entries: lba " + std::to_string(*dup) + " appears more than once";
  return "";
}

// ---- Entries blob: entry_count * 12 bytes, little-endian u32 lba, pos, crc.

void PutU32(uint8_t* p, uint32_t v) {
  p[0] = static_cast<uint8_t>(v);
  p[1] = static_cast<uint8_t>(v >> 8);
  p[2] = static_cast<uint8_t>(v >> 16);
  p[3] = static_cast<uint8_t>(v >> 24);
}
uint32_t GetU32(const uint8_t* p) {
  return uint32_t{p[0]} | uint32_t{p[1]} << 8 | uint32_t{p[2]} << 16 | uint32_t{p[3]} << 24;
}

constexpr size_t kCheckpointEntrySize = 12;

std::vector<uint8_t> EncodeEntries(const std::vector<IndexEntry>& entries) {
  std::vector<uint8_t> out(entries.size() * kCheckpointEntrySize);
  uint8_t* p = out.data();
  for (const IndexEntry& e : entries) {
    PutU32(p, e.lba);
    PutU32(p + 4, e.pos);
    PutU32(p + 8, e.crc);
    p += kCheckpointEntrySize;
  }
  return out;
}

// ---- Readers. Each validates what it returns.

struct VolumeState {
  VolumeRow row;
  bool clean_shutdown = false;
  uint64_t mount_count = 0;
};

Status ReadVolume(const Db& d, VolumeState* out) {
  Stmt st(d);
  BV_RETURN_IF_ERROR(st.Prepare("SELECT uuid, format_version, image_size, block_size, segment_blocks, segment_count, "
                                "home, created_unix, home_journal, clean_shutdown, mount_count "
                                "FROM volume WHERE id = 1",
                                "reading table volume"));
  bool row = false;
  BV_RETURN_IF_ERROR(st.Step(&row));
  if (!row) return Corrupt(d.path, "table volume has no row (id = 1)");
  Row r(st, d.path, "volume");
  VolumeRow& v = out->row;
  int64_t created = 0;
  BV_RETURN_IF_ERROR(r.Text(0, "uuid", 64, &v.uuid));
  BV_RETURN_IF_ERROR(r.U32(1, "format_version", &v.format_version));
  BV_RETURN_IF_ERROR(r.U64(2, "image_size", &v.image_size));
  BV_RETURN_IF_ERROR(r.U32(3, "block_size", &v.block_size));
  BV_RETURN_IF_ERROR(r.U32(4, "segment_blocks", &v.segment_blocks));
  BV_RETURN_IF_ERROR(r.U32(5, "segment_count", &v.segment_count));
  BV_RETURN_IF_ERROR(r.Text(6, "home", kMaxHomeLen, &v.home));
  BV_RETURN_IF_ERROR(r.Int(7, "created_unix", std::numeric_limits<int64_t>::min(), kMaxInt, &created));
  v.created_unix = created;
  BV_RETURN_IF_ERROR(r.Bool(8, "home_journal", &v.home_journal));
  BV_RETURN_IF_ERROR(r.Bool(9, "clean_shutdown", &out->clean_shutdown));
  BV_RETURN_IF_ERROR(r.U64(10, "mount_count", &out->mount_count));
  std::string problem = VolumeProblem(v);
  if (!problem.empty()) {
    if (v.format_version > 1) {
      return Logged(Status::Unsupported(d.path + ": " + problem + " (created by a newer boostvol?)"));
    }
    return Corrupt(d.path, problem);
  }
  return Status::OK();
}

Status ReadWatermark(const Db& d, Watermark* w) {
  Stmt st(d);
  BV_RETURN_IF_ERROR(st.Prepare("SELECT segment_seq, record_seq FROM watermark WHERE id = 1", "reading table watermark"));
  bool row = false;
  BV_RETURN_IF_ERROR(st.Step(&row));
  if (!row) return Corrupt(d.path, "table watermark has no row (id = 1)");
  Row r(st, d.path, "watermark");
  BV_RETURN_IF_ERROR(r.U64(0, "segment_seq", &w->segment_seq));
  BV_RETURN_IF_ERROR(r.U64(1, "record_seq", &w->record_seq));
  std::string problem = WatermarkProblem(*w);
  if (!problem.empty()) return Corrupt(d.path, problem);
  return Status::OK();
}

// The ring has exactly one row per slot 0..segment_count-1.
Status CheckSegmentRows(const Db& d, const VolumeRow& v) {
  Stmt st(d);
  BV_RETURN_IF_ERROR(st.Prepare("SELECT count(*), min(slot), max(slot), "
                                "sum(state NOT IN ('free', 'sealed')) FROM segments",
                                "counting the rows of table segments"));
  bool row = false;
  BV_RETURN_IF_ERROR(st.Step(&row));
  int64_t count = sqlite3_column_int64(st.get(), 0);
  int64_t lo = sqlite3_column_int64(st.get(), 1);
  int64_t hi = sqlite3_column_int64(st.get(), 2);
  int64_t bad_state = sqlite3_column_int64(st.get(), 3);
  if (count != v.segment_count || lo != 0 || hi != int64_t{v.segment_count} - 1) {
    return Corrupt(d.path, "table segments has " + std::to_string(count) + " rows (slots " + std::to_string(lo) +
                               ".." + std::to_string(hi) + "); volume.segment_count says " +
                               std::to_string(v.segment_count) + " (slots 0.." +
                               std::to_string(v.segment_count - 1) + ")");
  }
  if (bad_state != 0) return Corrupt(d.path, "segments.state is neither 'free' nor 'sealed' in some rows");
  return Status::OK();
}

// Sealed segments at or after the watermark, in seq order, checked against
// the geometry and each other. Rows below the watermark are home already and
// skipped.
Status ReadSealed(const Db& d, const VolumeRow& v, const Watermark& w, std::vector<SealedSegment>* out) {
  out->clear();
  Stmt st(d);
  BV_RETURN_IF_ERROR(st.Prepare("SELECT slot, segment_seq, first_record, last_record, data_blocks FROM segments "
                                "WHERE state = 'sealed' ORDER BY segment_seq",
                                "reading the sealed segments"));
  for (;;) {
    bool row = false;
    BV_RETURN_IF_ERROR(st.Step(&row));
    if (!row) break;
    Row r(st, d.path, "segments");
    SealedSegment s;
    BV_RETURN_IF_ERROR(r.U32(0, "slot", &s.slot));
    BV_RETURN_IF_ERROR(r.U64(1, "segment_seq", &s.segment_seq));
    BV_RETURN_IF_ERROR(r.U64(2, "first_record", &s.first_record));
    BV_RETURN_IF_ERROR(r.U64(3, "last_record", &s.last_record));
    BV_RETURN_IF_ERROR(r.U32(4, "data_blocks", &s.data_blocks));
    if (s.segment_seq < w.segment_seq) {
      spdlog::warn("meta: {}: segment {} (slot {}) is sealed but below the watermark (segment {}); ignoring it",
                   d.path, s.segment_seq, s.slot, w.segment_seq);
      continue;
    }
    std::string problem = SegmentProblem(v, s);
    if (!problem.empty()) return Corrupt(d.path, problem);
    if (!out->empty()) {
      // The writer fills the ring in order: every sealed segment is less than
      // one lap from the oldest, and record ranges follow segment order.
      if (s.segment_seq - out->front().segment_seq >= v.segment_count) {
        return Corrupt(d.path, "segments: sealed segments " + std::to_string(out->front().segment_seq) + " and " +
                                   std::to_string(s.segment_seq) + " are a whole lap of the ring (" +
                                   std::to_string(v.segment_count) + " segments) or more apart");
      }
      const SealedSegment& prev = out->back();
      if (s.segment_seq == prev.segment_seq || s.first_record <= prev.last_record) {
        return Corrupt(d.path, "segments: segment " + std::to_string(s.segment_seq) + " (records " +
                                   std::to_string(s.first_record) + "..) overlaps segment " +
                                   std::to_string(prev.segment_seq) + " (records .." +
                                   std::to_string(prev.last_record) + ")");
      }
    }
    out->push_back(s);
  }
  return Status::OK();
}

// The stored checkpoint, validated; *present=false if there is none.
Status ReadCheckpoint(const Db& d, const VolumeRow& v, Checkpoint* cp, bool* present) {
  *present = false;
  Stmt st(d);
  BV_RETURN_IF_ERROR(st.Prepare("SELECT next_record_seq, segment_seq, next_block_in_segment, prev_crc, "
                                "watermark_segment_seq, watermark_record_seq, entry_count, entries, entries_crc "
                                "FROM checkpoint WHERE id = 1",
                                "reading table checkpoint"));
  bool row = false;
  BV_RETURN_IF_ERROR(st.Step(&row));
  if (!row) return Status::OK();
  Row r(st, d.path, "checkpoint");
  Checkpoint c;
  BV_RETURN_IF_ERROR(r.U64(0, "next_record_seq", &c.tail.next_record_seq));
  BV_RETURN_IF_ERROR(r.U64(1, "segment_seq", &c.tail.segment_seq));
  BV_RETURN_IF_ERROR(r.U32(2, "next_block_in_segment", &c.tail.next_block_in_segment));
  BV_RETURN_IF_ERROR(r.U32(3, "prev_crc", &c.tail.prev_crc));
  BV_RETURN_IF_ERROR(r.U64(4, "watermark_segment_seq", &c.watermark.segment_seq));
  BV_RETURN_IF_ERROR(r.U64(5, "watermark_record_seq", &c.watermark.record_seq));
  // Bound the count before trusting it as a size.
  int64_t count = 0;
  int64_t max_count = static_cast<int64_t>(std::min(LogBlocks(v), ImageBlocks(v)));
  BV_RETURN_IF_ERROR(r.Int(6, "entry_count", 0, max_count, &count));
  const uint8_t* blob = nullptr;
  BV_RETURN_IF_ERROR(r.Blob(7, "entries", static_cast<size_t>(count) * kCheckpointEntrySize, &blob));
  uint32_t stored_crc = 0;
  BV_RETURN_IF_ERROR(r.U32(8, "entries_crc", &stored_crc));
  size_t nbytes = static_cast<size_t>(count) * kCheckpointEntrySize;
  uint32_t crc = nbytes == 0 ? crc32c::Value("", 0) : crc32c::Value(blob, nbytes);
  if (crc != stored_crc) {
    return Corrupt(d.path, "checkpoint.entries_crc = " + std::to_string(stored_crc) +
                               " does not match the crc32c of checkpoint.entries (" + std::to_string(crc) + ")");
  }
  c.entries.resize(static_cast<size_t>(count));
  for (size_t i = 0; i < c.entries.size(); ++i) {
    const uint8_t* p = blob + i * kCheckpointEntrySize;
    c.entries[i] = IndexEntry{GetU32(p), GetU32(p + 4), GetU32(p + 8)};
  }
  std::string problem = CheckpointProblem(v, c);
  if (!problem.empty()) return Corrupt(d.path, problem);
  *cp = std::move(c);
  *present = true;
  return Status::OK();
}

Status RequireWritable(const Db& d, const std::string& doing) {
  if (sqlite3_db_readonly(d.db, "main") == 1) {
    return Logged(Status::IoError(EROFS, d.path + ": " + doing + ": meta.db is open read-only"));
  }
  return Status::OK();
}

// Per-connection settings. Read-only connections only get those that do not
// write.
Status ConfigureConnection(const Db& d, bool read_only) {
  sqlite3_extended_result_codes(d.db, 1);
  sqlite3_busy_timeout(d.db, kBusyTimeoutMs);
  // meta.db is untrusted input: no functions with side effects from views or
  // triggers in the file, and no writable schema tricks.
  sqlite3_db_config(d.db, SQLITE_DBCONFIG_TRUSTED_SCHEMA, 0, nullptr);
  sqlite3_db_config(d.db, SQLITE_DBCONFIG_DEFENSIVE, 1, nullptr);
  // The first read of the file: a file that is not SQLite fails here.
  BV_RETURN_IF_ERROR(ExecSql(d, "SELECT count(*) FROM sqlite_schema", "reading meta.db"));
  if (read_only) return ExecSql(d, "PRAGMA query_only = ON", "setting query_only");
  BV_RETURN_IF_ERROR(ExecSql(d, "PRAGMA synchronous = FULL", "setting synchronous = FULL"));
  BV_RETURN_IF_ERROR(ExecSql(d, "PRAGMA foreign_keys = ON", "enabling foreign keys"));
  Stmt st(d);
  BV_RETURN_IF_ERROR(st.Prepare("PRAGMA journal_mode = WAL", "switching to WAL mode"));
  bool row = false;
  BV_RETURN_IF_ERROR(st.Step(&row));
  const unsigned char* mode = row ? sqlite3_column_text(st.get(), 0) : nullptr;
  if (mode == nullptr || std::strcmp(reinterpret_cast<const char*>(mode), "wal") != 0) {
    return Logged(Status::IoError(EIO, d.path + ": switching to WAL mode: SQLite kept journal_mode '" +
                                           Printable(mode != nullptr ? reinterpret_cast<const char*>(mode) : "") +
                                           "' (does the file system support shared memory?)"));
  }
  return Status::OK();
}

Status PragmaInt(const Db& d, const char* sql, const std::string& doing, int64_t* out) {
  Stmt st(d);
  BV_RETURN_IF_ERROR(st.Prepare(sql, doing));
  bool row = false;
  BV_RETURN_IF_ERROR(st.Step(&row));
  *out = row ? sqlite3_column_int64(st.get(), 0) : 0;
  return Status::OK();
}

// application_id, user_version, the tables; no triggers.
Status CheckSchema(const Db& d) {
  int64_t app_id = 0;
  int64_t version = 0;
  BV_RETURN_IF_ERROR(PragmaInt(d, "PRAGMA application_id", "reading the application_id", &app_id));
  BV_RETURN_IF_ERROR(PragmaInt(d, "PRAGMA user_version", "reading the schema version", &version));
  std::vector<std::string> tables, views, triggers;
  {
    Stmt st(d);
    BV_RETURN_IF_ERROR(st.Prepare("SELECT type, name FROM sqlite_schema WHERE type IN ('table', 'view', 'trigger')",
                                  "listing the tables"));
    for (;;) {
      bool row = false;
      BV_RETURN_IF_ERROR(st.Step(&row));
      if (!row) break;
      const unsigned char* type = sqlite3_column_text(st.get(), 0);
      const unsigned char* name = sqlite3_column_text(st.get(), 1);
      if (type == nullptr || name == nullptr) continue;
      std::string t = reinterpret_cast<const char*>(type);
      std::string n = reinterpret_cast<const char*>(name);
      (t == "table" ? tables : t == "view" ? views : triggers).push_back(n);
    }
  }
  if (app_id != kApplicationId) {
    if (app_id == 0 && version == 0 && tables.empty()) {
      return Corrupt(d.path, "the database is empty: this is not a boostvol meta.db, or its creation was interrupted");
    }
    return Corrupt(d.path, "not a boostvol meta.db (application_id " + std::to_string(app_id) + ", expected " +
                               std::to_string(kApplicationId) + ")");
  }
  if (version > kSchemaVersion) {
    return Logged(Status::Unsupported(d.path + ": created by a newer boostvol (schema version " +
                                      std::to_string(version) + "; this boostvol knows up to " +
                                      std::to_string(kSchemaVersion) + "): upgrade boostvol"));
  }
  if (version != kSchemaVersion) {
    return Corrupt(d.path, "schema version (PRAGMA user_version) is " + std::to_string(version) + ", expected " +
                               std::to_string(kSchemaVersion));
  }
  for (const char* want : kTables) {
    if (std::find(tables.begin(), tables.end(), want) == tables.end()) {
      return Corrupt(d.path, std::string("table ") + want + " is missing");
    }
  }
  for (const char* want : kViews) {
    if (std::find(views.begin(), views.end(), want) == views.end()) {
      // The newer views come with the next read-write open: not worth a warning.
      const bool newer = std::string_view(want) == "dirty_extents" || std::string_view(want) == "stats_history";
      spdlog::log(newer ? spdlog::level::debug : spdlog::level::warn,
                  "meta: {}: view {} is missing (only people use it; `boostvol check` reports it{})", d.path, want,
                  newer ? "; the next mount adds it" : "");
    }
  }
  if (!triggers.empty()) {
    return Corrupt(d.path, "trigger '" + Printable(triggers.front()) + "' was not created by boostvol");
  }
  return Status::OK();
}

// The path with its directory resolved (symlinks in FAST's own path are the
// user's choice), the last component left alone: NOFOLLOW applies to it.
Status ResolvePath(const std::string& db_path, std::string* out) {
  if (db_path.empty() || db_path.back() == '/') {
    return Logged(Status::InvalidArgument("'" + db_path + "' is not a path to a meta.db file"));
  }
  std::string dir = DirOf(db_path);
  char* real = ::realpath(dir.c_str(), nullptr);
  if (real == nullptr) {
    int e = errno;
    if (e == ENOENT) return Logged(Status::NotFound(dir + ": no such directory (resolving the path of meta.db)"));
    return Logged(Status::IoError(e, dir + ": resolving the path of meta.db"));
  }
  std::string r = real;
  std::free(real);
  *out = (r == "/" ? r : r + "/") + BaseOf(db_path);
  return Status::OK();
}

void CloseDb(sqlite3* db, const std::string& path) {
  if (db == nullptr) return;
  int rc = sqlite3_close_v2(db);
  if (rc != SQLITE_OK) spdlog::error("meta: {}: closing: {}", path, sqlite3_errstr(rc));
}

// -wal and -shm take the main file's mode from SQLite; make sure of it.
Status FixSidecarModes(const std::string& path) {
  for (const char* suffix : {"-wal", "-shm"}) {
    std::string p = path + suffix;
    struct stat st;
    if (::lstat(p.c_str(), &st) != 0) continue;  // not created (yet)
    if (!S_ISREG(st.st_mode)) {
      return Logged(Status::InvalidArgument(p + " is not a regular file (a symlink planted in FAST?)"));
    }
    if ((st.st_mode & 07777) != 0600 && ::chmod(p.c_str(), 0600) != 0) {
      return Logged(Status::IoError(errno, p + ": chmod 0600"));
    }
  }
  return Status::OK();
}

bool HasTable(const Db& d, const char* name) {
  Stmt st(d);
  if (!st.Prepare("SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = ?", "looking for a table").ok()) {
    return false;
  }
  st.BindText(1, name);
  bool row = false;
  return st.Step(&row).ok() && row;
}

// Runs the part of schema.sql after kAdditionsMarker, in one transaction.
Status ApplySchemaAdditions(const Db& d) {
  std::string_view sql = kSchemaSql;
  size_t at = sql.find(kAdditionsMarker);
  if (at == std::string_view::npos) return Status::OK();
  const std::string additions(sql.substr(at));
  Txn txn(d);
  BV_RETURN_IF_ERROR(txn.Begin(true, "adding the newer views (schema.sql)"));
  BV_RETURN_IF_ERROR(ExecSql(d, additions.c_str(), "adding the newer views (schema.sql)"));
  return txn.Commit();
}

bool ValidName(const std::string& s) {
  if (s.empty() || s.size() > kMaxNameLen) return false;
  for (char c : s) {
    if (static_cast<unsigned char>(c) < 0x21 || static_cast<unsigned char>(c) > 0x7e) return false;
  }
  return true;
}

}  // namespace

MetaStore::MetaStore(sqlite3* db, std::string path) : db_(db), path_(std::move(path)) {}

MetaStore::~MetaStore() { CloseDb(db_, path_); }

Status MetaStore::Exec(const char* sql) { return ExecSql(Db{db_, path_}, sql, std::string("running ") + sql); }

Status MetaStore::Create(const std::string& db_path, const VolumeRow& v, std::unique_ptr<MetaStore>* out,
                         const char* vfs) {
  std::string problem = VolumeProblem(v);
  if (!problem.empty()) return Refused(db_path, "to create meta.db", problem);
  std::string path;
  BV_RETURN_IF_ERROR(ResolvePath(db_path, &path));

  // Refuse an existing meta.db, and stale -wal/-shm/-journal beside it: SQLite
  // would replay a hot journal into the new file.
  for (const char* suffix : {"", "-wal", "-shm", "-journal"}) {
    std::string p = path + suffix;
    struct stat st;
    if (::lstat(p.c_str(), &st) == 0) {
      return Logged(Status::InvalidArgument(p + " already exists: refusing to create meta.db over it (FAST holds a "
                                                "volume already, or the remains of one)"));
    }
    if (errno != ENOENT) return Logged(Status::IoError(errno, p + ": checking that it does not exist"));
  }
  // Create it ourselves: O_EXCL closes the race the check above leaves, and
  // the mode is 0600 whatever the umask.
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0) {
    int e = errno;
    if (e == EEXIST) return Logged(Status::InvalidArgument(path + " already exists: refusing to create meta.db over it"));
    return Logged(Status::IoError(e, path + ": creating meta.db"));
  }
  int chmod_err = ::fchmod(fd, 0600) == 0 ? 0 : errno;
  ::close(fd);  // before SQLite opens it: see the top of this file

  sqlite3* db = nullptr;
  auto fail = [&](Status s) {
    CloseDb(db, path);
    for (const char* suffix : {"", "-wal", "-shm", "-journal"}) ::unlink((path + suffix).c_str());
    return s;
  };
  if (chmod_err != 0) return fail(Logged(Status::IoError(chmod_err, path + ": chmod 0600")));

  int rc = sqlite3_open_v2(path.c_str(), &db,
                           SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOFOLLOW | SQLITE_OPEN_FULLMUTEX,
                           vfs);
  if (rc != SQLITE_OK) return fail(FromSqlite(db, rc, path, "opening the new meta.db"));
  Db d{db, path};
  Status s = ConfigureConnection(d, /*read_only=*/false);
  if (!s.ok()) return fail(s);

  s = [&]() -> Status {
    Txn txn(d);
    BV_RETURN_IF_ERROR(txn.Begin(true, "creating the schema"));
    BV_RETURN_IF_ERROR(ExecSql(d, kSchemaSql, "creating the schema (src/meta/schema.sql)"));
    const int64_t now = NowUnix();
    {
      Stmt st(d);
      BV_RETURN_IF_ERROR(st.Prepare("INSERT INTO volume (id, uuid, format_version, image_size, block_size, "
                                    "segment_blocks, segment_count, home, created_unix, home_journal, "
                                    "clean_shutdown, mount_count) VALUES (1, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, 0)",
                                    "inserting the volume row"));
      st.BindText(1, v.uuid);
      st.BindInt(2, v.format_version);
      st.BindInt(3, static_cast<int64_t>(v.image_size));
      st.BindInt(4, v.block_size);
      st.BindInt(5, v.segment_blocks);
      st.BindInt(6, v.segment_count);
      st.BindText(7, v.home);
      st.BindInt(8, v.created_unix);
      st.BindInt(9, v.home_journal ? 1 : 0);
      BV_RETURN_IF_ERROR(st.Run());
    }
    {
      Stmt st(d);
      BV_RETURN_IF_ERROR(
          st.Prepare("INSERT INTO segments (slot, state) VALUES (?, 'free')", "inserting the rows of the ring"));
      for (uint32_t slot = 0; slot < v.segment_count; ++slot) {
        st.BindInt(1, slot);
        BV_RETURN_IF_ERROR(st.Run());
        st.Reset();
      }
    }
    {
      Stmt st(d);
      BV_RETURN_IF_ERROR(st.Prepare("INSERT INTO watermark (id, segment_seq, record_seq, updated_unix) "
                                    "VALUES (1, 0, 1, ?)",
                                    "inserting the watermark"));
      st.BindInt(1, now);
      BV_RETURN_IF_ERROR(st.Run());
    }
    std::string pragmas = "PRAGMA application_id = " + std::to_string(kApplicationId) +
                          "; PRAGMA user_version = " + std::to_string(kSchemaVersion);
    BV_RETURN_IF_ERROR(ExecSql(d, pragmas.c_str(), "setting the schema version"));
    return txn.Commit();
  }();
  if (!s.ok()) return fail(s);
  s = FixSidecarModes(path);
  if (!s.ok()) return fail(s);
  spdlog::info("meta: created {} (volume {}, {} segments of {} blocks)", path, v.uuid, v.segment_count,
               v.segment_blocks);
  out->reset(new MetaStore(db, db_path));
  (*out)->extents_table_ = HasTable(d, "segment_extents");
  return Status::OK();
}

Status MetaStore::Open(const std::string& db_path, bool read_only, std::unique_ptr<MetaStore>* out,
                       const char* vfs) {
  std::string path;
  BV_RETURN_IF_ERROR(ResolvePath(db_path, &path));
  struct stat st;
  if (::lstat(path.c_str(), &st) != 0) {
    int e = errno;
    if (e == ENOENT) {
      return Logged(Status::NotFound(path + " does not exist: " + DirOf(path) +
                                     " is not a boostvol FAST dir (make one with `boostvol create`)"));
    }
    return Logged(Status::IoError(e, path + ": looking at meta.db"));
  }
  if (S_ISLNK(st.st_mode)) {
    return Logged(Status::InvalidArgument(path + " is a symbolic link: refusing to follow it"));
  }
  if (!S_ISREG(st.st_mode)) return Logged(Status::InvalidArgument(path + " is not a regular file"));
  // SQLite opens -wal and -shm by name: refuse a planted symlink before it does.
  for (const char* suffix : {"-wal", "-shm"}) {
    struct stat side;
    if (::lstat((path + suffix).c_str(), &side) == 0 && !S_ISREG(side.st_mode)) {
      return Logged(Status::InvalidArgument(path + suffix + " is not a regular file (a symlink planted in FAST?)"));
    }
  }

  const int flags = (read_only ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE) | SQLITE_OPEN_NOFOLLOW |
                    SQLITE_OPEN_FULLMUTEX;
  sqlite3* db = nullptr;
  int rc = sqlite3_open_v2(path.c_str(), &db, flags, vfs);
  Db d{db, path};
  auto fail = [&](Status s) {
    CloseDb(db, path);
    // A read-only connection to a WAL database needs the -shm: say so.
    if (read_only && s.code() == Status::Code::kIoError) {
      return Status::IoError(s.err(), s.message() + " (a read-only open of a WAL database needs " + path +
                                          "-shm to exist or " + DirOf(path) +
                                          " to be writable: run as the volume's owner)");
    }
    return s;
  };
  if (rc != SQLITE_OK) {
    return fail(FromSqlite(db, rc, path, read_only ? "opening meta.db read-only" : "opening meta.db"));
  }
  Status s = ConfigureConnection(d, read_only);
  if (s.ok()) s = CheckSchema(d);
  if (!s.ok()) return fail(s);
  if (!read_only) {
    s = FixSidecarModes(path);
    if (!s.ok()) return fail(s);
    // Views and optional tables added since the volume was created. Only
    // people and the dirty_extents view need them: a failure is logged, and
    // the extents are then not recorded (HasTable below).
    Status as = ApplySchemaAdditions(d);
    if (!as.ok()) spdlog::warn("meta: {}: adding the newer views failed ({}); the volume works without them", path,
                               as.ToString());
  }
  out->reset(new MetaStore(db, db_path));
  (*out)->extents_table_ = !read_only && HasTable(d, "segment_extents");
  return Status::OK();
}

Status MetaStore::LoadVolume(VolumeRow* v) {
  MutexLock l(&mu_);
  VolumeState vs;
  BV_RETURN_IF_ERROR(ReadVolume(Db{db_, path_}, &vs));
  *v = vs.row;
  return Status::OK();
}

Status MetaStore::LoadMountCount(uint64_t* mount_count) {
  MutexLock l(&mu_);
  VolumeState vs;
  BV_RETURN_IF_ERROR(ReadVolume(Db{db_, path_}, &vs));
  *mount_count = vs.mount_count;
  return Status::OK();
}

Status MetaStore::LoadWatermark(Watermark* w) {
  MutexLock l(&mu_);
  return ReadWatermark(Db{db_, path_}, w);
}

Status MetaStore::LoadSealedSegments(std::vector<SealedSegment>* out) {
  MutexLock l(&mu_);
  Db d{db_, path_};
  Txn txn(d);
  BV_RETURN_IF_ERROR(txn.Begin(false, "reading the sealed segments"));
  VolumeState vs;
  Watermark w;
  BV_RETURN_IF_ERROR(ReadVolume(d, &vs));
  BV_RETURN_IF_ERROR(ReadWatermark(d, &w));
  BV_RETURN_IF_ERROR(ReadSealed(d, vs.row, w, out));
  return txn.Commit();
}

Status MetaStore::AddSealedSegments(const std::vector<SealedSegment>& segs,
                                    const std::vector<std::vector<SegmentExtent>>& extents) {
  MutexLock l(&mu_);
  Db d{db_, path_};
  const std::string doing = "recording sealed segments";
  BV_RETURN_IF_ERROR(RequireWritable(d, doing));
  if (segs.empty()) return Status::OK();
  Txn txn(d);
  BV_RETURN_IF_ERROR(txn.Begin(true, doing));
  VolumeState vs;
  Watermark w;
  BV_RETURN_IF_ERROR(ReadVolume(d, &vs));
  BV_RETURN_IF_ERROR(ReadWatermark(d, &w));
  for (const SealedSegment& s : segs) {
    std::string problem = SegmentProblem(vs.row, s);
    if (!problem.empty()) return Refused(d.path, doing, problem);
  }
  Stmt check(d);
  BV_RETURN_IF_ERROR(check.Prepare("SELECT state, segment_seq FROM segments WHERE slot = ?", doing));
  Stmt update(d);
  BV_RETURN_IF_ERROR(update.Prepare("UPDATE segments SET state = 'sealed', segment_seq = ?, first_record = ?, "
                                    "last_record = ?, data_blocks = ?, sealed_unix = ? WHERE slot = ?",
                                    doing));
  Stmt drop_extents(d), add_extent(d);
  if (extents_table_) {
    BV_RETURN_IF_ERROR(drop_extents.Prepare("DELETE FROM segment_extents WHERE slot = ?", doing));
    BV_RETURN_IF_ERROR(add_extent.Prepare("INSERT OR REPLACE INTO segment_extents (segment_seq, slot, first_block, "
                                          "blocks, dirty_blocks) VALUES (?, ?, ?, ?, ?)",
                                          doing));
  }
  const int64_t now = NowUnix();
  for (size_t n = 0; n < segs.size(); n++) {
    const SealedSegment& s = segs[n];
    // Below the watermark: home already (a late report); nothing to record.
    if (s.segment_seq < w.segment_seq) continue;
    if (extents_table_) {
      static const std::vector<SegmentExtent> kNone;
      const std::vector<SegmentExtent>& ext = n < extents.size() ? extents[n] : kNone;
      drop_extents.BindInt(1, s.slot);
      BV_RETURN_IF_ERROR(drop_extents.Run());
      drop_extents.Reset();
      for (size_t i = 0; i < ext.size() && i < kMaxSegmentExtents; i++) {
        const SegmentExtent& e = ext[i];
        if (e.blocks == 0 || e.dirty_blocks > e.blocks || e.first_block > kMaxU32 ||
            e.first_block + e.blocks > vs.row.image_size / vs.row.block_size) {
          // Only the view would show it: not a reason to leave the segment unrecorded.
          spdlog::warn("meta: {}: segment {}: not recording the extent at block {} ({} blocks): outside the image",
                       d.path, s.segment_seq, e.first_block, e.blocks);
          continue;
        }
        add_extent.BindInt(1, static_cast<int64_t>(s.segment_seq));
        add_extent.BindInt(2, s.slot);
        add_extent.BindInt(3, static_cast<int64_t>(e.first_block));
        add_extent.BindInt(4, e.blocks);
        add_extent.BindInt(5, e.dirty_blocks);
        BV_RETURN_IF_ERROR(add_extent.Run());
        add_extent.Reset();
      }
    }
    check.BindInt(1, s.slot);
    bool row = false;
    BV_RETURN_IF_ERROR(check.Step(&row));
    if (!row) return Corrupt(d.path, "segments has no row for slot " + std::to_string(s.slot));
    const unsigned char* state = sqlite3_column_text(check.get(), 0);
    if (state != nullptr && std::strcmp(reinterpret_cast<const char*>(state), "sealed") == 0) {
      int64_t held = sqlite3_column_int64(check.get(), 1);
      if (held > static_cast<int64_t>(s.segment_seq)) {
        return Refused(d.path, doing,
                       "slot " + std::to_string(s.slot) + " holds segment " + std::to_string(held) +
                           ", newer than segment " + std::to_string(s.segment_seq));
      }
      if (held < static_cast<int64_t>(s.segment_seq)) {
        // The log already holds the new segment in this slot, so the row
        // must say so. Legitimate only if the home's watermark was ahead of
        // meta.db's (a crash before CommitMigration); otherwise a slot was
        // reused before its segment was home (DESIGN.md 2.6).
        spdlog::warn("meta: {}: slot {} was still recorded as holding segment {} (not yet home per meta.db); "
                     "segment {} replaces it",
                     d.path, s.slot, held, s.segment_seq);
      }
    }
    check.Reset();
    update.BindInt(1, static_cast<int64_t>(s.segment_seq));
    update.BindInt(2, static_cast<int64_t>(s.first_record));
    update.BindInt(3, static_cast<int64_t>(s.last_record));
    update.BindInt(4, s.data_blocks);
    update.BindInt(5, now);
    update.BindInt(6, s.slot);
    BV_RETURN_IF_ERROR(update.Run());
    update.Reset();
  }
  return txn.Commit();
}

Status MetaStore::CommitMigration(const Watermark& wm, const MigrationStats& stats) {
  MutexLock l(&mu_);
  Db d{db_, path_};
  const std::string doing = "committing a migration batch";
  BV_RETURN_IF_ERROR(RequireWritable(d, doing));
  std::string problem = WatermarkProblem(wm);
  if (!problem.empty()) return Refused(d.path, doing, problem);
  if (stats.blocks > static_cast<uint64_t>(kMaxInt) || stats.bytes > static_cast<uint64_t>(kMaxInt) ||
      stats.extents > static_cast<uint64_t>(kMaxInt)) {
    return Refused(d.path, doing, "migration stats out of range");
  }
  Txn txn(d);
  BV_RETURN_IF_ERROR(txn.Begin(true, doing));
  Watermark old;
  BV_RETURN_IF_ERROR(ReadWatermark(d, &old));
  if (wm.segment_seq < old.segment_seq || wm.record_seq < old.record_seq) {
    return Refused(d.path, doing,
                   "the watermark would move back from (segment " + std::to_string(old.segment_seq) + ", record " +
                       std::to_string(old.record_seq) + ") to (segment " + std::to_string(wm.segment_seq) +
                       ", record " + std::to_string(wm.record_seq) + ")");
  }
  {
    Stmt st(d);
    BV_RETURN_IF_ERROR(st.Prepare("UPDATE watermark SET segment_seq = ?, record_seq = ?, updated_unix = ? WHERE id = 1",
                                  "moving the watermark"));
    st.BindInt(1, static_cast<int64_t>(wm.segment_seq));
    st.BindInt(2, static_cast<int64_t>(wm.record_seq));
    st.BindInt(3, NowUnix());
    BV_RETURN_IF_ERROR(st.Run());
  }
  {
    Stmt st(d);
    BV_RETURN_IF_ERROR(st.Prepare("UPDATE segments SET state = 'free', segment_seq = NULL, first_record = NULL, "
                                  "last_record = NULL, data_blocks = NULL, sealed_unix = NULL "
                                  "WHERE state = 'sealed' AND segment_seq < ?",
                                  "freeing migrated segments"));
    st.BindInt(1, static_cast<int64_t>(wm.segment_seq));
    BV_RETURN_IF_ERROR(st.Run());
  }
  if (extents_table_) {
    Stmt st(d);
    BV_RETURN_IF_ERROR(st.Prepare("DELETE FROM segment_extents WHERE segment_seq < ?", "dropping migrated extents"));
    st.BindInt(1, static_cast<int64_t>(wm.segment_seq));
    BV_RETURN_IF_ERROR(st.Run());
  }
  {
    Stmt st(d);
    BV_RETURN_IF_ERROR(st.Prepare("INSERT INTO counters (name, value) VALUES (?, ?) "
                                  "ON CONFLICT (name) DO UPDATE SET value = value + excluded.value",
                                  "adding to the migration counters"));
    const std::pair<const char*, uint64_t> adds[] = {{"migration.blocks", stats.blocks},
                                                     {"migration.bytes", stats.bytes},
                                                     {"migration.extents", stats.extents},
                                                     {"migration.batches", 1}};
    for (const auto& [name, value] : adds) {
      st.BindText(1, name);
      st.BindInt(2, static_cast<int64_t>(value));
      BV_RETURN_IF_ERROR(st.Run());
      st.Reset();
    }
  }
  return txn.Commit();
}

Status MetaStore::ForgetSegmentsFrom(uint64_t segment_seq) {
  MutexLock l(&mu_);
  Db d{db_, path_};
  const std::string doing = "forgetting sealed segments from " + std::to_string(segment_seq);
  BV_RETURN_IF_ERROR(RequireWritable(d, doing));
  if (segment_seq > static_cast<uint64_t>(kMaxInt)) segment_seq = static_cast<uint64_t>(kMaxInt);
  Txn txn(d);
  BV_RETURN_IF_ERROR(txn.Begin(true, doing));
  {
    Stmt st(d);
    BV_RETURN_IF_ERROR(st.Prepare("UPDATE segments SET state = 'free', segment_seq = NULL, first_record = NULL, "
                                  "last_record = NULL, data_blocks = NULL, sealed_unix = NULL "
                                  "WHERE state = 'sealed' AND (segment_seq IS NULL OR segment_seq >= ?)",
                                  doing));
    st.BindInt(1, static_cast<int64_t>(segment_seq));
    BV_RETURN_IF_ERROR(st.Run());
  }
  if (extents_table_) {
    Stmt st(d);
    BV_RETURN_IF_ERROR(st.Prepare("DELETE FROM segment_extents WHERE segment_seq >= ?", doing));
    st.BindInt(1, static_cast<int64_t>(segment_seq));
    BV_RETURN_IF_ERROR(st.Run());
  }
  BV_RETURN_IF_ERROR(ExecSql(d, "DELETE FROM checkpoint", "dropping the checkpoint"));
  BV_RETURN_IF_ERROR(ExecSql(d, "UPDATE volume SET clean_shutdown = 0 WHERE id = 1", "marking the stop unclean"));
  return txn.Commit();
}

Status MetaStore::SaveCheckpoint(const Checkpoint& cp) {
  MutexLock l(&mu_);
  Db d{db_, path_};
  const std::string doing = "saving the checkpoint";
  BV_RETURN_IF_ERROR(RequireWritable(d, doing));
  Txn txn(d);
  BV_RETURN_IF_ERROR(txn.Begin(true, doing));
  VolumeState vs;
  BV_RETURN_IF_ERROR(ReadVolume(d, &vs));
  std::string problem = CheckpointProblem(vs.row, cp);
  if (!problem.empty()) return Refused(d.path, doing, problem);
  std::vector<uint8_t> blob = EncodeEntries(cp.entries);
  uint32_t crc = crc32c::Value(blob.data(), blob.size());
  const int64_t now = NowUnix();
  BV_RETURN_IF_ERROR(ExecSql(d, "DELETE FROM checkpoint", "dropping the old checkpoint"));
  {
    Stmt st(d);
    BV_RETURN_IF_ERROR(st.Prepare("INSERT INTO checkpoint (id, next_record_seq, segment_seq, next_block_in_segment, "
                                  "prev_crc, watermark_segment_seq, watermark_record_seq, entry_count, entries, "
                                  "entries_crc, created_unix) VALUES (1, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                                  doing));
    st.BindInt(1, static_cast<int64_t>(cp.tail.next_record_seq));
    st.BindInt(2, static_cast<int64_t>(cp.tail.segment_seq));
    st.BindInt(3, cp.tail.next_block_in_segment);
    st.BindInt(4, cp.tail.prev_crc);
    st.BindInt(5, static_cast<int64_t>(cp.watermark.segment_seq));
    st.BindInt(6, static_cast<int64_t>(cp.watermark.record_seq));
    st.BindInt(7, static_cast<int64_t>(cp.entries.size()));
    st.BindBlob(8, blob.data(), blob.size());
    st.BindInt(9, crc);
    st.BindInt(10, now);
    BV_RETURN_IF_ERROR(st.Run());
  }
  {
    Stmt st(d);
    BV_RETURN_IF_ERROR(
        st.Prepare("UPDATE volume SET clean_shutdown = 1, last_stop_unix = ? WHERE id = 1", "marking the stop clean"));
    st.BindInt(1, now);
    BV_RETURN_IF_ERROR(st.Run());
  }
  return txn.Commit();
}

Status MetaStore::LoadCheckpoint(Checkpoint* cp, bool* found) {
  MutexLock l(&mu_);
  *found = false;
  Db d{db_, path_};
  Txn txn(d);
  BV_RETURN_IF_ERROR(txn.Begin(false, "reading the checkpoint"));
  VolumeState vs;
  BV_RETURN_IF_ERROR(ReadVolume(d, &vs));
  if (!vs.clean_shutdown) return txn.Commit();  // a checkpoint left by a crashed mount is not trusted
  bool present = false;
  BV_RETURN_IF_ERROR(ReadCheckpoint(d, vs.row, cp, &present));
  BV_RETURN_IF_ERROR(txn.Commit());
  *found = present;
  return Status::OK();
}

Status MetaStore::BeginMount(uint64_t* mount_count) {
  MutexLock l(&mu_);
  Db d{db_, path_};
  const std::string doing = "recording the mount";
  BV_RETURN_IF_ERROR(RequireWritable(d, doing));
  Txn txn(d);
  BV_RETURN_IF_ERROR(txn.Begin(true, doing));
  VolumeState vs;
  BV_RETURN_IF_ERROR(ReadVolume(d, &vs));
  if (vs.mount_count >= static_cast<uint64_t>(kMaxInt)) return Corrupt(d.path, "volume.mount_count is out of range");
  BV_RETURN_IF_ERROR(Exec("DELETE FROM checkpoint"));
  {
    Stmt st(d);
    BV_RETURN_IF_ERROR(st.Prepare("UPDATE volume SET clean_shutdown = 0, mount_count = ?, last_mount_unix = ? "
                                  "WHERE id = 1",
                                  doing));
    st.BindInt(1, static_cast<int64_t>(vs.mount_count + 1));
    st.BindInt(2, NowUnix());
    BV_RETURN_IF_ERROR(st.Run());
  }
  BV_RETURN_IF_ERROR(txn.Commit());
  *mount_count = vs.mount_count + 1;
  return Status::OK();
}

Status MetaStore::SaveCounters(const std::vector<std::pair<std::string, int64_t>>& counters) {
  MutexLock l(&mu_);
  Db d{db_, path_};
  const std::string doing = "saving counters";
  BV_RETURN_IF_ERROR(RequireWritable(d, doing));
  for (const auto& c : counters) {
    if (!ValidName(c.first)) {
      return Refused(d.path, doing, "counter name '" + Printable(c.first) + "' is empty, too long or not printable");
    }
  }
  Txn txn(d);
  BV_RETURN_IF_ERROR(txn.Begin(true, doing));
  Stmt upsert(d), history(d), trim(d);
  BV_RETURN_IF_ERROR(upsert.Prepare("INSERT INTO counters (name, value) VALUES (?, ?) "
                                    "ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                                    doing));
  BV_RETURN_IF_ERROR(
      history.Prepare("INSERT INTO counters_history (unix, name, value) VALUES (?, ?, ?)", "appending counter history"));
  BV_RETURN_IF_ERROR(trim.Prepare("DELETE FROM counters_history WHERE name = ?1 AND id <= "
                                  "(SELECT id FROM counters_history WHERE name = ?1 ORDER BY id DESC LIMIT 1 OFFSET ?2)",
                                  "trimming counter history"));
  const int64_t now = NowUnix();
  for (const auto& [name, value] : counters) {
    upsert.BindText(1, name);
    upsert.BindInt(2, value);
    BV_RETURN_IF_ERROR(upsert.Run());
    upsert.Reset();
    history.BindInt(1, now);
    history.BindText(2, name);
    history.BindInt(3, value);
    BV_RETURN_IF_ERROR(history.Run());
    history.Reset();
    trim.BindText(1, name);
    trim.BindInt(2, kHistoryRowsPerCounter);
    BV_RETURN_IF_ERROR(trim.Run());
    trim.Reset();
  }
  return txn.Commit();
}

Status MetaStore::LoadCounters(std::vector<std::pair<std::string, int64_t>>* counters) {
  MutexLock l(&mu_);
  Db d{db_, path_};
  counters->clear();
  Stmt st(d);
  BV_RETURN_IF_ERROR(st.Prepare("SELECT name, value FROM counters ORDER BY name", "reading counters"));
  for (;;) {
    bool row = false;
    BV_RETURN_IF_ERROR(st.Step(&row));
    if (!row) break;
    Row r(st, d.path, "counters");
    std::string name;
    int64_t value = 0;
    BV_RETURN_IF_ERROR(r.Text(0, "name", kMaxNameLen, &name));
    BV_RETURN_IF_ERROR(r.Int(1, "value", std::numeric_limits<int64_t>::min(), kMaxInt, &value));
    counters->emplace_back(std::move(name), value);
  }
  return Status::OK();
}

Status MetaStore::GetSetting(const std::string& key, std::string* value, bool* found) {
  MutexLock l(&mu_);
  Db d{db_, path_};
  *found = false;
  Stmt st(d);
  BV_RETURN_IF_ERROR(st.Prepare("SELECT value FROM settings WHERE key = ?", "reading setting " + Printable(key)));
  st.BindText(1, key);
  bool row = false;
  BV_RETURN_IF_ERROR(st.Step(&row));
  if (!row) return Status::OK();
  BV_RETURN_IF_ERROR(Row(st, d.path, "settings").Text(0, "value", kMaxSettingValueLen, value));
  *found = true;
  return Status::OK();
}

Status MetaStore::SetSetting(const std::string& key, const std::string& value) {
  MutexLock l(&mu_);
  Db d{db_, path_};
  const std::string doing = "storing setting " + Printable(key);
  BV_RETURN_IF_ERROR(RequireWritable(d, doing));
  if (!ValidName(key)) return Refused(d.path, doing, "the key is empty, too long or not printable");
  if (value.size() > kMaxSettingValueLen || value.find('\0') != std::string::npos) {
    return Refused(d.path, doing, "the value is longer than 64 KiB or holds a NUL byte");
  }
  Stmt st(d);
  BV_RETURN_IF_ERROR(st.Prepare("INSERT INTO settings (key, value, updated_unix) VALUES (?, ?, ?) "
                                "ON CONFLICT (key) DO UPDATE SET value = excluded.value, "
                                "updated_unix = excluded.updated_unix",
                                doing));
  st.BindText(1, key);
  st.BindText(2, value);
  st.BindInt(3, NowUnix());
  return st.Run();  // one statement: its own transaction
}

Status MetaStore::IntegrityCheck(std::string* report) {
  MutexLock l(&mu_);
  Db d{db_, path_};
  report->clear();
  std::vector<std::string> sqlite_lines;
  {
    Stmt st(d);
    BV_RETURN_IF_ERROR(st.Prepare("PRAGMA integrity_check", "running PRAGMA integrity_check"));
    for (;;) {
      bool row = false;
      BV_RETURN_IF_ERROR(st.Step(&row));
      if (!row) break;
      const unsigned char* line = sqlite3_column_text(st.get(), 0);
      sqlite_lines.emplace_back(line != nullptr ? reinterpret_cast<const char*>(line) : "");
    }
  }
  bool sqlite_ok = sqlite_lines.size() == 1 && sqlite_lines[0] == "ok";
  *report += sqlite_ok ? "sqlite integrity_check: ok\n" : "sqlite integrity_check: FAILED\n";
  if (!sqlite_ok) {
    for (const std::string& line : sqlite_lines) *report += "  " + line + "\n";
    return Logged(Status::Corruption(path_ + ": PRAGMA integrity_check failed: " +
                                     (sqlite_lines.empty() ? std::string("no answer") : sqlite_lines[0])));
  }
  // The checks every reader makes, all at once. The first failure is the
  // result; the report says how far it got.
  Status first;
  auto step = [&](const char* what, Status s) {
    *report += std::string(what) + ": " + (s.ok() ? "ok" : s.message()) + "\n";
    if (first.ok() && !s.ok()) first = s;
    return s.ok();
  };
  if (!step("schema", CheckSchema(d))) return first;
  VolumeState vs;
  if (!step("volume", ReadVolume(d, &vs))) return first;
  Watermark w;
  bool have_w = step("watermark", ReadWatermark(d, &w));
  step("segments (ring)", CheckSegmentRows(d, vs.row));
  if (have_w) {
    std::vector<SealedSegment> sealed;
    if (step("segments (sealed)", ReadSealed(d, vs.row, w, &sealed))) {
      *report += "  " + std::to_string(sealed.size()) + " sealed segments not yet home\n";
    }
  }
  Checkpoint cp;
  bool present = false;
  if (step("checkpoint", ReadCheckpoint(d, vs.row, &cp, &present))) {
    *report += present ? "  present, " + std::to_string(cp.entries.size()) + " entries\n" : "  none\n";
  }
  // The views are for people: a broken one is reported, not an error.
  for (const char* view : kViews) {
    std::string sql = std::string("SELECT count(*) FROM ") + view;
    sqlite3_stmt* st = nullptr;
    int rc = sqlite3_prepare_v2(d.db, sql.c_str(), -1, &st, nullptr);
    if (rc == SQLITE_OK) rc = sqlite3_step(st);
    *report += std::string("view ") + view + ": " +
               (rc == SQLITE_ROW ? std::string("ok") : std::string("missing or broken: ") + sqlite3_errmsg(d.db)) +
               "\n";
    sqlite3_finalize(st);
  }
  return first;
}

}  // namespace boostvol::meta
