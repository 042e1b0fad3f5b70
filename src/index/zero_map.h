// ZeroMap: disjoint ranges of image blocks that read as zeros, each tagged
// with a number (the log segment that holds the zero range, or a position in
// a migration batch). Adding a range overrides whatever it overlaps (the new
// tag wins there): callers add in log order, so tags only grow.
//
// Used twice: VolumeImpl's "pending zeros" (zero ranges logged but not yet
// applied at home; a range may cover a TiB, so it cannot live in BlockIndex,
// which has one slot per log block), and the migrator's view of one batch.
//
// Cost: one std::map node (~64 bytes) per disjoint range. A range that
// extends the one just before it with the same tag is merged in place (no
// allocation: sequential zero-block writes and a TRIM of many extents in
// one segment stay one node).
//
// Thread-compatible: the caller guards it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <vector>

namespace boostvol {

class ZeroMap {
 public:
  struct Range {
    uint64_t first = 0, end = 0;  // [first, end)
    uint64_t tag = 0;
  };

  // Marks [first, end) as zeros with `tag`, replacing overlapped parts.
  void Add(uint64_t first, uint64_t end, uint64_t tag);
  // True if `lba` lies in a range; *tag (if not null) gets its tag.
  bool Covers(uint64_t lba, uint64_t* tag = nullptr) const;
  // How many blocks from `lba` on (at most `limit`) are covered; 0 if `lba` is not.
  uint64_t CoveredRun(uint64_t lba, uint64_t limit) const;
  // Removes every range whose tag is < `tag` (their segments are home).
  void RemoveTaggedBefore(uint64_t tag);
  // Removes [first, end) from every range (a write-through wrote there).
  void Erase(uint64_t first, uint64_t end);
  void Clear() { map_.clear(); blocks_ = 0; }
  bool empty() const { return map_.empty(); }
  size_t ranges() const { return map_.size(); }
  uint64_t blocks() const { return blocks_; }  // blocks covered
  std::vector<Range> All() const;

 private:
  struct Val {
    uint64_t end;
    uint64_t tag;
  };
  std::map<uint64_t, Val> map_;  // first -> (end, tag); disjoint
  uint64_t blocks_ = 0;
};

}  // namespace boostvol
