// Unit tests log at warning level unless BOOSTVOL_TEST_LOG=debug|info is set.
#include <cstdlib>
#include <spdlog/spdlog.h>

namespace {
struct QuietLogs {
  QuietLogs() {
    const char* lvl = std::getenv("BOOSTVOL_TEST_LOG");
    spdlog::set_level(lvl ? spdlog::level::from_str(lvl) : spdlog::level::warn);
  }
} quiet_logs;
}  // namespace
