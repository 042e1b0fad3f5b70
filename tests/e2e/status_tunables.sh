#!/usr/bin/env bash
# status_tunables: what people and scripts read and turn while a volume runs.
#
#  - `mount --loop` attaches MNT/image (direct I/O on by default, off with --loop-direct-io off) and prints the
#    device; `unmount` detaches it.
#  - `status`: human units, dirty share, hit rate, rates and ETA; `--json` has schema_version 1 and every member
#    docs/status-json.md lists, with the daemon's measured rates; `--watch` repeats (plain reports off a tty).
#  - `set`/`get` live through the control socket: applied, persisted in meta.db (settings table), kept across a
#    remount; bad keys and values refused with exit 1 and nothing changed.
#  - `drain` off a tty prints plain progress lines.
# shellcheck source=SCRIPTDIR/../lib/e2e_lib.sh
source "$(dirname "$0")/../lib/e2e_lib.sh"

need_root
need_fuse
need_loop
need_cmd sqlite3 python3
e2e_init

FAST=$E2E_DIR/fast
SLOW=$E2E_DIR/slow
MNT=$E2E_DIR/mnt
bv_create "$FAST" "$SLOW" 512M --cache-size 128M --segment-size 1M

section "mount --loop"
check "mount --loop prints a loop device with direct I/O"
bv_mount "$FAST" "$MNT" --loop
dev=$(grep -o '/dev/loop[0-9]*' <<<"$E2E_OUT" | head -n1)
[[ -n $dev ]] || fail "no device printed: $E2E_OUT"
E2E_LOOPS+=("$dev")
assert_eq "backing file" "$(losetup -n -O BACK-FILE "$dev" | sed 's/ *$//')" "$MNT/image"
assert_eq "dio" "$(cat "/sys/block/${dev#/dev/}/loop/dio")" 1

section "status while writing"
# sequential_cutoff=0: the 48 MiB stream below stays in the log (dirty), which the status checks read.
expect_rc 0 bv set "$MNT" migrate_start_fraction=0.9 idle_migrate_ms=86400000 sequential_cutoff=0
dd if=/dev/urandom of="$dev" bs=1M count=48 oflag=direct status=none
dd if="$dev" of=/dev/null bs=1M count=16 iflag=direct status=none
sleep 3
check "human status: sizes in units, dirty share, hit rate, rates"
expect_rc 0 bv status "$MNT"
printf '%s\n' "$E2E_OUT" | sed 's/^/    | /'
expect_msg "512.0 MiB" "512 MiB"
expect_msg "of the cache"
expect_msg "cache hit rate"
expect_msg "rates      writes"
check "--json: schema_version 1 and the documented members"
bv status "$MNT" --json >"$E2E_DIR/st.json"
python3 - "$E2E_DIR/st.json" "$BOOSTVOL_SRC/docs/status-json.md" <<'PY' || fail "status JSON does not match docs/status-json.md"
import json, re, sys
d = json.load(open(sys.argv[1]))
doc = open(sys.argv[2]).read()
documented = set(re.findall(r'^\| `([a-z_]+)` \|', doc, re.M))
assert d["schema_version"] == 1, d
assert d["mounted"] is True
missing = [k for k in d if k not in documented]
assert not missing, "undocumented members: %s" % missing
absent = [k for k in documented if k not in d and k not in ("clean_stop", "sealed_segments")]
assert not absent, "documented but absent: %s" % absent
assert d["rate_window_s"] >= 1, d
assert d["dirty_blocks"] > 0, d
assert d["drain_eta_s"] is None or isinstance(d["drain_eta_s"], int)
print("    json ok: %d members, window %ds, dirty %d blocks" % (len(d), d["rate_window_s"], d["dirty_blocks"]))
PY
ok "JSON matches the documented schema"
check "--watch off a tty prints one report after another"
capture timeout 5 "$BOOSTVOL_BIN" status "$MNT" --watch 1
n=$(grep -c '^volume ' <<<"$E2E_OUT")
((n >= 2)) || fail "--watch printed $n reports in 5 s: $E2E_OUT"
ok "$n reports"

section "tunables, live"
check "set applies and persists"
expect_rc 0 bv set "$MNT" max_batch_bytes=1048576
expect_msg "live"
expect_rc 0 bv get "$MNT" max_batch_bytes
assert_eq "get" "$E2E_OUT" "max_batch_bytes=1048576"
assert_eq "settings row" "$(sqlite3 "file:$FAST/meta.db?mode=ro" "select value from settings where key='max_batch_bytes'")" 1048576
check "bad keys and values are refused"
expect_fail 1 "unknown tunable" bv set "$MNT" no_such_key=1
expect_fail 1 "from 0 to 1" bv set "$MNT" migrate_start_fraction=2
expect_fail 1 "KEY=VALUE" bv set "$MNT" migrate_start_fraction
assert_eq "unchanged" "$(bv get "$MNT" migrate_start_fraction)" "migrate_start_fraction=0.900000"

section "drain progress off a tty"
expect_rc 0 bv set "$MNT" migrate_start_fraction=0.5 max_batch_bytes=67108864
expect_rc 0 bv drain "$MNT"
expect_msg "drained"
check "status after the drain: nothing dirty, ETA 0"
bv status "$MNT" --json >"$E2E_DIR/st2.json"
assert_eq "dirty_blocks" "$(json_get "$E2E_DIR/st2.json" dirty_blocks)" 0

section "unmount detaches; the tunables survive a remount"
bv_unmount "$MNT" "$FAST"
[[ $(losetup -n -O BACK-FILE "$dev" 2>/dev/null) == *"$MNT/image"* ]] && fail "$dev still attached"
expect_rc 0 bv get "$FAST"
expect_msg "idle_migrate_ms=86400000"
check "--loop-direct-io off"
bv_mount "$FAST" "$MNT" --loop --loop-direct-io off
dev=$(grep -o '/dev/loop[0-9]*' <<<"$E2E_OUT" | head -n1)
E2E_LOOPS+=("$dev")
assert_eq "dio" "$(cat "/sys/block/${dev#/dev/}/loop/dio")" 0
expect_rc 0 bv get "$MNT" idle_migrate_ms
assert_eq "after remount" "$E2E_OUT" "idle_migrate_ms=86400000"
bv_unmount "$MNT" "$FAST"
assert_no_leftovers
