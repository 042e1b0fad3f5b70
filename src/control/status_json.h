// The control socket's JSON: one flat object per VolumeStatus.
//
// No JSON library: the writer escapes strings itself (RFC 8259: quote,
// backslash and control characters; other bytes pass through, so UTF-8 stays
// UTF-8), and the reader understands exactly what the writer produces plus
// whitespace: one object of string, unsigned integer and boolean members.
// Unknown members are ignored, so a newer daemon can add fields. The status
// line people and scripts see (`boostvol status --json`) is documented in
// docs/status-json.md: the VolumeStatus fields plus schema_version, the rates
// and, from the CLI, "mounted" and friends.
//
// Thread-safety: pure functions.
#pragma once

#include <string>
#include <string_view>

#include "boostvol/status.h"
#include "boostvol/volume.h"

namespace boostvol::control {

// `s` as a JSON string literal, quotes included.
std::string JsonQuote(std::string_view s);

// Bumped only for an incompatible change (a member removed or its meaning
// changed); adding members keeps the version (docs/status-json.md).
inline constexpr int kStatusSchemaVersion = 1;

// Rates measured by the daemon over the last few seconds (RateMeter).
struct StatusRates {
  uint64_t window_s = 0;             // seconds measured over; 0 = not measured yet
  uint64_t write_bytes_per_s = 0;    // bytes written to the image per second
  uint64_t migrate_bytes_per_s = 0;  // bytes migrated home per second
  bool drain_eta_known = false;      // false: data is dirty but nothing migrated in the window
  uint64_t drain_eta_s = 0;          // dirty bytes / migrate rate (0 when nothing is dirty)
};

// One line, no trailing newline: the VolumeStatus fields only.
std::string VolumeStatusToJson(const VolumeStatus& st);

// The status line of the control socket and `status --json`:
// {"schema_version":1, <VolumeStatus fields>, <rates>[, extra]}. `extra` is
// already-encoded members ("\"mounted\":true"), or empty.
std::string StatusLineJson(const VolumeStatus& st, const StatusRates& rates, const std::string& extra = "");

// The rates of a status line; members that are absent stay at their defaults.
Status StatusRatesFromJson(std::string_view json, StatusRates* rates);

// Parses what VolumeStatusToJson wrote. InvalidArgument on malformed input.
Status VolumeStatusFromJson(std::string_view json, VolumeStatus* st);

}  // namespace boostvol::control
