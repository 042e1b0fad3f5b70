#include "index/block_index.h"

#include <cassert>

namespace boostvol {

BlockIndex::BlockIndex(uint64_t max_entries) {
  // Load <= 0.8 at max_entries; always at least one empty slot.
  cap_ = max_entries + max_entries / 4 + 2;
  slots_.reset(new Slot[cap_]);
  Clear();
}

void BlockIndex::Clear() {
  for (size_t i = 0; i < cap_; i++) slots_[i] = Slot{kEmpty, 0, 0};
  size_ = 0;
}

bool BlockIndex::Lookup(uint32_t lba, IndexValue* value) const {
  for (size_t i = Home(lba);; i = Next(i)) {
    const Slot& s = slots_[i];
    if (s.lba == lba) {
      *value = IndexValue{s.pos, s.crc};
      return true;
    }
    if (s.lba == kEmpty) return false;
  }
}

void BlockIndex::Put(uint32_t lba, IndexValue value) {
  assert(lba != kEmpty);
  for (size_t i = Home(lba);; i = Next(i)) {
    Slot& s = slots_[i];
    if (s.lba == lba) {
      s.pos = value.pos;
      s.crc = value.crc;
      return;
    }
    if (s.lba == kEmpty) {
      assert(size_ + 1 < cap_);  // capacity was sized for the log; never full
      s = Slot{lba, value.pos, value.crc};
      size_++;
      return;
    }
  }
}

bool BlockIndex::RemoveIf(uint32_t lba, IndexValue expected) {
  size_t i = Home(lba);
  for (;; i = Next(i)) {
    if (slots_[i].lba == lba) break;
    if (slots_[i].lba == kEmpty) return false;
  }
  if (slots_[i].pos != expected.pos || slots_[i].crc != expected.crc) return false;
  // Backward-shift deletion: pull later members of the probe run into the gap
  // so that lookups never need tombstones.
  size_t gap = i;
  for (size_t j = Next(gap);; j = Next(j)) {
    if (slots_[j].lba == kEmpty) break;
    size_t home = Home(slots_[j].lba);
    // Move j into gap if its home is not in the cyclic range (gap, j].
    bool home_in_range = gap <= j ? (home > gap && home <= j) : (home > gap || home <= j);
    if (!home_in_range) {
      slots_[gap] = slots_[j];
      gap = j;
    }
  }
  slots_[gap] = Slot{kEmpty, 0, 0};
  size_--;
  return true;
}

uint64_t BlockIndex::RemoveRange(uint64_t first, uint64_t end) {
  if (first >= end || size_ == 0) return 0;
  uint64_t removed = 0;
  if (end - first <= cap_) {
    for (uint64_t lba = first; lba < end && size_ > 0; lba++) {
      IndexValue v;
      if (Lookup(static_cast<uint32_t>(lba), &v) && RemoveIf(static_cast<uint32_t>(lba), v)) removed++;
    }
    return removed;
  }
  // A range larger than the table: one pass over the slots. Backward-shift
  // deletion may move a later entry into slot i, so i is examined again.
  for (size_t i = 0; i < cap_;) {
    uint32_t lba = slots_[i].lba;
    if (lba != kEmpty && lba >= first && lba < end) {
      RemoveIf(lba, IndexValue{slots_[i].pos, slots_[i].crc});
      removed++;
      continue;
    }
    i++;
  }
  return removed;
}

}  // namespace boostvol
