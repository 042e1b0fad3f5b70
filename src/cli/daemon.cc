#include "cli/daemon.h"

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "cli/cli.h"
#include "cli/progress.h"

namespace boostvol::cli {
namespace {

void RedirectToDevNull(int target) {
  int fd = ::open("/dev/null", O_RDWR | O_CLOEXEC);
  if (fd < 0) return;
  ::dup2(fd, target);
  ::close(fd);
}

}  // namespace

StartupReporter::~StartupReporter() {
  if (fd_ >= 0) ::close(fd_);
}

bool StartupReporter::Daemonize(int* parent_exit_code) {
  int p[2];
  if (::pipe2(p, O_CLOEXEC) != 0) {
    *parent_exit_code = Fail(kExitIo, std::string("cannot create a pipe: ") + std::strerror(errno));
    return true;
  }
  std::fflush(nullptr);
  pid_t pid = ::fork();
  if (pid < 0) {
    *parent_exit_code = Fail(kExitIo, std::string("cannot fork: ") + std::strerror(errno));
    return true;
  }
  if (pid == 0) {
    ::close(p[0]);
    fd_ = p[1];
    ::setsid();
    if (::chdir("/") != 0) {
      // Paths were made absolute before the fork; "/" always exists.
    }
    RedirectToDevNull(STDIN_FILENO);
    RedirectToDevNull(STDOUT_FILENO);
    return false;
  }
  ::close(p[1]);
  FILE* in = ::fdopen(p[0], "r");
  char* line = nullptr;
  size_t cap = 0;
  int code = -1;
  ProgressPrinter bar(stderr);
  while (in != nullptr && ::getline(&line, &cap, in) > 0) {
    std::string l(line);
    if (!l.empty() && l.back() == '\n') l.pop_back();
    if (l.rfind("G ", 0) == 0) {  // "G DONE TOTAL WHAT<tab>UNIT"
      boostvol::Progress prog;
      unsigned long long done = 0, total = 0;
      int used = 0;
      if (std::sscanf(l.c_str() + 2, "%llu %llu %n", &done, &total, &used) >= 2) {
        std::string rest = l.substr(2 + static_cast<size_t>(used));
        size_t tab = rest.find('\t');
        prog.what = rest.substr(0, tab);
        if (tab != std::string::npos) prog.unit = rest.substr(tab + 1);
        prog.done = done;
        prog.total = total;
        bar.Update(prog);
      }
      continue;
    }
    bar.Finish();
    if (l == "R") {
      code = kExitOk;
      break;
    } else if (l.rfind("E ", 0) == 0) {
      char* end = nullptr;
      code = static_cast<int>(std::strtol(l.c_str() + 2, &end, 10));
      while (*end == ' ') ++end;
      Fail(code, end);
      break;
    }
  }
  bar.Finish();
  std::free(line);
  if (in != nullptr) std::fclose(in);
  if (code < 0) {
    int st = 0;
    std::string how = "without a word";
    if (::waitpid(pid, &st, 0) == pid) {
      if (WIFSIGNALED(st)) how = std::string("killed by signal ") + strsignal(WTERMSIG(st));
      else if (WIFEXITED(st)) how = "with exit code " + std::to_string(WEXITSTATUS(st));
    }
    code = Fail(kExitIo, "the daemon exited during startup " + how + "; see FAST/boostvol.log");
  }
  *parent_exit_code = code;
  return true;
}

void StartupReporter::Send(const std::string& line) {
  std::string l = line;
  for (char& c : l) {
    if (c == '\n') c = ' ';
  }
  l += '\n';
  const char* p = l.data();
  size_t left = l.size();
  while (left > 0) {
    ssize_t n = ::write(fd_, p, left);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;  // the parent is gone; carry on
    p += n;
    left -= static_cast<size_t>(n);
  }
}

void StartupReporter::Progress(const boostvol::Progress& p) {
  if (fd_ >= 0) Send("G " + std::to_string(p.done) + " " + std::to_string(p.total) + " " + p.what + "\t" + p.unit);
}

void StartupReporter::Ready() {
  if (reported_) return;
  reported_ = true;
  if (fd_ >= 0) {
    Send("R");
    ::close(fd_);
    fd_ = -1;
    RedirectToDevNull(STDERR_FILENO);
  }
}

void StartupReporter::Failed(int exit_code, const std::string& message) {
  if (reported_) return;
  reported_ = true;
  if (fd_ >= 0) {
    Send("E " + std::to_string(exit_code) + " " + message);
    ::close(fd_);
    fd_ = -1;
  } else {
    Fail(exit_code, message);
  }
}

}  // namespace boostvol::cli
