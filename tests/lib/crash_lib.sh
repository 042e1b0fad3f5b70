# shellcheck shell=bash disable=SC2034 # E2E_KEEP, DEAD_FS_LAZY, REC_MS, ... are read by the sourcing script
# Helpers shared by the real-process crash loops (tests/e2e/crash_loop_stamped.sh, crash_loop_fs.sh,
# home_alone.sh). Source it after e2e_lib.sh. Expects FAST, MNT (and, for the filesystem helpers, FSMNT) to be
# set by the caller; LOOP holds the current loop device over MNT/image.

CRASH_SEED=${CRASH_SEED:-$$}

now_ms() { date +%s%3N; }

# loop_backs DEV FILE: DEV is (still) a loop device over FILE. Other tests on the same machine may detach a
# device number they once had (e2e_lib's trap detaches every device it ever registered), so a loop device can
# be taken away under a long test: that is the environment, not the product.
loop_backs() {
  [[ $(losetup -n -O BACK-FILE "$1" 2>/dev/null | sed 's/[[:space:]]*$//') == "$2" ]]
}

# product_failure MESSAGE: the product misbehaved. Keep the scratch dir for a post-mortem and say how to
# replay, then fail. (If our loop device was taken away meanwhile, say so: then it is not the product.)
product_failure() {
  if [[ -n ${LOOP:-} && -n ${MNT:-} ]] && ! loop_backs "$LOOP" "$MNT/image"; then
    log "WARNING: $LOOP no longer backs $MNT/image: another process detached or reused it; the failure below may be the environment's"
  fi
  E2E_KEEP=1
  log "reproduce: CRASH_SEED=$CRASH_SEED BOOSTVOL_BIN=$BOOSTVOL_BIN bash $0 (the kill moments are random; the seed replays the choices)"
  log "the scratch dir is kept for a post-mortem: $E2E_DIR (FAST/boostvol.log, meta.db, the log; SLOW; side files)"
  if [[ -n ${FAST:-} && -f $FAST/boostvol.log ]]; then
    echo "----- last 60 lines of $FAST/boostvol.log -----" >&2
    tail -n 60 "$FAST/boostvol.log" >&2
  fi
  fail "PRODUCT: $*"
}

# forget_loop DEV: drop DEV from the trap's list (a device number may be handed to someone else once detached).
forget_loop() {
  local -a keep=()
  local l
  for l in "${E2E_LOOPS[@]}"; do [[ $l == "$1" ]] || keep+=("$l"); done
  E2E_LOOPS=("${keep[@]}")
}

# detach_loop DEV: losetup -d, wait until it is really gone, forget it.
detach_loop() {
  loop_detach "$1"
  forget_loop "$1"
}

# attach_image_loop MODE: a loop device over MNT/image with --direct-io=MODE (on|off); sets LOOP.
attach_image_loop() {
  loop_attach LOOP "$MNT/image" --direct-io="$1"
  local dio
  dio=$(losetup -n -O DIO "$LOOP" | tr -d ' ')
  [[ $dio == 1 && $1 == on ]] || [[ $dio == 0 && $1 == off ]] ||
    log "note: asked for --direct-io=$1, the loop device reports DIO=$dio"
}

# mark_before_kill: if KILL_MARK_FILE is set, KILL_MARK_BYTES = its size just before the SIGKILL (crash_loop_fs:
# the durable records appended before then are those whose fsync returned while the daemon was alive).
mark_before_kill() {
  KILL_MARK_BYTES=""
  if [[ -n ${KILL_MARK_FILE:-} ]]; then KILL_MARK_BYTES=$(stat -c %s "$KILL_MARK_FILE"); fi
}

# kill_daemon: SIGKILL the daemon serving FAST and wait until it is gone. Sets KILLED_PID.
kill_daemon() {
  KILLED_PID=$(daemon_pid "$FAST")
  [[ -n $KILLED_PID ]] || product_failure "no live daemon for $FAST at the moment of the kill (it died on its own?)"
  mark_before_kill
  kill -KILL "$KILLED_PID"
  wait_until 30 "the killed daemon $KILLED_PID to be gone" not pid_alive "$KILLED_PID"
}

# unmount_dead_fs DIR: the filesystem over a loop device whose FUSE daemon is dead: umount (its writes fail),
# lazily if it will not go (then DEAD_FS_LAZY=1).
unmount_dead_fs() {
  local dir=$1
  DEAD_FS_LAZY=0
  is_mounted "$dir" || return 0
  if ! timeout 60 umount "$dir" 2>/dev/null; then
    log "note: umount $dir failed over the dead device; lazy unmount"
    DEAD_FS_LAZY=1
    umount -l "$dir" || fail "cannot even lazily unmount $dir"
  fi
  wait_until 30 "$dir to be unmounted" not is_mounted "$dir"
}

# teardown_dead_volume: after kill -9: the loop device (returns errors now; detached once its last user, a
# lazily unmounted filesystem included, lets go), then the dead FUSE mount.
teardown_dead_volume() {
  if [[ -n ${LOOP:-} ]]; then
    timeout 60 losetup -d "$LOOP" 2>/dev/null || true
    wait_until 120 "$LOOP to be released" bash -c "! losetup '$LOOP' >/dev/null 2>&1"
    forget_loop "$LOOP"
    LOOP=""
  fi
  timeout 30 fusermount3 -uz "$MNT" 2>/dev/null || umount -l "$MNT" 2>/dev/null || true
  wait_until 30 "$MNT to be unmounted" not is_mounted "$MNT"
}

# remount_after_kill: `boostvol mount` must recover; sets REC_MS (how long the mount took). Asserts the mount
# reports that it recovered from the log (clean_open false), unless REMOUNT_ANY_OPEN=1 (something else opened
# and closed the volume cleanly since the kill: `boostvol drain` falls back to draining in its own process when
# no daemon answers).
remount_after_kill() {
  local t0
  t0=$(now_ms)
  capture bv mount "$FAST" "$MNT"
  if [[ $E2E_RC -ne 0 ]]; then
    printf '%s\n' "$E2E_OUT" | sed 's/^/    | /' >&2
    product_failure "'boostvol mount' after kill -9 refused (exit $E2E_RC)"
  fi
  wait_until 30 "$MNT/image" test -f "$MNT/image"
  REC_MS=$(($(now_ms) - t0))
  local js clean_open
  js=$(timeout 30 "$BOOSTVOL_BIN" status "$MNT" --json) || product_failure "status --json failed after recovery"
  [[ $js =~ \"clean_open\":(true|false) ]] || product_failure "status --json has no clean_open: $js"
  clean_open=${BASH_REMATCH[1]}
  [[ $clean_open == false || ${REMOUNT_ANY_OPEN:-0} == 1 ]] || product_failure "after kill -9 the mount says clean_open=$clean_open"
}

# migrator_state: the daemon's migrator state ("idle", "migrating", ...), or nothing.
migrator_state() {
  timeout 10 "$BOOSTVOL_BIN" status "$MNT" --json 2>/dev/null |
    python3 -c 'import json,sys; print(json.loads(sys.stdin.read()).get("migrator_state",""))' 2>/dev/null || true
}

# kill_when_migrating SECONDS: SIGKILL the daemon as soon as a migration batch is in flight: a batch writes the
# redo journal on SLOW first (docs/home_format.md W1) and empties it last (W5: truncated, or its header block zeroed
# with its blocks kept), so the journal is modified when a batch begins (or, if one was in flight when the poll
# began, when it ends). Polled with the shell's own test (the journal newer than a mark taken when the poll began)
# and killed with its own kill (no process in between, so the kill lands inside the batch). Returns 1, without
# killing, if no batch was seen in time. Needs SLOW. Sets KILLED_PID like kill_daemon.
kill_when_migrating() {
  local deadline=$((SECONDS + $1)) i=0 pid mark=$E2E_DIR/.journal-mark
  pid=$(daemon_pid "$FAST")
  [[ -n $pid ]] || product_failure "no live daemon for $FAST before the kill (it died on its own?)"
  : >"$mark"
  while ((SECONDS < deadline)); do
    if [[ $SLOW/boostvol-journal -nt $mark ]]; then
      # at once (inside the journal write) or after a short spin of 0-~10 ms (the in-place writes)
      local j spin=$((RANDOM % 2 ? 0 : RANDOM % 4000))
      for ((j = 0; j < spin; j++)); do :; done
      mark_before_kill
      kill -KILL "$pid"
      KILLED_PID=$pid
      wait_until 30 "the killed daemon $pid to be gone" not pid_alive "$pid"
      return 0
    fi
    # a short pause now and then (an external sleep is a fork: keep the poll dense)
    ((++i % 50 == 0)) && sleep 0.002
  done
  return 1
}

# ---------------------------------------------------------------------------------------------------------
# Filesystems on the loop device

# without_dead_fuse_mounts CMD...: runs CMD in a private mount namespace from which every FUSE mount whose
# daemon is gone has been lazily unmounted. mkfs.btrfs and btrfs check stat every mount point to learn whether
# their device is mounted, and refuse to run ("cannot check mount status": ENOTCONN) while any FUSE mount on the
# machine is dead, which a crash test (this one or another running beside it) leaves behind for a moment.
# The loop device does not care: it holds the image file itself. Nothing changes outside the namespace.
without_dead_fuse_mounts() {
  unshare -m --propagation private -- bash -c '
    mapfile -t fuse_mounts < <(awk "\$3 ~ /^fuse/ {print \$2}" /proc/mounts)  # read it whole: umount shifts it
    for mnt in "${fuse_mounts[@]}"; do
      mnt=$(printf "%b" "$mnt")   # /proc/mounts escapes spaces as \040
      stat -t -- "$mnt" >/dev/null 2>&1 || umount -l -- "$mnt" 2>/dev/null || true
    done
    exec "$@"' without_dead_fuse_mounts "$@"
}

fs_mkfs() { # fs_mkfs TYPE DEV
  case $1 in
    ext4) timeout 300 mkfs.ext4 -q -F "$2" ;;
    xfs) timeout 300 mkfs.xfs -q -f "$2" ;;
    btrfs) without_dead_fuse_mounts timeout 300 mkfs.btrfs -q -f "$2" >/dev/null ;;
    *) fail "unknown filesystem $1" ;;
  esac
}

# fs_forget_devices TYPE: btrfs remembers the devices of a filesystem by its fsid; after a loop device died,
# forget the stale ones so that the same filesystem on a new loop device (or a copy) mounts.
fs_forget_devices() {
  [[ $1 == btrfs ]] || return 0
  btrfs device scan --forget >/dev/null 2>&1 || true
}

# fs_check TYPE DEV OUTFILE: the filesystem's own read-only checker; returns its exit status (0 = clean).
fs_check() {
  local rc=0
  case $1 in
    ext4) timeout 300 fsck.ext4 -fn "$2" >"$3" 2>&1 || rc=$? ;;
    xfs) timeout 300 xfs_repair -n "$2" >"$3" 2>&1 || rc=$? ;;
    btrfs) without_dead_fuse_mounts timeout 300 btrfs check --readonly "$2" >"$3" 2>&1 || rc=$? ;;
  esac
  return "$rc"
}

# fs_replay TYPE DEV DIR [mount options]: mount (the filesystem replays its journal, like after a power cut),
# then unmount cleanly.
fs_replay() {
  local type=$1 dev=$2 dir=$3
  shift 3
  fs_forget_devices "$type"
  mkdir -p "$dir"
  timeout 300 mount -t "$type" "$@" "$dev" "$dir" || return 1
  E2E_FS_MOUNTS+=("$dir")
  timeout 300 umount "$dir" || return 1
}

# ---------------------------------------------------------------------------------------------------------
# The file workload (tests/lib/fs_workload.py)

# start_workload ROOT DURABLE OUT: starts the workload in the background (WL = its pid) and waits until it has
# begun its operations (python start-up and the source list are not part of the random delay before a kill).
# The source list is made once, in $E2E_DIR/src.list.
start_workload() {
  local root=$1 durable=$2 out=$3 src=/usr/include
  [[ -d $src ]] || src=/usr/share
  [[ -s $E2E_DIR/src.list ]] || python3 "$E2E_LIB_DIR/fs_workload.py" list "$src" >"$E2E_DIR/src.list"
  rm -f "$E2E_DIR/workload.ready"
  timeout 300 python3 "$E2E_LIB_DIR/fs_workload.py" run "$root" "$durable" --seed "$((RANDOM * 32768 + RANDOM))" \
    --src "$src" --src-list "$E2E_DIR/src.list" --max-seconds 60 --ready "$E2E_DIR/workload.ready" >"$out" 2>&1 &
  WL=$!
  wait_until 120 "the workload to start" bash -c "test -e '$E2E_DIR/workload.ready' || ! kill -0 $WL"
}

# stop_workload OUT: after the kill, the workload stops at its first I/O error; a filesystem stuck on the dead
# device would be a hang. Sets WL_OPS (operations done) and WL_OUT (its summary line).
stop_workload() {
  local out=$1
  if ! timeout 120 tail --pid="$WL" -f /dev/null; then
    kill -KILL "$WL" 2>/dev/null
    fail "the workload did not stop within 120 s of the kill (hung on the dead device?)"
  fi
  wait "$WL" || fail "the workload failed: $(cat "$out")"
  WL_OUT=$(cat "$out")
  WL_OPS=$(sed -n 's/^workload: \([0-9]*\) ops.*/\1/p' <<<"$WL_OUT")
  WL_OPS=${WL_OPS:-0}
}
