#!/usr/bin/env python3
"""A file workload for crash tests on a filesystem (tests/e2e/crash_loop_fs.sh, tests/e2e/home_alone.sh).

  list SRC
      Prints the files under SRC the workload may copy (small regular files), for run's --src-list.

  run ROOT SIDE [--seed S] [--src DIR [--src-list FILE]] [--max-seconds T] [--ready FILE]
      Works in ROOT until an operation fails (the device under the filesystem died: EIO, EROFS, ...) or T seconds
      pass; exit 0 either way, printing what it did and why it stopped. Operations, at random:
        - noise (never fsync'ed): copy a slice of the tree SRC into ROOT/noise, create files of random bytes,
          delete, rename, mkdir, overwrite;
        - durable files in ROOT/keep, each change recorded in SIDE (a file in another filesystem), and fsync'ed:
            new:      write keep/kN, fsync it, fsync keep/, then append "C path sha256"
            replace:  append "R path old new"; write keep/kN.tmp, fsync it, rename it onto keep/kN, fsync keep/,
                      then append "C path new"
            overwrite in place: append "O path old"; pwrite inside the file, fsync it, then "C path new"
            delete:   append "D path old"; unlink, fsync keep/, then "X path"
          A record is appended (and SIDE fsync'ed) only after the fsync it depends on returned.
      At start, entries left pending by a crash (R/O/D without a C/X after them) are resolved from what is on disk
      now (the caller verified them first) and ROOT/noise is thinned out; then FILE (--ready) is written.

  verify ROOT SIDE
      For every path in SIDE: last record C -> the file exists with that sha256; X -> it does not exist;
      R -> the old or the new contents; D -> absent or the old contents; O -> it exists (contents: any mix);
      U -> one of the states its record lists (see untrust).
      Then reads every regular file under ROOT (a read error is a problem). Exit 1 with the reasons on any
      problem.

  untrust SIDE BYTES
      The records after the first BYTES of SIDE were appended after the kill began, by fsyncs that may have
      returned while the device was failing (docs/testing.md, "The XFS finding"): do not trust them, but do not
      forget the operations they started either. Truncates SIDE to BYTES and appends, for every path that has a
      record before BYTES and one after it, "U path STATE..." naming every state its records allow: the state
      before BYTES, and each later record's (C sha -> sha; X -> "-", absent; R old new -> old, new; D old -> old,
      "-"; O old -> old, "*", any contents). A path with no record before BYTES (a new file) is dropped, as
      before. Prints how many records were late and how many paths became U.
"""
import argparse
import hashlib
import os
import random
import shutil
import sys
import time


def sha(data):
    return hashlib.sha256(data).hexdigest()


def file_sha(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(1 << 20)
            if not b:
                break
            h.update(b)
    return h.hexdigest()


def load_side(path):
    """path -> (last kind, fields) in record order."""
    state = {}
    if not os.path.exists(path):
        return state
    with open(path) as f:
        for line in f:
            parts = line.split()
            if not parts or not line.endswith("\n"):
                continue  # a torn last line: the writer of SIDE was not the one killed, but be safe
            state[parts[1]] = (parts[0], parts[2:])
    return state


class Side:
    def __init__(self, path):
        self.f = open(path, "a")

    def rec(self, *fields):
        self.f.write(" ".join(fields) + "\n")
        self.f.flush()
        os.fsync(self.f.fileno())


def fsync_dir(path):
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_file(path, data, do_fsync):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        view = memoryview(data)
        while view:
            n = os.write(fd, view)
            view = view[n:]
        if do_fsync:
            os.fsync(fd)
    finally:
        os.close(fd)


def source_files(src, limit=4000):
    out = []
    for dirpath, dirnames, filenames in os.walk(src):
        dirnames.sort()
        for n in sorted(filenames):
            p = os.path.join(dirpath, n)
            try:
                st = os.lstat(p)
            except OSError:
                continue
            if os.path.isfile(p) and not os.path.islink(p) and st.st_size <= 256 * 1024:
                out.append(os.path.relpath(p, src))
        if len(out) >= limit:
            break
    return out


def cmd_run(args):
    rng = random.Random(args.seed)
    root, keep, noise = args.root, os.path.join(args.root, "keep"), os.path.join(args.root, "noise")
    counts = {}
    why = "time limit reached"
    t_end = time.monotonic() + args.max_seconds
    if args.src_list:
        with open(args.src_list) as f:
            src_files = [line.rstrip("\n") for line in f if line.strip()]
    else:
        src_files = source_files(args.src) if args.src and os.path.isdir(args.src) else []

    def bump(k):
        counts[k] = counts.get(k, 0) + 1

    try:
        for d in (keep, noise):
            if not os.path.isdir(d):
                os.makedirs(d)
                fsync_dir(d)
                fsync_dir(os.path.dirname(d))
        side = Side(args.side)
        state = load_side(args.side)
        # Resolve what a crash left pending, from the (verified) disk.
        for path, (kind, _f) in sorted(state.items()):
            if kind in ("R", "O", "D", "U"):
                full = os.path.join(root, path)
                if os.path.exists(full):
                    s = file_sha(full)
                    side.rec("C", path, s)
                    state[path] = ("C", [s])
                else:
                    side.rec("X", path)
                    state[path] = ("X", [])
        committed = sorted(p for p, (k, _f) in state.items() if k == "C")
        next_id = 0
        for p in state:
            try:
                next_id = max(next_id, int(os.path.basename(p)[1:]) + 1)
            except ValueError:
                pass
        # Thin out the noise of earlier runs (deleting is part of the workload too).
        for e in sorted(os.listdir(noise)):
            if rng.random() < 0.6:
                full = os.path.join(noise, e)
                shutil.rmtree(full) if os.path.isdir(full) and not os.path.islink(full) else os.unlink(full)
                bump("noise-delete")

        def noise_entries():
            return sorted(os.listdir(noise))

        if args.ready:
            with open(args.ready, "w") as f:
                f.write("ready\n")

        while time.monotonic() < t_end:
            r = rng.random()
            if r < 0.12 and src_files:  # copy a slice of a tree
                dst = os.path.join(noise, f"tree{rng.randrange(10**9)}")
                start = rng.randrange(len(src_files))
                for rel in src_files[start:start + rng.randint(20, 150)]:
                    d = os.path.join(dst, os.path.dirname(rel))
                    os.makedirs(d, exist_ok=True)
                    try:
                        shutil.copyfile(os.path.join(args.src, rel), os.path.join(dst, rel))
                    except (FileNotFoundError, PermissionError, IsADirectoryError):
                        continue  # the source changed under us; not our filesystem's fault
                bump("copy-tree")
            elif r < 0.30:  # a noise file
                write_file(os.path.join(noise, f"n{rng.randrange(10**9)}"), rng.randbytes(rng.randint(0, 256 * 1024)),
                           False)
                bump("noise-create")
            elif r < 0.38:  # delete noise
                ents = noise_entries()
                if ents:
                    full = os.path.join(noise, rng.choice(ents))
                    shutil.rmtree(full) if os.path.isdir(full) and not os.path.islink(full) else os.unlink(full)
                    bump("noise-delete")
            elif r < 0.46:  # rename noise
                ents = noise_entries()
                if ents:
                    os.rename(os.path.join(noise, rng.choice(ents)), os.path.join(noise, f"r{rng.randrange(10**9)}"))
                    bump("noise-rename")
            elif r < 0.50:  # overwrite part of a noise file without fsync
                ents = [e for e in noise_entries() if e.startswith(("n", "r"))]
                full = os.path.join(noise, rng.choice(ents)) if ents else None
                if full and os.path.isfile(full):
                    with open(full, "r+b") as f:
                        f.seek(rng.randint(0, 256 * 1024))
                        f.write(rng.randbytes(rng.randint(1, 64 * 1024)))
                    bump("noise-overwrite")
            elif r < 0.68 or not committed:  # a new durable file
                path = f"keep/k{next_id}"
                next_id += 1
                data = rng.randbytes(rng.randint(1, 512 * 1024))
                write_file(os.path.join(root, path), data, True)
                fsync_dir(keep)
                side.rec("C", path, sha(data))
                committed.append(path)
                state[path] = ("C", [sha(data)])
                bump("fsync-new")
            elif r < 0.80:  # atomic replace
                path = rng.choice(committed)
                full = os.path.join(root, path)
                data = rng.randbytes(rng.randint(1, 512 * 1024))
                side.rec("R", path, state[path][1][0], sha(data))
                write_file(full + ".tmp", data, True)
                os.rename(full + ".tmp", full)
                fsync_dir(keep)
                side.rec("C", path, sha(data))
                state[path] = ("C", [sha(data)])
                bump("fsync-replace")
            elif r < 0.90:  # overwrite in place
                path = rng.choice(committed)
                full = os.path.join(root, path)
                side.rec("O", path, state[path][1][0])
                fd = os.open(full, os.O_RDWR)
                try:
                    size = os.fstat(fd).st_size
                    off = rng.randint(0, size)
                    os.pwrite(fd, rng.randbytes(rng.randint(1, 128 * 1024)), off)
                    os.fsync(fd)
                finally:
                    os.close(fd)
                s = file_sha(full)
                side.rec("C", path, s)
                state[path] = ("C", [s])
                bump("fsync-overwrite")
            else:  # durable delete
                path = rng.choice(committed)
                side.rec("D", path, state[path][1][0])
                os.unlink(os.path.join(root, path))
                fsync_dir(keep)
                side.rec("X", path)
                committed.remove(path)
                state[path] = ("X", [])
                bump("fsync-delete")
    except OSError as e:
        why = f"{type(e).__name__}: {e}"
    ops = ", ".join(f"{k}={v}" for k, v in sorted(counts.items()))
    print(f"workload: {sum(counts.values())} ops ({ops}); stopped: {why}")
    return 0


def cmd_verify(args):
    root = args.root
    state = load_side(args.side)
    problems = []
    n = {"C": 0, "X": 0, "pending": 0}
    for path, (kind, f) in sorted(state.items()):
        full = os.path.join(root, path)
        exists = os.path.exists(full)
        try:
            cur = file_sha(full) if exists else None
        except OSError as e:
            problems.append(f"{path}: cannot read: {e}")
            continue
        if kind == "C":
            n["C"] += 1
            if cur != f[0]:
                problems.append(f"{path}: fsync'ed with sha256 {f[0][:16]}..., reads "
                                f"{'as missing' if cur is None else cur[:16] + '...'}")
        elif kind == "X":
            n["X"] += 1
            if exists:
                problems.append(f"{path}: deleted and fsync'ed (directory), but it exists")
        elif kind == "R":
            n["pending"] += 1
            if cur not in (f[0], f[1]):
                problems.append(f"{path}: replace in flight: reads {cur and cur[:16]}, neither the old nor the new")
        elif kind == "D":
            n["pending"] += 1
            if exists and cur != f[0]:
                problems.append(f"{path}: delete in flight: exists with contents other than the old")
        elif kind == "O":
            n["pending"] += 1
            if not exists:
                problems.append(f"{path}: overwrite in flight, but the file is gone")
        elif kind == "U":
            n["pending"] += 1
            if (cur is None and "-" not in f) or (cur is not None and "*" not in f and cur not in f):
                problems.append(f"{path}: changed after the kill began (untrusted records): reads "
                                f"{'as missing' if cur is None else cur[:16] + '...'}, none of "
                                f"{' '.join(x[:16] for x in f)}")
    files = 0
    for dirpath, _dirs, filenames in os.walk(root):
        for name in filenames:
            full = os.path.join(dirpath, name)
            if os.path.islink(full) or not os.path.isfile(full):
                continue
            try:
                file_sha(full)
                files += 1
            except OSError as e:
                problems.append(f"{os.path.relpath(full, root)}: read error: {e}")
    print(f"fs verify: {n['C']} fsync'ed files match, {n['X']} fsync'ed deletions hold, {n['pending']} in flight "
          f"at the crash (old or new accepted); {files} files read back")
    for p in problems[:50]:
        print("  PROBLEM:", p)
    return 1 if problems else 0


def states_of(kind, fields):
    """The states a record allows, as U tokens: a sha256, "-" (absent), "*" (any contents)."""
    return {"C": lambda: [fields[0]], "X": lambda: ["-"], "R": lambda: fields[:2], "D": lambda: [fields[0], "-"],
            "O": lambda: [fields[0], "*"], "U": lambda: list(fields)}[kind]()


def cmd_untrust(args):
    with open(args.side, "rb") as f:
        data = f.read()
    keep, late = data[:args.bytes], data[args.bytes:]
    if late and keep and not keep.endswith(b"\n"):
        raise SystemExit(f"untrust: byte {args.bytes} of {args.side} is inside a record")
    before = {}
    for line in keep.decode().splitlines():
        parts = line.split()
        if parts:
            before[parts[1]] = (parts[0], parts[2:])
    states, order, n_late = {}, [], 0
    for line in late.decode().splitlines(keepends=True):
        parts = line.split()
        if not parts or not line.endswith("\n"):
            continue
        n_late += 1
        path = parts[1]
        if path not in before:
            continue  # a file created after the kill began: as if never recorded
        if path not in states:
            states[path] = states_of(*before[path])
            order.append(path)
        states[path] += [t for t in states_of(parts[0], parts[2:]) if t not in states[path]]
    with open(args.side, "r+b") as f:
        f.truncate(args.bytes)
        f.seek(args.bytes)
        for path in order:
            f.write(("U " + path + " " + " ".join(states[path]) + "\n").encode())
        f.flush()
        os.fsync(f.fileno())
    print(f"untrust: {n_late} late record(s); {len(order)} path(s) left in flight: {' '.join(order)}")
    return 0


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("root")
    r.add_argument("side")
    r.add_argument("--seed", type=int, default=None)
    r.add_argument("--src", default="/usr/include")
    r.add_argument("--max-seconds", type=float, default=120)
    r.add_argument("--src-list", help="files under SRC to copy from, one relative path a line (see 'list')")
    r.add_argument("--ready", help="written once the workload starts its operations")
    ls = sub.add_parser("list")
    ls.add_argument("src")
    v = sub.add_parser("verify")
    v.add_argument("root")
    v.add_argument("side")
    u = sub.add_parser("untrust")
    u.add_argument("side")
    u.add_argument("bytes", type=int)
    args = p.parse_args()
    if args.cmd == "untrust":
        return cmd_untrust(args)
    if args.cmd == "list":
        print("\n".join(source_files(args.src)))
        return 0
    return cmd_run(args) if args.cmd == "run" else cmd_verify(args)


if __name__ == "__main__":
    sys.exit(main())
