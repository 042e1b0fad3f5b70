#!/usr/bin/env bash
# Two boostvol binaries side by side through FUSE (docs/tuning.md "Hot path"): for each, in alternating rounds, a
# fresh volume (FAST and SLOW under DIR, background migration off: idle_migrate_ms=86400000
# migrate_start_fraction=1), mounted, a loop device (--direct-io=on) over MOUNTPOINT/image, then fio 4k random
# writes (libaio, QD16, RUNTIME s over 256 MiB) and 4k random reads of what was written (in the log: cached); then a
# clean unmount, drop_caches and a new mount: 4k random reads of the same data, cold (every one from the disk), and 4k
# writes with an fsync after each at QD1. Per job: IOPS and the daemon's CPU (utime+stime, /proc/PID/stat) per
# request; medians over ROUNDS.
#   sudo bench/daemon-compare.sh BEFORE_BIN AFTER_BIN [ROUNDS] [RUNTIME] [DIR]   (defaults 3, 8, /var/tmp/bv-daemon-cmp)
set -uo pipefail
(($# >= 2)) || { sed -n '2,7p' "$0"; exit 2; }
A=$1 B=$2 ROUNDS=${3:-3} RUNTIME=${4:-8} DIR=${5:-/var/tmp/bv-daemon-cmp}
[[ $EUID -eq 0 ]] || { echo "needs root (loop devices, mounts)" >&2; exit 1; }
for c in fio losetup python3; do command -v "$c" >/dev/null || { echo "needs $c" >&2; exit 1; }; done
BIN= DEV= MNT=
cleanup() {
  [[ -n $DEV ]] && losetup -d "$DEV" 2>/dev/null
  [[ -n $MNT ]] && mountpoint -q "$MNT" 2>/dev/null && { timeout 120 "$BIN" unmount "$MNT" >/dev/null 2>&1 || fusermount3 -uz "$MNT"; }
  DEV= MNT=
}
trap 'cleanup; rm -rf --one-file-system "$DIR"' EXIT
ticks() { awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"; }
job() {  # DEV RW [fio args] -> "iops ios"
  fio --name=j --filename="$1" --direct=1 --ioengine=libaio --rw="$2" --bs=4k --iodepth=16 --size=256M \
    --time_based --runtime="$RUNTIME" "${@:3}" --output-format=json 2>/dev/null |
    python3 -c 'import json,sys; t=sys.stdin.read(); j=json.loads(t[t.index("{"):])["jobs"][0]; s=j["write" if j["write"]["total_ios"] else "read"]; print("%.0f %d" % (s["iops"], s["total_ios"]))'
}
out=$(mktemp)
for ((r = 0; r < ROUNDS; r++)); do
  for which in A B; do
    BIN=${!which}
    V=$DIR/$which
    rm -rf --one-file-system "$V" && mkdir -p "$V/fast" "$V/slow" "$V/mnt"
    "$BIN" create "$V/fast" "$V/slow" --size 1G --cache-size 2G >/dev/null 2>&1 || { echo "create failed" >&2; exit 1; }
    "$BIN" set "$V/fast" idle_migrate_ms=86400000 migrate_start_fraction=1 >/dev/null 2>&1
    line=$which
    for phase in warm cold; do
      if [[ $phase == cold ]]; then
        cleanup
        sync && echo 3 >/proc/sys/vm/drop_caches
      fi
      "$BIN" mount "$V/fast" "$V/mnt" >/dev/null 2>&1 || { echo "mount failed" >&2; exit 1; }
      MNT=$V/mnt
      for _ in $(seq 1 100); do [[ -f $MNT/image ]] && break; sleep 0.1; done
      pid=$(awk '/pid/ {print $2}' "$V/fast/lock")
      DEV=$(losetup -f --show --direct-io=on "$MNT/image") || exit 1
      if [[ $phase == warm ]]; then jobs=("randwrite" "randread"); else jobs=("randread" "fsync"); fi
      for rw in "${jobs[@]}"; do
        t0=$(ticks "$pid")
        if [[ $rw == fsync ]]; then
          read -r iops ios < <(job "$DEV" randwrite --iodepth=1 --fsync=1)
        else
          read -r iops ios < <(job "$DEV" "$rw")
        fi
        t1=$(ticks "$pid")
        line+=" $iops $(python3 -c "print(f'{($t1 - $t0) / $(getconf CLK_TCK) * 1e6 / max($ios, 1):.2f}')")"
      done
    done
    echo "$line" >>"$out"
    echo "round $r $line (IOPS and daemon CPU us/op: randwrite, randread cached, randread cold, write+fsync QD1)"
    cleanup
  done
done
python3 - "$out" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
names = ["4k randwrite QD16 IOPS", "  daemon CPU us per write", "4k randread QD16 IOPS (cached)", "  daemon CPU us per read",
         "4k randread QD16 IOPS (cold, after a restart)", "  daemon CPU us per read", "4k write+fsync QD1 IOPS",
         "  daemon CPU us per write"]
med = {w: [statistics.median(float(r[k]) for r in rows if r[0] == w) for k in range(1, len(names) + 1)] for w in "AB"}
print(f"{'median of %d rounds' % (len(rows) // 2):46s} {'before':>8s} {'after':>8s} {'after/before':>12s}")
for k, n in enumerate(names):
    print(f"{n:46s} {med['A'][k]:8.2f} {med['B'][k]:8.2f} {med['B'][k] / med['A'][k]:12.2f}")
PY
rm -f "$out"
