#!/usr/bin/python3
"""bench/report.py RESULTS.tsv MACHINE.tsv WORKDIR OUTDIR: the tables (OUTDIR/results.md) and plots (OUTDIR/*.png)
of bench/run.sh. RESULTS.tsv lines: run, system, loop mode (on/off/-), key, value (a number, ok, or FAIL)."""
import re
import json
import os
import statistics
import sys
from collections import defaultdict

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

res_path, machine_path, work, outdir = sys.argv[1:5]
SYSTEMS = ["raw", "qsd", "s3backer", "nbdkit", "boostvol"]
PEERS = ["qsd", "s3backer", "nbdkit"]
LABEL = {"raw": "plain file (no FUSE)", "qsd": "qemu-storage-daemon FUSE", "s3backer": "s3backer --test",
         "nbdkit": "nbdkit cache + nbdfuse", "boostvol": "boostvol",
         "bvwbc": "boostvol `-o writeback_cache`"}
JOBS = [("seqwrite", "1M sequential write QD16, 1 GiB (the region once: every cache holds it), MB/s"),
        ("seqlong", "1M sequential write QD16, for the whole run (boostvol: 3-4× its log; the migrator sets the pace), MB/s"), ("randwrite", "4k random write QD16, IOPS"),
        ("randread", "4k random read QD16 (written data), IOPS"), ("randrw", "4k 70/30 random read/write QD16, IOPS"),
        ("fsyncwrite", "4k write + fsync each QD1, IOPS")]

vals = defaultdict(list)  # (system, mode, key) -> [values]
for line in open(res_path):
    parts = line.rstrip("\n").split("\t")
    if len(parts) != 5:
        continue
    run, sysname, mode, key, value = parts
    vals[(sysname, mode, key)].append(value)
# boostvol mounted with -o writeback_cache: measured with a buffered loop (--direct-io=off) only.
HAS_WBC = any(k[0] == "bvwbc" and k[1] == "off" for k in vals)
machine = dict(line.rstrip("\n").split("\t", 1) for line in open(machine_path) if "\t" in line)
runs = int(machine.get("params", "runs=1").split()[0].split("=")[1])


def num(x):
    try:
        return float(x)
    except (TypeError, ValueError):
        return None


def stat(sysname, mode, key):
    """(median or None, display text, failed?)"""
    v = vals.get((sysname, mode, key))
    if not v:
        return None, "-", False
    if any(x == "FAIL" for x in v):
        return None, "FAIL", True
    if all(x == "ok" for x in v):
        return None, "ok", False
    ns = [num(x) for x in v if num(x) is not None]
    if not ns:
        return None, "/".join(v), False
    m = statistics.median(ns)
    txt = fmt(m)
    if len(ns) > 1:
        txt += f" ({fmt(min(ns))}–{fmt(max(ns))})"
    return m, txt, False


def fmt(x):
    if x is None:
        return "-"
    if abs(x) >= 10000:
        return f"{x / 1000:.1f}k"
    if abs(x) >= 100:
        return f"{x:.0f}"
    if abs(x) >= 10:
        return f"{x:.1f}"
    return f"{x:.2f}"


def ratio(a, b):
    return f"{a / b:.2f}×" if a is not None and b else "-"


def verify_failed(sysname, mode):
    v = vals.get((sysname, mode, "verify"), [])
    return any(x != "ok" for x in v)


out = []
w = out.append
w("# boostvol beside the alternatives (bench/run.sh)\n")
_runs = re.search(r"runs=(\d+)", machine.get('params', ''))
_quick = 'quick=1' in machine.get('params', '')
_cmd = 'bench/run.sh' + (' --quick' if _quick else '') + (f" --runs {_runs.group(1)}" if _runs and _quick and _runs.group(1) != '1' else '')
w(f"Measured {machine.get('date', '?')} by `{_cmd}`; "
  f"every figure below comes from that one run of the script.\n")
w(f"- machine: {machine.get('cpu', '?')}; kernel {machine.get('kernel', '?')}; disk: {machine.get('disk', '?')}")
w(f"- load average at start {machine.get('load_start', '?')}, at end {machine.get('load_end', '?')} "
  f"(the benchmark's own fio, loop and FUSE work is part of it; other work on the machine at the same time would skew the figures); "
  f"elapsed {machine.get('elapsed', '?')}")
w(f"- software: {machine.get('versions', '?')}")
w(f"- boostvol: {machine.get('boostvol', '?')}")
w(f"- parameters: {machine.get('params', '?')}")
w(f"- fio: libaio, direct=1, on a loop device over each system's 4 GiB image, 1 GiB region, time based (but the first 1M sequential write, which writes the region once); "
  f"FAST and SLOW are plain directories on the same disk in part 1. "
  + ("Cells: median of the runs (min–max)." if runs > 1 else "One run per figure (--quick): no spread."))
w("")

# ---- table 1: fio, per loop mode ----
best_notes = []
for mode in ("on", "off"):
    w(f"## fio, loop `--direct-io={mode}`, slow dir = local dir\n")
    wbc = mode == "off" and HAS_WBC
    cols = SYSTEMS + (["bvwbc"] if wbc else [])
    extra_h = " boostvol `-o writeback_cache` / plain file | … / best peer |" if wbc else ""
    extra_e = " | |" if wbc else ""
    dio = []
    for s in cols:
        d = vals.get((s, mode, "dio"), [])
        dio.append("/".join(sorted(set(d))) if d else "-")
    w("| job | " + " | ".join(LABEL[s] for s in cols) + " | boostvol / plain file | boostvol / best peer |" + extra_h)
    w("|---|" + "---|" * (len(cols) + 2 + (2 if wbc else 0)))
    w("| loop dio actually on (1/0) | " + " | ".join(dio) + " | | |" + extra_e)
    for job, name in JOBS:
        cells, med = [], {}
        for s in cols:
            m, txt, failed = stat(s, mode, job)
            med[s] = m
            if verify_failed(s, mode) and txt not in ("-", "FAIL"):
                txt = f"**FAILED verify** ({txt})"
            if job == "fsyncwrite" and s == "s3backer" and txt != "-":
                txt += " † no-op fsync"
            cells.append(txt)
        eligible = [p for p in PEERS if med[p] is not None and not verify_failed(p, mode)
                    and not (job == "fsyncwrite" and p == "s3backer")]
        best = max(eligible, key=lambda p: med[p]) if eligible else None
        bv = None if verify_failed("boostvol", mode) else med["boostvol"]
        row = (f"| {name} | " + " | ".join(cells) + f" | {ratio(bv, med['raw'])} | "
               + (f"{ratio(bv, med[best])} (vs {best})" if best else "-") + " |")
        if wbc:
            bw = None if verify_failed("bvwbc", mode) else med["bvwbc"]
            row += f" {ratio(bw, med['raw'])} | " + (f"{ratio(bw, med[best])} (vs {best})" if best else "-") + " |"
        w(row)
    cells = []
    for s in cols:
        v = vals.get((s, mode, "verify"), [])
        cells.append("-" if not v else ("ok" if all(x == "ok" for x in v) else f"**FAILED** ({v.count('ok')}/{len(v)} ok)"))
    w("| crc32c verify (4k/64k/1M random writes QD16, read back) | " + " | ".join(cells) + " | | |" + extra_e)
    for key, name in (("cpu_seqwrite", "daemon CPU s per GB, 1M seq write"), ("cpu_randwrite", "daemon CPU s per GB, 4k randwrite")):
        cells, med = [], {}
        for s in cols:
            m, txt, _ = stat(s, mode, key)
            med[s] = m
            cells.append(txt if s != "raw" else "(kernel only)")
        w(f"| {name} | " + " | ".join(cells) + " | | |" + extra_e)
    if wbc:
        w("")
        w("`boostvol -o writeback_cache` is the same volume mounted with FUSE's writeback cache, the mount option "
          "docs/tuning.md describes for a buffered loop device: the loop's writes land in the image's page cache and "
          "reach the daemon in large asynchronous batches, and reads after writes keep their cached pages. fsync "
          "still writes every dirty page back and syncs the log. Its price (why it is not the default): unsynced "
          "writes wait in the kernel's page cache rather than in the log, and a buffered reader racing an O_DIRECT "
          "writer of the image could see old data (`boostvol mount --loop` refuses it with a direct-I/O loop).")
    w("")

# ---- table 2: filesystem, restart ----
w("## ext4, restart, memory (loop `--direct-io=on`, slow dir = local dir)\n")
w("| measure | " + " | ".join(LABEL[s] for s in SYSTEMS) + " | boostvol / plain file | boostvol / best peer |")
w("|---|" + "---|" * (len(SYSTEMS) + 2))
untar_n = machine.get("params", "").split("untar_n=")[-1].split()[0] if "untar_n=" in machine.get("params", "") else "?"
rows2 = [("untar", f"ext4: untar /usr/include ×{untar_n} + syncfs, s (lower is better)", False),
         ("coldread", "cold 4k random read QD16 after a restart, IOPS", True),
         ("stop_s", "clean stop (unmount, incl. write-back), s", False),
         ("mount_clean_s", "mount after that clean stop, s", False),
         ("mount_fresh", "first mount of a fresh image, s", False)]
for key, name, higher in rows2:
    cells, med = [], {}
    for s in SYSTEMS:
        m, txt, _ = stat(s, "-", key)
        med[s] = m
        if key == "untar":
            v = vals.get((s, "-", "untar_verify"), [])
            if v and any(x != "ok" for x in v):
                txt = f"**FAILED verify** ({txt})"
        cells.append(txt)
    eligible = [p for p in PEERS if med[p] is not None]
    if key == "untar":
        eligible = [p for p in eligible if all(x == "ok" for x in vals.get((p, "-", "untar_verify"), ["ok"]))]
    best = (max if higher else min)(eligible, key=lambda p: med[p]) if eligible else None
    bv = med["boostvol"]
    if key in ("untar", "coldread"):
        rr = ratio(bv, med["raw"]) if higher else ratio(med["raw"], bv) + " (speed)" if bv and med["raw"] else "-"
        rb = (ratio(bv, med[best]) if higher else (ratio(med[best], bv) + " (speed)" if bv else "-")) if best else "-"
        w(f"| {name} | " + " | ".join(cells) + f" | {rr} | {rb}{f' (vs {best})' if best else ''} |")
    else:
        w(f"| {name} | " + " | ".join(cells) + " | | |")
m, txt, _ = stat("boostvol", "-", "rss_per_block_local")
d, dtxt, _ = stat("boostvol", "-", "dirty_blocks_local")
w(f"| boostvol daemon RSS growth per dirty 4 KiB block after the 4k randwrite job (dirty blocks) | | | | | {txt} B ({dtxt}) | | |")
w("")
w("Notes: **s3backer's fsync is a no-op** (its write+fsync figure is not durability; it is left out of the best-peer "
  "ratio for that job, and it lost fsync'd data on kill -9 in the peers' runs). **nbdkit's cache is a deleted temp "
  "file in TMPDIR=FAST**: every restart starts cold and unsynced writes are gone after kill -9; its clean stop here "
  "is an fsync (which writes the cache back) then unmount. qemu-storage-daemon has no cache (cache.direct=on). "
  "A system whose crc32c verify failed in a loop mode is marked FAILED in that mode and is never the best peer. "
  "Daemon CPU is utime+stime of the daemon processes (/proc/PID/stat) per GB that fio wrote; the kernel's loop "
  "and FUSE work is not in it. Cold reads: the files in FAST and SLOW are evicted from the page cache "
  "(posix_fadvise DONTNEED after sync) between the stop and the restart. **boostvol's log is drained home before "
  "each fio job** (not timed; bench/run.sh `settle`): the jobs run back to back and 5 s of 1M writes overfill its "
  "2 GiB log, so without it each job would measure the migrator emptying a full cache; that case is measured "
  "with the slow disk below (\"once the cache is full\"); nbdkit's cache file grows without bound.\n")

# ---- table 3: slow disk ----
def one(sysname, key):
    m, txt, _ = stat(sysname, "-", key)
    return m, txt


sust_rows = []
cliff = None
marginal_rss = None
iops_log = [os.path.join(work, f) for f in sorted(os.listdir(work)) if f.startswith("sust_iops") and f.endswith(".log")]
if iops_log:
    t_start = float(open(os.path.join(work, "sust-start")).read()) if os.path.exists(os.path.join(work, "sust-start")) else None
    pts = []
    for line in open(iops_log[0]):
        p = [x.strip() for x in line.split(",")]
        if len(p) >= 2:
            pts.append((int(p[0]) / 1000.0, float(p[1])))
    status = []
    sp = os.path.join(work, "sust-status.tsv")
    if os.path.exists(sp):
        for line in open(sp):
            ts, _, js = line.rstrip("\n").partition("\t")
            try:
                st = json.loads(js)
            except ValueError:
                continue
            status.append((float(ts) - (t_start or float(ts)), st))
    # marginal daemon memory per dirty block: RSS difference between two fill levels (about 1/4 and 3/4 of the dirty
    # blocks reached before the cache filled) over the difference in dirty blocks; the fixed part (record buffers,
    # the block index allocated at mount) cancels out
    rp = os.path.join(work, "sust-rss.tsv")
    if os.path.exists(rp) and os.path.exists(sp):
        rss_at = dict(l.rstrip("\n").split("\t", 1) for l in open(rp) if "\t" in l)
        samples = []
        for line in open(sp):
            ts, _, js = line.rstrip("\n").partition("\t")
            try:
                st, r = json.loads(js), int(rss_at.get(ts, "0"))
            except ValueError:
                continue
            tot = st.get("log_total_blocks") or 0
            if r > 0 and st.get("dirty_blocks") is not None and tot and st.get("log_used_blocks", 0) < 0.9 * tot:
                samples.append((st["dirty_blocks"], r))
        if len(samples) >= 2:
            top = max(d for d, _ in samples)
            lo = min(samples, key=lambda x: abs(x[0] - top / 4))
            hi = min(samples, key=lambda x: abs(x[0] - 3 * top / 4))
            if hi[0] - lo[0] > 1000:
                marginal_rss = (lo, hi, (hi[1] - lo[1]) * 1024 / (hi[0] - lo[0]))
    full_t = None
    for t, st in status:
        tot = st.get("log_total_blocks") or 0
        if tot and st.get("log_used_blocks", 0) >= 0.9 * tot:
            full_t = t
            break
    # fio logs nothing for a second with no completed write: those seconds are 0 IOPS (a stall), up to the end
    # of the run as the status sampler saw it
    end_t = max([t for t, _ in status] + [t for t, _ in pts] + [0])
    have_s = {int(round(t)) for t, _ in pts}
    pts = sorted(pts + [(float(s_), 0.0) for s_ in range(1, int(end_t)) if s_ not in have_s])
    stall = sum(1 for _, v in pts if v == 0)
    before = [v for t, v in pts if 2 <= t < (full_t if full_t is not None else 1e9)]
    after = [v for t, v in pts if full_t is not None and t >= full_t + 5]
    cliff = (statistics.median(before) if before else None, statistics.median(after) if after else None, full_t, stall)
    # plot
    fig, ax = plt.subplots(figsize=(10, 5))
    ax.plot([t for t, _ in pts], [v for _, v in pts], lw=1, label="boostvol 4k randwrite IOPS (per second)", color="C0")
    sd, _ = one("slowdisk", "randwrite")
    if sd:
        ax.axhline(sd, color="C3", ls="--", lw=1, label=f"slow disk alone, 4k randwrite IOPS ({sd:.0f})")
    ax.set_xlabel("seconds")
    ax.set_ylabel("IOPS")
    ax.set_yscale("symlog", linthresh=100)
    ax.set_ylim(bottom=0)
    ax2 = ax.twinx()
    if status:
        ax2.plot([t for t, _ in status], [100.0 * st.get("log_used_blocks", 0) / max(1, st.get("log_total_blocks", 1)) for _, st in status],
                 color="C2", lw=1.5, label="cache (log) used, %")
        mig = []
        for (t0, s0), (t1, s1) in zip(status, status[1:]):
            if t1 > t0:
                mig.append((t1, (s1.get("migrated_bytes", 0) - s0.get("migrated_bytes", 0)) / 1e6 / (t1 - t0)))
        ax2.plot([t for t, _ in mig], [v for _, v in mig], color="C1", lw=1, alpha=0.7, label="migrated to SLOW, MB/s")
    ax2.set_ylabel("% / MB/s")
    if full_t is not None:
        ax.axvline(full_t, color="gray", ls=":", lw=1)
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    ax.legend(h1 + h2, l1 + l2, loc="lower left", fontsize=8)
    ax.set_title(f"boostvol on the emulated slow disk: sustained 4k random writes QD16, cache {machine.get('params', '').split('slow_cache=')[-1].split()[0]}")
    fig.tight_layout()
    fig.savefig(os.path.join(outdir, "sustained.png"), dpi=110)
    plt.close(fig)

w("## Emulated slow disk (nbdkit file + noparallel + delay 4 ms + rate 1200 Mbit/s, behind nbdfuse, a loop device and ext4)\n")
if vals.get(("slowdisk", "-", "setup")):
    w("The slow disk could not be set up in this run.\n")
w("| measure | slow disk alone | boostvol on it | ratio |")
w("|---|---|---|---|")
sdr, sdr_t = one("slowdisk", "randwrite")
sdf, sdf_t = one("slowdisk", "fsyncwrite")
if cliff:
    b, a, ft, stall = cliff
    w(f"| 4k random write QD16, IOPS, while the cache has room (median per second) | {sdr_t} | {fmt(b)} | {ratio(b, sdr)} |")
    w(f"| … once the cache is full (from {fmt(ft) if ft is not None else '-'} s on; median per second) | {sdr_t} | "
      f"{fmt(a) if ft is not None else 'cache never filled'} | {ratio(a, sdr) if ft is not None else '-'} |")
    w(f"| seconds with no write completed at all (stalls) | | {stall} | |")
avg, avg_t = one("bvslow", "sust_iops_avg")
w(f"| 4k random write QD16, IOPS, average over the sustained run | {sdr_t} | {avg_t} | {ratio(avg, sdr)} |")
w(f"| 4k write + fsync each QD1, IOPS | {sdf_t} | (see part 1: boostvol's fsync stops at FAST) | |")
dm, dm_t = one("bvslow", "drain_MBps")
ds, ds_t = one("bvslow", "drain_s")
db, db_t = one("bvslow", "drain_blocks")
sd_mbps = sdr * 4096 / 1e6 if sdr else None
w(f"| drain of the random-write backlog ({db_t} dirty blocks, {ds_t} s), MB/s, vs the disk's own 4k randwrite rate | "
  f"{fmt(sd_mbps)} | {dm_t} | {ratio(dm, sd_mbps)} |")
ddS, ddS_t = one("slowdisk", "dd_MBps")
ddB, ddB_t = one("bvslow", "dd_MBps")
w(f"| dd (1M, O_DIRECT, conv=fsync) of {machine.get('params', '').split('dd=')[-1].split()[0]}, 1.5× the cache, MB/s | {ddS_t} | {ddB_t} | {ratio(ddB, ddS)} |")
w("")
w("| boostvol on the slow disk | value |")
w("|---|---|")
for key, name in (("dirty_blocks", "dirty blocks when the sustained run ended"), ("log_used", "log blocks used / total then"),
                  ("rss0_kb", "daemon RSS right after mount, KiB"), ("rss1_kb", "daemon RSS with the cache full, KiB"),
                  ("rss_per_block", "daemon memory per dirty 4 KiB block, bytes ((RSS - RSS at mount) / dirty blocks)"),
                  ("cpu_randwrite", "daemon CPU s per GB of 4k random writes"),
                  ("mount_kill9_s", "mount after kill -9 with the cache full (recovery), s"),
                  ("dirty_after_kill9", "dirty blocks after that recovery"),
                  ("stop_s", "clean stop with the cache full, s"),
                  ("mount_clean_s", "mount after that clean stop, s")):
    _, t = one("bvslow", key)
    if t == "-" and vals.get(("bvslow", "-", key)):
        t = vals[("bvslow", "-", key)][0]
    w(f"| {name} | {t} |")
if marginal_rss:
    (d0, r0), (d1, r1), per = marginal_rss
    w(f"| marginal daemon memory per dirty 4 KiB block, bytes ((RSS at {fmt(d1)} dirty - RSS at {fmt(d0)} dirty) / "
      f"{fmt(d1 - d0)} blocks; RSS {fmt(r0)} -> {fmt(r1)} KiB) | {per:.0f} |")
w("")
w("The figure from RSS right after mount includes a fixed part that does not grow with the dirty blocks: the log "
  "writer's record buffers (64 of 1 MiB, touched as a stream uses them) and the block index allocated at mount (about 15 B per log block), "
  "touched as the writes come in; the marginal figure (RSS between two fill levels) leaves them out.\n")
if cliff:
    w("![sustained random writes](sustained.png)\n")

# ---- table 4: memory per cached block ----
mem_per_block, mem_sizes = None, None
mem = {t: {k: vals.get(("bvmem", "-", f"{t}_{k}"), [None])[0]
           for k in ("cache", "dirty", "rss_mount_kb", "rss_full_kb", "pool_kb")}
       for t in ("small", "big")}
if all(mem[t]["dirty"] is not None and mem[t]["rss_full_kb"] is not None for t in mem):
    d0, d1 = float(mem["small"]["dirty"]), float(mem["big"]["dirty"])
    p0, p1 = (float(mem[t]["pool_kb"] or 0) for t in ("small", "big"))
    r0, r1 = float(mem["small"]["rss_full_kb"]) - p0, float(mem["big"]["rss_full_kb"]) - p1
    raw_per_block = None
    if d1 > d0:
        mem_per_block, mem_sizes = (r1 - r0) * 1024 / (d1 - d0), (d0, d1)
        raw_per_block = (r1 + p1 - r0 - p0) * 1024 / (d1 - d0)
    w("## Daemon memory per cached block\n")
    w("Two boostvol volumes, migration held off, each filled to 90% of its log with distinct 4 KiB blocks (fio random "
      "writes, each block once). The difference of their RSS over the difference of their cached blocks is what a "
      "block of cache costs (the block index, sized at mount for the log, included); the fixed part cancels out. "
      "The log writer's record buffers are a fixed part too (64 MiB at most), but they come into RAM as a fill first "
      "uses them, 2 MiB at a time, more in one fill than in another: the daemon reports them "
      "(`log_buffer_resident_bytes`) and they are taken out of RSS before the difference.\n")
    w("| cache | cached blocks | RSS at mount, KiB | RSS full, KiB | record buffers in it, KiB | RSS full without them / cached blocks, B |")
    w("|---|---|---|---|---|---|")
    for t, p_ in (("small", p0), ("big", p1)):
        m_ = mem[t]
        w(f"| {m_['cache']} | {m_['dirty']} | {m_['rss_mount_kb']} | {m_['rss_full_kb']} | {m_['pool_kb'] or '-'} | "
          f"{(float(m_['rss_full_kb']) - p_) * 1024 / max(1.0, float(m_['dirty'])):.0f} |")
    if mem_per_block is not None:
        w(f"| difference | {fmt(d1 - d0)} | | {fmt(r1 + p1 - r0 - p0)} | {fmt(p1 - p0)} | **{mem_per_block:.1f}** |")
        w(f"\nWith the record buffers left in: {raw_per_block:.1f} B per block.")
    w("")

# ---- the targets of issue 5, checked against this run (loop --direct-io=on) ----
def med(sysname, mode, key):
    return stat(sysname, mode, key)[0]


def best_peer(mode, key, exclude=()):
    c = [(med(p, mode, key), p) for p in PEERS if p not in exclude and med(p, mode, key) is not None
         and not verify_failed(p, mode)]
    return max(c) if c else (None, None)


def verdict(ok):
    return "-" if ok is None else ("met" if ok else "**not met**")


tg = []
bvok = not verify_failed("boostvol", "on")
for sysname, mode in [("boostvol", "on"), ("boostvol", "off")] + ([("bvwbc", "off")] if HAS_WBC else []):
    bw, rw_, rr, sq, fs = (med(sysname, mode, k) for k in ("randwrite", "randwrite", "randread", "seqwrite", "fsyncwrite"))
    if not bvok and mode == "on" or verify_failed(sysname, mode):
        bw = rr = sq = fs = None
    if sysname == "bvwbc":
        mode_label = mode + ", -o writeback_cache"
    else:
        mode_label = mode
    raw = {k: med("raw", mode, k) for k in ("randwrite", "randread", "seqwrite", "fsyncwrite")}
    bp, bpn = best_peer(mode, "randwrite")
    sp, spn = best_peer(mode, "seqwrite")
    fp, _ = best_peer(mode, "fsyncwrite", exclude=("s3backer",))
    tg.append((f"4k randwrite ≥0.7× plain file (dio={mode_label})", f"{fmt(bw)} vs {fmt(raw['randwrite'])}: {ratio(bw, raw['randwrite'])}",
               verdict(None if bw is None or not raw["randwrite"] else bw >= 0.7 * raw["randwrite"])))
    tg.append((f"4k randwrite ≥1.5× best FUSE peer (dio={mode_label})", f"{fmt(bw)} vs {fmt(bp)} ({bpn}): {ratio(bw, bp)}",
               verdict(None if bw is None or not bp else bw >= 1.5 * bp)))
    tg.append((f"4k randread of cached data ≥0.75× plain file (dio={mode_label})", f"{fmt(rr)} vs {fmt(raw['randread'])}: {ratio(rr, raw['randread'])}",
               verdict(None if rr is None or not raw["randread"] else rr >= 0.75 * raw["randread"])))
    tg.append((f"1M seq write ≥1.5 GB/s and ahead of every FUSE peer (dio={mode_label})", f"{fmt(sq)} MB/s vs best peer {fmt(sp)} ({spn})",
               verdict(None if sq is None else sq >= 1500 and (sp is None or sq > sp))))
    tg.append((f"4k write+fsync QD1 ≥0.8× plain file (dio={mode_label})", f"{fmt(fs)} vs {fmt(raw['fsyncwrite'])}: {ratio(fs, raw['fsyncwrite'])}",
               verdict(None if fs is None or not raw["fsyncwrite"] else fs >= 0.8 * raw["fsyncwrite"])))
if cliff:
    b = cliff[0]
    tg.append(("slow disk: 4k randwrite ≥30× the disk alone while the cache has room", f"{fmt(b)} vs {fmt(sdr)}: {ratio(b, sdr)}",
               verdict(None if b is None or not sdr else b >= 30 * sdr)))
tg.append(("slow disk: drain ≥5× the disk's own 4k randwrite rate", f"{fmt(dm)} MB/s vs {fmt(sd_mbps)} MB/s: {ratio(dm, sd_mbps)}",
           verdict(None if dm is None or not sd_mbps else dm >= 5 * sd_mbps)))
tg.append(("slow disk: dd larger than the cache never slower than the disk alone", f"{fmt(ddB)} vs {fmt(ddS)} MB/s",
           verdict(None if ddB is None or ddS is None else ddB >= ddS)))
rpb = med("bvslow", "-", "rss_per_block")
if mem_per_block is not None:
    tg.append(("≤24 bytes of daemon memory per cached 4 KiB block",
               f"{mem_per_block:.1f} B (two full caches, {fmt(mem_sizes[0])} and {fmt(mem_sizes[1])} cached blocks, "
               "RSS difference / block difference, the record buffers (a fixed cost) taken out)",
               verdict(mem_per_block <= 24)))
elif marginal_rss:
    tg.append(("≤24 bytes of daemon memory per cached 4 KiB block",
               f"marginal {marginal_rss[2]:.0f} B (RSS between two fill levels); {fmt(rpb)} B counting from RSS right after mount",
               verdict(marginal_rss[2] <= 24)))
else:
    tg.append(("≤24 bytes of daemon memory per cached 4 KiB block", f"{fmt(rpb)} B (from RSS right after mount)",
               verdict(None if rpb is None else rpb <= 24)))
mc = [x for x in (med("boostvol", "-", "mount_clean_s"), med("bvslow", "-", "mount_clean_s")) if x is not None]
tg.append(("mount after a clean stop <1 s", " / ".join(f"{fmt(x)} s" for x in mc) + " (local dir / slow disk, full cache)",
           verdict(None if not mc else max(mc) < 1)))
w("## Targets of issue 5, as measured in this run\n")
w("| target | measured | |")
w("|---|---|---|")
for t in tg:
    w(f"| {t[0]} | {t[1]} | {t[2]} |")
w("")

# ---- plots of part 1 ----
have = [s for s in SYSTEMS if any(k[0] == s for k in vals)]
if have:
    fig, axes = plt.subplots(2, len(JOBS), figsize=(4 * len(JOBS), 7.5))
    have_fio = have + (["bvwbc"] if HAS_WBC else [])  # bvwbc: dio=off only (0 in the dio=on row)
    for r, mode in enumerate(("on", "off")):
        for c, (job, name) in enumerate(JOBS):
            ax = axes[r][c]
            ys, cols, labels = [], [], []
            for i, s in enumerate(have_fio):
                m, _, _ = stat(s, mode, job)
                ys.append(m or 0)
                cols.append("C3" if verify_failed(s, mode) else f"C{i}")
                labels.append(s + (" (FAILED)" if verify_failed(s, mode) else ""))
            ax.bar(range(len(have_fio)), ys, color=cols)
            ax.set_xticks(range(len(have_fio)))
            ax.set_xticklabels(labels, rotation=35, ha="right", fontsize=8)
            ax.set_title(f"{name}\nloop dio={mode}", fontsize=9)
            for x, y in zip(range(len(have_fio)), ys):
                ax.text(x, y, fmt(y), ha="center", va="bottom", fontsize=7)
    fig.tight_layout()
    fig.savefig(os.path.join(outdir, "fio.png"), dpi=100)
    plt.close(fig)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, (key, name) in zip(axes, (("untar", f"ext4 untar ×{untar_n} + syncfs, s (lower is better)"),
                                     ("coldread", "cold 4k randread after restart, IOPS"))):
        ys = [stat(s, "-", key)[0] or 0 for s in have]
        ax.bar(range(len(have)), ys, color=[f"C{i}" for i in range(len(have))])
        ax.set_xticks(range(len(have)))
        ax.set_xticklabels(have, rotation=30, ha="right", fontsize=8)
        ax.set_title(name, fontsize=9)
        if key == "untar" and max(ys) > 20 * max(min(y for y in ys if y > 0) if any(ys) else 1, 1e-9):
            ax.set_yscale("symlog", linthresh=100)
        for x, y in zip(range(len(have)), ys):
            ax.text(x, y, fmt(y), ha="center", va="bottom", fontsize=7)
    fig.tight_layout()
    fig.savefig(os.path.join(outdir, "fs-restart.png"), dpi=100)
    plt.close(fig)
    w("![fio, both loop modes](fio.png)\n")
    w("![ext4 untar and cold reads](fs-restart.png)\n")
w("Raw figures: `results.tsv` beside this file (run, system, loop mode, measure, value).")

open(os.path.join(outdir, "results.md"), "w").write("\n".join(out) + "\n")
