#!/usr/bin/env bash
# damaged_volume: the CLI's exit codes and messages for a damaged log (issue 3, part 4; docs/cli.md
# "boostvol check FAST [--repair]"). The engine's outcomes for every kind of damage are tested in
# tests/unit/damage_test.cc; this checks the mapping to the command line:
#   a bit flip in a record meta.db recorded as durable, after an unclean stop:
#   mount -> 3 naming `boostvol check`; check -> 3 listing the problem; check --repair -> 0 listing the lost
#   blocks; mount -> 0, every block of the kept prefix reads as written, every lost block as its older copy.
# The data is written through one FUSE mount first (the migrator held off by saved tunables, so the records stay
# in the log); the damage and the unclean stop are made by hand (a byte of FAST/log, two rows of meta.db).
# shellcheck source=SCRIPTDIR/../lib/e2e_lib.sh
source "$(dirname "$0")/../lib/e2e_lib.sh"

need_root
need_fuse
need_cmd python3
e2e_init

FAST=$E2E_DIR/fast
SLOW=$E2E_DIR/slow
MNT=$E2E_DIR/mnt
BLOCKS=16

section "a volume with 16 KiB segments, its migrator held off"
bv_create "$FAST" "$SLOW" 2M --cache-size 256K --segment-size 16K
python3 - "$FAST/meta.db" <<'PY'
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
db.executemany("INSERT OR REPLACE INTO settings (key, value, updated_unix) VALUES (?, ?, 0)",
               [("migrate_start_fraction", "1"), ("idle_migrate_ms", "3600000")])
db.commit()
PY

section "write $BLOCKS distinct blocks, fsync, clean stop"
python3 - "$E2E_DIR/data" "$BLOCKS" <<'PY'
import sys
with open(sys.argv[1], "wb") as f:
    for b in range(int(sys.argv[2])):
        f.write(bytes([(b * 29 + i * 7 + 1) % 251 + 1 for i in range(256)]) * 16)
PY
bv_mount "$FAST" "$MNT"
check "write and fsync the data"
dd if="$E2E_DIR/data" of="$MNT/image" bs=4096 count=$BLOCKS conv=notrunc,fsync status=none
ok "written"
bv_unmount "$MNT" "$FAST"

section "damage: a bit flip in the record at the start of segment 1 (sealed), then an unclean stop"
python3 - "$FAST" <<'PY'
import sqlite3, sys
fast = sys.argv[1]
db = sqlite3.connect(fast + "/meta.db")
sealed = db.execute("SELECT segment_seq FROM segments WHERE state = 'sealed' ORDER BY segment_seq").fetchall()
assert (1,) in sealed, f"precondition: segment 1 is sealed ({sealed})"
db.execute("DELETE FROM checkpoint")
db.execute("UPDATE volume SET clean_shutdown = 0")
db.commit()
with open(fast + "/log", "r+b") as f:   # segment 1 = slot 1: header at block 4, its first data block at 5
    f.seek(5 * 4096 + 100)
    c = f.read(1)
    f.seek(5 * 4096 + 100)
    f.write(bytes([c[0] ^ 0x10]))
PY
ok "flipped a bit of FAST/log block 5"

section "mount refuses, check reports, check --repair repairs"
mkdir -p "$MNT"
check "mount refuses with exit 3, naming boostvol check"
expect_fail 3 "boostvol check" bv mount "$FAST" "$MNT"
is_mounted "$MNT" && fail "$MNT was mounted"
check "check finds the damage: exit 3"
expect_fail 3 "problem" bv check "$FAST"
expect_msg "fails its checks" "damaged"
check "check --repair: exit 0, lists the lost blocks, then consistent"
expect_rc 0 bv check --repair "$FAST"
expect_msg "repaired"
expect_msg "consistent"
LOST=$(sed -n 's/^image blocks (4096 bytes each) that lost their newest copy: *//p' <<<"$E2E_OUT" | tr -d '.()a-z' | xargs)
[[ -n $LOST ]] || fail "repair listed no lost blocks: $E2E_OUT"
ok "lost blocks: $LOST"
check "a second check --repair has nothing to do"
expect_fail 0 "nothing to repair" bv check --repair "$FAST"
check "check alone: consistent"
expect_fail 0 "consistent" bv check "$FAST"

section "the repaired volume mounts; the kept prefix reads back, the lost blocks read their older copy (zeros)"
bv_mount "$FAST" "$MNT"
check "every block is as written or, if lost, zeros"
python3 - "$MNT/image" "$E2E_DIR/data" "$BLOCKS" $LOST <<'PY'
import sys
img, data, n = sys.argv[1], open(sys.argv[2], "rb").read(), int(sys.argv[3])
lost = {int(x) for x in sys.argv[4:]}
with open(img, "rb") as f:
    got = f.read(n * 4096)
for b in range(n):
    want = bytes(4096) if b in lost else data[b * 4096:(b + 1) * 4096]
    if got[b * 4096:(b + 1) * 4096] != want:
        sys.exit(f"block {b}: {'lost, should read zeros' if b in lost else 'kept, should read as written'} but differs")
print(f"{n - len(lost)} blocks as written, {len(lost)} lost blocks read zeros")
PY
ok "image verified"
bv_unmount "$MNT" "$FAST"
log "PASS ($E2E_CHECKS checks)"
