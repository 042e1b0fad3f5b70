#!/usr/bin/env bash
# rbd_home: a volume whose home is an RBD image in a real (throwaway, single-node) Ceph cluster
# (docs/rbd-home.md; tests/lib/ceph_cluster.sh starts the cluster).
#   1. create with rbd:rbd/IMAGE, mount, write with fsyncs, drain: `rbd export` is byte-identical to MNT/image
#   2. fencing: a second cache on the same image (create --adopt, plain create) is refused, naming the holder
#   3. kill -9 crash loop with stamped blocks (tests/lib/stamped_blocks.py): fsync'ed writes kept, a prefix
#   4. outage: the OSD stopped (SIGSTOP) for 25 s while files on ext4 are overwritten with fsyncs: no error, then
#      SIGCONT, drain converges, fsck clean, export identical, the files' checksums intact
#   5. bounded stop: `boostvol unmount` while the OSD is stopped and a drain waits on it; the daemon (mounted with
#      BOOSTVOL_STOP_WAIT=5) exits without a checkpoint after 5 s, unmount says so (exit 3), the drain ends with an
#      error; after SIGCONT the next mount recovers the writes from the log and the export is identical
# shellcheck source=SCRIPTDIR/../lib/e2e_lib.sh
source "$(dirname "$0")/../lib/e2e_lib.sh"

need_root
need_fuse
need_loop
need_cmd python3 cmp rbd ceph ceph-mon ceph-osd mkfs.ext4 fsck.ext4 sha256sum
e2e_init

TOOL=$E2E_LIB_DIR/stamped_blocks.py
CLUSTER=$E2E_DIR/ceph
FAST=$E2E_DIR/fast
MNT=$E2E_DIR/mnt
SIDE=$E2E_DIR/side
mkdir -p "$SIDE"
CYCLES=${KILL9_CYCLES:-4}
is_long && CYCLES=${KILL9_CYCLES:-15}
BLOCKS=4096
RANDOM=${RBD_SEED:-$$}
log "seed ${RBD_SEED:-$$} (set RBD_SEED to replay)"

section "a single-node Ceph cluster (one mon, one memstore OSD, pool rbd of size 1)"
t0=$SECONDS
out=$(bash "$E2E_LIB_DIR/ceph_cluster.sh" start "$CLUSTER") || fail "the test cluster did not start (logs in $CLUSTER/log)"
eval "$out"
ok "cluster up in $((SECONDS - t0)) s: $CEPH_CONF"
# Daemons first (while the cluster still answers), then the cluster; the exit code is kept for the report.
# shellcheck disable=SC2154 # _rc is assigned inside the trap string
trap '_rc=$?; _e2e_cleanup; bash "$E2E_LIB_DIR/ceph_cluster.sh" stop "$CLUSTER" >/dev/null 2>&1; (exit $_rc); _e2e_exit_trap' EXIT
rbdc() { timeout 120 rbd -c "$CEPH_CONF" "$@"; }
HOME_URI=rbd:rbd/e2e_vol
export_matches() { rbdc export --no-progress rbd/e2e_vol - 2>"$SIDE/export.err" | cmp - "$1"; }

section "1. create, mount, write with fsyncs, drain, export"
mkdir -p "$FAST"
check "boostvol create FAST $HOME_URI --size 128M --ceph-conf"
expect_rc 0 bv create "$FAST" "$HOME_URI" --size 128M --cache-size 64M --segment-size 1M --ceph-conf "$CEPH_CONF"
rbdc info rbd/e2e_vol | grep -q 'exclusive-lock' || fail "the image lacks the exclusive-lock feature"
ok "image rbd/e2e_vol created with exclusive-lock"
bv_mount "$FAST" "$MNT"
check "status names the RBD home"
expect_rc 0 bv status "$MNT" --json
json_get - home <<<"$E2E_OUT" | grep -q '^rbd:rbd/e2e_vol' || fail "status home is not the RBD image: $E2E_OUT"
head -c $((48 << 20)) /dev/urandom >"$SIDE/data"
timeout 120 dd if="$SIDE/data" of="$MNT/image" bs=1M conv=fsync,notrunc status=none || fail "write failed"
timeout 120 dd if="$SIDE/data" of="$MNT/image" bs=4k count=500 seek=30000 conv=fsync,notrunc status=none || fail "write failed"
check "drain, then \`rbd export\` is byte-identical to MNT/image"
expect_rc 0 timeout 300 "$BOOSTVOL_BIN" drain "$MNT"
export_matches "$MNT/image" || fail "rbd export differs from MNT/image after drain ($(cat "$SIDE/export.err"))"
ok "identical"

section "2. fencing: one cache per image"
mkdir -p "$E2E_DIR/fast2"
check "a second cache adopting the mounted image is refused, naming the holder"
expect_rc 2 env BOOSTVOL_RBD_LOCK_WAIT=2 "$BOOSTVOL_BIN" create "$E2E_DIR/fast2" "$HOME_URI" --adopt --ceph-conf "$CEPH_CONF"
expect_msg "exclusive lock is held by"
expect_msg "pid $(lock_pid "$FAST")"
check "a plain create on the existing image is refused"
expect_rc 2 bv create "$E2E_DIR/fast2" "$HOME_URI" --size 128M --ceph-conf "$CEPH_CONF"
expect_msg "already exists"
[[ ! -e $E2E_DIR/fast2/meta.db ]] || fail "a refused create left meta.db behind"

section "3. kill -9 crash loop ($CYCLES cycles)"
expect_rc 0 bv set "$MNT" max_batch_bytes=262144 migrate_start_fraction=0.1 idle_migrate_ms=300
timeout 120 dd if=/dev/zero of="$MNT/image" bs=1M count=128 conv=fsync,notrunc status=none
next_seq=1
for cycle in $(seq 1 "$CYCLES"); do
  PID=$(daemon_pid "$FAST")
  [[ -n $PID ]] || fail "no daemon before cycle $cycle"
  HIST=$SIDE/history.$cycle
  : >"$HIST"
  timeout 600 python3 "$TOOL" write "$MNT/image" "$HIST" --start-seq "$next_seq" --blocks "$BLOCKS" \
    --seed "$((RANDOM * 32768 + RANDOM))" >"$SIDE/writer.$cycle.out" 2>&1 &
  WRITER=$!
  wait_until 60 "the writer's first fsync" bash -c "grep -q '^F ' '$HIST' || ! kill -0 $WRITER"
  sleep "$((RANDOM % 3)).$((RANDOM % 10))"
  check "cycle $cycle: SIGKILL the daemon (pid $PID) while it writes and migrates to RBD"
  kill -KILL "$PID"
  wait_until 30 "the daemon to be gone" not pid_alive "$PID"
  wait "$WRITER" || true
  timeout 30 fusermount3 -uz "$MNT" 2>/dev/null || umount -l "$MNT" 2>/dev/null || true
  check "cycle $cycle: mount recovers (the dead daemon's lock lapses with its watch)"
  expect_rc 0 bv mount "$FAST" "$MNT"
  wait_until 60 "$MNT/image" test -f "$MNT/image"
  python3 "$TOOL" verify "$MNT/image" "$HIST" "$SIDE/state" --blocks "$BLOCKS" || fail "verification failed in cycle $cycle"
  last=$(awk '$1 == "W" { s = $2 } END { print s + 0 }' "$HIST")
  next_seq=$((last + 1))
done
check "after the crashes: drain, export identical, the home alone holds the verified blocks"
expect_rc 0 timeout 300 "$BOOSTVOL_BIN" drain "$MNT"
export_matches "$MNT/image" || fail "rbd export differs after the crash loop"
rbdc export --no-progress rbd/e2e_vol "$SIDE/home.img" >/dev/null 2>&1 || fail "export failed"
python3 "$TOOL" verify "$SIDE/home.img" /dev/null "$SIDE/state" --blocks "$BLOCKS" || fail "the home copy does not match"
rm -f "$SIDE/home.img"
ok "identical"

section "4. outage: the OSD stopped for 25 s under ext4 with fsyncs"
expect_rc 0 bv set "$MNT" max_batch_bytes=4194304 migrate_start_fraction=0.1 idle_migrate_ms=500
loop_attach LOOP "$MNT/image" --direct-io=on
timeout 120 mkfs.ext4 -q -F -b 4096 -E lazy_itable_init=0,lazy_journal_init=0 "$LOOP" || fail "mkfs.ext4 failed"
fs_mount "$LOOP" "$E2E_DIR/fs"
# The files exist before the outage, so that overwriting them needs no read of a block that lives only at home
# (such a read waits for the client's op timeout and then fails, by design: docs/rbd-home.md). 4 KiB blocks: a
# smaller write would need the rest of its block read from home (a read-merge).
NFILES=40
for j in $(seq 1 "$NFILES"); do
  head -c $((128 << 10)) /dev/urandom >"$SIDE/f$j"
  cp "$SIDE/f$j" "$E2E_DIR/fs/f$j"
done
sync -f "$E2E_DIR/fs" # this filesystem only: a global sync waits for every mount on the machine
expect_rc 0 timeout 300 "$BOOSTVOL_BIN" drain "$MNT"
OSD=$(bash "$E2E_LIB_DIR/ceph_cluster.sh" pid "$CLUSTER" osd)
check "SIGSTOP the OSD (pid $OSD) for 25 s while files are overwritten and fsync'ed"
kill -STOP "$OSD"
# The outage ends after 25 s whatever the writer does (a writer stuck behind a full log must not keep it going).
(sleep 25; kill -CONT "$OSD") &
CONTER=$!
t0=$SECONDS
i=0
while ((SECONDS - t0 < 25)); do
  i=$((i + 1))
  j=$(((i - 1) % NFILES + 1))
  head -c $((128 << 10)) /dev/urandom >"$SIDE/f$j"
  timeout 60 dd if="$SIDE/f$j" of="$E2E_DIR/fs/f$j" bs=64k conv=fsync,notrunc status=none ||
    { kill -CONT "$OSD"; fail "a write+fsync failed during the outage (write $i, file f$j)"; }
  sleep 0.2
done
expect_rc 0 bv status "$MNT" --json
log "during the outage: health $(json_get - health <<<"$E2E_OUT"), dirty $(json_get - dirty_blocks <<<"$E2E_OUT") blocks, last error: $(json_get - last_error <<<"$E2E_OUT")"
wait "$CONTER"
kill -CONT "$OSD"
ok "$i files written and fsync'ed during the outage, no error"
check "after SIGCONT: drain converges, fsck is clean, files intact, export identical"
fs_umount "$E2E_DIR/fs"
expect_rc 0 timeout 300 "$BOOSTVOL_BIN" drain "$MNT"
loop_detach "$LOOP"
timeout 300 fsck.ext4 -fn "$MNT/image" >"$SIDE/fsck.out" 2>&1 || fail "fsck.ext4 found problems: $(tail -5 "$SIDE/fsck.out")"
export_matches "$MNT/image" || fail "rbd export differs after the outage"
loop_attach LOOP2 "$MNT/image" --read-only
fs_mount "$LOOP2" "$E2E_DIR/fs" -o ro
for j in $(seq 1 "$NFILES"); do cmp "$SIDE/f$j" "$E2E_DIR/fs/f$j" || fail "file f$j differs"; done
fs_umount "$E2E_DIR/fs"
loop_detach "$LOOP2"
ok "clean, $NFILES files intact, identical"
bv_unmount "$MNT" "$FAST"
check "boostvol check after everything"
expect_rc 0 bv check "$FAST"

check "unmount in an outage, a drain waiting on the home: the stop is bounded (BOOSTVOL_STOP_WAIT=5), nothing is lost"
BOOSTVOL_STOP_WAIT=5 bv_mount "$FAST" "$MNT"
# The migrator holds off: the 2 MiB are still in the log when the drain asks for them during the outage.
expect_rc 0 bv set "$MNT" idle_migrate_ms=86400000 migrate_start_fraction=1
head -c $((2 << 20)) /dev/urandom >"$SIDE/stop.bin"
dd if="$SIDE/stop.bin" of="$MNT/image" bs=1M seek=8 oflag=direct conv=fsync,notrunc status=none ||
  fail "writing 2 MiB before the outage failed"
kill -STOP "$OSD"
(sleep 60; kill -CONT "$OSD") &
CONTER=$!
"$BOOSTVOL_BIN" drain "$MNT" >"$SIDE/stop.drain" 2>&1 &
DRAINER=$!
sleep 2
t0=$SECONDS
capture bv unmount "$MNT"
took=$((SECONDS - t0))
log "unmount exited $E2E_RC after $took s: $(tail -1 <<<"$E2E_OUT")"
[[ $E2E_RC == 3 && $E2E_OUT == *"WITHOUT a clean checkpoint"* ]] ||
  fail "unmount in an outage: expected exit 3 and an unclean stop, got $E2E_RC: $E2E_OUT"
((took < 40)) || fail "the stop took $took s, past BOOSTVOL_STOP_WAIT=5 plus the unmount's own steps"
grep -q "exiting WITHOUT a checkpoint" "$FAST/boostvol.log" || fail "the daemon's log does not say why it stopped"
drc=0
wait "$DRAINER" || drc=$?
((drc != 0)) || fail "the drain reported success though the home never answered"
ok "stopped in $took s, unclean, said so; the waiting drain ended with exit $drc: $(tail -1 "$SIDE/stop.drain")"
kill "$CONTER" 2>/dev/null || true
kill -CONT "$OSD"
check "after the outage: the next mount recovers the 2 MiB from the log, drains them, the export is identical"
bv_mount "$FAST" "$MNT"
cmp <(dd if="$MNT/image" bs=1M skip=8 count=2 status=none) "$SIDE/stop.bin" || fail "the 2 MiB written before the stop differ"
expect_rc 0 timeout 300 "$BOOSTVOL_BIN" drain "$MNT"
export_matches "$MNT/image" || fail "rbd export differs after the bounded stop"
bv_unmount "$MNT" "$FAST"
ok "recovered, drained, identical"
