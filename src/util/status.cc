#include "boostvol/status.h"

#include <cstring>

namespace boostvol {

std::string Status::ToString() const {
  const char* name = "OK";
  switch (code_) {
    case Code::kOk: return "OK";
    case Code::kIoError: name = "I/O error"; break;
    case Code::kCorruption: name = "corruption"; break;
    case Code::kInvalidArgument: name = "invalid argument"; break;
    case Code::kNotFound: name = "not found"; break;
    case Code::kBusy: name = "busy"; break;
    case Code::kNoSpace: name = "no space"; break;
    case Code::kUnsupported: name = "unsupported"; break;
    case Code::kAborted: name = "aborted"; break;
    case Code::kWouldBlock: name = "would block"; break;
  }
  // An OS error is named by its errno text first ("No space left on device:
  // writing ..."): status and logs then say the cause, not just "I/O error".
  if (code_ == Code::kIoError && err_ != 0) return std::string(std::strerror(err_)) + ": " + msg_;
  return std::string(name) + ": " + msg_;
}

}  // namespace boostvol
