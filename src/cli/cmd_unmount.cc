// boostvol unmount MOUNTPOINT
//
// 1. MOUNTPOINT must be a boostvol mount (fstype fuse.boostvol).
// 2. Loop devices backed by MOUNTPOINT/image: if one (or a partition of it) is
//    mounted, used as swap or held by device-mapper, refuse and name it;
//    otherwise detach them (LOOP_CLR_FD).
// 3. Unmount the FUSE mount (root: umount2; others: fusermount3 -u), never
//    lazily: if something still has the image open, the kernel refuses.
// 4. Wait (bounded) until the daemon released FAST/lock, i.e. wrote its
//    checkpoint, and until its process has exited.
#include <fcntl.h>
#include <linux/loop.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <thread>

#include "cli/cli.h"
#include "cli/daemon_exit.h"
#include "cli/logging.h"
#include "cli/mounts.h"
#include "meta/meta_store.h"

namespace boostvol::cli {
namespace {

struct UnmountArgs {
  std::string mountpoint;
  int timeout_s = 120;
};

bool UsedAsSwap(const std::string& devname) {
  std::ifstream in("/proc/swaps");
  std::string line;
  const std::string path = "/dev/" + devname;
  while (std::getline(in, line)) {
    if (line.rfind(path + " ", 0) == 0 || line.rfind(path + "p", 0) == 0) return true;
  }
  return false;
}

// "" if the loop device is free to detach, else why not.
std::string LoopInUse(const LoopDevice& d, const std::vector<MountEntry>& mounts) {
  for (const MountEntry& m : mounts) {
    if (m.dev == d.dev) return "/dev/" + d.name + " is mounted on " + m.mount_point + "; unmount it first (umount " + m.mount_point + ")";
    for (const std::string& p : d.partition_devs) {
      if (m.dev == p) return "a partition of /dev/" + d.name + " is mounted on " + m.mount_point + "; unmount it first (umount " + m.mount_point + ")";
    }
  }
  if (!d.holders.empty()) {
    return "/dev/" + d.name + " is held by " + d.holders.front() +
           " (device-mapper, LVM, dm-crypt?); remove that first (dmsetup ls, vgchange -an, cryptsetup close)";
  }
  if (UsedAsSwap(d.name)) return "/dev/" + d.name + " is used as swap; swapoff it first";
  return "";
}

bool StillBacked(const std::string& name, const std::string& image) {
  std::ifstream in("/sys/block/" + name + "/loop/backing_file");
  std::string line;
  std::getline(in, line);
  return line == image;
}

int Detach(const LoopDevice& d, const std::string& image) {
  const std::string path = "/dev/" + d.name;
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Fail(kExitIo, "cannot open " + path + " to detach it: " + std::strerror(errno));
  int rc = ::ioctl(fd, LOOP_CLR_FD, 0);
  int err = errno;
  ::close(fd);
  if (rc != 0 && err != ENXIO) {
    return Fail(err == EBUSY ? kExitRefused : kExitIo, "cannot detach " + path + ": " + std::strerror(err));
  }
  // If someone else has it open, the kernel detaches it when they close it.
  for (int i = 0; i < 50 && StillBacked(d.name, image); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  if (StillBacked(d.name, image)) {
    return Fail(kExitRefused, path + " is still open by some process (fuser -v " + path +
                                  "); it detaches itself when closed. Run unmount again then.");
  }
  std::printf("detached %s\n", path.c_str());
  return kExitOk;
}

int UnmountFuse(const std::string& mnt) {
  if (::geteuid() == 0) {
    for (int i = 0;; ++i) {
      if (::umount2(mnt.c_str(), 0) == 0) return kExitOk;
      int err = errno;
      if (err == EBUSY && i < 50) {  // udev or blkid may hold the image briefly
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
        continue;
      }
      if (err == EBUSY) {
        return Fail(kExitRefused, mnt + " is busy: a process still has " + mnt +
                                      "/image open (fuser -vm " + mnt + "); close it and run unmount again");
      }
      return Fail(kExitIo, "cannot unmount " + mnt + ": " + std::strerror(err));
    }
  }
  std::fflush(nullptr);
  pid_t pid = ::fork();
  if (pid < 0) return Fail(kExitIo, std::string("cannot fork: ") + std::strerror(errno));
  if (pid == 0) {
    ::execlp("fusermount3", "fusermount3", "-u", mnt.c_str(), static_cast<char*>(nullptr));
    std::fprintf(stderr, "boostvol: cannot run fusermount3: %s\n", std::strerror(errno));
    ::_exit(127);
  }
  int st = 0;
  while (::waitpid(pid, &st, 0) < 0 && errno == EINTR) {
  }
  if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
    return Fail(kExitRefused, "fusermount3 -u " + mnt + " failed (see its message above); nothing was unmounted");
  }
  return kExitOk;
}

int RunUnmount(const UnmountArgs& a, const GlobalOptions& g) {
  if (Status s = LogToStderr(g.log_level.empty() ? "warn" : g.log_level); !s.ok()) return Fail(s);
  std::string mnt;
  if (Status s = RealPath(a.mountpoint, &mnt); !s.ok()) return Fail(s);
  MountEntry m;
  if (!FindBoostvolMount(mnt, &m)) {
    return Fail(kExitRefused, mnt + " is not a boostvol mount (no fuse.boostvol mount there in /proc/self/mountinfo)");
  }
  const std::string prefix = "boostvol:";
  const std::string fast = m.source.rfind(prefix, 0) == 0 ? m.source.substr(prefix.size()) : "";
  const std::string image = mnt + "/image";

  std::vector<LoopDevice> loops = FindLoopDevicesBackedBy(image);
  const std::vector<MountEntry> mounts = ReadMountInfo();
  for (const LoopDevice& d : loops) {
    std::string why = LoopInUse(d, mounts);
    if (!why.empty()) return Fail(kExitRefused, why);
  }
  for (const LoopDevice& d : loops) {
    if (int rc = Detach(d, image); rc != kExitOk) return rc;
  }

  // Taken while the daemon still holds FAST/lock (it does while mounted).
  DaemonExitWatch watch(fast);
  if (int rc = UnmountFuse(mnt); rc != kExitOk) return rc;
  std::printf("unmounted %s\n", mnt.c_str());

  if (fast.empty()) return kExitOk;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(a.timeout_s);
  std::string note;
  const bool gone = watch.Wait(deadline, &note, [](const std::string& holder) {
    std::printf("waiting for the daemon (%s) to write its checkpoint and exit...\n", holder.c_str());
    std::fflush(stdout);
  });
  if (!gone) {
    return Fail(kExitTimeout, "the daemon (" + note + ") has not exited after " + std::to_string(a.timeout_s) +
                                  " s (it may still hold " + fast + "/lock); see " + fast + "/boostvol.log");
  }
  // The daemon is gone; whether it stopped *cleanly* is what meta.db says (a
  // checkpoint refused by a full or failing FAST leaves the volume marked
  // unclean: the next mount replays the log, nothing is lost, but this is not
  // a clean stop and must not be reported as one).
  std::unique_ptr<meta::MetaStore> store;
  meta::Checkpoint cp;
  bool clean = false;
  Status s = meta::MetaStore::Open(fast + "/meta.db", true, &store);
  if (s.ok()) s = store->LoadCheckpoint(&cp, &clean);
  if (!s.ok()) {
    return Fail(kExitIo, "the daemon has stopped, but whether it left a checkpoint cannot be read (" + s.ToString() +
                             "); the next mount recovers from the log if it must. See " + fast + "/boostvol.log");
  }
  if (!clean) {
    return Fail(kExitIo, "the daemon has stopped WITHOUT a clean checkpoint (see " + fast +
                             "/boostvol.log: FAST full or failing, or a home that did not answer?); nothing "
                             "acknowledged is lost: the next mount recovers from the log. " + fast + " is free");
  }
  std::printf("the daemon has stopped cleanly; %s is free\n", fast.c_str());
  return kExitOk;
}

}  // namespace

void AddUnmountCommand(CLI::App& app, const GlobalOptions& g, int* exit_code) {
  auto a = std::make_shared<UnmountArgs>();
  CLI::App* c = app.add_subcommand(
      "unmount", "Detach loop devices on MOUNTPOINT/image, unmount, and wait for the daemon to stop cleanly");
  c->alias("umount");
  c->footer(std::string("Refuses (changing nothing) if a loop device on the image is mounted, used as swap or held "
                        "by device-mapper, or if the image is still open.\n") +
            kExitCodesHelp);
  c->add_option("MOUNTPOINT", a->mountpoint, "A boostvol mountpoint")->required();
  c->add_option("--timeout", a->timeout_s, "Seconds to wait for the daemon to exit")->capture_default_str();
  c->callback([a, &g, exit_code] { *exit_code = RunUnmount(*a, g); });
}

}  // namespace boostvol::cli
