// boostvol: a write-back cache for a disk image, in user space.
//
//   boostvol create FAST SLOW --size 8G [--cache-size 2G]
//   boostvol mount FAST MOUNTPOINT [-f] [-o OPTS]
//   losetup -f --show MOUNTPOINT/image
//   boostvol status FAST|MOUNTPOINT [--json]
//   boostvol drain FAST|MOUNTPOINT
//   boostvol check FAST
//   boostvol recover-home SLOW      (FAST lost for good: finish the home's last batch)
//   boostvol unmount MOUNTPOINT
//   boostvol set FAST|MOUNTPOINT KEY=VALUE...; boostvol get FAST|MOUNTPOINT [KEY]
//
// Also runs as a mount helper: invoked as mount.boostvol or
// mount.fuse.boostvol, or by mount.fuse3 as "boostvol FAST MOUNTPOINT -o
// OPTS", it behaves as "boostvol mount FAST MOUNTPOINT -o OPTS".
// See docs/cli.md.
#include <CLI/CLI.hpp>
#include <cstring>
#include <string>
#include <vector>

#include "cli/cli.h"

namespace {

const char* const kCommands[] = {"create", "mount", "status", "drain", "check", "recover-home", "unmount", "umount", "set", "get", "help"};

// Rewrites mount-helper invocations into "boostvol mount ...".
std::vector<std::string> NormalizeArgs(int argc, char** argv) {
  std::vector<std::string> args(argv, argv + argc);
  std::string base = args.empty() ? "boostvol" : args[0];
  if (size_t slash = base.rfind('/'); slash != std::string::npos) base = base.substr(slash + 1);
  bool helper = base.rfind("mount.", 0) == 0;
  if (!helper && args.size() >= 3 && !args[1].empty() && args[1][0] != '-') {
    helper = true;
    for (const char* c : kCommands) {
      if (args[1] == c) helper = false;
    }
  }
  if (helper) args.insert(args.begin() + 1, "mount");
  return args;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace boostvol::cli;
  CLI::App app{"boostvol: a write-back cache for a disk image, in user space.\n"
               "Writes land in a log on a FAST dir and are migrated home to an image file in a SLOW dir; the mount "
               "shows one file, MOUNTPOINT/image, for losetup."};
  app.footer(std::string(kExitCodesHelp) + "\nMore: docs/cli.md; `boostvol COMMAND --help`.");
  app.require_subcommand(1);
  app.set_version_flag("--version", std::string("boostvol ") + BOOSTVOL_VERSION);
  GlobalOptions g;
  app.add_option("--log-level", g.log_level, "trace, debug, info, warn, error, critical, off (default: warn; mount: info)")
      ->configurable(false);
  int exit_code = kExitOk;
  AddCreateCommand(app, g, &exit_code);
  AddMountCommand(app, g, &exit_code);
  AddStatusCommand(app, g, &exit_code);
  AddDrainCommand(app, g, &exit_code);
  AddCheckCommand(app, g, &exit_code);
  AddRecoverHomeCommand(app, g, &exit_code);
  AddUnmountCommand(app, g, &exit_code);
  AddSetCommand(app, g, &exit_code);
  AddGetCommand(app, g, &exit_code);

  std::vector<std::string> args = NormalizeArgs(argc, argv);
  std::vector<char*> cargs;
  for (std::string& a : args) cargs.push_back(a.data());
  try {
    app.parse(static_cast<int>(cargs.size()), cargs.data());
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);  // prints help, version or the error
    return rc == 0 ? kExitOk : kExitUsage;
  }
  return exit_code;
}
