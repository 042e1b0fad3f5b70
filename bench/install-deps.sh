#!/usr/bin/env bash
# Installs what bench/run.sh needs, from Debian 12's packages (run as root):
#   fio, qemu-storage-daemon (in qemu-system-common), s3backer, nbdkit (+ its filters), nbdfuse (in libnbd-bin),
#   fuse3, matplotlib for the plots (Debian's python3-matplotlib, used through /usr/bin/python3), and the
#   tools the slow-disk and filesystem jobs use (e2fsprogs, util-linux, coreutils, procps, tar, linux headers
#   are not needed: the untar job uses /usr/include from libc6-dev).
# The boostvol build dependencies are scripts/install-deps.sh's job.
set -euo pipefail
[[ $EUID -eq 0 ]] || { echo "needs root: sudo $0" >&2; exit 1; }
export DEBIAN_FRONTEND=noninteractive
apt-get -o DPkg::Lock::Timeout=600 update -qq
apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends \
  fio qemu-system-common s3backer nbdkit libnbd-bin fuse3 python3 python3-matplotlib \
  e2fsprogs util-linux coreutils procps tar libc6-dev jq >/dev/null
command -v qemu-storage-daemon >/dev/null || { echo "qemu-storage-daemon missing after install" >&2; exit 1; }
for c in fio s3backer nbdkit nbdfuse fusermount3 mkfs.ext4; do
  command -v "$c" >/dev/null || { echo "$c missing after install" >&2; exit 1; }
done
/usr/bin/python3 -c 'import matplotlib' || { echo "python3-matplotlib not importable by /usr/bin/python3" >&2; exit 1; }
echo "bench dependencies installed: $(fio --version), $(qemu-storage-daemon --version | head -n1), $(s3backer --version 2>&1 | head -n1), $(nbdkit --version), $(nbdfuse --version 2>&1 | head -n1)"
