#!/usr/bin/env bash
# crash_loop_fs: ext4, xfs and btrfs on boostvol survive kill -9 of the daemon like a power cut
# (DESIGN.md 2.2, 2.3: the loop device turns a filesystem's FLUSH/FUA into fsync on the image).
#
# For each filesystem, a 512 MiB volume with a 32 MiB log (1 MiB segments, small migration batches: the log
# wraps and the migrator runs during the workload). Each cycle:
#   1. a file workload (tests/lib/fs_workload.py run) copies slices of /usr/include, creates, overwrites, renames
#      and deletes files, and changes "durable" files under keep/ with fsync (new, atomic replace by rename,
#      overwrite in place, delete), recording each one in a side file (another filesystem) after its fsync
#      returned;
#   2. kill -9 of the daemon at a random moment (sometimes while the migrator is migrating);
#   3. tear down what is left: the filesystem over the dead loop device (umount, lazily if it must), the loop
#      device (losetup -d, waiting until it is released), the dead FUSE mount; `boostvol mount` must recover;
#      a new loop device (alternating --direct-io=on/off);
#   4. mount once and unmount (the filesystem replays its journal, as after a power cut), then its read-only
#      checker must be clean: `fsck.ext4 -fn`, `xfs_repair -n`, `btrfs check --readonly`;
#   5. mount again: every fsync'ed file has its recorded sha256, every fsync'ed delete holds, every file reads.
# After each recovery, before step 4, the daemon's write trace (BOOSTVOL_WRITE_TRACE, kept in the scratch dir;
# CRASH_WRITE_TRACE=0 turns it off) must show that every write acknowledged before its last successful fsync
# began reads back (tests/lib/write_trace_check.py): a block-level check of DESIGN.md 2.2/2.3 that tells a
# boostvol bug from a filesystem's behaviour on a dying device (docs/testing.md, "Write trace").
# Every 5th cycle and at the end: `boostvol drain`, then SLOW/image alone (read-only loop device, no boostvol)
# must pass the same checker; at the end also hold every fsync'ed file, and `boostvol check` must be clean.
# ~10 cycles per filesystem (BOOSTVOL_LONG=1: 50; CRASH_FS_CYCLES overrides; CRASH_FS="ext4 xfs" picks).
# shellcheck source=SCRIPTDIR/../lib/e2e_lib.sh
source "$(dirname "$0")/../lib/e2e_lib.sh"
# shellcheck source=SCRIPTDIR/../lib/crash_lib.sh
source "$(dirname "$0")/../lib/crash_lib.sh"

need_root
need_fuse
need_loop
# Both XFS findings were the test's, not boostvol's (docs/testing.md, "The XFS finding" parts 1 and 2): the
# bookkeeping now marks what the workload recorded after the kill began as uncertain (fs_workload.py untrust),
# and a write trace of the daemon proves at block level that every write acknowledged before a successful fsync
# reads back after recovery. btrfs: mkfs.btrfs and btrfs check refuse to run while any FUSE mount on the machine
# is dead, which a crash test leaves behind for a moment; they run in a private mount namespace without the dead
# ones (without_dead_fuse_mounts in crash_lib.sh).
FSTYPES=${CRASH_FS:-ext4 xfs btrfs}
need_cmd python3 losetup fusermount3 sha256sum
for t in $FSTYPES; do
  case $t in
    ext4) need_cmd mkfs.ext4 fsck.ext4 ;;
    xfs) need_cmd mkfs.xfs xfs_repair ;;
    btrfs) need_cmd mkfs.btrfs btrfs ;;
    *) fail "CRASH_FS: unknown filesystem $t" ;;
  esac
  grep -qw "$t" /proc/filesystems || modprobe "$t" 2>/dev/null || true
  grep -qw "$t" /proc/filesystems || skip_or_fail "the kernel has no $t filesystem"
done
e2e_init

WORKLOAD=$E2E_LIB_DIR/fs_workload.py
CYCLES=${CRASH_FS_CYCLES:-10}
is_long && CYCLES=${CRASH_FS_CYCLES:-50}
RANDOM=$CRASH_SEED
log "seed $CRASH_SEED (CRASH_SEED replays the random choices), $CYCLES cycles for each of: $FSTYPES"

# check_home TYPE LABEL: drain, then SLOW/image alone on a read-only loop device must pass the checker.
check_home() {
  local type=$1 label=$2 hl out=$E2E_DIR/home-check.out
  expect_rc 0 timeout 600 "$BOOSTVOL_BIN" drain "$MNT"
  fs_forget_devices "$type"
  loop_attach hl "$SLOW/image" -r
  fs_check "$type" "$hl" "$out" || {
    cat "$out" >&2
    detach_loop "$hl"
    product_failure "$type, $label: SLOW/image alone (after a drain) fails its checker"
  }
  detach_loop "$hl"
  fs_forget_devices "$type"
  ok "$type, $label: SLOW/image alone is a clean $type"
}

declare -A SUMMARY
for fstype in $FSTYPES; do
  V=$E2E_DIR/$fstype
  FAST=$V/fast SLOW=$V/slow MNT=$V/mnt FSMNT=$V/fs SIDE=$V/side
  mkdir -p "$SIDE" "$FSMNT"
  KILL_MARK_FILE=$SIDE/durable
  if [[ ${CRASH_WRITE_TRACE:-1} == 1 ]]; then
    export BOOSTVOL_WRITE_TRACE=$V/write.trace  # read by the daemons bv_mount starts
  else
    unset BOOSTVOL_WRITE_TRACE
  fi
  LOOP=""
  section "$fstype: a 512 MiB volume, 32 MiB log, mkfs.$fstype on a loop device"
  bv_create "$FAST" "$SLOW" 512M --cache-size 32M --segment-size 1M
  expect_rc 0 bv set "$FAST" max_batch_bytes=1048576 migrate_start_fraction=0.25 idle_migrate_ms=500
  bv_mount "$FAST" "$MNT"
  mode=on
  attach_image_loop "$mode"
  fs_mkfs "$fstype" "$LOOP" || fail "mkfs.$fstype"
  # -o discard: every delete of the workload sends a discard, logged as a zero range (docs/policies.md), so
  # the kill -9 cycles also cover TRIM in order with writes, its replay and its migration.
  fs_mount "$LOOP" "$FSMNT" -t "$fstype" -o discard
  max_rec=0 ops=0 t0=$SECONDS k_mig=0 lazy=0 late_total=0
  for c in $(seq 1 "$CYCLES"); do
    OUT=$V/workload.$c.out
    start_workload "$FSMNT" "$SIDE/durable" "$OUT"
    note=""
    if ((RANDOM % 10 < 3)); then
      sleep "0.$((RANDOM % 10))"
      if kill_when_migrating 8; then
        note=" with a migration batch in flight"
        k_mig=$((k_mig + 1))
      else
        note=" (no migration batch seen)"
        kill_daemon
      fi
    else
      sleep "$((RANDOM % 3)).$((RANDOM % 10))"
      kill_daemon
    fi
    stop_workload "$OUT"
    wout=$WL_OUT
    # Only fsyncs that returned before the kill are boostvol's promise. A record appended after it belongs to an
    # fsync that returned while the device under the filesystem was already failing (EIO): XFS can report such
    # an fsync as successful although the log write behind it failed (issue 3; docs/testing.md, "XFS"). Those
    # records are not trusted, but the operations they started are not forgotten: each path they touch may be in
    # any state one of its records names (fs_workload.py untrust). Dropping them outright made an in-place
    # overwrite begun after the mark look like a corruption of the file (docs/testing.md, "XFS", part 2).
    if [[ -n ${KILL_MARK_BYTES:-} ]] && (($(stat -c %s "$SIDE/durable") > KILL_MARK_BYTES)); then
      late=$(tail -c +"$((KILL_MARK_BYTES + 1))" "$SIDE/durable" | grep -c . || true)
      tail -c +"$((KILL_MARK_BYTES + 1))" "$SIDE/durable" >"$SIDE/late.$c"
      expect_rc 0 python3 "$WORKLOAD" untrust "$SIDE/durable" "$KILL_MARK_BYTES"
      note+="; $late record(s) written after the kill began: their paths count as in flight"
      late_total=$((late_total + late))
    fi
    ops=$((ops + WL_OPS))
    unmount_dead_fs "$FSMNT"
    lazy=$((lazy + DEAD_FS_LAZY))
    teardown_dead_volume
    fs_forget_devices "$fstype"
    remount_after_kill
    ((REC_MS > max_rec)) && max_rec=$REC_MS
    # Every write the killed daemon acknowledged before its last successful fsync began must read back, at the
    # block level, before the filesystem touches the image again (docs/testing.md, "Write trace").
    if [[ -n ${BOOSTVOL_WRITE_TRACE:-} ]]; then
      tout=$(python3 "$E2E_LIB_DIR/write_trace_check.py" "$BOOSTVOL_WRITE_TRACE" "$MNT/image" \
        --pid "$KILLED_PID" 2>&1) || {
        printf '%s\n' "$tout" >&2
        product_failure "$fstype cycle $c: the image lost or reordered a write acknowledged before an fsync"
      }
      log "$fstype cycle $c: ${tout%%$'\n'*}"
    fi
    [[ $mode == on ]] && mode=off || mode=on
    attach_image_loop "$mode"
    fs_replay "$fstype" "$LOOP" "$FSMNT" || product_failure "$fstype cycle $c: the filesystem does not mount after the crash (journal replay)"
    fs_check "$fstype" "$LOOP" "$V/check.$c.out" || {
      cat "$V/check.$c.out" >&2
      log "workload: $wout"
      product_failure "$fstype cycle $c: the checker finds the filesystem damaged after kill -9 and journal replay"
    }
    fs_forget_devices "$fstype"
    fs_mount "$LOOP" "$FSMNT" -t "$fstype" -o discard
    vout=$(python3 "$WORKLOAD" verify "$FSMNT" "$SIDE/durable" 2>&1) || {
      printf '%s\n' "$vout" >&2
      product_failure "$fstype cycle $c: fsync'ed files are wrong after kill -9"
    }
    check "$fstype cycle $c/$CYCLES: kill -9$note; recovery $REC_MS ms; checker clean after replay; ${vout#fs verify: } (dio=$mode); ${wout#workload: }"
    if ((c % 5 == 0 && c < CYCLES)); then
      fs_umount "$FSMNT"
      check "$fstype cycle $c: after a drain, the home copy alone is a clean filesystem"
      check_home "$fstype" "cycle $c"
      fs_forget_devices "$fstype"
      fs_mount "$LOOP" "$FSMNT" -t "$fstype" -o discard
    fi
  done
  section "$fstype: clean stop; the home copy alone"
  fs_umount "$FSMNT"
  check "$fstype: after a drain, SLOW/image alone is a clean $fstype holding every fsync'ed file"
  check_home "$fstype" "end"
  detach_loop "$LOOP"
  bv_unmount "$MNT" "$FAST"
  loop_attach hl "$SLOW/image" -r
  fs_forget_devices "$fstype"
  opts=ro
  [[ $fstype == xfs ]] && opts=ro,norecovery
  fs_mount "$hl" "$FSMNT" -t "$fstype" -o "$opts"
  vout=$(python3 "$WORKLOAD" verify "$FSMNT" "$SIDE/durable" 2>&1) || {
    printf '%s\n' "$vout" >&2
    product_failure "$fstype: the drained home copy does not hold the fsync'ed files"
  }
  ok "home copy: ${vout#fs verify: }"
  fs_umount "$FSMNT"
  detach_loop "$hl"
  fs_forget_devices "$fstype"
  check "$fstype: 'boostvol check' is clean"
  capture bv check "$FAST"
  [[ $E2E_RC -eq 0 ]] || { printf '%s\n' "$E2E_OUT" >&2; product_failure "$fstype: 'boostvol check' exited $E2E_RC"; }
  ok "clean"
  SUMMARY[$fstype]="cycles=$CYCLES kills=$CYCLES ops=$ops kills-while-migrating=$k_mig lazy-umounts=$lazy late-records=$late_total max_recovery_ms=$max_rec time_s=$((SECONDS - t0))"
done
assert_no_leftovers
for t in $FSTYPES; do log "crash_loop_fs summary $t: ${SUMMARY[$t]}"; done
