#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "util/env.h"

namespace boostvol {
namespace {

// A fresh directory under TMPDIR, removed (recursively) at the end.
class EnvPosixTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* tmp = std::getenv("TMPDIR");
    std::string tmpl = std::string(tmp != nullptr ? tmp : "/tmp") + "/bv_env_XXXXXX";
    ASSERT_NE(nullptr, ::mkdtemp(tmpl.data()));
    root_ = tmpl;
    ASSERT_TRUE(env_->OpenDir(root_, &dir_).ok());
  }
  void TearDown() override {
    dir_.reset();
    std::string cmd = "rm -rf '" + root_ + "'";
    ASSERT_EQ(0, std::system(cmd.c_str()));
  }

  std::string Path(const std::string& name) const { return root_ + "/" + name; }

  Env* env_ = Env::Posix();
  std::string root_;
  std::unique_ptr<Dir> dir_;
};

TEST_F(EnvPosixTest, IsPlainName) {
  EXPECT_TRUE(IsPlainName("log"));
  EXPECT_TRUE(IsPlainName("meta.db-wal"));
  EXPECT_TRUE(IsPlainName("..."));
  EXPECT_FALSE(IsPlainName(""));
  EXPECT_FALSE(IsPlainName("."));
  EXPECT_FALSE(IsPlainName(".."));
  EXPECT_FALSE(IsPlainName("a/b"));
  EXPECT_FALSE(IsPlainName("/abs"));
  EXPECT_FALSE(IsPlainName(std::string("a\0b", 3)));
}

TEST_F(EnvPosixTest, BadNamesAreRefused) {
  std::unique_ptr<File> f;
  EXPECT_EQ(Status::Code::kInvalidArgument, dir_->OpenFile("../x", OpenMode::kCreate, &f).code());
  EXPECT_EQ(Status::Code::kInvalidArgument, dir_->OpenFile("..", OpenMode::kReadOnly, &f).code());
  bool exists;
  EXPECT_FALSE(dir_->Exists("a/b", &exists).ok());
  EXPECT_FALSE(dir_->Rename("a", "").ok());
  EXPECT_FALSE(dir_->Remove(".").ok());
}

TEST_F(EnvPosixTest, CreatesFilesPrivate) {
  mode_t old = ::umask(0);  // even a permissive umask must not widen 0600
  std::unique_ptr<File> f;
  Status s = dir_->OpenFile("data", OpenMode::kCreate, &f);
  ::umask(old);
  ASSERT_TRUE(s.ok()) << s.ToString();
  FileInfo info;
  ASSERT_TRUE(f->Stat(&info).ok());
  EXPECT_EQ(0600u, info.mode & 07777);
  EXPECT_EQ(static_cast<uint32_t>(::getuid()), info.uid);
  EXPECT_EQ(Path("data"), f->name());
}

TEST_F(EnvPosixTest, OpenModes) {
  std::unique_ptr<File> f;
  Status s = dir_->OpenFile("missing", OpenMode::kReadWrite, &f);
  EXPECT_TRUE(s.IsNotFound()) << s.ToString();
  EXPECT_EQ(ENOENT, s.err());
  EXPECT_NE(std::string::npos, s.message().find(Path("missing")));
  ASSERT_TRUE(dir_->OpenFile("x", OpenMode::kCreateExclusive, &f).ok());
  s = dir_->OpenFile("x", OpenMode::kCreateExclusive, &f);
  EXPECT_EQ(EEXIST, s.err());
  ASSERT_TRUE(dir_->OpenFile("x", OpenMode::kReadOnly, &f).ok());
  EXPECT_FALSE(f->WriteAt(0, "a", 1).ok());
}

TEST_F(EnvPosixTest, WriteReadAndZeroFillPastEof) {
  std::unique_ptr<File> f;
  ASSERT_TRUE(dir_->OpenFile("f", OpenMode::kCreate, &f).ok());
  ASSERT_TRUE(f->WriteAt(10, "hello", 5).ok());
  char buf[32];
  std::memset(buf, 'Z', sizeof(buf));
  ASSERT_TRUE(f->ReadAt(8, buf, sizeof(buf)).ok());
  EXPECT_EQ(0, buf[0]);
  EXPECT_EQ(0, buf[1]);
  EXPECT_EQ(0, std::memcmp(buf + 2, "hello", 5));
  for (size_t i = 7; i < sizeof(buf); ++i) EXPECT_EQ(0, buf[i]) << i;
  ASSERT_TRUE(f->ReadAt(1 << 20, buf, sizeof(buf)).ok());  // wholly past EOF
  for (char c : buf) EXPECT_EQ(0, c);
  ASSERT_TRUE(f->Sync().ok());
  FileInfo info;
  ASSERT_TRUE(f->Stat(&info).ok());
  EXPECT_EQ(15u, info.size);
  EXPECT_GT(info.mtime_ns, 0);
}

TEST_F(EnvPosixTest, LargeTransfer) {
  std::unique_ptr<File> f;
  ASSERT_TRUE(dir_->OpenFile("big", OpenMode::kCreate, &f).ok());
  std::string data(3 << 20, '\0');
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<char>(i * 131 + 7);
  ASSERT_TRUE(f->WriteAt(4097, data.data(), data.size()).ok());
  std::string back(data.size(), '\0');
  ASSERT_TRUE(f->ReadAt(4097, back.data(), back.size()).ok());
  EXPECT_TRUE(data == back);
}

TEST_F(EnvPosixTest, TruncateAllocatePunchHole) {
  std::unique_ptr<File> f;
  ASSERT_TRUE(dir_->OpenFile("f", OpenMode::kCreate, &f).ok());
  std::string data(64 * 1024, 'x');
  ASSERT_TRUE(f->WriteAt(0, data.data(), data.size()).ok());
  ASSERT_TRUE(f->Sync().ok());
  FileInfo before;
  ASSERT_TRUE(f->Stat(&before).ok());
  Status s = f->PunchHole(16 * 1024, 32 * 1024);
  if (s.err() == EOPNOTSUPP) GTEST_SKIP() << "file system cannot punch holes";
  ASSERT_TRUE(s.ok()) << s.ToString();
  FileInfo after;
  ASSERT_TRUE(f->Stat(&after).ok());
  EXPECT_EQ(before.size, after.size);  // KEEP_SIZE
  EXPECT_LT(after.blocks_512, before.blocks_512);
  std::string back(data.size(), '?');
  ASSERT_TRUE(f->ReadAt(0, back.data(), back.size()).ok());
  for (size_t i = 0; i < back.size(); ++i) {
    char want = (i >= 16 * 1024 && i < 48 * 1024) ? '\0' : 'x';
    ASSERT_EQ(want, back[i]) << i;
  }
  ASSERT_TRUE(f->Truncate(100).ok());
  ASSERT_TRUE(f->Stat(&after).ok());
  EXPECT_EQ(100u, after.size);
  ASSERT_TRUE(f->Allocate(0, 1 << 20).ok());
  ASSERT_TRUE(f->Stat(&after).ok());
  EXPECT_EQ(uint64_t{1} << 20, after.size);
  EXPECT_TRUE(f->Allocate(0, 0).ok());
}

TEST_F(EnvPosixTest, NeverWrittenRunEndsAtWrittenData) {
  std::unique_ptr<File> f;
  ASSERT_TRUE(dir_->OpenFile("f", OpenMode::kCreate, &f).ok());
  ASSERT_TRUE(f->Allocate(0, 4 << 20).ok());
  uint64_t end = 0;
  ASSERT_TRUE(f->NeverWrittenRun(0, &end).ok());
  if (end == 0) GTEST_SKIP() << "this file system does not report never-written space (SEEK_DATA)";
  EXPECT_EQ(uint64_t{4} << 20, end);  // reserved, never written: up to the end of the file
  std::string data(64 * 1024, 'x');
  ASSERT_TRUE(f->WriteAt(2 << 20, data.data(), data.size()).ok());
  ASSERT_TRUE(f->Sync().ok());
  ASSERT_TRUE(f->NeverWrittenRun(0, &end).ok());
  EXPECT_LE(end, uint64_t{2} << 20);  // ext4 may zero a little space around a write
  EXPECT_GT(end, 0u);
  ASSERT_TRUE(f->NeverWrittenRun(2 << 20, &end).ok());
  EXPECT_EQ(uint64_t{2} << 20, end);  // written data: no run
  ASSERT_TRUE(f->NeverWrittenRun(8 << 20, &end).ok());
  EXPECT_EQ(uint64_t{8} << 20, end);  // past the end of the file: no run
}

TEST_F(EnvPosixTest, RefusesSymlinkedFiles) {
  ASSERT_EQ(0, ::symlink("/etc/passwd", Path("evil").c_str()));
  std::unique_ptr<File> f;
  Status s = dir_->OpenFile("evil", OpenMode::kReadOnly, &f);
  EXPECT_EQ(ELOOP, s.err()) << s.ToString();
  EXPECT_NE(std::string::npos, s.message().find("symbolic link")) << s.message();
  EXPECT_NE(std::string::npos, s.message().find(Path("evil"))) << s.message();
  s = dir_->OpenFile("evil", OpenMode::kCreate, &f);
  EXPECT_EQ(ELOOP, s.err());
  // A dangling link must not be created through either.
  ASSERT_EQ(0, ::symlink(Path("target").c_str(), Path("dangling").c_str()));
  EXPECT_FALSE(dir_->OpenFile("dangling", OpenMode::kCreate, &f).ok());
  bool exists = false;
  ASSERT_TRUE(dir_->Exists("target", &exists).ok());
  EXPECT_FALSE(exists);
  ASSERT_TRUE(dir_->Exists("dangling", &exists).ok());
  EXPECT_TRUE(exists);  // a symlink counts as present
  std::unique_ptr<FileLock> lock;
  s = dir_->LockFile("dangling", "pid 1", &lock);
  EXPECT_EQ(ELOOP, s.err()) << s.ToString();
  ASSERT_TRUE(dir_->Exists("target", &exists).ok());
  EXPECT_FALSE(exists);
}

TEST_F(EnvPosixTest, RefusesNonRegularFiles) {
  ASSERT_EQ(0, ::mkdir(Path("sub").c_str(), 0700));
  ASSERT_EQ(0, ::mkfifo(Path("fifo").c_str(), 0600));
  std::unique_ptr<File> f;
  EXPECT_EQ(EISDIR, dir_->OpenFile("sub", OpenMode::kReadOnly, &f).err());
  EXPECT_FALSE(dir_->OpenFile("fifo", OpenMode::kReadOnly, &f).ok());  // and does not hang
}

TEST_F(EnvPosixTest, DirPathMayBeASymlinkButNotItsInsides) {
  ASSERT_EQ(0, ::mkdir(Path("real").c_str(), 0700));
  ASSERT_EQ(0, ::mkdir(Path("real/inner").c_str(), 0700));
  ASSERT_EQ(0, ::symlink(Path("real").c_str(), Path("link").c_str()));
  ASSERT_EQ(0, ::symlink(Path("real/inner").c_str(), Path("real/innerlink").c_str()));
  std::unique_ptr<Dir> d;
  Status s = env_->OpenDir(Path("link"), &d);
  ASSERT_TRUE(s.ok()) << s.ToString();  // the user's path is theirs
  EXPECT_EQ(Path("link"), d->path());
  std::unique_ptr<File> f;
  ASSERT_TRUE(d->OpenFile("ok", OpenMode::kCreate, &f).ok());
  // Inner names are never followed, even to a directory.
  EXPECT_EQ(ELOOP, d->OpenFile("innerlink", OpenMode::kReadOnly, &f).err());
  EXPECT_FALSE(d->OpenFile("inner/x", OpenMode::kCreate, &f).ok());
  // Not a directory / missing.
  EXPECT_EQ(ENOTDIR, env_->OpenDir(Path("link/ok"), &d).err());
  EXPECT_EQ(ENOENT, env_->OpenDir(Path("nope"), &d).err());
}

TEST_F(EnvPosixTest, RenameRemoveExistsStat) {
  std::unique_ptr<File> f;
  ASSERT_TRUE(dir_->OpenFile("a", OpenMode::kCreate, &f).ok());
  ASSERT_TRUE(f->WriteAt(0, "abc", 3).ok());
  bool exists = false;
  ASSERT_TRUE(dir_->Exists("a", &exists).ok());
  EXPECT_TRUE(exists);
  ASSERT_TRUE(dir_->Rename("a", "b").ok());
  ASSERT_TRUE(dir_->Exists("a", &exists).ok());
  EXPECT_FALSE(exists);
  FileInfo info;
  ASSERT_TRUE(dir_->Stat("b", &info).ok());
  EXPECT_EQ(3u, info.size);
  EXPECT_TRUE(dir_->Stat("a", &info).IsNotFound());
  Status s = dir_->Rename("a", "c");
  EXPECT_EQ(ENOENT, s.err());
  ASSERT_TRUE(dir_->Sync().ok());
  ASSERT_TRUE(dir_->Remove("b").ok());
  s = dir_->Remove("b");
  EXPECT_TRUE(s.IsNotFound()) << s.ToString();
  ASSERT_TRUE(dir_->Exists("b", &exists).ok());
  EXPECT_FALSE(exists);
}

TEST_F(EnvPosixTest, LockIsExclusiveAndNamesItsOwner) {
  std::unique_ptr<FileLock> first;
  ASSERT_TRUE(dir_->LockFile("lock", "pid 123", &first).ok());
  FileInfo info;
  ASSERT_TRUE(dir_->Stat("lock", &info).ok());
  EXPECT_EQ(0600u, info.mode & 07777);
  EXPECT_EQ("pid 123", dir_->LockOwnerNote("lock"));

  // A second open file description conflicts, even in the same process.
  std::unique_ptr<Dir> other;
  ASSERT_TRUE(env_->OpenDir(root_, &other).ok());
  std::unique_ptr<FileLock> second;
  Status s = other->LockFile("lock", "pid 456", &second);
  EXPECT_TRUE(s.IsBusy()) << s.ToString();
  EXPECT_NE(std::string::npos, s.message().find("is locked by pid 123")) << s.message();
  EXPECT_NE(std::string::npos, s.message().find(Path("lock"))) << s.message();
  EXPECT_EQ("pid 123", dir_->LockOwnerNote("lock"));  // the refused taker wrote nothing

  first.reset();
  s = other->LockFile("lock", "pid 7", &second);
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ("pid 7", dir_->LockOwnerNote("lock"));  // old longer note fully replaced
  EXPECT_EQ("", dir_->LockOwnerNote("no-such-lock"));
}

TEST_F(EnvPosixTest, ConcurrentWritersOnDisjointRanges) {
  std::unique_ptr<File> f;
  ASSERT_TRUE(dir_->OpenFile("f", OpenMode::kCreate, &f).ok());
  constexpr int kThreads = 4, kBlocks = 64, kBlock = 4096;
  std::vector<std::thread> ts;
  for (int t = 0; t < kThreads; ++t) {
    ts.emplace_back([&, t] {
      std::string block(kBlock, static_cast<char>('a' + t));
      for (int b = t; b < kBlocks; b += kThreads) {
        EXPECT_TRUE(f->WriteAt(static_cast<uint64_t>(b) * kBlock, block.data(), block.size()).ok());
      }
    });
  }
  for (auto& t : ts) t.join();
  std::string back(kBlock, '\0');
  for (int b = 0; b < kBlocks; ++b) {
    ASSERT_TRUE(f->ReadAt(static_cast<uint64_t>(b) * kBlock, back.data(), back.size()).ok());
    EXPECT_EQ(std::string(kBlock, static_cast<char>('a' + b % kThreads)), back) << b;
  }
}

// The log's O_DIRECT writes and its buffered reads see the same bytes: a page
// read (and cached) before a direct write never shadows what that write put
// there, and writes it cannot do directly (unaligned) still land.
TEST_F(EnvPosixTest, WriteAtDirectIsCoherentWithBufferedReads) {
  std::unique_ptr<File> f;
  ASSERT_TRUE(dir_->OpenFile("log", OpenMode::kCreate, &f).ok());
  ASSERT_TRUE(f->Truncate(1 << 20).ok());
  constexpr size_t kN = 3 * 4096;
  auto* buf = static_cast<uint8_t*>(std::aligned_alloc(4096, kN + 4096));
  ASSERT_NE(nullptr, buf);
  std::vector<uint8_t> got(kN);
  for (int round = 0; round < 3; round++) {
    ASSERT_TRUE(f->ReadAt(8192, got.data(), kN).ok());  // caches the old contents
    std::memset(buf, 'a' + round, kN);
    ASSERT_TRUE(f->WriteAtDirect(8192, buf, kN).ok());
    ASSERT_TRUE(f->ReadAt(8192, got.data(), kN).ok());
    EXPECT_EQ(std::vector<uint8_t>(kN, static_cast<uint8_t>('a' + round)), got) << "round " << round;
  }
  // Unaligned buffer, offset or length: a plain write.
  std::memset(buf, 'x', kN + 4096);
  ASSERT_TRUE(f->WriteAtDirect(100, buf + 1, 5000).ok());
  ASSERT_TRUE(f->ReadAt(100, got.data(), 5000).ok());
  EXPECT_EQ(std::vector<uint8_t>(5000, 'x'), std::vector<uint8_t>(got.begin(), got.begin() + 5000));
  ASSERT_TRUE(f->Sync().ok());
  std::free(buf);
}

// Several records in one call (WriteAtDirectV: all in flight at once) land
// end to end, each where it belongs; a piece it cannot write directly (an
// unaligned one) makes the call write them one at a time, and they land too.
TEST_F(EnvPosixTest, WriteAtDirectVPutsEveryPieceInItsPlace) {
  std::unique_ptr<File> f;
  ASSERT_TRUE(dir_->OpenFile("log", OpenMode::kCreate, &f).ok());
  ASSERT_TRUE(f->Truncate(8 << 20).ok());
  constexpr size_t kPieces = 5, kStride = 4 * 4096;  // room for the largest piece, shifted by a byte
  auto* mem = static_cast<uint8_t*>(std::aligned_alloc(4096, kPieces * kStride));
  ASSERT_NE(nullptr, mem);
  for (int round = 0; round < 2; round++) {
    std::vector<File::Piece> pieces;
    std::vector<uint8_t> want;
    for (size_t i = 0; i < kPieces; i++) {
      const size_t n = 4096 * (1 + i % 3);
      uint8_t* p = mem + i * kStride + (round == 1 && i == 2 ? 1 : 0);  // round 1: one unaligned piece
      std::memset(p, static_cast<int>('A' + i + 10 * round), n);
      pieces.push_back(File::Piece{p, n});
      want.insert(want.end(), p, p + n);
    }
    const uint64_t at = 4096 * (3 + round * 100);
    ASSERT_TRUE(f->WriteAtDirectV(at, pieces.data(), pieces.size()).ok()) << "round " << round;
    std::vector<uint8_t> got(want.size());
    ASSERT_TRUE(f->ReadAt(at, got.data(), got.size()).ok());
    EXPECT_EQ(want, got) << "round " << round;
  }
  ASSERT_TRUE(f->Sync().ok());
  std::free(mem);
}

}  // namespace
}  // namespace boostvol
