#include "engine/segment_extents.h"

#include <algorithm>
#include <memory>
#include <string>

#include "log/log_format.h"

namespace boostvol {

std::vector<meta::SegmentExtent> ExtentsOfBlocks(std::vector<uint64_t> blocks, size_t max_extents) {
  std::vector<meta::SegmentExtent> runs;
  std::sort(blocks.begin(), blocks.end());
  blocks.erase(std::unique(blocks.begin(), blocks.end()), blocks.end());
  for (uint64_t b : blocks) {
    if (!runs.empty() && runs.back().first_block + runs.back().blocks == b) {
      runs.back().blocks++;
      runs.back().dirty_blocks++;
    } else {
      runs.push_back(meta::SegmentExtent{b, 1, 1});
    }
  }
  if (max_extents == 0) max_extents = 1;
  if (runs.size() <= max_extents) return runs;
  // Merge across every gap no wider than the (runs - max_extents)-th smallest.
  std::vector<uint64_t> gaps;
  gaps.reserve(runs.size() - 1);
  for (size_t i = 1; i < runs.size(); i++) gaps.push_back(runs[i].first_block - (runs[i - 1].first_block + runs[i - 1].blocks));
  std::vector<uint64_t> sorted = gaps;
  const size_t k = runs.size() - max_extents;  // merges needed
  std::nth_element(sorted.begin(), sorted.begin() + (k - 1), sorted.end());
  const uint64_t limit = sorted[k - 1];
  std::vector<meta::SegmentExtent> merged;
  merged.push_back(runs[0]);
  for (size_t i = 1; i < runs.size(); i++) {
    if (gaps[i - 1] <= limit) {
      merged.back().blocks = static_cast<uint32_t>(runs[i].first_block + runs[i].blocks - merged.back().first_block);
      merged.back().dirty_blocks += runs[i].dirty_blocks;
    } else {
      merged.push_back(runs[i]);
    }
  }
  return merged;
}

Status ReadSegmentExtents(File* log, const log::Uuid& uuid, uint32_t segment_blocks, uint32_t segment_count,
                          const meta::SealedSegment& seg, size_t max_extents,
                          std::vector<meta::SegmentExtent>* out) {
  out->clear();
  const uint64_t slot_start = (seg.segment_seq % segment_count) * uint64_t{segment_blocks};
  auto block = std::make_unique<uint8_t[]>(log::kBlockSize);
  auto hdr = std::make_unique<log::RecordHeader>();
  std::vector<uint64_t> blocks;
  uint32_t used = 0;
  for (uint64_t seq = seg.first_record; seq <= seg.last_record; seq++) {
    const std::string where = "segment " + std::to_string(seg.segment_seq) + ", record " + std::to_string(seq);
    if (used >= segment_blocks) return Status::Corruption(where + ": past the end of the segment");
    BV_RETURN_IF_ERROR(log->ReadAt((slot_start + used) * log::kBlockSize, block.get(), log::kBlockSize));
    Status s = log::DecodeHeader(block.get(), uuid, hdr.get());
    if (!s.ok()) return Status::Corruption(where + ": " + s.message());
    if (hdr->record_seq != seq || hdr->segment_seq != seg.segment_seq) {
      return Status::Corruption(where + ": the slot holds record " + std::to_string(hdr->record_seq) + " of segment " +
                                std::to_string(hdr->segment_seq) + " (reused)");
    }
    for (uint32_t i = 0; i < hdr->nblocks; i++) blocks.push_back(hdr->entries[i].lba & log::kLbaMask);
    used += 1 + hdr->nblocks;
  }
  *out = ExtentsOfBlocks(std::move(blocks), max_extents);
  return Status::OK();
}

}  // namespace boostvol
