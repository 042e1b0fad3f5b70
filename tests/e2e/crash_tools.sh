#!/usr/bin/env bash
# crash_tools: the crash loops' own bookkeeping and diagnostics say what they claim (docs/testing.md, "The XFS
# finding" part 2 and "Write trace").
#   1. fs_workload.py untrust: records after the kill mark leave their paths in flight (every state one of their
#      records names), not in the state before the mark; verify accepts exactly those states.
#   2. write_trace_check.py on a made-up trace: a block that reads an older acknowledged, fsync'ed version is
#      STALE, bytes no write put there are WRONG, two writes in flight together may land in either order.
#   3. the daemon's BOOSTVOL_WRITE_TRACE end to end: 4 KiB and 512-byte writes with fsyncs, kill -9, recovery;
#      the checker finds every fsync'ed range; then an old version written back over one block (what a lost
#      write would look like) is reported STALE.
# shellcheck source=SCRIPTDIR/../lib/e2e_lib.sh
source "$(dirname "$0")/../lib/e2e_lib.sh"
# shellcheck source=SCRIPTDIR/../lib/crash_lib.sh
source "$(dirname "$0")/../lib/crash_lib.sh"

need_root
need_fuse
need_cmd python3 dd fusermount3
e2e_init
WORKLOAD=$E2E_LIB_DIR/fs_workload.py
CHECK=$E2E_LIB_DIR/write_trace_check.py

section "untrust: late records leave their operations in flight"
W=$E2E_DIR/untrust
mkdir -p "$W/root/keep"
echo new2 >"$W/root/keep/k2"
head -c 100 /dev/urandom >"$W/root/keep/k1"
new2=$(sha256sum <"$W/root/keep/k2" | cut -d' ' -f1)
printf 'C keep/k1 aaa\nR keep/k2 bbb %s\nC keep/k3 ddd\n' "$new2" >"$W/side"
mark=$(stat -c %s "$W/side")
printf 'C keep/k2 %s\nO keep/k1 aaa\nC keep/k1 eee\nC keep/k9 fff\nD keep/k3 ddd\nX keep/k3\n' "$new2" >>"$W/side"
cp "$W/side" "$W/side.orig"
expect_rc 0 python3 "$WORKLOAD" untrust "$W/side" "$mark"
check "the records before the mark stay; each path touched after it gets one U record with all its states"
assert_eq "the side file" "$(cat "$W/side")" "$(head -c "$mark" "$W/side.orig"; printf 'U keep/k2 bbb %s\nU keep/k1 aaa * eee\nU keep/k3 ddd -' "$new2")"
check "verify accepts them: any contents after an overwrite, the new file after a replace, absent after a delete"
expect_rc 0 python3 "$WORKLOAD" verify "$W/root" "$W/side"
check "verify still rejects a state no record names: the replaced file missing"
rm "$W/root/keep/k2"
expect_fail 1 "keep/k2: changed after the kill began" python3 "$WORKLOAD" verify "$W/root" "$W/side"

section "write_trace_check on a made-up trace"
T=$E2E_DIR/made-up
mkdir -p "$T"
python3 - "$T" <<'EOF'
import sys, zlib
d = sys.argv[1]
blk = lambda c: bytes([c]) * 4096
lines = ["S 111"]
def w(i, b, c):
    lines.append(f"W {i} {b * 4096} 4096 {b}:0:4096:{zlib.crc32(blk(c)):08x}")
w(1, 1, 1); lines += ["K 1 1", "F 1 1"]
w(2, 1, 2); lines += ["K 2 2"]              # block 1: version 2 acked and fsync'ed; the image holds version 1
w(3, 2, 7); lines += ["K 3 3"]              # block 2: the image holds bytes nobody wrote
w(5, 4, 1); w(6, 4, 2); lines += ["K 6 4", "K 5 5"]  # block 4: in flight together; either order is fine
lines += ["F 5 5"]
w(4, 3, 9); lines += ["K 4 6"]              # block 3: after the last fsync: not constrained
img = bytearray(4096 * 5)
img[4096:8192] = blk(1); img[8192:12288] = blk(5); img[16384:20480] = blk(1)
open(f"{d}/trace", "w").write("\n".join(lines) + "\nS 222\n")
open(f"{d}/image", "wb").write(img)
EOF
capture python3 "$CHECK" "$T/trace" "$T/image" --pid 111
check "the checker reports one STALE and one WRONG range, and fails"
[[ $E2E_RC -eq 1 ]] || fail "exit $E2E_RC: $E2E_OUT"
expect_msg "1 STALE, 1 WRONG"
expect_msg "STALE: block 1 bytes [0,4096)"
expect_msg "WRONG: block 2 bytes [0,4096)"
ok "$(head -1 <<<"$E2E_OUT")"

section "the daemon's write trace, end to end"
FAST=$E2E_DIR/fast SLOW=$E2E_DIR/slow MNT=$E2E_DIR/mnt
export BOOSTVOL_WRITE_TRACE=$E2E_DIR/write.trace
bv_create "$FAST" "$SLOW" 64M --cache-size 16M
bv_mount "$FAST" "$MNT"
head -c $((4096 * 8)) /dev/urandom >"$E2E_DIR/v1"
head -c $((4096 * 8)) /dev/urandom >"$E2E_DIR/v2"
dd if="$E2E_DIR/v1" of="$MNT/image" bs=4096 seek=100 conv=notrunc,fsync status=none
dd if="$E2E_DIR/v2" of="$MNT/image" bs=4096 seek=100 conv=notrunc,fsync status=none
dd if=/dev/urandom of="$MNT/image" bs=512 count=3 seek=$((300 * 8 + 1)) oflag=direct conv=notrunc,fsync status=none
dd if=/dev/urandom of="$MNT/image" bs=4096 count=4 seek=500 oflag=direct conv=notrunc status=none  # no fsync
kill_daemon
teardown_dead_volume
remount_after_kill
check "after kill -9 and recovery, every fsync'ed range of the killed daemon reads back"
capture python3 "$CHECK" "$BOOSTVOL_WRITE_TRACE" "$MNT/image" --pid "$KILLED_PID"
[[ $E2E_RC -eq 0 ]] || fail "exit $E2E_RC: $E2E_OUT"
expect_msg " 0 STALE, 0 WRONG"
[[ $E2E_OUT =~ ranges\ checked:\ ([0-9]+)\ ok ]] && ((BASH_REMATCH[1] >= 17)) ||
  fail "expected at least 17 ranges checked (8 blocks twice, 1 partial block): $E2E_OUT"
ok "$E2E_OUT"
check "an older version of block 103 written back (as a lost write would read) is reported STALE"
dd if="$E2E_DIR/v1" of="$MNT/image" bs=4096 skip=3 seek=103 count=1 conv=notrunc,fsync status=none
capture python3 "$CHECK" "$BOOSTVOL_WRITE_TRACE" "$MNT/image" --pid "$KILLED_PID"
[[ $E2E_RC -eq 1 ]] || fail "exit $E2E_RC: $E2E_OUT"
expect_msg "STALE: block 103 bytes [0,4096)"
ok "$(grep STALE: <<<"$E2E_OUT")"
bv_unmount "$MNT" "$FAST"
assert_no_leftovers
