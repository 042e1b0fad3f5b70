// Defaults of the migrator's tunables, defined once: Volume::Open's options
// (boostvol/volume.h), the tunables table (src/engine/tunables.h) and the
// migrator's own options use these. docs/tuning.md says what each does.
#pragma once

#include <cstdint>

namespace boostvol {

inline constexpr double kDefaultMigrateStartFraction = 0.75;  // share of the log live before migration starts
inline constexpr uint32_t kDefaultIdleMigrateMs = 2000;       // migrate everything after this long without writes
inline constexpr uint32_t kDefaultMaxBatchBytes = 64u << 20;  // the largest migration batch

}  // namespace boostvol
