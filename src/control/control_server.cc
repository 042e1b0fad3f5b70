#include "control/control_server.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <spdlog/spdlog.h>

#include "control/status_json.h"
#include "util/thread_name.h"

namespace boostvol::control {
namespace {

std::string OneLine(std::string s) {
  for (char& c : s) {
    if (c == '\n' || c == '\r') c = ' ';
  }
  return s;
}

// Reads one command line (without '\n'); false on timeout, EOF or overlong.
bool ReadCommand(int fd, std::string* line) {
  line->clear();
  char c;
  while (line->size() < 256) {
    ssize_t n = ::recv(fd, &c, 1, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    if (c == '\n') return true;
    *line += c;
  }
  return false;
}

}  // namespace

bool SendAll(int fd, const std::string& s) {
  size_t off = 0;
  while (off < s.size()) {
    ssize_t n = ::send(fd, s.data() + off, s.size() - off, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    off += static_cast<size_t>(n);
  }
  return true;
}

ControlServer::ControlServer(std::string fast_dir, ControlHandler* handler)
    : fast_dir_(std::move(fast_dir)), handler_(handler) {}

Status ControlServer::Start(const std::string& fast_dir, ControlHandler* handler,
                            std::unique_ptr<ControlServer>* out) {
  std::unique_ptr<ControlServer> s(new ControlServer(fast_dir, handler));
  BV_RETURN_IF_ERROR(s->dir_.Open(fast_dir));

  // A leftover socket from a crashed daemon: replace it. Anything else: refuse.
  struct stat st;
  if (::fstatat(s->dir_.fd(), kSocketName, &st, AT_SYMLINK_NOFOLLOW) == 0) {
    if (!S_ISSOCK(st.st_mode)) {
      return Status::InvalidArgument(fast_dir + "/" + kSocketName +
                                     " exists and is not a socket; move it away and mount again");
    }
    if (::unlinkat(s->dir_.fd(), kSocketName, 0) != 0 && errno != ENOENT) {
      return Status::IoError(errno, "cannot remove the stale " + fast_dir + "/" + kSocketName);
    }
  } else if (errno != ENOENT) {
    return Status::IoError(errno, "cannot stat " + fast_dir + "/" + kSocketName);
  }

  s->listen_fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (s->listen_fd_ < 0) return Status::IoError(errno, "cannot create the control socket");
  sockaddr_un addr;
  socklen_t len;
  MakeSocketAddress(fast_dir, s->dir_, &addr, &len);
  if (::bind(s->listen_fd_, reinterpret_cast<sockaddr*>(&addr), len) != 0) {
    return Status::IoError(errno, "cannot bind " + fast_dir + "/" + kSocketName);
  }
  // Bound with the process umask (077 in the daemon); make it exactly 0600.
  if (::fchmodat(s->dir_.fd(), kSocketName, 0600, 0) != 0) {
    int err = errno;
    ::unlinkat(s->dir_.fd(), kSocketName, 0);
    return Status::IoError(err, "cannot chmod " + fast_dir + "/" + kSocketName);
  }
  if (::listen(s->listen_fd_, 16) != 0) {
    int err = errno;
    ::unlinkat(s->dir_.fd(), kSocketName, 0);
    return Status::IoError(err, "cannot listen on " + fast_dir + "/" + kSocketName);
  }
  if (::pipe2(s->wake_fd_, O_CLOEXEC) != 0) {
    int err = errno;
    ::unlinkat(s->dir_.fd(), kSocketName, 0);
    return Status::IoError(err, "cannot create a pipe for the control server");
  }
  s->bound_ = true;
  s->accept_thread_ = std::thread([p = s.get()] { p->AcceptLoop(); });
  spdlog::info("control socket {}/{} is listening", fast_dir, kSocketName);
  *out = std::move(s);
  return Status::OK();
}

ControlServer::~ControlServer() {
  Stop();
  if (listen_fd_ >= 0) ::close(listen_fd_);
  for (int fd : wake_fd_) {
    if (fd >= 0) ::close(fd);
  }
}

void ControlServer::Stop() {
  if (stopped_) return;
  stopped_ = true;
  if (accept_thread_.joinable()) {
    char b = 's';
    while (::write(wake_fd_[1], &b, 1) < 0 && errno == EINTR) {
    }
    accept_thread_.join();
  }
  // Only the socket we bound; never whatever Start() refused to touch.
  struct stat st;
  if (bound_ && ::fstatat(dir_.fd(), kSocketName, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISSOCK(st.st_mode)) {
    ::unlinkat(dir_.fd(), kSocketName, 0);
  }
  std::vector<std::unique_ptr<Connection>> conns;
  {
    MutexLock l(&mu_);
    conns.swap(conns_);
  }
  size_t busy = 0;
  for (auto& c : conns) {
    if (!c->done.load()) {
      ++busy;
      ::shutdown(c->fd, SHUT_RDWR);
    }
  }
  if (busy > 0) {
    spdlog::info("control: waiting for {} control request(s) to finish (a drain ends after its current batch attempt)",
                 busy);
  }
  for (auto& c : conns) {
    if (c->thread.joinable()) c->thread.join();
    ::close(c->fd);
  }
}

void ControlServer::ReapFinished() {
  for (auto it = conns_.begin(); it != conns_.end();) {
    if ((*it)->done.load()) {
      (*it)->thread.join();
      ::close((*it)->fd);
      it = conns_.erase(it);
    } else {
      ++it;
    }
  }
}

void ControlServer::AcceptLoop() {
  NameThisThread("bv-control");
  for (;;) {
    pollfd fds[2] = {{listen_fd_, POLLIN, 0}, {wake_fd_[0], POLLIN, 0}};
    int n = ::poll(fds, 2, -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      spdlog::error("control: poll failed: {}", std::strerror(errno));
      return;
    }
    if (fds[1].revents != 0) return;
    if (fds[0].revents == 0) continue;
    int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno != EINTR && errno != EAGAIN && errno != ECONNABORTED) {
        spdlog::warn("control: accept failed: {}", std::strerror(errno));
      }
      continue;
    }
    MutexLock l(&mu_);
    ReapFinished();
    auto c = std::make_unique<Connection>();
    c->fd = fd;
    Connection* raw = c.get();
    c->thread = std::thread([this, raw] { Serve(raw); });
    conns_.push_back(std::move(c));
  }
}

void ControlServer::Serve(Connection* c) {
  NameThisThread("bv-control-cli");
  const int fd = c->fd;
  ucred cred{};
  socklen_t cl = sizeof(cred);
  if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &cl) != 0) {
    spdlog::warn("control: cannot read the peer's credentials: {}", std::strerror(errno));
    SendAll(fd, "error cannot check your credentials\n");
  } else if (cred.uid != 0 && cred.uid != ::geteuid()) {
    spdlog::warn("control: refused a request from uid {} (pid {}): only uid {} and root are served", cred.uid,
                 cred.pid, ::geteuid());
    SendAll(fd, "error permission denied: only uid " + std::to_string(::geteuid()) + " and root may control this volume\n");
  } else {
    timeval tv{5, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    std::string cmd;
    if (!ReadCommand(fd, &cmd)) {
      spdlog::warn("control: no complete command from pid {} within 5 s", cred.pid);
      SendAll(fd, "error expected one command line: status, drain, stop, get or set KEY VALUE\n");
    } else if (cmd == "status") {
      SendAll(fd, StatusLineJson(handler_->GetStatus(), handler_->GetRates()) + "\n");
    } else if (cmd == "get") {
      for (const auto& [key, value] : handler_->GetTunables()) {
        if (!SendAll(fd, key + " " + value + "\n")) break;
      }
      SendAll(fd, "ok\n");
    } else if (cmd.rfind("set ", 0) == 0) {
      const std::string rest = cmd.substr(4);
      const size_t sp = rest.find(' ');
      if (sp == std::string::npos || sp == 0 || sp + 1 >= rest.size()) {
        SendAll(fd, "error usage: set KEY VALUE\n");
      } else {
        const std::string key = rest.substr(0, sp), value = rest.substr(sp + 1);
        spdlog::info("control: set {}={} requested by pid {}", OneLine(key), OneLine(value), cred.pid);
        Status s = handler_->SetTunable(key, value);
        SendAll(fd, s.ok() ? std::string("ok\n") : "error " + OneLine(s.message()) + "\n");
      }
    } else if (cmd == "drain") {
      spdlog::info("control: drain requested by pid {}", cred.pid);
      bool peer_gone = false;
      Status s = handler_->Drain([&](const Progress& p) {
        if (peer_gone) return;
        std::string line = "progress " + std::to_string(p.done) + " " + std::to_string(p.total);
        if (!p.unit.empty()) line += " " + p.unit;
        peer_gone = !SendAll(fd, line + "\n");
      });
      if (s.ok()) {
        spdlog::info("control: drain finished");
        SendAll(fd, "ok\n");
      } else {
        spdlog::error("control: drain failed: {}", s.ToString());
        SendAll(fd, "error " + OneLine(s.ToString()) + "\n");
      }
    } else if (cmd == "stop") {
      spdlog::info("control: stop requested by pid {}", cred.pid);
      SendAll(fd, "ok\n");
      handler_->RequestStop();
    } else {
      spdlog::warn("control: unknown command '{}' from pid {}", OneLine(cmd.substr(0, 64)), cred.pid);
      SendAll(fd, "error unknown command; expected status, drain, stop, get or set KEY VALUE\n");
    }
  }
  // The fd stays open (closed after the join) so Stop() never shuts down a
  // reused descriptor number; shutdown tells the client we are done.
  ::shutdown(fd, SHUT_RDWR);
  c->done.store(true);
}

}  // namespace boostvol::control
