#include "cli/mounts.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdlib>
#include <fstream>
#include <sstream>

namespace boostvol::cli {
namespace {

constexpr const char* kSourcePrefix = "boostvol:";

// mountinfo escapes space, tab, newline and backslash as \ooo.
std::string Unescape(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 3 < s.size()) {
      const std::string oct = s.substr(i + 1, 3);
      if (oct.size() == 3 && oct.find_first_not_of("01234567") == std::string::npos) {
        out += static_cast<char>(std::strtol(oct.c_str(), nullptr, 8));
        i += 3;
        continue;
      }
    }
    out += s[i];
  }
  return out;
}

std::string ReadFirstLine(const std::string& path) {
  std::ifstream in(path);
  std::string line;
  std::getline(in, line);
  return line;
}

}  // namespace

std::vector<std::string> ListDir(const std::string& path) {
  std::vector<std::string> out;
  DIR* d = ::opendir(path.c_str());
  if (d == nullptr) return out;
  while (dirent* e = ::readdir(d)) {
    std::string n = e->d_name;
    if (n != "." && n != "..") out.push_back(n);
  }
  ::closedir(d);
  return out;
}

std::vector<MountEntry> ReadMountInfo() {
  std::vector<MountEntry> out;
  std::ifstream in("/proc/self/mountinfo");
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream ss(line);
    std::vector<std::string> f;
    std::string tok;
    while (ss >> tok) f.push_back(tok);
    size_t dash = 0;
    for (size_t i = 6; i < f.size(); ++i) {
      if (f[i] == "-") {
        dash = i;
        break;
      }
    }
    if (dash == 0 || dash + 2 >= f.size()) continue;
    MountEntry e;
    e.dev = f[2];
    e.mount_point = Unescape(f[4]);
    e.fstype = f[dash + 1];
    e.source = Unescape(f[dash + 2]);
    out.push_back(std::move(e));
  }
  return out;
}

bool FindBoostvolMount(const std::string& mountpoint, MountEntry* out) {
  bool found = false;
  for (const MountEntry& e : ReadMountInfo()) {  // the last one is on top
    if (e.mount_point == mountpoint && e.fstype == "fuse.boostvol") {
      *out = e;
      found = true;
    } else if (e.mount_point == mountpoint) {
      found = false;
    }
  }
  return found;
}

bool FindMountOfFast(const std::string& fast_dir, std::string* mountpoint) {
  for (const MountEntry& e : ReadMountInfo()) {
    if (e.fstype == "fuse.boostvol" && e.source == kSourcePrefix + fast_dir) {
      *mountpoint = e.mount_point;
      return true;
    }
  }
  return false;
}

Status RealPath(const std::string& path, std::string* out) {
  char buf[PATH_MAX];
  if (::realpath(path.c_str(), buf) == nullptr) {
    int err = errno;
    if (err == ENOENT || err == ENOTDIR) return Status::NotFound(path + " does not exist");
    return Status::IoError(err, "cannot resolve " + path);
  }
  *out = buf;
  return Status::OK();
}

Status ResolveVolumeArg(const std::string& arg, std::string* fast_dir, std::string* mountpoint) {
  mountpoint->clear();
  std::string real;
  BV_RETURN_IF_ERROR(RealPath(arg, &real));
  MountEntry m;
  if (FindBoostvolMount(real, &m)) {
    if (m.source.rfind(kSourcePrefix, 0) != 0) {
      return Status::InvalidArgument(real + " is a boostvol mount whose source '" + m.source +
                                     "' does not name its FAST dir");
    }
    *fast_dir = m.source.substr(std::string(kSourcePrefix).size());
    *mountpoint = real;
    return Status::OK();
  }
  struct stat st;
  if (::stat(real.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    return Status::InvalidArgument(arg + " is not a directory (expected a FAST dir or a boostvol mountpoint)");
  }
  if (::access((real + "/meta.db").c_str(), F_OK) != 0) {
    return Status::InvalidArgument(arg + " is neither a boostvol FAST dir (no meta.db in it) nor a boostvol mountpoint");
  }
  *fast_dir = real;
  return Status::OK();
}

bool VolumeLockHeld(const std::string& fast_dir, std::string* note) {
  note->clear();
  int dfd = ::open(fast_dir.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0) return false;
  int fd = ::openat(dfd, "lock", O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
  ::close(dfd);
  if (fd < 0) return false;
  bool held = false;
  if (::flock(fd, LOCK_SH | LOCK_NB) != 0) {
    held = errno == EWOULDBLOCK;
  } else {
    ::flock(fd, LOCK_UN);
  }
  if (held) {
    char buf[128];
    ssize_t n = ::pread(fd, buf, sizeof(buf) - 1, 0);
    if (n > 0) {
      note->assign(buf, static_cast<size_t>(n));
      while (!note->empty() && (note->back() == '\n' || note->back() == '\0')) note->pop_back();
    }
  }
  ::close(fd);
  return held;
}

std::vector<LoopDevice> FindLoopDevicesBackedBy(const std::string& image_path) {
  std::vector<LoopDevice> out;
  for (const std::string& name : ListDir("/sys/block")) {
    if (name.rfind("loop", 0) != 0) continue;
    const std::string base = "/sys/block/" + name;
    std::string backing = ReadFirstLine(base + "/loop/backing_file");
    if (backing != image_path) continue;
    LoopDevice d;
    d.name = name;
    d.dev = ReadFirstLine(base + "/dev");
    for (const std::string& sub : ListDir(base)) {
      if (sub.rfind(name + "p", 0) == 0) d.partition_devs.push_back(ReadFirstLine(base + "/" + sub + "/dev"));
    }
    d.holders = ListDir(base + "/holders");
    out.push_back(std::move(d));
  }
  return out;
}

}  // namespace boostvol::cli
