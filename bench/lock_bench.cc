// Lock manager benchmark, one run against a real rangefs-lockd it starts on
// loopback. Prints, each beside the floor measured in the same run:
//  * the bare gRPC unary ping round trip (the floor);
//  * cached local acquire+release through a node's LockCache (no RPC);
//  * an uncontended remote acquire+release pair on a session stream (the
//    release rides the stream without waiting for a reply);
//  * two nodes alternately taking EX on one range (ping-pong), with the
//    minimum hold time at zero;
//  * 16 nodes together, each doing acquire+release pairs.
//
//   lock_bench [--seconds S] [--bin DIR]
#include <grpcpp/grpcpp.h>
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "client/lock_cache.h"
#include "client/lock_client.h"
#include "common/process.h"
#include "proto/lock.grpc.pb.h"
#include "rpc/channel.h"
#include "tests/util/subprocess.h"
#include "tests/util/temp_dir.h"

namespace rangefs::bench {
namespace {

using Clock = std::chrono::steady_clock;
using client::LockCache;
using client::LockCacheOptions;
using client::LockClient;
using client::LockClientListener;
using client::LockClientOptions;
using lockmgr::LockKind;
using lockmgr::LockMode;
using lockmgr::ResourceId;

double Seconds(Clock::duration d) {
  return std::chrono::duration<double>(d).count();
}

// A raw session: sends acquires, waits for their grants.
class RawNode : public LockClientListener {
 public:
  RawNode(const std::string& address, uint64_t session) : session_(session) {
    LockClientOptions o;
    o.address = address;
    o.session_id = session;
    o.node_name = "bench" + std::to_string(session);
    client_ = std::make_unique<LockClient>(o, this);
  }
  bool Start() { return client_->Start().ok(); }
  void Stop() { client_->Stop(true); }
  // One acquire (waiting for the grant) and one release (not waiting).
  void Pair(uint64_t ino) {
    uint64_t id = ++next_;
    proto::NodeMessage m;
    proto::AcquireRequest* a = m.mutable_acquire();
    a->set_request_id(id);
    a->mutable_resource()->set_ino(ino);
    a->mutable_resource()->set_kind(proto::DATA);
    a->mutable_owner()->set_session_id(session());
    a->set_mode(proto::EX);
    a->mutable_range()->set_start(0);
    a->mutable_range()->set_end(4096);
    a->set_exact(true);
    client_->Send(m);
    {
      absl::MutexLock l(&mu_);
      auto granted = [this, id]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return granted_ >= id;
      };
      mu_.Await(absl::Condition(&granted));
    }
    proto::NodeMessage r;
    proto::ReleaseRequest* rel = r.mutable_release();
    rel->mutable_resource()->set_ino(ino);
    rel->mutable_resource()->set_kind(proto::DATA);
    rel->mutable_owner()->set_session_id(session());
    rel->mutable_range()->set_start(0);
    rel->mutable_range()->set_end(4096);
    rel->set_new_mode(proto::UN);
    client_->Send(r);
  }
  void OnMessage(uint32_t, uint64_t, const proto::ServerMessage& m) override {
    if (m.has_grant()) {
      absl::MutexLock l(&mu_);
      granted_ = std::max<uint64_t>(granted_, m.grant().request_id());
    }
  }
  void OnReconnected(uint32_t, uint64_t, bool) override {}
  void OnEvicted(uint32_t, uint64_t, const std::string&) override {}
  // Raw locks, no cache to give back: a lapse only slows the run.
  void OnLeaseLapsed(uint32_t, uint64_t) override {}
  uint64_t session() const { return session_; }

 private:
  const uint64_t session_;
  std::unique_ptr<LockClient> client_;
  absl::Mutex mu_;
  uint64_t granted_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t next_ = 0;
};

class NoHooks : public client::LockHooks {
 public:
  void Demote(const ResourceId&, const ByteRange&, LockMode) override {}
  void Lost(const ResourceId&, const ByteRange&) override {}
};

int Run(double seconds) {
  testing::TempDir dir;
  int port = testing::FreePort();
  std::string address = "127.0.0.1:" + std::to_string(port);
  // Fencing targets are never contacted: nothing is evicted here.
  std::string config =
      "lockd " + address + ";meta 127.0.0.1:1;data 0 127.0.0.1:2 4096";
  testing::Subprocess lockd;
  lockd.Start({testing::BinDir() + "/lockmgr/rangefs-lockd", "--cluster",
               config, "--dir", dir.Sub("lockd")},
              dir.Sub("lockd.log"));
  auto stub = proto::LockService::NewStub(rpc::MakeChannel(address));
  {
    grpc::ClientContext ctx;
    ctx.set_wait_for_ready(true);
    ctx.set_deadline(std::chrono::system_clock::now() +
                     std::chrono::seconds(20));
    proto::PingRequest req;
    proto::PingReply reply;
    if (!stub->Ping(&ctx, req, &reply).ok()) {
      fprintf(stderr, "rangefs-lockd did not start\n%s",
              testing::Tail(dir.Sub("lockd.log")).c_str());
      return 1;
    }
  }
  auto timed = [&](auto fn) {
    uint64_t n = 0;
    auto start = Clock::now();
    while (Seconds(Clock::now() - start) < seconds) {
      for (int i = 0; i < 64; ++i) fn(n++);
    }
    return Seconds(Clock::now() - start) / n;  // Seconds per operation.
  };

  auto ping_op = [&](uint64_t) {
    grpc::ClientContext ctx;
    proto::PingRequest req;
    proto::PingReply reply;
    stub->Ping(&ctx, req, &reply);
  };
  // A ratio to the ping floor, measured fairly on a noisy machine: short
  // alternating rounds of ping and `fn`, the median of the round ratios.
  auto ratio_to_ping = [&](auto fn, double* per_op) {
    std::vector<double> ratios, ops;
    double saved = seconds;
    seconds = saved / 10;
    for (int round = 0; round < 5; ++round) {
      double p = timed(ping_op);
      double f = timed(fn);
      ratios.push_back(f / p);
      ops.push_back(f);
    }
    seconds = saved;
    std::sort(ratios.begin(), ratios.end());
    std::sort(ops.begin(), ops.end());
    *per_op = ops[2];
    return ratios[2];
  };
  double ping = timed(ping_op);
  printf("%-44s %9.1f us   (floor)\n", "gRPC unary ping round trip",
         ping * 1e6);

  ClusterConfig cc = *ParseClusterConfig(config);
  NoHooks hooks;
  LockCacheOptions co;
  co.min_hold_ms = 0;
  co.idle_release_ms = 0;
  LockCache a(cc, co), b(cc, co);
  a.SetHooks(LockKind::kData, &hooks);
  b.SetHooks(LockKind::kData, &hooks);
  if (!a.Start().ok() || !b.Start().ok()) return 1;
  ResourceId res{1, LockKind::kData};
  {
    auto l = a.Lock(res, {0, 4096}, LockMode::kEx, 1);
    a.Unlock(*l);
  }
  double cached = timed([&](uint64_t) {
    auto l = a.Lock(res, {0, 4096}, LockMode::kEx, 1);
    a.Unlock(*l);
  });
  printf("%-44s %9.0f ops/s (%.3fx ping time per op)\n",
         "cached local acquire+release", 1 / cached, cached / ping);

  RawNode node(address, 0x1234);
  if (!node.Start()) return 1;
  double pair = 0;
  double pair_ratio =
      ratio_to_ping([&](uint64_t i) { node.Pair(1000 + i % 100000); }, &pair);
  printf("%-44s %9.1f us   %.2fx ping  (%.0f pairs/s; median of 5 rounds)\n",
         "uncontended remote acquire+release", pair * 1e6, pair_ratio,
         1 / pair);

  ResourceId pong{2, LockKind::kData};
  double pingpong = 0;
  double pingpong_ratio = ratio_to_ping(
      [&](uint64_t i) {
        LockCache& n = i % 2 ? a : b;
        auto l = n.Lock(pong, {0, 4096}, LockMode::kEx, 1);
        n.Unlock(*l);
      },
      &pingpong);
  printf("%-44s %9.1f us   %.2fx ping  per hand-over (median)\n",
         "two-node ping-pong on one range (EX)", pingpong * 1e6,
         pingpong_ratio);

  std::vector<std::unique_ptr<RawNode>> nodes;
  for (int i = 0; i < 16; ++i) {
    nodes.push_back(std::make_unique<RawNode>(address, 0x5000 + i));
    if (!nodes.back()->Start()) return 1;
  }
  std::atomic<uint64_t> total{0};
  std::atomic<bool> stop{false};
  std::vector<std::thread> threads;
  auto start = Clock::now();
  for (int i = 0; i < 16; ++i) {
    threads.emplace_back([&, i] {
      uint64_t n = 0;
      while (!stop) nodes[i]->Pair(100000 + i * 1000000 + n++ % 1000);
      total += n;
    });
  }
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
  stop = true;
  for (auto& t : threads) t.join();
  double rate = total / Seconds(Clock::now() - start);
  printf("%-44s %9.0f pairs/s\n", "16 nodes together, acquire+release pairs",
         rate);
  for (auto& n : nodes) n->Stop();
  node.Stop();
  a.Stop();
  b.Stop();
  lockd.Stop(SIGTERM);
  return 0;
}

}  // namespace
}  // namespace rangefs::bench

int main(int argc, char** argv) {
  // As the servers run (common/process.h).
  rangefs::InitProgram("lock_bench");
  double seconds = 2;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!strcmp(argv[i], "--seconds")) seconds = atof(argv[i + 1]);
    if (!strcmp(argv[i], "--bin")) setenv("RANGEFS_BIN_DIR", argv[i + 1], 1);
  }
  return rangefs::bench::Run(seconds);
}
