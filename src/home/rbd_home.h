// RbdHome: the home copy as a Ceph RBD image, through librbd's C API.
//
// URI (stored in meta.db's volume.home):  rbd:POOL/IMAGE[:conf=PATH][:id=NAME]
//   conf  the ceph.conf to read (default: librados' search: $CEPH_CONF, /etc/ceph/ceph.conf, ...)
//   id    the client name without "client." (default: librados' default, "admin")
// Everything about it (user commands, atomicity, fencing, timeouts) is in docs/rbd-home.md; the objects it keeps
// beside the image are summarized here:
//   the image                      POOL/IMAGE, byte-for-byte the image once drained (any Ceph client can use it)
//   image metadata boostvol.home   the stamp: the text of a directory home's boostvol-home (home_journal.h),
//                                  image times 0 (RBD has no usable change time; see docs/rbd-home.md)
//   RADOS objects in POOL          boostvol_journal.<image id>.<k>, k = 0, 1, ...: the redo journal of the batch
//                                  being applied, in a directory home's journal format, cut into pieces of
//                                  kJournalPieceBytes; the header block (first 4 KiB of piece 0) is written
//                                  last, after every other write of the journal completed (until then it reads
//                                  as zeros or as a stale header), so the journal is valid only when complete.
//
// Fencing: the image's exclusive lock (RBD_LOCK_MODE_EXCLUSIVE, managed by librbd and refused to peers) is taken
// at open and checked before every batch; a batch never starts without it, and after re-taking it the stamp must
// still be this volume's at this volume's watermark (else the home was adopted by someone else: never again).
//
// Built only with BOOSTVOL_HAVE_RBD (librbd found by CMake); without it the functions below that need a cluster
// return Unsupported with a message.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "boostvol/status.h"
#include "home/home.h"
#include "home/home_factory.h"

namespace boostvol::home {

inline constexpr char kRbdStampKey[] = "boostvol.home";
inline constexpr char kRbdJournalPrefix[] = "boostvol_journal.";
inline constexpr uint64_t kJournalPieceBytes = uint64_t{16} << 20;
// The most bytes of a migration batch an RbdHome holds in memory at once: it reads the batch from
// Batch::source (streams_batches()) into one ring of this size that holds the writes in flight, for the
// journal and again for the in-place writes.
inline constexpr uint64_t kRbdStreamBufferBytes = uint64_t{8} << 20;

struct RbdTarget {
  std::string pool;
  std::string image;
  std::string ceph_conf;  // empty = librados' default search
  std::string ceph_id;    // empty = librados' default ("admin")
};

// Parses rbd:POOL/IMAGE[:conf=PATH][:id=NAME] (InvalidArgument with the expected form otherwise).
Status ParseRbdUri(const std::string& uri, RbdTarget* out);
// The canonical URI of `t` (options only when set).
std::string RbdUri(const RbdTarget& t);

// True when this build has the RBD home.
bool RbdSupported();

// Creates POOL/IMAGE (features layering, exclusive-lock; refuses an existing image) and stamps it.
Status CreateRbdHome(const RbdTarget& t, const log::Uuid& uuid, uint64_t image_size);

// Opens POOL/IMAGE as the home of volume `uuid`: takes the exclusive lock (Busy naming the holder otherwise),
// checks the stamp (uuid, size), replays a complete journal.
Status OpenRbdHome(const RbdTarget& t, const log::Uuid& uuid, uint64_t image_size, bool use_journal,
                   std::unique_ptr<Home>* out, HomeOpenReport* report);

// What an RBD home did (for tests and benchmarks); all zero for any other home.
struct RbdHomeCounters {
  uint64_t peak_buffered_bytes = 0;  // the most batch bytes held at once over every ApplyBatch so far
  uint64_t batches_streamed = 0;     // non-empty batches applied
};
RbdHomeCounters GetRbdHomeCounters(const Home& home);

// Reads what adopting would find, changing nothing.
Status InspectRbdHome(const RbdTarget& t, HomeSummary* out);

// Makes POOL/IMAGE the home of the new volume `new_uuid` (see AdoptHome in home_factory.h).
Status AdoptRbdHome(const RbdTarget& t, const log::Uuid& new_uuid, uint64_t image_size, AdoptReport* report);

}  // namespace boostvol::home
