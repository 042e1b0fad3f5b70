#include "cli/logging.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <mutex>
#include <spdlog/sinks/base_sink.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

namespace boostvol::cli {
namespace {

constexpr const char* kPattern = "[%Y-%m-%d %H:%M:%S.%e] [%l] [%t] %v";

// A sink over a file descriptor we opened ourselves (O_NOFOLLOW, 0600),
// which spdlog's file sinks cannot take.
class FdSink : public spdlog::sinks::base_sink<std::mutex> {
 public:
  explicit FdSink(int fd) : fd_(fd) {}
  ~FdSink() override { ::close(fd_); }

 protected:
  void sink_it_(const spdlog::details::log_msg& msg) override {
    spdlog::memory_buf_t out;
    formatter_->format(msg, out);
    const char* p = out.data();
    size_t left = out.size();
    while (left > 0) {
      ssize_t n = ::write(fd_, p, left);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return;  // nowhere to report a failing log
      p += n;
      left -= static_cast<size_t>(n);
    }
  }
  void flush_() override {}

 private:
  int fd_;
};

void Install(std::shared_ptr<spdlog::logger> logger, const std::string& level) {
  logger->set_pattern(kPattern);
  logger->set_level(spdlog::level::from_str(level));
  logger->flush_on(spdlog::level::warn);
  spdlog::set_default_logger(std::move(logger));
}

}  // namespace

Status CheckLogLevel(const std::string& level) {
  if (level == "off" || spdlog::level::from_str(level) != spdlog::level::off) return Status::OK();
  return Status::InvalidArgument("unknown log level '" + level +
                                 "' (use trace, debug, info, warn, error, critical or off)");
}

Status LogToStderr(const std::string& level) {
  BV_RETURN_IF_ERROR(CheckLogLevel(level));
  Install(spdlog::stderr_color_mt("boostvol"), level);
  return Status::OK();
}

Status LogToFastDir(const std::string& fast_dir, const std::string& level) {
  BV_RETURN_IF_ERROR(CheckLogLevel(level));
  int dfd = ::open(fast_dir.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0) return Status::IoError(errno, "cannot open " + fast_dir);
  int fd = ::openat(dfd, "boostvol.log", O_WRONLY | O_CREAT | O_APPEND | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, 0600);
  int err = errno;
  ::close(dfd);
  if (fd < 0) return Status::IoError(err, "cannot open the log file " + fast_dir + "/boostvol.log");
  struct stat st;
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    return Status::InvalidArgument(fast_dir + "/boostvol.log is not a regular file; move it away");
  }
  ::fcntl(fd, F_SETFL, O_APPEND);
  auto logger = std::make_shared<spdlog::logger>("boostvol", std::make_shared<FdSink>(fd));
  Install(std::move(logger), level);
  return Status::OK();
}

}  // namespace boostvol::cli
