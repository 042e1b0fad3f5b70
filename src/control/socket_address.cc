#include "control/socket_address.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstring>

namespace boostvol::control {

DirHandle::~DirHandle() {
  if (fd_ >= 0) ::close(fd_);
}

Status DirHandle::Open(const std::string& path) {
  int fd = ::open(path.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) {
    int err = errno;
    if (err == ENOENT || err == ENOTDIR) return Status::NotFound(path + " is not a directory");
    return Status::IoError(err, "cannot open directory " + path);
  }
  if (fd_ >= 0) ::close(fd_);
  fd_ = fd;
  return Status::OK();
}

void MakeSocketAddress(const std::string& fast_dir, const DirHandle& dir, sockaddr_un* addr, socklen_t* len) {
  std::memset(addr, 0, sizeof(*addr));
  addr->sun_family = AF_UNIX;
  std::string path = fast_dir;
  while (path.size() > 1 && path.back() == '/') path.pop_back();
  path += "/";
  path += kSocketName;
  if (path.size() >= sizeof(addr->sun_path)) {
    path = "/proc/self/fd/" + std::to_string(dir.fd()) + "/" + kSocketName;
  }
  std::memcpy(addr->sun_path, path.data(), path.size());
  *len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + path.size() + 1);
}

}  // namespace boostvol::control
