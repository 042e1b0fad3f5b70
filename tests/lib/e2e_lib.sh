# shellcheck shell=bash
# Shared helpers for the end-to-end tests in tests/e2e/. Source it first thing:
#
#   source "$(dirname "$0")/../lib/e2e_lib.sh"
#
# What it gives a test:
#  - need_root / need_fuse / need_loop / need_cmd: when a requirement is missing the test is SKIPPED
#    (exit 77; CTest maps it with SKIP_RETURN_CODE 77), except under CI=true, where it FAILS loudly.
#  - a private scratch dir $E2E_DIR under ${TMPDIR:-/tmp}, and a cleanup trap that always (success, failure,
#    Ctrl-C, CTest timeout's SIGTERM) unmounts filesystems, detaches loop devices, unmounts boostvol's FUSE
#    mounts, kills leftover daemons (by the pid in FAST/lock) and removes the scratch dir.
#  - bv ...: runs $BOOSTVOL_BIN under a timeout; expect_rc / expect_msg to assert exit codes and messages.
#  - volume helpers (bv_create, bv_mount, bv_unmount, loop_attach, fs_mount, ...) that register what they
#    set up so that the trap can undo it.
#
# Environment:
#  BOOSTVOL_BIN   the boostvol binary (CTest sets it); fallback ./build/boostvol, then $BOOSTVOL_SRC/build/boostvol
#  BOOSTVOL_SRC   the source tree (CTest sets it); fallback: two levels above this file
#  BOOSTVOL_LONG  1 = long mode (more cycles, more data)
#  CI             true = a missing requirement is a failure, not a skip
#  E2E_KEEP       1 = keep the scratch dir (and print where it is) instead of removing it
#  E2E_TIMEOUT    seconds for any single boostvol command (default 120)

set -euo pipefail

E2E_NAME=$(basename "${BASH_SOURCE[1]:-$0}" .sh)
E2E_LIB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
BOOSTVOL_SRC=${BOOSTVOL_SRC:-$(cd "$E2E_LIB_DIR/../.." && pwd)}
if [[ -z ${BOOSTVOL_BIN:-} ]]; then
  if [[ -x ./build/boostvol ]]; then
    BOOSTVOL_BIN=$(pwd)/build/boostvol
  else
    BOOSTVOL_BIN=$BOOSTVOL_SRC/build/boostvol
  fi
fi
export BOOSTVOL_BIN BOOSTVOL_SRC
BOOSTVOL_LONG=${BOOSTVOL_LONG:-0}
E2E_TIMEOUT=${E2E_TIMEOUT:-120}
E2E_SKIP=77

# Things set up by the test, undone by the trap (in reverse kind order: fs, loops, fuse mounts, daemons).
E2E_FS_MOUNTS=()
E2E_LOOPS=()
E2E_BV_MOUNTS=()
E2E_FASTS=()
E2E_DIR=""
E2E_CHECKS=0
E2E_OUT=""
E2E_RC=0

# ---------------------------------------------------------------------------------------------------------
# Output

_e2e_ts() { date +%H:%M:%S; }
log() { printf '[%s %s] %s\n' "$(_e2e_ts)" "$E2E_NAME" "$*"; }
section() { printf '\n[%s %s] ===== %s =====\n' "$(_e2e_ts)" "$E2E_NAME" "$*"; }
# check MESSAGE: announce what is being checked (every assertion prints one of these).
check() { E2E_CHECKS=$((E2E_CHECKS + 1)); printf '[%s %s] CHECK %d: %s\n' "$(_e2e_ts)" "$E2E_NAME" "$E2E_CHECKS" "$*"; }
ok() { printf '[%s %s]   ok: %s\n' "$(_e2e_ts)" "$E2E_NAME" "$*"; }
fail() {
  printf '[%s %s] FAIL: %s\n' "$(_e2e_ts)" "$E2E_NAME" "$*" >&2
  exit 1
}

# skip_or_fail REASON: exit 77 (SKIP) normally; under CI=true a missing requirement is a failure.
skip_or_fail() {
  if [[ ${CI:-} == true ]]; then
    printf '[%s] FAIL (CI=true, requirement missing): %s\n' "$E2E_NAME" "$*" >&2
    exit 1
  fi
  printf '[%s] SKIP: %s\n' "$E2E_NAME" "$*" >&2
  exit "$E2E_SKIP"
}

# ---------------------------------------------------------------------------------------------------------
# Requirements

need_root() {
  [[ $EUID -eq 0 ]] || skip_or_fail "needs root (run as root or with sudo)"
}

need_cmd() {
  local c
  for c in "$@"; do
    command -v "$c" >/dev/null 2>&1 || skip_or_fail "needs the command '$c' (scripts/install-deps.sh installs it)"
  done
}

need_fuse() {
  need_cmd fusermount3
  if [[ ! -e /dev/fuse ]]; then
    modprobe fuse 2>/dev/null || true
  fi
  [[ -c /dev/fuse ]] || skip_or_fail "needs /dev/fuse (load the fuse module; in a container pass --device /dev/fuse)"
  grep -qw fuse /proc/filesystems || skip_or_fail "the kernel has no fuse filesystem"
  if [[ $EUID -eq 0 ]]; then
    # Opening it proves the container lets us use it.
    { exec 9<>/dev/fuse; } 2>/dev/null || skip_or_fail "cannot open /dev/fuse (container without the device?)"
    exec 9>&-
  fi
}

need_loop() {
  need_cmd losetup
  if [[ ! -e /dev/loop-control ]]; then
    modprobe loop 2>/dev/null || true
  fi
  [[ -e /dev/loop-control ]] || skip_or_fail "needs loop devices (/dev/loop-control missing; modprobe loop)"
  losetup -f >/dev/null 2>&1 || skip_or_fail "no free loop device (losetup -f failed)"
}

need_bin() {
  [[ -x $BOOSTVOL_BIN ]] || fail "boostvol binary not found at '$BOOSTVOL_BIN' (build it: cmake -S . -B build -G Ninja && ninja -C build, or set BOOSTVOL_BIN)"
}

is_long() { [[ $BOOSTVOL_LONG == 1 ]]; }

# ---------------------------------------------------------------------------------------------------------
# Scratch dir and cleanup

e2e_init() {
  need_bin
  local base=${TMPDIR:-/tmp}
  E2E_DIR=$(mktemp -d "$base/boostvol-e2e.$E2E_NAME.XXXXXX")
  trap '_e2e_exit_trap' EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  log "scratch dir $E2E_DIR, binary $BOOSTVOL_BIN, long=$BOOSTVOL_LONG, CI=${CI:-}"
}

# Processes whose command line mentions the scratch dir (daemons and anything else we left), except us.
_e2e_scratch_pids() {
  [[ -n $E2E_DIR ]] || return 0
  local p cmd
  for p in /proc/[0-9]*; do
    p=${p#/proc/}
    [[ $p == "$$" || $p == "${BASHPID:-}" ]] && continue
    cmd=$(tr '\0' ' ' 2>/dev/null <"/proc/$p/cmdline") || continue
    [[ $cmd == *"$E2E_DIR"* ]] || continue
    # Never our own helper processes (this function's pipeline).
    [[ $cmd == *_e2e_scratch_pids* ]] && continue
    echo "$p"
  done
}

# lock_pid FAST: the pid recorded in FAST/lock ("pid N"), or nothing.
lock_pid() {
  local f=$1/lock
  [[ -r $f ]] || return 0
  sed -n 's/.*pid[^0-9]*\([0-9][0-9]*\).*/\1/p' "$f" | head -n1
}

# daemon_pid FAST: the pid in FAST/lock if that process is alive and is a boostvol process.
daemon_pid() {
  local pid
  pid=$(lock_pid "$1")
  [[ -n $pid ]] || return 0
  pid_alive "$pid" || return 0
  if tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline" | grep -q boostvol; then
    echo "$pid"
  fi
}

# mount_fstype PATH / mount_source PATH: from /proc/self/mountinfo (the top mount on PATH), without touching PATH
# itself (root gets EACCES on a FUSE mount of another user without allow_other, so mountpoint(1) cannot be used).
mount_fstype() {
  awk -v m="$1" '$5 == m { for (i = 7; i <= NF; i++) if ($i == "-") { t = $(i + 1); break } } END { if (t != "") print t }' /proc/self/mountinfo
}
mount_source() {
  awk -v m="$1" '$5 == m { for (i = 7; i <= NF; i++) if ($i == "-") { t = $(i + 2); break } } END { if (t != "") print t }' /proc/self/mountinfo
}
is_mounted() { [[ -n $(mount_fstype "$1") ]]; }

# not CMD...: succeeds when CMD fails (for wait_until).
not() { ! "$@"; }
# pid_alive PID: the process exists and is not a zombie (in a container nobody may reap a killed daemon).
# A killed daemon's main thread can be a zombie while another of its threads is still exiting and holds the
# process's files (the volume's lock): the last thread tears down the log's native AIO context there (exit_aio
# waits for its writes in flight and for the kernel to free it). So the process is alive while any of its
# threads is not a zombie.
pid_alive() {
  local st t
  [[ -d /proc/$1 ]] || return 1
  for t in /proc/"$1"/task/*/status; do
    st=$(awk '/^State:/ { print $2 }' "$t" 2>/dev/null) || continue
    [[ -n $st && $st != Z && $st != X ]] && return 0
  done
  return 1
}

# Mount points under the scratch dir, deepest first.
_e2e_mounts_under() {
  local root=$1
  awk -v r="$root" '{ gsub(/\\040/, " ", $5); if (index($5, r) == 1) print $5 }' /proc/self/mountinfo | sort -r | uniq
}

# Loop devices whose backing file lives under DIR.
_e2e_loops_under() {
  local root=$1
  losetup -n -O NAME,BACK-FILE -l 2>/dev/null | awk -v r="$root" '{ n=$1; $1=""; sub(/^ /, ""); if (index($0, r) == 1) print n }'
}

_e2e_cleanup() {
  set +e
  local m l f pid i
  # 1. filesystems on loop devices (and anything else mounted under the scratch dir that is not FUSE)
  for ((i = ${#E2E_FS_MOUNTS[@]} - 1; i >= 0; i--)); do
    m=${E2E_FS_MOUNTS[i]}
    is_mounted "$m" && { timeout 60 umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null; }
  done
  if [[ -n $E2E_DIR ]]; then
    while read -r m; do
      [[ -n $m ]] || continue
      if [[ $(mount_fstype "$m") != fuse* ]]; then
        timeout 60 umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null
      fi
    done < <(_e2e_mounts_under "$E2E_DIR")
  fi
  # 2. loop devices
  # Only devices still backed by a file of this test: a device this test detached earlier may by now belong to
  # another test running beside it (ctest --parallel), and detaching it would pull its disk away.
  for l in "${E2E_LOOPS[@]}"; do
    local back
    back=$(losetup -n -O BACK-FILE "$l" 2>/dev/null) || continue
    [[ -n $E2E_DIR && $back == "$E2E_DIR"/* ]] && timeout 30 losetup -d "$l" 2>/dev/null
  done
  if [[ -n $E2E_DIR ]]; then
    for l in $(_e2e_loops_under "$E2E_DIR"); do timeout 30 losetup -d "$l" 2>/dev/null; done
  fi
  # 3. boostvol's FUSE mounts: politely first, then by force
  for ((i = ${#E2E_BV_MOUNTS[@]} - 1; i >= 0; i--)); do
    m=${E2E_BV_MOUNTS[i]}
    if is_mounted "$m"; then
      timeout 60 "$BOOSTVOL_BIN" unmount "$m" >/dev/null 2>&1 ||
        timeout 20 fusermount3 -u "$m" 2>/dev/null ||
        timeout 20 umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null
    fi
  done
  # 4. leftover daemons: by the pid in FAST/lock, then anything running on the scratch dir
  if [[ -n $E2E_DIR ]]; then
    while read -r f; do E2E_FASTS+=("$(dirname "$f")"); done < <(find "$E2E_DIR" -xdev -name lock -type f 2>/dev/null)
  fi
  for f in "${E2E_FASTS[@]}"; do
    pid=$(daemon_pid "$f")
    if [[ -n $pid ]]; then
      kill -TERM "$pid" 2>/dev/null
      for _ in $(seq 1 50); do pid_alive "$pid" || break; sleep 0.1; done
      kill -KILL "$pid" 2>/dev/null
    fi
  done
  for pid in $(_e2e_scratch_pids); do kill -KILL "$pid" 2>/dev/null; done
  # 5. whatever is still mounted under the scratch dir (a dead FUSE mount after kill -9)
  if [[ -n $E2E_DIR ]]; then
    while read -r m; do
      [[ -n $m ]] || continue
      timeout 20 fusermount3 -uz "$m" 2>/dev/null || umount -l "$m" 2>/dev/null
    done < <(_e2e_mounts_under "$E2E_DIR")
  fi
  set -e
}

_e2e_exit_trap() {
  local rc=$?
  set +e
  trap - EXIT INT TERM
  if [[ $rc -ne 0 && $rc -ne $E2E_SKIP && -n $E2E_DIR ]]; then
    # Help whoever reads the CTest log: the daemons' own logs.
    local f
    while read -r f; do
      echo "----- tail of $f -----" >&2
      tail -n 40 "$f" >&2
    done < <(find "$E2E_DIR" -xdev -name boostvol.log -type f 2>/dev/null)
  fi
  _e2e_cleanup
  if [[ -n $E2E_DIR && -d $E2E_DIR ]]; then
    if [[ ${E2E_KEEP:-0} == 1 ]]; then
      echo "[$E2E_NAME] keeping scratch dir $E2E_DIR" >&2
    elif [[ -n $(_e2e_mounts_under "$E2E_DIR") ]]; then
      echo "[$E2E_NAME] WARNING: something is still mounted under $E2E_DIR; not removing it" >&2
      [[ $rc -eq 0 ]] && rc=1
    else
      rm -rf --one-file-system "$E2E_DIR"
    fi
  fi
  if [[ $rc -eq 0 ]]; then
    echo "[$E2E_NAME] PASS ($E2E_CHECKS checks)"
  elif [[ $rc -ne $E2E_SKIP ]]; then
    echo "[$E2E_NAME] FAILED (exit $rc) after $E2E_CHECKS checks" >&2
  fi
  exit "$rc"
}

# ---------------------------------------------------------------------------------------------------------
# Running things and asserting

# bv ARGS...: the boostvol binary under a timeout.
bv() { timeout --kill-after=10 "$E2E_TIMEOUT" "$BOOSTVOL_BIN" "$@"; }

# capture CMD...: run CMD, store combined stdout+stderr in $E2E_OUT and the exit code in $E2E_RC. Never fails.
capture() {
  set +e
  E2E_OUT=$("$@" 2>&1)
  E2E_RC=$?
  set -e
}

# expect_rc CODES CMD...: run CMD (output captured in $E2E_OUT), fail unless it exits with one of CODES
# ("0", "2", "1|2", or "nonzero").
expect_rc() {
  local codes=$1
  shift
  capture "$@"
  local okk=0 c
  if [[ $codes == nonzero ]]; then
    [[ $E2E_RC -ne 0 ]] && okk=1
  else
    IFS='|' read -r -a _codes <<<"$codes"
    for c in "${_codes[@]}"; do [[ $E2E_RC -eq $c ]] && okk=1; done
  fi
  if [[ $okk -ne 1 ]]; then
    printf '%s\n' "$E2E_OUT" | sed 's/^/    | /' >&2
    fail "'$*' exited $E2E_RC, expected $codes"
  fi
  ok "exit $E2E_RC: $*"
  if [[ -n $E2E_OUT && $E2E_RC -ne 0 ]]; then
    printf '%s\n' "$E2E_OUT" | head -n 5 | sed 's/^/    | /'
  fi
}

# expect_msg SUBSTRING...: $E2E_OUT (of the last expect_rc/capture) contains one of the substrings
# (case-insensitive).
expect_msg() {
  local s
  for s in "$@"; do
    if grep -qiF -- "$s" <<<"$E2E_OUT"; then
      ok "message mentions '$s'"
      return 0
    fi
  done
  printf '%s\n' "$E2E_OUT" | sed 's/^/    | /' >&2
  fail "message does not mention any of: $*"
}

# expect_fail CODES "SUBSTR1|SUBSTR2" CMD...: both of the above.
expect_fail() {
  local codes=$1 msgs=$2
  shift 2
  expect_rc "$codes" "$@"
  local -a alts
  IFS='|' read -r -a alts <<<"$msgs"
  expect_msg "${alts[@]}"
}

assert_eq() {
  local what=$1 got=$2 want=$3
  [[ $got == "$want" ]] || fail "$what: got '$got', want '$want'"
  ok "$what = $want"
}

assert_file() { [[ -e $1 ]] || fail "missing: $1"; ok "exists: $1"; }

# wait_until SECONDS DESCRIPTION CMD...: poll CMD every 0.1 s until it succeeds; fail after SECONDS.
wait_until() {
  local secs=$1 what=$2
  shift 2
  local deadline=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || fail "timed out after ${secs}s waiting for: $what"
    sleep 0.1
  done
}

# tree_digest DIR...: a listing of every entry (type, mode, owner, size, sha256 of regular files) to compare
# "nothing changed" before/after. Times are left out on purpose.
tree_digest() {
  local d
  for d in "$@"; do
    [[ -e $d ]] || { echo "absent $d"; continue; }
    find "$d" -xdev -printf '%y %m %u %s %p\n' | LC_ALL=C sort -k5
    find "$d" -xdev -type f -print0 | LC_ALL=C sort -z | xargs -0 -r sha256sum
  done
}

# json_get FILE_OR_- KEY: prints a top-level key of a JSON object (python3), fails if it does not parse.
json_get() {
  python3 -c 'import json,sys; d=json.load(open(sys.argv[1]) if sys.argv[1] != "-" else sys.stdin); v=d.get(sys.argv[2]); print("" if v is None else v)' "$@"
}

# ---------------------------------------------------------------------------------------------------------
# Volumes, loop devices, filesystems

# bv_create FAST SLOW SIZE [ARGS...]: mkdir both, create the volume, assert exit 0.
bv_create() {
  local fast=$1 slow=$2 size=$3
  shift 3
  mkdir -p "$fast" "$slow"
  expect_rc 0 bv create "$fast" "$slow" --size "$size" "$@"
}

# bv_mount FAST MNT [ARGS...]: mount (daemonized), wait for MNT/image, register for cleanup.
bv_mount() {
  local fast=$1 mnt=$2
  shift 2
  mkdir -p "$mnt"
  E2E_FASTS+=("$fast")
  E2E_BV_MOUNTS+=("$mnt")
  expect_rc 0 bv mount "$fast" "$mnt" "$@"
  wait_until 30 "$mnt/image to appear" test -f "$mnt/image"
  ok "mounted $fast at $mnt (daemon pid $(lock_pid "$fast"))"
}

# Passes over the loop modes are named on, off and off+wbc: off on a mount with -o writeback_cache
# (docs/tuning.md "Writeback cache"). pass_dio PASS: the loop's --direct-io for PASS.
pass_dio() { echo "${1%%+*}"; }

# bv_mount_pass FAST MNT PASS: bv_mount, with -o writeback_cache for a +wbc pass; then asserts from the daemon's
# log that this very mount turned the kernel's writeback cache on.
bv_mount_pass() {
  local fast=$1 mnt=$2 pass=$3 before
  if [[ $pass != *+wbc ]]; then
    bv_mount "$fast" "$mnt"
    return
  fi
  before=$(grep -c "FUSE writeback cache on" "$fast/boostvol.log" 2>/dev/null || true)  # (grep -c: 1 when none)
  bv_mount "$fast" "$mnt" -o writeback_cache
  (($(grep -c "FUSE writeback cache on" "$fast/boostvol.log" || true) > ${before:-0})) ||
    fail "-o writeback_cache did not turn the kernel's writeback cache on"
}

# bv_unmount MNT FAST: unmount through the CLI, assert the mount and the daemon are gone.
bv_unmount() {
  local mnt=$1 fast=$2 pid
  pid=$(daemon_pid "$fast")
  expect_rc 0 bv unmount "$mnt"
  is_mounted "$mnt" && fail "$mnt is still a mount point after 'boostvol unmount'"
  # 'boostvol unmount' returns only once the daemon's process has exited, not merely released FAST/lock (a script
  # checking for leftovers right after it must find none).
  if [[ -n $pid ]] && pid_alive "$pid"; then
    fail "daemon $pid is still running after 'boostvol unmount' returned: $(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)"
  fi
  ok "unmounted $mnt, daemon ${pid:-?} gone"
}

# loop_attach VAR FILE [losetup options]: attaches FILE to a free loop device, stores the device in VAR.
loop_attach() {
  local _var=$1 _file=$2 _dev
  shift 2
  _dev=$(timeout 60 losetup -f --show "$@" "$_file") || fail "losetup -f --show $* $_file failed"
  E2E_LOOPS+=("$_dev")
  printf -v "$_var" '%s' "$_dev"
  ok "attached $_file to $_dev $*"
}

loop_detach() {
  timeout 60 losetup -d "$1" || fail "losetup -d $1 failed"
  # losetup -d is lazy (autoclear): wait until the device no longer has a backing file.
  wait_until 30 "$1 to be detached" bash -c "! losetup '$1' >/dev/null 2>&1"
}

fs_mount() {
  local dev=$1 dir=$2
  shift 2
  mkdir -p "$dir"
  timeout 120 mount "$@" "$dev" "$dir" || fail "mount $* $dev $dir failed"
  E2E_FS_MOUNTS+=("$dir")
}

fs_umount() {
  timeout 300 umount "$1" || fail "umount $1 failed"
}

# A SLOW that tools which are not ours can break, for the fault tests:
#   DIR/disk.img -> nbdkit NBDKIT_ARGS (a plugin on DIR/disk.img, filters) -> nbdfuse DIR/nbd/disk -> loop -> ext4
# (no journal, errors=continue or $SLOW_ERRORS) mounted at DIR/slow. SIGSTOP of $NBD_PID makes it hang like a dead
# network mount. nbd_ext4_up DIR SIZE NBDKIT_ARGS...: sets NBD_PID and SLOW_LOOP.
nbd_ext4_up() {
  local d=$1 size=$2
  shift 2
  mkdir -p "$d/nbd" "$d/slow"
  truncate -s "$size" "$d/disk.img"
  mkfs.ext4 -q -F -m 0 -O ^has_journal -E nodiscard "$d/disk.img" || fail "mkfs.ext4 for SLOW"
  nbdkit -U "$d/sock" -P "$d/nbdkit.pid" "$@" || fail "nbdkit did not start"
  wait_until 10 "nbdkit's pid file" test -s "$d/nbdkit.pid"
  NBD_PID=$(cat "$d/nbdkit.pid")
  # nbdfuse stays in the foreground; its command line names the scratch dir, so the cleanup ends it.
  nbdfuse -P "$d/nbdfuse.pid" "$d/nbd/disk" --unix "$d/sock" </dev/null >"$d/nbdfuse.log" 2>&1 &
  wait_until 10 "nbdfuse's file" test -s "$d/nbd/disk"
  loop_attach SLOW_LOOP "$d/nbd/disk" --direct-io=on
  fs_mount "$SLOW_LOOP" "$d/slow" -t ext4 -o "errors=${SLOW_ERRORS:-continue}"
}

# nbd_ext4_down DIR: undoes nbd_ext4_up (ext4 already unmounted or not), clears NBD_PID.
nbd_ext4_down() {
  local d=$1
  if mountpoint -q "$d/slow"; then fs_umount "$d/slow"; fi
  # losetup -d, then wait until no loop device is backed by the file. (Not "until the device is free": parallel
  # tests reuse a freed loop number at once.) The loop may already be gone once its filesystem is unmounted.
  timeout 60 losetup -d "$SLOW_LOOP" 2>/dev/null || true
  wait_until 30 "$d/nbd/disk to have no loop device" bash -c "[[ -z \$(losetup -j '$d/nbd/disk' 2>/dev/null) ]]"
  fusermount3 -u "$d/nbd" || fail "fusermount3 -u $d/nbd"
  kill "$NBD_PID" 2>/dev/null || true
  wait_until 30 "nbdkit to exit" not pid_alive "$NBD_PID"
  NBD_PID=""
}

# assert_no_leftovers: no mount, loop device or process left on the scratch dir.
assert_no_leftovers() {
  check "no mount, loop device or boostvol process is left on $E2E_DIR"
  local m l p
  m=$(_e2e_mounts_under "$E2E_DIR")
  [[ -z $m ]] || fail "still mounted: $m"
  l=$(_e2e_loops_under "$E2E_DIR")
  [[ -z $l ]] || fail "loop devices still attached: $l"
  p=$(_e2e_scratch_pids)
  [[ -z $p ]] || fail "processes still running on the scratch dir: $(for x in $p; do tr '\0' ' ' <"/proc/$x/cmdline"; echo; done)"
  ok "nothing left"
}

# sha_manifest DIR OUT: sha256 of every regular file under DIR, relative paths, sorted.
sha_manifest() {
  (cd "$1" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 -r sha256sum) >"$2"
}
