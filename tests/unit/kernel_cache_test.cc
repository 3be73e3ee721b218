// KernelCache::Invalidate against a notifier that stands for the kernel's
// inval_inode: a notification blocks while its pages are locked (here: until
// the test lets it go).
#include "client/fuse/kernel_cache.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "gtest/gtest.h"

namespace rangefs::fuse {
namespace {

constexpr uint64_t kIno = 7;

// Records calls; the first `block` of them wait until Release().
template <typename Call>
class Recorder {
 public:
  explicit Recorder(int block) : block_(block) {}

  void Record(const Call& call) {
    absl::MutexLock lock(&mu_);
    calls_.push_back(call);
    if (static_cast<int>(calls_.size()) <= block_) {
      auto released = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return released_;
      };
      mu_.Await(absl::Condition(&released));
    }
  }

  void Release() {
    absl::MutexLock lock(&mu_);
    released_ = true;
  }

  std::vector<Call> calls() {
    absl::MutexLock lock(&mu_);
    return calls_;
  }
  // Waits up to 10 s for `n` calls.
  bool AwaitCalls(size_t n) {
    absl::MutexLock lock(&mu_);
    auto enough = [this, n]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return calls_.size() >= n;
    };
    return mu_.AwaitWithTimeout(absl::Condition(&enough), absl::Seconds(10));
  }

 private:
  const int block_;
  absl::Mutex mu_;
  bool released_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<Call> calls_ ABSL_GUARDED_BY(mu_);
};

struct Notification {
  uint64_t ino;
  int64_t off;
  int64_t len;
};

// The kernel's inval_inode: every notification.
class FakeKernel : public Recorder<Notification> {
 public:
  using Call = Notification;
  using Recorder::Recorder;
  KernelCache::Notifier notifier() {
    return [this](uint64_t ino, int64_t off, int64_t len) {
      Record({ino, off, len});
      return 0;
    };
  }
};

TEST(KernelCacheTest, ARangeInFlightIsNotNotified) {
  FakeKernel kernel(0);
  KernelCache kc(kernel.notifier());
  const uint64_t id = kc.Register(kIno, 8192, 100);  // Page 2.
  kc.Invalidate(kIno, 0, 5 * 4096);
  kc.Unregister(kIno, id);
  std::vector<FakeKernel::Call> calls = kernel.calls();
  ASSERT_EQ(calls.size(), 2u);
  // Each notification runs on a thread of its own.
  std::sort(calls.begin(), calls.end(),
            [](const auto& a, const auto& b) { return a.off < b.off; });
  EXPECT_EQ(calls[0].off, 0);
  EXPECT_EQ(calls[0].len, 8192);
  EXPECT_EQ(calls[1].off, 3 * 4096);
  EXPECT_EQ(calls[1].len, 2 * 4096);
  EXPECT_EQ(kc.stats().excluded, 1u);
}

// A notification blocked on pages that no request of ours holds (a
// write-back under way) is waited for, not repeated: each repeat was one
// more thread blocked on the same pages (1900 of them in one hang).
TEST(KernelCacheTest,
     ABlockedNotificationIsNotRepeatedWhileNothingComesInFlight) {
  FakeKernel kernel(1);
  KernelCache kc(kernel.notifier());
  std::atomic<bool> done{false};
  std::thread t([&] {
    kc.Invalidate(kIno, 0, 1 << 20);
    done = true;
  });
  ASSERT_TRUE(kernel.AwaitCalls(1));
  // Long enough for many rounds of waiting (20 ms each).
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  EXPECT_FALSE(done);
  EXPECT_EQ(kernel.calls().size(), 1u);
  kernel.Release();
  t.join();
  EXPECT_EQ(kernel.calls().size(), 1u);
  EXPECT_EQ(kc.stats().abandoned, 0u);
}

// A request that comes in flight over a blocked notification's range may
// be what it waits on: the rest is notified again and the invalidation
// ends without the blocked one.
TEST(KernelCacheTest, ARequestComingInFlightGetsTheRestNotifiedAgain) {
  FakeKernel kernel(1);
  KernelCache kc(kernel.notifier());
  std::atomic<bool> done{false};
  std::thread t([&] {
    kc.Invalidate(kIno, 0, 4 * 4096);
    done = true;
  });
  ASSERT_TRUE(kernel.AwaitCalls(1));
  const uint64_t id = kc.Register(kIno, 4096, 4096);
  ASSERT_TRUE(kernel.AwaitCalls(3));
  t.join();  // The blocked notification is still blocked.
  EXPECT_TRUE(done);
  std::vector<FakeKernel::Call> calls = kernel.calls();
  ASSERT_EQ(calls.size(), 3u);
  // The two new notifications run on threads of their own: either may be
  // recorded first.
  std::sort(calls.begin() + 1, calls.end(),
            [](const auto& a, const auto& b) { return a.off < b.off; });
  EXPECT_EQ(calls[0].off, 0);
  EXPECT_EQ(calls[0].len, 4 * 4096);
  EXPECT_EQ(calls[1].off, 0);
  EXPECT_EQ(calls[1].len, 4096);
  EXPECT_EQ(calls[2].off, 2 * 4096);
  EXPECT_EQ(calls[2].len, 2 * 4096);
  EXPECT_EQ(kc.stats().abandoned, 1u);
  kc.Unregister(kIno, id);
  kernel.Release();
  EXPECT_TRUE(kc.Shutdown());  // The blocked one ends.
}

// The kernel drops an attribute answer when a notification of the inode
// came after it asked: the daemon must know which answers that may be.
TEST(KernelCacheTest, AttributeAnswersAreOvertakenByNotificationsOfTheirInode) {
  FakeKernel kernel(0);
  KernelCache kc(kernel.notifier());
  const KernelCache::AttrTicket before = kc.AttrAsked(kIno);
  EXPECT_FALSE(kc.Overtaken(kIno, before));
  kc.InvalidateAttributes(kIno);
  ASSERT_EQ(kernel.calls().size(), 1u);
  EXPECT_EQ(kernel.calls()[0].off, -1);  // Attributes only.
  EXPECT_TRUE(kc.Overtaken(kIno, before));
  EXPECT_FALSE(kc.Overtaken(kIno + 1, kc.AttrAsked(kIno + 1)));
  // Asked just after: the kernel may have read its attribute version
  // before the notification and sent the request after it.
  EXPECT_TRUE(kc.Overtaken(kIno, kc.AttrAsked(kIno)));
  std::this_thread::sleep_for(absl::ToChronoMilliseconds(
      KernelCache::kKernelQueueMargin + absl::Milliseconds(100)));
  const KernelCache::AttrTicket later = kc.AttrAsked(kIno);
  EXPECT_FALSE(kc.Overtaken(kIno, later));
  kc.Invalidate(kIno, 0, 4096);  // A page notification counts too.
  EXPECT_TRUE(kc.Overtaken(kIno, later));
}

struct Store {
  uint64_t ino;
  uint64_t off;
  char byte;
};

// The kernel's store notifications: every byte stored.
class FakeStores : public Recorder<Store> {
 public:
  using Recorder::Recorder;
  KernelCache::Storer storer() {
    return [this](uint64_t ino, uint64_t off, char byte) {
      Record({ino, off, byte});
      return 0;
    };
  }
};

// A size store of `size` and `last`, with everything read now.
KernelCache::SizeStore Fresh(KernelCache& kc, uint64_t size, char last,
                             uint64_t quiet_since = KernelCache::kAnyRequests) {
  KernelCache::SizeStore s;
  s.size = size;
  s.last = last;
  s.size_seq = s.byte_seq = kc.NoticeSeq();
  s.quiet_since = quiet_since;
  return s;
}

// The size goes in as the file's last byte. A size had before an
// attribute notification of the inode, or a byte read before one of its
// pages went from the kernel, may be old: nothing is stored.
TEST(KernelCacheTest, ASizeIsStoredAsTheLastByteUnlessEitherMayBeOld) {
  FakeKernel kernel(0);
  FakeStores stores(0);
  KernelCache kc(kernel.notifier(), stores.storer());
  KernelCache::SizeStore s;
  s.size = 10000;
  s.last = 'x';
  s.size_seq = kc.NoticeSeq();
  s.byte_seq = kc.NoticeSeq();
  kc.Invalidate(kIno, 0, 4096);
  EXPECT_FALSE(kc.StoreSize(kIno, s));  // The byte may be old.
  s.byte_seq = kc.NoticeSeq();
  kc.InvalidateAttributes(kIno);
  EXPECT_FALSE(kc.StoreSize(kIno, s));  // The size may be old.
  EXPECT_TRUE(stores.calls().empty());
  // An attribute-only notification after the size was had changes no
  // page, and another inode's notifications are not this one's.
  s.size_seq = kc.NoticeSeq();
  kc.Invalidate(kIno + 1, 0, 1 << 20);
  kc.InvalidateAttributes(kIno + 1);
  s.byte_seq = kc.NoticeSeq();
  EXPECT_TRUE(kc.StoreSize(kIno, s));
  ASSERT_EQ(stores.calls().size(), 1u);
  EXPECT_EQ(stores.calls()[0].ino, kIno);
  EXPECT_EQ(stores.calls()[0].off, 9999u);
  EXPECT_EQ(stores.calls()[0].byte, 'x');
  s.size = 0;
  EXPECT_FALSE(kc.StoreSize(kIno, s));  // No byte.
  EXPECT_EQ(kc.stats().size_stores, 1u);
}

// A page notification that starts while a store is under way waits for
// it, but not for ever (the store may wait on a page locked by a request
// that waits for this callback): then the stored page is notified again,
// as its byte may be older than the page.
TEST(KernelCacheTest,
     AStoreStuckPastAPageNotificationGetsItsPageNotifiedAgain) {
  FakeKernel kernel(0);
  FakeStores stores(1);
  KernelCache kc(kernel.notifier(), stores.storer());
  std::atomic<int> stored{-1};
  std::thread t(
      [&] { stored = kc.StoreSize(kIno, Fresh(kc, 3 * 4096 + 10, 'z')); });
  ASSERT_TRUE(stores.AwaitCalls(1));
  kc.Invalidate(kIno, 0, 1 << 20);  // Ends: it waited 20 ms at most.
  ASSERT_EQ(kernel.calls().size(), 1u);
  stores.Release();
  t.join();
  EXPECT_EQ(stored.load(), 0);
  ASSERT_TRUE(kernel.AwaitCalls(2));
  EXPECT_EQ(kernel.calls()[1].off, 3 * 4096);
  EXPECT_EQ(kernel.calls()[1].len, 4096);
}

// For a file the kernel may dirty, the last page is dropped before the
// store: a request of the inode since then may have brought it back.
TEST(KernelCacheTest, ASizeStoreAfterALaunderWantsNoRequestSinceIt) {
  FakeKernel kernel(0);
  FakeStores stores(0);
  KernelCache kc(kernel.notifier(), stores.storer());
  uint64_t mark = kc.RequestMark();
  const uint64_t other = kc.Register(kIno + 1, 0, 4096);  // Another inode.
  EXPECT_TRUE(kc.StoreSize(kIno, Fresh(kc, 100, 'a', mark)));
  kc.Unregister(kIno + 1, other);
  mark = kc.RequestMark();
  const uint64_t id = kc.Register(kIno, 1 << 20, 4096);  // Any range.
  EXPECT_FALSE(kc.StoreSize(kIno, Fresh(kc, 100, 'b', mark)));
  kc.Unregister(kIno, id);
  EXPECT_FALSE(kc.StoreSize(kIno, Fresh(kc, 100, 'c', mark)));  // Came.
  mark = kc.RequestMark();
  EXPECT_TRUE(kc.StoreSize(kIno, Fresh(kc, 100, 'd', mark)));
  // Without a mark requests do not matter (no page can be dirty).
  const uint64_t id2 = kc.Register(kIno, 0, 4096);
  EXPECT_TRUE(kc.StoreSize(kIno, Fresh(kc, 100, 'e')));
  kc.Unregister(kIno, id2);
  std::vector<Store> got = stores.calls();
  ASSERT_EQ(got.size(), 3u);
  EXPECT_EQ(got[0].byte, 'a');
  EXPECT_EQ(got[1].byte, 'd');
  EXPECT_EQ(got[2].byte, 'e');
}

}  // namespace
}  // namespace rangefs::fuse
