// The multi-node race suite (docs/race-suite.md): the races of
// ../shared/background/ recreated on separate node processes against a
// real cluster, repeated with seeded timing until a time budget is spent,
// each iteration checked by an oracle.
//
//   RANGEFS_RACE_SECONDS  budget per scenario (default 5; the long run
//                         uses 300)
//   RANGEFS_RACE_SEED     first seed (default 1); a failure prints its seed
//   RANGEFS_FAULTS        e.g. "unsafe.client.inval_keep_cache=0:INTERNAL"
//                         switches a protection off in every process: the
//                         scenarios that depend on it fail (the table in
//                         docs/race-suite.md)
//   RANGEFS_RACE_COMPOSE  a docker compose project (scripts/compose up):
//                         run against that cluster, node a in container
//                         node0, b in node1 (docker exec), and the C*
//                         scenarios: container loss and network partition
//                         (docs/compose.md). Scenarios that restart servers
//                         or change their options are skipped there.
#include <fcntl.h>
#include <grpcpp/grpcpp.h>
#include <signal.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "proto/lock.grpc.pb.h"
#include "proto/meta.grpc.pb.h"
#include "rpc/channel.h"
#include "tests/race/race_harness.h"
#include "tests/util/fuse_watchdog.h"
#include "tests/util/local_cluster.h"
#include "tests/util/netlab.h"
#include "tests/util/subprocess.h"

namespace rangefs::race {
namespace {

constexpr uint64_t kPage = 4096;

uint64_t EnvOr(const char* name, uint64_t dflt) {
  const char* v = getenv(name);
  return v == nullptr ? dflt : strtoull(v, nullptr, 10);
}

std::string Fill(char c, uint64_t n) { return std::string(n, c); }
std::string Ch(char c) { return std::string(1, c); }

// What one iteration found: "" when the oracle is satisfied.
struct Outcome {
  std::string failure;
  ScriptResult script;
  // True (and the failure set) if a node did not answer in time.
  bool Hung(const std::string& why = "a node hung") {
    if (script.hung) failure = why;
    return script.hung;
  }
};

// Output of a shell command (bounded by the command itself).
std::string Shell(const std::string& cmd) {
  std::string out;
  FILE* f = popen(cmd.c_str(), "r");
  if (f == nullptr) return out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, f)) > 0) out.append(buf, n);
  pclose(f);
  while (!out.empty() && (out.back() == '\n' || out.back() == ' ')) {
    out.pop_back();
  }
  return out;
}

const char* ComposeProject() {
  const char* p = getenv("RANGEFS_RACE_COMPOSE");
  return p != nullptr && *p != '\0' ? p : nullptr;
}

// The container of a compose service, by the labels Compose v1 and v2 set.
std::string Container(const std::string& service) {
  return Shell(absl::StrCat(
      "docker ps -q --filter label=com.docker.compose.project=",
      ComposeProject(), " --filter label=com.docker.compose.service=", service,
      " 2>/dev/null | head -1"));
}

std::string ContainerIp(const std::string& service) {
  return Shell(
      "docker inspect -f "
      "'{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}' " +
      Container(service) + " 2>/dev/null | cut -d' ' -f1");
}

std::string ComposeNetwork() {
  return Shell(
      "docker inspect -f "
      "'{{range $k, $v := .NetworkSettings.Networks}}{{$k}} {{end}}' " +
      Container("lockd") + " 2>/dev/null | cut -d' ' -f1");
}

class RaceTest : public ::testing::Test {
 protected:
  bool compose() const { return ComposeProject() != nullptr; }

  void StartCluster(testing::LocalClusterOptions o = {}) {
    if (compose()) {
      // The compose cluster (docker/cluster.conf), reached from here at
      // its containers' addresses on the compose network.
      lockd_address_ = ContainerIp("lockd") + ":7201";
      meta_address_ = ContainerIp("meta") + ":7001";
      ASSERT_NE(lockd_address_, ":7201")
          << "no lockd container in compose project " << ComposeProject();
      char tmpl[] = "/tmp/rangefs-race-compose.XXXXXX";
      ASSERT_NE(mkdtemp(tmpl), nullptr);
      dir_ = tmpl;
      return;
    }
    if (lab_ != nullptr) o.lab = lab_.get();
    cluster_ = std::make_unique<testing::LocalCluster>(o);
    std::string why;
    ASSERT_TRUE(cluster_->Start(&why)) << why;
    dir_ = cluster_->dir();
    lockd_address_ = cluster_->lockd_address(0);
    meta_address_ = cluster_->meta_address();
  }
  // Node `name`: a librangefs node with `args`, or through mounts a mount
  // whose daemon also takes `mount_opts` ("lease_ms=1500").
  RaceNode* AddNode(const std::string& name,
                    const std::vector<std::string>& args = {},
                    const std::string& mount_opts = "") {
    auto n = std::make_unique<RaceNode>();
    const std::string log = dir_ + "/" + name + ".log";
    bool started;
    if (compose()) {
      // Node a in container node0, b in node1, and so on, alternating.
      const std::string service = "node" + std::to_string((nodes_.size()) % 2);
      // execv: the client by its full path.
      started = n->StartIn(
          {Shell("command -v docker"), "exec", "-i", Container(service)},
          "rangefs-racenode", name, "/etc/rangefs/cluster.conf", log, args);
      node_services_[n.get()] = service;
    } else if (through_mounts_) {
      const std::string mnt = MountNode(name, mount_opts);
      started = !mnt.empty() && n->Start(name, cluster_->config(), log, mnt);
    } else {
      n->set_netns(NodeNetns(name));
      started = n->Start(name, cluster_->config(), log, "", args);
    }
    if (!started) {
      ADD_FAILURE() << "node " << name
                    << " did not start: " << testing::Tail(log);
      return nullptr;
    }
    nodes_.push_back(std::move(n));
    return nodes_.back().get();
  }
  // The N scenarios: every server and node in a network namespace of its
  // own (testing::NetLab), so that a partition is a real one.
  void StartLab() {
    if (compose()) GTEST_SKIP() << "the lab is made here, not in compose";
    if (std::string why = testing::NetLab::Unavailable(); !why.empty()) {
      GTEST_SKIP() << why;
    }
    lab_ = std::make_unique<testing::NetLab>();
    std::string why;
    ASSERT_TRUE(lab_->Init(&why)) << why;
  }
  // Node `name` whose lease at lockd is `lease_ms` (a librangefs flag, or
  // a mount option).
  RaceNode* AddLeaseNode(const std::string& name, int lease_ms) {
    const std::string lease = absl::StrCat("lease_ms=", lease_ms);
    return AddNode(name, {"--" + lease}, lease);
  }
  // The lab host of node `name` (its first letter: a, b, c), made on
  // first use; its namespace's path ("" without a lab).
  std::string NodeNetns(const std::string& name) {
    if (lab_ == nullptr) return "";
    const std::string host = name.substr(0, 1);
    std::string why;
    if (lab_->AddHost(host, &why).empty()) {
      ADD_FAILURE() << "lab host " << host << ": " << why;
    }
    return lab_->NetnsPath(host);
  }
  // A cluster and nodes a and b.
  void StartTwo(RaceNode** a, RaceNode** b,
                const testing::LocalClusterOptions& o = {}) {
    StartCluster(o);
    *a = AddNode("a");
    *b = AddNode("b");
  }
  // Ends node `n` (SIGKILL), and its mount's daemon if it has one.
  void DropNode(RaceNode* n) {
    for (auto it = nodes_.begin(); it != nodes_.end(); ++it) {
      if (it->get() == n) {
        n->Kill();
        if (testing::Subprocess* d = Daemon(n)) {
          const std::string mnt = dir_ + "/mnt_" + n->name();
          testing::AbortFuseConnection(mnt);
          d->Stop(SIGKILL);
          (void)!system(("fusermount3 -u -z " + mnt + " 2>/dev/null").c_str());
          for (auto d_it = daemons_.begin(); d_it != daemons_.end(); ++d_it) {
            if (d_it->first.get() == d) {
              daemons_.erase(d_it);
              break;
            }
          }
        }
        nodes_.erase(it);
        return;
      }
    }
  }
  // The rangefs-fuse daemon under node `n` (through mounts), or null.
  testing::Subprocess* Daemon(RaceNode* n) {
    const std::string mnt = dir_ + "/mnt_" + n->name();
    for (auto& [d, m] : daemons_) {
      if (m == mnt) return d.get();
    }
    return nullptr;
  }
  // Cuts node `n` off (SIGSTOP) or lets it back (SIGCONT): its process,
  // or through a mount its daemon (the process on the mount only waits).
  void Freeze(RaceNode* n, bool stop) {
    const int sig = stop ? SIGSTOP : SIGCONT;
    if (testing::Subprocess* d = Daemon(n)) {
      d->Signal(sig);
    } else {
      n->Signal(sig);
    }
  }
  // Node `name` as a FUSE mount of its own (a rangefs-fuse daemon, the
  // kernel's page cache and mappings in front of its node): its mount
  // point, or "" (and a failure) if it did not mount.
  std::string MountNode(const std::string& name,
                        const std::string& mount_opts) {
    const std::string conf = dir_ + "/cluster.conf";
    if (access(conf.c_str(), R_OK) != 0) {
      std::ofstream(conf) << cluster_->config();
    }
    const std::string mnt = dir_ + "/mnt_" + name;
    mkdir(mnt.c_str(), 0755);
    auto d = std::make_unique<testing::Subprocess>();
    d->set_netns(NodeNetns(name));
    const std::string log = dir_ + "/fuse_" + name + ".log";
    if (!d->Start(
            {testing::BinDir() + "/client/rangefs-fuse", conf, mnt, "-f", "-o",
             "node=" + name + ",default_permissions,fault_control=1" +
                 (mount_opts.empty() ? "" : "," + mount_opts)},
            log)) {
      ADD_FAILURE() << "rangefs-fuse for " << name << " did not start";
      return "";
    }
    daemons_.emplace_back(std::move(d), mnt);
    constexpr long kFuseMagic = 0x65735546;
    for (int t = 0; t < 200; ++t) {
      struct statfs st;
      if (statfs(mnt.c_str(), &st) == 0 && st.f_type == kFuseMagic) {
        return mnt;
      }
      usleep(50000);
    }
    ADD_FAILURE() << name << " did not mount: " << testing::Tail(log);
    return "";
  }
  // The watchdog of a hang through mounts: the kernel stacks of the node
  // processes and of the daemons' waiting threads, then every mount's
  // FUSE connection aborted, so the stuck tasks return and the test ends.
  std::string FreeHungMounts() {
    std::string out = "--- kernel stacks at the hang\n";
    for (auto& n : nodes_) {
      out += n->name() + ":\n" + testing::KernelStacks(n->pid(), false);
    }
    for (auto& [d, mnt] : daemons_) {
      out += "daemon of " + mnt + ", waiting threads:\n" +
             testing::KernelStacks(d->pid(), true);
    }
    for (auto& [d, mnt] : daemons_) testing::AbortFuseConnection(mnt);
    return out;
  }
  void TearDown() override {
    for (auto& n : nodes_) n->Quit();
    nodes_.clear();
    // Mounted nodes: SIGTERM writes back and gives the locks back.
    for (auto& [d, mnt] : daemons_) {
      const int status = d->Stop(SIGTERM);
      EXPECT_TRUE(WIFEXITED(status)) << mnt << ": daemon status " << status;
      (void)!system(("fusermount3 -u -z " + mnt + " 2>/dev/null").c_str());
    }
    daemons_.clear();
    if (lockd_address_.empty()) return;
    // Every node is gone: lockd must hold no lock of any of them.
    int locks = LockCount();
    for (int i = 0; i < 100 && locks != 0; ++i) {
      usleep(20000);
      locks = LockCount();
    }
    EXPECT_EQ(locks, 0) << "locks leaked after every node left";
  }

  std::vector<std::string> Fsck() {
    auto stub = proto::MetaService::NewStub(rpc::MakeChannel(meta_address_));
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() +
                     std::chrono::seconds(60));
    proto::FsckRequest req;
    proto::FsckReply rep;
    if (!stub->Fsck(&ctx, req, &rep).ok()) return {"fsck RPC failed"};
    return {rep.problems().begin(), rep.problems().end()};
  }
  // Locks lockd still holds for any session.
  int LockCount() {
    auto stub = proto::LockService::NewStub(rpc::MakeChannel(lockd_address_));
    grpc::ClientContext ctx;
    proto::DumpRequest req;
    proto::DumpReply rep;
    if (!stub->Dump(&ctx, req, &rep).ok()) return -1;
    return rep.locks_size();
  }

  // lockd's count of evictions (-1 if it does not answer).
  int64_t Evictions() {
    auto stub = proto::LockService::NewStub(rpc::MakeChannel(lockd_address_));
    grpc::ClientContext ctx;
    proto::DumpRequest req;
    proto::DumpReply rep;
    if (!stub->Dump(&ctx, req, &rep).ok()) return -1;
    auto it = rep.counters().find("evictions");
    return it == rep.counters().end() ? 0 : static_cast<int64_t>(it->second);
  }

  // Reads [0, len) on `n`: the bytes, or a failure text.
  static std::string ReadAll(RaceNode& n, const std::string& path, uint64_t len,
                             std::string* failure) {
    Reply r = n.Call("read " + path + " 0 " + std::to_string(len));
    if (!r.ok) {
      *failure = n.name() + ": read failed: " + r.text;
      return "";
    }
    return FromRuns(0, r.text);
  }
  // Every node reads the same bytes: returns them, or sets *failure.
  std::string Converged(const std::string& path, uint64_t len,
                        std::string* failure) {
    std::string first;
    for (size_t i = 0; i < nodes_.size(); ++i) {
      std::string got = ReadAll(*nodes_[i], path, len, failure);
      if (!failure->empty()) return "";
      if (i == 0) {
        first = got;
      } else if (got != first) {
        *failure = nodes_[i]->name() + " reads " + Runs(0, got) + " but " +
                   nodes_[0]->name() + " reads " + Runs(0, first);
        return "";
      }
    }
    return first;
  }

  // Runs `iteration(seed)` until the budget is spent; on a failure prints
  // the seed, the interleaving and the node logs.
  void Repeat(const std::string& scenario,
              const std::function<Outcome(uint64_t)>& iteration) {
    const auto budget = std::chrono::seconds(EnvOr("RANGEFS_RACE_SECONDS", 5));
    const uint64_t first = EnvOr("RANGEFS_RACE_SEED", 1);
    const auto start = std::chrono::steady_clock::now();
    uint64_t seed = first;
    int iterations = 0;
    while (iterations == 0 ||
           std::chrono::steady_clock::now() - start < budget) {
      Outcome o = iteration(seed);
      ++iterations;
      if (o.failure.empty() && lab_ != nullptr && !lab_->error().empty()) {
        o.failure = "network lab: " + lab_->error();
      }
      if (!o.failure.empty()) {
        std::ostringstream logs;
        if (o.script.hung && !daemons_.empty()) logs << FreeHungMounts();
        for (auto& n : nodes_) {
          logs << "--- " << n->name() << " log (tail)\n"
               << testing::Tail(n->log(), 25);
        }
        FAIL() << scenario << ": FAILED at seed " << seed << " (iteration "
               << iterations << "): " << o.failure << "\ninterleaving:\n"
               << o.script.Interleaving() << logs.str()
               << "reproduce: RANGEFS_RACE_SEED=" << seed
               << " build/tests/race_test --gtest_filter='*" << scenario
               << "*'";
      }
      ++seed;
    }
    const double secs =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
            .count();
    std::vector<std::string> problems = Fsck();
    EXPECT_TRUE(problems.empty()) << scenario << ": fsck: " << problems[0];
    printf("race %-44s pass  %4d iterations  seeds %llu..%llu  %.1f s\n",
           scenario.c_str(), iterations, static_cast<unsigned long long>(first),
           static_cast<unsigned long long>(seed - 1), secs);
  }

  // S9, C1, C2: A writes 'o' over [0, len) of `f` and syncs it, then a
  // new node "b<seed>" starts; null (and o->failure set) if it cannot.
  RaceNode* SyncedFileAndNewNode(RaceNode* a, const std::string& f,
                                 uint64_t len, uint64_t seed, Outcome* o,
                                 const std::vector<std::string>& args = {},
                                 const std::string& mount_opts = "") {
    a->Call(absl::StrCat("write ", f, " 0 ", len, " o"));
    a->Call("fsync " + f);
    RaceNode* b = AddNode("b" + std::to_string(seed), args, mount_opts);
    if (b == nullptr) o->failure = "node b did not start";
    return b;
  }

  // S9 and C1: B writes [0, len) of `f` (A wrote 'o' there and synced)
  // and its fsync stops between MapWrite and its data write (`fault_ms`);
  // there `cut()` cuts B off with INVAL EX and dirty pages. A needs B's
  // lock: B is evicted and fenced, and A must read its own bytes. After
  // `heal()`, B's fsync must fail and its late write must never land.
  void CutOffDuringWriteBack(RaceNode* a, RaceNode* b, const std::string& f,
                             uint64_t len, uint64_t seed, int fault_ms,
                             const std::function<void()>& cut,
                             const std::function<void()>& heal, Outcome* o) {
    b->Call(absl::StrCat("fault client.after_mapwrite=", fault_ms, "::1"));
    b->Call(absl::StrCat("write ", f, " 0 ", len, " B"));
    Reply synced;
    std::thread syncer([&] { synced = b->Call("fsync " + f, 120000); });
    usleep(static_cast<useconds_t>(200000 + (seed % 5) * 150000));
    cut();
    std::string got = ReadAll(*a, f, len, &o->failure);
    if (o->failure.empty() && got != Fill('o', len)) {
      o->failure = "A read B's uncommitted data: " + Runs(0, got);
    }
    heal();
    syncer.join();
    if (o->failure.empty() && synced.ok) {
      o->failure = "B's fsync succeeded after B was evicted";
    }
    Reply direct = a->Call(absl::StrCat("read ", f, " 0 ", len, " direct"));
    if (o->failure.empty() && FromRuns(0, direct.text) != Fill('o', len)) {
      o->failure = "B's late write landed: " + direct.text;
    }
  }

  // Scenario bodies run on librangefs nodes and on mounted ones.
  void RunS1(const std::string& scenario, RaceNode* a, RaceNode* b);
  void RunS2(const std::string& scenario, RaceNode* a, RaceNode* b);
  void RunS3(const std::string& scenario, RaceNode* a, RaceNode* b);
  void RunS4(const std::string& scenario, RaceNode* a, RaceNode* b);
  void RunS5(const std::string& scenario, RaceNode* a, RaceNode* b);
  void RunS6(const std::string& scenario, RaceNode* a, RaceNode* b);
  void RunS7(const std::string& scenario);
  void RunS9(const std::string& scenario);
  void RunS10(const std::string& scenario);
  void RunN1(const std::string& scenario);
  void RunN2(const std::string& scenario);
  void RunN3(const std::string& scenario);
  void RunN4(const std::string& scenario);
  void RunN5(const std::string& scenario);
  void RunN6(const std::string& scenario);
  void RunN7(const std::string& scenario);
  void RunStress(const std::string& scenario);
  // Why nodes cannot be FUSE mounts here, or "": with compose (the mounts
  // are started here) or without /dev/fuse.
  std::string NoMounts() const {
    if (compose()) return "mounts are started here, not in compose";
    if (access("/dev/fuse", R_OK | W_OK) != 0) {
      return "/dev/fuse is not usable here";
    }
    return "";
  }
  // A two-node scenario body on two FUSE mounts.
  void RunTwoThroughMounts(
      const std::function<void(RaceNode* a, RaceNode* b)>& run) {
    if (const std::string why = NoMounts(); !why.empty()) GTEST_SKIP() << why;
    through_mounts_ = true;
    RaceNode *a = nullptr, *b = nullptr;
    StartTwo(&a, &b);
    ASSERT_TRUE(a && b);
    run(a, b);
  }

  // The N scenarios' network; declared first, destroyed after every
  // process in its namespaces.
  std::unique_ptr<testing::NetLab> lab_;
  std::unique_ptr<testing::LocalCluster> cluster_;  // Null with compose.
  // Nodes added from then on are FUSE mounts (MountNode), driven through
  // system calls by rangefs-racenode --mount.
  bool through_mounts_ = false;
  std::vector<std::pair<std::unique_ptr<testing::Subprocess>, std::string>>
      daemons_;  // With their mount points.
  std::string dir_, lockd_address_, meta_address_;
  std::vector<std::unique_ptr<RaceNode>> nodes_;
  std::map<RaceNode*, std::string> node_services_;  // Compose: container.
};

std::string P(uint64_t seed, const char* name) {
  return absl::StrCat("/", name, ".", seed);
}

// Scenario 1 (2019-bcachefs-pagecache-add-lock.txt): B keeps a mapping of
// a range hot while A overwrites the range with O_DIRECT. After each of
// A's writes returned, B must never load older data.
TEST_F(RaceTest, S1_DirectWriteVsFaultsOnAnotherNode) {
  RaceNode *a = nullptr, *b = nullptr;
  StartTwo(&a, &b);
  ASSERT_TRUE(a && b);
  RunS1("S1_DirectWriteVsFaultsOnAnotherNode", a, b);
}

// Scenario 1 on two FUSE mounts: B's mapping is the kernel's, and A's
// O_DIRECT write goes through the kernel to A's daemon.
TEST_F(RaceTest, F1_DirectWriteVsFaultsThroughMounts) {
  RunTwoThroughMounts([this](RaceNode* a, RaceNode* b) {
    RunS1("F1_DirectWriteVsFaultsThroughMounts", a, b);
  });
}

void RaceTest::RunS1(const std::string& scenario, RaceNode* a, RaceNode* b) {
  const uint64_t len = 8 * kPage;
  Repeat(scenario, [&](uint64_t seed) {
    Outcome o;
    const std::string f = P(seed, "s1");
    a->Call(absl::StrCat("write ", f, " 0 ", len, " a direct"));
    b->Call(absl::StrCat("mmap m ", f, " 0 ", len));
    constexpr int kGens = 6;
    std::vector<std::string> sa = {"barrier go"},
                             sb = {absl::StrCat("mwatch m 0 ", len),
                                   "barrier go"};
    for (int g = 1; g <= kGens; ++g) {
      sa.push_back("jitter 4");
      sa.push_back(absl::StrCat("@w", g, " write ", f, " 0 ", len, " ",
                                Ch(static_cast<char>('a' + g)), " direct"));
    }
    sa.push_back("barrier end");
    sb.push_back("barrier end");
    sb.push_back("@watch mwatch_stop m");
    o.script = RunScript({a, b}, {sa, sb}, seed);
    if (o.Hung()) return o;
    std::vector<std::string> models = {Fill('a', len)};
    std::vector<int64_t> done = {0};
    for (int g = 1; g <= kGens; ++g) {
      const Reply& w = o.script.Get(absl::StrCat("w", g));
      if (!w.ok) {
        o.failure = "write " + std::to_string(g) + " failed: " + w.text;
        return o;
      }
      models.push_back(Fill(static_cast<char>('a' + g), len));
      done.push_back(w.t_ns);
    }
    o.failure = CheckVisibility(models, done, o.script.Get("watch").text);
    b->Call("munmap m");
    return o;
  });
}

// Scenario 2 (fstests generic/708, generic/729): an O_DIRECT write whose
// buffer is a mapping of the very range it writes, on one node, while
// another node stores into the same file through its own mapping.
TEST_F(RaceTest, S2_DirectWriteFromItsOwnMapping) {
  RaceNode *a = nullptr, *b = nullptr;
  StartTwo(&a, &b);
  ASSERT_TRUE(a && b);
  RunS2("S2_DirectWriteFromItsOwnMapping", a, b);
}

// Scenario 2 on two FUSE mounts: the kernel faults A's buffer in while it
// makes the O_DIRECT write, and the fault's READ comes to A's daemon beside
// it, its page locked until answered. On odd seeds A maps the range
// through its O_DIRECT descriptor (the fill then comes on that handle).
// B stores into the half A does not write: the kernel copies a direct
// write's buffer into the request before the daemon can take any lock,
// so a page of A's own range that B changes meanwhile on its mount goes
// out as A's mount had it (docs/fuse.md, "Direct I/O and mappings").
TEST_F(RaceTest, F2_DirectWriteFromItsOwnMappingThroughMounts) {
  RunTwoThroughMounts([this](RaceNode* a, RaceNode* b) {
    RunS2("F2_DirectWriteFromItsOwnMappingThroughMounts", a, b);
  });
}

void RaceTest::RunS2(const std::string& scenario, RaceNode* a, RaceNode* b) {
  const uint64_t len = 16 * kPage;
  Repeat(scenario, [&](uint64_t seed) {
    Outcome o;
    const std::string f = P(seed, "s2");
    a->Call(absl::StrCat("write ", f, " 0 ", len, " p"));
    a->Call("fsync " + f);
    a->Call(absl::StrCat("mmap m ", f, " 0 ", len,
                         through_mounts_ && seed % 2 == 1 ? " direct" : ""));
    b->Call(absl::StrCat("mmap m ", f, " 0 ", len));
    const uint64_t dlen = through_mounts_ ? len / 2 : len;
    const uint64_t page = through_mounts_ ? 8 + seed % 8 : seed % 16;
    o.script = RunScript(
        {a, b},
        {{"barrier go", "jitter 5",
          absl::StrCat("@dw dwrite_map ", f, " 0 ", dlen, " m 0")},
         {"barrier go", "jitter 5",
          absl::StrCat("@st mstore m ", page * kPage, " ", kPage, " q"),
          "msync m"}},
        seed, 20000);
    if (o.Hung("a node hung (the direct write faulted on its own locks?)")) {
      return o;
    }
    if (!o.script.Get("dw").ok ||
        o.script.Get("dw").text.rfind(std::to_string(dlen), 0) != 0) {
      o.failure =
          "direct write from its own mapping: " + o.script.Get("dw").text;
      return o;
    }
    std::string got = Converged(f, len, &o.failure);
    if (!o.failure.empty()) return o;
    for (uint64_t p = 0; p < 16; ++p) {
      const char c = got[p * kPage];
      if (got.substr(p * kPage, kPage) != Fill(c, kPage) ||
          (c != 'p' && !(c == 'q' && p == page))) {
        o.failure = "page " + std::to_string(p) + " holds " + Runs(0, got);
        return o;
      }
    }
    if (got[page * kPage] != 'q') o.failure = "B's store was lost";
    a->Call("munmap m");
    b->Call("munmap m");
    return o;
  });
}

// Scenario 3 (the ext4 race of 2024-*): write faults on A while B
// allocates, punches and zeroes the same range: every page ends as one of
// the values some order gives, all nodes agree, and the space accounting
// matches the data (fsck).
TEST_F(RaceTest, S3_WriteFaultsVsFallocate) {
  RaceNode *a = nullptr, *b = nullptr;
  StartTwo(&a, &b);
  ASSERT_TRUE(a && b);
  RunS3("S3_WriteFaultsVsFallocate", a, b);
}

// Scenario 3 on two FUSE mounts: stores into the kernel's mapping on A,
// fallocate(2) on B's mount.
TEST_F(RaceTest, F3_WriteFaultsVsFallocateThroughMounts) {
  RunTwoThroughMounts([this](RaceNode* a, RaceNode* b) {
    RunS3("F3_WriteFaultsVsFallocateThroughMounts", a, b);
  });
}

void RaceTest::RunS3(const std::string& scenario, RaceNode* a, RaceNode* b) {
  const uint64_t pages = 16, len = pages * kPage;
  Repeat(scenario, [&](uint64_t seed) {
    Outcome o;
    const std::string f = P(seed, "s3");
    a->Call(absl::StrCat("write ", f, " 0 ", len, " o"));
    a->Call("fsync " + f);
    a->Call(absl::StrCat("mmap m ", f, " 0 ", len));
    std::mt19937_64 rng(seed);
    std::vector<std::string> sa = {"barrier go"}, sb = {"barrier go"};
    // Per page: A's stores (labels, in order, with their bytes) and B's
    // changes that clear it (punch, zero).
    std::vector<std::vector<std::pair<std::string, char>>> stores(pages);
    std::vector<std::vector<std::string>> clears(pages);
    for (int i = 0; i < 8; ++i) {
      uint64_t p = rng() % pages;
      char c = static_cast<char>('A' + i);
      const std::string label = "st" + std::to_string(i);
      stores[p].emplace_back(label, c);
      sa.push_back("jitter 2");
      sa.push_back(absl::StrCat("@", label, " mstore m ", p * kPage, " ", kPage,
                                " ", Ch(c)));
    }
    sa.push_back("msync m");
    const char* modes[] = {"punch", "zero_keep", "alloc_keep"};
    for (int i = 0; i < 3; ++i) {
      uint64_t p = rng() % (pages - 4);
      const std::string label = "fa" + std::to_string(i);
      if (i < 2) {
        for (uint64_t q = p; q < p + 4; ++q) clears[q].push_back(label);
      }
      sb.push_back("jitter 3");
      sb.push_back(absl::StrCat("@", label, " fallocate ", f, " ", modes[i],
                                " ", p * kPage, " ", 4 * kPage));
    }
    o.script = RunScript({a, b}, {sa, sb}, seed);
    if (o.Hung()) return o;
    std::string got = Converged(f, len, &o.failure);
    if (!o.failure.empty()) return o;
    if (got.size() != len) {
      o.failure = "size " + std::to_string(got.size());
      return o;
    }
    // A page ends as what its last change wrote. A's stores to it are in
    // order, so only the last one's byte can be there, and only if no
    // clear started after that store had returned; zeros only if some
    // clear had not returned before that store started; the old byte only
    // if nothing changed the page. A store is a memset, not atomic: a
    // clear that overlaps it may leave a mix of the two.
    for (uint64_t p = 0; p < pages; ++p) {
      const TraceLine* last =
          stores[p].empty() ? nullptr : o.script.Line(stores[p].back().first);
      bool letter_ok = last != nullptr, zero_ok = false;
      for (const std::string& c : clears[p]) {
        const TraceLine* cl = o.script.Line(c);
        if (cl == nullptr) continue;
        if (last == nullptr || cl->end_ns > last->start_ns) zero_ok = true;
        if (last != nullptr && cl->start_ns > last->end_ns) letter_ok = false;
      }
      const char letter = last != nullptr ? stores[p].back().second : 'o';
      const bool old_ok = last == nullptr && clears[p].empty();
      for (uint64_t i = p * kPage; i < (p + 1) * kPage; ++i) {
        const char c = got[i];
        if ((c == 0 && zero_ok) || (c == 'o' && old_ok) ||
            (c == letter && letter_ok && last != nullptr)) {
          continue;
        }
        o.failure = absl::StrCat(
            "page ", p, " holds ",
            Runs(p * kPage, got.substr(p * kPage, kPage)),
            "; allowed:", letter_ok && last ? std::string(" ") + letter : "",
            zero_ok ? " zeros" : "", old_ok ? " o" : "", " (its last store ",
            last ? last->label : "none", ", clears ", clears[p].size(), ")");
        return o;
      }
    }
    a->Call("munmap m");
    return o;
  });
}

// The writer's side of scenarios 4 and 5: operations applied one after
// another on A (each with its model), while B watches a mapping.
struct Op {
  std::string cmd;
  std::function<void(std::string*)> apply;
};

Outcome WatchWhileApplying(RaceNode* a, RaceNode* b, const std::string& f,
                           uint64_t map_len, const std::string& initial,
                           const std::vector<Op>& ops, uint64_t seed,
                           bool zeros_past_eof = false) {
  Outcome o;
  a->Call("write " + f + " 0 " + std::to_string(initial.size()) + " x");
  // Per-page contents: written page by page.
  for (uint64_t p = 0; p * kPage < initial.size(); ++p) {
    a->Call(absl::StrCat("write ", f, " ", p * kPage, " ", kPage, " ",
                         std::string(1, initial[p * kPage])));
  }
  a->Call("fsync " + f);
  b->Call(absl::StrCat("mmap m ", f, " 0 ", map_len));
  std::vector<std::string> sa = {"barrier go"},
                           sb = {absl::StrCat("mwatch m 0 ", map_len),
                                 "barrier go"};
  std::vector<std::string> models = {initial};
  for (size_t i = 0; i < ops.size(); ++i) {
    sa.push_back("jitter 3");
    sa.push_back(absl::StrCat("@op", i, " ", ops[i].cmd));
    std::string next = models.back();
    ops[i].apply(&next);
    models.push_back(next);
  }
  sa.push_back("barrier end");
  sb.push_back("jitter 3");
  sb.push_back("barrier end");
  sb.push_back("@watch mwatch_stop m");
  o.script = RunScript({a, b}, {sa, sb}, seed);
  if (o.Hung()) return o;
  std::vector<int64_t> done = {0};
  for (size_t i = 0; i < ops.size(); ++i) {
    const Reply& r = o.script.Get(absl::StrCat("op", i));
    if (!r.ok) {
      o.failure = ops[i].cmd + ": " + r.text;
      return o;
    }
    done.push_back(r.t_ns);
  }
  o.failure =
      CheckVisibility(models, done, o.script.Get("watch").text, zeros_past_eof);
  b->Call("munmap m");
  return o;
}

std::string Pages(const std::string& bytes_per_page) {
  std::string s;
  for (char c : bytes_per_page) s += Fill(c, kPage);
  return s;
}

// Scenario 4 (2015-dax-fault-vs-truncate.txt): truncate and punch on A
// while B faults the range in.
TEST_F(RaceTest, S4_TruncateAndPunchVsFaults) {
  RaceNode *a = nullptr, *b = nullptr;
  StartTwo(&a, &b);
  ASSERT_TRUE(a && b);
  RunS4("S4_TruncateAndPunchVsFaults", a, b);
}

// Scenario 4 on two FUSE mounts: truncate(2) and fallocate(2) on A's
// mount while B faults through the kernel's mapping on its own.
TEST_F(RaceTest, F4_TruncateAndPunchVsFaultsThroughMounts) {
  RunTwoThroughMounts([this](RaceNode* a, RaceNode* b) {
    RunS4("F4_TruncateAndPunchVsFaultsThroughMounts", a, b);
  });
}

void RaceTest::RunS4(const std::string& scenario, RaceNode* a, RaceNode* b) {
  Repeat(scenario, [&](uint64_t seed) {
    const std::string f = P(seed, "s4");
    const std::string init = Pages("ABCDEFGHIJKLMNOP");
    std::vector<Op> ops = {
        {absl::StrCat("fallocate ", f, " punch ", 2 * kPage, " ", 3 * kPage),
         [](std::string* m) {
           m->replace(2 * kPage, 3 * kPage, Fill(0, 3 * kPage));
         }},
        {absl::StrCat("truncate ", f, " ", 10 * kPage),
         [](std::string* m) { m->resize(10 * kPage); }},
        {absl::StrCat("write ", f, " ", 6 * kPage, " ", 2 * kPage, " z"),
         [](std::string* m) {
           m->replace(6 * kPage, 2 * kPage, Fill('z', 2 * kPage));
         }},
        {absl::StrCat("truncate ", f, " ", 4 * kPage),
         [](std::string* m) { m->resize(4 * kPage); }},
        {absl::StrCat("truncate ", f, " ", 12 * kPage),
         [](std::string* m) { m->resize(12 * kPage, '\0'); }},
    };
    return WatchWhileApplying(a, b, f, 16 * kPage, init, ops, seed,
                              /*zeros_past_eof=*/through_mounts_);
  });
}

// Scenario 5 (2020-*): collapse and insert range on A while B faults: a
// page must never show up at its old index after the shift returned.
TEST_F(RaceTest, S5_CollapseAndInsertVsFaults) {
  RaceNode *a = nullptr, *b = nullptr;
  StartTwo(&a, &b);
  ASSERT_TRUE(a && b);
  RunS5("S5_CollapseAndInsertVsFaults", a, b);
}

// Scenario 5 on two FUSE mounts: the shifts are rangefs's ioctls on A's
// mount (the kernel passes those fallocate modes to no FUSE daemon), B
// faults through the kernel's mapping on its own.
TEST_F(RaceTest, F5_CollapseAndInsertVsFaultsThroughMounts) {
  RunTwoThroughMounts([this](RaceNode* a, RaceNode* b) {
    RunS5("F5_CollapseAndInsertVsFaultsThroughMounts", a, b);
  });
}

void RaceTest::RunS5(const std::string& scenario, RaceNode* a, RaceNode* b) {
  Repeat(scenario, [&](uint64_t seed) {
    const std::string f = P(seed, "s5");
    const std::string init = Pages("ABCDEFGHIJKLMNOP");
    std::vector<Op> ops = {
        {absl::StrCat("fallocate ", f, " collapse ", 2 * kPage, " ", kPage),
         [](std::string* m) { m->erase(2 * kPage, kPage); }},
        {absl::StrCat("fallocate ", f, " insert ", 5 * kPage, " ", 2 * kPage),
         [](std::string* m) { m->insert(5 * kPage, Fill(0, 2 * kPage)); }},
        {absl::StrCat("fallocate ", f, " collapse ", 0, " ", 3 * kPage),
         [](std::string* m) { m->erase(0, 3 * kPage); }},
        {absl::StrCat("fallocate ", f, " insert ", 0, " ", kPage),
         [](std::string* m) { m->insert(0, Fill(0, kPage)); }},
    };
    return WatchWhileApplying(a, b, f, 20 * kPage, init, ops, seed,
                              /*zeros_past_eof=*/through_mounts_);
  });
}

// Scenario 6 (xfs/559): A's write is paused between its data write and
// its commit; B's write of the same fresh range commits meanwhile. A's
// cookie is stale: it must remap and redo, and the STALE path must run.
TEST_F(RaceTest, S6_StaleMappingIsRemapped) {
  RaceNode *a = nullptr, *b = nullptr;
  StartTwo(&a, &b);
  ASSERT_TRUE(a && b);
  RunS6("S6_StaleMappingIsRemapped", a, b);
}

// Scenario 6 on two FUSE mounts: the pause is set inside A's daemon
// (fault_control), the O_DIRECT writes go through each kernel.
TEST_F(RaceTest, F6_StaleMappingIsRemappedThroughMounts) {
  RunTwoThroughMounts([this](RaceNode* a, RaceNode* b) {
    RunS6("F6_StaleMappingIsRemappedThroughMounts", a, b);
  });
}

void RaceTest::RunS6(const std::string& scenario, RaceNode* a, RaceNode* b) {
  const uint64_t len = 16 * kPage;
  Repeat(scenario, [&](uint64_t seed) {
    Outcome o;
    const std::string f = P(seed, "s6");
    Reply before = a->Call("stats");
    a->Call("fault client.before_commit=400::1");
    o.script = RunScript(
        {a, b},
        {{"barrier go", absl::StrCat("@wa write ", f, " 0 ", len, " A direct")},
         {"barrier go", "sleep 120", "jitter 150",
          absl::StrCat("@wb write ", f, " 0 ", len, " B direct")}},
        seed);
    a->Call("fault client.before_commit=0::0");
    if (o.Hung()) return o;
    const Reply& wa = o.script.Get("wa");
    const Reply& wb = o.script.Get("wb");
    if (!wa.ok || !wb.ok) {
      o.failure = "a write failed: " + wa.text + " / " + wb.text;
      return o;
    }
    auto stale = [](const std::string& stats) {
      size_t at = stats.find("stale_retries=");
      return at == std::string::npos
                 ? 0
                 : strtoull(stats.c_str() + at + 14, nullptr, 10);
    };
    const uint64_t stale_before = stale(before.text);
    const uint64_t stale_after = stale(a->Call("stats").text);
    std::string got = Converged(f, len, &o.failure);
    if (!o.failure.empty()) return o;
    if (wb.t_ns < wa.t_ns) {
      // B committed inside A's pause: A's commit must have been STALE.
      if (stale_after == stale_before) {
        o.failure =
            "B's write committed while A's was paused, but A saw no "
            "STALE commit";
      } else if (got != Fill('A', len)) {
        o.failure =
            "A remapped and rewrote last, yet the file is " + Runs(0, got);
      }
    }
    return o;
  });
}

// Scenario 7 (2015-*): simultaneous write faults on one hole from three
// nodes: one block allocated, every store kept.
TEST_F(RaceTest, S7_SimultaneousWriteFaultsOnAHole) {
  RunS7("S7_SimultaneousWriteFaultsOnAHole");
}

// Scenario 7 on three FUSE mounts: each store a write fault of a kernel's
// mapping, each sent to its own daemon.
TEST_F(RaceTest, F7_SimultaneousWriteFaultsOnAHoleThroughMounts) {
  if (const std::string why = NoMounts(); !why.empty()) GTEST_SKIP() << why;
  through_mounts_ = true;
  RunS7("F7_SimultaneousWriteFaultsOnAHoleThroughMounts");
}

void RaceTest::RunS7(const std::string& scenario) {
  StartCluster();
  std::vector<RaceNode*> ns = {AddNode("a"), AddNode("b"), AddNode("c")};
  for (RaceNode* n : ns) ASSERT_NE(n, nullptr);
  Repeat(scenario, [&](uint64_t seed) {
    Outcome o;
    const std::string f = P(seed, "s7");
    ns[0]->Call(absl::StrCat("truncate ", f, " ", 4 * kPage));
    std::vector<std::vector<std::string>> steps;
    for (size_t i = 0; i < ns.size(); ++i) {
      ns[i]->Call(absl::StrCat("mmap m ", f, " 0 ", 4 * kPage));
      steps.push_back({"barrier go", "jitter 2",
                       absl::StrCat("mstore m ", kPage + 100 * (i + 1), " 10 ",
                                    Ch(static_cast<char>('x' + i))),
                       "barrier stored", "msync m"});
    }
    o.script = RunScript(ns, steps, seed);
    if (o.Hung()) return o;
    std::string got = Converged(f, 4 * kPage, &o.failure);
    if (!o.failure.empty()) return o;
    for (size_t i = 0; i < ns.size(); ++i) {
      if (got.substr(kPage + 100 * (i + 1), 10) !=
          Fill(static_cast<char>('x' + i), 10)) {
        o.failure =
            "the store of " + ns[i]->name() + " was lost: " + Runs(0, got);
        return o;
      }
    }
    Reply st = ns[1]->Call("stat " + f);
    if (st.text.find("blocks=8") == std::string::npos) {
      o.failure = "one page written, but " + st.text;
    }
    for (RaceNode* n : ns) n->Call("munmap m");
    return o;
  });
}

// Scenario 8 (generic/344, generic/346): stores through mappings and
// buffered writes into the holes of one file from several nodes at once.
TEST_F(RaceTest, S8_MappedAndBufferedWritesOverHoles) {
  StartCluster();
  std::vector<RaceNode*> ns = {AddNode("a"), AddNode("b"), AddNode("c")};
  for (RaceNode* n : ns) ASSERT_NE(n, nullptr);
  const uint64_t pages = 24;
  Repeat("S8_MappedAndBufferedWritesOverHoles", [&](uint64_t seed) {
    Outcome o;
    const std::string f = P(seed, "s8");
    ns[0]->Call(absl::StrCat("truncate ", f, " ", pages * kPage));
    std::string model(pages * kPage, '\0');
    std::mt19937_64 rng(seed);
    std::vector<std::vector<std::string>> steps(ns.size());
    for (size_t i = 0; i < ns.size(); ++i) {
      ns[i]->Call(absl::StrCat("mmap m ", f, " 0 ", pages * kPage));
      steps[i].push_back("barrier go");
      for (int k = 0; k < 6; ++k) {
        // Node i owns bytes [i*1000, i*1000 + 900) of every page: the
        // writes never overlap, so every one must survive.
        const uint64_t p = rng() % pages;
        const uint64_t off = p * kPage + i * 1000 + (rng() % 400);
        const uint64_t len = 1 + rng() % 500;
        const char c = static_cast<char>('a' + (rng() % 26));
        model.replace(off, len, Fill(c, len));
        steps[i].push_back("jitter 2");
        steps[i].push_back(
            k % 2 == 0
                ? absl::StrCat("mstore m ", off, " ", len, " ", Ch(c))
                : absl::StrCat("write ", f, " ", off, " ", len, " ", Ch(c)));
      }
      steps[i].push_back("msync m");
    }
    o.script = RunScript(ns, steps, seed);
    if (o.Hung()) return o;
    std::string got = Converged(f, pages * kPage, &o.failure);
    if (!o.failure.empty()) return o;
    if (got != model) {
      size_t i = 0;
      while (i < got.size() && i < model.size() && got[i] == model[i]) ++i;
      o.failure = "byte " + std::to_string(i) + " differs from the model";
    }
    for (RaceNode* n : ns) n->Call("munmap m");
    return o;
  });
}

// Scenario 9: B holds INVAL EX with dirty pages and is cut off (stopped)
// in the middle of its write-back, between MapWrite and the data write.
// It is evicted and fenced after its lease; A proceeds; when B comes back
// its late data write is refused and never lands.
TEST_F(RaceTest, S9_CutOffNodeIsFencedAndItsLateWriteNeverLands) {
  if (compose()) GTEST_SKIP() << "changes lockd's options; C1 is its twin";
  RunS9("S9_CutOffNodeIsFencedAndItsLateWriteNeverLands");
}

// Scenario 9 on FUSE mounts: B's daemon is stopped between MapWrite and its
// data write, while the process on B's mount waits in fsync(2); that fsync
// must fail once B's daemon runs again.
TEST_F(RaceTest, F9_CutOffNodeIsFencedAndItsLateWriteNeverLandsThroughMounts) {
  if (const std::string why = NoMounts(); !why.empty()) GTEST_SKIP() << why;
  through_mounts_ = true;
  RunS9("F9_CutOffNodeIsFencedAndItsLateWriteNeverLandsThroughMounts");
}

void RaceTest::RunS9(const std::string& scenario) {
  testing::LocalClusterOptions co;
  co.callback_timeout_ms = 1500;
  StartCluster(co);
  RaceNode* a = AddNode("a");
  ASSERT_NE(a, nullptr);
  const uint64_t len = 16 * kPage;
  Repeat(scenario, [&](uint64_t seed) {
    Outcome o;
    const std::string f = P(seed, "s9");
    RaceNode* b = SyncedFileAndNewNode(a, f, len, seed, &o, {"--lease_ms=1500"},
                                       "lease_ms=1500");
    if (b == nullptr) return o;
    // B is cut off (SIGSTOP) between MapWrite and its data write.
    CutOffDuringWriteBack(
        a, b, f, len, seed, 1500, [&] { Freeze(b, true); },
        [&] { Freeze(b, false); }, &o);
    DropNode(b);
    return o;
  });
}

// Scenario 10: lockd restarts while A holds INVAL EX with dirty pages and
// B asks for the range: B's request must wait until A has replayed its
// locks (grace), then A's callback writes A's data back, and B reads it.
TEST_F(RaceTest, S10_LockdRestartReplaysBeforeGranting) {
  if (compose()) GTEST_SKIP() << "restarts lockd";
  RunS10("S10_LockdRestartReplaysBeforeGranting");
}

// Scenario 10 on two FUSE mounts: A's write sits in its kernel's page
// cache and its node's when lockd restarts.
TEST_F(RaceTest, F10_LockdRestartReplaysBeforeGrantingThroughMounts) {
  if (const std::string why = NoMounts(); !why.empty()) GTEST_SKIP() << why;
  through_mounts_ = true;
  RunS10("F10_LockdRestartReplaysBeforeGrantingThroughMounts");
}

void RaceTest::RunS10(const std::string& scenario) {
  testing::LocalClusterOptions co;
  co.grace_ms = 2000;
  RaceNode *a = nullptr, *b = nullptr;
  StartTwo(&a, &b, co);
  ASSERT_TRUE(a && b);
  const uint64_t len = 4 * kPage;
  Repeat(scenario, [&](uint64_t seed) {
    Outcome o;
    const std::string f = P(seed, "s10");
    b->Call(absl::StrCat("read ", f, " 0 ", len));  // B knows the file.
    Reply w = a->Call(absl::StrCat("write ", f, " 0 ", len, " A"));
    if (!w.ok) {
      o.failure = "write: " + w.text;
      return o;
    }
    // On odd seeds A replays late: B's request reaches the restarted
    // lockd first, and only the grace period keeps it waiting.
    if (seed % 2 == 1) a->Call("fault client.before_replay=400::1");
    cluster_->StopLockd(0, SIGKILL);
    cluster_->StartLockd(0);
    usleep(static_cast<useconds_t>((seed % 4) * 100000));
    std::string got = ReadAll(*b, f, len, &o.failure);
    if (o.failure.empty() && got != Fill('A', len)) {
      o.failure =
          "after the lockd restart B read " +
          (got.empty() ? std::string("nothing (size 0)") : Runs(0, got)) +
          " instead of A's unflushed write";
    }
    return o;
  });
}

// ---- a real network (testing::NetLab): every server and node in a
// network namespace of its own on one bridge; a cut drops packets without
// a word, as a partition does, and connections stay open across it.

// N1: scenario 9 with a partition instead of a stopped process. B, between
// MapWrite and its data write with INVAL EX and dirty pages, is cut off
// from every other host: unlike a stopped node it runs on, and its data
// write waits in its TCP retransmissions. A needs the range: lockd evicts
// and fences B; A reads its own bytes. When the network heals, B's fsync
// must fail and its late write, delivered now, must never land.
TEST_F(RaceTest, N1_PartitionedNodeIsFencedAndItsLateWriteNeverLands) {
  RunN1("N1_PartitionedNodeIsFencedAndItsLateWriteNeverLands");
}

// N1 on FUSE mounts: B's daemon is cut off while the process on B's mount
// waits in fsync(2).
TEST_F(RaceTest,
       FN1_PartitionedNodeIsFencedAndItsLateWriteNeverLandsThroughMounts) {
  if (const std::string why = NoMounts(); !why.empty()) GTEST_SKIP() << why;
  through_mounts_ = true;
  RunN1("FN1_PartitionedNodeIsFencedAndItsLateWriteNeverLandsThroughMounts");
}

void RaceTest::RunN1(const std::string& scenario) {
  StartLab();
  if (lab_ == nullptr) return;
  testing::LocalClusterOptions co;
  co.callback_timeout_ms = 1500;
  StartCluster(co);
  RaceNode* a = AddNode("a");
  ASSERT_NE(a, nullptr);
  const uint64_t len = 16 * kPage;
  Repeat(scenario, [&](uint64_t seed) {
    Outcome o;
    const std::string f = P(seed, "n1");
    RaceNode* b = SyncedFileAndNewNode(a, f, len, seed, &o, {"--lease_ms=1500"},
                                       "lease_ms=1500");
    if (b == nullptr) return o;
    CutOffDuringWriteBack(
        a, b, f, len, seed, 1500, [&] { lab_->Isolate("b"); },
        [&] { lab_->Rejoin("b"); }, &o);
    DropNode(b);
    return o;
  });
}

// N2: lockd is unreachable from B for less than the lease (and a
// callback timeout): B holds INVAL EX with dirty pages and goes on writing
// under its cached locks meanwhile. Nothing may be evicted, nothing lost:
// once the network heals, A reads B's last bytes and B's locks still work.
TEST_F(RaceTest, N2_LockdUnreachableForLessThanTheLeaseEvictsNothing) {
  RunN2("N2_LockdUnreachableForLessThanTheLeaseEvictsNothing");
}

TEST_F(RaceTest,
       FN2_LockdUnreachableForLessThanTheLeaseEvictsNothingThroughMounts) {
  if (const std::string why = NoMounts(); !why.empty()) GTEST_SKIP() << why;
  through_mounts_ = true;
  RunN2("FN2_LockdUnreachableForLessThanTheLeaseEvictsNothingThroughMounts");
}

void RaceTest::RunN2(const std::string& scenario) {
  StartLab();
  if (lab_ == nullptr) return;
  constexpr int kLeaseMs = 3000;
  testing::LocalClusterOptions co;
  co.callback_timeout_ms = kLeaseMs;
  StartCluster(co);
  RaceNode* a = AddLeaseNode("a", kLeaseMs);
  RaceNode* b = AddLeaseNode("b", kLeaseMs);
  ASSERT_TRUE(a && b);
  const uint64_t len = 4 * kPage;
  Repeat(scenario, [&](uint64_t seed) {
    Outcome o;
    const std::string f = P(seed, "n2");
    const int64_t evictions = Evictions();
    b->Call(absl::StrCat("write ", f, " 0 ", len, " B"));
    // Cut for 30% to 60% of the lease; B writes under its cached lock.
    lab_->Cut("b", "lockd0");
    Reply w = b->Call(absl::StrCat("write ", f, " 0 ", len, " C"));
    usleep(static_cast<useconds_t>(kLeaseMs * (300 + (seed % 4) * 100)));
    lab_->Heal("b", "lockd0");
    if (!w.ok) o.failure = "B's write during the cut failed: " + w.text;
    std::string got = ReadAll(*a, f, len, &o.failure);
    if (o.failure.empty() && got != Fill('C', len)) {
      o.failure = "A read " + Runs(0, got) + " instead of B's last write";
    }
    Reply again = b->Call(absl::StrCat("write ", f, " 0 ", len, " D"));
    if (o.failure.empty() && !again.ok) {
      o.failure = "B's write after the cut failed: " + again.text;
    }
    if (o.failure.empty() && Evictions() != evictions) {
      o.failure = "lockd evicted a node cut off for less than its lease";
    }
    return o;
  });
}

// N3: B is cut off from lockd, not from the servers that hold the data,
// with the file's pages cached. A writes the file: lockd's callback to B
// goes unanswered, lockd evicts B and grants A. A's write completes. B,
// still cut off, must not serve its cached bytes as the file's any more:
// its lease has run out, so it can no longer know that its locks are
// valid. It reads A's bytes or fails.
TEST_F(RaceTest, N3_NodeCutOffFromLockdStopsServingItsCache) {
  RunN3("N3_NodeCutOffFromLockdStopsServingItsCache");
}

TEST_F(RaceTest, FN3_NodeCutOffFromLockdStopsServingItsCacheThroughMounts) {
  if (const std::string why = NoMounts(); !why.empty()) GTEST_SKIP() << why;
  through_mounts_ = true;
  RunN3("FN3_NodeCutOffFromLockdStopsServingItsCacheThroughMounts");
}

void RaceTest::RunN3(const std::string& scenario) {
  StartLab();
  if (lab_ == nullptr) return;
  constexpr int kLeaseMs = 1500;
  testing::LocalClusterOptions co;
  co.callback_timeout_ms = kLeaseMs;
  StartCluster(co);
  const std::string lease = absl::StrCat("lease_ms=", kLeaseMs);
  RaceNode* a = AddLeaseNode("a", kLeaseMs);
  ASSERT_NE(a, nullptr);
  const uint64_t len = 4 * kPage;
  Repeat(scenario, [&](uint64_t seed) {
    Outcome o;
    const std::string f = P(seed, "n3");
    RaceNode* b =
        SyncedFileAndNewNode(a, f, len, seed, &o, {"--" + lease}, lease);
    if (b == nullptr) return o;
    std::string cached = ReadAll(*b, f, len, &o.failure);
    if (o.failure.empty() && cached != Fill('o', len)) {
      o.failure = "B read " + Runs(0, cached) + " before the cut";
    }
    lab_->Cut("b", "lockd0");
    usleep(static_cast<useconds_t>((seed % 3) * 200000));
    Reply w = a->Call(absl::StrCat("write ", f, " 0 ", len, " A"), 60000);
    if (o.failure.empty() && !w.ok) o.failure = "A's write: " + w.text;
    a->Call("fsync " + f);
    // B's read waits for lockd while the cut lasts (or fails): it is let
    // go by the heal. What it returns must not be its old cache.
    Reply r;
    std::thread reader(
        [&] { r = b->Call(absl::StrCat("read ", f, " 0 ", len), 60000); });
    usleep(static_cast<useconds_t>(500000 + (seed % 3) * 250000));
    lab_->Heal("b", "lockd0");
    reader.join();
    if (o.failure.empty() && r.ok && FromRuns(0, r.text) != Fill('A', len)) {
      o.failure = "B, cut off from lockd, read " + r.text +
                  " after A's write had completed, instead of A's bytes or "
                  "an error";
    }
    DropNode(b);
    return o;
  });
}

// N4: lockd is killed (-9) and restarted around an eviction. B, between
// MapWrite and its data write with INVAL EX and dirty pages, is cut off;
// A needs the range. lockd dies before it has started evicting B, or while
// that eviction waits for a data server it cannot reach, and comes back.
// A must still read its own bytes, and when the network heals B's fsync
// must fail and its late write never land: the restarted lockd must not
// hand B's range over while B may still write (it knows B's session from
// its records, and evicts it when B does not come back in its lease).
TEST_F(RaceTest, N4_LockdKilledAroundTheEvictionOfACutOffNode) {
  RunN4("N4_LockdKilledAroundTheEvictionOfACutOffNode");
}

TEST_F(RaceTest, FN4_LockdKilledAroundTheEvictionOfACutOffNodeThroughMounts) {
  if (const std::string why = NoMounts(); !why.empty()) GTEST_SKIP() << why;
  through_mounts_ = true;
  RunN4("FN4_LockdKilledAroundTheEvictionOfACutOffNodeThroughMounts");
}

void RaceTest::RunN4(const std::string& scenario) {
  StartLab();
  if (lab_ == nullptr) return;
  testing::LocalClusterOptions co;
  co.callback_timeout_ms = 1500;
  co.fence_lease_ms = 2000;
  StartCluster(co);
  RaceNode* a = AddNode("a");
  ASSERT_NE(a, nullptr);
  const uint64_t len = 16 * kPage;
  Repeat(scenario, [&](uint64_t seed) {
    Outcome o;
    const std::string f = P(seed, "n4");
    RaceNode* b = SyncedFileAndNewNode(a, f, len, seed, &o, {"--lease_ms=1500"},
                                       "lease_ms=1500");
    if (b == nullptr) return o;
    b->Call("fault client.after_mapwrite=2500::1");
    b->Call(absl::StrCat("write ", f, " 0 ", len, " B"));
    Reply synced;
    std::thread syncer([&] { synced = b->Call("fsync " + f, 120000); });
    usleep(static_cast<useconds_t>(200000 + (seed % 5) * 150000));
    // B is cut off; lockd cannot reach data server 1 either, so B's
    // eviction waits there (up to 1.5 fence leases) and lockd dies in it.
    lab_->Isolate("b");
    lab_->Cut("lockd0", "data1");
    std::string got;
    std::thread reader([&] { got = ReadAll(*a, f, len, &o.failure); });
    // A's callback times out 1.5 s on, and B's eviction then waits for
    // data server 1 for up to 3 s: lockd dies before it (seeds 1, 2 mod
    // 4: the restarted lockd must evict B itself) or in it.
    usleep(static_cast<useconds_t>(500000 + ((seed + 3) % 4) * 600000));
    // Here, not on a thread: a server dies with the thread that started it.
    cluster_->StopLockd(0, SIGKILL);
    cluster_->StartLockd(0);
    lab_->Heal("lockd0", "data1");
    reader.join();
    if (o.failure.empty() && got != Fill('o', len)) {
      o.failure = "A read B's uncommitted data: " + Runs(0, got);
    }
    lab_->Rejoin("b");
    syncer.join();
    if (o.failure.empty() && synced.ok) {
      o.failure = "B's fsync succeeded after B was evicted";
    }
    Reply direct = a->Call(absl::StrCat("read ", f, " 0 ", len, " direct"));
    if (o.failure.empty() && FromRuns(0, direct.text) != Fill('o', len)) {
      o.failure = "B's late write landed: " + direct.text;
    }
    DropNode(b);
    return o;
  });
}

// N5: the metadata server is killed (-9) and restarted under load from
// two nodes: each makes, renames, writes and syncs files of its own and
// overwrites its half of one file they share. The first server holds
// every answer to a change 100 ms after the change is stored, so the kill
// finds changes that were applied and not answered; their nodes send them
// again. Every call must succeed (the nodes wait for the server and
// retry, and the server applies a change once: kept replies), every file
// holds what its last acknowledged write put there, under its new name,
// and both nodes read the same bytes.
TEST_F(RaceTest, N5_MetadataServerKilledUnderLoad) {
  RunN5("N5_MetadataServerKilledUnderLoad");
}

TEST_F(RaceTest, FN5_MetadataServerKilledUnderLoadThroughMounts) {
  if (const std::string why = NoMounts(); !why.empty()) GTEST_SKIP() << why;
  through_mounts_ = true;
  RunN5("FN5_MetadataServerKilledUnderLoadThroughMounts");
}

void RaceTest::RunN5(const std::string& scenario) {
  RaceNode *a = nullptr, *b = nullptr;
  StartTwo(&a, &b);
  ASSERT_TRUE(a && b);
  constexpr int kFiles = 4;
  const uint64_t len = 8 * kPage;
  Repeat(scenario, [&](uint64_t seed) {
    Outcome o;
    // A server whose answers to changes are late.
    std::string why;
    cluster_->StopMeta(SIGTERM);
    cluster_->StartMeta("meta.change.answer=100");
    if (!cluster_->WaitMeta(&why)) {
      o.failure = "metadata server: " + why;
      return o;
    }
    const std::string shared = P(seed, "n5.shared");
    auto name = [&](int n, int k, const char* suffix) {
      return P(seed, absl::StrCat("n5.", n, ".", k, suffix).c_str());
    };
    std::vector<std::vector<std::string>> steps(2);
    for (int n = 0; n < 2; ++n) {
      const char fill = n == 0 ? 'a' : 'b';
      for (int k = 0; k < kFiles; ++k) {
        steps[n].push_back(absl::StrCat("@w", n, k, " write ", name(n, k, ""),
                                        " 0 ", len, " ",
                                        std::string(1, fill + k)));
        steps[n].push_back(absl::StrCat("@r", n, k, " rename ", name(n, k, ""),
                                        " ", name(n, k, ".r")));
        steps[n].push_back(
            absl::StrCat("@s", n, k, " fsync ", name(n, k, ".r")));
      }
      steps[n].push_back(absl::StrCat("@x", n, " write ", shared, " ", n * len,
                                      " ", len, " ", std::string(1, fill)));
      steps[n].push_back(absl::StrCat("@y", n, " fsync ", shared));
    }
    ScriptResult res;
    std::thread load([&] { res = RunScript({a, b}, steps, seed, 60000); });
    // Anywhere in the scripts' first two seconds (with late answers they
    // take about as long).
    usleep(static_cast<useconds_t>(100000 + (seed % 10) * 200000));
    // Here, not on a thread: a server dies with the thread that started it.
    cluster_->StopMeta(SIGKILL);
    usleep(static_cast<useconds_t>((seed % 3) * 200000));
    cluster_->StartMeta();
    if (!cluster_->WaitMeta(&why)) o.failure = "metadata server: " + why;
    load.join();
    o.script = res;
    if (o.failure.empty() && res.hung) o.failure = "a node hung";
    for (const auto& [label, reply] : res.labels) {
      if (o.failure.empty() && !reply.ok) {
        o.failure = "step " + label + " failed: " + reply.text;
      }
    }
    for (int n = 0; o.failure.empty() && n < 2; ++n) {
      for (int k = 0; o.failure.empty() && k < kFiles; ++k) {
        const std::string f = name(n, k, ".r");
        std::string got = Converged(f, len, &o.failure);
        if (o.failure.empty() && got != Fill((n == 0 ? 'a' : 'b') + k, len)) {
          o.failure = f + " holds " + Runs(0, got);
        }
      }
    }
    std::string got = Converged(shared, 2 * len, &o.failure);
    if (o.failure.empty() && got != Fill('a', len) + Fill('b', len)) {
      o.failure = shared + " holds " + Runs(0, got);
    }
    return o;
  });
}

// N6: the data servers are unreachable from B for less than the lease
// while B must write its dirty pages back: B holds INVAL EX over bytes it
// wrote and did not sync, A reads them (a callback to B), and B is cut
// off from both data servers (not from lockd) for 0.4 to 1.6 s. B's
// write-back must wait for them, not drop the data: A reads B's bytes.
TEST_F(RaceTest, N6_DataServersUnreachableForLessThanTheLeaseLoseNothing) {
  RunN6("N6_DataServersUnreachableForLessThanTheLeaseLoseNothing");
}

TEST_F(RaceTest,
       FN6_DataServersUnreachableForLessThanTheLeaseLoseNothingThroughMounts) {
  if (const std::string why = NoMounts(); !why.empty()) GTEST_SKIP() << why;
  through_mounts_ = true;
  RunN6(
      "FN6_DataServersUnreachableForLessThanTheLeaseLoseNothingThroughMounts");
}

void RaceTest::RunN6(const std::string& scenario) {
  StartLab();
  if (lab_ == nullptr) return;
  constexpr int kLeaseMs = 3000;
  StartCluster();
  RaceNode* a = AddLeaseNode("a", kLeaseMs);
  RaceNode* b = AddLeaseNode("b", kLeaseMs);
  ASSERT_TRUE(a && b);
  const uint64_t len = 16 * kPage;
  Repeat(scenario, [&](uint64_t seed) {
    Outcome o;
    const std::string f = P(seed, "n6");
    a->Call(absl::StrCat("write ", f, " 0 ", len, " o"));
    a->Call("fsync " + f);
    Reply w = b->Call(absl::StrCat("write ", f, " 0 ", len, " B"));
    if (!w.ok) {
      o.failure = "B's write: " + w.text;
      return o;
    }
    const int64_t evictions = Evictions();
    lab_->Cut("b", "data0");
    lab_->Cut("b", "data1");
    std::string got;
    std::thread reader([&] { got = ReadAll(*a, f, len, &o.failure); });
    usleep(static_cast<useconds_t>(400000 + (seed % 4) * 400000));
    lab_->Heal("b", "data0");
    lab_->Heal("b", "data1");
    reader.join();
    if (o.failure.empty() && got != Fill('B', len)) {
      o.failure = "A read " + Runs(0, got) + " instead of B's write";
    }
    if (o.failure.empty() && Evictions() != evictions) {
      o.failure =
          "lockd evicted a node whose data servers were away "
          "for less than its lease";
    }
    return o;
  });
}

// N7: a lossy link. B's interface drops 10% to 30% of its packets, both
// ways, to every host, while B writes and fsyncs a file and A then reads
// it (a callback to B each time): TCP retransmits, calls take longer, and
// nothing may be lost, read stale, or evicted (the lease is 3 s).
TEST_F(RaceTest, N7_LossyLinkLosesNothing) {
  RunN7("N7_LossyLinkLosesNothing");
}

TEST_F(RaceTest, FN7_LossyLinkLosesNothingThroughMounts) {
  if (const std::string why = NoMounts(); !why.empty()) GTEST_SKIP() << why;
  through_mounts_ = true;
  RunN7("FN7_LossyLinkLosesNothingThroughMounts");
}

void RaceTest::RunN7(const std::string& scenario) {
  StartLab();
  if (lab_ == nullptr) return;
  constexpr int kLeaseMs = 3000;
  testing::LocalClusterOptions co;
  co.callback_timeout_ms = kLeaseMs;
  StartCluster(co);
  RaceNode* a = AddLeaseNode("a", kLeaseMs);
  RaceNode* b = AddLeaseNode("b", kLeaseMs);
  ASSERT_TRUE(a && b);
  const uint64_t len = 8 * kPage;
  Repeat(scenario, [&](uint64_t seed) {
    Outcome o;
    const std::string f = P(seed, "n7");
    const int64_t evictions = Evictions();
    lab_->Lossy("b", 0.1 + 0.1 * static_cast<double>(seed % 3));
    for (int round = 0; o.failure.empty() && round < 3; ++round) {
      const char fill = static_cast<char>('A' + (seed + round) % 26);
      Reply w = b->Call(
          absl::StrCat("write ", f, " 0 ", len, " ", std::string(1, fill)));
      Reply s = w.ok ? b->Call("fsync " + f) : w;
      if (!s.ok) {
        o.failure = "B's write or fsync failed: " + s.text;
        break;
      }
      std::string got = ReadAll(*a, f, len, &o.failure);
      if (o.failure.empty() && got != Fill(fill, len)) {
        o.failure = "A read " + Runs(0, got) + " instead of B's fsync'd " +
                    std::string(1, fill);
      }
    }
    lab_->Lossy("b", 0);
    if (o.failure.empty() && Evictions() != evictions) {
      o.failure = "lockd evicted a node on a lossy link";
    }
    return o;
  });
}

// ---- compose only (RANGEFS_RACE_COMPOSE): nodes in containers.

// C1: S9 across containers, the cut made by the network: B (container
// node1) stops between MapWrite and its data write with INVAL EX and dirty
// pages, and its container is disconnected from the compose network. A
// (node0) needs the range: lockd evicts B after its callback timeout and
// fences it. B is reconnected; its late write must never land.
TEST_F(RaceTest, C1_PartitionedContainerIsFencedAndItsLateWriteNeverLands) {
  if (!compose()) GTEST_SKIP() << "needs RANGEFS_RACE_COMPOSE";
  StartCluster();
  RaceNode* a = AddNode("a");
  ASSERT_NE(a, nullptr);
  const std::string net = ComposeNetwork();
  ASSERT_FALSE(net.empty());
  const uint64_t len = 16 * kPage;
  Repeat("C1_PartitionedContainerIsFencedAndItsLateWriteNeverLands",
         [&](uint64_t seed) {
           Outcome o;
           const std::string f = P(seed, "c1");
           RaceNode* b = SyncedFileAndNewNode(a, f, len, seed, &o);
           if (b == nullptr) return o;
           const std::string box = Container(node_services_[b]);
           CutOffDuringWriteBack(
               a, b, f, len, seed, 3000,
               [&] { Shell("docker network disconnect " + net + " " + box); },
               [&] { Shell("docker network connect " + net + " " + box); }, &o);
           DropNode(b);
           return o;
         });
}

// C2: node loss. B (container node1) holds INVAL EX with dirty pages and a
// write in flight when its container is killed. A must go on after
// lockd's eviction, never see B's unsynced bytes half-applied, and B's
// container comes back (restart policy) with a fresh node.
TEST_F(RaceTest, C2_KilledContainerLosesItsLocksAndTheOthersGoOn) {
  if (!compose()) GTEST_SKIP() << "needs RANGEFS_RACE_COMPOSE";
  StartCluster();
  RaceNode* a = AddNode("a");
  ASSERT_NE(a, nullptr);
  const uint64_t len = 16 * kPage;
  Repeat("C2_KilledContainerLosesItsLocksAndTheOthersGoOn", [&](uint64_t seed) {
    Outcome o;
    const std::string f = P(seed, "c2");
    RaceNode* b = SyncedFileAndNewNode(a, f, len, seed, &o);
    if (b == nullptr) return o;
    const std::string service = node_services_[b];
    const std::string box = Container(service);
    b->Call(absl::StrCat("write ", f, " 0 ", len, " B"));
    std::thread writer(
        [&] { b->Call(absl::StrCat("write ", f, " 0 ", len, " C"), 5000); });
    usleep(static_cast<useconds_t>((seed % 5) * 20000));
    Shell("docker kill " + box + " >/dev/null 2>&1");
    writer.join();
    std::string got = ReadAll(*a, f, len, &o.failure);
    // Nothing of B's was synced: A sees its own bytes, or (had B's
    // write-back got through before the kill) B's whole pages.
    for (uint64_t p = 0; o.failure.empty() && p < len; p += kPage) {
      std::string page = got.substr(p, kPage);
      if (page != Fill('o', kPage) && page != Fill('B', kPage) &&
          page != Fill('C', kPage)) {
        o.failure =
            "A read a torn page at " + std::to_string(p) + ": " + Runs(p, page);
      }
    }
    DropNode(b);
    // Back for the next iteration.
    Shell("docker start " + box + " >/dev/null 2>&1");
    for (int i = 0; i < 120; ++i) {
      if (Shell("docker inspect -f '{{.State.Health.Status}}' " + box) ==
          "healthy") {
        break;
      }
      usleep(500000);
    }
    return o;
  });
}

// Random stress: three nodes run random operations on one file at once;
// afterwards every node reads the same bytes and fsck is clean.
TEST_F(RaceTest, Stress_RandomOperationsConverge) {
  RunStress("Stress_RandomOperationsConverge");
}

// The stress on three FUSE mounts: every operation through the kernel
// (its page cache, mappings and O_DIRECT from them).
TEST_F(RaceTest, FStress_RandomOperationsThroughMountsConverge) {
  if (const std::string why = NoMounts(); !why.empty()) GTEST_SKIP() << why;
  through_mounts_ = true;
  RunStress("FStress_RandomOperationsThroughMountsConverge");
}

void RaceTest::RunStress(const std::string& scenario) {
  StartCluster();
  std::vector<RaceNode*> ns = {AddNode("a"), AddNode("b"), AddNode("c")};
  for (RaceNode* n : ns) ASSERT_NE(n, nullptr);
  const uint64_t span = 32 * kPage;
  Repeat(scenario, [&](uint64_t seed) {
    Outcome o;
    const std::string f = P(seed, "stress");
    ns[0]->Call(absl::StrCat("truncate ", f, " ", span));
    std::mt19937_64 rng(seed);
    std::vector<std::vector<std::string>> steps(ns.size());
    for (size_t i = 0; i < ns.size(); ++i) {
      ns[i]->Call(absl::StrCat("mmap m ", f, " 0 ", span));
      for (int k = 0; k < 12; ++k) {
        const uint64_t off = rng() % span;
        const uint64_t len =
            1 + rng() % std::min<uint64_t>(3 * kPage, span - off);
        const uint64_t poff = (rng() % (span / kPage - 2)) * kPage;
        const char c = static_cast<char>('a' + rng() % 26);
        switch (rng() % 7) {
          case 0:
            steps[i].push_back(
                absl::StrCat("write ", f, " ", off, " ", len, " ", Ch(c)));
            break;
          case 1:
            steps[i].push_back(absl::StrCat("write ", f, " ", poff, " ", kPage,
                                            " ", Ch(c), " direct"));
            break;
          case 2:
            steps[i].push_back(absl::StrCat("read ", f, " ", off, " ", len));
            break;
          case 3:
            steps[i].push_back(
                absl::StrCat("fallocate ", f, " punch ", off, " ", len));
            break;
          case 4:
            steps[i].push_back(
                absl::StrCat("mstore m ", off, " ", len, " ", Ch(c)));
            break;
          case 5:
            steps[i].push_back(absl::StrCat("mload m ", off, " ", len));
            break;
          default:
            steps[i].push_back(absl::StrCat("dwrite_map ", f, " ", poff, " ",
                                            kPage, " m ", poff));
            break;
        }
        steps[i].push_back("jitter 2");
      }
      steps[i].push_back("msync m");
    }
    o.script = RunScript(ns, steps, seed);
    if (o.Hung()) return o;
    for (const TraceLine& l : o.script.trace) {
      if (!l.reply.ok) {
        o.failure = l.node + ": " + l.cmd + " failed: " + l.reply.text;
        return o;
      }
    }
    (void)Converged(f, span, &o.failure);
    for (RaceNode* n : ns) n->Call("munmap m");
    return o;
  });
}

}  // namespace
}  // namespace rangefs::race

int main(int argc, char** argv) {
  // Every scenario runs in a network namespace of this process's own (its
  // servers on its loopback), so that the N scenarios can put a bridge
  // there without touching the machine's network. Before any thread: they
  // keep the namespace they start in. With compose the containers are
  // reached through the machine's network, so the process stays there.
  if (rangefs::race::ComposeProject() == nullptr && geteuid() == 0) {
    std::string why;
    if (!rangefs::testing::NetLab::EnterPrivateNetwork(&why)) {
      fprintf(stderr, "race_test: %s; the N scenarios are skipped\n",
              why.c_str());
    }
  }
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
