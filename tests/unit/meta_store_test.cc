// Tests of MetaStore (src/meta/meta_store.h): the roundtrips, the file's
// permissions, and that every tampered or foreign meta.db is refused with a
// clear Status rather than trusted.
#include "meta/meta_store.h"

#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "util/crc32c.h"

namespace boostvol::meta {
namespace {

namespace fs = std::filesystem;

constexpr char kUuid[] = "0123abcd-4567-89ef-0123-456789abcdef";

VolumeRow TestVolume() {
  VolumeRow v;
  v.uuid = kUuid;
  v.image_size = uint64_t{8} << 30;  // 8 GiB: 2^21 blocks
  v.segment_blocks = 1024;
  v.segment_count = 16;
  v.home = "dir:/slow/dir";
  v.created_unix = 1700000000;
  return v;
}

class MetaStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "meta_store_test.XXXXXX").string();
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
    path_ = dir_ + "/meta.db";
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  std::unique_ptr<MetaStore> CreateStore(const VolumeRow& v = TestVolume()) {
    std::unique_ptr<MetaStore> store;
    Status s = MetaStore::Create(path_, v, &store);
    EXPECT_TRUE(s.ok()) << s.ToString();
    return store;
  }
  std::unique_ptr<MetaStore> OpenStore(bool read_only = false) {
    std::unique_ptr<MetaStore> store;
    Status s = MetaStore::Open(path_, read_only, &store);
    EXPECT_TRUE(s.ok()) << s.ToString();
    return store;
  }

  // Runs SQL through a connection of our own (the store must be closed, or at
  // least not in a transaction).
  void RawSql(const std::string& sql) {
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open_v2(path_.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nullptr), SQLITE_OK);
    char* err = nullptr;
    int rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err);
    EXPECT_EQ(rc, SQLITE_OK) << (err != nullptr ? err : "") << " in " << sql;
    sqlite3_free(err);
    sqlite3_close(db);
  }
  // The rows of a query, each row's columns joined by '|'.
  std::vector<std::string> Query(const std::string& sql) {
    std::vector<std::string> rows;
    sqlite3* db = nullptr;
    EXPECT_EQ(sqlite3_open_v2(path_.c_str(), &db, SQLITE_OPEN_READONLY, nullptr), SQLITE_OK);
    sqlite3_stmt* st = nullptr;
    EXPECT_EQ(sqlite3_prepare_v2(db, sql.c_str(), -1, &st, nullptr), SQLITE_OK) << sqlite3_errmsg(db);
    while (st != nullptr && sqlite3_step(st) == SQLITE_ROW) {
      std::string row;
      for (int i = 0; i < sqlite3_column_count(st); ++i) {
        const unsigned char* t = sqlite3_column_text(st, i);
        row += (i ? "|" : "") + std::string(t != nullptr ? reinterpret_cast<const char*>(t) : "NULL");
      }
      rows.push_back(row);
    }
    sqlite3_finalize(st);
    sqlite3_close(db);
    return rows;
  }

  static Checkpoint TestCheckpoint() {
    Checkpoint cp;
    cp.tail = TailState{.next_record_seq = 42, .segment_seq = 3, .next_block_in_segment = 100, .prev_crc = 0xdeadbeef};
    cp.watermark = Watermark{.segment_seq = 1, .record_seq = 10};
    for (uint32_t i = 0; i < 100; ++i) cp.entries.push_back(IndexEntry{i * 7, 1024 + i, 0x1000 + i});
    return cp;
  }

  std::string dir_;
  std::string path_;
};

uint32_t FileMode(const std::string& p) {
  struct stat st;
  if (::lstat(p.c_str(), &st) != 0) return 0;
  return st.st_mode & 07777;
}

TEST_F(MetaStoreTest, CreateOpenRoundtrip) {
  VolumeRow v = TestVolume();
  v.home_journal = false;
  {
    auto store = CreateStore(v);
    ASSERT_NE(store, nullptr);
    EXPECT_EQ(store->path(), path_);
  }
  auto store = OpenStore();
  ASSERT_NE(store, nullptr);
  VolumeRow got;
  ASSERT_TRUE(store->LoadVolume(&got).ok());
  EXPECT_EQ(got.uuid, v.uuid);
  EXPECT_EQ(got.format_version, 1u);
  EXPECT_EQ(got.image_size, v.image_size);
  EXPECT_EQ(got.block_size, 4096u);
  EXPECT_EQ(got.segment_blocks, v.segment_blocks);
  EXPECT_EQ(got.segment_count, v.segment_count);
  EXPECT_EQ(got.home, v.home);
  EXPECT_EQ(got.created_unix, v.created_unix);
  EXPECT_FALSE(got.home_journal);
  Watermark w;
  ASSERT_TRUE(store->LoadWatermark(&w).ok());
  EXPECT_EQ(w.segment_seq, 0u);
  EXPECT_EQ(w.record_seq, 1u);
  std::vector<SealedSegment> sealed;
  ASSERT_TRUE(store->LoadSealedSegments(&sealed).ok());
  EXPECT_TRUE(sealed.empty());
  std::string report;
  Status s = store->IntegrityCheck(&report);
  EXPECT_TRUE(s.ok()) << s.ToString() << "\n" << report;
  EXPECT_EQ(Query("PRAGMA user_version"), std::vector<std::string>{"1"});
  EXPECT_EQ(Query("SELECT count(*) FROM segments WHERE state = 'free'"), std::vector<std::string>{"16"});
}

TEST_F(MetaStoreTest, CreateRefusesBadVolumeAndLeavesNothing) {
  VolumeRow v = TestVolume();
  v.segment_blocks = 3;
  std::unique_ptr<MetaStore> store;
  Status s = MetaStore::Create(path_, v, &store);
  EXPECT_EQ(s.code(), Status::Code::kInvalidArgument) << s.ToString();
  EXPECT_NE(s.message().find("segment_blocks"), std::string::npos) << s.message();
  v = TestVolume();
  v.uuid = "0123ABCD-4567-89ef-0123-456789abcdef";  // uppercase
  EXPECT_FALSE(MetaStore::Create(path_, v, &store).ok());
  v = TestVolume();
  v.image_size = 4096 * 3 + 1;
  EXPECT_FALSE(MetaStore::Create(path_, v, &store).ok());
  v = TestVolume();
  v.segment_blocks = 65536;
  v.segment_count = 65536;  // 2^32 log blocks
  EXPECT_FALSE(MetaStore::Create(path_, v, &store).ok());
  EXPECT_FALSE(fs::exists(path_));
}

TEST_F(MetaStoreTest, CreateRefusesExistingFile) {
  { std::ofstream(path_) << "precious"; }
  std::unique_ptr<MetaStore> store;
  Status s = MetaStore::Create(path_, TestVolume(), &store);
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("already exists"), std::string::npos) << s.message();
  std::ifstream in(path_);
  std::string content;
  in >> content;
  EXPECT_EQ(content, "precious");

  // A stale -wal beside a missing meta.db would be replayed: refused too.
  fs::remove(path_);
  { std::ofstream(path_ + "-wal") << "stale"; }
  EXPECT_FALSE(MetaStore::Create(path_, TestVolume(), &store).ok());
  EXPECT_FALSE(fs::exists(path_));

  // And a second Create over a real volume.
  fs::remove(path_ + "-wal");
  CreateStore().reset();
  s = MetaStore::Create(path_, TestVolume(), &store);
  EXPECT_FALSE(s.ok());
  EXPECT_NE(OpenStore(), nullptr);
}

TEST_F(MetaStoreTest, FilesArePrivate) {
  mode_t old = ::umask(0);  // the most permissive umask a daemon could have
  auto store = CreateStore();
  ::umask(old);
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(store->SetSetting("k", "v").ok());  // the WAL is in use
  EXPECT_EQ(FileMode(path_), 0600u);
  ASSERT_TRUE(fs::exists(path_ + "-wal"));
  EXPECT_EQ(FileMode(path_ + "-wal"), 0600u);
  EXPECT_EQ(FileMode(path_ + "-shm"), 0600u);
  store.reset();
  old = ::umask(0);
  store = OpenStore();
  ::umask(old);
  ASSERT_TRUE(store->SetSetting("k", "w").ok());
  EXPECT_EQ(FileMode(path_ + "-wal"), 0600u);
  EXPECT_EQ(FileMode(path_ + "-shm"), 0600u);
}

TEST_F(MetaStoreTest, OpenRefusesSymlinkAndMissingFile) {
  std::unique_ptr<MetaStore> store;
  Status s = MetaStore::Open(path_, false, &store);
  EXPECT_TRUE(s.IsNotFound()) << s.ToString();
  CreateStore().reset();
  std::string link = dir_ + "/link.db";
  fs::create_symlink(path_, link);
  s = MetaStore::Open(link, false, &store);
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("symbolic link"), std::string::npos) << s.message();
  // So is a -wal planted as a symlink (SQLite would open it by name).
  fs::create_symlink(dir_ + "/elsewhere", path_ + "-wal");
  s = MetaStore::Open(path_, true, &store);
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("-wal is not a regular file"), std::string::npos) << s.message();
  fs::remove(path_ + "-wal");
  // A symlink in the directory part is the user's choice and is followed.
  std::string dirlink = dir_ + "-link";
  fs::create_directory_symlink(dir_, dirlink);
  s = MetaStore::Open(dirlink + "/meta.db", false, &store);
  EXPECT_TRUE(s.ok()) << s.ToString();
  store.reset();
  fs::remove(dirlink);
}

TEST_F(MetaStoreTest, SealedSegmentsAddLoadOrder) {
  auto store = CreateStore();
  ASSERT_NE(store, nullptr);
  // Added out of order and in two batches; loaded in seq order.
  std::vector<SealedSegment> a = {{.segment_seq = 2, .slot = 2, .first_record = 30, .last_record = 39, .data_blocks = 900},
                                  {.segment_seq = 0, .slot = 0, .first_record = 1, .last_record = 19, .data_blocks = 1000}};
  std::vector<SealedSegment> b = {{.segment_seq = 1, .slot = 1, .first_record = 20, .last_record = 29, .data_blocks = 10}};
  ASSERT_TRUE(store->AddSealedSegments(a).ok());
  ASSERT_TRUE(store->AddSealedSegments(b).ok());
  store.reset();
  store = OpenStore();
  std::vector<SealedSegment> got;
  ASSERT_TRUE(store->LoadSealedSegments(&got).ok());
  ASSERT_EQ(got.size(), 3u);
  for (uint64_t i = 0; i < 3; ++i) {
    EXPECT_EQ(got[i].segment_seq, i);
    EXPECT_EQ(got[i].slot, i);
  }
  EXPECT_EQ(got[0].first_record, 1u);
  EXPECT_EQ(got[0].last_record, 19u);
  EXPECT_EQ(got[0].data_blocks, 1000u);
  EXPECT_EQ(got[2].data_blocks, 900u);

  // Re-adding the same segment is harmless.
  EXPECT_TRUE(store->AddSealedSegments(b).ok());
  // A slot still recorded as holding an older segment takes the newer one
  // (the log already holds it; meta.db's watermark may lag the home's)...
  ASSERT_TRUE(store->AddSealedSegments({{.segment_seq = 16, .slot = 0, .first_record = 40, .last_record = 41,
                                         .data_blocks = 1}})
                  .ok());
  ASSERT_TRUE(store->LoadSealedSegments(&got).ok());
  ASSERT_EQ(got.size(), 3u);
  EXPECT_EQ(got[2].segment_seq, 16u);
  // ...but never an older one.
  Status s = store->AddSealedSegments({{.segment_seq = 0, .slot = 0, .first_record = 1, .last_record = 19,
                                         .data_blocks = 1000}});
  EXPECT_EQ(s.code(), Status::Code::kInvalidArgument) << s.ToString();
  // Wrong slot for the seq, and empty record ranges, are refused.
  EXPECT_FALSE(store->AddSealedSegments({{.segment_seq = 3, .slot = 4, .first_record = 40, .last_record = 41}}).ok());
  EXPECT_FALSE(store->AddSealedSegments({{.segment_seq = 3, .slot = 3, .first_record = 41, .last_record = 40}}).ok());
  ASSERT_TRUE(store->LoadSealedSegments(&got).ok());
  EXPECT_EQ(got.size(), 3u);

  // A late report of a segment below the watermark is a no-op.
  ASSERT_TRUE(store->CommitMigration({.segment_seq = 2, .record_seq = 30}, {}).ok());
  EXPECT_TRUE(store->AddSealedSegments(b).ok());
  ASSERT_TRUE(store->LoadSealedSegments(&got).ok());
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0].segment_seq, 2u);
}

TEST_F(MetaStoreTest, CommitMigrationFreesRowsAndMovesWatermark) {
  auto store = CreateStore();
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(store->AddSealedSegments({{.segment_seq = 0, .slot = 0, .first_record = 1, .last_record = 9, .data_blocks = 9},
                                        {.segment_seq = 1, .slot = 1, .first_record = 10, .last_record = 19, .data_blocks = 9},
                                        {.segment_seq = 2, .slot = 2, .first_record = 20, .last_record = 29, .data_blocks = 9}})
                  .ok());
  ASSERT_TRUE(store->CommitMigration({.segment_seq = 2, .record_seq = 20}, {.blocks = 18, .bytes = 18 * 4096, .extents = 3})
                  .ok());
  Watermark w;
  ASSERT_TRUE(store->LoadWatermark(&w).ok());
  EXPECT_EQ(w.segment_seq, 2u);
  EXPECT_EQ(w.record_seq, 20u);
  std::vector<SealedSegment> got;
  ASSERT_TRUE(store->LoadSealedSegments(&got).ok());
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].segment_seq, 2u);
  EXPECT_EQ(Query("SELECT state, segment_seq FROM segments WHERE slot = 0"), std::vector<std::string>{"free|NULL"});

  // Freed slots take the next lap of the ring.
  EXPECT_TRUE(store->AddSealedSegments({{.segment_seq = 16, .slot = 0, .first_record = 30, .last_record = 31,
                                         .data_blocks = 1}})
                  .ok());
  ASSERT_TRUE(store->CommitMigration({.segment_seq = 3, .record_seq = 30}, {.blocks = 2, .bytes = 8192, .extents = 1})
                  .ok());
  std::vector<std::pair<std::string, int64_t>> counters;
  ASSERT_TRUE(store->LoadCounters(&counters).ok());
  std::map<std::string, int64_t> m(counters.begin(), counters.end());
  EXPECT_EQ(m["migration.blocks"], 20);
  EXPECT_EQ(m["migration.bytes"], 20 * 4096);
  EXPECT_EQ(m["migration.extents"], 4);
  EXPECT_EQ(m["migration.batches"], 2);

  // The watermark never moves back.
  Status s = store->CommitMigration({.segment_seq = 1, .record_seq = 30}, {});
  EXPECT_FALSE(s.ok());
  ASSERT_TRUE(store->LoadWatermark(&w).ok());
  EXPECT_EQ(w.segment_seq, 3u);
}

TEST_F(MetaStoreTest, CheckpointSaveLoadAndBeginMount) {
  auto store = CreateStore();
  ASSERT_NE(store, nullptr);
  Checkpoint cp;
  bool found = true;
  ASSERT_TRUE(store->LoadCheckpoint(&cp, &found).ok());
  EXPECT_FALSE(found);  // a new volume has never stopped cleanly
  uint64_t mounts = 0;
  ASSERT_TRUE(store->BeginMount(&mounts).ok());
  EXPECT_EQ(mounts, 1u);

  const Checkpoint want = TestCheckpoint();
  ASSERT_TRUE(store->SaveCheckpoint(want).ok());
  store.reset();
  store = OpenStore();
  ASSERT_TRUE(store->LoadCheckpoint(&cp, &found).ok());
  ASSERT_TRUE(found);
  EXPECT_EQ(cp.tail.next_record_seq, 42u);
  EXPECT_EQ(cp.tail.segment_seq, 3u);
  EXPECT_EQ(cp.tail.next_block_in_segment, 100u);
  EXPECT_EQ(cp.tail.prev_crc, 0xdeadbeefu);
  EXPECT_EQ(cp.watermark.segment_seq, 1u);
  EXPECT_EQ(cp.watermark.record_seq, 10u);
  ASSERT_EQ(cp.entries.size(), want.entries.size());
  for (size_t i = 0; i < cp.entries.size(); ++i) {
    EXPECT_EQ(cp.entries[i].lba, want.entries[i].lba);
    EXPECT_EQ(cp.entries[i].pos, want.entries[i].pos);
    EXPECT_EQ(cp.entries[i].crc, want.entries[i].crc);
  }
  EXPECT_EQ(Query("SELECT clean_shutdown FROM status"), std::vector<std::string>{"yes"});

  // The next mount drops it: a crash from here on must not find it.
  ASSERT_TRUE(store->BeginMount(&mounts).ok());
  EXPECT_EQ(mounts, 2u);
  ASSERT_TRUE(store->LoadCheckpoint(&cp, &found).ok());
  EXPECT_FALSE(found);
  EXPECT_EQ(Query("SELECT count(*) FROM checkpoint"), std::vector<std::string>{"0"});

  // An empty index is a valid checkpoint.
  Checkpoint empty = want;
  empty.entries.clear();
  ASSERT_TRUE(store->SaveCheckpoint(empty).ok());
  ASSERT_TRUE(store->LoadCheckpoint(&cp, &found).ok());
  EXPECT_TRUE(found);
  EXPECT_TRUE(cp.entries.empty());
}

TEST_F(MetaStoreTest, SaveCheckpointRefusesBadEntries) {
  auto store = CreateStore();
  ASSERT_NE(store, nullptr);
  Checkpoint cp = TestCheckpoint();
  cp.entries[5].pos = 16 * 1024;  // one past the log
  EXPECT_EQ(store->SaveCheckpoint(cp).code(), Status::Code::kInvalidArgument);
  cp = TestCheckpoint();
  cp.entries[5].lba = cp.entries[6].lba;  // the same block twice
  EXPECT_EQ(store->SaveCheckpoint(cp).code(), Status::Code::kInvalidArgument);
}

// Damages the stored checkpoint with `sql` and expects LoadCheckpoint to
// return Corruption mentioning `needle`.
class MetaStoreCheckpointCorruptionTest : public MetaStoreTest {
 protected:
  void ExpectCorrupt(const std::string& sql, const std::string& needle) {
    {
      auto store = CreateStore();
      ASSERT_NE(store, nullptr);
      ASSERT_TRUE(store->SaveCheckpoint(TestCheckpoint()).ok());
    }
    RawSql(sql);
    auto store = OpenStore();
    ASSERT_NE(store, nullptr);
    Checkpoint cp;
    bool found = true;
    Status s = store->LoadCheckpoint(&cp, &found);
    EXPECT_TRUE(s.IsCorruption()) << s.ToString();
    EXPECT_FALSE(found);
    EXPECT_NE(s.message().find(needle), std::string::npos) << s.message();
    EXPECT_NE(s.message().find("boostvol check " + dir_), std::string::npos) << s.message();
    std::string report;
    EXPECT_TRUE(store->IntegrityCheck(&report).IsCorruption()) << report;
  }
};

TEST_F(MetaStoreCheckpointCorruptionTest, WrongCrc) {
  ExpectCorrupt("UPDATE checkpoint SET entries_crc = (entries_crc + 1) % 4294967296", "checkpoint.entries_crc");
}

TEST_F(MetaStoreCheckpointCorruptionTest, WrongLength) {
  ExpectCorrupt("UPDATE checkpoint SET entry_count = entry_count + 1", "checkpoint.entries");
}

TEST_F(MetaStoreCheckpointCorruptionTest, FlippedByte) {
  ExpectCorrupt("UPDATE checkpoint SET entries = CAST(substr(entries, 1, 12) || x'ff' || substr(entries, 14) AS BLOB)",
                "checkpoint.entries_crc");
}

TEST_F(MetaStoreCheckpointCorruptionTest, PosOutOfRange) {
  // A blob whose crc is right but whose one entry points past the log.
  uint8_t e[12] = {1, 0, 0, 0, 0, 0, 0x01, 0, 0, 0, 0, 0};  // lba 1, pos 65536 (the log has 16384 blocks)
  uint32_t crc = crc32c::Value(e, sizeof(e));
  std::string hex;
  for (uint8_t b : e) {
    char buf[3];
    std::snprintf(buf, sizeof(buf), "%02x", b);
    hex += buf;
  }
  ExpectCorrupt("UPDATE checkpoint SET entry_count = 1, entries = x'" + hex + "', entries_crc = " + std::to_string(crc),
                "pos 65536");
}

TEST_F(MetaStoreTest, TamperedVolumeRowIsCorruption) {
  CreateStore().reset();
  RawSql("UPDATE volume SET segment_blocks = 3");
  auto store = OpenStore();  // the SQLite file itself is fine
  ASSERT_NE(store, nullptr);
  VolumeRow v;
  Status s = store->LoadVolume(&v);
  EXPECT_TRUE(s.IsCorruption()) << s.ToString();
  EXPECT_NE(s.message().find("volume.segment_blocks"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("boostvol check"), std::string::npos) << s.message();
  std::vector<SealedSegment> sealed;
  EXPECT_TRUE(store->LoadSealedSegments(&sealed).IsCorruption());
  uint64_t mounts = 0;
  EXPECT_TRUE(store->BeginMount(&mounts).IsCorruption());
  std::string report;
  EXPECT_TRUE(store->IntegrityCheck(&report).IsCorruption());
  EXPECT_NE(report.find("volume.segment_blocks"), std::string::npos) << report;
}

TEST_F(MetaStoreTest, TamperedRowsAreCorruption) {
  struct Case {
    const char* sql;
    const char* needle;
  } cases[] = {
      {"UPDATE volume SET uuid = 'not-a-uuid'", "volume.uuid"},
      {"UPDATE volume SET image_size = 4097", "volume.image_size"},
      {"UPDATE volume SET segment_count = 2", "volume.segment_count"},
      {"UPDATE volume SET block_size = 512", "volume.block_size"},
      {"UPDATE watermark SET record_seq = 0", "watermark.record_seq"},
      {"UPDATE watermark SET segment_seq = -1", "watermark.segment_seq"},
      {"UPDATE segments SET state = 'sealed', segment_seq = 5, first_record = 1, last_record = 2, data_blocks = 1 "
       "WHERE slot = 4",
       "slot is not segment_seq % segment_count"},
      {"UPDATE segments SET state = 'sealed', segment_seq = 0, first_record = 1, last_record = 2, data_blocks = 1 "
       "WHERE slot = 0; "
       "UPDATE segments SET state = 'sealed', segment_seq = 20, first_record = 3, last_record = 4, data_blocks = 1 "
       "WHERE slot = 4",
       "a whole lap of the ring"},
      {"UPDATE segments SET state = 'sealed', segment_seq = 0, first_record = 1, last_record = 9, data_blocks = 1 "
       "WHERE slot = 0; "
       "UPDATE segments SET state = 'sealed', segment_seq = 1, first_record = 9, last_record = 10, data_blocks = 1 "
       "WHERE slot = 1",
       "overlaps"},
      {"UPDATE segments SET state = 'sealed', segment_seq = 4, first_record = 1, last_record = NULL, data_blocks = 1 "
       "WHERE slot = 4",
       "segments.last_record is NULL"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.sql);
    fs::remove(path_);
    CreateStore().reset();
    RawSql(c.sql);
    auto store = OpenStore();
    ASSERT_NE(store, nullptr);
    std::vector<SealedSegment> sealed;
    Status s = store->LoadSealedSegments(&sealed);
    EXPECT_TRUE(s.IsCorruption()) << s.ToString();
    EXPECT_NE(s.message().find(c.needle), std::string::npos) << s.message();
  }
}

TEST_F(MetaStoreTest, NewerSchemaVersionIsRefused) {
  CreateStore().reset();
  RawSql("PRAGMA user_version = 2");
  for (bool read_only : {false, true}) {
    std::unique_ptr<MetaStore> store;
    Status s = MetaStore::Open(path_, read_only, &store);
    EXPECT_FALSE(s.ok());
    EXPECT_EQ(store, nullptr);
    EXPECT_NE(s.message().find("newer boostvol"), std::string::npos) << s.message();
  }
}

TEST_F(MetaStoreTest, ForeignFilesAreClearErrors) {
  std::unique_ptr<MetaStore> store;
  // Not SQLite at all.
  {
    std::ofstream out(path_, std::ios::binary);
    for (int i = 0; i < 8192; ++i) out.put(static_cast<char>(i * 37 + 11));
  }
  Status s = MetaStore::Open(path_, false, &store);
  EXPECT_TRUE(s.IsCorruption()) << s.ToString();
  EXPECT_NE(s.message().find("not a SQLite database"), std::string::npos) << s.message();
  s = MetaStore::Open(path_, true, &store);
  EXPECT_TRUE(s.IsCorruption()) << s.ToString();

  // Empty.
  fs::remove(path_);
  { std::ofstream out(path_); }
  s = MetaStore::Open(path_, true, &store);
  EXPECT_TRUE(s.IsCorruption()) << s.ToString();
  EXPECT_NE(s.message().find("empty"), std::string::npos) << s.message();

  // Somebody else's SQLite database.
  fs::remove(path_);
  RawSql("CREATE TABLE t (x)");
  s = MetaStore::Open(path_, false, &store);
  EXPECT_TRUE(s.IsCorruption()) << s.ToString();
  EXPECT_NE(s.message().find("not a boostvol meta.db"), std::string::npos) << s.message();

  // Ours, truncated to its first page.
  fs::remove(path_);
  CreateStore().reset();
  ASSERT_GT(fs::file_size(path_), 4096u);
  fs::resize_file(path_, 4096);
  s = MetaStore::Open(path_, false, &store);
  if (s.ok()) {  // SQLite may only notice when it reads a missing page
    VolumeRow v;
    std::string report;
    Status l = store->LoadVolume(&v);
    Status c = store->IntegrityCheck(&report);
    EXPECT_TRUE(!l.ok() || !c.ok()) << report;
    EXPECT_TRUE(l.ok() || l.IsCorruption()) << l.ToString();
  } else {
    EXPECT_TRUE(s.IsCorruption()) << s.ToString();
  }

  // A dropped table.
  fs::remove(path_);
  CreateStore().reset();
  RawSql("DROP TABLE counters_history");
  s = MetaStore::Open(path_, false, &store);
  EXPECT_TRUE(s.IsCorruption()) << s.ToString();
  EXPECT_NE(s.message().find("counters_history"), std::string::npos) << s.message();
}

TEST_F(MetaStoreTest, SettingsAndCountersRoundtrip) {
  auto store = CreateStore();
  ASSERT_NE(store, nullptr);
  std::string value;
  bool found = true;
  ASSERT_TRUE(store->GetSetting("idle_migrate_ms", &value, &found).ok());
  EXPECT_FALSE(found);
  ASSERT_TRUE(store->SetSetting("idle_migrate_ms", "2000").ok());
  ASSERT_TRUE(store->SetSetting("idle_migrate_ms", "500").ok());
  EXPECT_FALSE(store->SetSetting("", "x").ok());
  EXPECT_FALSE(store->SetSetting("bad key", "x").ok());

  ASSERT_TRUE(store->SaveCounters({{"write_bytes", 4096}, {"writes", 1}}).ok());
  ASSERT_TRUE(store->SaveCounters({{"write_bytes", 3 << 20}, {"writes", -2}}).ok());
  EXPECT_FALSE(store->SaveCounters({{"", 1}}).ok());
  store.reset();

  store = OpenStore();
  ASSERT_TRUE(store->GetSetting("idle_migrate_ms", &value, &found).ok());
  EXPECT_TRUE(found);
  EXPECT_EQ(value, "500");
  std::vector<std::pair<std::string, int64_t>> counters;
  ASSERT_TRUE(store->LoadCounters(&counters).ok());
  ASSERT_EQ(counters.size(), 2u);
  EXPECT_EQ(counters[0], (std::pair<std::string, int64_t>{"write_bytes", 3 << 20}));
  EXPECT_EQ(counters[1], (std::pair<std::string, int64_t>{"writes", -2}));
  EXPECT_EQ(Query("SELECT count(*) FROM counters_history WHERE name = 'writes'"), std::vector<std::string>{"2"});
  EXPECT_EQ(Query("SELECT what, human FROM stats WHERE name = 'write_bytes'"),
            std::vector<std::string>{"write bytes|3.0 MiB"});
}

TEST_F(MetaStoreTest, CounterHistoryKeepsTheLast1000PerName) {
  auto store = CreateStore();
  ASSERT_NE(store, nullptr);
  // 1005 saves (in a few calls: each save is an fsync'ed commit).
  std::vector<std::pair<std::string, int64_t>> saves;
  for (int i = 1; i <= 1000; ++i) saves.insert(saves.end(), {{"a", i}, {"b", -i}});
  ASSERT_TRUE(store->SaveCounters(saves).ok());
  for (int i = 1001; i <= 1005; ++i) ASSERT_TRUE(store->SaveCounters({{"a", i}, {"b", -i}}).ok());
  ASSERT_TRUE(store->SaveCounters({{"c", 7}}).ok());
  std::vector<std::pair<std::string, int64_t>> counters;
  ASSERT_TRUE(store->LoadCounters(&counters).ok());
  EXPECT_EQ(counters, (std::vector<std::pair<std::string, int64_t>>{{"a", 1005}, {"b", -1005}, {"c", 7}}));
  store.reset();
  EXPECT_EQ(Query("SELECT name, count(*), min(value), max(value) FROM counters_history GROUP BY name ORDER BY name"),
            (std::vector<std::string>{"a|1000|6|1005", "b|1000|-1005|-6", "c|1|7|7"}));
}

TEST_F(MetaStoreTest, ReadOnlyOpenReadsAndRefusesWrites) {
  {
    auto store = CreateStore();
    ASSERT_NE(store, nullptr);
    ASSERT_TRUE(store->SetSetting("k", "v").ok());
    ASSERT_TRUE(store->AddSealedSegments({{.segment_seq = 0, .slot = 0, .first_record = 1, .last_record = 5,
                                           .data_blocks = 5}})
                    .ok());
  }
  // A clean close removed -wal and -shm; a read-only open still works.
  EXPECT_FALSE(fs::exists(path_ + "-shm"));
  auto ro = OpenStore(/*read_only=*/true);
  ASSERT_NE(ro, nullptr);
  VolumeRow v;
  EXPECT_TRUE(ro->LoadVolume(&v).ok());
  std::vector<SealedSegment> sealed;
  ASSERT_TRUE(ro->LoadSealedSegments(&sealed).ok());
  EXPECT_EQ(sealed.size(), 1u);
  std::string value;
  bool found = false;
  ASSERT_TRUE(ro->GetSetting("k", &value, &found).ok());
  EXPECT_TRUE(found);
  std::string report;
  EXPECT_TRUE(ro->IntegrityCheck(&report).ok()) << report;

  Status s = ro->SetSetting("k", "w");
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("read-only"), std::string::npos) << s.message();
  uint64_t mounts = 0;
  EXPECT_FALSE(ro->BeginMount(&mounts).ok());
  EXPECT_FALSE(ro->SaveCounters({{"x", 1}}).ok());
  EXPECT_FALSE(ro->CommitMigration({.segment_seq = 1, .record_seq = 6}, {}).ok());
  EXPECT_FALSE(ro->SaveCheckpoint(TestCheckpoint()).ok());

  // While a writer has it open (the daemon), a reader sees committed state.
  auto rw = OpenStore();
  ASSERT_NE(rw, nullptr);
  ASSERT_TRUE(rw->SetSetting("k", "w").ok());
  ASSERT_TRUE(ro->GetSetting("k", &value, &found).ok());
  EXPECT_EQ(value, "w");
}

TEST_F(MetaStoreTest, ViewsAnswerPeople) {
  auto store = CreateStore();
  ASSERT_NE(store, nullptr);
  uint64_t mounts = 0;
  ASSERT_TRUE(store->BeginMount(&mounts).ok());
  ASSERT_TRUE(store->AddSealedSegments({{.segment_seq = 1, .slot = 1, .first_record = 10, .last_record = 19,
                                         .data_blocks = 512},
                                        {.segment_seq = 0, .slot = 0, .first_record = 1, .last_record = 9,
                                         .data_blocks = 256}})
                  .ok());
  ASSERT_TRUE(store->CommitMigration({.segment_seq = 0, .record_seq = 1}, {.blocks = 1, .bytes = 4096, .extents = 1})
                  .ok());
  EXPECT_EQ(Query("SELECT uuid, image_bytes, image, cache, segments_live, segments_total, clean_shutdown, "
                  "mount_count, watermark, home FROM status"),
            std::vector<std::string>{std::string(kUuid) +
                                     "|8589934592|8.0 GiB|64.0 MiB|2|16|no|1|segment 0, record 1|dir:/slow/dir"});
  EXPECT_EQ(Query("SELECT segment_seq, slot, records, data_mib FROM segments_live"),
            (std::vector<std::string>{"0|0|9|1.0", "1|1|10|2.0"}));
  EXPECT_EQ(Query("SELECT name, value, human FROM stats WHERE name = 'migration.bytes'"),
            std::vector<std::string>{"migration.bytes|4096|4.0 KiB"});
}

// dirty_extents: the runs every sealed segment holds, merged across segments
// (overlaps and neighbours), in block order; runs of segments that went home,
// or whose slot holds a newer segment, are not shown.
TEST_F(MetaStoreTest, DirtyExtentsViewMergesSealedSegmentsRuns) {
  auto store = CreateStore();
  ASSERT_NE(store, nullptr);
  using E = std::vector<SegmentExtent>;
  ASSERT_TRUE(store->AddSealedSegments({{.segment_seq = 0, .slot = 0, .first_record = 1, .last_record = 2, .data_blocks = 30},
                                        {.segment_seq = 1, .slot = 1, .first_record = 3, .last_record = 4, .data_blocks = 12}},
                                       {E{{100, 10, 10}, {200, 20, 20}}, E{{105, 10, 10}, {115, 1, 1}, {300, 4, 2}}})
                  .ok());
  EXPECT_EQ(Query("SELECT first_block, last_block, blocks, offset_bytes, size, segments, exact FROM dirty_extents"),
            (std::vector<std::string>{"100|115|16|409600|64.0 KiB|2|yes", "200|219|20|819200|80.0 KiB|1|yes",
                                      "300|303|4|1228800|16.0 KiB|1|no"}));
  // Segment 0 goes home: its runs leave the view and the table.
  ASSERT_TRUE(store->CommitMigration({.segment_seq = 1, .record_seq = 3}, {.blocks = 30, .bytes = 30 * 4096, .extents = 2})
                  .ok());
  EXPECT_EQ(Query("SELECT first_block, blocks, segments FROM dirty_extents"),
            (std::vector<std::string>{"105|11|1", "300|4|1"}));
  EXPECT_EQ(Query("SELECT count(*) FROM segment_extents WHERE segment_seq = 0"), std::vector<std::string>{"0"});
  // Slot 0 taken by segment 16: the old rows of the slot are replaced.
  ASSERT_TRUE(store->AddSealedSegments({{.segment_seq = 16, .slot = 0, .first_record = 100, .last_record = 100, .data_blocks = 1}},
                                       {E{{7, 1, 1}}})
                  .ok());
  EXPECT_EQ(Query("SELECT first_block, blocks FROM dirty_extents"),
            (std::vector<std::string>{"7|1", "105|11", "300|4"}));
  // Extents outside the image are left out; the segment is still recorded.
  ASSERT_TRUE(store->AddSealedSegments({{.segment_seq = 2, .slot = 2, .first_record = 5, .last_record = 5, .data_blocks = 1}},
                                       {E{{(uint64_t{8} << 30) / 4096, 1, 1}}})
                  .ok());
  std::vector<SealedSegment> got;
  ASSERT_TRUE(store->LoadSealedSegments(&got).ok());
  EXPECT_EQ(got.size(), 3u);
  EXPECT_EQ(Query("SELECT count(*) FROM dirty_extents"), std::vector<std::string>{"3"});
  // Repair forgets segments from 2 on: their rows go too.
  ASSERT_TRUE(store->ForgetSegmentsFrom(1).ok());
  EXPECT_EQ(Query("SELECT count(*) FROM segment_extents WHERE segment_seq >= 1"), std::vector<std::string>{"0"});
}

// stats_history: per save, the change since the previous save of the same
// counter and the rate; a total that went down starts over; dirty_blocks is
// a level (its change may be negative).
TEST_F(MetaStoreTest, StatsHistoryViewShowsDeltasAndRates) {
  auto store = CreateStore();
  ASSERT_NE(store, nullptr);
  store.reset();
  RawSql("INSERT INTO counters_history (unix, name, value) VALUES "
         "(1000, 'bytes_written', 0), (1000, 'dirty_blocks', 0), "
         "(1010, 'bytes_written', 20971520), (1010, 'dirty_blocks', 5120), "
         "(1020, 'bytes_written', 41943040), (1020, 'dirty_blocks', 1024), "
         "(1030, 'bytes_written', 4096)");
  EXPECT_EQ(Query("SELECT utc, value, seconds, delta, per_s, rate FROM stats_history WHERE name = 'bytes_written'"),
            (std::vector<std::string>{"1970-01-01 00:16:40|0|NULL|NULL|NULL|",
                                      "1970-01-01 00:16:50|20971520|10|20971520|2097152.0|2.0 MiB/s",
                                      "1970-01-01 00:17:00|41943040|10|20971520|2097152.0|2.0 MiB/s",
                                      "1970-01-01 00:17:10|4096|10|4096|409.6|409 B/s"}));
  EXPECT_EQ(Query("SELECT delta, per_s, rate FROM stats_history WHERE name = 'dirty_blocks' AND seconds IS NOT NULL"),
            (std::vector<std::string>{"5120|512.0|", "-4096|-409.6|"}));
}

// A meta.db made before the views and segment_extents existed gains them at
// its next read-write open; a read-only open changes nothing.
TEST_F(MetaStoreTest, OlderVolumeGainsTheNewerViewsAtOpen) {
  ASSERT_NE(CreateStore(), nullptr);
  RawSql("DROP VIEW dirty_extents; DROP VIEW stats_history; DROP TABLE segment_extents");
  OpenStore(/*read_only=*/true);
  EXPECT_EQ(Query("SELECT count(*) FROM sqlite_schema WHERE name IN ('dirty_extents', 'stats_history', 'segment_extents')"),
            std::vector<std::string>{"0"});
  auto store = OpenStore();
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(Query("SELECT count(*) FROM sqlite_schema WHERE name IN ('dirty_extents', 'stats_history', 'segment_extents')"),
            std::vector<std::string>{"3"});
  ASSERT_TRUE(store->AddSealedSegments({{.segment_seq = 0, .slot = 0, .first_record = 1, .last_record = 1, .data_blocks = 1}},
                                       {std::vector<SegmentExtent>{{5, 1, 1}}})
                  .ok());
  EXPECT_EQ(Query("SELECT first_block, blocks FROM dirty_extents"), std::vector<std::string>{"5|1"});
  // And again: the additions are idempotent.
  store.reset();
  EXPECT_NE(OpenStore(), nullptr);
  EXPECT_EQ(Query("SELECT first_block, blocks FROM dirty_extents"), std::vector<std::string>{"5|1"});
}

TEST_F(MetaStoreTest, LoadMountCountCountsBeginMounts) {
  auto store = CreateStore();
  ASSERT_NE(store, nullptr);
  uint64_t n = 99;
  ASSERT_TRUE(store->LoadMountCount(&n).ok());
  EXPECT_EQ(n, 0u);
  uint64_t m = 0;
  ASSERT_TRUE(store->BeginMount(&m).ok());
  ASSERT_TRUE(store->BeginMount(&m).ok());
  store.reset();
  ASSERT_TRUE(OpenStore(/*read_only=*/true)->LoadMountCount(&n).ok());
  EXPECT_EQ(n, 2u);
}

}  // namespace
}  // namespace boostvol::meta
