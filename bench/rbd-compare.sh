#!/usr/bin/env bash
# bench/rbd-compare.sh: boostvol with an RBD home vs qemu-storage-daemon exporting the same kind of RBD image over
# FUSE (driver=rbd: what a user has without boostvol), both behind a direct-io loop device, on a throwaway
# single-node cluster (tests/lib/ceph_cluster.sh). Needs root, fio, qemu-storage-daemon + qemu-block-extra
# (block-rbd), the Ceph packages (scripts/install-ceph.sh). Prints a Markdown table.
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
B16=$(fiojob bv-rw16 "$L" --rw=randwrite --iodepth=16)
B1M=$(fiojob bv-fsync1-migrating "$L" --rw=randwrite --iodepth=1 --fsync=1)
t0=$(date +%s.%N)
DIRTY=$("$BIN" status "$RUN/bv/mnt" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["dirty_blocks"])')
"$BIN" drain "$RUN/bv/mnt" >/dev/null 2>&1
t1=$(date +%s.%N)
DRAIN=$(python3 -c "print(int($DIRTY / ($t1 - $t0)))")

echo "| ${RT}s per job, 2 GiB image, direct-io loop | 4k randwrite QD16 (IOPS) | 4k write+fsync QD1 (IOPS) |"
echo "|---|---|---|"
echo "| qemu-storage-daemon driver=rbd, FUSE export | $Q16 | $Q1 |"
echo "| boostvol, home rbd:rbd/bv, 1 GiB cache | $B16 | $B1 (while migrating: $B1M) |"
echo
echo "rbd bench 4k random writes, 16 threads: $RBDB IOPS; boostvol drain: $DIRTY dirty blocks at $DRAIN blocks/s (4 KiB each)"
