#!/usr/bin/env bash
# home_alone: the home copy is consistent on its own (DESIGN.md 2.7): if FAST is lost for good at any moment,
# SLOW/image is a stale but crash-consistent disk whose filesystem mounts after a journal replay.
#
# ext4 on a 256 MiB volume with a 16 MiB log (512 KiB segments, 256 KiB migration batches, migration starting
# early): the migrator applies batches to SLOW all the time. At random moments (often while the migrator is
# migrating) under a file workload (tests/lib/fs_workload.py) the daemon gets kill -9, and SLOW/image is copied
# aside: that copy is all a user has if FAST is lost now. The user's step is `boostvol recover-home SLOW`, which
# finishes a migration batch the kill left half applied (from SLOW's redo journal). The recovered copy, on its own
# loop device (no boostvol), must mount (ext4 replays its journal, as after a power cut) and then `fsck.ext4 -fn`
# must be clean. Stale is fine. The raw copy (no recover-home) must be clean too unless the kill fell inside a
# batch's in-place writes (some of its extents in place, some not: a "mix", counted; tests/lib/home_journal.py
# tells which). On odd moments with a live journal, recover-home also runs on SLOW itself, and the lost cache
# "comes back": its mount must still accept the home. Then the volume is remounted normally (recovery), the
# filesystem too, its fsync'ed files are checked, and the workload goes on. At least 10 moments (BOOSTVOL_LONG=1:
# 50; HOME_MOMENTS overrides).
# shellcheck source=SCRIPTDIR/../lib/e2e_lib.sh
source "$(dirname "$0")/../lib/e2e_lib.sh"
# shellcheck source=SCRIPTDIR/../lib/crash_lib.sh
source "$(dirname "$0")/../lib/crash_lib.sh"
hl="" # the loop device on a copy of the home (set by loop_attach)

need_root
need_fuse
need_loop
need_cmd python3 losetup fusermount3 mkfs.ext4 fsck.ext4 cp
e2e_init

WORKLOAD=$E2E_LIB_DIR/fs_workload.py
FAST=$E2E_DIR/fast
SLOW=$E2E_DIR/slow
MNT=$E2E_DIR/mnt
FSMNT=$E2E_DIR/fs
HOMEMNT=$E2E_DIR/home-fs
SIDE=$E2E_DIR/side
mkdir -p "$SIDE"
MOMENTS=${HOME_MOMENTS:-12}
is_long && MOMENTS=${HOME_MOMENTS:-50}
RANDOM=$CRASH_SEED
log "seed $CRASH_SEED (CRASH_SEED replays the random choices), $MOMENTS moments"

section "ext4 on a 256 MiB volume with a 16 MiB log; the migrator busy"
# CRASH_CREATE_ARGS: extra `boostvol create` options; "--no-home-journal" is a negative control (without
# the redo journal SLOW alone is documented NOT to be crash-consistent; ext4 fsck sees a mix only by luck).
read -r -a create_args <<<"${CRASH_CREATE_ARGS:-}"
bv_create "$FAST" "$SLOW" 256M --cache-size 16M --segment-size 512K "${create_args[@]}"
expect_rc 0 bv set "$FAST" max_batch_bytes=262144 migrate_start_fraction=0.1 idle_migrate_ms=200
bv_mount "$FAST" "$MNT"
mode=on
attach_image_loop "$mode"
fs_mkfs ext4 "$LOOP" || fail "mkfs.ext4"
# The home must hold a filesystem before the first moment: a stale copy from before mkfs is not a filesystem.
expect_rc 0 timeout 600 "$BOOSTVOL_BIN" drain "$MNT"
fs_mount "$LOOP" "$FSMNT" -t ext4

k_mig=0 live_journal=0 mixed=0 raw_mix_unclean=0 on_slow=0 max_rec=0 ops=0 t0=$SECONDS
declare -A jkinds=()
for m in $(seq 1 "$MOMENTS"); do
  OUT=$SIDE/workload.$m.out
  start_workload "$FSMNT" "$SIDE/durable" "$OUT"
  note=""
  if ((RANDOM % 10 < 6)); then
    sleep "0.$((RANDOM % 10))"
    if kill_when_migrating 8; then
      note=" with a migration batch in flight"
      k_mig=$((k_mig + 1))
    else
      note=" (no migration batch seen)"
      kill_daemon
    fi
  else
    sleep "$((RANDOM % 2)).$((RANDOM % 10))"
    kill_daemon
  fi
  # FAST is "lost" now: what SLOW holds at this moment is all there is.
  jsize=$(stat -c %s "$SLOW/boostvol-journal" 2>/dev/null || echo absent)
  stamp_wm=$(sed -n 's/^watermark_record=//p' "$SLOW/boostvol-home")
  jstate=$(python3 "$E2E_LIB_DIR/home_journal.py" inspect "$SLOW") || fail "home_journal.py inspect failed"
  jkind=${jstate%% *}
  [[ $jkind != empty ]] && live_journal=$((live_journal + 1))
  jkinds[$jkind]=$((${jkinds[$jkind]:-0} + 1))
  COPY=$E2E_DIR/home.copy
  timeout 300 cp --sparse=always "$SLOW/image" "$COPY" || fail "cannot copy SLOW/image"
  cp "$SLOW/boostvol-home" "$SIDE/stamp.$m"
  [[ $jsize == absent || $jsize == 0 ]] || cp "$SLOW/boostvol-journal" "$SIDE/journal.$m"
  # What the user does after losing FAST: recover-home (here on a copy of SLOW's files, checked below).
  RECOVERED=$E2E_DIR/home.recovered
  rm -rf "$RECOVERED" && mkdir -m 700 "$RECOVERED"
  timeout 300 cp --sparse=always "$SLOW/image" "$RECOVERED/image" || fail "cannot copy SLOW/image"
  cp "$SLOW/boostvol-home" "$RECOVERED/"
  [[ $jsize == absent ]] || cp "$SLOW/boostvol-journal" "$RECOVERED/"
  expect_rc 0 bv recover-home "$RECOVERED"
  printf '%s\n' "$E2E_OUT" >"$SIDE/recover.$m.out"
  grep -q 'crash-consistent image' <<<"$E2E_OUT" || fail "recover-home did not say what it did: $E2E_OUT"
  [[ $jkind == live ]] && ! grep -q 'finished from the home' <<<"$E2E_OUT" &&
    product_failure "moment $m: SLOW's redo journal was live ($jstate) but recover-home finished no batch: $E2E_OUT"
  k=0 n=0
  if [[ $jkind == live ]]; then
    inplace=$(python3 "$E2E_LIB_DIR/home_journal.py" compare "$SLOW" "$COPY") || fail "home_journal.py compare failed"
    jkind="live, $inplace"
    read -r k _of n _rest <<<"$inplace"
    ((k > 0 && k < n)) && mixed=$((mixed + 1))
    # Odd moments: the user's command on SLOW itself; the lost cache then "comes back" (the remount below).
    if ((m % 2)); then
      expect_rc 0 bv recover-home "$SLOW"
      grep -q 'finished from the home' <<<"$E2E_OUT" || fail "recover-home on SLOW finished no batch: $E2E_OUT"
      jkind="$jkind; recover-home run on SLOW"
      on_slow=$((on_slow + 1))
    fi
  fi

  stop_workload "$OUT"
  ops=$((ops + WL_OPS))
  unmount_dead_fs "$FSMNT"
  teardown_dead_volume

  # The home copy alone: no boostvol, a loop device on the copy, mount (journal replay), umount, fsck -fn.
  recovered_verdict="clean"
  loop_attach hl "$RECOVERED/image"
  if ! fs_replay ext4 "$hl" "$HOMEMNT"; then
    dmesg 2>/dev/null | tail -n 20 >&2
    recovered_verdict="does not mount as ext4"
  elif ! fs_check ext4 "$hl" "$SIDE/fsck-recovered.$m.out"; then
    cat "$SIDE/fsck-recovered.$m.out" >&2
    recovered_verdict="is not a clean ext4 after its journal replay"
  fi
  detach_loop "$hl"
  if [[ $recovered_verdict != clean ]]; then
    cp --sparse=always "$COPY" "$SIDE/home.copy.$m" 2>/dev/null || true
    product_failure "moment $m$note: SLOW/image after boostvol recover-home $recovered_verdict (recover-home said: $(cat "$SIDE/recover.$m.out"); redo journal on SLOW: $jstate; stamp watermark $stamp_wm; the raw copy is kept as $SIDE/home.copy.$m)"
  fi
  rm -rf "$RECOVERED"
  # The raw copy: clean too, unless the kill fell inside the batch's in-place writes (a mix needs recover-home).
  raw_verdict="clean"
  loop_attach hl "$COPY"
  if ! fs_replay ext4 "$hl" "$HOMEMNT"; then
    raw_verdict="does not mount"
  elif ! fs_check ext4 "$hl" "$SIDE/fsck.$m.out"; then
    raw_verdict="fsck finds damage"
  fi
  detach_loop "$hl"
  if [[ $raw_verdict != clean ]]; then
    if ((k > 0 && k < n)); then
      raw_mix_unclean=$((raw_mix_unclean + 1))
    else
      cat "$SIDE/fsck.$m.out" >&2 2>/dev/null || true
      cp --sparse=always "$COPY" "$SIDE/home.copy.$m" 2>/dev/null || true
      product_failure "moment $m$note: SLOW/image alone $raw_verdict although no batch was half applied (redo journal on SLOW: $jstate; stamp watermark $stamp_wm; the raw copy is kept as $SIDE/home.copy.$m)"
    fi
  fi
  rm -f "$COPY"

  # Back to normal: recover, the filesystem, its fsync'ed files.
  remount_after_kill
  ((REC_MS > max_rec)) && max_rec=$REC_MS
  [[ $mode == on ]] && mode=off || mode=on
  attach_image_loop "$mode"
  fs_mount "$LOOP" "$FSMNT" -t ext4
  vout=$(python3 "$WORKLOAD" verify "$FSMNT" "$SIDE/durable" 2>&1) || {
    printf '%s\n' "$vout" >&2
    product_failure "moment $m: fsync'ed files are wrong after kill -9 and recovery"
  }
  check "moment $m/$MOMENTS: kill -9$note (SLOW redo journal: $jkind; stamp watermark $stamp_wm): after recover-home the home copy alone mounts and fsck.ext4 -fn is clean (the raw copy: $raw_verdict); after recovery ${vout#fs verify: }"
done
elapsed=$((SECONDS - t0))

section "clean stop"
fs_umount "$FSMNT"
check "after a final drain, SLOW/image alone is a clean ext4"
expect_rc 0 timeout 600 "$BOOSTVOL_BIN" drain "$MNT"
detach_loop "$LOOP"
bv_unmount "$MNT" "$FAST"
loop_attach hl "$SLOW/image" -r
fs_check ext4 "$hl" "$SIDE/fsck.final.out" || { cat "$SIDE/fsck.final.out" >&2; product_failure "the drained home copy is not a clean ext4"; }
detach_loop "$hl"
ok "clean"
expect_rc 0 bv check "$FAST"
assert_no_leftovers
log "home_alone summary: moments=$MOMENTS (while migrating: $k_mig; with a non-empty redo journal on SLOW: $live_journal; raw copy a mix of the batch's old and new extents: $mixed, of which not a clean ext4 without recover-home: $raw_mix_unclean; recover-home run on SLOW itself: $on_slow; journal states:$(for k in "${!jkinds[@]}"; do printf ' %s=%s' "$k" "${jkinds[$k]}"; done)) workload_ops=$ops max_recovery_ms=$max_rec time_s=$elapsed seed=$CRASH_SEED"
