#!/usr/bin/env bash
# A cached volume for a VM or container image directory on a laptop: the images live on a big, slow disk (a USB
# drive, an HDD, a network share), the hot blocks and every new write on the laptop's NVMe. The directory of images
# is an ordinary ext4 filesystem, so libvirt, GNOME Boxes, podman (--root) or docker (data-root) just use it.
#
#   sudo examples/vm-images-laptop.sh up   FAST SLOW IMAGES_DIR [SIZE [OWNER]]   # create (if new), mount, use
#   sudo examples/vm-images-laptop.sh use  FAST IMAGES_DIR                      # a VM disk, synced; status
#   sudo examples/vm-images-laptop.sh down FAST IMAGES_DIR                      # drain, tear down
#   sudo examples/vm-images-laptop.sh demo                                      # up, a VM disk, down, in a temp dir
#
# Laptop tunables: write home only when the machine is idle for 30 s or the cache is 80% dirty, so the slow disk
# sleeps while you work and can be unplugged after `down` (which drains). e.g.:
#   sudo examples/vm-images-laptop.sh up ~/.cache/boostvol/vms /media/usb/vms /var/lib/libvirt/images 200G
# BOOSTVOL (env) is the boostvol binary; default: boostvol on PATH, else ./build/boostvol.
set -euo pipefail

BOOSTVOL=${BOOSTVOL:-$(command -v boostvol || echo ./build/boostvol)}

up() { # FAST SLOW IMAGES_DIR [SIZE [OWNER]]
  local fast=$1 slow=$2 dir=$3 size=${4:-64G} owner=${5:-${SUDO_USER:-root}} dev
  mkdir -p "$fast" "$slow" "$dir" "$fast.mnt"
  [[ -e $fast/meta.db ]] || "$BOOSTVOL" create "$fast" "$slow" --size "$size" --cache-size 1G
  "$BOOSTVOL" set "$fast" idle_migrate_ms=30000 migrate_start_fraction=0.8 >/dev/null
  # --loop attaches the image and prints the device (direct I/O: VM images are not cached twice in RAM).
  dev=$(timeout 60 "$BOOSTVOL" mount "$fast" "$fast.mnt" --loop)
  blkid -p "$dev" >/dev/null 2>&1 || mkfs.ext4 -q -L vm-images -E lazy_itable_init=0 "$dev"
  timeout 60 mount -o noatime "$dev" "$dir"
  chown "$owner" "$dir"
  echo "VM images at $dir (ext4 on $dev; cache $fast, home $slow/image)"
}

use() { # FAST IMAGES_DIR: what a VM manager does: a sparse raw disk, written and synced
  local fast=$1 dir=$2
  truncate -s 2G "$dir/demo-vm.raw"
  dd if=/dev/urandom of="$dir/demo-vm.raw" bs=1M count=16 seek=100 conv=notrunc,fsync status=none
  (cd "$dir" && sha256sum demo-vm.raw >demo-vm.sha256)
  "$BOOSTVOL" status "$fast" | grep -E '^(cache|dirty|rates) '
}

down() { # FAST IMAGES_DIR
  local fast=$1 dir=$2
  timeout 300 umount "$dir"
  timeout 3600 "$BOOSTVOL" drain "$fast"          # the slow disk is now complete: safe to unplug after this
  timeout 300 "$BOOSTVOL" unmount "$fast.mnt"     # detaches the loop device, waits for the clean stop
  echo "down: $dir unmounted, everything home"
}

case ${1:-} in
  up) shift; up "$@" ;;
  use) shift; use "$@" ;;
  down) shift; down "$@" ;;
  demo)
    d=$(mktemp -d "${TMPDIR:-/tmp}/vm-images.XXXXXX")
    trap 'rm -rf --one-file-system "$d"' EXIT
    up "$d/fast" "$d/slow" "$d/images" 4G
    use "$d/fast" "$d/images"
    (cd "$d/images" && sha256sum -c demo-vm.sha256)
    down "$d/fast" "$d/images"
    ;;
  *) sed -n '2,16p' "$0"; exit 1 ;;
esac
