#include "index/zero_map.h"

namespace boostvol {

void ZeroMap::Erase(uint64_t first, uint64_t end) {
  if (first >= end) return;
  auto it = map_.lower_bound(first);
  if (it != map_.begin()) {
    auto prev = std::prev(it);  // starts before `first`
    if (prev->second.end > first) {
      // prev straddles `first`: cut it, keep a right part if it passes `end`.
      Val v = prev->second;
      if (v.end > end) {
        map_.emplace(end, Val{v.end, v.tag});
        blocks_ -= end - first;
        prev->second.end = first;
        return;
      }
      blocks_ -= v.end - first;
      prev->second.end = first;
    }
  }
  it = map_.lower_bound(first);
  while (it != map_.end() && it->first < end) {
    if (it->second.end <= end) {
      blocks_ -= it->second.end - it->first;
      it = map_.erase(it);
    } else {
      Val v = it->second;
      blocks_ -= end - it->first;
      map_.erase(it);
      map_.emplace(end, v);
      break;
    }
  }
}

void ZeroMap::Add(uint64_t first, uint64_t end, uint64_t tag) {
  if (first >= end) return;
  // Fast path: extends the range ending exactly at `first` with the same tag.
  auto it = map_.lower_bound(first);
  bool overlaps_next = it != map_.end() && it->first < end;
  if (!overlaps_next && it != map_.begin()) {
    auto prev = std::prev(it);
    if (prev->second.end == first && prev->second.tag == tag) {
      prev->second.end = end;
      blocks_ += end - first;
      return;
    }
  }
  Erase(first, end);
  map_.emplace(first, Val{end, tag});
  blocks_ += end - first;
}

bool ZeroMap::Covers(uint64_t lba, uint64_t* tag) const {
  auto it = map_.upper_bound(lba);
  if (it == map_.begin()) return false;
  --it;
  if (lba >= it->second.end) return false;
  if (tag) *tag = it->second.tag;
  return true;
}

uint64_t ZeroMap::CoveredRun(uint64_t lba, uint64_t limit) const {
  auto it = map_.upper_bound(lba);
  if (it == map_.begin()) return 0;
  --it;
  if (lba >= it->second.end) return 0;
  uint64_t run = it->second.end - lba;
  return run < limit ? run : limit;
}

void ZeroMap::RemoveTaggedBefore(uint64_t tag) {
  for (auto it = map_.begin(); it != map_.end();) {
    if (it->second.tag < tag) {
      blocks_ -= it->second.end - it->first;
      it = map_.erase(it);
    } else {
      ++it;
    }
  }
}

std::vector<ZeroMap::Range> ZeroMap::All() const {
  std::vector<Range> out;
  out.reserve(map_.size());
  for (const auto& [first, v] : map_) out.push_back(Range{first, v.end, v.tag});
  return out;
}

}  // namespace boostvol
