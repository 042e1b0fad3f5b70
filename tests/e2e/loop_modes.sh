#!/usr/bin/env bash
# loop_modes: both loop modes return the right data (DESIGN.md 7: qemu-storage-daemon's FUSE export failed fio's
# crc32c verify behind a --direct-io=on loop). For --direct-io=on and off: fio writes random 4k and 64k blocks
# with two concurrent jobs and QD16 through a loop device on MNT/image and verifies every block (crc32c); then
# the volume is unmounted and mounted again and fio verifies the same blocks without writing (verify_only).
# A third pass does the same with --direct-io=off on a mount with -o writeback_cache (docs/tuning.md "Writeback
# cache"): the kernel then buffers the loop's writes and sends them to the daemon later, reordered; the unmount
# must write every one back before the daemon's clean stop, so that the remount reads them all.
# shellcheck source=SCRIPTDIR/../lib/e2e_lib.sh
source "$(dirname "$0")/../lib/e2e_lib.sh"

need_root
need_fuse
need_loop
need_cmd fio
e2e_init

FAST=$E2E_DIR/fast
SLOW=$E2E_DIR/slow
MNT=$E2E_DIR/mnt
JOB_MB=48
is_long && JOB_MB=200
SIZE_MB=$((6 * JOB_MB + 16))  # three passes, two jobs each, on ranges of their own
bv_create "$FAST" "$SLOW" "${SIZE_MB}M" --cache-size 32M

# fio_verify DEV OFFSET_MB MODE(write|verify): two jobs, each on its own range; MODE=verify reads only.
fio_verify() {
  local dev=$1 off=$2 mode=$3
  local -a common=(--filename="$dev" --direct=1 --ioengine=libaio --iodepth=16 --size="${JOB_MB}M" --verify=crc32c
    --verify_fatal=1 --rw=randwrite --randrepeat=1 --group_reporting)
  local -a extra=(--do_verify=1)
  [[ $mode == verify ]] && extra=(--verify_only)
  timeout 600 fio "${common[@]}" "${extra[@]}" \
    --name=small --bs=4k --offset="${off}M" \
    --name=large --bs=64k --offset="$((off + JOB_MB))M" >"$E2E_DIR/fio.out" 2>&1 || {
    tail -n 30 "$E2E_DIR/fio.out" >&2
    return 1
  }
  grep -E 'err=|verify' "$E2E_DIR/fio.out" | head -n 4 | sed 's/^/    fio: /'
}

off=0
for pass in on off off+wbc; do
  mode=$(pass_dio "$pass")
  section "loop pass $pass"
  bv_mount_pass "$FAST" "$MNT" "$pass"
  loop_attach LOOP "$MNT/image" --direct-io="$mode"
  log "$LOOP dio=$(cat "/sys/block/${LOOP#/dev/}/loop/dio")"
  check "$pass: fio crc32c write+verify, 4k and 64k random writes, two concurrent jobs, QD16"
  fio_verify "$LOOP" "$off" write || fail "fio verify failed with $pass"
  ok "verified"
  loop_detach "$LOOP"
  bv_unmount "$MNT" "$FAST"
  check "$pass: after a boostvol unmount/mount, the same blocks verify again (read only)"
  bv_mount "$FAST" "$MNT"
  loop_attach LOOP "$MNT/image" --direct-io="$mode"
  fio_verify "$LOOP" "$off" verify || fail "fio verify_only failed after remount ($pass)"
  ok "verified after remount"
  loop_detach "$LOOP"
  bv_unmount "$MNT" "$FAST"
  off=$((off + 2 * JOB_MB))
done
check "'boostvol check' is clean"
expect_rc 0 bv check "$FAST"
assert_no_leftovers
