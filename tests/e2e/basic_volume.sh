#!/usr/bin/env bash
# basic_volume: boostvol used as a disk, end to end.
#   create -> mount -> losetup -> mkfs.ext4 -> copy a tree -> checksums survive an ext4 remount and a boostvol
#   unmount/remount -> status --json -> drain -> SLOW/image is byte-identical to the image -> SLOW/image alone
#   (no boostvol) passes fsck.ext4 -fn and holds the same files -> nothing is left behind.
# shellcheck source=SCRIPTDIR/../lib/e2e_lib.sh
source "$(dirname "$0")/../lib/e2e_lib.sh"

need_root
need_fuse
need_loop
need_cmd mkfs.ext4 fsck.ext4 python3 sha256sum cmp findmnt
e2e_init

FAST=$E2E_DIR/fast
SLOW=$E2E_DIR/slow
MNT=$E2E_DIR/mnt
FS=$E2E_DIR/fs
SIZE_MB=256
DATA_MB=50
is_long && { SIZE_MB=1024; DATA_MB=300; }

# ---------------------------------------------------------------------------------------------------------
section "create and mount"
check "create a ${SIZE_MB} MiB volume with a 64 MiB cache (small, so the migrator must work during the copy)"
bv_create "$FAST" "$SLOW" "${SIZE_MB}M" --cache-size 64M
check "the files of a volume exist: FAST/meta.db, FAST/log, SLOW/image, SLOW/boostvol-home"
for f in "$FAST/meta.db" "$FAST/log" "$SLOW/image" "$SLOW/boostvol-home"; do assert_file "$f"; done
assert_eq "size of SLOW/image" "$(stat -c %s "$SLOW/image")" $((SIZE_MB << 20))

check "mount: MOUNTPOINT/image appears, fixed size, fsname boostvol:FAST, type fuse.boostvol"
bv_mount "$FAST" "$MNT"
assert_eq "size of MNT/image" "$(stat -c %s "$MNT/image")" $((SIZE_MB << 20))
assert_eq "mount type" "$(mount_fstype "$MNT")" "fuse.boostvol"
assert_eq "mount source" "$(mount_source "$MNT")" "boostvol:$FAST"
check "FAST/lock names the daemon's pid and that process is alive"
PID=$(daemon_pid "$FAST")
[[ -n $PID ]] || fail "no live boostvol daemon named in $FAST/lock ($(cat "$FAST/lock" 2>&1))"
ok "daemon pid $PID"
check "extended attributes: getxattr, setxattr and a second getxattr are all EOPNOTSUPP (which errno.errorcode names ENOTSUP; the daemon answers getxattr ENOSYS, once)"
assert_eq "xattr errnos" "$(python3 -c '
import errno, os, sys
p = sys.argv[1]
def err(f, *a):
    try:
        f(p, *a)
        return "ok"
    except OSError as e:
        return errno.errorcode.get(e.errno, str(e.errno))
print(err(os.getxattr, "security.capability"), err(os.setxattr, "user.x", b"1"), err(os.getxattr, "user.x"))
' "$MNT/image")" "ENOTSUP ENOTSUP ENOTSUP"

check "a one-write-one-fsync client (64 x: 4 KiB O_DIRECT write, fsync) makes the daemon sync ahead of its fsyncs, and every block reads back"
python3 - "$MNT/image" <<'PYEOF' || fail "the write+fsync client failed or read back other data"
import mmap, os, sys
fd = os.open(sys.argv[1], os.O_RDWR | os.O_DIRECT)
buf = mmap.mmap(-1, 4096)
for i in range(64):
    buf[:] = bytes([i + 1]) * 4096
    os.pwrite(fd, buf, (1 << 20) + i * 4096)
    os.fsync(fd)
for i in range(64):
    os.preadv(fd, [buf], (1 << 20) + i * 4096)
    assert buf[:] == bytes([i + 1]) * 4096, f"block {i} reads back wrong"
os.close(fd)
PYEOF
expect_rc 0 bv status "$MNT" --json
ahead=$(python3 -c 'import json,sys; print(json.loads(sys.stdin.read())["syncs_ahead"])' <<<"$E2E_OUT")
[[ ${ahead:-0} -gt 0 ]] || fail "status says syncs_ahead=${ahead:-?} after 64 write+fsync pairs: the sync ahead never ran"
ok "syncs_ahead=$ahead"

# ---------------------------------------------------------------------------------------------------------
section "ext4 on a loop device over the image"
loop_attach LOOP "$MNT/image"
check "mkfs.ext4 on $LOOP"
timeout 300 mkfs.ext4 -q -F -E lazy_itable_init=0,lazy_journal_init=0 "$LOOP" || fail "mkfs.ext4 failed"
fs_mount "$LOOP" "$FS"
ok "ext4 mounted at $FS"

# A tree of real files: a ~DATA_MB subset of /usr/include (or /usr/share, /usr/lib), plus one large random file.
pick_source() {
  local d
  for d in /usr/include /usr/share /usr/lib; do
    [[ -d $d ]] && { echo "$d"; return; }
  done
  fail "no source tree to copy"
}
SRC=$(pick_source)
check "copy ~${DATA_MB} MiB of files from $SRC into ext4, plus a 16 MiB random file"
(cd "$SRC" && find . -type f -size -8M -printf '%s\t%p\n' 2>/dev/null | LC_ALL=C sort -t$'\t' -k2 |
  awk -F'\t' -v lim=$((DATA_MB << 20)) '{ t += $1; if (t <= lim) print $2 }') >"$E2E_DIR/files.txt"
mkdir -p "$FS/tree"
timeout 600 tar -C "$SRC" --no-recursion -cf - -T "$E2E_DIR/files.txt" | timeout 600 tar -C "$FS/tree" -xf - ||
  fail "copying the tree failed"
head -c 16M /dev/urandom >"$FS/random.bin"
sha256sum "$FS/random.bin" | sed "s#$FS/#./#" >"$E2E_DIR/random.sha"
timeout 300 sync -f "$FS" || fail "sync -f failed"
sha_manifest "$FS/tree" "$E2E_DIR/manifest"
ok "$(wc -l <"$E2E_DIR/manifest") files, $(du -sm "$FS" | cut -f1) MiB used"

check "the copy equals the source (sha256 of every file)"
(cd "$SRC" && LC_ALL=C sort "$E2E_DIR/files.txt" | tr '\n' '\0' | xargs -0 -r sha256sum) | LC_ALL=C sort -k2 >"$E2E_DIR/src.manifest"
LC_ALL=C sort -k2 "$E2E_DIR/manifest" | diff -q - "$E2E_DIR/src.manifest" >/dev/null ||
  fail "checksums of the copy differ from the source"
ok "identical"

verify_fs() { # verify_fs DIR WHEN
  check "every file's sha256 matches $2"
  (cd "$1/tree" && sha256sum -c --quiet "$E2E_DIR/manifest") || fail "checksum mismatch $2"
  (cd "$1" && sha256sum -c --quiet "$E2E_DIR/random.sha") || fail "random.bin mismatch $2"
  ok "$(wc -l <"$E2E_DIR/manifest") files + random.bin match"
}

section "remount ext4"
fs_umount "$FS"
fs_mount "$LOOP" "$FS"
verify_fs "$FS" "after an ext4 unmount/mount"

# ---------------------------------------------------------------------------------------------------------
section "status --json"
check "'boostvol status MNT --json' parses as JSON and counts the writes"
expect_rc 0 bv status "$MNT" --json
printf '%s\n' "$E2E_OUT" >"$E2E_DIR/status1.json"
python3 - "$E2E_DIR/status1.json" <<'EOF' || fail "status --json does not parse or shows no writes"
import json, sys
d = json.load(open(sys.argv[1]))
print("    status:", {k: d[k] for k in sorted(d) if k in ("health", "writes", "bytes_written", "dirty_blocks",
      "migrated_blocks", "image_size", "migrator_state")})
assert d.get("writes", 0) > 0, "writes is 0"
assert d.get("bytes_written", 1) > 0, "bytes_written is 0"
EOF
ok "status parses and shows writes"
check "'boostvol status FAST --json' works too, and plain 'status' prints something"
expect_rc 0 bv status "$FAST" --json
python3 -c 'import json,sys; json.loads(sys.stdin.read())' <<<"$E2E_OUT" || fail "status FAST --json does not parse"
expect_rc 0 bv status "$MNT"
[[ -n $E2E_OUT ]] || fail "plain status printed nothing"
ok "status FAST parses"

# ---------------------------------------------------------------------------------------------------------
section "unmount and remount boostvol"
check "'boostvol unmount' is refused (exit 2, naming $LOOP) while ext4 on the loop device is mounted"
expect_fail 2 "${LOOP#/dev/}" bv unmount "$MNT"
is_mounted "$FS" || fail "ext4 got unmounted"
is_mounted "$MNT" || fail "the boostvol mount got unmounted"
[[ $(lock_pid "$FAST") == "$(daemon_pid "$FAST")" && -n $(daemon_pid "$FAST") ]] || fail "the daemon died"
(cd "$FS/tree" && sha256sum -c --quiet "$E2E_DIR/manifest") || fail "checksum mismatch after the refused unmount"
ok "still mounted and serving"
fs_umount "$FS"
check "'boostvol unmount' detaches the (unmounted) loop device $LOOP itself, then stops the daemon"
bv_unmount "$MNT" "$FAST"
if losetup -n -O BACK-FILE "$LOOP" 2>/dev/null | grep -qF "$MNT/image"; then
  fail "$LOOP is still attached to $MNT/image"
fi
ok "$LOOP detached"
check "'boostvol check FAST' is clean after a clean unmount"
expect_rc 0 bv check "$FAST"
bv_mount "$FAST" "$MNT"
check "after a clean stop the volume opens from its checkpoint (clean_open, if status reports it)"
expect_rc 0 bv status "$MNT" --json
CLEAN=$(json_get - clean_open <<<"$E2E_OUT")
if [[ -n $CLEAN ]]; then assert_eq "clean_open" "$CLEAN" "True"; else log "status has no clean_open field"; fi
loop_attach LOOP "$MNT/image"
fs_mount "$LOOP" "$FS"
verify_fs "$FS" "after a boostvol unmount/remount"

check "writing more after the remount works (a second copy of random.bin)"
cp "$FS/random.bin" "$FS/random2.bin"
sync -f "$FS"
cmp "$FS/random.bin" "$FS/random2.bin" || fail "random2.bin differs"
ok "written and read back"

# ---------------------------------------------------------------------------------------------------------
section "drain: SLOW/image becomes byte-identical to the image"
fs_umount "$FS"
loop_detach "$LOOP"
check "'boostvol drain MNT' exits 0"
expect_rc 0 timeout 600 "$BOOSTVOL_BIN" drain "$MNT"
check "after the drain, status shows no dirty blocks"
expect_rc 0 bv status "$MNT" --json
DIRTY=$(json_get - dirty_blocks <<<"$E2E_OUT")
assert_eq "dirty_blocks" "$DIRTY" 0
check "a copy of MNT/image read now (nothing writes to it any more)"
timeout 600 cp --sparse=always "$MNT/image" "$E2E_DIR/image.copy" || fail "reading MNT/image failed"
ok "read $(stat -c %s "$E2E_DIR/image.copy") bytes"
check "'boostvol unmount' with nothing attached"
bv_unmount "$MNT" "$FAST"
check "cmp SLOW/image with the image's copy: identical"
cmp "$SLOW/image" "$E2E_DIR/image.copy" || fail "SLOW/image differs from the image after a drain"
ok "identical"
rm -f "$E2E_DIR/image.copy"
check "'boostvol check FAST' is clean"
expect_rc 0 bv check "$FAST"

# ---------------------------------------------------------------------------------------------------------
section "the home copy alone, without boostvol"
check "losetup -r SLOW/image directly; fsck.ext4 -fn is clean"
loop_attach HLOOP "$SLOW/image" -r
timeout 300 fsck.ext4 -fn "$HLOOP" || fail "fsck.ext4 -fn of the home copy reports problems"
ok "fsck clean"
check "mount the home copy read-only: the same files"
fs_mount "$HLOOP" "$E2E_DIR/home-fs" -o ro,noload
verify_fs "$E2E_DIR/home-fs" "on the home copy (no boostvol)"
cmp "$E2E_DIR/home-fs/random.bin" "$E2E_DIR/home-fs/random2.bin" || fail "random2.bin differs on the home copy"
fs_umount "$E2E_DIR/home-fs"
loop_detach "$HLOOP"

section "remount after the home copy was read: still consistent"
check "the volume mounts again after the home copy was attached read-only (no write, no stamp change)"
bv_mount "$FAST" "$MNT"
expect_rc 0 cmp <(head -c 1M "$MNT/image") <(head -c 1M "$SLOW/image")
bv_unmount "$MNT" "$FAST"

assert_no_leftovers
