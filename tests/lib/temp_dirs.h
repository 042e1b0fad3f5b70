// TempDirs: a scratch FAST and SLOW pair under $TMPDIR, removed at the end.
#pragma once

#include <cstdlib>
#include <filesystem>
#include <string>

namespace boostvol::test {

class TempDirs {
 public:
  TempDirs() {
    std::string tmpl = (std::getenv("TMPDIR") ? std::string(std::getenv("TMPDIR")) : std::string("/tmp")) + "/bvtest.XXXXXX";
    root_ = ::mkdtemp(tmpl.data()) ? tmpl : std::string();
    fast_ = root_ + "/fast";
    slow_ = root_ + "/slow";
    std::filesystem::create_directory(fast_);
    std::filesystem::create_directory(slow_);
  }
  ~TempDirs() {
    std::error_code ec;
    if (!root_.empty()) std::filesystem::remove_all(root_, ec);
  }
  const std::string& root() const { return root_; }
  const std::string& fast() const { return fast_; }
  const std::string& slow() const { return slow_; }

 private:
  std::string root_, fast_, slow_;
};

}  // namespace boostvol::test
