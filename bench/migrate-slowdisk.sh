#!/usr/bin/env bash
# bench/migrate-slowdisk.sh: the cache-full regime of boostvol on the emulated slow disk of bench/run.sh (nbdkit
# file + noparallel + delay 4 ms + rate 1200 Mbit/s, behind nbdfuse, a loop device and ext4), for one or more
# boostvol binaries side by side (each on a fresh volume, same disk, same run):
#
#   sudo [BV_SET="key=value ..."] bench/migrate-slowdisk.sh [--cache MiB] [--sust S] [--image SIZE] BIN [BIN...]
#
# (BV_SET: tunables applied with `boostvol set` after every mount.)
# Per binary: sustained 4k random writes QD16 over the whole image for S seconds (the cache fills: median IOPS per
# second once it is full, seconds with no write completed), daemon RSS growth per dirty block, kill -9 and the mount
# after it (recovery), clean stop with the cache full and the mount after it, drain of the backlog (MB/s).
# Prints one tab-separated line per binary and measure. Cleans up everything it created (trap).
set -uo pipefail
CACHE_MB=512 SUST=60 IMAGE_SIZE=4G
while (($#)); do
  case $1 in
    --cache) CACHE_MB=$2; shift ;;
    --sust) SUST=$2; shift ;;
    --image) IMAGE_SIZE=$2; shift ;;
    -h | --help) sed -n '2,12p' "$0"; exit 0 ;;
    *) break ;;
  esac
  shift
done
(($# > 0)) || { echo "usage: $0 [--cache MiB] [--sust S] BIN [BIN...]" >&2; exit 1; }
. "$(dirname "$0")/lib/slowdisk.sh"
slowdisk_up || { echo "slow disk setup failed" >&2; exit 1; }

n=0
for BIN in "$@"; do
  n=$((n + 1)); tag="$n:$(basename "$(dirname "$BIN")")"
  f=$WORK/fast$n s=$WORK/slowfs/bv$n m=$WORK/mnt$n
  mkdir -p "$f" "$s" "$m"
  "$BIN" create "$f" "$s" --size "$IMAGE_SIZE" --cache-size "${CACHE_MB}M" >>"$WORK/cli.log" 2>&1 || { echo "create failed" >&2; exit 1; }
  mount_bv() { FUSEMOUNTS+=("$m"); timeout 900 "$BIN" mount "$f" "$m" >>"$WORK/cli.log" 2>&1 && P=$(awk '/pid/ {print $2}' "$f/lock") && PIDS+=("$P"); }
  mount_bv || { echo "mount failed: $(tail -3 "$WORK/cli.log")" >&2; exit 1; }
  [[ -n ${BV_SET:-} ]] && { "$BIN" set "$m" $BV_SET >>"$WORK/cli.log" 2>&1 || echo "boostvol set $BV_SET failed" >&2; }
  rss0=$(rss_kb "$P")
  dev=$(losetup --direct-io=on -f --show "$m/image"); LOOPS+=("$dev")
  ( while :; do printf '%s\t%s\n' "$(now)" "$("$BIN" status "$m" --json 2>/dev/null | tr -d '\n')"; sleep 1; done ) >"$WORK/st$n.tsv" &
  sampler=$!
  # RSS peak over the run (sampled every 0.2 s)
  ( mx=0; while alive "$P"; do r=$(rss_kb "$P"); ((r > mx)) && { mx=$r; echo "$mx" >"$WORK/rssmax$n"; }; sleep 0.2; done ) &
  rsspoll=$!
  t0=$(now)
  fio --name=sust --filename="$dev" --direct=1 --ioengine=libaio --rw=randwrite --bs=4k --iodepth=16 --size="$IMAGE_SIZE" \
    --time_based --runtime="$SUST" --write_iops_log="$WORK/sust$n" --log_avg_msec=1000 --output-format=json >"$WORK/sust$n.json" 2>/dev/null
  kill "$sampler" "$rsspoll" 2>/dev/null; wait "$sampler" "$rsspoll" 2>/dev/null
  st=$("$BIN" status "$m" --json); dirty=$(jget dirty_blocks <<<"$st"); rss1=$(rss_kb "$P"); rssmax=$(cat "$WORK/rssmax$n" 2>/dev/null || echo 0)
  # when did the log first reach 95 % full? IOPS per second after that
  python3 - "$WORK/st$n.tsv" "$WORK/sust${n}_iops.1.log" "$t0" "$tag" "$SUST" <<'EOF'
import json, sys, statistics
st, iops, t0, tag = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4]
full = None
for line in open(st):
    ts, _, js = line.partition("\t")
    try: j = json.loads(js)
    except Exception: continue
    if j.get("log_used_blocks", 0) >= 0.95 * j.get("log_total_blocks", 1) and full is None: full = float(ts) - t0
per = {}
for line in open(iops):
    p = [x.strip() for x in line.split(",")]
    per[int(p[0]) // 1000] = per.get(int(p[0]) // 1000, 0) + int(p[1])
# fio logs nothing for a second in which no write completed: those are zeros
secs = list(range(0, int(sys.argv[5])))
per = {s: per.get(s, 0) for s in secs}
after = [per[s] for s in secs if full is not None and s >= full]
print(f"{tag}\tfull_at_s\t{full}")
print(f"{tag}\tiops_full_median\t{statistics.median(after) if after else 'n/a'}")
print(f"{tag}\tstall_seconds\t{sum(1 for v in after if v == 0)} of {len(after)}")
print(f"{tag}\tiops_timeline\t{' '.join(str(per[s]) for s in secs)}")
EOF
  echo -e "$tag\tiops_avg\t$(python3 -c 'import json,sys; t=open(sys.argv[1]).read(); print(round(json.loads(t[t.index("{"):])["jobs"][0]["write"]["iops"]))' "$WORK/sust$n.json")"
  echo -e "$tag\tdirty_blocks\t$dirty\tlog $(jget log_used_blocks <<<"$st")/$(jget log_total_blocks <<<"$st")"
  echo -e "$tag\trss_kb\tmount $rss0 end $rss1 peak $rssmax"
  echo -e "$tag\trss_per_dirty_block_B\tend $(((rss1 - rss0) * 1024 / dirty)) peak $(((rssmax - rss0) * 1024 / dirty)) (absolute peak $((rssmax * 1024 / dirty)))"
  losetup -d "$dev"
  t0=$(now); kill -KILL "$P"
  # gone = reaped, every thread out (a zombie leader may still have threads in D state holding FAST/lock)
  for ((i = 0; i < 3000; i++)); do [[ -e /proc/$P ]] || break; sleep 0.1; done
  echo -e "$tag\tkill9_until_daemon_gone_s\t$(dt "$t0" "$(now)")"
  findmnt -n "$m" >/dev/null 2>&1 && { fusermount3 -uz "$m" || umount -l "$m"; }
  t0=$(now); mount_bv || { echo "mount after kill -9 failed: $(tail -n 3 "$WORK/cli.log"; tail -n 3 "$WORK/nbdfuse.log")" >&2; exit 1; }; t1=$(now)
  echo -e "$tag\tmount_after_kill9_s\t$(dt "$t0" "$t1")\tdirty $("$BIN" status "$m" --json | jget dirty_blocks)"
  t0=$(now); timeout 900 "$BIN" unmount "$m" >>"$WORK/cli.log" 2>&1; wait_gone "$P" 120; t1=$(now)
  echo -e "$tag\tclean_stop_s\t$(dt "$t0" "$t1")"
  t0=$(now); mount_bv || exit 1; t1=$(now)
  [[ -n ${BV_SET:-} ]] && "$BIN" set "$m" $BV_SET >>"$WORK/cli.log" 2>&1
  echo -e "$tag\tmount_after_clean_stop_s\t$(dt "$t0" "$t1")"
  dirty=$("$BIN" status "$m" --json | jget dirty_blocks)
  t0=$(now); timeout 1800 "$BIN" drain "$m" >>"$WORK/cli.log" 2>&1; t1=$(now)
  echo -e "$tag\tdrain\t$dirty blocks in $(dt "$t0" "$t1") s = $(awk -v a="$t0" -v b="$t1" -v d="$dirty" 'BEGIN { printf "%.2f", d * 4096 / 1e6 / (b - a) }') MB/s"
  timeout 900 "$BIN" unmount "$m" >>"$WORK/cli.log" 2>&1; wait_gone "$P" 120
  rm -rf "$s" "$f"
done
