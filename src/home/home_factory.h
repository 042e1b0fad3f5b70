// Which home a volume has, named by a URI stored in meta.db (volume.home):
//   dir:/absolute/path   a directory home (DirectoryHome: SLOW/image + stamp + journal)
// (Further kinds, such as rbd:POOL/IMAGE, plug in here and nowhere else.)
//
// The engine never names a home's kind: it calls these two functions.
#pragma once

#include <memory>
#include <string>

#include "boostvol/status.h"
#include "home/home.h"

namespace boostvol::home {

struct HomeOptions {
  bool use_journal = true;   // DESIGN.md 2.7
  std::string ceph_conf;     // for homes in a cluster
  std::string ceph_id;
};

// Turns what the user typed as SLOW into a home URI: "rbd:..." stays as it
// is; anything else is a directory, made absolute ("dir:/abs/path").
std::string HomeUriFromArgument(const std::string& slow_argument);

// Refuses (InvalidArgument) a URI of unknown kind, with a message.
Status ValidateHomeUri(const std::string& uri);

Status CreateHome(Env* env, const std::string& uri, const log::Uuid& uuid, uint64_t image_size,
                  const HomeOptions& options);

Status OpenHome(Env* env, const std::string& uri, const log::Uuid& uuid, uint64_t image_size,
                const HomeOptions& options, std::unique_ptr<Home>* out, HomeOpenReport* report);

}  // namespace boostvol::home
