#include "cli/loop.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <vector>

namespace boostvol::cli {

Status AttachLoop(const std::string& image, bool direct_io, std::string* dev, bool* direct_io_in_effect) {
  int out[2];
  if (::pipe2(out, O_CLOEXEC) != 0) return Status::IoError(errno, "cannot create a pipe for losetup");
  int err_pipe[2];
  if (::pipe2(err_pipe, O_CLOEXEC) != 0) {
    ::close(out[0]);
    ::close(out[1]);
    return Status::IoError(errno, "cannot create a pipe for losetup");
  }
  std::fflush(nullptr);
  const pid_t pid = ::fork();
  if (pid < 0) {
    const int e = errno;
    for (int fd : {out[0], out[1], err_pipe[0], err_pipe[1]}) ::close(fd);
    return Status::IoError(e, "cannot fork losetup");
  }
  if (pid == 0) {
    ::dup2(out[1], STDOUT_FILENO);
    ::dup2(err_pipe[1], STDERR_FILENO);
    std::vector<const char*> argv = {"losetup", "-f", "--show"};
    if (direct_io) argv.push_back("--direct-io=on");
    argv.push_back(image.c_str());
    argv.push_back(nullptr);
    char* const* args = const_cast<char* const*>(argv.data());
    // mount.fuse3 runs us with an empty environment (no PATH), so try
    // util-linux's usual places first.
    ::execv("/usr/sbin/losetup", args);
    ::execv("/sbin/losetup", args);
    ::execvp("losetup", args);
    std::fprintf(stderr, "cannot run losetup: %s\n", std::strerror(errno));
    ::_exit(127);
  }
  ::close(out[1]);
  ::close(err_pipe[1]);
  auto slurp = [](int fd) {
    std::string s;
    char buf[512];
    for (;;) {
      ssize_t n = ::read(fd, buf, sizeof(buf));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
      s.append(buf, static_cast<size_t>(n));
    }
    ::close(fd);
    while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
    return s;
  };
  // losetup writes little; reading stdout to EOF, then stderr, cannot block it.
  std::string got = slurp(out[0]);
  std::string errors = slurp(err_pipe[0]);
  int st = 0;
  while (::waitpid(pid, &st, 0) < 0 && errno == EINTR) {
  }
  if (!WIFEXITED(st) || WEXITSTATUS(st) != 0 || got.rfind("/dev/", 0) != 0) {
    for (char& c : errors) {
      if (c == '\n') c = ' ';
    }
    return Status::IoError(EIO, "losetup -f --show " + image + " failed" + (errors.empty() ? "" : ": " + errors) +
                                    (::geteuid() == 0 ? "" : " (attaching a loop device needs root; as a user try: "
                                                             "udisksctl loop-setup -f " + image + ")"));
  }
  *dev = got;
  *direct_io_in_effect = false;
  std::ifstream dio("/sys/block/" + got.substr(5) + "/loop/dio");
  int v = 0;
  if (dio >> v) *direct_io_in_effect = v == 1;
  return Status::OK();
}

bool NotifySystemd(const std::string& state) {
  const char* path = std::getenv("NOTIFY_SOCKET");
  if (path == nullptr || (path[0] != '/' && path[0] != '@')) return false;
  const size_t len = std::strlen(path);
  sockaddr_un addr{};
  if (len >= sizeof(addr.sun_path)) return false;
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path, len);
  if (addr.sun_path[0] == '@') addr.sun_path[0] = '\0';  // abstract namespace
  const int fd = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  const socklen_t alen = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + len);
  const ssize_t n = ::sendto(fd, state.data(), state.size(), MSG_NOSIGNAL, reinterpret_cast<sockaddr*>(&addr), alen);
  ::close(fd);
  return n == static_cast<ssize_t>(state.size());
}

}  // namespace boostvol::cli
