#!/usr/bin/env python3
"""Reads the home's redo journal (docs/home_format.md section 3) without boostvol, for tests/e2e/home_alone.sh.

  inspect SLOW
      Prints what SLOW/boostvol-journal is against the stamp SLOW/boostvol-home: "empty", "torn", "stale",
      "live" (valid, base == the stamp's watermark: the batch may be half applied to SLOW/image), or "other ...".
  compare SLOW IMAGE
      For a live journal: how many of its extents IMAGE already holds ("K of N extents in place"): 0 < K < N
      means the batch was half applied when the copy was taken (a mix, unless some extents did not change).
  replay SLOW IMAGE
      If the journal is live and carries data, writes its extents into IMAGE (a copy of SLOW/image) and fsyncs
      it: what boostvol's Open does (rule O3) before anything else. Prints what it did. Zero extents (version 2:
      a TRIM or write-zeroes the batch carries) are written as zeros, before the data extents (table order).
An independent implementation of the documented format: if it and boostvol disagree, one of them is wrong.
"""
import os
import struct
import sys

_T = []
for _i in range(256):
    _c = _i
    for _ in range(8):
        _c = (_c >> 1) ^ 0x82F63B78 if _c & 1 else _c >> 1
    _T.append(_c)


def crc32c(data, crc=0):
    crc ^= 0xFFFFFFFF
    t = _T
    for b in data:
        crc = t[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


assert crc32c(b"123456789") == 0xE3069283


def read_stamp(slow):
    kv = {}
    with open(os.path.join(slow, "boostvol-home")) as f:
        for line in f:
            if "=" in line:
                k, v = line.rstrip("\n").split("=", 1)
                kv[k] = v
    return int(kv["watermark_segment"]), int(kv["watermark_record"])


def examine(slow):
    """Returns (kind, detail, extents [(offset, bytes)]); a zero extent comes back as its zero bytes."""
    path = os.path.join(slow, "boostvol-journal")
    with open(path, "rb") as f:
        j = f.read()
    if not j:
        return "empty", "", []
    if len(j) < 4096:
        return "torn", f"{len(j)} bytes, shorter than a header", []
    hdr = j[:4096]
    if hdr == bytes(4096):
        return "empty", "an all-zero header (emptied, its blocks kept)", []
    magic, version, flags = struct.unpack_from("<IHH", hdr, 0)
    (hcrc,) = struct.unpack_from("<I", hdr, 4092)
    if magic != 0x4A485642 or crc32c(hdr[:4092]) != hcrc:
        return "torn", "bad magic or header crc", []
    base_seg, base_rec, end_seg, end_rec, image_size, count, total, body_crc = struct.unpack_from("<QQQQQQQI", hdr, 24)
    if version not in (1, 2) or flags & ~1:
        return "other", f"unsupported version {version} flags {flags}", []
    intent_only = bool(flags & 1)
    table_bytes = (16 * count + 4095) // 4096 * 4096
    need = 4096 + table_bytes + (0 if intent_only else total)
    if len(j) < need:
        return "torn", f"{len(j)} bytes, the header says {need}", []
    table = j[4096:4096 + 16 * count]
    body = table + (b"" if intent_only else j[4096 + table_bytes:4096 + table_bytes + total])
    if crc32c(body) != body_crc:
        return "torn", "body crc mismatch", []
    s_seg, s_rec = read_stamp(slow)
    where = f"base ({base_seg},{base_rec}) end ({end_seg},{end_rec}) stamp ({s_seg},{s_rec}), {count} extents, {total} bytes"
    if end_seg <= s_seg and end_rec <= s_rec:
        return "stale", where, []
    if (base_seg, base_rec) != (s_seg, s_rec):
        return "other", "journal does not follow the stamp: " + where, []
    if intent_only:
        return "other", "intent marker without data (no home journal): " + where, []
    extents = []
    pos = 4096 + table_bytes
    for i in range(count):
        off, length, eflags = struct.unpack_from("<QII", table, 16 * i)
        if eflags == 1 and version == 2:
            extents.append((off, bytes(length)))  # a zero extent: no bytes in the data area
            continue
        extents.append((off, j[pos:pos + length]))
        pos += length
    return "live", where, extents


def main():
    if len(sys.argv) < 3 or sys.argv[1] not in ("inspect", "replay", "compare"):
        print(__doc__, file=sys.stderr)
        return 2
    kind, detail, extents = examine(sys.argv[2])
    if sys.argv[1] == "inspect":
        print(kind, detail)
        return 0
    if kind != "live":
        print(f"nothing to {sys.argv[1]}: journal {kind} {detail}")
        return 0
    if sys.argv[1] == "compare":
        k = 0
        with open(sys.argv[3], "rb") as f:
            for off, data in extents:
                f.seek(off)
                k += f.read(len(data)) == data
        print(f"{k} of {len(extents)} extents in place")
        return 0
    fd = os.open(sys.argv[3], os.O_WRONLY)
    try:
        for off, data in extents:
            os.pwrite(fd, data, off)
        os.fsync(fd)
    finally:
        os.close(fd)
    print(f"replayed {len(extents)} extents ({sum(len(d) for _o, d in extents)} bytes): {detail}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
