// boostvol mount FAST MOUNTPOINT [-f] [-o OPTS] [--loop [--loop-direct-io on|off]] [--log-level LEVEL]
//
// Startup order (DESIGN.md 7 and docs/architecture.md):
//   1. resolve paths, refuse what is obviously wrong (no threads yet);
//   2. umask 077; fork unless -f (the child does setsid);
//   3. logging: FAST/boostvol.log in the background, stderr in the foreground;
//   4. PR_SET_IO_FLUSHER, before any thread exists, so every thread inherits it;
//   5. block SIGTERM/SIGINT/SIGHUP: threads started now (engine, control) never
//      take them; the FUSE loop thread unblocks them for itself and its workers;
//   6. Volume::Open (lock, recovery with progress), control socket, FUSE mount;
//   7. report ready (to the parent, and to systemd through $NOTIFY_SOCKET);
//      with --loop, attach MOUNTPOINT/image to a loop device first (the
//      parent does it; with -f a helper thread, while FUSE serves losetup);
//      serve until unmounted, signalled or told to stop;
//   8. stop the control socket (a drain in progress ends), Volume::Close() (checkpoint), exit 0; all of step 8
//      within BOOSTVOL_STOP_WAIT seconds, else exit without a checkpoint (src/cli/stop_watchdog.h).
#include <sys/prctl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <spdlog/spdlog.h>
#include <thread>

#include "boostvol/volume.h"
#include "cli/cli.h"
#include "cli/daemon.h"
#include "cli/daemon_exit.h"
#include "cli/logging.h"
#include "cli/loop.h"
#include "cli/mounts.h"
#include "cli/stop_watchdog.h"
#include "control/control_client.h"
#include "control/control_server.h"
#include "control/rate_meter.h"
#include "fuse/fuse_server.h"
#include "util/thread_name.h"

#ifndef PR_SET_IO_FLUSHER
#define PR_SET_IO_FLUSHER 57
#endif

namespace boostvol::cli {
namespace {

struct MountArgs {
  std::string fast, mountpoint, log_level;
  std::vector<std::string> options;
  bool foreground = false;
  bool loop = false;                // --loop or -o loop_attach
  std::string loop_direct_io = "on";  // --loop-direct-io or -o loop_direct_io=
};

// What the control socket may do to the running daemon.
class DaemonControl : public control::ControlHandler {
 public:
  DaemonControl(Volume* v, FuseStopper* stopper) : volume_(v), stopper_(stopper) {}
  VolumeStatus GetStatus() override { return volume_->GetStatus(); }
  Status Drain(const ProgressFn& progress) override { return volume_->Drain(progress); }
  void RequestStop() override { stopper_->RequestStop(); }
  control::StatusRates GetRates() override { return rates_.Rates(); }
  Status SetTunable(const std::string& key, const std::string& value) override {
    return volume_->SetTunable(key, value);
  }
  std::vector<std::pair<std::string, std::string>> GetTunables() override { return volume_->GetTunables(); }

  // Samples the byte counters once a second for the rates, until StopSampling().
  void StartSampling() {
    sampler_ = std::thread([this] {
      NameThisThread("bv-rates");
      for (;;) {
        {
          MutexLock l(&mu_);
          if (stop_) return;
        }
        const VolumeStatus st = volume_->GetStatus();
        const uint64_t bs = st.log_total_blocks ? st.cache_bytes / st.log_total_blocks : 4096;
        rates_.AddSample(control::RateMeter::Clock::now(), st.bytes_written, st.migrated_bytes, st.dirty_blocks * bs);
        MutexLock l(&mu_);
        if (stop_) return;
        cv_.WaitFor(std::chrono::seconds(1));
      }
    });
  }
  void StopSampling() {
    {
      MutexLock l(&mu_);
      stop_ = true;
      cv_.SignalAll();
    }
    if (sampler_.joinable()) sampler_.join();
  }

 private:
  Volume* const volume_;
  FuseStopper* const stopper_;
  control::RateMeter rates_;
  Mutex mu_;
  CondVar cv_{&mu_};
  bool stop_ BV_GUARDED_BY(mu_) = false;
  std::thread sampler_;
};

// Takes boostvol's own -o options (loop_attach, loop_direct_io=on|off) out
// of the list handed to FUSE.
Status TakeOwnOptions(MountArgs* a) {
  std::vector<std::string> rest;
  for (const std::string& o : a->options) {
    if (o == "loop_attach") {
      a->loop = true;
    } else if (o.rfind("loop_direct_io=", 0) == 0) {
      a->loop_direct_io = o.substr(15);
    } else {
      rest.push_back(o);
    }
  }
  a->options = std::move(rest);
  if (a->loop_direct_io != "on" && a->loop_direct_io != "off") {
    return Status::InvalidArgument("loop direct I/O must be 'on' or 'off', not '" + a->loop_direct_io + "'");
  }
  ParsedMountOptions parsed;  // refuse a bad uid=, gid=, poll_us= before the volume is opened
  BV_RETURN_IF_ERROR(ParseMountOptions(a->options, &parsed));
  if (parsed.writeback_cache && a->loop && a->loop_direct_io == "on") {
    return Status::InvalidArgument("-o writeback_cache is for a buffered loop device: add --loop-direct-io off "
                                   "(a direct-I/O loop bypasses the page cache, so the writeback cache would only "
                                   "make buffered readers of the image see stale data; docs/tuning.md)");
  }
  return Status::OK();
}

// --loop: attach MOUNTPOINT/image and say which device it got.
Status AttachAndReport(const MountArgs& a, const std::string& mnt, std::string* dev) {
  const bool want_dio = a.loop_direct_io == "on";
  bool dio = false;
  BV_RETURN_IF_ERROR(AttachLoop(mnt + "/image", want_dio, dev, &dio));
  std::printf("%s\n", dev->c_str());
  std::fflush(stdout);
  if (want_dio && !dio) {
    std::fprintf(stderr, "boostvol: warning: %s runs with buffered I/O: the kernel refused direct I/O on %s/image\n",
                 dev->c_str(), mnt.c_str());
  }
  // Only the daemon has a logger set up; the parent's default one would
  // write to stdout, which scripts read for the device.
  if (a.foreground) spdlog::info("attached {}/image to {} (direct I/O {})", mnt, *dev, dio ? "on" : "off");
  return Status::OK();
}

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
  auto last_sent = last;
  oo.progress = [&](const Progress& p) {
    auto now = std::chrono::steady_clock::now();
    const bool final = p.total > 0 && p.done >= p.total;
    if (now - last_sent >= std::chrono::milliseconds(100) || final) {
      last_sent = now;
      Progress q = p;
      if (q.what.empty()) q.what = "recovery";
      rep->Progress(q);  // the parent draws it (a bar on a terminal)
    }
    if (now - last < std::chrono::seconds(1) && !final) return;
    last = now;
    spdlog::info("{}: {}/{}{}", p.what.empty() ? std::string("recovery") : p.what, p.done,
                 p.total ? std::to_string(p.total) : std::string("?"), p.unit.empty() ? "" : " " + p.unit);
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
  handler.StartSampling();
  std::unique_ptr<control::ControlServer> ctl;
  if (Status s = control::ControlServer::Start(fast, &handler, &ctl); !s.ok()) {
    spdlog::error("cannot start the control socket: {}", s.ToString());
    handler.StopSampling();
    (void)volume->Close();
    rep->Failed(ExitCodeFor(s), "cannot start the control socket: " + s.ToString());
    return ExitCodeFor(s);
  }

  FuseServerOptions fo;
  fo.mountpoint = mnt;
  fo.fsname = "boostvol:" + fast;
  fo.options = a.options;
  fo.stopper = &stopper;
  // -f --loop: losetup opens MOUNTPOINT/image, which this process serves, so
  // it runs on a helper thread once the FUSE loop is up.
  std::thread looper;
  std::atomic<bool> loop_failed{false};
  const std::string ready = "READY=1\nSTATUS=serving " + mnt + "/image";
  fo.on_mounted = [&] {
    if (a.foreground) {
      std::fprintf(stderr, "boostvol: %s mounted on %s/image; stop with Ctrl-C or: boostvol unmount %s\n",
                   fast.c_str(), mnt.c_str(), mnt.c_str());
    }
    rep->Ready();
    if (a.foreground && a.loop) {
      looper = std::thread([&] {
        NameThisThread("bv-losetup");
        std::string dev;
        if (Status ls = AttachAndReport(a, mnt, &dev); !ls.ok()) {
          spdlog::error("{}; stopping", ls.message());
          std::fprintf(stderr, "boostvol: %s; unmounting\n", ls.message().c_str());
          loop_failed = true;
          stopper.RequestStop();
          return;
        }
        NotifySystemd(ready + " on " + dev);
      });
    } else {
      NotifySystemd(ready);
    }
  };
  Status served = RunFuseServer(volume.get(), fo);
  NotifySystemd("STOPPING=1");
  // The stop from here on is bounded (src/cli/stop_watchdog.h): a home that never answers must not keep the
  // lock on FAST, and `boostvol unmount`, waiting for ever. A drain in progress ends first (BeginClose).
  StopWatchdog watchdog(StopWaitSeconds(), fast, kExitIo);
  volume->BeginClose();
  if (looper.joinable()) looper.join();
  ctl->Stop();
  ctl.reset();
  handler.StopSampling();
  Status closed = volume->Close();
  watchdog.Disarm();
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
  return loop_failed ? kExitIo : kExitOk;
}

int RunDaemon(const MountArgs& a, const std::string& fast, const std::string& mnt, const std::string& level,
              StartupReporter* rep);

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
  if (Status s = TakeOwnOptions(&a); !s.ok()) return Fail(s);
  if (a.loop && ::geteuid() != 0) {
    return Fail(kExitUsage, "--loop needs root (losetup); as a user, mount without it and run: udisksctl loop-setup -f " +
                                mnt + "/image");
  }

  ::umask(077);
  StartupReporter rep;
  if (!a.foreground) {
    int code = 0;
    if (!rep.Daemonize(&code)) return RunDaemon(a, fast, mnt, level, &rep);
    // A person at a terminal is told what to do next; scripts get the device
    // alone on stdout (like losetup --show) and nothing else.
    const bool person = ::isatty(STDERR_FILENO) == 1;
    if (code != kExitOk) return code;
    if (!a.loop) {
      if (person) {
        std::fprintf(stderr, "boostvol: %s is served as %s/image; attach it with: losetup -f --show --direct-io=on "
                             "%s/image (or mount with --loop); stop with: boostvol unmount %s\n",
                     fast.c_str(), mnt.c_str(), mnt.c_str(), mnt.c_str());
      }
      return code;
    }
    // The daemon is serving; attach the loop device from here.
    std::string dev;
    if (Status s = AttachAndReport(a, mnt, &dev); !s.ok()) {
      Fail(s);
      std::fprintf(stderr, "boostvol: unmounting %s again\n", mnt.c_str());
      DaemonExitWatch watch(fast);
      if (control::RequestStop(fast).ok()) {
        std::string note;
        if (!watch.Wait(std::chrono::steady_clock::now() + std::chrono::seconds(60), &note)) {
          std::fprintf(stderr, "boostvol: the daemon (%s) has not stopped after 60 s; see %s/boostvol.log\n",
                       note.c_str(), fast.c_str());
        }
      }
      return ExitCodeFor(s);
    }
    if (person) {
      std::fprintf(stderr, "boostvol: %s is served as %s/image on %s; make a filesystem (mkfs.ext4 %s) or mount "
                           "it; stop with: boostvol unmount %s\n",
                   fast.c_str(), mnt.c_str(), dev.c_str(), dev.c_str(), mnt.c_str());
    }
    return kExitOk;
  }
  return RunDaemon(a, fast, mnt, level, &rep);
}

int RunDaemon(const MountArgs& a, const std::string& fast, const std::string& mnt, const std::string& level,
              StartupReporter* rep) {
  Status ls = a.foreground ? LogToStderr(level) : LogToFastDir(fast, level);
  if (!ls.ok()) {
    rep->Failed(ExitCodeFor(ls), ls.ToString());
    return ExitCodeFor(ls);
  }
  return Serve(a, fast, mnt, rep);
}

}  // namespace

void AddMountCommand(CLI::App& app, const GlobalOptions& g, int* exit_code) {
  auto a = std::make_shared<MountArgs>();
  CLI::App* c = app.add_subcommand(
      "mount", "Open the volume in FAST and serve it as MOUNTPOINT/image (runs in the background unless -f)");
  c->footer(std::string("Attach the image with --loop, or: losetup -f --show --direct-io=on MOUNTPOINT/image "
                        "(as a user: udisksctl loop-setup -f MOUNTPOINT/image)\n") +
            "The daemon logs to FAST/boostvol.log in the background. Mount options: allow_other, ro, uid=N, gid=N "
            "and other FUSE mount options, plus boostvol's loop_attach, loop_direct_io=on|off, poll_us=N and "
            "writeback_cache (for a buffered loop: docs/tuning.md); fstab-only options (defaults, nofail, _netdev, "
            "x-*, ...) are ignored.\n"
            "Also a mount helper: mount -t fuse.boostvol FAST MOUNTPOINT -o OPTS, and /etc/fstab (docs/cli.md).\n" +
            kExitCodesHelp);
  c->add_option("FAST", a->fast, "The volume's fast directory")->required();
  c->add_option("MOUNTPOINT", a->mountpoint, "An existing directory where `image` appears")->required();
  c->add_flag("-f,--foreground", a->foreground, "Stay in the foreground and log to stderr");
  c->add_option("-o", a->options, "Mount options, comma-separated (may repeat)")->allow_extra_args(false);
  c->add_flag("--loop", a->loop,
              "Then attach MOUNTPOINT/image to a free loop device (losetup -f --show) and print the device; needs "
              "root. Also -o loop_attach");
  c->add_option("--loop-direct-io", a->loop_direct_io,
                "on (default): the loop device does direct I/O on the image, so its data is not cached twice in "
                "the page cache; off: buffered. Also -o loop_direct_io=on|off")
      ->check(CLI::IsMember({"on", "off"}));
  c->add_option("--log-level", a->log_level, "trace, debug, info (default), warn, error, critical, off");
  c->callback([a, &g, exit_code] { *exit_code = RunMount(*a, g); });
}

}  // namespace boostvol::cli
