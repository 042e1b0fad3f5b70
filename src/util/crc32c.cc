// CRC-32C (Castagnoli): reflected polynomial 0x82F63B78, initial value and
// final xor 0xFFFFFFFF. Extend() undoes the final xor of `init_crc` before
// continuing, so Extend(Extend(0, a), b) == Value(a || b).
//
// Two implementations give identical results:
//  - ExtendHardware: the SSE4.2 crc32 instruction, 8 bytes per step;
//  - ExtendPortable: slice-by-8 tables, computed at compile time.
// The choice is made once, at first use, from __builtin_cpu_supports.

#include "util/crc32c.h"

#include <array>
#include <cstring>

#include "util/crc32c_internal.h"

#if defined(__x86_64__)
#include <nmmintrin.h>
#endif

namespace boostvol::crc32c {
namespace internal {
namespace {

constexpr uint32_t kPoly = 0x82F63B78u;  // 0x1EDC6F41 bit-reversed

using Tables = std::array<std::array<uint32_t, 256>, 8>;

// tables[0] is the classic byte-at-a-time table; tables[k][b] is the crc of
// byte b followed by k zero bytes, which lets the loop consume 8 bytes with
// 8 independent lookups.
constexpr Tables MakeTables() {
  Tables t{};
  for (uint32_t b = 0; b < 256; ++b) {
    uint32_t c = b;
    for (int i = 0; i < 8; ++i) c = (c >> 1) ^ ((c & 1u) ? kPoly : 0u);
    t[0][b] = c;
  }
  for (int k = 1; k < 8; ++k) {
    for (uint32_t b = 0; b < 256; ++b) {
      uint32_t prev = t[k - 1][b];
      t[k][b] = (prev >> 8) ^ t[0][prev & 0xFFu];
    }
  }
  return t;
}

constexpr Tables kTables = MakeTables();

inline uint32_t LoadLE32(const uint8_t* p) {
  // Byte-wise assembly: correct on any endianness, compiled to one load on x86.
  return static_cast<uint32_t>(p[0]) | (static_cast<uint32_t>(p[1]) << 8) |
         (static_cast<uint32_t>(p[2]) << 16) | (static_cast<uint32_t>(p[3]) << 24);
}

}  // namespace

uint32_t ExtendPortable(uint32_t init_crc, const void* data, size_t n) {
  const auto* p = static_cast<const uint8_t*>(data);
  uint32_t c = ~init_crc;
  // Head: bytes until p is 8-aligned (not needed for correctness, only speed).
  while (n > 0 && (reinterpret_cast<uintptr_t>(p) & 7u) != 0) {
    c = (c >> 8) ^ kTables[0][(c ^ *p++) & 0xFFu];
    --n;
  }
  while (n >= 8) {
    uint32_t lo = LoadLE32(p) ^ c;
    uint32_t hi = LoadLE32(p + 4);
    c = kTables[7][lo & 0xFFu] ^ kTables[6][(lo >> 8) & 0xFFu] ^ kTables[5][(lo >> 16) & 0xFFu] ^
        kTables[4][lo >> 24] ^ kTables[3][hi & 0xFFu] ^ kTables[2][(hi >> 8) & 0xFFu] ^
        kTables[1][(hi >> 16) & 0xFFu] ^ kTables[0][hi >> 24];
    p += 8;
    n -= 8;
  }
  while (n > 0) {
    c = (c >> 8) ^ kTables[0][(c ^ *p++) & 0xFFu];
    --n;
  }
  return ~c;
}

#if defined(__x86_64__)

bool HasHardware() {
  static const bool has = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("sse4.2") != 0;
  }();
  return has;
}

// Three streams at once (Mark Adler's crc32c.c scheme): the crc32
// instruction takes 3 cycles but a core starts one every cycle, so three
// independent CRCs over the thirds of a stretch run about 3x faster than one
// (a 4 KiB block: 3x1024 + 3x256 bytes interleaved, 256 bytes serial). The
// three are joined by "appending zeros" to the first two, with tables.
namespace {

constexpr size_t kLong = 1024;  // powers of two (ZerosOp)
constexpr size_t kShort = 256;

using Gf2Matrix = std::array<uint32_t, 32>;
using ShiftTable = std::array<std::array<uint32_t, 256>, 4>;

constexpr uint32_t Gf2Times(const Gf2Matrix& mat, uint32_t vec) {
  uint32_t sum = 0;
  for (int i = 0; vec != 0; i++, vec >>= 1)
    if (vec & 1) sum ^= mat[i];
  return sum;
}

constexpr Gf2Matrix Gf2Square(const Gf2Matrix& mat) {
  Gf2Matrix sq{};
  for (int i = 0; i < 32; i++) sq[i] = Gf2Times(mat, mat[i]);
  return sq;
}

// The operator that appends `len` zero bytes (a power of two) to a CRC
// register (pre- and post-inversion left out).
constexpr Gf2Matrix ZerosOp(size_t len) {
  Gf2Matrix odd{}, even{};
  odd[0] = kPoly;  // one zero bit
  for (int i = 1; i < 32; i++) odd[i] = uint32_t{1} << (i - 1);
  even = Gf2Square(odd);  // two zero bits
  odd = Gf2Square(even);  // four zero bits
  for (;;) {
    even = Gf2Square(odd);  // 1, 4, 16, ... zero bytes
    len >>= 1;
    if (len == 0) return even;
    odd = Gf2Square(even);  // 2, 8, 32, ... zero bytes
    len >>= 1;
    if (len == 0) return odd;
  }
}

constexpr ShiftTable MakeShiftTable(size_t len) {
  const Gf2Matrix op = ZerosOp(len);
  ShiftTable t{};
  for (uint32_t b = 0; b < 256; b++) {
    t[0][b] = Gf2Times(op, b);
    t[1][b] = Gf2Times(op, b << 8);
    t[2][b] = Gf2Times(op, b << 16);
    t[3][b] = Gf2Times(op, b << 24);
  }
  return t;
}

constexpr ShiftTable kShiftLong = MakeShiftTable(kLong);
constexpr ShiftTable kShiftShort = MakeShiftTable(kShort);

inline uint32_t Shift(const ShiftTable& t, uint32_t c) {
  return t[0][c & 0xFFu] ^ t[1][(c >> 8) & 0xFFu] ^ t[2][(c >> 16) & 0xFFu] ^ t[3][c >> 24];
}

__attribute__((target("sse4.2"))) inline uint64_t Crc64(uint64_t c, const uint8_t* p) {
  uint64_t word;
  std::memcpy(&word, p, sizeof(word));
  return _mm_crc32_u64(c, word);
}

// Three-way over as many runs of 3 x `len` bytes as fit.
__attribute__((target("sse4.2"))) inline void ThreeWay(const ShiftTable& shift, size_t len, uint64_t* c0,
                                                       const uint8_t** p, size_t* n) {
  while (*n >= 3 * len) {
    uint64_t a = *c0, b = 0, c = 0;
    const uint8_t* q = *p;
    const uint8_t* const end = q + len;
    do {
      a = Crc64(a, q);
      b = Crc64(b, q + len);
      c = Crc64(c, q + 2 * len);
      q += 8;
    } while (q < end);
    a = Shift(shift, static_cast<uint32_t>(a)) ^ b;
    *c0 = Shift(shift, static_cast<uint32_t>(a)) ^ c;
    *p += 3 * len;
    *n -= 3 * len;
  }
}

}  // namespace

__attribute__((target("sse4.2"))) uint32_t ExtendHardware(uint32_t init_crc, const void* data, size_t n) {
  const auto* p = static_cast<const uint8_t*>(data);
  uint32_t c = ~init_crc;
  while (n > 0 && (reinterpret_cast<uintptr_t>(p) & 7u) != 0) {
    c = _mm_crc32_u8(c, *p++);
    --n;
  }
  uint64_t c64 = c;
  ThreeWay(kShiftLong, kLong, &c64, &p, &n);
  ThreeWay(kShiftShort, kShort, &c64, &p, &n);
  while (n >= 8) {
    uint64_t word;
    std::memcpy(&word, p, sizeof(word));  // aligned here; memcpy keeps it defined
    c64 = _mm_crc32_u64(c64, word);
    p += 8;
    n -= 8;
  }
  c = static_cast<uint32_t>(c64);
  while (n > 0) {
    c = _mm_crc32_u8(c, *p++);
    --n;
  }
  return ~c;
}

#else  // no SSE4.2 on this architecture

bool HasHardware() { return false; }

uint32_t ExtendHardware(uint32_t init_crc, const void* data, size_t n) {
  return ExtendPortable(init_crc, data, n);
}

#endif

}  // namespace internal

uint32_t Extend(uint32_t init_crc, const void* data, size_t n) {
  static const bool use_hw = internal::HasHardware();
  return use_hw ? internal::ExtendHardware(init_crc, data, n) : internal::ExtendPortable(init_crc, data, n);
}

}  // namespace boostvol::crc32c
