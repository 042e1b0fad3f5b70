#!/usr/bin/env bash
# A throwaway single-node Ceph cluster for tests: one monitor, one memstore OSD, pool `rbd` of size 1, no auth,
# listening on 127.0.0.1 only. Built from Debian 12's ceph-mon, ceph-osd and ceph-common (Ceph 16.2);
# scripts/install-ceph.sh installs them.
#
#   tests/lib/ceph_cluster.sh start DIR   creates DIR/ceph.conf, starts mon.a and osd.0, creates pool rbd; prints
#                                         the line `export CEPH_CONF=DIR/ceph.conf`. Takes a few seconds.
#   tests/lib/ceph_cluster.sh stop DIR    kills the daemons by the PIDs recorded in DIR/pids (TERM, then KILL)
#   tests/lib/ceph_cluster.sh env DIR     prints `export CEPH_CONF=...` (and BOOSTVOL_CEPH_CONF) for eval
#   tests/lib/ceph_cluster.sh pid DIR osd|mon   prints the daemon's PID (for SIGSTOP/SIGCONT outage tests)
#
# Traps of Debian 12's Ceph 16.2 that this script steps around:
#  - the monitor needs BOTH messenger addresses, in the monmap and in `mon host`, or clients hunt for it forever;
#  - there is no ceph-mgr, so PG counts (`ceph -s`, `ceph pg stat`) never settle: readiness is `rbd pool init`
#    succeeding (under a timeout), which needs the pool's PGs active;
#  - a memstore OSD needs `memstore page set = true` with 4 KiB pages (else every small write copies a 64 KiB
#    page) and a generous `memstore device bytes` (pages are allocated on use; a full OSD makes clients hang, not
#    fail);
#  - a memstore OSD loses every object when it dies: use SIGSTOP/SIGCONT for an outage, never a restart;
#  - a PG whose read lease ran out during a SIGSTOP of the OSD can stay "laggy" for good (every op on it waits):
#    the lease is made longer than any outage a test makes (see `read lease ratio` below);
#  - every ceph CLI call runs under `timeout`: without a monitor they wait forever.
set -euo pipefail

CEPH_TIMEOUT=${CEPH_TIMEOUT:-20}

die() {
  echo "ceph_cluster: $*" >&2
  exit 1
}

usage() {
  sed -n '2,12p' "$0" >&2
  exit 2
}

# free_port_pair: prints P such that P and P+1 are free on 127.0.0.1.
free_port_pair() {
  local p used
  used=$(ss -Htanl 2>/dev/null | awk '{print $4}' | sed 's/.*://' | sort -u)
  for _ in $(seq 1 200); do
    p=$((20000 + RANDOM % 20000))
    if ! grep -qx "$p" <<<"$used" && ! grep -qx "$((p + 1))" <<<"$used"; then
      echo "$p"
      return 0
    fi
  done
  die "no free port pair found"
}

cctl() { timeout "$CEPH_TIMEOUT" ceph -c "$CONF" "$@"; }

start() {
  local dir=$1
  for c in ceph-mon ceph-osd ceph monmaptool rbd uuidgen; do
    command -v "$c" >/dev/null || die "the command '$c' is missing: run scripts/install-ceph.sh"
  done
  [[ -e $dir/pids ]] && die "$dir/pids exists: a cluster may be running there (stop it first)"
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  CONF=$dir/ceph.conf
  mkdir -p "$dir/run" "$dir/log" "$dir/mon.a" "$dir/osd.0"
  local fsid port mb
  fsid=$(uuidgen)
  port=$(free_port_pair)
  mb=${CEPH_MEMSTORE_MB:-6144}
  cat >"$CONF" <<EOF
# Written by tests/lib/ceph_cluster.sh: a single-node test cluster (no auth, 127.0.0.1 only).
[global]
fsid = $fsid
mon host = [v2:127.0.0.1:$port,v1:127.0.0.1:$((port + 1))]
mon initial members = a
public addr = 127.0.0.1
cluster addr = 127.0.0.1
ms bind ipv6 = false
auth cluster required = none
auth service required = none
auth client required = none
auth allow insecure global id reclaim = false
run dir = $dir/run
admin socket = $dir/run/\$name.asok
log file = $dir/log/\$name.log
pid file = $dir/run/\$name.pid
log to stderr = false
err to stderr = false
mon allow pool size one = true
mon allow pool delete = true
mon warn on pool no redundancy = false
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
# a killed client's watch (and so its exclusive lock) lapses after this many seconds (default 30)
osd client watch timeout = 5
# A PG serves no op once its read lease (this ratio x osd heartbeat grace, 0.8 x 20 s by default) has run out, and
# the lease of a PG with no replica to ack it is renewed only by its own timer. Ceph 16.2 leaves such a PG "laggy"
# for good when an op reaches it right after a SIGSTOP longer than the lease: its ops wait "for readable" forever
# (ceph daemon osd.0 dump_blocked_ops). Outage tests stop the OSD for 25-30 s: a 240 s lease outlasts that.
osd pool default read lease ratio = 12

[mon]
mon data = $dir/mon.a
mon data avail warn = 1
mon data avail crit = 0
mon osd full ratio = .99
mon osd backfillfull ratio = .99
mon osd nearfull ratio = .99

[osd]
osd data = $dir/osd.0
osd objectstore = memstore
memstore device bytes = $((mb * 1024 * 1024))
memstore page set = true
memstore page size = 4096
osd op num shards = 1
osd op num threads per shard = 2
EOF
  monmaptool --create --fsid "$fsid" --addv a "[v2:127.0.0.1:$port,v1:127.0.0.1:$((port + 1))]" \
    "$dir/monmap" >"$dir/log/monmaptool.out" 2>&1 || die "monmaptool failed: $(cat "$dir/log/monmaptool.out")"
  timeout "$CEPH_TIMEOUT" ceph-mon -c "$CONF" --mkfs -i a --monmap "$dir/monmap" >"$dir/log/mon-mkfs.out" 2>&1 ||
    die "ceph-mon --mkfs failed: $(tail -5 "$dir/log/mon-mkfs.out")"
  ceph-mon -f -c "$CONF" -i a >"$dir/log/mon.out" 2>&1 &
  echo "mon $!" >>"$dir/pids"
  local osd_uuid id
  osd_uuid=$(uuidgen)
  id=$(cctl osd new "$osd_uuid" 2>"$dir/log/osd-new.err") || die "ceph osd new failed: $(cat "$dir/log/osd-new.err")"
  [[ $id == 0 ]] || die "expected osd id 0, got '$id'"
  timeout "$CEPH_TIMEOUT" ceph-osd -c "$CONF" -i 0 --mkfs --osd-uuid "$osd_uuid" >"$dir/log/osd-mkfs.out" 2>&1 ||
    die "ceph-osd --mkfs failed: $(tail -5 "$dir/log/osd-mkfs.out")"
  ceph-osd -f -c "$CONF" -i 0 >"$dir/log/osd.out" 2>&1 &
  echo "osd $!" >>"$dir/pids"
  cctl osd pool create rbd 8 8 >/dev/null 2>"$dir/log/pool.err" || die "pool create failed: $(cat "$dir/log/pool.err")"
  cctl osd pool set rbd size 1 --yes-i-really-mean-it >/dev/null 2>>"$dir/log/pool.err" || true
  # Ready when the pool's PGs are active: `rbd pool init` writes to it (no mgr, so no PG stats to wait on).
  local t0=$SECONDS
  until timeout 10 rbd -c "$CONF" pool init rbd >/dev/null 2>>"$dir/log/pool.err"; do
    ((SECONDS - t0 < 60)) || die "pool rbd not usable after 60 s: $(tail -3 "$dir/log/pool.err"); logs in $dir/log"
    sleep 0.5
  done
  echo "export CEPH_CONF=$CONF BOOSTVOL_CEPH_CONF=$CONF"
}

stop() {
  local dir=$1 pid
  [[ -e $dir/pids ]] || return 0
  while read -r _ pid; do
    kill -CONT "$pid" 2>/dev/null || true
    kill -TERM "$pid" 2>/dev/null || true
  done <"$dir/pids"
  for _ in $(seq 1 50); do
    local alive=0
    while read -r _ pid; do kill -0 "$pid" 2>/dev/null && alive=1; done <"$dir/pids"
    ((alive)) || break
    sleep 0.1
  done
  while read -r _ pid; do kill -KILL "$pid" 2>/dev/null || true; done <"$dir/pids"
  rm -f "$dir/pids"
}

daemon_pid() {
  local dir=$1 which=$2
  awk -v w="$which" '$1 == w {print $2}' "$dir/pids"
}

[[ $# -ge 2 ]] || usage
case $1 in
  start) start "$2" ;;
  stop) stop "$2" ;;
  env) echo "export CEPH_CONF=$(cd "$2" && pwd)/ceph.conf BOOSTVOL_CEPH_CONF=$(cd "$2" && pwd)/ceph.conf" ;;
  pid) daemon_pid "$2" "${3:?osd or mon}" ;;
  *) usage ;;
esac
