#!/usr/bin/env bash
# cache_loss: the home alone is a crash-consistent prefix whenever the cache is lost (DESIGN.md 2.7), for both
# kinds of home: a directory and an RBD image (a throwaway cluster from tests/lib/ceph_cluster.sh).
#
# Each moment: a writer streams stamped 4 KiB blocks with fsyncs (tests/lib/stamped_blocks.py) while the
# migrator runs in small batches; at a random moment the daemon gets SIGKILL and FAST is deleted (the SSD is
# gone); `boostvol create NEWFAST HOME --adopt` starts a fresh cache on the home, which is mounted and checked:
# every block is a version really written there, none is torn, and together they are a PREFIX of the write
# history (older than the lost cache is fine; a mix is not). The adopted volume carries on into the next moment.
# Then one moment with ext4 on a loop device per home: after the loss, the adopted image's ext4 mounts (journal
# replay) and `fsck.ext4 -fn` is clean.
# CACHE_LOSS_MOMENTS per home (default 10, long mode 30): at least 20 per run with both homes.
# shellcheck source=SCRIPTDIR/../lib/e2e_lib.sh
source "$(dirname "$0")/../lib/e2e_lib.sh"

need_root
need_fuse
need_loop
need_cmd python3 cmp mkfs.ext4 fsck.ext4
HOMES=(dir rbd)
if ! command -v ceph-mon >/dev/null || ! command -v ceph-osd >/dev/null || ! command -v rbd >/dev/null; then
  [[ ${CI:-} == true ]] && skip_or_fail "needs ceph-mon, ceph-osd and rbd for the RBD home (scripts/install-ceph.sh)"
  echo "[cache_loss] NOTE: no Ceph packages: the RBD home part is skipped (scripts/install-ceph.sh)" >&2
  HOMES=(dir)
fi
e2e_init

TOOL=$E2E_LIB_DIR/stamped_blocks.py
SIDE=$E2E_DIR/side
MNT=$E2E_DIR/mnt
mkdir -p "$SIDE" "$MNT"
MOMENTS=${CACHE_LOSS_MOMENTS:-10}
is_long && MOMENTS=${CACHE_LOSS_MOMENTS:-30}
BLOCKS=2048 # 8 MiB of stamped blocks in a 64 MiB image, 8 MiB cache: the log wraps, the migrator keeps up
RANDOM=${CACHE_LOSS_SEED:-$$}
log "seed ${CACHE_LOSS_SEED:-$$} (set CACHE_LOSS_SEED to replay the moments); $MOMENTS moments per home: ${HOMES[*]}"

CLUSTER=$E2E_DIR/ceph
if [[ ${HOMES[*]} == *rbd* ]]; then
  out=$(bash "$E2E_LIB_DIR/ceph_cluster.sh" start "$CLUSTER") || fail "the test cluster did not start (logs in $CLUSTER/log)"
  eval "$out"
  # shellcheck disable=SC2154 # _rc is assigned inside the trap string
trap '_rc=$?; _e2e_cleanup; bash "$E2E_LIB_DIR/ceph_cluster.sh" stop "$CLUSTER" >/dev/null 2>&1; (exit $_rc); _e2e_exit_trap' EXIT
  ok "Ceph test cluster up: $CEPH_CONF"
fi

TOTAL_MOMENTS=0
SUMMARY=()

# lose_cache FAST: kill -9 the daemon, drop the dead FUSE mount, delete FAST.
lose_cache() {
  local fast=$1 pid
  pid=$(daemon_pid "$fast")
  [[ -n $pid ]] || fail "no daemon on $fast"
  kill -KILL "$pid"
  wait_until 30 "the daemon to be gone" not pid_alive "$pid"
  timeout 30 fusermount3 -uz "$MNT" 2>/dev/null || umount -l "$MNT" 2>/dev/null || true
  wait_until 30 "$MNT to be unmounted" not is_mounted "$MNT"
  rm -rf --one-file-system "$fast"
}

# adopt HOME NEWFAST: create --adopt and mount; leaves the adopt message in $ADOPT_MSG.
adopt() {
  local home=$1 fast=$2
  mkdir -p "$fast"
  local extra=()
  [[ $home == rbd:* ]] && extra=(--ceph-conf "$CEPH_CONF")
  expect_rc 0 bv create "$fast" "$home" --adopt --cache-size 8M --segment-size 64K "${extra[@]}"
  ADOPT_MSG=$E2E_OUT
  grep -q '^adopted: ' <<<"$ADOPT_MSG" || fail "create --adopt did not say what it found: $ADOPT_MSG"
  log "$(grep '^adopted: ' <<<"$ADOPT_MSG")"
  expect_rc 0 bv mount "$fast" "$MNT"
  wait_until 60 "$MNT/image" test -f "$MNT/image"
}

for kind in "${HOMES[@]}"; do
  section "home: $kind ($MOMENTS moments)"
  if [[ $kind == dir ]]; then
    HOME_ARG=$E2E_DIR/slow
    mkdir -p "$HOME_ARG"
    CREATE_EXTRA=()
  else
    HOME_ARG=rbd:rbd/cache_loss
    CREATE_EXTRA=(--ceph-conf "$CEPH_CONF")
  fi
  FAST=$E2E_DIR/fast.$kind.0
  mkdir -p "$FAST"
  expect_rc 0 bv create "$FAST" "$HOME_ARG" --size 64M --cache-size 8M --segment-size 64K "${CREATE_EXTRA[@]}"
  expect_rc 0 bv mount "$FAST" "$MNT"
  wait_until 60 "$MNT/image" test -f "$MNT/image"
  STATE=$SIDE/state.$kind
  next_seq=1
  replayed=0
  lost_acked=0
  for m in $(seq 1 "$MOMENTS"); do
    expect_rc 0 bv set "$MNT" max_batch_bytes=131072 migrate_start_fraction=0 idle_migrate_ms=200
    HIST=$SIDE/history.$kind.$m
    : >"$HIST"
    timeout 600 python3 "$TOOL" write "$MNT/image" "$HIST" --start-seq "$next_seq" --blocks "$BLOCKS" \
      --seed "$((RANDOM * 32768 + RANDOM))" >"$SIDE/writer.$kind.$m.out" 2>&1 &
    WRITER=$!
    wait_until 60 "the writer's first fsync" bash -c "grep -q '^F ' '$HIST' || ! kill -0 $WRITER"
    delay="$((RANDOM % 3)).$((RANDOM % 10))"
    sleep "$delay"
    check "$kind moment $m: after ${delay}s, kill -9 the daemon and delete FAST"
    lose_cache "$FAST"
    wait "$WRITER" || true
    FAST=$E2E_DIR/fast.$kind.$m
    adopt "$HOME_ARG" "$FAST"
    grep -q 'finished from the home' <<<"$ADOPT_MSG" && replayed=$((replayed + 1))
    check "$kind moment $m: the adopted home is a prefix of the history (no torn, foreign or out-of-order block)"
    # Without the F lines: fsync'ed writes that only the lost cache held may be gone (that is what losing a
    # write-back cache means); what remains must be a prefix.
    grep -v '^F ' "$HIST" >"$HIST.nof"
    python3 "$TOOL" verify "$MNT/image" "$HIST.nof" "$STATE" --blocks "$BLOCKS" >"$SIDE/verify.$kind.$m" 2>&1 ||
      { cat "$SIDE/verify.$kind.$m"; fail "$kind moment $m: the home is not a prefix"; }
    log "$(cat "$SIDE/verify.$kind.$m")"
    acked=$(awk '$1 == "F" { s = $2 } END { print s + 0 }' "$HIST")
    cut=$(sed -n 's/.*prefix cut at seq \([0-9]*\).*/\1/p' "$SIDE/verify.$kind.$m")
    [[ -n $cut && $acked -gt $cut ]] && lost_acked=$((lost_acked + 1))
    last=$(awk '$1 == "W" { s = $2 } END { print s + 0 }' "$HIST")
    next_seq=$((last + 1))
    TOTAL_MOMENTS=$((TOTAL_MOMENTS + 1))
  done
  check "$kind: the old caches' homes agree: drain, the home equals MNT/image"
  expect_rc 0 timeout 300 "$BOOSTVOL_BIN" drain "$MNT"
  if [[ $kind == dir ]]; then
    cmp "$HOME_ARG/image" "$MNT/image" || fail "SLOW/image differs from the image after drain"
  else
    timeout 120 rbd -c "$CEPH_CONF" export --no-progress rbd/cache_loss - 2>/dev/null | cmp - "$MNT/image" ||
      fail "rbd export differs from the image after drain"
  fi
  ok "identical"

  section "$kind: ext4 on the image, cache lost under a file workload"
  loop_attach LOOP "$MNT/image"
  timeout 120 mkfs.ext4 -q -F -b 4096 "$LOOP" || fail "mkfs.ext4 failed"
  fs_mount "$LOOP" "$E2E_DIR/fs"
  (
    i=0
    while :; do
      i=$((i + 1))
      mkdir -p "$E2E_DIR/fs/d$((i % 7))"
      head -c $(((RANDOM % 64 + 1) * 4096)) /dev/urandom >"$E2E_DIR/fs/d$((i % 7))/f$((i % 50))" 2>/dev/null || break
      ((i % 5 == 0)) && sync -f "$E2E_DIR/fs" 2>/dev/null
      rm -f "$E2E_DIR/fs/d$(((i + 3) % 7))/f$(((i * 7) % 50))" 2>/dev/null
    done
  ) &
  WORKLOAD=$!
  sleep "$((2 + RANDOM % 3)).$((RANDOM % 10))"
  check "$kind ext4: kill -9 the daemon under the file workload and delete FAST"
  pid=$(daemon_pid "$FAST")
  kill -KILL "$pid"
  wait_until 30 "the daemon to be gone" not pid_alive "$pid"
  kill "$WORKLOAD" 2>/dev/null || true
  wait "$WORKLOAD" 2>/dev/null || true
  umount -l "$E2E_DIR/fs" 2>/dev/null || true
  timeout 30 losetup -d "$LOOP" 2>/dev/null || true
  timeout 30 fusermount3 -uz "$MNT" 2>/dev/null || umount -l "$MNT" 2>/dev/null || true
  wait_until 30 "$MNT to be unmounted" not is_mounted "$MNT"
  rm -rf --one-file-system "$FAST"
  FAST=$E2E_DIR/fast.$kind.fs
  adopt "$HOME_ARG" "$FAST"
  check "$kind ext4: the adopted image mounts (journal replay) and fsck.ext4 -fn is clean"
  loop_attach LOOP "$MNT/image"
  fs_mount "$LOOP" "$E2E_DIR/fs"
  find "$E2E_DIR/fs" -type f | head -n 1000 | xargs -r cat >/dev/null || fail "reading the files failed"
  fs_umount "$E2E_DIR/fs"
  timeout 300 fsck.ext4 -fn "$LOOP" >"$SIDE/fsck.$kind" 2>&1 || { cat "$SIDE/fsck.$kind"; fail "$kind: fsck.ext4 found problems"; }
  ok "fsck clean: $(tail -n 1 "$SIDE/fsck.$kind")"
  loop_detach "$LOOP"
  TOTAL_MOMENTS=$((TOTAL_MOMENTS + 1))
  bv_unmount "$MNT" "$FAST"
  SUMMARY+=("$kind: $((MOMENTS + 1)) moments, $replayed adopts finished a batch from the home journal, $lost_acked lost fsync'ed writes that only the cache held (expected), 0 non-prefix homes")
done

section "summary"
for s in "${SUMMARY[@]}"; do log "$s"; done
log "cache-loss moments tried: $TOTAL_MOMENTS"
