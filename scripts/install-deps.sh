#!/usr/bin/env bash
# Installs every package boostvol needs to build, test, benchmark and demo (Debian 12 / Ubuntu).
# Idempotent: installs only what is missing (apt-get update runs only then). Root, or sudo otherwise.
#   scripts/install-deps.sh           install what is missing
#   scripts/install-deps.sh --check   exit 0 if everything is installed, 1 otherwise (installs nothing)
set -euo pipefail

PACKAGES=(
  # build
  build-essential cmake ninja-build pkg-config clang
  # sanitizer and libFuzzer runtimes for clang, llvm-symbolizer for their reports (scripts/sanitize.sh)
  libclang-rt-dev llvm
  libfuse3-dev libsqlite3-dev libspdlog-dev libfmt-dev libcli11-dev libgtest-dev libgmock-dev
  # run
  fuse3 sqlite3
  # tests, demo and benchmarks
  util-linux mount kmod procps e2fsprogs xfsprogs btrfs-progs fio python3 shellcheck
  # the RBD home (docs/rbd-home.md): librbd/librados to build it, a monitor and an OSD for its test cluster
  # (the same list as scripts/install-ceph.sh; ~50 packages, about 50 s to install on a 2-core machine)
  librbd-dev librados-dev ceph-common ceph-mon ceph-osd uuid-runtime iproute2
  # fault tests (tests/e2e/fault_*.sh): a SLOW that can be made to fail (nbdkit error filter; nbdfuse is in libnbd-bin)
  nbdkit libnbd-bin
  # packaging tests (tests/e2e/deb_package.sh): dpkg-shlibdeps, man, completion, systemd-analyze verify
  dpkg-dev man-db bash-completion systemd
)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$'; then
    missing+=("$p")
  fi
done

if [[ ${1:-} == --check ]]; then
  if ((${#missing[@]})); then
    echo "missing packages: ${missing[*]}" >&2
    exit 1
  fi
  exit 0
fi

if ((${#missing[@]} == 0)); then
  echo "install-deps: all ${#PACKAGES[@]} packages already installed"
  exit 0
fi

SUDO=()
if [[ $EUID -ne 0 ]]; then
  command -v sudo >/dev/null || { echo "install-deps: run as root or install sudo" >&2; exit 1; }
  SUDO=(sudo)
fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${SUDO[@]}" apt-get update -q
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" </dev/null
echo "install-deps: done"
