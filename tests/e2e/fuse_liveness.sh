#!/usr/bin/env bash
# fuse_liveness: requests blocked in the daemon never hold up the ones behind them (src/fuse/fuse_server.cc,
# "The request loop"). SLOW hangs like a dead network mount (ext4 over a loop device over nbdfuse over nbdkit,
# nbdkit stopped with SIGSTOP); two O_DIRECT reads of blocks that live only at home then block inside the daemon,
# one after the other, each in its own worker thread. While both are still blocked, a read of a block in the log
# and a stat of the image must complete: the monitor must see that the second reader is stuck and hand the
# reading role on. (Before the fix in this test's commit, the monitor tracked the reader with one counter, odd
# inside a request; two blocked requests made it even, the monitor took that for "between requests", and no
# thread read /dev/fuse until SLOW came back.) Then SLOW resumes and both reads return the right data.
# shellcheck source=SCRIPTDIR/../lib/e2e_lib.sh
source "$(dirname "$0")/../lib/e2e_lib.sh"

need_root
need_fuse
need_loop
need_cmd nbdkit nbdfuse mkfs.ext4 sha256sum
e2e_init

NBD_PID=""
release() { [[ -n $NBD_PID ]] && kill -CONT "$NBD_PID" 2>/dev/null; return 0; }
# shellcheck disable=SC2154 # _rc is assigned inside the trap string
trap '_rc=$?; set +e; release; (exit $_rc); _e2e_exit_trap' EXIT

D=$E2E_DIR/slowdisk
FAST=$E2E_DIR/fast
SLOW=$D/slow
MNT=$E2E_DIR/mnt
nbd_ext4_up "$D" 256M file "$D/disk.img"

bv_create "$FAST" "$SLOW" 64M --cache-size 32M
bv_mount "$FAST" "$MNT"

section "two reads blocked on a hung SLOW, a third request behind them"
head -c 8M /dev/urandom >"$E2E_DIR/data"
dd if="$E2E_DIR/data" of="$MNT/image" bs=1M oflag=direct conv=notrunc status=none
expect_rc 0 bv drain "$FAST"
# A block written after the drain lives in the log (FAST), which stays up.
head -c 4096 /dev/urandom >"$E2E_DIR/logblock"
dd if="$E2E_DIR/logblock" of="$MNT/image" bs=4k seek=4096 oflag=direct conv=notrunc status=none
sync
echo 3 >/proc/sys/vm/drop_caches  # SLOW's page cache must not answer the reads below
kill -STOP "$NBD_PID"
log "nbdkit (pid $NBD_PID) stopped: SLOW hangs"
conn=$(mountpoint -d "$MNT" | cut -d: -f2)
[[ -d /sys/fs/fuse/connections ]] && [[ -n $(ls /sys/fs/fuse/connections) ]] ||
  mount -t fusectl none /sys/fs/fuse/connections 2>/dev/null || true
waiting() { cat "/sys/fs/fuse/connections/$conn/waiting" 2>/dev/null || echo 0; }
dd if="$MNT/image" of="$E2E_DIR/r1" bs=64k skip=16 count=1 iflag=direct status=none &
R1=$!
wait_until 30 "the first read to wait in the daemon" bash -c "(( \$(cat /sys/fs/fuse/connections/$conn/waiting) >= 1 ))"
dd if="$MNT/image" of="$E2E_DIR/r2" bs=64k skip=80 count=1 iflag=direct status=none &
R2=$!
wait_until 30 "the second read to wait in the daemon" bash -c "(( \$(cat /sys/fs/fuse/connections/$conn/waiting) >= 2 ))"
sleep 0.2  # let the monitor see both (it looks every 1-20 ms)
both_blocked() { pid_alive "$R1" && pid_alive "$R2"; }
both_blocked || fail "a read of a block at home returned while SLOW hangs"
ok "two reads wait for SLOW ($(waiting) FUSE requests waiting)"

check "a read of a block in the log completes while both are blocked"
timeout 60 dd if="$MNT/image" of="$E2E_DIR/r3" bs=4k skip=4096 count=1 iflag=direct status=none ||
  fail "the read of a block in the log did not complete within 60 s: nobody reads /dev/fuse while two requests block"
cmp -s "$E2E_DIR/r3" "$E2E_DIR/logblock" || fail "the block read from the log is wrong"
timeout 60 stat "$MNT/image" >/dev/null || fail "stat of the image did not complete within 60 s"
both_blocked || fail "the blocked reads returned before SLOW came back (the check proves nothing)"
ok "served while both reads were still blocked"

check "SLOW resumes: both blocked reads return the right data"
kill -CONT "$NBD_PID"
wait "$R1" || fail "the first read failed after SLOW came back"
wait "$R2" || fail "the second read failed after SLOW came back"
cmp -s "$E2E_DIR/r1" <(dd if="$E2E_DIR/data" bs=64k skip=16 count=1 status=none) || fail "first read: wrong data"
cmp -s "$E2E_DIR/r2" <(dd if="$E2E_DIR/data" bs=64k skip=80 count=1 status=none) || fail "second read: wrong data"
ok "both reads right"

bv_unmount "$MNT" "$FAST"
nbd_ext4_down "$D"
assert_no_leftovers
