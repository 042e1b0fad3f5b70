// boostvol check FAST [--repair]: offline consistency check; changes nothing,
// unless --repair: then RepairVolume first (keeps the log's consistent prefix,
// drops the rest, reports the blocks that lost their newest copy), then the check.
#include <CLI/CLI.hpp>
#include <cstdio>

#include "boostvol/volume.h"
#include "cli/cli.h"
#include "cli/logging.h"
#include "cli/mounts.h"
#include "cli/progress.h"

namespace boostvol::cli {
namespace {

struct CheckArgs {
  std::string fast;
  bool repair = false;
};

// At most this many lost block numbers are listed; the rest are counted.
constexpr size_t kMaxListedBlocks = 32;

int RunCheck(const CheckArgs& a, const GlobalOptions& g) {
  if (Status s = LogToStderr(g.log_level.empty() ? "warn" : g.log_level); !s.ok()) return Fail(s);
  std::string fast;
  if (Status s = RealPath(a.fast, &fast); !s.ok()) return Fail(s, "FAST");
  std::string mnt;
  if (FindMountOfFast(fast, &mnt)) {
    return Fail(kExitRefused, fast + " is mounted on " + mnt + "; unmount it first (boostvol unmount " + mnt + ")");
  }
  if (a.repair) {
    ProgressPrinter rbar(stderr);
    RepairReport rr;
    Status rs = RepairVolume(fast, [&](const Progress& p) { rbar.Update(p); }, &rr);
    rbar.Finish();
    if (!rs.ok()) return Fail(rs, "repair failed");
    std::printf("%s\n", rr.summary.c_str());
    if (!rr.lost_blocks.empty()) {
      std::printf("image blocks (4096 bytes each) that lost their newest copy:");
      for (size_t i = 0; i < rr.lost_blocks.size() && i < kMaxListedBlocks; i++)
        std::printf(" %llu", static_cast<unsigned long long>(rr.lost_blocks[i]));
      if (rr.lost_blocks.size() > kMaxListedBlocks) std::printf(" ... (%zu in all)", rr.lost_blocks.size());
      std::printf("\n");
    }
  }
  ProgressPrinter bar(stderr);
  CheckReport report;
  Status s = CheckVolume(fast, [&](const Progress& p) { bar.Update(p); }, &report);
  bar.Finish();
  if (!s.ok()) return Fail(s, "check could not run");
  if (!report.summary.empty()) {
    std::printf("%s\n", report.summary.c_str());
  } else {
    std::printf("checked %llu log records, %llu blocks; %llu blocks not yet home\n",
                static_cast<unsigned long long>(report.records_checked),
                static_cast<unsigned long long>(report.blocks_checked),
                static_cast<unsigned long long>(report.dirty_blocks));
  }
  if (report.problems.empty()) {
    std::printf("consistent\n");
    return kExitOk;
  }
  std::printf("%zu problem(s):\n", report.problems.size());
  for (const std::string& p : report.problems) std::printf("  - %s\n", p.c_str());
  return kExitIo;
}

}  // namespace

void AddCheckCommand(CLI::App& app, const GlobalOptions& g, int* exit_code) {
  auto a = std::make_shared<CheckArgs>();
  CLI::App* c = app.add_subcommand(
      "check", "Verify an unmounted volume: meta.db, every live log record's checksums, the home stamp");
  c->footer(std::string("Exit 0 if consistent (after --repair: repaired and now consistent), 3 if problems were "
                        "found or repair failed, 2 if the volume is mounted.\n") +
            kExitCodesHelp);
  c->add_option("FAST", a->fast, "The volume's fast directory")->required();
  c->add_flag("--repair", a->repair,
              "Repair first: keep the log's consistent prefix, drop every record from the first damaged one on "
              "(listing the image blocks that lose their newest copy), drop damaged segment/checkpoint rows of "
              "meta.db; then check");
  c->callback([a, &g, exit_code] { *exit_code = RunCheck(*a, g); });
}

}  // namespace boostvol::cli
