#!/usr/bin/env bash
# bench/rbd-compare.sh: boostvol with an RBD home vs qemu-storage-daemon exporting the same kind of RBD image over
# FUSE (driver=rbd: what a user has without boostvol), and boostvol with a directory home (FAST and SLOW local
# directories, same sizes and tunables: the issue's "fsync at QD1 as fast as with a directory home"), all behind a
# direct-io loop device, on a throwaway single-node cluster (tests/lib/ceph_cluster.sh). Needs root, fio, qemu-storage-daemon + qemu-block-extra
# (block-rbd), the Ceph packages (scripts/install-ceph.sh). Prints a Markdown table (4k random writes while the
# cache has room and until it fills), and the RBD volume's drain
# rate and its daemon's peak RSS during the drain (VmHWM, reset with clear_refs just before).
#   sudo bench/rbd-compare.sh [RUNTIME_SECONDS]     (default 20 s per job)
#   BV_CREATE_ARGS=--no-home-journal sudo bench/rbd-compare.sh   (the cost of the home journal)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
BIN=${BOOSTVOL_BIN:-$here/build/boostvol}
RT=${1:-20}
RUN=$(mktemp -d /tmp/bv-rbd-bench.XXXXXX)
CL=$RUN/ceph
LOOPS=()
cleanup() {
  set +e
  for l in "${LOOPS[@]}"; do losetup -d "$l"; done
  [[ -e $RUN/bv/mnt/image ]] && "$BIN" unmount "$RUN/bv/mnt" >/dev/null 2>&1
  [[ -e $RUN/dir/mnt/image ]] && "$BIN" unmount "$RUN/dir/mnt" >/dev/null 2>&1
  [[ -n ${QSD:-} ]] && kill "$QSD" && wait "$QSD" 2>/dev/null
  bash "$here/tests/lib/ceph_cluster.sh" stop "$CL"
  rm -rf "$RUN"
}
trap cleanup EXIT
eval "$(bash "$here/tests/lib/ceph_cluster.sh" start "$CL")"
SIZE=2G

fiojob() { # NAME DEV extra...
  local name=$1 dev=$2
  shift 2
  fio --name="$name" --filename="$dev" --direct=1 --ioengine=libaio --bs=4k --runtime="$RT" --time_based \
    --size=1G --group_reporting --output-format=json "$@" | python3 -c 'import json,sys; j=json.load(sys.stdin)["jobs"][0]["write"]; print(int(j["iops"]))'
}

# A fixed amount of 4k random writes, 90% of the 1 GiB cache, so a cache never fills during it: "while the cache has
# room" (the migrator starts at 0.75 of the log and runs during the rest). Capped at 3x the runtime for a system
# without a cache, whose rate does not change as it goes.
fiojob_room() { # NAME DEV
  fio --name="$1" --filename="$2" --direct=1 --ioengine=libaio --bs=4k --rw=randwrite --iodepth=16 --size=1G \
    --io_size=900M --runtime=$((RT * 3)) --group_reporting --output-format=json |
    python3 -c 'import json,sys; j=json.load(sys.stdin)["jobs"][0]["write"]; print(int(j["iops"]))'
}
drained() { "$BIN" drain "$1" >/dev/null 2>&1; }  # untimed: the next job starts with an empty cache

# rbd bench: the cluster's own 4k random-write rate
timeout 60 rbd create --size 2G --image-feature layering,exclusive-lock rbd/bench0
RBDB=$(timeout 120 rbd bench --io-type write --io-size 4K --io-threads 16 --io-total 200M --io-pattern rand rbd/bench0 | awk '/^elapsed/ {print int($6)}')

# qemu-storage-daemon, driver=rbd
timeout 60 rbd create --size $SIZE --image-feature layering,exclusive-lock rbd/qsd
mkdir -p "$RUN/qsd" && touch "$RUN/qsd/img"
qemu-storage-daemon --blockdev "driver=rbd,node-name=img0,pool=rbd,image=qsd,conf=$CEPH_CONF,cache.direct=on" \
  --export "type=fuse,id=exp0,node-name=img0,mountpoint=$RUN/qsd/img,writable=on" &
QSD=$!
for _ in $(seq 1 100); do [[ $(stat -c %s "$RUN/qsd/img") -gt 0 ]] && break; sleep 0.1; done
L=$(losetup -f --show --direct-io=on "$RUN/qsd/img"); LOOPS+=("$L")
Q16R=$(fiojob_room qsd-rw16-room "$L")
Q16=$(fiojob qsd-rw16 "$L" --rw=randwrite --iodepth=16)
Q1=$(fiojob qsd-fsync1 "$L" --rw=randwrite --iodepth=1 --fsync=1)
losetup -d "$L"; LOOPS=()
kill "$QSD"; wait "$QSD" 2>/dev/null || true; QSD=

# boostvol, home rbd:rbd/bv
mkdir -p "$RUN/bv/fast" "$RUN/bv/mnt"
# shellcheck disable=SC2086 # BV_CREATE_ARGS is a list of words
"$BIN" create "$RUN/bv/fast" rbd:rbd/bv --size $SIZE --cache-size 1G --ceph-conf "$CEPH_CONF" ${BV_CREATE_ARGS:-} >/dev/null 2>&1
"$BIN" mount "$RUN/bv/fast" "$RUN/bv/mnt" >/dev/null
L=$(losetup -f --show --direct-io=on "$RUN/bv/mnt/image"); LOOPS+=("$L")
# fsync first, while the cache is empty (the migrator idle), then the random writes (which fill the cache and start
# the migrator); a second fsync run shows the cost of migrating at the same time.
B1=$(fiojob bv-fsync1 "$L" --rw=randwrite --iodepth=1 --fsync=1)
drained "$RUN/bv/mnt"; B16R=$(fiojob_room bv-rw16-room "$L"); drained "$RUN/bv/mnt"
B16=$(fiojob bv-rw16 "$L" --rw=randwrite --iodepth=16)
B1M=$(fiojob bv-fsync1-migrating "$L" --rw=randwrite --iodepth=1 --fsync=1)
# The daemon serving this mount (its argv names FAST), for its peak RSS during the drain.
BVPID=$(pgrep -f -- "$RUN/bv/fast" | head -n 1 || true)
[[ -n $BVPID ]] && echo 5 >"/proc/$BVPID/clear_refs"  # resets VmHWM to the current RSS
RSS0=$([[ -n $BVPID ]] && awk '/^VmRSS/ {print $2}' "/proc/$BVPID/status" || echo "?")
t0=$(date +%s.%N)
DIRTY=$("$BIN" status "$RUN/bv/mnt" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["dirty_blocks"])')
"$BIN" drain "$RUN/bv/mnt" >/dev/null 2>&1
t1=$(date +%s.%N)
DRAIN=$(python3 -c "print(int($DIRTY / ($t1 - $t0)))")
HWM=$([[ -n $BVPID ]] && awk '/^VmHWM/ {print $2}' "/proc/$BVPID/status" || echo "?")
losetup -d "$L"; LOOPS=()
"$BIN" unmount "$RUN/bv/mnt" >/dev/null

# boostvol, directory home: FAST and SLOW local directories, same sizes and tunables
mkdir -p "$RUN/dir/fast" "$RUN/dir/slow" "$RUN/dir/mnt"
# shellcheck disable=SC2086 # BV_CREATE_ARGS is a list of words
"$BIN" create "$RUN/dir/fast" "$RUN/dir/slow" --size $SIZE --cache-size 1G ${BV_CREATE_ARGS:-} >/dev/null 2>&1
"$BIN" mount "$RUN/dir/fast" "$RUN/dir/mnt" >/dev/null
L=$(losetup -f --show --direct-io=on "$RUN/dir/mnt/image"); LOOPS+=("$L")
D1=$(fiojob dir-fsync1 "$L" --rw=randwrite --iodepth=1 --fsync=1)
drained "$RUN/dir/mnt"; D16R=$(fiojob_room dir-rw16-room "$L"); drained "$RUN/dir/mnt"
D16=$(fiojob dir-rw16 "$L" --rw=randwrite --iodepth=16)
D1M=$(fiojob dir-fsync1-migrating "$L" --rw=randwrite --iodepth=1 --fsync=1)
losetup -d "$L"; LOOPS=()
"$BIN" unmount "$RUN/dir/mnt" >/dev/null

x() { python3 -c "print(f'{$1 / $2:.2f}x')"; }  # ratio

echo "| 2 GiB image, direct-io loop | 4k randwrite QD16, 900 MiB while the cache has room (IOPS) | vs qsd+rbd | vs dir home | 4k randwrite QD16, ${RT} s, the cache fills (IOPS) | vs qsd+rbd | vs dir home | 4k write+fsync QD1, ${RT} s (IOPS) | vs qsd+rbd | vs dir home | fsync QD1 while migrating |"
echo "|---|---|---|---|---|---|---|---|---|---|---|"
echo "| qemu-storage-daemon driver=rbd, FUSE export | $Q16R | 1.00x | $(x "$Q16R" "$D16R") | $Q16 | 1.00x | $(x "$Q16" "$D16") | $Q1 | 1.00x | $(x "$Q1" "$D1") | - |"
echo "| boostvol, home rbd:rbd/bv, 1 GiB cache | $B16R | $(x "$B16R" "$Q16R") | $(x "$B16R" "$D16R") | $B16 | $(x "$B16" "$Q16") | $(x "$B16" "$D16") | $B1 | $(x "$B1" "$Q1") | $(x "$B1" "$D1") | $B1M |"
echo "| boostvol, directory home (local FAST and SLOW), 1 GiB cache | $D16R | $(x "$D16R" "$Q16R") | 1.00x | $D16 | $(x "$D16" "$Q16") | 1.00x | $D1 | $(x "$D1" "$Q1") | 1.00x | $D1M |"
echo
echo "rbd bench 4k random writes, 16 threads: $RBDB IOPS; boostvol (RBD home) drain: $DIRTY dirty blocks at $DRAIN blocks/s (4 KiB each, $(x "$DRAIN" "$RBDB") rbd bench); daemon RSS ${RSS0} KiB before the drain, peak ${HWM} KiB during it (VmHWM)"
