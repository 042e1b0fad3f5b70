#include "log/record.h"

#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <random>
#include <unistd.h>

#include "util/crc32c.h"

namespace boostvol::log {
namespace {

void Put16(uint8_t* p, uint16_t v) { std::memcpy(p, &v, 2); }
void Put32(uint8_t* p, uint32_t v) { std::memcpy(p, &v, 4); }
void Put64(uint8_t* p, uint64_t v) { std::memcpy(p, &v, 8); }
uint16_t Get16(const uint8_t* p) { uint16_t v; std::memcpy(&v, p, 2); return v; }
uint32_t Get32(const uint8_t* p) { uint32_t v; std::memcpy(&v, p, 4); return v; }
uint64_t Get64(const uint8_t* p) { uint64_t v; std::memcpy(&v, p, 8); return v; }

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "the on-disk format is little-endian");

}  // namespace

uint32_t BlockCrc(uint64_t lba, const void* block) {
  uint8_t le[8];
  Put64(le, lba);
  return crc32c::Extend(crc32c::Value(le, 8), block, kBlockSize);
}

void EncodeHeader(RecordHeader* h, uint8_t* b) {
  std::memset(b, 0, kBlockSize);
  Put32(b + 0, kMagic);
  Put16(b + 4, h->nzero > 0 ? kVersionZero : kVersion);
  Put16(b + 6, 0);
  std::memcpy(b + 8, h->uuid.data(), 16);
  Put64(b + 24, h->record_seq);
  Put64(b + 32, h->segment_seq);
  Put64(b + 40, h->durable_seq);
  Put32(b + 48, h->prev_crc);
  Put32(b + 52, h->nblocks);
  Put32(b + 56, h->nzero);
  uint8_t* e = b + kHeaderFixedSize;
  for (uint32_t i = 0; i < h->nblocks; i++, e += kEntrySize) {
    Put64(e, h->entries[i].lba & kLbaMask);
    Put32(e + 8, h->entries[i].block_crc);
  }
  for (uint32_t i = 0; i < h->nzero; i++, e += kEntrySize) {
    Put64(e, (h->zeros[i].first & kLbaMask) | uint64_t{static_cast<uint8_t>(EntryKind::kZero)} << 56);
    Put32(e + 8, h->zeros[i].count);
  }
  h->header_crc = crc32c::Value(b, kHeaderCrcOffset);
  Put32(b + kHeaderCrcOffset, h->header_crc);
}

Status DecodeHeader(const uint8_t* b, const Uuid& uuid, RecordHeader* h) {
  if (Get32(b) != kMagic) return Status::Corruption("bad record magic");
  uint16_t version = Get16(b + 4);
  if (version != kVersion && version != kVersionZero)
    return Status::Corruption("unsupported record version " + std::to_string(version));
  uint32_t stored = Get32(b + kHeaderCrcOffset);
  if (crc32c::Value(b, kHeaderCrcOffset) != stored) return Status::Corruption("record header checksum mismatch");
  if (std::memcmp(b + 8, uuid.data(), 16) != 0) return Status::Corruption("record belongs to another volume");
  uint32_t n = Get32(b + 52);
  // Untrusted input: fields this version does not define must be zero, so a
  // header from a future version (or a forged one with a valid crc) is never
  // half-understood.
  uint16_t flags = Get16(b + 6);
  if (flags != 0) return Status::Corruption("unknown record flags " + std::to_string(flags));
  uint32_t z = Get32(b + 56);
  if (Get32(b + 60) != 0) return Status::Corruption("nonzero reserved bytes in the record header (offset 60)");
  if ((version == kVersion) != (z == 0)) return Status::Corruption("record version does not match its zero entries");
  if (n > kMaxRecordBlocks || z > kMaxRecordEntries || n + z == 0 || n + z > kMaxRecordEntries)
    return Status::Corruption("record block count out of range");
  const uint8_t* tail = b + kHeaderFixedSize + size_t{n + z} * kEntrySize;
  for (const uint8_t* p = tail; p < b + kHeaderCrcOffset; p++) {
    if (*p != 0) {
      return Status::Corruption("nonzero reserved bytes after the record's entries (offset " +
                                std::to_string(p - b) + ")");
    }
  }
  h->uuid = uuid;
  h->record_seq = Get64(b + 24);
  h->segment_seq = Get64(b + 32);
  h->durable_seq = Get64(b + 40);
  h->prev_crc = Get32(b + 48);
  h->nblocks = n;
  h->nzero = z;
  h->header_crc = stored;
  const uint8_t* e = b + kHeaderFixedSize;
  for (uint32_t i = 0; i < n; i++, e += kEntrySize) {
    uint64_t raw = Get64(e);
    if ((raw >> 56) != static_cast<uint64_t>(EntryKind::kData)) return Status::Corruption("unknown record entry kind");
    h->entries[i].lba = raw & kLbaMask;
    h->entries[i].block_crc = Get32(e + 8);
  }
  for (uint32_t i = 0; i < z; i++, e += kEntrySize) {
    uint64_t raw = Get64(e);
    if ((raw >> 56) != static_cast<uint64_t>(EntryKind::kZero)) return Status::Corruption("unknown record entry kind");
    h->zeros[i].first = raw & kLbaMask;
    h->zeros[i].count = Get32(e + 8);
    if (h->zeros[i].count == 0 || h->zeros[i].first + h->zeros[i].count > kMaxImageBlocks)
      return Status::Corruption("record zero range out of range");
  }
  return Status::OK();
}

std::string UuidToString(const Uuid& u) {
  char s[37];
  std::snprintf(s, sizeof s, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", u[0], u[1], u[2],
                u[3], u[4], u[5], u[6], u[7], u[8], u[9], u[10], u[11], u[12], u[13], u[14], u[15]);
  return s;
}

bool UuidFromString(const std::string& s, Uuid* u) {
  if (s.size() != 36) return false;
  size_t j = 0;
  for (size_t i = 0; i < 36;) {
    if (i == 8 || i == 13 || i == 18 || i == 23) {
      if (s[i] != '-') return false;
      i++;
      continue;
    }
    auto hex = [](char c) -> int {
      if (c >= '0' && c <= '9') return c - '0';
      if (c >= 'a' && c <= 'f') return c - 'a' + 10;
      if (c >= 'A' && c <= 'F') return c - 'A' + 10;
      return -1;
    };
    int hi = hex(s[i]), lo = hex(s[i + 1]);
    if (hi < 0 || lo < 0) return false;
    (*u)[j++] = static_cast<uint8_t>(hi << 4 | lo);
    i += 2;
  }
  return j == 16;
}

Uuid NewRandomUuid() {
  Uuid u{};
  int fd = ::open("/dev/urandom", O_RDONLY | O_CLOEXEC);
  bool ok = fd >= 0 && ::read(fd, u.data(), u.size()) == static_cast<ssize_t>(u.size());
  if (fd >= 0) ::close(fd);
  if (!ok) {
    std::random_device rd;
    for (auto& b : u) b = static_cast<uint8_t>(rd());
  }
  u[6] = (u[6] & 0x0f) | 0x40;  // version 4
  u[8] = (u[8] & 0x3f) | 0x80;  // variant 1
  return u;
}

}  // namespace boostvol::log
