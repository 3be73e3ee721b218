// FUSE low-level operations over librangefs. Each op_* sends exactly one
// fuse_reply_*; errors are the POSIX errno the node's status carries.
#include "client/fuse/fuse_ops.h"

#include "client/fuse/rangefs_ioctl.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "common/fault_injection.h"
#include "common/log.h"
#include "common/range.h"
#include "common/status.h"

namespace rangefs::fuse {
namespace {

using client::Attr;
using client::Client;

// How long the kernel may keep attributes the node holds the inode's
// INODE lock for: until the lock goes, which invalidates them.
constexpr double kCoveredAttrTimeout = 3600;

Mount& M(fuse_req_t req) {
  return *static_cast<Mount*>(fuse_req_userdata(req));
}

Client& C(fuse_req_t req) { return *M(req).client; }

KernelCache* KC(fuse_req_t req) { return M(req).kcache; }

// The attribute timeout for attributes from the node's cache under the
// inode's INODE lock: the INODE hooks (and the node's own changes) call
// KernelCache::InvalidateAttributes, so the kernel may keep them until
// then. Without the kernel cache nothing invalidates them: 0.
double CoveredTimeout(fuse_req_t req) {
  return KC(req) != nullptr ? kCoveredAttrTimeout : 0;
}

// How an open file's data goes: through the kernel page cache, or straight
// to the node (a mount without kernel cache). O_DIRECT opens of a cached
// mount go through the cache too: the kernel does their I/O as direct
// requests itself, and their mappings (MAP_SHARED included) are cached
// pages like any other; the daemon tells the two kinds of request apart
// (FromDirectIo). A writable cached open first drops what the kernel
// cached under INVAL SH: its pages could now be dirtied through a shared
// mapping, which needs INVAL EX.
void SetCaching(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi,
                uint64_t fh) {
  KernelCache* kc = KC(req);
  if (kc == nullptr) {
    fi->direct_io = 1;
    fi->keep_cache = 0;
    return;
  }
  const bool writable = (fi->flags & O_ACCMODE) != O_RDONLY;
  kc->Opened(fh, ino, writable);
  fi->direct_io = 0;
  fi->keep_cache = writable ? 0 : 1;
}

// Whether a READ or WRITE of a cached handle is the kernel's direct I/O
// (O_DIRECT) rather than a page-cache request (a fill, a write(2) into
// locked pages, a write-back). Only direct I/O names the calling process's
// lock owner (FUSE_READ_LOCKOWNER, FUSE_WRITE_LOCKOWNER: the kernel's
// fuse_direct_io passes current->files); readahead, read_folio and page
// writes never do, whatever the open said. A page fill must never be
// taken for direct I/O: its pages stay locked until it is answered, so it
// must count as in flight (KernelCache::Register) and go out under the
// node's INVAL lock like every fill.
bool FromDirectIo(const fuse_file_info* fi) {
  // The race suite's evidence (docs/race-suite.md, F2): going by the open's
  // O_DIRECT, as the daemon once did, a fill of a mapping of an O_DIRECT
  // descriptor takes the direct path, which then invalidates its own
  // locked page (below).
  if (UnsafeSwitch("unsafe.fuse.direct_by_open_flags")) {
    return (fi->flags & O_DIRECT) != 0;
  }
  return fi->lock_owner != 0;
}

void UndoCaching(fuse_req_t req, uint64_t fh) {
  if (KernelCache* kc = KC(req)) kc->Closed(fh);
}

bool CachedHandle(fuse_req_t req, const fuse_file_info* fi) {
  KernelCache* kc = KC(req);
  return kc != nullptr && kc->Cached(fi->fh);
}

// Drops the kernel's pages of a range the node changed behind the kernel's
// back (direct I/O, collapse/insert), after laundering its dirty ones.
void InvalidateKernel(fuse_req_t req, fuse_ino_t ino, uint64_t offset,
                      uint64_t length) {
  if (KernelCache* kc = KC(req)) kc->Invalidate(ino, offset, length);
}

int Err(const absl::Status& s) {
  int e = ErrnoOf(s);
  return e == 0 ? EIO : e;
}

struct stat ToStat(const Attr& a) {
  struct stat st;
  memset(&st, 0, sizeof(st));
  st.st_ino = a.ino;
  st.st_mode = a.mode;
  st.st_nlink = a.nlink;
  st.st_uid = a.uid;
  st.st_gid = a.gid;
  st.st_size = static_cast<off_t>(a.size);
  st.st_blocks = static_cast<blkcnt_t>(a.blocks);
  st.st_blksize = a.blksize == 0 ? 4096 : a.blksize;
  st.st_rdev = a.rdev;
  st.st_atim = {a.atime.sec, a.atime.nsec};
  st.st_mtim = {a.mtime.sec, a.mtime.nsec};
  st.st_ctim = {a.ctime.sec, a.ctime.nsec};
  return st;
}

// How long the kernel may keep a name the node answered (or made) under
// its directory's INODE lock: until the lock goes, which moves the
// kernel's dentry epoch (KernelCache::InvalidateNames), or 0.
double EntryTimeout(fuse_req_t req) {
  return KC(req) != nullptr ? KC(req)->EntryTimeout() : 0;
}

// `attr_timeout`: kCoveredAttrTimeout when the attributes come from the
// node's cache under the inode's INODE lock and the kernel's copy is
// invalidated when that lock goes (see op_getattr), else 0.
// `entry_timeout`: EntryTimeout() for a name answered under the
// directory's INODE lock, else 0.
fuse_entry_param ToEntry(const Attr& a, double attr_timeout = 0,
                         double entry_timeout = 0) {
  fuse_entry_param e;
  memset(&e, 0, sizeof(e));
  e.ino = a.ino;
  e.generation = a.generation;
  e.attr = ToStat(a);
  e.attr_timeout = attr_timeout;
  e.entry_timeout = entry_timeout;
  return e;
}

client::Creds CredsOf(fuse_req_t req) {
  const fuse_ctx* ctx = fuse_req_ctx(req);
  client::Creds c;
  c.uid = ctx->uid;
  c.gid = ctx->gid;
  c.umask = ctx->umask;
  // No supplementary groups (fuse_req_getgroups reads /proc/PID/status, two
  // system calls per create): with default_permissions the kernel checks
  // access itself and strips S_ISGID from a new file's mode and on chmod
  // (vfs_prepare_mode, setattr_prepare) before the daemon is asked.
  return c;
}

// Whether the caller of `req` is in group `gid` (its primary or a
// supplementary group).
bool InGroup(fuse_req_t req, uint32_t gid) {
  if (fuse_req_ctx(req)->gid == gid) return true;
  gid_t groups[64];
  const int n = fuse_req_getgroups(req, 64, groups);
  for (int i = 0; i < n && i < 64; ++i) {
    if (groups[i] == gid) return true;
  }
  return false;
}

// What the kernel does before a buffered write (file_remove_privs) but
// not before the requests that call this: a direct write, fallocate or a
// write through a direct-I/O open by a caller without CAP_FSETID (here:
// any uid but 0) drops S_ISUID, and S_ISGID when the file is
// group-executable or the caller is not in its group (the VFS's
// setattr_should_drop_suidgid).
uint32_t PrivsToKill(fuse_req_t req, const Attr& a) {
  if (fuse_req_ctx(req)->uid == 0) return 0;
  uint32_t kill = a.mode & S_ISUID;
  if ((a.mode & S_ISGID) && ((a.mode & S_IXGRP) || !InGroup(req, a.gid))) {
    kill |= S_ISGID;
  }
  return kill;
}

void KillPrivs(fuse_req_t req, fuse_ino_t ino) {
  if (fuse_req_ctx(req)->uid == 0) return;
  absl::StatusOr<Attr> a = C(req).GetAttr(ino);
  if (!a.ok()) return;
  const uint32_t kill = PrivsToKill(req, *a);
  if (kill == 0) return;
  client::SetAttrArgs args;
  args.valid = client::kSetMode;
  args.mode = a->mode & 07777 & ~kill;
  absl::StatusOr<Attr> done = C(req).SetAttr(ino, args);
  if (!done.ok()) {
    RANGEFS_LOG(WARNING) << "inode " << ino << ": could not drop its set-id "
                         << "bits before a write: " << done.status();
  }
  if (KernelCache* kc = KC(req)) kc->InvalidateAttributes(ino);
}

// `entry_timeout`: EntryTimeout(), read before the node was asked (the
// kernel may keep names from then on, so a lock given up after the answer
// moves the epoch). `covered`: the attributes are from the node's cache
// under the inode's INODE lock.
void ReplyEntry(fuse_req_t req, const absl::StatusOr<Attr>& a,
                double entry_timeout, bool covered = false) {
  if (!a.ok()) {
    fuse_reply_err(req, Err(a.status()));
    return;
  }
  fuse_entry_param e =
      ToEntry(*a, covered ? CoveredTimeout(req) : 0, entry_timeout);
  fuse_reply_entry(req, &e);
}

void ReplyStatus(fuse_req_t req, const absl::Status& s) {
  fuse_reply_err(req, s.ok() ? 0 : Err(s));
}

client::Timespec FromTimespec(const struct timespec& t) {
  return {t.tv_sec, static_cast<uint32_t>(t.tv_nsec)};
}

void op_init(void* userdata, fuse_conn_info* conn) {
  Mount* m = static_cast<Mount*>(userdata);
  m->initialized = true;
  // Readahead READs are background requests, and one may wait for the
  // node's locks while a callback's invalidation waits for write-back
  // WRITEs of mapped pages, also background requests: if READs waiting so
  // filled the kernel's limit of background requests (12 by default),
  // those WRITEs would queue behind them and both mounts would hang (with
  // -o max_background=1 the KernelCacheRevokes tests hang at once). The
  // limit stays below the daemon's workers (main.cc), which every request
  // needs too.
  conn->max_background = m->max_background;
  conn->congestion_threshold = m->max_background / 4 * 3;
  conn->want |= FUSE_CAP_ATOMIC_O_TRUNC;
  // Export handles name (inode, generation), and the daemon looks up "."
  // and ".." (op_lookup), so a handle outlives the kernel's cache of it.
  conn->want |= FUSE_CAP_EXPORT_SUPPORT;
  // Record locks are cluster-wide (lockd), not per mount.
  if (conn->capable & FUSE_CAP_POSIX_LOCKS) conn->want |= FUSE_CAP_POSIX_LOCKS;
  if (conn->capable & FUSE_CAP_FLOCK_LOCKS) conn->want |= FUSE_CAP_FLOCK_LOCKS;
  // Another node may change the size (truncate, fallocate, a write past
  // EOF) while this kernel caches pages and i_size: a read(2) then asks
  // for the attributes first (at most once a jiffy: attr_timeout is 0),
  // or it would return the zeros of a short read up to the stale i_size.
  conn->want |= FUSE_CAP_AUTO_INVAL_DATA;
  conn->want &= ~FUSE_CAP_WRITEBACK_CACHE;
  // POSIX ACLs: the kernel checks them (and caches them until an
  // attribute refresh or an inode notification, which an INODE lock's
  // callback sends); the metadata server keeps the mode and the lists in
  // step and applies default ACLs to new inodes, so the kernel must leave
  // the umask to it (DONT_MASK: a default ACL replaces the umask).
  if (m->acl && (conn->capable & FUSE_CAP_POSIX_ACL)) {
    conn->want |= FUSE_CAP_POSIX_ACL | FUSE_CAP_DONT_MASK;
  }
  // fuse_reply_data of a pipe then splices the reply to /dev/fuse: the
  // kernel copies the data once, into its pages (FillPipe below).
  if (m->pipe_fills && (conn->capable & FUSE_CAP_SPLICE_WRITE)) {
    conn->want |= FUSE_CAP_SPLICE_WRITE;
  } else {
    m->pipe_fills = false;
  }
  conn->max_write = 1 << 20;
  conn->max_read = m->max_read;  // libfuse checks it against the option.
}

void op_lookup(fuse_req_t req, fuse_ino_t parent, const char* name) {
  if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0) {
    // An export handle (open_by_handle_at, NFS) of an inode the kernel no
    // longer caches: "." of its number, ".." of a directory's (to
    // reconnect it). An inode freed or unlinked since is stale.
    absl::StatusOr<Attr> a = C(req).Lookup(parent, name);
    if (!a.ok() && ErrnoOf(a.status()) == ENOENT) {
      fuse_reply_err(req, ESTALE);
    } else if (a.ok() && a->nlink == 0) {
      fuse_reply_err(req, ESTALE);
    } else {
      ReplyEntry(req, a, 0);
    }
    return;
  }
  const double entry_timeout = EntryTimeout(req);
  absl::StatusOr<Attr> a = C(req).Lookup(parent, name);
  if (!a.ok() && ErrnoOf(a.status()) == ENOENT && entry_timeout > 0) {
    // The name's absence, under the directory's lock like a name (ino 0).
    fuse_entry_param e;
    memset(&e, 0, sizeof(e));
    e.entry_timeout = entry_timeout;
    fuse_reply_entry(req, &e);
    return;
  }
  ReplyEntry(req, a, entry_timeout, /*covered=*/true);
}

void op_forget(fuse_req_t req, fuse_ino_t, uint64_t) { fuse_reply_none(req); }

// The kernel drops an attribute answer that a notification of the inode
// overtook (KernelCache, "Sizes"), and goes on with its old i_size: a
// read(2) or lseek(SEEK_END) that asked stops at it, and a mapping faults
// SIGBUS past it (a stat's answer reaches its caller, who may then map
// that size). When the file grew, the size goes in by a store of its last
// byte, read through `fh` (the request's handle) or, for a request without
// one (a stat), through a handle opened here. Gives up after a few tries,
// each with a fresh size, if notifications or requests of the inode keep
// coming. Fails only when the attributes cannot be had.
absl::Status StoreSizeIfOvertaken(fuse_req_t req, fuse_ino_t ino, uint64_t fh,
                                  const KernelCache::AttrTicket& ticket,
                                  absl::StatusOr<Attr>* a) {
  KernelCache* kc = KC(req);
  // A handle opened here for the last byte, closed on the way out.
  uint64_t own = 0;
  struct CloseOwn {
    fuse_req_t req;
    uint64_t* fh;
    ~CloseOwn() {
      if (*fh != 0) (void)C(req).Close(*fh);
    }
  } close_own{req, &own};
  KernelCache::SizeStore store;
  store.size_seq = ticket.seq;  // Taken before the node was asked.
  for (int attempt = 0; attempt < 4; ++attempt) {
    if (!S_ISREG((*a)->mode) || (*a)->size == 0 ||
        !kc->Overtaken(ino, ticket)) {
      return absl::OkStatus();
    }
    const uint64_t size = (*a)->size;
    store.size = size;
    store.quiet_since = KernelCache::kAnyRequests;
    if (kc->Exclusive(ino)) {
      // A writable open: the kernel may hold the last page dirty (a
      // shared writable mapping), and the store would overwrite a byte a
      // process stored there with the node's older one. So the kernel is
      // asked what it holds at size-1 (which moves no attribute version:
      // writing the page back and dropping it first would, and then this
      // answer would surely be dropped, also when it makes i_size
      // smaller). That byte back: the kernel's i_size is that size or
      // more, and nothing needs storing. Nothing back: the byte is past
      // the kernel's i_size (no data of a process there) or its page is
      // not there; the page can only come back through a request of ours
      // (a READ, a write(2)), and if one came the store is not made.
      store.quiet_since = kc->RequestMark();
      absl::StatusOr<std::string> held = kc->Retrieve(ino, size - 1, 1);
      if (!held.ok()) {
        RANGEFS_LOG(INFO) << "inode " << ino << ": no size stored for an "
                          << "overtaken answer: " << held.status();
        return absl::OkStatus();
      }
      if (!held->empty()) return absl::OkStatus();
    }
    if (fh == 0) {
      absl::StatusOr<uint64_t> opened = C(req).Open(ino, O_RDONLY);
      if (!opened.ok()) {
        RANGEFS_LOG(INFO) << "inode " << ino << ": no handle to store the "
                          << "size of an overtaken answer: " << opened.status();
        return absl::OkStatus();
      }
      own = fh = *opened;
    }
    store.byte_seq = kc->NoticeSeq();
    absl::StatusOr<size_t> n = C(req).ReadForCache(
        fh, 1, size - 1, kc->Exclusive(ino),
        [&store](const struct iovec* iov, int count, size_t bytes) {
          if (count > 0 && bytes > 0) {
            store.last = *static_cast<char*>(iov->iov_base);
          }
        });
    if (!n.ok()) {
      // The answer goes as it is; the read(2) gets the error itself.
      RANGEFS_LOG(INFO) << "inode " << ino << ": no last byte to store the "
                        << "size of an overtaken answer: " << n.status();
      return absl::OkStatus();
    }
    if (*n == 1 && kc->StoreSize(ino, store)) return absl::OkStatus();
    // The file shrank, the node may have given up its INODE lock, a page
    // went from the kernel since the byte was read, or the last page came
    // back: ask again.
    store.size_seq = kc->NoticeSeq();
    *a = C(req).GetAttr(ino);
    if (!a->ok()) return a->status();
  }
  kc->CountSizeGivenUp();
  RANGEFS_LOG(INFO) << "inode " << ino
                    << ": gave up storing the size for an overtaken answer";
  return absl::OkStatus();
}

void op_retrieve_reply(fuse_req_t req, void* cookie, fuse_ino_t, off_t,
                       fuse_bufvec* bufv) {
  if (KernelCache* kc = KC(req)) kc->RetrieveReply(cookie, bufv);
  fuse_reply_none(req);
}

void op_getattr(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  // The kernel's first request is mostly the root's GETATTR: the dentry
  // epoch is tried here before any name exists (trying it moves the
  // epoch, which would drop the names already given).
  (void)EntryTimeout(req);
  KernelCache* kc = KC(req);
  const KernelCache::AttrTicket ticket =
      kc != nullptr ? kc->AttrAsked(ino) : KernelCache::AttrTicket{};
  absl::StatusOr<Attr> a = C(req).GetAttr(ino);
  if (!a.ok()) {
    fuse_reply_err(req, Err(a.status()));
    return;
  }
  (void)FaultPoint("fuse.getattr.before_reply");
  // Only files whose pages the kernel may hold (opened through its cache
  // here) can be mapped or read past a stale size.
  if (kc != nullptr && kc->MayCache(ino)) {
    const uint64_t fh =
        fi != nullptr && CachedHandle(req, fi) ? fi->fh : uint64_t{0};
    absl::Status s = StoreSizeIfOvertaken(req, ino, fh, ticket, &a);
    if (!s.ok()) {
      fuse_reply_err(req, Err(s));
      return;
    }
  }
  struct stat st = ToStat(*a);
  fuse_reply_attr(req, &st, CoveredTimeout(req));
}

void op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat* attr, int valid,
                fuse_file_info*) {
  client::SetAttrArgs args;
  if (valid & FUSE_SET_ATTR_MODE) {
    args.valid |= client::kSetMode;
    args.mode = attr->st_mode;
  }
  if (valid & FUSE_SET_ATTR_UID) {
    args.valid |= client::kSetUid;
    args.uid = attr->st_uid;
  }
  if (valid & FUSE_SET_ATTR_GID) {
    args.valid |= client::kSetGid;
    args.gid = attr->st_gid;
  }
  if (valid & FUSE_SET_ATTR_SIZE) {
    args.valid |= client::kSetSize;
    args.size = static_cast<uint64_t>(attr->st_size);
    // The kernel drops S_ISGID only from a group-executable file; a
    // caller outside the file's group drops it from any (the VFS rule).
    if (fuse_req_ctx(req)->uid != 0) {
      absl::StatusOr<Attr> a = C(req).GetAttr(ino);
      const uint32_t kill = a.ok() ? PrivsToKill(req, *a) : 0;
      if (kill != 0) {
        if (!(args.valid & client::kSetMode)) {
          args.valid |= client::kSetMode;
          args.mode = a->mode;
        }
        args.mode &= ~kill;
      }
    }
  }
  if (valid & FUSE_SET_ATTR_ATIME_NOW) {
    args.valid |= client::kSetAtimeNow;
  } else if (valid & FUSE_SET_ATTR_ATIME) {
    args.valid |= client::kSetAtime;
    args.atime = FromTimespec(attr->st_atim);
  }
  if (valid & FUSE_SET_ATTR_MTIME_NOW) {
    args.valid |= client::kSetMtimeNow;
  } else if (valid & FUSE_SET_ATTR_MTIME) {
    args.valid |= client::kSetMtime;
    args.mtime = FromTimespec(attr->st_mtim);
  }
  if (valid & FUSE_SET_ATTR_CTIME) {
    args.valid |= client::kSetCtime;
    args.ctime = FromTimespec(attr->st_ctim);
  }
  absl::StatusOr<Attr> a = C(req).SetAttr(ino, args);
  if (!a.ok()) {
    fuse_reply_err(req, Err(a.status()));
    return;
  }
  struct stat st = ToStat(*a);
  fuse_reply_attr(req, &st, 0);
}

void op_readlink(fuse_req_t req, fuse_ino_t ino) {
  absl::StatusOr<std::string> t = C(req).Readlink(ino);
  if (!t.ok()) {
    fuse_reply_err(req, Err(t.status()));
    return;
  }
  fuse_reply_readlink(req, t->c_str());
}

void op_mknod(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode,
              dev_t rdev) {
  const double entry_timeout = EntryTimeout(req);
  ReplyEntry(req, C(req).Mknod(parent, name, mode, rdev, CredsOf(req)),
             entry_timeout);
}

void op_mkdir(fuse_req_t req, fuse_ino_t parent, const char* name,
              mode_t mode) {
  const double entry_timeout = EntryTimeout(req);
  ReplyEntry(req, C(req).Mkdir(parent, name, mode, CredsOf(req)),
             entry_timeout);
}

void op_unlink(fuse_req_t req, fuse_ino_t parent, const char* name) {
  ReplyStatus(req, C(req).Unlink(parent, name));
}

void op_rmdir(fuse_req_t req, fuse_ino_t parent, const char* name) {
  ReplyStatus(req, C(req).Rmdir(parent, name));
}

void op_symlink(fuse_req_t req, const char* link, fuse_ino_t parent,
                const char* name) {
  const double entry_timeout = EntryTimeout(req);
  ReplyEntry(req, C(req).Symlink(parent, name, link, CredsOf(req)),
             entry_timeout);
}

void op_rename(fuse_req_t req, fuse_ino_t parent, const char* name,
               fuse_ino_t newparent, const char* newname, unsigned int flags) {
  if (flags & ~(RENAME_NOREPLACE | RENAME_EXCHANGE)) {
    fuse_reply_err(req, EINVAL);
    return;
  }
  ReplyStatus(req, C(req).Rename(parent, name, newparent, newname, flags));
}

void op_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent,
             const char* newname) {
  const double entry_timeout = EntryTimeout(req);
  ReplyEntry(req, C(req).Link(ino, newparent, newname), entry_timeout,
             /*covered=*/true);
}

// The kernel never moves a FUSE inode's atime (S_NOATIME): an open for
// reading, or of a directory, moves it here by the mount's atime flags
// before the open is answered. Reads the kernel then serves from its
// cache do not reach the daemon, so under strictatime it is each open,
// not each read, that moves it (as a client of NFS sees).
void NoteAccess(fuse_req_t req, fuse_ino_t ino, int flags, bool dir) {
  const Mount& m = M(req);
  const Atime rule = m.atime.load(std::memory_order_relaxed);
  if (rule == Atime::kNever || (flags & O_NOATIME) ||
      (dir ? m.nodiratime.load(std::memory_order_relaxed)
           : (flags & O_ACCMODE) == O_WRONLY)) {
    return;
  }
  absl::Status s = C(req).Accessed(ino, rule == Atime::kAlways);
  if (!s.ok()) {
    RANGEFS_LOG(WARNING) << "inode " << ino << ": atime not moved: " << s;
  }
}

void op_open(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  absl::StatusOr<uint64_t> fh = C(req).Open(ino, fi->flags);
  if (!fh.ok()) {
    fuse_reply_err(req, Err(fh.status()));
    return;
  }
  NoteAccess(req, ino, fi->flags, /*dir=*/false);
  fi->fh = *fh;
  SetCaching(req, ino, fi, *fh);
  if (fuse_reply_open(req, fi) == -ENOENT) {
    UndoCaching(req, *fh);
    (void)C(req).Close(*fh);
  }
}

void op_create(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode,
               fuse_file_info* fi) {
  const double entry_timeout = EntryTimeout(req);
  absl::StatusOr<std::pair<Attr, uint64_t>> r =
      C(req).Create(parent, name, mode, fi->flags, CredsOf(req));
  if (!r.ok()) {
    fuse_reply_err(req, Err(r.status()));
    return;
  }
  fi->fh = r->second;
  SetCaching(req, r->first.ino, fi, r->second);
  fuse_entry_param e = ToEntry(r->first, CoveredTimeout(req), entry_timeout);
  if (fuse_reply_create(req, &e, fi) == -ENOENT) {
    UndoCaching(req, fi->fh);
    (void)C(req).Close(fi->fh);
  }
}

// A worker's pipe for cold READs (Client::FillPipe): the data servers'
// bytes are spliced into it, and fuse_reply_data splices them on (through
// libfuse's own pipe) to /dev/fuse, where the kernel copies them into its
// pages. That is one copy in all; through the node's pages it is two (the
// socket's into the frames, the reply's into the kernel's pages).
class WorkerPipe {
 public:
  // Twice the largest READ (max_read, main.cc): a pipe counts fragments,
  // not bytes. The most a process without CAP_SYS_RESOURCE may ask for
  // (/proc/sys/fs/pipe-max-size, 1 MiB by default).
  static constexpr int kBytes = 1 << 20;
  // This thread's pipe; null when none of kBytes can be had.
  static WorkerPipe* Get() {
    thread_local WorkerPipe pipe;
    if (pipe.capacity_ >= static_cast<size_t>(kBytes)) return &pipe;
    static std::atomic<bool> told{false};
    if (!told.exchange(true)) {
      RANGEFS_LOG(WARNING) << "no pipe of " << kBytes << " bytes (errno "
                           << pipe.errno_ << "): cold READs go through the "
                           << "node's pages, one copy more";
    }
    return nullptr;
  }
  ~WorkerPipe() {
    for (int fd : fds_) {
      if (fd >= 0) close(fd);
    }
  }
  int read_fd() const { return fds_[0]; }
  int write_fd() const { return fds_[1]; }
  size_t capacity() const { return capacity_; }

 private:
  WorkerPipe() {
    if (pipe2(fds_, O_NONBLOCK | O_CLOEXEC) != 0) {
      errno_ = errno;
      return;
    }
    const int got = fcntl(fds_[0], F_SETPIPE_SZ, kBytes);
    if (got > 0) capacity_ = static_cast<size_t>(got);
    if (got < 0) errno_ = errno;
  }
  int fds_[2] = {-1, -1};
  size_t capacity_ = 0;
  int errno_ = 0;
};

void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
             fuse_file_info* fi) {
  const uint64_t pos = static_cast<uint64_t>(off);
  const bool cached = CachedHandle(req, fi);
  if (!cached || FromDirectIo(fi)) {
    // Straight from the node. An O_DIRECT read of a cached handle: the
    // kernel wrote its dirty pages of the range back before it asked (in
    // the reader's own context), so nothing here touches its pages.
    std::unique_ptr<char[]> buf(new char[size]);
    if (cached && UnsafeSwitch("unsafe.fuse.direct_by_open_flags") &&
        KC(req)->Exclusive(ino)) {
      // What the daemon did for stores through shared mappings.
      InvalidateKernel(req, ino, pos, size);
    }
    absl::StatusOr<size_t> n =
        C(req).Read(fi->fh, buf.get(), size, pos,
                    cached ? Client::Io::kDirect : Client::Io::kAsOpened);
    if (!n.ok()) {
      fuse_reply_err(req, Err(n.status()));
      return;
    }
    fuse_reply_buf(req, buf.get(), *n);
    return;
  }
  // The kernel fills its page cache: the reply goes out under the node's
  // INVAL lock, and the request counts as in flight (its pages locked)
  // until then.
  KernelCache* kc = KC(req);
  const uint64_t id = kc->Register(ino, pos, size);
  bool replied = false;
  // Cold: through the worker's pipe. Below two pages libfuse copies out of
  // the pipe instead: those go through the node's pages.
  client::Client::FillPipe pipe;
  WorkerPipe* wp = static_cast<Mount*>(fuse_req_userdata(req))->pipe_fills &&
                           size >= 2 * 4096
                       ? WorkerPipe::Get()
                       : nullptr;
  if (wp != nullptr) {
    pipe.read_fd = wp->read_fd();
    pipe.write_fd = wp->write_fd();
    pipe.capacity = wp->capacity();
    pipe.deliver = [&](size_t bytes) {
      fuse_bufvec data = FUSE_BUFVEC_INIT(bytes);
      data.buf[0].flags = FUSE_BUF_IS_FD;
      data.buf[0].fd = wp->read_fd();
      fuse_reply_data(req, &data, static_cast<fuse_buf_copy_flags>(0));
      replied = true;
      kc->Unregister(ino, id);
    };
  }
  // Cached: the reply goes out of the node's page frames (writev), no copy.
  absl::StatusOr<size_t> n = C(req).ReadForCache(
      fi->fh, size, pos, kc->Exclusive(ino),
      [&](const struct iovec* iov, int count, size_t) {
        fuse_reply_iov(req, iov, count);
        replied = true;
        kc->Unregister(ino, id);
      },
      wp != nullptr ? &pipe : nullptr);
  if (!replied) {
    if (n.ok()) {
      fuse_reply_buf(req, nullptr, 0);  // EOF.
    } else {
      RANGEFS_LOG(WARNING) << "inode " << ino << ": read of " << size << " at "
                           << pos << " failed: " << n.status();
      fuse_reply_err(req, Err(n.status()));
    }
    kc->Unregister(ino, id);
  }
}

void op_write(fuse_req_t req, fuse_ino_t ino, const char* buf, size_t size,
              off_t off, fuse_file_info* fi) {
  const uint64_t pos = static_cast<uint64_t>(off);
  absl::StatusOr<size_t> n;
  const bool cached = CachedHandle(req, fi);
  if (!cached || FromDirectIo(fi)) {
    // Straight to the node. An O_DIRECT write of a cached handle: the
    // kernel writes back and drops its pages of the range before and after
    // (in the writer's own context, under its i_rwsem), as for any
    // filesystem; the node's DF keeps fills of the range out meanwhile.
    KillPrivs(req, ino);
    n = C(req).Write(fi->fh, buf, size, pos,
                     cached ? Client::Io::kDirect : Client::Io::kAsOpened);
  } else if (fi->writepage) {
    // The kernel writes back pages dirtied through a shared mapping, maybe
    // from inside our own callback's invalidation: never wait for a lock.
    n = C(req).WriteFromCache(fi->fh, buf, size, pos);
    // The node moved mtime; the kernel's copy of it is old.
    if (KernelCache* kc = KC(req)) kc->InvalidateAttributes(ino);
  } else {
    // write(2): its pages stay locked (a partial page) until we answer.
    KernelCache* kc = KC(req);
    const uint64_t id = kc->Register(ino, pos, size);
    n = C(req).Write(fi->fh, buf, size, pos, Client::Io::kBuffered);
    if (n.ok()) {
      fuse_reply_write(req, *n);
    } else {
      fuse_reply_err(req, Err(n.status()));
    }
    kc->Unregister(ino, id);
    return;
  }
  if (!n.ok()) {
    fuse_reply_err(req, Err(n.status()));
    return;
  }
  fuse_reply_write(req, *n);
}

// close(2): data is written back at the node's last close (release) or by
// the lock protocol; what close must report is data already lost. A close
// also drops the closing process's fcntl locks on the file (POSIX).
void op_flush(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  C(req).ReleaseLocks(ino, fi->lock_owner, /*flock=*/false);
  ReplyStatus(req, C(req).CheckError(fi->fh));
}

void op_release(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  if (fi->flock_release) C(req).ReleaseLocks(ino, fi->lock_owner, true);
  std::set<uint64_t> owners;
  {
    Mount& m = M(req);
    absl::MutexLock lock(&m.owners_mu);
    auto it = m.lock_owners.find(fi->fh);
    if (it != m.lock_owners.end()) {
      owners = std::move(it->second);
      m.lock_owners.erase(it);
    }
  }
  for (uint64_t owner : owners) C(req).ReleaseLocks(ino, owner, false);
  UndoCaching(req, fi->fh);
  (void)C(req).Close(fi->fh);
  fuse_reply_err(req, 0);
}

void op_fsync(fuse_req_t req, fuse_ino_t, int datasync, fuse_file_info* fi) {
  ReplyStatus(req, C(req).Fsync(fi->fh, datasync != 0));
}

void op_fsyncdir(fuse_req_t req, fuse_ino_t ino, int, fuse_file_info*) {
  ReplyStatus(req, C(req).FsyncDir(ino));
}

// A directory listing in progress: entries fetched so far, by position.
// The node's open handle (`fh`) keeps a directory that is removed while
// open (rmdir, or a rename over it) until the last close, as a file's
// does: its descriptor still stats (nlink 0) and lists (empty).
struct DirHandle {
  std::mutex mu;
  uint64_t fh = 0;
  std::vector<client::DirEntry> entries;  // "." and ".." first.
  bool eof = false;
};

void op_opendir(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  absl::StatusOr<Attr> a = C(req).GetAttr(ino);
  if (!a.ok()) {
    fuse_reply_err(req, Err(a.status()));
    return;
  }
  if (!S_ISDIR(a->mode)) {
    fuse_reply_err(req, ENOTDIR);
    return;
  }
  absl::StatusOr<uint64_t> fh = C(req).Open(ino, O_RDONLY | O_DIRECTORY);
  if (!fh.ok()) {
    fuse_reply_err(req, Err(fh.status()));
    return;
  }
  NoteAccess(req, ino, fi->flags, /*dir=*/true);
  auto* d = new DirHandle;
  d->fh = *fh;
  d->entries.push_back({".", ino, S_IFDIR, {}});
  d->entries.push_back({"..", ino, S_IFDIR, {}});
  fi->fh = reinterpret_cast<uint64_t>(d);
  if (fuse_reply_open(req, fi) == -ENOENT) {  // The opener went away.
    (void)C(req).Close(d->fh);
    delete d;
  }
}

void ReadDir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
             fuse_file_info* fi, bool plus) {
  auto* d = reinterpret_cast<DirHandle*>(fi->fh);
  std::vector<char> buf(size);
  size_t used = 0;
  int error = 0;
  std::unique_lock<std::mutex> lock(d->mu);
  for (size_t i = static_cast<size_t>(off);;) {
    if (i >= d->entries.size()) {
      if (d->eof) break;
      std::string after =
          d->entries.size() > 2 ? d->entries.back().name : std::string();
      absl::StatusOr<client::DirPage> page =
          C(req).ReadDir(ino, after, 256, plus);
      if (!page.ok()) {
        if (used == 0) error = Err(page.status());
        break;
      }
      for (auto& e : page->entries) d->entries.push_back(std::move(e));
      d->eof = page->eof || page->entries.empty();
      continue;
    }
    const client::DirEntry& e = d->entries[i];
    size_t n;
    if (plus) {
      fuse_entry_param p;
      if (i < 2) {
        memset(&p, 0, sizeof(p));
        p.attr.st_ino = e.ino;
        p.attr.st_mode = S_IFDIR;
      } else {
        // No entry timeout: the kernel takes the epoch for these when the
        // reply arrives, and a listing's later pages may predate it.
        p = ToEntry(e.attr);
      }
      n = fuse_add_direntry_plus(req, buf.data() + used, size - used,
                                 e.name.c_str(), &p, static_cast<off_t>(i + 1));
    } else {
      struct stat st;
      memset(&st, 0, sizeof(st));
      st.st_ino = e.ino;
      st.st_mode = e.type;
      n = fuse_add_direntry(req, buf.data() + used, size - used, e.name.c_str(),
                            &st, static_cast<off_t>(i + 1));
    }
    if (n > size - used) break;
    used += n;
    ++i;
  }
  // Once the reply is out the kernel may release the handle at once (a
  // RELEASEDIR on another thread): nothing of `d` is touched after it.
  lock.unlock();
  if (error != 0) {
    fuse_reply_err(req, error);
  } else {
    fuse_reply_buf(req, buf.data(), used);
  }
}

void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                fuse_file_info* fi) {
  ReadDir(req, ino, size, off, fi, false);
}

void op_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                    fuse_file_info* fi) {
  ReadDir(req, ino, size, off, fi, true);
}

void op_releasedir(fuse_req_t req, fuse_ino_t, fuse_file_info* fi) {
  auto* d = reinterpret_cast<DirHandle*>(fi->fh);
  (void)C(req).Close(d->fh);
  delete d;
  fuse_reply_err(req, 0);
}

void op_statfs(fuse_req_t req, fuse_ino_t) {
  absl::StatusOr<client::FsStat> s = C(req).StatFs();
  if (!s.ok()) {
    fuse_reply_err(req, Err(s.status()));
    return;
  }
  struct statvfs st;
  memset(&st, 0, sizeof(st));
  st.f_bsize = s->block_size;
  st.f_frsize = s->block_size;
  st.f_blocks = s->total_blocks;
  st.f_bfree = s->free_blocks;
  st.f_bavail = s->free_blocks;
  st.f_files = s->files + s->free_files;  // The total; files are in use.
  st.f_ffree = s->free_files;
  st.f_favail = s->free_files;
  st.f_namemax = s->name_max;
  fuse_reply_statfs(req, &st);
}

void op_setxattr(fuse_req_t req, fuse_ino_t ino, const char* name,
                 const char* value, size_t size, int flags) {
  uint32_t f = static_cast<uint32_t>(flags) & 3;
  if (strcmp(name, "system.posix_acl_access") == 0 &&
      fuse_req_ctx(req)->uid != 0) {
    // Setting an ACL drops S_ISGID for a caller outside the file's group
    // (posix_acl_update_mode); the kernel says so only to daemons that
    // take FUSE_SETXATTR_EXT, so the mount decides as it would.
    absl::StatusOr<Attr> a = C(req).GetAttr(ino);
    if (a.ok() && (a->mode & S_ISGID) && !InGroup(req, a->gid)) {
      f |= client::kXattrKillSgid;
    }
  }
  ReplyStatus(req, C(req).SetXattr(ino, name, std::string(value, size), f));
}

void op_getxattr(fuse_req_t req, fuse_ino_t ino, const char* name,
                 size_t size) {
  absl::StatusOr<std::string> v = C(req).GetXattr(ino, name);
  if (!v.ok()) {
    fuse_reply_err(req, Err(v.status()));
  } else if (size == 0) {
    fuse_reply_xattr(req, v->size());
  } else if (v->size() > size) {
    fuse_reply_err(req, ERANGE);
  } else {
    fuse_reply_buf(req, v->data(), v->size());
  }
}

void op_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size) {
  absl::StatusOr<std::vector<std::string>> names = C(req).ListXattr(ino);
  if (!names.ok()) {
    fuse_reply_err(req, Err(names.status()));
    return;
  }
  std::string all;
  for (const std::string& n : *names) {
    all += n;
    all.push_back('\0');
  }
  if (size == 0) {
    fuse_reply_xattr(req, all.size());
  } else if (all.size() > size) {
    fuse_reply_err(req, ERANGE);
  } else {
    fuse_reply_buf(req, all.data(), all.size());
  }
}

void op_removexattr(fuse_req_t req, fuse_ino_t ino, const char* name) {
  ReplyStatus(req, C(req).RemoveXattr(ino, name));
}

void op_fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t offset,
                  off_t length, fuse_file_info* fi) {
  if (offset < 0 || length <= 0) {
    fuse_reply_err(req, EINVAL);
    return;
  }
  KillPrivs(req, ino);
  ReplyStatus(req, C(req).Fallocate(fi->fh, static_cast<uint32_t>(mode),
                                    static_cast<uint64_t>(offset),
                                    static_cast<uint64_t>(length)));
}

// The node's counters (RANGEFS_IOC_NODE_STATS).
void NodeStatsIoctl(fuse_req_t req, size_t out_bufsz) {
  if (out_bufsz < sizeof(rangefs_node_stats)) {
    fuse_reply_err(req, EINVAL);
    return;
  }
  const client::ClientStats s = C(req).Stats();
  rangefs_node_stats out = {};
  out.session_id = s.session_id;
  out.stale_retries = s.stale_retries;
  out.inval_demotes = s.inval_demotes;
  out.lost_dirty_pages = s.lost_dirty_pages;
  out.direct_fallbacks = s.direct_fallbacks;
  out.sessions_lost = s.sessions_lost;
  fuse_reply_ioctl(req, 0, &out, sizeof out);
}

// A fault rule inside the node (RANGEFS_IOC_SET_FAULT): only on a mount
// made with fault_control=1, only from root.
void SetFaultIoctl(fuse_req_t req, const void* in_buf, size_t in_bufsz) {
  if (!M(req).fault_control || fuse_req_ctx(req)->uid != 0) {
    fuse_reply_err(req, EPERM);
    return;
  }
  rangefs_fault_spec f;
  if (in_bufsz != sizeof f) {
    fuse_reply_err(req, EINVAL);
    return;
  }
  memcpy(&f, in_buf, sizeof f);
  if (memchr(f.spec, '\0', sizeof f.spec) == nullptr) {
    fuse_reply_err(req, EINVAL);
    return;
  }
  absl::Status s = FaultRegistry::Global().SetFromSpec(f.spec);
  if (!s.ok()) {
    RANGEFS_LOG(WARNING) << "bad fault rule from an ioctl: " << s.message();
    fuse_reply_err(req, EINVAL);
    return;
  }
  RANGEFS_LOG(INFO) << "fault rule set by an ioctl: " << f.spec;
  fuse_reply_ioctl(req, 0, nullptr, 0);
}

// The ioctls of rangefs_ioctl.h: restricted ioctls, so the kernel copies
// the argument in and out (its size is in the command).
void op_ioctl(fuse_req_t req, fuse_ino_t ino, int signed_cmd, void*,
              fuse_file_info* fi, unsigned flags, const void* in_buf,
              size_t in_bufsz, size_t out_bufsz) {
  const unsigned int cmd = static_cast<unsigned int>(signed_cmd);
  if ((flags & FUSE_IOCTL_COMPAT) != 0) {
    fuse_reply_err(req, ENOTTY);
    return;
  }
  uint32_t mode = 0;
  switch (cmd) {
    case RANGEFS_IOC_NODE_STATS:
      NodeStatsIoctl(req, out_bufsz);
      return;
    case RANGEFS_IOC_SET_FAULT:
      SetFaultIoctl(req, in_buf, in_bufsz);
      return;
    case RANGEFS_IOC_COLLAPSE_RANGE:
      mode = client::kFallocCollapseRange;
      break;
    case RANGEFS_IOC_INSERT_RANGE:
      mode = client::kFallocInsertRange;
      break;
    default:
      fuse_reply_err(req, ENOTTY);
      return;
  }
  if ((flags & FUSE_IOCTL_DIR) != 0) {
    fuse_reply_err(req, EISDIR);
    return;
  }
  if (in_bufsz != sizeof(rangefs_shift_range)) {
    fuse_reply_err(req, EINVAL);
    return;
  }
  rangefs_shift_range r;
  memcpy(&r, in_buf, sizeof r);
  // Everything past the offset moves: the kernel's dirty pages there go
  // down first, its copies go after (the kernel knows nothing of it).
  InvalidateKernel(req, ino, r.offset, 0);
  absl::Status s = C(req).Fallocate(fi->fh, mode, r.offset, r.length);
  InvalidateKernel(req, ino, r.offset, 0);
  if (!s.ok()) {
    fuse_reply_err(req, Err(s));
    return;
  }
  fuse_reply_ioctl(req, 0, nullptr, 0);
}

void op_lseek(fuse_req_t req, fuse_ino_t, off_t off, int whence,
              fuse_file_info* fi) {
  if (off < 0) {
    // SEEK_DATA and SEEK_HOLE (the only ones the kernel sends): no data or
    // hole lies before the start, as ext4 and XFS answer.
    fuse_reply_err(req,
                   whence == SEEK_DATA || whence == SEEK_HOLE ? ENXIO : EINVAL);
    return;
  }
  absl::StatusOr<uint64_t> r =
      C(req).Seek(fi->fh, static_cast<uint64_t>(off), whence);
  if (!r.ok()) {
    fuse_reply_err(req, Err(r.status()));
    return;
  }
  fuse_reply_lseek(req, static_cast<off_t>(*r));
}

// ---- record locks

uint64_t LockEnd(const struct flock& l) {
  return l.l_len == 0 ? kInfinity
                      : static_cast<uint64_t>(l.l_start) +
                            static_cast<uint64_t>(l.l_len);
}

Client::LockType TypeOf(short t) {
  return t == F_RDLCK   ? Client::LockType::kRead
         : t == F_WRLCK ? Client::LockType::kWrite
                        : Client::LockType::kUnlock;
}

void op_getlk(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi,
              struct flock* lock) {
  if (lock->l_start < 0 || lock->l_len < 0) {
    fuse_reply_err(req, EINVAL);
    return;
  }
  auto c = C(req).GetLock(ino, static_cast<uint64_t>(lock->l_start),
                          LockEnd(*lock), TypeOf(lock->l_type), fi->lock_owner);
  if (!c.ok()) {
    fuse_reply_err(req, Err(c.status()));
    return;
  }
  if (!c->has_value()) {
    lock->l_type = F_UNLCK;
  } else {
    const Client::LockConflict& v = **c;
    lock->l_type = v.type == Client::LockType::kWrite ? F_WRLCK : F_RDLCK;
    lock->l_whence = SEEK_SET;
    lock->l_start = static_cast<off_t>(v.start);
    lock->l_len =
        v.end >= (1ull << 63) ? 0 : static_cast<off_t>(v.end - v.start);
    lock->l_pid = 0;  // Held by a process of another node (or owner).
  }
  fuse_reply_lock(req, lock);
}

// A waiting lock request whose process got a signal: make the wait give up.
struct LockWait {
  Client* client;
  fuse_ino_t ino;
  uint64_t owner;
  std::atomic<bool> interrupted{false};
};

void InterruptLockWait(fuse_req_t, void* data) {
  auto* w = static_cast<LockWait*>(data);
  w->interrupted = true;
  w->client->CancelLockWait(w->ino, w->owner);
}

void SetLock(fuse_req_t req, fuse_ino_t ino, uint64_t owner, uint64_t start,
             uint64_t end, Client::LockType type, bool wait, bool flock) {
  LockWait w{&C(req), ino, owner};
  if (wait) fuse_req_interrupt_func(req, InterruptLockWait, &w);
  absl::Status s = C(req).SetLock(ino, start, end, type, owner, wait, flock);
  if (wait) fuse_req_interrupt_func(req, nullptr, nullptr);
  if (!s.ok() && Err(s) == EINTR && !w.interrupted &&
      !fuse_req_interrupted(req)) {
    // Given up by this daemon (it is stopping), not by a signal: the
    // kernel turns EINTR into ERESTARTSYS to restart the call, which
    // with no signal pending reached the caller as errno 512.
    fuse_reply_err(req, ENOLCK);
    return;
  }
  ReplyStatus(req, s);
}

void op_setlk(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi,
              struct flock* lock, int sleep) {
  if (lock->l_start < 0 || lock->l_len < 0) {
    fuse_reply_err(req, EINVAL);
    return;
  }
  if (lock->l_type != F_UNLCK) {
    Mount& m = M(req);
    absl::MutexLock l(&m.owners_mu);
    m.lock_owners[fi->fh].insert(fi->lock_owner);
  }
  SetLock(req, ino, fi->lock_owner, static_cast<uint64_t>(lock->l_start),
          LockEnd(*lock), TypeOf(lock->l_type), sleep != 0, false);
}

void op_flock(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi, int op) {
  Client::LockType type = (op & LOCK_SH)   ? Client::LockType::kRead
                          : (op & LOCK_EX) ? Client::LockType::kWrite
                                           : Client::LockType::kUnlock;
  SetLock(req, ino, fi->lock_owner, 0, kInfinity, type, !(op & LOCK_NB), true);
}

fuse_lowlevel_ops MakeOps() {
  fuse_lowlevel_ops ops;
  memset(&ops, 0, sizeof(ops));
  ops.init = op_init;
  ops.lookup = op_lookup;
  ops.forget = op_forget;
  ops.getattr = op_getattr;
  ops.retrieve_reply = op_retrieve_reply;
  ops.setattr = op_setattr;
  ops.readlink = op_readlink;
  ops.mknod = op_mknod;
  ops.mkdir = op_mkdir;
  ops.unlink = op_unlink;
  ops.rmdir = op_rmdir;
  ops.symlink = op_symlink;
  ops.rename = op_rename;
  ops.link = op_link;
  ops.open = op_open;
  ops.create = op_create;
  ops.read = op_read;
  ops.write = op_write;
  ops.flush = op_flush;
  ops.fsyncdir = op_fsyncdir;
  ops.release = op_release;
  ops.fsync = op_fsync;
  ops.opendir = op_opendir;
  ops.readdir = op_readdir;
  ops.readdirplus = op_readdirplus;
  ops.releasedir = op_releasedir;
  ops.statfs = op_statfs;
  ops.setxattr = op_setxattr;
  ops.getxattr = op_getxattr;
  ops.listxattr = op_listxattr;
  ops.removexattr = op_removexattr;
  ops.fallocate = op_fallocate;
  ops.lseek = op_lseek;
  ops.ioctl = op_ioctl;
  ops.getlk = op_getlk;
  ops.setlk = op_setlk;
  ops.flock = op_flock;
  return ops;
}

}  // namespace

const fuse_lowlevel_ops& Operations() {
  static const fuse_lowlevel_ops ops = MakeOps();
  return ops;
}

}  // namespace rangefs::fuse
