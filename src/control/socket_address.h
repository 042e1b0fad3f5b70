// Where the control socket lives: FAST/control.sock.
//
// sun_path holds 108 bytes. When "FAST/control.sock" does not fit, the socket
// is bound or connected through the directory descriptor instead:
// "/proc/self/fd/N/control.sock", N an O_PATH descriptor of FAST held open for
// the call. Both ends do this independently, so any FAST path length works.
#pragma once

#include <sys/socket.h>
#include <sys/un.h>

#include <string>

#include "boostvol/status.h"

namespace boostvol::control {

inline constexpr const char* kSocketName = "control.sock";

// An O_PATH descriptor of a directory; closed when destroyed.
class DirHandle {
 public:
  DirHandle() = default;
  ~DirHandle();
  DirHandle(const DirHandle&) = delete;
  DirHandle& operator=(const DirHandle&) = delete;
  Status Open(const std::string& path);
  int fd() const { return fd_; }

 private:
  int fd_ = -1;
};

// Fills *addr for FAST/control.sock, going through dir.fd() if the path is too long.
void MakeSocketAddress(const std::string& fast_dir, const DirHandle& dir, sockaddr_un* addr, socklen_t* len);

}  // namespace boostvol::control
