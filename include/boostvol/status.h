// boostvol::Status: the result of every engine operation that can fail.
//
// No exceptions cross the engine. A Status is either ok() or carries a code,
// the errno the FUSE layer should return for it, and a message for people.
// The mapping from failure to errno is made once, where the Status is built.
//
// Thread-compatible: a Status is a value.
#pragma once

#include <string>
#include <utility>

namespace boostvol {

class [[nodiscard]] Status {
 public:
  enum class Code {
    kOk = 0,
    kIoError,          // an OS call failed; errno() says which
    kCorruption,       // stored data failed a check (checksum, bounds, magic)
    kInvalidArgument,  // a caller's input is wrong
    kNotFound,         // a file or record does not exist
    kBusy,             // held by someone else (lock, mount)
    kNoSpace,          // out of space (log full is NOT this: writers wait)
    kUnsupported,      // the operation is not supported here
    kAborted,          // stopped on request (shutdown)
    kWouldBlock,       // not done: it would have waited for I/O (blocking_hint.h, NoWaitScope)
  };

  Status() = default;
  static Status OK() { return Status(); }
  // err is the errno observed; the message says what was being done.
  static Status IoError(int err, std::string msg) { return Status(Code::kIoError, err, std::move(msg)); }
  static Status Corruption(std::string msg) { return Status(Code::kCorruption, 5 /*EIO*/, std::move(msg)); }
  static Status InvalidArgument(std::string msg) { return Status(Code::kInvalidArgument, 22 /*EINVAL*/, std::move(msg)); }
  static Status NotFound(std::string msg) { return Status(Code::kNotFound, 2 /*ENOENT*/, std::move(msg)); }
  static Status Busy(std::string msg) { return Status(Code::kBusy, 16 /*EBUSY*/, std::move(msg)); }
  static Status NoSpace(std::string msg) { return Status(Code::kNoSpace, 28 /*ENOSPC*/, std::move(msg)); }
  static Status Unsupported(std::string msg) { return Status(Code::kUnsupported, 95 /*EOPNOTSUPP*/, std::move(msg)); }
  static Status Aborted(std::string msg) { return Status(Code::kAborted, 5 /*EIO*/, std::move(msg)); }
  // Never an error to report: the caller does the same again where it may block.
  static Status WouldBlock() { return Status(Code::kWouldBlock, 11 /*EAGAIN*/, std::string()); }

  bool ok() const { return code_ == Code::kOk; }
  Code code() const { return code_; }
  // The errno to hand to a caller that speaks errno (FUSE); 0 when ok().
  int err() const { return err_; }
  const std::string& message() const { return msg_; }
  std::string ToString() const;

  bool IsCorruption() const { return code_ == Code::kCorruption; }
  bool IsNotFound() const { return code_ == Code::kNotFound; }
  bool IsBusy() const { return code_ == Code::kBusy; }
  bool IsWouldBlock() const { return code_ == Code::kWouldBlock; }

 private:
  Status(Code c, int err, std::string msg) : code_(c), err_(err), msg_(std::move(msg)) {}
  Code code_ = Code::kOk;
  int err_ = 0;
  std::string msg_;
};

// Returns from the enclosing function if s is not ok.
#define BV_RETURN_IF_ERROR(expr)            \
  do {                                      \
    ::boostvol::Status _bv_s = (expr);      \
    if (!_bv_s.ok()) return _bv_s;          \
  } while (0)

}  // namespace boostvol
