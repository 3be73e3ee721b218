// MetaServer namespace operations: lookup, attributes, create, link,
// unlink, rmdir, rename, readlink, readdir.
#include <sys/stat.h>

#include <map>

#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "server/meta/meta_server.h"
#include "server/meta/meta_server_internal.h"
#include "server/meta/posix_acl.h"

namespace rangefs::meta {

absl::Status ValidateName(const std::string& name) {
  if (name.empty()) return MakeError(Errc::kInvalidArgument, "empty name");
  if (name.size() > kMaxNameLength) {
    return MakeError(Errc::kNameTooLong,
                     absl::StrCat("name of ", name.size(), " bytes"));
  }
  if (name.find('/') != std::string::npos ||
      name.find('\0') != std::string::npos) {
    return MakeError(Errc::kInvalidArgument, "name contains '/' or NUL");
  }
  if (name == "." || name == "..") {
    return MakeError(Errc::kInvalidArgument, "'.' and '..' are not entries");
  }
  return absl::OkStatus();
}

absl::StatusOr<Attr> MetaServer::Lookup(uint64_t parent,
                                        const std::string& name) {
  if (name == "..") {
    // A directory's parent (the root's is itself): what an export handle
    // of a directory is reconnected through.
    absl::StatusOr<InodeRecord> d = ReadDir(parent);
    if (!d.ok()) return d.status();
    if (d->nlink == 0) return MakeError(Errc::kNotFound, "directory removed");
    return GetAttr(d->parent);
  }
  if (absl::Status s = ValidateName(name); !s.ok()) return s;
  if (absl::StatusOr<InodeRecord> p = ReadDir(parent); !p.ok()) {
    return p.status();
  }
  absl::StatusOr<std::optional<std::pair<uint64_t, uint32_t>>> d =
      ReadDentry(parent, name);
  if (!d.ok()) return d.status();
  if (!*d) return MakeError(Errc::kNotFound, "no entry " + name);
  absl::StatusOr<InodeRecord> r = ReadInode((*d)->first);
  if (!r.ok()) return r.status();
  return AttrOf(*r);
}

absl::StatusOr<Attr> MetaServer::GetAttr(uint64_t ino) {
  absl::StatusOr<InodeRecord> r = ReadInode(ino);
  if (!r.ok()) return r.status();
  return AttrOf(*r);
}

absl::StatusOr<Attr> MetaServer::SetAttr(uint64_t session, uint64_t ino,
                                         const SetAttrArgs& a) {
  if (a.valid & ~1023u) {
    return MakeError(Errc::kInvalidArgument, "unknown setattr fields");
  }
  if ((a.valid & kKeepCtime) &&
      (a.valid & ~(kKeepCtime | kSetAtime | kSetAtimeNow)) != 0) {
    return MakeError(Errc::kInvalidArgument,
                     "keeping the ctime is for access-time updates only");
  }
  if (Attr kept; Replayed(&kept)) return kept;
  Op op(this, session, {ino});
  absl::StatusOr<InodeRecord> r = ReadInode(ino);
  if (!r.ok()) return r.status();
  Timespec now = Now();
  if (a.valid & kSetMode) {
    r->mode = (r->mode & S_IFMT) | (a.mode & 07777);
    // An access ACL's owner, group class and other entries are the mode's
    // (posix_acl_chmod).
    absl::StatusOr<std::optional<std::string>> acl =
        store_->Get(Cf::kXattrs, XattrKey(ino, kAclAccess));
    if (!acl.ok()) return acl.status();
    if (*acl) {
      absl::StatusOr<Acl> parsed = ParseAcl(**acl);
      if (!parsed.ok()) return parsed.status();
      AclChmod(&*parsed, r->mode);
      op.batch().Put(Cf::kXattrs, XattrKey(ino, kAclAccess),
                     EncodeAcl(*parsed));
    }
  }
  if (a.valid & kSetUid) r->uid = a.uid;
  if (a.valid & kSetGid) r->gid = a.gid;
  if (a.valid & kSetAtime) r->atime = a.atime;
  if (a.valid & kSetMtime) r->mtime = a.mtime;
  if (a.valid & kSetAtimeNow) r->atime = now;
  if (a.valid & kSetMtimeNow) r->mtime = now;
  if (a.valid & kSetSize) {
    if (!S_ISREG(r->mode)) {
      return MakeError(S_ISDIR(r->mode) ? Errc::kIsDir : Errc::kInvalidArgument,
                       "truncate of a non-regular file");
    }
    if (a.size > kMaxFileSize) {
      return MakeError(Errc::kFileTooBig, "size past the maximum");
    }
    if (absl::Status s = Truncate(op, *r, a.size); !s.ok()) return s;
    r->mtime = now;
  }
  if (!(a.valid & kKeepCtime)) r->ctime = (a.valid & kSetCtime) ? a.ctime : now;
  op.PutInode(*r);
  return op.Commit(AttrOf(*r));
}

absl::StatusOr<Attr> MetaServer::MakeNode(
    uint64_t session, uint64_t parent, const std::string& name, uint32_t mode,
    uint32_t umask, uint64_t rdev, const Creds& creds, bool exclusive,
    const std::string& target, Attr* parent_attr, const ChosenInode* chosen) {
  if (absl::Status s = ValidateName(name); !s.ok()) return s;
  uint32_t type = mode & S_IFMT;
  if (type != S_IFREG && type != S_IFDIR && type != S_IFLNK &&
      type != S_IFIFO && type != S_IFSOCK && type != S_IFCHR &&
      type != S_IFBLK) {
    return MakeError(Errc::kInvalidArgument, "unknown file type");
  }
  if (EntryResult kept; Replayed(&kept)) return EntryAnswer(kept, parent_attr);
  Op op(this, session, {parent});
  absl::StatusOr<InodeRecord> p = ReadDir(parent);
  if (!p.ok()) return p.status();
  if (p->nlink == 0) {
    return MakeError(Errc::kNotFound, "directory was removed");
  }
  absl::StatusOr<std::optional<std::pair<uint64_t, uint32_t>>> d =
      ReadDentry(parent, name);
  if (!d.ok()) return d.status();
  if (*d) {
    if (exclusive || type != S_IFREG) {
      return MakeError(Errc::kExists, name + " exists");
    }
    absl::StatusOr<InodeRecord> existing = ReadInode((*d)->first);
    if (!existing.ok()) return existing.status();
    if (parent_attr != nullptr) *parent_attr = AttrOf(*p);
    return AttrOf(*existing);
  }
  if (type == S_IFDIR && p->nlink >= kMaxLinks) {
    return MakeError(Errc::kTooManyLinks, "too many subdirectories");
  }
  if (absl::Status s = op.LockSeq(); !s.ok()) return s;
  seq_mu_.AssertHeld();
  InodeRecord r;
  if (chosen != nullptr) {
    if (absl::Status s = UseLeased(op, session, chosen->ino); !s.ok()) {
      return s;
    }
    r.ino = chosen->ino;
  } else {
    r.ino = next_ino_++;
  }
  ++inode_count_;
  if (next_ino_ > ino_bound_) {
    // The stored "next_ino" is a synced bound on the numbers handed out:
    // a create is not synced itself, and a number must never come back
    // after a crash to name another file.
    ino_bound_ = next_ino_ + kInodeNumbersPerSync;
    op.batch().Put(Cf::kMeta, "next_ino", std::to_string(ino_bound_));
    op.batch().RequireSync();
  }
  op.batch().Put(Cf::kMeta, "inode_count", std::to_string(inode_count_));
  // The directory's default ACL, if any, stands for the umask: the new
  // inode's access ACL is that list limited by the mode asked for, and a
  // directory inherits the default list itself (posix_acl_create).
  absl::StatusOr<std::optional<std::string>> dflt = std::nullopt;
  if (type != S_IFLNK)
    dflt = store_->Get(Cf::kXattrs, XattrKey(parent, kAclDefault));
  if (!dflt.ok()) return dflt.status();
  std::optional<Acl> access;
  if (*dflt) {
    absl::StatusOr<Acl> parsed = ParseAcl(**dflt);
    if (!parsed.ok()) return parsed.status();
    access = std::move(*parsed);
    mode = (mode & S_IFMT) | AclCreate(&*access, mode & 07777);
  } else {
    mode = (mode & S_IFMT) | (mode & ~umask & 07777);
  }
  r.mode = mode;
  r.rdev = rdev;
  r.uid = creds.uid;
  r.gid = creds.gid;
  if (p->mode & S_ISGID) {
    // setgid directory: the group is inherited, and so is the bit by
    // subdirectories.
    r.gid = p->gid;
    if (type == S_IFDIR) r.mode |= S_ISGID;
  }
  r.nlink = type == S_IFDIR ? 2 : 1;
  r.parent = type == S_IFDIR ? parent : 0;
  r.generation = r.ino;
  r.symlink = target;
  r.size = type == S_IFLNK ? target.size() : 0;
  r.atime = r.mtime = r.ctime = r.btime =
      chosen != nullptr ? chosen->time : Now();
  op.PutInode(r);
  if (access) {
    if (!AclIsMode(*access)) {
      op.batch().Put(Cf::kXattrs, XattrKey(r.ino, kAclAccess),
                     EncodeAcl(*access));
    }
    if (type == S_IFDIR) {
      op.batch().Put(Cf::kXattrs, XattrKey(r.ino, kAclDefault), **dflt);
    }
  }
  op.batch().Put(Cf::kDentries, DentryKey(parent, name),
                 EncodeDentry(r.ino, type));
  if (type == S_IFDIR) ++p->nlink;
  ++p->size;
  p->mtime = p->ctime = r.ctime;
  op.PutInode(*p);
  return EntryAnswer(op.Commit(EntryResult{AttrOf(r), AttrOf(*p)}),
                     parent_attr);
}

absl::StatusOr<Attr> MetaServer::Create(uint64_t session, uint64_t parent,
                                        const std::string& name, uint32_t mode,
                                        uint64_t rdev, const Creds& creds,
                                        bool exclusive, uint32_t umask,
                                        Attr* parent_attr,
                                        const ChosenInode* chosen) {
  if ((mode & S_IFMT) == 0) mode |= S_IFREG;
  if ((mode & S_IFMT) == S_IFDIR || (mode & S_IFMT) == S_IFLNK) {
    return MakeError(Errc::kInvalidArgument,
                     "create makes files, not directories or symlinks");
  }
  if (chosen != nullptr &&
      ((mode & S_IFMT) != S_IFREG || chosen->time.nsec >= 1000000000)) {
    return MakeError(Errc::kInvalidArgument,
                     "a chosen inode number is for a regular file, with a "
                     "valid time");
  }
  return MakeNode(session, parent, name, mode, umask, rdev, creds, exclusive,
                  "", parent_attr, chosen);
}

absl::StatusOr<Attr> MetaServer::Mkdir(uint64_t session, uint64_t parent,
                                       const std::string& name, uint32_t mode,
                                       const Creds& creds, uint32_t umask,
                                       Attr* parent_attr) {
  return MakeNode(session, parent, name, S_IFDIR | (mode & 07777), umask, 0,
                  creds, true, "", parent_attr);
}

absl::StatusOr<Attr> MetaServer::Symlink(uint64_t session, uint64_t parent,
                                         const std::string& name,
                                         const std::string& target,
                                         const Creds& creds,
                                         Attr* parent_attr) {
  if (target.empty() || target.size() > kMaxSymlinkLength ||
      target.find('\0') != std::string::npos) {
    return MakeError(target.size() > kMaxSymlinkLength ? Errc::kNameTooLong
                                                       : Errc::kInvalidArgument,
                     "bad symlink target");
  }
  return MakeNode(session, parent, name, S_IFLNK | 0777, 0, 0, creds, true,
                  target, parent_attr);
}

absl::StatusOr<Attr> MetaServer::Link(uint64_t session, uint64_t ino,
                                      uint64_t new_parent,
                                      const std::string& new_name,
                                      Attr* parent_attr) {
  if (absl::Status s = ValidateName(new_name); !s.ok()) return s;
  if (EntryResult kept; Replayed(&kept)) return EntryAnswer(kept, parent_attr);
  Op op(this, session, {ino, new_parent});
  absl::StatusOr<InodeRecord> r = ReadInode(ino);
  if (!r.ok()) return r.status();
  if (S_ISDIR(r->mode)) {
    return MakeError(Errc::kPermission, "hard link to a directory");
  }
  if (r->nlink == 0) return MakeError(Errc::kNotFound, "inode was unlinked");
  if (r->nlink >= kMaxLinks) return MakeError(Errc::kTooManyLinks, "links");
  absl::StatusOr<InodeRecord> p = ReadDir(new_parent);
  if (!p.ok()) return p.status();
  if (p->nlink == 0) return MakeError(Errc::kNotFound, "directory removed");
  absl::StatusOr<std::optional<std::pair<uint64_t, uint32_t>>> d =
      ReadDentry(new_parent, new_name);
  if (!d.ok()) return d.status();
  if (*d) return MakeError(Errc::kExists, new_name + " exists");
  Timespec now = Now();
  ++r->nlink;
  r->ctime = now;
  op.batch().Put(Cf::kDentries, DentryKey(new_parent, new_name),
                 EncodeDentry(ino, r->mode & S_IFMT));
  ++p->size;
  p->mtime = p->ctime = now;
  op.PutInode(*r);
  op.PutInode(*p);
  return EntryAnswer(op.Commit(EntryResult{AttrOf(*r), AttrOf(*p)}),
                     parent_attr);
}

absl::StatusOr<std::unique_ptr<MetaServer::Op>> MetaServer::LockEntry(
    uint64_t session, uint64_t parent, const std::string& name, uint64_t* ino) {
  for (;;) {
    auto d = ReadDentry(parent, name);
    if (!d.ok()) return d.status();
    if (!*d) {
      if (absl::StatusOr<InodeRecord> p = ReadDir(parent); !p.ok()) {
        return p.status();
      }
      return MakeError(Errc::kNotFound, "no entry " + name);
    }
    *ino = (*d)->first;
    auto op = std::make_unique<Op>(this, session,
                                   std::vector<uint64_t>{parent, *ino});
    auto again = ReadDentry(parent, name);
    if (!again.ok()) return again.status();
    if (*again && (*again)->first == *ino) return op;
    // Raced with another operation on the entry: look again.
  }
}

absl::StatusOr<UnlinkResult> MetaServer::Unlink(uint64_t session,
                                                uint64_t parent,
                                                const std::string& name,
                                                bool keep_if_open) {
  if (absl::Status s = ValidateName(name); !s.ok()) return s;
  if (UnlinkResult kept; Replayed(&kept)) return kept;
  uint64_t ino = 0;
  absl::StatusOr<std::unique_ptr<Op>> locked =
      LockEntry(session, parent, name, &ino);
  if (!locked.ok()) return locked.status();
  Op& op = **locked;
  absl::StatusOr<InodeRecord> p = ReadDir(parent);
  if (!p.ok()) return p.status();
  absl::StatusOr<InodeRecord> r = ReadInode(ino);
  if (!r.ok()) return r.status();
  if (S_ISDIR(r->mode))
    return MakeError(Errc::kIsDir, name + " is a directory");
  Timespec now = Now();
  op.batch().Delete(Cf::kDentries, DentryKey(parent, name));
  --p->size;
  p->mtime = p->ctime = now;
  op.PutInode(*p);
  --r->nlink;
  r->ctime = now;
  UnlinkResult result{ino, false, {}};
  if (absl::Status s = DropLink(op, *r, keep_if_open, &result.orphaned);
      !s.ok()) {
    return s;
  }
  result.parent = AttrOf(*p);
  return op.Commit(result);
}

absl::StatusOr<UnlinkResult> MetaServer::Rmdir(uint64_t session,
                                               uint64_t parent,
                                               const std::string& name) {
  if (name == "..") return MakeError(Errc::kNotEmpty, "rmdir ..");
  if (absl::Status s = ValidateName(name); !s.ok()) return s;
  if (UnlinkResult kept; Replayed(&kept)) return kept;
  uint64_t ino = 0;
  absl::StatusOr<std::unique_ptr<Op>> locked =
      LockEntry(session, parent, name, &ino);
  if (!locked.ok()) return locked.status();
  Op& op = **locked;
  absl::StatusOr<InodeRecord> p = ReadDir(parent);
  if (!p.ok()) return p.status();
  absl::StatusOr<InodeRecord> r = ReadInode(ino);
  if (!r.ok()) return r.status();
  if (!S_ISDIR(r->mode)) {
    return MakeError(Errc::kNotDir, name + " is not a directory");
  }
  absl::StatusOr<bool> empty = DirIsEmpty(ino);
  if (!empty.ok()) return empty.status();
  if (!*empty) return MakeError(Errc::kNotEmpty, name + " is not empty");
  Timespec now = Now();
  op.batch().Delete(Cf::kDentries, DentryKey(parent, name));
  --p->size;
  --p->nlink;
  p->mtime = p->ctime = now;
  op.PutInode(*p);
  // Open somewhere: kept (nlink 0, an orphan) until its last close.
  r->nlink = 0;
  r->ctime = now;
  UnlinkResult result{ino, false, {}};
  if (absl::Status s = DropLink(op, *r, false, &result.orphaned); !s.ok()) {
    return s;
  }
  result.parent = AttrOf(*p);
  return op.Commit(result);
}

absl::Status MetaServer::CheckNotAncestor(uint64_t ino, uint64_t dir) {
  // Walk up from `dir`; rename_mu_ keeps parent pointers still meanwhile.
  for (uint64_t cur = dir, steps = 0;; ++steps) {
    if (cur == ino) {
      return MakeError(Errc::kInvalidArgument,
                       "cannot move a directory into itself");
    }
    if (cur == kRootIno || steps > (1u << 20)) return absl::OkStatus();
    absl::StatusOr<InodeRecord> r = ReadInode(cur);
    if (!r.ok()) return r.status();
    cur = r->parent;
  }
}

absl::StatusOr<UnlinkResult> MetaServer::Rename(
    uint64_t session, uint64_t old_parent, const std::string& old_name,
    uint64_t new_parent, const std::string& new_name, uint32_t flags) {
  if (absl::Status s = ValidateName(old_name); !s.ok()) return s;
  if (absl::Status s = ValidateName(new_name); !s.ok()) return s;
  if ((flags & ~3u) != 0 || flags == 3) {
    return MakeError(Errc::kInvalidArgument, "bad rename flags");
  }
  if (UnlinkResult kept; Replayed(&kept)) return kept;
  const bool exchange = flags & kRenameExchange;
  // Cross-directory renames are serialised (Linux's s_vfs_rename_mutex),
  // so the ancestry check cannot race with another rename.
  std::unique_ptr<absl::MutexLock> rename_lock;
  if (old_parent != new_parent) {
    rename_lock = std::make_unique<absl::MutexLock>(&rename_mu_);
  }
  for (;;) {
    auto src = ReadDentry(old_parent, old_name);
    if (!src.ok()) return src.status();
    auto dst = ReadDentry(new_parent, new_name);
    if (!dst.ok()) return dst.status();
    if (!*src) {
      if (auto p = ReadDir(old_parent); !p.ok()) return p.status();
      return MakeError(Errc::kNotFound, "no entry " + old_name);
    }
    uint64_t src_ino = (*src)->first;
    uint64_t dst_ino = *dst ? (*dst)->first : 0;
    Op op(this, session, {old_parent, new_parent, src_ino, dst_ino});
    auto src2 = ReadDentry(old_parent, old_name);
    auto dst2 = ReadDentry(new_parent, new_name);
    if (!src2.ok()) return src2.status();
    if (!dst2.ok()) return dst2.status();
    if (!*src2 || (*src2)->first != src_ino ||
        (*dst2 ? (*dst2)->first : 0) != dst_ino) {
      continue;  // Raced with another operation: look again.
    }
    // Records, each read once even when ids coincide.
    std::map<uint64_t, InodeRecord> recs;
    for (uint64_t ino : {old_parent, new_parent, src_ino, dst_ino}) {
      if (ino == 0 || recs.count(ino)) continue;
      absl::StatusOr<InodeRecord> r = ReadInode(ino);
      if (!r.ok()) return r.status();
      recs[ino] = *r;
    }
    if (!S_ISDIR(recs[old_parent].mode) || !S_ISDIR(recs[new_parent].mode)) {
      return MakeError(Errc::kNotDir, "rename parent is not a directory");
    }
    if (recs[new_parent].nlink == 0) {
      return MakeError(Errc::kNotFound, "target directory was removed");
    }
    if (dst_ino != 0 && (flags & kRenameNoReplace)) {
      return MakeError(Errc::kExists, new_name + " exists");
    }
    // Two names of one file (or one name): POSIX says do nothing.
    if (src_ino == dst_ino) return UnlinkResult{};
    if (dst_ino == 0 && exchange) {
      return MakeError(Errc::kNotFound, "exchange target missing");
    }
    InodeRecord& s = recs[src_ino];
    const bool src_dir = S_ISDIR(s.mode);
    const bool dst_dir = dst_ino != 0 && S_ISDIR(recs[dst_ino].mode);
    if (old_parent != new_parent) {
      if (src_dir) {
        if (absl::Status st = CheckNotAncestor(src_ino, new_parent); !st.ok()) {
          return st;
        }
      }
      if (exchange && dst_dir) {
        if (absl::Status st = CheckNotAncestor(dst_ino, old_parent); !st.ok()) {
          return st;
        }
      }
    }
    Timespec now = Now();
    UnlinkResult result;
    if (exchange) {
      InodeRecord& d = recs[dst_ino];
      op.batch().Put(Cf::kDentries, DentryKey(old_parent, old_name),
                     EncodeDentry(dst_ino, d.mode & S_IFMT));
      op.batch().Put(Cf::kDentries, DentryKey(new_parent, new_name),
                     EncodeDentry(src_ino, s.mode & S_IFMT));
      if (src_dir) s.parent = new_parent;
      if (dst_dir) d.parent = old_parent;
      if (src_dir != dst_dir && old_parent != new_parent) {
        // The subdirectory count moves between the parents.
        recs[old_parent].nlink += src_dir ? -1 : 1;
        recs[new_parent].nlink += src_dir ? 1 : -1;
      }
      s.ctime = d.ctime = now;
    } else {
      if (dst_ino != 0) {
        if (src_dir && !dst_dir) {
          return MakeError(Errc::kNotDir, new_name + " is not a directory");
        }
        if (!src_dir && dst_dir) {
          return MakeError(Errc::kIsDir, new_name + " is a directory");
        }
        if (dst_dir) {
          absl::StatusOr<bool> empty = DirIsEmpty(dst_ino);
          if (!empty.ok()) return empty.status();
          if (!*empty) return MakeError(Errc::kNotEmpty, new_name);
        }
      }
      op.batch().Delete(Cf::kDentries, DentryKey(old_parent, old_name));
      op.batch().Put(Cf::kDentries, DentryKey(new_parent, new_name),
                     EncodeDentry(src_ino, s.mode & S_IFMT));
      --recs[old_parent].size;
      if (dst_ino == 0) ++recs[new_parent].size;
      if (src_dir && old_parent != new_parent) {
        --recs[old_parent].nlink;
        ++recs[new_parent].nlink;
        s.parent = new_parent;
      }
      s.ctime = now;
      if (dst_ino != 0) {
        InodeRecord d = recs[dst_ino];
        recs.erase(dst_ino);
        d.ctime = now;
        result.ino = dst_ino;
        if (dst_dir) {
          --recs[new_parent].nlink;
          d.nlink = 0;  // Kept while open, like a file.
        } else {
          --d.nlink;
        }
        if (absl::Status st = DropLink(op, d, false, &result.orphaned);
            !st.ok()) {
          return st;
        }
      }
    }
    recs[old_parent].mtime = recs[old_parent].ctime = now;
    recs[new_parent].mtime = recs[new_parent].ctime = now;
    for (const auto& [ino, r] : recs) op.PutInode(r);
    return op.Commit(result);
  }
}

absl::StatusOr<std::string> MetaServer::Readlink(uint64_t ino) {
  absl::StatusOr<InodeRecord> r = ReadInode(ino);
  if (!r.ok()) return r.status();
  if (!S_ISLNK(r->mode)) {
    return MakeError(Errc::kInvalidArgument, "not a symlink");
  }
  return r->symlink;
}

absl::StatusOr<ReadDirResult> MetaServer::ReadDir(uint64_t ino,
                                                  const std::string& after,
                                                  uint32_t max_entries,
                                                  bool plus) {
  if (max_entries == 0 || max_entries > 4096) {
    return MakeError(Errc::kInvalidArgument, "max_entries not in 1..4096");
  }
  if (after.size() > kMaxNameLength) {
    return MakeError(Errc::kNameTooLong, "bad resume name");
  }
  std::unique_ptr<ReadView> view = store_->View();
  if (absl::StatusOr<InodeRecord> d =
          ReadDir(ino, view.get(), /*removed_ok=*/true);
      !d.ok()) {
    return d.status();
  }
  ReadDirResult out;
  out.eof = true;
  std::string from = DentryKey(ino, after);
  absl::Status status;
  absl::Status s = store_->Scan(
      Cf::kDentries, from, DentryPrefix(ino + 1),
      [&](absl::string_view k, absl::string_view v) {
        std::string name(k.substr(8));
        if (!after.empty() && name == after) return true;  // Seen already.
        if (out.entries.size() == max_entries) {
          out.eof = false;
          return false;
        }
        DirEntry e;
        e.name = std::move(name);
        status = DecodeDentry(v, &e.ino, &e.type);
        if (!status.ok()) return false;
        out.entries.push_back(std::move(e));
        return true;
      },
      view.get());
  if (!s.ok()) return s;
  if (!status.ok()) return status;
  if (plus) {
    for (DirEntry& e : out.entries) {
      absl::StatusOr<InodeRecord> r = ReadInode(e.ino, view.get());
      if (!r.ok()) return r.status();
      e.attr = AttrOf(*r);
    }
  }
  return out;
}

}  // namespace rangefs::meta
