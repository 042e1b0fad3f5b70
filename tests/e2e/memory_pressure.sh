#!/usr/bin/env bash
# memory_pressure: loop-over-FUSE under memory pressure (DESIGN.md 7: the daemon's own I/O must not get throttled
# behind dirty pages that only it can clean; the daemon sets PR_SET_IO_FLUSHER where it has CAP_SYS_RESOURCE).
#
# Two memory cgroups squeeze both sides at once: the daemon in one limited to DAEMON_MB, and the writer in another
# limited to WRITER_MB, far below what it writes. For each loop mode (--direct-io=on and off): ext4 on a loop device
# over MNT/image; inside the writer's cgroup, fio writes a 768 MiB file sequentially (1 MiB, buffered) and a 256 MiB
# file randomly (4k..64k, buffered, fsync every 32), each with crc32c verify headers, then `sync`. The cache is
# small (96 MiB), so the migrator writes home all along. A third pass: --direct-io=off on a mount with
# -o writeback_cache, where the image's dirty pages wait in the kernel for the daemon (the hazard itself). Asserted:
#  - every step finishes within its timeout (a deadlock is a hang: the blocked tasks' kernel stacks are printed);
#  - both cgroups hit their limit (failcnt / memory.events max > 0: the pressure was real), no OOM kill, the
#    daemon is still alive;
#  - fio verified every block as it wrote, and again (verify_only) after the page cache is dropped and the volume
#    is unmounted and mounted again; e2fsck -fn is clean.
# cgroup v2 (memory.max) or v1 (memory.limit_in_bytes), whichever this machine has. About 35 s.
# shellcheck source=SCRIPTDIR/../lib/e2e_lib.sh
source "$(dirname "$0")/../lib/e2e_lib.sh"

need_root
need_fuse
need_loop
need_cmd fio mkfs.ext4 e2fsck
e2e_init

DAEMON_MB=${MEMP_DAEMON_MB:-160}
WRITER_MB=${MEMP_WRITER_MB:-64}

# --- memory cgroups -------------------------------------------------------------------------------------------
# cg_root: where this process's memory cgroup lives (v2 unified with the memory controller, else v1).
CG_VER="" CG_BASE=""
if [[ -f /sys/fs/cgroup/cgroup.controllers ]] && grep -qw memory /sys/fs/cgroup/cgroup.controllers; then
  CG_VER=2
  # v2: children get the memory controller only through their parent's subtree_control, and a cgroup with
  # processes cannot hand it on (no internal processes), except the root: the test's cgroups are the root's.
  CG_BASE=/sys/fs/cgroup
  grep -qw memory "$CG_BASE/cgroup.subtree_control" || echo +memory >"$CG_BASE/cgroup.subtree_control" ||
    skip_or_fail "cannot enable the memory controller in $CG_BASE"
elif [[ -d /sys/fs/cgroup/memory ]]; then
  CG_VER=1
  CG_BASE=/sys/fs/cgroup/memory$(awk -F: '$2 == "memory" { print $3 }' /proc/self/cgroup)
fi
[[ -n $CG_VER && -w $CG_BASE ]] || skip_or_fail "needs a writable memory cgroup (v1 or v2) to apply memory pressure"
CGROUPS=()
# cg_new NAME MB: creates a memory cgroup limited to MB MiB; prints its path.
cg_new() {
  local p=$CG_BASE/boostvol-e2e-$1-$$
  mkdir "$p" || fail "mkdir $p"
  if [[ $CG_VER == 2 ]]; then
    echo $(($2 << 20)) >"$p/memory.max"
    echo 0 >"$p/memory.swap.max" 2>/dev/null || true
  else
    echo $(($2 << 20)) >"$p/memory.limit_in_bytes"
  fi
  echo "$p"
}
# cg_hits CG: how many times the cgroup hit its limit.
cg_hits() {
  if [[ $CG_VER == 2 ]]; then awk '$1 == "max" { print $2 }' "$1/memory.events"; else cat "$1/memory.failcnt"; fi
}
cg_ooms() {
  if [[ $CG_VER == 2 ]]; then awk '$1 == "oom_kill" { print $2 }' "$1/memory.events"
  else awk '$1 == "oom_kill" { print $2 }' "$1/memory.oom_control"; fi
}
cg_peak_mb() {
  local f=$1/memory.max_usage_in_bytes
  [[ $CG_VER == 2 ]] && f=$1/memory.peak
  [[ -r $f ]] && echo $(($(cat "$f") >> 20)) || echo "?"
}
# Processes still in a test cgroup go back to the base cgroup, then the cgroup is removed.
cg_cleanup() {
  local p pid
  for p in "${CGROUPS[@]}"; do
    [[ -d $p ]] || continue
    while read -r pid; do echo "$pid" >"$CG_BASE/cgroup.procs" 2>/dev/null; done <"$p/cgroup.procs"
    rmdir "$p" 2>/dev/null || true
  done
}
# shellcheck disable=SC2154 # _rc is assigned inside the trap string
trap '_rc=$?; set +e; _e2e_cleanup; cg_cleanup; (exit $_rc); _e2e_exit_trap' EXIT

# blocked_stacks: every task in D state, with where it waits (wchan; the kernel stack too where it can be read),
# and the page cache's dirty and writeback totals: what a deadlock looks like (docs/troubleshooting.md).
blocked_stacks() {
  local t
  grep -E '^(Dirty|Writeback):' /proc/meminfo
  for t in /proc/[0-9]*/task/[0-9]*; do
    [[ $(awk '{ print $3 }' "$t/stat" 2>/dev/null) == D ]] || continue
    echo "--- $(cat "$t/comm" 2>/dev/null) (task ${t##*/}) waits in $(cat "$t/wchan" 2>/dev/null)"
    head -n 12 "$t/stack" 2>/dev/null
  done
}
# in_cg CG SECONDS CMD...: runs CMD inside CG, with a timeout; a timeout prints the blocked tasks' stacks.
in_cg() {
  local cg=$1 secs=$2 rc=0
  shift 2
  # shellcheck disable=SC2016 # $$ and $0 belong to the inner shell
  timeout -k 10 "$secs" bash -c 'echo $$ >"$0/cgroup.procs" && exec "$@"' "$cg" "$@" || rc=$?
  if [[ $rc -eq 124 || $rc -eq 137 ]]; then
    blocked_stacks | head -n 80 >&2
    fail "timed out after ${secs}s under memory pressure (a deadlock?): $*"
  fi
  return "$rc"
}

FAST=$E2E_DIR/fast SLOW=$E2E_DIR/slow MNT=$E2E_DIR/mnt FS=$E2E_DIR/fs
DCG=$(cg_new daemon "$DAEMON_MB")
CGROUPS+=("$DCG")
WCG=$(cg_new writer "$WRITER_MB")
CGROUPS+=("$WCG")
log "memory cgroups (v$CG_VER): daemon $DCG (${DAEMON_MB} MiB), writer $WCG (${WRITER_MB} MiB)"
bv_create "$FAST" "$SLOW" 2G --cache-size 96M

# fio_jobs MODE(write|verify): the two files, written (with verify) or verified only.
fio_jobs() {
  local mode=$1
  local -a extra=(--do_verify=1)
  [[ $mode == verify ]] && extra=(--verify_only)
  in_cg "$WCG" 600 fio --directory="$FS" --ioengine=psync --direct=0 --verify=crc32c --verify_fatal=1 \
    --randrepeat=1 "${extra[@]}" --output="$E2E_DIR/fio.$mode.out" \
    --name=seq --filename=seq.dat --rw=write --bs=1M --size=768M \
    --name=rand --filename=rand.dat --rw=randwrite --bsrange=4k-64k --size=256M --fsync=32 ||
    { tail -n 30 "$E2E_DIR/fio.$mode.out" >&2; fail "fio ($mode) failed under memory pressure"; }
  grep -E 'err=' "$E2E_DIR/fio.$mode.out" | sed 's/^/    fio: /' | head -n 2
}

# BOOSTVOL_LONG=1 (or MEMP_DIRTY_MB=N): small global dirty limits as well (restored at exit), so that every writer
# is throttled at once, the daemon's own buffered writes to FAST and SLOW included: the daemon must not wait there
# for ever behind dirty pages of the image that only it can clean. PR_SET_IO_FLUSHER is what prevents that (the
# kernel then throttles the daemon on its own devices' dirty pages only), and setting it needs CAP_SYS_RESOURCE.
# Without the capability the squeeze is not run: it deadlocks, as DESIGN.md 7 says. Reproduced in a sandbox whose
# root lacks CAP_SYS_RESOURCE, 8 MiB limits, the direct-I/O pass: the migrator sat in balance_dirty_pages with
# Dirty + Writeback pinned at 8 MiB (ext4's pages on the loop device, which only the daemon can clean), the log
# full, every writer waiting, for 600 s; raising the limits again released it (docs/troubleshooting.md).
have_sys_resource() { (((0x$(awk '/^CapEff:/ { print $2 }' /proc/self/status) >> 24) & 1)); }
SQUEEZE=0
if is_long || [[ -n ${MEMP_DIRTY_MB:-} ]]; then
  if have_sys_resource; then
    SQUEEZE=1
  else
    log "NOT RUN: the small global dirty limits (long tier): this root has no CAP_SYS_RESOURCE, so the daemon cannot" \
      "set PR_SET_IO_FLUSHER, and without it the squeeze deadlocks by design (DESIGN.md 7)"
  fi
fi
if ((SQUEEZE)); then
  DIRTY_SAVED="$(cat /proc/sys/vm/dirty_bytes) $(cat /proc/sys/vm/dirty_background_bytes) $(cat /proc/sys/vm/dirty_ratio) $(cat /proc/sys/vm/dirty_background_ratio)"
  restore_dirty() {
    local b bb r br
    read -r b bb r br <<<"$DIRTY_SAVED"
    if ((b > 0)); then echo "$b" >/proc/sys/vm/dirty_bytes; else echo "$r" >/proc/sys/vm/dirty_ratio; fi
    if ((bb > 0)); then echo "$bb" >/proc/sys/vm/dirty_background_bytes; else echo "$br" >/proc/sys/vm/dirty_background_ratio; fi
  }
  trap '_rc=$?; set +e; restore_dirty; _e2e_cleanup; cg_cleanup; (exit $_rc); _e2e_exit_trap' EXIT
  echo $((${MEMP_DIRTY_MB:-8} << 20)) >/proc/sys/vm/dirty_bytes
  echo $((${MEMP_DIRTY_MB:-8} << 18)) >/proc/sys/vm/dirty_background_bytes
  log "global dirty limits for the test: $(cat /proc/sys/vm/dirty_bytes) bytes, background $(cat /proc/sys/vm/dirty_background_bytes) (were: $DIRTY_SAVED)"
fi

for pass in ${MEMP_PASSES:-on off off+wbc}; do
  mode=$(pass_dio "$pass")
  section "loop pass $pass, daemon in ${DAEMON_MB} MiB, writer in ${WRITER_MB} MiB"
  bv_mount_pass "$FAST" "$MNT" "$pass"
  DPID=$(lock_pid "$FAST")
  [[ -n $DPID ]] || fail "no daemon pid in $FAST/lock"
  if grep -q "cannot set PR_SET_IO_FLUSHER" "$FAST/boostvol.log"; then
    log "the daemon runs WITHOUT PR_SET_IO_FLUSHER (no CAP_SYS_RESOURCE here)"
  else
    log "the daemon runs with PR_SET_IO_FLUSHER"
  fi
  echo "$DPID" >"$DCG/cgroup.procs" || fail "cannot move the daemon ($DPID) into $DCG"
  d_hits0=$(cg_hits "$DCG") w_hits0=$(cg_hits "$WCG")
  loop_attach LOOP "$MNT/image" --direct-io="$mode"
  timeout 300 mkfs.ext4 -q -F "$LOOP" || fail "mkfs.ext4"
  fs_mount "$LOOP" "$FS" -t ext4
  check "$pass: 768 MiB sequential + 256 MiB random buffered writes with crc32c verify, then sync, under pressure"
  fio_jobs write
  in_cg "$WCG" 300 sync || fail "sync failed"
  ok "written and verified"
  check "$pass: both cgroups hit their limits; no OOM kill; the daemon is alive"
  d_hits=$(($(cg_hits "$DCG") - d_hits0)) w_hits=$(($(cg_hits "$WCG") - w_hits0))
  log "limit hits: daemon $d_hits (peak $(cg_peak_mb "$DCG") MiB), writer $w_hits (peak $(cg_peak_mb "$WCG") MiB)"
  ((w_hits > 0)) || fail "the writer's cgroup never hit its ${WRITER_MB} MiB limit: no pressure was applied"
  ((d_hits > 0)) || fail "the daemon's cgroup never hit its ${DAEMON_MB} MiB limit: no pressure was applied"
  assert_eq "OOM kills in the daemon's cgroup" "$(cg_ooms "$DCG")" 0
  assert_eq "OOM kills in the writer's cgroup" "$(cg_ooms "$WCG")" 0
  pid_alive "$DPID" || fail "the daemon ($DPID) is gone"
  ok "pressure applied, nothing killed"
  check "$pass: after dropping the page cache, unmounting and mounting again, every block verifies"
  fs_umount "$FS"
  loop_detach "$LOOP"
  bv_unmount "$MNT" "$FAST"
  echo 3 >/proc/sys/vm/drop_caches
  bv_mount_pass "$FAST" "$MNT" "$pass"
  lock_pid "$FAST" >"$DCG/cgroup.procs" || fail "cannot move the daemon into $DCG"
  loop_attach LOOP "$MNT/image" --direct-io="$mode"
  timeout 300 e2fsck -fn "$LOOP" >"$E2E_DIR/fsck.$pass" 2>&1 || { tail -n 20 "$E2E_DIR/fsck.$pass" >&2; fail "e2fsck -fn found problems"; }
  fs_mount "$LOOP" "$FS" -t ext4
  fio_jobs verify
  ok "e2fsck clean; every block verified again"
  rm -f "$FS/seq.dat" "$FS/rand.dat"
  fs_umount "$FS"
  loop_detach "$LOOP"
  bv_unmount "$MNT" "$FAST"
done
check "'boostvol check' is clean"
expect_rc 0 bv check "$FAST"
assert_no_leftovers
