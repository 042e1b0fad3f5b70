// spdlog setup for the command and the daemon.
#pragma once

#include <string>

#include "boostvol/status.h"

namespace boostvol::cli {

// Logs to stderr at `level` (trace, debug, info, warn, error, critical, off).
Status LogToStderr(const std::string& level);

// Logs to FAST/boostvol.log (appended; created 0600; a symlink or anything
// but a regular file there is refused) at `level`.
Status LogToFastDir(const std::string& fast_dir, const std::string& level);

// InvalidArgument unless `level` is a spdlog level name.
Status CheckLogLevel(const std::string& level);

}  // namespace boostvol::cli
