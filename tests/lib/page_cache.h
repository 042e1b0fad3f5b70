// EvictPageCache: drops a file's pages from the page cache, so that its next
// buffered read must go to the disk (and a read inside a NoWaitScope,
// src/util/blocking_hint.h, returns WouldBlock). For gtest tests.
#pragma once

#include <fcntl.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <string>

namespace boostvol::test {

inline void EvictPageCache(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  ASSERT_GE(fd, 0) << path;
  EXPECT_EQ(::fdatasync(fd), 0) << path;  // dirty pages cannot be dropped
  EXPECT_EQ(::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED), 0) << path;
  ::close(fd);
}

}  // namespace boostvol::test
