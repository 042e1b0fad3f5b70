// Damaged metadata and logs (issue 3, part 4): each kind of damage gets its
// documented outcome (docs/cli.md, `check --repair`; src/log/log_scanner.h,
// R4/R5):
//  - a torn tail (records no evidence proves durable) is discarded silently;
//  - anything else refuses to mount with a message naming `boostvol check`;
//    CheckVolume reports it; RepairVolume brings the volume back to the
//    longest consistent prefix of its log, and every block of that prefix
//    reads back as written.
// Each test writes one block per Flush, so each write is one log record
// (checked against the log's own headers by WalkLog), and the expected image
// after a repair is the image after the writes of the kept records.
#include <gtest/gtest.h>
#include <sqlite3.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <set>

#include "boostvol/volume.h"
#include "lib/small_volume.h"
#include "lib/temp_dirs.h"
#include "log/log_scanner.h"
#include "meta/meta_store.h"
#include "util/env.h"

namespace boostvol {
namespace {

namespace fs = std::filesystem;
using test::TempDirs;

constexpr uint64_t kImage = 2 << 20;        // 512 blocks
constexpr uint32_t kSegment = 16384;        // 4 blocks: a header and up to 3 data blocks
constexpr uint64_t kCache = 256 << 10;      // 16 segments
constexpr uint32_t kBlock = 4096;

bool Contains(const std::string& s, const std::string& what) { return s.find(what) != std::string::npos; }

// A record as found in the log: its seq, segment, absolute header block and
// the image blocks it holds.
struct LogRecord {
  uint64_t seq = 0;
  uint64_t segment = 0;
  uint32_t pos = 0;
  std::vector<uint64_t> lbas;
};

class Damage {
 public:
  Damage() {
    Status s = CreateVolume(test::SmallVolumeOptions(dirs, kImage, kCache, kSegment));
    EXPECT_TRUE(s.ok()) << s.ToString();
  }
  Status Open() {
    OpenOptions oo;
    oo.fast_dir = dirs.fast();
    oo.start_migrator = false;
    return Volume::Open(oo, &vol);
  }
  // Writes one block (lba) and flushes: one durable record.
  void WriteBlock(uint64_t lba) {
    std::vector<uint8_t> data(kBlock);
    uint64_t tag = writes.size() + 1;
    for (size_t i = 0; i < data.size(); i++) data[i] = static_cast<uint8_t>(tag * 37 + lba * 11 + i * 7);
    Status s = vol->Write(lba * kBlock, kBlock, data.data());
    ASSERT_TRUE(s.ok()) << s.ToString();
    s = vol->Flush();
    ASSERT_TRUE(s.ok()) << s.ToString();
    writes.push_back({lba, std::move(data)});
  }
  // n writes, cycling over `span` blocks starting at `first` (so later ones
  // overwrite earlier ones).
  void WriteMany(int n, uint64_t first = 0, uint64_t span = 8) {
    for (int i = 0; i < n; i++) {
      WriteBlock(first + (writes.size() % span));
      if (::testing::Test::HasFatalFailure()) return;
    }
  }
  void Close() {
    Status s = vol->Close();
    ASSERT_TRUE(s.ok()) << s.ToString();
    vol.reset();
  }
  // As if the last mount had crashed right after starting: the checkpoint is
  // gone and the stop is unclean, so the next Open replays the log.
  void MarkUnclean() {
    std::unique_ptr<meta::MetaStore> m;
    Status s = meta::MetaStore::Open(meta_path(), false, &m);
    ASSERT_TRUE(s.ok()) << s.ToString();
    uint64_t count;
    s = m->BeginMount(&count);
    ASSERT_TRUE(s.ok()) << s.ToString();
  }
  std::vector<meta::SealedSegment> Sealed() {
    std::unique_ptr<meta::MetaStore> m;
    std::vector<meta::SealedSegment> out;
    Status s = meta::MetaStore::Open(meta_path(), false, &m);
    EXPECT_TRUE(s.ok()) << s.ToString();
    if (s.ok()) {
      EXPECT_TRUE(m->LoadSealedSegments(&out).ok());
    }
    return out;
  }
  // The image after the first k writes (nothing has been migrated: home is zeros).
  std::vector<uint8_t> Expected(size_t k) const {
    std::vector<uint8_t> img(kImage, 0);
    for (size_t i = 0; i < k && i < writes.size(); i++)
      std::memcpy(img.data() + writes[i].first * kBlock, writes[i].second.data(), kBlock);
    return img;
  }
  std::vector<uint8_t> ReadAll() {
    std::vector<uint8_t> out(kImage);
    Status s = vol->Read(0, kImage, out.data());
    EXPECT_TRUE(s.ok()) << s.ToString();
    return out;
  }
  // Every record from the start of the log (nothing migrated), following R2.
  std::vector<LogRecord> WalkLog() {
    std::vector<LogRecord> out;
    std::unique_ptr<meta::MetaStore> m;
    meta::VolumeRow row;
    EXPECT_TRUE(meta::MetaStore::Open(meta_path(), false, &m).ok());
    if (!m || !m->LoadVolume(&row).ok()) return out;
    m.reset();
    log::Uuid uuid{};
    log::UuidFromString(row.uuid, &uuid);
    std::unique_ptr<Dir> d;
    std::unique_ptr<File> f;
    EXPECT_TRUE(Env::Posix()->OpenDir(dirs.fast(), &d).ok());
    EXPECT_TRUE(d->OpenFile("log", OpenMode::kReadOnly, &f).ok());
    auto hdr = std::make_unique<log::RecordHeader>();
    std::vector<uint8_t> data;
    uint64_t seg = 0, seq = 1;
    uint32_t used = 0;
    for (;;) {
      uint32_t here = static_cast<uint32_t>((seg % row.segment_count) * row.segment_blocks) + used;
      if (log::ReadRecord(f.get(), uuid, here, seq, seg, nullptr, row.segment_blocks - used, hdr.get(), &data).ok()) {
      } else if (used > 0 && seg + 1 < row.segment_count &&
                 log::ReadRecord(f.get(), uuid, static_cast<uint32_t>(((seg + 1) % row.segment_count) * row.segment_blocks),
                                 seq, seg + 1, nullptr, row.segment_blocks, hdr.get(), &data).ok()) {
        seg++;
        used = 0;
        here = static_cast<uint32_t>((seg % row.segment_count) * row.segment_blocks);
      } else {
        break;
      }
      LogRecord r{seq, seg, here, {}};
      for (uint32_t i = 0; i < hdr->nblocks; i++) r.lbas.push_back(hdr->entries[i].lba);
      out.push_back(r);
      used += 1 + hdr->nblocks;
      seq++;
    }
    return out;
  }
  // Checks that record i holds exactly write i (one write per record).
  void ExpectOneRecordPerWrite(const std::vector<LogRecord>& recs) {
    ASSERT_EQ(recs.size(), writes.size());
    for (size_t i = 0; i < recs.size(); i++) {
      ASSERT_EQ(recs[i].lbas.size(), 1u) << "record " << recs[i].seq;
      ASSERT_EQ(recs[i].lbas[0], writes[i].first) << "record " << recs[i].seq;
    }
  }

  std::string log_path() const { return dirs.fast() + "/log"; }
  std::string meta_path() const { return dirs.fast() + "/meta.db"; }

  TempDirs dirs;
  std::unique_ptr<Volume> vol;
  std::vector<std::pair<uint64_t, std::vector<uint8_t>>> writes;
};

void FlipBit(const std::string& path, uint64_t offset, uint8_t mask = 0x10) {
  std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
  ASSERT_TRUE(f.good()) << path;
  f.seekg(static_cast<std::streamoff>(offset));
  char c = 0;
  f.read(&c, 1);
  c = static_cast<char>(c ^ mask);
  f.seekp(static_cast<std::streamoff>(offset));
  f.write(&c, 1);
  ASSERT_TRUE(f.good()) << path;
}

void WriteFile(const std::string& path, const std::vector<uint8_t>& bytes) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  ASSERT_TRUE(f.good()) << path;
}

void RemoveSidecars(const std::string& db) {
  std::error_code ec;
  fs::remove(db + "-wal", ec);
  fs::remove(db + "-shm", ec);
}

// Runs a SQL statement on meta.db with the sqlite3 C API (a hand edit).
void EditMeta(const std::string& db, const std::string& sql) {
  sqlite3* h = nullptr;
  ASSERT_EQ(sqlite3_open(db.c_str(), &h), SQLITE_OK);
  char* err = nullptr;
  int rc = sqlite3_exec(h, sql.c_str(), nullptr, nullptr, &err);
  std::string msg = err ? err : "";
  sqlite3_free(err);
  sqlite3_close(h);
  ASSERT_EQ(rc, SQLITE_OK) << msg;
}

// Flips one byte of checkpoint.entries with the sqlite3 C API (read the blob,
// change it, write it back), as a damaged page or a hand edit would.
void FlipCheckpointBlobByte(const std::string& db, size_t at) {
  sqlite3* h = nullptr;
  ASSERT_EQ(sqlite3_open(db.c_str(), &h), SQLITE_OK);
  sqlite3_stmt* st = nullptr;
  ASSERT_EQ(sqlite3_prepare_v2(h, "SELECT entries FROM checkpoint WHERE id = 1", -1, &st, nullptr), SQLITE_OK);
  ASSERT_EQ(sqlite3_step(st), SQLITE_ROW);
  const uint8_t* p = static_cast<const uint8_t*>(sqlite3_column_blob(st, 0));
  std::vector<uint8_t> blob(p, p + sqlite3_column_bytes(st, 0));
  sqlite3_finalize(st);
  ASSERT_GT(blob.size(), at);
  blob[at] ^= 0x5a;
  ASSERT_EQ(sqlite3_prepare_v2(h, "UPDATE checkpoint SET entries = ? WHERE id = 1", -1, &st, nullptr), SQLITE_OK);
  sqlite3_bind_blob(st, 1, blob.data(), static_cast<int>(blob.size()), SQLITE_TRANSIENT);
  EXPECT_EQ(sqlite3_step(st), SQLITE_DONE) << sqlite3_errmsg(h);
  sqlite3_finalize(st);
  sqlite3_close(h);
}

CheckReport Check(const std::string& fast) {
  CheckReport r;
  Status s = CheckVolume(fast, nullptr, &r);
  EXPECT_TRUE(s.ok()) << s.ToString();
  return r;
}

RepairReport Repair(const std::string& fast) {
  RepairReport r;
  Status s = RepairVolume(fast, nullptr, &r);
  EXPECT_TRUE(s.ok()) << s.ToString();
  return r;
}

std::vector<uint64_t> LbasFrom(const std::vector<LogRecord>& recs, size_t first) {
  std::set<uint64_t> s;
  for (size_t i = first; i < recs.size(); i++) s.insert(recs[i].lbas.begin(), recs[i].lbas.end());
  return {s.begin(), s.end()};
}

// ---------------------------------------------------------------------------

TEST(DamageTest, TornTailIsDiscardedSilently) {
  Damage d;
  ASSERT_TRUE(d.Open().ok());
  d.WriteMany(7);
  ASSERT_NO_FATAL_FAILURE(d.Close());
  ASSERT_NO_FATAL_FAILURE(d.MarkUnclean());
  std::vector<LogRecord> recs = d.WalkLog();
  ASSERT_NO_FATAL_FAILURE(d.ExpectOneRecordPerWrite(recs));
  // The last record is in the open segment: nothing but its own bytes says it was durable.
  const LogRecord& last = recs.back();
  for (const auto& x : d.Sealed()) ASSERT_LT(x.last_record, last.seq) << "precondition: the tail is not sealed";
  ASSERT_NO_FATAL_FAILURE(FlipBit(d.log_path(), (uint64_t{last.pos} + 1) * kBlock + 7));

  ASSERT_TRUE(d.Open().ok());
  EXPECT_FALSE(d.vol->GetStatus().clean_open);
  EXPECT_EQ(d.ReadAll(), d.Expected(d.writes.size() - 1));
  ASSERT_NO_FATAL_FAILURE(d.Close());
  CheckReport cr = Check(d.dirs.fast());
  EXPECT_TRUE(cr.problems.empty()) << cr.problems.front();
}

TEST(DamageTest, FlippedSealedRecordIsRefusedReportedAndRepaired) {
  Damage d;
  ASSERT_TRUE(d.Open().ok());
  d.WriteMany(12);  // 12 records, two per segment
  ASSERT_NO_FATAL_FAILURE(d.Close());
  ASSERT_NO_FATAL_FAILURE(d.MarkUnclean());  // a crash: the next mount replays the log
  std::vector<LogRecord> recs = d.WalkLog();
  ASSERT_NO_FATAL_FAILURE(d.ExpectOneRecordPerWrite(recs));
  // Damage record 7's data (segment 3, sealed in meta.db).
  const size_t bad = 6;
  std::vector<meta::SealedSegment> sealed = d.Sealed();
  ASSERT_TRUE(std::any_of(sealed.begin(), sealed.end(), [&](const auto& x) {
    return x.first_record <= recs[bad].seq && recs[bad].seq <= x.last_record;
  })) << "precondition: the damaged record's segment is sealed";
  ASSERT_NO_FATAL_FAILURE(FlipBit(d.log_path(), (uint64_t{recs[bad].pos} + 1) * kBlock + 100));

  Status s = d.Open();
  ASSERT_TRUE(s.IsCorruption()) << s.ToString();
  EXPECT_TRUE(Contains(s.message(), "boostvol check")) << s.message();
  EXPECT_TRUE(Contains(s.message(), "record " + std::to_string(recs[bad].seq))) << s.message();

  CheckReport cr = Check(d.dirs.fast());
  ASSERT_FALSE(cr.problems.empty());
  EXPECT_EQ(cr.records_checked, bad);

  RepairReport rr = Repair(d.dirs.fast());
  EXPECT_EQ(rr.records_kept, bad);
  EXPECT_EQ(rr.records_dropped, recs.size() - bad);
  EXPECT_EQ(rr.lost_blocks, LbasFrom(recs, bad));
  EXPECT_TRUE(Contains(rr.summary, "repaired")) << rr.summary;

  cr = Check(d.dirs.fast());
  EXPECT_TRUE(cr.problems.empty()) << cr.problems.front();
  ASSERT_TRUE(d.Open().ok());
  EXPECT_EQ(d.ReadAll(), d.Expected(bad));

  // The repaired volume takes new writes and survives a crash and a clean stop.
  d.writes.resize(bad);
  d.WriteMany(9, 100, 5);
  EXPECT_EQ(d.ReadAll(), d.Expected(d.writes.size()));
  ASSERT_NO_FATAL_FAILURE(d.Close());
  ASSERT_NO_FATAL_FAILURE(d.MarkUnclean());
  ASSERT_TRUE(d.Open().ok());
  EXPECT_EQ(d.ReadAll(), d.Expected(d.writes.size()));
  ASSERT_NO_FATAL_FAILURE(d.Close());
  ASSERT_TRUE(d.Open().ok());
  EXPECT_TRUE(d.vol->GetStatus().clean_open);
  EXPECT_EQ(d.ReadAll(), d.Expected(d.writes.size()));

  // A second repair finds nothing to do.
  ASSERT_NO_FATAL_FAILURE(d.Close());
  rr = Repair(d.dirs.fast());
  EXPECT_EQ(rr.records_dropped, 0u);
  EXPECT_TRUE(Contains(rr.summary, "nothing to repair")) << rr.summary;
}

TEST(DamageTest, FlippedRecordAfterCleanStopReadsEioUntilRepaired) {
  Damage d;
  ASSERT_TRUE(d.Open().ok());
  d.WriteMany(10, 0, 10);  // ten distinct blocks
  ASSERT_NO_FATAL_FAILURE(d.Close());
  std::vector<LogRecord> recs = d.WalkLog();
  ASSERT_NO_FATAL_FAILURE(d.ExpectOneRecordPerWrite(recs));
  const size_t bad = 4;
  ASSERT_NO_FATAL_FAILURE(FlipBit(d.log_path(), (uint64_t{recs[bad].pos} + 1) * kBlock));

  // The checkpoint makes the mount read no log; the damaged copy fails its
  // checksum when read (EIO), never returning wrong data.
  ASSERT_TRUE(d.Open().ok());
  std::vector<uint8_t> buf(kBlock);
  Status s = d.vol->Read(recs[bad].lbas[0] * kBlock, kBlock, buf.data());
  EXPECT_EQ(s.code(), Status::Code::kIoError) << s.ToString();
  ASSERT_NO_FATAL_FAILURE(d.Close());
  EXPECT_FALSE(Check(d.dirs.fast()).problems.empty());

  // The clean stop proved every record durable: repair cuts at the damage.
  RepairReport rr = Repair(d.dirs.fast());
  EXPECT_EQ(rr.records_kept, bad);
  EXPECT_EQ(rr.lost_blocks, LbasFrom(recs, bad));
  ASSERT_TRUE(d.Open().ok());
  EXPECT_FALSE(d.vol->GetStatus().clean_open);
  EXPECT_EQ(d.ReadAll(), d.Expected(bad));
}

TEST(DamageTest, TruncatedLogIsRefusedAndRepaired) {
  Damage d;
  ASSERT_TRUE(d.Open().ok());
  d.WriteMany(12);
  ASSERT_NO_FATAL_FAILURE(d.Close());
  std::vector<LogRecord> recs = d.WalkLog();
  ASSERT_NO_FATAL_FAILURE(d.ExpectOneRecordPerWrite(recs));
  // Cut the log at the start of slot 3.
  const uint64_t cut_block = 3 * (kSegment / kBlock);
  size_t kept = 0;
  while (kept < recs.size() && recs[kept].pos < cut_block) kept++;
  ASSERT_GT(kept, 0u);
  ASSERT_LT(kept, recs.size());
  fs::resize_file(d.log_path(), cut_block * kBlock);

  Status s = d.Open();
  ASSERT_TRUE(s.IsCorruption()) << s.ToString();
  EXPECT_TRUE(Contains(s.message(), "FAST/log is")) << s.message();
  EXPECT_TRUE(Contains(s.message(), "boostvol check")) << s.message();
  EXPECT_FALSE(Check(d.dirs.fast()).problems.empty());

  RepairReport rr = Repair(d.dirs.fast());
  EXPECT_EQ(rr.records_kept, kept);
  EXPECT_EQ(rr.records_dropped, recs.size() - kept);
  EXPECT_EQ(fs::file_size(d.log_path()), kCache);
  EXPECT_TRUE(Contains(rr.summary, "resized")) << rr.summary;
  ASSERT_TRUE(d.Open().ok());
  EXPECT_EQ(d.ReadAll(), d.Expected(kept));
}

TEST(DamageTest, MissingMetaDbIsNoVolume) {
  Damage d;
  ASSERT_TRUE(d.Open().ok());
  d.WriteMany(2);
  ASSERT_NO_FATAL_FAILURE(d.Close());
  fs::remove(d.meta_path());
  RemoveSidecars(d.meta_path());
  Status s = d.Open();
  EXPECT_TRUE(s.IsNotFound()) << s.ToString();
  EXPECT_TRUE(Contains(s.message(), "no boostvol volume")) << s.message();
  CheckReport cr;
  s = CheckVolume(d.dirs.fast(), nullptr, &cr);
  EXPECT_TRUE(s.IsNotFound()) << s.ToString();
  RepairReport rr;
  s = RepairVolume(d.dirs.fast(), nullptr, &rr);
  EXPECT_TRUE(s.IsNotFound()) << s.ToString();
  EXPECT_TRUE(Contains(s.message(), "no boostvol volume")) << s.message();
}

TEST(DamageTest, GarbageOrTruncatedMetaDbIsCorruptionAndNotRepaired) {
  for (int variant = 0; variant < 3; variant++) {
    SCOPED_TRACE("variant " + std::to_string(variant));
    Damage d;
    ASSERT_TRUE(d.Open().ok());
    d.WriteMany(2);
    ASSERT_NO_FATAL_FAILURE(d.Close());
    RemoveSidecars(d.meta_path());
    if (variant == 0) {  // replaced by garbage
      std::vector<uint8_t> junk(64 << 10);
      std::mt19937 rng(1);
      for (auto& b : junk) b = static_cast<uint8_t>(rng());
      ASSERT_NO_FATAL_FAILURE(WriteFile(d.meta_path(), junk));
    } else if (variant == 1) {  // truncated after the header page
      fs::resize_file(d.meta_path(), 4096);
    } else {  // header page damaged
      ASSERT_NO_FATAL_FAILURE(FlipBit(d.meta_path(), 3, 0xff));
    }
    Status s = d.Open();
    ASSERT_TRUE(s.IsCorruption()) << s.ToString();
    EXPECT_TRUE(Contains(s.message(), "meta.db")) << s.message();
    EXPECT_TRUE(Contains(s.message(), "boostvol check")) << s.message();
    CheckReport cr;
    s = CheckVolume(d.dirs.fast(), nullptr, &cr);
    EXPECT_TRUE(!s.ok() || !cr.problems.empty()) << s.ToString();
    // Repair cannot invent the geometry: it refuses and says why.
    RepairReport rr;
    s = RepairVolume(d.dirs.fast(), nullptr, &rr);
    EXPECT_TRUE(s.IsCorruption()) << s.ToString();
    EXPECT_TRUE(Contains(s.message(), "cannot rebuild")) << s.message();
  }
}

TEST(DamageTest, CorruptCheckpointFallsBackToLogReplay) {
  Damage d;
  ASSERT_TRUE(d.Open().ok());
  d.WriteMany(11);
  ASSERT_NO_FATAL_FAILURE(d.Close());
  // Flip one byte of the entries blob, keeping its length and crc.
  ASSERT_NO_FATAL_FAILURE(FlipCheckpointBlobByte(d.meta_path(), 5));
  ASSERT_TRUE(d.Open().ok());
  EXPECT_FALSE(d.vol->GetStatus().clean_open);
  EXPECT_EQ(d.ReadAll(), d.Expected(d.writes.size()));
  ASSERT_NO_FATAL_FAILURE(d.Close());

  // Repair drops a damaged checkpoint and keeps every record.
  ASSERT_NO_FATAL_FAILURE(EditMeta(d.meta_path(), "UPDATE checkpoint SET entries_crc = entries_crc + 1 WHERE id = 1"));
  RepairReport rr = Repair(d.dirs.fast());
  EXPECT_EQ(rr.records_dropped, 0u);
  EXPECT_TRUE(rr.lost_blocks.empty());
  EXPECT_TRUE(Contains(rr.summary, "checkpoint")) << rr.summary;
  ASSERT_TRUE(d.Open().ok());
  EXPECT_EQ(d.ReadAll(), d.Expected(d.writes.size()));
}

TEST(DamageTest, DamagedSegmentRowsAreDroppedByRepair) {
  Damage d;
  ASSERT_TRUE(d.Open().ok());
  d.WriteMany(10);
  ASSERT_NO_FATAL_FAILURE(d.Close());
  ASSERT_NO_FATAL_FAILURE(d.MarkUnclean());
  ASSERT_GE(d.Sealed().size(), 2u);
  // Two sealed rows claiming overlapping records.
  ASSERT_NO_FATAL_FAILURE(EditMeta(d.meta_path(),
                                   "UPDATE segments SET first_record = 1 WHERE state = 'sealed' AND "
                                   "segment_seq = (SELECT max(segment_seq) FROM segments WHERE state = 'sealed')"));
  Status s = d.Open();
  ASSERT_TRUE(s.IsCorruption()) << s.ToString();
  EXPECT_TRUE(Contains(s.message(), "boostvol check")) << s.message();
  RepairReport rr = Repair(d.dirs.fast());
  EXPECT_EQ(rr.records_dropped, 0u);
  EXPECT_TRUE(Contains(rr.summary, "segment rows")) << rr.summary;
  ASSERT_TRUE(d.Open().ok());
  EXPECT_EQ(d.ReadAll(), d.Expected(d.writes.size()));
  ASSERT_NO_FATAL_FAILURE(d.Close());
  EXPECT_FALSE(d.Sealed().empty());  // the mount sealed them again from the log
}

TEST(DamageTest, MetaDbOlderThanLogStillFindsTheNewerRecords) {
  Damage d;
  ASSERT_TRUE(d.Open().ok());
  d.WriteMany(5);
  ASSERT_NO_FATAL_FAILURE(d.Close());
  ASSERT_FALSE(fs::exists(d.meta_path() + "-wal"));
  fs::copy_file(d.meta_path(), d.dirs.root() + "/meta.db.old");
  ASSERT_TRUE(d.Open().ok());
  d.WriteMany(8, 20, 8);
  ASSERT_NO_FATAL_FAILURE(d.Close());
  RemoveSidecars(d.meta_path());
  fs::copy_file(d.dirs.root() + "/meta.db.old", d.meta_path(), fs::copy_options::overwrite_existing);

  ASSERT_TRUE(d.Open().ok());
  EXPECT_FALSE(d.vol->GetStatus().clean_open);  // the tail held a record the checkpoint did not know
  EXPECT_EQ(d.ReadAll(), d.Expected(d.writes.size()));
}

TEST(DamageTest, MetaDbNewerThanLogIsRefusedAndRepaired) {
  Damage d;
  ASSERT_TRUE(d.Open().ok());
  d.WriteMany(6);
  ASSERT_NO_FATAL_FAILURE(d.Close());
  fs::copy_file(d.log_path(), d.dirs.root() + "/log.old");
  const size_t old_writes = d.writes.size();
  ASSERT_TRUE(d.Open().ok());
  d.WriteMany(8, 40, 8);
  ASSERT_NO_FATAL_FAILURE(d.Close());
  ASSERT_NO_FATAL_FAILURE(d.MarkUnclean());
  fs::copy_file(d.dirs.root() + "/log.old", d.log_path(), fs::copy_options::overwrite_existing);
  uint64_t claimed = 0;
  for (const auto& x : d.Sealed()) claimed = std::max(claimed, x.last_record);
  ASSERT_GT(claimed, old_writes) << "precondition: meta.db claims records the log lost";

  Status s = d.Open();
  ASSERT_TRUE(s.IsCorruption()) << s.ToString();
  EXPECT_TRUE(Contains(s.message(), "meta.db records as durable")) << s.message();
  EXPECT_TRUE(Contains(s.message(), "boostvol check")) << s.message();
  EXPECT_FALSE(Check(d.dirs.fast()).problems.empty());

  RepairReport rr = Repair(d.dirs.fast());
  EXPECT_EQ(rr.records_kept, old_writes);
  EXPECT_GE(rr.records_dropped, claimed - old_writes);
  EXPECT_TRUE(Contains(rr.summary, "unreadable")) << rr.summary;  // what they held is gone with them
  ASSERT_TRUE(d.Open().ok());
  EXPECT_EQ(d.ReadAll(), d.Expected(old_writes));
}

TEST(DamageTest, RepairIsRefusedWhileMounted) {
  Damage d;
  ASSERT_TRUE(d.Open().ok());
  RepairReport rr;
  Status s = RepairVolume(d.dirs.fast(), nullptr, &rr);
  EXPECT_TRUE(s.IsBusy()) << s.ToString();
  EXPECT_TRUE(Contains(s.message(), "unmount")) << s.message();
}

TEST(DamageTest, ForgetSegmentsFromFreesRowsAndDropsTheCheckpoint) {
  Damage d;
  ASSERT_TRUE(d.Open().ok());
  d.WriteMany(12);
  ASSERT_NO_FATAL_FAILURE(d.Close());
  std::vector<meta::SealedSegment> before = d.Sealed();
  ASSERT_GE(before.size(), 3u);
  {
    std::unique_ptr<meta::MetaStore> m;
    ASSERT_TRUE(meta::MetaStore::Open(d.meta_path(), false, &m).ok());
    ASSERT_TRUE(m->ForgetSegmentsFrom(before[1].segment_seq).ok());
    meta::Checkpoint cp;
    bool found = true;
    ASSERT_TRUE(m->LoadCheckpoint(&cp, &found).ok());
    EXPECT_FALSE(found);
  }
  std::vector<meta::SealedSegment> after = d.Sealed();
  ASSERT_EQ(after.size(), 1u);
  EXPECT_EQ(after[0].segment_seq, before[0].segment_seq);
  {
    std::unique_ptr<meta::MetaStore> m;
    ASSERT_TRUE(meta::MetaStore::Open(d.meta_path(), false, &m).ok());
    ASSERT_TRUE(m->ForgetSegmentsFrom(0).ok());
    std::string integrity;
    EXPECT_TRUE(m->IntegrityCheck(&integrity).ok()) << integrity;
  }
  EXPECT_TRUE(d.Sealed().empty());
  // The log alone brings everything back.
  ASSERT_TRUE(d.Open().ok());
  EXPECT_FALSE(d.vol->GetStatus().clean_open);
  EXPECT_EQ(d.ReadAll(), d.Expected(d.writes.size()));
}

}  // namespace
}  // namespace boostvol
