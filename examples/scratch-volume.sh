#!/usr/bin/env bash
# A quick cached scratch volume for a CI job: an ext4 filesystem whose writes land on a fast dir (say local NVMe)
# and are copied home to a slow dir (say a network mount) in the background.
#
#   sudo examples/scratch-volume.sh up   FAST SLOW MOUNTPOINT [SIZE]   # create (if new), mount, loop, mkfs, mount
#   sudo examples/scratch-volume.sh use  MOUNTPOINT                    # a sample job: write, sync, read back
#   sudo examples/scratch-volume.sh down FAST MOUNTPOINT               # drain, unmount everything
#   sudo examples/scratch-volume.sh demo                               # all three in a temp dir
#
# BOOSTVOL (env) is the boostvol binary; default: boostvol on PATH, else ./build/boostvol.
set -euo pipefail

BOOSTVOL=${BOOSTVOL:-$(command -v boostvol || echo ./build/boostvol)}

up() { # FAST SLOW MOUNTPOINT [SIZE]
  local fast=$1 slow=$2 mp=$3 size=${4:-2G} loop
  mkdir -p "$fast" "$slow" "$fast.mnt" "$mp"
  # 1. the volume (once): a sparse image of SIZE, a log on FAST
  [[ -e $fast/meta.db ]] || "$BOOSTVOL" create "$fast" "$slow" --size "$size" --cache-size 256M
  # 2. the FUSE mount holding the one file 'image'
  timeout 60 "$BOOSTVOL" mount "$fast" "$fast.mnt"
  # 3. a loop device over the image, a filesystem on it
  loop=$(losetup -f --show "$fast.mnt/image")
  blkid -p "$loop" >/dev/null 2>&1 || mkfs.ext4 -q -L scratch "$loop"
  timeout 60 mount "$loop" "$mp"
  echo "scratch volume up: $mp (ext4 on $loop, image $fast.mnt/image)"
}

use() { # MOUNTPOINT
  local mp=$1
  mkdir -p "$mp/job"
  head -c 32M /dev/urandom >"$mp/job/artifact.bin"
  (cd "$mp/job" && sha256sum artifact.bin >artifact.sha256)
  sync -f "$mp"
  (cd "$mp/job" && sha256sum -c artifact.sha256)
}

down() { # FAST MOUNTPOINT
  local fast=$1 mp=$2 loop
  loop=$(findmnt -n -o SOURCE --mountpoint "$mp" || true)
  timeout 300 umount "$mp"
  [[ -n $loop ]] && losetup -d "$loop"
  timeout 600 "$BOOSTVOL" drain "$fast"        # optional: make the home copy complete now
  timeout 300 "$BOOSTVOL" unmount "$fast.mnt"
  echo "scratch volume down; the home copy is a plain ext4 image"
}

case ${1:-} in
  up) shift; up "$@" ;;
  use) shift; use "$@" ;;
  down) shift; down "$@" ;;
  demo)
    dir=$(mktemp -d "${TMPDIR:-/tmp}/scratch-volume.XXXXXX")
    trap 'rm -rf --one-file-system "$dir"' EXIT
    up "$dir/fast" "$dir/slow" "$dir/scratch" 1G
    use "$dir/scratch"
    down "$dir/fast" "$dir/scratch"
    ;;
  *) sed -n '2,12p' "$0"; exit 1 ;;
esac
