#!/usr/bin/env python3
"""Stamped 4 KiB blocks for crash tests (used by tests/e2e/kill9_fsync.sh).

  write IMAGE HISTORY --start-seq N --blocks B [--seed S] [--max-writes M] [--run R]
      --run R: sequential instead (like dd): each write is R consecutive blocks in one pwrite, starting where
      the last one ended (wrapping at B); every block its own sequence number, ascending with the address.
      Writes stamped blocks with O_DIRECT at random block addresses in [0, B), sequence numbers N, N+1, ...
      Before each write, appends "W seq addr" to HISTORY; after every 1-8 writes (sometimes 32-256; in one run of
      three, seed-chosen, after every write) calls fsync on the image and,
      when it succeeds, appends "F seq" (the last write completed before that fsync began) to HISTORY and
      fsyncs HISTORY. Stops at the first error (the daemon was killed) or after M writes; exit 0 either way,
      printing what happened.

  verify IMAGE HISTORY STATE --blocks B [--zero-check N|all]
      STATE holds the verified contents of the image before this cycle ("addr seq" lines; absent = zeros),
      HISTORY this cycle's writes. Reads every block in [0, B) with O_DIRECT (1 MiB at a time) and checks:
        - each block is all zeros or a well-formed stamp (magic, address, crc32 over the block) - no mix,
          no garbage;
        - its sequence is one that was really written to that address (in STATE or HISTORY);
        - every write acknowledged by a successful fsync (seq <= last F) is there, or a newer version;
        - the blocks form a PREFIX of the write sequence: with C = the highest sequence read, every address
          reads exactly the newest version written to it with seq <= C.
      The N blocks after [0, B) (default 64; "all": the rest of the image) must read as zeros.
      A block that holds the same (address, seq) as in STATE was compared byte for byte when it was new; it is
      checked by its header and crc32 only (a mix or a torn block fails the crc), which keeps a cycle cheap.
      On success rewrites STATE to what was read and prints a summary; exit 1 with the reasons otherwise.
      IMAGE may be a regular file or a block device (a loop device over the image).

  write ... --buffered / verify ... --no-prefix
      Through the page cache instead of O_DIRECT (a mount with -o writeback_cache: the kernel sends unsynced
      writes to the daemon later, in its own order), and the verify without the prefix rule: everything else
      (fsync'ed writes present, no mix, no foreign version) still holds.

  verify ... --effective EFF
      As verify; on success also appends this cycle's writes that survived (seq <= the prefix cut) to EFF, as
      "W seq addr" lines: EFF is then the log as the volume knows it, across all cycles.

  verify-home IMAGE EFF --blocks B
      The home copy alone (DESIGN.md 2.7): IMAGE must read as the result of a prefix of EFF, any prefix (stale
      is fine). Each block all zeros or a whole stamp of a write in EFF to that address, and with C = the
      highest sequence read, every address reads the newest write in EFF with seq <= C (zeros if none).
      Exit 1 with the reasons otherwise.

Block layout (little endian): magic b"BVSTAMP1" | addr u64 | seq u64 | payload (derived from addr, seq) |
crc32 u32 of everything before it, in the last 4 bytes.

STAMP_BS=512 (environment; 512, 1024, 2048 or 4096, default 4096) makes the stamped unit smaller than boostvol's
4 KiB block: every write is then a sub-block write that boostvol merges with the block's current contents, the
kind of write a filesystem's log issues (XFS: 512-byte log sectors). Addresses and --blocks count in that unit.
"""
import argparse
import mmap
import os
import random
import struct
import sys
import zlib

BS = int(os.environ.get("STAMP_BS", "4096"))
if BS not in (512, 1024, 2048, 4096):
    sys.exit(f"STAMP_BS={BS}: must be 512, 1024, 2048 or 4096")
MAGIC = b"BVSTAMP1"
HDR = struct.Struct("<8sQQ")


def make_block(addr, seq):
    rnd = random.Random(addr * 1000003 + seq)
    body = HDR.pack(MAGIC, addr, seq) + rnd.randbytes(BS - HDR.size - 4)
    return body + struct.pack("<I", zlib.crc32(body))


ZERO_BLOCK = bytes(BS)


def parse_block(data, addr, known_seq=None):
    """Returns ("zero", None), ("ok", seq) or ("bad", reason). With known_seq (the seq this address held when it
    was last verified in full), a block stamped with that same seq is checked by header and crc only."""
    if data == ZERO_BLOCK:
        return "zero", None
    magic, a, seq = HDR.unpack_from(data)
    if magic != MAGIC:
        return "bad", "no stamp (garbage)"
    (crc,) = struct.unpack_from("<I", data, BS - 4)
    if zlib.crc32(data[: BS - 4]) != crc:
        return "bad", f"checksum mismatch (a mix or torn block), header says addr={a} seq={seq}"
    if a != addr:
        return "bad", f"stamp of address {a} found at address {addr}"
    if known_seq is not None and seq == known_seq:
        return "ok", seq
    if data != make_block(addr, seq):
        return "bad", f"payload differs from what seq {seq} wrote"
    return "ok", seq


def cmd_write(args):
    rng = random.Random(args.seed)
    fd = os.open(args.image, os.O_RDWR | (0 if args.buffered else os.O_DIRECT))
    hist = open(args.history, "a")
    run = args.run
    buf = mmap.mmap(-1, BS * max(run, 1))  # page aligned, as O_DIRECT needs
    pos = rng.randrange(args.blocks) if run else 0
    seq = args.start_seq
    last_done = None
    n = 0
    fsyncs = 0
    why = "max writes reached"
    # One run in three is a committer: one write, one fsync, over and over (the daemon then syncs ahead of the
    # expected fsync, docs/tuning.md "The fsync path"); the others mostly short gaps between fsyncs, sometimes
    # a long unsynced burst (fills and wraps the log).
    committer = rng.random() < 1 / 3
    def interval():
        if committer:
            return 1
        return rng.randint(1, 8) if rng.random() < 0.8 else rng.randint(32, 256)
    next_sync = interval()
    try:
        while n < args.max_writes:
            if run:
                if pos + run > args.blocks:
                    pos = 0
                addr, nblk = pos, run
                pos += run
            else:
                addr, nblk = rng.randrange(args.blocks), 1
            buf.seek(0)
            for i in range(nblk):
                hist.write(f"W {seq + i} {addr + i}\n")
                buf.write(make_block(addr + i, seq + i))
            hist.flush()
            try:
                w = os.pwritev(fd, [buf], addr * BS)
            except OSError as e:
                why = f"write of seq {seq} failed: {e}"
                break
            if w != BS * nblk:
                why = f"short write of seq {seq}: {w}"
                break
            seq += nblk
            last_done = seq - 1
            n += 1
            next_sync -= 1
            if next_sync == 0:
                next_sync = interval()
                try:
                    os.fsync(fd)
                except OSError as e:
                    why = f"fsync after seq {last_done} failed: {e}"
                    break
                hist.write(f"F {last_done}\n")
                hist.flush()
                os.fsync(hist.fileno())
                fsyncs += 1
    finally:
        hist.flush()
        os.fsync(hist.fileno())
        hist.close()
        try:
            os.close(fd)
        except OSError:
            pass
    print(f"writer: {n} writes, {fsyncs} fsyncs, last completed seq {last_done}; stopped: {why}")
    return 0


CHUNK_BLOCKS = 256  # 1 MiB per read


def read_chunks(fd, first, end, problems):
    """Yields (first block, bytes) for the blocks [first, end), read with O_DIRECT 1 MiB at a time."""
    buf = mmap.mmap(-1, CHUNK_BLOCKS * BS)  # page aligned, as O_DIRECT needs
    addr = first
    while addr < end:
        n_blocks = min(CHUNK_BLOCKS, end - addr)
        view = memoryview(buf)[: n_blocks * BS]
        try:
            n = os.preadv(fd, [view], addr * BS)
        except OSError as e:
            problems.append(f"addr {addr}..{addr + n_blocks - 1}: read failed: {e}")
            view.release()
            addr += n_blocks
            continue
        data = bytes(view[:n])
        view.release()
        if n != n_blocks * BS:
            problems.append(f"addr {addr}: short read {n} of {n_blocks * BS}")
            n_blocks = n // BS
            if n_blocks == 0:
                break
            data = data[: n_blocks * BS]
        yield addr, data
        addr += n_blocks


def read_history(path):
    writes = {}  # addr -> list of seqs, ascending
    acked = None
    max_seq = None
    with open(path) as f:
        for line in f:
            parts = line.split()
            if len(parts) == 3 and parts[0] == "W":
                seq, addr = int(parts[1]), int(parts[2])
                writes.setdefault(addr, []).append(seq)
                max_seq = seq if max_seq is None else max(max_seq, seq)
            elif len(parts) == 2 and parts[0] == "F":
                acked = int(parts[1]) if acked is None else max(acked, int(parts[1]))
            # a torn last line (none expected: the writer is not the one killed) is ignored
    return writes, acked, max_seq


def read_state(path):
    state = {}
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                a, s = line.split()
                state[int(a)] = int(s)
    return state


def cmd_verify(args):
    writes, acked, max_seq = read_history(args.history)
    state = read_state(args.state)
    fd = os.open(args.image, os.O_RDONLY | os.O_DIRECT)
    size = os.lseek(fd, 0, os.SEEK_END)  # st_size is 0 for a block device
    image_blocks = size // BS
    if image_blocks < args.blocks:
        print(f"verify: {args.image} has only {image_blocks} blocks, fewer than --blocks {args.blocks} "
              f"(a loop device detached or not set up?); nothing verified")
        return 1
    got = {}
    problems = []
    for start, data in read_chunks(fd, 0, min(args.blocks, image_blocks), problems):
        if data == bytes(len(data)):
            continue
        for i in range(len(data) // BS):
            addr = start + i
            kind, val = parse_block(data[i * BS:(i + 1) * BS], addr, state.get(addr))
            if kind == "bad":
                problems.append(f"addr {addr}: {val}")
            elif kind == "ok":
                got[addr] = val
    # Blocks past the tested region must still be zero (nothing was written there).
    tail_end = image_blocks if args.zero_check == "all" else min(args.blocks + int(args.zero_check), image_blocks)
    tail_checked = 0
    for start, data in read_chunks(fd, args.blocks, tail_end, problems):
        tail_checked += len(data) // BS
        if data != bytes(len(data)):
            for i in range(len(data) // BS):
                if data[i * BS:(i + 1) * BS] != ZERO_BLOCK:
                    problems.append(f"addr {start + i} (never written) is not zero")
    os.close(fd)

    # Each block: a version really written there, and not older than the last fsync'ed one.
    for addr in set(got) | set(state) | set(writes):
        cur = got.get(addr)
        valid = set(writes.get(addr, []))
        if addr in state:
            valid.add(state[addr])
        if cur is not None and cur not in valid:
            problems.append(f"addr {addr}: seq {cur} was never written to this address")
        if acked is not None:
            need = [s for s in writes.get(addr, []) if s <= acked]
            if need and (cur is None or cur < need[-1]):
                problems.append(
                    f"addr {addr}: fsync'ed write seq {need[-1]} lost (reads {'zeros' if cur is None else 'seq ' + str(cur)})")
        if cur is None and addr in state:
            problems.append(f"addr {addr}: held seq {state[addr]} before this cycle, now reads zeros")

    # Prefix: C = the newest sequence present from this cycle; each address must read the newest write <= C.
    new_seen = [s for a, s in got.items() if s in set(writes.get(a, []))]
    cut = max(new_seen) if new_seen else None
    # (--no-prefix: the writer was --buffered on a writeback-cache mount; the daemon got its writes reordered.)
    if not args.no_prefix:
        for addr in set(got) | set(state) | set(writes):
            cands = [s for s in writes.get(addr, []) if cut is not None and s <= cut]
            expect = cands[-1] if cands else state.get(addr)
            if got.get(addr) != expect:
                problems.append(f"addr {addr}: reads {got.get(addr)}, but the prefix up to seq {cut} says {expect} (not a prefix)")

    n_writes = sum(len(v) for v in writes.values())
    lost = 0 if max_seq is None or cut is None else sum(
        1 for v in writes.values() for s in v if s > cut)
    print(f"verify: {n_writes} writes this cycle (seq up to {max_seq}), last fsync'ed seq {acked}, "
          f"prefix cut at seq {cut}; {len(got)} stamped blocks, {tail_checked} tail blocks zero-checked, "
          f"{lost if cut is not None else n_writes} unsynced writes not present")
    if problems:
        for p in problems[:50]:
            print("  PROBLEM:", p)
        if len(problems) > 50:
            print(f"  ... and {len(problems) - 50} more")
        return 1
    with open(args.state + ".tmp", "w") as f:
        for a in sorted(got):
            f.write(f"{a} {got[a]}\n")
    os.replace(args.state + ".tmp", args.state)
    if args.effective and cut is not None:
        eff = sorted((s, a) for a, v in writes.items() for s in v if s <= cut)
        with open(args.effective, "a") as f:
            for s, a in eff:
                f.write(f"W {s} {a}\n")
            f.flush()
            os.fsync(f.fileno())
    return 0


def cmd_verify_home(args):
    eff, _acked, max_seq = read_history(args.effective)
    fd = os.open(args.image, os.O_RDONLY | os.O_DIRECT)
    image_blocks = os.lseek(fd, 0, os.SEEK_END) // BS
    if image_blocks < args.blocks:
        print(f"verify-home: {args.image} has only {image_blocks} blocks, fewer than --blocks {args.blocks}")
        return 1
    got = {}
    problems = []
    for start, data in read_chunks(fd, 0, args.blocks, problems):
        if data == bytes(len(data)):
            continue
        for i in range(len(data) // BS):
            addr = start + i
            kind, val = parse_block(data[i * BS:(i + 1) * BS], addr)
            if kind == "bad":
                problems.append(f"addr {addr}: {val}")
            elif kind == "ok":
                got[addr] = val
    os.close(fd)
    for addr, seq in got.items():
        if seq not in set(eff.get(addr, [])):
            problems.append(f"addr {addr}: seq {seq} is not a write to this address that the log kept")
    cut = max(got.values()) if got else None
    behind = 0
    for addr in set(got) | set(eff):
        cands = [x for x in eff.get(addr, []) if cut is not None and x <= cut]
        expect = cands[-1] if cands else None
        if got.get(addr) != expect:
            problems.append(f"addr {addr}: home reads {got.get(addr)}, but the prefix up to seq {cut} says {expect} "
                            f"(not a prefix: a mix)")
        if eff.get(addr) and eff[addr][-1] != got.get(addr):
            behind += 1
    print(f"verify-home: home is the prefix up to seq {cut} of {max_seq} kept writes; {len(got)} stamped blocks, "
          f"{behind} addresses behind the cache")
    for p in problems[:20]:
        print("  PROBLEM:", p)
    if len(problems) > 20:
        print(f"  ... and {len(problems) - 20} more")
    return 1 if problems else 0


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    w = sub.add_parser("write")
    w.add_argument("image")
    w.add_argument("history")
    w.add_argument("--start-seq", type=int, required=True)
    w.add_argument("--blocks", type=int, required=True)
    w.add_argument("--seed", type=int, default=None)
    w.add_argument("--max-writes", type=int, default=10**9)
    w.add_argument("--run", type=int, default=0, help="sequential writes of this many blocks (0: random single blocks)")
    w.add_argument("--buffered", action="store_true",
                   help="write through the page cache (no O_DIRECT): with FUSE's writeback cache, the kernel "
                        "sends the writes later and reordered; only fsync orders anything")
    v = sub.add_parser("verify")
    v.add_argument("image")
    v.add_argument("history")
    v.add_argument("state")
    v.add_argument("--blocks", type=int, required=True)
    v.add_argument("--effective", help="append the writes that survived to this file (for verify-home)")
    v.add_argument("--no-prefix", action="store_true",
                   help="skip the prefix check (the writer was --buffered on a writeback-cache mount: unsynced "
                        "writes reached the daemon in the kernel's order, not the writer's)")
    v.add_argument("--zero-check", default="64",
                   help="blocks after [0, B) that must read as zeros: a number, or 'all' for the rest of the image")
    h = sub.add_parser("verify-home")
    h.add_argument("image")
    h.add_argument("effective")
    h.add_argument("--blocks", type=int, required=True)
    args = p.parse_args()
    if args.cmd == "verify-home":
        return cmd_verify_home(args)
    return cmd_write(args) if args.cmd == "write" else cmd_verify(args)


if __name__ == "__main__":
    sys.exit(main())
