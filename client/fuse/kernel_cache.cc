#include "client/fuse/kernel_cache.h"

#include <errno.h>
#include <unistd.h>

#include <algorithm>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "common/fault_injection.h"
#include "common/log.h"

namespace rangefs::fuse {
namespace {

// `from` minus `cut`.
std::vector<ByteRange> Subtract(const std::vector<ByteRange>& from,
                                const ByteRange& cut) {
  std::vector<ByteRange> out;
  for (const ByteRange& r : from) {
    if (!r.Overlaps(cut)) {
      out.push_back(r);
      continue;
    }
    if (r.start < cut.start) out.push_back({r.start, cut.start});
    if (cut.end < r.end) out.push_back({cut.end, r.end});
  }
  return out;
}

}  // namespace

// The notifications of one round of Invalidate().
struct KernelCache::Batch {
  absl::Mutex mu;
  std::vector<bool> done ABSL_GUARDED_BY(mu);
  size_t left ABSL_GUARDED_BY(mu) = 0;
};

KernelCache::~KernelCache() { Shutdown(); }

void KernelCache::Attach(fuse_session* se) {
  absl::MutexLock lock(&mu_);
  se_ = se;
}

bool KernelCache::Shutdown(int wait_ms) {
  absl::MutexLock lock(&mu_);
  stopping_ = true;
  auto idle = [this]()
                  ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return running_ == 0; };
  return mu_.AwaitWithTimeout(absl::Condition(&idle),
                              absl::Milliseconds(wait_ms));
}

uint64_t KernelCache::Register(uint64_t ino, uint64_t offset, uint64_t length) {
  absl::MutexLock lock(&mu_);
  const uint64_t id = next_id_++;
  // The kernel locks whole pages, a partial page too (and invalidation
  // works in pages): the request's range is its pages, not its bytes.
  constexpr uint64_t kPage = 4096;
  const uint64_t end =
      length > kInfinity - offset - kPage
          ? kInfinity
          : (offset + std::max<uint64_t>(length, 1) + kPage - 1) / kPage *
                kPage;
  inflight_[ino][id] = ByteRange{offset / kPage * kPage, end};
  Notices& n = notices_[ino];
  n.last_request = id;
  n.last_request_at = absl::Now();
  return id;
}

absl::StatusOr<std::string> KernelCache::Retrieve(uint64_t ino, uint64_t offset,
                                                  size_t size,
                                                  absl::Duration wait) {
  fuse_session* se;
  uint64_t id;
  {
    absl::MutexLock lock(&mu_);
    if (se_ == nullptr || stopping_) {
      return absl::UnavailableError("no kernel session");
    }
    se = se_;
    id = next_retrieval_++;
    retrievals_[id];
  }
  void* cookie = reinterpret_cast<void*>(static_cast<uintptr_t>(id));
  const int rc = fuse_lowlevel_notify_retrieve(
      se, ino, size, static_cast<off_t>(offset), cookie);
  absl::MutexLock lock(&mu_);
  if (rc != 0) {
    retrievals_.erase(id);
    if (rc == -ENOENT) return std::string();  // The kernel has no inode.
    return absl::UnavailableError(
        absl::StrCat("kernel cache retrieve failed: errno ", -rc));
  }
  auto done = [this, id]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return retrievals_[id].done;
  };
  const bool answered = mu_.AwaitWithTimeout(absl::Condition(&done), wait);
  std::string data = std::move(retrievals_[id].data);
  retrievals_.erase(id);  // A late answer finds nothing.
  if (!answered) {
    return absl::DeadlineExceededError("no retrieve answer from the kernel");
  }
  return data;
}

void KernelCache::RetrieveReply(void* cookie, struct fuse_bufvec* data) {
  const uint64_t id =
      static_cast<uint64_t>(reinterpret_cast<uintptr_t>(cookie));
  std::string bytes(fuse_buf_size(data), '\0');
  fuse_bufvec to = FUSE_BUFVEC_INIT(bytes.size());
  to.buf[0].mem = bytes.data();
  const ssize_t n =
      fuse_buf_copy(&to, data, static_cast<fuse_buf_copy_flags>(0));
  bytes.resize(n > 0 ? static_cast<size_t>(n) : 0);
  absl::MutexLock lock(&mu_);
  auto it = retrievals_.find(id);
  if (it == retrievals_.end()) return;
  it->second.done = true;
  it->second.data = std::move(bytes);
}

uint64_t KernelCache::RequestMark() {
  absl::MutexLock lock(&mu_);
  return next_id_ - 1;
}

void KernelCache::Unregister(uint64_t ino, uint64_t id) {
  absl::MutexLock lock(&mu_);
  auto it = inflight_.find(ino);
  if (it == inflight_.end()) return;
  it->second.erase(id);
  if (it->second.empty()) inflight_.erase(it);
}

void KernelCache::Opened(uint64_t fh, uint64_t ino, bool writable) {
  absl::MutexLock lock(&mu_);
  opens_[fh] = Open{ino, writable};
  cached_inodes_.insert(ino);
  if (writable) ++writable_[ino];
}

bool KernelCache::Closed(uint64_t fh) {
  absl::MutexLock lock(&mu_);
  auto it = opens_.find(fh);
  if (it == opens_.end()) return false;
  if (it->second.writable) {
    auto w = writable_.find(it->second.ino);
    if (w != writable_.end() && --w->second <= 0) writable_.erase(w);
  }
  opens_.erase(it);
  return true;
}

bool KernelCache::Cached(uint64_t fh) {
  absl::MutexLock lock(&mu_);
  return opens_.count(fh) > 0;
}

bool KernelCache::Exclusive(uint64_t ino) {
  absl::MutexLock lock(&mu_);
  return writable_.count(ino) > 0;
}

bool KernelCache::MayCache(uint64_t ino) {
  absl::MutexLock lock(&mu_);
  return cached_inodes_.count(ino) > 0;
}

KernelCache::Stats KernelCache::stats() {
  absl::MutexLock lock(&mu_);
  return stats_;
}

void KernelCache::Notify(uint64_t ino, const ByteRange& range,
                         const std::shared_ptr<Batch>& batch) {
  fuse_session* se;
  size_t slot;
  {
    absl::MutexLock lock(&mu_);
    se = se_;
    ++running_;
    ++stats_.notifications;
    NoticeStarts(ino, /*pages=*/true);
  }
  {
    absl::MutexLock lock(&batch->mu);
    slot = batch->done.size();
    batch->done.push_back(false);
    ++batch->left;
  }
  std::thread([this, se, ino, range, batch, slot] {
    {
      // A size store under way holds a byte read before this notification
      // started: it lands first, and this one drops it if it is stale.
      absl::MutexLock lock(&mu_);
      AwaitSizeStores(ino);
    }
    const off_t off = static_cast<off_t>(range.start);
    // 0: to the end of the file.
    const off_t len =
        range.ToInfinity() ? 0 : static_cast<off_t>(range.end - range.start);
    int rc = notify_ ? notify_(ino, off, len)
                     : fuse_lowlevel_notify_inval_inode(se, ino, off, len);
    if (rc != 0 && rc != -ENOENT) {
      RANGEFS_LOG(WARNING) << "inode " << ino
                           << ": kernel cache invalidation of "
                           << range.ToString() << " failed: errno " << -rc;
    }
    {
      absl::MutexLock lock(&batch->mu);
      batch->done[slot] = true;
      --batch->left;
    }
    absl::MutexLock lock(&mu_);
    NoticeEnds(ino);
    --running_;
  }).detach();
}

void KernelCache::NoticeStarts(uint64_t ino, bool pages) {
  Notices& n = notices_[ino];
  n.last_seq = ++notice_seq_;
  (pages ? n.last_page_seq : n.last_attr_seq) = n.last_seq;
  ++n.running;
}

void KernelCache::AwaitSizeStores(uint64_t ino) {
  auto stored = [this, ino]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return notices_[ino].storing == 0;
  };
  mu_.AwaitWithTimeout(absl::Condition(&stored), absl::Milliseconds(20));
}

void KernelCache::NoticeEnds(uint64_t ino) {
  const absl::Time now = absl::Now();
  Notices& n = notices_[ino];
  --n.running;
  n.last_end = now;
  // At most once a second: with many inodes active a scan per
  // notification would cost more than the notification.
  if (notices_.size() > 1024 && now - last_prune_ > absl::Seconds(1)) {
    last_prune_ = now;
    for (auto it = notices_.begin(); it != notices_.end();) {
      const Notices& o = it->second;
      if (o.running == 0 && o.storing == 0 &&
          o.last_end < now - absl::Minutes(1) &&
          o.last_request_at < now - absl::Minutes(1)) {
        it = notices_.erase(it);
      } else {
        ++it;
      }
    }
  }
}

KernelCache::AttrTicket KernelCache::AttrAsked(uint64_t) {
  absl::MutexLock lock(&mu_);
  return AttrTicket{notice_seq_, absl::Now()};
}

bool KernelCache::Overtaken(uint64_t ino, const AttrTicket& t) {
  absl::MutexLock lock(&mu_);
  auto it = notices_.find(ino);
  if (it == notices_.end()) return false;
  const Notices& n = it->second;
  return n.last_seq > t.seq || n.running > 0 ||
         n.last_end > t.at - kKernelQueueMargin;
}

void KernelCache::CountSizeGivenUp() {
  absl::MutexLock lock(&mu_);
  ++stats_.sizes_given_up;
}

uint64_t KernelCache::NoticeSeq() {
  absl::MutexLock lock(&mu_);
  return notice_seq_;
}

bool KernelCache::StoreSize(uint64_t ino, const SizeStore& s) {
  if (s.size == 0) return false;
  // Whether a notification started since makes part of `s` old.
  auto old = [&s](const Notices& n) {
    return n.last_attr_seq > s.size_seq || n.last_page_seq > s.byte_seq;
  };
  fuse_session* se;
  {
    absl::MutexLock lock(&mu_);
    if ((se_ == nullptr && !store_) || stopping_) return false;
    Notices& n = notices_[ino];
    if (old(n)) return false;
    // The laundered page may be back (and dirty): a request brought it.
    if (s.quiet_since != kAnyRequests &&
        (n.last_request > s.quiet_since || inflight_.count(ino) > 0)) {
      return false;
    }
    se = se_;
    ++n.storing;
    ++running_;
    ++stats_.size_stores;
  }
  const uint64_t at = s.size - 1;
  int rc;
  if (store_) {
    rc = store_(ino, at, s.last);
  } else {
    char byte = s.last;
    fuse_bufvec one = FUSE_BUFVEC_INIT(1);
    one.buf[0].mem = &byte;
    rc = fuse_lowlevel_notify_store(se, ino, static_cast<off_t>(at), &one,
                                    static_cast<fuse_buf_copy_flags>(0));
  }
  bool overtaken;
  {
    absl::MutexLock lock(&mu_);
    Notices& n = notices_[ino];
    --n.storing;
    --running_;
    // A notification that stopped waiting for the store: the byte may be
    // older than the page it went into (which is notified again), and the
    // size older than the node's (the next answer has the new one).
    overtaken = old(n);
  }
  if (rc != 0 && rc != -ENOENT) {
    RANGEFS_LOG(WARNING) << "inode " << ino << ": storing the size " << s.size
                         << " in the kernel failed: errno " << -rc;
  }
  if (overtaken) {
    constexpr uint64_t kPage = 4096;
    Invalidate(ino, at / kPage * kPage, kPage);
  }
  return !overtaken;
}

void KernelCache::InvalidateAttributes(uint64_t ino) {
  fuse_session* se;
  {
    absl::MutexLock lock(&mu_);
    if ((se_ == nullptr && !notify_) || stopping_) return;
    se = se_;
    ++running_;
    NoticeStarts(ino, /*pages=*/false);
    // The node may be giving up the INODE lock: a size store under way
    // lands before the size changes elsewhere.
    AwaitSizeStores(ino);
  }
  // A negative offset: attributes only (and the kernel's attribute version
  // moves, so a GETATTR reply already on its way is not cached).
  int rc = notify_ ? notify_(ino, -1, 0)
                   : fuse_lowlevel_notify_inval_inode(se, ino, -1, 0);
  if (rc != 0 && rc != -ENOENT) {
    RANGEFS_LOG(WARNING) << "inode " << ino
                         << ": attribute invalidation failed: errno " << -rc;
  }
  absl::MutexLock lock(&mu_);
  NoticeEnds(ino);
  --running_;
}

int KernelCache::IncEpoch(fuse_session* se) {
  // libfuse 3.14 has no call for it: the notification is a bare header
  // (struct fuse_out_header: len, error = the notify code, unique = 0).
  struct {
    uint32_t len;
    int32_t error;
    uint64_t unique;
  } header{16, /*FUSE_NOTIFY_INC_EPOCH=*/8, 0};
  static_assert(sizeof(header) == 16);
  const ssize_t n = write(fuse_session_fd(se), &header, sizeof(header));
  if (n == static_cast<ssize_t>(sizeof(header))) return 0;
  return n < 0 ? -errno : -EIO;
}

void KernelCache::EnableNames() {
  absl::MutexLock lock(&mu_);
  names_wanted_ = true;
}

double KernelCache::EntryTimeout() {
  constexpr double kCoveredEntryTimeout = 3600;
  absl::MutexLock lock(&mu_);
  if (names_wanted_ && !names_probed_ && se_ != nullptr) {
    // Asked by a request, so INIT has been answered. A kernel without the
    // epoch refuses it (EINVAL): it keeps no names then.
    names_probed_ = true;
    const int rc = IncEpoch(se_);
    names_ = rc == 0;
    if (!names_) {
      RANGEFS_LOG(INFO) << "the kernel has no dentry epoch (errno " << -rc
                        << "): it keeps no names of this mount";
    }
  }
  return names_ && !stopping_ ? kCoveredEntryTimeout : 0;
}

void KernelCache::InvalidateNames() {
  fuse_session* se;
  {
    absl::MutexLock lock(&mu_);
    // Once stopping the session is going away with the kernel's names.
    if (se_ == nullptr || !names_ || stopping_) return;
    se = se_;
    ++running_;
    ++stats_.name_epochs;
  }
  const int rc = IncEpoch(se);
  if (rc != 0 && rc != -ENODEV) {
    RANGEFS_LOG(WARNING) << "dentry epoch notification failed: errno " << -rc;
  }
  absl::MutexLock lock(&mu_);
  --running_;
}

void KernelCache::Invalidate(uint64_t ino, uint64_t offset, uint64_t length) {
  // The race suite's evidence that its checks through mounts can fail
  // (docs/race-suite.md): the kernel keeps its pages.
  if (UnsafeSwitch("unsafe.fuse.keep_kernel_cache")) return;
  const uint64_t end = length == 0 || length > (1ull << 63) - offset
                           ? kInfinity
                           : offset + length;
  std::vector<ByteRange> need{ByteRange{offset, end}};
  {
    absl::MutexLock lock(&mu_);
    if ((se_ == nullptr && !notify_) || stopping_) return;
    ++stats_.invalidations;
  }
  // The notifications under way (`sent` by slot) and what of them is
  // still blocked.
  std::shared_ptr<Batch> batch;
  std::vector<ByteRange> sent;
  for (int round = 1;; ++round) {
    // What is in flight holds its pages locked and not up to date: nothing
    // stale there, and notifying it could wait for the very callback that
    // called us.
    std::vector<ByteRange> todo = need;
    // The naive way, for the test that shows why not: notify everything
    // and wait for it.
    const bool naive = UnsafeSwitch("unsafe.fuse.inval_waits_on_requests");
    {
      absl::MutexLock lock(&mu_);
      if (stopping_) return;
      auto it = inflight_.find(ino);
      if (it != inflight_.end() && !naive) {
        for (const auto& [id, r] : it->second) {
          std::vector<ByteRange> cut = Subtract(todo, r);
          if (cut != todo) ++stats_.excluded;
          todo = std::move(cut);
        }
      }
    }
    if (todo.empty()) return;
    if (batch == nullptr || todo != need) {
      // The first round, or a request came in flight over part of what is
      // still blocked, maybe on that request's pages: the rest is notified
      // afresh, and the blocked notifications finish by themselves once
      // their pages unlock. Nothing else makes a new one: a notification
      // blocked on pages that no request of ours holds (a write-back
      // under way, a request the kernel has yet to send) waits for them.
      if (batch != nullptr) {
        absl::MutexLock lock(&mu_);
        stats_.abandoned += need.size();
      }
      batch = std::make_shared<Batch>();
      for (const ByteRange& r : todo) Notify(ino, r, batch);
      sent = todo;
    }
    need.clear();
    {
      absl::MutexLock lock(&batch->mu);
      auto all_done = [&batch]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(batch->mu) {
        return batch->left == 0;
      };
      batch->mu.AwaitWithTimeout(
          absl::Condition(&all_done),
          naive ? absl::InfiniteDuration() : absl::Milliseconds(20));
      for (size_t i = 0; i < sent.size(); ++i) {
        if (!batch->done[i]) need.push_back(sent[i]);
      }
    }
    if (need.empty()) return;
    if ((round & (round - 1)) == 0 && round >= 64) {
      size_t in_flight = 0;
      {
        absl::MutexLock lock(&mu_);
        auto it = inflight_.find(ino);
        if (it != inflight_.end()) in_flight = it->second.size();
      }
      // Pages locked by no request of ours: a process writing back a
      // mapped page, or a request the kernel has not sent (no worker free,
      // or the background limit reached: docs/fuse.md).
      RANGEFS_LOG(WARNING) << "inode " << ino << ": kernel cache invalidation "
                           << "of " << need.size() << " range(s) from "
                           << need.front().ToString()
                           << " still waiting on locked pages after " << round
                           << " rounds (" << in_flight
                           << " requests of the inode in flight here)";
    }
  }
}

}  // namespace rangefs::fuse
