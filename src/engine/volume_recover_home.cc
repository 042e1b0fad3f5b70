// RecoverHome: `boostvol recover-home SLOW`, the home alone after its cache
// was lost (include/boostvol/volume.h). The work is the home's own open, which
// replays a pending journal (src/home/home_factory.h).
#include <sys/stat.h>

#include "boostvol/volume.h"
#include "home/home_factory.h"
#include "util/env.h"

namespace boostvol {

Status RecoverHome(const RecoverHomeOptions& o, RecoverHomeReport* report) {
  *report = RecoverHomeReport();
  Env* env = o.env != nullptr ? o.env : Env::Posix();
  if (o.slow.empty()) return Status::InvalidArgument("SLOW not given");
  const bool is_dir = o.slow.rfind("rbd:", 0) != 0 && o.slow.rfind("dir:", 0) != 0;
  if (is_dir) {
    struct stat st;
    if (::stat(o.slow.c_str(), &st) != 0) return Status::InvalidArgument("SLOW directory " + o.slow + " does not exist");
    if (!S_ISDIR(st.st_mode)) return Status::InvalidArgument("SLOW " + o.slow + " is not a directory");
  }
  if (is_dir && (!o.ceph_conf.empty() || !o.ceph_id.empty()))
    return Status::InvalidArgument("--ceph-conf and --ceph-id apply to an RBD home (SLOW given as rbd:POOL/IMAGE)");
  const std::string uri = home::HomeUriFromArgument(o.slow);
  home::HomeOptions ho;
  ho.ceph_conf = o.ceph_conf;
  ho.ceph_id = o.ceph_id;
  home::RecoverReport r;
  BV_RETURN_IF_ERROR(home::RecoverHome(env, uri, ho, &r));
  report->journal_replayed = r.journal_replayed;
  report->summary = r.summary;
  return Status::OK();
}

}  // namespace boostvol
