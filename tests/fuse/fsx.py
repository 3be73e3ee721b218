#!/usr/bin/env python3
"""Random file operations on one file through two mounts, checked against a
byte model after every step (in the spirit of fsx, the file system
exerciser).

  fsx.py MOUNT_A MOUNT_B SEED OPS [more]

Each step picks a mount and one of: buffered write, read (checked), truncate,
punch hole or zero range, a store through a shared mapping, an O_DIRECT
write, fstat (size checked); with "more" also an O_DIRECT read (checked),
allocate (with and without KEEP_SIZE), close and reopen. The two mounts are two client nodes: every step
that changes nodes goes through the lock protocol, so a stale page, size or
mapping shows up as a mismatch. Prints the last steps and exits 1 on the
first mismatch; the same seed gives the same steps.
"""
import ctypes
import mmap
import os
import random
import sys

FALLOC_FL_KEEP_SIZE = 0x01
FALLOC_FL_PUNCH_HOLE = 0x02
FALLOC_FL_ZERO_RANGE = 0x10
MAX_OFFSET = 1 << 20
PAGE = 4096

_libc = ctypes.CDLL("libc.so.6", use_errno=True)


def fallocate(fd, mode, offset, length):
    if _libc.fallocate(fd, mode, ctypes.c_long(offset), ctypes.c_long(length)):
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


class Run:
    def __init__(self, mounts, seed, more):
        self.more = more  # Also O_DIRECT reads, allocate, reopen.
        self.rng = random.Random(seed)
        self.seed = seed
        paths = [os.path.join(m, "fsx.%d" % seed) for m in mounts]
        self.paths = paths
        self.fds = [os.open(paths[0], os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644),
                    os.open(paths[1], os.O_RDWR)]
        self.direct = [os.open(p, os.O_RDWR | os.O_DIRECT) for p in paths]
        self.model = bytearray()
        self.log = []
        self.aligned = mmap.mmap(-1, 64 * PAGE)  # O_DIRECT needs alignment.

    def fail(self, what):
        print("fsx: seed %d: %s" % (self.seed, what))
        print("last steps:")
        print("\n".join(self.log[-25:]))
        sys.exit(1)

    def extend(self, end):
        if end > len(self.model):
            self.model.extend(bytes(end - len(self.model)))

    def step(self, i):
        rng = self.rng
        node = rng.randrange(2)
        fd = self.fds[node]
        op = rng.randrange(13 if self.more else 10)
        size = len(self.model)
        if op <= 2:
            off, n = rng.randrange(MAX_OFFSET), rng.randrange(1, 65536)
            data = bytes([rng.randrange(256)]) * n
            self.log.append("%d node%d write %d+%d" % (i, node, off, n))
            os.pwrite(fd, data, off)
            self.extend(off)
            self.model[off:off + n] = data
        elif op <= 4:
            off, n = rng.randrange(MAX_OFFSET + PAGE), rng.randrange(1, 131072)
            self.log.append("%d node%d read %d+%d" % (i, node, off, n))
            got, want = os.pread(fd, n, off), bytes(self.model[off:off + n])
            if got != want:
                k = next((j for j in range(min(len(got), len(want)))
                          if got[j] != want[j]), min(len(got), len(want)))
                self.fail("read %d+%d: %d bytes (want %d), first difference at "
                          "+%d" % (off, n, len(got), len(want), k))
        elif op == 5:
            new = rng.randrange(MAX_OFFSET)
            self.log.append("%d node%d truncate %d" % (i, node, new))
            os.ftruncate(fd, new)
            del self.model[new:]
            self.extend(new)
        elif op == 6:
            off, n = rng.randrange(MAX_OFFSET), rng.randrange(1, 131072)
            mode = rng.choice([FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                               FALLOC_FL_ZERO_RANGE])
            self.log.append("%d node%d fallocate %#x %d+%d" % (i, node, mode, off, n))
            fallocate(fd, mode, off, n)
            end = min(off + n, size) if mode & FALLOC_FL_KEEP_SIZE else off + n
            self.extend(end)
            if off < end:
                self.model[off:end] = bytes(end - off)
        elif op == 7:
            if size == 0:
                return
            off = rng.randrange(size)
            n = min(rng.randrange(1, 16384), size - off)
            data = bytes([rng.randrange(256)]) * n
            self.log.append("%d node%d mapped store %d+%d" % (i, node, off, n))
            with mmap.mmap(fd, size) as m:
                m[off:off + n] = data
            self.model[off:off + n] = data
        elif op == 8:
            off = rng.randrange(MAX_OFFSET // PAGE) * PAGE
            n = rng.randrange(1, 64) * PAGE
            data = bytes([rng.randrange(256)]) * n
            self.log.append("%d node%d O_DIRECT write %d+%d" % (i, node, off, n))
            self.aligned[0:n] = data
            os.pwritev(self.direct[node], [memoryview(self.aligned)[0:n]], off)
            self.extend(off + n)
            self.model[off:off + n] = data
        elif op == 10:
            off = rng.randrange(MAX_OFFSET // PAGE) * PAGE
            n = rng.randrange(1, 64) * PAGE
            self.log.append("%d node%d O_DIRECT read %d+%d" % (i, node, off, n))
            got = os.preadv(self.direct[node], [memoryview(self.aligned)[0:n]], off)
            want = bytes(self.model[off:off + n])
            if got != len(want) or self.aligned[0:got] != want:
                self.fail("O_DIRECT read %d+%d: %d bytes (want %d) or other "
                          "bytes" % (off, n, got, len(want)))
        elif op == 11:
            off, n = rng.randrange(MAX_OFFSET), rng.randrange(1, 131072)
            keep = rng.randrange(2)
            mode = FALLOC_FL_KEEP_SIZE if keep else 0
            self.log.append("%d node%d allocate %#x %d+%d" % (i, node, mode, off, n))
            fallocate(fd, mode, off, n)
            if not keep:
                self.extend(off + n)
        elif op == 12:
            self.log.append("%d node%d reopen" % (i, node))
            os.close(self.fds[node])
            self.fds[node] = os.open(self.paths[node], os.O_RDWR)
        else:
            self.log.append("%d node%d fstat" % (i, node))
            st = os.fstat(fd)
            if st.st_size != size:
                self.fail("size %d, want %d" % (st.st_size, size))


def main():
    if len(sys.argv) not in (5, 6) or sys.argv[5:] not in ([], ["more"]):
        sys.exit(__doc__)
    run = Run(sys.argv[1:3], int(sys.argv[3]), sys.argv[5:] == ["more"])
    ops = int(sys.argv[4])
    for i in range(ops):
        run.step(i)
    print("fsx: seed %d: %d steps, final size %d" % (run.seed, ops, len(run.model)))


if __name__ == "__main__":
    main()
