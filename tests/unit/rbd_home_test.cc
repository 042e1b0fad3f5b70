// Tests of RbdHome (src/home/rbd_home.cc) against a real Ceph cluster. They need BOOSTVOL_CEPH_CONF (the
// CTest entry rbd.unit starts a throwaway cluster with tests/lib/ceph_cluster.sh and sets it); without it each
// test is skipped here and runs for real in rbd.unit, which fails under CI=true when no cluster can start.
#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "home/home.h"
#include "home/home_factory.h"
#include "home/rbd_home.h"

#ifdef BOOSTVOL_HAVE_RBD
#include <rados/librados.h>
#include <rbd/librbd.h>

#include "home/home_journal.h"
#include "util/env.h"

namespace boostvol::home {
namespace {

constexpr uint64_t kBlock = 4096;
constexpr uint64_t kImageSize = uint64_t{64} << 20;

std::string CephConf() {
  const char* c = std::getenv("BOOSTVOL_CEPH_CONF");
  return c ? c : "";
}

#define NEED_CLUSTER()                                                                                       \
  do {                                                                                                       \
    if (CephConf().empty()) GTEST_SKIP() << "BOOSTVOL_CEPH_CONF is not set; these tests run in CTest's rbd.unit"; \
    setenv("BOOSTVOL_RBD_LOCK_WAIT", "0", 1); /* a live holder: refuse at once */                          \
  } while (0)

log::Uuid MakeUuid(uint8_t seed) {
  log::Uuid u;
  for (size_t i = 0; i < u.size(); i++) u[i] = static_cast<uint8_t>(seed * 37 + i + 1);
  return u;
}

std::string UniqueImage(const char* what) {
  static std::mt19937_64 rng(std::random_device{}());
  return std::string("ut_") + what + "_" + std::to_string(rng() % 1000000000);
}

std::string Uri(const std::string& image) { return "rbd:rbd/" + image + ":conf=" + CephConf(); }

struct TestBatch {
  Batch batch;
  std::vector<std::vector<uint8_t>> bufs;
  void Add(uint64_t first, uint32_t nblocks, uint8_t tag, std::vector<uint8_t>* model) {
    std::vector<uint8_t> b(nblocks * kBlock);
    for (size_t i = 0; i < b.size(); i++) b[i] = static_cast<uint8_t>(tag * 13 + (first * kBlock + i) * 7 / 4096 + i % 251);
    std::memcpy(model->data() + first * kBlock, b.data(), b.size());
    bufs.push_back(std::move(b));
    batch.extents.push_back(Extent{first * kBlock, static_cast<uint32_t>(nblocks * kBlock), bufs.back().data()});
  }
};

// A plain librados/librbd client, for looking at the image from outside.
struct Outside {
  rados_t rados = nullptr;
  rados_ioctx_t io = nullptr;
  Outside() {
    EXPECT_EQ(rados_create(&rados, nullptr), 0);
    EXPECT_EQ(rados_conf_read_file(rados, CephConf().c_str()), 0);
    EXPECT_EQ(rados_connect(rados), 0);
    EXPECT_EQ(rados_ioctx_create(rados, "rbd", &io), 0);
  }
  ~Outside() {
    rados_ioctx_destroy(io);
    rados_shutdown(rados);
  }
  std::vector<uint8_t> ReadImage(const std::string& image) {
    rbd_image_t img;
    std::vector<uint8_t> out(kImageSize);
    EXPECT_EQ(rbd_open_read_only(io, image.c_str(), &img, nullptr), 0);
    EXPECT_EQ(rbd_read(img, 0, out.size(), reinterpret_cast<char*>(out.data())), static_cast<ssize_t>(out.size()));
    rbd_close(img);
    return out;
  }
  std::string ImageId(const std::string& image) {
    rbd_image_t img;
    char id[128] = {};
    EXPECT_EQ(rbd_open_read_only(io, image.c_str(), &img, nullptr), 0);
    EXPECT_EQ(rbd_get_id(img, id, sizeof id), 0);
    rbd_close(img);
    return id;
  }
  void Remove(const std::string& image) { (void)rbd_remove(io, image.c_str()); }
};

Status Open(const std::string& image, const log::Uuid& u, std::unique_ptr<Home>* h, HomeOpenReport* r) {
  return OpenHome(Env::Posix(), Uri(image), u, kImageSize, HomeOptions(), h, r);
}

TEST(RbdHome, CreateApplyReadReopen) {
  NEED_CLUSTER();
  const std::string image = UniqueImage("basic");
  const log::Uuid u = MakeUuid(1);
  ASSERT_TRUE(CreateHome(Env::Posix(), Uri(image), u, kImageSize, HomeOptions()).ok());
  EXPECT_TRUE(CreateHome(Env::Posix(), Uri(image), u, kImageSize, HomeOptions()).IsBusy()) << "never overwrites";
  std::vector<uint8_t> model(kImageSize, 0);
  {
    std::unique_ptr<Home> h;
    HomeOpenReport rep;
    ASSERT_TRUE(Open(image, u, &h, &rep).ok());
    EXPECT_EQ(rep.watermark.record_seq, 1u);
    TestBatch b;
    b.Add(0, 1, 1, &model);
    b.Add(10, 300, 2, &model);    // 1.2 MiB
    b.Add(2000, 2600, 3, &model);  // 10 MiB, past one RBD object
    b.batch.end = meta::Watermark{3, 40};
    ASSERT_TRUE(h->ApplyBatch(b.batch).ok());
    EXPECT_EQ(h->watermark().record_seq, 40u);
    std::vector<uint8_t> got(kImageSize);
    ASSERT_TRUE(h->Read(0, got.data(), got.size()).ok());
    EXPECT_TRUE(got == model);
  }
  Outside out;
  EXPECT_TRUE(out.ReadImage(image) == model) << "any Ceph client reads the image byte-identical";
  {
    std::unique_ptr<Home> h;
    HomeOpenReport rep;
    ASSERT_TRUE(Open(image, u, &h, &rep).ok());
    EXPECT_EQ(rep.watermark.record_seq, 40u);
    EXPECT_EQ(rep.watermark.segment_seq, 3u);
    EXPECT_FALSE(rep.journal_replayed);
    std::unique_ptr<Home> other;
    EXPECT_FALSE(Open(image, MakeUuid(2), &other, &rep).ok()) << "another volume's cache is refused";
  }
  out.Remove(image);
}

// A crash after the journal was complete but before the stamp: open finishes the batch (here a 40 MiB batch,
// a journal of three pieces); a torn journal (piece 0 missing) is discarded.
TEST(RbdHome, JournalReplayedOnOpenTornDiscarded) {
  NEED_CLUSTER();
  const std::string image = UniqueImage("journal");
  const log::Uuid u = MakeUuid(3);
  ASSERT_TRUE(CreateHome(Env::Posix(), Uri(image), u, kImageSize, HomeOptions()).ok());
  Outside out;
  const std::string id = out.ImageId(image);
  std::vector<uint8_t> model(kImageSize, 0);
  TestBatch b;
  b.Add(5, 10240, 4, &model);  // 40 MiB
  b.batch.end = meta::Watermark{2, 9};
  // The journal, as ApplyBatch step 1 leaves it, without steps 2-4.
  std::unique_ptr<Dir> tmpdir;
  std::string tmpl = "/tmp/rbdjournal.XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
  ASSERT_TRUE(Env::Posix()->OpenDir(tmpl, &tmpdir).ok());
  std::unique_ptr<File> jf;
  ASSERT_TRUE(tmpdir->OpenFile("j", OpenMode::kCreate, &jf).ok());
  ASSERT_TRUE(WriteJournal(jf.get(), u, kImageSize, meta::Watermark{0, 1}, b.batch, true).ok());
  FileInfo info;
  ASSERT_TRUE(jf->Stat(&info).ok());
  std::vector<char> bytes(info.size);
  ASSERT_TRUE(jf->ReadAt(0, bytes.data(), bytes.size()).ok());
  jf.reset();
  (void)tmpdir->Remove("j");
  ::rmdir(tmpl.c_str());
  auto store = [&](bool with_header) {
    for (uint64_t k = with_header ? 0 : 1; k * kJournalPieceBytes < bytes.size(); k++) {
      uint64_t off = k * kJournalPieceBytes;
      uint64_t len = std::min<uint64_t>(kJournalPieceBytes, bytes.size() - off);
      std::string oid = std::string(kRbdJournalPrefix) + id + "." + std::to_string(k);
      ASSERT_EQ(rados_write_full(out.io, oid.c_str(), bytes.data() + off, len), 0);
    }
  };
  ASSERT_GT(bytes.size(), 2 * kJournalPieceBytes);
  store(false);  // torn: pieces 1.. written, piece 0 (the header) never was
  {
    std::unique_ptr<Home> h;
    HomeOpenReport rep;
    ASSERT_TRUE(Open(image, u, &h, &rep).ok());
    EXPECT_FALSE(rep.journal_replayed);
    EXPECT_EQ(rep.watermark.record_seq, 1u);
  }
  EXPECT_TRUE(out.ReadImage(image) == std::vector<uint8_t>(kImageSize, 0)) << "a torn journal changes nothing";
  store(true);
  {
    std::unique_ptr<Home> h;
    HomeOpenReport rep;
    ASSERT_TRUE(Open(image, u, &h, &rep).ok());
    EXPECT_TRUE(rep.journal_replayed);
    EXPECT_EQ(rep.watermark.record_seq, 9u);
  }
  EXPECT_TRUE(out.ReadImage(image) == model) << "the complete journal's batch is finished at open";
  uint64_t size;
  time_t mtime;
  std::string oid0 = std::string(kRbdJournalPrefix) + id + ".0";
  EXPECT_EQ(rados_stat(out.io, oid0.c_str(), &size, &mtime), -ENOENT) << "the journal is removed after the replay";
  out.Remove(image);
}

// A streamed batch (extents without data, read from Batch::source) larger than the home's streaming bound:
// it migrates byte-identical while the home never holds more than kRbdStreamBufferBytes of it, and it reads
// the source twice (journal, then in place) instead of keeping the batch. A home that buffered the whole batch
// fails the counter (its peak would be the batch's size) or the read count (it would read each byte once).
// Then a batch whose in-place pass fails after its streamed journal was written: reopening finishes it from
// that journal (the journal streamed in 1 MiB writes is a valid one); and one whose journal pass fails: the
// image is untouched and the journal, without its header, is torn. Either way the home is a prefix.
TEST(RbdHome, StreamedBatchBoundedMemory) {
  NEED_CLUSTER();
  const std::string image = UniqueImage("stream");
  const log::Uuid u = MakeUuid(7);
  ASSERT_TRUE(CreateHome(Env::Posix(), Uri(image), u, kImageSize, HomeOptions()).ok());
  std::vector<uint8_t> model(kImageSize, 0);
  // The new bytes of the batches, by image offset (the source reads from here).
  std::vector<uint8_t> next(kImageSize, 0);
  auto add = [&](Batch* b, uint64_t first, uint32_t nblocks, uint8_t tag) {
    for (uint64_t i = 0; i < nblocks * kBlock; i++)
      next[first * kBlock + i] = static_cast<uint8_t>(tag * 29 + (first * kBlock + i) / 4096 * 7 + i % 241);
    b->extents.push_back(Extent{first * kBlock, static_cast<uint32_t>(nblocks * kBlock), nullptr});
  };
  uint64_t source_bytes = 0, source_max = 0;
  int fail_after_bytes = -1;  // >= 0: the source fails once it has given this many bytes
  auto source = [&](uint64_t offset, uint8_t* dst, size_t n) -> Status {
    if (fail_after_bytes >= 0 && source_bytes >= static_cast<uint64_t>(fail_after_bytes))
      return Status::IoError(EIO, "test: the log cannot be read");
    EXPECT_EQ(offset % kBlock, 0u);
    EXPECT_LE(offset + n, next.size());
    std::memcpy(dst, next.data() + offset, n);
    source_bytes += n;
    source_max = std::max<uint64_t>(source_max, n);
    return Status::OK();
  };
  Batch b;
  b.zeros.push_back(ZeroExtent{100 * kBlock, 50 * kBlock});
  add(&b, 0, 64, 1);                                          // 256 KiB
  for (uint64_t k = 0; k < 600; k++) add(&b, 200 + 3 * k, 1, 2);  // 600 scattered 4 KiB blocks
  add(&b, 2048, 5000, 3);                                     // 19.5 MiB, across RBD objects and journal pieces
  b.end = meta::Watermark{4, 77};
  b.source = source;
  uint64_t data_bytes = 0;
  for (const Extent& e : b.extents) data_bytes += e.length;
  ASSERT_GT(data_bytes, 2 * kRbdStreamBufferBytes) << "the batch must not fit in the streaming bound";
  for (const Extent& e : b.extents) std::memcpy(model.data() + e.offset, next.data() + e.offset, e.length);
  Outside out;
  {
    std::unique_ptr<Home> h;
    HomeOpenReport rep;
    ASSERT_TRUE(Open(image, u, &h, &rep).ok());
    ASSERT_TRUE(h->streams_batches());
    Status s = h->ApplyBatch(b);
    ASSERT_TRUE(s.ok()) << s.ToString();
    EXPECT_EQ(h->watermark().record_seq, 77u);
    RbdHomeCounters k = GetRbdHomeCounters(*h);
    EXPECT_EQ(k.batches_streamed, 1u);
    EXPECT_GT(k.peak_buffered_bytes, 0u);
    EXPECT_LE(k.peak_buffered_bytes, kRbdStreamBufferBytes) << "the home held more of the batch than its bound";
    EXPECT_EQ(source_bytes, 2 * data_bytes) << "the batch is read once for the journal, once in place";
    EXPECT_LE(source_max, kRbdStreamBufferBytes);
  }
  EXPECT_TRUE(out.ReadImage(image) == model) << "the streamed batch is home, byte-identical";
  const std::string oid0 = std::string(kRbdJournalPrefix) + out.ImageId(image) + ".0";
  uint64_t size;
  time_t mtime;
  EXPECT_EQ(rados_stat(out.io, oid0.c_str(), &size, &mtime), -ENOENT) << "the journal is removed after the stamp";

  // Second batch: the in-place pass fails halfway (the journal is complete); reopening finishes the batch.
  Batch b2;
  add(&b2, 4000, 3000, 4);  // 11.7 MiB
  for (uint64_t k = 0; k < 100; k++) add(&b2, 9000 + 2 * k, 1, 5);
  b2.end = meta::Watermark{5, 90};
  b2.source = source;
  uint64_t data2 = 0;
  for (const Extent& e : b2.extents) data2 += e.length;
  source_bytes = 0;
  fail_after_bytes = static_cast<int>(data2 + data2 / 2);
  {
    std::unique_ptr<Home> h;
    HomeOpenReport rep;
    ASSERT_TRUE(Open(image, u, &h, &rep).ok());
    EXPECT_FALSE(h->ApplyBatch(b2).ok());
    EXPECT_EQ(h->watermark().record_seq, 77u) << "a failed batch leaves the watermark";
    EXPECT_LE(GetRbdHomeCounters(*h).peak_buffered_bytes, kRbdStreamBufferBytes);
  }  // the cache "dies" here, its batch half in place
  for (const Extent& e : b2.extents) std::memcpy(model.data() + e.offset, next.data() + e.offset, e.length);
  {
    std::unique_ptr<Home> h;
    HomeOpenReport rep;
    ASSERT_TRUE(Open(image, u, &h, &rep).ok());
    EXPECT_TRUE(rep.journal_replayed) << "the streamed journal is a complete, valid journal";
    EXPECT_EQ(rep.watermark.record_seq, 90u);
  }
  EXPECT_TRUE(out.ReadImage(image) == model) << "the journal's batch is finished at open";
  EXPECT_EQ(rados_stat(out.io, oid0.c_str(), &size, &mtime), -ENOENT);

  // Third batch: the journal pass fails halfway (pieces 0 and 1 partly written, the header never): the batch
  // never began, the image is untouched and the torn journal is discarded at open.
  Batch b3;
  add(&b3, 0, 6000, 6);  // 23 MiB: a journal of two pieces
  b3.end = meta::Watermark{6, 120};
  b3.source = source;
  source_bytes = 0;
  fail_after_bytes = static_cast<int>(20 << 20);
  {
    std::unique_ptr<Home> h;
    HomeOpenReport rep;
    ASSERT_TRUE(Open(image, u, &h, &rep).ok());
    EXPECT_FALSE(h->ApplyBatch(b3).ok());
    EXPECT_EQ(h->watermark().record_seq, 90u);
  }
  EXPECT_EQ(rados_stat(out.io, oid0.c_str(), &size, &mtime), 0) << "the failed journal's piece 0 was written";
  EXPECT_TRUE(out.ReadImage(image) == model) << "nothing of a batch is in place before its journal is complete";
  {
    std::unique_ptr<Home> h;
    HomeOpenReport rep;
    ASSERT_TRUE(Open(image, u, &h, &rep).ok());
    EXPECT_FALSE(rep.journal_replayed) << "a journal without its header is torn";
    EXPECT_EQ(rep.watermark.record_seq, 90u);
  }
  EXPECT_TRUE(out.ReadImage(image) == model);
  EXPECT_EQ(rados_stat(out.io, oid0.c_str(), &size, &mtime), -ENOENT) << "the torn journal is removed at open";

  // Fourth: the in-place pass fails, and the migrator's retry of the same batch on the same home first finishes
  // the live journal (streamed back from its pieces), then finds the batch home.
  Batch b4;
  add(&b4, 8000, 2500, 7);  // 9.8 MiB
  b4.end = meta::Watermark{7, 130};
  b4.source = source;
  uint64_t data4 = 2500 * kBlock;
  {
    std::unique_ptr<Home> h;
    HomeOpenReport rep;
    ASSERT_TRUE(Open(image, u, &h, &rep).ok());
    source_bytes = 0;
    fail_after_bytes = static_cast<int>(data4 + data4 / 3);
    EXPECT_FALSE(h->ApplyBatch(b4).ok());
    fail_after_bytes = -1;
    Status s = h->ApplyBatch(b4);
    EXPECT_TRUE(s.ok()) << s.ToString();
    EXPECT_EQ(h->watermark().record_seq, 130u);
    EXPECT_LE(GetRbdHomeCounters(*h).peak_buffered_bytes, kRbdStreamBufferBytes);
  }
  for (const Extent& e : b4.extents) std::memcpy(model.data() + e.offset, next.data() + e.offset, e.length);
  EXPECT_TRUE(out.ReadImage(image) == model) << "the retried batch is home";
  EXPECT_EQ(rados_stat(out.io, oid0.c_str(), &size, &mtime), -ENOENT);
  out.Remove(image);
}

// Fencing: a second open is refused naming the holder; a blocklisted holder writes nothing more; after the home
// was adopted by another volume, the old holder never writes it again even once it could re-take the lock.
TEST(RbdHome, FencingAndAdopt) {
  NEED_CLUSTER();
  setenv("BOOSTVOL_RBD_LOCK_WAIT", "0", 1);
  const std::string image = UniqueImage("fence");
  const log::Uuid u = MakeUuid(5);
  ASSERT_TRUE(CreateHome(Env::Posix(), Uri(image), u, kImageSize, HomeOptions()).ok());
  std::vector<uint8_t> model(kImageSize, 0);
  std::unique_ptr<Home> a;
  HomeOpenReport rep;
  ASSERT_TRUE(Open(image, u, &a, &rep).ok());
  TestBatch b1;
  b1.Add(0, 4, 1, &model);
  b1.batch.end = meta::Watermark{0, 5};
  ASSERT_TRUE(a->ApplyBatch(b1.batch).ok());

  std::unique_ptr<Home> second;
  Status s = Open(image, u, &second, &rep);
  EXPECT_TRUE(s.IsBusy()) << s.ToString();
  EXPECT_NE(s.message().find("pid"), std::string::npos) << "names the holder: " << s.message();
  HomeSummary sum;
  EXPECT_TRUE(InspectHome(Env::Posix(), Uri(image), HomeOptions(), &sum).IsBusy()) << "adopt refused while held";

  // Blocklist the holder (what `rbd lock rm` / a takeover does to a client that went silent).
  Outside out;
  {
    rbd_image_t img;
    ASSERT_EQ(rbd_open_read_only(out.io, image.c_str(), &img, nullptr), 0);
    char tags[64] = {}, clients[1024] = {}, cookies[1024] = {}, addrs[1024] = {};
    size_t tl = sizeof tags, cl = sizeof clients, kl = sizeof cookies, al = sizeof addrs;
    int excl = 0;
    ASSERT_GE(rbd_list_lockers(img, &excl, tags, &tl, clients, &cl, cookies, &kl, addrs, &al), 1);
    rbd_close(img);
    ASSERT_EQ(rados_blocklist_add(out.rados, addrs, 3600), 0);
  }
  std::vector<uint8_t> before = out.ReadImage(image);
  EXPECT_TRUE(before == model);
  // Adopted by volume B while A is fenced off.
  const log::Uuid ub = MakeUuid(6);
  AdoptReport ar;
  s = AdoptHome(Env::Posix(), Uri(image), ub, kImageSize, HomeOptions(), &ar);
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_TRUE(ar.found.stamped);
  EXPECT_EQ(ar.found.watermark.record_seq, 5u);
  // A tries to migrate: it must fail (lost lock, then: adopted away), and write nothing.
  std::vector<uint8_t> junk_model(kImageSize, 0);
  TestBatch b2;
  b2.Add(100, 8, 9, &junk_model);
  b2.batch.end = meta::Watermark{0, 9};
  for (int i = 0; i < 3; i++) EXPECT_FALSE(a->ApplyBatch(b2.batch).ok());
  EXPECT_TRUE(out.ReadImage(image) == model) << "a fenced cache wrote nothing home";
  a.reset();
  std::unique_ptr<Home> old;
  EXPECT_FALSE(Open(image, u, &old, &rep).ok()) << "the old volume never opens the adopted home";
  std::unique_ptr<Home> nb;
  ASSERT_TRUE(Open(image, ub, &nb, &rep).ok());
  EXPECT_EQ(nb->watermark().record_seq, 1u);
  nb.reset();
  out.Remove(image);
  unsetenv("BOOSTVOL_RBD_LOCK_WAIT");
}

TEST(RbdHome, UriParsing) {
  RbdTarget t;
  ASSERT_TRUE(ParseRbdUri("rbd:p/i:conf=/etc/c.conf:id=bv", &t).ok());
  EXPECT_EQ(t.pool, "p");
  EXPECT_EQ(t.image, "i");
  EXPECT_EQ(t.ceph_conf, "/etc/c.conf");
  EXPECT_EQ(t.ceph_id, "bv");
  EXPECT_EQ(RbdUri(t), "rbd:p/i:conf=/etc/c.conf:id=bv");
  for (const char* bad : {"rbd:", "rbd:p", "rbd:/i", "rbd:p/", "rbd:p/i/j", "rbd:p/i:x=1", "rbd:p/i@snap"}) {
    EXPECT_FALSE(ParseRbdUri(bad, &t).ok()) << bad;
  }
}

}  // namespace
}  // namespace boostvol::home

#else

TEST(RbdHome, NotBuilt) {
  if (std::getenv("CI") && std::string(std::getenv("CI")) == "true") {
    FAIL() << "CI=true but this boostvol was built without the RBD home (librbd-dev/librados-dev missing)";
  }
  GTEST_SKIP() << "built without the RBD home";
}

#endif
