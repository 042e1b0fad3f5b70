#!/usr/bin/env bash
# Two engine_bench binaries side by side (docs/tuning.md "Hot path"): runs them alternately, RUNS times each
# (one round of OPS 4k random writes, then as many 4k reads of the blocks written, per run), and prints the
# median per op of each figure for each binary. Build engine_bench with -DBOOSTVOL_BENCH=ON and copy the
# "before" binary away before changing the code.
#   bench/engine-compare.sh BEFORE_BIN AFTER_BIN [RUNS] [OPS] [BLOCKS]   (BLOCKS per request, default 1)
set -euo pipefail
(($# >= 2)) || { sed -n '2,6p' "$0"; exit 2; }
A=$1 B=$2 RUNS=${3:-7} OPS=${4:-200000} BLOCKS=${5:-1}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for ((i = 0; i < RUNS; i++)); do
  for bin in A B; do
    "${!bin}" --ops "$OPS" --blocks "$BLOCKS" --rounds 1 --dir "/dev/shm/boostvol-engine-compare-$$" | grep '^round' >>"$out/$bin"
  done
done
python3 - "$out" "$BLOCKS" <<'PY'
import re, statistics, sys
names = [f"{op} {what}" for op in ("write", "read") for what in
         ("ns wall", "ns thread-cpu", "ns thread-user", "ns process-cpu")]
med = {}
for b in "AB":
    rows = [list(map(float, re.findall(r"(-?\d+) (?:ns wall|thread-cpu|thread-user|process-cpu)", l)))
            for l in open(f"{sys.argv[1]}/{b}")]
    med[b] = [statistics.median(r[k] for r in rows) for k in range(8)]
print(f"{'per op of %d KiB (median of %d runs)' % (4 * int(sys.argv[2]), len(rows)):40s} {'before':>8s} {'after':>8s} {'after/before':>12s}")
for k, n in enumerate(names):
    print(f"{n:40s} {med['A'][k]:8.0f} {med['B'][k]:8.0f} {med['B'][k] / med['A'][k]:12.2f}")
PY
