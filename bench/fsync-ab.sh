#!/usr/bin/env bash
# bench/fsync-ab.sh: 4k write + fsync at QD1 (a database's commit) on a direct-I/O loop device, the plain loop file
# and boostvol builds side by side, in alternating rounds, so that a machine whose disk latency drifts from minute to
# minute (a shared VM) moves every column alike.
#
#   sudo bench/fsync-ab.sh [--rounds N] [--runtime S] [--lapped] BIN [BIN...]
#
# Per round: the plain file (a 2 GiB file written beforehand, so no allocation), then each BIN on a fresh volume
# (create FAST SLOW --size 2G --cache-size 3G, mount, losetup --direct-io=on), fio libaio direct=1 iodepth=1
# rw=randwrite bs=4k fsync=1 over 1 GiB for S seconds. --lapped writes zeros over each fresh volume's log file
# before the mount (what a log that has wrapped once looks like: no never-written space, so no zeros written ahead;
# docs/tuning.md "Fresh log space"). Prints each figure (IOPS, mean write latency us, mean fsync latency us) and,
# at the end, each system's median IOPS and its median ratio to the plain file of the same round.
# Needs root (loop devices, mounts), fio. Everything is removed on exit.
set -uo pipefail
ROUNDS=5 RUNTIME=5 LAPPED=0
BINS=()
while (($#)); do
  case $1 in
    --rounds) ROUNDS=$2; shift ;;
    --runtime) RUNTIME=$2; shift ;;
    --lapped) LAPPED=1 ;;
    -h | --help) sed -n '2,16p' "$0"; exit 0 ;;
    -*) echo "unknown option: $1" >&2; exit 1 ;;
    *) BINS+=("$1") ;;
  esac
  shift
done
((${#BINS[@]} > 0)) || { echo "usage: $0 [--rounds N] [--runtime S] [--lapped] BIN [BIN...]" >&2; exit 1; }
# shellcheck source=lib/ab.sh
source "$(dirname "$0")/lib/ab.sh"

# job DEV: prints "IOPS write_lat_us fsync_lat_us"
job() {
  fio --name=fsync1 --filename="$1" --ioengine=libaio --direct=1 --iodepth=1 --rw=randwrite --bs=4k --size=1G \
    --time_based --runtime="$RUNTIME" --fsync=1 --output-format=json 2>/dev/null |
    python3 -c 'import json,sys; d=json.load(sys.stdin)["jobs"][0]; w=d["write"]; s=d["sync"]
print(round(w["iops"]), round(w["clat_ns"]["mean"]/1000,1), round(s["lat_ns"]["mean"]/1000,1))'
}

dd if=/dev/zero of="$W/raw.img" bs=1M count=2048 status=none && sync
: >"$W/results"
for r in $(seq "$ROUNDS"); do
  LOOP=$(losetup -f --show --direct-io=on "$W/raw.img") || exit 1
  out=$(job "$LOOP"); echo "round $r raw: $out"; echo "$r raw $out" >>"$W/results"
  losetup -d "$LOOP"; LOOP=
  i=0
  for BIN in "${BINS[@]}"; do
    i=$((i + 1)); d=$W/bv$i
    ab_create "$d" --size 2G --cache-size 3G || exit 1
    if ((LAPPED)); then
      dd if=/dev/zero of="$d/fast/log" bs=1M count=$(($(stat -c %s "$d/fast/log") >> 20)) oflag=direct conv=notrunc \
        status=none && sync
    fi
    ab_mount "$d" || exit 1
    out=$(job "$LOOP"); echo "round $r bin$i ($BIN): $out"; echo "$r bin$i $out" >>"$W/results"
    ab_unmount "$d"
  done
done
python3 - "$W/results" "${BINS[@]}" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
raw = {r[0]: float(r[2]) for r in rows if r[1] == "raw"}
names = ["raw"] + [f"bin{i + 1}" for i in range(len(sys.argv) - 2)]
for n in names:
    iops = [float(r[2]) for r in rows if r[1] == n]
    ratio = [float(r[2]) / raw[r[0]] for r in rows if r[1] == n]
    label = n if n == "raw" else f"{n} ({sys.argv[1 + int(n[3:])]})"
    print(f"median {label}: {statistics.median(iops):.0f} IOPS ({min(iops):.0f}-{max(iops):.0f}), "
          f"ratio to raw {statistics.median(ratio):.2f} ({min(ratio):.2f}-{max(ratio):.2f})")
PY
