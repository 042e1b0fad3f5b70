#!/usr/bin/env bash
# read_cache: read caching end to end (docs/policies.md "Read caching").
#   8 MiB written through MNT/image and drained home -> read_promote=always -> read twice (O_DIRECT): the second
#   pass is served by the read cache (status: hits, promotions, FAST/readcache 0600) -> overwrite part, read: the
#   new data, before and after a drain -> kill -9, remount: the read cache starts empty, the data is intact ->
#   nhit via `boostvol set` promotes on the second read only.
# shellcheck source=SCRIPTDIR/../lib/e2e_lib.sh
source "$(dirname "$0")/../lib/e2e_lib.sh"

need_root
need_fuse
need_cmd python3 sha256sum dd
e2e_init

FAST=$E2E_DIR/fast
SLOW=$E2E_DIR/slow
MNT=$E2E_DIR/mnt
st() { bv status "$MNT" --json | json_get - "$1"; }
# read_all: reads the first 8 MiB of the image with O_DIRECT (the page cache does not answer), prints its sha256.
read_all() { dd if="$MNT/image" bs=1M count=8 iflag=direct status=none | sha256sum | cut -d' ' -f1; }

section "data at home"
bv_create "$FAST" "$SLOW" 64M --cache-size 64M
bv_mount "$FAST" "$MNT"
head -c 8M /dev/urandom >"$E2E_DIR/data"
dd if="$E2E_DIR/data" of="$MNT/image" bs=1M conv=notrunc,fsync status=none || fail "writing the image failed"
expect_rc 0 bv drain "$MNT"
WANT=$(sha256sum <"$E2E_DIR/data" | cut -d' ' -f1)

section "read_promote=always: the second read is served by the read cache"
expect_rc 0 bv set "$MNT" read_promote=always
assert_eq "first read" "$(read_all)" "$WANT"
H0=$(st read_cache_hits)
assert_eq "promoted blocks" "$(st read_cache_promotions)" 2048
assert_eq "second read" "$(read_all)" "$WANT"
check "the second read hit the read cache for every block"
H1=$(st read_cache_hits)
[[ $((H1 - H0)) -eq 2048 ]] || fail "read_cache_hits went from $H0 to $H1, want +2048"
ok "read_cache_hits +$((H1 - H0))"
check "FAST/readcache is private and sized to a quarter of the log"
assert_eq "mode" "$(stat -c %a "$FAST/readcache")" 600
assert_eq "size" "$(stat -c %s "$FAST/readcache")" $((16 << 20))
expect_rc 0 bv status "$MNT"
expect_msg "read cache always"

section "writes over cached blocks read back new, before and after a drain"
head -c 1M /dev/urandom >"$E2E_DIR/patch"
dd if="$E2E_DIR/patch" of="$MNT/image" bs=1M seek=3 conv=notrunc,fsync status=none || fail "overwrite failed"
dd if="$E2E_DIR/patch" of="$E2E_DIR/data" bs=1M seek=3 conv=notrunc status=none
WANT=$(sha256sum <"$E2E_DIR/data" | cut -d' ' -f1)
assert_eq "read after the overwrite" "$(read_all)" "$WANT"
expect_rc 0 bv drain "$MNT"
assert_eq "read after the drain" "$(read_all)" "$WANT"
assert_eq "read again (cached)" "$(read_all)" "$WANT"

section "kill -9: the next mount starts with an empty read cache"
PID=$(daemon_pid "$FAST")
kill -KILL "$PID"
wait_until 30 "the killed daemon to be gone" not pid_alive "$PID"
timeout 30 fusermount3 -uz "$MNT" 2>/dev/null || umount -l "$MNT" 2>/dev/null || true
wait_until 30 "$MNT to be unmounted" not is_mounted "$MNT"
expect_rc 0 bv mount "$FAST" "$MNT"
wait_until 30 "$MNT/image" test -f "$MNT/image"
assert_eq "read_cache_blocks after the remount" "$(st read_cache_blocks)" 0
assert_eq "read_promote kept" "$(st read_promote)" always
assert_eq "read after kill -9" "$(read_all)" "$WANT"

section "nhit: promoted on the second read"
expect_rc 0 bv set "$MNT" read_promote=off
expect_rc 0 bv set "$MNT" read_promote=nhit read_promote_hits=2
P0=$(st read_cache_promotions)
read_all >/dev/null
assert_eq "promotions after one read" "$(st read_cache_promotions)" "$P0"
assert_eq "second read" "$(read_all)" "$WANT"
check "nearly every block promoted at its second read (the nhit table is 4-way set-associative: a few may be lost)"
P2=$(st read_cache_promotions)
[[ $((P2 - P0)) -ge 2000 && $((P2 - P0)) -le 2048 ]] || fail "promotions went from $P0 to $P2"
ok "$((P2 - P0)) of 2048 blocks promoted at their second read"
bv_unmount "$MNT" "$FAST"
check "'boostvol check FAST' is clean"
expect_rc 0 bv check "$FAST"
assert_no_leftovers
