#!/usr/bin/env python3
"""Differential POSIX check of a mount against a reference directory.

  posix_diff.py REFERENCE_DIR MOUNT_DIR

Runs the same system calls under both (as root; the second list also as
uid/gid 65534 in forked children) and compares every result: errno,
mode, link count, owner, size, which times moved, xattrs, listings. Any
difference is printed and the exit status is 1. Limits of one particular
filesystem (ext4's largest file, its xattr value size) are left out.
Both directories must be reachable by uid 65534 for the second list.
"""
import ctypes
import errno
import mmap
import os
import stat
import struct
import subprocess
import sys
import time


def st(p, follow=True):
    s = os.stat(p) if follow else os.lstat(p)
    size = -1 if stat.S_ISDIR(s.st_mode) else s.st_size
    return (oct(s.st_mode), s.st_nlink, s.st_uid, s.st_gid, size)


def ust(p):
    s = os.lstat(p)
    return (oct(s.st_mode), s.st_uid, s.st_gid)


def times(p):
    s = os.lstat(p)
    return (s.st_atime_ns, s.st_mtime_ns, s.st_ctime_ns)


def ctime_moves(p, fn):
    """Which of atime, mtime, ctime of p moved across fn()."""
    a = times(p)
    time.sleep(0.01)
    fn()
    b = times(p)
    return tuple(x < y for x, y in zip(a, b))


def atime_after(p, fn):
    """Whether fn() moved p's atime."""
    a = os.stat(p).st_atime_ns
    time.sleep(0.01)
    fn()
    return os.stat(p).st_atime_ns > a


def w(p, data=b"x", flags=os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode=0o644):
    fd = os.open(p, flags, mode)
    os.write(fd, data)
    os.close(fd)
    return True


def dwrite(p):
    """One O_DIRECT write of a page at offset 0 (an aligned buffer)."""
    m = mmap.mmap(-1, 4096)
    m.write(b"d" * 4096)
    fd = os.open(p, os.O_WRONLY | os.O_DIRECT)
    try:
        os.pwrite(fd, m, 0)
    finally:
        os.close(fd)
    return True


def falloc(p, mode, off, length):
    """fallocate(2) with `mode` (1 keep size, 2 punch hole, 16 zero range)."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(p, os.O_RDWR)
    try:
        if libc.fallocate(fd, mode, ctypes.c_long(off), ctypes.c_long(length)):
            e = ctypes.get_errno()
            raise OSError(e, os.strerror(e))
    finally:
        os.close(fd)
    return True


def as_user(uid, gid, fn):
    """fn() in a child running as uid/gid; its result or its errno."""
    r, wr = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        try:
            os.setgroups([])
            os.setgid(gid)
            os.setuid(uid)
            v = ("ok", fn())
        except OSError as e:
            v = ("err", errno.errorcode.get(e.errno, e.errno))
        except Exception as e:  # noqa: BLE001 - reported as a difference
            v = ("exc", str(e))
        os.write(wr, repr(v).encode())
        os._exit(0)
    os.close(wr)
    data = os.read(r, 65536)
    os.waitpid(pid, 0)
    os.close(r)
    return eval(data)  # Our own repr.


def acl(text):
    """The kernel's xattr form of an ACL in getfacl's short text
    ("u::rw-,u:65534:r--,g::r--,m::r--,o::---")."""
    tags = {"u": 1, "g": 4, "m": 16, "o": 32}
    out = struct.pack("<I", 2)
    for e in text.split(","):
        kind, who, perm = e.split(":")
        tag = tags[kind] * (2 if who and kind in "ug" else 1)
        bits = sum(b for c, b in zip(perm, (4, 2, 1)) if c != "-")
        out += struct.pack("<HHI", tag, bits, int(who) if who else 0xFFFFFFFF)
    return out


def setacl(p, text, kind="access"):
    os.setxattr(p, "system.posix_acl_" + kind, acl(text))
    return ust(p)


def getacl(p, kind="access"):
    return os.getxattr(p, "system.posix_acl_" + kind).hex()


L = "a" * 255
N = 65534

ROOT_OPS = [
 ("mkdir d", lambda: os.mkdir("d", 0o755)),
 ("st d", lambda: st("d")),
 ("mkdir d again", lambda: os.mkdir("d")),
 ("mkdir d/e", lambda: os.mkdir("d/e", 0o700)),
 ("nlink d", lambda: os.stat("d").st_nlink),
 ("rmdir nonempty", lambda: os.rmdir("d")),
 ("rename d into d/e", lambda: os.rename("d", "d/e/x")),
 ("create f", lambda: w("d/f")),
 ("st f", lambda: st("d/f")),
 ("O_EXCL f", lambda: os.open("d/f", os.O_CREAT|os.O_EXCL|os.O_WRONLY)),
 ("open dir O_WRONLY", lambda: os.open("d", os.O_WRONLY)),
 ("open file O_DIRECTORY", lambda: os.open("d/f", os.O_RDONLY|os.O_DIRECTORY)),
 ("rmdir file", lambda: os.rmdir("d/f")),
 ("unlink dir", lambda: os.unlink("d/e")),
 ("name 255", lambda: w("d/" + L)),
 ("name 256", lambda: w("d/" + L + "b")),
 ("stat name 256", lambda: os.stat("d/" + L + "b")),
 ("link f g", lambda: os.link("d/f", "d/g")),
 ("nlink f", lambda: os.stat("d/f").st_nlink),
 ("link to dir", lambda: os.link("d/e", "d/e2")),
 ("link exists", lambda: os.link("d/f", "d/g")),
 ("ctime on link", lambda: ctime_moves("d/f", lambda: os.link("d/f", "d/h"))),
 ("unlink h", lambda: os.unlink("d/h")),
 ("symlink", lambda: os.symlink("f", "d/s")),
 ("lstat s", lambda: st("d/s", False)),
 ("readlink", lambda: os.readlink("d/s")),
 ("stat via s", lambda: st("d/s")),
 ("symlink loop", lambda: (os.symlink("l2", "d/l1"), os.symlink("l1", "d/l2"))),
 ("open loop", lambda: os.open("d/l1", os.O_RDONLY)),
 ("O_NOFOLLOW", lambda: os.open("d/s", os.O_RDONLY|os.O_NOFOLLOW)),
 ("readlink file", lambda: os.readlink("d/f")),
 ("rename f->g (links same)", lambda: os.rename("d/f", "d/g")),
 ("both exist", lambda: (os.path.exists("d/f"), os.path.exists("d/g"))),
 ("rename dir over file", lambda: os.rename("d/e", "d/f")),
 ("rename file over dir", lambda: os.rename("d/f", "d/e")),
 ("mkdir d/e3", lambda: os.mkdir("d/e3")),
 ("rename dir over empty dir", lambda: os.rename("d/e3", "d/e")),
 ("st d/e", lambda: st("d/e")),
 ("mkdir d/e/z", lambda: os.mkdir("d/e/z")),
 ("mkdir d/e4", lambda: os.mkdir("d/e4")),
 ("rename dir over nonempty", lambda: os.rename("d/e4", "d/e")),
 ("nlink d", lambda: os.stat("d").st_nlink),
 ("nlink d/e", lambda: os.stat("d/e").st_nlink),
 ("rename missing", lambda: os.rename("d/nope", "d/x")),
 ("rename . ", lambda: os.rename("d/.", "d/x")),
 ("rmdir .", lambda: os.rmdir("d/e/.")),
 ("rmdir ..", lambda: os.rmdir("d/e/..")),
 ("chmod 4755", lambda: (os.chmod("d/f", 0o4755), oct(os.stat("d/f").st_mode))),
 ("chown keeps suid (root)", lambda: (os.chown("d/f", 0, 0), oct(os.stat("d/f").st_mode))),
 ("chown to 65534", lambda: (os.chown("d/f", 65534, 65534), st("d/f"))),
 ("chown -1 -1", lambda: (os.chown("d/f", -1, -1), st("d/f"))),
 ("lchown symlink", lambda: (os.lchown("d/s", 123, 456), st("d/s", False)[2:4], st("d/s")[2:4])),
 ("chmod symlink target", lambda: (os.chmod("d/s", 0o600), oct(os.stat("d/f").st_mode))),
 ("truncate grow", lambda: (os.truncate("d/f", 100000), os.stat("d/f").st_size)),
 ("truncate neg", lambda: os.truncate("d/f", -1)),
 ("truncate dir", lambda: os.truncate("d/e", 0)),
 ("mkfifo", lambda: (os.mkfifo("d/p", 0o644), st("d/p"))),
 ("mknod chr", lambda: (os.mknod("d/c", 0o644 | stat.S_IFCHR, os.makedev(1, 3)), st("d/c"), os.stat("d/c").st_rdev)),
 ("mknod blk", lambda: (os.mknod("d/b", 0o644 | stat.S_IFBLK, os.makedev(7, 0)), st("d/b"), os.stat("d/b").st_rdev)),
 ("mknod sock", lambda: (os.mknod("d/so", 0o644 | stat.S_IFSOCK), st("d/so"))),
 ("mknod reg", lambda: (os.mknod("d/r", 0o644 | stat.S_IFREG), st("d/r"))),
 ("utime set", lambda: (os.utime("d/f", ns=(1000000001, 2000000002)), os.stat("d/f").st_atime_ns, os.stat("d/f").st_mtime_ns)),
 ("utime symlink nofollow", lambda: (os.utime("d/s", ns=(5, 6), follow_symlinks=False), os.lstat("d/s").st_mtime_ns)),
 ("write moves mtime/ctime", lambda: ctime_moves("d/f", lambda: w("d/f", b"y", os.O_WRONLY))),
 ("chmod moves ctime only", lambda: ctime_moves("d/f", lambda: os.chmod("d/f", 0o644))),
 ("rename moves ctime", lambda: ctime_moves("d/r", lambda: os.rename("d/r", "d/r2")) if True else None),
 ("unlink moves dir mtime", lambda: ctime_moves("d", lambda: os.unlink("d/r2"))),
 ("setxattr", lambda: os.setxattr("d/f", "user.k", b"v")),
 ("getxattr", lambda: os.getxattr("d/f", "user.k")),
 ("xattr create exists", lambda: os.setxattr("d/f", "user.k", b"v", os.XATTR_CREATE)),
 ("xattr replace missing", lambda: os.setxattr("d/f", "user.q", b"v", os.XATTR_REPLACE)),
 ("listxattr", lambda: sorted(os.listxattr("d/f"))),
 ("removexattr missing", lambda: os.removexattr("d/f", "user.q")),
 ("xattr on symlink user", lambda: os.setxattr("d/s", "user.k", b"v", follow_symlinks=False)),
 ("xattr bad ns", lambda: os.setxattr("d/f", "bogus.k", b"v")),
 ("xattr big name", lambda: os.setxattr("d/f", "user." + "n"*300, b"v")),
 ("xattr 65537", lambda: os.setxattr("d/f", "user.big2", b"v"*65537)),
 ("readdir", lambda: sorted(os.listdir("d"))),
 ("access W", lambda: os.access("d/f", os.W_OK)),
 ("O_APPEND", lambda: (w("d/ap", b"12345"), w("d/ap", b"ab", os.O_WRONLY|os.O_APPEND), open("d/ap","rb").read())),
 ("O_TRUNC", lambda: (w("d/ap", b"z", os.O_WRONLY|os.O_TRUNC), os.stat("d/ap").st_size)),
 ("pwrite hole", lambda: (lambda fd: (os.pwrite(fd, b"e", 1 << 20), os.fstat(fd).st_size, os.pread(fd, 4, 0), os.close(fd)))(os.open("d/h2", os.O_RDWR|os.O_CREAT, 0o644))),
 ("seek data/hole", lambda: (lambda fd: (os.lseek(fd, 0, os.SEEK_DATA), os.lseek(fd, 0, os.SEEK_HOLE) >= 0, os.close(fd)))(os.open("d/h2", os.O_RDONLY))),
 ("seek data past eof", lambda: (lambda fd: os.lseek(fd, 10 << 20, os.SEEK_DATA))(os.open("d/h2", os.O_RDONLY))),
 ("seek data negative", lambda: (lambda fd: os.lseek(fd, -1, os.SEEK_DATA))(os.open("d/h2", os.O_RDONLY))),
 ("seek hole negative", lambda: (lambda fd: os.lseek(fd, -4096, os.SEEK_HOLE))(os.open("d/h2", os.O_RDONLY))),
 ("fallocate keep size", lambda: (lambda fd: (os.posix_fallocate(fd, 0, 8192), os.fstat(fd).st_size, os.close(fd)))(os.open("d/fa", os.O_RDWR|os.O_CREAT, 0o644))),
 ("statvfs namemax", lambda: os.statvfs(".").f_namemax),
 ("rmdir e/z", lambda: os.rmdir("d/e/z")),
 ("rename exchange-ish: rename onto itself", lambda: os.rename("d/e", "d/e")),
 ("rename dir to new name", lambda: (os.rename("d/e", "d/E"), os.path.isdir("d/E"))),
 ("dotdot after rename", lambda: os.stat("d/E/..").st_ino == os.stat("d").st_ino),
 # Both mounted relatime: a read moves the atime once after a change.
 ("read after write moves atime once", lambda: (w("d/at", b"abc"), atime_after("d/at", lambda: open("d/at", "rb").read()), atime_after("d/at", lambda: open("d/at", "rb").read()))),
 ("O_NOATIME read keeps atime", lambda: (w("d/at", b"x", os.O_WRONLY), atime_after("d/at", lambda: os.close(os.open("d/at", os.O_RDONLY | os.O_NOATIME))))),
 ("listing after a change moves the dir's atime once", lambda: (w("d/E/n", b""), atime_after("d/E", lambda: os.listdir("d/E")), atime_after("d/E", lambda: os.listdir("d/E")))),
]

USER_OPS = [
 ("root: mkdir t 1777", lambda: (os.mkdir("t"), os.chmod("t", 0o1777))),
 ("root: file in t", lambda: w("t/rootf")),
 ("root: mkdir sg 2775 gid 100", lambda: (os.mkdir("sg"), os.chown("sg", 0, 100), os.chmod("sg", 0o2775))),
 ("nobody: create in t", lambda: as_user(N, N, lambda: w("t/nf"))),
 ("st t/nf", lambda: ust("t/nf")),
 ("nobody: unlink root's in sticky", lambda: as_user(N, N, lambda: os.unlink("t/rootf"))),
 ("nobody: rename root's in sticky", lambda: as_user(N, N, lambda: os.rename("t/rootf", "t/x"))),
 ("nobody: rename own in sticky", lambda: as_user(N, N, lambda: os.rename("t/nf", "t/nf2"))),
 ("nobody: rename over root's in sticky", lambda: as_user(N, N, lambda: os.rename("t/nf2", "t/rootf"))),
 ("nobody: create in sg", lambda: as_user(N, N, lambda: w("sg/f"))),
 ("root: chmod sg 2777", lambda: os.chmod("sg", 0o2777)),
 ("nobody: create in sg 2", lambda: as_user(N, N, lambda: (w("sg/f"), ust("sg/f")))),
 ("nobody: mkdir in sg", lambda: as_user(N, N, lambda: (os.mkdir("sg/d"), ust("sg/d")))),
 ("nobody: chmod g+s own file in sg (not in group 100)", lambda: as_user(N, N, lambda: (os.chmod("sg/f", 0o2755), ust("sg/f")))),
 ("nobody: chown own to root", lambda: as_user(N, N, lambda: os.chown("sg/f", 0, -1))),
 ("nobody: chgrp own to 100 (not member)", lambda: as_user(N, N, lambda: os.chown("sg/f", -1, 100))),
 ("nobody: chgrp own to own gid", lambda: as_user(N, N, lambda: (os.chown("sg/f", -1, N), ust("sg/f")))),
 ("root: chmod 4755 nobody's", lambda: (os.chmod("sg/f", 0o6755), ust("sg/f"))),
 ("nobody: write clears suid", lambda: as_user(N, N, lambda: (w("sg/f", b"y", os.O_WRONLY), ust("sg/f")))),
 ("root: chmod 6755 again", lambda: os.chmod("sg/f", 0o6755)),
 ("nobody: truncate clears suid", lambda: as_user(N, N, lambda: (os.truncate("sg/f", 0), ust("sg/f")))),
 ("root: chmod 6755 again2", lambda: os.chmod("sg/f", 0o6755)),
 ("root: chown clears suid", lambda: (os.chown("sg/f", N, N), ust("sg/f"))),
 ("root: sid 6777", lambda: (w("sid", b"s" * 8192), os.chmod("sid", 0o6777), ust("sid"))),
 ("nobody: O_DIRECT write clears set-id", lambda: as_user(N, N, lambda: (dwrite("sid"), ust("sid")))),
 ("root: sid 6777 again", lambda: os.chmod("sid", 0o6777)),
 ("nobody: fallocate clears set-id", lambda: as_user(N, N, lambda: (falloc("sid", 0, 0, 16384), ust("sid")))),
 ("root: sid 2666 (setgid, no g+x)", lambda: os.chmod("sid", 0o2666)),
 ("nobody: punch hole clears setgid of a non-member", lambda: as_user(N, N, lambda: (falloc("sid", 3, 0, 4096), ust("sid")))),
 ("root: sid 2666 again", lambda: os.chmod("sid", 0o2666)),
 ("nobody: zero range clears setgid of a non-member", lambda: as_user(N, N, lambda: (falloc("sid", 16, 0, 4096), ust("sid")))),
 ("root: sid 2666 once more", lambda: os.chmod("sid", 0o2666)),
 ("nobody: truncate clears setgid of a non-member", lambda: as_user(N, N, lambda: (os.truncate("sid", 100), ust("sid")))),
 ("root: sid 6777 by root", lambda: os.chmod("sid", 0o6777)),
 ("root: O_DIRECT write keeps set-id", lambda: (dwrite("sid"), ust("sid"))),
 ("root: chmod 0600 root file", lambda: (w("rf"), os.chmod("rf", 0o600))),
 ("nobody: read 0600", lambda: as_user(N, N, lambda: open("rf", "rb").read())),
 ("nobody: utime now on root file", lambda: as_user(N, N, lambda: os.utime("rf"))),
 ("nobody: utime explicit root file", lambda: as_user(N, N, lambda: os.utime("rf", ns=(1, 1)))),
 ("root: chmod 666 rf", lambda: os.chmod("rf", 0o666)),
 ("nobody: utime now on 666 root file", lambda: as_user(N, N, lambda: os.utime("rf"))),
 ("nobody: utime explicit on 666", lambda: as_user(N, N, lambda: os.utime("rf", ns=(1, 1)))),
 ("nobody: chmod root file", lambda: as_user(N, N, lambda: os.chmod("rf", 0o777))),
 ("root: mkdir x 0711", lambda: (os.mkdir("x"), os.chmod("x", 0o711), w("x/f"))),
 ("nobody: list 0711", lambda: as_user(N, N, lambda: os.listdir("x"))),
 ("nobody: stat in 0711", lambda: as_user(N, N, lambda: ust("x/f"))),
 ("root: chmod x 0700", lambda: os.chmod("x", 0o700)),
 ("nobody: stat in 0700", lambda: as_user(N, N, lambda: ust("x/f"))),
 ("nobody: create in 0700", lambda: as_user(N, N, lambda: w("x/g"))),
 ("nobody: O_TRUNC on 0644 root", lambda: as_user(N, N, lambda: os.open("t/rootf", os.O_RDONLY|os.O_TRUNC))),
 ("nobody: xattr user on root 0644", lambda: as_user(N, N, lambda: os.setxattr("t/rootf", "user.a", b"1"))),
 ("nobody: trusted xattr", lambda: as_user(N, N, lambda: os.setxattr("t/nf2" if os.path.exists("t/nf2") else "t/rootf", "trusted.a", b"1"))),
 ("nobody: link to root file (protected_hardlinks)", lambda: as_user(N, N, lambda: os.link("rf", "t/hl"))),
 ("nobody: mkfifo in t", lambda: as_user(N, N, lambda: (os.mkfifo("t/fifo"), ust("t/fifo")))),
 ("nobody: mknod chr", lambda: as_user(N, N, lambda: os.mknod("t/c", stat.S_IFCHR|0o644, os.makedev(1,3)))),
 ("nobody: rmdir root dir in sticky", lambda: (os.mkdir("t/rd"), as_user(N, N, lambda: os.rmdir("t/rd")))),
 # POSIX ACLs: checked, the mode kept in step, default lists inherited.
 ("root: acl dir", lambda: (os.mkdir("acl"), os.chmod("acl", 0o755), w("acl/f", b"a"), os.chmod("acl/f", 0o640))),
 ("nobody: read 0640 before an ACL", lambda: as_user(N, N, lambda: open("acl/f", "rb").read())),
 ("root: ACL naming nobody", lambda: setacl("acl/f", "u::rw-,u:65534:rw-,g::r--,m::rw-,o::---")),
 ("getfacl", lambda: getacl("acl/f")),
 ("listxattr with ACL", lambda: sorted(os.listxattr("acl/f"))),
 ("nobody: read by the named entry", lambda: as_user(N, N, lambda: open("acl/f", "rb").read())),
 ("nobody: write by the named entry", lambda: as_user(N, N, lambda: w("acl/f", b"n", os.O_WRONLY))),
 ("root: chmod 0600 sets the mask", lambda: (os.chmod("acl/f", 0o600), ust("acl/f"), getacl("acl/f"))),
 ("nobody: read under mask ---", lambda: as_user(N, N, lambda: open("acl/f", "rb").read())),
 ("root: mask r-- bounds a named group", lambda: setacl("acl/f", "u::rw-,g::---,g:100:rw-,m::r--,o::---")),
 ("gid 100: read", lambda: as_user(N, 100, lambda: open("acl/f", "rb").read())),
 ("gid 100: write beyond the mask", lambda: as_user(N, 100, lambda: w("acl/f", b"g", os.O_WRONLY))),
 ("root: ACL equal to a mode", lambda: (setacl("acl/f", "u::rw-,g::r--,o::r--"), sorted(os.listxattr("acl/f")))),
 ("root: bad ACL", lambda: os.setxattr("acl/f", "system.posix_acl_access", b"\x02\x00\x00\x00junk1234")),
 ("root: default ACL on a file", lambda: setacl("acl/f", "u::rwx,g::r-x,o::---", "default")),
 ("root: remove the access ACL keeps the mode", lambda: (setacl("acl/f", "u::rw-,u:65534:r--,g::r--,m::r--,o::---"), os.removexattr("acl/f", "system.posix_acl_access"), ust("acl/f"))),
 ("root: default ACL on acl/dd", lambda: (os.mkdir("acl/dd"), os.chmod("acl/dd", 0o777), setacl("acl/dd", "u::rwx,g::r-x,g:100:rwx,m::rwx,o::---", "default"), getacl("acl/dd", "default"))),
 ("create under a default ACL (no umask)", lambda: (w("acl/dd/f", b"x", mode=0o666), ust("acl/dd/f"), getacl("acl/dd/f"))),
 ("mkdir under a default ACL", lambda: (os.mkdir("acl/dd/sub", 0o777), ust("acl/dd/sub"), getacl("acl/dd/sub"), getacl("acl/dd/sub", "default"))),
 ("mknod under a default ACL", lambda: (os.mkfifo("acl/dd/p", 0o644), ust("acl/dd/p"))),
 ("symlink under a default ACL", lambda: (os.symlink("f", "acl/dd/s"), ust("acl/dd/s"))),
 ("gid 100: create by the default list", lambda: as_user(N, 100, lambda: (w("acl/dd/sub/n", b"n", mode=0o640), ust("acl/dd/sub/n")))),
 ("nobody: create without an entry", lambda: as_user(N, N, lambda: w("acl/dd/sub/m"))),
 ("root: setgid dir 2775 gid 100 with a default ACL", lambda: (os.mkdir("acl/sg"), os.chown("acl/sg", 0, 100), os.chmod("acl/sg", 0o2775), setacl("acl/sg", "u::rwx,g::rwx,o::r-x", "default"))),
 ("create in setgid dir with a default ACL", lambda: (w("acl/sg/f", b"x", mode=0o777), ust("acl/sg/f"))),
 ("mkdir in setgid dir with a default ACL", lambda: (os.mkdir("acl/sg/d", 0o777), ust("acl/sg/d"))),
 ("root: nobody's 2770 file, group 100", lambda: (w("acl/k", b"k"), os.chown("acl/k", N, 100), os.chmod("acl/k", 0o2770), ust("acl/k"))),
 ("nobody: setfacl outside the group drops setgid", lambda: as_user(N, N, lambda: setacl("acl/k", "u::rwx,u:0:rwx,g::rwx,m::rwx,o::---"))),
 ("root: chmod 2770 again", lambda: (os.chmod("acl/k", 0o2770), ust("acl/k"), getacl("acl/k"))),
 ("gid 100: setfacl by a non-owner", lambda: as_user(N + 1, 100, lambda: setacl("acl/k", "u::rwx,g::rwx,o::---"))),
 ("nobody: setfacl in the group keeps setgid", lambda: (os.chown("acl/k", N, N), os.chmod("acl/k", 0o2770), as_user(N, N, lambda: setacl("acl/k", "u::rwx,g::r-x,o::---")))),
]


def run(root, ops, clean):
    subprocess.run(["rm", "-rf"] + [os.path.join(root, n) for n in clean],
                   check=True)
    os.chdir(root)
    out = []
    for name, fn in ops:
        try:
            out.append((name, "ok", fn()))
        except OSError as e:
            out.append((name, "err", errno.errorcode.get(e.errno, e.errno)))
    return out


def main():
    if len(sys.argv) != 3:
        print(__doc__)
        return 2
    ref, mnt = sys.argv[1], sys.argv[2]
    lists = [(ROOT_OPS, ["d"])]
    if os.geteuid() == 0:
        lists.append((USER_OPS, ["t", "sg", "rf", "x", "sid", "acl"]))
    bad = total = 0
    for ops, clean in lists:
        want = run(ref, ops, clean)
        got = run(mnt, ops, clean)
        for a, b in zip(want, got):
            total += 1
            if a != b:
                bad += 1
                print("DIFF", a[0], "\n   reference:", a[1:], "\n   mount:    ", b[1:])
    print(total, "calls,", bad, "differences")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
