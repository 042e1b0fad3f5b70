#!/usr/bin/env bash
# Write modes (docs/policies.md "Write modes and sequential bypass") measured side by side, in one run: one volume
# per mode, all created the same way under DIR (FAST and SLOW plain directories on one filesystem), each behind a
# loop device (--direct-io=on) over MOUNTPOINT/image:
#   wb      writeback with sequential_cutoff=4M (bcache's reference): long streams go home directly
#   wb0     writeback with sequential_cutoff=0, the default: every write through the log
#   wt      writethrough (--write-mode writethrough)
#   wa      writearound (--write-mode writearound)
# Background migration is off (idle_migrate_ms=86400000 migrate_start_fraction=1, as in bench/bypass.sh), so what
# is dirty after a job is what the mode left in the log, and "until home" is the job plus one `boostvol drain`.
# Jobs (the fio definitions of bench/run.sh), each run on every volume before the next job, each followed by a
# drain, so every job starts with a log that holds nothing not yet home (the order of the volumes rotates by job):
#   randwrite  4k random writes, libaio QD16, direct=1, 10 s over 256 MiB
#   fsync      4k random writes, QD1, an fsync after each, 10 s over 256 MiB
#   seqwrite   1M sequential writes, libaio QD16, 256 MiB (another 256 MiB range)
#   partial    random writes QD16, 10 s over 256 MiB, one in ten of 512 bytes (a partial block: always logged, so
#              the log is dirty when the next whole-block write comes; the loop device's logical block is 512 B)
#   verify     crc32c: mixed 4k/64k/1M random writes at QD16 over 64 MiB, read back (a mismatch = FAILED)
# Per job and mode: IOPS or MB/s, dirty_blocks after it, bypassed_bytes it added (status --json), the drain's
# seconds; ratios to writeback. At the end SLOW/image alone must equal MOUNTPOINT/image (cmp) in every mode.
#
#   sudo bench/write-modes.sh [--dir DIR] [--runtime S]   (DIR default /var/tmp/boostvol-wmodes-bench; about 3 min)
set -uo pipefail
cd "$(dirname "$0")/.."
BV=${BOOSTVOL_BIN:-$PWD/build/boostvol}
DIR=/var/tmp/boostvol-wmodes-bench RUNTIME=10
while (($#)); do
  case $1 in
    --dir) DIR=$2; shift ;;
    --runtime) RUNTIME=$2; shift ;;
    -h | --help) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1" >&2; exit 1 ;;
  esac
  shift
done
[[ $EUID -eq 0 ]] || { echo "needs root (loop devices, mounts)" >&2; exit 1; }
[[ -x $BV ]] || { echo "no boostvol binary at $BV (set BOOSTVOL_BIN)" >&2; exit 1; }
for c in fio losetup python3 cmp; do command -v "$c" >/dev/null || { echo "needs $c" >&2; exit 1; }; done

MODES=(wb wb0 wt wa)
declare -A NAME=([wb]=writeback [wb0]=writeback [wt]=writethrough [wa]=writearound)
declare -A LABEL=([wb]=writeback [wb0]="writeback, sequential_cutoff=0 (default)" [wt]=writethrough [wa]=writearound)
declare -A DEV R DIO
WORK=$DIR/run.$$
LOG=$WORK/bench.log
mkdir -p "$WORK"
log() { echo "[$(date +%T)] $*" >&2; }
cleanup() {
  local m
  for m in "${MODES[@]}"; do
    [[ -n ${DEV[$m]:-} ]] && losetup -d "${DEV[$m]}" 2>/dev/null
    mountpoint -q "$WORK/$m/mnt" 2>/dev/null && { timeout 120 "$BV" unmount "$WORK/$m/mnt" >/dev/null 2>&1 || fusermount3 -uz "$WORK/$m/mnt"; }
  done
  rm -rf "$WORK"
  rmdir "$DIR" 2>/dev/null
}
trap cleanup EXIT
st() { "$BV" status "$WORK/$1/mnt" --json | python3 -c "import json,sys; print(json.load(sys.stdin)['$2'])"; }
now() { date +%s.%N; }
ratio() { python3 -c "print('%.2f' % ($1 / max($2, 1e-9)))"; }

log "load average at the start: $(cut -d' ' -f1-3 /proc/loadavg)"
LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
for m in "${MODES[@]}"; do
  V=$WORK/$m
  mkdir -p "$V/fast" "$V/slow" "$V/mnt"
  "$BV" create "$V/fast" "$V/slow" --size 1G --cache-size 2G --write-mode "${NAME[$m]}" >>"$LOG" 2>&1 ||
    { log "create $m failed (see $LOG)"; cat "$LOG" >&2; exit 1; }
  cutoff=$([[ $m == wb0 ]] && echo 0 || echo 4M)
  "$BV" set "$V/fast" sequential_cutoff=$cutoff idle_migrate_ms=86400000 migrate_start_fraction=1 >>"$LOG" 2>&1 ||
    { log "set $m failed"; exit 1; }
  "$BV" mount "$V/fast" "$V/mnt" >>"$LOG" 2>&1 || { log "mount $m failed"; exit 1; }
  DEV[$m]=$(losetup -f --show --direct-io=on "$V/mnt/image") || exit 1
done
for m in "${MODES[@]}"; do DIO[$m]=$(cat "/sys/block/$(basename "${DEV[$m]}")/loop/dio"); done

fio_job() { # JOB DEV -> fio JSON on stdout
  local a=(--name="$1" --filename="$2" --direct=1 --ioengine=libaio --output-format=json)
  case $1 in
    randwrite) a+=(--rw=randwrite --bs=4k --iodepth=16 --size=256M --time_based --runtime="$RUNTIME" --randseed=42) ;;
    fsync) a+=(--rw=randwrite --bs=4k --iodepth=1 --fsync=1 --size=256M --time_based --runtime="$RUNTIME" --randseed=43) ;;
    seqwrite) a+=(--rw=write --bs=1M --iodepth=16 --offset=256M --size=256M) ;;
    partial) a+=(--rw=randwrite --bssplit=512/10:4k/90 --blockalign=512 --iodepth=16 --size=256M --time_based
      --runtime="$RUNTIME" --randseed=44) ;;
    verify) a+=(--offset=512M --size=64M --rw=randwrite --bssplit=4k/60:64k/30:1m/10 --iodepth=16 --verify=crc32c
      --do_verify=1 --verify_fatal=1 --verify_backlog=0) ;;
  esac
  timeout $((RUNTIME + 300)) fio "${a[@]}"
}
k=0
for job in randwrite fsync seqwrite partial verify; do
  # The order of the modes rotates from job to job, so that none always runs first (on a cold log) or last.
  order=("${MODES[@]:k}" "${MODES[@]:0:k}")
  k=$(((k + 1) % ${#MODES[@]}))
  for m in "${order[@]}"; do
    b0=$(st "$m" bypassed_bytes)
    log "$job on ${LABEL[$m]}"
    out=$(fio_job "$job" "${DEV[$m]}" 2>>"$LOG")
    rc=$?
    if [[ $job == verify ]]; then
      R[$m.verify]=$( ((rc == 0)) && echo ok || echo FAILED)
      [[ $rc != 0 ]] && log "  verify FAILED on ${LABEL[$m]} (fio exit $rc, see $LOG)" && echo "$out" >>"$LOG"
    elif ((rc != 0)); then
      log "  fio failed (exit $rc)"; R[$m.$job]=FAILED
    else
      R[$m.$job]=$(echo "$out" | python3 -c "
import json, sys
w = json.load(sys.stdin)['jobs'][0]['write']
print('%.0f' % (w['bw_bytes'] / 1e6 if '$job' == 'seqwrite' else w['iops']))")
    fi
    R[$m.$job.dirty]=$(($(st "$m" dirty_blocks) * 4096 >> 20))
    R[$m.$job.bypassed]=$((($(st "$m" bypassed_bytes) - b0) >> 20))
    t0=$(now)
    timeout 600 "$BV" drain "$WORK/$m/mnt" >>"$LOG" 2>&1 || log "  drain failed"
    R[$m.$job.drain]=$(python3 -c "print('%.2f' % ($(now) - $t0))")
    [[ $job == seqwrite && ${R[$m.$job]} != FAILED ]] &&
      R[$m.seqhome]=$(python3 -c "print('%.0f' % (268.435456 / (268.435456 / ${R[$m.$job]} + ${R[$m.$job.drain]})))")
    log "  ${R[$m.$job]} $([[ $job == seqwrite ]] && echo MB/s || echo IOPS), dirty ${R[$m.$job.dirty]} MiB," \
      "bypassed ${R[$m.$job.bypassed]} MiB, drain ${R[$m.$job.drain]} s"
  done
done
# The home alone holds the image in every mode (everything drained).
for m in "${MODES[@]}"; do
  losetup -d "${DEV[$m]}" && DEV[$m]=
  if cmp -s "$WORK/$m/mnt/image" "$WORK/$m/slow/image"; then R[$m.home]=same; else R[$m.home]=DIFFERENT; fi
  timeout 120 "$BV" unmount "$WORK/$m/mnt" >>"$LOG" 2>&1
done
LOAD1=$(cut -d' ' -f1-3 /proc/loadavg)

cell() { # KEY: value, with the ratio to writeback for numbers
  local v=${R[$1]} base=${R[wb.${1#*.}]}
  if [[ $1 == wb.* || $v == FAILED || $base == FAILED ]]; then echo "$v"; else echo "$v ($(ratio "$v" "$base"))"; fi
}
echo "load average at the start $LOAD0, at the end $LOAD1; loop dio: wb ${DIO[wb]} wb0 ${DIO[wb0]} wt ${DIO[wt]} wa ${DIO[wa]}"
echo
echo "| $RUNTIME s per random job; (x) = ratio to writeback | writeback, sequential_cutoff=4M | writeback, sequential_cutoff=0 (default) | writethrough | writearound |"
echo "|---|---:|---:|---:|---:|"
for job in randwrite fsync seqwrite partial; do
  case $job in
    randwrite) label="4k randwrite QD16" unit=IOPS ;;
    fsync) label="4k write+fsync QD1" unit=IOPS ;;
    seqwrite) label="1M seq write QD16, 256 MiB" unit=MB/s ;;
    partial) label="randwrite QD16, 1 in 10 of 512 B, 4k the rest" unit=IOPS ;;
  esac
  echo "| $label, $unit | $(cell wb.$job) | $(cell wb0.$job) | $(cell wt.$job) | $(cell wa.$job) |"
  echo "| ... dirty in the log after it / went home directly (MiB) | ${R[wb.$job.dirty]} / ${R[wb.$job.bypassed]} | ${R[wb0.$job.dirty]} / ${R[wb0.$job.bypassed]} | ${R[wt.$job.dirty]} / ${R[wt.$job.bypassed]} | ${R[wa.$job.dirty]} / ${R[wa.$job.bypassed]} |"
  echo "| ... \`boostvol drain\` after it (s) | $(cell wb.$job.drain) | $(cell wb0.$job.drain) | $(cell wt.$job.drain) | $(cell wa.$job.drain) |"
  [[ $job == seqwrite ]] &&
    echo "| ... until home (the write, then the drain), MB/s | $(cell wb.seqhome) | $(cell wb0.seqhome) | $(cell wt.seqhome) | $(cell wa.seqhome) |"
done
echo "| crc32c verify (4k/64k/1M random writes QD16, 64 MiB, read back) | ${R[wb.verify]} | ${R[wb0.verify]} | ${R[wt.verify]} | ${R[wa.verify]} |"
echo "| SLOW/image alone = the image after the last drain | ${R[wb.home]} | ${R[wb0.home]} | ${R[wt.home]} | ${R[wa.home]} |"
fail=0
for m in "${MODES[@]}"; do [[ ${R[$m.verify]} == ok && ${R[$m.home]} == same ]] || fail=1; done
exit $fail
