#!/usr/bin/env bash
# fstab_mount: boostvol through mount(8), as people already mount things.
#
#  1. `mount -t fuse.boostvol FAST MNT -o ...` goes through mount.fuse3, which runs `boostvol FAST MNT -o OPTS`.
#     mount(8) runs helpers with PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin, so the test
#     runs in a private mount namespace where a tmpfs over /usr/local/sbin holds a link to the binary under test
#     (nothing outside the namespace changes). fstab-only options (nofail, _netdev, x-systemd.*, comment=, noauto)
#     are dropped, FUSE options (allow_other) reach the mount.
#  2. Data written with O_DIRECT + fsync and kept in the log (the migrator held back by tunables) survives a plain
#     `umount MNT`: the daemon gets FUSE's destroy, writes its checkpoint (clean_shutdown = 1 in meta.db), exits, and
#     the dirty data is still in the log (sealed segments / dirty blocks > 0), nothing lost.
#  3. A temporary fstab (`mount -T FILE MNT`, never /etc/fstab) with boostvol's own -o loop_attach: the mount prints
#     the loop device, which is attached with direct I/O and reads the same data; `boostvol unmount` detaches it.
#  4. mount(8) refuses a second mount of the same volume with boostvol's message and exit code passed through.
# shellcheck source=SCRIPTDIR/../lib/e2e_lib.sh
source "$(dirname "$0")/../lib/e2e_lib.sh"

if [[ -z ${E2E_IN_NS:-} ]]; then
  need_root
  need_fuse
  need_loop
  need_cmd mount umount mount.fuse3 unshare sqlite3 python3 sha256sum
  exec unshare -m --propagation private env E2E_IN_NS=1 bash "$0" "$@"
fi
e2e_init

FAST=$E2E_DIR/fast
SLOW=$E2E_DIR/slow
MNT=$E2E_DIR/mnt
mkdir -p "$MNT"
section "boostvol on mount(8)'s helper PATH, in this namespace only"
mount -t tmpfs -o size=64k,mode=755 tmpfs /usr/local/sbin
ln -s "$(readlink -f "$BOOSTVOL_BIN")" /usr/local/sbin/boostvol
check "the helper PATH finds the binary under test"
assert_eq "boostvol" "$(PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin command -v boostvol)" \
  /usr/local/sbin/boostvol
E2E_FASTS+=("$FAST")
E2E_BV_MOUNTS+=("$MNT")

section "create"
bv_create "$FAST" "$SLOW" 256M --cache-size 64M --segment-size 1M
check "hold the migrator back so written data stays in the log: set (offline, into meta.db)"
# (sequential_cutoff=0: the dd below is one sequential stream, which bypass would send home directly.)
expect_rc 0 bv set "$FAST" migrate_start_fraction=1 idle_migrate_ms=86400000 sequential_cutoff=0
expect_msg "applied at the next mount"

section "mount -t fuse.boostvol with fstab-only options"
check "mount -t fuse.boostvol FAST MNT -o nofail,_netdev,x-systemd.*,comment=...,allow_other"
expect_rc 0 timeout 60 mount -t fuse.boostvol "$FAST" "$MNT" \
  -o nofail,_netdev,noauto,x-systemd.device-timeout=10s,x-systemd.requires=foo.service,comment=e2e,allow_other
wait_until 30 "$MNT/image" test -f "$MNT/image"
assert_eq "fstype" "$(mount_fstype "$MNT")" fuse.boostvol
assert_eq "source" "$(mount_source "$MNT")" "boostvol:$FAST"
opts=$(awk -v m="$MNT" '$5 == m { print $NF }' /proc/self/mountinfo)
check "allow_other reached the mount; no fstab-only option did ($opts)"
[[ $opts == *allow_other* ]] || fail "allow_other missing from the super options: $opts"
[[ $opts != *nofail* && $opts != *_netdev* && $opts != *x-systemd* && $opts != *comment* ]] ||
  fail "an fstab-only option reached the kernel: $opts"
ok "super options: $opts"
assert_eq "image size" "$(stat -c %s "$MNT/image")" $((256 << 20))
check "the tunables set offline are live in the daemon"
expect_rc 0 bv get "$MNT" migrate_start_fraction idle_migrate_ms
expect_msg "idle_migrate_ms=86400000"

section "write, then a plain umount"
head -c $((24 << 20)) /dev/urandom >"$E2E_DIR/data"
dd if="$E2E_DIR/data" of="$MNT/image" bs=1M oflag=direct conv=fsync,notrunc status=none
want=$(sha256sum <"$E2E_DIR/data" | cut -d' ' -f1)
pid=$(daemon_pid "$FAST")
[[ -n $pid ]] || fail "no daemon holds $FAST/lock"
check "umount MNT stops the daemon (pid $pid) cleanly"
expect_rc 0 timeout 60 umount "$MNT"
is_mounted "$MNT" && fail "still mounted after umount"
wait_until 30 "daemon $pid to exit" not pid_alive "$pid"
assert_eq "meta.db clean_shutdown" "$(sqlite3 "file:$FAST/meta.db?mode=ro" 'select clean_shutdown from volume')" 1
check "the written data is still in the log, not lost and not yet home"
bv status "$FAST" --json >"$E2E_DIR/st.json"
assert_eq "mounted" "$(json_get "$E2E_DIR/st.json" mounted)" False
assert_eq "clean_stop" "$(json_get "$E2E_DIR/st.json" clean_stop)" True
dirty=$(json_get "$E2E_DIR/st.json" dirty_blocks)
((dirty >= (20 << 20) / 4096)) || fail "only $dirty dirty blocks after umount; expected the 24 MiB still in the log"
ok "$dirty blocks dirty in the log after umount"

section "an fstab line with loop_attach (mount -T, a temporary fstab)"
printf '%s %s fuse.boostvol noauto,nofail,_netdev,x-systemd.requires=boostvol@e2e.service,loop_attach,loop_direct_io=on 0 0\n' \
  "$FAST" "$MNT" >"$E2E_DIR/fstab"
check "mount -T fstab MNT prints the loop device"
expect_rc 0 timeout 60 mount -T "$E2E_DIR/fstab" "$MNT"
dev=$(grep -o '/dev/loop[0-9]*' <<<"$E2E_OUT" | head -n1)
[[ -n $dev ]] || fail "no loop device in the output: $E2E_OUT"
E2E_LOOPS+=("$dev")
assert_eq "backing file of $dev" "$(losetup -n -O BACK-FILE "$dev" | sed 's/ *$//')" "$MNT/image"
assert_eq "direct I/O on $dev" "$(cat "/sys/block/${dev#/dev/}/loop/dio")" 1
check "the loop device reads the data written before the umount"
got=$(head -c $((24 << 20)) "$dev" | sha256sum | cut -d' ' -f1)
assert_eq "sha256 of the first 24 MiB" "$got" "$want"

section "a second mount of the same volume is refused through mount(8)"
mkdir -p "$E2E_DIR/mnt2"
expect_fail 2 "already mounted" timeout 60 mount -t fuse.boostvol "$FAST" "$E2E_DIR/mnt2"
is_mounted "$E2E_DIR/mnt2" && fail "$E2E_DIR/mnt2 got mounted"

section "boostvol unmount detaches the loop device and stops"
bv_unmount "$MNT" "$FAST"
losetup "$dev" >/dev/null 2>&1 && [[ $(losetup -n -O BACK-FILE "$dev") == *"$MNT/image"* ]] && fail "$dev still attached"
ok "$dev detached"
check "after a drain the home copy holds the data"
expect_rc 0 bv set "$FAST" idle_migrate_ms=2000 migrate_start_fraction=0.5
expect_rc 0 bv drain "$FAST"
got=$(head -c $((24 << 20)) "$SLOW/image" | sha256sum | cut -d' ' -f1)
assert_eq "sha256 of SLOW/image" "$got" "$want"
assert_no_leftovers
