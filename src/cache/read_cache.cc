#include "cache/read_cache.h"

#include <algorithm>
#include <cassert>
#include <spdlog/spdlog.h>

#include "log/log_format.h"
#include "log/record.h"

namespace boostvol {

using log::kBlockSize;

const char* PromotePolicyName(PromotePolicy p) {
  switch (p) {
    case PromotePolicy::kOff: return "off";
    case PromotePolicy::kAlways: return "always";
    case PromotePolicy::kNhit: return "nhit";
  }
  return "off";
}

bool ParsePromotePolicy(const std::string& s, PromotePolicy* out) {
  if (s == "off") *out = PromotePolicy::kOff;
  else if (s == "always") *out = PromotePolicy::kAlways;
  else if (s == "nhit") *out = PromotePolicy::kNhit;
  else return false;
  return true;
}

ReadCache::ReadCache(std::unique_ptr<File> file, EvictionOrder order)
    : file_(std::move(file)), order_(order), buckets_(new std::atomic<uint64_t>[kBuckets]) {
  for (uint32_t i = 0; i < kBuckets; i++) buckets_[i].store(0, std::memory_order_relaxed);
}

void ReadCache::AttachFile(std::unique_ptr<File> file) {
  MutexLock l(&mu_);
  if (file_ || !slots_.empty()) return;
  file_ = std::move(file);
  configured_ = false;
}

Status ReadCache::Configure(uint32_t capacity, PromotePolicy policy, uint32_t promote_hits) {
  if (capacity >= kFilling) return Status::InvalidArgument("read cache too large");
  if (!file_) capacity = 0;
  if (policy == PromotePolicy::kOff) capacity = 0;
  promote_hits_.store(std::max<uint32_t>(promote_hits, 1), std::memory_order_relaxed);
  {
    uint32_t n = kNhitEntries;
    while (n < capacity && n < (1u << 24)) n <<= 1;
    nhit_size_.store(n, std::memory_order_relaxed);
  }
  MutexLock l(&mu_);
  policy_.store(policy, std::memory_order_relaxed);
  if (capacity == slots_.size() && configured_) return Status::OK();
  configured_ = true;
  // Drop everything; promotions in flight fail their generation check.
  occupancy_.fetch_sub(static_cast<int64_t>(used_), std::memory_order_seq_cst);
  used_ = 0;
  hand_ = 0;
  slots_.assign(0, Slot{});
  ref_.clear();
  table_.clear();
  table_mask_ = 0;
  Status s;
  if (file_) s = file_->Truncate(0);
  if (s.ok() && capacity > 0 && file_) {
    s = file_->Truncate(uint64_t{capacity} * kBlockSize);
    if (s.ok()) s = file_->Allocate(0, uint64_t{capacity} * kBlockSize);
    if (!s.ok()) (void)file_->Truncate(0);
  }
  if (!s.ok()) {
    policy_.store(PromotePolicy::kOff, std::memory_order_relaxed);
    return Status::IoError(s.err() ? s.err() : 5, "sizing the read cache file " + (file_ ? file_->name() : "") +
                                                      " to " + std::to_string(uint64_t{capacity} * kBlockSize) +
                                                      " bytes failed: " + s.message());
  }
  slots_.assign(capacity, Slot{});
  ref_.assign(capacity, 0);
  uint32_t tsize = 1;
  while (tsize < capacity + capacity / 2 + 1) tsize <<= 1;
  table_.assign(capacity ? tsize : 0, 0);
  table_mask_ = capacity ? tsize - 1 : 0;
  return Status::OK();
}

uint32_t ReadCache::TableHome(uint32_t lba) const {
  return static_cast<uint32_t>((uint64_t{lba} * 0x9E3779B97F4A7C15ull) >> 32) & table_mask_;
}

int64_t ReadCache::Find(uint32_t lba) const {
  if (table_.empty()) return -1;
  for (uint32_t i = TableHome(lba);; i = (i + 1) & table_mask_) {
    uint32_t e = table_[i];
    if (e == 0) return -1;
    if (slots_[e - 1].lba == lba) return e - 1;
  }
}

void ReadCache::TableInsert(uint32_t lba, uint32_t slot) {
  assert(used_ < slots_.size() && Find(lba) < 0);  // the table has room: load <= 2/3
  uint32_t i = TableHome(lba);
  while (table_[i] != 0) i = (i + 1) & table_mask_;
  table_[i] = slot + 1;
}

void ReadCache::TableErase(uint32_t lba) {
  uint32_t i = TableHome(lba);
  while (table_[i] == 0 || slots_[table_[i] - 1].lba != lba) {
    if (table_[i] == 0) return;
    i = (i + 1) & table_mask_;
  }
  // Backward-shift deletion (no tombstones): move later members of the
  // cluster into the hole when their home position allows it.
  uint32_t hole = i;
  for (uint32_t j = (hole + 1) & table_mask_; table_[j] != 0; j = (j + 1) & table_mask_) {
    uint32_t h = TableHome(slots_[table_[j] - 1].lba);
    // j may move to hole iff h is not in (hole, j] cyclically.
    bool in_between = hole <= j ? (h > hole && h <= j) : (h > hole || h <= j);
    if (!in_between) {
      table_[hole] = table_[j];
      hole = j;
    }
  }
  table_[hole] = 0;
}

void ReadCache::DropSlotLocked(uint32_t slot) {
  assert(used_ > 0 && slots_[slot].lba < kFilling);
  TableErase(slots_[slot].lba);
  slots_[slot].lba = kFree;
  ref_[slot] = 0;
  used_--;
  occupancy_.fetch_sub(1, std::memory_order_seq_cst);
}

int64_t ReadCache::PickVictimLocked() {
  const uint32_t n = static_cast<uint32_t>(slots_.size());
  if (n == 0) return -1;
  for (uint32_t step = 0; step < 2 * n + 1; step++) {
    uint32_t s = hand_;
    hand_ = hand_ + 1 == n ? 0 : hand_ + 1;
    if (slots_[s].lba == kFree) return s;
    if (slots_[s].lba == kFilling) continue;
    if (order_ == EvictionOrder::kClock && ref_[s]) {
      ref_[s] = 0;
      continue;
    }
    return s;
  }
  return -1;  // every slot is being filled
}

bool ReadCache::Read(uint64_t lba, uint8_t* out, bool* would_block) {
  if (occupancy_.load(std::memory_order_relaxed) == 0 && policy() == PromotePolicy::kOff) return false;
  uint32_t slot, crc, gen;
  {
    MutexLock l(&mu_);
    if (slots_.empty()) return false;
    int64_t s = lba < kFilling ? Find(static_cast<uint32_t>(lba)) : -1;
    if (s < 0) {
      misses_.fetch_add(1, std::memory_order_relaxed);
      return false;
    }
    slot = static_cast<uint32_t>(s);
    crc = slots_[slot].crc;
    gen = slots_[slot].gen;
  }
  Status rs = file_->ReadAt(uint64_t{slot} * kBlockSize, out, kBlockSize);
  if (rs.IsWouldBlock()) {
    if (would_block != nullptr) *would_block = true;
    return false;
  }
  const bool good = rs.ok() && log::BlockCrc(lba, out) == crc;
  MutexLock l(&mu_);
  const bool same = slot < slots_.size() && slots_[slot].gen == gen && slots_[slot].lba == lba;
  if (!same) {  // refilled or dropped meanwhile: a miss, whatever we read
    misses_.fetch_add(1, std::memory_order_relaxed);
    return false;
  }
  if (!good) {
    DropSlotLocked(slot);
    errors_.fetch_add(1, std::memory_order_relaxed);
    misses_.fetch_add(1, std::memory_order_relaxed);
    NoteError(rs.ok() ? "fails its checksum (slot dropped)" : "cannot be read (slot dropped)", lba,
              rs.ok() ? Status::Corruption("checksum mismatch") : rs);
    return false;
  }
  ref_[slot] = 1;
  hits_.fetch_add(1, std::memory_order_relaxed);
  if (uint64_t n = fast_errors_.Cleared())
    spdlog::info("the read cache on FAST works again ({} error(s) meanwhile)", n);
  return true;
}

bool ReadCache::NhitDue(uint64_t lba) {
  const uint32_t need = promote_hits_.load(std::memory_order_relaxed);
  if (need <= 1) return true;
  MutexLock l(&nhit_mu_);
  const uint32_t size = nhit_size_.load(std::memory_order_relaxed);
  if (nhit_.size() != size) nhit_.assign(size, NhitEntry{});
  home_reads_++;
  const uint32_t now = static_cast<uint32_t>(home_reads_) & 0xFFFFFFu;
  auto age = [&](const NhitEntry& e) { return (now - (e.since_count >> 8)) & 0xFFFFFFu; };
  const uint32_t sets = size / kNhitWays;
  NhitEntry* set = &nhit_[(static_cast<uint32_t>((lba * 0x9E3779B97F4A7C15ull) >> 32) & (sets - 1)) * kNhitWays];
  const uint32_t key = static_cast<uint32_t>(lba) + 1;
  NhitEntry* victim = &set[0];
  for (uint32_t w = 0; w < kNhitWays; w++) {
    NhitEntry& e = set[w];
    if (e.lba_plus1 == key) {
      if (age(e) > kNhitWindow) {  // counted too long ago: start over
        e.since_count = now << 8 | 1;
        return false;
      }
      const uint32_t count = (e.since_count & 0xFF) + 1;
      if (count >= need) {
        e.lba_plus1 = 0;
        return true;
      }
      e.since_count = (e.since_count & ~0xFFu) | count;
      return false;
    }
    if (victim->lba_plus1 != 0 && (e.lba_plus1 == 0 || age(e) > age(*victim))) victim = &e;
  }
  victim->lba_plus1 = key;
  victim->since_count = now << 8 | 1;
  return false;
}

void ReadCache::OnHomeRead(uint64_t lba, const uint8_t* data, uint64_t ticket) {
  const PromotePolicy p = policy();
  if (p == PromotePolicy::kOff || lba >= kFilling) return;
  if (p == PromotePolicy::kNhit && !NhitDue(lba)) return;
  occupancy_.fetch_add(1, std::memory_order_seq_cst);  // before the ticket checks (Dekker with Invalidate)
  uint32_t slot, gen;
  {
    MutexLock l(&mu_);
    if (buckets_[Bucket(lba)].load(std::memory_order_seq_cst) != ticket || Find(static_cast<uint32_t>(lba)) >= 0) {
      occupancy_.fetch_sub(1, std::memory_order_seq_cst);
      return;
    }
    int64_t v = PickVictimLocked();
    if (v < 0) {
      occupancy_.fetch_sub(1, std::memory_order_seq_cst);
      return;
    }
    slot = static_cast<uint32_t>(v);
    if (slots_[slot].lba != kFree) {
      DropSlotLocked(slot);
      evictions_.fetch_add(1, std::memory_order_relaxed);
    }
    slots_[slot].lba = kFilling;
    slots_[slot].gen = gen = ++gen_counter_;
  }
  const uint32_t crc = log::BlockCrc(lba, data);
  Status ws = file_->WriteAt(uint64_t{slot} * kBlockSize, data, kBlockSize);
  if (ws.ok() && promote_hook_) promote_hook_(lba);
  MutexLock l(&mu_);
  const bool mine = slot < slots_.size() && slots_[slot].gen == gen && slots_[slot].lba == kFilling;
  const bool valid = skip_validation_ || buckets_[Bucket(lba)].load(std::memory_order_seq_cst) == ticket;
  const bool dup = Find(static_cast<uint32_t>(lba)) >= 0;
  if (!ws.ok() || !mine || !valid || dup) {
    if (mine) slots_[slot].lba = kFree;
    occupancy_.fetch_sub(1, std::memory_order_seq_cst);
    if (!ws.ok()) {
      errors_.fetch_add(1, std::memory_order_relaxed);
      NoteError("cannot be written (promotion skipped)", lba, ws);
    } else if (!valid) {
      discarded_.fetch_add(1, std::memory_order_relaxed);
    }
    return;
  }
  slots_[slot].lba = static_cast<uint32_t>(lba);
  slots_[slot].crc = crc;
  ref_[slot] = 0;
  TableInsert(static_cast<uint32_t>(lba), slot);
  used_++;
  promotions_.fetch_add(1, std::memory_order_relaxed);
}

void ReadCache::Invalidate(uint64_t first, uint64_t end) {
  if (first >= end) return;
  if (end - first >= kBuckets) {
    for (uint32_t b = 0; b < kBuckets; b++) buckets_[b].fetch_add(1, std::memory_order_seq_cst);
  } else {
    for (uint64_t lba = first; lba < end; lba++) buckets_[Bucket(lba)].fetch_add(1, std::memory_order_seq_cst);
  }
  if (occupancy_.load(std::memory_order_seq_cst) == 0) return;
  MutexLock l(&mu_);
  if (used_ == 0) return;
  uint64_t dropped = 0;
  if (end - first <= slots_.size()) {
    for (uint64_t lba = first; lba < end && lba < kFilling; lba++) {
      int64_t s = Find(static_cast<uint32_t>(lba));
      if (s >= 0) {
        DropSlotLocked(static_cast<uint32_t>(s));
        dropped++;
      }
    }
  } else {
    for (uint32_t s = 0; s < slots_.size(); s++) {
      uint32_t lba = slots_[s].lba;
      if (lba != kFree && lba != kFilling && lba >= first && lba < end) {
        DropSlotLocked(s);
        dropped++;
      }
    }
  }
  invalidations_.fetch_add(dropped, std::memory_order_relaxed);
}

void ReadCache::NoteError(const char* what, uint64_t lba, const Status& s) {
  uint64_t more = 0;
  switch (fast_errors_.Occurred(&more)) {
    case RepeatedError::kFirst:
      spdlog::warn("the read cache's copy of image block {} {} ({}); the block is served from home instead. "
                   "Reads do not fail for this; check FAST if it repeats (later errors are counted, "
                   "one line a minute)",
                   lba, what, s.ToString());
      break;
    case RepeatedError::kSummary:
      spdlog::warn("{} more read cache error(s) on FAST in the last minute; last: {}", more, s.ToString());
      break;
    case RepeatedError::kQuiet: break;
  }
}

ReadCache::Stats ReadCache::GetStats() {
  Stats st;
  st.hits = hits_.load();
  st.misses = misses_.load();
  st.promotions = promotions_.load();
  st.evictions = evictions_.load();
  st.invalidations = invalidations_.load();
  st.discarded = discarded_.load();
  st.errors = errors_.load();
  MutexLock l(&mu_);
  st.used_blocks = used_;
  st.capacity_blocks = slots_.size();
  return st;
}

size_t ReadCache::MemoryBytes() {
  size_t n = 0;
  {
    MutexLock l(&mu_);
    n += slots_.capacity() * sizeof(Slot) + ref_.capacity() + table_.capacity() * sizeof(uint32_t);
  }
  MutexLock l(&nhit_mu_);
  n += nhit_.capacity() * sizeof(NhitEntry) + kBuckets * sizeof(uint64_t);
  return n;
}

}  // namespace boostvol
