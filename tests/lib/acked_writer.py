#!/usr/bin/env python3
"""acked_writer: writes numbered 64 KiB records to a block device with O_DIRECT and fsyncs every N records,
appending the highest record covered by each SUCCESSFUL fsync to an ack file (itself fsync'ed, on another
filesystem). `verify` then checks that every record up to the last acknowledged one reads back intact.
Used by tests/e2e/fault_fast_dir.sh to prove "nothing acknowledged by fsync is lost".

  acked_writer.py write DEV ACKFILE [--start-seq S] [--max N] [--every K] [--stop-file F]
  acked_writer.py verify DEV ACKFILE

A record: seq (8 bytes) + sha256 of the rest (32) + payload derived from seq; record `seq` lives at offset
seq * 64 KiB. Each write's result (ok / errno) is counted; the summary goes to stdout as one JSON line.
"""
import errno
import hashlib
import json
import mmap
import os
import sys
import time

REC = 64 * 1024


def record(seq):
    payload = hashlib.sha256(b"rec%d" % seq).digest() * ((REC - 40) // 32 + 1)
    payload = payload[: REC - 40]
    return seq.to_bytes(8, "little") + hashlib.sha256(payload).digest() + payload


def write(dev, ackfile, start=1, maxrec=2000, every=8, stop=None):
    fd = os.open(dev, os.O_RDWR | os.O_DIRECT)
    buf = mmap.mmap(-1, REC)
    ack = open(ackfile, "a")
    res = {"written": 0, "write_errors": {}, "fsyncs_ok": 0, "fsync_errors": {}, "last_acked": 0, "first_error_seq": None}
    seq = start
    last = start + maxrec
    while seq < last:
        if stop and os.path.exists(stop):
            break
        buf.seek(0)
        buf.write(record(seq))
        try:
            os.pwrite(fd, buf, seq * REC)
            res["written"] += 1
        except OSError as e:
            res["write_errors"][errno.errorcode.get(e.errno, str(e.errno))] = res["write_errors"].get(errno.errorcode.get(e.errno, str(e.errno)), 0) + 1
            if res["first_error_seq"] is None:
                res["first_error_seq"] = seq
            time.sleep(0.2)
            continue  # retry the same record
        if seq % every == 0:
            try:
                os.fsync(fd)
                res["fsyncs_ok"] += 1
                res["last_acked"] = seq
                ack.write("%d %.3f\n" % (seq, time.time()))
                ack.flush()
                os.fsync(ack.fileno())
            except OSError as e:
                n = errno.errorcode.get(e.errno, str(e.errno))
                res["fsync_errors"][n] = res["fsync_errors"].get(n, 0) + 1
                if res["first_error_seq"] is None:
                    res["first_error_seq"] = seq
        seq += 1
    print(json.dumps(res), flush=True)
    return 0 if not res["write_errors"] and not res["fsync_errors"] else 3


def verify(dev, ackfile):
    acked = 0
    with open(ackfile) as f:
        for line in f:
            if line.strip():
                acked = max(acked, int(line.split()[0]))
    first = None
    with open(ackfile) as f:
        for line in f:
            if line.strip():
                first = int(line.split()[0])
                break
    fd = os.open(dev, os.O_RDONLY)
    bad = []
    lo = 1
    for seq in range(lo, acked + 1):
        got = os.pread(fd, REC, seq * REC)
        if got != record(seq):
            bad.append(seq)
    print(json.dumps({"acked": acked, "checked": acked, "bad": len(bad), "bad_first": bad[:10]}), flush=True)
    return 0 if not bad else 1


def main():
    a = sys.argv[1:]
    if len(a) >= 3 and a[0] == "write":
        opts = dict(start=1, maxrec=2000, every=8, stop=None)
        i = 3
        while i < len(a):
            k, v = a[i], a[i + 1]
            i += 2
            if k == "--start-seq":
                opts["start"] = int(v)
            elif k == "--max":
                opts["maxrec"] = int(v)
            elif k == "--every":
                opts["every"] = int(v)
            elif k == "--stop-file":
                opts["stop"] = v
        return write(a[1], a[2], opts["start"], opts["maxrec"], opts["every"], opts["stop"])
    if len(a) == 3 and a[0] == "verify":
        return verify(a[1], a[2])
    print(__doc__, file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
