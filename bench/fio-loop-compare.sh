#!/usr/bin/env bash
# fio on (a) a loop device over a plain file in the fast dir and (b) a loop device over a boostvol image, side by
# side in one run, in both loop modes (--direct-io=on and off). Writes a markdown table (IOPS, MB/s, ratio
# boostvol/raw) to docs/benchmarks/latest.md and prints it.
#
#   sudo bench/fio-loop-compare.sh [--quick] [--runtime S] [--dir DIR] [--out FILE] [--keep]
#                                  [--modes "on off"] [--jobs "seqwrite randwrite randread fsyncwrite verify"]
#
# Jobs (fio, libaio, direct=1, over a 1 GiB region, time based): 1M sequential write QD16 (runs first, so the
# region is written before the reads), 4k random write QD16, 4k random read QD16, 4k write + fsync each QD1 (psync).
# Each configuration also gets a short crc32c verify job (64 MiB random writes, read back and checked).
# --quick: 5 s per job (about 3 minutes in all); default 20 s per job (about 8 minutes).
# --modes / --jobs: a subset, for before/after comparisons of one change (docs/tuning.md, "Hot path").
# The table also gives the daemon's CPU time (utime+stime, /proc/PID/stat) per GB fio wrote in each job.
# DIR (default /var/tmp/boostvol-bench) holds the raw file, FAST and SLOW: all on one filesystem, like the
# reference run in shared/PEERS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
SRC=$PWD

RUNTIME=20
DIR=/var/tmp/boostvol-bench
OUT=$SRC/docs/benchmarks/latest.md
KEEP=0
MODES="on off"
JOB_LIST="seqwrite randwrite randread fsyncwrite verify"
IMAGE_SIZE=4G
REGION=1G
while (($#)); do
  case $1 in
    --quick) RUNTIME=5 ;;
    --runtime) RUNTIME=$2; shift ;;
    --dir) DIR=$2; shift ;;
    --out) OUT=$2; shift ;;
    --keep) KEEP=1 ;;
    --modes) MODES=$2; shift ;;
    --jobs) JOB_LIST=$2; shift ;;
    -h | --help) sed -n '2,18p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1" >&2; exit 1 ;;
  esac
  shift
done
[[ $EUID -eq 0 ]] || { echo "needs root (loop devices): sudo $0" >&2; exit 1; }
BIN=${BOOSTVOL_BIN:-$SRC/build/boostvol}
[[ -x $BIN ]] || { echo "no boostvol binary at $BIN: build first (scripts/test.sh or cmake --build build)" >&2; exit 1; }
for c in fio losetup python3; do command -v "$c" >/dev/null || { echo "needs $c (scripts/install-deps.sh)" >&2; exit 1; }; done

WORK=$DIR/run.$$
RAW=$WORK/raw/raw.img
FAST=$WORK/fast SLOW=$WORK/slow MNT=$WORK/mnt
RESULTS=$WORK/results.tsv
LOOPS=()

cleanup() {
  set +e
  local l
  for l in "${LOOPS[@]}"; do losetup -d "$l" 2>/dev/null; done
  if mountpoint -q "$MNT" 2>/dev/null; then
    timeout 300 "$BIN" unmount "$MNT" || fusermount3 -uz "$MNT" || umount -l "$MNT"
  fi
  if [[ $KEEP == 1 ]]; then echo "kept $WORK"; else rm -rf --one-file-system "$WORK"; rmdir "$DIR" 2>/dev/null; fi
}
trap cleanup EXIT

mkdir -p "$WORK/raw" "$FAST" "$SLOW" "$MNT"
truncate -s "$IMAGE_SIZE" "$RAW"
timeout 120 "$BIN" create "$FAST" "$SLOW" --size "$IMAGE_SIZE" --cache-size 2G >/dev/null
timeout 120 "$BIN" mount "$FAST" "$MNT"
for _ in $(seq 1 100); do [[ -f $MNT/image ]] && break; sleep 0.1; done
DPID=$(awk '/pid/ {print $2}' "$FAST/lock" 2>/dev/null || true)
[[ -n $DPID && -d /proc/$DPID ]] || DPID=
: >"$RESULTS"

ticks() {  # utime+stime of the daemon, in clock ticks (0 without a pid)
  [[ -n $DPID && -r /proc/$DPID/stat ]] || { echo 0; return; }
  awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$DPID/stat"
}

# run_job DEV NAME MODE TARGET: one fio job, appends "mode target job iops MB/s" to RESULTS.
run_job() {
  local dev=$1 job=$2 mode=$3 target=$4 json=$WORK/fio.json
  local -a a=(--name="$job" --filename="$dev" --direct=1 --size="$REGION" --group_reporting --output-format=json)
  local rw
  case $job in
    seqwrite) a+=(--ioengine=libaio --rw=write --bs=1M --iodepth=16 --time_based --runtime="$RUNTIME"); rw="write" ;;
    randwrite) a+=(--ioengine=libaio --rw=randwrite --bs=4k --iodepth=16 --time_based --runtime="$RUNTIME"); rw="write" ;;
    randread) a+=(--ioengine=libaio --rw=randread --bs=4k --iodepth=16 --time_based --runtime="$RUNTIME"); rw="read" ;;
    fsyncwrite) a+=(--ioengine=psync --rw=randwrite --bs=4k --iodepth=1 --fsync=1 --time_based --runtime="$RUNTIME"); rw="write" ;;
    verify)
      a=(--name=verify --filename="$dev" --direct=1 --ioengine=libaio --rw=randwrite --bs=4k --iodepth=16
        --size=64M --offset=1G --verify=crc32c --do_verify=1 --verify_fatal=1 --output-format=json)
      rw="write" ;;
  esac
  local t0 t1
  t0=$(ticks)
  if ! timeout $((RUNTIME * 4 + 300)) fio "${a[@]}" >"$json" 2>"$WORK/fio.err"; then
    echo "fio $job on $target ($mode) FAILED: $(tail -n 3 "$WORK/fio.err")" >&2
    printf '%s\t%s\t%s\tFAIL\tFAIL\t-\n' "$mode" "$target" "$job" >>"$RESULTS"
    return 0
  fi
  t1=$(ticks)
  [[ $target == boostvol ]] || t1=$t0
  python3 - "$json" "$rw" "$mode" "$target" "$job" "$((t1 - t0))" "$(getconf CLK_TCK)" >>"$RESULTS" <<'EOF'
import json, sys
path, rw, mode, target, job, dticks, hz = sys.argv[1:]
text = open(path).read()
d = json.loads(text[text.index("{"):])  # fio may print notes before the JSON
j = d["jobs"][0]
errors = j.get("error", 0)
if job == "verify":
    print(f"{mode}\t{target}\t{job}\t{'ok' if errors == 0 else 'FAIL'}\t-\t-")
else:
    s = j[rw]
    gb = s["io_bytes"] / 1e9
    cpu = f"{int(dticks) / int(hz) / gb:.2f}" if target == "boostvol" and rw == "write" and gb > 0 else "-"
    print(f"{mode}\t{target}\t{job}\t{s['iops']:.0f}\t{s['bw'] * 1024 / 1e6:.1f}\t{cpu}")
EOF
  tail -n 1 "$RESULTS" | awk -F'\t' '{ printf "  %-4s %-9s %-10s IOPS %-8s MB/s %-8s CPU s/GB %s\n", $1, $2, $3, $4, $5, $6 }'
}

read -r -a JOBS <<<"$JOB_LIST"
for mode in $MODES; do
  RAWDEV=$(losetup -f --show --direct-io="$mode" "$RAW"); LOOPS+=("$RAWDEV")
  BVDEV=$(losetup -f --show --direct-io="$mode" "$MNT/image"); LOOPS+=("$BVDEV")
  echo "loop --direct-io=$mode: raw $RAWDEV (dio=$(cat "/sys/block/${RAWDEV#/dev/}/loop/dio")), boostvol $BVDEV (dio=$(cat "/sys/block/${BVDEV#/dev/}/loop/dio"))"
  for job in "${JOBS[@]}"; do
    run_job "$RAWDEV" "$job" "$mode" raw
    run_job "$BVDEV" "$job" "$mode" boostvol
  done
  losetup -d "$RAWDEV" "$BVDEV"
  LOOPS=()
done

mkdir -p "$(dirname "$OUT")"
python3 - "$RESULTS" "$RUNTIME" "$(uname -r)" "$(nproc)" "$(fio --version)" \
  "$(git -C "$SRC" rev-parse --short HEAD 2>/dev/null || echo uncommitted)" "$(df --output=source,fstype "$DIR" | tail -n1 | tr -s ' ')" "$(cut -d' ' -f1-3 /proc/loadavg)" >"$OUT" <<'EOF'
import sys, datetime
path, runtime, kernel, cores, fio, commit, fs, load = sys.argv[1:]
rows = {}
for line in open(path):
    mode, target, job, iops, mbs, cpu = line.rstrip("\n").split("\t")
    rows[(mode, job, target)] = (iops, mbs, cpu)
names = {"seqwrite": "1M sequential write, QD16", "randwrite": "4k random write, QD16",
         "randread": "4k random read, QD16", "fsyncwrite": "4k write + fsync each, QD1",
         "verify": "crc32c verify (64 MiB random writes)"}
def ratio(a, b):
    try:
        return f"{float(b) / float(a):.2f}" if float(a) > 0 else "-"
    except ValueError:
        return "-"
print("# boostvol vs a plain loop file (bench/fio-loop-compare.sh)\n")
print(f"{datetime.datetime.now().strftime('%Y-%m-%d %H:%M')}; commit {commit}; kernel {kernel}; {cores} cores; {fio}; "
      f"{runtime} s per job; fio libaio direct=1 on a loop device over a 1 GiB region of a 4 GiB image; "
      f"raw file, FAST and SLOW on {fs}; boostvol cache 2 GiB; load average at the end {load} "
      f"(other work on the machine skews the numbers).\n")
print("| loop | job | raw IOPS | raw MB/s | boostvol IOPS | boostvol MB/s | ratio boostvol/raw | daemon CPU s/GB |")
print("|---|---|---|---|---|---|---|---|")
for mode in ("on", "off"):
    for job in ("seqwrite", "randwrite", "randread", "fsyncwrite", "verify"):
        if (mode, job, "raw") not in rows and (mode, job, "boostvol") not in rows:
            continue
        r = rows.get((mode, job, "raw"), ("-", "-", "-"))
        b = rows.get((mode, job, "boostvol"), ("-", "-", "-"))
        key = 1 if job == "seqwrite" else 0
        rat = "-" if job == "verify" else ratio(r[key], b[key])
        print(f"| direct-io={mode} | {names[job]} | {r[0]} | {r[1]} | {b[0]} | {b[1]} | {rat} | {b[2]} |")
print("\nRatio: MB/s for the sequential job, IOPS otherwise. The verify row says whether fio's crc32c check passed. "
      "Daemon CPU: utime+stime of the boostvol daemon per GB fio wrote (the kernel's loop and FUSE work is not in it).")
EOF
echo
cat "$OUT"
