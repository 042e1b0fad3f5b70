// SmallVolumeOptions: the CreateOptions of the small volumes the engine's
// tests make in a TempDirs pair (FAST and SLOW), on `env` (nullptr: the real
// file system). Callers set anything else (a SQLite VFS) on the result.
#pragma once

#include <cstdint>

#include "boostvol/volume.h"
#include "lib/temp_dirs.h"

namespace boostvol::test {

inline CreateOptions SmallVolumeOptions(const TempDirs& dirs, uint64_t image_size, uint64_t cache_size,
                                        uint32_t segment_size, Env* env = nullptr) {
  CreateOptions co;
  co.fast_dir = dirs.fast();
  co.slow_dir = dirs.slow();
  co.image_size = image_size;
  co.cache_size = cache_size;
  co.segment_size = segment_size;
  co.env = env;
  return co;
}

}  // namespace boostvol::test
