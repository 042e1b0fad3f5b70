// boostvol status FAST|MOUNTPOINT [--json] [--watch [SECONDS]]
//
// A running daemon answers over FAST/control.sock (live numbers, with the
// rates it measured over the last seconds); otherwise meta.db is read
// (read-only) for what it knows about the stopped volume. The JSON is
// documented in docs/status-json.md (schema_version 1).
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <thread>

#include "boostvol/volume.h"
#include "cli/cli.h"
#include "cli/logging.h"
#include "cli/mounts.h"
#include "control/control_client.h"
#include "control/status_json.h"
#include "meta/meta_store.h"
#include "util/size_parse.h"

namespace boostvol::cli {
namespace {

struct StatusArgs {
  std::string target;
  bool json = false;
  bool watching = false;           // --watch given
  std::vector<std::string> watch;  // its SECONDS, if given
};

std::string LocalTime(uint64_t unix_s) {
  time_t t = static_cast<time_t>(unix_s);
  struct tm tm;
  char buf[32];
  if (localtime_r(&t, &tm) == nullptr || std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S", &tm) == 0)
    return std::to_string(unix_s);
  return buf;
}

std::string Duration(uint64_t s) {
  char buf[48];
  if (s >= 86400) std::snprintf(buf, sizeof(buf), "%llud %02lluh", static_cast<unsigned long long>(s / 86400),
                                static_cast<unsigned long long>((s / 3600) % 24));
  else if (s >= 3600) std::snprintf(buf, sizeof(buf), "%lluh %02llum", static_cast<unsigned long long>(s / 3600),
                                    static_cast<unsigned long long>((s / 60) % 60));
  else if (s >= 60) std::snprintf(buf, sizeof(buf), "%llum %02llus", static_cast<unsigned long long>(s / 60),
                                  static_cast<unsigned long long>(s % 60));
  else std::snprintf(buf, sizeof(buf), "%llus", static_cast<unsigned long long>(s));
  return buf;
}

std::string Rate(uint64_t bytes_per_s) { return FormatBytes(bytes_per_s) + "/s"; }

std::string Pct(uint64_t part, uint64_t whole) {
  if (whole == 0) return "0.0%";
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.1f%%", 100.0 * static_cast<double>(part) / static_cast<double>(whole));
  return buf;
}

// Appends members to a JSON object line ("{...}" -> "{...,extra}").
std::string WithMembers(std::string json, const std::string& extra) {
  if (!json.empty() && json.back() == '}') {
    json.pop_back();
    json += (json.size() > 1 ? "," : "") + extra + "}";
  }
  return json;
}

void PrintLive(const VolumeStatus& s, const control::StatusRates& r, const std::string& mountpoint) {
  const uint64_t bs = s.log_total_blocks ? s.cache_bytes / s.log_total_blocks : 4096;
  const uint64_t dirty_bytes = s.dirty_blocks * bs;
  std::printf("volume     %s\n", s.uuid.c_str());
  std::printf("state      mounted%s, %s\n", mountpoint.empty() ? "" : (" on " + mountpoint).c_str(), s.health.c_str());
  if (!s.last_error.empty()) std::printf("last error %s\n", s.last_error.c_str());
  const uint64_t now = static_cast<uint64_t>(std::time(nullptr));
  if (s.failing_since_unix != 0) {
    std::string next = s.next_retry_unix == 0 ? "a retry is running now"
                       : s.next_retry_unix <= now ? "next retry now"
                                                  : "next retry in " + Duration(s.next_retry_unix - now);
    std::printf("home       unreachable for %s (migration failing since %s); %s\n",
                Duration(now > s.failing_since_unix ? now - s.failing_since_unix : 0).c_str(),
                LocalTime(s.failing_since_unix).c_str(), next.c_str());
  }
  if (s.writers_waiting)
    std::printf("log full   writes are waiting for the migrator to free log space (they wait, they do not fail)\n");
  std::printf("fast       %s\n", s.fast_dir.c_str());
  std::printf("home       %s\n", s.home.c_str());
  std::printf("image      %s\n", FormatBytes(s.image_size).c_str());
  std::printf("cache      %s log, %s in use (%s), %llu of %llu segments live\n", FormatBytes(s.cache_bytes).c_str(),
              FormatBytes(s.log_used_blocks * bs).c_str(), Pct(s.log_used_blocks, s.log_total_blocks).c_str(),
              static_cast<unsigned long long>(s.segments_live), static_cast<unsigned long long>(s.segments_total));
  std::printf("dirty      %s not yet home (%s of the cache, %s of the image)\n", FormatBytes(dirty_bytes).c_str(),
              Pct(dirty_bytes, s.cache_bytes).c_str(), Pct(dirty_bytes, s.image_size).c_str());
  const uint64_t read_blocks = s.read_blocks_cache + s.read_blocks_home;
  std::printf("reads      %llu (%s), cache hit rate %s\n", static_cast<unsigned long long>(s.reads),
              FormatBytes(s.bytes_read).c_str(), read_blocks ? Pct(s.read_blocks_cache, read_blocks).c_str() : "n/a");
  if (s.read_cache_capacity_blocks > 0 || s.read_cache_hits > 0) {
    const uint64_t looked = s.read_cache_hits + s.read_cache_misses;
    std::printf("read cache %s: %s of %s used; %llu hits (%s), %llu promoted, %llu evicted, %llu dropped by writes\n",
                s.read_promote.c_str(), FormatBytes(s.read_cache_blocks * bs).c_str(),
                FormatBytes(s.read_cache_capacity_blocks * bs).c_str(), static_cast<unsigned long long>(s.read_cache_hits),
                looked ? Pct(s.read_cache_hits, looked).c_str() : "n/a",
                static_cast<unsigned long long>(s.read_cache_promotions),
                static_cast<unsigned long long>(s.read_cache_evictions),
                static_cast<unsigned long long>(s.read_cache_invalidations));
  }
  std::printf("writes     %llu (%s), %llu flushes, %llu waited for log space\n",
              static_cast<unsigned long long>(s.writes), FormatBytes(s.bytes_written).c_str(),
              static_cast<unsigned long long>(s.flushes), static_cast<unsigned long long>(s.write_waits));
  std::printf("zeros      %s trimmed, %s zeroed, %s of all-zero writes not stored (log space saved); "
              "%s zeroed at home, %s pending\n",
              FormatBytes(s.trimmed_bytes).c_str(), FormatBytes(s.zeroed_bytes).c_str(),
              FormatBytes(s.zero_block_bytes).c_str(), FormatBytes(s.home_zeroed_bytes).c_str(),
              FormatBytes(s.pending_zero_blocks * bs).c_str());
  std::printf("bypass     %s written straight home (write mode, sequential bypass); bypass_order=%s%s\n",
              FormatBytes(s.bypassed_bytes).c_str(), s.bypass_order.c_str(),
              s.bypass_order == "relaxed" ? " (SLOW alone is NOT crash-consistent if FAST is lost)" : "");
  std::printf("migrator   %s; %s migrated in %llu batch%s\n", s.migrator_state.c_str(),
              FormatBytes(s.migrated_bytes).c_str(), static_cast<unsigned long long>(s.migration_batches),
              s.migration_batches == 1 ? "" : "es");
  if (r.window_s == 0) {
    std::printf("rates      not measured yet (the daemon samples every second)\n");
  } else {
    std::string eta = dirty_bytes == 0      ? "nothing to migrate"
                      : r.drain_eta_known ? "all home in ~" + Duration(r.drain_eta_s) + " at this rate"
                                          : "nothing migrated in the last " + Duration(r.window_s) + ", so no ETA";
    std::printf("rates      writes %s, migration %s over the last %s; %s\n", Rate(r.write_bytes_per_s).c_str(),
                Rate(r.migrate_bytes_per_s).c_str(), Duration(r.window_s).c_str(), eta.c_str());
  }
  std::printf("log        records: home below %llu, durable to %llu, next %llu\n",
              static_cast<unsigned long long>(s.watermark_record), static_cast<unsigned long long>(s.durable_record),
              static_cast<unsigned long long>(s.next_record));
  std::printf("index      %s in memory\n", FormatBytes(s.index_memory_bytes).c_str());
  // The first mount after create has an empty log: nothing to recover.
  std::printf("opened     %s (mount #%llu)\n",
              s.clean_open ? "after a clean stop" : s.mount_count == 1 ? "new volume, first mount" : "with recovery from the log",
              static_cast<unsigned long long>(s.mount_count));
}

int Offline(const std::string& fast, const StatusArgs& a) {
  std::string holder;
  const bool held = VolumeLockHeld(fast, &holder);
  std::unique_ptr<meta::MetaStore> store;
  if (Status s = meta::MetaStore::Open(fast + "/meta.db", true, &store); !s.ok()) {
    return Fail(s, "cannot read " + fast + "/meta.db");
  }
  meta::VolumeRow v;
  meta::Watermark wm;
  std::vector<meta::SealedSegment> sealed;
  meta::Checkpoint cp;
  bool clean = false;
  if (Status s = store->LoadVolume(&v); !s.ok()) return Fail(s, "meta.db");
  if (Status s = store->LoadWatermark(&wm); !s.ok()) return Fail(s, "meta.db");
  if (Status s = store->LoadSealedSegments(&sealed); !s.ok()) return Fail(s, "meta.db");
  Status cps = store->LoadCheckpoint(&cp, &clean);
  std::vector<std::pair<std::string, int64_t>> counters;
  (void)store->LoadCounters(&counters);
  uint64_t sealed_blocks = 0;
  for (const auto& sg : sealed) sealed_blocks += sg.data_blocks;
  const uint64_t cache_bytes = static_cast<uint64_t>(v.segment_blocks) * v.segment_count * v.block_size;
  const std::string state = held ? "in use by " + (holder.empty() ? std::string("another process") : holder) +
                                       ", whose control socket does not answer"
                                 : "not mounted";
  const std::string stop = !cps.ok() ? "checkpoint unreadable (" + cps.message() + ")"
                           : clean   ? "clean"
                                     : "unclean (the next mount replays the log)";
  if (a.json) {
    VolumeStatus s;
    s.uuid = v.uuid;
    s.fast_dir = fast;
    s.home = v.home;
    s.health = held ? "unreachable" : "not-mounted";
    s.migrator_state = "stopped";
    s.image_size = v.image_size;
    s.cache_bytes = cache_bytes;
    s.log_total_blocks = static_cast<uint64_t>(v.segment_blocks) * v.segment_count;
    s.segments_total = v.segment_count;
    s.segments_live = sealed.size();
    s.dirty_blocks = clean ? cp.entries.size() : sealed_blocks;
    s.watermark_record = wm.record_seq;
    s.next_record = clean ? cp.tail.next_record_seq : 0;
    s.clean_open = clean;
    (void)store->LoadMountCount(&s.mount_count);  // stays 0 if unreadable: status still answers
    {
      std::string order;
      bool found = false;
      if (store->GetSetting("bypass_order", &order, &found).ok() && found) s.bypass_order = order;
      std::string promote;
      found = false;
      if (store->GetSetting("read_promote", &promote, &found).ok() && found) s.read_promote = promote;
    }
    for (const auto& [name, value] : counters) {
      const uint64_t u = value < 0 ? 0 : static_cast<uint64_t>(value);
      if (name == "reads") s.reads = u;
      else if (name == "writes") s.writes = u;
      else if (name == "flushes") s.flushes = u;
      else if (name == "bytes_read") s.bytes_read = u;
      else if (name == "bytes_written") s.bytes_written = u;
      else if (name == "read_blocks_cache") s.read_blocks_cache = u;
      else if (name == "read_blocks_home") s.read_blocks_home = u;
      else if (name == "trimmed_bytes") s.trimmed_bytes = u;
      else if (name == "zeroed_bytes") s.zeroed_bytes = u;
      else if (name == "zero_block_bytes") s.zero_block_bytes = u;
      else if (name == "bypassed_bytes") s.bypassed_bytes = u;
      else if (name == "read_cache_hits") s.read_cache_hits = u;
      else if (name == "read_cache_misses") s.read_cache_misses = u;
      else if (name == "read_cache_promotions") s.read_cache_promotions = u;
      else if (name == "read_cache_evictions") s.read_cache_evictions = u;
      else if (name == "migration.blocks") s.migrated_blocks = u;
      else if (name == "migration.bytes") s.migrated_bytes = u;
      else if (name == "migration.batches") s.migration_batches = u;
    }
    std::printf("%s\n", control::StatusLineJson(s, control::StatusRates{},
                                               std::string("\"mounted\":false,\"clean_stop\":") +
                                                   (clean ? "true" : "false") +
                                                   ",\"sealed_segments\":" + std::to_string(sealed.size()))
                            .c_str());
    return kExitOk;
  }
  std::printf("volume     %s\n", v.uuid.c_str());
  std::printf("state      %s\n", state.c_str());
  uint64_t mounts = 0;
  (void)store->LoadMountCount(&mounts);
  std::printf("last stop  %s (mounted %llu time%s)\n", stop.c_str(), static_cast<unsigned long long>(mounts),
              mounts == 1 ? "" : "s");
  std::printf("fast       %s\n", fast.c_str());
  std::printf("home       %s%s\n", v.home.c_str(), v.home_journal ? "" : " (NO home journal: unsafe without FAST)");
  std::printf("image      %s, blocks of %u bytes\n", FormatBytes(v.image_size).c_str(), v.block_size);
  std::printf("cache      %s log: %u segments of %s\n", FormatBytes(cache_bytes).c_str(), v.segment_count,
              FormatBytes(static_cast<uint64_t>(v.segment_blocks) * v.block_size).c_str());
  std::printf("watermark  segment %llu, record %llu (older records are home)\n",
              static_cast<unsigned long long>(wm.segment_seq), static_cast<unsigned long long>(wm.record_seq));
  if (sealed.empty()) {
    std::printf("sealed     none: every sealed segment is home\n");
  } else {
    std::printf("sealed     %zu segments not yet home (records %llu..%llu, %s)\n", sealed.size(),
                static_cast<unsigned long long>(sealed.front().first_record),
                static_cast<unsigned long long>(sealed.back().last_record),
                FormatBytes(sealed_blocks * v.block_size).c_str());
  }
  if (clean) {
    const uint64_t dirty = cp.entries.size() * uint64_t{v.block_size};
    std::printf("dirty      %s not yet home (%s of the cache, %s of the image)\n", FormatBytes(dirty).c_str(),
                Pct(dirty, cache_bytes).c_str(), Pct(dirty, v.image_size).c_str());
  }
  // Totals over the volume's life, as saved at the last stop.
  auto counter = [&](const char* name) -> uint64_t {
    for (const auto& [n, value] : counters)
      if (n == name) return value < 0 ? 0 : static_cast<uint64_t>(value);
    return 0;
  };
  const uint64_t cache_reads = counter("read_blocks_cache"), home_reads = counter("read_blocks_home");
  std::printf("reads      %llu (%s), cache hit rate %s\n", static_cast<unsigned long long>(counter("reads")),
              FormatBytes(counter("bytes_read")).c_str(),
              cache_reads + home_reads ? Pct(cache_reads, cache_reads + home_reads).c_str() : "n/a");
  std::printf("writes     %llu (%s), %llu flushes\n", static_cast<unsigned long long>(counter("writes")),
              FormatBytes(counter("bytes_written")).c_str(), static_cast<unsigned long long>(counter("flushes")));
  if (counter("read_cache_hits") + counter("read_cache_promotions") > 0)
    std::printf("read cache %llu hits, %llu promoted, %llu evicted (starts empty at each mount)\n",
                static_cast<unsigned long long>(counter("read_cache_hits")),
                static_cast<unsigned long long>(counter("read_cache_promotions")),
                static_cast<unsigned long long>(counter("read_cache_evictions")));
  std::printf("migrated   %s in %llu batch%s\n", FormatBytes(counter("migration.bytes")).c_str(),
              static_cast<unsigned long long>(counter("migration.batches")), counter("migration.batches") == 1 ? "" : "es");
  std::printf("more       sqlite3 -readonly %s/meta.db 'select * from stats' (docs/sqlite.md)\n", fast.c_str());
  return kExitOk;
}

// One report: live from the daemon, else offline from meta.db.
int ShowOnce(const std::string& fast, std::string mountpoint, const StatusArgs& a) {
  VolumeStatus st;
  control::StatusRates rates;
  std::string json;
  Status s = control::QueryStatus(fast, &st, &json, &rates);
  if (s.ok()) {
    if (mountpoint.empty()) FindMountOfFast(fast, &mountpoint);
    if (a.json) {
      std::string extra = "\"mounted\":true";
      if (!mountpoint.empty()) extra += ",\"mountpoint\":" + control::JsonQuote(mountpoint);
      std::printf("%s\n", WithMembers(json, extra).c_str());
    } else {
      PrintLive(st, rates, mountpoint);
    }
    return kExitOk;
  }
  if (!s.IsNotFound()) return Fail(s, "cannot ask the daemon");
  return Offline(fast, a);
}

int RunStatus(const StatusArgs& a, const GlobalOptions& g) {
  if (Status s = LogToStderr(g.log_level.empty() ? "warn" : g.log_level); !s.ok()) return Fail(s);
  std::string fast, mountpoint;
  if (Status s = ResolveVolumeArg(a.target, &fast, &mountpoint); !s.ok()) return Fail(s);
  if (!a.watching) return ShowOnce(fast, mountpoint, a);

  double every = 2;
  // CLI11 records a bare --watch as "" or "true".
  if (!a.watch.empty() && !a.watch.front().empty() && a.watch.front() != "true") {
    char* end = nullptr;
    every = std::strtod(a.watch.front().c_str(), &end);
    if (end == a.watch.front().c_str() || *end != '\0' || !(every >= 0.1 && every <= 86400)) {
      return Fail(kExitUsage, "--watch takes seconds from 0.1 to 86400, not '" + a.watch.front() + "'");
    }
  }
  // On a terminal: redraw in place (home, then clear each line's rest and
  // below). Otherwise one report after another, separated by a blank line.
  const bool tty = ::isatty(STDOUT_FILENO) == 1;
  for (bool first = true;; first = false) {
    if (tty) std::fputs(first ? "\033[H\033[2J" : "\033[H", stdout);
    else if (!first) std::fputc('\n', stdout);
    if (tty && !a.json) {
      std::printf("every %gs: boostvol status %s   (Ctrl-C to stop)\033[K\n\033[K\n", every, a.target.c_str());
    }
    int rc = ShowOnce(fast, mountpoint, a);
    if (tty) std::fputs("\033[J", stdout);
    std::fflush(stdout);
    if (rc != kExitOk) return rc;
    std::this_thread::sleep_for(std::chrono::duration<double>(every));
  }
}

}  // namespace

void AddStatusCommand(CLI::App& app, const GlobalOptions& g, int* exit_code) {
  auto a = std::make_shared<StatusArgs>();
  CLI::App* c = app.add_subcommand("status", "Show a volume's state: live from its daemon, or from meta.db if stopped");
  c->footer(kExitCodesHelp);
  c->add_option("TARGET", a->target, "The volume's FAST dir or its mountpoint")->required();
  c->add_flag("--json", a->json, "One line of JSON, schema in docs/status-json.md (schema_version 1)");
  CLI::Option* watch = c->add_option("--watch", a->watch, "Repeat every SECONDS (default 2), redrawing in place on a terminal")
      ->expected(0, 1)
      ->type_name("[SECONDS]");
  c->callback([a, watch, &g, exit_code] {
    a->watching = watch->count() > 0;
    *exit_code = RunStatus(*a, g);
  });
}

}  // namespace boostvol::cli
