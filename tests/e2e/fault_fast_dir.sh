#!/usr/bin/env bash
# fault_fast_dir: FAST fails for real (DESIGN.md 4, issue 4). FAST is its own small ext4 on a loop file.
#
# 1. enospc: create the volume, then fill what is left of FAST's filesystem with a filler file, so that every
#    growth of meta.db (+ its WAL), boostvol.log and the checkpoint fails with ENOSPC. The log is preallocated:
#    writes into it must keep working. A writer (tests/lib/acked_writer.py: O_DIRECT records on the loop device,
#    fsync every 8, each fsync that returned OK recorded on another filesystem) writes more than the log holds
#    (so the migrator must commit to meta.db to free segments), then the volume is stopped cleanly (the checkpoint
#    write meets ENOSPC too), the filler removed, the volume mounted again: every record acknowledged by an fsync
#    must read back intact, the volume drains, and `boostvol check` is clean.
#    The clean stop's checkpoint may then fail (ENOSPC on meta.db's WAL): `boostvol unmount` must then NOT say
#    "stopped cleanly" (exit 3, finding B6), meta.db must say unclean, and the next mount recovers from the log.
# 2. rofs: FAST goes read-only under the writer (ext4 errors=remount-ro + trigger_fs_error; a plain
#    `mount -o remount,ro` is refused while the daemon holds the log open for writing, which is logged). On
#    kernel 6.x ext4 then refuses every write and sync on FAST with EIO (not EROFS: it is a shutdown). What must
#    hold: the log is declared failed after 10 s of failing, the volume degrades to write-through (status
#    degraded-write-through), no write or fsync fails, fsyncs are acknowledged again (durable on SLOW). Then the
#    writer stops, the daemon is killed (FAST cannot go back to rw while it holds it), FAST is fsck'ed and remounted
#    rw, the volume mounted (recovery): every record acknowledged by fsync must be intact.
# What the writer saw (writes ok / failed, fsyncs ok / failed) is printed, for docs/faults.md.
# shellcheck source=SCRIPTDIR/../lib/e2e_lib.sh
source "$(dirname "$0")/../lib/e2e_lib.sh"

need_root
need_fuse
need_loop
need_cmd mkfs.ext4 e2fsck python3 fallocate df
e2e_init

# detach DEV FILE: losetup -d, then wait until no loop device is backed by FILE. (Not "until DEV is free":
# parallel tests reuse a freed loop number at once.)
detach() {
  timeout 60 losetup -d "$1" 2>/dev/null || true
  wait_until 30 "$2 to have no loop device" bash -c "[[ -z \$(losetup -j '$2' 2>/dev/null) ]]"
}

WRITER=$BOOSTVOL_SRC/tests/lib/acked_writer.py
SUMMARY=$E2E_DIR/summary.txt
: >"$SUMMARY"
CUR=""
# shellcheck disable=SC2154 # _rc is assigned inside the trap string
trap '_rc=$?; set +e; [[ -n $CUR ]] && touch "$CUR/stop" 2>/dev/null; (exit $_rc); _e2e_exit_trap' EXIT

# fast_up DIR SIZE ERRORS: DIR/fast.img -> loop -> ext4 (errors=ERRORS) at DIR/fastfs; FAST = DIR/fastfs/vol.
fast_up() {
  local d=$1 size=$2 errors=$3
  mkdir -p "$d/fastfs"
  truncate -s "$size" "$d/fast.img"
  mkfs.ext4 -q -F -m 0 "$d/fast.img" || fail "mkfs.ext4 for FAST"
  loop_attach FAST_LOOP "$d/fast.img"
  fs_mount "$FAST_LOOP" "$d/fastfs" -t ext4 -o "errors=$errors"
}

free_bytes() { df -B1 --output=avail "$1" | tail -n1 | tr -d ' '; }

fill() { # fill DIR: take every free block of DIR's filesystem
  fallocate -l "$(free_bytes "$1")" "$1/filler" 2>/dev/null || true
  dd if=/dev/zero of="$1/filler" bs=64k oflag=append conv=notrunc status=none 2>/dev/null || true
  sync -f "$1" 2>/dev/null || true
}

# ---------------------------------------------------------------------------------------------------------------
section "enospc: FAST's filesystem full around a preallocated log"
D=$E2E_DIR/enospc
CUR=$D
mkdir -p "$D"
fast_up "$D" 160M continue
FAST=$D/fastfs/vol
SLOW=$D/slow
MNT=$D/mnt
bv_create "$FAST" "$SLOW" 512M --cache-size 48M
bv_mount "$FAST" "$MNT"
# The writer is one sequential stream: with sequential bypass on (the default) it would go home directly
# and never meet the failing FAST this test is about.
expect_rc 0 bv set "$MNT" sequential_cutoff=0
loop_attach LOOP "$MNT/image" --direct-io=on
fill "$D/fastfs"
check "enospc: FAST's filesystem has no free space left"
assert_eq "free bytes on FAST" "$(free_bytes "$D/fastfs")" 0
capture bash -c "echo x >'$D/fastfs/probe'"
[[ $E2E_RC -ne 0 ]] || fail "a new file could still be written on FAST"
ok "writing a new file on FAST fails: $(head -n1 <<<"$E2E_OUT")"
find "$FAST" -maxdepth 1 -printf "    %M %10s %f\n"

check "enospc: 1200 records x 64 KiB (75 MiB, more than the 48 MiB log) with an fsync every 8: none fails"
: >"$D/acks"
python3 "$WRITER" write "$LOOP" "$D/acks" --max 1200 --every 8 >"$D/writer.out" 2>&1 &
WPID=$!
# Either the writer finishes, or the log fills and writes wait (they must not fail): whichever comes first.
stalled() {
  kill -0 "$WPID" 2>/dev/null || return 1
  bv status "$MNT" --json >"$D/status.full" 2>/dev/null || return 1
  python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); sys.exit(0 if d["segments_live"] == d["segments_total"] and d["write_waits"] > 0 else 1)' "$D/status.full"
}
done_or_stalled() { ! kill -0 "$WPID" 2>/dev/null || stalled; }
wait_until 600 "the writer to finish or to wait for log space" done_or_stalled
if kill -0 "$WPID" 2>/dev/null; then
  # Stalled: make sure it stays so (no progress) rather than catching a passing moment.
  a1=$(wc -l <"$D/acks")
  sleep 5
  if stalled && [[ $(wc -l <"$D/acks") == "$a1" ]]; then
    st=$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print("health=%s migrator=%s live=%s/%s write_waits=%s last_error=%s" % (d["health"], d["migrator_state"], d["segments_live"], d["segments_total"], d["write_waits"], d["last_error"][:200]))' "$D/status.full")
    log "STALL: with FAST full the log filled and writes wait (acknowledged so far: $(tail -n1 "$D/acks" | cut -d' ' -f1)); $st"
    echo "enospc: STALL with FAST full after $(wc -l <"$D/acks") fsyncs: $st" >>"$SUMMARY"
    check "enospc: the stalled writer has not failed; freeing FAST's space lets it finish"
    rm -f "$D/fastfs/filler"
  fi
fi
wrc=0
wait "$WPID" || wrc=$?
echo "enospc writer: rc=$wrc $(tail -n1 "$D/writer.out")" >>"$SUMMARY"
log "writer: rc=$wrc $(tail -n1 "$D/writer.out")"
[[ $wrc -eq 0 ]] || fail "enospc: the writer saw errors: $(tail -n1 "$D/writer.out")"
ok "every write and fsync succeeded"
check "enospc: the acknowledged records read back through the volume"
expect_rc 0 timeout 300 python3 "$WRITER" verify "$LOOP" "$D/acks"
fill "$D/fastfs"
log "FAST filled again: $(free_bytes "$D/fastfs") bytes free"

check "enospc: clean stop with FAST still full (the checkpoint write meets ENOSPC)"
detach "$LOOP" "$MNT/image"
capture bv unmount "$MNT"
echo "enospc: unmount with FAST full: rc=$E2E_RC $(tr '\n' ' ' <<<"$E2E_OUT" | head -c 300)" >>"$SUMMARY"
log "boostvol unmount with FAST full: exit $E2E_RC: $(head -n3 <<<"$E2E_OUT")"
UNMOUNT_RC=$E2E_RC
UNMOUNT_OUT=$E2E_OUT
if [[ $E2E_RC -ne 0 ]]; then
  # Make sure it is really down before FAST changes under it.
  pid=$(daemon_pid "$FAST")
  [[ -n $pid ]] && { kill -TERM "$pid"; wait_until 60 "daemon exit" not pid_alive "$pid"; }
  is_mounted "$MNT" && { fusermount3 -u "$MNT" || umount -l "$MNT"; }
fi
CLEAN=$(bv status "$FAST" --json 2>/dev/null | json_get - clean_stop)
log "meta.db says clean_stop=$CLEAN; unmount exit $UNMOUNT_RC"
echo "enospc: meta.db after the stop: clean_stop=$CLEAN" >>"$SUMMARY"
check "enospc: unmount reports a clean stop only if meta.db holds the checkpoint (B6)"
if [[ $CLEAN == True || $CLEAN == true ]]; then
  assert_eq "unmount exit with a checkpoint written" "$UNMOUNT_RC" 0
else
  assert_eq "unmount exit with the checkpoint refused" "$UNMOUNT_RC" 3
  grep -q "WITHOUT a clean checkpoint" <<<"$UNMOUNT_OUT" || fail "unmount did not say the stop was unclean: $UNMOUNT_OUT"
  grep -q "stopped cleanly" <<<"$UNMOUNT_OUT" && fail "unmount claimed a clean stop: $UNMOUNT_OUT"
  ok "unmount said: $(grep WITHOUT <<<"$UNMOUNT_OUT" | head -c 200)"
fi
grep -iE "error|fail|space" "$FAST/boostvol.log" 2>/dev/null | tail -n 8 | sed 's/^/    log| /' || true
rm -f "$D/fastfs/filler"
check "enospc: after freeing space, the volume mounts (recovering if it must) and every fsync'ed record is intact"
bv_mount "$FAST" "$MNT"
OPENED=$(bv status "$MNT" --json | json_get - clean_open)
log "mounted again: clean_open=$OPENED"
[[ ($CLEAN == True || $CLEAN == true) || ($OPENED != True && $OPENED != true) ]] || fail "opened 'clean' after an unclean stop"
loop_attach LOOP "$MNT/image" --direct-io=on
expect_rc 0 timeout 300 python3 "$WRITER" verify "$LOOP" "$D/acks"
log "verify: $E2E_OUT"
check "enospc: drain, unmount, check"
expect_rc 0 bv drain "$MNT"
detach "$LOOP" "$MNT/image"
bv_unmount "$MNT" "$FAST"
expect_rc 0 bv check "$FAST"
check "enospc: home alone holds every acknowledged record"
loop_attach HL "$SLOW/image" --read-only
expect_rc 0 timeout 300 python3 "$WRITER" verify "$HL" "$D/acks"
detach "$HL" "$SLOW/image"
fs_umount "$D/fastfs"
detach "$FAST_LOOP" "$D/fast.img"
echo "PASS enospc" >>"$SUMMARY"
CUR=""

# ---------------------------------------------------------------------------------------------------------------
section "rofs: FAST goes read-only under fsync'ed writes"
D=$E2E_DIR/rofs
CUR=$D
mkdir -p "$D"
fast_up "$D" 160M remount-ro
FAST=$D/fastfs/vol
SLOW=$D/slow
MNT=$D/mnt
bv_create "$FAST" "$SLOW" 512M --cache-size 48M
bv_mount "$FAST" "$MNT"
# The writer is one sequential stream: with sequential bypass on (the default) it would go home directly
# and never meet the failing FAST this test is about.
expect_rc 0 bv set "$MNT" sequential_cutoff=0
DPID=$(daemon_pid "$FAST")
loop_attach LOOP "$MNT/image" --direct-io=on
: >"$D/acks"
# At most the image's 8192 records (512 MiB): a write past the device's end would be an error of its own.
python3 "$WRITER" write "$LOOP" "$D/acks" --max 8000 --every 8 --stop-file "$D/stop" >"$D/writer.out" 2>&1 &
WPID=$!
wait_until 120 "the writer's first acknowledged fsync" test -s "$D/acks"
sleep 2
ACK_BEFORE=$(tail -n1 "$D/acks" | cut -d' ' -f1)
check "rofs: make FAST read-only (acknowledged so far: record $ACK_BEFORE)"
capture mount -o remount,ro "$D/fastfs"
echo "rofs: mount -o remount,ro FAST: rc=$E2E_RC $(head -n1 <<<"$E2E_OUT")" >>"$SUMMARY"
log "mount -o remount,ro FAST: exit $E2E_RC: $(head -n1 <<<"$E2E_OUT")"
if [[ $E2E_RC -ne 0 ]]; then
  echo 1 >"/sys/fs/ext4/$(basename "$FAST_LOOP")/trigger_fs_error"
fi
T_RO=$(date +%s.%N)
wait_until 30 "FAST read-only" bash -c "awk -v m='$D/fastfs' '\$2 == m { print \$4 }' /proc/mounts | grep -qE '^ro|emergency_ro'"
ok "FAST is now $(awk -v m="$D/fastfs" '$2 == m { print $4 }' /proc/mounts)"
check "rofs: the volume degrades to write-through (the log is declared failed after 10 s)"
wait_until 90 "health degraded-write-through" bash -c "'$BOOSTVOL_BIN' status '$MNT' --json | grep -q '\"health\":\"degraded-write-through\"'"
T_DEG=$(date +%s.%N)
ok "degraded after $(python3 -c "print(round($T_DEG - $T_RO, 1))") s"
check "rofs: fsyncs are acknowledged again (write-through to SLOW)"
A0=$(wc -l <"$D/acks")
wait_until 60 "a new acknowledged fsync" bash -c "(( \$(wc -l <'$D/acks') > $A0 ))"
sleep 3
ACK_DURING=$(tail -n1 "$D/acks" | cut -d' ' -f1)
ACKED_AFTER_RO=$(awk -v t="$T_RO" '$2 > t + 1 { n++ } END { print n + 0 }' "$D/acks")
GAP=$(awk -v t="$T_RO" '$2 <= t { last = $2 } $2 > t && !first { first = $2 } END { printf "%.1f", first - last }' "$D/acks")
ok "$ACKED_AFTER_RO fsyncs acknowledged after FAST failed; the longest wait for an fsync around the failure: $GAP s"
echo "rofs: degraded $(python3 -c "print(round($T_DEG - $T_RO, 1))") s after FAST failed; fsyncs blocked for $GAP s, then acknowledged again" >>"$SUMMARY"
bv status "$MNT" --json >"$D/status.ro" 2>&1 || true
log "status with FAST read-only: $(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print("health=%s migrator=%s durable=%s next=%s last_error=%s" % (d["health"], d["migrator_state"], d["durable_record"], d["next_record"], d["last_error"][:200]))' "$D/status.ro" 2>/dev/null || head -c 300 "$D/status.ro")"
echo "rofs: fsyncs acknowledged more than 1 s after FAST went ro: $ACKED_AFTER_RO (last acked before: $ACK_BEFORE, after 15 s: $ACK_DURING)" >>"$SUMMARY"
echo "rofs: status: $(head -c 600 "$D/status.ro")" >>"$SUMMARY"
log "fsyncs acknowledged >1 s after FAST went read-only: $ACKED_AFTER_RO; writer alive: $(kill -0 $WPID 2>/dev/null && echo yes || echo no)"
grep -iE "error|fail|read-only" "$FAST/boostvol.log" 2>/dev/null | tail -n 5 | sed 's/^/    log| /' || true

check "rofs: the writer stops by itself: no write or fsync failed"
touch "$D/stop"
wait_until 120 "the writer to stop" not kill -0 "$WPID"
wait "$WPID" 2>/dev/null || true
log "writer: $(tail -n1 "$D/writer.out")"
echo "rofs: writer: $(tail -n1 "$D/writer.out")" >>"$SUMMARY"
python3 -c 'import json,sys; d=json.loads(open(sys.argv[1]).read().splitlines()[-1]); sys.exit(0 if not d["write_errors"] and not d["fsync_errors"] else 1)' "$D/writer.out" ||
  fail "rofs: the writer saw errors: $(tail -n1 "$D/writer.out")"
ok "no write or fsync error"
check "rofs: restart: kill the daemon, fsck FAST, remount it rw, mount the volume (recovery)"
kill -KILL "$DPID" 2>/dev/null || true
wait_until 60 "daemon $DPID gone" not pid_alive "$DPID"
timeout 60 losetup -d "$LOOP" 2>/dev/null || true
timeout 20 fusermount3 -uz "$MNT" 2>/dev/null || umount -l "$MNT" 2>/dev/null || true
fs_umount "$D/fastfs"
capture timeout 300 e2fsck -fy "$FAST_LOOP"
log "e2fsck -fy FAST: exit $E2E_RC"
fs_mount "$FAST_LOOP" "$D/fastfs" -t ext4
bv_mount "$FAST" "$MNT"
loop_attach LOOP "$MNT/image" --direct-io=on
check "rofs: every record acknowledged by fsync (up to $(tail -n1 "$D/acks" | cut -d' ' -f1)) is intact"
capture timeout 300 python3 "$WRITER" verify "$LOOP" "$D/acks"
echo "rofs: verify after restart: rc=$E2E_RC $E2E_OUT" >>"$SUMMARY"
[[ $E2E_RC -eq 0 ]] || fail "rofs: acknowledged data lost: $E2E_OUT"
ok "$E2E_OUT"
expect_rc 0 bv drain "$MNT"
detach "$LOOP" "$MNT/image"
bv_unmount "$MNT" "$FAST"
expect_rc 0 bv check "$FAST"
fs_umount "$D/fastfs"
detach "$FAST_LOOP" "$D/fast.img"
echo "PASS rofs" >>"$SUMMARY"
CUR=""

section "summary"
cat "$SUMMARY"
assert_no_leftovers
