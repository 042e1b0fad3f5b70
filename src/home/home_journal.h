// The on-disk formats of a directory home (SLOW/boostvol-home, the stamp, and
// SLOW/boostvol-journal, the redo journal). The full specification, with the
// write order, the crash cases and a worked example, is docs/home_format.md;
// this header is its summary and the one place its constants live.
//
// Private to src/home (and its tests): nothing else knows a home has files.
//
// Stamp (text, at most 4096 bytes, every line ends in '\n'):
//   boostvol-home 1
//   uuid=<8-4-4-4-12 lowercase hex>
//   image_size=<u64>          watermark_segment=<u64>   watermark_record=<u64>
//   image_mtime_ns=<i64>      image_ctime_ns=<i64>      image_blocks=<u64>
//   crc=<8 lowercase hex digits: crc32c of every byte before this line>
// (one key per line, in exactly this order).
//
// Journal (binary, little-endian):
//   journal := header-block extent-table data
//   header-block (4096 bytes):
//      0 u32 magic 'BVHJ'      4 u16 version (1; 2 if it has zero extents)  6 u16 flags
//      8 u8[16] volume uuid
//     24 u64 base_segment_seq 32 u64 base_record_seq    (stamp's watermark before)
//     40 u64 end_segment_seq  48 u64 end_record_seq     (stamp's watermark after)
//     56 u64 image_size       64 u64 extent_count       72 u64 total_bytes (data extents' bytes)
//     80 u32 body_crc = crc32c(extent-table entries, then data)
//     84 .. 4091 zero        4092 u32 header_crc = crc32c(bytes 0..4091)
//   extent-table: extent_count entries of 16 bytes (u64 offset, u32 length,
//      u32 flags), zero-padded to a multiple of 4096. flags bit 0 (version 2
//      only): a zero extent (punch a hole / write zeros; no data in the data
//      area). Zero extents come first (sorted, disjoint), then data extents
//      (sorted, disjoint); replay applies them in table order.
//   data: the extents' bytes in table order (absent when flags has
//      kJournalIntentOnly: the volume runs without the journal and the header
//      only marks that a batch is being written in place).
//
// What the journal costs (DESIGN.md 2.7): every byte of a batch is written
// twice to SLOW (journal, then in place) and the batch pays one more
// fdatasync (the journal's) before its in-place writes may start. Without the
// journal a batch still writes its header block and extent table (the intent
// marker, a few KiB) and pays that fdatasync, but the home copy may be torn if
// the host crashes mid-batch and FAST is then lost for good.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "boostvol/status.h"
#include "home/home.h"
#include "log/record.h"
#include "meta/meta_store.h"

namespace boostvol {
class File;
}

namespace boostvol::home {

// File names inside SLOW.
inline constexpr char kImageFile[] = "image";
inline constexpr char kStampFile[] = "boostvol-home";
inline constexpr char kStampTmpFile[] = "boostvol-home.tmp";
inline constexpr char kJournalFile[] = "boostvol-journal";

// ---- Stamp ----

inline constexpr int kStampVersion = 1;
// Version 2 = version 1 plus a `direct_writes=1` line: home-direct writes
// (write modes, sequential bypass) may have changed the image since this
// stamp, so newer image times are not taken for a change behind our back.
// Written only while the mark is set; a stamp without it stays version 1.
inline constexpr int kStampVersionDirect = 2;
inline constexpr size_t kMaxStampBytes = 4096;

struct Stamp {
  log::Uuid uuid{};
  uint64_t image_size = 0;
  meta::Watermark watermark;
  int64_t image_mtime_ns = 0;
  int64_t image_ctime_ns = 0;
  uint64_t image_blocks = 0;  // 512-byte blocks allocated (informational)
  bool direct_writes = false;  // the intent mark (version 2 only)
};

std::string EncodeStamp(const Stamp& s);
// Parses `text` (the whole file) as untrusted input. `where` names the file in
// messages. Corruption (naming `where` and `boostvol check`) on any defect;
// Unsupported for a stamp of a newer format version.
Status DecodeStamp(const std::string& text, const std::string& where, Stamp* out);

// ---- Journal ----

inline constexpr uint32_t kJournalMagic = 0x4A485642;  // "BVHJ" in little-endian bytes
inline constexpr uint16_t kJournalVersion = 1;
inline constexpr uint16_t kJournalVersionZero = 2;  // has zero extents (older readers refuse it)
inline constexpr uint32_t kJournalExtentZero = 1;   // extent-table flags bit 0
inline constexpr uint64_t kJournalMaxZeroExtent = uint64_t{1} << 30;  // zero extents are split to this
inline constexpr uint16_t kJournalIntentOnly = 1;  // flags bit 0: no data follows the table
inline constexpr uint16_t kJournalKnownFlags = kJournalIntentOnly;
inline constexpr size_t kJournalHeaderSize = 4096;
// A journal is empty (no batch in flight) when its size is 0 or its header
// block is all zeros; a journal of at most this many bytes is emptied by
// zeroing its header (its blocks stay allocated for the next batch), a larger
// one by truncation.
inline constexpr uint64_t kKeepJournalBytes = uint64_t{160} << 20;
inline constexpr size_t kJournalHeaderCrcOffset = kJournalHeaderSize - 4;
inline constexpr size_t kJournalEntrySize = 16;
// Bound on extent_count checked before the table is read (it is untrusted):
// 16 Mi extents is a 256 MiB table, far beyond any batch the migrator builds.
inline constexpr uint64_t kMaxJournalExtents = uint64_t{1} << 24;

struct JournalExtent {
  uint64_t offset = 0;    // in the image
  uint32_t length = 0;
  uint64_t data_pos = 0;  // in the journal file (meaningless when intent-only or zero)
  bool zero = false;      // punch / write zeros; no data
};

struct Journal {
  uint16_t flags = 0;
  meta::Watermark base;  // the stamp's watermark when the batch began
  meta::Watermark end;   // the stamp's watermark once the batch is home
  uint64_t image_size = 0;
  uint64_t total_bytes = 0;
  std::vector<JournalExtent> extents;
  bool intent_only() const { return (flags & kJournalIntentOnly) != 0; }
};

// Byte size of the extent table, padded to a block.
uint64_t JournalTableBytes(uint64_t extent_count);

// What a batch's journal holds: zero extents first (each split to at most
// kJournalMaxZeroExtent bytes: the table's length field is a u32), then the
// data extents: Batch::journal_extents when the batch lists them and the
// journal carries data (gap blocks need no redo), else Batch::extents (an
// intent-only journal lists every extent written).
struct JournalContent {
  uint64_t zero_entries = 0;
  const std::vector<Extent>* data_extents = nullptr;  // points into the batch
  uint64_t entries = 0;                               // zero_entries + data_extents->size()
  uint64_t table_bytes = 0;                           // JournalTableBytes(entries)
  uint64_t data_bytes = 0;                            // sum of data_extents' lengths
};
JournalContent JournalContentOf(const Batch& batch, bool with_data);

// Checks Batch::journal_extents against the batch's extents (sorted, disjoint,
// aligned, each inside one extent and pointing at its bytes); OK when empty.
Status ValidateJournalExtents(const Batch& b);

// Writes the journal of `batch` (applied on top of watermark `base`) into `f`
// from offset 0: table, data (unless !with_data: then an intent-only journal;
// with data, only batch.journal_extents when the batch lists them),
// header last. Does not Sync and does not truncate: bytes past the new
// journal's end are ignored by readers. `batch` must already be validated.
Status WriteJournal(File* f, const log::Uuid& uuid, uint64_t image_size, const meta::Watermark& base,
                    const Batch& batch, bool with_data);

// The 4096-byte header block of a journal (the layout above), header_crc
// included; for a home that writes the table and data itself (RbdHome streams
// them into RADOS objects) and then the header last.
void EncodeJournalHeader(uint8_t* h, const log::Uuid& uuid, uint64_t image_size, const meta::Watermark& base,
                         const meta::Watermark& end, bool has_zero_extents, bool with_data, uint64_t extent_count,
                         uint64_t total_bytes, uint32_t body_crc);

enum class JournalState {
  kEmpty,  // size 0 or an all-zero header block: no batch in flight
  kTorn,   // fails a check a crash while writing it explains; `why` says which
  kValid,  // every check passed; `out` is filled
};

// Reads and checks the whole journal in `f` (every length and offset checked
// before use, both crcs verified by streaming the body). Errors: IoError;
// Corruption for a journal whose header crc holds but that belongs to another
// volume or image size (a crash does not explain those); Unsupported for a
// newer version.
Status ReadJournal(File* f, const log::Uuid& uuid, uint64_t image_size, JournalState* state, Journal* out,
                   std::string* why);

}  // namespace boostvol::home
