// The lock manager with the real rangefs-lockd (and real data and metadata
// servers to fence at): node lock caches in this process and node
// processes (rangefs-locknode) on loopback.
#include <fcntl.h>
#include <grpcpp/grpcpp.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <thread>

#include "absl/synchronization/mutex.h"
#include "client/lock_cache.h"
#include "common/status.h"
#include "gtest/gtest.h"
#include "proto/data.grpc.pb.h"
#include "proto/lock.grpc.pb.h"
#include "rpc/channel.h"
#include "tests/util/local_cluster.h"

namespace rangefs::client {
namespace {

using testing::LocalCluster;
using testing::LocalClusterOptions;

constexpr uint64_t kPage = 4096;

ResourceId Inval(uint64_t ino) { return ResourceId{ino, LockKind::kInval}; }
ResourceId Inode(uint64_t ino) { return ResourceId{ino, LockKind::kInode}; }

class RecordingHooks : public LockHooks {
 public:
  explicit RecordingHooks(int delay_ms = 0) : delay_ms_(delay_ms) {}
  void Demote(const ResourceId&, const ByteRange& range,
              LockMode keep) override {
    std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms_));
    absl::MutexLock l(&mu_);
    demotes_.push_back({range, keep});
  }
  void Lost(const ResourceId&, const ByteRange&) override {
    absl::MutexLock l(&mu_);
    ++lost_;
  }
  std::vector<std::pair<ByteRange, LockMode>> demotes() {
    absl::MutexLock l(&mu_);
    return demotes_;
  }
  int lost() {
    absl::MutexLock l(&mu_);
    return lost_;
  }

 private:
  const int delay_ms_;
  absl::Mutex mu_;
  std::vector<std::pair<ByteRange, LockMode>> demotes_;
  int lost_ = 0;
};

// A rangefs-locknode process driven through pipes.
class NodeProcess {
 public:
  bool Start(const std::string& config, const std::vector<std::string>& flags,
             const std::string& log) {
    int in[2], out[2];
    if (pipe(in) || pipe(out)) return false;
    pid_ = fork();
    if (pid_ == 0) {
      dup2(in[0], 0);
      dup2(out[1], 1);
      int fd = open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
      dup2(fd, 2);
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      std::vector<std::string> args = {
          testing::BinDir() + "/tests/rangefs-locknode", "--cluster", config};
      args.insert(args.end(), flags.begin(), flags.end());
      std::vector<char*> argv;
      for (auto& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      execv(argv[0], argv.data());
      _exit(127);
    }
    close(in[0]);
    close(out[1]);
    to_ = in[1];
    from_ = out[0];
    std::string ready = ReadLine(20000);
    if (ready.rfind("ready ", 0) != 0) return false;
    session_ = std::stoull(ready.substr(6));
    return true;
  }
  ~NodeProcess() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
  }
  void Send(const std::string& line) {
    std::string l = line + "\n";
    ssize_t n = write(to_, l.data(), l.size());
    (void)n;
  }
  // The next line, or "" after `ms` milliseconds.
  std::string ReadLine(int ms) {
    auto deadline =
        std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
    for (;;) {
      size_t nl = buf_.find('\n');
      if (nl != std::string::npos) {
        std::string line = buf_.substr(0, nl);
        buf_.erase(0, nl + 1);
        return line;
      }
      int left = std::chrono::duration_cast<std::chrono::milliseconds>(
                     deadline - std::chrono::steady_clock::now())
                     .count();
      if (left <= 0) return "";
      pollfd p{from_, POLLIN, 0};
      if (poll(&p, 1, left) <= 0) continue;
      char c[4096];
      ssize_t n = read(from_, c, sizeof(c));
      if (n <= 0) return "";
      buf_.append(c, n);
    }
  }
  // Reads lines until one starts with `prefix` (or the time is up).
  std::string Expect(const std::string& prefix, int ms = 10000) {
    auto deadline =
        std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
    while (std::chrono::steady_clock::now() < deadline) {
      std::string l = ReadLine(100);
      if (l.rfind(prefix, 0) == 0) return l;
    }
    return "";
  }
  void Signal(int sig) { kill(pid_, sig); }
  uint64_t session() const { return session_; }

 private:
  pid_t pid_ = -1;
  int to_ = -1, from_ = -1;
  std::string buf_;
  uint64_t session_ = 0;
};

class LockClusterTest : public ::testing::Test {
 protected:
  void StartCluster(LocalClusterOptions o = {}) {
    cluster_ = std::make_unique<LocalCluster>(o);
    std::string why;
    ASSERT_TRUE(cluster_->Start(&why)) << why;
    auto config = ParseClusterConfig(cluster_->config());
    ASSERT_TRUE(config.ok());
    config_ = *config;
  }
  std::unique_ptr<LockCache> Node(const std::string& name, LockHooks* hooks,
                                  uint64_t min_hold_ms = 0,
                                  int callback_threads = 4) {
    LockCacheOptions o;
    o.node_name = name;
    o.min_hold_ms = min_hold_ms;
    o.callback_threads = callback_threads;
    auto c = std::make_unique<LockCache>(config_, o);
    for (LockKind k : {LockKind::kData, LockKind::kInval, LockKind::kInode}) {
      c->SetHooks(k, hooks);
    }
    absl::Status s = c->Start();
    EXPECT_TRUE(s.ok()) << s;
    return c;
  }
  proto::DumpReply Dump(int shard = 0) {
    auto stub = proto::LockService::NewStub(
        rpc::MakeChannel(cluster_->lockd_address(shard)));
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() +
                     std::chrono::seconds(5));
    proto::DumpRequest req;
    proto::DumpReply reply;
    EXPECT_TRUE(stub->Dump(&ctx, req, &reply).ok());
    return reply;
  }
  // Writes one byte to data server `d` as `session`: the error code.
  proto::ErrorCode WriteAs(uint64_t session, int d = 0) {
    auto stub = proto::DataService::NewStub(
        rpc::MakeChannel(cluster_->data_address(d)));
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() +
                     std::chrono::seconds(5));
    proto::WriteRequest w;
    w.set_session_id(session);
    w.set_offset(0);
    w.set_data("x");
    proto::WriteReply r;
    EXPECT_TRUE(stub->Write(&ctx, w, &r).ok());
    return r.error().code();
  }

  std::unique_ptr<LocalCluster> cluster_;
  ClusterConfig config_;
};

TEST_F(LockClusterTest, WaiterGetsTheLockAfterTheHoldersHookRan) {
  StartCluster();
  RecordingHooks ha(/*delay_ms=*/100), hb;
  auto a = Node("a", &ha);
  auto b = Node("b", &hb);
  auto l = a->Lock(Inval(5), {0, kPage}, LockMode::kEx, 1);
  ASSERT_TRUE(l.ok()) << l.status();
  a->Unlock(*l);  // Cached on node a.
  auto m = b->Lock(Inval(5), {0, kPage}, LockMode::kEx, 1, false, 10000);
  ASSERT_TRUE(m.ok()) << m.status();
  // The grant came after a's hook (100 ms of "writeback") finished.
  ASSERT_EQ(ha.demotes().size(), 1u);
  EXPECT_EQ(ha.demotes()[0].second, LockMode::kUn);
  b->Unlock(*m);
}

// A demote waits for the node's local holders of its range; one of them
// may itself wait for another callback to this node to be answered. The
// callbacks must not queue behind the waiting demote (the race suite
// found a node evicted this way: "callback not answered in time").
TEST_F(LockClusterTest, CallbackIsNotStuckBehindADemoteWaitingForALocalHolder) {
  StartCluster();
  RecordingHooks ha, hb;
  auto a = Node("a", &ha, 0, /*callback_threads=*/1);
  auto b = Node("b", &hb);
  const ByteRange whole{0, kInfinity};
  auto y = a->Lock(Inode(7), whole, LockMode::kEx, 1);
  ASSERT_TRUE(y.ok()) << y.status();
  a->Unlock(*y);  // Node a caches INODE EX.
  auto x = a->Lock(Inval(7), {0, kPage}, LockMode::kSh, 1);
  ASSERT_TRUE(x.ok()) << x.status();
  // b wants INVAL EX: a's demote of it waits for a's task 1.
  std::thread tb1([&] {
    auto l = b->Lock(Inval(7), {0, kPage}, LockMode::kEx, 1, false, 30000);
    if (l.ok()) b->Unlock(*l);
  });
  while (a->Stats().callbacks < 1) absl::SleepFor(absl::Milliseconds(5));
  // b wants INODE EX: a must answer this callback meanwhile.
  std::atomic<bool> got_y{false};
  std::thread tb2([&] {
    auto l = b->Lock(Inode(7), whole, LockMode::kEx, 2, false, 30000);
    got_y = l.ok();
    if (l.ok()) b->Unlock(*l);
  });
  while (a->Stats().callbacks < 2) absl::SleepFor(absl::Milliseconds(5));
  absl::SleepFor(absl::Milliseconds(100));
  // a's task 1, still holding INVAL SH, asks for INODE SH: lockd queues it
  // behind b's EX, which waits for a's answer to the INODE callback.
  auto y2 = a->Lock(Inode(7), whole, LockMode::kSh, 1, false, 8000);
  EXPECT_TRUE(y2.ok()) << y2.status();
  if (y2.ok()) a->Unlock(*y2);
  a->Unlock(*x);
  tb1.join();
  tb2.join();
  EXPECT_TRUE(got_y.load());
}

TEST_F(LockClusterTest, DowngradeLetsReadersInWhileTheWriterKeepsReading) {
  StartCluster();
  RecordingHooks ha, hb;
  auto a = Node("a", &ha);
  auto b = Node("b", &hb);
  auto w = a->Lock(Inval(5), {0, kPage}, LockMode::kEx, 1);
  ASSERT_TRUE(w.ok());
  a->Unlock(*w);
  auto r = b->Lock(Inval(5), {0, kPage}, LockMode::kSh, 1, false, 10000);
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(ha.demotes().size(), 1u);
  EXPECT_EQ(ha.demotes()[0].second, LockMode::kSh);  // Downgraded, kept SH.
  uint64_t requests = a->Stats().cluster_requests;
  auto again = a->Lock(Inval(5), {0, kPage}, LockMode::kSh, 2, false, 10000);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(a->Stats().cluster_requests, requests);  // No RPC: cached SH.
  a->Unlock(*again);
  b->Unlock(*r);
}

TEST_F(LockClusterTest, WriterIsNotStarvedByAStreamOfReaders) {
  StartCluster();
  RecordingHooks ha, hb, hc;
  auto a = Node("a", &ha);
  auto b = Node("b", &hb);
  auto c = Node("c", &hc);
  std::atomic<bool> stop{false};
  auto reader = [&](LockCache* n) {
    for (int i = 0; i < 100000 && !stop; ++i) {
      auto l = n->Lock(Inval(7), {0, kPage}, LockMode::kSh, 1, false, 20000);
      if (!l.ok()) continue;
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
      n->Unlock(*l);
    }
  };
  std::thread rb(reader, b.get()), rc(reader, c.get());
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  // Starvation would show as this request timing out behind the readers.
  auto w = a->Lock(Inval(7), {0, kPage}, LockMode::kEx, 1, false, 20000);
  stop = true;
  if (w.ok()) a->Unlock(*w);
  rb.join();
  rc.join();
  ASSERT_TRUE(w.ok()) << w.status();
}

TEST_F(LockClusterTest, UncontendedLockExpandsAndShrinksOnConflict) {
  StartCluster();
  RecordingHooks ha, hb;
  auto a = Node("a", &ha);
  auto b = Node("b", &hb);
  auto l = a->Lock(Inval(9), {0, kPage}, LockMode::kEx, 1);
  ASSERT_TRUE(l.ok());
  a->Unlock(*l);
  proto::DumpReply d = Dump();
  ASSERT_EQ(d.locks_size(), 1);
  EXPECT_EQ(d.locks(0).range().start(), 0u);
  EXPECT_EQ(d.locks(0).range().end(), kInfinity);
  auto m = b->Lock(Inval(9), {1 << 20, (1 << 20) + kPage}, LockMode::kEx, 1,
                   false, 10000);
  ASSERT_TRUE(m.ok()) << m.status();
  d = Dump();
  int a_locks = 0;
  for (const auto& e : d.locks()) {
    if (e.node_name() == "a") {
      ++a_locks;
      EXPECT_FALSE((ByteRange{e.range().start(), e.range().end()})
                       .Overlaps(ByteRange{1 << 20, (1 << 20) + kPage}));
    }
  }
  EXPECT_EQ(a_locks, 2);  // [0, 1 MiB) and [1 MiB + 4 KiB, inf).
  // Node a still writes below 1 MiB without asking lockd.
  uint64_t requests = a->Stats().cluster_requests;
  auto again = a->Lock(Inval(9), {0, kPage}, LockMode::kEx, 1);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(a->Stats().cluster_requests, requests);
  a->Unlock(*again);
  b->Unlock(*m);
}

// A node that holds EX over part of a range and asks for DF over all of
// it asks only for the part it lacks: a request over the whole would
// convert its EX down to DF without any callback hook, and whatever it
// (or a cache above it) keeps under that EX would lose its lock unseen
// (a mount's msync failed with EIO: docs/fuse.md, "Kernel write-back").
TEST_F(LockClusterTest, ADirectLockNeverConvertsTheNodesOwnExDown) {
  StartCluster();
  RecordingHooks ha, hb;
  auto a = Node("a", &ha);
  auto b = Node("b", &hb);
  // b holds DF over page 2; a then gets EX over pages 0-1 (no further).
  auto d = b->Lock(Inval(11), {2 * kPage, 3 * kPage}, LockMode::kDf, 1);
  ASSERT_TRUE(d.ok()) << d.status();
  auto e = a->Lock(Inval(11), {0, 2 * kPage}, LockMode::kEx, 1, false, 10000);
  ASSERT_TRUE(e.ok()) << e.status();
  a->Unlock(*e);
  auto df = a->Lock(Inval(11), {0, 3 * kPage}, LockMode::kDf, 2, false, 10000);
  ASSERT_TRUE(df.ok()) << df.status();
  EXPECT_TRUE(a->Covered(Inval(11), {0, 2 * kPage}, LockMode::kEx))
      << "the node's EX over pages 0-1 became DF";
  EXPECT_TRUE(a->Covered(Inval(11), {0, 3 * kPage}, LockMode::kDf));
  EXPECT_TRUE(ha.demotes().empty());
  a->Unlock(*df);
  b->Unlock(*d);
}

TEST_F(LockClusterTest, TryLockFailsWithoutCallingTheHolderBack) {
  StartCluster();
  RecordingHooks ha, hb;
  auto a = Node("a", &ha);
  auto b = Node("b", &hb);
  auto l = a->Lock(Inval(3), {0, kPage}, LockMode::kEx, 1);
  ASSERT_TRUE(l.ok());
  auto t = b->Lock(Inval(3), {0, kPage}, LockMode::kSh, 1, /*try_only=*/true);
  EXPECT_EQ(ErrcOf(t.status()), Errc::kWouldBlock);
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  EXPECT_TRUE(ha.demotes().empty());
  a->Unlock(*l);
}

// A waiting Lock() joins a request of its node already on its way to
// lockd; it must not join a try-lock's (the FUSE daemon's kernel write-back
// try-locks INODE EX while readers wait for INODE SH): the try's refusal is
// not an answer for a caller that waits.
TEST_F(LockClusterTest, WaitingLockIsNotRefusedWithAConcurrentTryLock) {
  StartCluster();
  RecordingHooks ha, hb;
  auto a = Node("a", &ha);
  auto b = Node("b", &hb);
  for (int round = 0; round < 40; ++round) {
    const uint64_t ino = 100 + round;
    auto held = a->Lock(Inode(ino), {0, kInfinity}, LockMode::kEx, 1);
    ASSERT_TRUE(held.ok()) << held.status();
    std::atomic<bool> go{false};
    std::thread tryer([&] {
      while (!go) {
      }
      auto t = b->Lock(Inode(ino), {0, kInfinity}, LockMode::kSh, 1,
                       /*try_only=*/true);
      if (t.ok()) b->Unlock(*t);
    });
    absl::Status waited;
    std::thread waiter([&] {
      while (!go) {
      }
      auto w =
          b->Lock(Inode(ino), {0, kInfinity}, LockMode::kSh, 2, false, 10000);
      waited = w.status();
      if (w.ok()) b->Unlock(*w);
    });
    go = true;
    tryer.join();
    absl::SleepFor(absl::Milliseconds(5));
    a->Unlock(*held);  // a's cached lock is called back for the waiter.
    waiter.join();
    EXPECT_TRUE(waited.ok()) << "round " << round << ": " << waited;
  }
}

// A node that wrote a file and went quiet holds EX over all of it; a
// reader elsewhere asks for one page at a time. Giving back only the page
// asked for costs the reader a lockd round trip and the writer a callback
// per page: an idle holder gives back its whole lock (down to what the
// callback lets it keep), a busy one only what was asked.
TEST_F(LockClusterTest, IdleHolderGivesBackItsWholeLockOnACallback) {
  StartCluster();
  RecordingHooks ha, hb;
  auto a = Node("a", &ha);
  auto b = Node("b", &hb);
  const ByteRange whole{0, kInfinity};
  auto w = a->Lock(Inval(9), {0, 16 * kPage}, LockMode::kEx, 1);
  ASSERT_TRUE(w.ok()) << w.status();
  a->Unlock(*w);
  ASSERT_TRUE(a->Covered(Inval(9), whole, LockMode::kEx));
  absl::SleepFor(absl::Milliseconds(300));  // a goes idle.
  auto r = b->Lock(Inval(9), {0, kPage}, LockMode::kSh, 1);
  ASSERT_TRUE(r.ok()) << r.status();
  b->Unlock(*r);
  EXPECT_FALSE(a->Covered(Inval(9), {8 * kPage, 9 * kPage}, LockMode::kEx));
  EXPECT_TRUE(a->Covered(Inval(9), {8 * kPage, 9 * kPage}, LockMode::kSh));
  // b's next page needs no callback: a holds only SH now.
  const uint64_t callbacks = a->Stats().callbacks;
  auto r2 = b->Lock(Inval(9), {8 * kPage, 9 * kPage}, LockMode::kSh, 1);
  ASSERT_TRUE(r2.ok()) << r2.status();
  b->Unlock(*r2);
  EXPECT_EQ(a->Stats().callbacks, callbacks);

  // A holder in use keeps what was not asked for.
  auto w2 = a->Lock(Inval(10), {0, 16 * kPage}, LockMode::kEx, 1);
  ASSERT_TRUE(w2.ok()) << w2.status();
  a->Unlock(*w2);
  auto busy = a->Lock(Inval(10), {12 * kPage, 13 * kPage}, LockMode::kEx, 2);
  ASSERT_TRUE(busy.ok()) << busy.status();
  auto r3 = b->Lock(Inval(10), {0, kPage}, LockMode::kSh, 1);
  ASSERT_TRUE(r3.ok()) << r3.status();
  b->Unlock(*r3);
  EXPECT_TRUE(a->Covered(Inval(10), {12 * kPage, 13 * kPage}, LockMode::kEx));
  a->Unlock(*busy);
}

TEST_F(LockClusterTest, TaskWaitingOnItsOwnLockGetsDeadlock) {
  StartCluster();
  RecordingHooks ha;
  auto a = Node("a", &ha);
  auto l = a->Lock(Inval(3), {0, kPage}, LockMode::kEx, 1);
  ASSERT_TRUE(l.ok());
  auto again = a->Lock(Inval(3), {100, 200}, LockMode::kSh, 1);
  EXPECT_EQ(ErrcOf(again.status()), Errc::kDeadlock);
  // Another task of the node waits instead.
  auto other = a->Lock(Inval(3), {100, 200}, LockMode::kSh, 2, true);
  EXPECT_EQ(ErrcOf(other.status()), Errc::kWouldBlock);
  a->Unlock(*l);
}

TEST_F(LockClusterTest, NodeIgnoringCallbacksIsEvictedAndFenced) {
  LocalClusterOptions o;
  o.callback_timeout_ms = 500;
  StartCluster(o);
  NodeProcess node;
  ASSERT_TRUE(node.Start(cluster_->config(), {"--hook_ms=-1", "--name=deaf"},
                         cluster_->dir() + "/deaf.log"));
  node.Send("lock x inval 4 0 4096 ex");
  ASSERT_EQ(node.Expect("ok x"), "ok x");
  node.Send("unlock x");
  ASSERT_EQ(node.Expect("ok x"), "ok x");
  EXPECT_EQ(WriteAs(node.session()), proto::OK);
  RecordingHooks hb;
  auto b = Node("b", &hb);
  auto start = std::chrono::steady_clock::now();
  auto l = b->Lock(Inval(4), {0, kPage}, LockMode::kEx, 1, false, 20000);
  ASSERT_TRUE(l.ok()) << l.status() << cluster_->LogTail("lockd0");
  EXPECT_GE(std::chrono::steady_clock::now() - start,
            std::chrono::milliseconds(400));
  // The deaf node was fenced before b got the lock: its writes are refused.
  EXPECT_EQ(WriteAs(node.session()), proto::FENCED);
  EXPECT_GE(Dump().counters().at("evictions"), 1u);
  b->Unlock(*l);
}

TEST_F(LockClusterTest, StoppedNodeLosesItsLocksWhenTheLeaseExpires) {
  StartCluster();
  NodeProcess node;
  ASSERT_TRUE(node.Start(cluster_->config(),
                         {"--lease_ms=600", "--name=sleepy"},
                         cluster_->dir() + "/sleepy.log"));
  node.Send("lock x inval 8 0 4096 ex");
  ASSERT_EQ(node.Expect("ok x"), "ok x");
  node.Signal(SIGSTOP);
  RecordingHooks hb;
  auto b = Node("b", &hb);
  auto l = b->Lock(Inval(8), {0, kPage}, LockMode::kEx, 1, false, 20000);
  ASSERT_TRUE(l.ok()) << l.status();
  EXPECT_EQ(WriteAs(node.session()), proto::FENCED);
  node.Signal(SIGCONT);
  // It learns it was evicted and drops what it cached.
  EXPECT_NE(node.Expect("hook lost", 10000), "");
  b->Unlock(*l);
}

// A data server lockd cannot reach (stopped) does not keep an evicted
// node's locks for ever: lockd goes on once the fence lease has passed
// since the metadata server recorded the fence, and the data server, once
// back, has the fence before it takes a write.
TEST_F(LockClusterTest, UnreachableDataServerDoesNotStallAnEviction) {
  LocalClusterOptions o;
  o.fence_lease_ms = 1000;
  StartCluster(o);
  NodeProcess node;
  ASSERT_TRUE(node.Start(cluster_->config(), {"--lease_ms=600", "--name=gone"},
                         cluster_->dir() + "/gone.log"));
  node.Send("lock x inval 12 0 4096 ex");
  ASSERT_EQ(node.Expect("ok x"), "ok x");
  cluster_->SignalData(1, SIGSTOP);
  node.Signal(SIGKILL);
  RecordingHooks hb;
  auto b = Node("b", &hb);
  auto l = b->Lock(Inval(12), {0, kPage}, LockMode::kEx, 1, false, 20000);
  std::string why;
  cluster_->SignalData(1, SIGCONT);
  ASSERT_TRUE(l.ok()) << l.status() << cluster_->LogTail("lockd0");
  EXPECT_EQ(WriteAs(node.session(), 0), proto::FENCED);
  ASSERT_TRUE(cluster_->WaitDataWrites(1, &why)) << why;
  EXPECT_EQ(WriteAs(node.session(), 1), proto::FENCED);
  EXPECT_GE(Dump().counters().at("evictions"), 1u);
  b->Unlock(*l);
}

TEST_F(LockClusterTest, TwoShardsShareTheResources) {
  LocalClusterOptions o;
  o.lockd_shards = 2;
  StartCluster(o);
  RecordingHooks ha, hb;
  auto a = Node("a", &ha);
  auto b = Node("b", &hb);
  for (uint64_t ino = 1; ino <= 20; ++ino) {
    auto l = a->Lock(Inval(ino), {0, kPage}, LockMode::kEx, 1);
    ASSERT_TRUE(l.ok()) << l.status();
    a->Unlock(*l);
  }
  int on0 = Dump(0).locks_size(), on1 = Dump(1).locks_size();
  EXPECT_EQ(on0 + on1, 20);
  EXPECT_GT(on0, 0);
  EXPECT_GT(on1, 0);
  for (uint64_t ino = 1; ino <= 20; ++ino) {
    auto l = b->Lock(Inval(ino), {0, kPage}, LockMode::kEx, 1, false, 10000);
    ASSERT_TRUE(l.ok()) << l.status();
    b->Unlock(*l);
  }
  EXPECT_EQ(ha.demotes().size(), 20u);
}

TEST_F(LockClusterTest, LockdRestartReplaysAndGrantsNothingConflicting) {
  LocalClusterOptions o;
  o.grace_ms = 1500;
  StartCluster(o);
  RecordingHooks ha, hb;
  auto a = Node("a", &ha);
  auto b = Node("b", &hb);
  auto held = a->Lock(Inval(5), {0, kPage}, LockMode::kEx, 1);
  ASSERT_TRUE(held.ok());
  auto cached = b->Lock(Inval(6), {0, kPage}, LockMode::kSh, 1);
  ASSERT_TRUE(cached.ok());
  b->Unlock(*cached);
  cluster_->StopLockd(0, SIGKILL);
  cluster_->StartLockd(0);
  std::string why;
  ASSERT_TRUE(cluster_->WaitLockd(0, &why)) << why;
  // While a holds its lock, b must not get it: not in the grace period,
  // not after.
  auto early = b->Lock(Inval(5), {0, kPage}, LockMode::kEx, 1, false, 3000);
  EXPECT_EQ(ErrcOf(early.status()), Errc::kTimedOut) << early.status();
  EXPECT_GT(a->Stats().replays, 0u);
  EXPECT_GT(b->Stats().replays, 0u);
  // b's cached lock survived the restart: no new request for it.
  uint64_t requests = b->Stats().cluster_requests;
  auto again = b->Lock(Inval(6), {0, kPage}, LockMode::kSh, 1);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(b->Stats().cluster_requests, requests);
  b->Unlock(*again);
  a->Unlock(*held);
  auto later = b->Lock(Inval(5), {0, kPage}, LockMode::kEx, 1, false, 10000);
  ASSERT_TRUE(later.ok()) << later.status();
  b->Unlock(*later);
  EXPECT_EQ(ha.lost(), 0);
}

// Regression: while lockd was down, each failed reconnect attempt freed
// its stream reactor in OnDone while gRPC could still be finishing the
// failed hello write on another thread (ASAN: heap-use-after-free in
// RunInterceptorsPostRecv; without ASAN an occasional crash or heap
// corruption). Many attempts make the window likely to be hit.
TEST_F(LockClusterTest, NodeSurvivesAReconnectStormWhileLockdIsDown) {
  LocalClusterOptions o;
  o.grace_ms = 500;
  StartCluster(o);
  RecordingHooks ha;
  std::vector<std::unique_ptr<LockCache>> nodes;
  for (int i = 0; i < 4; ++i)
    nodes.push_back(Node("n" + std::to_string(i), &ha));
  cluster_->StopLockd(0, SIGKILL);
  // About 10 attempts a second per node.
  std::this_thread::sleep_for(std::chrono::seconds(4));
  cluster_->StartLockd(0);
  std::string why;
  ASSERT_TRUE(cluster_->WaitLockd(0, &why)) << why;
  for (auto& n : nodes) {
    auto l = n->Lock(Inval(9), {0, kPage}, LockMode::kSh, 1, false, 10000);
    ASSERT_TRUE(l.ok()) << l.status();
    n->Unlock(*l);
  }
}

TEST_F(LockClusterTest, RecordLocksAreClusterWideAndNeverCalledBack) {
  LocalClusterOptions o;
  o.callback_timeout_ms = 300;
  // Long enough for the holders to replay on a loaded machine (the test
  // once failed under a parallel test run with 800 ms).
  o.grace_ms = 3000;
  StartCluster(o);
  RecordingHooks ha, hb;
  auto a = Node("a", &ha);
  auto b = Node("b", &hb);
  const uint64_t ino = 11;
  ASSERT_TRUE(a->PosixLock(ino, {0, 100}, LockMode::kEx, 1, true).ok());
  // Another owner on another node: refused without waiting, and told who.
  EXPECT_EQ(ErrcOf(b->PosixLock(ino, {50, 60}, LockMode::kSh, 7, false)),
            Errc::kWouldBlock);
  auto conflict = b->TestPosix(ino, {50, 60}, LockMode::kSh, 7);
  ASSERT_TRUE(conflict.ok() && conflict->has_value());
  EXPECT_EQ((*conflict)->range, (ByteRange{0, 100}));
  EXPECT_EQ((*conflict)->mode, LockMode::kEx);
  // A waiter waits far past the callback timeout: the holder is not
  // evicted, the waiter gets the lock when the holder unlocks.
  std::atomic<bool> got{false};
  std::thread t([&] {
    EXPECT_TRUE(b->PosixLock(ino, {50, 60}, LockMode::kSh, 7, true).ok());
    got = true;
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(1200));
  EXPECT_FALSE(got);
  EXPECT_EQ(a->Stats().sessions_lost, 0u);
  // The holder unlocks: the waiter is granted.
  ASSERT_TRUE(a->PosixLock(ino, {0, 100}, LockMode::kUn, 1, true).ok());
  t.join();
  EXPECT_TRUE(got);
  auto none = a->TestPosix(ino, {0, 40}, LockMode::kEx, 1);
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none->has_value());
  // The same node's other owners conflict too.
  ASSERT_TRUE(b->PosixLock(ino, {200, 300}, LockMode::kEx, 7, true).ok());
  EXPECT_EQ(ErrcOf(b->PosixLock(ino, {250, 260}, LockMode::kEx, 8, false)),
            Errc::kWouldBlock);
  // A lockd restart keeps them (replay). New requests get kGrace until
  // the grace period ends; then the replayed locks refuse them.
  cluster_->StopLockd(0, SIGKILL);
  cluster_->StartLockd(0);
  std::string why;
  ASSERT_TRUE(cluster_->WaitLockd(0, &why)) << why;
  Errc after = Errc::kGrace;
  for (int i = 0; i < 150 && after == Errc::kGrace; ++i) {
    after = ErrcOf(a->PosixLock(ino, {250, 260}, LockMode::kSh, 1, false));
    if (after == Errc::kGrace) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  }
  EXPECT_EQ(after, Errc::kWouldBlock);
  EXPECT_EQ(ErrcOf(a->PosixLock(ino, {55, 56}, LockMode::kEx, 1, false)),
            Errc::kWouldBlock);
}

// Regression (seen under ASAN through two FUSE mounts): an unlock returned
// before lockd had the release, so another node's lock request right
// after it still found the lock held.
TEST_F(LockClusterTest, RecordUnlockIsDoneAtLockdWhenItReturns) {
  StartCluster();
  RecordingHooks ha, hb;
  auto a = Node("a", &ha);
  auto b = Node("b", &hb);
  for (int i = 0; i < 200; ++i) {
    ASSERT_TRUE(a->PosixLock(13, {0, 10}, LockMode::kEx, 1, false).ok()) << i;
    ASSERT_TRUE(a->PosixLock(13, {0, 10}, LockMode::kUn, 1, false).ok());
    ASSERT_TRUE(b->PosixLock(13, {0, 10}, LockMode::kEx, 2, false).ok()) << i;
    ASSERT_TRUE(b->PosixLock(13, {0, 10}, LockMode::kUn, 2, false).ok());
  }
}

TEST_F(LockClusterTest, CancelledRecordLockWaitGivesUp) {
  StartCluster();
  RecordingHooks ha, hb;
  auto a = Node("a", &ha);
  auto b = Node("b", &hb);
  ASSERT_TRUE(a->PosixLock(12, {0, 10}, LockMode::kEx, 1, true).ok());
  absl::Status st;
  std::thread t([&] {
    st = b->PosixLock(12, {0, 10}, LockMode::kEx, 2, true);
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  b->CancelPosix(12, 2);
  t.join();
  EXPECT_EQ(ErrnoOf(st), EINTR) << st;
  // The cancelled request is gone at lockd: A's unlock grants nothing to B.
  ASSERT_TRUE(a->PosixLock(12, {0, 10}, LockMode::kUn, 1, true).ok());
  ASSERT_TRUE(a->PosixLock(12, {0, 10}, LockMode::kEx, 3, false).ok());
}

}  // namespace
}  // namespace rangefs::client
