// ImageModel: the expected image, and the crash-consistency oracle.
//
// Apply() records every acknowledged write in order, as the log sees it: one
// block write per 4 KiB block touched, in ascending address order (a write
// spanning several blocks may be cut at a block boundary by a crash, like a
// disk's; a block itself is never torn). MarkFlushed() records
// that a flush succeeded after the writes so far. After a crash,
// CheckPrefix() decides whether an image read back is the result of applying
// a prefix of the writes, and that the prefix includes every write before the
// last successful flush (DESIGN.md 2.2 and 2.3). It keeps, per block, the
// hash of each version and the write that produced it, so the check costs
// O(blocks x versions) rather than replaying the history.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "util/crc32c.h"

namespace boostvol::test {

class ImageModel {
 public:
  explicit ImageModel(uint64_t size) : image_(size, 0), versions_(size / kBlock) {
    for (auto& v : versions_) v.push_back({0, Hash(zero_block())});
  }

  const std::vector<uint8_t>& image() const { return image_; }
  uint64_t writes() const { return writes_; }
  uint64_t flushed() const { return flushed_; }

  void Apply(uint64_t off, const uint8_t* data, size_t len) {
    std::memcpy(image_.data() + off, data, len);
    for (uint64_t b = off / kBlock; b < (off + len + kBlock - 1) / kBlock; b++) {
      writes_++;
      versions_[b].push_back({writes_, Hash(image_.data() + b * kBlock)});
    }
  }
  void MarkFlushed() { flushed_ = writes_; }

  // True if `got` (the whole image) equals the image after some prefix k of
  // the writes with flushed() <= k <= writes(); *why says which block broke it.
  bool CheckPrefix(const std::vector<uint8_t>& got, uint64_t* k_out, std::string* why) const {
    return CheckPrefixBetween(got, flushed_, writes_, k_out, why);
  }

  // The same for a prefix k with lo <= k <= hi (hi <= writes()): e.g. the
  // home alone after FAST is lost (DESIGN.md 2.7), which may be older than
  // the last flush but not older than the last drain.
  bool CheckPrefixBetween(const std::vector<uint8_t>& got, uint64_t lo, uint64_t hi, uint64_t* k_out,
                          std::string* why) const {
    std::vector<char> ok(hi - lo + 1, 1);
    for (uint64_t b = 0; b < versions_.size(); b++) {
      uint32_t h = Hash(got.data() + b * kBlock);
      const auto& vs = versions_[b];
      std::vector<char> block_ok(hi - lo + 1, 0);
      bool any = false;
      for (size_t j = 0; j < vs.size(); j++) {
        if (vs[j].hash != h) continue;
        uint64_t from = vs[j].write, to = j + 1 < vs.size() ? vs[j + 1].write - 1 : hi;
        for (uint64_t k = std::max(from, lo); k <= std::min(to, hi); k++) block_ok[k - lo] = 1, any = true;
      }
      if (!any) {
        *why = "block " + std::to_string(b) + " holds data no allowed prefix wrote (lost fsync'ed data, a mix, or garbage)";
        return false;
      }
      bool left = false;
      for (uint64_t k = 0; k < ok.size(); k++) {
        ok[k] &= block_ok[k];
        left |= ok[k];
      }
      if (!left) {
        *why = "no single prefix explains every block (first conflict at block " + std::to_string(b) + ")";
        return false;
      }
    }
    for (uint64_t k = ok.size(); k-- > 0;)
      if (ok[k]) {
        *k_out = lo + k;
        return true;
      }
    return false;
  }

  // After a crash recovered prefix k (`image`): the writes after k are gone,
  // the history up to k is kept (an older copy, the home alone, may still be
  // checked against it); everything up to k counts as flushed from now on.
  void CutAt(uint64_t k, const std::vector<uint8_t>& image) {
    image_ = image;
    writes_ = flushed_ = k;
    for (auto& vs : versions_)
      while (vs.size() > 1 && vs.back().write > k) vs.pop_back();
  }

  // Starts a new history from `image` (after a crash was checked).
  void Reset(const std::vector<uint8_t>& image) {
    image_ = image;
    writes_ = flushed_ = 0;
    for (uint64_t b = 0; b < versions_.size(); b++) versions_[b] = {{0, Hash(image_.data() + b * kBlock)}};
  }

 private:
  static constexpr uint64_t kBlock = 4096;
  struct Version {
    uint64_t write;  // the block holds this version after `write` writes
    uint32_t hash;
  };
  static const uint8_t* zero_block() {
    static const std::vector<uint8_t> z(kBlock, 0);
    return z.data();
  }
  static uint32_t Hash(const uint8_t* p) { return crc32c::Value(p, kBlock); }

  std::vector<uint8_t> image_;
  std::vector<std::vector<Version>> versions_;
  uint64_t writes_ = 0, flushed_ = 0;
};

}  // namespace boostvol::test
