// RbdHome: the home copy as an RBD image (src/home/rbd_home.h has the layout; docs/rbd-home.md the why).
//
// ApplyBatch, in this order (each step complete and acknowledged by the cluster before the next; a RADOS or
// librbd write is durable on all replicas when it completes, and the client's rbd cache is off):
//   0. fencing: hold the exclusive lock (re-take it if lost, then the stamp must still be ours at our
//      watermark), or fail without writing anything
//   1. journal := header + extent table + data, as pieces boostvol_journal.<id>.<k> written whole
//      (write_full), pieces 1.. first, piece 0 (the header) last           -- the batch is decided
//   2. rbd_aio_write per extent (up to kMaxInFlight in flight), rbd_flush   -- the batch is home
//   3. image metadata boostvol.home := stamp(uuid, size, batch.end)         -- the batch is done
//   4. remove piece 0 (then the others): a journal left by a crash here has end <= the stamp's and is stale.
// A failure anywhere returns the error with the watermark unchanged and the migrator retries the whole batch;
// a journal that was complete when a later step failed is finished first (exactly as DirectoryHome does).
#include "home/rbd_home.h"

#include <cerrno>
#include <cstring>
#include <optional>
#include <string_view>

#include <spdlog/spdlog.h>

namespace boostvol::home {

Status ParseRbdUri(const std::string& uri, RbdTarget* out) {
  auto bad = [&](const std::string& why) {
    return Status::InvalidArgument("'" + uri + "' is not an RBD home: " + why +
                                   " (expected rbd:POOL/IMAGE[:conf=/path/ceph.conf][:id=NAME])");
  };
  if (uri.rfind("rbd:", 0) != 0) return bad("it does not start with rbd:");
  RbdTarget t;
  std::string rest = uri.substr(4);
  std::vector<std::string> parts;
  for (size_t pos = 0;;) {
    size_t c = rest.find(':', pos);
    parts.push_back(rest.substr(pos, c == std::string::npos ? std::string::npos : c - pos));
    if (c == std::string::npos) break;
    pos = c + 1;
  }
  const std::string& pi = parts[0];
  size_t slash = pi.find('/');
  if (slash == std::string::npos || slash == 0 || slash + 1 == pi.size() || pi.find('/', slash + 1) != std::string::npos) {
    return bad("POOL/IMAGE must be two non-empty names separated by one '/'");
  }
  t.pool = pi.substr(0, slash);
  t.image = pi.substr(slash + 1);
  for (char ch : t.pool + t.image) {
    if (ch == '@' || ch == ' ' || static_cast<unsigned char>(ch) < 0x20) return bad("names may not contain '@', spaces or control characters");
  }
  for (size_t i = 1; i < parts.size(); i++) {
    const std::string& o = parts[i];
    if (o.rfind("conf=", 0) == 0 && o.size() > 5) {
      t.ceph_conf = o.substr(5);
    } else if (o.rfind("id=", 0) == 0 && o.size() > 3) {
      t.ceph_id = o.substr(3);
    } else {
      return bad("unknown option '" + o + "'");
    }
  }
  *out = t;
  return Status::OK();
}

std::string RbdUri(const RbdTarget& t) {
  std::string u = "rbd:" + t.pool + "/" + t.image;
  if (!t.ceph_conf.empty()) u += ":conf=" + t.ceph_conf;
  if (!t.ceph_id.empty()) u += ":id=" + t.ceph_id;
  return u;
}

}  // namespace boostvol::home

#ifndef BOOSTVOL_HAVE_RBD

namespace boostvol::home {
namespace {
Status NoRbd() {
  return Status::Unsupported("this boostvol was built without the RBD home (librbd-dev and librados-dev were not "
                             "found at build time; install them, e.g. scripts/install-ceph.sh, and rebuild)");
}
}  // namespace
bool RbdSupported() { return false; }
Status CreateRbdHome(const RbdTarget&, const log::Uuid&, uint64_t) { return NoRbd(); }
Status OpenRbdHome(const RbdTarget&, const log::Uuid&, uint64_t, bool, std::unique_ptr<Home>*, HomeOpenReport*) {
  return NoRbd();
}
Status InspectRbdHome(const RbdTarget&, HomeSummary*) { return NoRbd(); }
Status AdoptRbdHome(const RbdTarget&, const log::Uuid&, uint64_t, AdoptReport*) { return NoRbd(); }
}  // namespace boostvol::home

#else  // BOOSTVOL_HAVE_RBD

#include <rados/librados.h>
#include <rbd/librbd.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <ctime>
#include <deque>
#include <thread>

#include "home/home_journal.h"
#include "log/log_format.h"
#include "util/env.h"
#include "util/thread_annotations.h"

namespace boostvol::home {

bool RbdSupported() { return true; }

namespace {

constexpr uint64_t kBlock = log::kBlockSize;
constexpr size_t kMaxInFlight = 32;                 // rbd_aio_write requests in flight per batch
constexpr uint64_t kMaxWriteChunk = uint64_t{4} << 20;  // one aio request at most (an RBD object)
constexpr uint64_t kMaxJournalPieces = 128;         // 2 GiB: above any batch (max_batch_bytes <= 1 GiB)
constexpr char kOwnerKey[] = "boostvol.owner";      // image metadata: who holds the lock, for messages
// Seconds a open/adopt keeps asking for a lock held by a client that may be dead (its watch lapses after the
// cluster's osd_client_watch_timeout, 30 s by default).
constexpr int kDefaultLockWaitS = 40;

bool SameWatermark(const meta::Watermark& a, const meta::Watermark& b) {
  return a.segment_seq == b.segment_seq && a.record_seq == b.record_seq;
}
bool AtOrAfter(const meta::Watermark& a, const meta::Watermark& b) {
  return a.segment_seq >= b.segment_seq && a.record_seq >= b.record_seq;
}
std::string WatermarkString(const meta::Watermark& w) {
  return "(segment " + std::to_string(w.segment_seq) + ", record " + std::to_string(w.record_seq) + ")";
}

// A librados/librbd return code (negative errno) as a Status.
Status CephError(int r, const std::string& what) {
  int e = r < 0 ? -r : r;
  std::string m = what + ": " + std::strerror(e);
  if (e == ETIMEDOUT) m += " (the cluster did not answer within the client's timeout; see docs/rbd-home.md)";
  if (e == ESHUTDOWN) m += " (this client was blocklisted: another client broke its lock)";
  return Status::IoError(e, m);
}

Status Fail(const Status& s, std::string_view hint) {
  spdlog::error("{} -- {}", s.ToString(), hint);
  return s;
}

constexpr std::string_view kRetryHint =
    "nothing cached is lost: the migrator retries the whole batch; check the cluster (ceph -s, the monitors and "
    "OSDs reachable from this host)";
constexpr std::string_view kOpenHint = "check the cluster (ceph -s), the pool and image names, --ceph-conf and --ceph-id";

int LockWaitSeconds() {
  const char* v = std::getenv("BOOSTVOL_RBD_LOCK_WAIT");
  if (v == nullptr || *v == '\0') return kDefaultLockWaitS;
  return std::max(0, std::atoi(v));
}

// A File over memory: lets the directory home's journal encoder and checker (home_journal.h) work on a journal
// that lives in RADOS objects, so both homes share one format.
class MemFile final : public File {
 public:
  explicit MemFile(std::string name) : name_(std::move(name)) {}
  Status ReadAt(uint64_t offset, void* buf, size_t n) override {
    std::memset(buf, 0, n);
    if (offset < data.size()) std::memcpy(buf, data.data() + offset, std::min<uint64_t>(n, data.size() - offset));
    return Status::OK();
  }
  Status WriteAt(uint64_t offset, const void* buf, size_t n) override {
    if (data.size() < offset + n) data.resize(offset + n);
    std::memcpy(data.data() + offset, buf, n);
    return Status::OK();
  }
  Status Sync() override { return Status::OK(); }
  Status Truncate(uint64_t size) override {
    data.resize(size);
    return Status::OK();
  }
  Status Allocate(uint64_t, uint64_t) override { return Status::OK(); }
  Status PunchHole(uint64_t offset, uint64_t len) override {
    if (offset < data.size()) std::memset(data.data() + offset, 0, std::min<uint64_t>(len, data.size() - offset));
    return Status::OK();
  }
  Status Stat(FileInfo* info) override {
    *info = FileInfo();
    info->size = data.size();
    return Status::OK();
  }
  const std::string& name() const override { return name_; }

  std::vector<uint8_t> data;

 private:
  std::string name_;
};

// One connection to the cluster with the pool and (optionally) the image open. Thread-safe as librados/librbd
// handles are; destroyed only when no call is using it.
struct Connection {
  rados_t rados = nullptr;
  rados_ioctx_t io = nullptr;
  rbd_image_t image = nullptr;
  std::string image_id;

  Connection() = default;
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;
  ~Connection() {
    if (image != nullptr) rbd_close(image);
    if (io != nullptr) rados_ioctx_destroy(io);
    if (rados != nullptr) rados_shutdown(rados);
  }
};

// Sets `key` to `value` unless the configuration (file, CEPH_ARGS) already changed it from `dflt`.
void SetUnlessConfigured(rados_t r, const char* key, const char* dflt, const char* value) {
  char buf[64] = {};
  if (rados_conf_get(r, key, buf, sizeof buf) == 0) {
    std::string cur(buf);
    if (cur != dflt && cur != std::string(dflt) + ".000000") return;
  }
  if (int e = rados_conf_set(r, key, value); e < 0) spdlog::warn("cannot set the Ceph client option {}: {}", key, std::strerror(-e));
}

Status Connect(const RbdTarget& t, bool open_image, std::unique_ptr<Connection>* out) {
  auto c = std::make_unique<Connection>();
  const std::string where = "rbd:" + t.pool + "/" + t.image;
  int r = rados_create(&c->rados, t.ceph_id.empty() ? nullptr : t.ceph_id.c_str());
  if (r < 0) return CephError(r, "creating a Ceph client for " + where);
  r = rados_conf_read_file(c->rados, t.ceph_conf.empty() ? nullptr : t.ceph_conf.c_str());
  if (r < 0) {
    return Status::InvalidArgument(
        "cannot read the Ceph configuration " +
        (t.ceph_conf.empty() ? std::string("(searched $CEPH_CONF, /etc/ceph/ceph.conf, ~/.ceph/config, ./ceph.conf)")
                             : t.ceph_conf) +
        ": " + std::strerror(-r) + "; give it with --ceph-conf PATH");
  }
  (void)rados_conf_parse_env(c->rados, nullptr);  // CEPH_ARGS
  // Bounded waits (DESIGN.md 4): a dead cluster returns ETIMEDOUT instead of hanging the caller.
  SetUnlessConfigured(c->rados, "rados_osd_op_timeout", "0", "30");
  SetUnlessConfigured(c->rados, "rados_mon_op_timeout", "0", "30");
  SetUnlessConfigured(c->rados, "client_mount_timeout", "300", "30");
  // Durable on completion: boostvol is the cache; librbd's own cache would only hide writes from the barrier.
  (void)rados_conf_set(c->rados, "rbd_cache", "false");
  r = rados_connect(c->rados);
  if (r < 0) return CephError(r, "connecting to the Ceph cluster for " + where);
  r = rados_ioctx_create(c->rados, t.pool.c_str(), &c->io);
  if (r == -ENOENT) return Status::NotFound("the Ceph cluster has no pool '" + t.pool + "' (create it: ceph osd pool create " + t.pool + "; rbd pool init " + t.pool + ")");
  if (r < 0) return CephError(r, "opening pool " + t.pool);
  if (open_image) {
    r = rbd_open(c->io, t.image.c_str(), &c->image, nullptr);
    if (r == -ENOENT) return Status::NotFound("there is no RBD image " + t.pool + "/" + t.image);
    if (r < 0) return CephError(r, "opening RBD image " + t.pool + "/" + t.image);
    char id[128] = {};
    r = rbd_get_id(c->image, id, sizeof id);
    if (r < 0) return CephError(r, "reading the id of RBD image " + t.pool + "/" + t.image);
    c->image_id = id;
  }
  *out = std::move(c);
  return Status::OK();
}

std::string LockHolder(Connection* c) {
  rbd_lock_mode_t mode;
  char* owners[8] = {};
  size_t n = 8;
  std::string who;
  if (rbd_lock_get_owners(c->image, &mode, owners, &n) == 0) {
    for (size_t i = 0; i < n; i++) who += (who.empty() ? "" : ", ") + std::string(owners[i]);
    rbd_lock_get_owners_cleanup(owners, n);
  }
  char note[512] = {};
  size_t len = sizeof note - 1;
  if (rbd_metadata_get(c->image, kOwnerKey, note, &len) == 0) who += " (last taken by " + std::string(note) + ")";
  return who.empty() ? "an unknown client" : who;
}

// Takes the image's exclusive lock, waiting up to `wait_s` seconds for a holder that may be dead.
Status AcquireLock(Connection* c, const std::string& where, int wait_s, const std::string& note) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(wait_s);
  bool said = false;
  for (;;) {
    int r = rbd_lock_acquire(c->image, RBD_LOCK_MODE_EXCLUSIVE);
    if (r == 0) break;
    if (r != -EROFS && r != -EBUSY && r != -EAGAIN) return CephError(r, "taking the exclusive lock of " + where);
    std::string holder = LockHolder(c);
    if (std::chrono::steady_clock::now() >= deadline) {
      return Status::Busy(where + " is in use: its exclusive lock is held by " + holder +
                          ". Another boostvol cache (or a VM, `rbd map`, qemu) is writing it; exactly one may. Stop "
                          "that one first (if it is dead, its lock lapses after the cluster's "
                          "osd_client_watch_timeout, or break it: rbd lock ls / rbd lock rm)");
    }
    if (!said) {
      spdlog::warn("{}: the exclusive lock is held by {}; waiting up to {} s in case that holder is dead", where,
                   holder, wait_s);
      said = true;
    }
    std::this_thread::sleep_for(std::chrono::seconds(1));
  }
  char host[256] = {};
  (void)gethostname(host, sizeof host - 1);
  std::string text = note + " pid " + std::to_string(getpid()) + " on " + host + " since " + std::to_string(std::time(nullptr));
  (void)rbd_metadata_set(c->image, kOwnerKey, text.c_str());
  return Status::OK();
}

// The stamp from the image metadata: *found=false when absent.
Status ReadStamp(Connection* c, const std::string& where, Stamp* st, bool* found) {
  std::string buf(kMaxStampBytes + 1, '\0');
  size_t len = buf.size();
  int r = rbd_metadata_get(c->image, kRbdStampKey, buf.data(), &len);
  *found = false;
  if (r == -ENOENT) return Status::OK();
  if (r == -ERANGE) return Status::Corruption(where + ": the stamp (image metadata " + kRbdStampKey + ") is larger than any stamp; run `boostvol check`");
  if (r < 0) return CephError(r, "reading the stamp of " + where);
  buf.resize(strnlen(buf.data(), std::min(len, buf.size())));
  BV_RETURN_IF_ERROR(DecodeStamp(buf, where + " (image metadata " + kRbdStampKey + ")", st));
  *found = true;
  return Status::OK();
}

Status WriteStampTo(Connection* c, const std::string& where, const log::Uuid& uuid, uint64_t size,
                    const meta::Watermark& wm) {
  Stamp st;
  st.uuid = uuid;
  st.image_size = size;
  st.watermark = wm;
  std::string text = EncodeStamp(st);
  int r = rbd_metadata_set(c->image, kRbdStampKey, text.c_str());
  if (r < 0) return CephError(r, "writing the stamp of " + where);
  return Status::OK();
}

std::string PieceName(const std::string& image_id, uint64_t k) {
  return std::string(kRbdJournalPrefix) + image_id + "." + std::to_string(k);
}

// Reads the journal's pieces into `f` (stops at the first missing or short piece). *pieces = pieces found.
Status LoadJournal(Connection* c, MemFile* f, uint64_t* pieces) {
  f->data.clear();
  *pieces = 0;
  for (uint64_t k = 0; k < kMaxJournalPieces; k++) {
    const std::string oid = PieceName(c->image_id, k);
    uint64_t size = 0;
    time_t mtime = 0;
    int r = rados_stat(c->io, oid.c_str(), &size, &mtime);
    if (r == -ENOENT) break;
    if (r < 0) return CephError(r, "reading the journal object " + oid);
    if (size > kJournalPieceBytes) return Status::Corruption("journal object " + oid + " is larger than a piece");
    size_t base = f->data.size();
    f->data.resize(base + size);
    for (uint64_t done = 0; done < size;) {
      int n = rados_read(c->io, oid.c_str(), reinterpret_cast<char*>(f->data.data() + base + done),
                         static_cast<size_t>(std::min<uint64_t>(size - done, uint64_t{8} << 20)), done);
      if (n < 0) return CephError(n, "reading the journal object " + oid);
      if (n == 0) {
        f->data.resize(base + done);  // shrank under us: treat as short
        break;
      }
      done += static_cast<uint64_t>(n);
    }
    *pieces = k + 1;
    if (size < kJournalPieceBytes) break;
  }
  return Status::OK();
}

// Removes pieces [0, count) (piece 0 first: from then on the journal reads as empty).
Status RemoveJournal(Connection* c, uint64_t count) {
  for (uint64_t k = 0; k < std::max<uint64_t>(count, 1); k++) {
    const std::string oid = PieceName(c->image_id, k);
    int r = rados_remove(c->io, oid.c_str());
    if (r < 0 && r != -ENOENT) return CephError(r, "removing the journal object " + oid);
  }
  return Status::OK();
}

// Writes `f` as journal pieces: pieces 1.. in parallel, then piece 0 (the header) alone.
Status StoreJournal(Connection* c, const MemFile& f, uint64_t* pieces) {
  const uint64_t total = f.data.size();
  const uint64_t n = std::max<uint64_t>(1, (total + kJournalPieceBytes - 1) / kJournalPieceBytes);
  if (n > kMaxJournalPieces) return Status::InvalidArgument("batch journal of " + std::to_string(total) + " bytes is too large");
  auto write_pieces = [&](uint64_t first, uint64_t last) -> Status {
    std::vector<rados_completion_t> comps;
    Status err;
    for (uint64_t k = first; k < last; k++) {
      const std::string oid = PieceName(c->image_id, k);
      uint64_t off = k * kJournalPieceBytes;
      uint64_t len = std::min(kJournalPieceBytes, total - off);
      rados_completion_t comp = nullptr;
      int r = rados_aio_create_completion(nullptr, nullptr, nullptr, &comp);
      if (r == 0) {
        r = rados_aio_write_full(c->io, oid.c_str(), comp, reinterpret_cast<const char*>(f.data.data() + off), len);
        if (r < 0) rados_aio_release(comp);
        else comps.push_back(comp);
      }
      if (r < 0) {
        err = CephError(r, "writing the journal object " + oid);
        break;
      }
    }
    for (rados_completion_t comp : comps) {
      rados_aio_wait_for_complete(comp);
      int r = rados_aio_get_return_value(comp);
      rados_aio_release(comp);
      if (r < 0 && err.ok()) err = CephError(r, "writing the journal");
    }
    return err;
  };
  if (n > 1) BV_RETURN_IF_ERROR(write_pieces(1, n));
  BV_RETURN_IF_ERROR(write_pieces(0, 1));
  *pieces = n;
  return Status::OK();
}

// Writes the extents in place with many requests in flight, then flushes. `data_at(i)` gives extent i's bytes.
struct PlainExtent {
  uint64_t offset;
  uint64_t length;
  const uint8_t* data;
};

Status WriteInPlace(Connection* c, const std::vector<PlainExtent>& ext, const std::string& where) {
  std::deque<rbd_completion_t> inflight;
  Status err;
  auto reap_one = [&] {
    rbd_completion_t comp = inflight.front();
    inflight.pop_front();
    rbd_aio_wait_for_complete(comp);
    ssize_t r = rbd_aio_get_return_value(comp);
    rbd_aio_release(comp);
    if (r < 0 && err.ok()) err = CephError(static_cast<int>(r), "writing " + where);
  };
  // Zero extents (data == nullptr) first and synchronously: data extents after them may overlap.
  for (const PlainExtent& e : ext) {
    if (e.data != nullptr) continue;
    for (uint64_t done = 0; done < e.length;) {
      uint64_t len = std::min<uint64_t>(uint64_t{1} << 30, e.length - done);
      ssize_t r = rbd_write_zeroes(c->image, e.offset + done, len, 0, 0);
      if (r < 0) return CephError(static_cast<int>(r), "zeroing " + where + " at offset " + std::to_string(e.offset + done));
      done += len;
    }
  }
  for (const PlainExtent& e : ext) {
    if (e.data == nullptr) continue;
    for (uint64_t done = 0; done < e.length && err.ok();) {
      uint64_t len = std::min(kMaxWriteChunk, e.length - done);
      rbd_completion_t comp = nullptr;
      int r = rbd_aio_create_completion(nullptr, nullptr, &comp);
      if (r == 0) {
        r = rbd_aio_write(c->image, e.offset + done, len, reinterpret_cast<const char*>(e.data + done), comp);
        if (r < 0) rbd_aio_release(comp);
        else inflight.push_back(comp);
      }
      if (r < 0) {
        err = CephError(r, "writing " + where + " at offset " + std::to_string(e.offset + done));
        break;
      }
      done += len;
      if (inflight.size() >= kMaxInFlight) reap_one();
    }
    if (!err.ok()) break;
  }
  while (!inflight.empty()) reap_one();
  if (!err.ok()) return err;
  int r = rbd_flush(c->image);
  if (r < 0) return CephError(r, "flushing " + where);
  return Status::OK();
}

// Finishes a valid journal's batch: its extents in place, flush, stamp, remove.
Status ReplayJournalOn(Connection* c, const MemFile& f, const Journal& j, uint64_t pieces, const std::string& where,
                       const log::Uuid& uuid, uint64_t size) {
  std::vector<PlainExtent> ext;
  ext.reserve(j.extents.size());
  for (const JournalExtent& e : j.extents)
    ext.push_back(PlainExtent{e.offset, e.length, e.zero ? nullptr : f.data.data() + e.data_pos});
  BV_RETURN_IF_ERROR(WriteInPlace(c, ext, where));
  BV_RETURN_IF_ERROR(WriteStampTo(c, where, uuid, size, j.end));
  Status s = RemoveJournal(c, pieces);
  if (!s.ok()) spdlog::warn("{}: removing the replayed journal failed ({}); harmless: it is stale now", where, s.ToString());
  return Status::OK();
}

Status ValidateBatch(const Batch& b, uint64_t image_size) {
  uint64_t prev_end = 0;
  for (size_t i = 0; i < b.zeros.size(); i++) {
    const ZeroExtent& z = b.zeros[i];
    if (z.length == 0 || z.length % kBlock != 0 || z.offset % kBlock != 0 || z.offset > image_size ||
        z.length > image_size - z.offset || (i > 0 && z.offset < prev_end)) {
      return Status::InvalidArgument("batch zero extent " + std::to_string(i) + " (offset " + std::to_string(z.offset) +
                                     ", length " + std::to_string(z.length) +
                                     ") is empty, unaligned, past the end, unsorted or overlapping");
    }
    prev_end = z.offset + z.length;
  }
  prev_end = 0;
  for (size_t i = 0; i < b.extents.size(); i++) {
    const Extent& e = b.extents[i];
    if (e.length == 0 || e.length % kBlock != 0 || e.offset % kBlock != 0 || e.data == nullptr ||
        e.offset > image_size || e.length > image_size - e.offset || (i > 0 && e.offset < prev_end)) {
      return Status::InvalidArgument("batch extent " + std::to_string(i) + " (offset " + std::to_string(e.offset) +
                                     ", length " + std::to_string(e.length) +
                                     ") is empty, unaligned, past the end, unsorted or overlapping");
    }
    prev_end = e.offset + e.length;
  }
  return ValidateJournalExtents(b);
}

class RbdHome final : public Home {
 public:
  RbdHome(const RbdTarget& t, std::unique_ptr<Connection> c, const log::Uuid& uuid, uint64_t size, bool use_journal,
          const meta::Watermark& wm)
      : target_(t), where_(RbdUri(t)), uuid_(uuid), size_(size), use_journal_(use_journal), conn_(std::move(c)),
        watermark_(wm) {}

  uint64_t size() const override { return size_; }

  meta::Watermark watermark() const override {
    MutexLock l(&mu_);
    return watermark_;
  }

  Status Read(uint64_t offset, void* buf, size_t n) override {
    if (offset > size_ || n > size_ - offset) {
      return Status::InvalidArgument("home read of " + std::to_string(n) + " bytes at " + std::to_string(offset) +
                                     " lies past the image's end " + std::to_string(size_));
    }
    ReaderLock l(&conn_mu_);
    for (size_t done = 0; done < n;) {
      ssize_t r = rbd_read2(conn_->image, offset + done, n - done, static_cast<char*>(buf) + done, 0);
      if (r < 0) {
        NoteError(static_cast<int>(r));
        return Fail(CephError(static_cast<int>(r), "reading " + where_ + " at offset " + std::to_string(offset + done)),
                    "the read is retried; if it persists, check the cluster (ceph -s)");
      }
      if (r == 0) {
        std::memset(static_cast<char*>(buf) + done, 0, n - done);
        break;
      }
      done += static_cast<size_t>(r);
    }
    return Status::OK();
  }

  Status ApplyBatch(const Batch& batch) override {
    MutexLock l(&apply_mu_);
    Status s = ValidateBatch(batch, size_);
    if (!s.ok()) return Fail(s, "this is a bug in the migrator; please report it");
    BV_RETURN_IF_ERROR(EnsureLock());
    ReaderLock cl(&conn_mu_);
    Connection* c = conn_.get();
    bool marker_in_place = false;
    if (journal_live_) {
      s = FinishLiveJournal(c, batch, &marker_in_place);
      if (!s.ok()) return NoteFail(s);
    }
    meta::Watermark cur = watermark();
    if (finished_journal_end_ && AtOrAfter(*finished_journal_end_, batch.end) && AtOrAfter(cur, batch.end) &&
        !SameWatermark(batch.end, cur)) {
      // Home already: the journal of a failed, larger attempt was finished
      // above (as in DirectoryHome::ApplyBatch).
      return Status::OK();
    }
    if (!AtOrAfter(batch.end, cur)) {
      return Fail(Status::InvalidArgument("batch end " + WatermarkString(batch.end) + " precedes the home's watermark " +
                                          WatermarkString(cur)),
                  "this is a bug in the migrator; please report it");
    }
    if (SameWatermark(batch.end, cur)) return Status::OK();
    const std::string what =
        "applying batch " + WatermarkString(cur) + " -> " + WatermarkString(batch.end) + " to " + where_;
    if (!batch.empty()) {
      // 1. The journal: decided once piece 0 is written.
      if (!marker_in_place) {
        MemFile jf("journal of " + where_);
        s = WriteJournal(&jf, uuid_, size_, cur, batch, use_journal_);
        uint64_t pieces = 0;
        if (s.ok()) s = StoreJournal(c, jf, &pieces);
        if (!s.ok()) return NoteFail(Status::IoError(s.err(), what + ": writing the journal: " + s.message()));
        journal_pieces_ = std::max(journal_pieces_, pieces);
      }
      journal_live_ = true;
      // 2. In place, then the barrier.
      std::vector<PlainExtent> ext;
      ext.reserve(batch.zeros.size() + batch.extents.size());
      for (const ZeroExtent& z : batch.zeros) ext.push_back(PlainExtent{z.offset, z.length, nullptr});
      for (const Extent& e : batch.extents) ext.push_back(PlainExtent{e.offset, e.length, e.data});
      s = WriteInPlace(c, ext, where_);
      if (!s.ok()) return NoteFail(Status::IoError(s.err(), what + ": " + s.message()));
    }
    // 3. The stamp.
    s = WriteStampTo(c, where_, uuid_, size_, batch.end);
    if (!s.ok()) return NoteFail(Status::IoError(s.err(), what + ": " + s.message()));
    journal_live_ = false;
    SetWatermark(batch.end);
    // 4. Remove the journal (a leftover is stale: its end <= the stamp's watermark).
    if (!batch.empty()) {
      s = RemoveJournal(c, journal_pieces_);
      if (s.ok()) journal_pieces_ = 0;
      else spdlog::warn("{}: removing the journal failed ({}); harmless: its batch is in the stamp", where_, s.ToString());
    }
    return Status::OK();
  }

  Status Restamp() override {
    MutexLock l(&apply_mu_);
    BV_RETURN_IF_ERROR(EnsureLock());
    ReaderLock cl(&conn_mu_);
    return WriteStampTo(conn_.get(), where_, uuid_, size_, watermark());
  }

  std::string Describe() const override { return where_; }

  // Write-through (a volume whose log failed): straight into the image, fenced like a batch.
  Status WriteThrough(uint64_t offset, const void* data, size_t n) override {
    if (offset > size_ || n > size_ - offset) return Status::InvalidArgument("write-through past the image's end");
    MutexLock l(&apply_mu_);
    BV_RETURN_IF_ERROR(EnsureLock());
    ReaderLock cl(&conn_mu_);
    ssize_t r = rbd_write2(conn_->image, offset, n, static_cast<const char*>(data), 0);
    if (r < 0) return NoteFail(CephError(static_cast<int>(r), "writing through to " + where_));
    return Status::OK();
  }
  Status ZeroThrough(uint64_t offset, uint64_t n) override {
    if (offset > size_ || n > size_ - offset) return Status::InvalidArgument("write-through past the image's end");
    MutexLock l(&apply_mu_);
    BV_RETURN_IF_ERROR(EnsureLock());
    ReaderLock cl(&conn_mu_);
    Status s = WriteInPlace(conn_.get(), {PlainExtent{offset, n, nullptr}}, where_);
    if (!s.ok()) return NoteFail(s);
    return Status::OK();
  }
  Status SyncThrough() override {
    MutexLock l(&apply_mu_);
    BV_RETURN_IF_ERROR(EnsureLock());
    ReaderLock cl(&conn_mu_);
    int r = rbd_flush(conn_->image);
    if (r < 0) return NoteFail(CephError(r, "flushing " + where_));
    Status s = WriteStampTo(conn_.get(), where_, uuid_, size_, watermark());
    if (!s.ok()) return NoteFail(s);
    return s;
  }

  // Open's second half: the journal left by a crash, if any.
  Status Recover(const Stamp& stamp, HomeOpenReport* report) {
    MutexLock l(&apply_mu_);
    ReaderLock cl(&conn_mu_);
    Connection* c = conn_.get();
    MemFile jf("journal of " + where_);
    uint64_t pieces = 0;
    Status s = LoadJournal(c, &jf, &pieces);
    if (!s.ok()) return Fail(s, kOpenHint);
    JournalState state = JournalState::kEmpty;
    Journal j;
    std::string why;
    s = ReadJournal(&jf, uuid_, size_, &state, &j, &why);
    if (!s.ok()) return Fail(s, s.IsCorruption() ? "the home may be inconsistent; run `boostvol check`" : kOpenHint);
    if (state == JournalState::kTorn) {
      spdlog::warn("{}: discarding a torn journal ({}): its batch never began; the home is intact at {}", where_, why,
                   WatermarkString(stamp.watermark));
      (void)RemoveJournal(c, pieces);
    } else if (state == JournalState::kValid) {
      if (AtOrAfter(stamp.watermark, j.end)) {
        (void)RemoveJournal(c, pieces);
      } else if (!SameWatermark(j.base, stamp.watermark)) {
        return Fail(Status::Corruption(where_ + ": the journal holds batch " + WatermarkString(j.base) + " -> " +
                                       WatermarkString(j.end) + " but the stamp is at " +
                                       WatermarkString(stamp.watermark) + ": they do not follow each other"),
                    "the home may be inconsistent; run `boostvol check`");
      } else if (j.intent_only()) {
        spdlog::warn("{}: a batch {} -> {} was interrupted while the volume ran without the home journal; {} extent(s) "
                     "may be torn until the migrator rewrites them from the log",
                     where_, WatermarkString(j.base), WatermarkString(j.end), j.extents.size());
        (void)RemoveJournal(c, pieces);
      } else {
        spdlog::info("{}: finishing batch {} -> {} from the journal ({} extents, {} bytes) after a crash", where_,
                     WatermarkString(j.base), WatermarkString(j.end), j.extents.size(), j.total_bytes);
        s = ReplayJournalOn(c, jf, j, pieces, where_, uuid_, size_);
        if (!s.ok()) return Fail(s, "the journal is kept and replayed again at the next open; " + std::string(kOpenHint));
        SetWatermark(j.end);
        report->journal_replayed = true;
      }
    }
    report->watermark = watermark();
    return Status::OK();
  }

 private:
  void SetWatermark(const meta::Watermark& wm) {
    MutexLock l(&mu_);
    watermark_ = wm;
  }

  void NoteError(int r) {
    if (r == -ESHUTDOWN || r == -EROFS) blocklisted_.store(true);
  }
  Status NoteFail(const Status& s) {
    NoteError(-s.err());
    return Fail(s, kRetryHint);
  }

  // Fencing: OK only while this client holds the exclusive lock and the home is still this volume's.
  Status EnsureLock() BV_REQUIRES(apply_mu_) {
    if (!adopted_away_.empty()) return Status::Aborted(adopted_away_);
    int owner = 0;
    int r;
    {
      ReaderLock cl(&conn_mu_);
      r = rbd_is_exclusive_lock_owner(conn_->image, &owner);
    }
    if (r == 0 && owner == 1 && !blocklisted_.load()) {
      if (lock_lost_) {
        spdlog::warn("{}: holding the exclusive lock again; migration resumes", where_);
        lock_lost_ = false;
      }
      return Status::OK();
    }
    if (!lock_lost_) {
      spdlog::error("{}: this cache LOST the image's exclusive lock{}; it stops writing home (writes still go to the "
                    "log, cached reads still work) until it holds the lock again",
                    where_, blocklisted_.load() ? " (blocklisted)" : "");
      lock_lost_ = true;
    }
    if (r == -ESHUTDOWN || blocklisted_.load()) {
      // A blocklisted client can do nothing more: a fresh connection is a new client.
      std::unique_ptr<Connection> fresh;
      Status s = Connect(target_, true, &fresh);
      if (!s.ok()) return Status::IoError(s.err(), where_ + ": lost the exclusive lock; reconnecting failed: " + s.message());
      {
        WriterLock cl(&conn_mu_);
        conn_.swap(fresh);
      }
      blocklisted_.store(false);
      fresh.reset();  // the old connection, now unused
    }
    Status s;
    {
      ReaderLock cl(&conn_mu_);
      s = AcquireLock(conn_.get(), where_, 0, "boostvol volume " + log::UuidToString(uuid_));
    }
    if (!s.ok()) {
      return Status::Busy(where_ + ": this cache lost the image's exclusive lock and does not write home until it "
                          "holds it again: " + s.message());
    }
    // Held again: the home must still be ours, exactly where we left it.
    Stamp st;
    bool found = false;
    {
      ReaderLock cl(&conn_mu_);
      s = ReadStamp(conn_.get(), where_, &st, &found);
    }
    if (!s.ok()) return s;
    if (!found || st.uuid != uuid_ || !SameWatermark(st.watermark, watermark())) {
      adopted_away_ = where_ + " was taken over while this cache had lost its lock (the stamp now says volume " +
                      (found ? log::UuidToString(st.uuid) + " at " + WatermarkString(st.watermark) : "nothing") +
                      "); this cache never writes it again. Its dirty blocks stay readable here; copy what you need "
                      "from MOUNT/image";
      {
        ReaderLock cl(&conn_mu_);
        (void)rbd_lock_release(conn_->image);
      }
      spdlog::error("{}", adopted_away_);
      return Status::Aborted(adopted_away_);
    }
    return Status::OK();
  }

  Status FinishLiveJournal(Connection* c, const Batch& batch, bool* marker_in_place)
      BV_REQUIRES(apply_mu_) BV_REQUIRES_SHARED(conn_mu_) {
    MemFile jf("journal of " + where_);
    uint64_t pieces = 0;
    BV_RETURN_IF_ERROR(LoadJournal(c, &jf, &pieces));
    JournalState state = JournalState::kEmpty;
    Journal j;
    std::string why;
    BV_RETURN_IF_ERROR(ReadJournal(&jf, uuid_, size_, &state, &j, &why));
    if (state == JournalState::kValid && j.intent_only() && SameWatermark(j.base, watermark())) {
      if (!batch.empty() && AtOrAfter(batch.end, j.end)) {
        *marker_in_place = true;
      } else {
        BV_RETURN_IF_ERROR(RemoveJournal(c, pieces));
      }
      journal_live_ = false;
      return Status::OK();
    }
    if (state != JournalState::kValid || j.intent_only() || !SameWatermark(j.base, watermark())) {
      journal_live_ = false;  // nothing to finish from: the batch being applied rewrites every extent
      return Status::OK();
    }
    BV_RETURN_IF_ERROR(ReplayJournalOn(c, jf, j, pieces, where_, uuid_, size_));
    journal_live_ = false;
    SetWatermark(j.end);
    finished_journal_end_ = j.end;
    return Status::OK();
  }

  const RbdTarget target_;
  const std::string where_;
  const log::Uuid uuid_;
  const uint64_t size_;
  const bool use_journal_;

  Mutex apply_mu_ BV_ACQUIRED_BEFORE(conn_mu_, mu_);  // serializes ApplyBatch, Restamp, Recover
  bool journal_live_ BV_GUARDED_BY(apply_mu_) = false;
  std::optional<meta::Watermark> finished_journal_end_ BV_GUARDED_BY(apply_mu_);  // see DirectoryHome
  uint64_t journal_pieces_ BV_GUARDED_BY(apply_mu_) = 1;  // pieces a removal must cover
  bool lock_lost_ BV_GUARDED_BY(apply_mu_) = false;
  std::string adopted_away_ BV_GUARDED_BY(apply_mu_);
  std::atomic<bool> blocklisted_{false};

  SharedMutex conn_mu_;  // shared: every call on the connection; exclusive: swapping in a fresh one
  std::unique_ptr<Connection> conn_ BV_PT_GUARDED_BY(conn_mu_);

  mutable Mutex mu_;
  meta::Watermark watermark_ BV_GUARDED_BY(mu_);
};

Status ValidateSize(uint64_t image_size, const std::string& where) {
  if (image_size == 0 || image_size % kBlock != 0 || image_size / kBlock > log::kMaxImageBlocks) {
    return Status::InvalidArgument(where + ": image size " + std::to_string(image_size) +
                                   " must be a positive multiple of 4096 of at most 16 TiB");
  }
  return Status::OK();
}

// Connects, opens the image and takes its lock.
Status OpenLocked(const RbdTarget& t, const std::string& note, std::unique_ptr<Connection>* c) {
  BV_RETURN_IF_ERROR(Connect(t, true, c));
  return AcquireLock(c->get(), RbdUri(t), LockWaitSeconds(), note);
}

// What the image holds: its size, the stamp, the journal (read-only).
Status Summarize(Connection* c, const std::string& where, HomeSummary* out, Stamp* stamp) {
  *out = HomeSummary();
  uint64_t size = 0;
  int r = rbd_get_size(c->image, &size);
  if (r < 0) return CephError(r, "reading the size of " + where);
  out->image_size = size;
  bool found = false;
  BV_RETURN_IF_ERROR(ReadStamp(c, where, stamp, &found));
  out->stamped = found;
  if (found) {
    if (stamp->image_size != size) {
      return Status::Corruption(where + ": the stamp says " + std::to_string(stamp->image_size) +
                                " bytes but the image has " + std::to_string(size) + " (was it resized?)");
    }
    out->previous_uuid = log::UuidToString(stamp->uuid);
    out->watermark = stamp->watermark;
    MemFile jf("journal of " + where);
    uint64_t pieces = 0;
    BV_RETURN_IF_ERROR(LoadJournal(c, &jf, &pieces));
    JournalState state = JournalState::kEmpty;
    Journal j;
    std::string why;
    BV_RETURN_IF_ERROR(ReadJournal(&jf, stamp->uuid, size, &state, &j, &why));
    out->journal_pending = state == JournalState::kValid && !j.intent_only() && !AtOrAfter(stamp->watermark, j.end) &&
                           SameWatermark(j.base, stamp->watermark);
  }
  return ValidateSize(size, where);
}

}  // namespace

Status CreateRbdHome(const RbdTarget& t, const log::Uuid& uuid, uint64_t image_size) {
  const std::string where = RbdUri(t);
  BV_RETURN_IF_ERROR(ValidateSize(image_size, where));
  std::unique_ptr<Connection> c;
  Status s = Connect(t, false, &c);
  if (!s.ok()) return Fail(s, kOpenHint);
  rbd_image_options_t opts;
  rbd_image_options_create(&opts);
  rbd_image_options_set_uint64(opts, RBD_IMAGE_OPTION_FEATURES, RBD_FEATURE_LAYERING | RBD_FEATURE_EXCLUSIVE_LOCK);
  int r = rbd_create4(c->io, t.image.c_str(), image_size, opts);
  rbd_image_options_destroy(opts);
  if (r == -EEXIST) {
    return Fail(Status::Busy("the RBD image " + t.pool + "/" + t.image +
                             " already exists; boostvol create never overwrites one"),
                "to start a cache on it as it is, add --adopt; else choose another image name");
  }
  if (r < 0) return Fail(CephError(r, "creating RBD image " + t.pool + "/" + t.image), kOpenHint);
  auto undo = [&](const Status& why) {
    c.reset();
    std::unique_ptr<Connection> c2;
    if (Connect(t, false, &c2).ok()) (void)rbd_remove(c2->io, t.image.c_str());
    return Fail(Status(why), "the image this create made was removed; fix the cause and run create again");
  };
  r = rbd_open(c->io, t.image.c_str(), &c->image, nullptr);
  if (r < 0) return undo(CephError(r, "opening the new image " + where));
  char id[128] = {};
  r = rbd_get_id(c->image, id, sizeof id);
  if (r < 0) return undo(CephError(r, "reading the id of " + where));
  c->image_id = id;
  s = AcquireLock(c.get(), where, 0, "boostvol create of volume " + log::UuidToString(uuid));
  if (s.ok()) s = WriteStampTo(c.get(), where, uuid, image_size, meta::Watermark());
  if (!s.ok()) return undo(s);
  (void)rbd_lock_release(c->image);
  spdlog::info("created home {} for volume {} ({} bytes)", where, log::UuidToString(uuid), image_size);
  return Status::OK();
}

Status OpenRbdHome(const RbdTarget& t, const log::Uuid& uuid, uint64_t image_size, bool use_journal,
                   std::unique_ptr<Home>* out, HomeOpenReport* report) {
  *report = HomeOpenReport();
  const std::string where = RbdUri(t);
  std::unique_ptr<Connection> c;
  Status s = OpenLocked(t, "boostvol volume " + log::UuidToString(uuid), &c);
  if (!s.ok()) return Fail(s, kOpenHint);
  Stamp stamp;
  bool found = false;
  s = ReadStamp(c.get(), where, &stamp, &found);
  if (!s.ok()) return Fail(s, kOpenHint);
  if (!found) {
    return Fail(Status::NotFound(where + " holds no boostvol stamp (image metadata " + kRbdStampKey +
                                 "): it is not the home of a boostvol volume"),
                "to start a cache on an existing image, use `boostvol create FAST " + where + " --adopt`");
  }
  if (stamp.uuid != uuid) {
    return Fail(Status::InvalidArgument(where + " belongs to volume " + log::UuidToString(stamp.uuid) +
                                        ", but FAST belongs to volume " + log::UuidToString(uuid) +
                                        ": they are not a pair (was the home adopted by another cache?)"),
                "a home adopted by a new cache is never written by the old one again");
  }
  uint64_t size = 0;
  int r = rbd_get_size(c->image, &size);
  if (r < 0) return Fail(CephError(r, "reading the size of " + where), kOpenHint);
  if (stamp.image_size != image_size || size != image_size) {
    return Fail(Status::InvalidArgument(where + " has " + std::to_string(size) + " bytes (stamp: " +
                                        std::to_string(stamp.image_size) + "), but the volume's image is " +
                                        std::to_string(image_size) + " bytes; was it resized?"),
                "resize it back with `rbd resize --size " + std::to_string(image_size) + "B`");
  }
  auto home = std::make_unique<RbdHome>(t, std::move(c), uuid, image_size, use_journal, stamp.watermark);
  BV_RETURN_IF_ERROR(home->Recover(stamp, report));
  if (!use_journal) {
    spdlog::warn("{}: the home journal is off: a crash during migration can leave the image torn (DESIGN.md 2.7)", where);
  }
  *out = std::move(home);
  return Status::OK();
}

Status InspectRbdHome(const RbdTarget& t, HomeSummary* out) {
  const std::string where = RbdUri(t);
  std::unique_ptr<Connection> c;
  Status s = OpenLocked(t, "boostvol create --adopt (inspecting)", &c);
  if (!s.ok()) return Fail(s, kOpenHint);
  Stamp stamp;
  s = Summarize(c.get(), where, out, &stamp);
  (void)rbd_lock_release(c->image);
  if (!s.ok()) return Fail(s, kOpenHint);
  return s;
}

Status AdoptRbdHome(const RbdTarget& t, const log::Uuid& new_uuid, uint64_t image_size, AdoptReport* report) {
  *report = AdoptReport();
  const std::string where = RbdUri(t);
  std::unique_ptr<Connection> c;
  Status s = OpenLocked(t, "boostvol create --adopt of volume " + log::UuidToString(new_uuid), &c);
  if (!s.ok()) return Fail(s, kOpenHint);
  Stamp stamp;
  s = Summarize(c.get(), where, &report->found, &stamp);
  if (!s.ok()) return Fail(s, kOpenHint);
  if (report->found.image_size != image_size) {
    return Fail(Status::InvalidArgument(where + " has " + std::to_string(report->found.image_size) +
                                        " bytes, not " + std::to_string(image_size)),
                "omit --size with --adopt: the home's size is used");
  }
  if (report->found.stamped) {
    // Finish the old volume's batch if its journal is complete; discard anything else (stale or torn).
    MemFile jf("journal of " + where);
    uint64_t pieces = 0;
    s = LoadJournal(c.get(), &jf, &pieces);
    JournalState state = JournalState::kEmpty;
    Journal j;
    std::string why;
    if (s.ok()) s = ReadJournal(&jf, stamp.uuid, image_size, &state, &j, &why);
    if (!s.ok()) return Fail(s, kOpenHint);
    if (report->found.journal_pending) {
      spdlog::info("{}: finishing the previous cache's batch {} -> {} from the journal", where, WatermarkString(j.base),
                   WatermarkString(j.end));
      s = ReplayJournalOn(c.get(), jf, j, pieces, where, stamp.uuid, image_size);
      if (!s.ok()) return Fail(s, "nothing was adopted; run the adopt again once the cluster is healthy");
      report->journal_replayed = true;
    } else if (state == JournalState::kValid && j.intent_only() && !AtOrAfter(stamp.watermark, j.end)) {
      spdlog::warn("{}: the previous cache ran WITHOUT the home journal and died mid-batch: {} extent(s) may be torn",
                   where, j.extents.size());
    }
    s = RemoveJournal(c.get(), std::max<uint64_t>(pieces, 1));
    if (!s.ok()) return Fail(s, kOpenHint);
  }
  s = WriteStampTo(c.get(), where, new_uuid, image_size, meta::Watermark());
  if (!s.ok()) return Fail(s, kOpenHint);
  (void)rbd_lock_release(c->image);
  return Status::OK();
}

}  // namespace boostvol::home

#endif  // BOOSTVOL_HAVE_RBD
