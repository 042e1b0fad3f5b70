#!/usr/bin/env bash
# crash_loop_stamped: fsync is a barrier and a crash leaves a prefix (DESIGN.md 2.2, 2.3, 2.5), over many
# real kill -9 cycles, through the FUSE mount AND a loop device (the path a filesystem uses).
#
# A 256 MiB volume with an 8 MiB log of 512 KiB segments (the log wraps every few cycles, so the migrator runs
# all the time; small migration batches so that it is often in the middle of one). Each cycle:
#   1. a writer (tests/lib/stamped_blocks.py write) streams stamped 4 KiB blocks (sequence, address, crc32) with
#      O_DIRECT to the loop device at random addresses in the first 16 MiB, fsyncing the loop device at random
#      points (a FLUSH to the loop = fsync on MNT/image) and recording every acknowledged fsync, after it returned,
#      in a history file in another directory (fsync'ed);
#   2. the daemon gets SIGKILL at a random moment of one of three kinds: in the write stream ("write"), while a
#      `boostvol drain` is running ("drain"), or while a migration batch is in flight (the redo journal on SLOW is non-empty: "migrate");
#   3. the dead loop device is detached, the dead FUSE mount lazily unmounted, `boostvol mount` recovers (timed),
#      a loop device is attached again, alternating --direct-io=on and off every cycle, and every block of the
#      region is read back through it and checked (tests/lib/stamped_blocks.py verify): each block all zeros or a
#      whole stamp of a write really made to that address (no mix, no garbage); every write acknowledged by a
#      successful fsync present (or a newer one); the blocks form a PREFIX of the write sequence.
#   4. on "migrate" kills and every 5th cycle, the home copy alone (DESIGN.md 2.7), copied at the kill: it must
#      be a prefix of the log as the volume kept it (any prefix: stale is fine; verify-home). With a live redo
#      journal on SLOW (a batch decided, maybe half in place) that is the copy with the journal replayed
#      (tests/lib/home_journal.py, an independent reader of docs/home_format.md); whether the raw SLOW/image
#      was a mix at that moment is counted in the summary, not asserted.
# 100 cycles (BOOSTVOL_LONG=1: 1000; CRASH_CYCLES overrides), then a clean stop, `boostvol check`, a drain, and
# SLOW/image must hold exactly the verified blocks. The last line is a summary (cycles, writes, fsyncs, kills,
# max recovery time). CRASH_SEED replays the same random choices (kill kinds, delays, writer seeds); the
# timing of a kill relative to the writer is of course not replayable exactly.
# On a verification failure the scratch dir is kept (FAST with boostvol.log, SLOW, the histories in side/).
# STAMP_BS=512 stamps 512-byte units instead of 4 KiB blocks: every write is a sub-block write that boostvol merges
# into its 4 KiB block (like XFS's 512-byte log writes); the region is then 4096 x 512 bytes.
# shellcheck source=SCRIPTDIR/../lib/e2e_lib.sh
source "$(dirname "$0")/../lib/e2e_lib.sh"
# shellcheck source=SCRIPTDIR/../lib/crash_lib.sh
source "$(dirname "$0")/../lib/crash_lib.sh"

need_root
need_fuse
need_loop
need_cmd python3 cmp losetup fusermount3
e2e_init

TOOL=$E2E_LIB_DIR/stamped_blocks.py
FAST=$E2E_DIR/fast
SLOW=$E2E_DIR/slow
MNT=$E2E_DIR/mnt
SIDE=$E2E_DIR/side # histories and the verified state: not in FAST, SLOW or MNT
mkdir -p "$SIDE"
CYCLES=${CRASH_CYCLES:-100}
is_long && CYCLES=${CRASH_CYCLES:-1000}
BLOCKS=4096 # the writer's region: the first 16 MiB of the 256 MiB image (the rest must stay zeros)
RANDOM=$CRASH_SEED
export STAMP_BS=${STAMP_BS:-4096}
log "seed $CRASH_SEED (CRASH_SEED=$CRASH_SEED replays the random choices), $CYCLES cycles, ${STAMP_BS}-byte stamps"

section "create a 256 MiB volume with an 8 MiB log of 512 KiB segments; small migration batches"
# CRASH_CREATE_ARGS: extra `boostvol create` options; "--no-home-journal" is a negative control (SLOW alone is
# then documented NOT to be crash-consistent; kill -9 rarely lands inside the in-place writes, so a failure
# is possible, not certain).
read -r -a create_args <<<"${CRASH_CREATE_ARGS:-}"
bv_create "$FAST" "$SLOW" 256M --cache-size 8M --segment-size 512K "${create_args[@]}"
expect_rc 0 bv set "$FAST" max_batch_bytes=262144 migrate_start_fraction=0.25 idle_migrate_ms=500
bv_mount "$FAST" "$MNT"
attach_image_loop on

next_seq=1
home_checks=0 home_live=0 home_raw_mix=0
n_writes=0 n_fsyncs=0 n_kills=0 k_write=0 k_drain=0 k_migrate=0 k_early=0 max_rec=0 sum_rec=0 stopped_by_kill=0
declare -A mode_cycles=([on]=0 [off]=0)
mode=on
t_start=$SECONDS
for cycle in $(seq 1 "$CYCLES"); do
  mode_cycles[$mode]=$((mode_cycles[$mode] + 1))
  HIST=$SIDE/history.$cycle
  : >"$HIST"
  wseed=$((RANDOM * 32768 + RANDOM))
  r=$((RANDOM % 20))
  if ((r < 2)); then kind="early"; elif ((r < 11)); then kind="write"; elif ((r < 15)); then kind="drain"; else kind="migrate"; fi
  timeout 600 python3 "$TOOL" write "$LOOP" "$HIST" --start-seq "$next_seq" --blocks "$BLOCKS" --seed "$wseed" \
    >"$SIDE/writer.$cycle.out" 2>&1 &
  WRITER=$!
  note=""
  case $kind in
    early) # anywhere in the first 0.3 s: maybe before the first fsync
      sleep "0.$((RANDOM % 3))$((RANDOM % 10))"
      ;;
    write) # after the first acknowledged fsync, a random 0-1 s more
      wait_until 60 "the writer's first acknowledged fsync" bash -c "grep -q '^F ' '$HIST' || ! kill -0 $WRITER"
      sleep "0.$((RANDOM % 10))$((RANDOM % 10))"
      ;;
    drain) # start a drain while the writer goes on, kill while it runs
      wait_until 60 "the writer's first acknowledged fsync" bash -c "grep -q '^F ' '$HIST' || ! kill -0 $WRITER"
      sleep "0.$((RANDOM % 10))"
      timeout 120 "$BOOSTVOL_BIN" drain "$MNT" >"$SIDE/drain.$cycle.out" 2>&1 &
      DRAIN=$!
      sleep "0.$((RANDOM % 3))$((RANDOM % 10))"
      kill -0 "$DRAIN" 2>/dev/null && note="drain running" || note="drain had finished"
      ;;
    migrate) # poll status until the migrator is migrating (10 s at most)
      wait_until 60 "the writer's first acknowledged fsync" bash -c "grep -q '^F ' '$HIST' || ! kill -0 $WRITER"
      if kill_when_migrating 10; then note="migration batch in flight"; else note="no migration batch seen"; fi
      ;;
  esac
  [[ $note == "migration batch in flight" ]] || kill_daemon
  n_kills=$((n_kills + 1))
  case $kind in
    early) k_early=$((k_early + 1)) ;;
    write) k_write=$((k_write + 1)) ;;
    drain) [[ $note == "drain running" ]] && k_drain=$((k_drain + 1)) ;;
    migrate) [[ $note == "migration batch in flight" ]] && k_migrate=$((k_migrate + 1)) ;;
  esac
  wait "$WRITER" || fail "cycle $cycle: the writer exited non-zero: $(cat "$SIDE/writer.$cycle.out")"
  [[ $kind == drain ]] && { wait "$DRAIN" 2>/dev/null || true; }
  wout=$(cat "$SIDE/writer.$cycle.out")
  w=0 f=0
  read -r w f < <(sed -n 's/^writer: \([0-9]*\) writes, \([0-9]*\) fsyncs.*/\1 \2/p' <<<"$wout") || true
  n_writes=$((n_writes + ${w:-0}))
  n_fsyncs=$((n_fsyncs + ${f:-0}))
  grep -q 'stopped: write\|stopped: fsync\|stopped: short' <<<"$wout" && stopped_by_kill=$((stopped_by_kill + 1))
  # The home copy alone (DESIGN.md 2.7), as it is at the kill: a copy of SLOW/image, checked once this cycle's
  # surviving writes are known (below). On "migrate" kills and every 5th cycle.
  home_check=""
  if [[ $kind == migrate || $((cycle % 5)) == 0 ]]; then
    home_check=1
    jstate=$(python3 "$E2E_LIB_DIR/home_journal.py" inspect "$SLOW") || fail "home_journal.py inspect failed"
    timeout 300 cp --sparse=always "$SLOW/image" "$SIDE/home.raw" || fail "cannot copy SLOW/image"
    if [[ $jstate == live* ]]; then
      # A batch decided but maybe half in place: what the slow dir alone recovers to is the copy with the redo
      # journal replayed (tests/lib/home_journal.py, from docs/home_format.md), as boostvol's Open would do.
      timeout 300 cp --sparse=always "$SLOW/image" "$SIDE/home.replayed" || fail "cannot copy SLOW/image"
      python3 "$E2E_LIB_DIR/home_journal.py" replay "$SLOW" "$SIDE/home.replayed" >/dev/null || fail "replay failed"
    fi
  fi
  teardown_dead_volume

  # The next cycle's loop mode.
  [[ $mode == on ]] && mode=off || mode=on
  # A drain that started as the daemon died drains in its own process (a clean open and close).
  REMOUNT_ANY_OPEN=0
  [[ $kind == drain ]] && grep -q 'draining in this process' "$SIDE/drain.$cycle.out" && REMOUNT_ANY_OPEN=1 &&
    note+=", then drained in its own process"
  remount_after_kill
  rec=$REC_MS
  ((rec > max_rec)) && max_rec=$rec
  sum_rec=$((sum_rec + rec))
  attach_image_loop "$mode"
  vrc=0
  vout=$(python3 "$TOOL" verify "$LOOP" "$HIST" "$SIDE/state" --blocks "$BLOCKS" --effective "$SIDE/effective" 2>&1) ||
    vrc=$?
  if ((vrc)) && ! loop_backs "$LOOP" "$MNT/image"; then
    # Not the product: someone else detached our device number (see loop_backs). Attach again, verify again.
    log "note: $LOOP was taken away from $MNT/image during the verification (another process); verifying again"
    forget_loop "$LOOP"
    attach_image_loop "$mode"
    vrc=0
    vout=$(python3 "$TOOL" verify "$LOOP" "$HIST" "$SIDE/state" --blocks "$BLOCKS" --effective "$SIDE/effective" 2>&1) ||
      vrc=$?
  fi
  if ((vrc)); then
    printf '%s\n' "$vout" >&2
    log "writer: $wout"
    product_failure "cycle $cycle ($kind kill${note:+, $note}, verified through a --direct-io=$mode loop): the image after recovery is not a prefix holding every fsync'ed write"
  fi
  home_note=""
  if [[ -n $home_check ]]; then
    home_checks=$((home_checks + 1))
    if [[ $jstate == live* ]]; then
      home_live=$((home_live + 1))
      hout=$(python3 "$TOOL" verify-home "$SIDE/home.replayed" "$SIDE/effective" --blocks "$BLOCKS" 2>&1) || {
        printf '%s\n' "$hout" >&2
        product_failure "cycle $cycle ($kind kill${note:+, $note}): the home copy with its redo journal replayed is not a prefix of the log (redo journal: $jstate)"
      }
      # The raw SLOW/image, without the journal's replay: a mix while a batch is half in place (recorded, not
      # asserted: the slow dir recovers through its journal, docs/home_format.md section 5).
      if ! python3 "$TOOL" verify-home "$SIDE/home.raw" "$SIDE/effective" --blocks "$BLOCKS" >"$SIDE/home-raw.$cycle.out" 2>&1; then
        home_raw_mix=$((home_raw_mix + 1))
        log "note: raw SLOW/image at the kill ($jstate): $(head -n 3 "$SIDE/home-raw.$cycle.out" | tr '\n' ' ')"
        home_note="; raw SLOW/image a mix until its redo journal is replayed"
      fi
      rm -f "$SIDE/home.replayed"
    else
      hout=$(python3 "$TOOL" verify-home "$SIDE/home.raw" "$SIDE/effective" --blocks "$BLOCKS" 2>&1) || {
        printf '%s\n' "$hout" >&2
        product_failure "cycle $cycle ($kind kill${note:+, $note}): SLOW/image alone is not a prefix of the log (redo journal: $jstate)"
      }
    fi
    rm -f "$SIDE/home.raw"
    home_note="; home alone: ${hout#verify-home: }${home_note}"
  fi
  check "cycle $cycle/$CYCLES: $kind kill${note:+ ($note)}, recovery ${rec} ms, ${w:-0} writes, ${f:-0} fsyncs; prefix + fsync'ed writes ok through a dio=$mode loop$home_note"
  last=$(awk '$1 == "W" { s = $2 } END { print s + 0 }' "$HIST")
  ((last >= next_seq)) && next_seq=$((last + 1))
done
elapsed=$((SECONDS - t_start))

section "after the crashes: the whole image, a clean stop, check, drain, the home copy"
check "the whole image: the stamped region as verified, every other block zeros"
python3 "$TOOL" verify "$LOOP" /dev/null "$SIDE/state" --blocks "$BLOCKS" --zero-check all ||
  product_failure "the whole-image verification failed"
check "drain, then SLOW/image equals the image"
expect_rc 0 timeout 600 "$BOOSTVOL_BIN" drain "$MNT"
detach_loop "$LOOP"
timeout 300 cp "$MNT/image" "$E2E_DIR/image.copy"
bv_unmount "$MNT" "$FAST"
cmp "$SLOW/image" "$E2E_DIR/image.copy" || product_failure "SLOW/image differs from the image after a drain"
ok "identical"
rm -f "$E2E_DIR/image.copy"
check "'boostvol check FAST' is clean after $n_kills kills"
capture bv check "$FAST"
[[ $E2E_RC -eq 0 ]] || { printf '%s\n' "$E2E_OUT" >&2; product_failure "'boostvol check' exited $E2E_RC"; }
ok "clean"
check "the home copy alone holds exactly the verified blocks"
python3 "$TOOL" verify "$SLOW/image" /dev/null "$SIDE/state" --blocks "$BLOCKS" --zero-check all ||
  product_failure "the home copy does not match the verified state"
assert_no_leftovers
summary="crash_loop_stamped summary: cycles=$CYCLES writes=$n_writes fsyncs=$n_fsyncs kills=$n_kills"
summary+=" (write=$k_write early=$k_early during-drain=$k_drain during-migration=$k_migrate"
summary+=" other=$((n_kills - k_write - k_early - k_drain - k_migrate)); writer saw the kill in $stopped_by_kill)"
summary+=" loop-dio-on=${mode_cycles[on]} loop-dio-off=${mode_cycles[off]}"
summary+=" home-alone-checks=$home_checks (live redo journal: $home_live, raw image a mix until replayed: $home_raw_mix)"
summary+=" max_recovery_ms=$max_rec avg_recovery_ms=$((sum_rec / CYCLES)) cycle_time_s=$elapsed seed=$CRASH_SEED"
log "$summary"
