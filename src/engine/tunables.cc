#include "engine/tunables.h"

#include <cerrno>
#include <cstdlib>

#include "util/size_parse.h"

namespace boostvol {

const std::vector<std::string>& TunableNames() {
  static const std::vector<std::string> names = {"migrate_start_fraction", "idle_migrate_ms", "max_batch_bytes",
                                                 "migrate_gap_blocks", "zero_detect", "write_mode",
                                                 "sequential_cutoff", "bypass_order", "read_promote",
                                                 "read_promote_hits", "read_cache_size", "home_read_timeout_s"};
  return names;
}

Status ParseTunable(const std::string& key, const std::string& value, TunableValues* out) {
  char* end = nullptr;
  errno = 0;
  if (key == "migrate_start_fraction") {
    double f = std::strtod(value.c_str(), &end);
    if (errno || end == value.c_str() || *end || !(f >= 0 && f <= 1))
      return Status::InvalidArgument("migrate_start_fraction must be a number from 0 to 1");
    out->migrate_start_fraction = f;
    return Status::OK();
  }
  if (key == "zero_detect") {
    if (value == "on" || value == "1" || value == "true") out->zero_detect = true;
    else if (value == "off" || value == "0" || value == "false") out->zero_detect = false;
    else return Status::InvalidArgument("zero_detect must be on or off");
    return Status::OK();
  }
  if (key == "sequential_cutoff") {  // bytes, or with a unit: 4M, 512K; 0 = off
    uint64_t v = 0;
    if (value != "0" && !ParseSize(value, &v).ok())
      return Status::InvalidArgument("sequential_cutoff must be a size (bytes, or 4M, 512K...); 0 = off");
    if (v > (1ull << 40)) return Status::InvalidArgument("sequential_cutoff must be at most 1T (0 = off)");
    out->sequential_cutoff = v;
    return Status::OK();
  }
  if (key == "write_mode") {
    if (value == "writeback") out->write_mode = WriteMode::kWriteback;
    else if (value == "writethrough") out->write_mode = WriteMode::kWritethrough;
    else if (value == "writearound") out->write_mode = WriteMode::kWritearound;
    else return Status::InvalidArgument("write_mode must be writeback, writethrough or writearound");
    return Status::OK();
  }
  if (key == "bypass_order") {
    if (value == "prefix") out->bypass_order = BypassOrder::kPrefix;
    else if (value == "relaxed") out->bypass_order = BypassOrder::kRelaxed;
    else return Status::InvalidArgument("bypass_order must be prefix (the home alone stays crash-consistent, "
                                        "DESIGN.md 2.7) or relaxed (gives that up; docs/policies.md)");
    return Status::OK();
  }
  if (key == "read_promote") {
    if (value != "off" && value != "always" && value != "nhit")
      return Status::InvalidArgument("read_promote must be off, always or nhit");
    out->read_promote = value;
    return Status::OK();
  }
  if (key == "read_cache_size") {
    uint64_t bytes = 0;
    if (!ParseSize(value, &bytes).ok() || (bytes != 0 && bytes < 4096) || bytes > (uint64_t{1} << 44))
      return Status::InvalidArgument("read_cache_size must be 0 (a quarter of the log) or a size from 4K to 16T");
    out->read_cache_size = bytes;
    return Status::OK();
  }
  bool known = false;
  for (const std::string& n : TunableNames()) known |= n == key;
  if (!known) {
    std::string list;
    for (const std::string& n : TunableNames()) list += (list.empty() ? "" : ", ") + n;
    return Status::InvalidArgument("unknown tunable '" + key + "' (known: " + list + ")");
  }
  unsigned long long v = std::strtoull(value.c_str(), &end, 10);
  if (value.empty() || errno || end == value.c_str() || *end || value[0] == '-')
    return Status::InvalidArgument(key + " must be a whole number");
  if (key == "idle_migrate_ms") {
    if (v > 86400000) return Status::InvalidArgument("idle_migrate_ms must be at most 86400000 (a day)");
    out->idle_migrate_ms = static_cast<uint32_t>(v);
  } else if (key == "max_batch_bytes") {
    if (v < 4096 || v > (1ull << 30)) return Status::InvalidArgument("max_batch_bytes must be 4096 .. 1073741824");
    out->max_batch_bytes = v;
  } else if (key == "home_read_timeout_s") {
    if (v > 3600) return Status::InvalidArgument("home_read_timeout_s must be 0 .. 3600 (seconds)");
    out->home_read_timeout_s = static_cast<uint32_t>(v);
  } else if (key == "read_promote_hits") {
    if (v < 1 || v > 255) return Status::InvalidArgument("read_promote_hits must be 1 .. 255");
    out->read_promote_hits = static_cast<uint32_t>(v);
  } else {
    if (v > 4096) return Status::InvalidArgument("migrate_gap_blocks must be 0 .. 4096");
    out->migrate_gap_blocks = static_cast<uint32_t>(v);
  }
  return Status::OK();
}

std::vector<std::pair<std::string, std::string>> TunablesToStrings(const TunableValues& v) {
  return {{"migrate_start_fraction", std::to_string(v.migrate_start_fraction)},
          {"idle_migrate_ms", std::to_string(v.idle_migrate_ms)},
          {"max_batch_bytes", std::to_string(v.max_batch_bytes)},
          {"migrate_gap_blocks", std::to_string(v.migrate_gap_blocks)},
          {"zero_detect", v.zero_detect ? "on" : "off"},
          {"write_mode", WriteModeName(v.write_mode)},
          {"sequential_cutoff", std::to_string(v.sequential_cutoff)},
          {"bypass_order", v.bypass_order == BypassOrder::kRelaxed ? "relaxed" : "prefix"},
          {"read_promote", v.read_promote},
          {"read_promote_hits", std::to_string(v.read_promote_hits)},
          {"read_cache_size", std::to_string(v.read_cache_size)},
          {"home_read_timeout_s", std::to_string(v.home_read_timeout_s)}};
}

const char* WriteModeName(WriteMode m) {
  switch (m) {
    case WriteMode::kWritethrough: return "writethrough";
    case WriteMode::kWritearound: return "writearound";
    default: return "writeback";
  }
}

}  // namespace boostvol
