#!/usr/bin/env bash
# An NFS-backed volume with a local SSD cache: the disk image lives on an NFS export (its home copy is a plain
# sparse file there), writes and hot reads are served from the SSD, and fsync costs an SSD fsync, not a round trip.
# If the NFS server goes away, writes continue into the log (status: home-unreachable) and go home when it is back.
#
#   sudo examples/nfs-backed.sh up   FAST SLOW MOUNTPOINT [SIZE]   # SLOW: a directory on the NFS mount
#   sudo examples/nfs-backed.sh down FAST MOUNTPOINT
#   sudo examples/nfs-backed.sh demo [SLOW]                      # up, use, down; SLOW defaults to a temp dir
#
# The NFS mount itself, once (hard: an outage blocks the migrator instead of failing writes home):
#   mount -t nfs4 -o hard,noatime,nconnect=4 nfs.example.org:/export/images /srv/nfs
#   # /etc/fstab:  nfs.example.org:/export/images  /srv/nfs  nfs4  hard,noatime,nconnect=4,_netdev  0 0
# then, e.g.:  sudo examples/nfs-backed.sh up /ssd/boostvol/db1 /srv/nfs/db1 /srv/db1 200G
# For boot, see docs/systemd.md ("SLOW on NFS"). Without an NFS server, pass any directory as SLOW: the script
# says so and works the same (that is how the test suite runs it).
# BOOSTVOL (env) is the boostvol binary; default: boostvol on PATH, else ./build/boostvol.
set -euo pipefail

BOOSTVOL=${BOOSTVOL:-$(command -v boostvol || echo ./build/boostvol)}

up() { # FAST SLOW MOUNTPOINT [SIZE]
  local fast=$1 slow=$2 mp=$3 size=${4:-16G} fstype dev
  mkdir -p "$fast" "$slow" "$mp" "$fast.mnt"
  fstype=$(stat -f -c %T "$slow")
  if [[ $fstype != nfs* ]]; then
    echo "note: $slow is on $fstype, not NFS; going on (a stand-in for the NFS export)"
  fi
  [[ -e $fast/meta.db ]] || "$BOOSTVOL" create "$fast" "$slow" --size "$size" --cache-size 512M
  # Over a network, smaller batches keep each journaled batch (and an NFS hiccup's retry) short.
  "$BOOSTVOL" set "$fast" max_batch_bytes=$((16 << 20)) >/dev/null
  dev=$(timeout 60 "$BOOSTVOL" mount "$fast" "$fast.mnt" --loop)
  blkid -p "$dev" >/dev/null 2>&1 || mkfs.ext4 -q -L nfs-backed "$dev"
  timeout 60 mount "$dev" "$mp"
  echo "up: $mp (ext4 on $dev), cache $fast, home $slow/image ($fstype)"
}

use() { # MOUNTPOINT
  local mp=$1
  head -c 8M /dev/urandom >"$mp/records.bin"
  sync -f "$mp"
  sha256sum "$mp/records.bin" | sed "s|$mp/||" >"$mp/records.sha256"
  (cd "$mp" && sha256sum -c records.sha256)
}

down() { # FAST MOUNTPOINT
  local fast=$1 mp=$2
  timeout 300 umount "$mp"
  timeout 3600 "$BOOSTVOL" drain "$fast"
  timeout 300 "$BOOSTVOL" unmount "$fast.mnt"
  echo "down: everything is home on $(sed -n 's/^home *//p' < <("$BOOSTVOL" status "$fast") | head -n1)"
}

case ${1:-} in
  up) shift; up "$@" ;;
  use) shift; use "$@" ;;
  down) shift; down "$@" ;;
  demo)
    d=$(mktemp -d "${TMPDIR:-/tmp}/nfs-backed.XXXXXX")
    trap 'rm -rf --one-file-system "$d"' EXIT
    slow=${2:-$d/slow}
    up "$d/fast" "$slow" "$d/mnt" 1G
    use "$d/mnt"
    down "$d/fast" "$d/mnt"
    ;;
  *) sed -n '2,18p' "$0"; exit 1 ;;
esac
