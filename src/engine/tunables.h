// The volume's live tunables: names, defaults, validation. One place, used by
// the engine (VolumeImpl::SetTunable) and by the CLI (offline `boostvol set`).
//
//   migrate_start_fraction  0..1      0.5       start migrating when this share of the log is live
//   idle_migrate_ms         0..864e5  2000      migrate everything after this long without writes
//   max_batch_bytes         4K..1G    64 MiB    the largest migration batch (x16 up to 1 GiB during
//                                              a drain; smaller under log pressure, see migrator.h)
//   migrate_gap_blocks      0..4096   64        dirty blocks this close are written as one span,
//                                              the gap read from home (fewer, larger home writes)
//   zero_detect             on|off    on        log written all-zero blocks as zero ranges
//                                              (no data in the log, a hole at home)
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "boostvol/status.h"

namespace boostvol {

struct TunableValues {
  double migrate_start_fraction = 0.5;
  uint32_t idle_migrate_ms = 2000;
  uint64_t max_batch_bytes = 64ull << 20;
  uint32_t migrate_gap_blocks = 64;
  bool zero_detect = true;
};

const std::vector<std::string>& TunableNames();
// Parses `value` for `key` into *out (other fields untouched).
Status ParseTunable(const std::string& key, const std::string& value, TunableValues* out);
std::vector<std::pair<std::string, std::string>> TunablesToStrings(const TunableValues& v);

}  // namespace boostvol
