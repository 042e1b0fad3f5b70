#!/usr/bin/env bash
# bench/run.sh: boostvol beside the systems a user would pick instead, on the same directories, in the same run.
#
#   sudo bench/run.sh [--quick] [--runs N] [--runtime S] [--dir DIR] [--systems "raw qsd s3backer nbdkit boostvol"]
#                     [--no-slowdisk] [--no-local] [--keep]
#
# Writes docs/benchmarks/results.md (tables, machine, date) and docs/benchmarks/*.png, and prints the tables.
# Needs root (loop devices, mounts), bench/install-deps.sh, and a boostvol binary: $BOOSTVOL_BIN, else
# ./build/boostvol, which must be newer than every file in src/ and include/ (a stale build is refused).
#
# Systems (each exposes one 4 GiB image file; a loop device is attached to it):
#   raw       a plain file in FAST (no FUSE): the physical limit of this disk
#   qsd       qemu-storage-daemon FUSE export of a raw file in SLOW (FUSE, no cache)
#   s3backer  s3backer --test, bucket dir in SLOW, --blockCacheFile in FAST, write-back (--blockCacheWriteDelay)
#   nbdkit    nbdkit file plugin + cache filter (cache=writeback, TMPDIR=FAST) through nbdfuse
#   boostvol  boostvol create FAST SLOW --size 4G --cache-size 2G, mount
#   bvwbc     the same boostvol mounted with -o writeback_cache (docs/tuning.md "Writeback cache"), the option for a
#             buffered loop device: measured in the --direct-io=off part only (fio jobs; no untar, restart or cold read)
# Part 1, slow dir = a plain local directory (FAST and SLOW on the same disk), per system, per run:
#   both loop modes (--direct-io=on and off): fio libaio direct=1 on a 1 GiB region: 1M seq write QD16, 4k randwrite
#   QD16, 4k randread QD16 (of the data written before), 70/30 4k randrw QD16, 4k write + fsync each QD1, and a
#   crc32c verify pass (mixed 4k/64k/1M random writes at QD16, read back); CPU seconds of the daemons per GB written;
#   ext4 on the loop device: untar /usr/include x3, syncfs, verify the files; clean stop, restart (time), cold
#   4k randread QD16; boostvol: daemon RSS growth per dirty block.
# Part 2, slow dir = an emulated slow disk that is not ours: nbdkit file plugin + noparallel + delay (4 ms per read
#   and write) + rate (1200 Mbit/s) behind nbdfuse, a loop device and ext4. Measures the disk alone (4k randwrite
#   QD16, 4k write+fsync QD1, dd), then boostvol on it: sustained 4k randwrite over the whole image until the cache
#   is full (IOPS per second -> sustained.png), RSS per dirty block with the cache full, kill -9 with the cache full
#   and mount time (recovery), clean stop and mount time, drain of the backlog (MB/s), dd of a file 1.5x the cache.
# Part 3, boostvol's memory: RSS of two full daemons (caches of 512 MiB and 2 GiB, filled with distinct blocks) ->
#   bytes of daemon memory per cached block.
# Runs: default 3 runs of part 1 (medians, with min-max), 20 s per fio job: about 60-80 min on a 2-core VM (s3backer's
#   untar alone can take minutes). --quick: 1 run, 5 s per job, smaller slow-disk phase: about 10-15 min.
# Everything is torn down on exit, even on failure: ext4 umounted, loop devices detached, daemons stopped by the PIDs
# this script recorded, FUSE mounts lazily unmounted, DIR/run.PID removed (--keep keeps it). Unix sockets only.
set -uo pipefail
cd "$(dirname "$0")/.."
SRC=$PWD
PY=/usr/bin/python3   # Debian's python3, which has python3-matplotlib

QUICK=0 RUNS=3 RUNTIME=20 DIR=/var/tmp/boostvol-benchrun KEEP=0 DO_SLOW=1 DO_LOCAL=1
SYSTEMS="raw qsd s3backer nbdkit boostvol bvwbc"
while (($#)); do
  case $1 in
    --quick) QUICK=1 RUNS=1 RUNTIME=5 ;;
    --runs) RUNS=$2; shift ;;
    --runtime) RUNTIME=$2; shift ;;
    --dir) DIR=$2; shift ;;
    --systems) SYSTEMS=$2; shift ;;
    --no-slowdisk) DO_SLOW=0 ;;
    --no-local) DO_LOCAL=0 ;;
    --keep) KEEP=1 ;;
    -h | --help) sed -n '2,32p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1" >&2; exit 1 ;;
  esac
  shift
done
[[ $EUID -eq 0 ]] || { echo "needs root (loop devices, mounts): sudo $0" >&2; exit 1; }
BIN=${BOOSTVOL_BIN:-}
if [[ -z $BIN ]]; then
  BIN=$SRC/build/boostvol
  newer=$(find "$SRC/src" "$SRC/include" -newer "$BIN" -type f -print -quit 2>/dev/null)
  [[ -z $newer || ! -x $BIN ]] || { echo "$BIN is older than $newer: rebuild (ninja -C build) or set BOOSTVOL_BIN" >&2; exit 1; }
fi
[[ -x $BIN ]] || { echo "no boostvol binary: set BOOSTVOL_BIN or build (cmake -S . -B build -G Ninja && ninja -C build)" >&2; exit 1; }
for c in fio losetup qemu-storage-daemon s3backer nbdkit nbdfuse fusermount3 mkfs.ext4 tar timeout; do
  command -v "$c" >/dev/null || { echo "needs $c: sudo bench/install-deps.sh" >&2; exit 1; }
done
$PY -c 'import matplotlib' 2>/dev/null || { echo "needs python3-matplotlib: sudo bench/install-deps.sh" >&2; exit 1; }

IMAGE_SIZE=4G IMAGE_BYTES=$((4 << 30)) REGION=1G CACHE=2G
if ((QUICK)); then SCACHE_MB=512 SUST=60 UNTAR_N=1 UNTAR_TIMEOUT=240 PREFILL_MB=256 DRAIN_TIMEOUT=600
else SCACHE_MB=2048 SUST=240 UNTAR_N=3 UNTAR_TIMEOUT=1200 PREFILL_MB=1024 DRAIN_TIMEOUT=3600; fi
DD_MB=$((SCACHE_MB * 3 / 2))
OUTDIR=$SRC/docs/benchmarks
WORK=$DIR/run.$$
RES=$WORK/results.tsv
LOG=$WORK/bench.log
mkdir -p "$WORK" "$OUTDIR"
: >"$RES"
T0=$(date +%s)

# ---- bookkeeping for cleanup: everything we create is recorded, and only that is torn down ----
LOOPS=() FSMOUNTS=() FUSEMOUNTS=() PIDS=()
log() { printf '[%4ds] %s\n' $(($(date +%s) - T0)) "$*" | tee -a "$LOG" >&2; }
rec() { printf '%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" "$5" >>"$RES"; }   # run system mode key value
# a process is gone once /proc/PID is gone or only its zombie leader is left (our own children stay zombies until
# waited for); a zombie leader whose other threads still exit (kill -9 of a daemon with threads blocked in I/O on a
# slow disk) is not gone: those threads still hold its files and its lock
alive() {
  [[ -e /proc/$1 ]] || return 1
  [[ $(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) != Z ]] && return 0
  (($(ls "/proc/$1/task" 2>/dev/null | wc -l) > 1))
}
wait_gone() {  # PID TIMEOUT_S: 0 once gone
  local i
  for ((i = 0; i < $2 * 10; i++)); do alive "$1" || { wait "$1" 2>/dev/null; return 0; }; sleep 0.1; done
  return 1
}
stop_pid() {  # PID: TERM, then KILL after 30 s
  local p=$1
  alive "$p" || return 0
  kill -TERM "$p" 2>/dev/null
  wait_gone "$p" 30 || { kill -KILL "$p" 2>/dev/null; wait_gone "$p" 10; }
}
forget() { local -n arr=$1; local x=$2 i; for i in "${!arr[@]}"; do [[ ${arr[$i]} == "$x" ]] && unset "arr[$i]"; done; }
cleanup() {
  set +e
  trap - EXIT INT TERM
  local x
  for x in "${FSMOUNTS[@]}"; do timeout 60 umount "$x" 2>/dev/null || umount -l "$x" 2>/dev/null; done
  for x in "${LOOPS[@]}"; do timeout 30 losetup -d "$x" 2>/dev/null; done
  for x in "${FUSEMOUNTS[@]}"; do mountpoint -q "$x" 2>/dev/null && { timeout 60 fusermount3 -u "$x" 2>/dev/null || fusermount3 -uz "$x" 2>/dev/null || umount -l "$x"; }; done
  for x in "${PIDS[@]}"; do stop_pid "$x"; done
  # second pass: FUSE mounts whose daemon only went away now (the slow disk under boostvol's SLOW)
  for x in "${FSMOUNTS[@]}"; do umount -l "$x" 2>/dev/null; done
  for x in "${LOOPS[@]}"; do losetup -d "$x" 2>/dev/null; done
  for x in "${FUSEMOUNTS[@]}"; do findmnt -n "$x" >/dev/null 2>&1 && umount -l "$x"; done
  if ((KEEP)); then echo "kept $WORK" >&2; else rm -rf --one-file-system "$WORK"; rmdir "$DIR" 2>/dev/null; fi
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT TERM

wait_mounted() {  # PATH PID TIMEOUT_S: PATH shows up as a mount (FUSE) while PID lives
  local i
  for ((i = 0; i < $3 * 10; i++)); do
    findmnt -n "$1" >/dev/null 2>&1 && return 0
    [[ -n $2 ]] && ! alive "$2" && return 1
    sleep 0.1
  done
  return 1
}
attach() {  # IMG MODE -> sets DEV; records the loop's real dio state in DIO
  DEV=$(timeout 60 losetup -f --show --direct-io="$2" "$1") || { DEV=; return 1; }
  LOOPS+=("$DEV")
  DIO=$(cat "/sys/block/${DEV#/dev/}/loop/dio" 2>/dev/null || echo '?')
}
detach() { [[ -n ${1:-} ]] || return 0; timeout 60 losetup -d "$1"; forget LOOPS "$1"; }
ticks() {  # summed utime+stime (clock ticks) of the PIDs
  local p s=0 t
  for p in "$@"; do t=$(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null) && s=$((s + t)); done
  echo "$s"
}
rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
evict() {  # drop the page cache of the files under the dirs (after sync): a targeted "cold" without drop_caches
  sync
  $PY - "$@" <<'EOF'
import os, sys
for d in sys.argv[1:]:
    for root, _, files in os.walk(d):
        for f in files:
            try:
                fd = os.open(os.path.join(root, f), os.O_RDONLY | os.O_NOFOLLOW)
            except OSError:
                continue
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            except OSError:
                pass
            os.close(fd)
EOF
}

# fio_json FILE RW -> prints "iops MBps io_bytes errors" of the job (read+write for randrw)
fio_parse() {
  $PY - "$1" "$2" <<'EOF'
import json, sys
path, rw = sys.argv[1:]
t = open(path).read()
try:
    j = json.loads(t[t.index("{"):])["jobs"][0]
except Exception:
    print("FAIL FAIL 0 1"); sys.exit()
dirs = ["read", "write"] if rw == "rw" else [rw]
iops = sum(j[d]["iops"] for d in dirs)
bw = sum(j[d]["bw_bytes"] for d in dirs) / 1e6
io = sum(j[d]["io_bytes"] for d in dirs)
print(f"{iops:.0f} {bw:.1f} {j['write']['io_bytes']} {j.get('error', 0)}")
EOF
}
# quiesce: every job, of every system, starts on a quiet disk: what earlier jobs or the previous system left in the
# page cache (buffered writes, a deleted work dir) is written back first, not during the job (which system came
# next used to pay for it).
quiesce() { timeout 120 sync; sleep 1; }
# settle SYSTEM MODE: before each fio job of part 1, boostvol's log is drained home (not timed). The jobs run back
# to back, and 5 s of 1M writes (seqlong) is more than the 2 GiB log: without this, the job after it would measure the
# migrator emptying a full cache, not the job (the full-cache case is measured on its own with the slow disk).
# Not before coldread (mode "-"): that job reads what the log still holds after a restart.
settle() {
  [[ ($1 == boostvol || $1 == bvwbc) && $2 != - && -n $IMG ]] || return 0
  timeout 900 "$BIN" drain "$(dirname "$IMG")" >>"$WORK/boostvol.cli.log" 2>&1 || log "  boostvol drain before the job failed"
}
# run_fio RUN SYSTEM MODE JOB DEV [DAEMON_PIDS...]: one fio job; records the figure (and CPU s/GB for writes)
run_fio() {
  local run=$1 sys=$2 mode=$3 job=$4 dev=$5; shift 5
  local json=$WORK/fio-$sys-$mode-$job.json rw val
  local -a a=(--name="$job" --filename="$dev" --direct=1 --ioengine=libaio --size="$REGION" --output-format=json)
  # Every job but seqwrite runs for RUNTIME seconds. seqwrite writes the region once: 1 GiB, which every system's
  # cache holds; seqlong writes it over and over for RUNTIME seconds (5 s at 1.5 GB/s is 3.5 times boostvol's
  # 2 GiB log, so there the migrator sets the pace; nbdkit's cache file grows without bound).
  [[ $job == seqwrite ]] || a+=(--time_based --runtime="$RUNTIME")
  case $job in
    seqwrite | seqlong) a+=(--rw=write --bs=1M --iodepth=16); rw=write ;;
    randwrite) a+=(--rw=randwrite --bs=4k --iodepth=16); rw=write ;;
    randread | coldread) a+=(--rw=randread --bs=4k --iodepth=16); rw=read ;;
    randrw) a+=(--rw=randrw --rwmixread=70 --bs=4k --iodepth=16); rw=rw ;;
    fsyncwrite) a+=(--rw=randwrite --bs=4k --iodepth=1 --fsync=1); rw=write ;;
    verify)
      a=(--name=verify --filename="$dev" --direct=1 --ioengine=libaio --offset=1G --size=64M --rw=randwrite
        --bssplit=4k/60:64k/30:1m/10 --iodepth=16 --verify=crc32c --do_verify=1 --verify_fatal=1
        --verify_backlog=0 --output-format=json)
      rw=write ;;
  esac
  local c0 c1 out
  settle "$sys" "$mode"
  quiesce
  c0=$(ticks "$@")
  if ! timeout $((RUNTIME * 3 + 600)) fio "${a[@]}" >"$json" 2>"$json.err"; then
    log "  $sys dio=$mode $job: FIO FAILED: $(grep -v '^$' "$json.err" | tail -n 2 | tr '\n' ' ')"
    rec "$run" "$sys" "$mode" "$job" FAIL
    return 1
  fi
  c1=$(ticks "$@")
  read -r iops mbs wbytes err <<<"$(fio_parse "$json" "$rw")"
  if [[ $job == verify ]]; then
    val=$([[ $err == 0 ]] && echo ok || echo FAIL)
  elif [[ $job == seqwrite || $job == seqlong ]]; then val=$mbs
  else val=$iops; fi
  rec "$run" "$sys" "$mode" "$job" "$val"
  if (($# > 0)) && [[ $job == seqwrite || $job == randwrite ]] && ((wbytes > 0)); then
    rec "$run" "$sys" "$mode" "cpu_$job" "$(awk -v t=$((c1 - c0)) -v hz="$(getconf CLK_TCK)" -v b="$wbytes" 'BEGIN { printf "%.2f", t / hz / (b / 1e9) }')"
  fi
  log "  $sys dio=$mode $job: $val"
}

# ---- the systems: start_X FASTDIR SLOWDIR MNT sets IMG and DPIDS; stop_X stops it cleanly ----
IMG= DPIDS=()
start_raw() { IMG=$1/raw.img; [[ -e $IMG ]] || truncate -s "$IMAGE_SIZE" "$IMG"; DPIDS=(); }
stop_raw() { sync; }
start_qsd() {
  local f=$1 s=$2 m=$3
  [[ -e $s/qsd.img ]] || truncate -s "$IMAGE_SIZE" "$s/qsd.img"
  IMG=$m/qsd.img; : >"$IMG"
  qemu-storage-daemon --blockdev driver=file,node-name=img0,filename="$s/qsd.img",cache.direct=on,aio=native \
    --export type=fuse,id=exp0,node-name=img0,mountpoint="$IMG",writable=on >>"$WORK/qsd.log" 2>&1 &
  local p=$!; PIDS+=("$p"); FUSEMOUNTS+=("$IMG"); DPIDS=("$p")
  wait_mounted "$IMG" "$p" 60
}
stop_qsd() { stop_pid "${DPIDS[0]}"; forget PIDS "${DPIDS[0]}"; mountpoint -q "$IMG" && fusermount3 -u "$IMG"; forget FUSEMOUNTS "$IMG"; }
start_s3backer() {
  local f=$1 s=$2 m=$3
  mkdir -p "$s/s3b-bucket"
  s3backer --test --size=4G --blockSize=64k --filename=image --blockCacheFile="$f/s3b.cache" --blockCacheSize=65536 \
    --blockCacheWriteDelay=5000 --blockCacheThreads=64 --blockCacheRecoverDirtyBlocks -o big_writes -f \
    "$s/s3b-bucket" "$m" >>"$WORK/s3backer.log" 2>&1 &
  local p=$!; PIDS+=("$p"); FUSEMOUNTS+=("$m"); DPIDS=("$p"); IMG=$m/image
  wait_mounted "$m" "$p" 60
}
stop_s3backer() {  # s3backer writes its dirty blocks back before it exits
  local m; m=$(dirname "$IMG")
  timeout 900 fusermount3 -u "$m"; forget FUSEMOUNTS "$m"
  wait_gone "${DPIDS[0]}" 900 || stop_pid "${DPIDS[0]}"; forget PIDS "${DPIDS[0]}"
}
start_nbdkit() {
  local f=$1 s=$2 m=$3 sock=$WORK/nbdkit.sock
  [[ -e $s/nbdkit.img ]] || truncate -s "$IMAGE_SIZE" "$s/nbdkit.img"
  rm -f "$sock"
  TMPDIR=$f nbdkit -f --unix "$sock" --filter=cache file file="$s/nbdkit.img" cache=writeback cache-on-read=false \
    >>"$WORK/nbdkit.log" 2>&1 &
  local p=$!; PIDS+=("$p")
  local i; for ((i = 0; i < 300; i++)); do [[ -S $sock ]] && break; sleep 0.1; done
  nbdfuse "$m/image" --unix "$sock" >>"$WORK/nbdfuse.log" 2>&1 &
  local q=$!; PIDS+=("$q"); FUSEMOUNTS+=("$m"); DPIDS=("$p" "$q"); IMG=$m/image
  wait_mounted "$m" "$q" 60
}
stop_nbdkit() {  # flush (the cache filter writes its dirty blocks to the plugin on flush), then unmount and stop
  local m; m=$(dirname "$IMG")
  timeout 600 "$PY" -c 'import os,sys; fd=os.open(sys.argv[1], os.O_RDWR); os.fsync(fd)' "$IMG"
  timeout 120 fusermount3 -u "$m"; forget FUSEMOUNTS "$m"
  wait_gone "${DPIDS[1]}" 60 || stop_pid "${DPIDS[1]}"
  stop_pid "${DPIDS[0]}"; forget PIDS "${DPIDS[0]}"; forget PIDS "${DPIDS[1]}"
}
BV_CACHE=$CACHE BV_OPTS=""
start_boostvol() {
  local f=$1 s=$2 m=$3
  [[ -e $f/meta.db ]] || timeout 300 "$BIN" create "$f" "$s" --size "$IMAGE_SIZE" --cache-size "$BV_CACHE" >>"$WORK/boostvol.cli.log" 2>&1 || return 1
  FUSEMOUNTS+=("$m")
  timeout 900 "$BIN" mount "$f" "$m" ${BV_OPTS:+-o "$BV_OPTS"} >>"$WORK/boostvol.cli.log" 2>&1 || return 1
  local p; p=$(awk '/pid/ {print $2}' "$f/lock" 2>/dev/null)
  [[ -n $p ]] && alive "$p" || { log "boostvol: no daemon pid in $f/lock"; return 1; }
  PIDS+=("$p"); DPIDS=("$p"); IMG=$m/image
}
stop_boostvol() {
  local m; m=$(dirname "$IMG")
  timeout 900 "$BIN" unmount "$m" >>"$WORK/boostvol.cli.log" 2>&1 || { log "boostvol unmount failed"; mountpoint -q "$m" && fusermount3 -uz "$m"; }
  forget FUSEMOUNTS "$m"
  wait_gone "${DPIDS[0]}" 120 || stop_pid "${DPIDS[0]}"; forget PIDS "${DPIDS[0]}"
}
start_bvwbc() { BV_OPTS=writeback_cache; start_boostvol "$@"; local rc=$?; BV_OPTS=""; return $rc; }
stop_bvwbc() { stop_boostvol; }
bv_status() { timeout 60 "$BIN" status "$1" --json 2>/dev/null; }
json_get() { $PY -c 'import json,sys; print(json.loads(sys.stdin.read() or "{}").get(sys.argv[1], ""))' "$1"; }

# ---- the reference tree for the untar job ----
TARBALL=$WORK/include.tar
tar -C /usr -cf "$TARBALL" include 2>/dev/null
(cd /usr && find include -type f -print0 | sort -z | xargs -0 sha256sum) >"$WORK/include.sha256"
log "untar tree: /usr/include, $(du -sh "$TARBALL" | cut -f1), $(wc -l <"$WORK/include.sha256") files"

untar_job() {  # RUN SYS DEV: mkfs.ext4, mount, untar x N, syncfs, verify
  local run=$1 sys=$2 dev=$3 fs=$WORK/ext4 i t0 t1 ok=ok
  mkdir -p "$fs"
  timeout 300 mkfs.ext4 -q -F -E nodiscard,lazy_itable_init=1,lazy_journal_init=1 "$dev" || { rec "$run" "$sys" - untar FAIL; return 1; }
  timeout 60 mount -o noinit_itable "$dev" "$fs" || { rec "$run" "$sys" - untar FAIL; return 1; }
  FSMOUNTS+=("$fs")
  t0=$(date +%s.%N)
  # the whole untar x N + syncfs under one timeout: a system slower than that is reported as ">TIMEOUT s"
  if ! timeout "$UNTAR_TIMEOUT" bash -c 'for ((i = 1; i <= $2; i++)); do mkdir -p "$1/t$i" && tar -C "$1/t$i" -xf "$3" || exit 1; done; sync -f "$1"' \
      _ "$fs" "$UNTAR_N" "$TARBALL"; then
    rec "$run" "$sys" - untar "TIMEOUT>$UNTAR_TIMEOUT"
    log "  $sys untar x$UNTAR_N + syncfs: timed out or failed after $UNTAR_TIMEOUT s"
    sync -f "$fs"; timeout 600 umount "$fs" || umount -l "$fs"; forget FSMOUNTS "$fs"
    return 1
  fi
  t1=$(date +%s.%N)
  timeout 120 umount "$fs"; forget FSMOUNTS "$fs"
  # verify after a remount (reads come back through the system)
  if timeout 60 mount -o ro "$dev" "$fs"; then
    FSMOUNTS+=("$fs")
    for ((i = 1; i <= UNTAR_N; i++)); do (cd "$fs/t$i" && timeout 600 sha256sum --quiet -c "$WORK/include.sha256" >/dev/null 2>&1) || ok=FAIL; done
    timeout 120 umount "$fs"; forget FSMOUNTS "$fs"
  else ok=FAIL; fi
  rec "$run" "$sys" - untar "$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')"
  rec "$run" "$sys" - untar_verify "$ok"
  log "  $sys untar x$UNTAR_N + syncfs: $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }') s, verify $ok"
}

# ---- part 1: per system, slow dir = local dir ----
bench_system() {  # RUN SYS
  local run=$1 sys=$2 base=$WORK/$2 mode job t0 t1 rss0 rss1 st dirty modes="on off"
  rm -rf --one-file-system "$base"; mkdir -p "$base/fast" "$base/slow" "$base/mnt"
  quiesce
  [[ $sys == boostvol || $sys == bvwbc ]] && BV_CACHE=$CACHE
  [[ $sys == bvwbc ]] && modes=off
  log "run $run: $sys: start"
  t0=$(date +%s.%N)
  "start_$sys" "$base/fast" "$base/slow" "$base/mnt" || { log "$sys failed to start"; rec "$run" "$sys" - start FAIL; return 1; }
  t1=$(date +%s.%N)
  rec "$run" "$sys" - mount_fresh "$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')"
  [[ $sys == boostvol ]] && rss0=$(rss_kb "${DPIDS[0]}")
  for mode in $modes; do
    attach "$IMG" "$mode" || { log "$sys: losetup failed"; rec "$run" "$sys" "$mode" start FAIL; continue; }
    rec "$run" "$sys" "$mode" dio "$DIO"
    [[ $mode == on && $DIO != 1 ]] && log "  $sys: --direct-io=on fell back to buffered (dio=$DIO)"
    for job in seqwrite seqlong randwrite randread randrw fsyncwrite verify; do
      run_fio "$run" "$sys" "$mode" "$job" "$DEV" "${DPIDS[@]}"
      if [[ $sys == boostvol && $mode == on && $job == randwrite ]]; then
        rss1=$(rss_kb "${DPIDS[0]}"); st=$(bv_status "$base/mnt"); dirty=$(json_get dirty_blocks <<<"$st")
        rec "$run" "$sys" - dirty_blocks_local "$dirty"
        ((${dirty:-0} > 0)) && rec "$run" "$sys" - rss_per_block_local "$(((rss1 - rss0) * 1024 / dirty))"
      fi
    done
    detach "$DEV"
  done
  if [[ $sys == bvwbc ]]; then "stop_$sys"; rm -rf --one-file-system "$base"; return 0; fi
  attach "$IMG" on && { untar_job "$run" "$sys" "$DEV"; detach "$DEV"; }
  t0=$(date +%s.%N); "stop_$sys"; t1=$(date +%s.%N)
  rec "$run" "$sys" - stop_s "$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')"
  evict "$base/fast" "$base/slow"
  t0=$(date +%s.%N)
  "start_$sys" "$base/fast" "$base/slow" "$base/mnt" || { log "$sys failed to restart"; rec "$run" "$sys" - coldread FAIL; return 1; }
  t1=$(date +%s.%N)
  rec "$run" "$sys" - mount_clean_s "$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')"
  attach "$IMG" on && { run_fio "$run" "$sys" - coldread "$DEV"; detach "$DEV"; }
  "stop_$sys"
  rm -rf --one-file-system "$base"
}

# ---- part 2: the emulated slow disk ----
slowdisk_up() {
  local d=$WORK/slowdisk sock=$WORK/slowdisk.sock
  mkdir -p "$d/mnt" "$WORK/slowfs"
  truncate -s 16G "$d/disk.img"
  nbdkit -f --unix "$sock" --filter=noparallel --filter=delay --filter=rate file file="$d/disk.img" \
    delay-read=4ms delay-write=4ms rate=1200M >>"$WORK/slowdisk-nbdkit.log" 2>&1 &
  local p=$!; PIDS+=("$p"); SD_PIDS=("$p")
  local i; for ((i = 0; i < 300; i++)); do [[ -S $sock ]] && break; sleep 0.1; done
  nbdfuse "$d/mnt/disk" --unix "$sock" >>"$WORK/slowdisk-nbdfuse.log" 2>&1 &
  p=$!; PIDS+=("$p"); FUSEMOUNTS+=("$d/mnt"); SD_PIDS+=("$p")
  wait_mounted "$d/mnt" "$p" 60 || return 1
  attach "$d/mnt/disk" on || return 1
  SD_DEV=$DEV
  log "slow disk: $SD_DEV (dio=$DIO) over nbdfuse over nbdkit file+noparallel+delay 4ms+rate 1200M"
  timeout 600 mkfs.ext4 -q -F -E nodiscard,lazy_itable_init=1,lazy_journal_init=1 "$SD_DEV" || return 1
  timeout 120 mount -o noinit_itable "$SD_DEV" "$WORK/slowfs" || return 1
  FSMOUNTS+=("$WORK/slowfs")
}
slowdisk_down() {
  timeout 300 umount "$WORK/slowfs" && forget FSMOUNTS "$WORK/slowfs"
  detach "$SD_DEV"
  timeout 60 fusermount3 -u "$WORK/slowdisk/mnt" && forget FUSEMOUNTS "$WORK/slowdisk/mnt"
  local p; for p in "${SD_PIDS[@]}"; do wait_gone "$p" 10 || stop_pid "$p"; forget PIDS "$p"; done
}
# dd_stream MB TARGET: writes MB MiB of incompressible data (a 64 MiB random chunk repeated) with O_DIRECT + fsync
dd_stream() {
  local mb=$1 target=$2 n i
  [[ -e $WORK/chunk ]] || head -c $((64 << 20)) /dev/urandom >"$WORK/chunk"
  n=$(((mb + 63) / 64))
  local t0 t1
  t0=$(date +%s.%N)
  { for ((i = 0; i < n; i++)); do cat "$WORK/chunk"; done; } |
    timeout 3600 dd of="$target" bs=1M count="$mb" iflag=fullblock oflag=direct conv=fsync,notrunc status=none || return 1
  t1=$(date +%s.%N)
  awk -v a="$t0" -v b="$t1" -v mb="$mb" 'BEGIN { printf "%.1f %.2f", mb * 1048576 / 1e6 / (b - a), b - a }'
}
bench_slowdisk() {
  local run=1 f=$WORK/sfast s=$WORK/slowfs/bv m=$WORK/smnt out st dirty rss0 rss1 p t0 t1
  slowdisk_up || { log "slow disk setup failed"; rec 1 slowdisk - setup FAIL; return 1; }
  local save=$RUNTIME; ((RUNTIME < 20)) && RUNTIME=20
  # the disk alone: a 1 GiB file on its ext4
  log "slow disk alone"
  out=$(dd_stream "$PREFILL_MB" "$WORK/slowfs/alone.img") && rec 1 slowdisk - prefill_MBps "${out% *}"
  REGION=${PREFILL_MB}M run_fio 1 slowdisk - randwrite "$WORK/slowfs/alone.img"
  REGION=${PREFILL_MB}M run_fio 1 slowdisk - fsyncwrite "$WORK/slowfs/alone.img"
  rm -f "$WORK/slowfs/alone.img"; sync -f "$WORK/slowfs"
  out=$(dd_stream "$DD_MB" "$WORK/slowfs/dd.img") && { rec 1 slowdisk - dd_MBps "${out% *}"; log "  slow disk dd ${DD_MB} MiB: ${out% *} MB/s"; }
  rm -f "$WORK/slowfs/dd.img"; sync -f "$WORK/slowfs"
  RUNTIME=$save
  # boostvol on it
  mkdir -p "$f" "$s" "$m"
  BV_CACHE=${SCACHE_MB}M
  log "boostvol on the slow disk: cache ${SCACHE_MB} MiB, sustained 4k randwrite QD16 over the whole image for ${SUST} s"
  start_boostvol "$f" "$s" "$m" || { rec 1 bvslow - start FAIL; slowdisk_down; return 1; }
  rss0=$(rss_kb "${DPIDS[0]}")
  attach "$IMG" on || return 1
  local bvdev=$DEV
  # status sampler: one line per second
  # (and the daemon's RSS in sust-rss.tsv, same timestamps: the marginal memory per dirty block between two fill levels)
  local dpid=${DPIDS[0]}
  ( while :; do
      ts=$(date +%s.%N); printf '%s\t%s\n' "$ts" "$(bv_status "$m")" >>"$WORK/sust-status.tsv"
      printf '%s\t%s\n' "$ts" "$(rss_kb "$dpid")" >>"$WORK/sust-rss.tsv"; sleep 1
    done ) 2>/dev/null &
  local sampler=$!; PIDS+=("$sampler")
  local c0 c1; c0=$(ticks "${DPIDS[0]}")
  date +%s.%N >"$WORK/sust-start"
  timeout $((SUST + 120)) fio --name=sustained --filename="$bvdev" --direct=1 --ioengine=libaio --rw=randwrite --bs=4k \
    --iodepth=16 --size="$IMAGE_SIZE" --time_based --runtime="$SUST" --write_iops_log="$WORK/sust" --log_avg_msec=1000 \
    --output-format=json >"$WORK/sust.json" 2>"$WORK/sust.err" || log "  sustained fio failed: $(tail -n 2 "$WORK/sust.err")"
  c1=$(ticks "${DPIDS[0]}")
  stop_pid "$sampler"; forget PIDS "$sampler"
  read -r iops _ wbytes _ <<<"$(fio_parse "$WORK/sust.json" write)"
  rec 1 bvslow - sust_iops_avg "$iops"
  ((wbytes > 0)) && rec 1 bvslow - cpu_randwrite "$(awk -v t=$((c1 - c0)) -v hz="$(getconf CLK_TCK)" -v b="$wbytes" 'BEGIN { printf "%.2f", t / hz / (b / 1e9) }')"
  st=$(bv_status "$m"); dirty=$(json_get dirty_blocks <<<"$st"); rss1=$(rss_kb "${DPIDS[0]}")
  rec 1 bvslow - dirty_blocks "$dirty"; rec 1 bvslow - rss0_kb "$rss0"; rec 1 bvslow - rss1_kb "$rss1"
  rec 1 bvslow - log_used "$(json_get log_used_blocks <<<"$st")/$(json_get log_total_blocks <<<"$st")"
  ((${dirty:-0} > 0)) && rec 1 bvslow - rss_per_block "$(((rss1 - rss0) * 1024 / dirty))"
  log "  sustained: avg $iops IOPS; dirty blocks $dirty; RSS $rss0 -> $rss1 KiB"
  # kill -9 with the cache full, then mount (recovery)
  detach "$bvdev"
  p=${DPIDS[0]}
  kill -KILL "$p"; wait_gone "$p" 300 || log "  daemon $p still alive 300 s after kill -9"; forget PIDS "$p"
  findmnt -n "$m" >/dev/null 2>&1 && { fusermount3 -uz "$m" || umount -l "$m"; }
  forget FUSEMOUNTS "$m"
  t0=$(date +%s.%N)
  if ! start_boostvol "$f" "$s" "$m"; then
    log "  mount after kill -9 failed: $(tail -n 3 "$WORK/boostvol.cli.log" | tr '\n' ' ')"
    rec 1 bvslow - mount_kill9_s FAIL; slowdisk_down; return 1
  fi
  t1=$(date +%s.%N)
  rec 1 bvslow - mount_kill9_s "$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')"
  st=$(bv_status "$m"); rec 1 bvslow - dirty_after_kill9 "$(json_get dirty_blocks <<<"$st")"
  log "  mount after kill -9 with a full cache: $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }') s"
  t0=$(date +%s.%N); stop_boostvol; t1=$(date +%s.%N)
  rec 1 bvslow - stop_s "$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')"
  t0=$(date +%s.%N); start_boostvol "$f" "$s" "$m" || { rec 1 bvslow - mount_clean_s FAIL; slowdisk_down; return 1; }; t1=$(date +%s.%N)
  rec 1 bvslow - mount_clean_s "$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')"
  log "  mount after a clean stop with a full cache: $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }') s"
  # drain the backlog
  st=$(bv_status "$m"); dirty=$(json_get dirty_blocks <<<"$st")
  t0=$(date +%s.%N)
  if timeout "$DRAIN_TIMEOUT" "$BIN" drain "$m" >"$WORK/drain.out" 2>&1; then
    t1=$(date +%s.%N)
    rec 1 bvslow - drain_s "$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')"
    rec 1 bvslow - drain_MBps "$(awk -v a="$t0" -v b="$t1" -v d="$dirty" 'BEGIN { printf "%.1f", d * 4096 / 1e6 / (b - a) }')"
    rec 1 bvslow - drain_blocks "$dirty"
    log "  drain of $dirty dirty blocks: $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }') s"
  else rec 1 bvslow - drain_s "FAIL/TIMEOUT>${DRAIN_TIMEOUT}"; log "  drain failed or timed out: $(tail -n 2 "$WORK/drain.out" | tr '\n' ' ')"; fi
  rec 1 bvslow - migrated_bytes_end "$(json_get migrated_bytes <<<"$(bv_status "$m")")"
  # dd of more than the cache
  attach "$IMG" on && {
    out=$(dd_stream "$DD_MB" "$DEV") && { rec 1 bvslow - dd_MBps "${out% *}"; log "  boostvol dd ${DD_MB} MiB: ${out% *} MB/s"; } || rec 1 bvslow - dd_MBps FAIL
    detach "$DEV"; }
  stop_boostvol
  slowdisk_down
}

# ---- part 3: daemon memory per cached block ----
# Two volumes with caches of 512 MiB and 2 GiB, migration held off (tunables), each filled to 90% of its log with
# distinct 4 KiB blocks (fio's random map writes every block of the region once). Memory per cached block is the RSS
# difference of the two full daemons over the difference in cached blocks: what each block of cache costs, the
# block index included, while the fixed part (the binary, SQLite) cancels out. The log writer's record buffers are
# fixed too (64 MiB at most) but come into RAM as a fill first uses them, 2 MiB huge page at a time, more in one
# fill than in another: the daemon reports them (status log_buffer_resident_bytes) and they are taken out.
mem_fill() {  # TAG CACHE: records bvmem TAG_dirty, TAG_rss_mount_kb, TAG_rss_full_kb
  local tag=$1 c=$2 f=$WORK/mem-$1/fast s=$WORK/mem-$1/slow m=$WORK/mem-$1/mnt tot dirty rss0 rss1 st pool
  mkdir -p "$f" "$s" "$m"
  timeout 300 "$BIN" create "$f" "$s" --size "$IMAGE_SIZE" --cache-size "$c" >>"$WORK/boostvol.cli.log" 2>&1 || return 1
  timeout 60 "$BIN" set "$f" idle_migrate_ms=86400000 migrate_start_fraction=1 >>"$WORK/boostvol.cli.log" 2>&1 || return 1
  start_boostvol "$f" "$s" "$m" || return 1
  rss0=$(rss_kb "${DPIDS[0]}")
  tot=$(json_get log_total_blocks <<<"$(bv_status "$m")")
  attach "$IMG" on || { stop_boostvol; return 1; }
  timeout 600 fio --name=memfill --filename="$DEV" --direct=1 --ioengine=libaio --rw=randwrite --bs=4k --iodepth=16 \
    --size=$((tot * 9 / 10 * 4))k --output-format=terse >/dev/null 2>>"$WORK/mem.err" || log "  memory fill ($tag) fio failed"
  detach "$DEV"
  st=$(bv_status "$m"); dirty=$(json_get dirty_blocks <<<"$st"); rss1=$(rss_kb "${DPIDS[0]}")
  pool=$(($(json_get log_buffer_resident_bytes <<<"$st") / 1024))
  stop_boostvol
  rec 1 bvmem - "${tag}_cache" "$c"; rec 1 bvmem - "${tag}_dirty" "$dirty"
  rec 1 bvmem - "${tag}_rss_mount_kb" "$rss0"; rec 1 bvmem - "${tag}_rss_full_kb" "$rss1"
  rec 1 bvmem - "${tag}_pool_kb" "$pool"
  log "  memory: cache $c, $dirty distinct blocks cached, daemon RSS $rss0 KiB at mount -> $rss1 KiB full" \
    "(record buffers in RAM: $pool KiB)"
  rm -rf --one-file-system "$WORK/mem-$tag"
}
bench_memory() {
  log "daemon memory per cached block (two cache sizes, filled with distinct blocks, migration held off)"
  mem_fill small 512M && mem_fill big 2G
}

describe() {
  local src fs dev
  src=$(df --output=source "$DIR" | tail -n1); fs=$(df --output=fstype "$DIR" | tail -n1)
  dev=$(lsblk -no pkname "$src" 2>/dev/null | head -n1); dev=${dev:-${src#/dev/}}
  {
    echo "date	$(date '+%Y-%m-%d %H:%M %Z')"
    echo "cpu	$(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(free -g | awk '/Mem:/ {print $2}') GiB RAM"
    echo "kernel	$(uname -r)"
    echo "disk	$src ($fs) on $(lsblk -dno NAME,SIZE,ROTA,MODEL "/dev/$dev" 2>/dev/null | tr -s ' ' | sed 's/ $//') (ROTA 0 = non-rotational)"
    echo "versions	$(fio --version), $(qemu-storage-daemon --version | head -n1 | cut -d'(' -f1), $(s3backer --version 2>&1 | head -n1), $(nbdkit --version), $(nbdfuse --version 2>&1 | head -n1)"
    echo "boostvol	$BIN, commit $(git -C "$SRC" rev-parse --short HEAD 2>/dev/null)$(git -C "$SRC" diff --quiet HEAD -- src include 2>/dev/null || echo ' + uncommitted engine changes'), built $(date -r "$BIN" '+%Y-%m-%d %H:%M')"
    echo "params	runs=$RUNS runtime=${RUNTIME}s quick=$QUICK untar_n=$UNTAR_N untar_timeout=${UNTAR_TIMEOUT}s slow_cache=${SCACHE_MB}MiB sust=${SUST}s dd=${DD_MB}MiB systems=$SYSTEMS"
  } >"$WORK/machine.tsv"
}

describe
echo "load_start	$(cut -d' ' -f1-3 /proc/loadavg)" >>"$WORK/machine.tsv"
log "boostvol bench: $SYSTEMS; runs $RUNS, ${RUNTIME}s per job; work dir $WORK"
if ((DO_LOCAL)); then
  for ((r = 1; r <= RUNS; r++)); do
    for sys in $SYSTEMS; do bench_system "$r" "$sys" || log "$sys: run $r incomplete"; done
  done
fi
((DO_SLOW)) && { bench_slowdisk || log "slow-disk phase incomplete"; }
((DO_LOCAL)) && { bench_memory || log "memory phase incomplete"; }
echo "load_end	$(cut -d' ' -f1-3 /proc/loadavg)" >>"$WORK/machine.tsv"
echo "elapsed	$(($(date +%s) - T0)) s" >>"$WORK/machine.tsv"
cp "$RES" "$OUTDIR/results.tsv"
$PY "$SRC/bench/report.py" "$RES" "$WORK/machine.tsv" "$WORK" "$OUTDIR" || { log "report failed"; exit 1; }
cat "$OUTDIR/results.md"
