// boostvol recover-home SLOW|rbd:POOL/IMAGE: after FAST was lost for good,
// finishes the migration batch the lost cache left half applied, so the home
// copy (SLOW/image) can be attached without boostvol (DESIGN.md 2.7).
#include <CLI/CLI.hpp>
#include <cstdio>

#include "boostvol/volume.h"
#include "cli/cli.h"
#include "cli/logging.h"

namespace boostvol::cli {
namespace {

int RunRecoverHome(const RecoverHomeOptions& o, const GlobalOptions& g) {
  if (Status s = LogToStderr(g.log_level.empty() ? "warn" : g.log_level); !s.ok()) return Fail(s);
  RecoverHomeReport report;
  Status s = RecoverHome(o, &report);
  if (!s.ok()) return Fail(s, "cannot recover the home");
  std::printf("%s\n", report.summary.c_str());
  return kExitOk;
}

}  // namespace

void AddRecoverHomeCommand(CLI::App& app, const GlobalOptions& g, int* exit_code) {
  auto o = std::make_shared<RecoverHomeOptions>();
  CLI::App* c = app.add_subcommand(
      "recover-home",
      "FAST was lost for good: finish the home's last migration batch from its journal, so that SLOW/image (a stale "
      "but crash-consistent disk) can be attached without boostvol");
  c->footer(std::string("Changes nothing else: the stamp keeps naming the volume, whose cache still mounts if it "
                        "comes back. Refused (2) while a cache holds the home. To go on with a fresh cache instead, "
                        "use `boostvol create NEWFAST SLOW --adopt` (which does this too).\n") +
            kExitCodesHelp);
  c->add_option("SLOW", o->slow, "The home: the volume's slow directory, or rbd:POOL/IMAGE")->required();
  c->add_option("--ceph-conf", o->ceph_conf, "ceph.conf for an rbd: home (default: $CEPH_CONF, /etc/ceph/ceph.conf)");
  c->add_option("--ceph-id", o->ceph_id, "Ceph client name for an rbd: home, without 'client.' (default: admin)");
  c->callback([o, &g, exit_code] { *exit_code = RunRecoverHome(*o, g); });
}

}  // namespace boostvol::cli
