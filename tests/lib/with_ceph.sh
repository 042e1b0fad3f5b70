#!/usr/bin/env bash
# with_ceph.sh COMMAND [ARGS...]: starts a throwaway single-node Ceph cluster (tests/lib/ceph_cluster.sh),
# runs COMMAND with CEPH_CONF and BOOSTVOL_CEPH_CONF set, stops the cluster, exits with COMMAND's code.
# Without the Ceph packages: exit 77 (skip), except under CI=true, where that is a failure.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
if ! command -v ceph-mon >/dev/null || ! command -v ceph-osd >/dev/null; then
  if [[ ${CI:-} == true ]]; then
    echo "with_ceph: FAIL (CI=true): ceph-mon/ceph-osd missing; scripts/install-ceph.sh installs them" >&2
    exit 1
  fi
  echo "with_ceph: SKIP: ceph-mon/ceph-osd missing (scripts/install-ceph.sh)" >&2
  exit 77
fi
dir=$(mktemp -d "${TMPDIR:-/tmp}/boostvol-ceph.XXXXXX")
# shellcheck disable=SC2317 # called by the trap
cleanup() {
  bash "$here/ceph_cluster.sh" stop "$dir" || true
  rm -rf "$dir"
}
trap cleanup EXIT
eval "$(bash "$here/ceph_cluster.sh" start "$dir")"
export CEPH_CONF BOOSTVOL_CEPH_CONF
rc=0
"$@" || rc=$?
exit "$rc"
