// RateMeter, the status line's schema members, and the control socket's
// get/set commands (with a fake handler).
#include "control/rate_meter.h"

#include <gtest/gtest.h>

#include <map>

#include "control/control_client.h"
#include "control/control_server.h"
#include "control/status_json.h"
#include "lib/temp_dirs.h"

namespace boostvol::control {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

TEST(RateMeterTest, NotMeasuredUntilTwoSamples) {
  RateMeter m;
  EXPECT_EQ(m.Rates().window_s, 0u);
  m.AddSample(RateMeter::Clock::time_point{} + seconds(1), 0, 0, 4096);
  EXPECT_EQ(m.Rates().window_s, 0u);
  EXPECT_FALSE(m.Rates().drain_eta_known);
}

TEST(RateMeterTest, RatesAndEtaOverTheWindow) {
  RateMeter m(seconds(10));
  const auto t0 = RateMeter::Clock::time_point{} + seconds(100);
  // 1 MiB/s written, 512 KiB/s migrated, 10 MiB dirty at the end.
  for (int i = 0; i <= 20; ++i) {
    m.AddSample(t0 + seconds(i), uint64_t(i) << 20, uint64_t(i) << 19, 10 << 20);
  }
  StatusRates r = m.Rates();
  EXPECT_EQ(r.window_s, 10u);  // older samples dropped
  EXPECT_EQ(r.write_bytes_per_s, 1u << 20);
  EXPECT_EQ(r.migrate_bytes_per_s, 1u << 19);
  ASSERT_TRUE(r.drain_eta_known);
  EXPECT_EQ(r.drain_eta_s, 20u);
}

TEST(RateMeterTest, NoEtaWhenNothingMigratesAndZeroWhenClean) {
  RateMeter m;
  const auto t0 = RateMeter::Clock::time_point{} + seconds(5);
  m.AddSample(t0, 0, 0, 4096);
  m.AddSample(t0 + milliseconds(2000), 8192, 0, 4096);
  EXPECT_FALSE(m.Rates().drain_eta_known);
  m.AddSample(t0 + milliseconds(3000), 8192, 4096, 0);
  EXPECT_TRUE(m.Rates().drain_eta_known);
  EXPECT_EQ(m.Rates().drain_eta_s, 0u);
}

TEST(StatusLineJsonTest, SchemaVersionRatesAndNullEta) {
  VolumeStatus st;
  st.uuid = "u";
  StatusRates r;
  r.window_s = 10;
  r.write_bytes_per_s = 7;
  const std::string line = StatusLineJson(st, r, "\"mounted\":true");
  EXPECT_EQ(line.rfind("{\"schema_version\":1,\"uuid\":\"u\",", 0), 0u) << line;
  EXPECT_NE(line.find("\"drain_eta_s\":null,\"mounted\":true}"), std::string::npos) << line;
  VolumeStatus back;
  ASSERT_TRUE(VolumeStatusFromJson(line, &back).ok());
  EXPECT_EQ(back.uuid, "u");
  StatusRates rb;
  ASSERT_TRUE(StatusRatesFromJson(line, &rb).ok());
  EXPECT_EQ(rb.window_s, 10u);
  EXPECT_EQ(rb.write_bytes_per_s, 7u);
  EXPECT_FALSE(rb.drain_eta_known);
  r.drain_eta_known = true;
  r.drain_eta_s = 42;
  ASSERT_TRUE(StatusRatesFromJson(StatusLineJson(st, r), &rb).ok());
  EXPECT_TRUE(rb.drain_eta_known);
  EXPECT_EQ(rb.drain_eta_s, 42u);
}

class TunableHandler : public ControlHandler {
 public:
  VolumeStatus GetStatus() override { return VolumeStatus{}; }
  Status Drain(const ProgressFn&) override { return Status::OK(); }
  void RequestStop() override {}
  Status SetTunable(const std::string& key, const std::string& value) override {
    if (key != "idle_migrate_ms") return Status::InvalidArgument("unknown tunable '" + key + "'");
    values[key] = value;
    return Status::OK();
  }
  std::vector<std::pair<std::string, std::string>> GetTunables() override {
    return {values.begin(), values.end()};
  }
  std::map<std::string, std::string> values{{"idle_migrate_ms", "2000"}, {"max_batch_bytes", "67108864"}};
};

TEST(ControlTunablesTest, GetAndSet) {
  test::TempDirs dirs;
  TunableHandler h;
  std::unique_ptr<ControlServer> server;
  ASSERT_TRUE(ControlServer::Start(dirs.fast(), &h, &server).ok());
  std::vector<std::pair<std::string, std::string>> got;
  ASSERT_TRUE(RequestGetTunables(dirs.fast(), &got).ok());
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0], (std::pair<std::string, std::string>{"idle_migrate_ms", "2000"}));

  ASSERT_TRUE(RequestSetTunable(dirs.fast(), "idle_migrate_ms", "500").ok());
  EXPECT_EQ(h.values["idle_migrate_ms"], "500");
  Status s = RequestSetTunable(dirs.fast(), "nope", "1");
  EXPECT_EQ(s.code(), Status::Code::kInvalidArgument) << s.ToString();
  EXPECT_NE(s.message().find("unknown tunable 'nope'"), std::string::npos) << s.message();
  EXPECT_FALSE(RequestSetTunable(dirs.fast(), "idle_migrate_ms", "5 00").ok());

  std::vector<std::string> lines;
  ASSERT_TRUE(ControlRequest(dirs.fast(), "set idle_migrate_ms", 5000, [&](const std::string& l) { lines.push_back(l); }).ok());
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_EQ(lines[0], "error usage: set KEY VALUE");
}

TEST(ControlTunablesTest, DefaultHandlerRefusesSet) {
  struct Plain : ControlHandler {
    VolumeStatus GetStatus() override { return VolumeStatus{}; }
    Status Drain(const ProgressFn&) override { return Status::OK(); }
    void RequestStop() override {}
  } h;
  test::TempDirs dirs;
  std::unique_ptr<ControlServer> server;
  ASSERT_TRUE(ControlServer::Start(dirs.fast(), &h, &server).ok());
  EXPECT_FALSE(RequestSetTunable(dirs.fast(), "idle_migrate_ms", "1").ok());
  std::vector<std::pair<std::string, std::string>> got;
  ASSERT_TRUE(RequestGetTunables(dirs.fast(), &got).ok());
  EXPECT_TRUE(got.empty());
}

}  // namespace
}  // namespace boostvol::control
