#!/usr/bin/env bash
# bench/slowdisk-dd.sh: `dd` of a file larger than the cache on the emulated slow disk of bench/run.sh (the same disk,
# bench/lib/slowdisk.sh), the disk alone and boostvol (one or more binaries) side by side, alternating, N rounds:
#
#   sudo [BV_SET="key=value ..."] bench/slowdisk-dd.sh [--cache MiB] [--dd MiB] [--runs N] [--image SIZE] BIN [BIN...]
#
# Every round: the disk alone (dd onto a new file of its ext4, then removed), then each binary (dd onto a
# --direct-io=on loop device over MOUNT/image, then `boostvol drain` so the next round starts with an empty cache).
# The dd is bench/run.sh's dd_stream: MiB of incompressible data, bs=1M oflag=direct conv=fsync.
# Per dd: MB/s and the requests that reached the slow disk (its loop device's write requests, MiB written, flushes);
# for boostvol also during the drain after it, and what the migrator did meanwhile (status --json every 0.5 s:
# dirty MiB over time, batches, MiB home). Ends with the median of the rounds (the lower middle one for an even N)
# and the spread (min..max) per system, and each binary's ratio to the disk alone of the same round.
set -uo pipefail
CACHE_MB=512 DD_MB=768 RUNS=3 IMAGE_SIZE=4G
while (($#)); do
  case $1 in
    --cache) CACHE_MB=$2; shift ;;
    --dd) DD_MB=$2; shift ;;
    --runs) RUNS=$2; shift ;;
    --image) IMAGE_SIZE=$2; shift ;;
    -h | --help) sed -n '2,14p' "$0"; exit 0 ;;
    *) break ;;
  esac
  shift
done
(($# > 0)) || { echo "usage: $0 [--cache MiB] [--dd MiB] [--runs N] BIN [BIN...]" >&2; exit 1; }
. "$(dirname "$0")/lib/slowdisk.sh"
slowdisk_up || { echo "slow disk setup failed" >&2; exit 1; }
SDSTAT=/sys/block/$(basename "$SD")/stat
# write requests, MiB written, flush requests of the slow disk since the last call (fields 5, 7, 16)
sd_mark() { read -r -a SD0 <"$SDSTAT"; }
sd_delta() {
  local s; read -r -a s <"$SDSTAT"
  echo "wreq $((s[4] - SD0[4])) wMiB $(((s[6] - SD0[6]) / 2048)) flush $((${s[15]:-0} - ${SD0[15]:-0})) rreq $((s[0] - SD0[0]))"
}
head -c $((64 << 20)) /dev/urandom >"$WORK/chunk"
dd_stream() {  # MB TARGET -> "MB/s seconds" (as bench/run.sh)
  local mb=$1 target=$2 n i t0 t1
  n=$(((mb + 63) / 64))
  t0=$(now)
  { for ((i = 0; i < n; i++)); do cat "$WORK/chunk"; done; } |
    timeout 3600 dd of="$target" bs=1M count="$mb" iflag=fullblock oflag=direct conv=fsync,notrunc status=none || return 1
  t1=$(now)
  awk -v a="$t0" -v b="$t1" -v mb="$mb" 'BEGIN { printf "%.1f %.2f", mb * 1048576 / 1e6 / (b - a), b - a }'
}

# one volume per binary, mounted for the whole run
declare -a F M D P
n=0
for BIN in "$@"; do
  n=$((n + 1))
  F[n]=$WORK/fast$n M[n]=$WORK/mnt$n
  mkdir -p "${F[n]}" "$WORK/slowfs/bv$n" "${M[n]}"
  "$BIN" create "${F[n]}" "$WORK/slowfs/bv$n" --size "$IMAGE_SIZE" --cache-size "${CACHE_MB}M" >>"$WORK/cli.log" 2>&1 ||
    { echo "create failed: $(tail -3 "$WORK/cli.log")" >&2; exit 1; }
  FUSEMOUNTS+=("${M[n]}")
  timeout 900 "$BIN" mount "${F[n]}" "${M[n]}" >>"$WORK/cli.log" 2>&1 || { echo "mount failed: $(tail -3 "$WORK/cli.log")" >&2; exit 1; }
  P[n]=$(awk '/pid/ {print $2}' "${F[n]}/lock"); PIDS+=("${P[n]}")
  [[ -n ${BV_SET:-} ]] && { "$BIN" set "${M[n]}" $BV_SET >>"$WORK/cli.log" 2>&1 || echo "boostvol set $BV_SET failed" >&2; }
  D[n]=$(losetup --direct-io=on -f --show "${M[n]}/image") || exit 1
  LOOPS+=("${D[n]}")
done
echo -e "# slowdisk-dd: dd ${DD_MB} MiB bs=1M oflag=direct conv=fsync, cache ${CACHE_MB} MiB, image $IMAGE_SIZE, $RUNS rounds, load $(cut -d' ' -f1-3 /proc/loadavg)${BV_SET:+, BV_SET=$BV_SET}"
for ((r = 1; r <= RUNS; r++)); do
  sd_mark
  out=$(dd_stream "$DD_MB" "$WORK/slowfs/alone.img") || out="FAIL -"
  echo -e "$r\talone\tdd_MBps\t${out% *}\t${out#* } s\t$(sd_delta)"
  echo "${out% *}" >>"$WORK/res.alone"; alone=${out% *}
  rm -f "$WORK/slowfs/alone.img"; sync -f "$WORK/slowfs"
  n=0
  for BIN in "$@"; do
    n=$((n + 1)); tag="$n:$(basename "$(dirname "$BIN")")"
    ( while :; do printf '%s\t%s\n' "$(now)" "$("$BIN" status "${M[n]}" --json 2>/dev/null | tr -d '\n')"; sleep 0.5; done ) >"$WORK/st.tsv" &
    sampler=$!
    t0=$(now); sd_mark
    out=$(dd_stream "$DD_MB" "${D[n]}") || out="FAIL -"
    t1=$(now); ratio=$(awk -v a="$alone" -v b="${out% *}" 'BEGIN { printf "%.2f", (a > 0 ? b / a : 0) }')
    echo -e "$r\t$tag\tdd_MBps\t${out% *}\t${out#* } s\t$(sd_delta)\t${ratio}x alone"
    echo "${out% *}" >>"$WORK/res.$n"; echo "$ratio" >>"$WORK/ratio.$n"
    sd_mark
    timeout 1800 "$BIN" drain "${M[n]}" >>"$WORK/cli.log" 2>&1 || echo "drain failed: $(tail -2 "$WORK/cli.log")" >&2
    t2=$(now); echo -e "$r\t$tag\tdrain_after\t$(dt "$t1" "$t2") s\t$(sd_delta)"
    kill "$sampler" 2>/dev/null; wait "$sampler" 2>/dev/null
    printf '%s\t%s\n' "$(now)" "$("$BIN" status "${M[n]}" --json 2>/dev/null | tr -d '\n')" >>"$WORK/st.tsv"
    python3 - "$WORK/st.tsv" "$t0" "$t1" "$r" "$tag" <<'PY'
import json, sys
st, t0, t1, r, tag = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), sys.argv[4], sys.argv[5]
rows = []
for line in open(st):
    ts, _, js = line.partition("\t")
    try: rows.append((float(ts) - t0, json.loads(js)))
    except Exception: pass
if not rows: sys.exit(0)
def at(t):  # the last sample at or before t (seconds after the dd began)
    best = rows[0][1]
    for ts, j in rows:
        if ts <= t: best = j
    return best
a, b, z = rows[0][1], at(t1 - t0), rows[-1][1]
mib = lambda x: round(x / 1048576)
g = lambda j, k: j.get(k, 0) or 0
print(f"{r}\t{tag}\tmigrator_during_dd\tbatches {g(b,'migration_batches')-g(a,'migration_batches')} "
      f"home_MiB {mib(g(b,'migrated_bytes')-g(a,'migrated_bytes'))} dirty_MiB_at_end {mib(g(b,'dirty_blocks')*4096)}")
print(f"{r}\t{tag}\tmigrator_in_drain\tbatches {g(z,'migration_batches')-g(b,'migration_batches')} "
      f"home_MiB {mib(g(z,'migrated_bytes')-g(b,'migrated_bytes'))}")
print(f"{r}\t{tag}\tdirty_MiB_every_0.5s\t" + " ".join(str(mib(g(j,'dirty_blocks')*4096)) for ts, j in rows))
PY
  done
done
summary() {
  sort -n "$1" | awk -v name="$2" '{ v[NR] = $1 } END { printf "median\t%s\tdd_MBps\t%s\tmin %s max %s (n=%d)\n", name, v[int((NR + 1) / 2)], v[1], v[NR], NR }'
}
summary "$WORK/res.alone" alone
n=0
for BIN in "$@"; do
  n=$((n + 1)); summary "$WORK/res.$n" "$n:$(basename "$(dirname "$BIN")")"
  summary "$WORK/ratio.$n" "$n:$(basename "$(dirname "$BIN")")" | sed 's/dd_MBps/ratio_to_alone_same_round/'
done
n=0
for BIN in "$@"; do n=$((n + 1)); losetup -d "${D[n]}"; timeout 300 "$BIN" unmount "${M[n]}" >>"$WORK/cli.log" 2>&1; done
