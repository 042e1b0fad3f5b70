// The on-disk format of the log (FAST/log). The full specification, with a
// worked example, is docs/log_format.md; this header is its summary and the
// one place its constants live.
//
//   log      := segment[segment_count]            (file FAST/log, preallocated)
//   segment  := record* padding                   (segment_blocks blocks)
//   record   := header-block data-block[nblocks]  (0 <= nblocks <= 256,
//                                                   1 <= nblocks + nzero <= 335)
//
// Segment seq S lives in slot S % segment_count. Records never cross a
// segment's end; when the next record does not fit, the writer moves to the
// start of the next slot. Record seqs are global, start at 1 and never repeat.
//
// Header block (4096 bytes, little-endian):
//   0  u32 magic 'BVLR'      4 u16 version (1, or 2 when nzero > 0)    6 u16 flags (0)
//   8  u8[16] volume uuid   24 u64 record_seq    32 u64 segment_seq
//  40  u64 durable_seq (every record <= it was fsync'ed when this one was built)
//  48  u32 prev_crc (header_crc of record_seq-1; 0 for seq 1)
//  52  u32 nblocks          56 u32 nzero (0 in version 1)   60 u32 reserved (0)
//  64  entry[nblocks], 12 bytes each: u64 lba|kData<<56, u32 block_crc
//      then zero[nzero], 12 bytes each: u64 first_lba|kZero<<56, u32 count
//  4092 u32 header_crc = crc32c(bytes 0..4091)
//
// A zero entry says "blocks [first_lba, first_lba+count) read as zeros"
// (TRIM, write-zeroes, all-zero blocks); no data block follows it. Within a
// record the zero ranges apply BEFORE its data blocks (the writer seals a
// record before a zero range that overlaps a data block already in it).
//
// block_crc = crc32c over (u64 lba little-endian, then the 4096 data bytes), so
// a block read from the wrong place fails its check even if the bytes are valid.
//
// A record is valid iff magic, version, uuid, header_crc, nblocks, segment_seq
// (its slot matches its position), record_seq (the one expected) and prev_crc
// (chains to the record before) all check, and every data block matches its
// block_crc. Recovery replays valid records from the migration watermark and
// stops at the first invalid one (docs/log_format.md, "Recovery").
#pragma once

#include <cstddef>
#include <cstdint>

namespace boostvol::log {

inline constexpr uint32_t kBlockSize = 4096;
inline constexpr uint32_t kBlockShift = 12;
inline constexpr uint32_t kMagic = 0x524C5642;  // "BVLR" in little-endian bytes
inline constexpr uint16_t kVersion = 1;      // a record without zero entries
inline constexpr uint16_t kVersionZero = 2;  // a record with zero entries (old readers refuse it)
inline constexpr uint32_t kMaxRecordBlocks = 256;
inline constexpr size_t kHeaderFixedSize = 64;
inline constexpr size_t kEntrySize = 12;
inline constexpr size_t kHeaderCrcOffset = kBlockSize - 4;
// Data and zero entries together.
inline constexpr uint32_t kMaxRecordEntries = (kHeaderCrcOffset - kHeaderFixedSize) / kEntrySize;  // 335
static_assert(kHeaderFixedSize + kMaxRecordBlocks * kEntrySize <= kHeaderCrcOffset);
static_assert(kHeaderFixedSize + kMaxRecordEntries * kEntrySize <= kHeaderCrcOffset);

// Segment geometry limits (checked when metadata is read: it is untrusted).
inline constexpr uint32_t kMinSegmentBlocks = 4;     // 16 KiB, for tests
inline constexpr uint32_t kMaxSegmentBlocks = 65536; // 256 MiB
inline constexpr uint32_t kDefaultSegmentBlocks = 1024;  // 4 MiB
inline constexpr uint32_t kMinSegments = 3;

// Entry kinds (top byte of the lba field). Version 1 has only kData.
enum class EntryKind : uint8_t { kData = 0, kZero = 1 };
inline constexpr uint64_t kLbaMask = (uint64_t{1} << 56) - 1;

// Largest image: block numbers must fit in 32 bits (the index stores u32).
inline constexpr uint64_t kMaxImageBlocks = 0xFFFFFFFEull;

}  // namespace boostvol::log
