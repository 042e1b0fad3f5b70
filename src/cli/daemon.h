// Daemonization for `boostvol mount` and the startup report.
//
// The parent forks before anything else has started (no threads yet). The
// child calls setsid(), opens the volume and mounts; it reports progress
// ("G DONE TOTAL WHAT<tab>UNIT" lines), then "ready" ("R") or an error with
// its exit code ("E CODE MESSAGE") through a pipe. The
// parent prints what it hears (recovery progress as a bar with rate and ETA
// on a terminal, plain lines otherwise) and exits 0 on ready, or with the
// child's code. In the foreground there is no pipe: reports go straight to
// stderr.
#pragma once

#include <string>

#include "boostvol/volume.h"

namespace boostvol::cli {

class StartupReporter {
 public:
  StartupReporter() = default;
  StartupReporter(const StartupReporter&) = delete;
  StartupReporter& operator=(const StartupReporter&) = delete;
  ~StartupReporter();

  // Forks. Returns true in the parent, with the exit code to use in
  // *parent_exit_code; false in the (session-leader) child, which continues.
  // On fork failure returns true with an error printed.
  bool Daemonize(int* parent_exit_code);

  // To the parent, which draws it; nothing in the foreground (the log on
  // stderr has it).
  void Progress(const boostvol::Progress& p);
  // The mount is live. In the background, stdin, stdout and stderr are
  // redirected to /dev/null from here on.
  void Ready();
  void Failed(int exit_code, const std::string& message);
  bool reported() const { return reported_; }

 private:
  void Send(const std::string& line);
  int fd_ = -1;  // write end in the child; -1 in the foreground
  bool reported_ = false;
};

}  // namespace boostvol::cli
