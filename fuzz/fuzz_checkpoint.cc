// Fuzzes the clean-stop checkpoint decoder (MetaStore::LoadCheckpoint, which
// validates the `checkpoint` row of meta.db and decodes its entries blob).
// The decoder is private to meta_store.cc, so the target reaches it the way a
// damaged meta.db would: it writes the fuzzed row into a real meta.db (in
// $FUZZ_TMPDIR, else /dev/shm: every exec is a SQLite commit) with the sqlite3
// C API and asks MetaStore to load it.
//
// Input: the row's integer fields, then a flags byte (bit 0: entry_count =
// blob length / 12, bit 1: entries_crc = the blob's real crc32c, so the
// fuzzer gets past the count and checksum checks), then the blob.
// Checks: never crashes; OK or Corruption only; a checkpoint that loads is
// in range (every entry's lba inside the image, pos inside the log; the
// tail inside a segment) and has entry_count entries.
#include <spdlog/spdlog.h>
#include <sqlite3.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>

#include "fuzz/fuzz_util.h"
#include "meta/meta_store.h"
#include "util/crc32c.h"

using namespace boostvol;
using namespace boostvol::meta;

namespace {

constexpr uint64_t kImageBlocks = 4096;  // 16 MiB
constexpr uint32_t kSegmentBlocks = 16;
constexpr uint32_t kSegmentCount = 8;

struct Db {
  std::string dir;
  std::unique_ptr<MetaStore> store;
  sqlite3* raw = nullptr;
};

Db* Setup() {
  static Db* db = [] {
    auto* d = new Db;
    spdlog::set_level(spdlog::level::off);  // every damaged row would be logged
    const char* env_dir = std::getenv("FUZZ_TMPDIR");
    std::string base = env_dir                                     ? env_dir
                       : std::filesystem::is_directory("/dev/shm") ? "/dev/shm"
                                                                   : std::filesystem::temp_directory_path().string();
    std::string tmpl = base + "/fuzz_checkpoint.XXXXXX";
    if (::mkdtemp(tmpl.data()) == nullptr) std::abort();
    d->dir = tmpl;
    VolumeRow v;
    v.uuid = "0123abcd-4567-89ef-0123-456789abcdef";
    v.image_size = kImageBlocks * 4096;
    v.segment_blocks = kSegmentBlocks;
    v.segment_count = kSegmentCount;
    v.home = "dir:/nonexistent";
    v.created_unix = 1700000000;
    Status s = MetaStore::Create(d->dir + "/meta.db", v, &d->store);
    FUZZ_CHECK(s.ok(), "create: %s", s.ToString().c_str());
    Checkpoint cp;
    s = d->store->SaveCheckpoint(cp);
    FUZZ_CHECK(s.ok(), "save: %s", s.ToString().c_str());
    FUZZ_CHECK(sqlite3_open((d->dir + "/meta.db").c_str(), &d->raw) == SQLITE_OK, "open raw");
    sqlite3_exec(d->raw, "PRAGMA synchronous = OFF", nullptr, nullptr, nullptr);
    return d;
  }();
  return db;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Db* db = Setup();
  fuzz::Input in(data, size);
  // Small values are likelier to pass the range checks; the top bit of the
  // selector lets the fuzzer try wide ones too.
  auto num = [&]() -> int64_t {
    uint8_t sel = in.Byte();
    if (sel & 0x80) return static_cast<int64_t>(in.U64());
    return sel & 0x7f;
  };
  int64_t next_record = num(), segment = num(), next_block = num(), prev_crc = static_cast<int64_t>(in.U32());
  int64_t wm_segment = num(), wm_record = num();
  int64_t count = num();
  uint8_t flags = in.Byte();
  int64_t crc = static_cast<int64_t>(in.U32());
  size_t blob_len = in.left();
  const uint8_t* blob = in.Take(blob_len);
  if (flags & 1) count = static_cast<int64_t>(blob_len / 12);
  if (flags & 2) crc = blob_len == 0 ? crc32c::Value("", 0) : crc32c::Value(blob, blob_len);

  sqlite3_stmt* st = nullptr;
  int rc = sqlite3_prepare_v2(db->raw,
                              "UPDATE checkpoint SET next_record_seq = ?, segment_seq = ?, next_block_in_segment = ?, "
                              "prev_crc = ?, watermark_segment_seq = ?, watermark_record_seq = ?, entry_count = ?, "
                              "entries = ?, entries_crc = ? WHERE id = 1",
                              -1, &st, nullptr);
  FUZZ_CHECK(rc == SQLITE_OK, "prepare: %s", sqlite3_errmsg(db->raw));
  const int64_t ints[] = {next_record, segment, next_block, prev_crc, wm_segment, wm_record, count};
  for (int i = 0; i < 7; i++) sqlite3_bind_int64(st, i + 1, ints[i]);
  sqlite3_bind_blob(st, 8, blob_len ? blob : reinterpret_cast<const uint8_t*>(""), static_cast<int>(blob_len),
                    SQLITE_TRANSIENT);
  sqlite3_bind_int64(st, 9, crc);
  rc = sqlite3_step(st);
  sqlite3_finalize(st);
  FUZZ_CHECK(rc == SQLITE_DONE, "update: %s", sqlite3_errmsg(db->raw));

  Checkpoint cp;
  bool found = false;
  Status s = db->store->LoadCheckpoint(&cp, &found);
  if (!s.ok()) {
    FUZZ_CHECK(s.IsCorruption(), "LoadCheckpoint: %s", s.ToString().c_str());
    return 0;
  }
  FUZZ_CHECK(found, "a stored checkpoint of a clean stop was not found");
  FUZZ_CHECK(static_cast<int64_t>(cp.entries.size()) == count, "entry count");
  FUZZ_CHECK(cp.tail.next_block_in_segment <= kSegmentBlocks, "tail block");
  FUZZ_CHECK(cp.tail.next_record_seq >= cp.watermark.record_seq, "tail before watermark");
  for (const IndexEntry& e : cp.entries) {
    FUZZ_CHECK(e.lba < kImageBlocks, "entry lba %u beyond the image", e.lba);
    FUZZ_CHECK(e.pos < kSegmentBlocks * kSegmentCount, "entry pos %u beyond the log", e.pos);
  }
  return 0;
}
