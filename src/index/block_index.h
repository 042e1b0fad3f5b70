// BlockIndex: image block -> the newest copy of that block in the log.
//
// An open-addressing hash table (linear probing, backward-shift deletion) of
// fixed capacity, sized at construction for the most entries the log can
// hold (one per log block), so it never grows or rehashes on the write path.
// Each slot is 12 bytes (u32 key, u32 log position, u32 block crc) and the
// capacity is 1.25x the log's blocks (not rounded to a power of two: slots
// are addressed by multiply-shift), so the load never passes 0.8 and the
// table costs 15 bytes per block of log: 15 bytes per cached block when the
// cache is full (bench/ measures the daemon's RSS per cached block).
//
// A block absent from the index lives only at home.
//
// Thread-compatible: the caller (VolumeImpl) guards it with index_mu_.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>

namespace boostvol {

struct IndexValue {
  uint32_t pos = 0;  // absolute block number in FAST/log
  uint32_t crc = 0;  // block_crc of that copy
  bool operator==(const IndexValue&) const = default;
};

class BlockIndex {
 public:
  // max_entries: the largest number of entries ever held (the log's blocks).
  explicit BlockIndex(uint64_t max_entries);
  BlockIndex(const BlockIndex&) = delete;
  BlockIndex& operator=(const BlockIndex&) = delete;

  bool Lookup(uint32_t lba, IndexValue* value) const;
  // A hint: starts loading the slot where the probe for `lba` begins (the
  // table is larger than the CPU caches; a miss there costs about as much as
  // a block's crc). Reads only the table's address and capacity, fixed at
  // construction, so the caller may call it without its lock.
  void Prefetch(uint32_t lba) const {
#if defined(__x86_64__)
    // Not __builtin_prefetch: GCC 12 deletes it with the loops around it (no side effects).
    asm volatile("prefetcht0 %0" : : "m"(slots_[Home(lba)]));
#else
    __builtin_prefetch(&slots_[Home(lba)]);
#endif
  }
  // Inserts or replaces.
  void Put(uint32_t lba, IndexValue value);
  // Removes the entry only if it still equals `expected` (a newer write wins).
  bool RemoveIf(uint32_t lba, IndexValue expected);
  void Clear();
  // Removes every entry with first <= lba < end; returns how many. Costs
  // O(end - first) lookups, or one pass over the table when the range is
  // larger than the table (a TRIM of a whole disk).
  uint64_t RemoveRange(uint64_t first, uint64_t end);

  size_t size() const { return size_; }
  size_t capacity() const { return cap_; }
  size_t MemoryBytes() const { return capacity() * sizeof(Slot); }

  // Calls fn(lba, value) for every entry, in no particular order.
  template <class Fn>
  void ForEach(Fn&& fn) const {
    for (size_t i = 0; i < cap_; i++)
      if (slots_[i].lba != kEmpty) fn(slots_[i].lba, IndexValue{slots_[i].pos, slots_[i].crc});
  }

  static constexpr uint32_t kEmpty = 0xFFFFFFFFu;  // never a valid block (kMaxImageBlocks)

 private:
  struct Slot {
    uint32_t lba;
    uint32_t pos;
    uint32_t crc;
  };
  static_assert(sizeof(Slot) == 12);
  size_t Home(uint32_t lba) const {
    uint64_t h = (static_cast<uint64_t>(lba) * 0x9E3779B97F4A7C15ull) >> 32;  // 32 well-mixed bits
    return static_cast<size_t>((h * cap_) >> 32);                             // in [0, cap_)
  }
  size_t Next(size_t i) const { return i + 1 == cap_ ? 0 : i + 1; }

  std::unique_ptr<Slot[]> slots_;
  size_t cap_ = 0;
  size_t size_ = 0;
};

}  // namespace boostvol
