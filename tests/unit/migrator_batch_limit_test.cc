// BatchByteLimit: how many bytes of whole segments a migration batch takes.
#include <gtest/gtest.h>

#include "migrate/migrator.h"

namespace boostvol {
namespace {

constexpr uint64_t kSeg = 4 << 20;

BatchLimitInputs Waiting(double segments_per_s) {
  BatchLimitInputs in;
  in.max_batch_bytes = 64 << 20;
  in.segment_bytes = kSeg;
  in.waiting_for_space = true;
  in.under_pressure = true;
  in.free_segments = 0;
  in.segments_per_s = segments_per_s;
  return in;
}

// Writers waiting for log space: one segment until the home's pace is known,
// and while it is slow (sparse random blocks: a larger batch is not faster
// per block, and writers would wait longer for it).
TEST(MigratorBatchLimitTest, WaitingWritersGetOneSegmentWhileTheHomeIsSlow) {
  EXPECT_EQ(BatchByteLimit(Waiting(0)), kSeg);
  EXPECT_EQ(BatchByteLimit(Waiting(0.3)), kSeg);
  EXPECT_EQ(BatchByteLimit(Waiting(3.9)), kSeg);
}

// A dense backlog (a sequential stream) moves many segments a second: the
// batch grows to about half a second of that pace, so that its fixed syncs
// (journal, image, stamp) are not paid per segment. (Found by
// bench/slowdisk-dd.sh: one-segment batches made a dd through boostvol no
// faster than the slow disk alone once the cache was full.)
TEST(MigratorBatchLimitTest, WaitingWritersOfADenseBacklogGetHalfASecondOfPace) {
  EXPECT_EQ(BatchByteLimit(Waiting(4)), 2 * kSeg);
  EXPECT_EQ(BatchByteLimit(Waiting(20)), 10 * kSeg);
  // never more than max_batch_bytes
  EXPECT_EQ(BatchByteLimit(Waiting(1000)), uint64_t{64} << 20);
  BatchLimitInputs small = Waiting(1000);
  small.max_batch_bytes = 4096;  // below a segment: the caller still takes one whole segment
  EXPECT_EQ(BatchByteLimit(small), 4096u);
}

// A full log with no writer waiting at the instant the batch is chosen (a
// stream's write just got its space): half the free space would be one
// segment again; the batch is at least what a waiting writer would get.
TEST(MigratorBatchLimitTest, AFullLogGetsAtLeastTheWaitingBatch) {
  BatchLimitInputs in = Waiting(20);
  in.waiting_for_space = false;
  in.free_segments = 0;
  EXPECT_EQ(BatchByteLimit(in), 10 * kSeg);
  in.free_segments = 2;
  EXPECT_EQ(BatchByteLimit(in), 10 * kSeg);
  in.segments_per_s = 1;  // a slow home: one segment, as before
  EXPECT_EQ(BatchByteLimit(in), kSeg);
}

TEST(MigratorBatchLimitTest, PressureDrainAndCalm) {
  BatchLimitInputs in = Waiting(1);
  in.waiting_for_space = false;
  in.free_segments = 100;
  EXPECT_EQ(BatchByteLimit(in), 2 * kSeg);  // under pressure: about 2 s of pace
  in.segments_per_s = 0;
  EXPECT_EQ(BatchByteLimit(in), kSeg);  // pace unknown: one segment
  in.under_pressure = false;
  EXPECT_EQ(BatchByteLimit(in), uint64_t{64} << 20);  // calm: max_batch_bytes
  in.free_segments = 4;
  EXPECT_EQ(BatchByteLimit(in), 2 * kSeg);  // at most half the free log
  in.draining = true;
  EXPECT_EQ(BatchByteLimit(in), uint64_t{1} << 30);  // a drain of a streaming home: 16x, up to 1 GiB
  in.streams_batches = false;
  EXPECT_EQ(BatchByteLimit(in), uint64_t{256} << 20);  // 4x for a home that holds batches in memory
}

}  // namespace
}  // namespace boostvol
