// Tests of DirectoryHome (src/home/directory_home.cc) and its formats
// (src/home/home_journal.h, docs/home_format.md).
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "home/home.h"
#include "home/home_factory.h"
#include "home/home_journal.h"
#include "lib/fault_injection_env.h"
#include "util/crc32c.h"
#include "util/env.h"

namespace boostvol::home {
namespace {

constexpr uint64_t kBlock = 4096;
constexpr uint64_t kImageBlocks = 64;
constexpr uint64_t kImageSize = kImageBlocks * kBlock;

log::Uuid MakeUuid(uint8_t seed) {
  log::Uuid u;
  for (size_t i = 0; i < u.size(); i++) u[i] = static_cast<uint8_t>(seed * 31 + i);
  return u;
}

// A batch with owned buffers, and the image it leads to.
struct TestBatch {
  Batch batch;
  std::vector<std::vector<uint8_t>> bufs;

  // Adds an extent of `nblocks` at block `first`, every byte derived from
  // (tag, block); also writes it into `model`.
  void Add(uint64_t first, uint32_t nblocks, uint8_t tag, std::vector<uint8_t>* model) {
    std::vector<uint8_t> b(nblocks * kBlock);
    for (uint32_t i = 0; i < nblocks; i++) {
      for (uint64_t j = 0; j < kBlock; j++) b[i * kBlock + j] = static_cast<uint8_t>(tag + (first + i) * 7 + j % 251);
    }
    std::memcpy(model->data() + first * kBlock, b.data(), b.size());
    bufs.push_back(std::move(b));
    batch.extents.push_back(Extent{first * kBlock, static_cast<uint32_t>(nblocks * kBlock), bufs.back().data()});
  }
};

std::string ReadWholeFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void WriteWholeFile(const std::string& path, const std::string& data) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << data;
}

uint64_t FileSize(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return ~uint64_t{0};
  return static_cast<uint64_t>(st.st_size);
}

class DirectoryHomeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* tmp = std::getenv("TMPDIR");
    std::string tmpl = std::string(tmp != nullptr ? tmp : "/tmp") + "/bv_home_XXXXXX";
    ASSERT_NE(nullptr, ::mkdtemp(tmpl.data()));
    slow_ = tmpl;
    model_.assign(kImageSize, 0);
  }
  void TearDown() override {
    std::string cmd = "rm -rf '" + slow_ + "'";
    ASSERT_EQ(0, std::system(cmd.c_str()));
  }

  std::string Path(const std::string& name) const { return slow_ + "/" + name; }

  void Create(Env* env = Env::Posix()) {
    Status s = CreateDirectoryHome(env, slow_, uuid_, kImageSize);
    ASSERT_TRUE(s.ok()) << s.ToString();
  }
  Status Open(std::unique_ptr<Home>* home, HomeOpenReport* report, bool use_journal = true,
              Env* env = Env::Posix(), const log::Uuid* uuid = nullptr, uint64_t size = kImageSize) {
    return OpenDirectoryHome(env, slow_, uuid != nullptr ? *uuid : uuid_, size, use_journal, home, report);
  }
  std::vector<uint8_t> ReadAll(Home* home) {
    std::vector<uint8_t> out(kImageSize);
    Status s = home->Read(0, out.data(), out.size());
    EXPECT_TRUE(s.ok()) << s.ToString();
    return out;
  }
  // Writes the journal of `b` (on top of `base`) into SLOW as a crash after
  // step 1 would leave it, without touching the image.
  void PlantJournal(const meta::Watermark& base, const Batch& b, bool with_data = true, Env* env = Env::Posix()) {
    std::unique_ptr<Dir> dir;
    ASSERT_TRUE(env->OpenDir(slow_, &dir).ok());
    std::unique_ptr<File> f;
    ASSERT_TRUE(dir->OpenFile(kJournalFile, OpenMode::kCreate, &f).ok());
    Status s = WriteJournal(f.get(), uuid_, kImageSize, base, b, with_data);
    ASSERT_TRUE(s.ok()) << s.ToString();
    ASSERT_TRUE(f->Sync().ok());
  }

  // Opens the home again, as its cache would after a clean stop: no replay, no
  // change behind its back, the watermark at `record_seq`.
  void ExpectCleanReopenAt(uint64_t record_seq, std::unique_ptr<Home>* home) {
    HomeOpenReport report;
    Status s = Open(home, &report);
    ASSERT_TRUE(s.ok()) << s.ToString();
    EXPECT_FALSE(report.journal_replayed);
    EXPECT_FALSE(report.changed_behind_back) << report.change_detail;
    EXPECT_EQ(record_seq, report.watermark.record_seq);
  }

  // Whether the journal reads as empty (no batch in flight): 0 bytes, or an
  // all-zero header block over the blocks of an earlier batch (W5).
  bool JournalIsEmpty() {
    std::unique_ptr<Dir> dir;
    EXPECT_TRUE(Env::Posix()->OpenDir(slow_, &dir).ok());
    std::unique_ptr<File> f;
    EXPECT_TRUE(dir->OpenFile(kJournalFile, OpenMode::kReadOnly, &f).ok());
    JournalState state = JournalState::kTorn;
    Journal j;
    std::string why;
    Status s = ReadJournal(f.get(), uuid_, kImageSize, &state, &j, &why);
    EXPECT_TRUE(s.ok()) << s.ToString();
    return state == JournalState::kEmpty;
  }

  std::string slow_;
  log::Uuid uuid_ = MakeUuid(1);
  std::vector<uint8_t> model_;
};

meta::Watermark Wm(uint64_t seg, uint64_t rec) {
  meta::Watermark w;
  w.segment_seq = seg;
  w.record_seq = rec;
  return w;
}

TEST_F(DirectoryHomeTest, CreateThenOpen) {
  Create();
  EXPECT_EQ(kImageSize, FileSize(Path("image")));
  EXPECT_TRUE(JournalIsEmpty());
  std::string stamp = ReadWholeFile(Path("boostvol-home"));
  EXPECT_EQ(0u, stamp.find("boostvol-home 1\nuuid=" + log::UuidToString(uuid_) + "\nimage_size=262144\n")) << stamp;
  struct stat st;
  ASSERT_EQ(0, ::stat(Path("image").c_str(), &st));
  EXPECT_EQ(0600u, st.st_mode & 0777);

  std::unique_ptr<Home> home;
  HomeOpenReport report;
  Status s = Open(&home, &report);
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(kImageSize, home->size());
  EXPECT_EQ(0u, home->watermark().segment_seq);
  EXPECT_EQ(1u, home->watermark().record_seq);
  EXPECT_EQ(1u, report.watermark.record_seq);
  EXPECT_FALSE(report.journal_replayed);
  EXPECT_FALSE(report.changed_behind_back) << report.change_detail;
  EXPECT_EQ("dir:" + slow_, home->Describe());
  EXPECT_EQ(model_, ReadAll(home.get()));
}

TEST_F(DirectoryHomeTest, CreateRefusesAnExistingHomeAndBadSizes) {
  Create();
  Status s = CreateDirectoryHome(Env::Posix(), slow_, MakeUuid(2), kImageSize);
  EXPECT_EQ(Status::Code::kInvalidArgument, s.code()) << s.ToString();
  EXPECT_NE(std::string::npos, s.message().find("already holds")) << s.ToString();
  {
    std::unique_ptr<Home> home;  // the refused create left the existing home alone
    HomeOpenReport report;
    ASSERT_TRUE(Open(&home, &report).ok());
  }
  std::string other = slow_ + "/sub";
  ASSERT_EQ(0, ::mkdir(other.c_str(), 0700));
  EXPECT_FALSE(CreateDirectoryHome(Env::Posix(), other, uuid_, 0).ok());
  EXPECT_FALSE(CreateDirectoryHome(Env::Posix(), other, uuid_, 4095).ok());
  EXPECT_FALSE(CreateDirectoryHome(Env::Posix(), slow_ + "/missing", uuid_, kImageSize).ok());
}

TEST_F(DirectoryHomeTest, UuidMismatchIsRefused) {
  Create();
  std::unique_ptr<Home> home;
  HomeOpenReport report;
  log::Uuid other = MakeUuid(9);
  Status s = Open(&home, &report, true, Env::Posix(), &other);
  EXPECT_EQ(Status::Code::kInvalidArgument, s.code()) << s.ToString();
  EXPECT_NE(std::string::npos, s.message().find(log::UuidToString(uuid_))) << s.message();
  EXPECT_NE(std::string::npos, s.message().find(log::UuidToString(other))) << s.message();
  EXPECT_NE(std::string::npos, s.message().find("not a pair")) << s.message();
  EXPECT_EQ(nullptr, home);
}

TEST_F(DirectoryHomeTest, SizeMismatchIsRefused) {
  Create();
  std::unique_ptr<Home> home;
  HomeOpenReport report;
  Status s = Open(&home, &report, true, Env::Posix(), nullptr, kImageSize * 2);
  EXPECT_EQ(Status::Code::kInvalidArgument, s.code()) << s.ToString();
  EXPECT_NE(std::string::npos, s.message().find("not a pair")) << s.message();
}

TEST_F(DirectoryHomeTest, MissingStampOrImageIsRefused) {
  std::unique_ptr<Home> home;
  HomeOpenReport report;
  Status s = Open(&home, &report);  // an empty directory
  EXPECT_EQ(Status::Code::kNotFound, s.code()) << s.ToString();
  EXPECT_NE(std::string::npos, s.message().find("no boostvol-home stamp")) << s.message();

  Create();
  ASSERT_EQ(0, ::unlink(Path("image").c_str()));
  s = Open(&home, &report);
  EXPECT_EQ(Status::Code::kNotFound, s.code()) << s.ToString();
  EXPECT_NE(std::string::npos, s.message().find("no image")) << s.message();
}

TEST_F(DirectoryHomeTest, ApplyBatchThenRead) {
  Create();
  std::unique_ptr<Home> home;
  HomeOpenReport report;
  ASSERT_TRUE(Open(&home, &report).ok());
  TestBatch tb;
  tb.Add(0, 1, 1, &model_);
  tb.Add(3, 4, 2, &model_);
  tb.Add(63, 1, 3, &model_);
  tb.batch.end = Wm(2, 40);
  Status s = home->ApplyBatch(tb.batch);
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(40u, home->watermark().record_seq);
  EXPECT_EQ(2u, home->watermark().segment_seq);
  EXPECT_EQ(model_, ReadAll(home.get()));
  // Emptied after the batch (W5), its blocks kept for the next batch's journal.
  EXPECT_TRUE(JournalIsEmpty());
  EXPECT_EQ(kJournalHeaderSize + kBlock + 6 * kBlock, FileSize(Path("boostvol-journal")));
  EXPECT_EQ(kImageSize, FileSize(Path("image")));

  // A single block in the middle, and a read past the end.
  std::vector<uint8_t> blk(kBlock);
  ASSERT_TRUE(home->Read(4 * kBlock, blk.data(), kBlock).ok());
  EXPECT_EQ(0, std::memcmp(blk.data(), model_.data() + 4 * kBlock, kBlock));
  EXPECT_FALSE(home->Read(kImageSize, blk.data(), kBlock).ok());

  // A second batch overwriting part of the first.
  TestBatch tb2;
  tb2.Add(4, 2, 9, &model_);
  tb2.batch.end = Wm(3, 77);
  ASSERT_TRUE(home->ApplyBatch(tb2.batch).ok());
  EXPECT_EQ(model_, ReadAll(home.get()));
}

TEST_F(DirectoryHomeTest, ApplyBatchWithoutJournal) {
  Create();
  std::unique_ptr<Home> home;
  HomeOpenReport report;
  ASSERT_TRUE(Open(&home, &report, /*use_journal=*/false).ok());
  TestBatch tb;
  tb.Add(10, 3, 5, &model_);
  tb.batch.end = Wm(1, 9);
  ASSERT_TRUE(home->ApplyBatch(tb.batch).ok());
  EXPECT_EQ(model_, ReadAll(home.get()));
  home.reset();
  ASSERT_TRUE(Open(&home, &report, false).ok());
  EXPECT_EQ(9u, home->watermark().record_seq);
  EXPECT_FALSE(report.changed_behind_back) << report.change_detail;
}

TEST_F(DirectoryHomeTest, BadBatchesAreRefused) {
  Create();
  std::unique_ptr<Home> home;
  HomeOpenReport report;
  ASSERT_TRUE(Open(&home, &report).ok());
  std::vector<uint8_t> buf(2 * kBlock, 7);
  auto apply = [&](std::vector<Extent> ext, meta::Watermark end) {
    Batch b;
    b.end = end;
    b.extents = std::move(ext);
    return home->ApplyBatch(b);
  };
  EXPECT_FALSE(apply({{1, 4096, buf.data()}}, Wm(0, 2)).ok());                                  // unaligned
  EXPECT_FALSE(apply({{0, 100, buf.data()}}, Wm(0, 2)).ok());                                   // short
  EXPECT_FALSE(apply({{kImageSize, 4096, buf.data()}}, Wm(0, 2)).ok());                         // past the end
  EXPECT_FALSE(apply({{8192, 4096, buf.data()}, {4096, 4096, buf.data()}}, Wm(0, 2)).ok());     // unsorted
  EXPECT_FALSE(apply({{0, 8192, buf.data()}, {4096, 4096, buf.data()}}, Wm(0, 2)).ok());        // overlap
  EXPECT_FALSE(apply({{0, 4096, nullptr}}, Wm(0, 2)).ok());                                     // no data
  ASSERT_TRUE(apply({{0, 4096, buf.data()}}, Wm(1, 10)).ok());
  EXPECT_FALSE(apply({{0, 4096, buf.data()}}, Wm(1, 9)).ok());  // goes backwards
  EXPECT_TRUE(apply({}, Wm(1, 10)).ok());                       // already home: nothing to do
  EXPECT_TRUE(apply({}, Wm(2, 12)).ok());                       // advances the stamp only
  EXPECT_EQ(12u, home->watermark().record_seq);
}

TEST_F(DirectoryHomeTest, WatermarkPersistsAcrossReopen) {
  Create();
  {
    std::unique_ptr<Home> home;
    HomeOpenReport report;
    ASSERT_TRUE(Open(&home, &report).ok());
    TestBatch tb;
    tb.Add(7, 2, 4, &model_);
    tb.batch.end = Wm(5, 123);
    ASSERT_TRUE(home->ApplyBatch(tb.batch).ok());
  }
  std::unique_ptr<Home> home;
  HomeOpenReport report;
  ASSERT_TRUE(Open(&home, &report).ok());
  EXPECT_EQ(5u, report.watermark.segment_seq);
  EXPECT_EQ(123u, report.watermark.record_seq);
  EXPECT_EQ(123u, home->watermark().record_seq);
  EXPECT_FALSE(report.journal_replayed);
  EXPECT_FALSE(report.changed_behind_back) << report.change_detail;
  EXPECT_EQ(model_, ReadAll(home.get()));
  EXPECT_NE(std::string::npos, ReadWholeFile(Path("boostvol-home")).find("\nwatermark_record=123\n"));
}

TEST_F(DirectoryHomeTest, TamperedStampIsCorruption) {
  Create();
  std::string stamp = ReadWholeFile(Path("boostvol-home"));
  size_t pos = stamp.find("watermark_record=1");
  ASSERT_NE(std::string::npos, pos);
  std::string tampered = stamp;
  tampered.replace(pos, 18, "watermark_record=9");  // crc no longer matches
  WriteWholeFile(Path("boostvol-home"), tampered);
  std::unique_ptr<Home> home;
  HomeOpenReport report;
  Status s = Open(&home, &report);
  EXPECT_TRUE(s.IsCorruption()) << s.ToString();
  EXPECT_NE(std::string::npos, s.message().find("boostvol-home")) << s.message();
  EXPECT_NE(std::string::npos, s.message().find("boostvol check")) << s.message();
  EXPECT_NE(std::string::npos, s.message().find("checksum")) << s.message();
}

// A stamp whose crc is right but whose content is not (a field missing, a
// field out of order, garbage numbers) is Corruption too.
TEST_F(DirectoryHomeTest, MalformedStampIsCorruption) {
  auto with_crc = [](const std::string& body) {
    char crc[32];
    std::snprintf(crc, sizeof crc, "crc=%08x\n", crc32c::Value(body.data(), body.size()));
    return body + crc;
  };
  Stamp good;
  good.uuid = uuid_;
  good.image_size = kImageSize;
  std::string text = EncodeStamp(good);
  Stamp parsed;
  ASSERT_TRUE(DecodeStamp(text, "x", &parsed).ok());
  EXPECT_EQ(uuid_, parsed.uuid);
  EXPECT_EQ(kImageSize, parsed.image_size);

  std::string body = text.substr(0, text.rfind("crc="));
  std::string no_blocks = body.substr(0, body.find("image_blocks="));
  EXPECT_TRUE(DecodeStamp(with_crc(no_blocks), "x", &parsed).IsCorruption());
  std::string bad_num = body;
  bad_num.replace(bad_num.find("image_size=") + 11, 1, "x");
  EXPECT_TRUE(DecodeStamp(with_crc(bad_num), "x", &parsed).IsCorruption());
  std::string neg = body;
  neg.replace(neg.find("image_size=") + 11, 0, "-");
  EXPECT_TRUE(DecodeStamp(with_crc(neg), "x", &parsed).IsCorruption());
  std::string extra = body + "color=blue\n";
  EXPECT_TRUE(DecodeStamp(with_crc(extra), "x", &parsed).IsCorruption());
  std::string newer = body;
  newer.replace(0, 15, "boostvol-home 3");
  EXPECT_EQ(Status::Code::kUnsupported, DecodeStamp(with_crc(newer), "x", &parsed).code());
  EXPECT_TRUE(DecodeStamp("", "x", &parsed).IsCorruption());
  EXPECT_TRUE(DecodeStamp(text.substr(0, text.size() - 1), "x", &parsed).IsCorruption());
  EXPECT_TRUE(DecodeStamp(std::string(5000, '\n'), "x", &parsed).IsCorruption());

  // Through Open: a stamp missing a field, with a good crc.
  Create();
  WriteWholeFile(Path("boostvol-home"), with_crc(no_blocks));
  std::unique_ptr<Home> home;
  HomeOpenReport report;
  Status s = Open(&home, &report);
  EXPECT_TRUE(s.IsCorruption()) << s.ToString();
  EXPECT_NE(std::string::npos, s.message().find("boostvol check")) << s.message();
}

TEST_F(DirectoryHomeTest, ImageChangedBehindTheBackIsReported) {
  Create();
  {
    std::unique_ptr<Home> home;
    HomeOpenReport report;
    ASSERT_TRUE(Open(&home, &report).ok());
    TestBatch tb;
    tb.Add(2, 1, 6, &model_);
    tb.batch.end = Wm(1, 5);
    ASSERT_TRUE(home->ApplyBatch(tb.batch).ok());
  }
  // Someone losetup's SLOW/image and writes to it (after the clock ticks).
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  int fd = ::open(Path("image").c_str(), O_WRONLY);
  ASSERT_GE(fd, 0);
  std::vector<uint8_t> junk(kBlock, 0xEE);
  ASSERT_EQ(static_cast<ssize_t>(kBlock), ::pwrite(fd, junk.data(), kBlock, 5 * kBlock));
  ::close(fd);

  std::unique_ptr<Home> home;
  HomeOpenReport report;
  ASSERT_TRUE(Open(&home, &report).ok());
  EXPECT_TRUE(report.changed_behind_back);
  EXPECT_NE(std::string::npos, report.change_detail.find("mtime")) << report.change_detail;
  EXPECT_NE(std::string::npos, report.change_detail.find("UTC")) << report.change_detail;
  EXPECT_EQ(5u, report.watermark.record_seq);

  // The caller accepts it (no dirty blocks): no report at the next open.
  ASSERT_TRUE(home->Restamp().ok());
  home.reset();
  ASSERT_TRUE(Open(&home, &report).ok());
  EXPECT_FALSE(report.changed_behind_back) << report.change_detail;
  EXPECT_EQ(5u, report.watermark.record_seq);
}

// Home-direct writes (write modes, sequential bypass): the stamp carries the
// intent mark before the image changes, so a stop before the next stamp (kill
// -9) is not taken for a change behind the cache's back; any later stamp
// clears it, and a change after that is detected again.
TEST_F(DirectoryHomeTest, HomeDirectWritesCarryTheIntentMark) {
  Create();
  std::vector<uint8_t> blk(2 * kBlock);
  for (size_t i = 0; i < blk.size(); i++) blk[i] = static_cast<uint8_t>(i * 13 + 1);
  {
    std::unique_ptr<Home> home;
    HomeOpenReport report;
    ASSERT_TRUE(Open(&home, &report).ok());
    TestBatch tb;
    tb.Add(2, 1, 6, &model_);
    tb.batch.end = Wm(1, 5);
    ASSERT_TRUE(home->ApplyBatch(tb.batch).ok());
    EXPECT_EQ(0u, ReadWholeFile(Path("boostvol-home")).find("boostvol-home 1\n"));
    EXPECT_FALSE(home->direct_mark_for_test());

    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    ASSERT_TRUE(home->WriteDirect(7 * kBlock, blk.data(), blk.size()).ok());
    std::memcpy(model_.data() + 7 * kBlock, blk.data(), blk.size());
    const std::string marked = ReadWholeFile(Path("boostvol-home"));
    EXPECT_EQ(0u, marked.find("boostvol-home 2\n")) << marked;
    EXPECT_NE(std::string::npos, marked.find("\ndirect_writes=1\n")) << marked;
    EXPECT_TRUE(home->direct_mark_for_test());
    // The mark is written once, not per write.
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    ASSERT_TRUE(home->WriteDirect(9 * kBlock, blk.data(), kBlock).ok());
    std::memcpy(model_.data() + 9 * kBlock, blk.data(), kBlock);
    EXPECT_EQ(marked, ReadWholeFile(Path("boostvol-home")));
    EXPECT_EQ(model_, ReadAll(home.get()));
    // The daemon dies here (no stamp after the writes).
  }
  {
    std::unique_ptr<Home> home;
    HomeOpenReport report;
    ASSERT_TRUE(Open(&home, &report).ok());
    EXPECT_FALSE(report.changed_behind_back) << report.change_detail;
    EXPECT_EQ(5u, report.watermark.record_seq);
    EXPECT_EQ(model_, ReadAll(home.get()));
    // Accepting it restamped the times and cleared the mark.
    EXPECT_EQ(0u, ReadWholeFile(Path("boostvol-home")).find("boostvol-home 1\n"));

    // A batch after home-direct writes clears the mark too.
    ASSERT_TRUE(home->WriteDirect(11 * kBlock, blk.data(), kBlock).ok());
    std::memcpy(model_.data() + 11 * kBlock, blk.data(), kBlock);
    EXPECT_TRUE(home->direct_mark_for_test());
    TestBatch tb;
    tb.Add(20, 1, 9, &model_);
    tb.batch.end = Wm(2, 8);
    ASSERT_TRUE(home->ApplyBatch(tb.batch).ok());
    EXPECT_FALSE(home->direct_mark_for_test());
    EXPECT_EQ(0u, ReadWholeFile(Path("boostvol-home")).find("boostvol-home 1\n"));
  }
  // A write behind our back after that is detected as before.
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  int fd = ::open(Path("image").c_str(), O_WRONLY);
  ASSERT_GE(fd, 0);
  std::vector<uint8_t> junk(kBlock, 0xEE);
  ASSERT_EQ(static_cast<ssize_t>(kBlock), ::pwrite(fd, junk.data(), kBlock, 30 * kBlock));
  ::close(fd);
  std::unique_ptr<Home> home;
  HomeOpenReport report;
  ASSERT_TRUE(Open(&home, &report).ok());
  EXPECT_TRUE(report.changed_behind_back);
}

// The intent mark is a version 2 stamp with exactly one more line; version 1
// stamps stay readable, a damaged mark is corruption.
TEST_F(DirectoryHomeTest, StampVersion2RoundTripsAndIsChecked) {
  Stamp st;
  st.uuid = uuid_;
  st.image_size = kImageSize;
  st.watermark = Wm(3, 9);
  st.direct_writes = true;
  Stamp back;
  ASSERT_TRUE(DecodeStamp(EncodeStamp(st), "t", &back).ok());
  EXPECT_TRUE(back.direct_writes);
  EXPECT_EQ(9u, back.watermark.record_seq);
  st.direct_writes = false;
  const std::string v1 = EncodeStamp(st);
  ASSERT_TRUE(DecodeStamp(v1, "t", &back).ok());
  EXPECT_FALSE(back.direct_writes);
  EXPECT_EQ(std::string::npos, v1.find("direct_writes"));
  // A version 1 header over a version 2 body (and the reverse) is refused.
  st.direct_writes = true;
  std::string bad = EncodeStamp(st);
  bad.replace(bad.find("direct_writes=1"), 15, "direct_writes=0");
  EXPECT_TRUE(DecodeStamp(bad, "t", &back).IsCorruption());
}

TEST_F(DirectoryHomeTest, ImageResizedBehindTheBackIsReportedAndNotRestamped) {
  Create();
  ASSERT_EQ(0, ::truncate(Path("image").c_str(), kImageSize + kBlock));
  std::unique_ptr<Home> home;
  HomeOpenReport report;
  ASSERT_TRUE(Open(&home, &report).ok());
  EXPECT_TRUE(report.changed_behind_back);
  EXPECT_NE(std::string::npos, report.change_detail.find("size")) << report.change_detail;
  Status s = home->Restamp();
  EXPECT_EQ(Status::Code::kInvalidArgument, s.code()) << s.ToString();
}

TEST_F(DirectoryHomeTest, SymlinkPlantedAsImageIsRefused) {
  Create();
  std::string elsewhere = Path("elsewhere");
  ASSERT_EQ(0, ::rename(Path("image").c_str(), elsewhere.c_str()));
  ASSERT_EQ(0, ::symlink(elsewhere.c_str(), Path("image").c_str()));
  std::unique_ptr<Home> home;
  HomeOpenReport report;
  Status s = Open(&home, &report);
  EXPECT_FALSE(s.ok());
  EXPECT_NE(std::string::npos, s.message().find("symbolic link")) << s.ToString();
  EXPECT_EQ(nullptr, home);
}

TEST_F(DirectoryHomeTest, SymlinkPlantedAsJournalIsRefused) {
  Create();
  ASSERT_EQ(0, ::unlink(Path("boostvol-journal").c_str()));
  ASSERT_EQ(0, ::symlink("/etc/passwd", Path("boostvol-journal").c_str()));
  std::unique_ptr<Home> home;
  HomeOpenReport report;
  Status s = Open(&home, &report);
  EXPECT_FALSE(s.ok());
  EXPECT_NE(std::string::npos, s.message().find("symbolic link")) << s.ToString();
}

// Invariant: a journal synced before a crash (step 1 done, in-place writes not
// or partly done) is finished at the next open.
TEST_F(DirectoryHomeTest, JournalIsReplayedAfterACrash) {
  Create();
  TestBatch tb;
  tb.Add(1, 2, 11, &model_);
  tb.Add(20, 1, 12, &model_);
  tb.Add(40, 5, 13, &model_);
  tb.batch.end = Wm(4, 300);
  PlantJournal(Wm(0, 1), tb.batch);
  // Part of the batch made it in place before the crash: a mix.
  int fd = ::open(Path("image").c_str(), O_WRONLY);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(static_cast<ssize_t>(kBlock), ::pwrite(fd, model_.data() + kBlock, kBlock, kBlock));
  ::close(fd);

  std::unique_ptr<Home> home;
  HomeOpenReport report;
  Status s = Open(&home, &report);
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_TRUE(report.journal_replayed);
  EXPECT_FALSE(report.changed_behind_back) << report.change_detail;
  EXPECT_EQ(300u, report.watermark.record_seq);
  EXPECT_EQ(4u, home->watermark().segment_seq);
  EXPECT_EQ(model_, ReadAll(home.get()));
  EXPECT_TRUE(JournalIsEmpty());

  home.reset();
  ASSERT_TRUE(Open(&home, &report).ok());
  EXPECT_FALSE(report.journal_replayed);
  EXPECT_FALSE(report.changed_behind_back) << report.change_detail;
  EXPECT_EQ(300u, report.watermark.record_seq);
  EXPECT_EQ(model_, ReadAll(home.get()));
}

// `boostvol recover-home` (FAST lost for good): the half-applied batch is
// finished from the journal without a cache, the image file alone is the
// model, the stamp still names the volume, and a second run finds nothing.
TEST_F(DirectoryHomeTest, RecoverHomeFinishesAHalfAppliedBatchWithoutTheCache) {
  Create();
  TestBatch tb;
  tb.Add(3, 4, 21, &model_);
  tb.Add(30, 2, 22, &model_);
  tb.batch.end = Wm(7, 512);
  PlantJournal(Wm(0, 1), tb.batch);
  int fd = ::open(Path("image").c_str(), O_WRONLY);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(static_cast<ssize_t>(2 * kBlock), ::pwrite(fd, model_.data() + 3 * kBlock, 2 * kBlock, 3 * kBlock));
  ::close(fd);
  ASSERT_NE(std::string(model_.begin(), model_.end()), ReadWholeFile(Path("image")));

  RecoverReport r;
  Status s = RecoverHome(Env::Posix(), "dir:" + slow_, HomeOptions(), &r);
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_TRUE(r.journal_replayed);
  EXPECT_EQ(512u, r.found.watermark.record_seq);
  EXPECT_NE(std::string::npos, r.summary.find("finished from the home's journal")) << r.summary;
  EXPECT_EQ(std::string(model_.begin(), model_.end()), ReadWholeFile(Path("image")));
  EXPECT_TRUE(JournalIsEmpty());

  // The stamp still names the volume: its cache, if it came back, opens the home as usual.
  {
    std::unique_ptr<Home> home;
    ExpectCleanReopenAt(512, &home);
  }

  ASSERT_TRUE(RecoverHome(Env::Posix(), "dir:" + slow_, HomeOptions(), &r).ok());
  EXPECT_FALSE(r.journal_replayed);
  EXPECT_NE(std::string::npos, r.summary.find("nothing to finish")) << r.summary;
}

// Exactly one cache writes a home: recover-home is refused while one holds it
// (naming the holder), and changes nothing.
TEST_F(DirectoryHomeTest, RecoverHomeIsRefusedWhileACacheHoldsTheHome) {
  Create();
  std::unique_ptr<Home> held;
  HomeOpenReport report;
  ASSERT_TRUE(OpenHome(Env::Posix(), "dir:" + slow_, uuid_, kImageSize, HomeOptions(), &held, &report).ok());
  const std::string stamp = ReadWholeFile(Path("boostvol-home"));
  RecoverReport r;
  Status s = RecoverHome(Env::Posix(), "dir:" + slow_, HomeOptions(), &r);
  EXPECT_TRUE(s.IsBusy()) << s.ToString();
  EXPECT_NE(std::string::npos, s.message().find("in use by another cache")) << s.ToString();
  EXPECT_EQ(stamp, ReadWholeFile(Path("boostvol-home")));
}

// A directory that is not a home is refused with a message, and left as it is.
TEST_F(DirectoryHomeTest, RecoverHomeRefusesADirectoryWithoutAStamp) {
  RecoverReport r;
  Status s = RecoverHome(Env::Posix(), "dir:" + slow_, HomeOptions(), &r);
  EXPECT_TRUE(s.IsNotFound()) << s.ToString();
  EXPECT_NE(std::string::npos, s.message().find("holds no boostvol-home stamp")) << s.ToString();
}

// Invariant: a journal torn by a crash while it was written is discarded, the
// home stays at its stamp.
TEST_F(DirectoryHomeTest, TornJournalIsDiscarded) {
  Create();
  std::vector<uint8_t> old_model = model_;
  TestBatch tb;
  tb.Add(1, 2, 11, &model_);
  tb.Add(30, 4, 12, &model_);
  tb.batch.end = Wm(4, 300);
  PlantJournal(Wm(0, 1), tb.batch);
  uint64_t full = FileSize(Path("boostvol-journal"));
  ASSERT_EQ(kJournalHeaderSize + kBlock + 6 * kBlock, full);

  for (uint64_t cut : {full - kBlock, full / 2, uint64_t{4096}, uint64_t{100}}) {
    SCOPED_TRACE("journal cut to " + std::to_string(cut));
    PlantJournal(Wm(0, 1), tb.batch);
    ASSERT_EQ(0, ::truncate(Path("boostvol-journal").c_str(), static_cast<off_t>(cut)));
    std::unique_ptr<Home> home;
    HomeOpenReport report;
    Status s = Open(&home, &report);
    ASSERT_TRUE(s.ok()) << s.ToString();
    EXPECT_FALSE(report.journal_replayed);
    EXPECT_EQ(1u, report.watermark.record_seq);
    EXPECT_EQ(old_model, ReadAll(home.get()));
    EXPECT_TRUE(JournalIsEmpty());
  }

  // A data byte flipped (torn in the middle): the body crc catches it.
  PlantJournal(Wm(0, 1), tb.batch);
  std::string j = ReadWholeFile(Path("boostvol-journal"));
  j[kJournalHeaderSize + kBlock + 5000] ^= 1;
  WriteWholeFile(Path("boostvol-journal"), j);
  std::unique_ptr<Home> home;
  HomeOpenReport report;
  ASSERT_TRUE(Open(&home, &report).ok());
  EXPECT_FALSE(report.journal_replayed);
  EXPECT_EQ(1u, report.watermark.record_seq);
  EXPECT_EQ(old_model, ReadAll(home.get()));
}

// A journal whose batch is already in the stamp (a crash after step 3, before
// the journal was emptied) is ignored.
TEST_F(DirectoryHomeTest, StaleJournalIsIgnored) {
  Create();
  TestBatch tb;
  tb.Add(1, 1, 11, &model_);
  tb.batch.end = Wm(1, 50);
  {
    std::unique_ptr<Home> home;
    HomeOpenReport report;
    ASSERT_TRUE(Open(&home, &report).ok());
    ASSERT_TRUE(home->ApplyBatch(tb.batch).ok());
  }
  std::vector<uint8_t> other_model(kImageSize, 0);
  TestBatch stale;
  stale.Add(1, 1, 99, &other_model);  // different bytes: replaying it would be wrong
  stale.batch.end = Wm(1, 50);
  PlantJournal(Wm(0, 1), stale.batch);
  std::unique_ptr<Home> home;
  HomeOpenReport report;
  ASSERT_TRUE(Open(&home, &report).ok());
  EXPECT_FALSE(report.journal_replayed);
  EXPECT_EQ(50u, report.watermark.record_seq);
  EXPECT_EQ(model_, ReadAll(home.get()));
}

// W5: an emptied journal keeps its blocks (an all-zero header) and reads as
// empty; the next, smaller batch's journal is written over the old one; every
// crash state of that overwrite opens to the old watermark or the new one.
TEST_F(DirectoryHomeTest, EmptiedJournalKeepsItsBlocksAndIsOverwritten) {
  Create();
  TestBatch big;
  big.Add(0, 16, 1, &model_);
  big.batch.end = Wm(1, 10);
  {
    std::unique_ptr<Home> home;
    HomeOpenReport report;
    ASSERT_TRUE(Open(&home, &report).ok());
    ASSERT_TRUE(home->ApplyBatch(big.batch).ok());
  }
  const uint64_t big_size = FileSize(Path("boostvol-journal"));
  EXPECT_EQ(kJournalHeaderSize + kBlock + 16 * kBlock, big_size);
  EXPECT_TRUE(JournalIsEmpty());
  {
    std::unique_ptr<Home> home;
    ExpectCleanReopenAt(10, &home);
    EXPECT_EQ(model_, ReadAll(home.get()));
    TestBatch small;
    small.Add(40, 1, 2, &model_);
    small.batch.end = Wm(2, 20);
    ASSERT_TRUE(home->ApplyBatch(small.batch).ok());
    EXPECT_EQ(big_size, FileSize(Path("boostvol-journal")));  // not truncated
    EXPECT_TRUE(JournalIsEmpty());
    EXPECT_EQ(model_, ReadAll(home.get()));
  }
  // A crash while the next batch's journal was written over the emptied one:
  // its body landed, its header did not (still zeros) -> nothing to do.
  std::vector<uint8_t> before = model_, next_model = model_;
  TestBatch next;
  next.Add(50, 2, 3, &next_model);
  next.batch.end = Wm(3, 30);
  PlantJournal(Wm(2, 20), next.batch);
  {
    std::string j = ReadWholeFile(Path("boostvol-journal"));
    std::fill(j.begin(), j.begin() + kJournalHeaderSize, '\0');
    WriteWholeFile(Path("boostvol-journal"), j);
    std::unique_ptr<Home> home;
    HomeOpenReport report;
    ASSERT_TRUE(Open(&home, &report).ok());
    EXPECT_FALSE(report.journal_replayed);
    EXPECT_EQ(20u, report.watermark.record_seq);
    EXPECT_EQ(before, ReadAll(home.get()));
  }
  // The header landed too (a synced journal, the batch decided): replayed.
  PlantJournal(Wm(2, 20), next.batch);
  {
    std::unique_ptr<Home> home;
    HomeOpenReport report;
    ASSERT_TRUE(Open(&home, &report).ok());
    EXPECT_TRUE(report.journal_replayed);
    EXPECT_EQ(30u, report.watermark.record_seq);
    EXPECT_EQ(next_model, ReadAll(home.get()));
    EXPECT_TRUE(JournalIsEmpty());
  }
}

// A valid journal that does not start at the stamp's watermark: no crash
// explains it.
TEST_F(DirectoryHomeTest, JournalNotFollowingTheStampIsCorruption) {
  Create();
  TestBatch tb;
  tb.Add(1, 1, 11, &model_);
  tb.batch.end = Wm(3, 90);
  PlantJournal(Wm(2, 60), tb.batch);
  std::unique_ptr<Home> home;
  HomeOpenReport report;
  Status s = Open(&home, &report);
  EXPECT_TRUE(s.IsCorruption()) << s.ToString();
  EXPECT_NE(std::string::npos, s.message().find("boostvol check")) << s.message();
}

TEST_F(DirectoryHomeTest, JournalOfAnotherVolumeIsCorruption) {
  Create();
  TestBatch tb;
  tb.Add(1, 1, 11, &model_);
  tb.batch.end = Wm(3, 90);
  std::unique_ptr<Dir> dir;
  ASSERT_TRUE(Env::Posix()->OpenDir(slow_, &dir).ok());
  std::unique_ptr<File> f;
  ASSERT_TRUE(dir->OpenFile(kJournalFile, OpenMode::kReadWrite, &f).ok());
  ASSERT_TRUE(WriteJournal(f.get(), MakeUuid(7), kImageSize, Wm(0, 1), tb.batch, true).ok());
  std::unique_ptr<Home> home;
  HomeOpenReport report;
  Status s = Open(&home, &report);
  EXPECT_TRUE(s.IsCorruption()) << s.ToString();
}

// Without the journal, a crash mid-batch leaves the intent marker: the image
// may be torn (the log repairs it), but our own writes are not reported as a
// change behind our back and the watermark stays.
TEST_F(DirectoryHomeTest, IntentMarkerWithoutJournalKeepsWatermark) {
  Create();
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  TestBatch tb;
  tb.Add(1, 1, 11, &model_);
  tb.batch.end = Wm(3, 90);
  PlantJournal(Wm(0, 1), tb.batch, /*with_data=*/false);
  EXPECT_EQ(kJournalHeaderSize + kBlock, FileSize(Path("boostvol-journal")));
  int fd = ::open(Path("image").c_str(), O_WRONLY);  // the in-place write that began
  ASSERT_GE(fd, 0);
  ASSERT_EQ(static_cast<ssize_t>(kBlock), ::pwrite(fd, model_.data() + kBlock, kBlock, kBlock));
  ::close(fd);
  std::unique_ptr<Home> home;
  HomeOpenReport report;
  ASSERT_TRUE(Open(&home, &report, false).ok());
  EXPECT_FALSE(report.journal_replayed);
  EXPECT_FALSE(report.changed_behind_back) << report.change_detail;
  EXPECT_EQ(1u, report.watermark.record_seq);
  // The migrator re-applies the batch from the log.
  ASSERT_TRUE(home->ApplyBatch(tb.batch).ok());
  EXPECT_EQ(model_, ReadAll(home.get()));
}

TEST_F(DirectoryHomeTest, ReadsRunConcurrentlyWithBatches) {
  Create();
  std::unique_ptr<Home> home;
  HomeOpenReport report;
  ASSERT_TRUE(Open(&home, &report).ok());
  std::atomic<bool> stop{false};
  std::atomic<int> failures{0};
  std::vector<std::thread> readers;
  for (int t = 0; t < 4; t++) {
    readers.emplace_back([&, t] {
      std::vector<uint8_t> buf(kBlock);
      for (uint64_t i = 0; !stop.load(); i++) {
        if (!home->Read(((i + t) % kImageBlocks) * kBlock, buf.data(), kBlock).ok()) failures++;
        (void)home->watermark();
      }
    });
  }
  for (uint64_t i = 0; i < 20; i++) {
    TestBatch tb;
    tb.Add(i % 60, 4, static_cast<uint8_t>(i), &model_);
    tb.batch.end = Wm(i + 1, 10 * (i + 1));
    ASSERT_TRUE(home->ApplyBatch(tb.batch).ok());
  }
  stop = true;
  for (auto& th : readers) th.join();
  EXPECT_EQ(0, failures.load());
  EXPECT_EQ(model_, ReadAll(home.get()));
}

// ---------------------------------------------------------------------------
// With the fault-injection env: failed syncs (fsyncgate) and power cuts.

class DirectoryHomeFaultTest : public DirectoryHomeTest {
 protected:
  test::FaultInjectionEnv fenv_{Env::Posix()};
};

// A create that fails half-way removes what it made, and only that.
TEST_F(DirectoryHomeFaultTest, FailedCreateLeavesNothingBehind) {
  for (uint64_t skip = 0;; skip++) {
    SCOPED_TRACE("sync " + std::to_string(skip) + " fails");
    TearDown();
    SetUp();
    WriteWholeFile(Path("unrelated"), "keep me");
    test::FaultRule rule;
    rule.path_prefix = slow_;
    rule.op = test::FaultOp::kSync;
    rule.skip = skip;
    rule.count = 1;
    int id = fenv_.InjectFault(rule);
    Status s = CreateDirectoryHome(&fenv_, slow_, uuid_, kImageSize);
    bool fired = fenv_.Counters(id).fired > 0;
    fenv_.ClearFaults();
    EXPECT_EQ("keep me", ReadWholeFile(Path("unrelated")));
    if (!fired) {
      ASSERT_TRUE(s.ok()) << s.ToString();
      break;
    }
    EXPECT_FALSE(s.ok());
    for (const char* name : {"image", "boostvol-home", "boostvol-home.tmp", "boostvol-journal"}) {
      EXPECT_EQ(~uint64_t{0}, FileSize(Path(name))) << name << " was left behind";
    }
    ASSERT_LT(skip, 20u);
  }
}

// DESIGN.md 7: a failed sync dropped the data (the env reverts the file at
// once); the retried batch must rewrite it, not just re-sync.
TEST_F(DirectoryHomeFaultTest, FailedSyncThenRetryRewritesEverything) {
  for (const char* target : {"image", "boostvol-journal", "boostvol-home.tmp", ""}) {
    SCOPED_TRACE(std::string("sync fails on '") + target + "'");
    TearDown();
    SetUp();
    Create(&fenv_);
    std::unique_ptr<Home> home;
    HomeOpenReport report;
    ASSERT_TRUE(Open(&home, &report, true, &fenv_).ok());
    TestBatch tb;
    tb.Add(2, 3, 21, &model_);
    tb.Add(50, 2, 22, &model_);
    tb.batch.end = Wm(2, 20);
    test::FaultRule rule;
    rule.op = test::FaultOp::kSync;
    rule.count = 1;
    if (*target) {
      rule.path_prefix = Path(target);
    } else {
      rule.path_prefix = slow_;  // "": SLOW's own fsync, after the rename of the stamp
      rule.skip = 3;             // the syncs of the journal, the image, the stamp's tmp, then SLOW
    }
    int id = fenv_.InjectFault(rule);
    Status s = home->ApplyBatch(tb.batch);
    EXPECT_FALSE(s.ok());
    EXPECT_EQ(1u, fenv_.Counters(id).fired);
    fenv_.ClearFaults();
    EXPECT_EQ(1u, home->watermark().record_seq);
    s = home->ApplyBatch(tb.batch);
    ASSERT_TRUE(s.ok()) << s.ToString();
    EXPECT_EQ(20u, home->watermark().record_seq);
    EXPECT_EQ(model_, ReadAll(home.get()));
    // Nothing depends on unsynced state: a power cut now changes nothing.
    ASSERT_TRUE(fenv_.PowerCut(test::PowerCutMode::kDropUnsynced, 1, slow_).ok());
    home.reset();
    ASSERT_TRUE(Open(&home, &report, true, &fenv_).ok());
    EXPECT_EQ(20u, report.watermark.record_seq);
    EXPECT_EQ(model_, ReadAll(home.get()));
  }
}

// After a failure past the journal's sync, the retry may be a different
// (larger) batch: the interrupted one is finished from the journal first.
TEST_F(DirectoryHomeFaultTest, RetryWithALargerBatchAfterAFailedImageSync) {
  Create(&fenv_);
  std::unique_ptr<Home> home;
  HomeOpenReport report;
  ASSERT_TRUE(Open(&home, &report, true, &fenv_).ok());
  TestBatch a;
  a.Add(2, 3, 21, &model_);
  a.batch.end = Wm(2, 20);
  test::FaultRule rule;
  rule.path_prefix = Path("image");
  rule.op = test::FaultOp::kSync;
  rule.count = 1;
  fenv_.InjectFault(rule);
  EXPECT_FALSE(home->ApplyBatch(a.batch).ok());
  fenv_.ClearFaults();
  TestBatch b;
  b.Add(2, 3, 21, &model_);
  b.Add(10, 1, 23, &model_);
  b.batch.end = Wm(3, 30);
  ASSERT_TRUE(home->ApplyBatch(b.batch).ok());
  EXPECT_EQ(30u, home->watermark().record_seq);
  EXPECT_EQ(model_, ReadAll(home.get()));
}

// Without the journal: a failed try leaves its intent marker; the retry keeps
// it (or removes it durably when the retry does not cover it), and the home
// reopens at the right watermark with no complaint.
TEST_F(DirectoryHomeFaultTest, RetryWithoutJournalAfterAFailedInPlaceWrite) {
  for (bool empty_retry : {false, true}) {
    SCOPED_TRACE(empty_retry ? "retry with an empty batch" : "retry with the same batch");
    TearDown();
    SetUp();
    Create(&fenv_);
    std::unique_ptr<Home> home;
    HomeOpenReport report;
    ASSERT_TRUE(Open(&home, &report, /*use_journal=*/false, &fenv_).ok());
    TestBatch a;
    a.Add(2, 3, 21, &model_);
    a.Add(40, 3, 22, &model_);
    a.batch.end = Wm(2, 20);
    test::FaultRule rule;
    rule.path_prefix = Path("image");
    rule.op = test::FaultOp::kWrite;
    rule.skip = 1;
    rule.count = 1;
    fenv_.InjectFault(rule);
    EXPECT_FALSE(home->ApplyBatch(a.batch).ok());
    fenv_.ClearFaults();
    Batch retry = a.batch;
    if (empty_retry) {
      retry.extents.clear();
      retry.end = Wm(1, 15);
    }
    Status s = home->ApplyBatch(retry);
    ASSERT_TRUE(s.ok()) << s.ToString();
    uint64_t want = empty_retry ? 15 : 20;
    EXPECT_EQ(want, home->watermark().record_seq);
    if (!empty_retry) {
      EXPECT_EQ(model_, ReadAll(home.get()));
    }
    home.reset();
    ASSERT_TRUE(fenv_.PowerCut(test::PowerCutMode::kDropUnsynced, 1, slow_).ok());
    s = Open(&home, &report, false, &fenv_);
    ASSERT_TRUE(s.ok()) << s.ToString();
    EXPECT_EQ(want, report.watermark.record_seq);
    if (!empty_retry) {
      EXPECT_EQ(model_, ReadAll(home.get()));
    }
  }
}

// The dangerous retry: batch A synced its journal, wrote part of its extents
// in place and failed; the retry (batch B, larger) must not overwrite A's
// journal before A is finished, or a crash while B's journal is written leaves
// neither journal valid and the image a mix of A and the state before it.
TEST_F(DirectoryHomeFaultTest, CrashWhileRetryingAfterAFailedInPlaceWrite) {
  int runs = 0;
  for (uint64_t skip = 0; skip < 6; skip++) {
    for (uint64_t seed = 1; seed <= 6; seed++) {
      SCOPED_TRACE("skip " + std::to_string(skip) + " seed " + std::to_string(seed));
      TearDown();
      SetUp();
      Create(&fenv_);
      std::vector<uint8_t> model_old(kImageSize, 0), model_a, model_b;
      model_a = model_old;
      TestBatch a;
      a.Add(2, 3, 21, &model_a);
      a.Add(40, 3, 22, &model_a);
      a.batch.end = Wm(2, 20);
      model_b = model_a;
      TestBatch b;  // newer data for A's blocks, and more
      b.Add(2, 3, 31, &model_b);
      b.Add(40, 3, 32, &model_b);
      b.Add(50, 4, 33, &model_b);
      b.batch.end = Wm(3, 30);
      {
        std::unique_ptr<Home> home;
        HomeOpenReport report;
        ASSERT_TRUE(Open(&home, &report, true, &fenv_).ok());
        test::FaultRule rule;
        rule.path_prefix = Path("image");
        rule.op = test::FaultOp::kWrite;
        rule.skip = 1;  // A's first extent lands (unsynced), the second fails
        rule.count = 1;
        fenv_.InjectFault(rule);
        EXPECT_FALSE(home->ApplyBatch(a.batch).ok());
        fenv_.ClearFaults();
        rule.path_prefix = Path("boostvol-journal");
        rule.skip = skip;  // somewhere in the retry's journal writes
        fenv_.InjectFault(rule);
        (void)home->ApplyBatch(b.batch);
        fenv_.ClearFaults();
        ASSERT_TRUE(fenv_.PowerCut(test::PowerCutMode::kKeepRandomSubset, seed, slow_).ok());
      }
      std::unique_ptr<Home> home;
      HomeOpenReport report;
      Status s = Open(&home, &report, true, &fenv_);
      ASSERT_TRUE(s.ok()) << s.ToString();
      std::vector<uint8_t> got = ReadAll(home.get());
      uint64_t wm = report.watermark.record_seq;
      EXPECT_TRUE((wm == 1 && got == model_old) || (wm == 20 && got == model_a) || (wm == 30 && got == model_b))
          << "watermark " << wm << " with an image that is not its state";
      runs++;
    }
  }
  EXPECT_EQ(36, runs);
}

// DESIGN.md 2.7, the home's own invariant: cut power at every step of
// ApplyBatch (each sync, each write, the rename fails and then the power goes)
// and the home reopens as exactly the old state or exactly the new one.
TEST_F(DirectoryHomeFaultTest, PowerCutAtEveryStepLeavesOldOrNew) {
  struct Mode {
    test::PowerCutMode mode;
    uint64_t seed;
  };
  const std::vector<Mode> modes = {{test::PowerCutMode::kDropUnsynced, 0},
                                   {test::PowerCutMode::kKeepRandomSubset, 1},
                                   {test::PowerCutMode::kKeepRandomSubset, 2},
                                   {test::PowerCutMode::kKeepRandomSubset, 3},
                                   {test::PowerCutMode::kTornLastWrite, 1},
                                   {test::PowerCutMode::kTornLastWrite, 2}};
  int runs = 0, old_states = 0, new_states = 0;
  // The second batch with its bytes in memory, and streamed from a source
  // with its gaps filled (the migrator's way): one extent over blocks 2..38,
  // the dirty runs in journal_extents.
  for (bool streamed : {false, true})
  for (test::FaultOp op : {test::FaultOp::kSync, test::FaultOp::kWrite, test::FaultOp::kDirOp}) {
    for (uint64_t skip = 0;; skip++) {
      bool fired = false;
      for (const Mode& m : modes) {
        bool applied = false;
        SCOPED_TRACE(std::string(streamed ? "streamed " : "") + "op " + std::to_string(static_cast<int>(op)) + " skip " + std::to_string(skip) + " mode " +
                     std::to_string(static_cast<int>(m.mode)) + " seed " + std::to_string(m.seed));
        TearDown();
        SetUp();
        Create(&fenv_);
        std::vector<uint8_t> model_old(kImageSize, 0), model_new;
        TestBatch first;
        first.Add(0, 4, 1, &model_old);
        first.Add(30, 2, 2, &model_old);
        first.batch.end = Wm(1, 10);
        model_new = model_old;
        TestBatch second;
        second.Add(2, 4, 3, &model_new);  // overlaps the first batch's blocks 2-3
        second.Add(20, 1, 4, &model_new);
        second.Add(31, 8, 5, &model_new);
        second.batch.end = Wm(2, 20);
        if (streamed) {
          Batch& b = second.batch;
          b.journal_extents = b.extents;
          for (Extent& e : b.journal_extents) e.data = nullptr;
          b.extents = {Extent{2 * kBlock, static_cast<uint32_t>(37 * kBlock), nullptr}};
          b.source = [&model_new](uint64_t offset, uint8_t* dst, size_t n) {
            std::memcpy(dst, model_new.data() + offset, n);
            return Status::OK();
          };
        }
        {
          std::unique_ptr<Home> home;
          HomeOpenReport report;
          ASSERT_TRUE(Open(&home, &report, true, &fenv_).ok());
          ASSERT_TRUE(home->ApplyBatch(first.batch).ok());
          test::FaultRule rule;
          rule.path_prefix = slow_;
          rule.op = op;
          rule.skip = skip;
          rule.count = 1;
          int id = fenv_.InjectFault(rule);
          Status s = home->ApplyBatch(second.batch);
          fired = fenv_.Counters(id).fired > 0;
          // Fails iff the fault fired, except at the last step (emptying the
          // journal), which is not needed for durability.
          if (!fired) {
            EXPECT_TRUE(s.ok()) << s.ToString();
          }
          applied = s.ok();
          fenv_.ClearFaults();
          ASSERT_TRUE(fenv_.PowerCut(m.mode, m.seed, slow_).ok());
        }
        std::unique_ptr<Home> home;
        HomeOpenReport report;
        Status s = Open(&home, &report, true, &fenv_);
        ASSERT_TRUE(s.ok()) << s.ToString();
        // (changed_behind_back is not checked: the env reverts sectors through
        // the real file system, which moves the image's times.)
        std::vector<uint8_t> got = ReadAll(home.get());
        runs++;
        if (applied) {
          EXPECT_EQ(20u, report.watermark.record_seq) << "ApplyBatch returned OK, the batch was lost";
        }
        if (report.watermark.record_seq == 10) {
          EXPECT_EQ(1u, report.watermark.segment_seq);
          EXPECT_TRUE(got == model_old) << "watermark old, image not the old state";
          old_states++;
          // The migrator retries the batch; it lands.
          ASSERT_TRUE(home->ApplyBatch(second.batch).ok());
          EXPECT_EQ(model_new, ReadAll(home.get()));
        } else {
          EXPECT_EQ(20u, report.watermark.record_seq);
          EXPECT_EQ(2u, report.watermark.segment_seq);
          EXPECT_TRUE(got == model_new) << "watermark new, image not the new state";
          new_states++;
        }
        if (!fired) break;  // the fault never fired: ApplyBatch completed
      }
      if (!fired) break;
      ASSERT_LT(skip, 100u) << "ApplyBatch never completes";
    }
  }
  EXPECT_GT(old_states, 0);
  EXPECT_GT(new_states, 0);
  std::printf("[          ] %d power cuts: %d old state, %d new state\n", runs, old_states, new_states);
}

// The same for the replay at Open: power cut at every step of finishing a
// journal leaves the old state or the new one, and the next open finishes it.
TEST_F(DirectoryHomeFaultTest, PowerCutDuringReplayLeavesOldOrNew) {
  for (test::FaultOp op : {test::FaultOp::kSync, test::FaultOp::kWrite, test::FaultOp::kDirOp}) {
    for (uint64_t skip = 0;; skip++) {
      SCOPED_TRACE("op " + std::to_string(static_cast<int>(op)) + " skip " + std::to_string(skip));
      TearDown();
      SetUp();
      Create(&fenv_);
      std::vector<uint8_t> model_new(kImageSize, 0);
      TestBatch tb;
      tb.Add(3, 5, 7, &model_new);
      tb.Add(60, 4, 8, &model_new);
      tb.batch.end = Wm(2, 20);
      PlantJournal(Wm(0, 1), tb.batch, true, &fenv_);
      test::FaultRule rule;
      rule.path_prefix = slow_;
      rule.op = op;
      rule.skip = skip;
      rule.count = 1;
      int id = fenv_.InjectFault(rule);
      std::unique_ptr<Home> home;
      HomeOpenReport report;
      Status s = Open(&home, &report, true, &fenv_);
      bool fired = fenv_.Counters(id).fired > 0;
      fenv_.ClearFaults();
      home.reset();
      ASSERT_TRUE(fenv_.PowerCut(test::PowerCutMode::kKeepRandomSubset, skip + 1, slow_).ok());
      s = Open(&home, &report, true, &fenv_);
      ASSERT_TRUE(s.ok()) << s.ToString();
      EXPECT_EQ(20u, report.watermark.record_seq);
      EXPECT_EQ(model_new, ReadAll(home.get()));
      if (!fired) break;
      ASSERT_LT(skip, 100u);
    }
  }
}

}  // namespace
}  // namespace boostvol::home

namespace boostvol::home {
namespace {

uint64_t AllocatedBytes(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return ~uint64_t{0};
  return static_cast<uint64_t>(st.st_blocks) * 512;
}

// Zero extents are applied before data extents, and free space at home (a
// hole in SLOW/image).
TEST_F(DirectoryHomeTest, ZeroExtentsPunchHolesBeforeTheData) {
  Create();
  std::unique_ptr<Home> home;
  HomeOpenReport report;
  ASSERT_TRUE(Open(&home, &report).ok());
  TestBatch full;
  full.Add(0, kImageBlocks, 5, &model_);
  full.batch.end = Wm(1, 10);
  ASSERT_TRUE(home->ApplyBatch(full.batch).ok());
  const uint64_t before = AllocatedBytes(Path("image"));
  ASSERT_GE(before, kImageSize);

  TestBatch tb;
  tb.batch.zeros.push_back(ZeroExtent{8 * kBlock, 32 * kBlock});
  std::memset(model_.data() + 8 * kBlock, 0, 32 * kBlock);
  tb.Add(10, 1, 77, &model_);  // written after the zeros of its batch
  tb.batch.end = Wm(2, 20);
  Status s = home->ApplyBatch(tb.batch);
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(model_, ReadAll(home.get()));
  const uint64_t after = AllocatedBytes(Path("image"));
  EXPECT_LE(after + 28 * kBlock, before) << "the punched range should no longer be allocated";
}

// A journal with zero extents (version 2) is replayed after a crash: zeros
// first, then data; the batch lands whole.
TEST_F(DirectoryHomeTest, JournalWithZeroExtentsIsReplayedAfterACrash) {
  Create();
  {
    std::unique_ptr<Home> home;
    HomeOpenReport report;
    ASSERT_TRUE(Open(&home, &report).ok());
    TestBatch full;
    full.Add(0, kImageBlocks, 9, &model_);
    full.batch.end = Wm(1, 10);
    ASSERT_TRUE(home->ApplyBatch(full.batch).ok());
  }
  TestBatch tb;
  tb.batch.zeros.push_back(ZeroExtent{0, 4 * kBlock});
  tb.batch.zeros.push_back(ZeroExtent{30 * kBlock, 10 * kBlock});
  std::memset(model_.data(), 0, 4 * kBlock);
  std::memset(model_.data() + 30 * kBlock, 0, 10 * kBlock);
  tb.Add(2, 1, 21, &model_);
  tb.Add(35, 2, 22, &model_);
  tb.batch.end = Wm(3, 40);
  PlantJournal(Wm(1, 10), tb.batch);
  std::string journal = ReadWholeFile(Path("boostvol-journal"));
  ASSERT_GE(journal.size(), 6u);
  EXPECT_EQ(2, journal[4]) << "a journal with zero extents is version 2";

  std::unique_ptr<Home> home;
  HomeOpenReport report;
  Status s = Open(&home, &report);
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_TRUE(report.journal_replayed);
  EXPECT_EQ(40u, home->watermark().record_seq);
  EXPECT_EQ(model_, ReadAll(home.get()));
}

// While a failed batch's journal is live (it may be replayed over the image),
// home-direct writes are refused: the caller logs them instead.
TEST_F(DirectoryHomeFaultTest, HomeDirectWriteIsRefusedWhileAJournalIsLive) {
  Create(&fenv_);
  std::unique_ptr<Home> home;
  HomeOpenReport report;
  ASSERT_TRUE(Open(&home, &report, true, &fenv_).ok());
  TestBatch tb;
  tb.Add(2, 3, 21, &model_);
  tb.batch.end = Wm(2, 20);
  test::FaultRule rule;
  rule.op = test::FaultOp::kSync;
  rule.count = 1;
  rule.path_prefix = Path("image");
  fenv_.InjectFault(rule);
  EXPECT_FALSE(home->ApplyBatch(tb.batch).ok());
  fenv_.ClearFaults();
  std::vector<uint8_t> blk(kBlock, 0x5A);
  Status s = home->WriteDirect(3 * kBlock, blk.data(), kBlock);
  EXPECT_TRUE(s.IsBusy()) << s.ToString();
  ASSERT_TRUE(home->ApplyBatch(tb.batch).ok());
  ASSERT_TRUE(home->WriteDirect(3 * kBlock, blk.data(), kBlock).ok());
  std::memcpy(model_.data() + 3 * kBlock, blk.data(), kBlock);
  EXPECT_EQ(model_, ReadAll(home.get()));
}

// A batch whose extent fills the gaps between dirty runs with the home's
// current bytes (the migrator's gap filling) and lists the dirty runs in
// journal_extents: the journal holds only those runs.
TEST_F(DirectoryHomeTest, JournalHoldsOnlyTheDirtyRunsOfAFilledExtent) {
  Create();
  std::unique_ptr<Home> home;
  HomeOpenReport report;
  ASSERT_TRUE(Open(&home, &report).ok());
  // Blocks 10..29 written in one extent; only 10-11, 20 and 28-29 change.
  std::vector<uint8_t> span(20 * kBlock);
  std::memcpy(span.data(), model_.data() + 10 * kBlock, span.size());
  auto dirty = [&](uint64_t first, uint32_t n, uint8_t tag) {
    for (uint64_t b = first; b < first + n; b++)
      for (uint64_t j = 0; j < kBlock; j++) model_[b * kBlock + j] = static_cast<uint8_t>(tag + b * 3 + j % 13);
    std::memcpy(span.data() + (first - 10) * kBlock, model_.data() + first * kBlock, n * kBlock);
    return Extent{first * kBlock, static_cast<uint32_t>(n * kBlock), span.data() + (first - 10) * kBlock};
  };
  Batch b;
  b.journal_extents = {dirty(10, 2, 1), dirty(20, 1, 2), dirty(28, 2, 3)};
  b.extents = {Extent{10 * kBlock, static_cast<uint32_t>(20 * kBlock), span.data()}};
  b.end = Wm(1, 5);
  // The journal as step 1 writes it: 5 blocks of data, 3 extents.
  PlantJournal(Wm(0, 1), b);
  std::string j = ReadWholeFile(Path("boostvol-journal"));
  uint64_t count, total;
  std::memcpy(&count, j.data() + 64, 8);
  std::memcpy(&total, j.data() + 72, 8);
  EXPECT_EQ(3u, count);
  EXPECT_EQ(5 * kBlock, total);
  EXPECT_EQ(kJournalHeaderSize + JournalTableBytes(3) + 5 * kBlock, j.size());
  ASSERT_TRUE(::truncate(Path("boostvol-journal").c_str(), 0) == 0);
  Status s = home->ApplyBatch(b);
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(model_, ReadAll(home.get()));

  // Replay after a crash right after the journal's sync: the dirty runs land,
  // the gap blocks keep what they held.
  home.reset();
  std::vector<uint8_t> before = model_;
  Batch b2;
  std::memcpy(span.data(), model_.data() + 10 * kBlock, span.size());
  // Three runs with short gaps: the replay writes them as one run over
  // blocks 12..25, the gap blocks read back from the image.
  b2.journal_extents = {dirty(12, 3, 7), dirty(18, 1, 9), dirty(25, 1, 8)};
  b2.extents = {Extent{10 * kBlock, static_cast<uint32_t>(20 * kBlock), span.data()}};
  b2.end = Wm(2, 9);
  PlantJournal(Wm(1, 5), b2);
  ASSERT_TRUE(Open(&home, &report).ok());
  EXPECT_TRUE(report.journal_replayed);
  EXPECT_EQ(9u, home->watermark().record_seq);
  EXPECT_EQ(model_, ReadAll(home.get()));
  EXPECT_NE(before, model_);
}

TEST_F(DirectoryHomeTest, BadJournalExtentsAreRefused) {
  Create();
  std::unique_ptr<Home> home;
  HomeOpenReport report;
  ASSERT_TRUE(Open(&home, &report).ok());
  std::vector<uint8_t> buf(4 * kBlock, 7);
  const uint8_t* d = buf.data();
  auto apply = [&](std::vector<Extent> jext) {
    Batch b;
    b.end = Wm(1, 2);
    b.extents = {Extent{4 * kBlock, static_cast<uint32_t>(4 * kBlock), d}};
    b.journal_extents = std::move(jext);
    return home->ApplyBatch(b);
  };
  EXPECT_FALSE(apply({{3 * kBlock, 4096, d}}).ok());                                 // outside every extent
  EXPECT_FALSE(apply({{7 * kBlock, 8192, d + 3 * kBlock}}).ok());                    // runs past its extent
  EXPECT_FALSE(apply({{5 * kBlock, 4096, d}}).ok());                                 // not its extent's bytes
  EXPECT_FALSE(apply({{6 * kBlock, 4096, d + 2 * kBlock}, {5 * kBlock, 4096, d + kBlock}}).ok());  // unsorted
  EXPECT_FALSE(apply({{5 * kBlock, 100, d + kBlock}}).ok());                         // short
  EXPECT_FALSE(apply({{5 * kBlock, 4096, nullptr}}).ok());                           // no data
  EXPECT_EQ(0u, home->watermark().segment_seq);
  EXPECT_TRUE(apply({{5 * kBlock, 4096, d + kBlock}, {7 * kBlock, 4096, d + 3 * kBlock}}).ok());
  EXPECT_EQ(2u, home->watermark().record_seq);
}

// A streamed batch (no data in memory, bytes from Batch::source) lands, and
// its journal, planted as a crash after step 1 leaves it, replays.
TEST_F(DirectoryHomeTest, StreamedBatchAppliesAndReplays) {
  Create();
  std::unique_ptr<Home> home;
  HomeOpenReport report;
  ASSERT_TRUE(Open(&home, &report).ok());
  EXPECT_TRUE(home->streams_batches());
  for (uint64_t b = 0; b < kImageBlocks; b++)
    if (b % 3 == 0) std::memset(model_.data() + b * kBlock, static_cast<int>(b + 1), kBlock);
  int calls = 0;
  Batch batch;
  batch.end = Wm(1, 3);
  batch.extents = {Extent{0, static_cast<uint32_t>(kImageSize), nullptr}};  // 256 KiB in one extent
  batch.source = [&](uint64_t offset, uint8_t* dst, size_t n) {
    calls++;
    EXPECT_LE(offset + n, kImageSize);
    std::memcpy(dst, model_.data() + offset, n);
    return Status::OK();
  };
  Status s = home->ApplyBatch(batch);
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(model_, ReadAll(home.get()));
  EXPECT_EQ(2, calls);  // once for the journal, once in place

  // A failing source fails the batch; the retry lands.
  std::memset(model_.data() + 5 * kBlock, 0x5a, kBlock);
  batch.end = Wm(2, 4);
  batch.extents = {Extent{5 * kBlock, static_cast<uint32_t>(kBlock), nullptr}};
  bool fail = true;
  auto ok_source = batch.source;
  batch.source = [&](uint64_t offset, uint8_t* dst, size_t n) {
    if (fail) return Status::IoError(EIO, "log read failed");
    return ok_source(offset, dst, n);
  };
  EXPECT_FALSE(home->ApplyBatch(batch).ok());
  EXPECT_EQ(3u, home->watermark().record_seq);
  fail = false;
  ASSERT_TRUE(home->ApplyBatch(batch).ok());
  EXPECT_EQ(model_, ReadAll(home.get()));

  // Crash after the journal of a streamed batch: the replay writes it.
  home.reset();
  std::memset(model_.data() + 9 * kBlock, 0x77, 2 * kBlock);
  Batch b3;
  b3.end = Wm(3, 9);
  b3.extents = {Extent{9 * kBlock, static_cast<uint32_t>(2 * kBlock), nullptr}};
  b3.source = ok_source;
  PlantJournal(Wm(2, 4), b3);
  ASSERT_TRUE(Open(&home, &report).ok());
  EXPECT_TRUE(report.journal_replayed);
  EXPECT_EQ(9u, home->watermark().record_seq);
  EXPECT_EQ(model_, ReadAll(home.get()));
}

}  // namespace
}  // namespace boostvol::home
