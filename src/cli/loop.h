// Attaching MOUNTPOINT/image to a loop device (`boostvol mount --loop`), and
// telling systemd the mount is ready (Type=notify units).
#pragma once

#include <string>

#include "boostvol/status.h"

namespace boostvol::cli {

// Runs `losetup -f --show [--direct-io=on] IMAGE` and returns the device
// ("/dev/loop3") in *dev. *direct_io_in_effect says what the kernel applied
// (/sys/block/loopN/loop/dio): it falls back to buffered I/O if the backing
// file refuses O_DIRECT. Needs root (CAP_SYS_ADMIN); without it, use
// `udisksctl loop-setup -f IMAGE`.
Status AttachLoop(const std::string& image, bool direct_io, std::string* dev, bool* direct_io_in_effect);

// sd_notify(3) without libsystemd: sends `state` ("READY=1\nSTATUS=...") to
// $NOTIFY_SOCKET if it is set. Returns false if there is no socket or the
// send failed (both are fine outside systemd).
bool NotifySystemd(const std::string& state);

}  // namespace boostvol::cli
