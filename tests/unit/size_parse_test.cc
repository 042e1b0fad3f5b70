#include "util/size_parse.h"

#include <gtest/gtest.h>

namespace boostvol {
namespace {

uint64_t Parse(const char* s) {
  uint64_t v = 0;
  Status st = ParseSize(s, &v);
  EXPECT_TRUE(st.ok()) << s << ": " << st.ToString();
  return v;
}

std::string Error(const char* s) {
  uint64_t v = 12345;
  Status st = ParseSize(s, &v);
  EXPECT_FALSE(st.ok()) << s << " parsed as " << v;
  EXPECT_EQ(v, 12345u) << "output changed on failure";
  EXPECT_EQ(st.code(), Status::Code::kInvalidArgument);
  return st.message();
}

TEST(SizeParseTest, PlainBytes) {
  EXPECT_EQ(Parse("0"), 0u);
  EXPECT_EQ(Parse("4096"), 4096u);
  EXPECT_EQ(Parse("4096B"), 4096u);
  EXPECT_EQ(Parse("  4096 "), 4096u);
  EXPECT_EQ(Parse("18446744073709551615"), UINT64_MAX);
}

TEST(SizeParseTest, BinaryUnits) {
  EXPECT_EQ(Parse("1K"), 1024u);
  EXPECT_EQ(Parse("1k"), 1024u);
  EXPECT_EQ(Parse("512M"), 512ull << 20);
  EXPECT_EQ(Parse("8G"), 8ull << 30);
  EXPECT_EQ(Parse("8GiB"), 8ull << 30);
  EXPECT_EQ(Parse("8gib"), 8ull << 30);
  EXPECT_EQ(Parse("8GB"), 8ull << 30);
  EXPECT_EQ(Parse("8 G"), 8ull << 30);
  EXPECT_EQ(Parse("2T"), 2ull << 40);
  EXPECT_EQ(Parse("1P"), 1ull << 50);
  EXPECT_EQ(Parse("15E"), 15ull << 60);
}

TEST(SizeParseTest, Fractions) {
  EXPECT_EQ(Parse("1.5T"), 3ull << 39);
  EXPECT_EQ(Parse("0.5K"), 512u);
  EXPECT_EQ(Parse("1.25M"), 1310720u);
  EXPECT_EQ(Parse(".5G"), 512ull << 20);
}

TEST(SizeParseTest, RejectsGarbage) {
  EXPECT_NE(Error("").find("empty"), std::string::npos);
  EXPECT_NE(Error("abc").find("'abc'"), std::string::npos);
  Error("-1G");
  Error("8X");
  Error("8GG");
  Error("8Gx");
  Error("8KiBB");
  Error("8BK");
  Error("1.");
  Error("1..5G");
  Error("1.5");     // not a whole number of bytes
  Error("0.1K");    // 102.4 bytes
  Error("G");
  Error("0x10");
  Error("1e9");
}

TEST(SizeParseTest, RejectsOverflow) {
  EXPECT_NE(Error("18446744073709551616").find("too large"), std::string::npos);
  EXPECT_NE(Error("16E").find("64 bits"), std::string::npos);
  Error("99999999999999999999999999");
  Error("17179869184G");
}

TEST(SizeParseTest, FormatBytes) {
  EXPECT_EQ(FormatBytes(0), "0 B");
  EXPECT_EQ(FormatBytes(1023), "1023 B");
  EXPECT_EQ(FormatBytes(1024), "1.0 KiB");
  EXPECT_EQ(FormatBytes(1536), "1.5 KiB");
  EXPECT_EQ(FormatBytes(8ull << 30), "8.0 GiB");
  EXPECT_EQ(FormatBytes((1ull << 20) - 1), "1.0 MiB");
  EXPECT_EQ(FormatBytes(3ull << 39), "1.5 TiB");
  EXPECT_EQ(FormatBytes(UINT64_MAX), "16.0 EiB");
}

TEST(SizeParseTest, RoundTripsWholeUnits) {
  for (const char* s : {"1K", "7M", "8G", "3T"}) {
    uint64_t v = Parse(s);
    uint64_t back = 0;
    std::string f = FormatBytes(v);
    ASSERT_TRUE(ParseSize(f, &back).ok()) << f;
    EXPECT_EQ(back, v) << f;
  }
}

}  // namespace
}  // namespace boostvol
