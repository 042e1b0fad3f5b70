#!/usr/bin/env bash
# page_cache: the kernel's page cache of MNT/image never holds data older than the volume's (docs/tuning.md
# "Page cache of the image"). The kernel keeps the image's pages for the mount's life and boostvol drops the
# pages that a direct write makes stale; this test would fail if it did not:
#  1. buffered readers race O_DIRECT writes: fio writes random data with O_DIRECT and libaio at QD16 over a
#     1 MiB region of MNT/image (asynchronous direct writes, which the kernel does not invalidate after they
#     complete) while two loops read the region through the page cache; afterwards a buffered read of the
#     region must equal an O_DIRECT read of it, round after round;
#  2. a buffered loop device (--direct-io=off) writes and reads through the page cache; fio crc32c-verifies
#     what it wrote, and buffered reads of the image equal direct reads;
#  3. the image's mtime moves with writes in both loop modes (a backup tool comparing mtimes must see them).
# shellcheck source=SCRIPTDIR/../lib/e2e_lib.sh
source "$(dirname "$0")/../lib/e2e_lib.sh"

need_root
need_fuse
need_loop
need_cmd fio
e2e_init

FAST=$E2E_DIR/fast
SLOW=$E2E_DIR/slow
MNT=$E2E_DIR/mnt
ROUNDS=6
is_long && ROUNDS=40
bv_create "$FAST" "$SLOW" 64M --cache-size 64M
bv_mount "$FAST" "$MNT"

# region_sums OFFSET_MB: "buffered-sha direct-sha" of 1 MiB of the image at OFFSET_MB.
region_sums() {
  local b d
  b=$(dd if="$MNT/image" bs=1M skip="$1" count=1 status=none | sha256sum | cut -c1-16)
  d=$(dd if="$MNT/image" bs=1M skip="$1" count=1 iflag=direct status=none | sha256sum | cut -c1-16)
  echo "$b $d"
}

section "buffered readers racing O_DIRECT writes"
check "after each of $ROUNDS rounds of O_DIRECT aio writes raced by buffered readers, the page cache holds the new data"
for ((r = 1; r <= ROUNDS; r++)); do
  dd if="$MNT/image" bs=1M skip=1 count=1 of=/dev/null status=none  # the region is in the page cache
  (while :; do dd if="$MNT/image" bs=64k skip=16 count=16 of=/dev/null status=none; done) &
  r1=$!
  (while :; do dd if="$MNT/image" bs=4k skip=256 count=256 of=/dev/null status=none; done) &
  r2=$!
  timeout 120 fio --name=dw --filename="$MNT/image" --direct=1 --ioengine=libaio --iodepth=16 --rw=randwrite \
    --bs=4k --offset=1M --size=1M --time_based --runtime=1 --refill_buffers --randseed="$r" \
    >"$E2E_DIR/fio.out" 2>&1 || { kill "$r1" "$r2"; tail -n 20 "$E2E_DIR/fio.out" >&2; fail "fio failed"; }
  kill "$r1" "$r2"
  wait "$r1" "$r2" 2>/dev/null || true
  read -r b d < <(region_sums 1)
  [[ $b == "$d" ]] || fail "round $r: a buffered read of the region gives $b, a direct read $d: stale pages"
done
ok "$ROUNDS rounds: buffered and direct reads agree"

section "a buffered loop device (--direct-io=off)"
check "fio crc32c-verifies 4k and 64k random writes through a buffered loop device"
m0=$(stat -c %Y.%y "$MNT/image")
loop_attach LOOP "$MNT/image" --direct-io=off
timeout 600 fio --name=bw --filename="$LOOP" --direct=1 --ioengine=libaio --iodepth=16 --rw=randwrite \
  --bs=4k --bsrange=4k-64k --offset=8M --size=16M --verify=crc32c --verify_fatal=1 --do_verify=1 \
  >"$E2E_DIR/fio.out" 2>&1 || { tail -n 20 "$E2E_DIR/fio.out" >&2; fail "fio verify through a buffered loop failed"; }
ok "verified"
check "buffered and direct reads of the image agree after the buffered loop's writes"
for mb in 8 12 16 23; do
  read -r b d < <(region_sums "$mb")
  [[ $b == "$d" ]] || fail "at ${mb} MiB: buffered $b, direct $d"
done
ok "4 regions agree"
check "the image's mtime moved with the buffered loop's writes"
m1=$(stat -c %Y.%y "$MNT/image")
[[ $m1 != "$m0" ]] || fail "mtime did not move: $m0"
ok "mtime $m0 -> $m1"
loop_detach "$LOOP"

check "the image's mtime moves with a direct loop device's writes"
loop_attach LOOP "$MNT/image" --direct-io=on
m0=$(stat -c %Y.%y "$MNT/image")
sleep 0.01
dd if=/dev/urandom of="$LOOP" bs=4k count=1 seek=10 oflag=direct status=none
m1=$(stat -c %Y.%y "$MNT/image")
[[ $m1 != "$m0" ]] || fail "mtime did not move: $m0"
ok "mtime $m0 -> $m1"
loop_detach "$LOOP"

bv_unmount "$MNT" "$FAST"
check "'boostvol check' is clean"
expect_rc 0 bv check "$FAST"
assert_no_leftovers
