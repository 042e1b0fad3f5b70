// Home: the image's home copy on slow storage, the seam between the migrator
// and wherever home lives (a directory today; an RBD image later). Nothing
// outside src/home knows which kind of home it has.
//
// Invariant (DESIGN.md 2.7): at every moment the home alone recovers to the
// image as of some prefix of the log. ApplyBatch is the only writer and makes
// each batch crash-atomic (redo journal) before writing in place.
//
// The home's own record of progress is its watermark: every log record with
// seq < watermark().record_seq is in the home copy. It is durable with the
// data (stamp beside the home copy) and is authoritative over meta.db's copy.
//
// Thread-safety: Read() may be called concurrently from many threads and
// concurrently with ApplyBatch(); ApplyBatch() is called by one thread at a
// time (the migrator).
#pragma once

#include <algorithm>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "boostvol/status.h"
#include "log/record.h"
#include "meta/meta_store.h"

namespace boostvol {
class Env;
}

namespace boostvol::home {

// One run of contiguous blocks to write home. Offsets and lengths are
// multiples of 4096; a batch's extents are sorted and do not overlap.
struct Extent {
  uint64_t offset = 0;
  uint32_t length = 0;
  const uint8_t* data = nullptr;  // owned by the caller for the call's duration
};

// A run of blocks that must read as zeros (TRIM, write-zeroes, all-zero
// blocks logged as zero ranges). A home deallocates it where it can (a hole
// in SLOW/image, a discard in RBD) and writes zeros where it cannot.
struct ZeroExtent {
  uint64_t offset = 0;  // multiples of 4096
  uint64_t length = 0;
};

struct Batch {
  // After ApplyBatch returns OK the home holds every record < end.record_seq.
  meta::Watermark end;
  // Applied first, then `extents` (a data block written after a zero range
  // in the batch's log range is in `extents`; one written before it is not).
  std::vector<ZeroExtent> zeros;  // sorted, disjoint
  std::vector<Extent> extents;
  // Optional: the parts of `extents` whose bytes change. The migrator fills
  // the short gaps between dirty blocks with the home's current contents to
  // write one long run instead of many short ones (a slow disk pays per
  // request); it then lists here the dirty runs only, and the redo journal
  // holds just these: a gap block rewritten with the bytes it already holds
  // needs no redo (a crash mid-write leaves each sector old or new, and both
  // are the same). Empty: every byte of `extents` changes. Sorted, disjoint,
  // each inside one extent of `extents`, its data the same bytes.
  std::vector<Extent> journal_extents;
  // Optional, for homes whose streams_batches() is true: the source of the
  // bytes of every extent (and journal extent) whose data is nullptr. Reads
  // the n bytes the batch writes at image offset `offset` (a block-aligned
  // range inside one extent) into dst. The caller then need not hold a whole
  // batch in memory: the home reads it through a bounded buffer, once for the
  // journal and once for the in-place writes. A failure fails ApplyBatch,
  // which the caller retries whole.
  std::function<Status(uint64_t offset, uint8_t* dst, size_t n)> source;
  bool empty() const { return zeros.empty() && extents.empty(); }
};

// What Open found.
struct HomeOpenReport {
  meta::Watermark watermark;
  bool journal_replayed = false;    // a batch interrupted by a crash was finished
  bool changed_behind_back = false; // image's size/mtime/ctime differ from the stamp
  std::string change_detail;        // what differed, for the message
};

class Home {
 public:
  virtual ~Home() = default;
  virtual uint64_t size() const = 0;
  virtual meta::Watermark watermark() const = 0;
  // Reads n bytes at offset (block aligned). Unwritten parts read as zeros.
  virtual Status Read(uint64_t offset, void* buf, size_t n) = 0;
  // Crash-atomic, durable on OK. On error nothing is promised about the home
  // copy beyond the prefix rule; the caller retries the whole batch (never
  // just the sync: see DESIGN.md 7, fsyncgate).
  virtual Status ApplyBatch(const Batch& batch) = 0;
  // Whether ApplyBatch takes extents without data, read from Batch::source.
  virtual bool streams_batches() const { return false; }
  // Accepts the current contents as this volume's (after the caller decided a
  // change behind its back is harmless: no dirty blocks). Rewrites the stamp.
  virtual Status Restamp() = 0;
  // "dir:/path/to/SLOW"
  virtual std::string Describe() const = 0;

  // Write-through, for a volume whose log has failed (DESIGN.md 4): writes
  // straight into the home copy, bypassing batches. Only used after the log
  // was drained and the watermark moved past every record, so no older log
  // copy can ever overwrite what is written here. SyncThrough makes every
  // WriteThrough before it durable and restamps (the change is ours).
  virtual Status WriteThrough(uint64_t offset, const void* data, size_t n) {
    return Status::Unsupported("this home has no write-through");
  }
  virtual Status SyncThrough() { return Status::Unsupported("this home has no write-through"); }

  // Home-direct write (write modes, sequential bypass; docs/policies.md):
  // writes n bytes (block aligned) in place and makes them durable before
  // returning OK. The caller guarantees that no log copy of these blocks can
  // ever be applied over them (DESIGN rule (a) of docs/policies.md) and keeps
  // the migrator out meanwhile. Before the first such write after a stamp,
  // the stamp gets the intent mark (docs/home_format.md), so a stop before
  // the next stamp is not taken for a change behind the cache's back.
  // Busy/Unsupported (or any error): nothing was acknowledged; the caller
  // logs the write instead.
  virtual Status WriteDirect(uint64_t offset, const void* data, size_t n) {
    return Status::Unsupported("this home takes no home-direct writes");
  }
  virtual bool direct_mark_for_test() const { return false; }
  // Write-through of a zero range (same rules as WriteThrough). The default
  // writes zeros; homes that can deallocate do.
  virtual Status ZeroThrough(uint64_t offset, uint64_t n) {
    std::vector<uint8_t> zeros(std::min<uint64_t>(n, 1 << 20), 0);
    for (uint64_t done = 0; done < n;) {
      size_t len = static_cast<size_t>(std::min<uint64_t>(zeros.size(), n - done));
      Status s = WriteThrough(offset + done, zeros.data(), len);
      if (!s.ok()) return s;
      done += len;
    }
    return Status::OK();
  }
};

// Files of a directory home (all 0600, opened without following symlinks):
//   SLOW/image            the home copy, a sparse file of the image's size
//   SLOW/boostvol-home    the stamp: uuid, size, watermark, image mtime/ctime, crc
//   SLOW/boostvol-journal the redo journal of the batch being applied
// Format: docs/home_format.md.
Status CreateDirectoryHome(Env* env, const std::string& slow_path, const log::Uuid& uuid, uint64_t image_size);

// Opens a directory home of volume `uuid`: refuses (InvalidArgument, with a
// message naming both uuids) a home of another volume, a size mismatch, a
// missing stamp or image; replays a complete journal; compares the image's
// size/mtime/ctime with the stamp and reports a change in `report`.
Status OpenDirectoryHome(Env* env, const std::string& slow_path, const log::Uuid& uuid, uint64_t image_size,
                         bool use_journal, std::unique_ptr<Home>* out, HomeOpenReport* report);

}  // namespace boostvol::home
