// What a volume leaves in meta.db for people (docs/sqlite.md): the counters
// are totals over the volume's life (kept across mounts), dirty_blocks is
// the dirty count at the save, and the dirty_extents view shows the blocks
// of the sealed segments.
#include <gtest/gtest.h>
#include <sqlite3.h>

#include <map>
#include <string>
#include <vector>

#include "boostvol/volume.h"
#include "lib/small_volume.h"
#include "lib/temp_dirs.h"
#include "meta/meta_store.h"

namespace boostvol {
namespace {

using test::TempDirs;

constexpr uint64_t kImage = 2 << 20;  // 512 blocks

struct Fixture {
  TempDirs dirs;
  std::unique_ptr<Volume> vol;

  void Create() {
    // Segments of 4 blocks: a header and up to 3 data blocks each.
    Status s = CreateVolume(test::SmallVolumeOptions(dirs, kImage, 256 << 10, 16384));
    ASSERT_TRUE(s.ok()) << s.ToString();
  }
  void Open() {
    OpenOptions oo;
    oo.fast_dir = dirs.fast();
    oo.start_migrator = false;
    Status s = Volume::Open(oo, &vol);
    ASSERT_TRUE(s.ok()) << s.ToString();
  }
  void Close() {
    ASSERT_TRUE(vol->Close().ok());
    vol.reset();
  }
  void WriteBlock(uint64_t lba, uint8_t fill) {
    std::vector<uint8_t> b(4096, fill);
    Status s = vol->Write(lba * 4096, b.size(), b.data());
    ASSERT_TRUE(s.ok()) << s.ToString();
  }
  std::map<std::string, int64_t> SavedCounters() {
    std::unique_ptr<meta::MetaStore> store;
    EXPECT_TRUE(meta::MetaStore::Open(dirs.fast() + "/meta.db", true, &store).ok());
    std::vector<std::pair<std::string, int64_t>> c;
    if (store) {
      EXPECT_TRUE(store->LoadCounters(&c).ok());
    }
    return {c.begin(), c.end()};
  }
  // Rows of a query on meta.db, columns joined by '|'.
  std::vector<std::string> Query(const std::string& sql) {
    std::vector<std::string> rows;
    sqlite3* db = nullptr;
    EXPECT_EQ(sqlite3_open_v2((dirs.fast() + "/meta.db").c_str(), &db, SQLITE_OPEN_READONLY, nullptr), SQLITE_OK);
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
};

TEST(VolumeCounters, AreTotalsOverTheVolumesLifeAndDirtyBlocksIsSaved) {
  Fixture f;
  f.Create();
  f.Open();
  // The first mount after create: nothing recovered, not a clean reopen.
  VolumeStatus st = f.vol->GetStatus();
  EXPECT_EQ(st.mount_count, 1u);
  EXPECT_FALSE(st.clean_open);
  for (uint64_t lba = 0; lba < 8; lba++) f.WriteBlock(lba, 1);
  f.WriteBlock(3, 2);  // a rewrite: 9 writes, 8 dirty blocks
  ASSERT_TRUE(f.vol->Flush().ok());
  f.Close();
  auto saved = f.SavedCounters();
  EXPECT_EQ(saved["dirty_blocks"], 8);
  EXPECT_EQ(saved["writes"], 9);
  EXPECT_EQ(saved["bytes_written"], 9 * 4096);

  f.Open();
  st = f.vol->GetStatus();
  EXPECT_TRUE(st.clean_open);
  EXPECT_EQ(st.mount_count, 2u);
  EXPECT_EQ(st.writes, 9u) << "counters carry on across mounts";
  EXPECT_EQ(st.bytes_written, 9u * 4096);
  EXPECT_EQ(st.dirty_blocks, 8u);
  f.WriteBlock(100, 3);
  ASSERT_TRUE(f.vol->Drain(nullptr).ok());
  st = f.vol->GetStatus();
  EXPECT_EQ(st.writes, 10u);
  EXPECT_EQ(st.migrated_blocks, 9u);
  EXPECT_EQ(st.dirty_blocks, 0u);
  f.Close();
  saved = f.SavedCounters();
  EXPECT_EQ(saved["dirty_blocks"], 0);
  EXPECT_EQ(saved["writes"], 10);
  EXPECT_EQ(saved["migration.blocks"], 9);

  f.Open();
  st = f.vol->GetStatus();
  EXPECT_EQ(st.writes, 10u);
  EXPECT_EQ(st.migrated_blocks, 9u);
  EXPECT_EQ(st.migrated_bytes, 9u * 4096);
  EXPECT_GE(st.migration_batches, 1u);
  f.Close();
}

TEST(VolumeCounters, DirtyExtentsViewShowsTheSealedSegmentsBlocks) {
  Fixture f;
  f.Create();
  f.Open();
  for (uint64_t lba = 10; lba < 30; lba++) {
    f.WriteBlock(lba, static_cast<uint8_t>(lba));
    ASSERT_TRUE(f.vol->Flush().ok());  // one record per block
  }
  f.WriteBlock(200, 1);
  ASSERT_TRUE(f.vol->Flush().ok());
  f.WriteBlock(201, 1);
  ASSERT_TRUE(f.vol->Flush().ok());
  f.WriteBlock(202, 1);
  ASSERT_TRUE(f.vol->Flush().ok());
  f.Close();  // records the sealed segments (and their extents) in meta.db
  // 23 records of one block: segments of 2 records; all but the tail's are
  // sealed. Blocks 10..29 are one extent; 200..202 one more, but its last
  // block may be in the segment being written into (not sealed, not shown).
  std::vector<std::string> rows = f.Query("SELECT first_block, last_block, exact FROM dirty_extents");
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0], "10|29|yes");
  EXPECT_TRUE(rows[1] == "200|201|yes" || rows[1] == "200|202|yes") << rows[1];
  EXPECT_EQ(f.Query("SELECT count(*) FROM segment_extents e LEFT JOIN segments s ON s.segment_seq = e.segment_seq "
                    "AND s.state = 'sealed' WHERE s.slot IS NULL"),
            std::vector<std::string>{"0"});
  // Once home, nothing is dirty.
  f.Open();
  ASSERT_TRUE(f.vol->Drain(nullptr).ok());
  f.Close();
  EXPECT_EQ(f.Query("SELECT count(*) FROM dirty_extents"), std::vector<std::string>{"0"});
}

// The log writer hands over the blocks of the segments it wrote; a segment
// begun before the mount (the tail the log carries on after a reopen) has
// its earlier blocks read back from its record headers, so its extent still
// starts at the block written before the reopen.
TEST(VolumeCounters, DirtyExtentsOfASegmentBegunBeforeTheMountKeepItsEarlierBlocks) {
  Fixture f;
  f.Create();
  f.Open();
  f.WriteBlock(10, 1);
  ASSERT_TRUE(f.vol->Flush().ok());  // the tail segment's first record: 2 of its 4 blocks
  f.Close();
  f.Open();
  f.WriteBlock(11, 2);
  ASSERT_TRUE(f.vol->Flush().ok());  // its second record: the segment is full, sealed, durable
  f.WriteBlock(50, 3);
  ASSERT_TRUE(f.vol->Flush().ok());  // the next segment's first (not sealed: not shown)
  f.Close();
  EXPECT_EQ(f.Query("SELECT first_block, last_block, exact FROM dirty_extents"), std::vector<std::string>{"10|11|yes"});
}

// The record buffers in RAM are reported (bench/run.sh takes them out of the
// memory per cached block): none at mount, at least the pages a write used
// after it, never more than the pool (64 buffers of 1 MiB, rounded up to 2 MiB).
TEST(VolumeCounters, StatusReportsTheRecordBuffersInRam) {
  Fixture f;
  f.Create();
  f.Open();
  const uint64_t at_mount = f.vol->GetStatus().log_buffer_resident_bytes;
  EXPECT_LE(at_mount, 4096u) << "nothing at mount (ASan's allocator touches the first page)";
  f.WriteBlock(7, 0x5a);
  ASSERT_TRUE(f.vol->Flush().ok());
  const uint64_t after = f.vol->GetStatus().log_buffer_resident_bytes;
  EXPECT_GE(after, 2u * 4096) << "the header and the data block of the record";
  EXPECT_GT(after, at_mount);
  EXPECT_LE(after, uint64_t{66} << 20);
  f.Close();
}

}  // namespace
}  // namespace boostvol
