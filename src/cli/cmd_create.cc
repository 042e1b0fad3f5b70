// boostvol create FAST SLOW --size 8G [--cache-size 2G] [--segment-size 4M] [--no-home-journal]
//                 [--write-mode writeback|writethrough|writearound] [--bypass-order prefix|relaxed]
// boostvol create FAST rbd:POOL/IMAGE --size 8G [--ceph-conf PATH] [--ceph-id NAME]   (docs/rbd-home.md)
// boostvol create FAST SLOW|rbd:POOL/IMAGE --adopt    a fresh cache on an existing home
#include <CLI/CLI.hpp>
#include <cstdio>
#include <cstdlib>

#include "boostvol/volume.h"
#include "cli/cli.h"
#include "cli/logging.h"
#include "cli/progress.h"
#include "util/size_parse.h"

namespace boostvol::cli {
namespace {

struct CreateArgs {
  std::string fast, slow, size, cache_size, segment_size = "4M";
  bool no_home_journal = false;
  std::string write_mode, bypass_order;
  bool adopt = false;
  std::string ceph_conf, ceph_id;
  std::string preallocate = "full";
};

int RunCreate(const CreateArgs& a, const GlobalOptions& g) {
  if (Status s = LogToStderr(g.log_level.empty() ? "warn" : g.log_level); !s.ok()) return Fail(s);
  CreateOptions o;
  o.fast_dir = a.fast;
  o.slow_dir = a.slow;
  o.adopt = a.adopt;
  const bool rbd = a.slow.rfind("rbd:", 0) == 0;
  if ((!a.ceph_conf.empty() || !a.ceph_id.empty()) && !rbd) {
    return Fail(kExitUsage, "--ceph-conf and --ceph-id apply to an RBD home (SLOW given as rbd:POOL/IMAGE)");
  }
  if (!a.ceph_conf.empty()) {
    // Stored in the home's URI in meta.db, so made absolute (the daemon runs in /).
    char* abs = ::realpath(a.ceph_conf.c_str(), nullptr);
    if (abs == nullptr) return Fail(kExitUsage, "--ceph-conf " + a.ceph_conf + ": no such file");
    o.slow_dir += ":conf=" + std::string(abs);
    std::free(abs);
  }
  if (!a.ceph_id.empty()) o.slow_dir += ":id=" + a.ceph_id;
  std::string adopt_summary;
  o.adopt_summary = &adopt_summary;
  if (a.size.empty() && !a.adopt) return Fail(kExitUsage, "--size is required (except with --adopt)");
  if (!a.size.empty()) {
    if (Status s = ParseSize(a.size, &o.image_size); !s.ok()) return Fail(s, "--size");
  }
  if (!a.adopt && (o.image_size == 0 || o.image_size % 4096 != 0)) {
    return Fail(kExitUsage, "--size " + a.size + ": the image size must be a positive multiple of 4 KiB");
  }
  if (!a.cache_size.empty()) {
    if (Status s = ParseSize(a.cache_size, &o.cache_size); !s.ok()) return Fail(s, "--cache-size");
    if (o.cache_size == 0) return Fail(kExitUsage, "--cache-size must be positive (omit it for the default)");
  }
  uint64_t seg = 0;
  if (Status s = ParseSize(a.segment_size, &seg); !s.ok()) return Fail(s, "--segment-size");
  if (seg == 0 || seg > (1ull << 31) || seg % 4096 != 0) {
    return Fail(kExitUsage, "--segment-size " + a.segment_size + ": must be a multiple of 4 KiB, at most 2 GiB");
  }
  o.segment_size = static_cast<uint32_t>(seg);
  o.home_journal = !a.no_home_journal;
  if (!a.write_mode.empty()) o.tunables.push_back({"write_mode", a.write_mode});
  if (!a.bypass_order.empty()) o.tunables.push_back({"bypass_order", a.bypass_order});
  if (a.bypass_order == "relaxed")
    std::fprintf(stderr,
                 "boostvol: WARNING: --bypass-order relaxed: writes may go straight home while older writes are\n"
                 "  still only in the log, so SLOW alone is NOT crash-consistent if FAST is lost (DESIGN.md 2.7).\n"
                 "  A crash with FAST intact still recovers. `boostvol set FAST bypass_order=prefix` undoes it.\n");
  if (a.no_home_journal) {
    std::fprintf(stderr,
                 "boostvol: WARNING: --no-home-journal: migration writes the home copy in place without a redo\n"
                 "boostvol: WARNING: journal. If FAST is ever lost (dead SSD, stolen laptop), SLOW/image may be a\n"
                 "boostvol: WARNING: MIX of old and new blocks that no filesystem checker can repair. Only use this\n"
                 "boostvol: WARNING: if the data is disposable or FAST is as safe as SLOW.\n");
  }
  if (a.preallocate != "full" && a.preallocate != "falloc")
    return Fail(kExitUsage, "--preallocate " + a.preallocate + ": must be full or falloc");
  o.preallocate_full = a.preallocate == "full";
  ProgressPrinter bar(stderr);
  o.progress = [&](const Progress& p) { bar.Update(p); };
  Status s = CreateVolume(o);
  bar.Finish();
  if (!s.ok()) return Fail(s, a.adopt ? "cannot adopt the home" : "cannot create the volume");
  if (a.adopt) std::printf("adopted: %s\n", adopt_summary.c_str());
  std::printf("created a boostvol volume: image %s, home %s%s, cache %s in %s (segments of %s)%s\n",
              a.adopt ? "of the adopted home's size" : FormatBytes(o.image_size).c_str(), a.slow.c_str(),
              rbd ? "" : "/image",
              o.cache_size ? FormatBytes(o.cache_size).c_str() : "default size", a.fast.c_str(),
              FormatBytes(o.segment_size).c_str(), a.no_home_journal ? ", NO home journal" : "");
  std::printf("mount it with: boostvol mount %s MOUNTPOINT\n", a.fast.c_str());
  return kExitOk;
}

}  // namespace

void AddCreateCommand(CLI::App& app, const GlobalOptions& g, int* exit_code) {
  auto a = std::make_shared<CreateArgs>();
  CLI::App* c = app.add_subcommand("create", "Create a new volume: a log in FAST, the home copy of the image in SLOW");
  c->footer(kExitCodesHelp);
  c->add_option("FAST", a->fast, "Fast directory (SSD): metadata and the log; must exist")->required();
  c->add_option("SLOW", a->slow,
                "Slow directory (the home copy SLOW/image; must exist), or rbd:POOL/IMAGE for an RBD image in a "
                "Ceph cluster")
      ->required();
  c->add_option("--size", a->size,
                "Image size, e.g. 8G, 512M, 1.5T (binary units; multiple of 4 KiB); not needed with --adopt");
  c->add_flag("--adopt", a->adopt,
              "Start a fresh cache on an EXISTING home (a volume's SLOW or rbd:POOL/IMAGE, e.g. after its cache "
              "was lost): finishes its interrupted batch, keeps its data; refused while another cache holds it");
  c->add_option("--ceph-conf", a->ceph_conf, "ceph.conf for an rbd: home (default: $CEPH_CONF, /etc/ceph/ceph.conf)");
  c->add_option("--ceph-id", a->ceph_id, "Ceph client name for an rbd: home, without 'client.' (default: admin)");
  c->add_option("--cache-size", a->cache_size, "Log size on FAST (default: min(image, 1 GiB))");
  c->add_option("--segment-size", a->segment_size, "Log segment size")->capture_default_str();
  c->add_option("--preallocate", a->preallocate,
                "full (default): reserve the log on FAST and write it once with zeros, so its first lap is as fast "
                "as the next ones; falloc: reserve only (a quick create, slower writes until the log has wrapped "
                "once)")
      ->capture_default_str();
  c->add_option("--write-mode", a->write_mode,
                "writeback (default), writethrough or writearound (docs/policies.md); later: boostvol set FAST "
                "write_mode=...")
      ->check(CLI::IsMember({"writeback", "writethrough", "writearound"}));
  c->add_option("--bypass-order", a->bypass_order,
                "prefix (default: a write goes straight home only while the log holds nothing not yet home, so "
                "SLOW alone stays crash-consistent) or relaxed (UNSAFE without FAST; docs/policies.md)")
      ->check(CLI::IsMember({"prefix", "relaxed"}));
  c->add_flag("--no-home-journal", a->no_home_journal,
              "UNSAFE: migrate without the home redo journal; SLOW alone is no longer crash-consistent");
  c->callback([a, &g, exit_code] { *exit_code = RunCreate(*a, g); });
}

}  // namespace boostvol::cli
