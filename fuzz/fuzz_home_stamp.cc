// Fuzzes home::DecodeStamp (src/home/home_journal.h), the parser of
// SLOW/boostvol-home, which is untrusted input.
//
// Input: byte 0 = flags (bit 0: replace the last line with the correct
// crc=XXXXXXXX line, so the parser gets past the checksum), then the text.
// Checks: never crashes; only Corruption/Unsupported on failure; a stamp that
// decodes re-encodes (EncodeStamp) to text that decodes to the same stamp,
// and EncodeStamp's output is a fixed point.
#include <cstdint>
#include <cstdio>
#include <string>

#include "fuzz/fuzz_util.h"
#include "home/home_journal.h"
#include "util/crc32c.h"

using namespace boostvol;
using namespace boostvol::home;

namespace {

bool Same(const Stamp& a, const Stamp& b) {
  return a.uuid == b.uuid && a.image_size == b.image_size && a.watermark.segment_seq == b.watermark.segment_seq &&
         a.watermark.record_seq == b.watermark.record_seq && a.image_mtime_ns == b.image_mtime_ns &&
         a.image_ctime_ns == b.image_ctime_ns && a.image_blocks == b.image_blocks;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  uint8_t flags = data[0];
  std::string text(reinterpret_cast<const char*>(data + 1), size - 1);
  if (flags & 1) {
    size_t cut = text.rfind("crc=");
    if (cut == std::string::npos) cut = text.size();
    text.resize(cut);
    char line[32];
    std::snprintf(line, sizeof line, "crc=%08x\n", crc32c::Value(text.data(), text.size()));
    text += line;
  }
  Stamp st;
  Status s = DecodeStamp(text, "fuzz", &st);
  if (!s.ok()) {
    FUZZ_CHECK(s.IsCorruption() || s.code() == Status::Code::kUnsupported, "%s", s.ToString().c_str());
    return 0;
  }
  std::string again = EncodeStamp(st);
  Stamp st2;
  s = DecodeStamp(again, "fuzz re-encoded", &st2);
  FUZZ_CHECK(s.ok(), "EncodeStamp output does not decode: %s", s.ToString().c_str());
  FUZZ_CHECK(Same(st, st2), "re-encoded stamp decodes differently");
  FUZZ_CHECK(EncodeStamp(st2) == again, "EncodeStamp is not a fixed point");
  return 0;
}
