#!/usr/bin/env bash
# kill9_fsync: fsync is a barrier and a crash leaves a prefix (DESIGN.md 2.2, 2.3, 2.5).
#
# Each cycle: a writer streams stamped 4 KiB blocks (address, sequence number, checksum) to MNT/image with
# O_DIRECT at random addresses, fsyncing after every 1-8 writes (sometimes after a burst of 32-256) and recording each acknowledged fsync in a
# history file in another dir (fsync'ed). At a random moment the daemon gets SIGKILL. Then `boostvol mount`
# recovers, and every block is read back and checked (tests/lib/stamped_blocks.py verify):
#   - every write acknowledged by a successful fsync is present (that version or a newer one);
#   - no block is a mix of two writes or garbage (checksum), none holds a version never written there;
#   - the blocks present form a prefix of the write sequence.
# 10 cycles (BOOSTVOL_LONG=1: 50), then 3 more (10) on a mount with -o writeback_cache where the writer writes
# through the page cache (no O_DIRECT): the kernel then holds unsynced writes and sends them to the daemon in its own
# order, so the prefix rule is not checked there; every fsync'ed write must still be present, and nothing torn or
# foreign. Then a clean unmount, `boostvol check`, a drain and SLOW/image == image.
# shellcheck source=SCRIPTDIR/../lib/e2e_lib.sh
source "$(dirname "$0")/../lib/e2e_lib.sh"

need_root
need_fuse
need_cmd python3 cmp
e2e_init

TOOL=$E2E_LIB_DIR/stamped_blocks.py
FAST=$E2E_DIR/fast
SLOW=$E2E_DIR/slow
MNT=$E2E_DIR/mnt
SIDE=$E2E_DIR/side # the history lives here, not in FAST/SLOW/MNT
mkdir -p "$SIDE"
CYCLES=${KILL9_CYCLES:-10}
is_long && CYCLES=${KILL9_CYCLES:-50}
WBC_CYCLES=${KILL9_WBC_CYCLES:-3}
is_long && WBC_CYCLES=${KILL9_WBC_CYCLES:-10}
BLOCKS=4096 # 16 MiB of the 64 MiB image is written at random: many overwrites
RANDOM=${KILL9_SEED:-$$}
log "seed for the bash RANDOM: ${KILL9_SEED:-$$} (set KILL9_SEED to replay the kill moments)"

section "create and mount a 64 MiB volume with a 16 MiB log (the log wraps; the migrator runs during the stream)"
bv_create "$FAST" "$SLOW" 64M --cache-size 16M
bv_mount "$FAST" "$MNT"

next_seq=1
wbc=0
for cycle in $(seq 1 $((CYCLES + WBC_CYCLES))); do
  if ((cycle == CYCLES + 1)); then
    section "the writeback-cache cycles: -o writeback_cache, buffered writer, no prefix check"
    bv_unmount "$MNT" "$FAST"
    bv_mount_pass "$FAST" "$MNT" off+wbc
    wbc=1
  fi
  writer_opts=() verify_opts=() mount_opts=()
  ((wbc)) && writer_opts=(--buffered) verify_opts=(--no-prefix) mount_opts=(-o writeback_cache)
  section "cycle $cycle/$((CYCLES + WBC_CYCLES))$( ((wbc)) && echo " (writeback cache, buffered)")"
  PID=$(daemon_pid "$FAST")
  [[ -n $PID ]] || fail "no live daemon for $FAST before cycle $cycle"
  HIST=$SIDE/history.$cycle
  : >"$HIST"
  timeout 600 python3 "$TOOL" write "$MNT/image" "$HIST" --start-seq "$next_seq" --blocks "$BLOCKS" \
    --seed "$((RANDOM * 32768 + RANDOM))" "${writer_opts[@]}" >"$SIDE/writer.$cycle.out" 2>&1 &
  WRITER=$!
  # Wait until the writer has at least one acknowledged fsync, then a random 0-2.9 s more.
  wait_until 60 "the writer's first acknowledged fsync" bash -c "grep -q '^F ' '$HIST' || ! kill -0 $WRITER"
  grep -q '^F ' "$HIST" || fail "the writer stopped before its first fsync: $(cat "$SIDE/writer.$cycle.out")"
  sleep "$((RANDOM % 3)).$((RANDOM % 10))"
  check "cycle $cycle: SIGKILL the daemon (pid $PID) in the middle of the write stream"
  kill -KILL "$PID"
  wait_until 30 "the killed daemon to be gone" not pid_alive "$PID"
  wait "$WRITER" || fail "writer exited non-zero: $(cat "$SIDE/writer.$cycle.out")"
  log "$(cat "$SIDE/writer.$cycle.out")"
  grep -q 'stopped: write\|stopped: fsync' "$SIDE/writer.$cycle.out" ||
    log "note: the writer did not see the kill (it finished first)"
  # The dead FUSE mount stays as 'transport endpoint is not connected' until unmounted.
  timeout 30 fusermount3 -uz "$MNT" 2>/dev/null || umount -l "$MNT" 2>/dev/null || true
  wait_until 30 "$MNT to be unmounted" not is_mounted "$MNT"

  check "cycle $cycle: 'boostvol mount' recovers after kill -9"
  expect_rc 0 bv mount "$FAST" "$MNT" "${mount_opts[@]}"
  wait_until 30 "$MNT/image" test -f "$MNT/image"
  check "cycle $cycle: fsync'ed writes present, no torn or foreign block, a prefix of the stream"
  python3 "$TOOL" verify "$MNT/image" "$HIST" "$SIDE/state" --blocks "$BLOCKS" "${verify_opts[@]}" ||
    fail "verification failed in cycle $cycle"
  # Sequence numbers stay unique across cycles, even for writes that were lost.
  last=$(awk '$1 == "W" { s = $2 } END { print s + 0 }' "$HIST")
  next_seq=$((last + 1))
done

section "after the crashes: a clean stop, check, drain"
check "status --json parses after recovery"
expect_rc 0 bv status "$MNT" --json
python3 -c 'import json,sys; d=json.loads(sys.stdin.read()); print("    health:", d.get("health"), "dirty:", d.get("dirty_blocks"))' <<<"$E2E_OUT" ||
  fail "status --json does not parse"
check "drain, then SLOW/image equals the image"
expect_rc 0 timeout 600 "$BOOSTVOL_BIN" drain "$MNT"
timeout 300 cp "$MNT/image" "$E2E_DIR/image.copy"
bv_unmount "$MNT" "$FAST"
cmp "$SLOW/image" "$E2E_DIR/image.copy" || fail "SLOW/image differs from the image after drain"
ok "identical"
check "'boostvol check FAST' is clean after all the crashes"
expect_rc 0 bv check "$FAST"
check "the home copy alone holds the same verified blocks"
python3 "$TOOL" verify "$SLOW/image" /dev/null "$SIDE/state" --blocks "$BLOCKS" || fail "home copy does not match"
assert_no_leftovers
