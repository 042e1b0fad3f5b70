// The SQLite power-cut VFS (tests/lib/fault_injection_vfs.h): it drops what no
// xSync covered, and a cut inside a commit leaves SQLite's own promise intact
// (a commit is all or nothing, and durable once it returned with
// synchronous=FULL). Raw SQLite, no boostvol code: this checks the tool.
#include "lib/fault_injection_vfs.h"

#include <sqlite3.h>

#include <gtest/gtest.h>

#include <string>

#include "lib/temp_dirs.h"

namespace boostvol::test {
namespace {

class Db {
 public:
  Db(const std::string& path, const char* vfs) {
    rc_ = sqlite3_open_v2(path.c_str(), &db_, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, vfs);
    if (rc_ == SQLITE_OK) rc_ = Exec("PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL");
  }
  ~Db() { sqlite3_close_v2(db_); }
  int rc() const { return rc_; }
  int Exec(const std::string& sql) { return sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, nullptr); }
  int64_t Int(const std::string& sql) {
    sqlite3_stmt* st = nullptr;
    int64_t v = -1;
    if (sqlite3_prepare_v2(db_, sql.c_str(), -1, &st, nullptr) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
      v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
  }
  std::string Text(const std::string& sql) {
    sqlite3_stmt* st = nullptr;
    std::string v;
    if (sqlite3_prepare_v2(db_, sql.c_str(), -1, &st, nullptr) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW) {
      const unsigned char* t = sqlite3_column_text(st, 0);
      if (t != nullptr) v = reinterpret_cast<const char*>(t);
    }
    sqlite3_finalize(st);
    return v;
  }
  // One transaction inserting `n` rows of ~300 bytes (several pages).
  int Insert(int n) {
    std::string sql = "BEGIN IMMEDIATE;";
    for (int i = 0; i < n; i++) sql += "INSERT INTO t (v) VALUES (hex(randomblob(150)));";
    sql += "COMMIT;";
    int rc = Exec(sql);
    if (rc != SQLITE_OK) Exec("ROLLBACK");
    return rc;
  }

 private:
  sqlite3* db_ = nullptr;
  int rc_ = SQLITE_ERROR;
};

TEST(FaultInjectionVfsTest, PowerCutDropsCommitsNoSyncCovered) {
  TempDirs dirs;
  FaultInjectionVfs vfs("bv-test-drop");
  const std::string path = dirs.fast() + "/t.db";
  {
    Db db(path, vfs.name());
    ASSERT_EQ(db.rc(), SQLITE_OK);
    ASSERT_EQ(db.Exec("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)"), SQLITE_OK);
    ASSERT_EQ(db.Insert(20), SQLITE_OK);  // synced (synchronous = FULL)
    EXPECT_EQ(vfs.UnsyncedSectors(path + "-wal"), 0u);
    ASSERT_EQ(db.Exec("PRAGMA synchronous = OFF"), SQLITE_OK);
    ASSERT_EQ(db.Insert(20), SQLITE_OK);  // written, never synced
    EXPECT_GT(vfs.UnsyncedSectors(path + "-wal"), 0u);
    EXPECT_EQ(db.Int("SELECT count(*) FROM t"), 40);
    PowerCutReport report;
    ASSERT_TRUE(vfs.PowerCut(PowerCutMode::kDropUnsynced, 1, dirs.fast(), &report).ok());
    EXPECT_GT(report.sectors_reverted, 0u);
    EXPECT_GE(report.handles_killed, 2u);  // meta.db and its -wal
    // The connection is dead: nothing it does reaches the disk any more.
    EXPECT_NE(db.Insert(1), SQLITE_OK);
  }
  Db db(path, vfs.name());
  ASSERT_EQ(db.rc(), SQLITE_OK);
  EXPECT_EQ(db.Text("PRAGMA integrity_check"), "ok");
  EXPECT_EQ(db.Int("SELECT count(*) FROM t"), 20);
}

TEST(FaultInjectionVfsTest, CutOutsideScopeKeepsEverything) {
  TempDirs dirs;
  FaultInjectionVfs vfs("bv-test-scope");
  const std::string path = dirs.fast() + "/t.db";
  {
    Db db(path, vfs.name());
    ASSERT_EQ(db.Exec("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT); PRAGMA synchronous = OFF"), SQLITE_OK);
    ASSERT_EQ(db.Insert(10), SQLITE_OK);
    ASSERT_TRUE(vfs.PowerCut(PowerCutMode::kDropUnsynced, 1, dirs.slow()).ok());
    EXPECT_EQ(db.Insert(1), SQLITE_OK);  // still alive
  }
  Db db(path, vfs.name());
  EXPECT_EQ(db.Int("SELECT count(*) FROM t"), 11);
}

// The power goes out at every I/O of a commit in turn (and of the checkpoint
// after it, every third run), in every cut mode: the database opens, passes
// integrity_check, and holds either the old or the new rows, the new ones
// whenever the commit had returned OK.
TEST(FaultInjectionVfsTest, CutInsideACommitIsAllOrNothing) {
  int crashed = 0, completed = 0;
  for (uint64_t n = 0; n < 40; n++) {
    for (PowerCutMode mode :
         {PowerCutMode::kDropUnsynced, PowerCutMode::kKeepRandomSubset, PowerCutMode::kTornLastWrite}) {
      SCOPED_TRACE("crash at I/O " + std::to_string(n) + ", mode " + std::to_string(static_cast<int>(mode)));
      TempDirs dirs;
      FaultInjectionVfs vfs("bv-test-commit");
      const std::string path = dirs.fast() + "/t.db";
      bool hook_ran = false;
      int rc;
      {
        Db db(path, vfs.name());
        ASSERT_EQ(db.Exec("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)"), SQLITE_OK);
        ASSERT_EQ(db.Insert(30), SQLITE_OK);
        // A checkpoint now and then, so some cuts land in one.
        if (n % 3 == 0) {
          ASSERT_EQ(db.Exec("PRAGMA wal_autocheckpoint = 2"), SQLITE_OK);
        }
        vfs.CrashAfter(n, "", [&hook_ran] { hook_ran = true; });
        rc = db.Insert(40);
        EXPECT_EQ(vfs.crashed(), hook_ran);
        // A crash in the checkpoint that follows a commit does not fail it.
        if (vfs.crashed() && rc != SQLITE_OK) crashed++;
        if (!vfs.crashed()) completed++;
        ASSERT_TRUE(vfs.PowerCut(mode, n * 7 + 1).ok());
      }
      Db db(path, vfs.name());
      ASSERT_EQ(db.rc(), SQLITE_OK);
      EXPECT_EQ(db.Text("PRAGMA integrity_check"), "ok");
      int64_t rows = db.Int("SELECT count(*) FROM t");
      if (rc == SQLITE_OK) {
        EXPECT_EQ(rows, 70);
      } else {
        EXPECT_TRUE(rows == 30 || rows == 70) << rows;
      }
    }
  }
  EXPECT_GT(crashed, 0);
  EXPECT_GT(completed, 0);  // 40 I/Os cover the whole commit
}

}  // namespace
}  // namespace boostvol::test
