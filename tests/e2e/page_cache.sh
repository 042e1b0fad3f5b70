#!/usr/bin/env bash
# page_cache: the kernel's page cache of MNT/image never holds data older than the volume's (docs/tuning.md
# "Page cache of the image"). The kernel keeps the image's pages for the mount's life and boostvol drops the
# pages that a direct write makes stale; this test would fail if it did not:
#  1. buffered readers race O_DIRECT writes: fio writes random data with O_DIRECT and libaio at QD16 over a
#     1 MiB region of MNT/image (asynchronous direct writes, which the kernel does not invalidate after they
#     complete) while two loops read the region through the page cache; afterwards a buffered read of the
#     region must equal an O_DIRECT read of it, round after round;
#  2. a buffered loop device (--direct-io=off) writes through the page cache (fio's random 4k-64k writes, then a
#     known 16 MiB on top); buffered and direct reads of the image must both return the known data (fio's own
#     verify through both loop modes is e2e.loop_modes);
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
check "after writes through a buffered loop device, buffered and direct reads of the image return them"
m0=$(stat -c %Y.%y "$MNT/image")
loop_attach LOOP "$MNT/image" --direct-io=off
head -c 16M /dev/urandom >"$E2E_DIR/data"
# 4k and 64k writes at QD16 into the region, then the whole region once more in one pass.
timeout 300 fio --name=bw --filename="$LOOP" --direct=1 --ioengine=libaio --iodepth=16 --rw=randwrite \
  --bsrange=4k-64k --offset=8M --size=16M --io_size=32M >"$E2E_DIR/fio.out" 2>&1 ||
  { tail -n 20 "$E2E_DIR/fio.out" >&2; fail "fio through a buffered loop failed"; }
dd if="$E2E_DIR/data" of="$LOOP" bs=64k seek=128 oflag=direct status=none
for mb in 8 12 16 23; do
  want=$(dd if="$E2E_DIR/data" bs=1M skip=$((mb - 8)) count=1 status=none | sha256sum | cut -c1-16)
  read -r b d < <(region_sums "$mb")
  [[ $b == "$want" && $d == "$want" ]] || fail "at ${mb} MiB: written $want, buffered read $b, direct read $d"
done
ok "4 regions: buffered and direct reads return what was written"
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
