// The control socket's JSON: one flat object per VolumeStatus.
//
// No JSON library: the writer escapes strings itself (RFC 8259: quote,
// backslash and control characters; other bytes pass through, so UTF-8 stays
// UTF-8), and the reader understands exactly what the writer produces plus
// whitespace: one object of string, unsigned integer and boolean members.
// Unknown members are ignored, so a newer daemon can add fields.
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

// One line, no trailing newline.
std::string VolumeStatusToJson(const VolumeStatus& st);

// Parses what VolumeStatusToJson wrote. InvalidArgument on malformed input.
Status VolumeStatusFromJson(std::string_view json, VolumeStatus* st);

}  // namespace boostvol::control
