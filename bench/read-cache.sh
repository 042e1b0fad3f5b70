#!/usr/bin/env bash
# Read caching (docs/policies.md "Read caching") measured beside the policy turned off, in one run:
# fio 4k random reads, zipf(1.2) skew, QD16, libaio direct=1 on a loop device (direct-io=on) over MOUNTPOINT/image,
# of a 256 MiB image whose data lives only at home, with read_promote=off, always and nhit (hits=2), one after
# the other on the same volume (each starts with an empty read cache: the policy is switched through off).
# The read cache is 64 MiB (the default: a quarter of the 256 MiB log), a quarter of the data.
#
# SLOW is an emulated slow disk (as in bench/run.sh part 2): nbdkit file plugin + noparallel + delay (4 ms per
# read and write) + rate (1200 Mbit/s) behind nbdfuse, a loop device and ext4. So that the page cache does not
# stand in for either cache, the pages of SLOW/image and FAST/readcache are dropped (posix_fadvise DONTNEED)
# every 0.2 s during the runs: the measurement is "home data not in RAM" (a home bigger than RAM, a network or
# RBD home), and cache hits are real reads of FAST. --no-slowdisk: SLOW is a plain directory (same eviction).
#
#   sudo bench/read-cache.sh [--dir DIR] [--runtime S] [--no-slowdisk]   (DIR default /var/tmp/boostvol-rc-bench;
#                                                                          about 3 min with the default 40 s per run)
# Prints a markdown table (IOPS, hit ratio, blocks read home, ratios to off). Everything it set up is torn down.
set -uo pipefail
cd "$(dirname "$0")/.."
BV=${BOOSTVOL_BIN:-$PWD/build/boostvol}
DIR=/var/tmp/boostvol-rc-bench RUNTIME=40 SLOWDISK=1
while (($#)); do
  case $1 in
    --dir) DIR=$2; shift ;;
    --runtime) RUNTIME=$2; shift ;;
    --no-slowdisk) SLOWDISK=0 ;;
    -h | --help) sed -n '2,17p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1" >&2; exit 1 ;;
  esac
  shift
done
[[ $EUID -eq 0 ]] || { echo "needs root (loop devices, mounts)" >&2; exit 1; }
[[ -x $BV ]] || { echo "no boostvol binary at $BV (set BOOSTVOL_BIN)" >&2; exit 1; }
for c in fio losetup mkfs.ext4 python3; do command -v "$c" >/dev/null || { echo "needs $c" >&2; exit 1; }; done
((SLOWDISK)) && for c in nbdkit nbdfuse fusermount3; do command -v "$c" >/dev/null || { echo "needs $c (or --no-slowdisk)" >&2; exit 1; }; done

WORK=$DIR/run.$$
mkdir -p "$WORK"
LOG=$WORK/bench.log
PIDS=() LOOPS=() MOUNTS=()
log() { echo "[$(date +%T)] $*" >&2; }
cleanup() {
  [[ -n ${EVICT_PID:-} ]] && kill "$EVICT_PID" 2>/dev/null
  [[ -n ${BVDEV:-} ]] && losetup -d "$BVDEV" 2>/dev/null
  mountpoint -q "$WORK/mnt" 2>/dev/null && { "$BV" unmount "$WORK/mnt" >/dev/null 2>&1 || fusermount3 -uz "$WORK/mnt"; }
  mountpoint -q "$WORK/slowfs" 2>/dev/null && umount "$WORK/slowfs"
  [[ -n ${SDDEV:-} ]] && losetup -d "$SDDEV" 2>/dev/null
  mountpoint -q "$WORK/slowdisk/mnt" 2>/dev/null && fusermount3 -u "$WORK/slowdisk/mnt"
  local p; for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
  sleep 0.5
  rm -rf "$WORK"
  rmdir "$DIR" 2>/dev/null
}
trap cleanup EXIT
wait_for() { local i; for ((i = 0; i < 600; i++)); do eval "$1" && return 0; sleep 0.1; done; return 1; }

mkdir -p "$WORK/slowfs" "$WORK/fast" "$WORK/mnt"
if ((SLOWDISK)); then
  mkdir -p "$WORK/slowdisk/mnt"
  truncate -s 4G "$WORK/slowdisk/disk.img"
  nbdkit -f --unix "$WORK/sd.sock" --filter=noparallel --filter=delay --filter=rate file file="$WORK/slowdisk/disk.img" \
    delay-read=4ms delay-write=4ms rate=1200M >>"$LOG" 2>&1 &
  PIDS+=($!)
  wait_for "[[ -S $WORK/sd.sock ]]" || { log "nbdkit did not start"; exit 1; }
  nbdfuse "$WORK/slowdisk/mnt/disk" --unix "$WORK/sd.sock" >>"$LOG" 2>&1 &
  PIDS+=($!)
  wait_for "findmnt -n $WORK/slowdisk/mnt >/dev/null" || { log "nbdfuse did not mount"; exit 1; }
  SDDEV=$(losetup -f --show --direct-io=on "$WORK/slowdisk/mnt/disk") || exit 1
  mkfs.ext4 -q -F -E nodiscard,lazy_itable_init=1,lazy_journal_init=1 "$SDDEV" || exit 1
  mount -o noinit_itable "$SDDEV" "$WORK/slowfs" || exit 1
  log "SLOW: ext4 on $SDDEV over nbdfuse over nbdkit file+noparallel+delay 4ms+rate 1200M"
fi
mkdir -p "$WORK/slowfs/home"
FAST=$WORK/fast SLOW=$WORK/slowfs/home MNT=$WORK/mnt
"$BV" create "$FAST" "$SLOW" --size 256M --cache-size 256M >>"$LOG" 2>&1 || { log "create failed"; exit 1; }
"$BV" mount "$FAST" "$MNT" >>"$LOG" 2>&1 || { log "mount failed"; exit 1; }
BVDEV=$(losetup -f --show --direct-io=on "$MNT/image") || exit 1
log "writing 256 MiB of random data and draining it home"
head -c 256M /dev/urandom | dd of="$BVDEV" bs=1M iflag=fullblock oflag=direct status=none
"$BV" drain "$MNT" >>"$LOG" 2>&1 || { log "drain failed"; exit 1; }

# Drops the page cache of SLOW/image and FAST/readcache every 0.2 s.
python3 - "$SLOW/image" "$FAST/readcache" <<'PY' &
import os, sys, time
while True:
    for p in sys.argv[1:]:
        try:
            fd = os.open(p, os.O_RDONLY)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            os.close(fd)
        except OSError:
            pass
    time.sleep(0.2)
PY
EVICT_PID=$!

st() { "$BV" status "$MNT" --json | python3 -c "import json,sys; print(json.load(sys.stdin)['$1'])"; }
declare -A R
for policy in off always nhit; do
  "$BV" set "$MNT" read_promote=off >>"$LOG" 2>&1      # empties the read cache
  "$BV" set "$MNT" read_promote=$policy read_promote_hits=2 >>"$LOG" 2>&1 || { log "set failed"; exit 1; }
  h0=$(st read_cache_hits) m0=$(st read_cache_misses) c0=$(st read_blocks_cache) o0=$(st read_blocks_home)
  log "fio 4k randread zipf:1.2 QD16, ${RUNTIME}s, read_promote=$policy"
  iops=$(fio --name=rr --filename="$BVDEV" --rw=randread --bs=4k --ioengine=libaio --iodepth=16 --direct=1 \
    --size=256M --random_distribution=zipf:1.2 --runtime="$RUNTIME" --time_based --randseed=42 \
    --output-format=json 2>>"$LOG" | python3 -c "import json,sys; print('%.0f' % json.load(sys.stdin)['jobs'][0]['read']['iops'])")
  h=$(($(st read_cache_hits) - h0)) m=$(($(st read_cache_misses) - m0))
  c=$(($(st read_blocks_cache) - c0)) o=$(($(st read_blocks_home) - o0))
  R[$policy.iops]=$iops
  R[$policy.hit]=$(python3 -c "print('%.3f' % ($h / max($h + $m, 1)))")
  R[$policy.home]=$(python3 -c "print('%.3f' % ($o / max($c + $o, 1)))")
  R[$policy.used]=$(($(st read_cache_blocks) * 4096 >> 20))
  R[$policy.prom]=$(st read_cache_promotions)
  log "  $iops IOPS, read cache hit ratio ${R[$policy.hit]}, share of blocks read home ${R[$policy.home]}"
done
ratio() { python3 -c "print('%.2f' % ($1 / max($2, 1)))"; }
cat <<EOF
| fio 4k randread zipf:1.2 QD16, ${RUNTIME} s, 256 MiB at home, 64 MiB read cache$( ((SLOWDISK)) && echo ", SLOW = 4 ms slow disk") | off | always | nhit (2) | always/off | nhit/off |
|---|---:|---:|---:|---:|---:|
| IOPS | ${R[off.iops]} | ${R[always.iops]} | ${R[nhit.iops]} | $(ratio "${R[always.iops]}" "${R[off.iops]}") | $(ratio "${R[nhit.iops]}" "${R[off.iops]}") |
| read cache hit ratio | ${R[off.hit]} | ${R[always.hit]} | ${R[nhit.hit]} | | |
| share of blocks read from home | ${R[off.home]} | ${R[always.home]} | ${R[nhit.home]} | | |
| read cache used at the end (MiB) | ${R[off.used]} | ${R[always.used]} | ${R[nhit.used]} | | |
EOF
