#!/usr/bin/env python3
"""Check a recovered image against the daemon's diagnostic write trace (BOOSTVOL_WRITE_TRACE, docs/testing.md).

  write_trace_check.py TRACE IMAGE [--pid P | --run K] [--blocks A-B]

TRACE holds one section per daemon run (an "S pid" line, then W/K/F lines; format in src/fuse/fuse_server.cc).
The run checked is, by default, the one before the last (the killed daemon; the last is the daemon that recovered
it and serves IMAGE); --run -1 checks the last one, --run 1 the first, --pid P the last run of daemon P.
DESIGN.md 2.2/2.3 say: every write acknowledged before an fsync began that returned success is durable. So for
every byte range a write acknowledged before the last such fsync's start put into a block, IMAGE must read either
that write's bytes or the bytes of a write to the same range not finished before it arrived (acknowledged later,
in flight with it, or in flight at the kill):
  ok      it does;
  STALE   it reads an older version of that range written during the run: a lost or reordered write (a bug);
  WRONG   it reads bytes no write of the run put there (a bug, unless a write of an earlier run is returning);
  skipped a later write overlaps the range only partly (cannot tell which bytes to expect).
--blocks A-B prints, for each image block in A..B, every piece written during the run and what IMAGE reads.
Exit status 1 if anything is STALE or WRONG.
"""
import argparse
import re
import sys
import zlib


def parse_runs(path, pid=None):
    """The runs in TRACE; with pid, only the last run of that daemon (found without parsing the others)."""
    runs, cur = [], None
    with open(path, "rb") as f:
        text = f.read()
    if pid is not None:
        m = list(re.finditer(rb"^S %s\n" % pid.encode(), text, re.M))
        start = m[-1].start() if m else 0
        end = text.find(b"\nS ", start + 1)
        text = text[start:] if end < 0 else text[start:end + 1]
    for i, line in enumerate(text.decode().splitlines(keepends=True)):
        if not line.endswith("\n"):
            break  # a torn last line
        p = line.split()
        if not p:
            continue
        if p[0] == "S":
            cur = {"pid": p[1], "writes": {}, "arrived": {}, "acks": {}, "acked_at_line": {}, "fsyncs": []}
            runs.append(cur)
        elif cur is None:
            continue
        elif p[0] == "W":
            pieces = []
            for piece in p[4].split(",") if len(p) > 4 else []:
                b, first, stop, crc = piece.split(":")
                pieces.append((int(b), int(first), int(stop), int(crc, 16)))
            cur["writes"][int(p[1])] = pieces
            cur["arrived"][int(p[1])] = i
        elif p[0] == "K":
            cur["acks"][int(p[1])] = int(p[2])
            cur["acked_at_line"][int(p[1])] = i
        elif p[0] == "F":
            cur["fsyncs"].append((int(p[1]), int(p[2])))
    return runs


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("trace")
    ap.add_argument("image")
    ap.add_argument("--run", type=int, default=-2)
    ap.add_argument("--pid", default=None)
    ap.add_argument("--blocks", default=None)
    a = ap.parse_args()
    runs = parse_runs(a.trace, a.pid)
    if a.pid is not None:
        runs = [r for r in runs if r["pid"] == a.pid]
        a.run = -1
    if not runs or not (-len(runs) <= (a.run - 1 if a.run > 0 else a.run) < len(runs)):
        print(f"write trace: no run {a.run} in {a.trace} ({len(runs)} runs)")
        return 2
    run = runs[a.run - 1 if a.run > 0 else a.run]
    barrier = max((b for b, _e in run["fsyncs"]), default=0)
    # Per block: its pieces, by ack number (the ones in flight at the kill last). Trace lines give the only order
    # the trace can vouch for: write q was applied before write p if q's K line precedes p's W line. Writes that
    # were in flight together (a rare overlap) may have been applied in either order: either version is accepted.
    inf = float("inf")
    by_block = {}
    for wid, pieces in run["writes"].items():
        ack = run["acks"].get(wid, inf)
        w_line, k_line = run["arrived"][wid], run["acked_at_line"].get(wid, inf)
        for b, first, end, crc in pieces:
            by_block.setdefault(b, []).append((ack, wid, first, end, crc, w_line, k_line))
    img = open(a.image, "rb")

    def read_crc(b, first, end):
        img.seek(b * 4096 + first)
        return zlib.crc32(img.read(end - first))

    n = {"ok": 0, "STALE": 0, "WRONG": 0, "skipped": 0}
    problems = []
    for b in sorted(by_block):
        ps = sorted(by_block[b])
        for i, (ack, wid, first, end, crc, w_line, _k) in enumerate(ps):
            if ack > barrier:
                continue  # not covered by an fsync: anything of the run or before it is allowed
            overlapping = [q for j, q in enumerate(ps) if j != i and q[2] < end and first < q[3]]
            later = [q for q in overlapping if not q[6] < w_line]  # not done before p arrived
            before = [q for q in overlapping if q[6] < w_line]
            if any((q[2], q[3]) != (first, end) for q in later):
                n["skipped"] += 1
                continue
            got = read_crc(b, first, end)
            if got == crc or any(got == q[4] for q in later):
                n["ok"] += 1
                continue
            older = [q for q in before if (q[2], q[3]) == (first, end) and q[4] == got]
            kind = "STALE" if older else "WRONG"
            n[kind] += 1
            what = (f"the version of write {older[-1][1]} (ack {older[-1][0]})" if older
                    else "bytes no write of this run put there")
            problems.append(f"{kind}: block {b} bytes [{first},{end}): reads {got:08x}, {what}; expected write "
                            f"{wid} (ack {ack}, crc {crc:08x}) or one of {len(later)} later write(s)")
    acked = len(run["acks"])
    print(f"write trace (daemon pid {run['pid']}): {len(run['writes'])} writes arrived, {acked} acknowledged, "
          f"{len(run['fsyncs'])} fsyncs; last fsync began after ack {barrier}; ranges checked: {n['ok']} ok, "
          f"{n['STALE']} STALE, {n['WRONG']} WRONG, {n['skipped']} skipped (partly overlapped by a later write)")
    for p in problems[:30]:
        print("  " + p)
    if a.blocks:
        lo, hi = (int(x) for x in a.blocks.split("-"))
        for b in range(lo, hi + 1):
            for ack, wid, first, end, crc, _w, _k in sorted(by_block.get(b, [])):
                state = "in flight" if ack == inf else f"ack {ack}{' (fsynced)' if ack <= barrier else ''}"
                print(f"  block {b} [{first},{end}): write {wid} {state} crc {crc:08x}; image reads "
                      f"{read_crc(b, first, end):08x}")
    return 1 if n["STALE"] or n["WRONG"] else 0


if __name__ == "__main__":
    sys.exit(main())
