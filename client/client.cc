// Client setup, namespace and attribute calls, open/close, and the public
// Client wrapper.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <optional>

#include "absl/strings/str_split.h"
#include "client/client_internal.h"
#include "common/log.h"
#include "common/status.h"

namespace rangefs::client {
namespace {

LockCacheOptions LockOptions(const ClientOptions& o) {
  LockCacheOptions l;
  l.node_name = o.node_name;
  l.lease_ms = o.lease_ms;
  l.min_hold_ms = o.min_hold_ms;
  l.idle_release_ms = o.idle_release_ms;
  return l;
}

}  // namespace

uint64_t CurrentTask() {
  thread_local uint64_t tid = static_cast<uint64_t>(syscall(SYS_gettid));
  return tid;
}

Timespec NowTimespec() {
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return {ts.tv_sec, static_cast<uint32_t>(ts.tv_nsec)};
}

Client::Impl::Impl(const ClusterConfig& config, const ClientOptions& options,
                   std::unique_ptr<Stubs> stubs)
    : config_(config),
      options_(options),
      stubs_(std::move(stubs)),
      locks_(config, LockOptions(options)),
      pages_(options.cache_bytes),
      mmaps_(std::make_unique<MmapTable>(this)) {
  InstallHooks();
}

Client::Impl::~Impl() { Stop(); }

absl::Status Client::Impl::Start() {
  if (absl::Status s = locks_.Start(); !s.ok()) return s;
  // The metadata server answers before the node calls itself ready.
  absl::StatusOr<FsStat> st = stubs_->StatFs();
  if (!st.ok()) {
    locks_.Stop();
    return MakeError(Errc::kUnavailable,
                     "metadata server not reachable at " + config_.meta + ": " +
                         std::string(st.status().message()));
  }
  flusher_ = std::thread([this] { Flusher(); });
  return absl::OkStatus();
}

void Client::Impl::Stop() {
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) return;
    stopping_ = true;
  }
  if (flusher_.joinable()) flusher_.join();
  {
    absl::MutexLock lock(&mu_);
    mu_.Await(absl::Condition(
        +[](Impl* i) ABSL_EXCLUSIVE_LOCKS_REQUIRED(i->mu_) {
          return i->readaheads_ == 0 && i->new_file_locks_ == 0;
        },
        this));
  }
  mmaps_->Stop();  // Dirty mapped pages go to the page cache.
  std::vector<uint64_t> fhs;
  {
    absl::MutexLock lock(&mu_);
    for (const auto& [fh, h] : handles_) fhs.push_back(fh);
  }
  for (uint64_t fh : fhs) (void)Close(fh);
  if (absl::Status s = SyncAll(); !s.ok()) {
    RANGEFS_LOG(ERROR) << "write-back at unmount: " << s.message();
  }
  locks_.Stop();  // Gives every lock back through the hooks.
}

std::shared_ptr<InodeState> Client::Impl::GetInode(uint64_t ino) {
  absl::MutexLock lock(&mu_);
  std::shared_ptr<InodeState>& in = inodes_[ino];
  if (in == nullptr) in = std::make_shared<InodeState>(ino);
  return in;
}

std::shared_ptr<InodeState> Client::Impl::FindInode(uint64_t ino) {
  absl::MutexLock lock(&mu_);
  auto it = inodes_.find(ino);
  return it == inodes_.end() ? nullptr : it->second;
}

absl::Status Client::Impl::SyncAll() {
  absl::Status first;
  for (uint64_t ino : pages_.DirtyInodes()) {
    std::shared_ptr<InodeState> in = FindInode(ino);
    if (in == nullptr) continue;
    absl::Status s = Writeback(*in, WholeFile());
    if (first.ok()) first = s;
  }
  absl::Status s = stubs_->FlushData(locks_.session_id());
  if (s.ok()) s = stubs_->SyncMeta();
  return first.ok() ? s : first;
}

uint64_t Client::Impl::DropCaches() {
  const uint64_t dropped = pages_.DropClean();
  counters.pages_dropped += dropped;
  return dropped;
}

absl::Status Client::Impl::SyncMeta() { return stubs_->SyncMeta(); }

// ------------------------------------------------------------ open/close

absl::Status Client::Impl::RegisterOpens(InodeState& in) {
  absl::MutexLock lock(&in.open_mu);
  const uint64_t session = locks_.session_id();
  if (in.opens == 0 || in.open_session == session) return absl::OkStatus();
  absl::StatusOr<Attr> a = stubs_->Open(session, in.ino, /*close=*/false);
  if (!a.ok()) return a.status();
  in.open_session = session;
  return absl::OkStatus();
}

absl::StatusOr<uint64_t> Client::Impl::Open(uint64_t ino, int flags) {
  std::shared_ptr<InodeState> in = GetInode(ino);
  HeldLocks held(&locks_);
  if (absl::Status s =
          held.Take(LockKind::kInode, ino, WholeFile(), LockMode::kSh);
      !s.ok()) {
    return s;
  }
  absl::StatusOr<Attr> a = CachedAttr(*in);
  if (!a.ok()) return a.status();
  CountOpen(*in);
  held.Release();  // An O_TRUNC takes INODE EX itself.
  return OpenCounted(std::move(in), flags, *a);
}

void Client::Impl::CountOpen(InodeState& in) {
  // Counted under the INODE lock: the metadata server hears of it only if
  // the lock goes while the file is open (InodeDemote), or before this
  // node removes a name of it.
  absl::MutexLock lock(&in.open_mu);
  ++in.opens;
}

absl::StatusOr<uint64_t> Client::Impl::OpenCounted(
    std::shared_ptr<InodeState> in, int flags, const Attr& a,
    std::optional<uint64_t> lost_seen) {
  Handle h;
  h.inode = in;
  h.flags = flags;
  {
    absl::MutexLock lock(&in->mu);
    h.lost_seen = lost_seen.value_or(in->lost);
  }
  uint64_t fh = 0;
  {
    absl::MutexLock lock(&mu_);
    fh = next_fh_++;
    handles_[fh] = h;
  }
  absl::Status refused;
  if (S_ISDIR(a.mode) && (flags & O_ACCMODE) != O_RDONLY) {
    refused = MakeError(Errc::kIsDir, "directory opened for writing", EISDIR);
  } else if ((flags & O_TRUNC) && (flags & O_ACCMODE) != O_RDONLY &&
             S_ISREG(a.mode)) {
    refused = Truncate(*in, 0);
  }
  if (!refused.ok()) {
    (void)Close(fh);
    return refused;
  }
  return fh;
}

absl::StatusOr<Handle> Client::Impl::HandleOf(uint64_t fh) {
  absl::MutexLock lock(&mu_);
  auto it = handles_.find(fh);
  if (it == handles_.end()) {
    return MakeError(Errc::kInvalidArgument, "bad file handle", EBADF);
  }
  return it->second;
}

absl::Status Client::Impl::Close(uint64_t fh) {
  Handle h;
  {
    absl::MutexLock lock(&mu_);
    auto it = handles_.find(fh);
    if (it == handles_.end()) {
      return MakeError(Errc::kInvalidArgument, "bad file handle", EBADF);
    }
    h = it->second;
    handles_.erase(it);
  }
  InodeState& in = *h.inode;
  absl::Status result;
  {
    absl::MutexLock lock(&in.mu);
    if (in.lost != h.lost_seen) {
      result =
          MakeError(Errc::kIoError, "dirty data of this file was lost", EIO);
    }
  }
  {
    absl::MutexLock lock(&in.open_mu);
    if (--in.opens > 0) return result;
  }
  // Close-to-open: the last close on the node writes its data back, and
  // must before the server may free an unlinked file.
  if (absl::Status s = SettleMtime(in); !s.ok() && result.ok()) result = s;
  if (absl::Status s = Writeback(in, WholeFile()); !s.ok() && result.ok()) {
    result = s;
  }
  absl::MutexLock lock(&in.open_mu);
  if (in.opens > 0 || in.open_session == 0) return result;
  if (in.open_session == locks_.session_id()) {
    absl::StatusOr<Attr> a =
        stubs_->Open(in.open_session, in.ino, /*close=*/true);
    if (!a.ok() && ErrcOf(a.status()) != Errc::kNotFound && result.ok()) {
      result = a.status();
    }
    // The last close of a file that has no name left (NOT_FOUND: it is
    // gone already): nobody here can read it again.
    const bool gone =
        a.ok() ? a->nlink == 0 : ErrcOf(a.status()) == Errc::kNotFound;
    if (gone && in.mmaps.load() == 0) {
      counters.pages_dropped += pages_.DropClean(in.ino);
    }
  }
  in.open_session = 0;  // (A fenced session's handles are gone anyway.)
  return result;
}

ClientStats Client::Impl::Stats() {
  ClientStats s;
  PageCacheStats p = pages_.Stats();
  s.page_hits = p.hits;
  s.page_misses = p.misses;
  s.pages_cached = p.pages;
  s.dirty_pages = p.dirty_pages;
  s.map_cache_hits = counters.map_cache_hits;
  s.map_calls = counters.map_calls;
  s.writeback_pages = counters.writeback_pages;
  s.stale_retries = counters.stale_retries;
  s.short_copies = counters.short_copies;
  s.inval_demotes = counters.inval_demotes;
  s.inode_demotes = counters.inode_demotes;
  s.pages_dropped = counters.pages_dropped;
  s.lost_dirty_pages = counters.lost_dirty_pages;
  s.direct_fallbacks = counters.direct_fallbacks;
  s.staged_copies = counters.staged_copies;
  s.readaheads = counters.readaheads;
  s.readaheads_abandoned = counters.readaheads_abandoned;
  s.piped_fills = counters.piped_fills;
  s.pipe_fallbacks = counters.pipe_fallbacks;
  s.readahead_pages = counters.readahead_pages;
  MmapStats m = mmaps_->Stats();
  s.read_faults = m.read_faults;
  s.write_faults = m.write_faults;
  s.private_faults = m.private_faults;
  s.refused_faults = m.refused_faults;
  s.deadlock_faults = m.deadlock_faults;
  s.sigbus_faults = m.sigbus_faults;
  s.mapped_pages_collected = m.pages_collected;
  s.mapped_pages_zapped = m.pages_zapped;
  LockCacheStats l = locks_.Stats();
  s.lock_local_hits = l.local_hits;
  s.lock_requests = l.cluster_requests;
  s.lock_callbacks = l.callbacks;
  s.sessions_lost = l.sessions_lost;
  s.session_id = locks_.session_id();
  s.meta_calls = stubs_->meta_calls();
  s.creates_ahead = counters.creates_ahead;
  s.creates_ahead_failed = counters.creates_ahead_failed;
  return s;
}

// ------------------------------------------------------ the public face

absl::StatusOr<std::unique_ptr<Client>> Client::Connect(
    const ClusterConfig& config, const ClientOptions& options) {
  absl::StatusOr<std::unique_ptr<Stubs>> stubs =
      Stubs::Create(config, options.rpc_timeout_ms);
  if (!stubs.ok()) return stubs.status();
  auto impl = std::make_unique<Impl>(config, options, std::move(*stubs));
  if (absl::Status s = impl->Start(); !s.ok()) return s;
  return std::unique_ptr<Client>(new Client(std::move(impl)));
}

Client::Client(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Client::~Client() = default;

absl::Status Client::SyncAll() { return impl_->SyncAll(); }
uint64_t Client::DropCaches() { return impl_->DropCaches(); }
absl::StatusOr<Attr> Client::Lookup(uint64_t parent, const std::string& name) {
  return impl_->Lookup(parent, name);
}
absl::StatusOr<Attr> Client::GetAttr(uint64_t ino) {
  return impl_->GetAttr(ino);
}
absl::StatusOr<Attr> Client::SetAttr(uint64_t ino, const SetAttrArgs& args) {
  return impl_->SetAttr(ino, args);
}
absl::Status Client::Accessed(uint64_t ino, bool strict) {
  return impl_->Accessed(ino, strict);
}
absl::StatusOr<Attr> Client::Mknod(uint64_t parent, const std::string& name,
                                   uint32_t mode, uint64_t rdev,
                                   const Creds& creds) {
  return impl_->Mknod(parent, name, mode, rdev, creds, /*exclusive=*/true);
}
absl::StatusOr<Attr> Client::Mkdir(uint64_t parent, const std::string& name,
                                   uint32_t mode, const Creds& creds) {
  return impl_->Mkdir(parent, name, mode, creds);
}
absl::StatusOr<Attr> Client::Symlink(uint64_t parent, const std::string& name,
                                     const std::string& target,
                                     const Creds& creds) {
  return impl_->Symlink(parent, name, target, creds);
}
absl::StatusOr<Attr> Client::Link(uint64_t ino, uint64_t new_parent,
                                  const std::string& new_name) {
  return impl_->Link(ino, new_parent, new_name);
}
absl::Status Client::Unlink(uint64_t parent, const std::string& name) {
  return impl_->Unlink(parent, name);
}
absl::Status Client::Rmdir(uint64_t parent, const std::string& name) {
  return impl_->Rmdir(parent, name);
}
absl::Status Client::Rename(uint64_t old_parent, const std::string& old_name,
                            uint64_t new_parent, const std::string& new_name,
                            uint32_t flags) {
  return impl_->Rename(old_parent, old_name, new_parent, new_name, flags);
}
absl::StatusOr<std::string> Client::Readlink(uint64_t ino) {
  return impl_->stubs().Readlink(ino);
}
absl::StatusOr<DirPage> Client::ReadDir(uint64_t ino, const std::string& after,
                                        uint32_t max_entries, bool plus) {
  return impl_->stubs().ReadDir(ino, after, max_entries, plus);
}
absl::StatusOr<FsStat> Client::StatFs() { return impl_->stubs().StatFs(); }
absl::StatusOr<std::string> Client::GetXattr(uint64_t ino,
                                             const std::string& name) {
  return impl_->GetXattr(ino, name);
}
absl::Status Client::SetXattr(uint64_t ino, const std::string& name,
                              const std::string& value, uint32_t flags) {
  return impl_->SetXattr(ino, name, value, flags);
}
absl::StatusOr<std::vector<std::string>> Client::ListXattr(uint64_t ino) {
  return impl_->stubs().ListXattr(ino);
}
absl::Status Client::RemoveXattr(uint64_t ino, const std::string& name) {
  return impl_->RemoveXattr(ino, name);
}

absl::StatusOr<uint64_t> Client::Open(uint64_t ino, int flags) {
  return impl_->Open(ino, flags);
}

absl::StatusOr<std::pair<Attr, uint64_t>> Client::Create(
    uint64_t parent, const std::string& name, uint32_t mode, int flags,
    const Creds& creds) {
  return impl_->Create(parent, name, mode, flags, creds);
}

absl::Status Client::Close(uint64_t fh) { return impl_->Close(fh); }

absl::Status Client::CheckError(uint64_t fh) {
  absl::StatusOr<Handle> h = impl_->HandleOf(fh);
  if (!h.ok()) return h.status();
  absl::MutexLock lock(&h->inode->mu);
  if (h->inode->lost != h->lost_seen) {
    return MakeError(Errc::kIoError, "dirty data of this file was lost", EIO);
  }
  return absl::OkStatus();
}

namespace {

// The handle `h` as one call of `io` uses it.
Handle As(Handle h, Client::Io io) {
  if (io == Client::Io::kBuffered) h.flags &= ~O_DIRECT;
  if (io == Client::Io::kDirect) h.flags |= O_DIRECT;
  return h;
}

}  // namespace

absl::StatusOr<size_t> Client::Read(uint64_t fh, void* buf, size_t len,
                                    uint64_t offset, Io io) {
  absl::StatusOr<Handle> h = impl_->HandleOf(fh);
  if (!h.ok()) return h.status();
  return impl_->Read(As(*h, io), static_cast<char*>(buf), len, offset);
}

void Client::SetCacheAbove(CacheAbove* cache) {
  impl_->cache_above.store(cache);
}

absl::StatusOr<size_t> Client::ReadForCache(uint64_t fh, size_t len,
                                            uint64_t offset, bool exclusive,
                                            const Delivery& deliver,
                                            const FillPipe* pipe) {
  absl::StatusOr<Handle> h = impl_->HandleOf(fh);
  if (!h.ok()) return h.status();
  Impl::CacheFill fill;
  fill.exclusive = exclusive;
  fill.deliver = &deliver;
  fill.pipe = pipe;
  // Pages for a cache, also through an O_DIRECT handle (the kernel fills
  // its page cache for a mapping of a file it opened so).
  return impl_->Read(As(*h, Io::kBuffered), nullptr, len, offset, &fill);
}

absl::StatusOr<size_t> Client::WriteFromCache(uint64_t fh, const void* buf,
                                              size_t len, uint64_t offset) {
  absl::StatusOr<Handle> h = impl_->HandleOf(fh);
  if (!h.ok()) return h.status();
  return impl_->WriteFromCache(*h, static_cast<const char*>(buf), len, offset);
}

absl::StatusOr<size_t> Client::Write(uint64_t fh, const void* buf, size_t len,
                                     uint64_t offset, Io io) {
  absl::StatusOr<Handle> h = impl_->HandleOf(fh);
  if (!h.ok()) return h.status();
  return impl_->Write(As(*h, io), static_cast<const char*>(buf), len, offset);
}

absl::Status Client::Fsync(uint64_t fh, bool) {
  absl::StatusOr<Handle> h = impl_->HandleOf(fh);
  if (!h.ok()) return h.status();
  return impl_->Fsync(*h);
}

absl::Status Client::FsyncDir(uint64_t) { return impl_->SyncMeta(); }

absl::Status Client::Fallocate(uint64_t fh, uint32_t mode, uint64_t offset,
                               uint64_t length) {
  absl::StatusOr<Handle> h = impl_->HandleOf(fh);
  if (!h.ok()) return h.status();
  return impl_->Fallocate(*h, mode, offset, length);
}

absl::StatusOr<uint64_t> Client::Seek(uint64_t fh, uint64_t offset,
                                      int whence) {
  absl::StatusOr<Handle> h = impl_->HandleOf(fh);
  if (!h.ok()) return h.status();
  if (whence != SEEK_DATA && whence != SEEK_HOLE) {
    return MakeError(Errc::kInvalidArgument,
                     "whence must be SEEK_DATA or "
                     "SEEK_HOLE",
                     EINVAL);
  }
  return impl_->Seek(*h, offset, whence == SEEK_DATA);
}

absl::StatusOr<void*> Client::Mmap(uint64_t fh, uint64_t offset, size_t length,
                                   int prot, int flags) {
  absl::StatusOr<Handle> h = impl_->HandleOf(fh);
  if (!h.ok()) return h.status();
  const int acc = h->flags & O_ACCMODE;
  if (((prot & PROT_READ) && acc == O_WRONLY) ||
      ((flags & MAP_SHARED) && (prot & PROT_WRITE) && acc != O_RDWR)) {
    return MakeError(Errc::kPermission,
                     "mmap: the file is not open for this access", EACCES);
  }
  return impl_->mmaps().Map(h->inode, offset, length, prot, flags);
}

absl::Status Client::Msync(void* addr, size_t length, int flags) {
  return impl_->mmaps().Sync(addr, length, flags);
}

absl::Status Client::Munmap(void* addr, size_t length) {
  return impl_->mmaps().Unmap(addr, length);
}

absl::StatusOr<Attr> Client::FileAttr(uint64_t fh) {
  absl::StatusOr<Handle> h = impl_->HandleOf(fh);
  if (!h.ok()) return h.status();
  return impl_->GetAttr(h->inode->ino);
}

uint64_t Client::InoOf(uint64_t fh) {
  absl::StatusOr<Handle> h = impl_->HandleOf(fh);
  return h.ok() ? h->inode->ino : 0;
}

absl::StatusOr<Attr> Client::Resolve(const std::string& path) {
  absl::StatusOr<Attr> cur = impl_->GetAttr(kRootIno);
  for (absl::string_view part : absl::StrSplit(path, '/', absl::SkipEmpty())) {
    if (!cur.ok()) return cur;
    cur = impl_->Lookup(cur->ino, std::string(part));
  }
  return cur;
}

absl::StatusOr<uint64_t> Client::OpenPath(const std::string& path, int flags,
                                          uint32_t mode) {
  std::string::size_type slash = path.find_last_of('/');
  std::string dir = slash == std::string::npos ? "" : path.substr(0, slash);
  std::string name = slash == std::string::npos ? path : path.substr(slash + 1);
  if (flags & O_CREAT) {
    absl::StatusOr<Attr> parent = Resolve(dir);
    if (!parent.ok()) return parent.status();
    absl::StatusOr<std::pair<Attr, uint64_t>> c =
        Create(parent->ino, name, mode, flags, Creds{});
    if (!c.ok()) return c.status();
    return c->second;
  }
  absl::StatusOr<Attr> a = Resolve(path);
  if (!a.ok()) return a.status();
  return impl_->Open(a->ino, flags);
}

namespace {

constexpr uint64_t kFlockStart = 1ull << 63;  // flock's own range space.

LockMode ModeOf(Client::LockType t) {
  switch (t) {
    case Client::LockType::kRead:
      return LockMode::kSh;
    case Client::LockType::kWrite:
      return LockMode::kEx;
    default:
      return LockMode::kUn;
  }
}

absl::Status PosixErrno(const absl::Status& s) {
  switch (ErrcOf(s)) {
    case Errc::kOk:
      return s;
    case Errc::kWouldBlock:
      return MakeError(Errc::kWouldBlock, s.message(), EAGAIN);
    case Errc::kDeadlock:
      return MakeError(Errc::kDeadlock, s.message(), EDEADLK);
    default:
      return s;
  }
}

}  // namespace

absl::Status Client::SetLock(uint64_t ino, uint64_t start, uint64_t end,
                             LockType type, uint64_t owner, bool wait,
                             bool flock) {
  ByteRange range = flock ? ByteRange{kFlockStart, kInfinity}
                          : ByteRange{start, std::min(end, kFlockStart)};
  if (range.start >= range.end) {
    return MakeError(Errc::kInvalidArgument, "empty lock range", EINVAL);
  }
  return PosixErrno(
      impl_->locks().PosixLock(ino, range, ModeOf(type), owner, wait));
}

absl::StatusOr<std::optional<Client::LockConflict>> Client::GetLock(
    uint64_t ino, uint64_t start, uint64_t end, LockType type, uint64_t owner) {
  ByteRange range{start, std::min(end, kFlockStart)};
  if (range.start >= range.end) {
    return MakeError(Errc::kInvalidArgument, "empty lock range", EINVAL);
  }
  auto c = impl_->locks().TestPosix(ino, range, ModeOf(type), owner);
  if (!c.ok()) return c.status();
  if (!c->has_value()) return std::optional<LockConflict>();
  const auto& v = **c;
  return std::optional<LockConflict>(LockConflict{
      v.range.start, v.range.end,
      v.mode == LockMode::kEx ? LockType::kWrite : LockType::kRead});
}

void Client::CancelLockWait(uint64_t ino, uint64_t owner) {
  impl_->locks().CancelPosix(ino, owner);
}

void Client::CancelAllLockWaits() { impl_->locks().CancelAllPosix(); }

void Client::ReleaseLocks(uint64_t ino, uint64_t owner, bool flock) {
  impl_->locks().CancelPosix(ino, owner);
  (void)impl_->locks().PosixLock(ino, {0, kFlockStart}, LockMode::kUn, owner,
                                 false);
  if (flock) {
    (void)impl_->locks().PosixLock(ino, {kFlockStart, kInfinity}, LockMode::kUn,
                                   owner, false);
  }
}

ClientStats Client::Stats() { return impl_->Stats(); }
uint64_t Client::session_id() { return impl_->session_id(); }

}  // namespace rangefs::client
