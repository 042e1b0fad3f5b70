// Shared pieces of the `boostvol` command: exit codes, error printing and the
// subcommands' entry points (one file per subcommand).
//
// Exit codes (also in `boostvol --help` and docs/cli.md):
//   0  success
//   1  usage or bad input (flags, sizes, paths that are not what they must be)
//   2  refused: busy, in use, already exists, mismatch, not a boostvol mount
//   3  I/O error or corruption (`check` found problems)
//   4  timed out waiting for the daemon
#pragma once

#include <string>
#include <vector>

#include "boostvol/status.h"

namespace CLI {
class App;
}

namespace boostvol::cli {

enum ExitCode { kExitOk = 0, kExitUsage = 1, kExitRefused = 2, kExitIo = 3, kExitTimeout = 4 };

inline constexpr const char* kExitCodesHelp =
    "Exit codes: 0 success; 1 usage or bad input; 2 refused (busy, in use, exists, mismatch, not a boostvol "
    "mount); 3 I/O error or corruption; 4 timed out waiting for the daemon.";

// The exit code a failed Status maps to.
int ExitCodeFor(const Status& s);

// For Volume::Open failures: the paths were validated by the command, so an
// InvalidArgument from Open is the volume refusing a pairing (FAST and SLOW of
// different volumes, a foreign home): 2, like Busy.
int OpenExitCode(const Status& s);

// Prints "boostvol: MESSAGE" to stderr (one line) and returns `code`.
int Fail(int code, const std::string& message);
// Prints the status's message and returns ExitCodeFor(s).
int Fail(const Status& s, const std::string& context = "");

// The global --log-level ("" = the command's default).
struct GlobalOptions {
  std::string log_level;
};

// Each Add*Command registers its subcommand; its callback stores the exit
// code in *exit_code.
void AddCreateCommand(CLI::App& app, const GlobalOptions& g, int* exit_code);
void AddMountCommand(CLI::App& app, const GlobalOptions& g, int* exit_code);
void AddStatusCommand(CLI::App& app, const GlobalOptions& g, int* exit_code);
void AddDrainCommand(CLI::App& app, const GlobalOptions& g, int* exit_code);
void AddCheckCommand(CLI::App& app, const GlobalOptions& g, int* exit_code);
void AddRecoverHomeCommand(CLI::App& app, const GlobalOptions& g, int* exit_code);
void AddUnmountCommand(CLI::App& app, const GlobalOptions& g, int* exit_code);
void AddSetCommand(CLI::App& app, const GlobalOptions& g, int* exit_code);
void AddGetCommand(CLI::App& app, const GlobalOptions& g, int* exit_code);

}  // namespace boostvol::cli
