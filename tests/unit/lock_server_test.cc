// LockServer without a network: fake sinks record what each session is
// sent; a fake fencer records fences and can be held to show that locks are
// only handed over after the fence is acknowledged.
#include "lockmgr/lock_server.h"

#include <stdlib.h>
#include <unistd.h>

#include <chrono>
#include <set>
#include <thread>

#include "absl/synchronization/mutex.h"
#include "gtest/gtest.h"

namespace rangefs::lockmgr {
namespace {

class FakeSink : public SessionSink {
 public:
  void Send(const proto::ServerMessage& m) override {
    absl::MutexLock l(&mu_);
    msgs_.push_back(m);
  }
  void Close() override {
    absl::MutexLock l(&mu_);
    closed_ = true;
  }
  // Waits (bounded) for a message satisfying `pred`; returns it.
  template <typename Pred>
  std::optional<proto::ServerMessage> WaitFor(Pred pred, int ms = 3000) {
    auto deadline =
        std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
    while (std::chrono::steady_clock::now() < deadline) {
      {
        absl::MutexLock l(&mu_);
        for (const auto& m : msgs_) {
          if (pred(m)) return m;
        }
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    return std::nullopt;
  }
  std::optional<proto::Grant> GrantFor(uint64_t request_id, int ms = 3000) {
    auto m = WaitFor(
        [&](const proto::ServerMessage& m) {
          return m.has_grant() && m.grant().request_id() == request_id;
        },
        ms);
    if (!m) return std::nullopt;
    return m->grant();
  }
  std::optional<proto::Callback> AnyCallback(int ms = 3000) {
    auto m = WaitFor(
        [](const proto::ServerMessage& m) { return m.has_callback(); }, ms);
    if (!m) return std::nullopt;
    return m->callback();
  }
  bool closed() {
    absl::MutexLock l(&mu_);
    return closed_;
  }

 private:
  absl::Mutex mu_;
  std::vector<proto::ServerMessage> msgs_;
  bool closed_ = false;
};

class FakeFencer : public Fencer {
 public:
  absl::Status Fence(uint64_t session, const std::string&) override {
    mu_.Lock();
    while (hold_ || held_.count(session) != 0) {
      mu_.Unlock();
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
      mu_.Lock();
    }
    fenced_.push_back(session);
    mu_.Unlock();
    return absl::OkStatus();
  }
  // Every fence (or only that of `session`) waits while held.
  void Hold(bool h) {
    absl::MutexLock l(&mu_);
    hold_ = h;
  }
  void HoldSession(uint64_t session, bool h) {
    absl::MutexLock l(&mu_);
    if (h) {
      held_.insert(session);
    } else {
      held_.erase(session);
    }
  }
  std::vector<uint64_t> fenced() {
    absl::MutexLock l(&mu_);
    return fenced_;
  }

 private:
  absl::Mutex mu_;
  bool hold_ ABSL_GUARDED_BY(mu_) = false;
  std::set<uint64_t> held_ ABSL_GUARDED_BY(mu_);
  std::vector<uint64_t> fenced_ ABSL_GUARDED_BY(mu_);
};

proto::NodeMessage Acquire(uint64_t session, uint64_t request,
                           proto::LockMode mode, uint64_t start, uint64_t end,
                           bool exact = true) {
  proto::NodeMessage m;
  proto::AcquireRequest* a = m.mutable_acquire();
  a->set_request_id(request);
  a->mutable_resource()->set_ino(9);
  a->mutable_resource()->set_kind(proto::INVAL);
  a->mutable_owner()->set_session_id(session);
  a->set_mode(mode);
  a->mutable_range()->set_start(start);
  a->mutable_range()->set_end(end);
  a->set_exact(exact);
  return m;
}

proto::NodeMessage Release(uint64_t session, uint64_t start, uint64_t end,
                           proto::LockMode keep = proto::UN,
                           uint64_t callback_id = 0) {
  proto::NodeMessage m;
  proto::ReleaseRequest* r = m.mutable_release();
  r->mutable_resource()->set_ino(9);
  r->mutable_resource()->set_kind(proto::INVAL);
  r->mutable_owner()->set_session_id(session);
  r->mutable_range()->set_start(start);
  r->mutable_range()->set_end(end);
  r->set_new_mode(keep);
  r->set_callback_id(callback_id);
  return m;
}

class LockServerTest : public ::testing::Test {
 protected:
  void Start(LockServerOptions o = {}) {
    if (o.callback_timeout_ms == 10000) o.callback_timeout_ms = 300;
    server_ = std::make_unique<LockServer>(o, &fencer_);
  }
  void Open(uint64_t session, FakeSink* sink, uint64_t lease_ms = 60000) {
    proto::Hello h;
    h.set_session_id(session);
    h.set_node_name("node" + std::to_string(session));
    h.set_lease_ms(lease_ms);
    ASSERT_TRUE(server_->Attach(h, sink));
  }
  FakeFencer fencer_;
  std::unique_ptr<LockServer> server_;
  FakeSink a_, b_;
};

TEST_F(LockServerTest, ConflictCallsTheHolderBackAndTheWaiterGetsTheLock) {
  Start();
  Open(1, &a_);
  Open(2, &b_);
  server_->Handle(1, Acquire(1, 10, proto::EX, 0, 100, false));
  ASSERT_TRUE(a_.GrantFor(10));
  server_->Handle(2, Acquire(2, 20, proto::SH, 10, 20));
  auto cb = a_.AnyCallback();
  ASSERT_TRUE(cb);
  EXPECT_EQ(cb->keep_mode(), proto::SH);
  EXPECT_EQ(cb->range().start(), 10u);
  EXPECT_FALSE(b_.GrantFor(20, 50));
  server_->Handle(1, Release(1, 10, 20, proto::SH));
  EXPECT_TRUE(b_.GrantFor(20));
}

// A holder that answered a callback and then locked the range again (the
// waiter came and went) has done nothing wrong: no eviction when the
// callback's deadline passes. (The race suite saw nodes evicted so.)
TEST_F(LockServerTest, AnsweredCallbackIsNotHeldAgainstALaterLock) {
  Start();
  Open(1, &a_);
  Open(2, &b_);
  server_->Handle(1, Acquire(1, 10, proto::EX, 0, 100));
  ASSERT_TRUE(a_.GrantFor(10));
  server_->Handle(2, Acquire(2, 20, proto::EX, 0, 100));
  auto cb = a_.AnyCallback();
  ASSERT_TRUE(cb);
  server_->Handle(1, Release(1, 0, 100, proto::UN, cb->callback_id()));
  ASSERT_TRUE(b_.GrantFor(20));
  server_->Handle(2, Release(2, 0, 100));
  server_->Handle(1, Acquire(1, 11, proto::EX, 0, 100));
  ASSERT_TRUE(a_.GrantFor(11));
  std::this_thread::sleep_for(std::chrono::milliseconds(600));  // > 300.
  EXPECT_EQ(server_->Counters()["evictions"], 0u);
  EXPECT_FALSE(a_.closed());
}

TEST_F(LockServerTest, UnansweredCallbackEvictsAfterFencing) {
  Start();
  Open(1, &a_, /*lease_ms=*/1000);
  Open(2, &b_);
  server_->Handle(1, Acquire(1, 10, proto::EX, 0, 100));
  ASSERT_TRUE(a_.GrantFor(10));
  fencer_.Hold(true);
  server_->Handle(2, Acquire(2, 20, proto::EX, 0, 100));
  // Past the callback timeout the holder is being evicted, but while the
  // fence is not acknowledged nobody gets its lock.
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  EXPECT_FALSE(b_.GrantFor(20, 50));
  fencer_.Hold(false);
  EXPECT_TRUE(b_.GrantFor(20));
  EXPECT_EQ(fencer_.fenced(), std::vector<uint64_t>{1});
  EXPECT_TRUE(a_.WaitFor(
      [](const proto::ServerMessage& m) { return m.has_evicted(); }));
  EXPECT_TRUE(a_.closed());
  EXPECT_EQ(server_->Counters()["evictions"], 1u);
  // The evicted session cannot come back.
  FakeSink again;
  proto::Hello h;
  h.set_session_id(1);
  EXPECT_FALSE(server_->Attach(h, &again));
}

// A node trusts its cached locks until most of a lease after the last
// message lockd answered (client/lock_client.h); lockd answers nothing of a
// session it evicts. So the locks of a holder evicted for an unanswered
// callback go to others only a lease after lockd last heard from it, even
// when the fence is quick: a node cut off from lockd but not from the data
// servers must have stopped serving its cache first (race scenario N3).
TEST_F(LockServerTest, EvictedLocksWaitALeaseAfterTheHolderWasLastHeard) {
  Start();
  Open(1, &a_, /*lease_ms=*/1500);
  Open(2, &b_);
  server_->Handle(1, Acquire(1, 10, proto::EX, 0, 100));
  ASSERT_TRUE(a_.GrantFor(10));
  server_->Handle(2, Acquire(2, 20, proto::EX, 0, 100));
  // A keeps sending heartbeats but never answers the callback: evicted
  // past the callback timeout (300 ms), its heartbeats no longer answered.
  for (int i = 0; i < 6; ++i) {
    proto::NodeMessage hb;
    hb.mutable_heartbeat()->set_sequence(i + 1);
    server_->Handle(1, hb);
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_EQ(server_->Counters()["evictions"], 1u);
  // Fenced at once, yet not handed over within the lease.
  EXPECT_FALSE(b_.GrantFor(20, 700));
  EXPECT_TRUE(b_.GrantFor(20));
  EXPECT_EQ(fencer_.fenced(), std::vector<uint64_t>{1});
}

// An eviction whose fence waits (a server lockd cannot reach) holds up no
// other eviction: each has its own thread.
TEST_F(LockServerTest, AFenceThatWaitsHoldsUpNoOtherEviction) {
  Start();
  Open(1, &a_, /*lease_ms=*/200);
  fencer_.HoldSession(1, true);
  // Session 1 falls silent first: its eviction starts and waits.
  for (int i = 0; i < 100 && server_->Counters()["evictions"] == 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ASSERT_EQ(server_->Counters()["evictions"], 1u);
  Open(2, &b_, /*lease_ms=*/200);
  EXPECT_TRUE(b_.WaitFor(
      [](const proto::ServerMessage& m) { return m.has_evicted(); }));
  EXPECT_EQ(fencer_.fenced(), std::vector<uint64_t>{2});
  EXPECT_FALSE(a_.closed());
  fencer_.HoldSession(1, false);
  EXPECT_TRUE(a_.WaitFor(
      [](const proto::ServerMessage& m) { return m.has_evicted(); }));
}

// Evicted ids are kept in options.evicted_path: a restarted lockd refuses
// them too.
TEST_F(LockServerTest, EvictedSessionIdsSurviveARestart) {
  char tmpl[] = "/tmp/rangefs-evicted.XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  LockServerOptions o;
  o.evicted_path = std::string(tmpl) + "/evicted";
  Start(o);
  Open(1, &a_, /*lease_ms=*/200);
  Open(2, &b_);
  ASSERT_TRUE(a_.WaitFor(
      [](const proto::ServerMessage& m) { return m.has_evicted(); }));
  server_.reset();
  Start(o);  // A restart.
  FakeSink again;
  proto::Hello h;
  h.set_session_id(1);
  h.set_lease_ms(60000);
  EXPECT_FALSE(server_->Attach(h, &again));
  EXPECT_TRUE(again.WaitFor(
      [](const proto::ServerMessage& m) { return m.has_evicted(); }));
  FakeSink other;
  h.set_session_id(2);
  EXPECT_TRUE(server_->Attach(h, &other));  // Not evicted: welcome.
  server_.reset();
  unlink(o.evicted_path.c_str());
  rmdir(tmpl);
}

// The sessions open when lockd stopped are kept (options.sessions_path):
// a restarted lockd waits for each to come back and replay, or evicts it
// (fencing it) when its lease runs out, before it grants anything else;
// and a node resuming a session it has no record of is refused.
TEST_F(LockServerTest, SessionsOpenAtARestartComeBackOrAreFencedFirst) {
  char tmpl[] = "/tmp/rangefs-sessions.XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  LockServerOptions o;
  o.evicted_path = std::string(tmpl) + "/evicted";
  o.sessions_path = std::string(tmpl) + "/sessions";
  Start(o);
  Open(1, &a_, /*lease_ms=*/600);
  Open(2, &b_);
  server_->Handle(1, Acquire(1, 10, proto::EX, 0, 100));
  ASSERT_TRUE(a_.GrantFor(10));
  server_.reset();  // lockd dies; A is cut off and never comes back.
  o.grace_ms = 100;
  Start(o);
  FakeSink b2;
  proto::Hello h;
  h.set_session_id(2);
  h.set_lease_ms(60000);
  h.set_resume(true);
  ASSERT_TRUE(server_->Attach(h, &b2));  // Known: welcome, replay.
  server_->Handle(2, Acquire(2, 20, proto::EX, 0, 100));
  // Past the 100 ms grace, but A's session may still hold [0, 100): B
  // waits (GRACE) until A is fenced, a lease after the restart.
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  EXPECT_TRUE(server_->in_grace());
  EXPECT_TRUE(fencer_.fenced().empty());
  for (int i = 0; i < 300 && server_->in_grace(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_FALSE(server_->in_grace());
  EXPECT_EQ(fencer_.fenced(), std::vector<uint64_t>{1});
  server_->Handle(2, Acquire(2, 21, proto::EX, 0, 100));
  EXPECT_TRUE(b2.GrantFor(21));
  // A comes back after all: refused, as is a session never recorded.
  for (uint64_t id : {1, 3}) {
    FakeSink late;
    h.set_session_id(id);
    EXPECT_FALSE(server_->Attach(h, &late)) << id;
    EXPECT_TRUE(late.WaitFor(
        [](const proto::ServerMessage& m) { return m.has_evicted(); }));
  }
  server_.reset();
  unlink(o.evicted_path.c_str());
  unlink(o.sessions_path.c_str());
  rmdir(tmpl);
}

TEST_F(LockServerTest, SilentNodeIsEvictedWhenItsLeaseExpires) {
  Start();
  Open(1, &a_, /*lease_ms=*/200);
  Open(2, &b_);
  server_->Handle(1, Acquire(1, 10, proto::EX, 0, 100));
  ASSERT_TRUE(a_.GrantFor(10));
  // No heartbeats from 1: after its lease it is fenced and evicted.
  EXPECT_TRUE(a_.WaitFor(
      [](const proto::ServerMessage& m) { return m.has_evicted(); }));
  EXPECT_EQ(fencer_.fenced(), std::vector<uint64_t>{1});
}

TEST_F(LockServerTest, HeartbeatsKeepTheLease) {
  Start();
  Open(1, &a_, 200);
  for (int i = 0; i < 10; ++i) {
    proto::NodeMessage hb;
    hb.mutable_heartbeat()->set_sequence(i);
    server_->Handle(1, hb);
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_TRUE(fencer_.fenced().empty());
}

TEST_F(LockServerTest, QueuedRequestTimesOutAtItsDeadline) {
  Start();
  Open(1, &a_);
  Open(2, &b_);
  server_->Handle(1, Acquire(1, 10, proto::EX, 0, 100));
  auto m = Acquire(2, 20, proto::EX, 0, 100);
  m.mutable_acquire()->set_deadline_ms(50);
  // A long callback timeout: the holder is slow but not evicted.
  server_->Handle(2, m);
  auto deny =
      b_.WaitFor([](const proto::ServerMessage& m) { return m.has_deny(); });
  ASSERT_TRUE(deny);
  EXPECT_EQ(deny->deny().error().code(), proto::TIMED_OUT);
}

TEST_F(LockServerTest, TryLockIsDeniedWithoutCallbacks) {
  Start();
  Open(1, &a_);
  Open(2, &b_);
  server_->Handle(1, Acquire(1, 10, proto::EX, 0, 100));
  auto m = Acquire(2, 20, proto::SH, 0, 10);
  m.mutable_acquire()->set_try_only(true);
  server_->Handle(2, m);
  auto deny =
      b_.WaitFor([](const proto::ServerMessage& m) { return m.has_deny(); });
  ASSERT_TRUE(deny);
  EXPECT_EQ(deny->deny().error().code(), proto::WOULD_BLOCK);
  EXPECT_FALSE(a_.AnyCallback(50));
}

TEST_F(LockServerTest, SelfConflictIsDeniedWithDeadlock) {
  Start();
  Open(1, &a_);
  server_->Handle(1, Acquire(1, 10, proto::EX, 0, 100));
  server_->Handle(1, Acquire(1, 11, proto::EX, 0, 100));
  auto deny =
      a_.WaitFor([](const proto::ServerMessage& m) { return m.has_deny(); });
  ASSERT_TRUE(deny);
  EXPECT_EQ(deny->deny().error().code(), proto::DEADLOCK);
}

TEST_F(LockServerTest, SessionsCannotLockForOthers) {
  Start();
  Open(1, &a_);
  server_->Handle(1, Acquire(2, 10, proto::EX, 0, 100));
  auto deny =
      a_.WaitFor([](const proto::ServerMessage& m) { return m.has_deny(); });
  ASSERT_TRUE(deny);
  EXPECT_EQ(deny->deny().error().code(), proto::INVALID_ARGUMENT);
}

TEST_F(LockServerTest, GracePeriodGrantsOnlyReplays) {
  LockServerOptions o;
  o.grace_ms = 300;
  Start(o);
  Open(1, &a_);
  Open(2, &b_);
  auto replay = Acquire(1, 10, proto::EX, 0, 100);
  replay.mutable_acquire()->set_replay(true);
  server_->Handle(1, replay);
  EXPECT_TRUE(a_.GrantFor(10));
  server_->Handle(2, Acquire(2, 20, proto::SH, 0, 10));
  auto deny =
      b_.WaitFor([](const proto::ServerMessage& m) { return m.has_deny(); });
  ASSERT_TRUE(deny);
  EXPECT_EQ(deny->deny().error().code(), proto::GRACE);
  std::this_thread::sleep_for(std::chrono::milliseconds(400));
  EXPECT_FALSE(server_->in_grace());
  server_->Handle(2, Acquire(2, 21, proto::SH, 0, 10));
  EXPECT_TRUE(a_.AnyCallback());  // The replayed lock is real.
}

TEST_F(LockServerTest, ReattachingNodeIsToldWhatItHolds) {
  Start();
  Open(1, &a_);
  server_->Handle(1, Acquire(1, 10, proto::EX, 0, 100));
  ASSERT_TRUE(a_.GrantFor(10));
  server_->Detach(1, &a_);
  FakeSink again;
  Open(1, &again);
  auto g = again.GrantFor(10);
  ASSERT_TRUE(g);
  EXPECT_EQ(g->mode(), proto::EX);
}

TEST_F(LockServerTest, GoodbyeReleasesEverything) {
  Start();
  Open(1, &a_);
  Open(2, &b_);
  server_->Handle(1, Acquire(1, 10, proto::EX, 0, 100));
  server_->Handle(2, Acquire(2, 20, proto::EX, 0, 100));
  proto::NodeMessage bye;
  bye.mutable_goodbye();
  server_->Handle(1, bye);
  EXPECT_TRUE(b_.GrantFor(20));
  EXPECT_TRUE(fencer_.fenced().empty());
}

TEST_F(LockServerTest, DumpShowsHoldersAndWaiters) {
  Start();
  Open(1, &a_);
  Open(2, &b_);
  server_->Handle(1, Acquire(1, 10, proto::EX, 0, 100));
  server_->Handle(2, Acquire(2, 20, proto::SH, 0, 100));
  proto::DumpReply d = server_->Dump(0);
  ASSERT_EQ(d.locks_size(), 2);
  EXPECT_EQ(d.sessions_size(), 2);
  int waiting = 0;
  for (const auto& l : d.locks()) waiting += l.waiting();
  EXPECT_EQ(waiting, 1);
}

}  // namespace
}  // namespace rangefs::lockmgr
