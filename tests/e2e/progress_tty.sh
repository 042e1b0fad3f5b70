#!/usr/bin/env bash
# progress_tty: long operations show a bar with rate and ETA on a terminal, plain lines when not (issue 6).
#
#  1. drain on a pty (script(1)): a redrawn bar "drain [###...] ...% N/M segments ... done in M:SS", then
#     "drained"; piped: plain "drain: N/M segments (P%)..." lines and no carriage return.
#  2. recovery after kill -9, through `boostvol mount` (the daemon reports to its parent, which draws): on a pty a
#     "recovery [###...] ... records ... done in" bar before the device; piped, a plain "recovery: N/N records" line.
#  3. check on a pty: a "check [###...]" bar and the one summary; piped: plain lines.
#  4. mount --loop on a pty tells the person what to do next; piped, stdout is the device alone.
# Asserts what is printed, never how fast.
# shellcheck source=SCRIPTDIR/../lib/e2e_lib.sh
source "$(dirname "$0")/../lib/e2e_lib.sh"

need_root
need_fuse
need_loop
need_bin
need_cmd script
e2e_init

FAST=$E2E_DIR/fast
SLOW=$E2E_DIR/slow
MNT=$E2E_DIR/mnt
# pty CMD...: run CMD on a pseudo-terminal; its output (with \r and escapes) in $E2E_OUT, exit code in $E2E_RC.
pty() {
  local cmd
  printf -v cmd '%q ' "$@"
  capture script -qec "$cmd" /dev/null
}
# write_dirty MIB: MIB MiB of random data into the image, fsync'ed.
write_dirty() { dd if=/dev/urandom of="$MNT/image" bs=1M count="$1" conv=notrunc,fsync status=none || fail "dd"; }

section "a 256 MiB volume with a 64 MiB log of 1 MiB segments; the migrator held back"
bv_create "$FAST" "$SLOW" 256M --cache-size 64M --segment-size 1M
bv_mount "$FAST" "$MNT"
# (sequential_cutoff=0: write_dirty's dd is one sequential stream, which bypass would send home directly.)
expect_rc 0 bv set "$MNT" idle_migrate_ms=600000 migrate_start_fraction=0.95 sequential_cutoff=0

check "drain on a terminal: a bar that ends 'done in'"
write_dirty 24
pty "$BOOSTVOL_BIN" drain "$MNT"
[[ $E2E_RC == 0 ]] || fail "drain on a pty exited $E2E_RC: $E2E_OUT"
grep -q $'\r'"drain \[" <<<"$E2E_OUT" || fail "no redrawn bar: $(cat -v <<<"$E2E_OUT")"
grep -qE 'drain \[#{30}\] 100\.0%  [0-9]+/[0-9]+ segments.*done in [0-9]+:[0-9]{2}' <<<"$E2E_OUT" ||
  fail "the bar does not end full with 'done in': $(cat -v <<<"$E2E_OUT")"
expect_msg "drained: every write is home"
check "drain piped: plain lines, no carriage return"
write_dirty 8
expect_rc 0 bv drain "$MNT"
grep -qE '^drain: [0-9]+/[0-9]+ segments \([0-9.]+%\)' <<<"$E2E_OUT" || fail "no plain progress line: $E2E_OUT"
! grep -q $'\r' <<<"$E2E_OUT" || fail "a carriage return in piped output: $(cat -v <<<"$E2E_OUT")"
ok "plain lines"
check "nothing to drain: no bar at all"
expect_rc 0 bv drain "$MNT"
! grep -q '^drain:' <<<"$E2E_OUT" || fail "a progress line with nothing to drain: $E2E_OUT"
ok "just 'drained'"

crash() {
  write_dirty 16
  local pid
  pid=$(daemon_pid "$FAST")
  [[ -n $pid ]] || fail "no daemon"
  kill -KILL "$pid"
  wait_until 30 "the killed daemon to be gone" not pid_alive "$pid"
  timeout 30 fusermount3 -uz "$MNT" 2>/dev/null || umount -l "$MNT" 2>/dev/null || true
  wait_until 30 "$MNT to be unmounted" not is_mounted "$MNT"
}
check "recovery after kill -9, mount on a terminal: the parent draws the daemon's recovery bar"
crash
pty "$BOOSTVOL_BIN" mount "$FAST" "$MNT"
[[ $E2E_RC == 0 ]] || fail "mount on a pty exited $E2E_RC: $E2E_OUT"
grep -qE 'recovery \[#{30}\] 100\.0%  ([0-9]+)/\1 records.*done in' <<<"$E2E_OUT" ||
  fail "no full recovery bar: $(cat -v <<<"$E2E_OUT")"
ok "recovery bar"
wait_until 30 "$MNT/image" test -f "$MNT/image"
expect_rc 0 bv status "$MNT"
expect_msg "with recovery from the log"
check "recovery piped: a plain line"
crash
expect_rc 0 bv mount "$FAST" "$MNT"
grep -qE '^recovery: ([0-9]+)/\1 records \(100\.0%\)' <<<"$E2E_OUT" || fail "no plain recovery line: $E2E_OUT"
! grep -q $'\r' <<<"$E2E_OUT" || fail "a carriage return in piped output: $(cat -v <<<"$E2E_OUT")"
ok "plain line"
wait_until 30 "$MNT/image" test -f "$MNT/image"
write_dirty 4
expect_rc 0 bv unmount "$MNT"

check "check on a terminal: a bar and one summary"
pty "$BOOSTVOL_BIN" check "$FAST"
[[ $E2E_RC == 0 ]] || fail "check on a pty exited $E2E_RC: $E2E_OUT"
grep -qE 'check \[#{30}\] 100\.0%  ([0-9]+)/\1 records' <<<"$E2E_OUT" || fail "no check bar: $(cat -v <<<"$E2E_OUT")"
n=$(grep -c 'log records' <<<"$E2E_OUT")
assert_eq "summary lines" "$n" 1
check "check piped: plain lines"
expect_rc 0 bv check "$FAST"
grep -qE '^check: ([0-9]+)/\1 records' <<<"$E2E_OUT" || fail "no plain check line: $E2E_OUT"
expect_msg "consistent"

check "mount --loop: piped, stdout is the device alone; on a terminal, what to do next"
out=$(bv mount "$FAST" "$MNT" --loop 2>/dev/null) || fail "mount --loop"
E2E_LOOPS+=("$out")
[[ $out =~ ^/dev/loop[0-9]+$ ]] || fail "stdout is not just the device: '$out'"
ok "stdout: $out"
expect_rc 0 bv unmount "$MNT"
pty "$BOOSTVOL_BIN" mount "$FAST" "$MNT" --loop
dev=$(grep -o '/dev/loop[0-9]*' <<<"$E2E_OUT" | head -n1)
[[ -n $dev ]] && E2E_LOOPS+=("$dev")
[[ $E2E_RC == 0 ]] || fail "mount --loop on a pty exited $E2E_RC: $E2E_OUT"
expect_msg "make a filesystem (mkfs.ext4 $dev)"
expect_msg "stop with: boostvol unmount $MNT"
expect_rc 0 bv unmount "$MNT"
assert_no_leftovers
