// The control socket: server and client over a temp dir, with a fake handler.
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <gtest/gtest.h>
#include <thread>

#include "control/control_client.h"
#include "control/control_server.h"
#include "lib/temp_dirs.h"

namespace boostvol::control {
namespace {

class FakeHandler : public ControlHandler {
 public:
  VolumeStatus GetStatus() override {
    VolumeStatus s;
    s.uuid = "fake-uuid";
    s.fast_dir = "/x \"y\"";
    s.writes = ++status_calls;
    return s;
  }
  Status Drain(const ProgressFn& progress) override {
    for (uint64_t i = 0; i <= 3; ++i) progress(Progress{"drain", i, 3, "segments"});
    if (fail_drain) return Status::IoError(5, "home unreachable\nsecond line");
    return Status::OK();
  }
  void RequestStop() override { stops++; }

  std::atomic<uint64_t> status_calls{0};
  std::atomic<int> stops{0};
  bool fail_drain = false;
};

TEST(ControlProtocolTest, StatusDrainStop) {
  test::TempDirs dirs;
  FakeHandler h;
  std::unique_ptr<ControlServer> server;
  ASSERT_TRUE(ControlServer::Start(dirs.fast(), &h, &server).ok());

  struct stat st;
  ASSERT_EQ(::lstat((dirs.fast() + "/control.sock").c_str(), &st), 0);
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  EXPECT_EQ(st.st_mode & 0777, 0600u);

  VolumeStatus vs;
  std::string json;
  ASSERT_TRUE(QueryStatus(dirs.fast(), &vs, &json).ok());
  EXPECT_EQ(vs.uuid, "fake-uuid");
  EXPECT_EQ(vs.fast_dir, "/x \"y\"");
  EXPECT_EQ(vs.writes, 1u);
  EXPECT_EQ(json.front(), '{');

  std::vector<Progress> seen;
  ASSERT_TRUE(RequestDrain(dirs.fast(), [&](const Progress& p) { seen.push_back(p); }).ok());
  ASSERT_EQ(seen.size(), 4u);
  EXPECT_EQ(seen.back().done, 3u);
  EXPECT_EQ(seen.back().total, 3u);
  EXPECT_EQ(seen.back().unit, "segments");

  h.fail_drain = true;
  Status s = RequestDrain(dirs.fast(), nullptr);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("home unreachable second line"), std::string::npos) << s.message();

  ASSERT_TRUE(RequestStop(dirs.fast()).ok());
  EXPECT_EQ(h.stops.load(), 1);

  std::vector<std::string> lines;
  ASSERT_TRUE(ControlRequest(dirs.fast(), "frobnicate", 5000, [&](const std::string& l) { lines.push_back(l); }).ok());
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_EQ(lines[0].rfind("error unknown command", 0), 0u) << lines[0];

  server->Stop();
  EXPECT_NE(::lstat((dirs.fast() + "/control.sock").c_str(), &st), 0) << "the socket file is removed at stop";
  s = QueryStatus(dirs.fast(), &vs);
  EXPECT_TRUE(s.IsNotFound());
  EXPECT_NE(s.message().find("no daemon is serving"), std::string::npos) << s.message();
}

TEST(ControlProtocolTest, ManyConcurrentClients) {
  test::TempDirs dirs;
  FakeHandler h;
  std::unique_ptr<ControlServer> server;
  ASSERT_TRUE(ControlServer::Start(dirs.fast(), &h, &server).ok());
  std::atomic<int> ok{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 20; ++i) {
        VolumeStatus vs;
        if (QueryStatus(dirs.fast(), &vs).ok() && vs.uuid == "fake-uuid") ok++;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(ok.load(), 160);
  EXPECT_EQ(h.status_calls.load(), 160u);
}

TEST(ControlProtocolTest, NothingListening) {
  test::TempDirs dirs;
  VolumeStatus vs;
  Status s = QueryStatus(dirs.fast(), &vs);
  EXPECT_TRUE(s.IsNotFound()) << s.ToString();
  EXPECT_NE(s.message().find("is it mounted?"), std::string::npos);

  // A stale socket left by a crashed daemon: refused connection, same answer.
  int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::string path = dirs.fast() + "/control.sock";
  std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  ::close(fd);
  s = QueryStatus(dirs.fast(), &vs);
  EXPECT_TRUE(s.IsNotFound()) << s.ToString();

  // ...and a new server replaces it.
  FakeHandler h;
  std::unique_ptr<ControlServer> server;
  ASSERT_TRUE(ControlServer::Start(dirs.fast(), &h, &server).ok());
  EXPECT_TRUE(QueryStatus(dirs.fast(), &vs).ok());
}

TEST(ControlProtocolTest, RefusesANonSocketInTheWay) {
  test::TempDirs dirs;
  std::filesystem::create_symlink("/etc/passwd", dirs.fast() + "/control.sock");
  FakeHandler h;
  std::unique_ptr<ControlServer> server;
  Status s = ControlServer::Start(dirs.fast(), &h, &server);
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("not a socket"), std::string::npos) << s.message();
  EXPECT_TRUE(std::filesystem::is_symlink(dirs.fast() + "/control.sock")) << "left untouched";
}

TEST(ControlProtocolTest, LongFastPath) {
  test::TempDirs dirs;
  std::string fast = dirs.root() + "/" + std::string(100, 'a') + "/" + std::string(100, 'b');
  std::filesystem::create_directories(fast);
  ASSERT_GT(fast.size() + 13, sizeof(sockaddr_un::sun_path));
  FakeHandler h;
  std::unique_ptr<ControlServer> server;
  Status s = ControlServer::Start(fast, &h, &server);
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_TRUE(std::filesystem::is_socket(fast + "/control.sock"));
  VolumeStatus vs;
  s = QueryStatus(fast, &vs);
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(vs.uuid, "fake-uuid");
}

TEST(ControlProtocolTest, SilentClientTimesOutWithoutBlockingOthers) {
  test::TempDirs dirs;
  FakeHandler h;
  std::unique_ptr<ControlServer> server;
  ASSERT_TRUE(ControlServer::Start(dirs.fast(), &h, &server).ok());
  int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::string path = dirs.fast() + "/control.sock";
  std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
  ASSERT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);  // says nothing
  VolumeStatus vs;
  EXPECT_TRUE(QueryStatus(dirs.fast(), &vs).ok());
  server->Stop();  // cuts the silent one too
  ::close(fd);
}

}  // namespace
}  // namespace boostvol::control
