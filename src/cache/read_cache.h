// ReadCache: a clean read cache on FAST for blocks that live at home
// (issue 7, "read caching"; docs/policies.md "Read caching").
//
// A file FAST/readcache of fixed slots of one block each, preallocated,
// opened through the Env seam (0600, no symlinks followed). In RAM, per slot:
// the image block it holds, the block's checksum (log::BlockCrc, seeded with
// the block address), a fill generation and a CLOCK reference bit (13 bytes);
// and an open-addressing table lba -> slot (4-byte entries, load <= 2/3).
// Together ~19-25 bytes per cached block (MemoryBytes()). Nothing is
// persisted: the cache starts empty at every open, so a crash (or a home
// changed behind our back) can never serve a slot from before.
//
// The volume reads, in order: the log index (dirty, newest), pending zero
// ranges, this cache, home (VolumeImpl::ReadBlocks).
//
// Invariants
//  1. A slot in the table holds exactly the home contents of its block as of
//     the moment it was promoted, and nothing has changed the block since:
//     every path that changes a block's contents (a write or zero range
//     entering the index, a write-through or bypass write at home) calls
//     Invalidate() for it, which drops the slot.
//  2. A promotion that races with such a change is discarded. The reader
//     takes a Ticket for the block under the same lock under which the
//     index is changed (VolumeImpl::index_mu_, shared) when it finds the
//     block absent from the index; Invalidate() (called with that lock held
//     exclusively, after the change) bumps the ticket's bucket. Promote()
//     inserts only if the bucket still equals the ticket, checked under mu_
//     after the slot has been written; an Invalidate that comes later drops
//     the slot (it takes mu_ whenever a slot may exist or a promotion is in
//     flight: `occupancy_`, a Dekker pair with the bucket, both seq_cst).
//  3. Never trust the disk: every hit is checked against the slot's checksum;
//     a mismatch or a read error drops the slot and the caller reads home.
//     A slot refilled while it was being read (generation changed) is a miss.
//  4. A FAST error on promotion only skips the promotion (logged once per
//     outage); it never fails the read.
//  (A promotion still writing its slot when Configure resizes the cache may
//  land in a slot refilled since, or past the new end of the file: the
//  generation check discards it, and a slot it overwrote fails its checksum
//  on the next hit and is dropped; never wrong data.)
//
// Eviction: CLOCK (second chance) by default: a hit sets the slot's
// reference bit; the hand clears set bits and evicts the first clear one.
// FIFO (the hand ignores the bits) exists for comparison (bench/read-cache.sh).
//
// Promotion policy: off (nothing is promoted; the cache is empty and its
// file truncated), always (every block read from home), nhit (a block is
// promoted at its N-th read from home within a window of the last
// kNhitWindow home reads, counted in a bounded 4-way set-associative table
// of recent misses, one entry per slot and at least kNhitEntries, like
// OpenCAS's nhit; 8 bytes per entry, only allocated for nhit).
//
// Thread-safety: every method is thread-safe. mu_ guards the slot metadata
// and tables; file I/O is done outside it. Lock order: VolumeImpl::index_mu_
// -> ReadCache::mu_ (Invalidate is called with index_mu_ held).
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "boostvol/status.h"
#include "util/env.h"
#include "util/repeated_error.h"
#include "util/thread_annotations.h"

namespace boostvol {

enum class PromotePolicy { kOff, kAlways, kNhit };
enum class EvictionOrder { kClock, kFifo };

const char* PromotePolicyName(PromotePolicy p);
bool ParsePromotePolicy(const std::string& s, PromotePolicy* out);

class ReadCache {
 public:
  static constexpr uint32_t kNhitEntries = 8192;  // at least; as many as slots
  static constexpr uint64_t kNhitWindow = 65536;  // home reads
  static constexpr uint32_t kBuckets = 4096;      // invalidation buckets

  struct Stats {
    uint64_t hits = 0;          // blocks served from the cache
    uint64_t misses = 0;        // blocks looked up and not found (read home)
    uint64_t promotions = 0;    // blocks inserted
    uint64_t evictions = 0;     // valid blocks pushed out by CLOCK/FIFO
    uint64_t invalidations = 0; // slots dropped because the block changed
    uint64_t discarded = 0;     // promotions dropped: the block changed meanwhile
    uint64_t errors = 0;        // FAST errors and checksum mismatches (slot dropped)
    uint64_t used_blocks = 0;
    uint64_t capacity_blocks = 0;
  };

  // `file` is FAST/readcache (may be null until AttachFile: the cache stays off).
  explicit ReadCache(std::unique_ptr<File> file, EvictionOrder order = EvictionOrder::kClock);

  // Gives the cache its file when it was made without one (the volume opens
  // FAST/readcache only once read caching is wanted). Ignored if it has one.
  void AttachFile(std::unique_ptr<File> file);
  bool has_file() BV_EXCLUDES(mu_) {
    MutexLock l(&mu_);
    return file_ != nullptr;
  }

  // Sets the size (blocks; 0 disables) and the policy. A change of size
  // drops every slot and resizes the file (preallocated); policy off frees
  // the file's space. A FAST error sizing the file disables the cache and is
  // returned. Safe while reads and writes run.
  Status Configure(uint32_t capacity_blocks, PromotePolicy policy, uint32_t promote_hits);

  // The invalidation ticket of `lba`. Call with the lock that orders index
  // changes held (shared), at the moment the block was found not dirty.
  uint64_t TicketFor(uint64_t lba) const {
    return buckets_[Bucket(lba)].load(std::memory_order_seq_cst);
  }

  // A hit: the block's verified contents in out, true. Otherwise false (read
  // home), with *would_block set when a NoWaitScope stopped the read of a
  // slot the cache holds (then nothing was counted; read it again where the
  // thread may wait).
  bool Read(uint64_t lba, uint8_t* out, bool* would_block = nullptr);

  // After `data` was read from home for `lba` (ticket taken before the home
  // read): counts the miss for the policy and promotes when it is due and
  // nothing changed the block since the ticket.
  void OnHomeRead(uint64_t lba, const uint8_t* data, uint64_t ticket);

  // The blocks [first, end) changed (or are about to read differently):
  // drops their slots and discards promotions in flight. Call with the
  // index lock held exclusively, after the change.
  void Invalidate(uint64_t first, uint64_t end);

  Stats GetStats();
  size_t MemoryBytes();
  PromotePolicy policy() const { return policy_.load(std::memory_order_relaxed); }

  // Tests: called inside Promote after the slot is written and before the
  // final validation (to widen the race with writes), and a switch that
  // skips that validation (to show the race tests catch its absence).
  void SetPromoteHookForTest(std::function<void(uint64_t lba)> hook) { promote_hook_ = std::move(hook); }
  void SkipValidationForTest(bool skip) { skip_validation_ = skip; }

 private:
  static constexpr uint32_t kFree = 0xFFFFFFFFu;
  static constexpr uint32_t kFilling = 0xFFFFFFFEu;
  struct Slot {
    uint32_t lba = kFree;  // or kFree / kFilling
    uint32_t crc = 0;
    uint32_t gen = 0;      // bumped at every fill
  };
  // nhit: a 4-way set-associative table of recent misses, one entry per
  // slot (at least kNhitEntries); a full set replaces its oldest entry.
  struct NhitEntry {
    uint32_t lba_plus1 = 0;
    uint32_t since_count = 0;  // (home-read counter at the first counted read, mod 2^24) << 8 | count
  };
  static constexpr uint32_t kNhitWays = 4;

  static uint32_t Bucket(uint64_t lba) { return static_cast<uint32_t>((lba * 0x9E3779B97F4A7C15ull) >> 52) % kBuckets; }
  uint32_t TableHome(uint32_t lba) const BV_REQUIRES(mu_);
  int64_t Find(uint32_t lba) const BV_REQUIRES(mu_);  // slot, or -1
  void TableInsert(uint32_t lba, uint32_t slot) BV_REQUIRES(mu_);
  void TableErase(uint32_t lba) BV_REQUIRES(mu_);
  void DropSlotLocked(uint32_t slot) BV_REQUIRES(mu_);  // valid slot -> free
  int64_t PickVictimLocked() BV_REQUIRES(mu_);
  bool NhitDue(uint64_t lba);
  void NoteError(const char* what, uint64_t lba, const Status& s);

  // Set once (constructor or AttachFile, while no slot exists); read without
  // mu_ only by holders of a slot.
  std::unique_ptr<File> file_;
  const EvictionOrder order_;
  std::atomic<PromotePolicy> policy_{PromotePolicy::kOff};
  std::atomic<uint32_t> promote_hits_{2};
  std::unique_ptr<std::atomic<uint64_t>[]> buckets_;
  // Valid slots + promotions in flight (see invariant 2).
  std::atomic<int64_t> occupancy_{0};

  Mutex mu_;
  std::vector<Slot> slots_ BV_GUARDED_BY(mu_);
  std::vector<uint8_t> ref_ BV_GUARDED_BY(mu_);
  std::vector<uint32_t> table_ BV_GUARDED_BY(mu_);  // slot+1, 0 = empty
  uint32_t table_mask_ BV_GUARDED_BY(mu_) = 0;
  uint32_t hand_ BV_GUARDED_BY(mu_) = 0;
  uint32_t gen_counter_ BV_GUARDED_BY(mu_) = 0;
  uint64_t used_ BV_GUARDED_BY(mu_) = 0;
  bool configured_ BV_GUARDED_BY(mu_) = false;  // the file was sized at least once

  Mutex nhit_mu_;
  std::vector<NhitEntry> nhit_ BV_GUARDED_BY(nhit_mu_);
  std::atomic<uint32_t> nhit_size_{kNhitEntries};  // set by Configure
  uint64_t home_reads_ BV_GUARDED_BY(nhit_mu_) = 0;

  std::atomic<uint64_t> hits_{0}, misses_{0}, promotions_{0}, evictions_{0}, invalidations_{0}, discarded_{0},
      errors_{0};
  RepeatedError fast_errors_;
  std::function<void(uint64_t)> promote_hook_;
  bool skip_validation_ = false;
};

}  // namespace boostvol
