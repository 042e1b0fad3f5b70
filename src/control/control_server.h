// ControlServer: the daemon's end of FAST/control.sock (protocol in
// docs/architecture.md, "Control socket protocol").
//
// One thread accepts; each connection is served on its own short-lived thread
// (a drain may take minutes). The socket file is 0600 inside the 0700 FAST
// dir, and every peer's credentials are checked (SO_PEERCRED): only the
// daemon's effective uid and root are served; others get one `error` line.
//
// The server knows nothing of Volume: it calls a ControlHandler, so tests can
// serve a fake.
//
// Thread-safety: Start/Stop from one thread; the handler is called from the
// connection threads, concurrently.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "boostvol/status.h"
#include "boostvol/volume.h"
#include "control/socket_address.h"
#include "control/status_json.h"
#include "util/thread_annotations.h"

namespace boostvol::control {

class ControlHandler {
 public:
  virtual ~ControlHandler() = default;
  virtual VolumeStatus GetStatus() = 0;
  // Blocks until drained; calls progress from the calling thread.
  virtual Status Drain(const ProgressFn& progress) = 0;
  // Asks the daemon to unmount and exit cleanly; returns at once.
  virtual void RequestStop() = 0;
  // Rates for the status line (default: not measured).
  virtual StatusRates GetRates() { return StatusRates{}; }
  // Live tunables (Volume::SetTunable / GetTunables). The defaults refuse.
  virtual Status SetTunable(const std::string& key, const std::string& value) {
    return Status::Unsupported("this daemon has no tunables");
  }
  virtual std::vector<std::pair<std::string, std::string>> GetTunables() { return {}; }
};

class ControlServer {
 public:
  // Binds FAST/control.sock and starts serving. The caller holds the volume
  // lock, so a socket file already there is a crashed daemon's leftover and is
  // replaced; anything else by that name (a symlink, a file) is refused.
  static Status Start(const std::string& fast_dir, ControlHandler* handler, std::unique_ptr<ControlServer>* out);

  // Stop(), if not done.
  ~ControlServer();
  ControlServer(const ControlServer&) = delete;
  ControlServer& operator=(const ControlServer&) = delete;

  // Stops accepting, removes the socket file, cuts open connections and joins
  // their threads. A drain in progress is waited for (a Volume cannot cancel
  // one); that is logged.
  void Stop();

 private:
  struct Connection {
    int fd = -1;
    std::thread thread;
    std::atomic<bool> done{false};
  };

  ControlServer(std::string fast_dir, ControlHandler* handler);
  void AcceptLoop();
  void Serve(Connection* c);
  void ReapFinished() BV_REQUIRES(mu_);

  const std::string fast_dir_;
  ControlHandler* const handler_;
  DirHandle dir_;
  int listen_fd_ = -1;
  int wake_fd_[2] = {-1, -1};  // a pipe: Stop() writes to wake the accept loop
  std::thread accept_thread_;
  bool bound_ = false;  // the socket file is ours to remove
  bool stopped_ = false;
  Mutex mu_;
  std::vector<std::unique_ptr<Connection>> conns_ BV_GUARDED_BY(mu_);
};

// Writes all of `s` to a socket (MSG_NOSIGNAL). False if the peer is gone.
bool SendAll(int fd, const std::string& s);

}  // namespace boostvol::control
