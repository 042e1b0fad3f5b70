#include "util/crc32c.h"

#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "util/crc32c_internal.h"

namespace boostvol::crc32c {
namespace {

uint32_t ValueOf(const std::string& s) { return Value(s.data(), s.size()); }

TEST(Crc32cTest, KnownVectors) {
  EXPECT_EQ(0x00000000u, Value("", 0));
  EXPECT_EQ(0xE3069283u, ValueOf("123456789"));
  EXPECT_EQ(0xC1D04330u, ValueOf("a"));

  // RFC 3720 (iSCSI), appendix B.4.
  std::vector<uint8_t> buf(32, 0x00);
  EXPECT_EQ(0x8A9136AAu, Value(buf.data(), buf.size()));
  std::fill(buf.begin(), buf.end(), 0xFF);
  EXPECT_EQ(0x62A8AB43u, Value(buf.data(), buf.size()));
  for (int i = 0; i < 32; ++i) buf[i] = static_cast<uint8_t>(i);
  EXPECT_EQ(0x46DD794Eu, Value(buf.data(), buf.size()));
  for (int i = 0; i < 32; ++i) buf[i] = static_cast<uint8_t>(31 - i);
  EXPECT_EQ(0x113FDB5Cu, Value(buf.data(), buf.size()));
}

TEST(Crc32cTest, PortableKnownVectors) {
  std::vector<uint8_t> zeros(32, 0);
  EXPECT_EQ(0xE3069283u, internal::ExtendPortable(0, "123456789", 9));
  EXPECT_EQ(0x8A9136AAu, internal::ExtendPortable(0, zeros.data(), zeros.size()));
}

TEST(Crc32cTest, HardwareKnownVectors) {
  if (!internal::HasHardware()) GTEST_SKIP() << "no SSE4.2 on this CPU";
  std::vector<uint8_t> zeros(32, 0);
  EXPECT_EQ(0xE3069283u, internal::ExtendHardware(0, "123456789", 9));
  EXPECT_EQ(0x8A9136AAu, internal::ExtendHardware(0, zeros.data(), zeros.size()));
}

TEST(Crc32cTest, ExtendComposes) {
  std::mt19937 rng(7);
  std::string data(3000, '\0');
  for (char& c : data) c = static_cast<char>(rng());
  const uint32_t whole = ValueOf(data);
  for (size_t cut : {size_t{0}, size_t{1}, size_t{7}, size_t{8}, size_t{9}, size_t{511}, size_t{1500}, data.size()}) {
    uint32_t a = Value(data.data(), cut);
    EXPECT_EQ(whole, Extend(a, data.data() + cut, data.size() - cut)) << "cut at " << cut;
    uint32_t p = internal::ExtendPortable(0, data.data(), cut);
    EXPECT_EQ(whole, internal::ExtendPortable(p, data.data() + cut, data.size() - cut)) << "cut at " << cut;
  }
  // Byte by byte.
  uint32_t c = 0;
  for (char ch : data) c = Extend(c, &ch, 1);
  EXPECT_EQ(whole, c);
}

TEST(Crc32cTest, DifferentDataDifferentCrc) {
  EXPECT_NE(ValueOf("a"), ValueOf("b"));
  EXPECT_NE(ValueOf(std::string(64, '\0')), ValueOf(std::string(65, '\0')));
}

TEST(Crc32cTest, HardwareAndPortableAgree) {
  if (!internal::HasHardware()) GTEST_SKIP() << "no SSE4.2 on this CPU";
  std::mt19937_64 rng(42);
  std::vector<uint8_t> buf(9000 + 64);
  for (auto& b : buf) b = static_cast<uint8_t>(rng());
  for (size_t align = 0; align < 16; ++align) {
    for (size_t len = 0; len <= 300; ++len) {
      uint32_t init = static_cast<uint32_t>(rng());
      ASSERT_EQ(internal::ExtendPortable(init, buf.data() + align, len),
                internal::ExtendHardware(init, buf.data() + align, len))
          << "align " << align << " len " << len;
    }
    for (size_t len : {767u, 768u, 769u, 1023u, 1024u, 1025u, 3071u, 3072u, 3073u, 3840u, 4096u, 4104u, 9000u}) {
      uint32_t init = static_cast<uint32_t>(rng());
      ASSERT_EQ(internal::ExtendPortable(init, buf.data() + align, len),
                internal::ExtendHardware(init, buf.data() + align, len))
          << "align " << align << " len " << len;
    }
  }
}

TEST(Crc32cTest, ExtendUsesTheSameValuesAsPortable) {
  std::string data(1000, 'x');
  EXPECT_EQ(internal::ExtendPortable(0, data.data(), data.size()), ValueOf(data));
}

}  // namespace
}  // namespace boostvol::crc32c
