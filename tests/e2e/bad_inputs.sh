#!/usr/bin/env bash
# bad_inputs: every bad request is refused with a clear message and a documented exit code, and changes nothing
# (a listing of FAST and SLOW with the sha256 of every file is compared before and after).
# Exit codes (docs/cli.md): 0 ok, 1 usage/bad input, 2 refused, 3 I/O error/corruption.
# shellcheck source=SCRIPTDIR/../lib/e2e_lib.sh
source "$(dirname "$0")/../lib/e2e_lib.sh"

need_root
need_fuse
need_cmd setpriv python3 sha256sum
e2e_init

FAST=$E2E_DIR/a/fast
SLOW=$E2E_DIR/a/slow
MNT=$E2E_DIR/a/mnt
FAST_B=$E2E_DIR/b/fast
SLOW_B=$E2E_DIR/b/slow

# unchanged LABEL CMD...: snapshot the whole scratch dir, run CMD (the checks), assert the snapshot is equal.
SNAP_BEFORE=""
# snap: every entry under the scratch dir with type, mode, owner, size and sha256, except, in a dir that holds a
# volume (meta.db): the daemon's own log (boostvol.log, which may record the refusal) and the content of lock
# (and anywhere: SLOW/boostvol-home.lock, the home's fencing lock, made by the first open attempt)
# ("pid N" of whoever last tried), and meta.db compared logically (an SQL dump of a copy of meta.db + its WAL),
# since opening it may checkpoint the WAL into the main file without changing a row.
snap() {
  python3 - "$E2E_DIR" <<'PY'
import hashlib, os, shutil, sqlite3, stat, sys, tempfile
root = sys.argv[1]
out = []
for d, dirs, files in os.walk(root):
    dirs.sort()
    is_vol = "meta.db" in files
    for name in sorted(dirs + files):
        p = os.path.join(d, name)
        st = os.lstat(p)
        kind = "d" if stat.S_ISDIR(st.st_mode) else "l" if stat.S_ISLNK(st.st_mode) else "f" if stat.S_ISREG(st.st_mode) else "o"
        if name == "boostvol-home.lock":
            continue  # the home's fencing lock file: created by the first open attempt, holds no data
        if is_vol and (name == "boostvol.log" or name.startswith("meta.db")):
            if name == "meta.db":
                tmp = tempfile.mkdtemp()
                for f in files:
                    if f.startswith("meta.db") and not f.endswith("-shm"):
                        shutil.copy(os.path.join(d, f), tmp)
                con = sqlite3.connect(os.path.join(tmp, "meta.db"))
                dump = "\n".join(con.iterdump()).encode()
                con.close()
                shutil.rmtree(tmp)
                out.append(f"meta.db {oct(st.st_mode)} {st.st_uid} rows-sha256 {hashlib.sha256(dump).hexdigest()} {p}")
            continue
        line = f"{kind} {oct(st.st_mode)} {st.st_uid} {p}"
        if kind == "f" and not (is_vol and name == "lock"):
            h = hashlib.sha256()
            with open(p, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
            line += f" {st.st_size} {h.hexdigest()}"
        elif kind == "l":
            line += " -> " + os.readlink(p)
        out.append(line)
print("\n".join(out))
PY
}
begin_unchanged() { SNAP_BEFORE=$(snap); }
end_unchanged() {
  local after
  after=$(snap)
  if [[ $after != "$SNAP_BEFORE" ]]; then
    diff <(printf '%s\n' "$SNAP_BEFORE") <(printf '%s\n' "$after") | head -n 20 | sed 's/^/    | /' >&2
    fail "$1 changed files in FAST/SLOW"
  fi
  ok "nothing changed on disk"
}
# refused CODES "MSG1|MSG2" WHAT CMD...: one bad request: refused with that code and message, nothing changed.
# soft WHAT CMD...: run one check; on failure record it and go on.
soft() {
  local what=$1
  shift
  if ! ("$@"); then
    FAILED_CASES+=("$what")
    log "  ^^^ FAILED CASE (continuing): $what"
  fi
}
# A failed case is recorded and the test goes on, so one run lists every problem; the test fails at the end.
FAILED_CASES=()
refused() {
  local codes=$1 msgs=$2 what=$3
  shift 3
  check "refused: $what"
  if ! (
    begin_unchanged
    expect_fail "$codes" "$msgs" "$@"
    end_unchanged "$what"
  ); then
    FAILED_CASES+=("$what")
    log "  ^^^ FAILED CASE (continuing): $what"
    # undo what the failed case left behind so the next cases start from the same state
    rm -f "$FAST/boostvol.log" 2>/dev/null || true
  fi
}

section "usage errors"
check "no arguments: usage, exit 1"
expect_rc 1 bv
check "--help works (exit 0) for the command and every subcommand"
for sub in "" create mount status drain check recover-home unmount; do
  # shellcheck disable=SC2086
  expect_rc 0 bv $sub --help
done
mkdir -p "$FAST" "$SLOW" "$FAST_B" "$SLOW_B"
refused 1 "size|required" "create without --size" bv create "$FAST" "$SLOW"
refused 1 "holds no boostvol-home stamp" "recover-home of a directory that is no home" bv recover-home "$SLOW"
refused 1 "does not exist" "recover-home of a missing directory" bv recover-home "$E2E_DIR/nope"
refused 1 "unknown|unrecognized|extra|not expected|invalid" "create with an unknown flag" \
  bv create "$FAST" "$SLOW" --size 64M --frobnicate

section "create: bad sizes"
for s in 12Q -1 0 "" abc 1.5.5G 99999999999T; do
  refused 1 "size|large|range" "create --size '$s'" bv create "$FAST" "$SLOW" --size "$s"
done
refused 1 "size|4096|multiple|align" "create --size 1000 (not a multiple of 4 KiB)" bv create "$FAST" "$SLOW" --size 1000
refused 1 "cache|segment" "cache smaller than 3 segments (--cache-size 8M --segment-size 4M)" \
  bv create "$FAST" "$SLOW" --size 64M --cache-size 8M --segment-size 4M
refused 1 "cache|size" "--cache-size garbage" bv create "$FAST" "$SLOW" --size 64M --cache-size 2X
refused 1 "segment" "--segment-size 0" bv create "$FAST" "$SLOW" --size 64M --segment-size 0

section "create: bad directories"
refused 1 "exist|no such|not found|missing" "create with a missing FAST" \
  bv create "$E2E_DIR/nope/fast" "$SLOW" --size 64M
refused 1 "exist|no such|not found|missing" "create with a missing SLOW" \
  bv create "$FAST" "$E2E_DIR/nope/slow" --size 64M
refused 1 "same|differ" "create with FAST == SLOW" bv create "$FAST" "$FAST" --size 64M
refused 1 "same|differ" "create with FAST == SLOW spelled differently (DIR and DIR/./)" \
  bv create "$FAST" "$FAST/./" --size 64M
ln -s "$FAST" "$E2E_DIR/fast-link"
refused 1 "same|differ|symlink" "create with SLOW a symlink to FAST" bv create "$FAST" "$E2E_DIR/fast-link" --size 64M
rm "$E2E_DIR/fast-link"
touch "$E2E_DIR/a-file"
refused 1 "directory" "create with FAST a regular file" bv create "$E2E_DIR/a-file" "$SLOW" --size 64M
rm "$E2E_DIR/a-file"

# An unprivileged user cannot create a volume in root's dirs. The binary is copied where nobody can run it.
mkdir -p "$E2E_DIR/bin" && cp "$BOOSTVOL_BIN" "$E2E_DIR/bin/boostvol" && chmod 755 "$E2E_DIR/bin/boostvol"
chmod 755 "$E2E_DIR" "$E2E_DIR/bin" "$E2E_DIR/a" && chmod 755 "$FAST" "$SLOW"
as_nobody() { setpriv --reuid=nobody --regid=nogroup --clear-groups -- "$@"; }
refused 1 "permission|writable|access" "create as user nobody in root-owned 0755 dirs" \
  as_nobody timeout 60 "$E2E_DIR/bin/boostvol" create "$FAST" "$SLOW" --size 64M
chmod 700 "$FAST" "$SLOW"

section "mount of something that is not a volume"
mkdir -p "$MNT"
refused "1|2" "volume|meta.db|not found|no such" "mount of an empty FAST" bv mount "$FAST" "$MNT"
refused "1|2" "exist|no such|not found" "mount of a FAST that does not exist" bv mount "$E2E_DIR/nope" "$MNT"
refused "1|2|3" "volume|not found|no such|meta.db" "status of a FAST with no volume" bv status "$FAST"
refused "1|2|3" "volume|not found|no such|meta.db" "check of a FAST with no volume" bv check "$FAST"

section "create two volumes"
check "create volume A and volume B"
bv_create "$FAST" "$SLOW" 64M
bv_create "$FAST_B" "$SLOW_B" 64M
# Give B's image different bytes so a mix-up cannot go unnoticed.
bv_mount "$FAST_B" "$E2E_DIR/b/mnt"
head -c 1M /dev/urandom | dd of="$E2E_DIR/b/mnt/image" bs=1M conv=notrunc,fsync status=none
expect_rc 0 bv drain "$E2E_DIR/b/mnt"
bv_unmount "$E2E_DIR/b/mnt" "$FAST_B"

refused 2 "exist|already" "create over an existing volume (same FAST and SLOW)" bv create "$FAST" "$SLOW" --size 64M
mkdir -p "$E2E_DIR/c/fast" "$E2E_DIR/c/slow"
refused 2 "exist|already" "create with an existing volume's FAST and a fresh SLOW" \
  bv create "$FAST" "$E2E_DIR/c/slow" --size 64M
refused 2 "exist|already" "create with a fresh FAST and an existing volume's SLOW" \
  bv create "$E2E_DIR/c/fast" "$SLOW" --size 64M
# A create interrupted after its log (meta.db is written last): refused, naming what to remove.
mkdir -p "$E2E_DIR/d/fast" "$E2E_DIR/d/slow"
head -c 1M /dev/zero >"$E2E_DIR/d/fast/log"
refused 2 "interrupted create, remove" "create over an interrupted create's log (no meta.db)" \
  bv create "$E2E_DIR/d/fast" "$E2E_DIR/d/slow" --size 64M

section "mount of A with B's home copy (SLOW/image + SLOW/boostvol-home swapped in)"
mkdir -p "$E2E_DIR/stash"
mv "$SLOW/image" "$SLOW/boostvol-home" "$E2E_DIR/stash/"
cp --sparse=always "$SLOW_B/image" "$SLOW/image"
cp "$SLOW_B/boostvol-home" "$SLOW/boostvol-home"
refused 2 "uuid|volume|belong|mismatch|different" "mount of FAST A paired with volume B's home" bv mount "$FAST" "$MNT"
is_mounted "$MNT" && fail "$MNT got mounted"
rm "$SLOW/image" "$SLOW/boostvol-home"
mv "$E2E_DIR/stash/image" "$E2E_DIR/stash/boostvol-home" "$SLOW/"

section "a symlink planted in FAST"
mv "$FAST/log" "$E2E_DIR/stash/log"
cp --sparse=always "$E2E_DIR/stash/log" "$E2E_DIR/stash/log-target"
ln -s "$E2E_DIR/stash/log-target" "$FAST/log"
refused "2|3" "symlink|link|log|loop" "mount with FAST/log replaced by a symlink" bv mount "$FAST" "$MNT"
is_mounted "$MNT" && fail "$MNT got mounted"
rm "$FAST/log"
mv "$E2E_DIR/stash/log" "$FAST/log"
rm -f "$E2E_DIR/stash/log-target"

section "mount: bad -o poll_us"
for v in abc -1 100001 ""; do
  refused 1 "poll_us" "mount -o poll_us=$v" bv mount "$FAST" "$MNT" -o "poll_us=$v"
  is_mounted "$MNT" && fail "$MNT got mounted with poll_us=$v"
done

section "mount: -o writeback_cache with a direct-I/O loop (it would only make buffered readers stale)"
refused 1 "loop-direct-io off" "mount --loop -o writeback_cache" bv mount "$FAST" "$MNT" --loop -o writeback_cache
is_mounted "$MNT" && fail "$MNT got mounted with --loop -o writeback_cache"

section "a second mount of a mounted FAST"
bv_mount "$FAST" "$MNT"
PID=$(daemon_pid "$FAST")
mkdir -p "$E2E_DIR/a/mnt2"
second_mount() {
  expect_fail 2 "$PID" bv mount "$FAST" "$E2E_DIR/a/mnt2"
  is_mounted "$E2E_DIR/a/mnt2" && fail "the second mount happened"
  return 0
}
check "a second 'boostvol mount' of the same FAST is refused naming the holder pid $PID"
soft "second mount names the holder pid" second_mount
check "'boostvol check' of a mounted FAST is refused (busy)"
soft "check of a mounted FAST" expect_fail 2 "$PID|busy|mounted|lock|in use" bv check "$FAST"
refused 2 "$PID" "recover-home while mounted" bv recover-home "$SLOW"
check "'boostvol mount' onto a mountpoint that does not exist is refused"
soft "mount onto a missing mountpoint" expect_rc "1|2" bv mount "$FAST_B" "$E2E_DIR/nope/mnt"

section "namespace operations on the mounted filesystem fail with an errno; the daemon keeps serving"
SIZE=$(stat -c %s "$MNT/image")
head -c 1M /dev/urandom >"$E2E_DIR/probe"
dd if="$E2E_DIR/probe" of="$MNT/image" bs=1M conv=notrunc,fsync status=none
try_op() { # try_op WHAT CMD...
  check "refused on the mount: $1"
  local what=$1
  shift
  soft "$what" expect_rc nonzero "$@"
  [[ $(daemon_pid "$FAST") == "$PID" ]] || fail "the daemon died"
  [[ -f $MNT/image && $(stat -c %s "$MNT/image") == "$SIZE" ]] || fail "MNT/image changed size or vanished"
  cmp -n 1048576 "$E2E_DIR/probe" "$MNT/image" || fail "the image's data changed"
  ok "daemon alive, image intact"
}
try_op "touch MNT/x" touch "$MNT/x"
try_op "mkdir MNT/d" mkdir "$MNT/d"
try_op "mv image image2" mv "$MNT/image" "$MNT/image2"
try_op "rm image" rm -f "$MNT/image"
try_op "truncate -s 1M image" truncate -s 1M "$MNT/image"
try_op "truncate -s +1M image (grow)" truncate -s $((SIZE + 1048576)) "$MNT/image"
try_op "ln image link" ln "$MNT/image" "$MNT/link"
try_op "ln -s image symlink" ln -s image "$MNT/symlink"
try_op "write past the end of the image" dd if=/dev/zero of="$MNT/image" bs=4096 seek=$((SIZE / 4096)) count=1 \
  conv=notrunc status=none
try_op "mknod MNT/fifo" mkfifo "$MNT/fifo"
check "the image still reads after all that (whole image, dd)"
timeout 120 dd if="$MNT/image" of=/dev/null bs=1M status=none || fail "reading the image failed"
ok "read"
bv_unmount "$MNT" "$FAST"

section "a home copy changed behind the cache's back while the cache holds dirty blocks"
check "volume B: write 1 MiB (fsync'ed), kill -9 the daemon at once so the blocks stay dirty in the log"
bv_mount "$FAST_B" "$E2E_DIR/b/mnt"
head -c 1M /dev/urandom | dd of="$E2E_DIR/b/mnt/image" bs=1M seek=4 oflag=direct conv=notrunc,fsync status=none
BPID=$(daemon_pid "$FAST_B")
kill -KILL "$BPID"
wait_until 30 "daemon $BPID gone" not pid_alive "$BPID"
timeout 30 fusermount3 -uz "$E2E_DIR/b/mnt" 2>/dev/null || umount -l "$E2E_DIR/b/mnt"
check "write to SLOW/image directly (as if someone losetup'd it)"
head -c 4096 /dev/urandom | dd of="$SLOW_B/image" bs=4096 seek=100 conv=notrunc,fsync status=none
refused 2 "changed|modified|outside|stale|behind" "mount after the home copy was changed while the cache holds dirty blocks" \
  bv mount "$FAST_B" "$E2E_DIR/b/mnt"
is_mounted "$E2E_DIR/b/mnt" && { FAILED_CASES+=("home changed: it got mounted"); bv_unmount "$E2E_DIR/b/mnt" "$FAST_B"; }

section "unmount of something that is not a boostvol mount"
refused "1|2" "mount|boostvol" "unmount of a plain directory" bv unmount "$E2E_DIR/a/mnt2"
refused "1|2" "exist|no such|mount" "unmount of a missing path" bv unmount "$E2E_DIR/nope"

if ((${#FAILED_CASES[@]})); then
  fail "${#FAILED_CASES[@]} case(s) failed: $(printf '\n  - %s' "${FAILED_CASES[@]}")"
fi
check "'boostvol check' of A is clean after all the refused requests"
expect_rc 0 bv check "$FAST"
assert_no_leftovers
