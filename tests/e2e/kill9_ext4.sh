#!/usr/bin/env bash
# kill9_ext4: a real filesystem survives kill -9 of the daemon like a power cut.
# ext4 on a loop device over the image. Each cycle: copy a batch of files and `sync -f` (the batch is now
# acknowledged by FLUSH = fsync on the image), start another copy in the background and SIGKILL the daemon in
# the middle of it. Then tear down what is left (ext4, loop, dead FUSE mount), `boostvol mount` (recovery),
# attach the loop again: e2fsck replays the journal (-p), then `e2fsck -fn` must find the filesystem clean, and
# every synced batch must match its checksums. 3 cycles (BOOSTVOL_LONG=1: 10).
# shellcheck source=SCRIPTDIR/../lib/e2e_lib.sh
source "$(dirname "$0")/../lib/e2e_lib.sh"

need_root
need_fuse
need_loop
need_cmd mkfs.ext4 e2fsck sha256sum
e2e_init

FAST=$E2E_DIR/fast
SLOW=$E2E_DIR/slow
MNT=$E2E_DIR/mnt
FS=$E2E_DIR/fs
CYCLES=3
is_long && CYCLES=10
SRC=/usr/include
[[ -d $SRC ]] || SRC=/usr/share
RANDOM=${KILL9_SEED:-$$}

# A batch: ~8 MiB of files from SRC (a different slice each cycle) plus 4 MiB of random bytes.
make_batch() { # make_batch DEST N
  mkdir -p "$1"
  (cd "$SRC" && find . -type f -size -1024k | LC_ALL=C sort | awk -v n="$2" 'NR % 7 == n % 7 && k < 600 { print; k++ }') >"$E2E_DIR/list.$2"
  timeout 300 tar -C "$SRC" --no-recursion -cf - -T "$E2E_DIR/list.$2" | timeout 300 tar -C "$1" -xf -
  head -c 4M /dev/urandom >"$1/random.bin"
}

section "create, mount, loop, mkfs.ext4"
bv_create "$FAST" "$SLOW" 512M --cache-size 64M
bv_mount "$FAST" "$MNT"
loop_attach LOOP "$MNT/image"
timeout 300 mkfs.ext4 -q -F "$LOOP" || fail "mkfs.ext4"
fs_mount "$LOOP" "$FS"

for c in $(seq 1 "$CYCLES"); do
  section "cycle $c/$CYCLES"
  check "cycle $c: copy batch $c and sync -f (a FLUSH through the loop device = fsync on the image)"
  make_batch "$FS/synced.$c" "$c"
  timeout 300 sync -f "$FS" || fail "sync -f"
  sha_manifest "$FS/synced.$c" "$E2E_DIR/manifest.$c"
  ok "$(wc -l <"$E2E_DIR/manifest.$c") files synced"

  PID=$(daemon_pid "$FAST")
  ( make_batch "$FS/inflight.$c" "$((c + 3))" ) >/dev/null 2>&1 &
  BG=$!
  sleep "0.$((RANDOM % 10))"
  check "cycle $c: SIGKILL the daemon (pid $PID) while another batch is being written"
  kill -KILL "$PID"
  wait_until 30 "daemon $PID gone" not pid_alive "$PID"
  timeout 120 bash -c "wait $BG" 2>/dev/null || true
  wait "$BG" 2>/dev/null || true
  # Tear down what is left: ext4 (its writes now fail), the loop device, the dead FUSE mount.
  timeout 120 umount "$FS" 2>/dev/null || umount -l "$FS" || fail "cannot unmount ext4 after the kill"
  timeout 60 losetup -d "$LOOP" 2>/dev/null || true
  wait_until 60 "$LOOP to be released" bash -c "! losetup '$LOOP' >/dev/null 2>&1"
  timeout 30 fusermount3 -uz "$MNT" 2>/dev/null || umount -l "$MNT" 2>/dev/null || true
  wait_until 30 "$MNT unmounted" not is_mounted "$MNT"
  ok "torn down"

  check "cycle $c: 'boostvol mount' recovers"
  expect_rc 0 bv mount "$FAST" "$MNT"
  wait_until 30 "$MNT/image" test -f "$MNT/image"
  loop_attach LOOP "$MNT/image"
  check "cycle $c: e2fsck -p replays the journal, then e2fsck -fn finds ext4 clean"
  set +e
  timeout 300 e2fsck -p "$LOOP" >"$E2E_DIR/fsck-p.out" 2>&1
  rc=$?
  set -e
  ((rc <= 1)) || { cat "$E2E_DIR/fsck-p.out" >&2; fail "e2fsck -p exited $rc"; }
  timeout 300 e2fsck -fn "$LOOP" >"$E2E_DIR/fsck-n.out" 2>&1 || { cat "$E2E_DIR/fsck-n.out" >&2; fail "e2fsck -fn found problems"; }
  ok "clean (e2fsck -p exit $rc)"
  fs_mount "$LOOP" "$FS"
  check "cycle $c: every synced batch 1..$c matches its checksums"
  for k in $(seq 1 "$c"); do
    (cd "$FS/synced.$k" && sha256sum -c --quiet "$E2E_DIR/manifest.$k") || fail "synced batch $k differs after the crash"
  done
  ok "all synced batches intact"
  rm -rf "$FS/inflight.$c"
done

section "clean stop"
fs_umount "$FS"
bv_unmount "$MNT" "$FAST"
check "'boostvol check' is clean"
expect_rc 0 bv check "$FAST"
assert_no_leftovers
