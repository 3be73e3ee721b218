#include "lockmgr/range_lock_table.h"

#include <atomic>
#include <random>
#include <thread>
#include <vector>

#include "common/status.h"
#include "gtest/gtest.h"

namespace rangefs::lockmgr {
namespace {

constexpr ResourceId kData{7, LockKind::kData};
constexpr ResourceId kInval{7, LockKind::kInval};
constexpr Owner kA{1, 0};
constexpr Owner kB{2, 0};
constexpr Owner kC{3, 0};
constexpr LockMode SH = LockMode::kSh;
constexpr LockMode DF = LockMode::kDf;
constexpr LockMode EX = LockMode::kEx;
constexpr LockMode UN = LockMode::kUn;

LockRequest Req(Owner o, LockMode m, uint64_t start, uint64_t end,
                bool exact = true, ResourceId res = kData) {
  LockRequest r;
  r.resource = res;
  r.owner = o;
  r.mode = m;
  r.range = {start, end};
  r.exact = exact;
  return r;
}

class RangeLockTableTest : public ::testing::Test {
 protected:
  AcquireResult MustAcquire(const LockRequest& req) {
    absl::StatusOr<AcquireResult> r = table_.Acquire(req);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? *r : AcquireResult{};
  }
  Effects MustReduce(Owner o, uint64_t start, uint64_t end, LockMode keep,
                     ResourceId res = kData) {
    absl::StatusOr<Effects> e = table_.Reduce(res, o, {start, end}, keep);
    EXPECT_TRUE(e.ok()) << e.status();
    return e.ok() ? *e : Effects{};
  }
  std::vector<LockInfo> Granted() {
    std::vector<LockInfo> out;
    for (const LockInfo& i : table_.Dump()) {
      if (!i.waiting) out.push_back(i);
    }
    return out;
  }

  RangeLockTable table_;
};

// A sequential reader asks for growing ranges next to a writer's lock; each
// grant covers the owner's earlier ones, which must not pile up (seen with
// `rangefs locks`: one DATA SH entry per read of a node).
TEST_F(RangeLockTableTest, CoveringGrantAbsorbsTheOwnersLocksInside) {
  MustAcquire(Req(kA, SH, 0, 100));
  MustAcquire(Req(kA, SH, 100, 200));
  MustAcquire(Req(kB, SH, 50, 150));
  MustAcquire(Req(kA, SH, 0, 300));
  std::vector<LockInfo> a;
  for (const LockInfo& i : Granted()) {
    if (i.owner == kA) a.push_back(i);
  }
  ASSERT_EQ(a.size(), 1u);
  EXPECT_EQ(a[0].range, (ByteRange{0, 300}));
  EXPECT_EQ(table_.Stats().absorbed, 2u);
  // Another owner's locks are untouched; releasing part of A's range
  // splits the one lock as before.
  EXPECT_EQ(Granted().size(), 2u);
  MustReduce(kA, 100, 200, UN);
  EXPECT_EQ(Granted().size(), 3u);
}

TEST_F(RangeLockTableTest, UncontendedRequestExpandsToWholeSpace) {
  AcquireResult r = MustAcquire(Req(kA, EX, 4096, 8192, /*exact=*/false));
  ASSERT_TRUE(r.granted);
  EXPECT_EQ(r.effects.grants[0].range, (ByteRange{0, kInfinity}));
}

TEST_F(RangeLockTableTest, ExactRequestGetsExactlyItsRange) {
  AcquireResult r = MustAcquire(Req(kA, EX, 4096, 8192));
  EXPECT_EQ(r.effects.grants[0].range, (ByteRange{4096, 8192}));
}

TEST_F(RangeLockTableTest, ExpansionStopsAtNeighbouringConflictingLocks) {
  MustAcquire(Req(kB, EX, 0, 100));
  MustAcquire(Req(kB, SH, 1000, 2000));
  AcquireResult r = MustAcquire(Req(kA, EX, 500, 600, /*exact=*/false));
  EXPECT_EQ(r.effects.grants[0].range, (ByteRange{100, 1000}));
}

TEST_F(RangeLockTableTest, ExpansionPassesCompatibleLocks) {
  MustAcquire(Req(kB, SH, 0, 100));
  AcquireResult r = MustAcquire(Req(kA, SH, 500, 600, /*exact=*/false));
  EXPECT_EQ(r.effects.grants[0].range, (ByteRange{0, kInfinity}));
}

TEST_F(RangeLockTableTest, ExpansionStopsAtQueuedRequests) {
  MustAcquire(Req(kB, EX, 0, 100));
  AcquireResult queued = MustAcquire(Req(kC, EX, 50, 300));
  ASSERT_FALSE(queued.granted);
  AcquireResult r = MustAcquire(Req(kA, SH, 500, 600, /*exact=*/false));
  EXPECT_EQ(r.effects.grants[0].range, (ByteRange{300, kInfinity}));
}

TEST_F(RangeLockTableTest, ContendedRequestIsNotExpanded) {
  MustAcquire(Req(kB, EX, 0, 100));
  MustAcquire(Req(kA, EX, 50, 150, /*exact=*/false));  // Queued.
  Effects e = MustReduce(kB, 0, 100, UN);
  ASSERT_EQ(e.grants.size(), 1u);
  EXPECT_EQ(e.grants[0].range, (ByteRange{0, kInfinity}));
}

TEST_F(RangeLockTableTest, SharedLocksOverlapFreely) {
  EXPECT_TRUE(MustAcquire(Req(kA, SH, 0, 100)).granted);
  EXPECT_TRUE(MustAcquire(Req(kB, SH, 50, 150)).granted);
}

TEST_F(RangeLockTableTest, DeferredSharesWithDeferredButNotShared) {
  EXPECT_TRUE(MustAcquire(Req(kA, DF, 0, 100)).granted);
  EXPECT_TRUE(MustAcquire(Req(kB, DF, 0, 100)).granted);
  EXPECT_FALSE(MustAcquire(Req(kC, SH, 10, 20)).granted);
}

TEST_F(RangeLockTableTest, AdjacentRangesDoNotConflict) {
  EXPECT_TRUE(MustAcquire(Req(kA, EX, 0, 100)).granted);
  EXPECT_TRUE(MustAcquire(Req(kB, EX, 100, 200)).granted);
}

TEST_F(RangeLockTableTest, ResourcesAreIndependent) {
  EXPECT_TRUE(MustAcquire(Req(kA, EX, 0, 100)).granted);
  EXPECT_TRUE(MustAcquire(Req(kB, EX, 0, 100, true, kInval)).granted);
}

TEST_F(RangeLockTableTest, RejectsZeroLengthAndInvertedRanges) {
  EXPECT_EQ(ErrcOf(table_.Acquire(Req(kA, EX, 10, 10)).status()),
            Errc::kInvalidArgument);
  EXPECT_EQ(ErrcOf(table_.Acquire(Req(kA, EX, 10, 5)).status()),
            Errc::kInvalidArgument);
  EXPECT_EQ(ErrcOf(table_.Reduce(kData, kA, {3, 3}, UN).status()),
            Errc::kInvalidArgument);
  EXPECT_TRUE(table_.Dump().empty());
}

TEST_F(RangeLockTableTest, RejectsUnlockedModeAndReduceToExclusive) {
  EXPECT_EQ(ErrcOf(table_.Acquire(Req(kA, UN, 0, 10)).status()),
            Errc::kInvalidArgument);
  EXPECT_EQ(ErrcOf(table_.Reduce(kData, kA, {0, 10}, EX).status()),
            Errc::kInvalidArgument);
}

TEST_F(RangeLockTableTest, RangesTouchingInfinity) {
  EXPECT_TRUE(MustAcquire(Req(kA, EX, kInfinity - 1, kInfinity)).granted);
  EXPECT_TRUE(MustAcquire(Req(kC, EX, 0, kInfinity - 1)).granted);
  EXPECT_FALSE(MustAcquire(Req(kB, SH, 0, kInfinity)).granted);
  EXPECT_EQ(table_.Stats().waiters, 1u);
}

TEST_F(RangeLockTableTest, ConflictQueuesAndCallsBackHolderWithKeepMode) {
  MustAcquire(Req(kA, EX, 0, kInfinity));
  AcquireResult r = MustAcquire(Req(kB, SH, 4096, 8192));
  EXPECT_FALSE(r.granted);
  ASSERT_EQ(r.effects.callbacks.size(), 1u);
  const Callback& cb = r.effects.callbacks[0];
  EXPECT_EQ(cb.holder, kA);
  EXPECT_EQ(cb.range, (ByteRange{4096, 8192}));
  EXPECT_EQ(cb.keep_mode, SH);
}

TEST_F(RangeLockTableTest, ExclusiveRequestAsksHoldersToKeepNothing) {
  MustAcquire(Req(kA, SH, 0, 100));
  MustAcquire(Req(kB, SH, 50, 150));
  AcquireResult r = MustAcquire(Req(kC, EX, 60, 70));
  ASSERT_EQ(r.effects.callbacks.size(), 2u);
  for (const Callback& cb : r.effects.callbacks) {
    EXPECT_EQ(cb.range, (ByteRange{60, 70}));
    EXPECT_EQ(cb.keep_mode, UN);
  }
}

TEST_F(RangeLockTableTest, SameDemandIsNotCalledBackTwice) {
  MustAcquire(Req(kA, EX, 0, 100));
  EXPECT_EQ(MustAcquire(Req(kB, EX, 0, 100)).effects.callbacks.size(), 1u);
  EXPECT_EQ(MustAcquire(Req(kC, EX, 10, 20)).effects.callbacks.size(), 0u);
}

TEST_F(RangeLockTableTest, ReleaseGrantsWaiter) {
  MustAcquire(Req(kA, EX, 0, 100));
  AcquireResult w = MustAcquire(Req(kB, EX, 0, 100));
  Effects e = MustReduce(kA, 0, 100, UN);
  ASSERT_EQ(e.grants.size(), 1u);
  EXPECT_EQ(e.grants[0].ticket, w.ticket);
  EXPECT_EQ(e.grants[0].owner, kB);
}

TEST_F(RangeLockTableTest, QueuedWriterBlocksLaterReaders) {
  MustAcquire(Req(kA, SH, 0, 100));
  AcquireResult writer = MustAcquire(Req(kB, EX, 0, 100));
  ASSERT_FALSE(writer.granted);
  // A reader arriving after the queued writer waits behind it, although it
  // is compatible with the granted SH: no writer starvation.
  AcquireResult reader = MustAcquire(Req(kC, SH, 10, 20));
  EXPECT_FALSE(reader.granted);
  Effects e = MustReduce(kA, 0, 100, UN);
  ASSERT_EQ(e.grants.size(), 1u);
  EXPECT_EQ(e.grants[0].ticket, writer.ticket);
  e = MustReduce(kB, 0, 100, UN);
  ASSERT_EQ(e.grants.size(), 1u);
  EXPECT_EQ(e.grants[0].ticket, reader.ticket);
}

TEST_F(RangeLockTableTest, WaitersAreGrantedInFifoOrder) {
  MustAcquire(Req(kA, EX, 0, 100));
  AcquireResult b = MustAcquire(Req(kB, SH, 0, 100));
  AcquireResult c = MustAcquire(Req(kC, SH, 0, 100));
  Effects e = MustReduce(kA, 0, 100, UN);
  ASSERT_EQ(e.grants.size(), 2u);
  EXPECT_EQ(e.grants[0].ticket, b.ticket);
  EXPECT_EQ(e.grants[1].ticket, c.ticket);
}

TEST_F(RangeLockTableTest, PartialReleaseSplitsTheLock) {
  MustAcquire(Req(kA, EX, 0, 300));
  MustReduce(kA, 100, 200, UN);
  std::vector<LockInfo> locks = Granted();
  ASSERT_EQ(locks.size(), 2u);
  EXPECT_EQ(locks[0].range, (ByteRange{0, 100}));
  EXPECT_EQ(locks[1].range, (ByteRange{200, 300}));
  EXPECT_TRUE(MustAcquire(Req(kB, EX, 100, 200)).granted);
}

TEST_F(RangeLockTableTest, DowngradeWithWaitersGrantsReadersOnly) {
  MustAcquire(Req(kA, EX, 0, 300));
  AcquireResult reader = MustAcquire(Req(kB, SH, 100, 200));
  AcquireResult writer = MustAcquire(Req(kC, EX, 250, 260));
  Effects e = MustReduce(kA, 100, 200, SH);
  ASSERT_EQ(e.grants.size(), 1u);
  EXPECT_EQ(e.grants[0].ticket, reader.ticket);
  std::vector<LockInfo> locks = Granted();
  ASSERT_EQ(locks.size(), 4u);  // A: EX [0,100) SH [100,200) EX [200,300).
  EXPECT_EQ(locks[0].mode, EX);
  EXPECT_EQ(locks[1].mode, SH);
  EXPECT_EQ(locks[3].mode, EX);
  EXPECT_FALSE(writer.granted);
}

TEST_F(RangeLockTableTest, ReducingWhatIsNotHeldIsANoOp) {
  Effects e = MustReduce(kA, 0, 10, UN);
  EXPECT_TRUE(e.grants.empty());
  EXPECT_TRUE(table_.Dump().empty());
}

TEST_F(RangeLockTableTest, ReRequestOfHeldSharedRangeIsGranted) {
  MustAcquire(Req(kA, SH, 0, 100));
  EXPECT_TRUE(MustAcquire(Req(kA, SH, 0, 100)).granted);
}

TEST_F(RangeLockTableTest, SelfConflictFailsWithDeadlockAtOnce) {
  MustAcquire(Req(kA, EX, 0, 100));
  absl::StatusOr<AcquireResult> r = table_.Acquire(Req(kA, EX, 50, 60));
  EXPECT_EQ(ErrcOf(r.status()), Errc::kDeadlock);
  EXPECT_EQ(table_.Stats().waiters, 0u);
}

TEST_F(RangeLockTableTest, OtherTaskOfSameSessionQueuesNormally) {
  MustAcquire(Req(Owner{1, 1}, EX, 0, 100));
  AcquireResult r = MustAcquire(Req(Owner{1, 2}, EX, 0, 100));
  EXPECT_FALSE(r.granted);
}

TEST_F(RangeLockTableTest, QueueingBehindOwnVictimIsDeadlock) {
  MustAcquire(Req(kA, SH, 0, 100));
  MustAcquire(Req(kB, EX, 0, 100));  // Waits for A.
  // A's new SH would queue behind B, which waits on A's SH.
  absl::StatusOr<AcquireResult> r = table_.Acquire(Req(kA, SH, 10, 20));
  EXPECT_EQ(ErrcOf(r.status()), Errc::kDeadlock);
}

TEST_F(RangeLockTableTest, TryOnlyFailsWithoutSideEffects) {
  MustAcquire(Req(kA, EX, 0, 100));
  LockRequest req = Req(kB, SH, 0, 10);
  req.try_only = true;
  absl::StatusOr<AcquireResult> r = table_.Acquire(req);
  EXPECT_EQ(ErrcOf(r.status()), Errc::kWouldBlock);
  EXPECT_EQ(table_.Stats().waiters, 0u);
  EXPECT_FALSE(table_.Dump()[0].callback_pending);
}

TEST_F(RangeLockTableTest, TryOnlySucceedsWhenFree) {
  LockRequest req = Req(kB, SH, 0, 10);
  req.try_only = true;
  EXPECT_TRUE(MustAcquire(req).granted);
}

TEST_F(RangeLockTableTest, ConversionUpgradesInPlace) {
  MustAcquire(Req(kA, SH, 0, 100));
  LockRequest up = Req(kA, EX, 0, 100);
  up.convert = true;
  AcquireResult r = MustAcquire(up);
  ASSERT_TRUE(r.granted);
  std::vector<LockInfo> locks = Granted();
  ASSERT_EQ(locks.size(), 1u);
  EXPECT_EQ(locks[0].mode, EX);
}

TEST_F(RangeLockTableTest, ConversionWaitsForOtherReadersAndJumpsQueue) {
  MustAcquire(Req(kA, SH, 0, 100));
  MustAcquire(Req(kB, SH, 0, 100));
  AcquireResult plain = MustAcquire(Req(kC, EX, 0, 100));
  LockRequest up = Req(kA, EX, 0, 100);
  up.convert = true;
  AcquireResult conv = MustAcquire(up);
  ASSERT_FALSE(conv.granted);
  Effects e = MustReduce(kB, 0, 100, UN);
  ASSERT_EQ(e.grants.size(), 1u);
  EXPECT_EQ(e.grants[0].ticket, conv.ticket);
  EXPECT_NE(e.grants[0].ticket, plain.ticket);
}

// Record locks (kind POSIX): owners that would wait for each other in a
// cycle, across files, get DEADLOCK (F_SETLKW's EDEADLK) instead of
// hanging; a wait that closes no cycle queues.
TEST_F(RangeLockTableTest, RecordLockWaitCycleAcrossFilesIsDeadlock) {
  constexpr ResourceId kX{20, LockKind::kPosix};
  constexpr ResourceId kY{21, LockKind::kPosix};
  constexpr ResourceId kZ{22, LockKind::kPosix};
  auto posix = [](Owner o, ResourceId res) {
    LockRequest r = Req(o, EX, 0, 1, true, res);
    r.convert = true;  // As nodes send them.
    return r;
  };
  MustAcquire(posix(kA, kX));
  MustAcquire(posix(kB, kY));
  MustAcquire(posix(kC, kZ));
  // A waits for B, B for C: no cycle yet.
  EXPECT_FALSE(MustAcquire(posix(kA, kY)).granted);
  EXPECT_FALSE(MustAcquire(posix(kB, kZ)).granted);
  // C waiting for A would close A -> B -> C -> A.
  auto r = table_.Acquire(posix(kC, kX));
  EXPECT_EQ(ErrcOf(r.status()), Errc::kDeadlock) << r.status();
  // Once B stops waiting (its request cancelled), C may wait for A.
  for (const LockInfo& i : table_.Dump()) {
    if (i.waiting && i.owner == kB) ASSERT_TRUE(table_.Cancel(i.ticket).ok());
  }
  EXPECT_FALSE(MustAcquire(posix(kC, kX)).granted);
}

// Record locks follow POSIX: a request that conflicts with no held lock
// is granted, whatever waits (Linux's fcntl): an owner holding [5, 15)
// while another waits for [0, 10) may still lock [0, 5) (before, it was
// refused with DEADLOCK, queued behind the waiter that waits for it), and
// a third owner too.
TEST_F(RangeLockTableTest, RecordLocksAreNotHeldBackByWaiters) {
  constexpr ResourceId kX{30, LockKind::kPosix};
  auto posix = [](Owner o, LockMode m, uint64_t start, uint64_t end) {
    LockRequest r = Req(o, m, start, end, true, kX);
    r.convert = true;
    return r;
  };
  MustAcquire(posix(kA, EX, 5, 15));
  EXPECT_FALSE(MustAcquire(posix(kB, EX, 0, 10)).granted);
  EXPECT_TRUE(MustAcquire(posix(kA, EX, 0, 5)).granted);
  EXPECT_TRUE(MustAcquire(posix(kC, SH, 20, 30)).granted);
  // B gets its range once A lets go of it.
  Effects e = MustReduce(kA, 0, 15, UN, kX);
  ASSERT_EQ(e.grants.size(), 1u);
  EXPECT_EQ(e.grants[0].owner, kB);
}

// The same for the node's own locks (DATA, INVAL, INODE) is not a cycle
// of waits: those are called back, and nothing is refused for it.
TEST_F(RangeLockTableTest, CallbackLocksAreNotCheckedForWaitCycles) {
  constexpr ResourceId kX{20, LockKind::kInval};
  constexpr ResourceId kY{21, LockKind::kInval};
  MustAcquire(Req(kA, EX, 0, 1, true, kX));
  MustAcquire(Req(kB, EX, 0, 1, true, kY));
  EXPECT_FALSE(MustAcquire(Req(kA, EX, 0, 1, true, kY)).granted);
  EXPECT_FALSE(MustAcquire(Req(kB, EX, 0, 1, true, kX)).granted);
}

TEST_F(RangeLockTableTest, CrossedConversionsDeadlock) {
  MustAcquire(Req(kA, SH, 0, 100));
  MustAcquire(Req(kB, SH, 0, 100));
  LockRequest a_up = Req(kA, EX, 0, 100);
  a_up.convert = true;
  EXPECT_FALSE(MustAcquire(a_up).granted);  // Waits for B's SH.
  LockRequest b_up = Req(kB, EX, 0, 100);
  b_up.convert = true;
  EXPECT_EQ(ErrcOf(table_.Acquire(b_up).status()), Errc::kDeadlock);
}

TEST_F(RangeLockTableTest, CancelWithdrawsAndUnblocksLaterWaiters) {
  MustAcquire(Req(kA, SH, 0, 100));
  AcquireResult writer = MustAcquire(Req(kB, EX, 0, 100));
  AcquireResult reader = MustAcquire(Req(kC, SH, 0, 10));
  ASSERT_FALSE(reader.granted);
  absl::StatusOr<Effects> e = table_.Cancel(writer.ticket);
  ASSERT_TRUE(e.ok());
  ASSERT_EQ(e->grants.size(), 1u);
  EXPECT_EQ(e->grants[0].ticket, reader.ticket);
  EXPECT_EQ(ErrcOf(table_.Cancel(writer.ticket).status()), Errc::kNotFound);
}

TEST_F(RangeLockTableTest, DropSessionReleasesEverythingAndGrantsWaiters) {
  MustAcquire(Req(Owner{1, 1}, EX, 0, 100));
  MustAcquire(Req(Owner{1, 2}, EX, 200, 300, true, kInval));
  AcquireResult b1 = MustAcquire(Req(kB, EX, 0, 100));
  AcquireResult b2 = MustAcquire(Req(kB, SH, 250, 260, true, kInval));
  Effects e = table_.DropSession(1);
  ASSERT_EQ(e.grants.size(), 2u);
  EXPECT_EQ(table_.Stats().waiters, 0u);
  for (const LockInfo& i : table_.Dump()) EXPECT_EQ(i.owner, kB);
  (void)b1;
  (void)b2;
}

TEST_F(RangeLockTableTest, GrantFromQueueCallsBackForLaterConflicts) {
  MustAcquire(Req(kA, EX, 0, 100));
  AcquireResult b = MustAcquire(Req(kB, SH, 0, 100));
  AcquireResult c = MustAcquire(Req(kC, EX, 0, 100));
  Effects e = MustReduce(kA, 0, 100, UN);
  ASSERT_EQ(e.grants.size(), 1u);
  EXPECT_EQ(e.grants[0].ticket, b.ticket);
  // B's new SH blocks C: B must be told at once.
  ASSERT_EQ(e.callbacks.size(), 1u);
  EXPECT_EQ(e.callbacks[0].holder, kB);
  EXPECT_EQ(e.callbacks[0].keep_mode, UN);
  (void)c;
}

TEST_F(RangeLockTableTest, EightExbibyteLockBehavesLikeSmallOne) {
  const uint64_t k8EiB = 8ull << 60;
  EXPECT_TRUE(MustAcquire(Req(kA, EX, 0, k8EiB)).granted);
  EXPECT_FALSE(MustAcquire(Req(kB, SH, k8EiB - 1, k8EiB)).granted);
  EXPECT_TRUE(MustAcquire(Req(kB, SH, k8EiB, k8EiB + 1)).granted);
}

TEST_F(RangeLockTableTest, EmptyResourcesAreForgotten) {
  MustAcquire(Req(kA, EX, 0, 100));
  MustReduce(kA, 0, 100, UN);
  EXPECT_EQ(table_.Stats().resources, 0u);
}

// Threads hammer one resource with try-only requests and check, through
// per-slot counters of their own, that granted locks never conflict.
TEST(RangeLockTableConcurrencyTest, ThreadsNeverHoldConflictingLocks) {
  RangeLockTable table;
  constexpr int kSlots = 32;
  std::atomic<int> readers[kSlots] = {};
  std::atomic<int> writers[kSlots] = {};
  std::atomic<bool> bad{false};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937 rng(t);
      for (int i = 0; i < 20000 && !bad; ++i) {
        uint64_t a = rng() % kSlots, b = a + 1 + rng() % 4;
        if (b > kSlots) b = kSlots;
        LockRequest req = Req(Owner{static_cast<uint64_t>(t + 1), 0},
                              rng() % 2 ? EX : SH, a, b);
        req.try_only = true;
        absl::StatusOr<AcquireResult> r = table.Acquire(req);
        if (!r.ok()) continue;
        for (uint64_t s = a; s < b; ++s) {
          if (req.mode == EX) {
            if (writers[s]++ != 0 || readers[s] != 0) bad = true;
          } else {
            if (readers[s]++ < 0 || writers[s] != 0) bad = true;
          }
        }
        for (uint64_t s = a; s < b; ++s) {
          (req.mode == EX ? writers[s] : readers[s])--;
        }
        ASSERT_TRUE(table.Release(req.resource, req.owner, req.range).ok());
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_FALSE(bad);
  EXPECT_EQ(table.Stats().locks, 0u);
}

}  // namespace
}  // namespace rangefs::lockmgr

namespace rangefs::lockmgr {
namespace {

TEST(RangeLockTableQueryTest, ExceedsTellsWhetherACallbackIsAnswered) {
  RangeLockTable t;
  ResourceId r{1, LockKind::kInval};
  LockRequest req;
  req.resource = r;
  req.owner = Owner{1, 0};
  req.mode = LockMode::kEx;
  req.range = {0, 100};
  req.exact = true;
  ASSERT_TRUE(t.Acquire(req).ok());
  EXPECT_TRUE(t.Exceeds(r, req.owner, {10, 20}, LockMode::kSh));
  ASSERT_TRUE(t.Reduce(r, req.owner, {10, 20}, LockMode::kSh).ok());
  EXPECT_FALSE(t.Exceeds(r, req.owner, {10, 20}, LockMode::kSh));
  EXPECT_TRUE(t.Exceeds(r, req.owner, {10, 20}, LockMode::kUn));
  EXPECT_TRUE(t.Exceeds(r, req.owner, {0, 11}, LockMode::kSh));
  EXPECT_FALSE(t.Exceeds(r, Owner{2, 0}, {0, 100}, LockMode::kUn));
}

TEST(RangeLockTableQueryTest, LocksOfListsASessionsLocksWithTags) {
  RangeLockTable t;
  LockRequest req;
  req.resource = ResourceId{1, LockKind::kData};
  req.owner = Owner{5, 0};
  req.mode = LockMode::kSh;
  req.range = {0, 10};
  req.exact = true;
  req.tag = 77;
  ASSERT_TRUE(t.Acquire(req).ok());
  req.owner = Owner{6, 0};
  ASSERT_TRUE(t.Acquire(req).ok());
  std::vector<Grant> mine = t.LocksOf(5);
  ASSERT_EQ(mine.size(), 1u);
  EXPECT_EQ(mine[0].tag, 77u);
  EXPECT_EQ(mine[0].owner, (Owner{5, 0}));
}

}  // namespace
}  // namespace rangefs::lockmgr

namespace rangefs::lockmgr {
namespace {

// A holder's release names the last grant it had seen: a grant of the same
// range that crossed the release on the wire survives it (the race suite
// saw a node keep caching under a lock lockd had cut that way).
TEST(RangeLockTableQueryTest, ReleaseDoesNotCutAGrantTheHolderHadNotSeen) {
  RangeLockTable t;
  ResourceId r{1, LockKind::kInval};
  LockRequest req;
  req.resource = r;
  req.owner = Owner{1, 0};
  req.mode = LockMode::kSh;
  req.range = {0, 100};
  req.exact = true;
  absl::StatusOr<AcquireResult> first = t.Acquire(req);
  ASSERT_TRUE(first.ok() && first->granted);
  const uint64_t seen = first->effects.grants[0].grant_seq;
  req.range = {50, 200};
  absl::StatusOr<AcquireResult> second = t.Acquire(req);
  ASSERT_TRUE(second.ok() && second->granted);
  EXPECT_GT(second->effects.grants[0].grant_seq, seen);
  // The holder releases [0, 200) having seen only the first grant.
  ASSERT_TRUE(t.Reduce(r, req.owner, {0, 200}, LockMode::kUn, seen).ok());
  EXPECT_FALSE(t.Exceeds(r, req.owner, {0, 50}, LockMode::kUn));
  EXPECT_TRUE(t.Exceeds(r, req.owner, {50, 200}, LockMode::kUn));
  // Pieces keep their grant's sequence: releasing up to the second grant
  // takes what is left.
  ASSERT_TRUE(t.Reduce(r, req.owner, {0, 200}, LockMode::kUn,
                       second->effects.grants[0].grant_seq)
                  .ok());
  EXPECT_FALSE(t.Exceeds(r, req.owner, {0, 200}, LockMode::kUn));
}

}  // namespace
}  // namespace rangefs::lockmgr
