#!/usr/bin/env bash
# bench/memory-ab.sh: daemon memory per cached block, boostvol builds side by side (bench/run.sh part 3, by hand).
#
#   sudo bench/memory-ab.sh [--rounds N] BIN [BIN...]
#
# Per round and per BIN: two volumes (4 GiB image; caches of 512 MiB and 2 GiB; migration held off with
# idle_migrate_ms=86400000 migrate_start_fraction=1), each filled to 90% of its log with distinct 4 KiB blocks (fio
# libaio randwrite QD16 over a direct-I/O loop device: fio's random map writes each block once). Prints the
# daemon's VmRSS at mount and full, the huge pages in it (AnonHugePages, smaps_rollup), and the RSS difference of
# the two full daemons over the difference of their cached blocks: what a block of cache costs, the fixed part
# cancelled out. The log writer's record buffers are advised MADV_HUGEPAGE and count in RSS 2 MiB at a time as a
# fill first touches them: one such page more or less in either daemon moves the figure by about 6 bytes per block
# (docs/tuning.md "Daemon memory per cached block"); the huge-page column shows it, and the figure "without the
# record buffers" takes out what the daemon reports of them in RAM (status log_buffer_resident_bytes).
# Needs root (loop devices), fio. Everything is removed on exit.
set -uo pipefail
ROUNDS=2
BINS=()
while (($#)); do
  case $1 in
    --rounds) ROUNDS=$2; shift ;;
    -h | --help) sed -n '2,15p' "$0"; exit 0 ;;
    -*) echo "unknown option: $1" >&2; exit 1 ;;
    *) BINS+=("$1") ;;
  esac
  shift
done
((${#BINS[@]} > 0)) || { echo "usage: $0 [--rounds N] BIN [BIN...]" >&2; exit 1; }
# shellcheck source=lib/ab.sh
source "$(dirname "$0")/lib/ab.sh"

json_field() { python3 -c 'import json,sys; print(json.load(sys.stdin).get(sys.argv[1], 0))' "$1"; }
kib() { awk -v k="$2" '$1 == k":" {print $2}' "$1"; }

# fill CACHE: prints "rss_mount_kib rss_full_kib cached_blocks anon_huge_kib record_buffers_kib"
fill() {
  local d=$W/vol pid rss0 tot dirty rss1 huge st pool
  ab_create "$d" --size 4G --cache-size "$1" || return 1
  "$BIN" set "$d/fast" idle_migrate_ms=86400000 migrate_start_fraction=1 >/dev/null || return 1
  ab_mount "$d" || return 1
  pid=$(sed -n 's/^pid \([0-9]*\).*/\1/p' "$d/fast/lock")
  rss0=$(kib "/proc/$pid/status" VmRSS)
  tot=$("$BIN" status "$MNT" --json | json_field log_total_blocks)
  fio --name=memfill --filename="$LOOP" --direct=1 --ioengine=libaio --rw=randwrite --bs=4k --iodepth=16 \
    --size=$((tot * 9 / 10 * 4))k --output-format=terse >/dev/null 2>&1 || return 1
  ab_detach
  st=$("$BIN" status "$MNT" --json)
  dirty=$(json_field dirty_blocks <<<"$st")
  pool=$(($(json_field log_buffer_resident_bytes <<<"$st") / 1024))
  rss1=$(kib "/proc/$pid/status" VmRSS)
  huge=$(kib "/proc/$pid/smaps_rollup" AnonHugePages)
  ab_unmount "$d"
  echo "$rss0 $rss1 $dirty $huge $pool"
}

echo "transparent huge pages: $(cat /sys/kernel/mm/transparent_hugepage/enabled 2>/dev/null || echo unknown)"
for r in $(seq "$ROUNDS"); do
  for BIN in "${BINS[@]}"; do
    read -r s0 s1 sd sh sp <<<"$(fill 512M)" || exit 1
    read -r b0 b1 bd bh bp <<<"$(fill 2G)" || exit 1
    [[ -n ${s1:-} && -n ${b1:-} ]] || { echo "round $r $BIN: a fill failed" >&2; exit 1; }
    per=$(awk -v a="$s1" -v b="$b1" -v x="$sd" -v y="$bd" 'BEGIN { printf "%.1f", (b - a) * 1024 / (y - x) }')
    net=$(awk -v a="$((s1 - sp))" -v b="$((b1 - bp))" -v x="$sd" -v y="$bd" 'BEGIN { printf "%.1f", (b - a) * 1024 / (y - x) }')
    echo "round $r $BIN: 512M: RSS $s0 -> $s1 KiB ($sd blocks, huge $sh KiB, record buffers $sp KiB); 2G: RSS" \
      "$b0 -> $b1 KiB ($bd blocks, huge $bh KiB, record buffers $bp KiB); per cached block: $per B, without the" \
      "record buffers: $net B (builds before log_buffer_resident_bytes report 0 KiB of them)"
  done
done
