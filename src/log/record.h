// Encoding and decoding of one log record header (format: log_format.h).
// Pure functions over caller-owned buffers; thread-safe.
#pragma once

#include <array>
#include <cstdint>
#include <string>

#include "boostvol/status.h"
#include "log/log_format.h"

namespace boostvol::log {

using Uuid = std::array<uint8_t, 16>;

struct RecordEntry {
  uint64_t lba = 0;  // block number in the image
  uint32_t block_crc = 0;
};

// A zero range: image blocks [first, first + count) read as zeros.
struct ZeroEntry {
  uint64_t first = 0;
  uint32_t count = 0;
};

struct RecordHeader {
  Uuid uuid{};
  uint64_t record_seq = 0;
  uint64_t segment_seq = 0;
  uint64_t durable_seq = 0;
  uint32_t prev_crc = 0;
  uint32_t nblocks = 0;  // data blocks (and data entries)
  uint32_t nzero = 0;    // zero entries; nblocks + nzero <= kMaxRecordEntries
  RecordEntry entries[kMaxRecordBlocks];
  ZeroEntry zeros[kMaxRecordEntries];
  // Filled in by Encode/Decode: the crc stored at kHeaderCrcOffset.
  uint32_t header_crc = 0;
};

// crc32c over the little-endian lba followed by the block's 4096 bytes.
uint32_t BlockCrc(uint64_t lba, const void* block);

// Writes `h` into a 4096-byte block and sets h->header_crc.
void EncodeHeader(RecordHeader* h, uint8_t* block);

// Parses a 4096-byte block as a header of volume `uuid`. Checks magic,
// version, uuid, nblocks range and header_crc, and that the flags, the
// reserved u64 at 56 and the bytes after the entries are zero; every field is
// bounds-checked before use. Returns Corruption (with the reason) when any check fails.
// Does not check data blocks, seqs or chaining: those need context.
Status DecodeHeader(const uint8_t* block, const Uuid& uuid, RecordHeader* h);

// Formats a uuid as 8-4-4-4-12 lowercase hex, and parses it back.
std::string UuidToString(const Uuid& u);
bool UuidFromString(const std::string& s, Uuid* u);
Uuid NewRandomUuid();

}  // namespace boostvol::log
