#!/usr/bin/env bash
# A boostvol demo volume you can use as a disk, under /var/tmp/boostvol-demo:
#   sudo scripts/demo.sh          install deps, build, create an 8 GiB volume (1 GiB cache), mount it, attach a
#                                 loop device, mkfs.ext4, mount it at /var/tmp/boostvol-demo/fs
#   sudo scripts/demo.sh --down   unmount everything, stop the daemon and delete /var/tmp/boostvol-demo
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=${BOOSTVOL_DEMO_DIR:-/var/tmp/boostvol-demo}
FAST=$ROOT/fast SLOW=$ROOT/slow MNT=$ROOT/mnt FS=$ROOT/fs
BIN=$PWD/build/boostvol

[[ $EUID -eq 0 ]] || { echo "demo.sh needs root (loop devices and mount): sudo $0 $*" >&2; exit 1; }

down() {
  local dev
  if mountpoint -q "$FS" 2>/dev/null; then timeout 300 umount "$FS" && echo "unmounted $FS"; fi
  if [[ -e $MNT/image ]]; then
    for dev in $(losetup -n -O NAME -j "$MNT/image" 2>/dev/null); do timeout 60 losetup -d "$dev" && echo "detached $dev"; done
  fi
  if mountpoint -q "$MNT" 2>/dev/null; then
    timeout 300 "$BIN" unmount "$MNT" || timeout 60 fusermount3 -u "$MNT" || umount -l "$MNT"
  fi
  rm -rf --one-file-system "$ROOT"
  echo "removed $ROOT"
}

if [[ ${1:-} == --down ]]; then
  down
  exit 0
fi
[[ $# -eq 0 ]] || { echo "usage: $0 [--down]" >&2; exit 1; }

if mountpoint -q "$FS" 2>/dev/null; then
  echo "The demo is already up: $FS ($(findmnt -n -o SOURCE --mountpoint "$FS")). Tear it down: sudo $0 --down"
  exit 0
fi

scripts/install-deps.sh --check 2>/dev/null || scripts/install-deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build --parallel "$(nproc)" --target boostvol

mkdir -p "$FAST" "$SLOW" "$MNT" "$FS"
chmod 700 "$FAST" "$SLOW"
if [[ ! -e $FAST/meta.db ]]; then
  "$BIN" create "$FAST" "$SLOW" --size 8G --cache-size 1G
fi
mountpoint -q "$MNT" || timeout 120 "$BIN" mount "$FAST" "$MNT"
for _ in $(seq 1 100); do [[ -f $MNT/image ]] && break; sleep 0.1; done
LOOP=$(losetup -n -O NAME -j "$MNT/image" | head -n1)
[[ -n $LOOP ]] || LOOP=$(losetup -f --show "$MNT/image")
blkid -p "$LOOP" >/dev/null 2>&1 || mkfs.ext4 -q -L boostvol-demo "$LOOP"
timeout 120 mount "$LOOP" "$FS"
if [[ -n ${SUDO_USER:-} ]]; then chown "$SUDO_USER:" "$FS"; fi

cat <<INFO

boostvol demo is up.
  filesystem   $FS            (ext4 on $LOOP, owned by ${SUDO_USER:-root})
  image        $MNT/image     (the FUSE file, 8 GiB, fsname boostvol:$FAST)
  fast dir     $FAST          (meta.db, log: where writes land first)
  slow dir     $SLOW          (image: the home copy the migrator fills)

Try:
  cp -a /usr/include $FS/ && sync
  $BIN status $MNT            # dirty blocks, log use, migrator state (--json for scripts)
  $BIN drain $MNT             # copy everything home now
  sqlite3 $FAST/meta.db .tables   # the metadata, for people

Tear down:
  sudo $0 --down
INFO
