# shellcheck shell=bash
# bench/lib/ab.sh: sourced by bench/fsync-ab.sh and bench/memory-ab.sh. Checks root and fio, makes the work dir
# $W, and keeps the one volume such a script has up at a time ($BIN mounted at $MNT, $LOOP on its image), so the
# exit trap can take it down.
[[ $EUID -eq 0 ]] || { echo "needs root (loop devices, mounts): sudo $0" >&2; exit 1; }
command -v fio >/dev/null || { echo "needs fio (bench/install-deps.sh)" >&2; exit 1; }
W=$(mktemp -d "/var/tmp/boostvol-$(basename "$0" .sh).XXXXXX")
LOOP='' MNT='' BIN=''
ab_cleanup() {
  [[ -n $LOOP ]] && losetup -d "$LOOP" 2>/dev/null
  [[ -n $MNT ]] && { "$BIN" unmount "$MNT" >/dev/null 2>&1 || umount -l "$MNT" 2>/dev/null; }
  rm -rf "$W"
}
trap ab_cleanup EXIT

# ab_create DIR CREATE_ARGS...: a fresh volume of $BIN in DIR/fast and DIR/slow (DIR/mnt made for ab_mount).
ab_create() {
  local d=$1; shift
  rm -rf "$d"; mkdir -p "$d/fast" "$d/slow" "$d/mnt"
  "$BIN" create "$d/fast" "$d/slow" "$@" >/dev/null || { echo "$BIN create failed" >&2; return 1; }
}
# ab_mount DIR: mounts DIR/fast at DIR/mnt and attaches a --direct-io=on loop device ($LOOP) to the image.
ab_mount() {
  MNT=$1/mnt
  "$BIN" mount "$1/fast" "$MNT" >/dev/null || { echo "$BIN mount failed" >&2; return 1; }
  LOOP=$(losetup -f --show --direct-io=on "$MNT/image") || return 1
}
ab_detach() { losetup -d "$LOOP"; LOOP=''; }
# ab_unmount DIR: detaches the loop device if still attached, unmounts, removes DIR.
ab_unmount() {
  [[ -n $LOOP ]] && ab_detach
  "$BIN" unmount "$MNT" >/dev/null 2>&1 || umount -l "$MNT"; MNT=''
  rm -rf "$1"
}
