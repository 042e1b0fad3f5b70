// The client end of FAST/control.sock: what `boostvol status|drain|unmount`
// use to talk to a running daemon.
//
// Every call connects, sends one command line and reads the reply lines until
// the daemon closes. When nothing listens (no socket, or a stale one left by a
// crashed daemon) the Status is NotFound with the message
// "no daemon is serving FAST; is it mounted?".
//
// Thread-safety: pure functions (each call has its own connection).
#pragma once

#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "boostvol/status.h"
#include "boostvol/volume.h"
#include "control/status_json.h"

namespace boostvol::control {

// Sends `command` and hands each reply line (without '\n') to on_line.
// timeout_ms bounds the wait for each line (0 = no bound).
Status ControlRequest(const std::string& fast_dir, const std::string& command, int timeout_ms,
                      const std::function<void(const std::string&)>& on_line);

// status: the live VolumeStatus. Also sets *json to the raw line if json !=
// nullptr, and *rates to the daemon's rates if rates != nullptr.
Status QueryStatus(const std::string& fast_dir, VolumeStatus* st, std::string* json = nullptr,
                   StatusRates* rates = nullptr);

// set KEY VALUE: OK once the daemon applied and saved it; InvalidArgument
// with the daemon's message if it refused.
Status RequestSetTunable(const std::string& fast_dir, const std::string& key, const std::string& value);

// get: the daemon's current tunables, in its order.
Status RequestGetTunables(const std::string& fast_dir, std::vector<std::pair<std::string, std::string>>* out);

// drain: calls progress for each `progress` line; OK on `ok`, the daemon's
// message on `error` (IoError, errno 0).
Status RequestDrain(const std::string& fast_dir, const ProgressFn& progress);

// stop: OK once the daemon acknowledged (it unmounts and exits afterwards).
Status RequestStop(const std::string& fast_dir);

}  // namespace boostvol::control
