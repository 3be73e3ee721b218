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

// Records every notification; the first `block` of them wait until
// Release().
class FakeKernel {
 public:
  explicit FakeKernel(int block) : block_(block) {}

  KernelCache::Notifier notifier() {
    return [this](uint64_t ino, int64_t off, int64_t len) {
      absl::MutexLock lock(&mu_);
      calls_.push_back({ino, off, len});
      if (static_cast<int>(calls_.size()) <= block_) {
        auto released = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
          return released_;
        };
        mu_.Await(absl::Condition(&released));
      }
      return 0;
    };
  }

  void Release() {
    absl::MutexLock lock(&mu_);
    released_ = true;
  }

  struct Call {
    uint64_t ino;
    int64_t off;
    int64_t len;
  };
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

}  // namespace
}  // namespace rangefs::fuse
