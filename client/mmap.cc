// A node's memory mappings through userfaultfd (mmap.h, docs/mmap.md).
#include "client/mmap.h"

#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <set>

#include "absl/container/btree_map.h"
#include "client/client_internal.h"
#include "client/user_copy.h"
#include "common/fault_injection.h"
#include "common/log.h"
#include "common/status.h"

// Linux 6.4 and 6.6 (this machine's kernel has them; Debian 12's headers
// do not).
#ifndef UFFDIO_CONTINUE_MODE_WP
#define UFFDIO_CONTINUE_MODE_WP ((__u64)1 << 1)
#endif
#ifndef UFFDIO_POISON
struct uffdio_poison {
  struct uffdio_range range;
  __u64 mode;
  __s64 updated;
};
#define _UFFDIO_POISON (0x08)
#define UFFDIO_POISON _IOWR(UFFDIO, _UFFDIO_POISON, struct uffdio_poison)
#define UFFD_FEATURE_POISON (1 << 14)
#endif

namespace rangefs::client {
namespace {

enum PageState : uint8_t { kAbsent, kClean, kDirty, kPrivate };

// Pages a read fault fills and maps at once (Linux's fault_around_bytes),
// doubled for each fault that continues a sequential run, up to 1 MiB
// (each fault costs two thread switches and a lock lookup: reading a
// mapping sequentially should pay that rarely, as readahead does).
constexpr uint64_t kFaultAround = 16;
constexpr uint64_t kMaxFaultAround = 256;

absl::Status Errno(const std::string& what, int err) {
  return MakeError(Errc::kIoError, what + ": " + strerror(err), err);
}

}  // namespace

// Pages of one inode in a memfd, at their file page index.
struct MmapTable::Backing {
  std::shared_ptr<InodeState> inode;
  bool shared = false;
  int memfd = -1;
  uint64_t size_pages = 0;                   // The memfd's size.
  absl::btree_map<uint64_t, uint8_t> state;  // By file page; absent: none.
  uint64_t dirty = 0;                        // Pages in kDirty.
  std::vector<View*> views;                  // Mappings of it.
  ~Backing() {
    if (memfd >= 0) close(memfd);
  }
};

struct MmapTable::View {
  std::shared_ptr<Backing> backing;
  uint64_t first_page = 0;  // File page of app[0].
  uint64_t pages = 0;
  bool writable = false;
  char* app = nullptr;  // The application's view (registered).
  char* own = nullptr;  // The node's view (never faults to us).
  bool dead = false;    // Unmapped; workers still holding it do nothing.
  // Sequential fault detection: the last read fault and the window.
  uint64_t last_fault = 0;
  uint64_t window = kFaultAround;
  // File pages poisoned in this view: an access gets SIGBUS until the
  // range is invalidated (past EOF, or the fault failed).
  std::set<uint64_t> poisoned;
  bool Covers(uint64_t fp) const {
    return fp >= first_page && fp < first_page + pages;
  }
  uintptr_t AppAddress(uint64_t fp) const {
    return reinterpret_cast<uintptr_t>(app) + (fp - first_page) * kPageSize;
  }
  char* Own(uint64_t fp) const { return own + (fp - first_page) * kPageSize; }
};

MmapTable::MmapTable(Client::Impl* impl) : impl_(impl) {}

MmapTable::~MmapTable() { Stop(); }

absl::Status MmapTable::StartLocked() {
  // Kernel-mode faults too (a system call given a mapping as its buffer)
  // need privilege; without it only user-mode faults come to us and such
  // system calls get EFAULT on pages not yet touched.
  int fd = static_cast<int>(syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK));
  if (fd < 0 && errno == EPERM) {
    fd = static_cast<int>(
        syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY));
  }
  if (fd < 0) {
    return Errno(
        "userfaultfd (mappings need it; see vm.unprivileged_userfaultfd)",
        errno);
  }
  uffdio_api api;
  memset(&api, 0, sizeof api);
  api.api = UFFD_API;
  api.features = UFFD_FEATURE_THREAD_ID | UFFD_FEATURE_MINOR_SHMEM |
                 UFFD_FEATURE_WP_HUGETLBFS_SHMEM | UFFD_FEATURE_POISON;
  if (ioctl(fd, UFFDIO_API, &api) != 0) {
    int err = errno;
    close(fd);
    return Errno(
        "userfaultfd without thread ids, minor or write-protect "
        "faults on shared memory, or poison (Linux 6.6 or later "
        "needed)",
        err);
  }
  stop_fd_ = eventfd(0, EFD_CLOEXEC);
  if (stop_fd_ < 0) {
    int err = errno;
    close(fd);
    return Errno("eventfd", err);
  }
  uffd_ = fd;
  workers_ = std::make_unique<ThreadPool>(4);
  EnableCopyStops();
  reader_ = std::thread([this] { Reader(); });
  return absl::OkStatus();
}

absl::StatusOr<void*> MmapTable::Map(std::shared_ptr<InodeState> inode,
                                     uint64_t offset, size_t length, int prot,
                                     int flags) {
  const int type = flags & (MAP_SHARED | MAP_PRIVATE);
  if (length == 0 || offset % kPageSize != 0 ||
      (type != MAP_SHARED && type != MAP_PRIVATE) ||
      (flags & ~(MAP_SHARED | MAP_PRIVATE)) != 0 ||
      (prot & ~(PROT_READ | PROT_WRITE | PROT_EXEC)) != 0) {
    return MakeError(Errc::kInvalidArgument,
                     "mmap: length 0, unaligned offset, or flags other than "
                     "one of MAP_SHARED and MAP_PRIVATE",
                     EINVAL);
  }
  if (offset >= kMaxFileSize || length > kMaxFileSize - offset) {
    return MakeError(Errc::kInvalidArgument, "mmap past the maximum file size",
                     EOVERFLOW);
  }
  absl::MutexLock lock(&mu_);
  if (stopped_) {
    return MakeError(Errc::kUnavailable, "client is shutting down", EIO);
  }
  if (uffd_ < 0) {
    if (absl::Status s = StartLocked(); !s.ok()) return s;
  }
  auto v = std::make_shared<View>();
  v->first_page = offset / kPageSize;
  v->pages = (length + kPageSize - 1) / kPageSize;
  v->writable = (prot & PROT_WRITE) != 0;
  const size_t bytes = v->pages * kPageSize;
  const uint64_t end_page = v->first_page + v->pages;
  std::shared_ptr<Backing> b;
  if (type == MAP_SHARED) {
    auto it = shared_.find(inode->ino);
    if (it != shared_.end()) b = it->second;
  }
  const bool fresh = b == nullptr;
  if (fresh) {
    b = std::make_shared<Backing>();
    b->inode = inode;
    b->shared = type == MAP_SHARED;
    b->memfd = memfd_create("rangefs-mmap", MFD_CLOEXEC);
    if (b->memfd < 0) return Errno("mmap: memfd_create", errno);
  }
  if (b->size_pages < end_page) {
    // Sparse: only pages that were faulted take memory.
    if (ftruncate(b->memfd, static_cast<off_t>(end_page * kPageSize)) != 0) {
      return Errno("mmap: sizing the backing", errno);
    }
    b->size_pages = end_page;
  }
  auto fail = [&](const std::string& what) {
    int err = errno;
    if (v->app != nullptr) munmap(v->app, bytes);
    if (v->own != nullptr) munmap(v->own, bytes);
    return Errno("mmap: " + what, err == 0 ? ENOMEM : err);
  };
  const off_t at = static_cast<off_t>(v->first_page * kPageSize);
  void* app = mmap(nullptr, bytes, prot, MAP_SHARED, b->memfd, at);
  if (app == MAP_FAILED) return fail("application view");
  v->app = static_cast<char*>(app);
  void* own =
      mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, b->memfd, at);
  if (own == MAP_FAILED) return fail("node view");
  v->own = static_cast<char*>(own);
  // A forked child would see the memory without its faults coming here.
  madvise(v->app, bytes, MADV_DONTFORK);
  madvise(v->own, bytes, MADV_DONTFORK);
  uffdio_register reg;
  memset(&reg, 0, sizeof reg);
  reg.range.start = reinterpret_cast<uintptr_t>(v->app);
  reg.range.len = bytes;
  reg.mode = UFFDIO_REGISTER_MODE_MISSING | UFFDIO_REGISTER_MODE_MINOR |
             UFFDIO_REGISTER_MODE_WP;
  if (ioctl(uffd_, UFFDIO_REGISTER, &reg) != 0) return fail("register");
  // Pages the backing already has are mapped by their first fault here.
  v->backing = b;
  b->views.push_back(v.get());
  if (fresh && b->shared) shared_[inode->ino] = b;
  ++inode->mmaps;
  views_[reinterpret_cast<uintptr_t>(v->app)] = v;
  return static_cast<void*>(v->app);
}

std::shared_ptr<MmapTable::View> MmapTable::Find(uintptr_t address) {
  auto it = views_.upper_bound(address);
  if (it == views_.begin()) return nullptr;
  --it;
  const View& v = *it->second;
  if (address >= it->first + v.pages * kPageSize) return nullptr;
  return it->second;
}

absl::Status MmapTable::Unmap(void* addr, size_t length) {
  std::shared_ptr<View> v;
  {
    absl::MutexLock lock(&mu_);
    auto it = views_.find(reinterpret_cast<uintptr_t>(addr));
    if (it == views_.end() ||
        (length + kPageSize - 1) / kPageSize != it->second->pages) {
      return MakeError(Errc::kInvalidArgument,
                       "munmap: not the start and length of a mapping", EINVAL);
    }
    v = it->second;
    Backing& b = *v->backing;
    CollectLocked(b, v->first_page, v->first_page + v->pages);
    v->dead = true;
    views_.erase(it);
    b.views.erase(std::find(b.views.begin(), b.views.end(), v.get()));
    // Pages no other mapping shows leave the backing.
    std::vector<uint64_t> orphans;
    for (auto p = b.state.lower_bound(v->first_page);
         p != b.state.end() && p->first < v->first_page + v->pages; ++p) {
      bool shown = false;
      for (const View* o : b.views) shown = shown || o->Covers(p->first);
      if (!shown) orphans.push_back(p->first);
    }
    for (uint64_t fp : orphans) ZapLocked(b, fp, fp + 1);
    if (b.views.empty() && b.shared) shared_.erase(b.inode->ino);
  }
  const size_t bytes = v->pages * kPageSize;
  uffdio_range range{reinterpret_cast<uintptr_t>(v->app), bytes};
  ioctl(uffd_, UFFDIO_UNREGISTER, &range);
  munmap(v->app, bytes);
  munmap(v->own, bytes);
  InodeState& in = *v->backing->inode;
  --in.mmaps;
  // What the mapping stored goes to the data servers now.
  return impl_->Writeback(
      in, {v->first_page * kPageSize, (v->first_page + v->pages) * kPageSize});
}

absl::Status MmapTable::Sync(void* addr, size_t length, int flags) {
  std::shared_ptr<InodeState> in;
  ByteRange range;
  {
    absl::MutexLock lock(&mu_);
    const uintptr_t a = reinterpret_cast<uintptr_t>(addr);
    std::shared_ptr<View> v = Find(a);
    const uintptr_t base =
        v == nullptr ? 0 : reinterpret_cast<uintptr_t>(v->app);
    if (v == nullptr || a % kPageSize != 0 ||
        length > v->pages * kPageSize - (a - base)) {
      return MakeError(Errc::kInvalidArgument,
                       "msync: not an aligned range of one mapping", ENOMEM);
    }
    const uint64_t first = v->first_page + (a - base) / kPageSize;
    const uint64_t end = first + (length + kPageSize - 1) / kPageSize;
    CollectLocked(*v->backing, first, end);
    in = v->backing->inode;
    range = {first * kPageSize, end * kPageSize};
  }
  if ((flags & MS_SYNC) == 0) return absl::OkStatus();
  if (absl::Status s = impl_->Writeback(*in, range); !s.ok()) return s;
  return impl_->stubs().FlushData(impl_->session_id());
}

void MmapTable::Stop() {
  std::vector<std::shared_ptr<View>> views;
  {
    absl::MutexLock lock(&mu_);
    if (stopped_) return;
    stopped_ = true;
    for (auto& [a, v] : views_) views.push_back(v);
  }
  if (reader_.joinable()) {
    uint64_t one = 1;
    (void)!write(stop_fd_, &one, sizeof one);
    reader_.join();
  }
  workers_.reset();  // Finishes the faults in flight.
  for (const std::shared_ptr<View>& v : views) {
    (void)Unmap(v->app, v->pages * kPageSize);
  }
  if (uffd_ >= 0) close(uffd_);
  if (stop_fd_ >= 0) close(stop_fd_);
}

// ------------------------------------------------------------------ faults

void MmapTable::Reader() {
  uffd_msg msgs[16];
  for (;;) {
    pollfd fds[2] = {{uffd_, POLLIN, 0}, {stop_fd_, POLLIN, 0}};
    if (poll(fds, 2, -1) < 0) continue;  // EINTR.
    if (fds[1].revents != 0) return;
    ssize_t n = read(uffd_, msgs, sizeof msgs);
    if (n <= 0) continue;
    for (size_t i = 0; i < static_cast<size_t>(n) / sizeof(uffd_msg); ++i) {
      if (msgs[i].event != UFFD_EVENT_PAGEFAULT) continue;
      Fault f;
      f.address = msgs[i].arg.pagefault.address & ~(kPageSize - 1);
      f.flags = msgs[i].arg.pagefault.flags;
      f.tid = static_cast<pid_t>(msgs[i].arg.pagefault.feat.ptid);
      std::shared_ptr<View> v;
      {
        absl::MutexLock lock(&mu_);
        v = Find(f.address);
      }
      if (v == nullptr) continue;  // Unmapped meanwhile: the access faults.
      const uint64_t fp =
          v->first_page +
          (f.address - reinterpret_cast<uintptr_t>(v->app)) / kPageSize;
      if (Refuse(f, *v, fp)) continue;
      workers_->Submit([this, f] { Serve(f); });
    }
  }
}

bool MmapTable::Refuse(const Fault& f, View& v, uint64_t fp) {
  if (UnsafeSwitch("unsafe.client.no_copy_stops")) return false;
  const bool write = (f.flags & UFFD_PAGEFAULT_FLAG_WRITE) != 0;
  const bool exclusive = write && v.backing->shared;
  const uint64_t ino = v.backing->inode->ino;
  const LockMode mode = exclusive ? LockMode::kEx : LockMode::kSh;
  LockCache& locks = impl_->locks();
  // Would serving it wait on a lock this very thread holds? (DESIGN.md:
  // then the fault must fail, not wait.)
  const bool deadlock =
      locks.TaskConflicts(ResourceId{ino, LockKind::kInval},
                          {fp * kPageSize, (fp + 1) * kPageSize}, mode,
                          f.tid) ||
      locks.TaskConflicts(ResourceId{ino, LockKind::kInode}, WholeFile(), mode,
                          f.tid);
  if (deadlock) {
    {
      absl::MutexLock lock(&mu_);
      ++stats_.deadlock_faults;
    }
    if (!StopCopy(f.tid, CopyStop::kDeadlock)) {
      RANGEFS_LOG(ERROR) << "thread " << f.tid << " faulted on a mapping of "
                         << "inode " << ino << " page " << fp
                         << " while holding its lock: SIGBUS";
      absl::MutexLock lock(&mu_);
      PoisonLocked(v, fp);
    }
    return true;
  }
  if (StopCopy(f.tid, CopyStop::kNotResident)) {
    absl::MutexLock lock(&mu_);
    ++stats_.refused_faults;
    return true;
  }
  return false;
}

void MmapTable::PoisonLocked(View& v, uint64_t fp) {
  if (v.dead) return;
  ++stats_.sigbus_faults;
  uffdio_poison p;
  memset(&p, 0, sizeof p);
  p.range.start = v.AppAddress(fp);
  p.range.len = kPageSize;
  if (ioctl(uffd_, UFFDIO_POISON, &p) == 0) {
    v.poisoned.insert(fp);
    return;
  }
  // The page table entry is not empty: a write-protect marker left by a
  // zap of a protected page, or a page mapped meanwhile. Clear it and try
  // once more; whatever happens, the thread must wake (a retry that still
  // finds no page faults again).
  const int first = errno;
  ClearMarkers(p.range.start);
  if (ioctl(uffd_, UFFDIO_POISON, &p) == 0) {
    v.poisoned.insert(fp);
    return;
  }
  RANGEFS_LOG(WARNING) << "UFFDIO_POISON: " << strerror(first) << ", then "
                       << strerror(errno);
  ioctl(uffd_, UFFDIO_WAKE, &p.range);
}

void MmapTable::ClearMarkers(uintptr_t address) {
  // Resolving write protection on an empty entry removes the marker (and
  // wakes nobody: DONTWAKE).
  uffdio_writeprotect wp;
  memset(&wp, 0, sizeof wp);
  wp.range.start = address;
  wp.range.len = kPageSize;
  wp.mode = UFFDIO_WRITEPROTECT_MODE_DONTWAKE;
  ioctl(uffd_, UFFDIO_WRITEPROTECT, &wp);
}

void MmapTable::Unpoison(Backing& b, uint64_t first, uint64_t end) {
  for (View* v : b.views) {
    auto it = v->poisoned.lower_bound(first);
    while (it != v->poisoned.end() && *it < end) {
      madvise(reinterpret_cast<void*>(v->AppAddress(*it)), kPageSize,
              MADV_DONTNEED);
      it = v->poisoned.erase(it);
    }
  }
}

void MmapTable::Serve(const Fault& f) {
  std::shared_ptr<View> v;
  {
    absl::MutexLock lock(&mu_);
    v = Find(f.address);
  }
  if (v == nullptr) return;
  Backing& b = *v->backing;
  InodeState& in = *b.inode;
  const uint64_t fp =
      v->first_page +
      (f.address - reinterpret_cast<uintptr_t>(v->app)) / kPageSize;
  const bool write = (f.flags & UFFD_PAGEFAULT_FLAG_WRITE) != 0;
  const bool exclusive = write && b.shared;
  // The pages [lo, lo + want) are filled: the faulting one for a write,
  // an aligned fault-around block for a read.
  uint64_t lo = fp;
  uint64_t want = 1;
  if (!write) {
    absl::MutexLock lock(&mu_);
    // A fault near the last one (memcpy may touch a block's end first)
    // continues a sequential run: the window doubles.
    const bool near =
        fp + v->window >= v->last_fault && fp <= v->last_fault + 2 * v->window;
    v->window = near ? std::min(kMaxFaultAround, v->window * 2) : kFaultAround;
    v->last_fault = fp;
    lo = std::max(v->first_page, fp & ~(v->window - 1));
    want = std::min<uint64_t>(lo + v->window, v->first_page + v->pages) - lo;
  }
  const ByteRange locked{lo * kPageSize, (lo + want) * kPageSize};
  const LockCache::SessionSnapshot snap = impl_->locks().Snapshot();
  const LockMode mode = exclusive ? LockMode::kEx : LockMode::kSh;

  HeldLocks held(&impl_->locks());
  absl::Status s = UnsafeSwitch("unsafe.client.fault_without_inval")
                       ? absl::OkStatus()
                       : held.Take(LockKind::kInval, in.ino, locked, mode);
  if (s.ok()) s = held.Take(LockKind::kInode, in.ino, WholeFile(), mode);
  absl::StatusOr<Attr> attr =
      s.ok() ? impl_->CachedAttr(in) : absl::StatusOr<Attr>(s);
  if (!attr.ok()) {
    RANGEFS_LOG(WARNING) << "fault on inode " << in.ino << " page " << fp
                         << ": " << attr.status().message() << ": SIGBUS";
    absl::MutexLock lock(&mu_);
    PoisonLocked(*v, fp);
    return;
  }
  const uint64_t size = attr->size;
  if (fp * kPageSize >= size) {
    absl::MutexLock lock(&mu_);
    PoisonLocked(*v, fp);  // Past EOF: SIGBUS, as Linux.
    return;
  }
  const uint64_t end = std::min(lo + want, PageCeil(size) / kPageSize);
  // Stores of other private mappings' never reach the page cache; the
  // shared backing's own dirty pages are the newest copy and stay.
  std::vector<char> data((end - lo) * kPageSize);
  if (absl::Status fs = impl_->FillPages(in, lo, end, size, locked); !fs.ok()) {
    RANGEFS_LOG(WARNING) << "fault on inode " << in.ino << " page " << fp
                         << ": " << fs.message() << ": SIGBUS";
    absl::MutexLock lock(&mu_);
    PoisonLocked(*v, fp);
    return;
  }
  for (uint64_t p = lo; p < end; ++p) {
    char* out = data.data() + (p - lo) * kPageSize;
    if (impl_->pages().Read(in.ino, p, out)) continue;
    // Reclaimed since the fill (a tiny cache): read it through.
    if (absl::Status rs =
            impl_->ReadBlocksDirect(in, p * kPageSize, kPageSize, out);
        !rs.ok()) {
      absl::MutexLock lock(&mu_);
      PoisonLocked(*v, fp);
      return;
    }
  }
  if (exclusive) {
    absl::MutexLock lock(&in.mu);
    in.dirty_incarnation = snap.incarnation;
    in.attr.mtime = in.attr.ctime = NowTimespec();
  }

  absl::MutexLock lock(&mu_);
  if (v->dead) return;
  if (impl_->locks().incarnation() != snap.incarnation) {
    // The session went while we filled: map nothing; the access faults
    // again and starts over.
    uffdio_range r{f.address, kPageSize};
    ioctl(uffd_, UFFDIO_WAKE, &r);
    return;
  }
  // Maps file page `p` into this view: fills the backing first if it has
  // no copy of the page.
  // Maps file page `p` into this view. A page the backing lacks is copied
  // in from `fresh` (UFFDIO_COPY allocates it and maps it in one call); a
  // page it has is mapped (UFFDIO_CONTINUE).
  auto install = [&](uint64_t p, const char* fresh, bool protect) {
    int rc;
    uffdio_range range{v->AppAddress(p), kPageSize};
    if (b.state.find(p) == b.state.end()) {
      uffdio_copy c;
      memset(&c, 0, sizeof c);
      c.dst = range.start;
      c.src = reinterpret_cast<uintptr_t>(fresh);
      c.len = kPageSize;
      c.mode = protect ? UFFDIO_COPY_MODE_WP : 0;
      rc = ioctl(uffd_, UFFDIO_COPY, &c);
    } else {
      uffdio_continue c;
      memset(&c, 0, sizeof c);
      c.range = range;
      c.mode = protect ? UFFDIO_CONTINUE_MODE_WP : 0;
      rc = ioctl(uffd_, UFFDIO_CONTINUE, &c);
    }
    if (rc != 0) {
      // Mapped meanwhile (EEXIST), or anything else: wake the thread; a
      // retry that still finds no page faults again.
      if (errno != EEXIST) {
        RANGEFS_LOG(WARNING) << "mapping a page: " << strerror(errno);
      }
      ioctl(uffd_, UFFDIO_WAKE, &range);
    }
  };
  auto it = b.state.find(fp);
  const uint8_t st = it == b.state.end() ? uint8_t{kAbsent} : it->second;
  RANGEFS_LOG(DEBUG) << "serve ino " << in.ino << " page " << fp
                     << (write ? " write" : " read") << " flags " << f.flags
                     << " state " << int{st} << " fill [" << lo << "," << end
                     << ") first byte "
                     << int{data.empty() ? 0 : data[(fp - lo) * kPageSize]};
  // The fault's flags describe the page table when it faulted; a callback
  // may have zapped the page since. The backing's state is what counts:
  // an absent page is filled and mapped; a present one is mapped (missing
  // or minor fault: this view has no entry) or unprotected (write-protect
  // fault).
  const bool wp_fault = (f.flags & UFFD_PAGEFAULT_FLAG_WP) != 0;
  if (write) {
    const uint8_t now = b.shared ? kDirty : kPrivate;
    if (st != kAbsent && wp_fault) {
      uffdio_writeprotect wp;
      memset(&wp, 0, sizeof wp);
      wp.range.start = f.address;
      wp.range.len = kPageSize;
      wp.mode = 0;  // Also wakes the faulting thread.
      ioctl(uffd_, UFFDIO_WRITEPROTECT, &wp);
    } else {
      install(fp, data.data() + (fp - lo) * kPageSize, /*protect=*/false);
    }
    if (st != kDirty && now == kDirty) ++b.dirty;
    b.state[fp] = now;
    if (b.shared) {
      ++stats_.write_faults;
    } else {
      ++stats_.private_faults;
    }
    return;
  }
  ++stats_.read_faults;
  if (st != kAbsent) {
    install(fp, nullptr, st == kClean && v->writable);
    return;
  }
  // Runs of absent pages: copied in and mapped with one call each.
  for (uint64_t p = lo; p < end;) {
    if (b.state.find(p) != b.state.end()) {
      ++p;
      continue;
    }
    uint64_t run = p;
    while (run < end && b.state.find(run) == b.state.end()) ++run;
    uffdio_copy c;
    memset(&c, 0, sizeof c);
    c.dst = v->AppAddress(p);
    c.src = reinterpret_cast<uintptr_t>(data.data() + (p - lo) * kPageSize);
    c.len = (run - p) * kPageSize;
    c.mode = v->writable ? UFFDIO_COPY_MODE_WP : 0;
    if (ioctl(uffd_, UFFDIO_COPY, &c) != 0) {
      // Part of it was copied (c.copy bytes) or mapped meanwhile: the rest
      // page by page.
      const uint64_t copied =
          c.copy > 0 ? static_cast<uint64_t>(c.copy) / kPageSize : 0;
      for (uint64_t q = p; q < p + copied; ++q) b.state[q] = kClean;
      for (uint64_t q = p + copied; q < run; ++q) {
        install(q, data.data() + (q - lo) * kPageSize, v->writable);
        b.state[q] = kClean;
      }
    } else {
      for (uint64_t q = p; q < run; ++q) b.state[q] = kClean;
    }
    p = run;
  }
  // The faulting page may lie outside what was copied (it was mapped
  // meanwhile): make sure its thread wakes.
  uffdio_range r{f.address, kPageSize};
  ioctl(uffd_, UFFDIO_WAKE, &r);
}

// ------------------------------------------------- the I/O paths' calls

std::vector<MmapTable::Backing*> MmapTable::BackingsOf(const InodeState& in) {
  std::vector<Backing*> out;
  for (auto& [a, v] : views_) {
    Backing* b = v->backing.get();
    if (b->inode.get() != &in) continue;
    if (std::find(out.begin(), out.end(), b) == out.end()) out.push_back(b);
  }
  return out;
}

void MmapTable::CollectLocked(Backing& b, uint64_t first, uint64_t end) {
  if (b.dirty == 0 || !b.shared) return;
  InodeState& in = *b.inode;
  uint64_t size = kInfinity;
  {
    absl::MutexLock lock(&in.mu);
    if (in.attr_valid) size = in.attr.size;
  }
  for (auto it = b.state.lower_bound(first);
       it != b.state.end() && it->first < end; ++it) {
    if (it->second != kDirty) continue;
    const uint64_t fp = it->first;
    // Protect first, in every view: a store after this faults (and waits
    // for INVAL EX), so the copy below has every store made before.
    const View* from = nullptr;
    for (const View* v : b.views) {
      if (!v->Covers(fp)) continue;
      from = v;
      uffdio_writeprotect wp;
      memset(&wp, 0, sizeof wp);
      wp.range.start = v->AppAddress(fp);
      wp.range.len = kPageSize;
      wp.mode = UFFDIO_WRITEPROTECT_MODE_WP;
      ioctl(uffd_, UFFDIO_WRITEPROTECT, &wp);
    }
    if (from == nullptr) continue;
    char page[kPageSize];
    memcpy(page, from->Own(fp), kPageSize);
    // Bytes past EOF are never stored (the tail of the last page).
    if (size != kInfinity && (fp + 1) * kPageSize > size) {
      const uint64_t keep = size > fp * kPageSize ? size - fp * kPageSize : 0;
      memset(page + keep, 0, kPageSize - keep);
    }
    impl_->pages().Insert(in.ino, fp, page, /*dirty=*/true);
    RANGEFS_LOG(DEBUG) << "collect ino " << in.ino << " page " << fp << " byte "
                       << int{page[0]};
    it->second = kClean;
    --b.dirty;
    ++stats_.pages_collected;
  }
}

uint64_t MmapTable::ZapLocked(Backing& b, uint64_t first, uint64_t end) {
  Unpoison(b, first, end);  // The size may have changed: fault again.
  uint64_t dirty = 0;
  auto it = b.state.lower_bound(first);
  while (it != b.state.end() && it->first < end) {
    if (it->second == kPrivate) {
      ++it;
      continue;
    }
    const uint64_t fp = it->first;
    if (it->second == kDirty) {
      ++dirty;
      --b.dirty;
    }
    RANGEFS_LOG(DEBUG) << "zap ino " << b.inode->ino << " page " << fp
                       << " state " << int{it->second};
    it = b.state.erase(it);
    ++stats_.pages_zapped;
    // Dropping the memfd's page removes it from every view's page tables:
    // the next access faults. A page that was write-protected leaves a
    // marker in its place; clear it, so the next fault is a plain one.
    fallocate(b.memfd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
              static_cast<off_t>(fp * kPageSize),
              static_cast<off_t>(kPageSize));
    for (const View* v : b.views) {
      if (v->Covers(fp)) ClearMarkers(v->AppAddress(fp));
    }
  }
  return dirty;
}

namespace {
// File pages [first, end) of `range`.
std::pair<uint64_t, uint64_t> PagesOf(const ByteRange& range) {
  return {range.start / kPageSize,
          range.end == kInfinity ? kInfinity : PageCeil(range.end) / kPageSize};
}
}  // namespace

void MmapTable::Collect(InodeState& in, const ByteRange& range) {
  if (in.mmaps.load() == 0) return;
  auto [first, end] = PagesOf(range);
  absl::MutexLock lock(&mu_);
  for (Backing* b : BackingsOf(in)) CollectLocked(*b, first, end);
}

uint64_t MmapTable::Zap(InodeState& in, const ByteRange& range) {
  if (in.mmaps.load() == 0) return 0;
  auto [first, end] = PagesOf(range);
  uint64_t dirty = 0;
  absl::MutexLock lock(&mu_);
  for (Backing* b : BackingsOf(in)) dirty += ZapLocked(*b, first, end);
  return dirty;
}

void MmapTable::Refresh(InodeState& in, const ByteRange& range) {
  if (in.mmaps.load() == 0) return;
  auto [first, end] = PagesOf(range);
  absl::MutexLock lock(&mu_);
  for (Backing* b : BackingsOf(in)) {
    std::vector<uint64_t> uncached;
    for (auto it = b->state.lower_bound(first);
         it != b->state.end() && it->first < end; ++it) {
      if (it->second != kClean) continue;
      const View* via = nullptr;
      for (const View* v : b->views) {
        if (v->Covers(it->first)) via = v;
      }
      if (via != nullptr &&
          impl_->pages().Read(in.ino, it->first, via->Own(it->first))) {
        ++stats_.pages_refreshed;
      } else {
        uncached.push_back(it->first);
      }
    }
    // Not cached: the next access fetches them.
    for (uint64_t fp : uncached) ZapLocked(*b, fp, fp + 1);
    Unpoison(*b, first, end);  // Written: the file may reach them now.
  }
}

std::vector<uint64_t> MmapTable::DirtyInodes() {
  std::vector<uint64_t> out;
  absl::MutexLock lock(&mu_);
  for (auto& [ino, b] : shared_) {
    if (b->dirty > 0) out.push_back(ino);
  }
  return out;
}

MmapStats MmapTable::Stats() {
  absl::MutexLock lock(&mu_);
  return stats_;
}

}  // namespace rangefs::client
