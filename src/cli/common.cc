#include <cstdio>

#include "cli/cli.h"

namespace boostvol::cli {

int ExitCodeFor(const Status& s) {
  switch (s.code()) {
    case Status::Code::kOk: return kExitOk;
    case Status::Code::kInvalidArgument:
    case Status::Code::kNotFound:
    case Status::Code::kUnsupported: return kExitUsage;
    case Status::Code::kBusy: return kExitRefused;
    case Status::Code::kIoError:
    case Status::Code::kCorruption:
    case Status::Code::kNoSpace:
    case Status::Code::kAborted:
    case Status::Code::kWouldBlock: return kExitIo;
  }
  return kExitIo;
}

int OpenExitCode(const Status& s) {
  return s.code() == Status::Code::kInvalidArgument ? kExitRefused : ExitCodeFor(s);
}

int Fail(int code, const std::string& message) {
  std::fprintf(stderr, "boostvol: %s\n", message.c_str());
  return code;
}

int Fail(const Status& s, const std::string& context) {
  std::string msg = s.code() == Status::Code::kIoError ? s.ToString() : s.message();
  if (s.IsCorruption()) msg = "corruption: " + msg;
  return Fail(ExitCodeFor(s), context.empty() ? msg : context + ": " + msg);
}

}  // namespace boostvol::cli
