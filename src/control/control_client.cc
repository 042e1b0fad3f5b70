#include "control/control_client.h"

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "control/control_server.h"
#include "control/socket_address.h"
#include "control/status_json.h"

namespace boostvol::control {
namespace {

class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

Status NotServing(const std::string& fast_dir) {
  return Status::NotFound("no daemon is serving " + fast_dir + "; is it mounted?");
}

Status DaemonError(const std::string& msg) { return Status::IoError(0, "the daemon reports: " + msg); }

}  // namespace

Status ControlRequest(const std::string& fast_dir, const std::string& command, int timeout_ms,
                      const std::function<void(const std::string&)>& on_line) {
  DirHandle dir;
  BV_RETURN_IF_ERROR(dir.Open(fast_dir));
  Fd sock(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (sock.get() < 0) return Status::IoError(errno, "cannot create a unix socket");
  sockaddr_un addr;
  socklen_t len;
  MakeSocketAddress(fast_dir, dir, &addr, &len);
  int rc;
  do {
    rc = ::connect(sock.get(), reinterpret_cast<sockaddr*>(&addr), len);
  } while (rc != 0 && errno == EINTR);
  if (rc != 0) {
    int err = errno;
    if (err == ENOENT || err == ECONNREFUSED || err == ENOTSOCK) return NotServing(fast_dir);
    if (err == EACCES || err == EPERM) {
      return Status::IoError(err, "cannot connect to " + fast_dir + "/" + kSocketName +
                                      ": the daemon belongs to another user (run as that user or root)");
    }
    return Status::IoError(err, "cannot connect to " + fast_dir + "/" + kSocketName);
  }
  if (!SendAll(sock.get(), command + "\n")) {
    return Status::IoError(errno, "the daemon closed the control connection");
  }
  std::string buf;
  char chunk[4096];
  for (;;) {
    if (timeout_ms > 0) {
      pollfd p{sock.get(), POLLIN, 0};
      int n = ::poll(&p, 1, timeout_ms);
      if (n < 0 && errno == EINTR) continue;
      if (n == 0) {
        return Status::IoError(ETIMEDOUT, "the daemon serving " + fast_dir + " did not answer '" + command + "' within " +
                                              std::to_string(timeout_ms / 1000) + " s");
      }
    }
    ssize_t n = ::recv(sock.get(), chunk, sizeof(chunk), 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      return Status::IoError(errno, "reading from the control socket");
    }
    if (n == 0) break;
    buf.append(chunk, static_cast<size_t>(n));
    size_t nl;
    while ((nl = buf.find('\n')) != std::string::npos) {
      std::string line = buf.substr(0, nl);
      buf.erase(0, nl + 1);
      on_line(line);
    }
  }
  if (!buf.empty()) on_line(buf);
  return Status::OK();
}

Status QueryStatus(const std::string& fast_dir, VolumeStatus* st, std::string* json, StatusRates* rates) {
  std::string reply;
  bool got = false;
  BV_RETURN_IF_ERROR(ControlRequest(fast_dir, "status", 10000, [&](const std::string& line) {
    if (!got) {
      reply = line;
      got = true;
    }
  }));
  if (!got) return Status::IoError(0, "the daemon closed the connection without a status");
  if (reply.rfind("error ", 0) == 0) return DaemonError(reply.substr(6));
  if (json != nullptr) *json = reply;
  if (rates != nullptr) BV_RETURN_IF_ERROR(StatusRatesFromJson(reply, rates));
  return VolumeStatusFromJson(reply, st);
}

Status RequestSetTunable(const std::string& fast_dir, const std::string& key, const std::string& value) {
  for (const std::string& s : {key, value}) {
    if (s.empty() || s.find_first_of(" \n\r") != std::string::npos) {
      return Status::InvalidArgument("a tunable's name and value may not be empty or contain spaces");
    }
  }
  Status result = Status::IoError(0, "the daemon did not answer 'set'");
  BV_RETURN_IF_ERROR(ControlRequest(fast_dir, "set " + key + " " + value, 10000, [&](const std::string& line) {
    if (line == "ok") result = Status::OK();
    else if (line.rfind("error ", 0) == 0) result = Status::InvalidArgument(line.substr(6));
  }));
  return result;
}

Status RequestGetTunables(const std::string& fast_dir, std::vector<std::pair<std::string, std::string>>* out) {
  out->clear();
  Status result = Status::IoError(0, "the daemon did not answer 'get'");
  BV_RETURN_IF_ERROR(ControlRequest(fast_dir, "get", 10000, [&](const std::string& line) {
    if (line == "ok") {
      result = Status::OK();
    } else if (line.rfind("error ", 0) == 0) {
      result = DaemonError(line.substr(6));
    } else if (size_t sp = line.find(' '); sp != std::string::npos) {
      out->emplace_back(line.substr(0, sp), line.substr(sp + 1));
    }
  }));
  return result;
}

Status RequestDrain(const std::string& fast_dir, const ProgressFn& progress) {
  Status result = Status::IoError(0, "the daemon closed the connection before the drain finished");
  BV_RETURN_IF_ERROR(ControlRequest(fast_dir, "drain", 0, [&](const std::string& line) {
    if (line.rfind("progress ", 0) == 0) {
      Progress p;
      p.what = "drain";
      char* end = nullptr;
      const char* s = line.c_str() + 9;
      p.done = std::strtoull(s, &end, 10);
      p.total = std::strtoull(end, &end, 10);
      while (*end == ' ') ++end;
      p.unit = end;
      if (progress) progress(p);
    } else if (line == "ok") {
      result = Status::OK();
    } else if (line.rfind("error ", 0) == 0) {
      result = DaemonError(line.substr(6));
    }
  }));
  return result;
}

Status RequestStop(const std::string& fast_dir) {
  Status result = Status::IoError(0, "the daemon did not acknowledge 'stop'");
  BV_RETURN_IF_ERROR(ControlRequest(fast_dir, "stop", 10000, [&](const std::string& line) {
    if (line == "ok") result = Status::OK();
    else if (line.rfind("error ", 0) == 0) result = DaemonError(line.substr(6));
  }));
  return result;
}

}  // namespace boostvol::control
