#!/usr/bin/env bash
# fault_slow_gone: the slow dir vanishes, fills up, or is asked to go read-only, for real, under ext4 with a file
# workload (DESIGN.md 4, issue 4). SLOW is its own small ext4 on a loop file, so that it can be lazily unmounted
# and mounted again, filled to ENOSPC and freed. Above boostvol: ext4 (errors=remount-ro) on
# `losetup --direct-io=on MNT/image`, running tests/lib/fs_workload.py (copies, creates, renames, deletes, each
# durable change fsync'ed and recorded on another filesystem).
#
# 1. gone: `umount -l` of SLOW's filesystem for 15 s (BOOSTVOL_LONG=1: 150 s, past the kernel's 120 s hung-task
#    warning, whose messages are reported), then `mount` of the same device again. boostvol's descriptors
#    of SLOW/image stay valid on the detached filesystem; the migrator writes a batch only while SLOW's path still
#    leads to the image it holds open (same st_dev/st_ino), so it backs off, and resumes by itself when the same
#    filesystem is mounted there again (same superblock: same identity).
# 2. enospc: a filler takes every free block of SLOW for 10 s (each batch's redo journal needs new blocks), then
#    is removed.
# 3. rofs: `mount -o remount,ro` of SLOW while boostvol holds SLOW/image open for writing is refused by Linux
#    (EBUSY); this is recorded, and the volume must stay healthy. At the end, with the volume stopped, SLOW made
#    read-only (a read-only bind mount over it): `boostvol mount` must refuse (exit 3) naming EROFS.
# Each fault: no write or fsync of the workload fails (it stops at the first error), ext4 above stays rw with no
# EXT4-fs error; during the fault `boostvol status` says home-unreachable, names the cause (errno text), says since
# when and when it retries, and never "idle"; after it, healthy by itself. At the end: every fsync'ed file verifies,
# drain, e2fsck -fn clean through boostvol and on SLOW/image alone (home == image), `boostvol check` clean, and the
# daemon's log has one "migration ... failed" line per fault (not one per attempt).
# shellcheck source=SCRIPTDIR/../lib/e2e_lib.sh
source "$(dirname "$0")/../lib/e2e_lib.sh"

need_root
need_fuse
need_loop
need_cmd mkfs.ext4 e2fsck python3 fallocate df dmesg
e2e_init

WORKLOAD=$E2E_LIB_DIR/fs_workload.py
GONE_S=${FAULT_GONE_S:-15}
is_long && GONE_S=${FAULT_GONE_S:-150}
ENOSPC_S=10
D=$E2E_DIR
SLOWFS=$D/slowfs
SLOW=$SLOWFS/vol
FAST=$D/fast
MNT=$D/mnt
TOP=$D/top
SIDE=$D/side
mkdir -p "$SIDE"
SUMMARY=$D/summary.txt
: >"$SUMMARY"
WPID=""
release() {
  set +e
  rm -f "$SLOWFS/filler" 2>/dev/null
  [[ -n $SLOW_LOOP ]] && ! mountpoint -q "$SLOWFS" && mount "$SLOW_LOOP" "$SLOWFS" 2>/dev/null
  [[ -n $WPID ]] && kill "$WPID" 2>/dev/null
  return 0
}
# shellcheck disable=SC2154 # _rc is assigned inside the trap string
trap '_rc=$?; set +e; release; (exit $_rc); _e2e_exit_trap' EXIT

free_bytes() { df -B1 --output=avail "$1" | tail -n1 | tr -d ' '; }
st_json() { bv status "$MNT" --json 2>/dev/null; }
field() { json_get "$1" "$2"; }

# sample_status SECONDS OUT: samples the status every 0.5 s; fails on a sample that says the home is failing
# but calls the migrator idle/migrating, or lacks the since/next-retry times.
sample_status() {
  local secs=$1 out=$2 end=$((SECONDS + $1))
  : >"$out"
  while ((SECONDS < end)); do
    st_json >>"$out" || true
    sleep 0.5
  done
  python3 - "$out" <<'EOF' || fail "status during the fault: see above"
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
bad = [r for r in rows if r["health"] == "home-unreachable" and
       (r["migrator_state"] not in ("backoff", "retrying") or not r["failing_since_unix"] or
        (r["migrator_state"] == "backoff" and not r["next_retry_unix"]))]
failing = [r for r in rows if r["health"] == "home-unreachable"]
print("  %d samples, %d home-unreachable, states %s" % (len(rows), len(failing),
      sorted(set(r["migrator_state"] for r in failing))))
if failing:
    print("  last_error:", failing[-1]["last_error"][:300])
for r in bad[:3]:
    print("  BAD:", r["health"], r["migrator_state"], r["failing_since_unix"], r["next_retry_unix"])
sys.exit(1 if bad or not failing else 0)
EOF
}

workload_alive() { kill -0 "$WPID" 2>/dev/null; }

# --- setup -----------------------------------------------------------------------------------------------------
section "setup: SLOW on its own ext4, boostvol, ext4 on the loop device, a file workload"
truncate -s 3G "$D/slow.img"
mkfs.ext4 -q -F -m 0 "$D/slow.img" || fail "mkfs.ext4 for SLOW"
loop_attach SLOW_LOOP "$D/slow.img"
fs_mount "$SLOW_LOOP" "$SLOWFS" -t ext4
bv_create "$FAST" "$SLOW" 2G --cache-size 32M
bv_mount "$FAST" "$MNT"
loop_attach LOOP "$MNT/image" --direct-io=on
mkfs.ext4 -q -F "$LOOP" || fail "mkfs.ext4 on the boostvol loop device"
fs_mount "$LOOP" "$TOP" -t ext4 -o errors=remount-ro
DMESG_MARK="boostvol-e2e fault_slow_gone $$ $(date +%s)"
echo "$DMESG_MARK" >/dev/kmsg 2>/dev/null || true
python3 "$WORKLOAD" run "$TOP" "$SIDE/side" --seed 4 --max-seconds $((35 + GONE_S + ENOSPC_S)) --ready "$SIDE/ready" >"$SIDE/workload.out" 2>&1 &
WPID=$!
wait_until 60 "the workload to start" test -e "$SIDE/ready"
sleep 3
# Some data home first, so that reads of home-only blocks happen too.
expect_rc 0 bv drain "$MNT"

# --- 1. gone ---------------------------------------------------------------------------------------------------
section "gone: umount -l SLOW's filesystem for $GONE_S s, then mount the same device again"
ID_BEFORE=$(stat -c '%d:%i' "$SLOW/image")
STAMP_BEFORE=$(sha256sum <"$SLOW/boostvol-home")
check "gone: SLOW lazily unmounted; writes go on, the status says why and when it retries"
timeout 30 umount -l "$SLOWFS" || fail "umount -l $SLOWFS"
[[ -e $SLOW ]] && fail "$SLOW still exists after umount -l"
# A drain makes the migrator try now (and must wait through the outage, not fail).
# (Not `bv`: its 120 s timeout is shorter than the long tier's outage.)
timeout --kill-after=10 $((GONE_S + 120)) "$BOOSTVOL_BIN" drain "$MNT" >"$D/drain.gone" 2>&1 &
DRPID=$!
sample_status "$GONE_S" "$D/status.gone"
kill -0 "$DRPID" 2>/dev/null || fail "gone: boostvol drain returned while SLOW is gone: $(cat "$D/drain.gone")"
workload_alive || fail "gone: the workload stopped during the outage: $(cat "$SIDE/workload.out")"
grep -q 'no longer leads' "$D/status.gone" || fail "gone: last_error does not say that SLOW's path is gone"
grep -q 'No such file or directory' "$D/status.gone" || fail "gone: last_error lacks the errno text"
ok "workload still running; status: home-unreachable, $(tail -n1 "$D/status.gone" | json_get - migrator_state)"
check "gone: the same device mounted again: same identity, migration resumes by itself"
timeout 30 mount "$SLOW_LOOP" "$SLOWFS" || fail "mount $SLOW_LOOP $SLOWFS"
assert_eq "SLOW/image identity (st_dev:st_ino)" "$(stat -c '%d:%i' "$SLOW/image")" "$ID_BEFORE"
wait_until 30 "health healthy after SLOW is back" bash -c "[[ \$('$BOOSTVOL_BIN' status '$MNT' --json | python3 -c 'import json,sys; print(json.load(sys.stdin)[\"health\"])') == healthy ]]"
wait "$DRPID" || fail "gone: drain failed: $(cat "$D/drain.gone")"
[[ $(sha256sum <"$SLOW/boostvol-home") != "$STAMP_BEFORE" ]] || fail "gone: the home's stamp did not move after the drain"
HUNG=$(dmesg | sed -n "/$DMESG_MARK/,\$p" | grep -c 'blocked for more than' || true)
HUNG_LEFT=$(cat /proc/sys/kernel/hung_task_warnings 2>/dev/null || echo '?')
log "kernel hung-task warnings during the outage: $HUNG (kernel.hung_task_warnings=$HUNG_LEFT; 0 = the kernel prints no more)"
echo "gone: $GONE_S s, hung-task warnings: $HUNG (warnings left to print: $HUNG_LEFT), $(grep -c . "$D/status.gone") status samples, $(grep -c home-unreachable "$D/status.gone") home-unreachable; healthy again" >>"$SUMMARY"
ok "healthy again"

# --- 2. enospc -------------------------------------------------------------------------------------------------
section "enospc: SLOW's filesystem full for $ENOSPC_S s"
check "enospc: a filler takes every free block of SLOW"
fallocate -l "$(free_bytes "$SLOWFS")" "$SLOWFS/filler" 2>/dev/null || true
dd if=/dev/zero of="$SLOWFS/filler" bs=64k oflag=append conv=notrunc status=none 2>/dev/null || true
sync -f "$SLOWFS"
log "SLOW free bytes: $(free_bytes "$SLOWFS")"
# Make sure migration is attempted (a drain in the background: it must wait, not fail).
bv drain "$MNT" >"$D/drain.enospc" 2>&1 &
DRPID=$!
sample_status "$ENOSPC_S" "$D/status.enospc"
workload_alive || fail "enospc: the workload stopped during the outage: $(cat "$SIDE/workload.out")"
grep -q 'No space left on device' "$D/status.enospc" || fail "enospc: last_error does not name ENOSPC"
kill -0 "$DRPID" 2>/dev/null || fail "enospc: boostvol drain returned while SLOW is full: $(cat "$D/drain.enospc")"
check "enospc: space freed: the drain finishes and the volume is healthy by itself"
rm -f "$SLOWFS/filler"
wait "$DRPID" || fail "enospc: drain failed: $(cat "$D/drain.enospc")"
wait_until 30 "health healthy after space is freed" bash -c "[[ \$('$BOOSTVOL_BIN' status '$MNT' --json | python3 -c 'import json,sys; print(json.load(sys.stdin)[\"health\"])') == healthy ]]"
echo "enospc: $ENOSPC_S s; last_error: $(grep home-unreachable "$D/status.enospc" | tail -n1 | json_get - last_error | head -c 200)" >>"$SUMMARY"
ok "healthy again"

# --- 3. rofs ---------------------------------------------------------------------------------------------------
section "rofs: mount -o remount,ro of SLOW while boostvol holds SLOW/image open"
capture timeout 30 mount -o remount,ro "$SLOWFS"
echo "rofs: mount -o remount,ro SLOW: exit $E2E_RC: $(head -n1 <<<"$E2E_OUT")" >>"$SUMMARY"
if [[ $E2E_RC -eq 0 ]]; then
  # A kernel that allows it: SLOW is read-only now; the same expectations as above, then back to rw.
  sample_status 10 "$D/status.rofs"
  timeout 30 mount -o remount,rw "$SLOWFS" || fail "remount,rw SLOW"
  wait_until 30 "health healthy" bash -c "[[ \$('$BOOSTVOL_BIN' status '$MNT' --json | python3 -c 'import json,sys; print(json.load(sys.stdin)[\"health\"])') == healthy ]]"
else
  ok "refused by Linux while a file is open for writing on it (exit $E2E_RC): $(head -n1 <<<"$E2E_OUT")"
  assert_eq "health after the refused remount" "$(st_json | json_get - health)" healthy
fi

# --- after -----------------------------------------------------------------------------------------------------
section "after: the workload ends without an error, everything verifies, home == image"
check "the workload never saw an error"
wait "$WPID"
WPID=""
log "$(tail -n1 "$SIDE/workload.out")"
grep -q 'stopped: time limit reached' "$SIDE/workload.out" || fail "the workload stopped on an error: $(tail -n1 "$SIDE/workload.out")"
echo "workload: $(tail -n1 "$SIDE/workload.out")" >>"$SUMMARY"
check "ext4 above stayed rw, no EXT4-fs error on $(basename "$LOOP")"
[[ $(awk -v m="$TOP" '$2 == m { print $4 }' /proc/mounts) == rw,* ]] || fail "ext4 above is not rw: $(grep " $TOP " /proc/mounts)"
if dmesg | sed -n "/$DMESG_MARK/,\$p" | grep -E "EXT4-fs (error|warning).*$(basename "$LOOP")|Buffer I/O error on dev $(basename "$LOOP")"; then
  fail "the filesystem above saw errors (dmesg above)"
fi
ok "rw, no errors"
check "every fsync'ed file verifies through boostvol"
expect_rc 0 timeout 300 python3 "$WORKLOAD" verify "$TOP" "$SIDE/side"
log "$(head -n1 <<<"$E2E_OUT")"
check "drain, e2fsck -fn through boostvol, unmount, boostvol check"
fs_umount "$TOP"
expect_rc 0 bv drain "$MNT"
expect_rc 0 timeout 300 e2fsck -fn "$LOOP"
loop_detach "$LOOP"
bv_unmount "$MNT" "$FAST"
expect_rc 0 bv check "$FAST"
check "SLOW/image alone (no boostvol): e2fsck -fn clean, the same fsync'ed files"
loop_attach HL "$SLOW/image"
expect_rc 0 timeout 300 e2fsck -fn "$HL"
fs_mount "$HL" "$D/home" -t ext4 -o ro,noload
expect_rc 0 timeout 300 python3 "$WORKLOAD" verify "$D/home" "$SIDE/side"
fs_umount "$D/home"
loop_detach "$HL"
check "the daemon logged each outage once, not once per attempt"
n_fail=$(grep -c 'migration to .* failed:' "$FAST/boostvol.log" || true)
n_back=$(grep -c 'works again' "$FAST/boostvol.log" || true)
n_batch=$(grep 'applying batch' "$FAST/boostvol.log" | grep -vc 'migration to' || true)
log "daemon log: $n_fail 'migration ... failed' line(s), $n_back 'works again', $n_batch per-attempt 'applying batch' line(s)"
echo "daemon log: $n_fail failed / $n_back works-again / $n_batch per-attempt lines" >>"$SUMMARY"
((n_fail >= 2 && n_fail <= 3)) || fail "expected one 'migration failed' line per outage (2), saw $n_fail"
((n_back == n_fail)) || fail "expected one 'works again' line per outage, saw $n_back for $n_fail"
((n_batch == 0)) || fail "per-attempt batch errors were logged ($n_batch lines)"
check "the migrator backed off (no spin): failed attempts per outage <= 2 x its seconds + 16"
# Attempts come from the backoff (1, 2, 4, 8 s), from the drain's own retries (0.1 .. 5 s) and from each log
# segment sealed while writes still flow (at most the log's 8 segments): a spin would be ~10 a second.
while read -r secs attempts; do
  log "outage of $secs s: $attempts failed attempts"
  ((attempts <= 2 * secs + 16)) || fail "$attempts attempts in $secs s: the migrator does not back off"
done < <(sed -n 's/.*works again after \([0-9]*\) s and \([0-9]*\) failed attempts.*/\1 \2/p' "$FAST/boostvol.log")
check "a SLOW that is read-only when the volume is mounted: the mount is refused, naming the cause"
timeout 30 mount --bind "$SLOW" "$SLOW" || fail "bind mount of SLOW"
E2E_FS_MOUNTS+=("$SLOW")
timeout 30 mount -o remount,bind,ro "$SLOW" || fail "remount,bind,ro of SLOW"
capture bv mount "$FAST" "$MNT"
echo "mount with SLOW read-only: exit $E2E_RC: $(head -n1 <<<"$E2E_OUT")" >>"$SUMMARY"
assert_eq "boostvol mount exit with SLOW read-only" "$E2E_RC" 3
grep -q 'Read-only file system' <<<"$E2E_OUT" || fail "the refusal does not name EROFS: $E2E_OUT"
ok "$(head -n1 <<<"$E2E_OUT")"
is_mounted "$MNT" && fail "$MNT got mounted anyway"
fs_umount "$SLOW"
fs_umount "$SLOWFS"
loop_detach "$SLOW_LOOP"

section "summary"
cat "$SUMMARY"
assert_no_leftovers
