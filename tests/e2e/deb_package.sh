#!/usr/bin/env bash
# deb_package: the Debian package is complete and works as the README says.
#
#  1. `cpack -G DEB` in the build dir of $BOOSTVOL_BIN makes boostvol_VERSION_ARCH.deb (into the scratch dir).
#  2. Its control data: Depends names fuse3 and the shared libraries (libfuse3-3, libsqlite3-0, libspdlog1.10);
#     /etc/boostvol/example.conf is a conffile.
#  3. `dpkg -x` into a throwaway root: every file we ship is there (binary, a man page per command, bash completion,
#     the systemd unit, the sample config, the docs and examples); the binary's libraries resolve and it runs
#     --help and --version; each man page renders without warnings (`man boostvol-get` follows its .so);
#     the completion completes; `systemd-analyze verify` accepts the unit (no running systemd needed).
#  4. Unless boostvol is already installed on this machine (or DEB_INSTALL=0): `apt install ./boostvol_*.deb` and
#     run the quick start of docs/quickstart-deb.md: `man boostvol-status`, create, `mount -t fuse.boostvol`
#     (finds /usr/bin/boostvol through mount.fuse3), `boostvol unmount`, `boostvol mount --loop`, mkfs, mount,
#     write, status (human, --json, --watch), drain with progress, sqlite3 on the views, umount, unmount; an
#     fstab line with loop_attach through `mount -a -T FILE`; the file read back; then `dpkg -P` (also on
#     failure), leaving the machine as it was.
# shellcheck source=SCRIPTDIR/../lib/e2e_lib.sh
source "$(dirname "$0")/../lib/e2e_lib.sh"

need_root
need_cmd cpack dpkg-deb dpkg man gzip
e2e_init

BUILD=$(cd "$(dirname "$BOOSTVOL_BIN")" && pwd)
[[ -f $BUILD/CPackConfig.cmake ]] || fail "no CPackConfig.cmake in $BUILD: configure with a CMakeLists.txt that includes packaging/cpack.cmake"

section "build the .deb"
check "the binary and the man pages are built"
expect_rc 0 timeout 1800 cmake --build "$BUILD" --target boostvol boostvol_man
check "cpack -G DEB"
expect_rc 0 timeout 900 cpack -G DEB -B "$E2E_DIR/pkg" --config "$BUILD/CPackConfig.cmake"
DEB=$(find "$E2E_DIR/pkg" -maxdepth 1 -name 'boostvol_*.deb' | head -n1)
[[ -n $DEB ]] || fail "cpack made no boostvol_*.deb: $E2E_OUT"
ok "built $(basename "$DEB") ($(stat -c %s "$DEB") bytes)"

section "control data"
dpkg-deb -f "$DEB" Package Version Architecture Depends Section | sed 's/^/    | /'
assert_eq "Package" "$(dpkg-deb -f "$DEB" Package)" boostvol
deps=$(dpkg-deb -f "$DEB" Depends)
check "Depends names fuse3 and the shared libraries"
for d in fuse3 libfuse3-3 libsqlite3-0 'libspdlog1\.10(-fmt9)?'; do
  grep -qE "(^|, )$d( |,|$)" <<<"$deps" || fail "Depends lacks $d: $deps"
done
ok "Depends: $deps"
check "/etc/boostvol/example.conf is a conffile"
mkdir -p "$E2E_DIR/control"
dpkg-deb -e "$DEB" "$E2E_DIR/control"
grep -qx /etc/boostvol/example.conf "$E2E_DIR/control/conffiles" || fail "conffiles: $(cat "$E2E_DIR/control/conffiles" 2>&1)"
ok "conffiles lists it"

section "dpkg -x into a throwaway root"
ROOT=$E2E_DIR/root
dpkg -x "$DEB" "$ROOT"
check "every shipped file is there"
for f in usr/bin/boostvol \
  usr/share/man/man1/boostvol.1.gz usr/share/man/man1/boostvol-create.1.gz usr/share/man/man1/boostvol-mount.1.gz \
  usr/share/man/man1/boostvol-status.1.gz usr/share/man/man1/boostvol-drain.1.gz usr/share/man/man1/boostvol-check.1.gz \
  usr/share/man/man1/boostvol-unmount.1.gz usr/share/man/man1/boostvol-umount.1.gz usr/share/man/man1/boostvol-set.1.gz \
  usr/share/man/man1/boostvol-get.1.gz usr/share/bash-completion/completions/boostvol \
  usr/lib/systemd/system/boostvol@.service etc/boostvol/example.conf \
  usr/share/doc/boostvol/README.md usr/share/doc/boostvol/cli.md usr/share/doc/boostvol/troubleshooting.md \
  usr/share/doc/boostvol/status-json.md usr/share/doc/boostvol/sqlite.md usr/share/doc/boostvol/systemd.md \
  usr/share/doc/boostvol/examples/scratch-volume.sh usr/share/doc/boostvol/examples/nfs-backed.sh \
  usr/share/doc/boostvol/examples/vm-images-laptop.sh; do
  [[ -e $ROOT/$f ]] || fail "missing from the package: /$f"
done
ok "all $(find "$ROOT" -type f | wc -l) files present"
check "nothing is installed outside /usr and /etc"
others=$(cd "$ROOT" && find . -mindepth 1 -maxdepth 1 ! -name usr ! -name etc)
[[ -z $others ]] || fail "unexpected top-level entries: $others"
ok "only /usr and /etc"
check "the binary's libraries resolve; --help and --version run"
if ldd "$ROOT/usr/bin/boostvol" | grep -q 'not found'; then fail "$(ldd "$ROOT/usr/bin/boostvol")"; fi
expect_rc 0 "$ROOT/usr/bin/boostvol" --help
expect_msg "create" 
expect_rc 0 "$ROOT/usr/bin/boostvol" --version
expect_msg "boostvol $(dpkg-deb -f "$DEB" Version)"
expect_rc 0 "$ROOT/usr/bin/boostvol" mount --help
expect_msg "--loop-direct-io"
check "each man page renders without warnings, the .so pages too"
for p in boostvol boostvol-create boostvol-mount boostvol-status boostvol-drain boostvol-check boostvol-unmount \
  boostvol-umount boostvol-set boostvol-get; do
  out=$(MANWIDTH=100 LC_ALL=C.UTF-8 man --warnings -M "$ROOT/usr/share/man" "$p" 2>"$E2E_DIR/man.err") ||
    fail "man $p failed: $(cat "$E2E_DIR/man.err")"
  [[ ! -s $E2E_DIR/man.err ]] || fail "man $p warns: $(cat "$E2E_DIR/man.err")"
  grep -qi "boostvol" <<<"$out" || fail "man $p is empty"
done
ok "10 pages"
check "bash completion completes commands and mount's options"
if [[ -r /usr/share/bash-completion/bash_completion ]]; then
  got=$(bash -c 'source /usr/share/bash-completion/bash_completion; source "$1"
    COMP_WORDS=(boostvol mo); COMP_CWORD=1; COMP_LINE="boostvol mo"; COMP_POINT=${#COMP_LINE}; _boostvol; echo "${COMPREPLY[*]}"
    COMP_WORDS=(boostvol mount --lo); COMP_CWORD=2; COMP_LINE="boostvol mount --lo"; COMP_POINT=${#COMP_LINE}; _boostvol; echo "${COMPREPLY[*]}"' \
    _ "$ROOT/usr/share/bash-completion/completions/boostvol")
  assert_eq "completions" "$(tr '\n' '|' <<<"$got")" "mount|--loop --loop-direct-io --log-level|"
else
  bash -n "$ROOT/usr/share/bash-completion/completions/boostvol" || fail "completion script does not parse"
  ok "bash-completion is not installed here; the script parses"
fi
check "systemd-analyze verify accepts boostvol@.service (offline, --root)"
if command -v systemd-analyze >/dev/null; then
  mkdir -p "$ROOT/usr/bin"
  cp /usr/bin/mkdir "$ROOT/usr/bin/mkdir"   # ExecStartPre's command must exist in the root
  cp "$ROOT/usr/lib/systemd/system/boostvol@.service" "$ROOT/usr/lib/systemd/system/boostvol@e2e.service"
  expect_rc 0 systemd-analyze verify --man=no --root="$ROOT" "$ROOT/usr/lib/systemd/system/boostvol@e2e.service"
  [[ -z $E2E_OUT ]] || fail "systemd-analyze verify complains: $E2E_OUT"
  rm -f "$ROOT/usr/lib/systemd/system/boostvol@e2e.service" "$ROOT/usr/bin/mkdir"
  ok "no complaints"
else
  skip_or_fail "needs systemd-analyze (apt-get install systemd) for the unit check"
fi

section "install on this machine and run the quick start"
if [[ ${DEB_INSTALL:-1} == 0 ]]; then
  log "DEB_INSTALL=0: not installing on this machine"
  exit 0
fi
if dpkg -s boostvol >/dev/null 2>&1 || [[ -e /usr/bin/boostvol ]]; then
  log "boostvol is already installed here; not touching it (the dpkg -x checks above stand)"
  exit 0
fi
need_fuse
need_loop
need_cmd mkfs.ext4 mount.fuse3
DEB_INSTALLED=0
_deb_purge() {
  if [[ $DEB_INSTALLED == 1 ]]; then
    _e2e_cleanup
    dpkg -P boostvol >/dev/null 2>&1 || echo "[deb_package] WARNING: dpkg -P boostvol failed" >&2
    DEB_INSTALLED=0
  fi
}
trap 'rc=$?; _deb_purge; (exit $rc); _e2e_exit_trap' EXIT
check "apt install ./$(basename "$DEB") (what a new user types; dpkg -i where apt-get is missing)"
DEB_INSTALLED=1
if command -v apt-get >/dev/null; then
  # Every dependency is installed already (scripts/install-deps.sh): nothing is downloaded.
  expect_rc 0 timeout 300 env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
    -o Dpkg::Use-Pty=0 "$DEB"
else
  expect_rc 0 timeout 300 dpkg -i "$DEB"
fi
assert_eq "installed binary" "$(command -v boostvol)" /usr/bin/boostvol
check "man boostvol-status finds the installed page"
man -w boostvol-status >/dev/null 2>&1 || fail "man -w boostvol-status: $(man -w boostvol-status 2>&1)"
ok "$(man -w boostvol-status)"
# The quick start of docs/quickstart-deb.md, as typed there (small sizes).
V=$E2E_DIR/q
mkdir -p "$V/fast" "$V/slow" "$V/mnt" "$V/data"
E2E_FASTS+=("$V/fast")
E2E_BV_MOUNTS+=("$V/mnt")
check "quick start: create, mount -t fuse.boostvol, unmount"
expect_rc 0 timeout 60 boostvol create "$V/fast" "$V/slow" --size 1G --cache-size 256M
expect_rc 0 timeout 60 mount -t fuse.boostvol "$V/fast" "$V/mnt" -o nofail
assert_eq "fstype" "$(mount_fstype "$V/mnt")" fuse.boostvol
expect_rc 0 timeout 120 boostvol unmount "$V/mnt"
check "quick start: mount --loop, mkfs, mount, write"
expect_rc 0 timeout 60 boostvol mount "$V/fast" "$V/mnt" --loop
dev=$(grep -o '/dev/loop[0-9]*' <<<"$E2E_OUT" | head -n1)
[[ -n $dev ]] || fail "mount --loop printed no device: $E2E_OUT"
E2E_LOOPS+=("$dev")
timeout 120 mkfs.ext4 -q "$dev" || fail "mkfs.ext4 $dev"
fs_mount "$dev" "$V/data"
boostvol set "$V/mnt" idle_migrate_ms=600000 >/dev/null || fail "boostvol set"  # keep the data dirty for a while
head -c 16M /dev/urandom >"$V/data/file"
sync -f "$V/data"
(cd "$V/data" && sha256sum file >"$V/file.sha256")
check "status: human units, dirty %, hit rate, rates and ETA, health"
expect_rc 0 timeout 60 boostvol status "$V/mnt"
for w in "mounted on $V/mnt, healthy" "not yet home (" "% of the cache" "cache hit rate" "rates " "MiB" \
  "opened     after a clean stop"; do
  grep -qF -- "$w" <<<"$E2E_OUT" || fail "status lacks '$w': $E2E_OUT"
done
ok "status reads as documented"
check "status --json parses; dirty_blocks is the data written"
boostvol status "$V/mnt" --json >"$E2E_DIR/status.json" || fail "status --json"
assert_eq "health" "$(json_get "$E2E_DIR/status.json" health)" healthy
dirty=$(json_get "$E2E_DIR/status.json" dirty_blocks)
((dirty >= 4096)) || fail "dirty_blocks $dirty after writing 16 MiB with the migrator held back"
ok "dirty_blocks $dirty"
check "status --watch 0.5 refreshes (not a terminal: reports separated by blank lines)"
capture timeout 2 boostvol status "$V/mnt" --watch 0.5
[[ $E2E_RC == 124 ]] || fail "status --watch ended by itself (rc $E2E_RC): $E2E_OUT"
n=$(grep -c '^volume ' <<<"$E2E_OUT")
((n >= 2)) || fail "status --watch printed $n reports in 2 s: $E2E_OUT"
ok "$n reports"
check "drain prints progress lines (not a terminal) and ends drained"
expect_rc 0 timeout 300 boostvol drain "$V/mnt"
expect_msg "drained: every write is home"
grep -qE '^drain: [0-9]+/[0-9]+ segments' <<<"$E2E_OUT" || fail "no plain progress line: $E2E_OUT"
ok "progress shown"
check "sqlite3 answers from meta.db (views)"
if command -v sqlite3 >/dev/null; then
  out=$(sqlite3 "file:$V/fast/meta.db?mode=ro" "select segments_live from status; select count(*) from stats_history") ||
    fail "sqlite3: $out"
  ok "status, stats_history: $(tr '\n' ' ' <<<"$out")"
else
  log "sqlite3 is not installed; skipping"
fi
fs_umount "$V/data"
expect_rc 0 timeout 300 boostvol unmount "$V/mnt"
expect_msg "detached $dev"
check "an fstab line with loop_attach, mount -a (a temporary fstab: mount -a -T, never /etc/fstab)"
printf '%s %s fuse.boostvol nofail,loop_attach 0 0\n' "$V/fast" "$V/mnt" >"$E2E_DIR/fstab"
expect_rc 0 timeout 60 mount -a -T "$E2E_DIR/fstab"
assert_eq "fstype" "$(mount_fstype "$V/mnt")" fuse.boostvol
dev=$(losetup -j "$V/mnt/image" -O NAME -n | head -n1)
[[ -n $dev ]] || fail "loop_attach attached no loop device"
E2E_LOOPS+=("$dev")
ok "mounted, $dev attached"
check "and the file is intact"
fs_mount "$dev" "$V/data"
(cd "$V/data" && sha256sum -c "$V/file.sha256") || fail "file differs after remount"
fs_umount "$V/data"
expect_rc 0 timeout 300 boostvol unmount "$V/mnt"
expect_msg "detached $dev"
check "dpkg -P removes it again"
_deb_purge
[[ ! -e /usr/bin/boostvol ]] || fail "/usr/bin/boostvol still there after dpkg -P"
[[ ! -e /etc/boostvol/example.conf ]] || fail "/etc/boostvol/example.conf still there after dpkg -P"
ok "purged"
assert_no_leftovers
