// boostvol mount FAST MOUNTPOINT [-f] [-o OPTS] [--log-level LEVEL]
//
// Startup order (DESIGN.md 7 and docs/architecture.md):
//   1. resolve paths, refuse what is obviously wrong (no threads yet);
//   2. umask 077; fork unless -f (the child does setsid);
//   3. logging: FAST/boostvol.log in the background, stderr in the foreground;
//   4. PR_SET_IO_FLUSHER, before any thread exists, so every thread inherits it;
//   5. block SIGTERM/SIGINT/SIGHUP: threads started now (engine, control) never
//      take them; the FUSE loop thread unblocks them for itself and its workers;
//   6. Volume::Open (lock, recovery with progress), control socket, FUSE mount;
//   7. report ready; serve until unmounted, signalled or told to stop;
//   8. stop the control socket, Volume::Close() (checkpoint), exit 0.
#include <sys/prctl.h>
#include <signal.h>
#include <sys/stat.h>

#include <CLI/CLI.hpp>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <spdlog/spdlog.h>

#include "boostvol/volume.h"
#include "cli/cli.h"
#include "cli/daemon.h"
#include "cli/logging.h"
#include "cli/mounts.h"
#include "control/control_server.h"
#include "fuse/fuse_server.h"

#ifndef PR_SET_IO_FLUSHER
#define PR_SET_IO_FLUSHER 57
#endif

namespace boostvol::cli {
namespace {

struct MountArgs {
  std::string fast, mountpoint, log_level;
  std::vector<std::string> options;
  bool foreground = false;
};

// What the control socket may do to the running daemon.
class DaemonControl : public control::ControlHandler {
 public:
  DaemonControl(Volume* v, FuseStopper* stopper) : volume_(v), stopper_(stopper) {}
  VolumeStatus GetStatus() override { return volume_->GetStatus(); }
  Status Drain(const ProgressFn& progress) override { return volume_->Drain(progress); }
  void RequestStop() override { stopper_->RequestStop(); }

 private:
  Volume* const volume_;
  FuseStopper* const stopper_;
};

void SetIoFlusher() {
  if (::prctl(PR_SET_IO_FLUSHER, 1, 0, 0, 0) == 0) {
    spdlog::info("PR_SET_IO_FLUSHER set: the daemon's I/O is not throttled behind the dirty pages it must clean");
    return;
  }
  const int err = errno;
  spdlog::warn(
      "cannot set PR_SET_IO_FLUSHER ({}; it needs Linux 5.6+ and CAP_SYS_RESOURCE). Without it, a loop device or a "
      "filesystem on this mount can deadlock under memory pressure: the kernel may throttle the daemon's own "
      "allocations and writes behind dirty pages that only the daemon can clean. Run the daemon as root (or with "
      "CAP_SYS_RESOURCE) if the image backs a loop device.",
      std::strerror(err));
}

int Serve(const MountArgs& a, const std::string& fast, const std::string& mnt, StartupReporter* rep) {
  SetIoFlusher();
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);

  spdlog::info("boostvol {} opening {} (pid {})", BOOSTVOL_VERSION, fast, ::getpid());
  OpenOptions oo;
  oo.fast_dir = fast;
  auto last = std::chrono::steady_clock::now() - std::chrono::hours(1);
  oo.progress = [&](const Progress& p) {
    auto now = std::chrono::steady_clock::now();
    if (now - last < std::chrono::seconds(1) && p.done < p.total) return;
    last = now;
    std::string line = (p.what.empty() ? std::string("recovery") : p.what) + ": " + std::to_string(p.done) + "/" +
                       std::to_string(p.total) + (p.unit.empty() ? "" : " " + p.unit);
    spdlog::info("{}", line);
    rep->Progress(line);
  };
  std::unique_ptr<Volume> volume;
  if (Status s = Volume::Open(oo, &volume); !s.ok()) {
    spdlog::error("cannot open the volume in {}: {}", fast, s.ToString());
    const int code = OpenExitCode(s);
    rep->Failed(code, "cannot open the volume in " + fast + ": " + s.message());
    return code;
  }

  FuseStopper stopper;
  DaemonControl handler(volume.get(), &stopper);
  std::unique_ptr<control::ControlServer> ctl;
  if (Status s = control::ControlServer::Start(fast, &handler, &ctl); !s.ok()) {
    spdlog::error("cannot start the control socket: {}", s.ToString());
    (void)volume->Close();
    rep->Failed(ExitCodeFor(s), "cannot start the control socket: " + s.ToString());
    return ExitCodeFor(s);
  }

  FuseServerOptions fo;
  fo.mountpoint = mnt;
  fo.fsname = "boostvol:" + fast;
  fo.options = a.options;
  fo.stopper = &stopper;
  fo.on_mounted = [&] {
    if (a.foreground) {
      std::fprintf(stderr, "boostvol: %s mounted on %s/image; stop with Ctrl-C or: boostvol unmount %s\n",
                   fast.c_str(), mnt.c_str(), mnt.c_str());
    }
    rep->Ready();
  };
  Status served = RunFuseServer(volume.get(), fo);
  ctl->Stop();
  ctl.reset();
  Status closed = volume->Close();
  if (!served.ok()) {
    spdlog::error("{}", served.ToString());
    rep->Failed(ExitCodeFor(served), served.ToString());
    return ExitCodeFor(served);
  }
  if (!closed.ok()) {
    spdlog::error("closing the volume failed: {}; the next mount recovers from the log", closed.ToString());
    return kExitIo;
  }
  spdlog::info("clean stop: checkpoint written, lock released");
  return kExitOk;
}

int RunMount(MountArgs a, const GlobalOptions& g) {
  const std::string level = !a.log_level.empty() ? a.log_level : !g.log_level.empty() ? g.log_level : "info";
  if (Status s = CheckLogLevel(level); !s.ok()) return Fail(s);
  std::string fast, mnt;
  if (Status s = RealPath(a.fast, &fast); !s.ok()) return Fail(s, "FAST");
  if (Status s = RealPath(a.mountpoint, &mnt); !s.ok()) return Fail(s, "MOUNTPOINT");
  struct stat st;
  if (::stat(mnt.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    return Fail(kExitUsage, "MOUNTPOINT " + a.mountpoint + " is not a directory");
  }
  MountEntry existing;
  if (FindBoostvolMount(mnt, &existing)) {
    return Fail(kExitRefused, mnt + " is already a boostvol mount (" + existing.source +
                                  "); unmount it first: boostvol unmount " + mnt);
  }
  std::string other, holder;
  if (FindMountOfFast(fast, &other)) {
    VolumeLockHeld(fast, &holder);
    return Fail(kExitRefused, fast + " is already mounted on " + other + (holder.empty() ? "" : " by the daemon with " + holder) +
                                  "; one daemon per volume");
  }
  // Checked here, before the fork, so that nothing (not even boostvol.log)
  // is created in a directory that holds no volume.
  if (::access((fast + "/meta.db").c_str(), F_OK) != 0) {
    return Fail(kExitUsage, "no boostvol volume in " + fast + " (meta.db is missing); create one with `boostvol create`");
  }
  std::vector<std::string> opts;
  for (const std::string& o : a.options) {
    for (std::string& one : SplitMountOptions(o)) opts.push_back(std::move(one));
  }
  a.options = std::move(opts);

  ::umask(077);
  StartupReporter rep;
  if (!a.foreground) {
    int code = 0;
    if (rep.Daemonize(&code)) return code;
  }
  Status ls = a.foreground ? LogToStderr(level) : LogToFastDir(fast, level);
  if (!ls.ok()) {
    rep.Failed(ExitCodeFor(ls), ls.ToString());
    return ExitCodeFor(ls);
  }
  return Serve(a, fast, mnt, &rep);
}

}  // namespace

void AddMountCommand(CLI::App& app, const GlobalOptions& g, int* exit_code) {
  auto a = std::make_shared<MountArgs>();
  CLI::App* c = app.add_subcommand(
      "mount", "Open the volume in FAST and serve it as MOUNTPOINT/image (runs in the background unless -f)");
  c->footer(std::string("Attach the image with: losetup -f --show MOUNTPOINT/image\n") +
            "The daemon logs to FAST/boostvol.log in the background. Mount options: allow_other, ro, uid=N, gid=N "
            "and other FUSE mount options; fstab-only options (defaults, nofail, _netdev, ...) are ignored.\n" +
            kExitCodesHelp);
  c->add_option("FAST", a->fast, "The volume's fast directory")->required();
  c->add_option("MOUNTPOINT", a->mountpoint, "An existing directory where `image` appears")->required();
  c->add_flag("-f,--foreground", a->foreground, "Stay in the foreground and log to stderr");
  c->add_option("-o", a->options, "Mount options, comma-separated (may repeat)")->allow_extra_args(false);
  c->add_option("--log-level", a->log_level, "trace, debug, info (default), warn, error, critical, off");
  c->callback([a, &g, exit_code] { *exit_code = RunMount(*a, g); });
}

}  // namespace boostvol::cli
