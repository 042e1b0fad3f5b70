# bench/lib/slowdisk.sh: sourced by bench/migrate-slowdisk.sh and bench/slowdisk-dd.sh. The work dir, the cleanup
# trap, small helpers, and the emulated slow disk of bench/run.sh (nbdkit file + noparallel + delay 4 ms + rate
# 1200 Mbit/s, behind nbdfuse, a --direct-io=on loop device and ext4), mounted at $WORK/slowfs; $SD is its loop
# device (its /sys/block/<dev>/stat counts the requests that reach the slow disk).
[[ $EUID -eq 0 ]] || { echo "needs root" >&2; exit 1; }
WORK=$(mktemp -d /var/tmp/bv-slowdisk.XXXXXX)
LOOPS=() FSMOUNTS=() FUSEMOUNTS=() PIDS=()
alive() { [[ -e /proc/$1 ]] && [[ $(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) != Z ]]; }
wait_gone() { local i; for ((i = 0; i < $2 * 10; i++)); do alive "$1" || return 0; sleep 0.1; done; return 1; }
cleanup() {
  set +e
  local x
  for x in "${FSMOUNTS[@]}"; do timeout 60 umount "$x" 2>/dev/null || umount -l "$x"; done
  for x in "${FUSEMOUNTS[@]}"; do mountpoint -q "$x" 2>/dev/null && { fusermount3 -u "$x" 2>/dev/null || umount -l "$x"; }; done
  for x in "${LOOPS[@]}"; do losetup -d "$x" 2>/dev/null; done
  for x in "${PIDS[@]}"; do alive "$x" && kill -TERM "$x"; wait_gone "$x" 30 || kill -KILL "$x"; done
  for x in "${FUSEMOUNTS[@]}"; do findmnt -n "$x" >/dev/null 2>&1 && umount -l "$x"; done
  rm -rf --one-file-system "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
now() { date +%s.%N; }
dt() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }
rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
jget() { python3 -c 'import json,sys; print(json.loads(sys.stdin.read() or "{}").get(sys.argv[1], ""))' "$1"; }

# the slow disk (as bench/run.sh slowdisk_up)
slowdisk_up() {
  local d=$WORK/slowdisk sock=$WORK/slowdisk.sock i
  mkdir -p "$d/mnt" "$WORK/slowfs"
  truncate -s 16G "$d/disk.img"
  nbdkit -f --unix "$sock" --filter=noparallel --filter=delay --filter=rate file file="$d/disk.img" \
    delay-read=4ms delay-write=4ms rate=1200M >>"$WORK/nbdkit.log" 2>&1 &
  PIDS+=($!)
  for ((i = 0; i < 300; i++)); do [[ -S $sock ]] && break; sleep 0.1; done
  nbdfuse "$d/mnt/disk" --unix "$sock" >>"$WORK/nbdfuse.log" 2>&1 &
  PIDS+=($!); FUSEMOUNTS+=("$d/mnt")
  for ((i = 0; i < 600; i++)); do [[ -e $d/mnt/disk ]] && break; sleep 0.1; done
  SD=$(losetup --direct-io=on -f --show "$d/mnt/disk") || return 1
  LOOPS+=("$SD")
  mkfs.ext4 -q -F -E nodiscard,lazy_itable_init=1,lazy_journal_init=1 "$SD" || return 1
  mount -o noinit_itable "$SD" "$WORK/slowfs" || return 1
  FSMOUNTS+=("$WORK/slowfs")
}
