#!/usr/bin/env bash
# Two sets of mount options (-o) side by side, in one run: one volume mounted each way (same binary, same FAST
# and SLOW filesystem), each behind a loop device (--direct-io=on, or --loop-dio off) over MOUNTPOINT/image; every fio job runs on
# A, then B, then A ... for --rounds rounds, so both see the same noise. Medians, spread and the ratio B/A.
#
#   sudo bench/mount-options-ab.sh [--a OPTS] [--b OPTS] [--rounds N] [--runtime S] [--dir DIR] [--jobs "..."]
#                                  [--loop-dio on|off]
#
# Defaults: --a poll_us=0 (never poll) --b "" (the defaults: poll_us=50), 5 rounds of 4 s per job.
# Jobs (fio libaio direct=1 over a 1 GiB region; background migration off, as in bench/write-modes.sh):
#   randwrite1   4k random writes, QD1          randwrite16  4k random writes, QD16
#   randread16   4k random reads of written data, QD16
#   seqwrite     1M sequential writes, QD16     fsync1       4k random writes + fsync each, QD1
# Also the daemon's CPU seconds (utime+stime) per GB written, per job. docs/tuning.md "Polling" has a run.
set -uo pipefail
cd "$(dirname "$0")/.."
BV=${BOOSTVOL_BIN:-$PWD/build/boostvol}
A_OPTS=poll_us=0 B_OPTS="" ROUNDS=5 RUNTIME=4 DIR=/var/tmp/boostvol-ab-bench LOOP_DIO=on
JOBS="randwrite1 randwrite16 randread16 seqwrite fsync1"
while (($#)); do
  case $1 in
    --a) A_OPTS=$2; shift ;;
    --b) B_OPTS=$2; shift ;;
    --rounds) ROUNDS=$2; shift ;;
    --runtime) RUNTIME=$2; shift ;;
    --dir) DIR=$2; shift ;;
    --jobs) JOBS=$2; shift ;;
    --loop-dio) LOOP_DIO=$2; shift ;;
    -h | --help) sed -n '2,14p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1" >&2; exit 1 ;;
  esac
  shift
done
[[ $EUID -eq 0 ]] || { echo "needs root (loop devices)" >&2; exit 1; }
[[ -x $BV ]] || { echo "no boostvol binary at $BV (set BOOSTVOL_BIN)" >&2; exit 1; }
for c in fio losetup python3; do command -v "$c" >/dev/null || { echo "needs $c" >&2; exit 1; }; done

WORK=$DIR/run.$$
declare -A DEV OPTS=([a]=$A_OPTS [b]=$B_OPTS)
cleanup() {
  local v
  for v in a b; do
    [[ -n ${DEV[$v]:-} ]] && losetup -d "${DEV[$v]}" 2>/dev/null
    mountpoint -q "$WORK/$v/mnt" 2>/dev/null && timeout 120 "$BV" unmount "$WORK/$v/mnt" >/dev/null 2>&1
  done
  rm -rf "$WORK"
  rmdir "$DIR" 2>/dev/null
}
trap cleanup EXIT
log() { echo "[$(date +%T)] $*" >&2; }
for v in a b; do
  mkdir -p "$WORK/$v/fast" "$WORK/$v/slow" "$WORK/$v/mnt"
  "$BV" create "$WORK/$v/fast" "$WORK/$v/slow" --size 2G --cache-size 4G >/dev/null || exit 1
  "$BV" set "$WORK/$v/fast" idle_migrate_ms=86400000 migrate_start_fraction=1 >/dev/null || exit 1
  "$BV" mount "$WORK/$v/fast" "$WORK/$v/mnt" ${OPTS[$v]:+-o "${OPTS[$v]}"} >/dev/null || exit 1
  DEV[$v]=$(losetup -f --show --direct-io="$LOOP_DIO" "$WORK/$v/mnt/image") || exit 1
  # The region the read job reads is written first.
  fio --name=fill --filename="${DEV[$v]}" --direct=1 --ioengine=libaio --rw=write --bs=1M --iodepth=16 --size=1G \
    --output-format=terse >/dev/null || exit 1
done
pid_of() { sed -n 's/.*pid[^0-9]*\([0-9][0-9]*\).*/\1/p' "$WORK/$1/fast/lock" | head -n1; }
cpu_s() { awk -v hz="$(getconf CLK_TCK)" '{print ($14 + $15) / hz}' "/proc/$1/stat"; }
declare -A PID=([a]=$(pid_of a) [b]=$(pid_of b))

run_job() { # JOB DEV -> "value bytes_written"
  local a=(--name="$1" --filename="$2" --direct=1 --ioengine=libaio --size=1G --output-format=json --randseed=$RANDOM)
  case $1 in
    randwrite1) a+=(--rw=randwrite --bs=4k --iodepth=1 --time_based --runtime="$RUNTIME") ;;
    randwrite16) a+=(--rw=randwrite --bs=4k --iodepth=16 --time_based --runtime="$RUNTIME") ;;
    randread16) a+=(--rw=randread --bs=4k --iodepth=16 --time_based --runtime="$RUNTIME") ;;
    seqwrite) a+=(--rw=write --bs=1M --iodepth=16 --time_based --runtime="$RUNTIME") ;;
    fsync1) a+=(--rw=randwrite --bs=4k --iodepth=1 --fsync=1 --time_based --runtime="$RUNTIME") ;;
  esac
  fio "${a[@]}" | python3 -c "
import json, sys
j = json.load(sys.stdin)['jobs'][0]
side = j['read'] if '$1' == 'randread16' else j['write']
v = side['bw_bytes'] / 1e6 if '$1' == 'seqwrite' else side['iops']
print('%.1f %d' % (v, j['write']['io_bytes']))"
}
declare -A R C
LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
for job in $JOBS; do
  for ((r = 0; r < ROUNDS; r++)); do
    for v in a b; do
      c0=$(cpu_s "${PID[$v]}")
      read -r val bytes < <(run_job "$job" "${DEV[$v]}")
      c1=$(cpu_s "${PID[$v]}")
      # Everything written goes home before the next run (untimed), so no run meets a full log.
      [[ $job != randread16 ]] && { timeout 600 "$BV" drain "$WORK/$v/mnt" >/dev/null || log "drain failed"; }
      R[$job.$v]+="$val "
      ((bytes > 0)) && C[$job.$v]+="$(python3 -c "print('%.2f' % (($c1 - $c0) / ($bytes / 1e9)))") "
    done
    log "$job round $((r + 1)): a ${R[$job.a]} / b ${R[$job.b]}"
  done
done
LOAD1=$(cut -d' ' -f1-3 /proc/loadavg)
stats() { python3 -c "
import statistics, sys
v = [float(x) for x in sys.argv[1:]]
f = '%.2f' if v and max(v) < 100 else '%.0f'
print((f + ' (' + f + '-' + f + ')') % (statistics.median(v), min(v), max(v)) if v else '-')" $1; }
ratio() { python3 -c "
import statistics, sys
a, b = [[float(x) for x in s.split()] for s in sys.argv[1:3]]
print('%.2fx' % (statistics.median(b) / statistics.median(a)))" "$1" "$2"; }
echo "mount options A: '${A_OPTS}', B: '${B_OPTS:-(defaults)}'; $ROUNDS rounds of ${RUNTIME} s, alternating;" \
  "load average $LOAD0 at the start, $LOAD1 at the end; $(git rev-parse --short HEAD 2>/dev/null)"
echo
echo "| job (median, min-max) | A | B | B / A | daemon CPU s/GB A | B |"
echo "|---|---:|---:|---:|---:|---:|"
for job in $JOBS; do
  unit=IOPS; [[ $job == seqwrite ]] && unit=MB/s
  cpu_a=-; cpu_b=-
  [[ $job != randread16 ]] && cpu_a=$(stats "${C[$job.a]}") && cpu_b=$(stats "${C[$job.b]}")
  echo "| $job, $unit | $(stats "${R[$job.a]}") | $(stats "${R[$job.b]}") | $(ratio "${R[$job.a]}" "${R[$job.b]}") | $cpu_a | $cpu_b |"
done
