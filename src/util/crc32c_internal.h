// The two implementations behind crc32c::Extend, exposed so that
// tests/unit/crc32c_test.cc can check that they agree. Not for engine code:
// call crc32c::Extend, which picks the fastest one this CPU has.
#pragma once

#include <cstddef>
#include <cstdint>

namespace boostvol::crc32c::internal {

// Table-driven (slice-by-8); runs everywhere.
uint32_t ExtendPortable(uint32_t init_crc, const void* data, size_t n);

// True when this CPU has the SSE4.2 crc32 instruction (x86-64 only).
bool HasHardware();

// The SSE4.2 version. Only call it when HasHardware() is true.
uint32_t ExtendHardware(uint32_t init_crc, const void* data, size_t n);

}  // namespace boostvol::crc32c::internal
