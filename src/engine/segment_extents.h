// The image blocks a sealed segment holds, as runs, read back from the
// segment's record headers in the log. They go to meta.db with the segment's
// sealed row (table segment_extents) so that `sqlite3 FAST/meta.db 'select *
// from dirty_extents'` can show what is not home yet. Read in the background
// (Housekeeping), one header block per record: never on the write path.
//
// Thread-safe (pure function over a File that supports concurrent ReadAt).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "boostvol/status.h"
#include "log/record.h"
#include "meta/meta_store.h"
#include "util/env.h"

namespace boostvol {

// Reads the headers of records seg.first_record..seg.last_record from the
// segment's slot and returns the distinct image blocks they name as sorted,
// non-overlapping runs. When there would be more than max_extents runs, the
// runs separated by the smallest gaps are merged (blocks then exceeds
// dirty_blocks) until at most max_extents remain. Corruption if a header
// does not check or is not the record expected there (the slot was reused:
// the segment went home meanwhile).
Status ReadSegmentExtents(File* log, const log::Uuid& uuid, uint32_t segment_blocks, uint32_t segment_count,
                          const meta::SealedSegment& seg, size_t max_extents,
                          std::vector<meta::SegmentExtent>* out);

// The runs of a list of image blocks (any order, repeats allowed), merged
// down to at most max_extents (>= 1) as above. Exposed for tests.
std::vector<meta::SegmentExtent> ExtentsOfBlocks(std::vector<uint64_t> blocks, size_t max_extents);

}  // namespace boostvol
