// RbdHome: the home copy as an RBD image (src/home/rbd_home.h has the layout; docs/rbd-home.md the why).
//
// ApplyBatch, in this order (each step complete and acknowledged by the cluster before the next; a RADOS or
// librbd write is durable on all replicas when it completes, and the client's rbd cache is off):
//   0. fencing: hold the exclusive lock (re-take it if lost, then the stamp must still be ours at our
//      watermark), or fail without writing anything
//   1. journal := header + extent table + data, as pieces boostvol_journal.<id>.<k>: the table and the data
//      streamed in 1 MiB writes (the first of each piece a write_full, which truncates a stale piece), the
//      header block zeros until every other write completed, then the header   -- the batch is decided
//   2. rbd_aio_write per extent (1 MiB at most, up to kMaxInFlight in flight), rbd_flush -- the batch is home
// Steps 1 and 2 read the batch from Batch::source through one bounded ring buffer (kStreamBufferBytes) that
// holds the bytes of the writes in flight: a batch of any size costs that much memory (streams_batches()).
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
RbdHomeCounters GetRbdHomeCounters(const Home&) { return RbdHomeCounters(); }
}  // namespace boostvol::home

#else  // BOOSTVOL_HAVE_RBD

#include <rados/librados.h>
#include <rbd/librbd.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <ctime>
#include <deque>
#include <thread>

#include "home/home_journal.h"
#include "log/log_format.h"
#include "util/blocking_hint.h"
#include "util/crc32c.h"
#include "util/env.h"
#include "util/thread_annotations.h"

namespace boostvol::home {

bool RbdSupported() { return true; }

namespace {

constexpr uint64_t kBlock = log::kBlockSize;
constexpr size_t kMaxInFlight = 32;                 // rbd_aio_write / rados_aio_write requests in flight
constexpr size_t kStreamChunk = size_t{1} << 20;       // one streamed request at most
constexpr size_t kJournalReadWindow = size_t{4} << 20;  // journal bytes read at once (check, replay)
constexpr size_t kStreamBufferBytes = kRbdStreamBufferBytes;  // a streamed batch's bytes held at once
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

// `s` with `what` in front of its message (an IoError keeps its errno; anything else becomes one, so the
// migrator retries it like any failed batch).
Status WithWhat(const Status& s, const std::string& what) {
  if (s.IsCorruption()) return Status::Corruption(what + ": " + s.message());
  return Status::IoError(s.err(), what + ": " + s.message());
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

// The journal's pieces read as one file (read-only), so that the directory home's journal checker and the
// replay (home_journal.h) work on a journal that lives in RADOS objects: both homes share one format. Its size
// is the sum of the pieces up to the first short or missing one. Reads go through one window of
// kJournalReadWindow bytes (the checker and the replay read the journal front to back): a journal of any size
// costs that much memory, never its size.
class PieceFile final : public File {
 public:
  PieceFile(Connection* c, std::string name) : c_(c), name_(std::move(name)) {}
  // Finds the pieces. *pieces = the pieces found.
  Status Load(uint64_t* pieces) {
    sizes_.clear();
    total_ = 0;
    win_len_ = 0;
    for (uint64_t k = 0; k < kMaxJournalPieces; k++) {
      const std::string oid = PieceName(c_->image_id, k);
      uint64_t size = 0;
      time_t mtime = 0;
      int r = rados_stat(c_->io, oid.c_str(), &size, &mtime);
      if (r == -ENOENT) break;
      if (r < 0) return CephError(r, "reading the journal object " + oid);
      if (size > kJournalPieceBytes) return Status::Corruption("journal object " + oid + " is larger than a piece");
      sizes_.push_back(size);
      total_ += size;
      if (size < kJournalPieceBytes) break;
    }
    *pieces = sizes_.size();
    return Status::OK();
  }
  Status ReadAt(uint64_t offset, void* buf, size_t n) override {
    auto* out = static_cast<uint8_t*>(buf);
    while (n > 0) {
      if (offset >= total_) {  // past the journal: zeros (as a short file reads)
        std::memset(out, 0, n);
        return Status::OK();
      }
      if (win_len_ == 0 || offset < win_off_ || offset >= win_off_ + win_len_) BV_RETURN_IF_ERROR(Fill(offset));
      size_t m = static_cast<size_t>(std::min<uint64_t>(n, win_off_ + win_len_ - offset));
      std::memcpy(out, win_.get() + (offset - win_off_), m);
      out += m;
      offset += m;
      n -= m;
    }
    return Status::OK();
  }
  Status WriteAt(uint64_t, const void*, size_t) override { return Status::Unsupported("read-only"); }
  Status Sync() override { return Status::OK(); }
  Status Truncate(uint64_t) override { return Status::Unsupported("read-only"); }
  Status Allocate(uint64_t, uint64_t) override { return Status::Unsupported("read-only"); }
  Status PunchHole(uint64_t, uint64_t) override { return Status::Unsupported("read-only"); }
  Status Stat(FileInfo* info) override {
    *info = FileInfo();
    info->size = total_;
    return Status::OK();
  }
  const std::string& name() const override { return name_; }

 private:
  // Reads the window at `offset` (< total_): up to kJournalReadWindow bytes, inside one piece.
  Status Fill(uint64_t offset) {
    if (!win_) win_.reset(new uint8_t[kJournalReadWindow]);
    const uint64_t k = offset / kJournalPieceBytes, in = offset % kJournalPieceBytes;
    const uint64_t len = std::min<uint64_t>(kJournalReadWindow, sizes_[k] - in);
    const std::string oid = PieceName(c_->image_id, k);
    for (uint64_t done = 0; done < len;) {
      int r = rados_read(c_->io, oid.c_str(), reinterpret_cast<char*>(win_.get() + done), static_cast<size_t>(len - done),
                         in + done);
      if (r < 0) return CephError(r, "reading the journal object " + oid);
      if (r == 0) {  // shrank under us: reads as zeros (the checksums decide)
        std::memset(win_.get() + done, 0, len - done);
        break;
      }
      done += static_cast<uint64_t>(r);
    }
    win_off_ = offset;
    win_len_ = len;
    return Status::OK();
  }

  Connection* const c_;
  const std::string name_;
  std::vector<uint64_t> sizes_;
  uint64_t total_ = 0;
  std::unique_ptr<uint8_t[]> win_;
  uint64_t win_off_ = 0, win_len_ = 0;
};

// Reads the journal's pieces into `f` (stops at the first missing or short piece). *pieces = pieces found.
Status LoadJournal(Connection* c, PieceFile* f, uint64_t* pieces) { return f->Load(pieces); }

// Removes pieces [0, count) (piece 0 first: from then on the journal reads as empty).
Status RemoveJournal(Connection* c, uint64_t count) {
  for (uint64_t k = 0; k < std::max<uint64_t>(count, 1); k++) {
    const std::string oid = PieceName(c->image_id, k);
    int r = rados_remove(c->io, oid.c_str());
    if (r < 0 && r != -ENOENT) return CephError(r, "removing the journal object " + oid);
  }
  return Status::OK();
}

// Zeroes [offset, offset + length) of the image (rbd_write_zeroes: RBD deallocates what it can), synchronously:
// data written after it may overlap.
Status ZeroInPlace(Connection* c, uint64_t offset, uint64_t length, const std::string& where) {
  for (uint64_t done = 0; done < length;) {
    uint64_t len = std::min<uint64_t>(uint64_t{1} << 30, length - done);
    ssize_t r = rbd_write_zeroes(c->image, offset + done, len, 0, 0);
    if (r < 0) return CephError(static_cast<int>(r), "zeroing " + where + " at offset " + std::to_string(offset + done));
    done += len;
  }
  return Status::OK();
}

// Writes in flight through one bounded ring buffer: Reserve() hands out the bytes of the next request at the
// ring's head (reaping the oldest requests until they fit), Submit*() sends them; requests are reaped in
// submission order, so the ring frees from its tail. Every byte of a streamed batch the home holds is in the
// ring: `peak` records the most it held at once (RbdHomeCounters). The destructor waits for every request
// (their buffers are the ring's).
class WritePipe {
 public:
  WritePipe(Connection* c, size_t capacity) : c_(c), cap_(capacity), buf_(new uint8_t[capacity]) {}
  WritePipe(const WritePipe&) = delete;
  WritePipe& operator=(const WritePipe&) = delete;
  ~WritePipe() { (void)Drain(); }

  // n bytes (0 < n <= capacity: callers ask for at most kStreamChunk) for the next Submit; nullptr once a
  // request failed (see status()).
  uint8_t* Reserve(size_t n) {
    for (;;) {
      if (!err_.ok()) return nullptr;
      if (reqs_.empty()) head_ = 0, used_ = 0;
      if (reqs_.size() < kMaxInFlight) {
        if (used_ == 0) return Place(false, n);
        const size_t tail = reqs_.front().begin;  // used: [tail, head_) modulo the ring (full when equal)
        if (head_ > tail) {
          if (cap_ - head_ >= n) return Place(false, n);
          if (tail >= n) return Place(true, n);  // the ring's end stays unused until this one is reaped
        } else if (head_ < tail && tail - head_ >= n) {
          return Place(false, n);
        }
      }
      ReapOldest();
    }
  }
  // rbd_aio_write of the n bytes just reserved, at image offset `off`.
  void SubmitImage(uint64_t off, size_t n) {
    rbd_completion_t comp = nullptr;
    int r = rbd_aio_create_completion(nullptr, nullptr, &comp);
    if (r == 0) {
      r = rbd_aio_write(c_->image, off, n, reinterpret_cast<const char*>(buf_.get() + pos_), comp);
      if (r < 0) rbd_aio_release(comp);
    }
    if (r < 0) return Failed(r, "writing the image at offset " + std::to_string(off));
    Push(comp, true);
  }
  // rados_aio_write (or write_full, which replaces the object) of the n bytes just reserved, to `oid` at `off`.
  void SubmitObject(const std::string& oid, uint64_t off, size_t n, bool full) {
    rados_completion_t comp = nullptr;
    int r = rados_aio_create_completion(nullptr, nullptr, nullptr, &comp);
    if (r == 0) {
      const char* p = reinterpret_cast<const char*>(buf_.get() + pos_);
      r = full ? rados_aio_write_full(c_->io, oid.c_str(), comp, p, n) : rados_aio_write(c_->io, oid.c_str(), comp, p, n, off);
      if (r < 0) rados_aio_release(comp);
    }
    if (r < 0) return Failed(r, "writing the journal object " + oid);
    Push(comp, false);
    // The writes after it to the same object land in order only once it is done: wait (once per piece).
    if (full) rados_aio_wait_for_complete(comp);
  }
  // Waits for every request; the first error of any.
  Status Drain() {
    while (!reqs_.empty()) ReapOldest();
    return err_;
  }
  const Status& status() const { return err_; }
  size_t peak() const { return peak_; }

 private:
  struct Req {
    void* comp;
    bool rbd;
    size_t begin;  // where its bytes (with the unused end of the ring before them) start
    size_t bytes;  // counted in used_
  };
  // The next request's n bytes: at the head, or (wrap: the ring's end is too short) at the ring's start, the
  // end counted with the request.
  uint8_t* Place(bool wrap, size_t n) {
    pending_begin_ = head_;
    pending_bytes_ = (wrap ? cap_ - head_ : 0) + n;
    pos_ = wrap ? 0 : head_;
    pending_end_ = pos_ + n;
    return buf_.get() + pos_;
  }
  void Push(void* comp, bool rbd) {
    reqs_.push_back(Req{comp, rbd, pending_begin_, pending_bytes_});
    used_ += pending_bytes_;
    head_ = pending_end_;
    peak_ = std::max(peak_, used_);
  }
  void Failed(int r, const std::string& what) {
    if (err_.ok()) err_ = CephError(r, what);
  }
  void ReapOldest() {
    Req q = reqs_.front();
    reqs_.pop_front();
    long r;
    if (q.rbd) {
      auto comp = static_cast<rbd_completion_t>(q.comp);
      rbd_aio_wait_for_complete(comp);
      r = static_cast<long>(rbd_aio_get_return_value(comp));
      rbd_aio_release(comp);
    } else {
      auto comp = static_cast<rados_completion_t>(q.comp);
      rados_aio_wait_for_complete(comp);
      r = rados_aio_get_return_value(comp);
      rados_aio_release(comp);
    }
    used_ -= q.bytes;
    if (r < 0) Failed(static_cast<int>(r), q.rbd ? "writing the image" : "writing the journal");
  }

  Connection* const c_;
  const size_t cap_;
  std::unique_ptr<uint8_t[]> buf_;
  std::deque<Req> reqs_;
  size_t head_ = 0, used_ = 0, peak_ = 0;
  size_t pos_ = 0, pending_begin_ = 0, pending_bytes_ = 0, pending_end_ = 0;
  Status err_;
};

void PutLe(uint8_t* p, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; i++) p[i] = static_cast<uint8_t>(v >> (8 * i));
}

// Writes the journal of `batch` (on top of `base`) as pieces, streamed through `pipe`: the same bytes
// WriteJournal (home_journal.h) puts in a directory home's journal file, the header block last. Returns when
// the header is written: the batch is decided. *pieces = the pieces written.
Status StreamJournal(Connection* c, WritePipe* pipe, const log::Uuid& uuid, uint64_t image_size,
                     const meta::Watermark& base, const Batch& batch, bool with_data, uint64_t* pieces) {
  const JournalContent content = JournalContentOf(batch, with_data);
  const uint64_t nzero = content.zero_entries, n = content.entries, table_bytes = content.table_bytes;
  const uint64_t data_bytes = content.data_bytes;
  const std::vector<Extent>& data_ext = *content.data_extents;
  const uint64_t total = kJournalHeaderSize + table_bytes + (with_data ? data_bytes : 0);
  const uint64_t npieces = (total + kJournalPieceBytes - 1) / kJournalPieceBytes;
  if (npieces > kMaxJournalPieces) {
    return Status::InvalidArgument("batch journal of " + std::to_string(total) + " bytes is too large (at most " +
                                   std::to_string(kMaxJournalPieces) + " pieces)");
  }
  *pieces = npieces;  // before the first write: a failure below may leave any of them
  // The journal's bytes in order: a generator over (header zeros, table entries, padding, data).
  uint32_t crc = 0;
  uint64_t entry = 0;                // next table entry
  size_t zi = 0, di = 0;             // next zero extent / data extent (for entries)
  uint64_t zdone = 0;                // of batch.zeros[zi], entered
  size_t xi = 0;                     // data extent being copied
  uint64_t xdone = 0;                // of data_ext[xi], copied
  const uint64_t table_end = kJournalHeaderSize + table_bytes;
  auto fill = [&](uint64_t pos, uint8_t* dst, size_t len) -> Status {
    for (size_t at = 0; at < len;) {
      const uint64_t p = pos + at;
      if (p < table_end) {
        // Header block (zeros until the end) and the table: entries are 16 bytes and never straddle a request
        // (requests start and end on 4096-byte boundaries).
        std::memset(dst + at, 0, kJournalEntrySize);
        if (p >= kJournalHeaderSize && entry < n) {
          uint8_t* e = dst + at;
          if (zi < batch.zeros.size()) {
            const ZeroExtent& z = batch.zeros[zi];
            uint64_t l = std::min(kJournalMaxZeroExtent, z.length - zdone);
            PutLe(e, z.offset + zdone, 8);
            PutLe(e + 8, l, 4);
            PutLe(e + 12, kJournalExtentZero, 4);
            zdone += l;
            if (zdone == z.length) zi++, zdone = 0;
          } else {
            PutLe(e, data_ext[di].offset, 8);
            PutLe(e + 8, data_ext[di].length, 4);
            PutLe(e + 12, 0, 4);
            di++;
          }
          crc = crc32c::Extend(crc, e, kJournalEntrySize);
          entry++;
        }
        at += kJournalEntrySize;
        continue;
      }
      const Extent& e = data_ext[xi];
      size_t m = static_cast<size_t>(std::min<uint64_t>(e.length - xdone, len - at));
      if (e.data != nullptr) {
        std::memcpy(dst + at, e.data + xdone, m);
      } else {
        BV_RETURN_IF_ERROR(batch.source(e.offset + xdone, dst + at, m));
      }
      crc = crc32c::Extend(crc, dst + at, m);
      at += m;
      xdone += m;
      if (xdone == e.length) xi++, xdone = 0;
    }
    return Status::OK();
  };
  for (uint64_t pos = 0; pos < total;) {
    const uint64_t k = pos / kJournalPieceBytes;
    const uint64_t off = pos - k * kJournalPieceBytes;
    const size_t len = static_cast<size_t>(std::min({uint64_t{kStreamChunk}, kJournalPieceBytes - off, total - pos}));
    uint8_t* dst = pipe->Reserve(len);
    if (dst == nullptr) return pipe->status();
    BV_RETURN_IF_ERROR(fill(pos, dst, len));
    pipe->SubmitObject(PieceName(c->image_id, k), off, len, off == 0);
    pos += len;
  }
  BV_RETURN_IF_ERROR(pipe->Drain());
  uint8_t h[kJournalHeaderSize];
  EncodeJournalHeader(h, uuid, image_size, base, batch.end, nzero > 0, with_data, n, data_bytes, crc);
  const std::string oid0 = PieceName(c->image_id, 0);
  int r = rados_write(c->io, oid0.c_str(), reinterpret_cast<const char*>(h), sizeof h, 0);
  if (r < 0) return CephError(r, "writing the journal header " + oid0);
  return Status::OK();
}

// The batch in place: zero ranges first (synchronously: data extents after them may overlap), then the extents
// streamed through `pipe` in requests of at most kStreamChunk, then the barrier (rbd_flush).
Status StreamInPlace(Connection* c, WritePipe* pipe, const Batch& batch, const std::string& where) {
  for (const ZeroExtent& z : batch.zeros) BV_RETURN_IF_ERROR(ZeroInPlace(c, z.offset, z.length, where));
  for (const Extent& e : batch.extents) {
    for (uint64_t done = 0; done < e.length;) {
      const size_t len = static_cast<size_t>(std::min<uint64_t>(kStreamChunk, e.length - done));
      uint8_t* dst = pipe->Reserve(len);
      if (dst == nullptr) return pipe->status();
      if (e.data != nullptr) {
        std::memcpy(dst, e.data + done, len);
      } else {
        BV_RETURN_IF_ERROR(batch.source(e.offset + done, dst, len));
      }
      pipe->SubmitImage(e.offset + done, len);
      done += len;
    }
  }
  BV_RETURN_IF_ERROR(pipe->Drain());
  int r = rbd_flush(c->image);
  if (r < 0) return CephError(r, "flushing " + where);
  return Status::OK();
}

// Finishes a valid journal's batch: its zero extents, then its data extents streamed from the journal through
// a WritePipe, flush, stamp, remove.
Status ReplayJournalOn(Connection* c, PieceFile& f, const Journal& j, uint64_t pieces, const std::string& where,
                       const log::Uuid& uuid, uint64_t size) {
  for (const JournalExtent& e : j.extents)
    if (e.zero) BV_RETURN_IF_ERROR(ZeroInPlace(c, e.offset, e.length, where));
  {
    WritePipe pipe(c, kStreamBufferBytes);
    for (const JournalExtent& e : j.extents) {
      if (e.zero) continue;
      for (uint64_t done = 0; done < e.length;) {
        const size_t len = static_cast<size_t>(std::min<uint64_t>(kStreamChunk, e.length - done));
        uint8_t* dst = pipe.Reserve(len);
        if (dst == nullptr) return pipe.status();
        BV_RETURN_IF_ERROR(f.ReadAt(e.data_pos + done, dst, len));
        pipe.SubmitImage(e.offset + done, len);
        done += len;
      }
    }
    BV_RETURN_IF_ERROR(pipe.Drain());
  }
  int r = rbd_flush(c->image);
  if (r < 0) return CephError(r, "flushing " + where);
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
    if (e.length == 0 || e.length % kBlock != 0 || e.offset % kBlock != 0 || (e.data == nullptr && !b.source) ||
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
    if (NoWait()) return Status::WouldBlock();  // a network round trip: on a thread that may wait
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
      // Every byte of the batch passes through this ring, twice (journal, then in place).
      WritePipe pipe(c, kStreamBufferBytes);
      auto note_peak = [&] {
        uint64_t p = pipe.peak(), prev = peak_buffered_.load();
        while (p > prev && !peak_buffered_.compare_exchange_weak(prev, p)) {
        }
      };
      // 1. The journal: decided once the header of piece 0 is written.
      if (!marker_in_place) {
        uint64_t pieces = 0;
        s = StreamJournal(c, &pipe, uuid_, size_, cur, batch, use_journal_, &pieces);
        if (s.ok()) s = pipe.Drain();
        journal_pieces_ = std::max(journal_pieces_, pieces);
        if (!s.ok()) {
          (void)pipe.Drain();
          note_peak();
          return NoteFail(WithWhat(s, what + ": writing the journal"));
        }
      }
      journal_live_ = true;
      // 2. In place, then the barrier.
      s = StreamInPlace(c, &pipe, batch, where_);
      if (s.ok()) s = pipe.Drain();
      (void)pipe.Drain();
      note_peak();
      if (!s.ok()) return NoteFail(WithWhat(s, what));
      batches_streamed_.fetch_add(1);
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
  bool streams_batches() const override { return true; }
  RbdHomeCounters counters() const {
    RbdHomeCounters k;
    k.peak_buffered_bytes = peak_buffered_.load();
    k.batches_streamed = batches_streamed_.load();
    return k;
  }

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
    Status s = ZeroInPlace(conn_.get(), offset, n, where_);
    if (s.ok()) {
      int r = rbd_flush(conn_->image);
      if (r < 0) s = CephError(r, "flushing " + where_);
    }
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
    PieceFile jf(c, "journal of " + where_);
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
    } else if (state == JournalState::kEmpty && pieces > 0) {
      // Pieces whose header block is still zeros (ReadJournal reads that as
      // empty): a streamed journal's header is written last, so its batch
      // never began.
      spdlog::warn("{}: discarding a journal whose header was never written: its batch never began; the home is "
                   "intact at {}",
                   where_, WatermarkString(stamp.watermark));
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
    PieceFile jf(c, "journal of " + where_);
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
  std::atomic<uint64_t> peak_buffered_{0};     // RbdHomeCounters
  std::atomic<uint64_t> batches_streamed_{0};

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
    PieceFile jf(c, "journal of " + where);
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

RbdHomeCounters GetRbdHomeCounters(const Home& home) {
  auto* h = dynamic_cast<const RbdHome*>(&home);
  return h != nullptr ? h->counters() : RbdHomeCounters();
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
    PieceFile jf(c.get(), "journal of " + where);
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
