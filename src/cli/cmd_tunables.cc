// boostvol set FAST|MOUNTPOINT KEY=VALUE...   and   boostvol get FAST|MOUNTPOINT [KEY...]
//
// The migrator's live tunables (docs/cli.md, "Tunables"). With a daemon: the
// control socket's `set KEY VALUE` / `get`, which call Volume::SetTunable /
// GetTunables (applied at once and saved in meta.db's settings table).
// Without one: meta.db's settings table directly, under FAST/lock, after the
// same validation the engine applies; the next mount applies them.
#include "engine/tunables.h"
#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "boostvol/volume.h"
#include "cli/cli.h"
#include "cli/logging.h"
#include "cli/mounts.h"
#include "control/control_client.h"
#include "meta/meta_store.h"

namespace boostvol::cli {
namespace {

using Pairs = std::vector<std::pair<std::string, std::string>>;

// The engine's defaults, as the engine prints them.
Pairs Defaults() { return TunablesToStrings(TunableValues{}); }

Status ValidateTunable(const std::string& key, const std::string& value) {
  TunableValues v;
  Status s = ParseTunable(key, value, &v);
  if (s.ok() && key == "bypass_order" && v.bypass_order == BypassOrder::kRelaxed)
    std::fprintf(stderr,
                 "boostvol: WARNING: bypass_order=relaxed: writes may go straight home while older writes are still\n"
                 "  only in the log, so SLOW alone is NOT crash-consistent if FAST is lost (DESIGN.md 2.7).\n"
                 "  A crash with FAST intact still recovers. bypass_order=prefix undoes it.\n");
  return s;
}

// Holds FAST/lock (exclusive) while meta.db is changed offline, so a mount
// cannot start meanwhile. Busy if a daemon or another command holds it.
class OfflineLock {
 public:
  ~OfflineLock() {
    if (fd_ >= 0) ::close(fd_);  // releases the flock
  }
  Status Take(const std::string& fast) {
    fd_ = ::open((fast + "/lock").c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd_ < 0) return errno == ENOENT ? Status::OK() : Status::IoError(errno, "cannot open " + fast + "/lock");
    if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
      std::string note;
      VolumeLockHeld(fast, &note);
      return Status::Busy(fast + " is in use by " + (note.empty() ? std::string("another process") : note) +
                          ", whose control socket does not answer; try again when it has finished");
    }
    return Status::OK();
  }

 private:
  int fd_ = -1;
};

struct SetArgs {
  std::string target;
  std::vector<std::string> assignments;
};

int RunSet(const SetArgs& a, const GlobalOptions& g) {
  if (Status s = LogToStderr(g.log_level.empty() ? "warn" : g.log_level); !s.ok()) return Fail(s);
  Pairs kv;
  for (const std::string& as : a.assignments) {
    const size_t eq = as.find('=');
    if (eq == std::string::npos || eq == 0) return Fail(kExitUsage, "expected KEY=VALUE, not '" + as + "'");
    kv.emplace_back(as.substr(0, eq), as.substr(eq + 1));
    if (Status s = ValidateTunable(kv.back().first, kv.back().second); !s.ok()) return Fail(s);
  }
  std::string fast, mountpoint;
  if (Status s = ResolveVolumeArg(a.target, &fast, &mountpoint); !s.ok()) return Fail(s);

  Status s = control::RequestSetTunable(fast, kv.front().first, kv.front().second);
  if (s.ok() || !s.IsNotFound()) {
    for (size_t i = 0; i < kv.size(); ++i) {
      if (i > 0) s = control::RequestSetTunable(fast, kv[i].first, kv[i].second);
      if (!s.ok()) return Fail(s, "set " + kv[i].first);
      std::printf("%s=%s (live, saved in meta.db)\n", kv[i].first.c_str(), kv[i].second.c_str());
    }
    return kExitOk;
  }
  // Not mounted: write meta.db; the next mount applies the settings.
  OfflineLock lock;
  if (Status ls = lock.Take(fast); !ls.ok()) return Fail(ls);
  std::unique_ptr<meta::MetaStore> store;
  if (Status os = meta::MetaStore::Open(fast + "/meta.db", false, &store); !os.ok()) {
    return Fail(os, "cannot open " + fast + "/meta.db");
  }
  for (const auto& [key, value] : kv) {
    if (Status ws = store->SetSetting(key, value); !ws.ok()) return Fail(ws, "saving " + key + " in meta.db");
    std::printf("%s=%s (saved in meta.db; applied at the next mount)\n", key.c_str(), value.c_str());
  }
  return kExitOk;
}

struct GetArgs {
  std::string target;
  std::vector<std::string> keys;
};

int RunGet(const GetArgs& a, const GlobalOptions& g) {
  if (Status s = LogToStderr(g.log_level.empty() ? "warn" : g.log_level); !s.ok()) return Fail(s);
  for (const std::string& k : a.keys) {
    bool known = false;
    for (const std::string& t : TunableNames()) known = known || k == t;
    if (!known) {
      TunableValues v;
      return Fail(kExitUsage, ParseTunable(k, "0", &v).message());
    }
  }
  std::string fast, mountpoint;
  if (Status s = ResolveVolumeArg(a.target, &fast, &mountpoint); !s.ok()) return Fail(s);
  Pairs values;
  Status s = control::RequestGetTunables(fast, &values);
  if (!s.ok()) {
    if (!s.IsNotFound()) return Fail(s, "cannot ask the daemon");
    // Not mounted: what the next mount will use.
    std::unique_ptr<meta::MetaStore> store;
    if (Status os = meta::MetaStore::Open(fast + "/meta.db", true, &store); !os.ok()) {
      return Fail(os, "cannot read " + fast + "/meta.db");
    }
    values = Defaults();
    for (auto& [key, value] : values) {
      std::string saved;
      bool found = false;
      if (Status gs = store->GetSetting(key, &saved, &found); !gs.ok()) return Fail(gs, "meta.db");
      if (found) value = saved;
    }
  }
  for (const auto& [key, value] : values) {
    bool wanted = a.keys.empty();
    for (const std::string& k : a.keys) wanted = wanted || k == key;
    if (wanted) std::printf("%s=%s\n", key.c_str(), value.c_str());
  }
  return kExitOk;
}

constexpr const char* kTunablesHelp =
    "Tunables (docs/cli.md): migrate_start_fraction (0..1, default 0.75: start migrating when this share of the "
    "log is dirty), idle_migrate_ms (default 2000: migrate everything after this long without writes), "
    "max_batch_bytes (4096..1073741824, default 67108864: the largest migration batch), "
    "migrate_gap_blocks (0..4096, default 64: dirty blocks this close go home as one write, the gap read "
    "from home first), zero_detect (on|off, default on: written all-zero blocks are logged as zero ranges, "
    "not stored; docs/policies.md), write_mode (writeback|writethrough|writearound, default writeback; "
    "switching away from writeback on a mounted volume drains first), sequential_cutoff (bytes or 4M, default "
    "0 = off: longer sequential streams go straight home; docs/policies.md), bypass_order (prefix|relaxed, "
    "default prefix: straight home only while the log holds nothing not yet home, so SLOW alone stays "
    "crash-consistent; relaxed gives that up, said as a warning), read_promote (off|always|nhit, default off: "
    "blocks read from home are copied into the read cache on FAST), read_promote_hits (1..255, default 2: nhit "
    "promotes at this read), read_cache_size (default 0 = a quarter of the log; K/M/G accepted; "
    "docs/policies.md \"Read caching\"), home_read_timeout_s (0..3600, default 60: a read of a block that lives "
    "only at home waits this long for an unreachable SLOW before it fails with EIO).";

}  // namespace

void AddSetCommand(CLI::App& app, const GlobalOptions& g, int* exit_code) {
  auto a = std::make_shared<SetArgs>();
  CLI::App* c = app.add_subcommand(
      "set", "Change a tunable: live through the daemon if mounted, else in meta.db for the next mount");
  c->footer(std::string(kTunablesHelp) + "\n" + kExitCodesHelp);
  c->add_option("TARGET", a->target, "The volume's FAST dir or its mountpoint")->required();
  c->add_option("KEY=VALUE", a->assignments, "One or more settings")->required();
  c->callback([a, &g, exit_code] { *exit_code = RunSet(*a, g); });
}

void AddGetCommand(CLI::App& app, const GlobalOptions& g, int* exit_code) {
  auto a = std::make_shared<GetArgs>();
  CLI::App* c = app.add_subcommand("get", "Print tunables as KEY=VALUE lines (the daemon's live values, or meta.db's)");
  c->footer(std::string(kTunablesHelp) + "\n" + kExitCodesHelp);
  c->add_option("TARGET", a->target, "The volume's FAST dir or its mountpoint")->required();
  c->add_option("KEY", a->keys, "Only these (default: all)");
  c->callback([a, &g, exit_code] { *exit_code = RunGet(*a, g); });
}

}  // namespace boostvol::cli
