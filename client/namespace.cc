// Names and attributes: lookup, the namespace changes, setattr and
// extended attributes.
//
// An inode's INODE lock covers everything a node caches about it besides
// its data: its attributes, and for a directory its names (GFS2's
// directory glock). A node answers lookups and stats from its caches while
// it holds the lock SH or EX, and every change takes INODE EX on what it
// changes: the directories whose names change, and the inodes whose link
// count or ctime change, in inode order. Another node's cached answers
// therefore go (through the INODE demote hook) before any change lands.
#include <fcntl.h>
#include <sys/stat.h>

#include <algorithm>

#include "client/client_internal.h"
#include "common/fault_injection.h"
#include "common/log.h"
#include "common/status.h"

namespace rangefs::client {
namespace {

constexpr LockMode kSh = LockMode::kSh;
constexpr LockMode kEx = LockMode::kEx;
constexpr LockKind kInode = LockKind::kInode;
// Attributes whose absence a node caches (InodeState::absent_xattrs), by
// bit.
constexpr const char* kAbsentXattrs[] = {"security.capability",
                                         "system.posix_acl_access",
                                         "system.posix_acl_default"};
constexpr uint32_t kNoDefaultAcl = 1u << 2;

uint32_t AbsentBit(const std::string& name) {
  for (uint32_t i = 0; i < 3; ++i) {
    if (name == kAbsentXattrs[i]) return 1u << i;
  }
  return 0;
}
constexpr uint32_t kRenameExchange = 2;  // RENAME_EXCHANGE

absl::Status Absent(const std::string& name) {
  return MakeError(Errc::kNotFound, "no such file or directory: " + name,
                   ENOENT);
}

}  // namespace

// ------------------------------------------------------------- caches

absl::StatusOr<Dentry> Client::Impl::NameLocked(InodeState& dir,
                                                const std::string& name) {
  uint64_t epoch = 0;
  bool after_creates = true;
  {
    absl::MutexLock lock(&dir.mu);
    auto it = dir.names.find(name);
    if (it != dir.names.end()) {
      if (it->second.ino == 0) return Absent(name);
      return it->second;
    }
    if (dir.names_complete) return Absent(name);
    epoch = dir.names_epoch;
    // The creates this node sent ahead in `dir` are all cached here unless
    // names were dropped meanwhile: a name not cached is none of them.
    after_creates = dir.names_dropped_with_new;
  }
  absl::StatusOr<Attr> a = stubs_->Lookup(dir.ino, name, after_creates);
  if (!a.ok() && ErrcOf(a.status()) != Errc::kNotFound) return a.status();
  Dentry d;
  if (a.ok()) d = {a->ino, a->mode & S_IFMT};
  {
    absl::MutexLock lock(&dir.mu);
    if (dir.names_epoch == epoch) RememberName(dir, name, d);
  }
  if (!a.ok()) return a.status();
  return d;
}

void Client::Impl::RememberName(InodeState& dir, const std::string& name,
                                const Dentry& d) {
  auto it = dir.names.find(name);
  if (it != dir.names.end()) {
    it->second = d;
    return;
  }
  // Past either cap the directory starts over: memory stays bounded by
  // the node-wide cap plus one name per directory.
  if (dir.names.size() >= kMaxCachedNames ||
      cached_names_.load(std::memory_order_relaxed) >= kMaxCachedNamesTotal) {
    DropNames(dir);
  }
  dir.names.emplace(name, d);
  cached_names_.fetch_add(1, std::memory_order_relaxed);
}

void Client::Impl::DropNames(InodeState& dir) {
  if (dir.new_children > 0) dir.names_dropped_with_new = true;
  cached_names_.fetch_sub(dir.names.size(), std::memory_order_relaxed);
  dir.names.clear();
  dir.names_complete = false;
}

absl::StatusOr<Dentry> Client::Impl::LookupName(uint64_t parent,
                                                const std::string& name) {
  HeldLocks held(&locks_);
  if (absl::Status s = held.Take(kInode, parent, WholeFile(), kSh); !s.ok()) {
    return s;
  }
  return NameLocked(*GetInode(parent), name);
}

void Client::Impl::NameChanged(uint64_t dir, const std::string& name,
                               const Dentry& now) {
  std::shared_ptr<InodeState> in = GetInode(dir);
  absl::MutexLock lock(&in->mu);
  RememberName(*in, name, now);
}

void Client::Impl::NameMade(uint64_t dir, const std::string& name,
                            const absl::StatusOr<Attr>& made,
                            const Attr& dir_now) {
  if (made.ok()) {
    NameChanged(dir, name, {made->ino, made->mode & S_IFMT});
    DirChanged(dir, dir_now);
  } else {
    NameUnknown(dir, name);
    AttrChanged(dir);
  }
}

void Client::Impl::NameUnknown(uint64_t dir, const std::string& name) {
  std::shared_ptr<InodeState> in = GetInode(dir);
  {
    absl::MutexLock lock(&in->mu);
    if (in->names.erase(name) > 0) {
      cached_names_.fetch_sub(1, std::memory_order_relaxed);
    }
    // The change may or may not have happened: ask next time.
    if (in->names_complete) DropNames(*in);
  }
  // The kernel's copy of the name too.
  InvalidateNamesAbove();
}

void Client::Impl::AttrChanged(uint64_t ino) {
  if (ino == 0) return;
  if (std::shared_ptr<InodeState> in = FindInode(ino)) {
    absl::MutexLock lock(&in->mu);
    in->attr_valid = false;
  }
  // A reply the kernel is about to cache may predate the change.
  InvalidateAttributesAbove(ino);
}

void Client::Impl::DirChanged(uint64_t dir, const Attr& now) {
  if (now.ino != dir) {
    AttrChanged(dir);
    return;
  }
  std::shared_ptr<InodeState> in = GetInode(dir);
  absl::MutexLock lock(&in->mu);
  in->attr = now;
  in->attr_valid = true;
  // The cache above is not told: the change came through it (one mount is
  // one node), and the kernel drops its attributes of a directory it
  // changed itself (fuse_dir_changed).
}

void Client::Impl::ForgetInode(InodeState& in) {
  bool names;
  {
    absl::MutexLock lock(&in.mu);
    // A directory, or an inode not known not to be one.
    names = (in.attr.mode & S_IFMT) == 0 || S_ISDIR(in.attr.mode);
    in.attr_valid = false;
    in.absent_xattrs = 0;
    DropNames(in);
    ++in.names_epoch;
  }
  if (names) InvalidateNamesAbove();
}

void Client::Impl::PrepareForChange(const std::vector<uint64_t>& inos) {
  for (uint64_t ino : inos) {
    std::shared_ptr<InodeState> in = ino != 0 ? FindInode(ino) : nullptr;
    if (in == nullptr) continue;
    // Under the node's INODE EX the size of dirty data may be ahead of the
    // server's; it goes with the data, before the attributes are dropped.
    if (absl::Status s = Writeback(*in, WholeFile()); !s.ok()) {
      RANGEFS_LOG(WARNING) << "inode " << ino
                           << ": write-back before a namespace change: "
                           << s.message();
    }
    // The server frees a file that loses its last name unless it knows
    // of an open.
    if (absl::Status s = RegisterOpens(*in); !s.ok()) {
      RANGEFS_LOG(WARNING) << "inode " << ino
                           << ": registering opens before a namespace change: "
                           << s.message();
    }
  }
}

absl::Status Client::Impl::TakeInodesEx(HeldLocks& held,
                                        std::vector<uint64_t> inos) {
  std::sort(inos.begin(), inos.end());
  inos.erase(std::unique(inos.begin(), inos.end()), inos.end());
  for (uint64_t ino : inos) {
    if (ino == 0) continue;
    if (absl::Status s = held.Take(kInode, ino, WholeFile(), kEx); !s.ok()) {
      return s;
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<Dentry>> Client::Impl::LockNamesEx(
    HeldLocks& held, const std::vector<uint64_t>& dirs,
    const std::vector<std::pair<uint64_t, const std::string*>>& names) {
  // The inodes behind the names are known only by looking, and locks go in
  // inode order: look, lock, and look again under the locks until nothing
  // moved in between (each round that fails saw another node's change).
  constexpr int kMaxRounds = 64;
  for (int round = 0; round < kMaxRounds; ++round) {
    std::vector<Dentry> seen;
    for (const auto& [dir, name] : names) {
      absl::StatusOr<Dentry> d = LookupName(dir, *name);
      if (!d.ok() && ErrcOf(d.status()) != Errc::kNotFound) return d.status();
      seen.push_back(d.ok() ? *d : Dentry{});
    }
    std::vector<uint64_t> inos = dirs;
    for (const Dentry& d : seen) inos.push_back(d.ino);
    if (absl::Status s = TakeInodesEx(held, inos); !s.ok()) return s;
    bool same = true;
    for (size_t i = 0; i < names.size() && same; ++i) {
      absl::StatusOr<Dentry> d =
          NameLocked(*GetInode(names[i].first), *names[i].second);
      if (!d.ok() && ErrcOf(d.status()) != Errc::kNotFound) return d.status();
      same = (d.ok() ? d->ino : 0) == seen[i].ino;
    }
    if (same) return seen;
    held.Release();
  }
  return MakeError(Errc::kBusy, "names kept changing under a namespace call",
                   EAGAIN);
}

// ------------------------------------------------------------- lookups

absl::StatusOr<Attr> Client::Impl::Lookup(uint64_t parent,
                                          const std::string& name) {
  if (name == ".") return GetAttr(parent);
  if (name == "..") {
    // Asked of the server each time (a rename elsewhere moves it).
    absl::StatusOr<Attr> up = stubs_->Lookup(parent, name, true);
    if (!up.ok()) return up.status();
    return FileAttr(*GetInode(up->ino));
  }
  absl::StatusOr<Dentry> d = LookupName(parent, name);
  if (!d.ok()) return d.status();
  // The child's attributes under its own INODE lock, taken after the
  // directory's was let go (locks of two inodes go in inode order).
  return FileAttr(*GetInode(d->ino));
}

absl::StatusOr<Attr> Client::Impl::GetAttr(uint64_t ino) {
  return FileAttr(*GetInode(ino));
}

absl::StatusOr<Attr> Client::Impl::SetAttr(uint64_t ino,
                                           const SetAttrArgs& args) {
  std::shared_ptr<InodeState> in = GetInode(ino);
  absl::StatusOr<Attr> cur = FileAttr(*in);
  if (!cur.ok()) return cur.status();
  if (!S_ISREG(cur->mode) && (args.valid & kSetSize)) {
    return MakeError(S_ISDIR(cur->mode) ? Errc::kIsDir : Errc::kInvalidArgument,
                     "size of a non-regular file");
  }
  if (args.valid & kSetSize) {
    if (absl::Status s = Truncate(*in, args.size); !s.ok()) return s;
  }
  SetAttrArgs rest = args;
  rest.valid &= ~static_cast<uint32_t>(kSetSize);
  if (rest.valid == 0) return FileAttr(*in);
  HeldLocks held(&locks_);
  if (absl::Status s = held.Take(kInode, ino, WholeFile(), kEx); !s.ok()) {
    return s;
  }
  // Dirty data first: its commit would overwrite the times set here.
  if (absl::Status s = Writeback(*in, WholeFile()); !s.ok()) return s;
  absl::StatusOr<Attr> a = stubs_->SetAttr(locks_.session_id(), ino, rest);
  absl::MutexLock lock(&in->mu);
  if (!a.ok()) {
    in->attr_valid = false;
    return a.status();
  }
  in->attr = *a;  // Under INODE EX, written back: the server's are current.
  in->attr_valid = true;
  return *a;
}

namespace {

// relatime's rule (the VFS's relatime_need_update): an access moves the
// atime when it is not after the mtime or the ctime, or a day has passed.
bool AtimeDue(const Attr& a, const Timespec& now) {
  auto not_after = [](const Timespec& x, const Timespec& y) {
    return x.sec < y.sec || (x.sec == y.sec && x.nsec <= y.nsec);
  };
  return not_after(a.atime, a.mtime) || not_after(a.atime, a.ctime) ||
         now.sec - a.atime.sec >= 24 * 3600;
}

}  // namespace

absl::Status Client::Impl::Accessed(uint64_t ino, bool strict) {
  std::shared_ptr<InodeState> in = GetInode(ino);
  absl::StatusOr<Attr> cur = FileAttr(*in);
  if (!cur.ok()) return cur.status();
  if (!strict && !AtimeDue(*cur, NowTimespec())) return absl::OkStatus();
  HeldLocks held(&locks_);
  if (absl::Status s = held.Take(kInode, ino, WholeFile(), kEx); !s.ok()) {
    return s;
  }
  // No write-back first: a commit of dirty data leaves the atime be, and
  // the node's size and mtime, which may be ahead of the server's under
  // the EX, stay as they are.
  SetAttrArgs args;
  args.valid = kSetAtimeNow | kKeepCtime;
  absl::StatusOr<Attr> a = stubs_->SetAttr(locks_.session_id(), ino, args);
  {
    absl::MutexLock lock(&in->mu);
    if (!a.ok()) {
      in->attr_valid = false;
      return a.status();
    }
    in->attr.atime = a->atime;  // Read again from the server if not valid.
  }
  // The kernel's copy, once the EX is let go: the invalidation waits for
  // size stores of the inode under way (KernelCache), which may need it.
  held.Release();
  InvalidateAttributesAbove(ino);
  return absl::OkStatus();
}

// ----------------------------------------------------- namespace changes

uint64_t Client::Impl::LeasedIno() {
  constexpr uint64_t kLease = 1024;
  const uint64_t session = locks_.session_id();
  absl::MutexLock lock(&lease_mu_);
  if (lease_session_ != session) {  // A lost session's leases went with it.
    leases_.clear();
    lease_session_ = session;
  }
  uint64_t ino = 0;
  while (ino == 0 && !leases_.empty()) {
    auto& [next, end] = leases_.front();
    if (next < end) {
      ino = next++;
    } else {
      leases_.pop_front();
    }
  }
  uint64_t left = 0;
  for (const auto& [next, end] : leases_) left += end - next;
  if (left > kLease / 2 || leasing_) return ino;
  {
    absl::MutexLock l(&mu_);
    if (stopping_) return ino;
    ++new_file_locks_;
  }
  leasing_ = true;
  new_lock_pool_.Submit([this, session] {
    absl::StatusOr<uint64_t> first = stubs_->ReserveInodes(session, kLease);
    if (!first.ok()) {
      RANGEFS_LOG(WARNING) << "no inode number lease (creates wait for the "
                           << "metadata server): " << first.status().message();
    }
    {
      absl::MutexLock lock(&lease_mu_);
      leasing_ = false;
      if (first.ok() && lease_session_ == session) {
        leases_.emplace_back(*first, *first + kLease);
      }
    }
    absl::MutexLock lock(&mu_);
    --new_file_locks_;
  });
  return ino;
}

std::optional<Attr> Client::Impl::CreateAhead(
    const std::shared_ptr<InodeState>& dir, const std::string& name,
    uint32_t mode, const Creds& creds, uint64_t* lost) {
  // Only what the server is sure to accept (its ValidateName).
  if (!options_.create_ahead || name.empty() || name.size() > 255 ||
      name.find('/') != std::string::npos ||
      name.find('\0') != std::string::npos || name == "." || name == "..") {
    return std::nullopt;
  }
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) return std::nullopt;
  }
  // The directory's attributes (its setgid bit and group), cached from
  // now on under the caller's EX.
  absl::StatusOr<Attr> d = CachedAttr(*dir);
  if (!d.ok() || !S_ISDIR(d->mode) || d->nlink == 0) return std::nullopt;
  // A default ACL makes the new file's mode and ACL (the server's
  // MakeNode): the create is sent now.
  absl::StatusOr<std::string> acl =
      GetXattrCached(*dir, kAbsentXattrs[2], kNoDefaultAcl);
  if (acl.ok() || ErrnoOf(acl.status()) != ENODATA) return std::nullopt;
  absl::MutexLock order(&create_order_mu_);
  const uint64_t ino = LeasedIno();
  if (ino == 0) return std::nullopt;
  (void)FaultPoint("client.create_ahead.numbered");
  // What the server will make of it (MakeNode).
  Attr a;
  a.ino = ino;
  a.mode = S_IFREG | (mode & ~creds.umask & 07777);
  a.nlink = 1;
  a.uid = creds.uid;
  a.gid = (d->mode & S_ISGID) ? d->gid : creds.gid;
  a.blksize = kPageSize;
  a.generation = ino;
  a.atime = a.mtime = a.ctime = a.btime = NowTimespec();
  std::shared_ptr<InodeState> in = GetInode(ino);
  {
    absl::MutexLock lock(&in->mu);
    in->attr = a;
    in->attr_valid = true;
    *lost = in->lost;
  }
  {
    absl::MutexLock lock(&dir->mu);
    ++dir->attr.size;
    dir->attr.mtime = dir->attr.ctime = a.ctime;
    RememberName(*dir, name, Dentry{ino, S_IFREG});
    ++dir->new_children;
  }
  NewFile f{dir->ino, name, a.mode, creds, ino, a.ctime};
  ++counters.creates_ahead;
  stubs_->CreateLater(
      locks_.session_id(), std::move(f),
      [this, dir, in, name](const absl::StatusOr<Attr>& made, const Attr&) {
        if (!made.ok()) {
          // Callers were told it exists: its handles now fail with EIO.
          RANGEFS_LOG(ERROR)
              << "inode " << in->ino << " (" << name << " in directory "
              << dir->ino
              << "): the create sent ahead failed: " << made.status().message();
          ++counters.creates_ahead_failed;
          {
            absl::MutexLock lock(&in->mu);
            ++in->lost;
          }
          ForgetInode(*in);
          InvalidateAttributesAbove(in->ino);
          NameUnknown(dir->ino, name);
          AttrChanged(dir->ino);
        }
        NewChildSettled(*dir);
      });
  return a;
}

absl::StatusOr<Attr> Client::Impl::Mknod(uint64_t parent,
                                         const std::string& name, uint32_t mode,
                                         uint64_t rdev, const Creds& creds,
                                         bool exclusive) {
  HeldLocks held(&locks_);
  if (absl::Status s = TakeInodesEx(held, {parent}); !s.ok()) return s;
  Attr dir_now;
  absl::StatusOr<Attr> a =
      stubs_->Create(locks_.session_id(), parent, name, mode, rdev, creds,
                     exclusive, &dir_now);
  NameMade(parent, name, a, dir_now);
  return a;
}

absl::StatusOr<std::pair<Attr, uint64_t>> Client::Impl::Create(
    uint64_t parent, const std::string& name, uint32_t mode, int flags,
    const Creds& creds) {
  const bool excl = (flags & O_EXCL) != 0;
  absl::StatusOr<Attr> a;
  {
    HeldLocks held(&locks_);
    if (absl::Status s = TakeInodesEx(held, {parent}); !s.ok()) return s;
    // Under the directory's EX a name known absent stays absent: the call
    // makes a new file, whose attributes are the server's for as long as
    // this node then holds its INODE lock (a new inode sorts last). It
    // takes it EX, as GFS2 does a new inode's glock: what follows a create
    // is mostly a write or an unlink, which would otherwise upgrade.
    absl::StatusOr<Dentry> d = NameLocked(*GetInode(parent), name);
    if (!d.ok() && ErrcOf(d.status()) != Errc::kNotFound) return d.status();
    const bool fresh = !d.ok();
    std::shared_ptr<InodeState> dir = GetInode(parent);
    uint64_t lost = 0;
    if (std::optional<Attr> made =
            fresh ? CreateAhead(dir, name, mode, creds, &lost) : std::nullopt) {
      std::shared_ptr<InodeState> in = GetInode(made->ino);
      if (!LockNewFileLater(dir, in) &&
          !held.Take(kInode, made->ino, WholeFile(), kEx).ok()) {
        absl::MutexLock lock(&in->mu);
        in->attr_valid = false;
      }
      CountOpen(*in);  // Under the directory's EX (LockNewFileLater).
      held.Release();
      absl::StatusOr<uint64_t> fh =
          OpenCounted(in, flags & ~O_TRUNC, *made, lost);
      if (!fh.ok()) return fh.status();
      return std::make_pair(*made, *fh);
    }
    const uint32_t file_mode = S_IFREG | (mode & 07777);
    Attr dir_now;
    a = stubs_->Create(locks_.session_id(), parent, name, file_mode, 0, creds,
                       excl || fresh, &dir_now);
    if (!a.ok() && fresh && !excl && ErrcOf(a.status()) == Errc::kExists) {
      a = stubs_->Create(locks_.session_id(), parent, name, file_mode, 0, creds,
                         false, &dir_now);
    }
    NameMade(parent, name, a, dir_now);
    if (!a.ok()) return a.status();
    if (fresh && a->nlink == 1 && S_ISREG(a->mode)) {
      std::shared_ptr<InodeState> in = GetInode(a->ino);
      {
        absl::MutexLock lock(&in->mu);
        in->attr = *a;
        in->attr_valid = true;
      }
      if (LockNewFileLater(GetInode(parent), in)) {
        CountOpen(*in);  // Under the directory's EX (LockNewFileLater).
        held.Release();
        // Nothing to truncate in a new file.
        absl::StatusOr<uint64_t> fh = OpenCounted(in, flags & ~O_TRUNC, *a);
        if (!fh.ok()) return fh.status();
        return std::make_pair(*a, *fh);
      }
      if (!held.Take(kInode, a->ino, WholeFile(), kEx).ok()) {
        absl::MutexLock lock(&in->mu);
        in->attr_valid = false;
      }
    }
  }
  absl::StatusOr<uint64_t> fh = Open(a->ino, flags);
  if (!fh.ok()) return fh.status();
  absl::StatusOr<Attr> now = GetAttr(a->ino);  // Cached by now.
  if (!now.ok()) {
    (void)Close(*fh);
    return now.status();
  }
  return std::make_pair(*now, *fh);
}

absl::StatusOr<Attr> Client::Impl::Mkdir(uint64_t parent,
                                         const std::string& name, uint32_t mode,
                                         const Creds& creds) {
  HeldLocks held(&locks_);
  if (absl::Status s = TakeInodesEx(held, {parent}); !s.ok()) return s;
  Attr dir_now;
  absl::StatusOr<Attr> a =
      stubs_->Mkdir(locks_.session_id(), parent, name, mode, creds, &dir_now);
  NameMade(parent, name, a, dir_now);
  if (!a.ok()) return a;
  // Nobody can have looked into the new directory while the parent is
  // held: with its lock taken now (a new inode sorts last), the node knows
  // every name in it, so lookups of names yet to be created (one before
  // each create) need no server.
  if (TakeInodesEx(held, {a->ino}).ok()) {
    std::shared_ptr<InodeState> dir = GetInode(a->ino);
    absl::MutexLock lock(&dir->mu);
    DropNames(*dir);
    dir->names_complete = true;
    dir->attr = *a;
    dir->attr_valid = true;
  }
  return a;
}

absl::StatusOr<Attr> Client::Impl::Symlink(uint64_t parent,
                                           const std::string& name,
                                           const std::string& target,
                                           const Creds& creds) {
  HeldLocks held(&locks_);
  if (absl::Status s = TakeInodesEx(held, {parent}); !s.ok()) return s;
  Attr dir_now;
  absl::StatusOr<Attr> a = stubs_->Symlink(locks_.session_id(), parent, name,
                                           target, creds, &dir_now);
  NameMade(parent, name, a, dir_now);
  return a;
}

absl::StatusOr<Attr> Client::Impl::Link(uint64_t ino, uint64_t new_parent,
                                        const std::string& new_name) {
  HeldLocks held(&locks_);
  if (absl::Status s = TakeInodesEx(held, {ino, new_parent}); !s.ok()) {
    return s;
  }
  PrepareForChange({ino});
  Attr dir_now;
  absl::StatusOr<Attr> a =
      stubs_->Link(locks_.session_id(), ino, new_parent, new_name, &dir_now);
  if (a.ok()) {
    NameChanged(new_parent, new_name, {ino, a->mode & S_IFMT});
    DirChanged(new_parent, dir_now);
  } else {
    NameUnknown(new_parent, new_name);
    AttrChanged(new_parent);
  }
  AttrChanged(ino);
  if (!a.ok()) return a;
  held.Release();
  return FileAttr(*GetInode(ino));
}

absl::Status Client::Impl::RemoveName(uint64_t parent, const std::string& name,
                                      bool dir) {
  HeldLocks held(&locks_);
  absl::StatusOr<std::vector<Dentry>> seen =
      LockNamesEx(held, {parent}, {{parent, &name}});
  if (!seen.ok()) return seen.status();
  const uint64_t target = (*seen)[0].ino;
  PrepareForChange({target});
  // The file's last name (its attributes are held under the INODE EX
  // LockNamesEx took).
  bool last_name = false;
  if (std::shared_ptr<InodeState> in = dir ? nullptr : FindInode(target)) {
    absl::MutexLock lock(&in->mu);
    last_name = in->attr_valid && in->attr.nlink == 1;
  }
  absl::Status s;
  Attr dir_now;
  if (dir) {
    s = stubs_->Rmdir(locks_.session_id(), parent, name, &dir_now);
  } else {
    s = stubs_->Unlink(locks_.session_id(), parent, name, &dir_now).status();
  }
  if (s.ok()) {
    NameChanged(parent, name, Dentry{});
    DirChanged(parent, dir_now);
  } else {
    NameUnknown(parent, name);
    AttrChanged(parent);
  }
  AttrChanged(target);
  if (s.ok() && dir) ForgetInode(*GetInode(target));
  if (s.ok() && last_name) DropUnreachable(target);
  return s;
}

void Client::Impl::DropUnreachable(uint64_t ino) {
  std::shared_ptr<InodeState> in = FindInode(ino);
  if (in == nullptr || in->mmaps.load() != 0) return;
  absl::MutexLock lock(&in->open_mu);
  if (in->opens > 0) return;  // Its last close here may still read it.
  counters.pages_dropped += pages_.DropClean(ino);
}

absl::Status Client::Impl::Unlink(uint64_t parent, const std::string& name) {
  return RemoveName(parent, name, /*dir=*/false);
}

absl::Status Client::Impl::Rmdir(uint64_t parent, const std::string& name) {
  return RemoveName(parent, name, /*dir=*/true);
}

absl::Status Client::Impl::Rename(uint64_t old_parent,
                                  const std::string& old_name,
                                  uint64_t new_parent,
                                  const std::string& new_name, uint32_t flags) {
  HeldLocks held(&locks_);
  absl::StatusOr<std::vector<Dentry>> seen =
      LockNamesEx(held, {old_parent, new_parent},
                  {{old_parent, &old_name}, {new_parent, &new_name}});
  if (!seen.ok()) return seen.status();
  const Dentry moved = (*seen)[0];
  const Dentry replaced = (*seen)[1];
  PrepareForChange({moved.ino, replaced.ino});
  absl::StatusOr<uint64_t> r = stubs_->Rename(
      locks_.session_id(), old_parent, old_name, new_parent, new_name, flags);
  if (r.ok() && moved.ino == replaced.ino) {
    return absl::OkStatus();  // Two names of one file: nothing changed.
  }
  if (r.ok()) {
    const bool exchange = (flags & kRenameExchange) != 0;
    NameChanged(old_parent, old_name, exchange ? replaced : Dentry{});
    NameChanged(new_parent, new_name, moved);
  } else {
    NameUnknown(old_parent, old_name);
    NameUnknown(new_parent, new_name);
  }
  // A moved directory's ".." changed too.
  for (const Dentry& d : {moved, replaced}) {
    if (d.ino != 0 && S_ISDIR(d.mode)) ForgetInode(*GetInode(d.ino));
  }
  for (uint64_t ino : {old_parent, new_parent, moved.ino, replaced.ino}) {
    AttrChanged(ino);
  }
  if (r.ok() && *r != 0) DropUnreachable(*r);
  return r.status();
}

// -------------------------------------------------- extended attributes

absl::StatusOr<std::string> Client::Impl::GetXattr(uint64_t ino,
                                                   const std::string& name) {
  const uint32_t bit = AbsentBit(name);
  if (bit == 0) return stubs_->GetXattr(ino, name);
  HeldLocks held(&locks_);
  if (absl::Status s = held.Take(kInode, ino, WholeFile(), kSh); !s.ok()) {
    return s;
  }
  return GetXattrCached(*GetInode(ino), name, bit);
}

absl::StatusOr<std::string> Client::Impl::GetXattrCached(
    InodeState& in, const std::string& name, uint32_t bit) {
  {
    absl::MutexLock lock(&in.mu);
    if (in.absent_xattrs & bit) {
      return MakeError(Errc::kNoData, "no such attribute", ENODATA);
    }
  }
  absl::StatusOr<std::string> v = stubs_->GetXattr(in.ino, name);
  if (!v.ok() && ErrnoOf(v.status()) == ENODATA) {
    absl::MutexLock lock(&in.mu);
    in.absent_xattrs |= bit;  // Still under the caller's INODE lock.
  }
  return v;
}

// Changing attributes takes INODE EX: other nodes' cached answers go, and
// this node's cached ctime.
absl::Status Client::Impl::SetXattr(uint64_t ino, const std::string& name,
                                    const std::string& value, uint32_t flags) {
  HeldLocks held(&locks_);
  if (absl::Status s = held.Take(kInode, ino, WholeFile(), kEx); !s.ok()) {
    return s;
  }
  absl::Status s =
      stubs_->SetXattr(locks_.session_id(), ino, name, value, flags);
  XattrChanged(ino);
  return s;
}

absl::Status Client::Impl::RemoveXattr(uint64_t ino, const std::string& name) {
  HeldLocks held(&locks_);
  if (absl::Status s = held.Take(kInode, ino, WholeFile(), kEx); !s.ok()) {
    return s;
  }
  absl::Status s = stubs_->RemoveXattr(locks_.session_id(), ino, name);
  XattrChanged(ino);
  return s;
}

void Client::Impl::XattrChanged(uint64_t ino) {
  std::shared_ptr<InodeState> in = GetInode(ino);
  {
    absl::MutexLock lock(&in->mu);
    in->absent_xattrs = 0;
  }
  AttrChanged(ino);
}

}  // namespace rangefs::client
