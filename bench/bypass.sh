#!/usr/bin/env bash
# Sequential bypass (docs/policies.md) measured beside bypass off and beside the slow dir alone, in one run:
# 256 MiB of 1 MiB sequential writes (dd oflag=direct conv=fsync, then fio rw=write bs=1M direct=1
# end_fsync=1) onto
#   slow    a plain preallocated-size sparse file in a directory beside SLOW (no boostvol)
#   off     MOUNTPOINT/image of a volume with sequential_cutoff=0 (every write through the log)
#   on      MOUNTPOINT/image of a volume with sequential_cutoff=4M and bypass_order=prefix (the defaults: the
#           stream's first 4 MiB are logged, the next write waits for them to go home, the rest goes home directly)
#   relaxed the same with bypass_order=relaxed (home-direct beside dirty blocks; gives up DESIGN.md 2.7)
# Two figures per tool: the write itself (acknowledged and fsync'ed), and "until home": the write plus
# `boostvol drain` (the data in SLOW/image), which is where bypass saves the second copy. Ratios on/off,
# on/slow and relaxed/slow. FAST and SLOW are both under DIR: on one device, the ratios show the cost of the extra copy and
# of the FUSE hop, not a fast/slow device pair.
#
#   sudo bench/bypass.sh [--dir DIR]        (DIR default /var/tmp/boostvol-bypass-bench; about a minute)
set -euo pipefail
cd "$(dirname "$0")/.."
BV=${BOOSTVOL_BIN:-$PWD/build/boostvol}
DIR=/var/tmp/boostvol-bypass-bench
[[ ${1:-} == --dir ]] && DIR=$2
MIB=${BYPASS_BENCH_MIB:-256}
rm -rf "$DIR" && mkdir -p "$DIR"
cleanup() {
  for m in "$DIR"/*/mnt; do mountpoint -q "$m" && "$BV" unmount "$m" >/dev/null 2>&1 || true; done
}
trap cleanup EXIT
command -v fio >/dev/null || { echo "bench/bypass.sh: fio is needed (apt-get install fio)" >&2; exit 1; }

head -c "${MIB}M" /dev/urandom >"$DIR/input"
json() { "$BV" status "$1" --json | python3 -c "import json,sys; print(json.load(sys.stdin)['$2'])"; }
now() { date +%s.%N; }
mbs() { python3 -c "print('%.0f' % ($MIB / ($2 - $1)))"; }

declare -A R
for v in slow off on relaxed; do
  V=$DIR/$v
  mkdir -p "$V/slow"
  if [[ $v == slow ]]; then
    truncate -s 512M "$V/slow/image"
    TARGET=$V/slow/image
  else
    mkdir -p "$V/fast" "$V/mnt"
    "$BV" create "$V/fast" "$V/slow" --size 512M --cache-size 512M >/dev/null
    cutoff=$([[ $v == off ]] && echo 0 || echo 4M)
    order=$([[ $v == relaxed ]] && echo relaxed || echo prefix)
    # No background migration during the write: "until home" is the write plus one drain.
    "$BV" set "$V/fast" sequential_cutoff=$cutoff bypass_order=$order idle_migrate_ms=86400000 \
      migrate_start_fraction=1 >/dev/null 2>&1
    "$BV" mount "$V/fast" "$V/mnt" >/dev/null
    TARGET=$V/mnt/image
  fi
  sync
  t0=$(now)
  dd if="$DIR/input" of="$TARGET" bs=1M oflag=direct conv=notrunc,fsync status=none
  t1=$(now)
  [[ $v != slow ]] && "$BV" drain "$V/mnt" >/dev/null
  t2=$(now)
  R[$v.dd]=$(mbs "$t0" "$t1")
  R[$v.ddhome]=$(mbs "$t0" "$t2")
  if [[ $v != slow ]]; then
    R[$v.bypassed]=$(($(json "$V/mnt" bypassed_bytes) >> 20))
    cmp -n "$((MIB << 20))" "$DIR/input" "$V/slow/image" || { echo "bench: $v: SLOW/image does not hold the input" >&2; exit 1; }
  fi
  # fio over the same range (the blocks are home now, so bypass applies again after the cutoff).
  t0=$(now)
  fio --name=seq --filename="$TARGET" --rw=write --bs=1M --size="${MIB}M" --direct=1 --end_fsync=1 \
    --ioengine=psync --output-format=json >"$DIR/fio.$v.json"
  t1=$(now)
  [[ $v != slow ]] && "$BV" drain "$V/mnt" >/dev/null
  t2=$(now)
  R[$v.fio]=$(python3 -c "import json; print('%.0f' % (json.load(open('$DIR/fio.$v.json'))['jobs'][0]['write']['bw_bytes'] / 1e6))")
  R[$v.fiohome]=$(mbs "$t0" "$t2")
  if [[ $v != slow ]]; then
    R[$v.bypassed2]=$(($(json "$V/mnt" bypassed_bytes) >> 20))
    "$BV" unmount "$V/mnt" >/dev/null
  fi
done
r() { python3 -c "print('%.2f' % ($1 / max($2, 1)))"; }
cat <<EOF2
| ${MIB} MiB, 1 MiB sequential writes (MB/s) | slow dir alone | bypass off | bypass on (prefix) | relaxed | on/off | on/slow | relaxed/slow |
|---|---:|---:|---:|---:|---:|---:|---:|
EOF2
row() { # label key
  echo "| $1 | ${R[slow.$2]} | ${R[off.$2]} | ${R[on.$2]} | ${R[relaxed.$2]} | $(r "${R[on.$2]}" "${R[off.$2]}") | $(r "${R[on.$2]}" "${R[slow.$2]}") | $(r "${R[relaxed.$2]}" "${R[slow.$2]}") |"
}
row "dd oflag=direct conv=fsync" dd
row "dd, until home (+ drain)" ddhome
row "fio rw=write bs=1M direct=1 end_fsync=1" fio
row "fio, until home (+ drain)" fiohome
cat <<EOF2
| bypassed_bytes after dd / after fio (MiB) | | ${R[off.bypassed]} / ${R[off.bypassed2]} | ${R[on.bypassed]} / ${R[on.bypassed2]} | ${R[relaxed.bypassed]} / ${R[relaxed.bypassed2]} | | | |
EOF2
rm -rf "$DIR"
