// The volume's live tunables: names, defaults, validation. One place, used by
// the engine (VolumeImpl::SetTunable) and by the CLI (offline `boostvol set`).
//
//   migrate_start_fraction  0..1      0.75      start migrating when this share of the log is live
//   idle_migrate_ms         0..864e5  2000      migrate everything after this long without writes
//   max_batch_bytes         4K..1G    64 MiB    the largest migration batch (x16 up to 1 GiB during
//                                              a drain; smaller under log pressure, see migrator.h)
//   migrate_gap_blocks      0..4096   64        dirty blocks this close are written as one span,
//                                              the gap read from home (fewer, larger home writes)
//   zero_detect             on|off    on        log written all-zero blocks as zero ranges
//                                              (no data in the log, a hole at home)
//   write_mode              writeback|writethrough|writearound   writeback
//                                              where writes go (docs/policies.md "Write modes");
//                                              switching away from writeback drains first
//   sequential_cutoff       0..1T     0 (off)   a sequential stream longer than this goes
//                                              straight home (writeback mode); 0 = never.
//                                              Off by default: each home-direct write is
//                                              synced on SLOW, which made dd slower than
//                                              through the log (docs/policies.md)
//   bypass_order            prefix|relaxed       prefix
//                                              prefix: a write goes straight home only while
//                                              the log holds nothing not yet home, so the home
//                                              alone stays a prefix (DESIGN.md 2.7); relaxed:
//                                              whenever its own blocks are uncached (gives 2.7 up)
//   read_promote            off|always|nhit  off  which blocks read from home enter the read
//                                              cache on FAST (docs/policies.md "Read caching")
//   read_promote_hits       1..255    2         nhit: promote at the N-th home read of a block
//                                              within the last 65536 home reads
//   read_cache_size         0|4K..    0         the read cache file FAST/readcache, bytes (K/M/G
//                                              accepted); 0 = a quarter of the log's size
//   home_read_timeout_s     0..3600   60        a read of a block that lives only at home retries
//                                              this long while the home cannot be read, then
//                                              fails with EIO (0: three quick tries, ~0.3 s)
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "boostvol/status.h"
#include "boostvol/tunable_defaults.h"

namespace boostvol {

enum class WriteMode : uint8_t { kWriteback = 0, kWritethrough = 1, kWritearound = 2 };
enum class BypassOrder : uint8_t { kPrefix = 0, kRelaxed = 1 };

struct TunableValues {
  double migrate_start_fraction = kDefaultMigrateStartFraction;
  uint32_t idle_migrate_ms = kDefaultIdleMigrateMs;
  uint64_t max_batch_bytes = kDefaultMaxBatchBytes;
  uint32_t migrate_gap_blocks = 64;
  bool zero_detect = true;
  WriteMode write_mode = WriteMode::kWriteback;
  uint64_t sequential_cutoff = 0;
  BypassOrder bypass_order = BypassOrder::kPrefix;
  std::string read_promote = "off";
  uint32_t read_promote_hits = 2;
  uint64_t read_cache_size = 0;
  uint32_t home_read_timeout_s = kDefaultHomeReadTimeoutS;
};

const char* WriteModeName(WriteMode m);

const std::vector<std::string>& TunableNames();
// Parses `value` for `key` into *out (other fields untouched).
Status ParseTunable(const std::string& key, const std::string& value, TunableValues* out);
std::vector<std::pair<std::string, std::string>> TunablesToStrings(const TunableValues& v);

}  // namespace boostvol
