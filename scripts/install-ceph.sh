#!/usr/bin/env bash
# Installs what the RBD home needs (Debian 12 / Ubuntu): the client libraries and headers to build it
# (librbd-dev, librados-dev), the `rbd`/`ceph` tools, and ceph-mon + ceph-osd for the single-node test
# cluster of tests/lib/ceph_cluster.sh. Idempotent; root, or sudo otherwise. Measured on a 2-core Debian 12
# machine: 49 s (49 packages, 50 MB of archives). scripts/install-deps.sh installs the same list.
#   scripts/install-ceph.sh           install what is missing
#   scripts/install-ceph.sh --check   exit 0 if everything is installed, 1 otherwise
set -euo pipefail

PACKAGES=(librbd-dev librados-dev ceph-common ceph-mon ceph-osd uuid-runtime iproute2)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$'; then
    missing+=("$p")
  fi
done
if [[ ${1:-} == --check ]]; then
  ((${#missing[@]} == 0)) || { echo "missing packages: ${missing[*]}" >&2; exit 1; }
  exit 0
fi
if ((${#missing[@]} == 0)); then
  echo "install-ceph: all ${#PACKAGES[@]} packages already installed"
  exit 0
fi
SUDO=()
if [[ $EUID -ne 0 ]]; then
  command -v sudo >/dev/null || { echo "install-ceph: run as root or install sudo" >&2; exit 1; }
  SUDO=(sudo)
fi
echo "install-ceph: installing ${missing[*]}"
"${SUDO[@]}" apt-get update -q
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
  -o DPkg::Lock::Timeout=600 "${missing[@]}" </dev/null
# The packages' postinst may start system daemons on systemd machines; the tests run their own cluster.
echo "install-ceph: done"
