#!/usr/bin/env bash
# examples: each examples/*.sh works as its comment says. scratch-volume.sh (up, use, down), the home copy it leaves is a
# clean ext4 image, and its all-in-one demo mode leaves nothing behind; vm-images-laptop.sh and nfs-backed.sh demos
# (the latter with a local dir for SLOW) run through and leave a correct home copy.
# shellcheck source=SCRIPTDIR/../lib/e2e_lib.sh
source "$(dirname "$0")/../lib/e2e_lib.sh"

need_root
need_fuse
need_loop
need_cmd mkfs.ext4 fsck.ext4 blkid
e2e_init
EX=$BOOSTVOL_SRC/examples/scratch-volume.sh
export BOOSTVOL=$BOOSTVOL_BIN
E2E_FASTS+=("$E2E_DIR/fast")
E2E_BV_MOUNTS+=("$E2E_DIR/fast.mnt")
E2E_FS_MOUNTS+=("$E2E_DIR/scratch")

section "scratch-volume.sh up / use / down"
check "up: create, mount, loop, mkfs, mount"
expect_rc 0 timeout 300 "$EX" up "$E2E_DIR/fast" "$E2E_DIR/slow" "$E2E_DIR/scratch" 1G
assert_eq "filesystem type" "$(mount_fstype "$E2E_DIR/scratch")" ext4
check "use: write a 32 MiB artifact, sync, verify"
expect_rc 0 timeout 300 "$EX" use "$E2E_DIR/scratch"
expect_msg "artifact.bin: OK"
check "down: unmount, drain, stop"
expect_rc 0 timeout 900 "$EX" down "$E2E_DIR/fast" "$E2E_DIR/scratch"
assert_no_leftovers
check "the home copy it leaves is a clean ext4 (fsck.ext4 -fn) holding the artifact"
loop_attach L "$E2E_DIR/slow/image" -r
timeout 300 fsck.ext4 -fn "$L" || fail "fsck of the home copy"
fs_mount "$L" "$E2E_DIR/home" -o ro,noload
(cd "$E2E_DIR/home/job" && sha256sum -c artifact.sha256) || fail "artifact differs on the home copy"
fs_umount "$E2E_DIR/home"
loop_detach "$L"

section "scratch-volume.sh demo"
check "demo: up, use, down in a temp dir, nothing left"
expect_rc 0 env TMPDIR="$E2E_DIR" timeout 900 "$EX" demo
[[ -z $(find "$E2E_DIR" -maxdepth 1 -name 'scratch-volume.*') ]] || fail "demo left its temp dir"
assert_no_leftovers

section "vm-images-laptop.sh demo"
check "demo: a cached ext4 for VM images (mount --loop, laptop tunables), a synced VM disk, drain, down"
expect_rc 0 env TMPDIR="$E2E_DIR" timeout 900 "$BOOSTVOL_SRC/examples/vm-images-laptop.sh" demo
expect_msg "demo-vm.raw: OK"
expect_msg "dirty"
[[ -z $(find "$E2E_DIR" -maxdepth 1 -name 'vm-images.*') ]] || fail "demo left its temp dir"
assert_no_leftovers

section "nfs-backed.sh demo (a local dir stands in for the NFS export)"
mkdir -p "$E2E_DIR/nfs-standin"
check "demo with SLOW given: up (notes it is not NFS), use, drain, down; the home copy holds the file system"
expect_rc 0 env TMPDIR="$E2E_DIR" timeout 900 "$BOOSTVOL_SRC/examples/nfs-backed.sh" demo "$E2E_DIR/nfs-standin"
expect_msg "not NFS"
expect_msg "records.bin: OK"
assert_no_leftovers
loop_attach L2 "$E2E_DIR/nfs-standin/image" -r
timeout 300 fsck.ext4 -fn "$L2" || fail "fsck of the NFS stand-in's home copy"
fs_mount "$L2" "$E2E_DIR/nfs-home" -o ro,noload
(cd "$E2E_DIR/nfs-home" && sha256sum -c records.sha256) || fail "records.bin differs on the home copy"
fs_umount "$E2E_DIR/nfs-home"
loop_detach "$L2"
