// Helpers shared by the libFuzzer targets in fuzz/ (built with BOOSTVOL_FUZZ=ON,
// run by scripts/sanitize.sh fuzz).
#pragma once

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "util/env.h"

namespace boostvol::fuzz {

// Stops the fuzzer with a message: libFuzzer reports the abort as a crash and
// saves the input.
#define FUZZ_CHECK(cond, ...)                                          \
  do {                                                                 \
    if (!(cond)) {                                                     \
      std::fprintf(stderr, "FUZZ_CHECK failed: %s: ", #cond);          \
      std::fprintf(stderr, __VA_ARGS__);                               \
      std::fprintf(stderr, "\n");                                      \
      std::abort();                                                    \
    }                                                                  \
  } while (0)

// Consumes the fuzzer's input byte by byte; zeros once it runs out.
class Input {
 public:
  Input(const uint8_t* data, size_t size) : p_(data), end_(data + size) {}
  uint8_t Byte() { return p_ < end_ ? *p_++ : 0; }
  uint32_t U16() { return Byte() | uint32_t{Byte()} << 8; }
  uint32_t U32() { return U16() | U16() << 16; }
  uint64_t U64() { return U32() | uint64_t{U32()} << 32; }
  bool empty() const { return p_ >= end_; }
  size_t left() const { return static_cast<size_t>(end_ - p_); }
  const uint8_t* Take(size_t n) {
    n = std::min(n, left());
    const uint8_t* q = p_;
    p_ += n;
    return q;
  }

 private:
  const uint8_t* p_;
  const uint8_t* end_;
};

// A File in memory: never fails; reads past the end return zeros (as the
// Env contract says).
class MemFile : public File {
 public:
  explicit MemFile(size_t size) : bytes_(size, 0) {}
  std::vector<uint8_t>& bytes() { return bytes_; }
  Status ReadAt(uint64_t offset, void* buf, size_t n) override {
    std::memset(buf, 0, n);
    if (offset < bytes_.size()) std::memcpy(buf, bytes_.data() + offset, std::min<uint64_t>(n, bytes_.size() - offset));
    reads_ += n;
    return Status::OK();
  }
  Status WriteAt(uint64_t offset, const void* buf, size_t n) override {
    if (offset + n > bytes_.size()) bytes_.resize(offset + n);
    std::memcpy(bytes_.data() + offset, buf, n);
    return Status::OK();
  }
  Status Sync() override { return Status::OK(); }
  Status Truncate(uint64_t size) override {
    bytes_.resize(size);
    return Status::OK();
  }
  Status Allocate(uint64_t offset, uint64_t len) override {
    if (offset + len > bytes_.size()) bytes_.resize(offset + len);
    return Status::OK();
  }
  Status PunchHole(uint64_t offset, uint64_t len) override {
    if (offset < bytes_.size()) std::memset(bytes_.data() + offset, 0, std::min<uint64_t>(len, bytes_.size() - offset));
    return Status::OK();
  }
  Status Stat(FileInfo* info) override {
    *info = FileInfo{};
    info->size = bytes_.size();
    return Status::OK();
  }
  const std::string& name() const override { return name_; }
  uint64_t bytes_read() const { return reads_; }

 private:
  std::vector<uint8_t> bytes_;
  std::string name_ = "fuzz-log";
  uint64_t reads_ = 0;
};

}  // namespace boostvol::fuzz
