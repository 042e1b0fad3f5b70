// CRC-32C (Castagnoli), the checksum of every on-disk structure boostvol writes.
// Uses the SSE4.2 instruction when the CPU has it, a table otherwise; both give
// the same values (tests/unit/crc32c_test.cc pins known vectors).
//
// Thread-safe (pure functions).
#pragma once

#include <cstddef>
#include <cstdint>

namespace boostvol::crc32c {

// Extends `init_crc` (the crc of the bytes before `data`) over n more bytes.
uint32_t Extend(uint32_t init_crc, const void* data, size_t n);
inline uint32_t Value(const void* data, size_t n) { return Extend(0, data, n); }

}  // namespace boostvol::crc32c
