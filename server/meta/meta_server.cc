// MetaServer: opening, formatting, the operation helper (Op), open handles
// and orphans, fencing, extended attributes and statfs. Namespace
// operations are in meta_namespace.cc, extent operations in
// meta_extents.cc, fsck in fsck.cc.
#include "server/meta/meta_server.h"

#include <sys/stat.h>

#include <algorithm>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/coding.h"
#include "common/log.h"
#include "common/status.h"
#include "server/meta/meta_server_internal.h"
#include "server/meta/posix_acl.h"

namespace rangefs::meta {

// ---------------------------------------------------------------- InodeLocks

MetaServer::InodeLocks::InodeLocks() = default;

std::vector<size_t> MetaServer::InodeLocks::Stripes(
    std::vector<uint64_t> inos) {
  std::vector<size_t> stripes;
  for (uint64_t ino : inos) {
    if (ino != 0) stripes.push_back(ino % kStripes);
  }
  std::sort(stripes.begin(), stripes.end());
  stripes.erase(std::unique(stripes.begin(), stripes.end()), stripes.end());
  return stripes;
}

// ------------------------------------------------------------------------ Op

MetaServer::Op::Op(MetaServer* server, uint64_t session,
                   std::vector<uint64_t> inos)
    : server_(server),
      session_(session),
      stripes_(InodeLocks::Stripes(std::move(inos))) {
  for (size_t s : stripes_) server_->inode_locks_->mu[s].Lock();
}

MetaServer::Op::~Op() {
  if (seq_held_) server_->seq_mu_.Unlock();
  for (auto it = stripes_.rbegin(); it != stripes_.rend(); ++it) {
    server_->inode_locks_->mu[*it].Unlock();
  }
}

absl::Status MetaServer::Op::LockSeq() {
  if (seq_held_) return absl::OkStatus();
  server_->seq_mu_.Lock();
  seq_held_ = true;
  if (session_ != 0 && server_->fenced_.count(session_) != 0) {
    ++server_->counters_.fenced_refusals;
    return MakeError(Errc::kFenced,
                     absl::StrCat("session ", session_, " is fenced"));
  }
  return absl::OkStatus();
}

void MetaServer::Op::PutInode(const InodeRecord& r) {
  batch_.Put(Cf::kInodes, InodeKey(r.ino), EncodeInode(r));
}

absl::Status MetaServer::Op::Commit() {
  if (absl::Status s = LockSeq(); !s.ok()) return s;
  for (const auto& [key, length] : server_->allocator_.TakeChanges()) {
    std::string k = FreeKey(key.first, key.second);
    if (length == 0) {
      batch_.Delete(Cf::kFree, k);
    } else {
      std::string v;
      PutBE64(&v, length);
      batch_.Put(Cf::kFree, k, v);
    }
  }
  ++server_->counters_.commits;
  std::shared_ptr<MetaStore::Pending> pending =
      server_->store_->Submit(std::move(batch_));
  server_->seq_mu_.Unlock();
  seq_held_ = false;
  return server_->store_->Wait(pending);
}

// ------------------------------------------------------------ open / format

MetaServer::MetaServer(std::unique_ptr<MetaStore> store, std::string fs_id)
    : store_(std::move(store)),
      fs_id_(std::move(fs_id)),
      inode_locks_(std::make_unique<InodeLocks>()) {}

MetaServer::~MetaServer() = default;

absl::StatusOr<std::unique_ptr<MetaServer>> MetaServer::Open(
    const std::string& dir, const std::string& fs_id,
    const std::vector<DeviceInfo>& devices, bool sync) {
  absl::StatusOr<std::unique_ptr<MetaStore>> store = MetaStore::Open(dir, sync);
  if (!store.ok()) return store.status();
  absl::StatusOr<std::optional<std::string>> stored_id =
      (*store)->Get(Cf::kMeta, "fs_id");
  if (!stored_id.ok()) return stored_id.status();
  if (!*stored_id) {
    if (fs_id.empty()) {
      return MakeError(Errc::kInvalidArgument,
                       "a new filesystem needs an fs id");
    }
    if (devices.empty()) {
      return MakeError(Errc::kInvalidArgument,
                       "a new filesystem needs at least one data device");
    }
    auto server =
        std::unique_ptr<MetaServer>(new MetaServer(std::move(*store), fs_id));
    if (absl::Status s = server->Format(devices); !s.ok()) return s;
    if (absl::Status s = server->Load({}); !s.ok()) return s;
    RANGEFS_LOG(INFO) << "formatted filesystem " << fs_id << " in " << dir;
    return server;
  }
  if (!fs_id.empty() && **stored_id != fs_id) {
    return MakeError(Errc::kInvalidArgument,
                     absl::StrCat(dir, " holds filesystem '", **stored_id,
                                  "', not '", fs_id, "'"));
  }
  auto server = std::unique_ptr<MetaServer>(
      new MetaServer(std::move(*store), **stored_id));
  if (absl::Status s = server->Load(devices); !s.ok()) return s;
  if (absl::Status s = server->FreeUnusedOrphans(); !s.ok()) return s;
  if (absl::Status s = server->LoadReplies(); !s.ok()) return s;
  return server;
}

absl::Status MetaServer::Format(const std::vector<DeviceInfo>& devices) {
  std::set<uint32_t> ids;
  for (const DeviceInfo& d : devices) {
    if (!ids.insert(d.id).second) {
      return MakeError(Errc::kInvalidArgument,
                       absl::StrCat("device ", d.id, " listed twice"));
    }
    if (d.size < kBlockSize) {
      return MakeError(
          Errc::kInvalidArgument,
          absl::StrCat("device ", d.id, " is smaller than a block"));
    }
  }
  Batch b;
  b.RequireSync();
  b.Put(Cf::kMeta, "fs_id", fs_id_);
  b.Put(Cf::kMeta, "block_size", std::to_string(kBlockSize));
  b.Put(Cf::kMeta, "devices", EncodeDevices(devices));
  b.Put(Cf::kMeta, "next_ino", std::to_string(kRootIno + 1));
  b.Put(Cf::kMeta, "inode_count", "1");
  for (const DeviceInfo& d : devices) {
    std::string v;
    PutBE64(&v, d.size / kBlockSize * kBlockSize);
    b.Put(Cf::kFree, FreeKey(d.id, 0), v);
  }
  InodeRecord root;
  root.ino = kRootIno;
  root.mode = S_IFDIR | 0755;
  root.nlink = 2;
  root.parent = kRootIno;
  root.atime = root.mtime = root.ctime = root.btime = Now();
  root.generation = 1;
  b.Put(Cf::kInodes, InodeKey(kRootIno), EncodeInode(root));
  return store_->Commit(std::move(b));
}

namespace {

absl::StatusOr<uint64_t> ReadCounter(MetaStore* store, const char* name) {
  absl::StatusOr<std::optional<std::string>> v = store->Get(Cf::kMeta, name);
  if (!v.ok()) return v.status();
  uint64_t n = 0;
  if (!*v || !absl::SimpleAtoi(**v, &n)) {
    return MakeError(Errc::kInternal, absl::StrCat("missing meta/", name));
  }
  return n;
}

}  // namespace

absl::Status MetaServer::Load(const std::vector<DeviceInfo>& extra) {
  absl::MutexLock lock(&seq_mu_);
  absl::StatusOr<std::optional<std::string>> dv =
      store_->Get(Cf::kMeta, "devices");
  if (!dv.ok()) return dv.status();
  if (!*dv) return MakeError(Errc::kInternal, "missing device list");
  absl::StatusOr<std::vector<DeviceInfo>> devices = DecodeDevices(**dv);
  if (!devices.ok()) return devices.status();
  devices_ = *devices;
  for (const DeviceInfo& d : devices_) allocator_.AddDevice(d.id, d.size);

  absl::Status status;
  absl::Status s = store_->Scan(
      Cf::kFree, "", "", [&](absl::string_view k, absl::string_view v) {
        seq_mu_.AssertHeld();
        if (k.size() != 12 || v.size() != 8) {
          status = MakeError(Errc::kInternal, "corrupt free-space record");
          return false;
        }
        allocator_.LoadFree(PhysExtent{
            LoadBE32(k.data()), LoadBE64(k.data() + 4), LoadBE64(v.data())});
        return true;
      });
  if (!s.ok()) return s;
  if (!status.ok()) return status;

  // Devices added on this start: their whole space becomes free.
  Batch b;
  for (const DeviceInfo& d : extra) {
    auto it = std::find_if(devices_.begin(), devices_.end(),
                           [&](const DeviceInfo& x) { return x.id == d.id; });
    if (it != devices_.end()) {
      if (it->size != d.size) {
        return MakeError(Errc::kInvalidArgument,
                         absl::StrCat("device ", d.id, " was formatted with ",
                                      it->size, " bytes, not ", d.size));
      }
      it->address = d.address;  // Servers may move.
      continue;
    }
    devices_.push_back(d);
    allocator_.AddDevice(d.id, d.size);
    if (absl::Status fs = allocator_.Free(
            PhysExtent{d.id, 0, d.size / kBlockSize * kBlockSize});
        !fs.ok()) {
      return fs;
    }
    RANGEFS_LOG(INFO) << "added device " << d.id << " (" << d.size << " bytes)";
  }
  b.RequireSync();
  b.Put(Cf::kMeta, "devices", EncodeDevices(devices_));
  for (const auto& [key, length] : allocator_.TakeChanges()) {
    std::string v;
    PutBE64(&v, length);
    if (length == 0) {
      b.Delete(Cf::kFree, FreeKey(key.first, key.second));
    } else {
      b.Put(Cf::kFree, FreeKey(key.first, key.second), v);
    }
  }
  if (absl::Status cs = store_->Commit(std::move(b)); !cs.ok()) return cs;

  absl::StatusOr<uint64_t> next = ReadCounter(store_.get(), "next_ino");
  if (!next.ok()) return next.status();
  // Numbers below the stored bound may have gone out in creates a crash
  // lost (Batch): new ones start above it.
  next_ino_ = ino_bound_ = *next;
  absl::StatusOr<uint64_t> count = ReadCounter(store_.get(), "inode_count");
  if (!count.ok()) return count.status();
  inode_count_ = *count;
  s = store_->Scan(Cf::kMeta, "lease/", "lease0",
                   [&](absl::string_view k, absl::string_view v) {
                     seq_mu_.AssertHeld();
                     std::vector<std::pair<uint64_t, uint64_t>> r;
                     if (k.size() == 14 && DecodeLease(v, &r)) {
                       leases_[LoadBE64(k.data() + 6)] = std::move(r);
                     }
                     return true;
                   });
  if (!s.ok()) return s;
  // A fence's value is its sequence number (none in stores older than
  // the numbers: those get numbers after the rest, in session order).
  std::vector<uint64_t> unnumbered;
  s = store_->Scan(Cf::kMeta, "fence/", "fence0",
                   [&](absl::string_view k, absl::string_view v) {
                     seq_mu_.AssertHeld();
                     if (k.size() != 14) return true;
                     const uint64_t session = LoadBE64(k.data() + 6);
                     if (v.size() == 8) {
                       fenced_[session] = LoadBE64(v.data());
                       fence_seq_ = std::max(fence_seq_, fenced_[session]);
                     } else {
                       unnumbered.push_back(session);
                     }
                     return true;
                   });
  for (uint64_t session : unnumbered) fenced_[session] = ++fence_seq_;
  return s;
}

absl::Status MetaServer::FreeUnusedOrphans() {
  std::vector<uint64_t> orphans;
  absl::Status s = store_->Scan(Cf::kOrphans, "", "",
                                [&](absl::string_view k, absl::string_view) {
                                  if (k.size() == 8) {
                                    orphans.push_back(LoadBE64(k.data()));
                                  }
                                  return true;
                                });
  if (!s.ok()) return s;
  for (uint64_t ino : orphans) {
    Op op(this, 0, {ino});
    absl::StatusOr<bool> open = HasHandles(ino);
    if (!open.ok()) return open.status();
    if (*open) continue;
    absl::StatusOr<InodeRecord> r = ReadInode(ino);
    if (!r.ok()) {
      if (ErrcOf(r.status()) != Errc::kNotFound) return r.status();
      op.batch().Delete(Cf::kOrphans, InodeKey(ino));
    } else if (absl::Status fs = FreeInode(op, *r); !fs.ok()) {
      return fs;
    }
    if (absl::Status cs = op.Commit(); !cs.ok()) return cs;
    RANGEFS_LOG(INFO) << "freed orphan inode " << ino;
  }
  return absl::OkStatus();
}

// ------------------------------------------------------- exactly-once calls

namespace {
thread_local const MetaServer::Call* tl_call = nullptr;
}  // namespace

MetaServer::Call::Call(MetaServer* server, const CallId& id)
    : server_(server), id_(id), outer_(tl_call) {
  if (id_.client != 0) {
    // Another attempt of this call may still be running (its node lost
    // the connection, not the server): its outcome decides this one's.
    struct Attempt {
      MetaServer* server;
      std::pair<uint64_t, uint64_t> key;
      bool Over() ABSL_NO_THREAD_SAFETY_ANALYSIS {
        return server->running_.count(key) == 0;
      }
    } attempt{server_, {id_.client, id_.seq}};
    const auto& key = attempt.key;
    absl::MutexLock lock(&server_->calls_mu_);
    server_->calls_mu_.Await(absl::Condition(&attempt, &Attempt::Over));
    server_->running_.insert(key);
    auto it = server_->kept_.find(id_.client);
    if (it != server_->kept_.end()) {
      for (uint64_t seq : it->second) {
        if (seq >= id_.acked || seq >= id_.seq) break;
        trim_.push_back(seq);
      }
    }
  }
  tl_call = this;
}

MetaServer::Call::~Call() {
  tl_call = outer_;
  if (id_.client != 0) {
    absl::MutexLock lock(&server_->calls_mu_);
    server_->running_.erase(std::make_pair(id_.client, id_.seq));
  }
}

const MetaServer::Call* MetaServer::CurrentCall() const {
  const Call* c = tl_call;
  return c != nullptr && c->server_ == this && c->id_.client != 0 ? c : nullptr;
}

const MetaServer::Call* MetaServer::KeepIn(Batch* batch,
                                           const std::string& value) {
  const Call* call = CurrentCall();
  if (call == nullptr) return nullptr;
  batch->Put(Cf::kReplies, ReplyKey(call->id_.client, call->id_.seq), value);
  for (uint64_t seq : call->trim_) {
    batch->Delete(Cf::kReplies, ReplyKey(call->id_.client, seq));
  }
  return call;
}

void MetaServer::Kept(const Call& call) {
  absl::MutexLock lock(&calls_mu_);
  std::set<uint64_t>& seqs = kept_[call.id_.client];
  for (uint64_t seq : call.trim_) seqs.erase(seq);
  seqs.insert(call.id_.seq);
}

size_t MetaServer::kept_replies() {
  absl::MutexLock lock(&calls_mu_);
  size_t n = 0;
  for (const auto& [client, seqs] : kept_) n += seqs.size();
  return n;
}

absl::Status MetaServer::LoadReplies() {
  const int64_t oldest = Now().sec - kKeepRepliesSec;
  std::map<uint64_t, std::set<uint64_t>> kept;
  Batch expired;
  absl::Status s = store_->Scan(
      Cf::kReplies, "", "", [&](absl::string_view k, absl::string_view v) {
        Timespec when;
        if (k.size() != 16 || !KeptAt(v, &when) || when.sec < oldest) {
          expired.Delete(Cf::kReplies, k);
        } else {
          kept[LoadBE64(k.data())].insert(LoadBE64(k.data() + 8));
        }
        return true;
      });
  if (!s.ok()) return s;
  if (expired.count() != 0) {
    RANGEFS_LOG(INFO) << "dropping " << expired.count()
                      << " kept replies older than " << kKeepRepliesSec << " s";
    if (absl::Status cs = store_->Commit(std::move(expired)); !cs.ok()) {
      return cs;
    }
  }
  absl::MutexLock lock(&calls_mu_);
  kept_ = std::move(kept);
  return absl::OkStatus();
}

// ------------------------------------------------------------------ helpers

absl::Status MetaServer::CheckSession(uint64_t session) {
  absl::MutexLock lock(&seq_mu_);
  if (session != 0 && fenced_.count(session) != 0) {
    ++counters_.fenced_refusals;
    return MakeError(Errc::kFenced,
                     absl::StrCat("session ", session, " is fenced"));
  }
  return absl::OkStatus();
}

absl::StatusOr<InodeRecord> MetaServer::ReadInode(uint64_t ino,
                                                  const ReadView* view) {
  if (ino == 0) return MakeError(Errc::kInvalidArgument, "inode 0");
  absl::StatusOr<std::optional<std::string>> v =
      store_->Get(Cf::kInodes, InodeKey(ino), view);
  if (!v.ok()) return v.status();
  if (!*v) {
    return MakeError(Errc::kNotFound, absl::StrCat("no inode ", ino));
  }
  return DecodeInode(**v);
}

absl::StatusOr<InodeRecord> MetaServer::ReadDir(uint64_t ino,
                                                const ReadView* view,
                                                bool removed_ok) {
  absl::StatusOr<InodeRecord> r = ReadInode(ino, view);
  if (r.ok() && !S_ISDIR(r->mode)) {
    return MakeError(Errc::kNotDir, absl::StrCat(ino, " is not a directory"));
  }
  // A directory removed while open (an orphan) has no entries, and none can
  // be made in it (Linux: IS_DEADDIR).
  if (r.ok() && r->nlink == 0 && !removed_ok) {
    return MakeError(Errc::kNotFound,
                     absl::StrCat("directory ", ino, " was removed"));
  }
  return r;
}

absl::StatusOr<std::optional<std::pair<uint64_t, uint32_t>>>
MetaServer::ReadDentry(uint64_t parent, const std::string& name) {
  absl::StatusOr<std::optional<std::string>> v =
      store_->Get(Cf::kDentries, DentryKey(parent, name));
  if (!v.ok()) return v.status();
  std::optional<std::pair<uint64_t, uint32_t>> out;
  if (*v) {
    uint64_t ino = 0;
    uint32_t type = 0;
    if (absl::Status s = DecodeDentry(**v, &ino, &type); !s.ok()) return s;
    out.emplace(ino, type);
  }
  return out;
}

absl::StatusOr<bool> MetaServer::DirIsEmpty(uint64_t ino) {
  bool empty = true;
  absl::Status s =
      store_->Scan(Cf::kDentries, DentryPrefix(ino), DentryPrefix(ino + 1),
                   [&](absl::string_view, absl::string_view) {
                     empty = false;
                     return false;
                   });
  if (!s.ok()) return s;
  return empty;
}

absl::StatusOr<bool> MetaServer::HasHandles(uint64_t ino) {
  bool open = false;
  absl::Status s = store_->Scan(Cf::kHandles, InodeKey(ino), InodeKey(ino + 1),
                                [&](absl::string_view, absl::string_view) {
                                  open = true;
                                  return false;
                                });
  if (!s.ok()) return s;
  return open;
}

absl::Status MetaServer::FreeInode(Op& op, const InodeRecord& r) {
  op.batch().SyncWithNextExtentChange();  // Batch: why it may wait.
  if (S_ISREG(r.mode)) {
    absl::StatusOr<ExtentSet> set =
        ExtentSet::Load(store_.get(), nullptr, r.ino, 0, kInfinity);
    if (!set.ok()) return set.status();
    std::vector<PhysExtent> freed = set->Cut(0, kInfinity);
    set->WriteTo(r.ino, &op.batch());
    if (absl::Status s = op.LockSeq(); !s.ok()) return s;
    seq_mu_.AssertHeld();
    for (const PhysExtent& p : freed) {
      if (absl::Status s = allocator_.Free(p); !s.ok()) return s;
    }
  }
  if (absl::Status s = op.LockSeq(); !s.ok()) return s;
  seq_mu_.AssertHeld();
  std::vector<std::string> xattrs;
  absl::Status s =
      store_->Scan(Cf::kXattrs, XattrPrefix(r.ino), XattrPrefix(r.ino + 1),
                   [&](absl::string_view k, absl::string_view) {
                     xattrs.emplace_back(k);
                     return true;
                   });
  if (!s.ok()) return s;
  for (const std::string& k : xattrs) op.batch().Delete(Cf::kXattrs, k);
  op.batch().Delete(Cf::kInodes, InodeKey(r.ino));
  op.batch().Delete(Cf::kOrphans, InodeKey(r.ino));
  --inode_count_;
  op.batch().Put(Cf::kMeta, "inode_count", std::to_string(inode_count_));
  return absl::OkStatus();
}

absl::Status MetaServer::DropLink(Op& op, InodeRecord& r, bool keep_if_open,
                                  bool* orphaned) {
  *orphaned = false;
  if (r.nlink > 0) {
    op.PutInode(r);
    return absl::OkStatus();
  }
  absl::StatusOr<bool> open = HasHandles(r.ino);
  if (!open.ok()) return open.status();
  if (*open || keep_if_open) {
    *orphaned = true;
    op.PutInode(r);
    op.batch().Put(Cf::kOrphans, InodeKey(r.ino), "");
    return absl::OkStatus();
  }
  return FreeInode(op, r);
}

// ------------------------------------------------------- handles, orphans

absl::StatusOr<Attr> MetaServer::Open(uint64_t session, uint64_t ino) {
  if (session == 0) {
    return MakeError(Errc::kInvalidArgument, "open needs a session id");
  }
  if (Attr kept; Replayed(&kept)) return kept;
  Op op(this, session, {ino});
  absl::StatusOr<InodeRecord> r = ReadInode(ino);
  if (!r.ok()) return r.status();
  absl::StatusOr<std::optional<std::string>> v =
      store_->Get(Cf::kHandles, HandleKey(ino, session));
  if (!v.ok()) return v.status();
  uint64_t count = 0;
  if (*v && (*v)->size() == 8) count = LoadBE64((*v)->data());
  std::string nv;
  PutBE64(&nv, count + 1);
  op.batch().Put(Cf::kHandles, HandleKey(ino, session), nv);
  return op.Commit(AttrOf(*r));
}

absl::Status MetaServer::Close(uint64_t session, uint64_t ino) {
  if (Done kept; Replayed(&kept)) return absl::OkStatus();
  // A fenced session's handles are being dropped; closing is not refused.
  Op op(this, 0, {ino});
  absl::StatusOr<std::optional<std::string>> v =
      store_->Get(Cf::kHandles, HandleKey(ino, session));
  if (!v.ok()) return v.status();
  if (!*v || (*v)->size() != 8) {
    return MakeError(
        Errc::kNotFound,
        absl::StrCat("session ", session, " has no open handle on ", ino));
  }
  uint64_t count = LoadBE64((*v)->data());
  if (count > 1) {
    std::string nv;
    PutBE64(&nv, count - 1);
    op.batch().Put(Cf::kHandles, HandleKey(ino, session), nv);
    return op.Commit(Done{}).status();
  }
  op.batch().Delete(Cf::kHandles, HandleKey(ino, session));
  // The last handle anywhere on an orphan frees it.
  bool last = true;
  absl::Status s = store_->Scan(Cf::kHandles, InodeKey(ino), InodeKey(ino + 1),
                                [&](absl::string_view k, absl::string_view) {
                                  if (k != HandleKey(ino, session))
                                    last = false;
                                  return last;
                                });
  if (!s.ok()) return s;
  if (last) {
    absl::StatusOr<std::optional<std::string>> orphan =
        store_->Get(Cf::kOrphans, InodeKey(ino));
    if (!orphan.ok()) return orphan.status();
    if (*orphan) {
      absl::StatusOr<InodeRecord> r = ReadInode(ino);
      if (!r.ok()) return r.status();
      if (absl::Status fs = FreeInode(op, *r); !fs.ok()) return fs;
    }
  }
  return op.Commit(Done{}).status();
}

absl::Status MetaServer::Fence(uint64_t session) {
  if (session == 0) {
    return MakeError(Errc::kInvalidArgument, "session 0 cannot be fenced");
  }
  {
    Op op(this, 0, {});
    if (absl::Status ls = op.LockSeq(); !ls.ok()) return ls;
    seq_mu_.AssertHeld();
    if (fenced_.count(session) == 0) {
      fenced_[session] = ++fence_seq_;
      std::string seq;
      PutBE64(&seq, fence_seq_);
      op.batch().Put(Cf::kMeta, FenceKey(session), seq);
    }
    if (leases_.erase(session) > 0) {
      op.batch().Delete(Cf::kMeta, LeaseKey(session));
    }
    // A fence lost to a crash would let the session write again.
    op.batch().RequireSync();
    if (absl::Status cs = op.Commit(); !cs.ok()) return cs;
  }
  RANGEFS_LOG(INFO) << "fenced session " << session;
  // No open of the session can succeed any more: drop its handles (also
  // when repeating a fence whose earlier attempt was cut short).
  std::vector<uint64_t> inos;
  absl::Status s = store_->Scan(
      Cf::kHandles, "", "", [&](absl::string_view k, absl::string_view) {
        if (k.size() == 16 && LoadBE64(k.data() + 8) == session) {
          inos.push_back(LoadBE64(k.data()));
        }
        return true;
      });
  if (!s.ok()) return s;
  for (uint64_t ino : inos) {
    for (;;) {
      absl::Status cs = Close(session, ino);
      if (ErrcOf(cs) == Errc::kNotFound) break;
      if (!cs.ok()) return cs;
    }
  }
  return absl::OkStatus();
}

bool MetaServer::IsFenced(uint64_t session) {
  absl::MutexLock lock(&seq_mu_);
  return fenced_.count(session) != 0;
}

std::vector<uint64_t> MetaServer::fenced_sessions() {
  absl::MutexLock lock(&seq_mu_);
  std::vector<uint64_t> out;
  for (const auto& [session, seq] : fenced_) out.push_back(session);
  return out;
}

uint64_t MetaServer::FencesAfter(uint64_t after_seq,
                                 std::vector<uint64_t>* sessions) {
  absl::MutexLock lock(&seq_mu_);
  for (const auto& [session, seq] : fenced_) {
    if (seq > after_seq) sessions->push_back(session);
  }
  return fence_seq_;
}

std::vector<DeviceInfo> MetaServer::devices() const {
  absl::MutexLock lock(const_cast<absl::Mutex*>(&seq_mu_));
  return devices_;
}

MetaCounters MetaServer::counters() {
  MetaCounters c;
  {
    absl::MutexLock lock(&seq_mu_);
    c = counters_;
  }
  absl::MutexLock lock(&calls_mu_);
  c.replayed = replayed_;
  return c;
}

absl::StatusOr<StatFs> MetaServer::GetStatFs() {
  absl::MutexLock lock(&seq_mu_);
  StatFs s;
  s.total_blocks = allocator_.total_bytes() / kBlockSize;
  s.free_blocks = allocator_.free_bytes() / kBlockSize;
  s.files = inode_count_;
  // Inode numbers are 64-bit and never reused: report a large, honest
  // headroom rather than a fixed table size.
  s.free_files = (1ull << 32) - std::min<uint64_t>(inode_count_, 1ull << 32);
  s.fs_id = fs_id_;
  return s;
}

// -------------------------------------------------------------------- xattrs

namespace {

absl::Status ValidateXattrName(const std::string& name) {
  if (name.empty() || name.size() > kMaxXattrName ||
      name.find('\0') != std::string::npos) {
    return MakeError(Errc::kOutOfRange,
                     "extended attribute name empty or too long");
  }
  static const char* const kNamespaces[] = {"user.", "trusted.", "security.",
                                            "system."};
  for (const char* ns : kNamespaces) {
    if (name.rfind(ns, 0) == 0 && name.size() > strlen(ns)) {
      return absl::OkStatus();
    }
  }
  return MakeError(Errc::kNotSupported,
                   "extended attribute name outside user., trusted., "
                   "security., system.");
}

}  // namespace

absl::StatusOr<std::string> MetaServer::GetXattr(uint64_t ino,
                                                 const std::string& name) {
  if (absl::Status s = ValidateXattrName(name); !s.ok()) return s;
  if (absl::StatusOr<InodeRecord> r = ReadInode(ino); !r.ok()) {
    return r.status();
  }
  absl::StatusOr<std::optional<std::string>> v =
      store_->Get(Cf::kXattrs, XattrKey(ino, name));
  if (!v.ok()) return v.status();
  if (!*v) return MakeError(Errc::kNoData, "no such attribute " + name);
  return **v;
}

absl::Status MetaServer::SetXattr(uint64_t session, uint64_t ino,
                                  const std::string& name,
                                  const std::string& value, uint32_t flags) {
  if (absl::Status s = ValidateXattrName(name); !s.ok()) return s;
  if (value.size() > kMaxXattrValue) {
    return MakeError(Errc::kOutOfRange, "attribute value too large", E2BIG);
  }
  const bool access_acl = name == kAclAccess;
  const uint32_t known = access_acl ? 3u | kXattrKillSgid : 3u;
  if ((flags & ~known) || (flags & 3) == 3) {
    return MakeError(Errc::kInvalidArgument, "bad setxattr flags");
  }
  std::optional<Acl> acl;
  if (access_acl || name == kAclDefault) {
    absl::StatusOr<Acl> parsed = ParseAcl(value);
    if (!parsed.ok()) return parsed.status();
    acl = std::move(*parsed);
  }
  if (Done kept; Replayed(&kept)) return absl::OkStatus();
  Op op(this, session, {ino});
  absl::StatusOr<InodeRecord> r = ReadInode(ino);
  if (!r.ok()) return r.status();
  if (acl && (S_ISLNK(r->mode) || (!access_acl && !S_ISDIR(r->mode)))) {
    // As the VFS answers (set_posix_acl).
    return MakeError(S_ISLNK(r->mode) ? Errc::kNotSupported : Errc::kPermission,
                     "a default ACL is for directories, no ACL for symlinks",
                     S_ISLNK(r->mode) ? EOPNOTSUPP : EACCES);
  }
  absl::StatusOr<std::optional<std::string>> old =
      store_->Get(Cf::kXattrs, XattrKey(ino, name));
  if (!old.ok()) return old.status();
  if ((flags & 1) && *old) return MakeError(Errc::kExists, name + " exists");
  if ((flags & 2) && !*old) return MakeError(Errc::kNoData, "no " + name);
  if (access_acl) {
    // The mode follows the list, and a list the mode says all of is not
    // kept (posix_acl_update_mode).
    r->mode = (r->mode & ~0777u) | AclPermBits(*acl);
    if (flags & kXattrKillSgid) r->mode &= ~static_cast<uint32_t>(S_ISGID);
    if (AclIsMode(*acl)) {
      if (*old) op.batch().Delete(Cf::kXattrs, XattrKey(ino, name));
      r->ctime = Now();
      op.PutInode(*r);
      return op.Commit(Done{}).status();
    }
  }
  if (!*old || value.size() > (*old)->size()) {
    size_t list = 0, bytes = 0;
    absl::Status s =
        store_->Scan(Cf::kXattrs, XattrPrefix(ino), XattrPrefix(ino + 1),
                     [&](absl::string_view k, absl::string_view v) {
                       list += k.size() - 8 + 1;
                       bytes += k.size() - 8 + v.size();
                       return true;
                     });
    if (!s.ok()) return s;
    if (*old) {
      bytes -= (*old)->size();
    } else {
      list += name.size() + 1;
      bytes += name.size();
    }
    bytes += value.size();
    if (list > kMaxXattrList || bytes > kMaxXattrBytes) {
      return MakeError(
          Errc::kNoSpace,
          absl::StrCat("extended attributes of ", ino,
                       " would pass the per-inode limit (", kMaxXattrList,
                       " bytes of names, ", kMaxXattrBytes, " in all)"));
    }
  }
  op.batch().Put(Cf::kXattrs, XattrKey(ino, name), value);
  r->ctime = Now();
  op.PutInode(*r);
  return op.Commit(Done{}).status();
}

absl::StatusOr<std::vector<std::string>> MetaServer::ListXattr(uint64_t ino) {
  if (absl::StatusOr<InodeRecord> r = ReadInode(ino); !r.ok()) {
    return r.status();
  }
  std::vector<std::string> names;
  absl::Status s =
      store_->Scan(Cf::kXattrs, XattrPrefix(ino), XattrPrefix(ino + 1),
                   [&](absl::string_view k, absl::string_view) {
                     names.emplace_back(k.substr(8));
                     return true;
                   });
  if (!s.ok()) return s;
  return names;
}

absl::Status MetaServer::RemoveXattr(uint64_t session, uint64_t ino,
                                     const std::string& name) {
  if (absl::Status s = ValidateXattrName(name); !s.ok()) return s;
  if (Done kept; Replayed(&kept)) return absl::OkStatus();
  Op op(this, session, {ino});
  absl::StatusOr<InodeRecord> r = ReadInode(ino);
  if (!r.ok()) return r.status();
  absl::StatusOr<std::optional<std::string>> old =
      store_->Get(Cf::kXattrs, XattrKey(ino, name));
  if (!old.ok()) return old.status();
  if (!*old) return MakeError(Errc::kNoData, "no " + name);
  op.batch().Delete(Cf::kXattrs, XattrKey(ino, name));
  r->ctime = Now();
  op.PutInode(*r);
  return op.Commit(Done{}).status();
}

absl::Status MetaServer::Sync() { return store_->Sync(); }

absl::StatusOr<uint64_t> MetaServer::ReserveInodes(uint64_t session,
                                                   uint64_t count) {
  if (session == 0 || count == 0 || count > kInodeNumbersPerSync) {
    return MakeError(Errc::kInvalidArgument,
                     "reserve 1 to 4096 inode numbers for a session");
  }
  if (uint64_t kept; Replayed(&kept)) return kept;
  Op op(this, session, {});
  if (absl::Status s = op.LockSeq(); !s.ok()) return s;
  seq_mu_.AssertHeld();
  const uint64_t first = next_ino_;
  next_ino_ += count;
  if (next_ino_ > ino_bound_) {
    ino_bound_ = next_ino_ + kInodeNumbersPerSync;
    op.batch().Put(Cf::kMeta, "next_ino", std::to_string(ino_bound_));
  }
  std::vector<std::pair<uint64_t, uint64_t>>& r = leases_[session];
  r.erase(std::remove_if(r.begin(), r.end(),
                         [](const auto& l) { return l.first >= l.second; }),
          r.end());
  if (r.size() >= kMaxLeases) r.erase(r.begin());
  r.emplace_back(first, first + count);
  op.batch().Put(Cf::kMeta, LeaseKey(session), EncodeLease(r));
  op.batch().RequireSync();
  return op.Commit(first);
}

absl::Status MetaServer::UseLeased(Op& op, uint64_t session, uint64_t ino) {
  auto it = leases_.find(session);
  if (it != leases_.end()) {
    for (auto& [next, end] : it->second) {
      if (ino >= next && ino < end) {
        next = ino + 1;  // Numbers below go unused.
        op.batch().Put(Cf::kMeta, LeaseKey(session), EncodeLease(it->second));
        return absl::OkStatus();
      }
    }
  }
  return MakeError(Errc::kInvalidArgument,
                   absl::StrCat("inode number ", ino, " is not leased to ",
                                "session ", session, ", or was used"));
}

}  // namespace rangefs::meta
