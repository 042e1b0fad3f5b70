#!/usr/bin/env bash
# kill9_bypass: sequential bypass and write-around under kill -9 (docs/policies.md, DESIGN.md 2.2, 2.3).
#
# sequential_cutoff=1M: a sequential writer (tests/lib/stamped_blocks.py write --run 16: 64 KiB O_DIRECT
# writes of stamped blocks, like dd, wrapping over a 16 MiB area, fsync every 1-8 writes, sometimes after a
# burst) sends its stream past the first MiB straight home; blocks still cached from an earlier pass are
# logged (rule (a)). At a random moment the daemon gets SIGKILL; `boostvol mount` must recover WITHOUT
# refusing the home (the stamp's intent mark: home-direct writes changed SLOW/image's mtime/ctime after the
# last stamp; scattered writes elsewhere keep blocks dirty, so without the mark the mount would refuse), and
# every block is checked: fsync'ed writes present, no torn or foreign block, the blocks a
# prefix of the write sequence (home-direct and logged writes in one order). The last cycle runs in
# writearound mode (switching drains first). Then bypassed_bytes > 0, a drain, SLOW/image == image, check.
# Odd cycles run with the default bypass_order=prefix (a write goes home only while the log holds nothing not
# yet home: the stream's writes wait for the scattered ones to go home first), even ones with
# bypass_order=relaxed (home-direct beside dirty blocks: the kills that test the intent mark); the stream must
# go home directly in both. 6 cycles (BOOSTVOL_LONG=1: 30).
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
SIDE=$E2E_DIR/side
mkdir -p "$SIDE"
CYCLES=${KILL9_CYCLES:-6}
is_long && CYCLES=${KILL9_CYCLES:-30}
BLOCKS=4096 # a 16 MiB area of the 64 MiB image, written sequentially over and over
RANDOM=${KILL9_SEED:-$$}
log "seed for the bash RANDOM: ${KILL9_SEED:-$$} (set KILL9_SEED to replay the kill moments)"

section "create and mount a 64 MiB volume with a 16 MiB log; sequential_cutoff=1M"
bv_create "$FAST" "$SLOW" 64M --cache-size 16M
bv_mount "$FAST" "$MNT"
check "set sequential_cutoff=1M (live); no idle migration (scattered writes stay dirty until a kill)"
expect_rc 0 bv set "$MNT" sequential_cutoff=1M idle_migrate_ms=86400000

bypassed_now() { # sets BYPASSED (the live counter)
  expect_rc 0 bv status "$MNT" --json
  BYPASSED=$(python3 -c 'import json,sys; print(json.loads(sys.stdin.read())["bypassed_bytes"])' <<<"$E2E_OUT")
}

next_seq=1
max_bypassed=0 # counters are saved every 10 s, so a kill -9 loses the last seconds of them: the max seen
marked=0       # cycles killed while the stamp carried the intent mark
prefix_bypassed=0 # bytes bypassed during bypass_order=prefix cycles (live counter, start to kill)
for cycle in $(seq 1 "$CYCLES"); do
  section "cycle $cycle/$CYCLES"
  order=prefix
  ((cycle % 2 == 0)) && order=relaxed
  if ((cycle == CYCLES && CYCLES >= 2)); then
    order=prefix
    check "cycle $cycle: switch to write_mode=writearound (drains first)"
    expect_rc 0 bv set "$MNT" write_mode=writearound
  fi
  check "cycle $cycle: bypass_order=$order"
  expect_rc 0 bv set "$MNT" bypass_order=$order
  bypassed_now
  at_start=$BYPASSED
  PID=$(daemon_pid "$FAST")
  [[ -n $PID ]] || fail "no live daemon for $FAST before cycle $cycle"
  HIST=$SIDE/history.$cycle
  : >"$HIST"
  timeout 600 python3 "$TOOL" write "$MNT/image" "$HIST" --start-seq "$next_seq" --blocks "$BLOCKS" --run 16 \
    --seed "$((RANDOM * 32768 + RANDOM))" >"$SIDE/writer.$cycle.out" 2>&1 &
  WRITER=$!
  wait_until 60 "the writer's first acknowledged fsync" bash -c "grep -q '^F ' '$HIST' || ! kill -0 $WRITER"
  grep -q '^F ' "$HIST" || fail "the writer stopped before its first fsync: $(cat "$SIDE/writer.$cycle.out")"
  sleep "$((1 + RANDOM % 3)).$((RANDOM % 10))"
  # A few scattered blocks at 48 MiB (outside the verified area): logged, dirty at the kill, so that the next
  # mount would refuse a home "changed behind its back" if the intent mark did not vouch for our own writes.
  for i in 1 2 3 4; do
    dd if=/dev/urandom of="$MNT/image" bs=4096 count=1 seek=$((12288 + RANDOM % 2048)) oflag=direct \
      conv=notrunc,fsync status=none
  done
  bypassed_now
  bypassed=$BYPASSED
  log "bypassed_bytes so far: $bypassed ($((bypassed - at_start)) in this cycle, bypass_order=$order)"
  ((bypassed > max_bypassed)) && max_bypassed=$bypassed
  [[ $order == prefix ]] && prefix_bypassed=$((prefix_bypassed + bypassed - at_start))
  dirty=$(python3 -c 'import json,sys; print(json.loads(sys.stdin.read())["dirty_blocks"])' <<<"$E2E_OUT")
  if ((dirty > 0)) && grep -q '^direct_writes=1$' "$SLOW/boostvol-home"; then
    marked=$((marked + 1))
    log "the stamp carries the intent mark (home-direct writes since the last stamp), $dirty dirty blocks"
  fi
  check "cycle $cycle: SIGKILL the daemon (pid $PID) in the middle of the sequential stream"
  kill -KILL "$PID"
  wait_until 30 "the killed daemon to be gone" not pid_alive "$PID"
  wait "$WRITER" || fail "writer exited non-zero: $(cat "$SIDE/writer.$cycle.out")"
  log "$(cat "$SIDE/writer.$cycle.out")"
  timeout 30 fusermount3 -uz "$MNT" 2>/dev/null || umount -l "$MNT" 2>/dev/null || true
  wait_until 30 "$MNT to be unmounted" not is_mounted "$MNT"

  check "cycle $cycle: 'boostvol mount' recovers after kill -9 (the intent mark accepts our own home writes)"
  expect_rc 0 bv mount "$FAST" "$MNT"
  wait_until 30 "$MNT/image" test -f "$MNT/image"
  check "cycle $cycle: fsync'ed writes present, no torn or foreign block, a prefix of the stream"
  python3 "$TOOL" verify "$MNT/image" "$HIST" "$SIDE/state" --blocks "$BLOCKS" || fail "verification failed in cycle $cycle"
  last=$(awk '$1 == "W" { s = $2 } END { print s + 0 }' "$HIST")
  next_seq=$((last + 1))
done

section "after the crashes"
check "bypassed_bytes > 0 before a kill (the stream really went home directly): max $max_bypassed"
((max_bypassed > 0)) || fail "nothing was bypassed: the test did not test bypass"
ok "yes"
check "the stream went home directly in bypass_order=prefix cycles too: $prefix_bypassed bytes"
((prefix_bypassed > 0)) || fail "nothing was bypassed with bypass_order=prefix"
ok "yes"
check "at least one kill happened with dirty blocks while the stamp carried the intent mark: $marked of $CYCLES"
((marked > 0)) || fail "no kill tested the intent mark (dirty blocks + home-direct writes since the last stamp)"
ok "yes"
check "drain, then SLOW/image equals the image"
expect_rc 0 timeout 600 "$BOOSTVOL_BIN" drain "$MNT"
timeout 300 cp "$MNT/image" "$E2E_DIR/image.copy"
bv_unmount "$MNT" "$FAST"
cmp "$SLOW/image" "$E2E_DIR/image.copy" || fail "SLOW/image differs from the image after drain"
ok "identical"
check "'boostvol check FAST' is clean after all the crashes"
expect_rc 0 bv check "$FAST"
assert_no_leftovers
