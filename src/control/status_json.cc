#include "control/status_json.h"

#include <cstdio>
#include <map>
#include <type_traits>

namespace boostvol::control {
namespace {

// Every VolumeStatus field, once, for both directions.
template <class F>
void ForEachField(VolumeStatus& st, F&& f) {
  f("uuid", st.uuid);
  f("fast_dir", st.fast_dir);
  f("home", st.home);
  f("health", st.health);
  f("last_error", st.last_error);
  f("migrator_state", st.migrator_state);
  f("image_size", st.image_size);
  f("cache_bytes", st.cache_bytes);
  f("dirty_blocks", st.dirty_blocks);
  f("log_used_blocks", st.log_used_blocks);
  f("log_total_blocks", st.log_total_blocks);
  f("segments_total", st.segments_total);
  f("segments_live", st.segments_live);
  f("watermark_record", st.watermark_record);
  f("next_record", st.next_record);
  f("durable_record", st.durable_record);
  f("reads", st.reads);
  f("writes", st.writes);
  f("flushes", st.flushes);
  f("bytes_read", st.bytes_read);
  f("bytes_written", st.bytes_written);
  f("read_blocks_cache", st.read_blocks_cache);
  f("read_blocks_home", st.read_blocks_home);
  f("migrated_blocks", st.migrated_blocks);
  f("migrated_bytes", st.migrated_bytes);
  f("migration_batches", st.migration_batches);
  f("write_waits", st.write_waits);
  f("syncs_ahead", st.syncs_ahead);
  f("index_memory_bytes", st.index_memory_bytes);
  f("log_buffer_resident_bytes", st.log_buffer_resident_bytes);
  f("trimmed_bytes", st.trimmed_bytes);
  f("zeroed_bytes", st.zeroed_bytes);
  f("zero_block_bytes", st.zero_block_bytes);
  f("bypassed_bytes", st.bypassed_bytes);
  f("bypass_order", st.bypass_order);
  f("home_zeroed_bytes", st.home_zeroed_bytes);
  f("pending_zero_blocks", st.pending_zero_blocks);
  f("read_promote", st.read_promote);
  f("read_cache_hits", st.read_cache_hits);
  f("read_cache_misses", st.read_cache_misses);
  f("read_cache_promotions", st.read_cache_promotions);
  f("read_cache_evictions", st.read_cache_evictions);
  f("read_cache_invalidations", st.read_cache_invalidations);
  f("read_cache_blocks", st.read_cache_blocks);
  f("read_cache_capacity_blocks", st.read_cache_capacity_blocks);
  f("read_cache_memory_bytes", st.read_cache_memory_bytes);
  f("mount_count", st.mount_count);
  f("clean_open", st.clean_open);
  f("failing_since_unix", st.failing_since_unix);
  f("next_retry_unix", st.next_retry_unix);
  f("writers_waiting", st.writers_waiting);
}

// A parsed member value: exactly one of the three kinds.
struct Value {
  enum Kind { kString, kNumber, kBool, kNull } kind = kString;
  std::string str;
  uint64_t num = 0;
  bool b = false;
};

class Parser {
 public:
  explicit Parser(std::string_view in) : in_(in) {}

  Status ParseObject(std::map<std::string, Value>* out) {
    SkipSpace();
    if (!Eat('{')) return Error("expected '{'");
    SkipSpace();
    if (Eat('}')) return Finish();
    for (;;) {
      std::string key;
      BV_RETURN_IF_ERROR(ParseString(&key));
      SkipSpace();
      if (!Eat(':')) return Error("expected ':'");
      SkipSpace();
      Value v;
      BV_RETURN_IF_ERROR(ParseValue(&v));
      (*out)[key] = std::move(v);
      SkipSpace();
      if (Eat(',')) {
        SkipSpace();
        continue;
      }
      if (Eat('}')) return Finish();
      return Error("expected ',' or '}'");
    }
  }

 private:
  Status Finish() {
    SkipSpace();
    if (pos_ != in_.size()) return Error("trailing characters");
    return Status::OK();
  }
  Status Error(const std::string& what) {
    return Status::InvalidArgument("malformed status JSON at byte " + std::to_string(pos_) + ": " + what);
  }
  void SkipSpace() {
    while (pos_ < in_.size() && (in_[pos_] == ' ' || in_[pos_] == '\t' || in_[pos_] == '\n' || in_[pos_] == '\r')) {
      ++pos_;
    }
  }
  bool Eat(char c) {
    if (pos_ < in_.size() && in_[pos_] == c) {
      ++pos_;
      return true;
    }
    return false;
  }
  bool EatWord(std::string_view w) {
    if (in_.substr(pos_, w.size()) == w) {
      pos_ += w.size();
      return true;
    }
    return false;
  }
  static int Hex(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  }
  static void AppendUtf8(uint32_t cp, std::string* out) {
    if (cp < 0x80) {
      *out += static_cast<char>(cp);
    } else if (cp < 0x800) {
      *out += static_cast<char>(0xC0 | (cp >> 6));
      *out += static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
      *out += static_cast<char>(0xE0 | (cp >> 12));
      *out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      *out += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
      *out += static_cast<char>(0xF0 | (cp >> 18));
      *out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
      *out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      *out += static_cast<char>(0x80 | (cp & 0x3F));
    }
  }
  Status ParseHex4(uint32_t* cp) {
    if (pos_ + 4 > in_.size()) return Error("short \\u escape");
    uint32_t v = 0;
    for (int k = 0; k < 4; ++k) {
      int h = Hex(in_[pos_++]);
      if (h < 0) return Error("bad \\u escape");
      v = v * 16 + static_cast<uint32_t>(h);
    }
    *cp = v;
    return Status::OK();
  }
  Status ParseString(std::string* out) {
    if (!Eat('"')) return Error("expected a string");
    while (pos_ < in_.size()) {
      char c = in_[pos_++];
      if (c == '"') return Status::OK();
      if (static_cast<unsigned char>(c) < 0x20) return Error("control character in string");
      if (c != '\\') {
        *out += c;
        continue;
      }
      if (pos_ >= in_.size()) break;
      char e = in_[pos_++];
      switch (e) {
        case '"': *out += '"'; break;
        case '\\': *out += '\\'; break;
        case '/': *out += '/'; break;
        case 'b': *out += '\b'; break;
        case 'f': *out += '\f'; break;
        case 'n': *out += '\n'; break;
        case 'r': *out += '\r'; break;
        case 't': *out += '\t'; break;
        case 'u': {
          uint32_t cp = 0;
          BV_RETURN_IF_ERROR(ParseHex4(&cp));
          if (cp >= 0xD800 && cp < 0xDC00 && EatWord("\\u")) {
            uint32_t lo = 0;
            BV_RETURN_IF_ERROR(ParseHex4(&lo));
            if (lo < 0xDC00 || lo > 0xDFFF) return Error("bad surrogate pair");
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
          }
          AppendUtf8(cp, out);
          break;
        }
        default: return Error("bad escape");
      }
    }
    return Error("unterminated string");
  }
  Status ParseValue(Value* v) {
    if (pos_ < in_.size() && in_[pos_] == '"') {
      v->kind = Value::kString;
      return ParseString(&v->str);
    }
    if (EatWord("true")) {
      v->kind = Value::kBool;
      v->b = true;
      return Status::OK();
    }
    if (EatWord("false")) {
      v->kind = Value::kBool;
      v->b = false;
      return Status::OK();
    }
    if (EatWord("null")) {
      v->kind = Value::kNull;
      return Status::OK();
    }
    if (pos_ < in_.size() && in_[pos_] >= '0' && in_[pos_] <= '9') {
      v->kind = Value::kNumber;
      uint64_t n = 0;
      while (pos_ < in_.size() && in_[pos_] >= '0' && in_[pos_] <= '9') {
        uint64_t d = static_cast<uint64_t>(in_[pos_] - '0');
        if (n > (UINT64_MAX - d) / 10) return Error("number out of range");
        n = n * 10 + d;
        ++pos_;
      }
      v->num = n;
      return Status::OK();
    }
    return Error("expected a string, an unsigned integer, a boolean or null");
  }

  std::string_view in_;
  size_t pos_ = 0;
};

}  // namespace

std::string JsonQuote(std::string_view s) {
  std::string out;
  out.reserve(s.size() + 2);
  out += '"';
  for (char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      default:
        if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
          char buf[8];
          std::snprintf(buf, sizeof(buf), "\\u%04x", static_cast<unsigned>(static_cast<unsigned char>(c)));
          out += buf;
        } else {
          out += c;
        }
    }
  }
  out += '"';
  return out;
}

std::string VolumeStatusToJson(const VolumeStatus& st_in) {
  VolumeStatus st = st_in;
  std::string out = "{";
  bool first = true;
  auto member = [&](const char* name) {
    if (!first) out += ',';
    first = false;
    out += JsonQuote(name);
    out += ':';
  };
  ForEachField(st, [&](const char* name, auto& field) {
    using T = std::decay_t<decltype(field)>;
    member(name);
    if constexpr (std::is_same_v<T, std::string>) {
      out += JsonQuote(field);
    } else if constexpr (std::is_same_v<T, bool>) {
      out += field ? "true" : "false";
    } else {
      out += std::to_string(field);
    }
  });
  out += '}';
  return out;
}

std::string StatusLineJson(const VolumeStatus& st, const StatusRates& r, const std::string& extra) {
  std::string body = VolumeStatusToJson(st);  // "{...}"
  std::string out = "{\"schema_version\":" + std::to_string(kStatusSchemaVersion) + ",";
  out.append(body, 1, body.size() - 2);
  out += ",\"rate_window_s\":" + std::to_string(r.window_s);
  out += ",\"write_bytes_per_s\":" + std::to_string(r.write_bytes_per_s);
  out += ",\"migrate_bytes_per_s\":" + std::to_string(r.migrate_bytes_per_s);
  out += ",\"drain_eta_s\":" + (r.drain_eta_known ? std::to_string(r.drain_eta_s) : std::string("null"));
  if (!extra.empty()) out += "," + extra;
  out += '}';
  return out;
}

Status StatusRatesFromJson(std::string_view json, StatusRates* r) {
  std::map<std::string, Value> members;
  BV_RETURN_IF_ERROR(Parser(json).ParseObject(&members));
  *r = StatusRates{};
  auto num = [&](const char* name, uint64_t* out) {
    auto it = members.find(name);
    if (it != members.end() && it->second.kind == Value::kNumber) *out = it->second.num;
  };
  num("rate_window_s", &r->window_s);
  num("write_bytes_per_s", &r->write_bytes_per_s);
  num("migrate_bytes_per_s", &r->migrate_bytes_per_s);
  auto it = members.find("drain_eta_s");
  if (it != members.end() && it->second.kind == Value::kNumber) {
    r->drain_eta_known = true;
    r->drain_eta_s = it->second.num;
  }
  return Status::OK();
}

Status VolumeStatusFromJson(std::string_view json, VolumeStatus* st) {
  std::map<std::string, Value> members;
  BV_RETURN_IF_ERROR(Parser(json).ParseObject(&members));
  Status result;
  ForEachField(*st, [&](const char* name, auto& field) {
    auto it = members.find(name);
    if (it == members.end() || !result.ok()) return;
    using T = std::decay_t<decltype(field)>;
    const Value& v = it->second;
    if constexpr (std::is_same_v<T, std::string>) {
      if (v.kind != Value::kString) result = Status::InvalidArgument(std::string("status JSON: ") + name + " is not a string");
      else field = v.str;
    } else if constexpr (std::is_same_v<T, bool>) {
      if (v.kind != Value::kBool) result = Status::InvalidArgument(std::string("status JSON: ") + name + " is not a boolean");
      else field = v.b;
    } else {
      if (v.kind != Value::kNumber) result = Status::InvalidArgument(std::string("status JSON: ") + name + " is not a number");
      else field = static_cast<T>(v.num);
    }
  });
  return result;
}

}  // namespace boostvol::control
