#!/usr/bin/env bash
# Zero ranges (docs/policies.md) measured beside the policy turned off, in one run:
#   1. zero blocks: 256 MiB written with dd onto MOUNTPOINT/image, half of it in 1 MiB runs of zeros, on a
#      volume with zero_detect=on and one with zero_detect=off: log space used, write MB/s, SLOW/image
#      allocated after a drain.
#   2. TRIM: the same 256 MiB then punched (fallocate -p, what a loop device sends for a discard) on the
#      zero_detect=on volume, against the volume left alone: SLOW/image allocated after a drain.
#
#   sudo bench/zero-policies.sh [--dir DIR]        (DIR default /var/tmp/boostvol-zero-bench; about 30 s)
set -euo pipefail
cd "$(dirname "$0")/.."
BV=${BOOSTVOL_BIN:-$PWD/build/boostvol}
DIR=/var/tmp/boostvol-zero-bench
[[ ${1:-} == --dir ]] && DIR=$2
rm -rf "$DIR" && mkdir -p "$DIR"
cleanup() {
  for m in "$DIR"/*/mnt; do mountpoint -q "$m" && "$BV" unmount "$m" >/dev/null 2>&1 || true; done
}
trap cleanup EXIT

head -c 128M /dev/urandom >"$DIR/rand"
# The input: 1 MiB random, 1 MiB zeros, ... (256 MiB).
python3 - "$DIR/rand" "$DIR/input" <<'PY'
import sys
r = open(sys.argv[1], "rb")
with open(sys.argv[2], "wb") as out:
    for i in range(128):
        out.write(r.read(1 << 20))
        out.write(bytes(1 << 20))
PY
rm -f "$DIR/rand"

json() { "$BV" status "$1" --json | python3 -c "import json,sys; print(json.load(sys.stdin)['$2'])"; }
alloc_mib() { echo $(($(stat -c %b "$1") * $(stat -c %B "$1") >> 20)); }

declare -A R
for mode in on off; do
  V=$DIR/$mode
  mkdir -p "$V/fast" "$V/slow" "$V/mnt"
  "$BV" create "$V/fast" "$V/slow" --size 512M --cache-size 512M >/dev/null
  "$BV" set "$V/fast" zero_detect=$mode idle_migrate_ms=86400000 migrate_start_fraction=1 >/dev/null
  "$BV" mount "$V/fast" "$V/mnt" >/dev/null
  t0=$(date +%s.%N)
  dd if="$DIR/input" of="$V/mnt/image" bs=1M conv=notrunc,fsync status=none
  t1=$(date +%s.%N)
  R[$mode.mbs]=$(python3 -c "print('%.0f' % (256 / ($t1 - $t0)))")
  R[$mode.log]=$(($(json "$V/mnt" log_used_blocks) * 4096 >> 20))
  R[$mode.saved]=$(($(json "$V/mnt" zero_block_bytes) >> 20))
  "$BV" drain "$V/mnt" >/dev/null
  R[$mode.home]=$(alloc_mib "$V/slow/image")
done
# TRIM: punch the 256 MiB on the "on" volume only.
fallocate -p -o 0 -l 256M "$DIR/on/mnt/image"
"$BV" drain "$DIR/on/mnt" >/dev/null
R[trim.home]=$(alloc_mib "$DIR/on/slow/image")
R[trim.trimmed]=$(($(json "$DIR/on/mnt" trimmed_bytes) >> 20))
R[notrim.home]=$(alloc_mib "$DIR/off/slow/image")
for mode in on off; do "$BV" unmount "$DIR/$mode/mnt" >/dev/null; done

cat <<EOF2
| 256 MiB dd (half zeros), conv=fsync | zero_detect=on | zero_detect=off | on/off |
|---|---:|---:|---:|
| log space used (MiB) | ${R[on.log]} | ${R[off.log]} | $(python3 -c "print('%.2f' % (${R[on.log]} / max(${R[off.log]}, 1)))") |
| zero blocks not stored (MiB) | ${R[on.saved]} | ${R[off.saved]} | |
| write MB/s | ${R[on.mbs]} | ${R[off.mbs]} | $(python3 -c "print('%.2f' % (${R[on.mbs]} / max(${R[off.mbs]}, 1)))") |
| SLOW/image allocated after drain (MiB) | ${R[on.home]} | ${R[off.home]} | |

| then fallocate -p of the 256 MiB, drain | TRIM | no TRIM |
|---|---:|---:|
| SLOW/image allocated (MiB) | ${R[trim.home]} | ${R[notrim.home]} |
| trimmed_bytes in status (MiB) | ${R[trim.trimmed]} | 0 |
EOF2
rm -rf "$DIR"
