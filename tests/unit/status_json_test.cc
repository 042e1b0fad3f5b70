#include "control/status_json.h"

#include <gtest/gtest.h>

namespace boostvol::control {
namespace {

TEST(JsonQuoteTest, EscapesWhatJsonRequires) {
  EXPECT_EQ(JsonQuote(""), "\"\"");
  EXPECT_EQ(JsonQuote("plain"), "\"plain\"");
  EXPECT_EQ(JsonQuote("a\"b"), "\"a\\\"b\"");
  EXPECT_EQ(JsonQuote("a\\b"), "\"a\\\\b\"");
  EXPECT_EQ(JsonQuote("l1\nl2\r\t"), "\"l1\\nl2\\r\\t\"");
  EXPECT_EQ(JsonQuote(std::string("\x01\x1f\x7f", 3)), "\"\\u0001\\u001f\\u007f\"");
  EXPECT_EQ(JsonQuote(std::string("nul\0x", 5)), "\"nul\\u0000x\"");
  EXPECT_EQ(JsonQuote("/dir/with spaces/é"), "\"/dir/with spaces/é\"");  // UTF-8 passes through
}

VolumeStatus Sample() {
  VolumeStatus s;
  s.uuid = "1306c797-5353-46c0-b77c-6bfadb0eb80c";
  s.fast_dir = "/tmp/a \"quoted\"\\dir\n";
  s.home = "dir:/slow";
  s.health = "home-unreachable";
  s.last_error = "read of block 7: \x01 weird";
  s.migrator_state = "backoff";
  s.image_size = 8ull << 30;
  s.dirty_blocks = 12;
  s.bytes_written = UINT64_MAX;
  s.mount_count = 3;
  s.clean_open = true;
  return s;
}

TEST(StatusJsonTest, RoundTrips) {
  VolumeStatus in = Sample();
  std::string json = VolumeStatusToJson(in);
  EXPECT_EQ(json.find('\n'), std::string::npos) << "must be one line";
  VolumeStatus out;
  out.health = "overwritten?";
  ASSERT_TRUE(VolumeStatusFromJson(json, &out).ok()) << json;
  EXPECT_EQ(out.uuid, in.uuid);
  EXPECT_EQ(out.fast_dir, in.fast_dir);
  EXPECT_EQ(out.health, in.health);
  EXPECT_EQ(out.last_error, in.last_error);
  EXPECT_EQ(out.migrator_state, in.migrator_state);
  EXPECT_EQ(out.image_size, in.image_size);
  EXPECT_EQ(out.dirty_blocks, in.dirty_blocks);
  EXPECT_EQ(out.bytes_written, UINT64_MAX);
  EXPECT_EQ(out.mount_count, 3u);
  EXPECT_TRUE(out.clean_open);
}

TEST(StatusJsonTest, ReaderIgnoresUnknownMembersAndWhitespace) {
  VolumeStatus out;
  ASSERT_TRUE(VolumeStatusFromJson(" { \"future\" : \"x\" , \"writes\" : 42 ,\n \"clean_open\":false,"
                                   "\"uuid\":\"\\u00e9\\ud83d\\ude00\\/\"} ",
                                   &out)
                  .ok());
  EXPECT_EQ(out.writes, 42u);
  EXPECT_EQ(out.uuid, "é😀/");
}

TEST(StatusJsonTest, ReaderRejectsMalformedInput) {
  VolumeStatus out;
  for (const char* bad : {"", "{", "[]", "{\"writes\":}", "{\"writes\":-1}", "{\"writes\":1,}", "{\"uuid\":\"x}",
                          "{\"writes\":99999999999999999999}", "{\"uuid\":\"a\\q\"}", "{} trailing",
                          "{\"uuid\":\"\\u12\"}", "{\"writes\":\"1\"}", "{\"uuid\":7}", "{\"clean_open\":1}"}) {
    EXPECT_FALSE(VolumeStatusFromJson(bad, &out).ok()) << bad;
  }
}

}  // namespace
}  // namespace boostvol::control
