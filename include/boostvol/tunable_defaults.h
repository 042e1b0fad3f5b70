// Defaults of the migrator's tunables, defined once: Volume::Open's options
// (boostvol/volume.h), the tunables table (src/engine/tunables.h) and the
// migrator's own options use these. docs/tuning.md says what each does.
#pragma once

#include <cstdint>

namespace boostvol {

inline constexpr double kDefaultMigrateStartFraction = 0.75;  // share of the log live before migration starts
inline constexpr uint32_t kDefaultIdleMigrateMs = 2000;       // migrate everything after this long without writes
inline constexpr uint32_t kDefaultMaxBatchBytes = 64u << 20;  // the largest migration batch
// How long a read of a block that lives only at home keeps retrying while the
// home cannot be read, before it fails with EIO (DESIGN.md 4). Long enough to
// ride out a network mount's blip or a disk's reset, as a SCSI disk would;
// the filesystem above waits instead of shutting down on a failed read.
inline constexpr uint32_t kDefaultHomeReadTimeoutS = 60;

}  // namespace boostvol
