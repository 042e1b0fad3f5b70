#include "home/home_factory.h"

#include <cstdlib>

namespace boostvol::home {

namespace {

bool IsDirUri(const std::string& uri) { return uri.rfind("dir:/", 0) == 0; }

}  // namespace

std::string HomeUriFromArgument(const std::string& slow) {
  if (slow.rfind("rbd:", 0) == 0 || slow.rfind("dir:", 0) == 0) return slow;
  char* r = ::realpath(slow.c_str(), nullptr);
  std::string abs = r ? std::string(r) : slow;
  std::free(r);
  return "dir:" + abs;
}

Status ValidateHomeUri(const std::string& uri) {
  if (IsDirUri(uri)) return Status::OK();
  return Status::InvalidArgument("unknown kind of home '" + uri + "' (expected dir:/absolute/path)");
}

Status CreateHome(Env* env, const std::string& uri, const log::Uuid& uuid, uint64_t image_size,
                  const HomeOptions& options) {
  BV_RETURN_IF_ERROR(ValidateHomeUri(uri));
  return CreateDirectoryHome(env, uri.substr(4), uuid, image_size);
}

Status OpenHome(Env* env, const std::string& uri, const log::Uuid& uuid, uint64_t image_size,
                const HomeOptions& options, std::unique_ptr<Home>* out, HomeOpenReport* report) {
  BV_RETURN_IF_ERROR(ValidateHomeUri(uri));
  return OpenDirectoryHome(env, uri.substr(4), uuid, image_size, options.use_journal, out, report);
}

}  // namespace boostvol::home
