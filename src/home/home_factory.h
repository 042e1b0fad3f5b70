// Which home a volume has, named by a URI stored in meta.db (volume.home):
//   dir:/absolute/path   a directory home (DirectoryHome: SLOW/image + stamp + journal)
//   rbd:POOL/IMAGE[:conf=PATH][:id=NAME]
//                        an RBD image in a Ceph cluster (RbdHome, src/home/rbd_home.h, docs/rbd-home.md)
// Further kinds plug in here and nowhere else.
//
// Exactly one cache writes a home at a time (DESIGN.md 1): an open home holds a lock that a second cache
// (or an adopt) is refused on, naming the holder:
//   dir:  an flock on SLOW/boostvol-home.lock (works across hosts on NFSv4 and CephFS; on a filesystem
//         without cross-host locks it only fences caches on the same host), holding "pid N on HOST"
//   rbd:  the image's exclusive lock (librbd), which also fences a blocklisted holder
//
// The engine never names a home's kind: it calls these two functions.
#pragma once

#include <memory>
#include <string>

#include "boostvol/status.h"
#include "home/home.h"

namespace boostvol::home {

struct HomeOptions {
  bool use_journal = true;   // DESIGN.md 2.7
  std::string ceph_conf;     // for homes in a cluster; when set, overrides the URI's conf=
  std::string ceph_id;       // overrides the URI's id=
};

// What is in an existing home, read without changing it (for --adopt).
struct HomeSummary {
  bool stamped = false;             // a boostvol stamp was found (false: a plain RBD image)
  std::string previous_uuid;        // the volume that last owned it (when stamped)
  uint64_t image_size = 0;
  meta::Watermark watermark;        // the stamp's: every record before it of that volume is home
  bool journal_pending = false;     // a complete batch journal waits to be replayed (the cache died mid-batch)
};

// What RecoverHome found and did.
struct RecoverReport {
  HomeSummary found;
  bool journal_replayed = false;     // a pending batch was finished from the journal
  bool changed_behind_back = false;  // the home copy was changed since boostvol last wrote it
  std::string change_detail;
  std::string summary;  // one paragraph for the user
};

struct AdoptReport {
  HomeSummary found;
  bool journal_replayed = false;
  std::string summary;  // one paragraph for the user: what was found, what was done
};

// Name of the lock file of a directory home (in SLOW).
inline constexpr char kDirHomeLockFile[] = "boostvol-home.lock";

// Turns what the user typed as SLOW into a home URI: "rbd:..." stays as it
// is; anything else is a directory, made absolute ("dir:/abs/path").
std::string HomeUriFromArgument(const std::string& slow_argument);

// Refuses (InvalidArgument) a URI of unknown kind, with a message.
Status ValidateHomeUri(const std::string& uri);

Status CreateHome(Env* env, const std::string& uri, const log::Uuid& uuid, uint64_t image_size,
                  const HomeOptions& options);

Status OpenHome(Env* env, const std::string& uri, const log::Uuid& uuid, uint64_t image_size,
                const HomeOptions& options, std::unique_ptr<Home>* out, HomeOpenReport* report);

// Looks into an existing home for `boostvol create --adopt`: its size, the stamp, a pending journal. Changes
// nothing. Busy (naming the holder) when a cache still holds it.
Status InspectHome(Env* env, const std::string& uri, const HomeOptions& options, HomeSummary* out);

// Starts a fresh cache on an existing home (DESIGN.md 2.7 makes any home a crash-consistent prefix): under the
// home's lock, replays a pending journal of the previous volume, then restamps the home as volume `new_uuid`
// at watermark (0, 1), so the old cache, if it ever comes back, is refused (its uuid no longer matches).
// `image_size` must equal the home's. Busy when a cache still holds the home.
Status AdoptHome(Env* env, const std::string& uri, const log::Uuid& new_uuid, uint64_t image_size,
                 const HomeOptions& options, AdoptReport* report);

// Makes the home copy usable on its own after its cache was lost (DESIGN.md 2.7), without starting a cache: under
// the home's lock, opens the home as the volume its stamp names, which finishes a pending batch from the redo
// journal (or discards a torn or stale journal), and closes it. The stamp keeps naming that volume, so its cache,
// if it ever comes back, mounts as usual. Afterwards the home copy alone is the image as of a prefix of that
// volume's log. A plain image (no stamp) is left as it is. Busy when a cache holds the home.
Status RecoverHome(Env* env, const std::string& uri, const HomeOptions& options, RecoverReport* report);

}  // namespace boostvol::home
