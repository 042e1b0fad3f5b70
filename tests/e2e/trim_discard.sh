#!/usr/bin/env bash
# trim_discard: TRIM and write-zeroes end to end (docs/policies.md).
#   ext4 on a loop device over MNT/image (loop turns discard into fallocate(PUNCH_HOLE) and write-zeroes into
#   fallocate(ZERO_RANGE)) -> write files -> drain -> delete some -> fstrim -> drain: SLOW/image's allocated
#   blocks drop, the surviving file is intact and fsck.ext4 -fn is clean -> fallocate -p and blkdiscard -z on
#   the image read back as zeros, the home copy too after a drain -> status counts trimmed and zeroed bytes.
# shellcheck source=SCRIPTDIR/../lib/e2e_lib.sh
source "$(dirname "$0")/../lib/e2e_lib.sh"

need_root
need_fuse
need_loop
need_cmd mkfs.ext4 fsck.ext4 fstrim blkdiscard fallocate python3 sha256sum cmp
e2e_init

FAST=$E2E_DIR/fast
SLOW=$E2E_DIR/slow
MNT=$E2E_DIR/mnt
FS=$E2E_DIR/fs
SIZE_MB=256

allocated() { echo $(($(stat -c %b "$1") * $(stat -c %B "$1"))); }
mib() { echo $(($1 >> 20)); }

section "create, mount, ext4 on a loop device"
bv_create "$FAST" "$SLOW" "${SIZE_MB}M" --cache-size 64M
bv_mount "$FAST" "$MNT"
loop_attach LOOP "$MNT/image"
check "the loop device offers discard (the image answers fallocate punch-hole)"
DMAX=$(cat "/sys/block/${LOOP#/dev/}/queue/discard_max_bytes" 2>/dev/null || echo 0)
[[ $DMAX -gt 0 ]] || fail "discard_max_bytes of $LOOP is $DMAX: the loop device turned discard off"
ok "discard_max_bytes $DMAX"
check "mkfs.ext4 (which discards the whole device first)"
timeout 300 mkfs.ext4 -q -F -E lazy_itable_init=0,lazy_journal_init=0 "$LOOP" || fail "mkfs.ext4 failed"
fs_mount "$LOOP" "$FS"

section "files, then a drain"
check "write a 16 MiB file to keep and 64 MiB of files to delete"
head -c 16M /dev/urandom >"$FS/keep.bin"
for i in 1 2 3 4; do head -c 16M /dev/urandom >"$FS/delete$i.bin"; done
sha256sum "$FS/keep.bin" | sed "s#$FS/#./#" >"$E2E_DIR/keep.sha"
timeout 300 sync -f "$FS" || fail "sync -f failed"
ok "written"
expect_rc 0 timeout 600 "$BOOSTVOL_BIN" drain "$MNT"
BEFORE=$(allocated "$SLOW/image")
ok "SLOW/image allocates $(mib "$BEFORE") MiB after the drain"

section "delete, fstrim, drain: the home frees the space"
rm -f "$FS"/delete*.bin
timeout 300 sync -f "$FS"
expect_rc 0 timeout 600 "$BOOSTVOL_BIN" drain "$MNT"
DELETED=$(allocated "$SLOW/image")
ok "after deleting without TRIM: $(mib "$DELETED") MiB allocated (nothing told the cache)"
check "fstrim -v $FS"
timeout 300 fstrim -v "$FS" || fail "fstrim failed"
expect_rc 0 timeout 600 "$BOOSTVOL_BIN" drain "$MNT"
AFTER=$(allocated "$SLOW/image")
ok "after fstrim and a drain: $(mib "$AFTER") MiB allocated (was $(mib "$DELETED") MiB)"
check "at least 48 of the 64 deleted MiB are freed at home"
[[ $((DELETED - AFTER)) -ge $((48 << 20)) ]] || fail "only $(mib $((DELETED - AFTER))) MiB freed"
ok "freed $(mib $((DELETED - AFTER))) MiB"
check "the kept file is intact; fsck.ext4 -fn is clean"
(cd "$FS" && sha256sum -c --quiet "$E2E_DIR/keep.sha") || fail "keep.bin changed"
fs_umount "$FS"
timeout 300 fsck.ext4 -fn "$LOOP" || fail "fsck.ext4 -fn reports problems after fstrim"
ok "intact and clean"
check "status counts the trimmed bytes"
expect_rc 0 bv status "$MNT" --json
TRIMMED=$(json_get - trimmed_bytes <<<"$E2E_OUT")
[[ ${TRIMMED:-0} -ge $((48 << 20)) ]] || fail "trimmed_bytes is '${TRIMMED}'"
ok "trimmed_bytes $TRIMMED"

section "fallocate -p and blkdiscard -z on the image"
loop_detach "$LOOP"
check "fallocate -p (punch hole) of 1 MiB + 100 bytes at an unaligned offset of MNT/image reads as zeros"
OFF=$(((200 << 20) + 1000))
head -c 4M /dev/urandom >"$E2E_DIR/rand4m"
dd if="$E2E_DIR/rand4m" of="$MNT/image" bs=1M seek=199 conv=notrunc,fsync status=none
timeout 60 fallocate -p -o "$OFF" -l $(((1 << 20) + 100)) "$MNT/image" || fail "fallocate -p failed"
python3 - "$MNT/image" "$E2E_DIR/rand4m" "$OFF" $(((1 << 20) + 100)) <<'PY' || fail "wrong bytes around the punched range"
import sys
img, ref, off, n = sys.argv[1], open(sys.argv[2], "rb").read(), int(sys.argv[3]), int(sys.argv[4])
base = 199 << 20
with open(img, "rb") as f:
    f.seek(base)
    got = f.read(len(ref))
want = ref[:off - base] + bytes(n) + ref[off - base + n:]
assert got == want, "first difference at byte %d" % next(i for i in range(len(got)) if got[i] != want[i])
PY
rm -f "$E2E_DIR/rand4m"
ok "zeros, and the bytes around it (same blocks) kept"
loop_attach LOOP "$MNT/image"
check "blkdiscard -z (write-zeroes) of 32 MiB of the loop device reads as zeros, through the loop and the image"
head -c 32M /dev/urandom | dd of="$LOOP" bs=1M seek=64 oflag=direct status=none
timeout 120 blkdiscard -f -z -o $((64 << 20)) -l $((32 << 20)) "$LOOP" || fail "blkdiscard -z failed"
cmp -n $((32 << 20)) <(dd if="$LOOP" bs=1M skip=64 count=32 iflag=direct status=none) /dev/zero ||
  fail "the zeroed range of the loop device is not zeros"
loop_detach "$LOOP"
cmp -n $((32 << 20)) <(tail -c +$(((64 << 20) + 1)) "$MNT/image") /dev/zero || fail "MNT/image is not zeros there"
ok "zeros"
check "after a drain the home copy equals the image"
expect_rc 0 timeout 600 "$BOOSTVOL_BIN" drain "$MNT"
timeout 600 cp --sparse=always "$MNT/image" "$E2E_DIR/image.copy" || fail "reading MNT/image failed"
cmp "$SLOW/image" "$E2E_DIR/image.copy" || fail "SLOW/image differs from the image after a drain"
rm -f "$E2E_DIR/image.copy"
ok "identical"
check "status counts zeroed bytes (write-zeroes) as well"
expect_rc 0 bv status "$MNT" --json
ZEROED=$(json_get - zeroed_bytes <<<"$E2E_OUT")
[[ ${ZEROED:-0} -ge $((32 << 20)) ]] || fail "zeroed_bytes is '${ZEROED}'"
ok "zeroed_bytes $ZEROED"
log "figures: SLOW/image allocated after writing $(mib "$BEFORE") MiB, after rm $(mib "$DELETED") MiB, after fstrim $(mib "$AFTER") MiB"

bv_unmount "$MNT" "$FAST"
check "'boostvol check FAST' is clean"
expect_rc 0 bv check "$FAST"
assert_no_leftovers
