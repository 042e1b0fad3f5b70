#include "cli/progress.h"

#include <unistd.h>

#include <algorithm>

namespace boostvol::cli {
namespace {

std::string Duration(double s) {
  if (s < 0 || s > 1e7) return "?";
  unsigned long t = static_cast<unsigned long>(s + 0.5);
  char buf[32];
  if (t >= 3600) std::snprintf(buf, sizeof(buf), "%lu:%02lu:%02lu", t / 3600, (t / 60) % 60, t % 60);
  else std::snprintf(buf, sizeof(buf), "%lu:%02lu", t / 60, t % 60);
  return buf;
}

}  // namespace

ProgressPrinter::ProgressPrinter(FILE* out) : out_(out), tty_(::isatty(::fileno(out)) == 1) {}

void ProgressPrinter::Update(const Progress& p) {
  const auto now = std::chrono::steady_clock::now();
  if (!started_) {
    started_ = true;
    start_ = now;
    last_ = now - std::chrono::hours(1);
    start_done_ = p.done;
  }
  const bool final = p.total > 0 && p.done >= p.total;
  const auto min_gap = tty_ ? std::chrono::milliseconds(100) : std::chrono::milliseconds(1000);
  if (!final && now - last_ < min_gap) return;
  last_ = now;
  const double elapsed = std::chrono::duration<double>(now - start_).count();
  // Over 0.2 s at least, so the first samples do not show wild rates; the
  // final line uses what it took.
  const double rate = elapsed > 0.2 || (final && elapsed > 0)
                          ? static_cast<double>(p.done - std::min(p.done, start_done_)) / elapsed
                          : 0.0;
  const double frac = p.total > 0 ? std::min(1.0, static_cast<double>(p.done) / static_cast<double>(p.total)) : 0.0;
  const std::string unit = p.unit.empty() ? "" : " " + p.unit;
  // No rate until something was done after the first sample (a one-shot final line has none).
  char rate_buf[64] = "";
  if (rate > 0) std::snprintf(rate_buf, sizeof(rate_buf), "  %.0f%s/s", rate, unit.c_str());
  const std::string rate_str = rate_buf;
  const std::string what = p.what.empty() ? "progress" : p.what;
  std::string eta = final             ? "done in " + Duration(elapsed)
                    : rate > 0 && p.total >= p.done ? "ETA " + Duration(static_cast<double>(p.total - p.done) / rate)
                                                    : "ETA ?";
  if (p.total == 0) {  // how much is left is not known: a count and a rate, no bar, no ETA
    if (tty_) {
      std::fprintf(out_, "\r%s: %llu%s%s\033[K", what.c_str(), static_cast<unsigned long long>(p.done), unit.c_str(),
                   rate_str.c_str());
      drawn_ = true;
    } else {
      std::fprintf(out_, "%s: %llu%s%s\n", what.c_str(), static_cast<unsigned long long>(p.done), unit.c_str(),
                   rate_str.c_str());
    }
  } else if (tty_) {
    constexpr int kWidth = 30;
    const int fill = static_cast<int>(frac * kWidth);
    std::string bar(static_cast<size_t>(fill), '#');
    bar.resize(kWidth, '.');
    std::fprintf(out_, "\r%s [%s] %5.1f%%  %llu/%llu%s%s  %s\033[K", what.c_str(), bar.c_str(), frac * 100.0,
                 static_cast<unsigned long long>(p.done), static_cast<unsigned long long>(p.total), unit.c_str(),
                 rate_str.c_str(), eta.c_str());
    drawn_ = true;
  } else {
    std::fprintf(out_, "%s: %llu/%llu%s (%.1f%%)%s, %s\n", what.c_str(), static_cast<unsigned long long>(p.done),
                 static_cast<unsigned long long>(p.total), unit.c_str(), frac * 100.0, rate_str.c_str(), eta.c_str());
  }
  std::fflush(out_);
}

void ProgressPrinter::Finish() {
  if (drawn_) {
    std::fputc('\n', out_);
    std::fflush(out_);
    drawn_ = false;
  }
}

}  // namespace boostvol::cli
