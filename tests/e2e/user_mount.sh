#!/usr/bin/env bash
# user_mount: the daemon runs as an unprivileged user (nobody).
#
# /dev/fuse is 0600 here, so the test runs in a private mount namespace where a 0666 character node
# (c 10 229, made in a tmpfs) is bind-mounted over /dev/fuse; nothing outside the namespace changes. As `nobody`,
# with dirs it owns: boostvol create, mount (through fusermount3), write and read the image with dd, cmp; every
# file boostvol made in FAST and SLOW is 0600 (dirs 0700) and owned by nobody; drain; unmount as nobody; remount
# and read back; unmount. Loop devices need root, so there is none here (README: udisksctl loop-setup).
# shellcheck source=SCRIPTDIR/../lib/e2e_lib.sh
source "$(dirname "$0")/../lib/e2e_lib.sh"

if [[ -z ${E2E_IN_NS:-} ]]; then
  need_root
  need_fuse
  need_cmd unshare setpriv mknod python3 cmp
  exec unshare -m --propagation private env E2E_IN_NS=1 bash "$0" "$@"
fi

e2e_init
chmod 711 "$E2E_DIR"
USER_NAME=nobody
USER_GROUP=$(id -gn nobody)
USER_UID=$(id -u nobody)

section "a 0666 /dev/fuse inside this mount namespace"
mkdir "$E2E_DIR/devfuse"
mount -t tmpfs -o size=64k,mode=755 tmpfs "$E2E_DIR/devfuse"
mknod "$E2E_DIR/devfuse/fuse" c 10 229
chmod 666 "$E2E_DIR/devfuse/fuse"
mount --bind "$E2E_DIR/devfuse/fuse" /dev/fuse
check "/dev/fuse is mode 666 in the namespace"
assert_eq "mode of /dev/fuse" "$(stat -c %a /dev/fuse)" 666

mkdir -p "$E2E_DIR/bin"
cp "$BOOSTVOL_BIN" "$E2E_DIR/bin/boostvol"
chmod 755 "$E2E_DIR/bin" "$E2E_DIR/bin/boostvol"
BIN=$E2E_DIR/bin/boostvol
U=$E2E_DIR/u
mkdir "$U"
chown "$USER_NAME:$USER_GROUP" "$U"
chmod 700 "$U"
as_user() { setpriv --reuid="$USER_NAME" --regid="$USER_GROUP" --clear-groups -- env HOME="$U" "$@"; }
ubv() { as_user timeout --kill-after=10 "$E2E_TIMEOUT" "$BIN" "$@"; }
as_user sh -c "umask 077 && mkdir '$U/fast' '$U/slow' '$U/mnt'"
FAST=$U/fast
SLOW=$U/slow
MNT=$U/mnt
E2E_FASTS+=("$FAST")
E2E_BV_MOUNTS+=("$MNT")

section "create and mount as $USER_NAME"
check "'boostvol create' as $USER_NAME"
expect_rc 0 ubv create "$FAST" "$SLOW" --size 64M --cache-size 16M
check "'boostvol mount' as $USER_NAME (fusermount3 does the mount)"
expect_rc 0 ubv mount "$FAST" "$MNT"
wait_until 30 "$MNT/image" as_user test -f "$MNT/image"
assert_eq "mount type" "$(mount_fstype "$MNT")" "fuse.boostvol"
check "the daemon runs as $USER_NAME (uid $USER_UID)"
PID=$(daemon_pid "$FAST")
[[ -n $PID ]] || fail "no live daemon named in $FAST/lock"
assert_eq "daemon uid" "$(awk '/^Uid:/ { print $2 }' "/proc/$PID/status")" "$USER_UID"

section "write and read the image as $USER_NAME"
as_user sh -c "head -c 8M /dev/urandom >'$U/data'"
check "dd 8 MiB at offset 0 (buffered, fsync) and at 16 MiB (O_DIRECT), then cmp"
as_user dd if="$U/data" of="$MNT/image" bs=1M conv=notrunc,fsync status=none || fail "dd to the image failed"
as_user dd if="$U/data" of="$MNT/image" bs=1M seek=16 oflag=direct conv=notrunc,fsync status=none ||
  fail "dd with O_DIRECT to the image failed"
as_user cmp -n 8388608 "$U/data" "$MNT/image" || fail "data at offset 0 differs"
as_user cmp -n 8388608 "$U/data" "$MNT/image" 0 16777216 || fail "data at offset 16 MiB differs"
as_user dd if="$MNT/image" bs=1M skip=16 count=8 iflag=direct status=none | cmp - "$U/data" ||
  fail "O_DIRECT read differs"
ok "written and read back"
check "'boostvol status --json' as $USER_NAME parses"
expect_rc 0 ubv status "$MNT" --json
python3 -c 'import json,sys; json.loads(sys.stdin.read())' <<<"$E2E_OUT" || fail "status --json does not parse"

check_private() { # every entry below FAST and SLOW: owned by the user, files/sockets 0600, dirs 0700
  check "every file in FAST and SLOW is owned by $USER_NAME, mode 0600 (dirs 0700) ($1)"
  local bad
  bad=$(find "$FAST" "$SLOW" \( ! -user "$USER_NAME" \) -o \( -type d ! -perm 700 \) -o \( ! -type d ! -perm 600 \) \
    -printf '%M %u %p\n')
  [[ -z $bad ]] || fail "not private: $bad"
  ok "$(find "$FAST" "$SLOW" | wc -l) entries checked: $(find "$FAST" "$SLOW" -mindepth 1 -printf '%f ' | tr -s ' ')"
}
check_private "while mounted"

check "'boostvol drain' as $USER_NAME"
expect_rc 0 ubv drain "$MNT"
check "'boostvol unmount' as $USER_NAME (fusermount3 -u): mount and daemon gone"
expect_rc 0 ubv unmount "$MNT"
is_mounted "$MNT" && fail "still mounted"
# unmount returns once the daemon's process has exited (it lists the daemon's descriptors as the same user).
pid_alive "$PID" && fail "daemon $PID is still running after 'boostvol unmount' returned"
ok "unmounted, daemon $PID gone"
check_private "after unmount"
check "after the drain, SLOW/image holds the data (offset 0 and 16 MiB)"
cmp -n 8388608 "$U/data" "$SLOW/image" || fail "SLOW/image differs at 0"
cmp -n 8388608 "$U/data" "$SLOW/image" 0 16777216 || fail "SLOW/image differs at 16 MiB"
ok "home copy holds the data"

section "remount as $USER_NAME and read back"
check "remount, read back, unmount"
expect_rc 0 ubv mount "$FAST" "$MNT"
wait_until 30 "$MNT/image" as_user test -f "$MNT/image"
as_user cmp -n 8388608 "$U/data" "$MNT/image" 0 16777216 || fail "data differs after remount"
expect_rc 0 ubv unmount "$MNT"
is_mounted "$MNT" && fail "still mounted"
check "'boostvol check' as $USER_NAME"
expect_rc 0 ubv check "$FAST"

umount /dev/fuse
umount "$E2E_DIR/devfuse"
assert_no_leftovers
