// boostvol drain FAST|MOUNTPOINT: migrate every cached write home, durably.
// Through the daemon if one serves the volume; otherwise in this process
// (Volume::Open, Drain, Close).
#include <CLI/CLI.hpp>
#include <cstdio>

#include "boostvol/volume.h"
#include "cli/cli.h"
#include "cli/logging.h"
#include "cli/mounts.h"
#include "cli/progress.h"
#include "control/control_client.h"

namespace boostvol::cli {
namespace {

struct DrainArgs {
  std::string target;
};

int RunDrain(const DrainArgs& a, const GlobalOptions& g) {
  if (Status s = LogToStderr(g.log_level.empty() ? "warn" : g.log_level); !s.ok()) return Fail(s);
  std::string fast, mountpoint;
  if (Status s = ResolveVolumeArg(a.target, &fast, &mountpoint); !s.ok()) return Fail(s);
  ProgressPrinter bar(stdout);
  auto progress = [&](const Progress& p) {
    if (p.total == 0) return;  // nothing to drain: no bar
    Progress q = p;
    if (q.what.empty()) q.what = "drain";
    bar.Update(q);
  };
  Status s = control::RequestDrain(fast, progress);
  bar.Finish();
  if (s.ok()) {
    std::printf("drained: every write is home in the slow dir\n");
    return kExitOk;
  }
  if (!s.IsNotFound()) return Fail(s, "drain failed");

  // No daemon: do it here.
  std::printf("no daemon serves %s; draining in this process\n", fast.c_str());
  OpenOptions oo;
  oo.fast_dir = fast;
  ProgressPrinter rbar(stderr);
  oo.progress = [&](const Progress& p) { rbar.Update(p); };
  std::unique_ptr<Volume> volume;
  s = Volume::Open(oo, &volume);
  rbar.Finish();
  if (!s.ok()) return Fail(OpenExitCode(s), "cannot open the volume: " + s.message());
  s = volume->Drain(progress);
  bar.Finish();
  Status c = volume->Close();
  if (!s.ok()) return Fail(s, "drain failed");
  if (!c.ok()) return Fail(c, "drained, but closing the volume failed");
  std::printf("drained: every write is home in the slow dir\n");
  return kExitOk;
}

}  // namespace

void AddDrainCommand(CLI::App& app, const GlobalOptions& g, int* exit_code) {
  auto a = std::make_shared<DrainArgs>();
  CLI::App* c = app.add_subcommand(
      "drain", "Copy every cached write home to SLOW and wait until it is durable there (mounted or not)");
  c->footer(kExitCodesHelp);
  c->add_option("TARGET", a->target, "The volume's FAST dir or its mountpoint")->required();
  c->callback([a, &g, exit_code] { *exit_code = RunDrain(*a, g); });
}

}  // namespace boostvol::cli
