#include "util/size_parse.h"

#include <cctype>
#include <cstdio>

namespace boostvol {
namespace {

bool IsDigit(char c) { return c >= '0' && c <= '9'; }

std::string Quote(std::string_view s) { return "'" + std::string(s) + "'"; }

}  // namespace

Status ParseSize(std::string_view text, uint64_t* bytes) {
  const std::string_view original = text;
  auto bad = [&](const std::string& why) {
    return Status::InvalidArgument("invalid size " + Quote(original) + ": " + why +
                                   " (examples: 4096, 512M, 8G, 1.5T)");
  };
  while (!text.empty() && std::isspace(static_cast<unsigned char>(text.front()))) text.remove_prefix(1);
  while (!text.empty() && std::isspace(static_cast<unsigned char>(text.back()))) text.remove_suffix(1);
  if (text.empty()) return bad("it is empty");
  if (text.front() == '-') return bad("a size cannot be negative");
  if (text.front() == '+') text.remove_prefix(1);

  // Integer part and fraction, kept exact: value = int_part + frac / 10^frac_digits.
  unsigned __int128 int_part = 0;
  unsigned __int128 frac = 0;
  unsigned __int128 frac_scale = 1;
  size_t i = 0;
  size_t int_digits = 0;
  for (; i < text.size() && IsDigit(text[i]); ++i, ++int_digits) {
    int_part = int_part * 10 + static_cast<unsigned>(text[i] - '0');
    if (int_part > UINT64_MAX) return bad("the number is too large");
  }
  size_t frac_digits = 0;
  if (i < text.size() && text[i] == '.') {
    ++i;
    for (; i < text.size() && IsDigit(text[i]); ++i, ++frac_digits) {
      if (frac_digits >= 18) return bad("too many digits after the decimal point");
      frac = frac * 10 + static_cast<unsigned>(text[i] - '0');
      frac_scale *= 10;
    }
    if (frac_digits == 0) return bad("a digit must follow the decimal point");
  }
  if (int_digits == 0 && frac_digits == 0) return bad("it does not start with a number");

  while (i < text.size() && text[i] == ' ') ++i;
  std::string unit;
  for (; i < text.size(); ++i) unit += static_cast<char>(std::toupper(static_cast<unsigned char>(text[i])));

  unsigned shift = 0;
  std::string rest = unit;
  if (!unit.empty()) {
    switch (unit[0]) {
      case 'K': shift = 10; break;
      case 'M': shift = 20; break;
      case 'G': shift = 30; break;
      case 'T': shift = 40; break;
      case 'P': shift = 50; break;
      case 'E': shift = 60; break;
      case 'B': shift = 0; break;
      default: return bad("unknown unit '" + unit + "' (use K, M, G, T, P or E, optionally with iB or B)");
    }
    rest = unit[0] == 'B' ? unit.substr(1) : unit.substr(1);
    if (unit[0] != 'B' && !(rest.empty() || rest == "B" || rest == "IB")) {
      return bad("unknown unit '" + unit + "' (use K, M, G, T, P or E, optionally with iB or B)");
    }
    if (unit[0] == 'B' && !rest.empty()) return bad("unknown unit '" + unit + "'");
  }

  const unsigned __int128 mult = static_cast<unsigned __int128>(1) << shift;
  unsigned __int128 whole = int_part * mult;
  unsigned __int128 frac_bytes_num = frac * mult;
  if (frac_bytes_num % frac_scale != 0) {
    return bad("it is not a whole number of bytes");
  }
  whole += frac_bytes_num / frac_scale;
  if (whole > UINT64_MAX) return bad("it does not fit in 64 bits");
  *bytes = static_cast<uint64_t>(whole);
  return Status::OK();
}

std::string FormatBytes(uint64_t bytes) {
  static const char* const kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  if (bytes < 1024) return std::to_string(bytes) + " B";
  int unit = 0;
  double v = static_cast<double>(bytes);
  while (v >= 1024.0 && unit < 6) {
    v /= 1024.0;
    ++unit;
  }
  // Rounding may carry to 1024.0 (e.g. 1 MiB - 1 B); move up a unit then.
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.1f", v);
  if (std::string(buf) == "1024.0" && unit < 6) {
    v /= 1024.0;
    ++unit;
    std::snprintf(buf, sizeof(buf), "%.1f", v);
  }
  return std::string(buf) + " " + kUnits[unit];
}

}  // namespace boostvol
