// Shows the progress of a long operation (drain, check, recovery) on stderr
// (stdout for drain): a one-line bar with rate and ETA on a terminal, plain
// lines (at most one a second) otherwise. A Progress with total 0 (not known)
// shows the count and the rate only.
#pragma once

#include <chrono>
#include <cstdio>
#include <string>

#include "boostvol/volume.h"

namespace boostvol::cli {

class ProgressPrinter {
 public:
  explicit ProgressPrinter(FILE* out);
  void Update(const Progress& p);
  // Ends the bar's line (if one was drawn).
  void Finish();

 private:
  FILE* const out_;
  const bool tty_;
  bool drawn_ = false;
  std::chrono::steady_clock::time_point start_;
  std::chrono::steady_clock::time_point last_;
  uint64_t start_done_ = 0;
  bool started_ = false;
};

}  // namespace boostvol::cli
