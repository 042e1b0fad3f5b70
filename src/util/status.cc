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
  }
  std::string out = std::string(name) + ": " + msg_;
  if (code_ == Code::kIoError && err_ != 0) {
    out += " (";
    out += std::strerror(err_);
    out += ")";
  }
  return out;
}

}  // namespace boostvol
