// Sizes as people type them ("8G", "512M", "1.5T", "4096") and as we print
// them ("8.0 GiB").
//
// ParseSize accepts a decimal number with an optional fraction, optional
// whitespace, and an optional unit: K, M, G, T, P, E (binary multiples,
// case-insensitive), each optionally followed by "iB" or "B"; a bare "B" means
// bytes. The result must be a whole number of bytes that fits in 64 bits.
// Anything else is InvalidArgument with a message that quotes the input.
//
// Thread-safety: pure functions.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "boostvol/status.h"

namespace boostvol {

Status ParseSize(std::string_view text, uint64_t* bytes);

// "512 B", "1.5 KiB", "8.0 GiB": one decimal above 1 KiB, binary units.
std::string FormatBytes(uint64_t bytes);

}  // namespace boostvol
