// DirectoryHome: the home copy as a sparse file in a directory (SLOW), made
// crash-atomic per batch by a redo journal beside it.
//
// Files (docs/home_format.md has the formats, the write order and every crash
// case): SLOW/image, SLOW/boostvol-home (the stamp), SLOW/boostvol-journal.
//
// ApplyBatch, in this order (each Sync a write barrier):
//   1. journal := header + extent table + data (table only without the
//      journal), Sync(journal)                          -- the batch is decided
//   2. WriteAt(image) once per extent, Sync(image)      -- the batch is home
//   3. stamp := uuid, size, batch.end, Stat(image); write boostvol-home.tmp,
//      Sync, Rename onto boostvol-home, Sync(SLOW)     -- the batch is done
//   4. Empty the journal, no Sync: zero its header block (its blocks stay
//      allocated for the next batch) or, above kKeepJournalBytes, truncate
//      it; a journal that reappears after a crash has end <= stamp's
//      watermark and is recognized as stale.
// A failure anywhere returns the error and leaves the in-memory watermark
// where it was; the migrator retries the whole batch. ApplyBatch rewrites
// journal and extents on every call (never re-syncs alone: DESIGN.md 7,
// fsyncgate). If step 1 succeeded but a later step failed, the journal on disk
// is "live" (the image may be a mix of before and after); the next call first
// finishes that batch from the journal (rewriting its extents), and only then
// overwrites the journal with the new batch.
//
// What the journal costs: each batch's bytes are written twice to SLOW and the
// batch waits for one extra fdatasync (the journal's) before its in-place
// writes start; with use_journal=false the intent marker (one header block and
// the extent table) is still written and synced, so a crash mid-batch is not
// mistaken for a change behind our back, but the image may then be torn until
// the log re-applies the batch (and for good if FAST is lost).
#include <sys/stat.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <optional>
#include <string_view>

#include <spdlog/spdlog.h>

#include "home/home.h"
#include "home/home_journal.h"
#include "log/log_format.h"
#include "util/crc32c.h"
#include "util/env.h"
#include "util/thread_annotations.h"

namespace boostvol::home {
namespace {

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "the on-disk format is little-endian");

constexpr uint64_t kBlock = log::kBlockSize;
constexpr size_t kCopyChunk = size_t{1} << 20;  // replay and crc streaming buffer

void Put16(uint8_t* p, uint16_t v) { std::memcpy(p, &v, 2); }
void Put32(uint8_t* p, uint32_t v) { std::memcpy(p, &v, 4); }
void Put64(uint8_t* p, uint64_t v) { std::memcpy(p, &v, 8); }
uint16_t Get16(const uint8_t* p) {
  uint16_t v;
  std::memcpy(&v, p, 2);
  return v;
}
uint32_t Get32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}
uint64_t Get64(const uint8_t* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  return v;
}

bool SameWatermark(const meta::Watermark& a, const meta::Watermark& b) {
  return a.segment_seq == b.segment_seq && a.record_seq == b.record_seq;
}
// a is at or after b in both components.
bool AtOrAfter(const meta::Watermark& a, const meta::Watermark& b) {
  return a.segment_seq >= b.segment_seq && a.record_seq >= b.record_seq;
}
std::string WatermarkString(const meta::Watermark& w) {
  return "(segment " + std::to_string(w.segment_seq) + ", record " + std::to_string(w.record_seq) + ")";
}

// "2026-03-01 12:34:56.123456789 UTC" (or the raw number if out of range).
std::string FormatNs(int64_t ns) {
  int64_t sec = ns / 1000000000;
  int64_t frac = ns % 1000000000;
  if (frac < 0) {
    frac += 1000000000;
    sec -= 1;
  }
  time_t t = static_cast<time_t>(sec);
  struct tm tm;
  if (gmtime_r(&t, &tm) == nullptr) return std::to_string(ns) + " ns";
  char buf[64];
  size_t len = std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S", &tm);
  char out[96];
  std::snprintf(out, sizeof out, "%.*s.%09" PRId64 " UTC", static_cast<int>(len), buf, frac);
  return out;
}

// The same status with `prefix` in front of its message.
Status WithContext(const Status& s, const std::string& prefix) {
  std::string m = prefix + ": " + s.message();
  switch (s.code()) {
    case Status::Code::kOk: return s;
    case Status::Code::kIoError: return Status::IoError(s.err(), std::move(m));
    case Status::Code::kCorruption: return Status::Corruption(std::move(m));
    case Status::Code::kInvalidArgument: return Status::InvalidArgument(std::move(m));
    case Status::Code::kNotFound: return Status::NotFound(std::move(m));
    case Status::Code::kBusy: return Status::Busy(std::move(m));
    case Status::Code::kNoSpace: return Status::NoSpace(std::move(m));
    case Status::Code::kUnsupported: return Status::Unsupported(std::move(m));
    case Status::Code::kAborted: return Status::Aborted(std::move(m));
    case Status::Code::kWouldBlock: return s;
  }
  return s;
}

// Logs a failure with what the user can do about it, and returns it.
Status Fail(const Status& s, std::string_view hint) {
  spdlog::error("{} -- {}", s.ToString(), hint);
  return s;
}

// For failures the caller retries and reports itself (the migrator logs the
// start and the end of an outage once; a home read's caller rate-limits its
// own message): logged at debug level only, so an outage is not one error
// line per attempt.
Status Retry(const Status& s) {
  spdlog::debug("{} (the caller retries)", s.ToString());
  return s;
}

constexpr std::string_view kRetryHint =
    "nothing cached is lost: the migrator retries the whole batch; check SLOW's storage "
    "(dmesg, free space, permissions, the network mount)";
constexpr std::string_view kOpenIoHint =
    "check that SLOW is mounted and readable/writable by this user (dmesg, mount, ls -l)";

// Opens `name` in `dir`, turning a planted symlink (ELOOP) into a message.
Status OpenNoFollow(Dir* dir, const std::string& name, OpenMode mode, std::unique_ptr<File>* f) {
  Status s = dir->OpenFile(name, mode, f);
  if (s.ok()) return s;
  if (s.err() == ELOOP) {
    return Status::InvalidArgument(dir->path() + "/" + name +
                                   " is a symbolic link; boostvol never follows links inside SLOW (a planted "
                                   "link could redirect writes). Replace it with the real file");
  }
  return WithContext(s, "opening " + dir->path() + "/" + name);
}

bool ParseU64(std::string_view v, uint64_t* out) {
  if (v.empty() || v.size() > 20 || v.front() < '0' || v.front() > '9') return false;
  auto r = std::from_chars(v.data(), v.data() + v.size(), *out, 10);
  return r.ec == std::errc() && r.ptr == v.data() + v.size();
}

bool ParseI64(std::string_view v, int64_t* out) {
  if (v.empty() || v.size() > 20) return false;
  if (v.front() != '-' && (v.front() < '0' || v.front() > '9')) return false;
  auto r = std::from_chars(v.data(), v.data() + v.size(), *out, 10);
  return r.ec == std::errc() && r.ptr == v.data() + v.size();
}

bool ParseHex32(std::string_view v, uint32_t* out) {
  if (v.size() != 8) return false;
  for (char c : v) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  auto r = std::from_chars(v.data(), v.data() + v.size(), *out, 16);
  return r.ec == std::errc() && r.ptr == v.data() + v.size();
}

Status ValidateImageSize(uint64_t image_size) {
  if (image_size == 0 || image_size % kBlock != 0 || image_size / kBlock > log::kMaxImageBlocks) {
    return Status::InvalidArgument("image size " + std::to_string(image_size) +
                                   " must be a positive multiple of 4096 of at most " +
                                   std::to_string(log::kMaxImageBlocks) + " blocks");
  }
  return Status::OK();
}

Status ValidateBatch(const Batch& b, uint64_t image_size) {
  uint64_t prev_end = 0;
  for (size_t i = 0; i < b.zeros.size(); i++) {
    const ZeroExtent& z = b.zeros[i];
    std::string which = "batch zero extent " + std::to_string(i) + " (offset " + std::to_string(z.offset) +
                        ", length " + std::to_string(z.length) + ")";
    if (z.length == 0 || z.length % kBlock != 0 || z.offset % kBlock != 0)
      return Status::InvalidArgument(which + " is empty or not block aligned");
    if (z.offset > image_size || z.length > image_size - z.offset)
      return Status::InvalidArgument(which + " lies past the image's end " + std::to_string(image_size));
    if (i > 0 && z.offset < prev_end) return Status::InvalidArgument(which + " is unsorted or overlaps the one before");
    prev_end = z.offset + z.length;
  }
  prev_end = 0;
  for (size_t i = 0; i < b.extents.size(); i++) {
    const Extent& e = b.extents[i];
    auto which = [&] {
      return "batch extent " + std::to_string(i) + " (offset " + std::to_string(e.offset) + ", length " +
             std::to_string(e.length) + ")";
    };
    if (e.length == 0 || e.length % kBlock != 0 || e.offset % kBlock != 0) {
      return Status::InvalidArgument(which() + " is empty or not block aligned");
    }
    if (e.data == nullptr && !b.source) return Status::InvalidArgument(which() + " has no data and the batch no source");
    if (e.offset > image_size || e.length > image_size - e.offset) {
      return Status::InvalidArgument(which() + " lies past the image's end " + std::to_string(image_size));
    }
    if (i > 0 && e.offset < prev_end) return Status::InvalidArgument(which() + " is unsorted or overlaps the one before");
    prev_end = e.offset + e.length;
  }
  return ValidateJournalExtents(b);
}

}  // namespace

// ---------------------------------------------------------------------------
// Stamp

std::string EncodeStamp(const Stamp& s) {
  std::string t = "boostvol-home " + std::to_string(s.direct_writes ? kStampVersionDirect : kStampVersion) + "\n";
  t += "uuid=" + log::UuidToString(s.uuid) + "\n";
  t += "image_size=" + std::to_string(s.image_size) + "\n";
  t += "watermark_segment=" + std::to_string(s.watermark.segment_seq) + "\n";
  t += "watermark_record=" + std::to_string(s.watermark.record_seq) + "\n";
  t += "image_mtime_ns=" + std::to_string(s.image_mtime_ns) + "\n";
  t += "image_ctime_ns=" + std::to_string(s.image_ctime_ns) + "\n";
  t += "image_blocks=" + std::to_string(s.image_blocks) + "\n";
  if (s.direct_writes) t += "direct_writes=1\n";
  char crc[32];
  std::snprintf(crc, sizeof crc, "crc=%08x\n", crc32c::Value(t.data(), t.size()));
  t += crc;
  return t;
}

Status DecodeStamp(const std::string& text, const std::string& where, Stamp* out) {
  auto bad = [&](const std::string& why) {
    return Status::Corruption(where + ": " + why +
                              "; the home's stamp is damaged (edited, or SLOW lost data): run `boostvol check`");
  };
  if (text.size() > kMaxStampBytes) return bad("larger than " + std::to_string(kMaxStampBytes) + " bytes");
  if (text.empty() || text.back() != '\n') return bad("empty or truncated (no final newline)");
  size_t nl = text.size() >= 2 ? text.rfind('\n', text.size() - 2) : std::string::npos;
  size_t crc_line = nl == std::string::npos ? 0 : nl + 1;
  std::string_view last(text.data() + crc_line, text.size() - 1 - crc_line);
  uint32_t stored = 0;
  if (last.substr(0, 4) != "crc=" || !ParseHex32(last.substr(4), &stored)) {
    return bad("last line is not crc=XXXXXXXX (8 lowercase hex digits)");
  }
  uint32_t computed = crc32c::Value(text.data(), crc_line);
  if (stored != computed) {
    char m[96];
    std::snprintf(m, sizeof m, "checksum mismatch (stored %08x, computed %08x)", stored, computed);
    return bad(m);
  }

  std::vector<std::string_view> lines;
  for (size_t pos = 0; pos < crc_line;) {
    size_t e = text.find('\n', pos);  // exists: text[crc_line - 1] == '\n'
    lines.emplace_back(text.data() + pos, e - pos);
    pos = e + 1;
  }
  static constexpr const char* kKeys[] = {"uuid",           "image_size",     "watermark_segment", "watermark_record",
                                          "image_mtime_ns", "image_ctime_ns", "image_blocks", "direct_writes"};
  constexpr size_t kAllKeys = sizeof kKeys / sizeof kKeys[0];
  if (lines.empty()) return bad("no header line");
  std::string_view head = lines[0];
  constexpr std::string_view kHead = "boostvol-home ";
  uint64_t version = 0;
  if (head.substr(0, kHead.size()) != kHead || !ParseU64(head.substr(kHead.size()), &version)) {
    return bad("first line is not 'boostvol-home <version>'");
  }
  if (version != kStampVersion && version != kStampVersionDirect) {
    return Status::Unsupported(where + ": stamp format version " + std::to_string(version) +
                               " is not understood by this boostvol (it reads versions " +
                               std::to_string(kStampVersion) + " and " + std::to_string(kStampVersionDirect) +
                               "); use the boostvol that wrote it");
  }
  const size_t kNumKeys = version == kStampVersionDirect ? kAllKeys : kAllKeys - 1;
  if (lines.size() != 1 + kNumKeys) {
    return bad("has " + std::to_string(lines.size()) + " lines before crc=, expected " +
               std::to_string(1 + kNumKeys));
  }
  std::string_view val[kAllKeys];
  for (size_t i = 0; i < kNumKeys; i++) {
    std::string_view line = lines[1 + i];
    std::string_view key = kKeys[i];
    if (line.size() <= key.size() || line.substr(0, key.size()) != key || line[key.size()] != '=') {
      return bad("line " + std::to_string(2 + i) + " should be " + std::string(key) + "=...");
    }
    val[i] = line.substr(key.size() + 1);
  }
  Stamp s;
  if (!log::UuidFromString(std::string(val[0]), &s.uuid)) return bad("uuid is not 8-4-4-4-12 hex");
  if (!ParseU64(val[1], &s.image_size)) return bad("image_size is not a number");
  if (!ParseU64(val[2], &s.watermark.segment_seq)) return bad("watermark_segment is not a number");
  if (!ParseU64(val[3], &s.watermark.record_seq)) return bad("watermark_record is not a number");
  if (!ParseI64(val[4], &s.image_mtime_ns)) return bad("image_mtime_ns is not a number");
  if (!ParseI64(val[5], &s.image_ctime_ns)) return bad("image_ctime_ns is not a number");
  if (!ParseU64(val[6], &s.image_blocks)) return bad("image_blocks is not a number");
  if (kNumKeys == kAllKeys) {
    if (val[7] != "1") return bad("direct_writes is not 1 (a version 2 stamp always carries the mark)");
    s.direct_writes = true;
  }
  if (!ValidateImageSize(s.image_size).ok()) return bad("image_size " + std::to_string(s.image_size) + " is invalid");
  if (s.watermark.record_seq == 0) return bad("watermark_record is 0 (record seqs start at 1)");
  *out = s;
  return Status::OK();
}

// ---------------------------------------------------------------------------
// Journal

uint64_t JournalTableBytes(uint64_t extent_count) {
  return (extent_count * kJournalEntrySize + kBlock - 1) / kBlock * kBlock;
}

Status ValidateJournalExtents(const Batch& b) {
  size_t k = 0;  // the extent of b.extents that may hold journal extent i
  uint64_t prev_end = 0;
  for (size_t i = 0; i < b.journal_extents.size(); i++) {
    const Extent& j = b.journal_extents[i];
    auto which = [&] {
      return "batch journal extent " + std::to_string(i) + " (offset " + std::to_string(j.offset) + ", length " +
             std::to_string(j.length) + ")";
    };
    if (j.length == 0 || j.length % kBlock != 0 || j.offset % kBlock != 0)
      return Status::InvalidArgument(which() + " is empty or not block aligned");
    if (i > 0 && j.offset < prev_end) return Status::InvalidArgument(which() + " is unsorted or overlaps the one before");
    prev_end = j.offset + j.length;
    while (k < b.extents.size() && b.extents[k].offset + b.extents[k].length <= j.offset) k++;
    if (k == b.extents.size() || j.offset < b.extents[k].offset ||
        j.offset + j.length > b.extents[k].offset + b.extents[k].length)
      return Status::InvalidArgument(which() + " is not inside one extent of the batch");
    const uint8_t* want = b.extents[k].data == nullptr ? nullptr : b.extents[k].data + (j.offset - b.extents[k].offset);
    if (j.data != want) return Status::InvalidArgument(which() + " does not point at its extent's bytes");
  }
  return Status::OK();
}

JournalContent JournalContentOf(const Batch& batch, bool with_data) {
  JournalContent c;
  for (const ZeroExtent& z : batch.zeros) c.zero_entries += (z.length + kJournalMaxZeroExtent - 1) / kJournalMaxZeroExtent;
  c.data_extents = with_data && !batch.journal_extents.empty() ? &batch.journal_extents : &batch.extents;
  c.entries = c.zero_entries + c.data_extents->size();
  c.table_bytes = JournalTableBytes(c.entries);
  for (const Extent& e : *c.data_extents) c.data_bytes += e.length;
  return c;
}

Status WriteJournal(File* f, const log::Uuid& uuid, uint64_t image_size, const meta::Watermark& base,
                    const Batch& batch, bool with_data) {
  const JournalContent content = JournalContentOf(batch, with_data);
  const uint64_t nzero = content.zero_entries, n = content.entries, table_bytes = content.table_bytes;
  const std::vector<Extent>& data_ext = *content.data_extents;
  std::vector<uint8_t> table(table_bytes, 0);
  uint64_t total = 0;
  uint64_t i = 0;
  for (const ZeroExtent& z : batch.zeros) {
    for (uint64_t done = 0; done < z.length; i++) {
      uint64_t len = std::min(kJournalMaxZeroExtent, z.length - done);
      Put64(&table[i * kJournalEntrySize], z.offset + done);
      Put32(&table[i * kJournalEntrySize + 8], static_cast<uint32_t>(len));
      Put32(&table[i * kJournalEntrySize + 12], kJournalExtentZero);
      done += len;
    }
  }
  for (const Extent& e : data_ext) {
    Put64(&table[i * kJournalEntrySize], e.offset);
    Put32(&table[i * kJournalEntrySize + 8], e.length);
    total += e.length;
    i++;
  }
  uint32_t body_crc = crc32c::Value(table.data(), n * kJournalEntrySize);
  if (table_bytes > 0) BV_RETURN_IF_ERROR(f->WriteAt(kJournalHeaderSize, table.data(), table.size()));
  if (with_data) {
    uint64_t pos = kJournalHeaderSize + table_bytes;
    std::unique_ptr<uint8_t[]> chunk;
    for (const Extent& e : data_ext) {
      if (e.data != nullptr) {
        body_crc = crc32c::Extend(body_crc, e.data, e.length);
        BV_RETURN_IF_ERROR(f->WriteAt(pos, e.data, e.length));
        pos += e.length;
        continue;
      }
      if (!chunk) chunk.reset(new uint8_t[kCopyChunk]);
      for (uint64_t done = 0; done < e.length;) {
        size_t len = static_cast<size_t>(std::min<uint64_t>(kCopyChunk, e.length - done));
        BV_RETURN_IF_ERROR(batch.source(e.offset + done, chunk.get(), len));
        body_crc = crc32c::Extend(body_crc, chunk.get(), len);
        BV_RETURN_IF_ERROR(f->WriteAt(pos, chunk.get(), len));
        pos += len;
        done += len;
      }
    }
  }

  uint8_t h[kJournalHeaderSize];
  EncodeJournalHeader(h, uuid, image_size, base, batch.end, nzero > 0, with_data, n, total, body_crc);
  return f->WriteAt(0, h, sizeof h);
}

void EncodeJournalHeader(uint8_t* h, const log::Uuid& uuid, uint64_t image_size, const meta::Watermark& base,
                         const meta::Watermark& end, bool has_zero_extents, bool with_data, uint64_t extent_count,
                         uint64_t total_bytes, uint32_t body_crc) {
  std::memset(h, 0, kJournalHeaderSize);
  Put32(h + 0, kJournalMagic);
  Put16(h + 4, has_zero_extents ? kJournalVersionZero : kJournalVersion);
  Put16(h + 6, with_data ? 0 : kJournalIntentOnly);
  std::memcpy(h + 8, uuid.data(), 16);
  Put64(h + 24, base.segment_seq);
  Put64(h + 32, base.record_seq);
  Put64(h + 40, end.segment_seq);
  Put64(h + 48, end.record_seq);
  Put64(h + 56, image_size);
  Put64(h + 64, extent_count);
  Put64(h + 72, total_bytes);
  Put32(h + 80, body_crc);
  Put32(h + kJournalHeaderCrcOffset, crc32c::Value(h, kJournalHeaderCrcOffset));
}

Status ReadJournal(File* f, const log::Uuid& uuid, uint64_t image_size, JournalState* state, Journal* out,
                   std::string* why) {
  const std::string& name = f->name();
  auto torn = [&](const std::string& reason) {
    *state = JournalState::kTorn;
    *why = reason;
    return Status::OK();
  };
  auto corrupt = [&](const std::string& reason) {
    return Status::Corruption(name + ": " + reason +
                              "; no crash explains this (the header checksum holds): run `boostvol check`");
  };
  FileInfo info;
  BV_RETURN_IF_ERROR(f->Stat(&info));
  if (info.size == 0) {
    *state = JournalState::kEmpty;
    return Status::OK();
  }
  if (info.size < kJournalHeaderSize) return torn("shorter than its 4096-byte header");
  uint8_t h[kJournalHeaderSize];
  BV_RETURN_IF_ERROR(f->ReadAt(0, h, sizeof h));
  if (std::all_of(h, h + sizeof h, [](uint8_t b) { return b == 0; })) {
    *state = JournalState::kEmpty;  // emptied, its blocks kept (or a header never written)
    return Status::OK();
  }
  if (Get32(h) != kJournalMagic) return torn("bad magic");
  if (crc32c::Value(h, kJournalHeaderCrcOffset) != Get32(h + kJournalHeaderCrcOffset)) {
    return torn("header checksum mismatch");
  }
  uint16_t version = Get16(h + 4);
  uint16_t flags = Get16(h + 6);
  if ((version != kJournalVersion && version != kJournalVersionZero) || (flags & ~kJournalKnownFlags) != 0) {
    return Status::Unsupported(name + ": journal version " + std::to_string(version) + " flags " +
                               std::to_string(flags) + " were written by a newer boostvol; use it to finish the batch");
  }
  log::Uuid ju;
  std::memcpy(ju.data(), h + 8, 16);
  if (ju != uuid) {
    return corrupt("belongs to volume " + log::UuidToString(ju) + ", not " + log::UuidToString(uuid));
  }
  Journal j;
  j.flags = flags;
  j.base.segment_seq = Get64(h + 24);
  j.base.record_seq = Get64(h + 32);
  j.end.segment_seq = Get64(h + 40);
  j.end.record_seq = Get64(h + 48);
  j.image_size = Get64(h + 56);
  const uint64_t count = Get64(h + 64);
  j.total_bytes = Get64(h + 72);
  const uint32_t body_crc = Get32(h + 80);
  if (j.image_size != image_size) {
    return corrupt("was written for an image of " + std::to_string(j.image_size) + " bytes, not " +
                   std::to_string(image_size));
  }
  if (count > kMaxJournalExtents) return corrupt("extent count " + std::to_string(count) + " is out of range");
  if (j.total_bytes > image_size || (version == kJournalVersion && count * kBlock > j.total_bytes)) {
    return corrupt("total bytes " + std::to_string(j.total_bytes) + " do not fit " + std::to_string(count) +
                   " extents in the image");
  }
  if (!AtOrAfter(j.end, j.base)) return corrupt("its end watermark precedes its base");
  const uint64_t table_bytes = JournalTableBytes(count);
  const uint64_t data_start = kJournalHeaderSize + table_bytes;
  const uint64_t need = data_start + (j.intent_only() ? 0 : j.total_bytes);
  if (info.size < need) {
    return torn("holds " + std::to_string(info.size) + " bytes, its header describes " + std::to_string(need));
  }

  std::vector<uint8_t> table(count * kJournalEntrySize);
  if (!table.empty()) BV_RETURN_IF_ERROR(f->ReadAt(kJournalHeaderSize, table.data(), table.size()));
  uint32_t crc = crc32c::Value(table.data(), table.size());
  if (!j.intent_only()) {
    std::vector<uint8_t> buf(std::min<uint64_t>(kCopyChunk, std::max<uint64_t>(j.total_bytes, 1)));
    for (uint64_t done = 0; done < j.total_bytes;) {
      size_t n = static_cast<size_t>(std::min<uint64_t>(buf.size(), j.total_bytes - done));
      BV_RETURN_IF_ERROR(f->ReadAt(data_start + done, buf.data(), n));
      crc = crc32c::Extend(crc, buf.data(), n);
      done += n;
    }
  }
  if (crc != body_crc) return torn("body checksum mismatch");

  // The body crc holds: from here on a defect is not a torn write.
  uint64_t prev_end = 0, sum = 0, pos = data_start;
  bool in_data = false;  // zero extents (version 2) come first, then data extents
  j.extents.reserve(count);
  for (uint64_t i = 0; i < count; i++) {
    const uint8_t* p = &table[i * kJournalEntrySize];
    JournalExtent e;
    e.offset = Get64(p);
    e.length = Get32(p + 8);
    const uint32_t eflags = Get32(p + 12);
    e.zero = eflags == kJournalExtentZero;
    e.data_pos = e.zero ? 0 : pos;
    if (!e.zero && !in_data) {
      in_data = true;
      prev_end = 0;
    }
    if ((eflags != 0 && !(eflags == kJournalExtentZero && version == kJournalVersionZero)) || (e.zero && in_data) ||
        e.length == 0 || e.length % kBlock != 0 || e.offset % kBlock != 0 || e.offset > image_size ||
        e.length > image_size - e.offset || (i > 0 && e.offset < prev_end)) {
      return corrupt("extent " + std::to_string(i) + " (offset " + std::to_string(e.offset) + ", length " +
                     std::to_string(e.length) + ") is unaligned, out of range or out of order");
    }
    prev_end = e.offset + e.length;
    if (!e.zero) {
      sum += e.length;
      pos += e.length;
    }
    j.extents.push_back(e);
  }
  if (sum != j.total_bytes) return corrupt("extent lengths do not add up to total bytes");
  *out = std::move(j);
  *state = JournalState::kValid;
  return Status::OK();
}

// ---------------------------------------------------------------------------
// DirectoryHome

namespace {

class DirectoryHome final : public Home {
 public:
  DirectoryHome(Env* env, std::unique_ptr<Dir> dir, std::unique_ptr<File> image, std::unique_ptr<File> journal,
                const log::Uuid& uuid, uint64_t size, bool use_journal, const meta::Watermark& wm)
      : env_(env),
        dir_(std::move(dir)),
        image_(std::move(image)),
        uuid_(uuid),
        size_(size),
        use_journal_(use_journal),
        journal_(std::move(journal)),
        watermark_(wm) {}

  uint64_t size() const override { return size_; }

  meta::Watermark watermark() const override {
    MutexLock l(&mu_);
    return watermark_;
  }

  Status Read(uint64_t offset, void* buf, size_t n) override {
    if (offset > size_ || n > size_ - offset) {
      return Fail(Status::InvalidArgument("home read of " + std::to_string(n) + " bytes at " + std::to_string(offset) +
                                          " lies past the image's end " + std::to_string(size_)),
                  "this is a bug in the caller; please report it");
    }
    Status s = image_->ReadAt(offset, buf, n);
    if (s.IsWouldBlock()) return s;  // not a failure (NoWaitScope)
    if (!s.ok()) return Retry(WithContext(s, "reading the home copy " + image_->name() + " at offset " + std::to_string(offset)));
    return s;
  }

  bool streams_batches() const override { return true; }

  Status ApplyBatch(const Batch& batch) override {
    MutexLock l(&apply_mu_);
    Status s = ValidateBatch(batch, size_);
    if (!s.ok()) return Fail(s, "this is a bug in the migrator; please report it");
    // The home is the files opened at mount; write a batch into them only
    // while SLOW's path still leads to them (docs/faults.md, "vanished").
    s = CheckStillAtPath();
    if (!s.ok()) return Retry(s);
    bool marker_in_place = false;
    if (journal_live_) {
      // A previous call synced its journal and then failed: the image may be a
      // mix. Finish that batch from the journal before the journal is reused.
      s = FinishLiveJournal(batch, &marker_in_place);
      if (!s.ok()) return s;
    }
    meta::Watermark cur = watermark();
    if (finished_journal_end_ && AtOrAfter(*finished_journal_end_, batch.end) && AtOrAfter(cur, batch.end) &&
        !SameWatermark(batch.end, cur)) {
      // Every record < batch.end is home already: finishing the journal of a
      // failed earlier attempt (a larger batch) moved the watermark past this
      // retry's end. Done; the migrator frees these segments and goes on.
      // (Any other batch that goes backwards is refused below: a bug.)
      spdlog::debug("{}: batch {} is home already (watermark {})", Describe(), WatermarkString(batch.end),
                    WatermarkString(cur));
      return Status::OK();
    }
    if (!AtOrAfter(batch.end, cur)) {
      return Fail(Status::InvalidArgument("batch end " + WatermarkString(batch.end) + " precedes the home's watermark " +
                                          WatermarkString(cur)),
                  "this is a bug in the migrator; please report it");
    }
    if (SameWatermark(batch.end, cur)) return Status::OK();  // every record < end is home already
    if (batch.empty()) {
      s = WriteStamp(batch.end);
      if (!s.ok()) return Retry(WithContext(s, "advancing the home's stamp to " + WatermarkString(batch.end)));
      SetWatermark(batch.end);
      return s;
    }

    const std::string what = "applying batch " + WatermarkString(cur) + " -> " + WatermarkString(batch.end) +
                             " to " + Describe();
    // 1. The journal (or the intent marker): the batch is decided once synced.
    // A synced intent marker of a failed try at the same base already says
    // what Open must know; rewriting it could only tear it.
    if (!marker_in_place) {
      s = WriteJournal(journal_.get(), uuid_, size_, cur, batch, use_journal_);
      if (s.ok()) s = journal_->Sync();
      if (!s.ok()) return Retry(WithContext(s, what + ": writing the journal"));
    }
    journal_live_ = true;
    // 2. In place: zero ranges first, then one write per extent, then the barrier.
    for (const ZeroExtent& z : batch.zeros) {
      s = Zero(z.offset, z.length);
      if (!s.ok()) {
        return Retry(WithContext(s, what + ": zeroing " + std::to_string(z.length) + " bytes at " +
                                        std::to_string(z.offset)));
      }
    }
    std::unique_ptr<uint8_t[]> chunk;
    for (const Extent& e : batch.extents) {
      if (e.data != nullptr) {
        s = image_->WriteAt(e.offset, e.data, e.length);
      } else {  // streamed from the batch's source through one bounded buffer
        if (!chunk) chunk.reset(new uint8_t[kCopyChunk]);
        for (uint64_t done = 0; s.ok() && done < e.length;) {
          size_t len = static_cast<size_t>(std::min<uint64_t>(kCopyChunk, e.length - done));
          s = batch.source(e.offset + done, chunk.get(), len);
          if (s.ok()) s = image_->WriteAt(e.offset + done, chunk.get(), len);
          done += len;
        }
      }
      if (!s.ok()) {
        return Retry(WithContext(s, what + ": writing " + std::to_string(e.length) + " bytes at " +
                                        std::to_string(e.offset)));
      }
    }
    s = image_->Sync();
    if (!s.ok()) return Retry(WithContext(s, what + ": syncing the image"));
    // 3. The stamp.
    s = WriteStamp(batch.end);
    if (!s.ok()) return Retry(WithContext(s, what + ": writing the stamp"));
    journal_live_ = false;
    SetWatermark(batch.end);
    // 4. Empty the journal (no sync needed: a stale journal is recognized).
    ClearJournal();
    return Status::OK();
  }

  Status WriteThrough(uint64_t offset, const void* data, size_t n) override {
    if (offset > size_ || n > size_ - offset)
      return Fail(Status::InvalidArgument("write-through past the image's end"), "this is a bug; please report it");
    Status s = image_->WriteAt(offset, data, n);
    if (!s.ok()) return Fail(WithContext(s, "writing through to " + image_->name()), kRetryHint);
    return s;
  }

  Status ZeroThrough(uint64_t offset, uint64_t n) override {
    if (offset > size_ || n > size_ - offset)
      return Fail(Status::InvalidArgument("write-through past the image's end"), "this is a bug; please report it");
    Status s = Zero(offset, n);
    if (!s.ok()) return Fail(WithContext(s, "zeroing through to " + image_->name()), kRetryHint);
    return s;
  }

  Status SyncThrough() override {
    MutexLock l(&apply_mu_);
    Status s = image_->Sync();
    if (s.ok()) s = WriteStamp(watermark());
    if (!s.ok()) return Fail(WithContext(s, "syncing write-through data in " + image_->name()), kRetryHint);
    return s;
  }

  Status WriteDirect(uint64_t offset, const void* data, size_t n) override {
    MutexLock l(&apply_mu_);
    if (offset > size_ || n > size_ - offset)
      return Fail(Status::InvalidArgument("home-direct write past the image's end"), "this is a bug; please report it");
    // A synced journal whose batch is not stamped may be replayed (at the next
    // ApplyBatch or open) over this write: the caller logs it instead.
    if (journal_live_) return Status::Busy("an interrupted migration batch is not finished at " + Describe());
    Status s = CheckStillAtPath();
    if (!s.ok()) return s;
    if (!direct_mark_) {
      // The intent mark, durable before the image changes under the stamp.
      s = WriteStamp(watermark(), /*direct=*/true);
      if (!s.ok()) return WithContext(s, "writing the home-direct intent mark into " + Describe());
    }
    s = image_->WriteAt(offset, data, n);
    if (s.ok()) s = image_->Sync();
    if (!s.ok()) return WithContext(s, "home-direct write of " + std::to_string(n) + " bytes at " + std::to_string(offset));
    return s;
  }

  bool direct_mark_for_test() const override { return direct_mark_; }

  Status Restamp() override {
    MutexLock l(&apply_mu_);
    FileInfo info;
    Status s = image_->Stat(&info);
    if (!s.ok()) return Fail(WithContext(s, "restamping " + Describe()), kOpenIoHint);
    if (info.size != size_) {
      return Fail(Status::InvalidArgument(image_->name() + " holds " + std::to_string(info.size) +
                                          " bytes but the volume's image is " + std::to_string(size_) +
                                          " bytes; refusing to accept it as this volume's home"),
                  "if the resize was a mistake, restore the size with `truncate -s " + std::to_string(size_) + " " +
                      image_->name() + "` (data past the end is lost)");
    }
    s = WriteStamp(watermark());
    if (!s.ok()) return Fail(WithContext(s, "restamping " + Describe()), kOpenIoHint);
    return s;
  }

  std::string Describe() const override { return "dir:" + dir_->path(); }

  // Open's second half: finishes or discards the journal, then compares the
  // image with the stamp. `stamp` is what the stamp file holds.
  Status Recover(const Stamp& stamp, HomeOpenReport* report) {
    MutexLock l(&apply_mu_);
    bool restamped = false;
    JournalState state = JournalState::kEmpty;
    Journal j;
    std::string why;
    Status s = ReadJournal(journal_.get(), uuid_, size_, &state, &j, &why);
    if (!s.ok()) {
      return Fail(WithContext(s, "reading the journal of " + Describe()),
                  s.IsCorruption() ? "the home copy may be inconsistent; run `boostvol check`" : kOpenIoHint);
    }
    if (state == JournalState::kTorn) {
      // Torn before its sync completed, so its batch never started in place.
      spdlog::warn("{}: discarding a torn journal ({}): a crash interrupted it before its batch began; the home is "
                   "intact at watermark {}",
                   journal_->name(), why, WatermarkString(stamp.watermark));
      ClearJournal();
    } else if (state == JournalState::kValid) {
      if (AtOrAfter(stamp.watermark, j.end)) {
        ClearJournal();  // stale: its batch is in the stamp already
      } else if (!SameWatermark(j.base, stamp.watermark)) {
        return Fail(Status::Corruption(journal_->name() + " holds batch " + WatermarkString(j.base) + " -> " +
                                       WatermarkString(j.end) + " but the stamp is at " +
                                       WatermarkString(stamp.watermark) +
                                       ": they do not follow each other (was the stamp replaced?); run `boostvol check`"),
                    "the home copy may be inconsistent; run `boostvol check`");
      } else if (j.intent_only()) {
        // Without the journal: the image may be torn in the batch's ranges.
        // The watermark stays; the log still holds the batch and the migrator
        // rewrites it. The stamp takes the image's new times so that our own
        // writes are not mistaken for a change behind our back.
        spdlog::warn("{}: a batch {} -> {} was interrupted while the volume ran without the home journal; {} "
                     "extent(s) of SLOW/image may be torn until the migrator rewrites them from the log (if FAST is "
                     "lost before that, the home copy is not crash-consistent)",
                     Describe(), WatermarkString(j.base), WatermarkString(j.end), j.extents.size());
        s = WriteStamp(stamp.watermark);
        if (!s.ok()) return Fail(WithContext(s, "restamping " + Describe() + " after an interrupted batch"), kOpenIoHint);
        ClearJournal();
        restamped = true;
      } else {
        spdlog::info("{}: finishing batch {} -> {} from the journal ({} extents, {} bytes) after a crash", Describe(),
                     WatermarkString(j.base), WatermarkString(j.end), j.extents.size(), j.total_bytes);
        s = ReplayJournal(j);
        if (!s.ok()) {
          return Fail(WithContext(s, "replaying the journal of " + Describe()),
                      "the journal is kept and replayed again at the next open; " + std::string(kOpenIoHint));
        }
        report->journal_replayed = true;
        restamped = true;
      }
    }
    report->watermark = watermark();
    if (restamped) return Status::OK();

    FileInfo info;
    s = image_->Stat(&info);
    if (!s.ok()) return Fail(WithContext(s, "checking " + image_->name()), kOpenIoHint);
    // A change behind our back makes the image's times newer than the stamp's
    // (a write sets both to now; touch -d and cp -a still set ctime to now).
    // Older times are expected after a power cut: fdatasync does not make a
    // timestamp-only inode update durable, so the filesystem may come back
    // with the times from before our last batch while the stamp (synced) has
    // the newer ones. docs/home_format.md, "Detecting a change behind our back".
    std::string detail;
    auto add = [&](const std::string& d) {
      if (!detail.empty()) detail += "; ";
      detail += d;
    };
    if (info.size != stamp.image_size) {
      add("image size " + std::to_string(info.size) + " differs from stamp " + std::to_string(stamp.image_size));
    }
    const bool times_newer = info.mtime_ns > stamp.image_mtime_ns || info.ctime_ns > stamp.image_ctime_ns;
    if (stamp.direct_writes && info.size == stamp.image_size && times_newer) {
      // The intent mark: this volume wrote the image directly (write modes,
      // sequential bypass) and stopped before the next stamp; the newer times
      // are ours. Stamp the current times (image synced first), clearing it.
      spdlog::info("{}: image times are newer than the stamp's, and the stamp carries the home-direct intent mark "
                   "(the volume wrote home directly before it stopped): accepted",
                   image_->name());
      s = image_->Sync();
      if (s.ok()) s = WriteStamp(stamp.watermark);
      if (!s.ok()) return Fail(WithContext(s, "restamping " + Describe() + " after home-direct writes"), kOpenIoHint);
      return Status::OK();
    }
    if (info.mtime_ns > stamp.image_mtime_ns) {
      add("image mtime " + FormatNs(info.mtime_ns) + " is newer than stamp " + FormatNs(stamp.image_mtime_ns));
    }
    if (info.ctime_ns > stamp.image_ctime_ns) {
      add("image ctime " + FormatNs(info.ctime_ns) + " is newer than stamp " + FormatNs(stamp.image_ctime_ns));
    }
    if (!detail.empty()) {
      report->changed_behind_back = true;
      report->change_detail = image_->name() + " was changed by something other than boostvol: " + detail;
      spdlog::warn("{}", report->change_detail);
    } else if (info.mtime_ns != stamp.image_mtime_ns || info.ctime_ns != stamp.image_ctime_ns) {
      spdlog::info("{}: image times are older than the stamp's (mtime {}, stamp {}): the filesystem lost a "
                   "timestamp update in a crash; accepted",
                   image_->name(), FormatNs(info.mtime_ns), FormatNs(stamp.image_mtime_ns));
    }
    return Status::OK();
  }

 private:
  void SetWatermark(const meta::Watermark& wm) {
    MutexLock l(&mu_);
    watermark_ = wm;
  }

  // Whether SLOW's path still leads to the image file held open. A slow dir
  // that vanished (its filesystem lazily unmounted, the directory renamed or
  // removed, another filesystem mounted over it) leaves our descriptors valid
  // and writable: a batch written through them would land where nobody can
  // see it, or in an unlinked file that disappears at close, and the log
  // would then free the only visible copy. So a batch is applied only while
  // the path leads to the very image file held open (same st_dev/st_ino, not
  // unlinked); otherwise the migrator backs off and retries, and resumes by
  // itself when the same directory is back (remounting the same filesystem
  // gives the same identity). Reads keep using the descriptors: a read that
  // can still be served is served.
  Status CheckStillAtPath() BV_REQUIRES(apply_mu_) {
    FileInfo held;
    Status s = image_->Stat(&held);
    if (!s.ok()) return WithContext(s, "checking the home copy held open");
    if (held.nlink == 0) {
      return Status::IoError(ENOENT, image_->name() + " was deleted while boostvol holds it open; migration is "
                                                      "stopped (the log keeps every block). Stop boostvol and "
                                                      "restore SLOW from a backup, or recreate the volume");
    }
    const std::string& path = dir_->path();
    std::unique_ptr<Dir> now;
    FileInfo at_path;
    s = env_->OpenDir(path, &now);
    if (s.ok()) s = now->Stat("image", &at_path);
    if (!s.ok()) {
      return Status::IoError(s.err() ? s.err() : ENOENT,
                             "SLOW " + path + " no longer leads to the home copy boostvol holds open (" +
                                 s.message() + "): unmounted, renamed or removed? Migration waits until it is back");
    }
    if (at_path.dev != held.dev || at_path.ino != held.ino) {
      return Status::IoError(ESTALE, "SLOW " + path + "/image is now another file (device " +
                                         std::to_string(at_path.dev) + " inode " + std::to_string(at_path.ino) +
                                         ", the one held open is device " + std::to_string(held.dev) + " inode " +
                                         std::to_string(held.ino) +
                                         "): another filesystem mounted over SLOW, or the directory replaced? "
                                         "Migration waits until the original is back");
    }
    return Status::OK();
  }

  // Writes the stamp for `wm` with the image's current size and times.
  // `direct` writes the intent mark (stamp version 2): home-direct writes
  // may follow. Any other stamp write clears it: every stamp is written after
  // the image was synced (or, at open, restamped), so its times cover every
  // home-direct write before it.
  Status WriteStamp(const meta::Watermark& wm, bool direct = false) BV_REQUIRES(apply_mu_) {
    FileInfo info;
    BV_RETURN_IF_ERROR(image_->Stat(&info));
    Stamp st;
    st.uuid = uuid_;
    st.image_size = size_;
    st.watermark = wm;
    st.image_mtime_ns = info.mtime_ns;
    st.image_ctime_ns = info.ctime_ns;
    st.image_blocks = info.blocks_512;
    st.direct_writes = direct;
    std::string text = EncodeStamp(st);
    std::unique_ptr<File> tmp;
    BV_RETURN_IF_ERROR(OpenNoFollow(dir_.get(), kStampTmpFile, OpenMode::kCreate, &tmp));
    BV_RETURN_IF_ERROR(tmp->Truncate(0));
    BV_RETURN_IF_ERROR(tmp->WriteAt(0, text.data(), text.size()));
    BV_RETURN_IF_ERROR(tmp->Sync());
    tmp.reset();
    BV_RETURN_IF_ERROR(dir_->Rename(kStampTmpFile, kStampFile));
    BV_RETURN_IF_ERROR(dir_->Sync());
    direct_mark_ = direct;
    return Status::OK();
  }

  // Copies a valid journal's extents in place, syncs, stamps, clears.
  //
  // Data extents close together (gaps of at most kReplayGapBlocks, three or
  // more in a span of at most 64 MiB) are written as one run, the gaps read
  // from the image first, as the migrator writes them: a journal holds only
  // the dirty runs of a batch (W1), and replaying thousands of scattered
  // blocks one by one would make a mount after a crash as slow as the disk's
  // random writes. A gap block is not in the batch: it holds its bytes from
  // before the batch (zero extents are applied first), or the same bytes
  // rewritten, so writing it back changes nothing.
  Status ReplayJournal(const Journal& j) BV_REQUIRES(apply_mu_) {
    constexpr uint64_t kReplayGapBlocks = 64, kMaxSpan = 64 << 20;
    std::vector<uint8_t> buf(kCopyChunk);
    std::vector<const JournalExtent*> data;
    for (const JournalExtent& e : j.extents) {
      if (e.zero) {
        BV_RETURN_IF_ERROR(Zero(e.offset, e.length));
        continue;
      }
      data.push_back(&e);
    }
    for (size_t g = 0; g < data.size();) {
      size_t end = g + 1;  // the group is data[g, end)
      while (end < data.size() && data[end]->offset >= data[end - 1]->offset + data[end - 1]->length &&
             data[end]->offset - (data[end - 1]->offset + data[end - 1]->length) <= kReplayGapBlocks * kBlock &&
             data[end]->offset + data[end]->length - data[g]->offset <= kMaxSpan)
        end++;
      if (end - g < 3) {
        for (; g < end; g++) {
          const JournalExtent& e = *data[g];
          for (uint64_t done = 0; done < e.length;) {
            size_t n = static_cast<size_t>(std::min<uint64_t>(buf.size(), e.length - done));
            BV_RETURN_IF_ERROR(journal_->ReadAt(e.data_pos + done, buf.data(), n));
            BV_RETURN_IF_ERROR(image_->WriteAt(e.offset + done, buf.data(), n));
            done += n;
          }
        }
        continue;
      }
      // One run over the span, chunk by chunk: the image's bytes, then the
      // journal's extents over them.
      const uint64_t span_first = data[g]->offset, span_end = data[end - 1]->offset + data[end - 1]->length;
      size_t k = g;
      for (uint64_t c = span_first; c < span_end;) {
        size_t n = static_cast<size_t>(std::min<uint64_t>(buf.size(), span_end - c));
        BV_RETURN_IF_ERROR(image_->ReadAt(c, buf.data(), n));
        while (k < end && data[k]->offset + data[k]->length <= c) k++;
        for (size_t x = k; x < end && data[x]->offset < c + n; x++) {
          const uint64_t from = std::max<uint64_t>(c, data[x]->offset);
          const uint64_t to = std::min<uint64_t>(c + n, data[x]->offset + data[x]->length);
          BV_RETURN_IF_ERROR(journal_->ReadAt(data[x]->data_pos + (from - data[x]->offset), buf.data() + (from - c),
                                              static_cast<size_t>(to - from)));
        }
        BV_RETURN_IF_ERROR(image_->WriteAt(c, buf.data(), n));
        c += n;
      }
      g = end;
    }
    BV_RETURN_IF_ERROR(image_->Sync());
    BV_RETURN_IF_ERROR(WriteStamp(j.end));
    journal_live_ = false;
    SetWatermark(j.end);
    ClearJournal();
    return Status::OK();
  }

  // ApplyBatch's retry path: the journal on disk was synced, the in-place part
  // failed. Rewrites its extents from the journal. An intent marker at the
  // current watermark is left in place (*marker_in_place) when `batch` (the
  // retry) covers it, and the retry rewrites the extents; otherwise it is
  // removed durably, so that it cannot outlive a stamp it does not follow.
  Status FinishLiveJournal(const Batch& batch, bool* marker_in_place) BV_REQUIRES(apply_mu_) {
    JournalState state = JournalState::kEmpty;
    Journal j;
    std::string why;
    Status s = ReadJournal(journal_.get(), uuid_, size_, &state, &j, &why);
    if (!s.ok()) return Retry(WithContext(s, "re-reading the journal of " + Describe()));
    if (state == JournalState::kValid && j.intent_only() && SameWatermark(j.base, watermark())) {
      if (!batch.empty() && AtOrAfter(batch.end, j.end)) {
        *marker_in_place = true;
      } else {
        s = journal_->Truncate(0);
        if (s.ok()) s = journal_->Sync();
        if (!s.ok()) return Retry(WithContext(s, "removing the intent marker of " + Describe()));
      }
      journal_live_ = false;
      return Status::OK();
    }
    if (state != JournalState::kValid || j.intent_only() || !SameWatermark(j.base, watermark())) {
      // Nothing to finish from: the batch being applied rewrites every extent.
      if (state == JournalState::kTorn) {
        spdlog::error("{}: the synced journal now reads as torn ({}); SLOW may be losing data. The batch is "
                      "rewritten from the log",
                      journal_->name(), why);
      }
      journal_live_ = false;
      return Status::OK();
    }
    s = ReplayJournal(j);
    if (!s.ok()) return Retry(WithContext(s, "finishing the interrupted batch of " + Describe()));
    finished_journal_end_ = j.end;
    return s;
  }

  // Makes [offset, offset+n) of the image read as zeros: a hole (frees the
  // blocks on SLOW) where the file system can punch one, written zeros where
  // it cannot (said once in the log).
  Status Zero(uint64_t offset, uint64_t n) {
    Status s = image_->PunchHole(offset, n);
    if (s.ok() || !(s.err() == EOPNOTSUPP || s.err() == ENOSYS || s.err() == EINVAL)) return s;
    if (!punch_unsupported_.exchange(true))
      spdlog::warn("{}: the file system cannot punch holes ({}); zero ranges (TRIM) are written as zeros there and "
                   "free no space on SLOW",
                   image_->name(), s.ToString());
    std::vector<uint8_t> zeros(std::min<uint64_t>(n, kCopyChunk), 0);
    for (uint64_t done = 0; done < n;) {
      size_t len = static_cast<size_t>(std::min<uint64_t>(zeros.size(), n - done));
      BV_RETURN_IF_ERROR(image_->WriteAt(offset + done, zeros.data(), len));
      done += len;
    }
    return Status::OK();
  }

  // Empties the journal, no sync (a stale journal is recognized). A journal
  // of at most kKeepJournalBytes keeps its blocks: its header block becomes
  // zeros (read as empty), and the next batch overwrites blocks the file
  // system has allocated already, so the journal's fdatasync flushes data
  // only, not a file-system commit of new allocations per batch (a slow disk
  // pays each request). A larger one is truncated (it would hold space on
  // SLOW and be read whole at the next open).
  void ClearJournal() BV_REQUIRES(apply_mu_) {
    FileInfo info;
    Status s = journal_->Stat(&info);
    if (s.ok() && info.size == 0) return;
    if (s.ok() && info.size <= kKeepJournalBytes) {
      static const std::vector<uint8_t> zeros(kJournalHeaderSize, 0);
      s = journal_->WriteAt(0, zeros.data(), zeros.size());
    } else {
      s = journal_->Truncate(0);
    }
    if (!s.ok()) {
      spdlog::warn("{}: emptying the journal failed ({}); harmless: its batch is in the stamp, so it is ignored",
                   journal_->name(), s.ToString());
    }
  }

  Env* const env_;
  const std::unique_ptr<Dir> dir_;
  const std::unique_ptr<File> image_;  // ReadAt is thread-safe; written only under apply_mu_
  const log::Uuid uuid_;
  const uint64_t size_;
  const bool use_journal_;

  Mutex apply_mu_ BV_ACQUIRED_BEFORE(mu_);  // serializes ApplyBatch, Restamp, Recover
  std::unique_ptr<File> journal_ BV_PT_GUARDED_BY(apply_mu_);
  bool journal_live_ BV_GUARDED_BY(apply_mu_) = false;  // journal synced, its batch not stamped yet
  // The end of the last batch finished from the journal of a failed attempt
  // (retries of a smaller batch below it are already home).
  std::optional<meta::Watermark> finished_journal_end_ BV_GUARDED_BY(apply_mu_);
  std::atomic<bool> punch_unsupported_{false};          // said once
  std::atomic<bool> direct_mark_{false};  // the stamp on disk carries the intent mark (written under apply_mu_)

  mutable Mutex mu_;
  meta::Watermark watermark_ BV_GUARDED_BY(mu_);
};

}  // namespace

Status CreateDirectoryHome(Env* env, const std::string& slow_path, const log::Uuid& uuid, uint64_t image_size) {
  Status s = ValidateImageSize(image_size);
  if (!s.ok()) return Fail(s, "choose an image size that is a multiple of 4096 bytes");
  std::unique_ptr<Dir> dir;
  s = env->OpenDir(slow_path, &dir);
  if (!s.ok()) return Fail(WithContext(s, "opening SLOW " + slow_path), "create the directory first; " + std::string(kOpenIoHint));
  for (const char* name : {kStampFile, kImageFile, kJournalFile}) {
    bool exists = false;
    s = dir->Exists(name, &exists);
    if (!s.ok()) return Fail(WithContext(s, "looking into SLOW " + slow_path), kOpenIoHint);
    if (exists) {
      return Fail(Status::InvalidArgument("SLOW " + slow_path + " already holds " + name +
                                          ": it is (or was) the home of a volume; boostvol create never overwrites one"),
                  "use an empty directory for SLOW, or remove the old home's files if you are sure they are not needed");
    }
  }
  // On failure, remove exactly what this call created (nothing else in SLOW is
  // touched: the checks above proved none of these names existed).
  bool created_image = false, created_journal = false;
  auto undo = [&](const Status& why) {
    std::unique_ptr<Dir> d;
    if (env->OpenDir(slow_path, &d).ok()) {
      if (created_image) (void)d->Remove(kImageFile);
      if (created_journal) (void)d->Remove(kJournalFile);
      if (created_journal) (void)d->Remove(kStampFile);  // only ever written after the journal
      (void)d->Remove(kStampTmpFile);
      (void)d->Sync();
    }
    return Fail(WithContext(why, "creating the home copy in " + slow_path),
                "what this create made in SLOW was removed; fix the cause and run create again");
  };
  std::unique_ptr<File> image, journal;
  s = OpenNoFollow(dir.get(), kImageFile, OpenMode::kCreateExclusive, &image);
  created_image = s.ok();
  if (s.ok()) s = image->Truncate(image_size);
  if (s.ok()) s = image->Sync();
  if (s.ok()) {
    s = OpenNoFollow(dir.get(), kJournalFile, OpenMode::kCreateExclusive, &journal);
    created_journal = s.ok();
  }
  if (!s.ok()) return undo(s);
  meta::Watermark wm;
  auto home = std::make_unique<DirectoryHome>(env, std::move(dir), std::move(image), std::move(journal), uuid, image_size,
                                              true, wm);
  s = home->Restamp();  // writes the first stamp; its Dir::Sync makes all three entries durable
  if (!s.ok()) {
    home.reset();
    return undo(s);
  }
  spdlog::info("created home {} for volume {} ({} bytes)", home->Describe(), log::UuidToString(uuid), image_size);
  return Status::OK();
}

Status OpenDirectoryHome(Env* env, const std::string& slow_path, const log::Uuid& uuid, uint64_t image_size,
                         bool use_journal, std::unique_ptr<Home>* out, HomeOpenReport* report) {
  *report = HomeOpenReport();
  std::unique_ptr<Dir> dir;
  Status s = env->OpenDir(slow_path, &dir);
  if (!s.ok()) return Fail(WithContext(s, "opening SLOW " + slow_path), kOpenIoHint);

  // The stamp: present, sane, ours, our size.
  bool exists = false;
  s = dir->Exists(kStampFile, &exists);
  if (!s.ok()) return Fail(WithContext(s, "looking into SLOW " + slow_path), kOpenIoHint);
  if (!exists) {
    return Fail(Status::NotFound("SLOW " + slow_path + " holds no boostvol-home stamp: it is not the home of a "
                                 "boostvol volume (wrong directory?)"),
                "pass the SLOW directory given to `boostvol create`; if its stamp was deleted, run `boostvol check`");
  }
  std::unique_ptr<File> stamp_file;
  s = OpenNoFollow(dir.get(), kStampFile, OpenMode::kReadOnly, &stamp_file);
  FileInfo sinfo;
  if (s.ok()) s = stamp_file->Stat(&sinfo);
  if (!s.ok()) return Fail(s, kOpenIoHint);
  const std::string stamp_where = stamp_file->name();
  if (sinfo.size > kMaxStampBytes) {
    return Fail(Status::Corruption(stamp_where + ": " + std::to_string(sinfo.size) + " bytes, larger than any stamp; " +
                                   "run `boostvol check`"),
                "the stamp was replaced or damaged");
  }
  std::string text(sinfo.size, '\0');
  if (!text.empty()) s = stamp_file->ReadAt(0, text.data(), text.size());
  if (!s.ok()) return Fail(WithContext(s, "reading " + stamp_where), kOpenIoHint);
  stamp_file.reset();
  Stamp stamp;
  s = DecodeStamp(text, stamp_where, &stamp);
  if (!s.ok()) return Fail(s, "do not edit boostvol-home by hand; `boostvol check` says what else is damaged");
  if (stamp.uuid != uuid) {
    return Fail(Status::InvalidArgument("SLOW (" + slow_path + ") belongs to volume " + log::UuidToString(stamp.uuid) +
                                        ", but FAST belongs to volume " + log::UuidToString(uuid) +
                                        ": they are not a pair"),
                "pass the SLOW directory that was created together with this FAST directory");
  }
  if (stamp.image_size != image_size) {
    return Fail(Status::InvalidArgument("SLOW (" + slow_path + ") holds an image of " +
                                        std::to_string(stamp.image_size) + " bytes, but the volume's image is " +
                                        std::to_string(image_size) + " bytes: they are not a pair"),
                "pass the SLOW directory that was created together with this FAST directory");
  }

  // The image and the journal.
  s = dir->Exists(kImageFile, &exists);
  if (!s.ok()) return Fail(WithContext(s, "looking into SLOW " + slow_path), kOpenIoHint);
  if (!exists) {
    return Fail(Status::NotFound("SLOW " + slow_path + " has a stamp but no image: the home copy was deleted"),
                "restore SLOW/image from a backup; if it is gone for good, `boostvol check` reports what the cache "
                "still holds");
  }
  std::unique_ptr<File> image;
  s = OpenNoFollow(dir.get(), kImageFile, OpenMode::kReadWrite, &image);
  if (!s.ok()) return Fail(s, kOpenIoHint);
  FileInfo iinfo;
  s = image->Stat(&iinfo);
  if (!s.ok()) return Fail(WithContext(s, "checking " + image->name()), kOpenIoHint);
  if ((iinfo.mode & S_IFMT) != 0 && !S_ISREG(iinfo.mode)) {
    return Fail(Status::InvalidArgument(image->name() + " is not a regular file"),
                "SLOW/image must be the sparse file boostvol created");
  }
  s = dir->Exists(kJournalFile, &exists);
  if (!s.ok()) return Fail(WithContext(s, "looking into SLOW " + slow_path), kOpenIoHint);
  std::unique_ptr<File> journal;
  s = OpenNoFollow(dir.get(), kJournalFile, exists ? OpenMode::kReadWrite : OpenMode::kCreate, &journal);
  if (s.ok() && !exists) s = dir->Sync();  // the journal's entry must be durable before a batch relies on it
  if (!s.ok()) return Fail(s, kOpenIoHint);

  auto home = std::make_unique<DirectoryHome>(env, std::move(dir), std::move(image), std::move(journal), uuid, image_size,
                                              use_journal, stamp.watermark);
  BV_RETURN_IF_ERROR(home->Recover(stamp, report));
  if (!use_journal) {
    spdlog::warn("{}: the home journal is off: a crash during migration can leave SLOW/image torn, and it is then "
                 "only repaired from FAST (DESIGN.md 2.7)",
                 home->Describe());
  }
  *out = std::move(home);
  return Status::OK();
}

}  // namespace boostvol::home
