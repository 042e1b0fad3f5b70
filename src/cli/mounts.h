// Finding volumes and mounts: /proc/self/mountinfo, the FAST lock, loop
// devices backed by MOUNTPOINT/image.
#pragma once

#include <string>
#include <vector>

#include "boostvol/status.h"

namespace boostvol::cli {

struct MountEntry {
  std::string mount_point;  // unescaped
  std::string fstype;       // "fuse.boostvol"
  std::string source;       // "boostvol:/path/to/FAST"
  std::string dev;          // "major:minor" of the mounted device
};

std::vector<MountEntry> ReadMountInfo();

// The boostvol FUSE mount at `mountpoint` (an absolute, resolved path).
bool FindBoostvolMount(const std::string& mountpoint, MountEntry* out);
// The mountpoint of the boostvol mount serving `fast_dir`, if any.
bool FindMountOfFast(const std::string& fast_dir, std::string* mountpoint);

// Resolves a FAST|MOUNTPOINT argument: a boostvol mountpoint gives its FAST
// (from the mount source "boostvol:FAST"); a directory holding meta.db is
// FAST itself. *mountpoint is set when the argument was a mountpoint.
Status ResolveVolumeArg(const std::string& arg, std::string* fast_dir, std::string* mountpoint);

// The names in directory `path` but "." and ".."; empty if it cannot be read.
std::vector<std::string> ListDir(const std::string& path);

// realpath(3) as a Status.
Status RealPath(const std::string& path, std::string* out);

// True if some process holds FAST/lock (the daemon, or a one-shot command);
// *note gets what the holder wrote there ("pid N").
bool VolumeLockHeld(const std::string& fast_dir, std::string* note);

struct LoopDevice {
  std::string name;        // "loop3"
  std::string dev;         // "7:3"
  std::vector<std::string> partition_devs;  // "259:0", ...
  std::vector<std::string> holders;         // dm-0, ...
};
// Loop devices whose backing file is `image_path`.
std::vector<LoopDevice> FindLoopDevicesBackedBy(const std::string& image_path);

}  // namespace boostvol::cli
