// Real rangefs-meta and rangefs-data processes on loopback, driven over
// gRPC: the wire protocol end to end, bad input, fencing at a data server,
// and kill -9 of the metadata server in the middle of a stream of
// operations followed by a restart: every acknowledged operation is there,
// nothing is half-applied (fsck), and service continues.
#include <grpcpp/grpcpp.h>
#include <signal.h>
#include <sys/stat.h>

#include <atomic>
#include <chrono>
#include <map>
#include <optional>
#include <set>
#include <thread>

#include "gtest/gtest.h"
#include "proto/data.grpc.pb.h"
#include "proto/meta.grpc.pb.h"
#include "rpc/channel.h"
#include "tests/util/subprocess.h"
#include "tests/util/temp_dir.h"

namespace rangefs {
namespace {

using testing::BinDir;
using testing::FreePort;
using testing::Subprocess;
using testing::Tail;

constexpr uint64_t kSession = 11;
constexpr uint64_t kDeviceSize = 64 << 20;
constexpr uint64_t kFenceLeaseMs = 1000;
constexpr uint64_t kRoot = 1;

std::unique_ptr<grpc::ClientContext> Ctx(int ms = 5000) {
  auto ctx = std::make_unique<grpc::ClientContext>();
  ctx->set_deadline(std::chrono::system_clock::now() +
                    std::chrono::milliseconds(ms));
  return ctx;
}

class MetaClusterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    meta_port_ = FreePort();
    for (int d = 0; d < 2; ++d) {
      data_port_[d] = FreePort();
      StartData(d);
    }
    StartMeta();
    for (int d = 0; d < 2; ++d) {
      data_[d] = proto::DataService::NewStub(
          rpc::MakeChannel("127.0.0.1:" + std::to_string(data_port_[d])));
      ASSERT_TRUE(WaitForLease(d, true));
    }
  }

  // Until data server `d` takes writes (`held`) or not: 20 s at most.
  bool WaitForLease(int d, bool held) {
    for (int i = 0; i < 1000; ++i) {
      proto::DataStatsRequest req;
      proto::DataStatsReply reply;
      if (data_[d]->Stats(Ctx().get(), req, &reply).ok() &&
          reply.fence_lease_held() == held) {
        return true;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return false;
  }

  void StartData(int d) {
    std::string name = "data" + std::to_string(d);
    ASSERT_TRUE(data_proc_[d].Start(
        {BinDir() + "/server/rangefs-data", "--listen",
         "127.0.0.1:" + std::to_string(data_port_[d]), "--dir", dir_.Sub(name),
         "--size", std::to_string(kDeviceSize), "--meta",
         "127.0.0.1:" + std::to_string(meta_port_)},
        dir_.Sub(name + ".log")));
  }

  void StartMeta() {
    std::string devices;
    for (int d = 0; d < 2; ++d) {
      devices += (d ? "," : "") + std::to_string(d) +
                 "=127.0.0.1:" + std::to_string(data_port_[d]) + ":" +
                 std::to_string(kDeviceSize);
    }
    ASSERT_TRUE(meta_proc_.Start(
        {BinDir() + "/server/rangefs-meta", "--listen",
         "127.0.0.1:" + std::to_string(meta_port_), "--dir", dir_.Sub("meta"),
         "--fs_id", "clustertest", "--devices", devices, "--fence_lease_ms",
         std::to_string(kFenceLeaseMs)},
        dir_.Sub("meta.log")));
    meta_ = proto::MetaService::NewStub(
        rpc::MakeChannel("127.0.0.1:" + std::to_string(meta_port_)));
    // Bounded wait until it answers.
    proto::PingRequest req;
    proto::PingReply reply;
    auto ctx = Ctx(20000);
    ctx->set_wait_for_ready(true);
    grpc::Status s = meta_->Ping(ctx.get(), req, &reply);
    ASSERT_TRUE(s.ok()) << "rangefs-meta did not come up: " << s.error_message()
                        << "\n"
                        << Tail(dir_.Sub("meta.log"));
  }

  // Creates `name` in the root; returns its inode (0 on failure).
  uint64_t Create(const std::string& name, grpc::Status* st = nullptr) {
    proto::CreateRequest req;
    req.set_session_id(kSession);
    req.set_parent(kRoot);
    req.set_name(name);
    req.set_mode(S_IFREG | 0644);
    req.set_exclusive(true);
    proto::EntryReply reply;
    grpc::Status s = meta_->Create(Ctx().get(), req, &reply);
    if (st) *st = s;
    if (!s.ok() || reply.error().code() != proto::OK) return 0;
    return reply.attr().ino();
  }

  // Writes `data` (whole blocks) at offset 0 the way a client does.
  bool WriteFile(uint64_t ino, const std::string& data) {
    proto::MapRequest mreq;
    mreq.set_session_id(kSession);
    mreq.set_ino(ino);
    mreq.set_offset(0);
    mreq.set_length(data.size());
    proto::MapReply map;
    if (!meta_->MapWrite(Ctx().get(), mreq, &map).ok() ||
        map.error().code() != proto::OK) {
      return false;
    }
    for (const proto::Mapping& m : map.mappings()) {
      proto::WriteRequest w;
      w.set_session_id(kSession);
      w.set_offset(m.physical());
      w.set_data(data.substr(m.offset(), m.length()));
      proto::WriteReply wr;
      if (!data_[m.device()]->Write(Ctx().get(), w, &wr).ok() ||
          wr.error().code() != proto::OK) {
        return false;
      }
    }
    proto::CommitWriteRequest c;
    c.set_session_id(kSession);
    c.set_ino(ino);
    proto::Range* r = c.add_ranges();
    r->set_start(0);
    r->set_end(data.size());
    c.set_cookie(map.cookie());
    c.set_new_size(data.size());
    proto::CommitWriteReply cr;
    return meta_->CommitWrite(Ctx().get(), c, &cr).ok() &&
           cr.error().code() == proto::OK;
  }

  bool Rename(const std::string& from, const std::string& to) {
    proto::RenameRequest req;
    req.set_session_id(kSession);
    req.set_old_parent(kRoot);
    req.set_old_name(from);
    req.set_new_parent(kRoot);
    req.set_new_name(to);
    proto::RenameReply reply;
    return meta_->Rename(Ctx().get(), req, &reply).ok() &&
           reply.error().code() == proto::OK;
  }

  // Reads a file back through MapRead and the data servers.
  std::string ReadFile(const std::string& name, bool* found) {
    proto::LookupRequest l;
    l.set_parent(kRoot);
    l.set_name(name);
    proto::EntryReply e;
    *found =
        meta_->Lookup(Ctx().get(), l, &e).ok() && e.error().code() == proto::OK;
    if (!*found || e.attr().size() == 0) return "";
    proto::MapRequest mreq;
    mreq.set_session_id(kSession);
    mreq.set_ino(e.attr().ino());
    mreq.set_offset(0);
    mreq.set_length(e.attr().size());
    proto::MapReply map;
    EXPECT_TRUE(meta_->MapRead(Ctx().get(), mreq, &map).ok());
    std::string out(e.attr().size(), '\0');
    for (const proto::Mapping& m : map.mappings()) {
      if (m.state() != proto::WRITTEN) continue;
      proto::ReadRequest r;
      r.set_session_id(kSession);
      r.set_offset(m.physical());
      r.set_length(m.length());
      proto::ReadReply rr;
      EXPECT_TRUE(data_[m.device()]->Read(Ctx().get(), r, &rr).ok());
      out.replace(m.offset(), m.length(), rr.data());
    }
    return out;
  }

  std::vector<std::string> Fsck() {
    proto::FsckRequest req;
    proto::FsckReply reply;
    grpc::Status s = meta_->Fsck(Ctx(30000).get(), req, &reply);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return {reply.problems().begin(), reply.problems().end()};
  }

  testing::TempDir dir_;
  int data_port_[2] = {0, 0};
  int meta_port_ = 0;
  Subprocess data_proc_[2];
  Subprocess meta_proc_;
  std::unique_ptr<proto::MetaService::Stub> meta_;
  std::unique_ptr<proto::DataService::Stub> data_[2];
};

std::string Pattern(int i, size_t size) {
  std::string s(size, '\0');
  for (size_t k = 0; k < size; ++k)
    s[k] = static_cast<char>('a' + (i + k / 4096) % 26);
  return s;
}

TEST_F(MetaClusterTest, WriteAndReadBackOverTheWire) {
  uint64_t ino = Create("f");
  ASSERT_NE(ino, 0u) << Tail(dir_.Sub("meta.log"));
  ASSERT_TRUE(WriteFile(ino, Pattern(1, 3 * 4096)));
  bool found = false;
  EXPECT_EQ(ReadFile("f", &found), Pattern(1, 3 * 4096));
  EXPECT_TRUE(Fsck().empty());
}

TEST_F(MetaClusterTest, BadInputGetsAClearErrorAndChangesNothing) {
  proto::CreateRequest req;
  req.set_session_id(kSession);
  req.set_parent(kRoot);
  req.set_name("a/b");
  req.set_mode(S_IFREG | 0644);
  proto::EntryReply reply;
  ASSERT_TRUE(meta_->Create(Ctx().get(), req, &reply).ok());
  EXPECT_EQ(reply.error().code(), proto::INVALID_ARGUMENT);
  EXPECT_FALSE(reply.error().message().empty());

  proto::MapRequest m;
  m.set_session_id(kSession);
  m.set_ino(kRoot);
  m.set_offset(UINT64_MAX - 5);
  m.set_length(100);
  proto::MapReply mr;
  ASSERT_TRUE(meta_->MapWrite(Ctx().get(), m, &mr).ok());
  EXPECT_EQ(mr.error().code(), proto::INVALID_ARGUMENT);

  // Further ranges: only for MapWrite, in order, not inverted.
  const uint64_t f = Create("more");
  ASSERT_NE(f, 0u);
  proto::MapRequest more;
  more.set_session_id(kSession);
  more.set_ino(f);
  more.set_offset(8192);
  more.set_length(4096);
  proto::Range* extra = more.add_more();
  extra->set_start(0);
  extra->set_end(4096);
  for (bool write : {true, false}) {
    proto::MapReply mm;
    ASSERT_TRUE((write ? meta_->MapWrite(Ctx().get(), more, &mm)
                       : meta_->MapRead(Ctx().get(), more, &mm))
                    .ok());
    EXPECT_EQ(mm.error().code(), proto::INVALID_ARGUMENT) << write;
  }
  extra->set_start(20480);
  extra->set_end(16384);
  proto::MapReply inverted;
  ASSERT_TRUE(meta_->MapWrite(Ctx().get(), more, &inverted).ok());
  EXPECT_EQ(inverted.error().code(), proto::INVALID_ARGUMENT);
  proto::GetAttrRequest ga;
  ga.set_ino(f);
  proto::AttrReply gr;
  ASSERT_TRUE(meta_->GetAttr(Ctx().get(), ga, &gr).ok());
  EXPECT_EQ(gr.attr().blocks(), 0u);  // Nothing was allocated.

  proto::ReadRequest r;
  r.set_offset(kDeviceSize - 1);
  r.set_length(2);
  proto::ReadReply rr;
  ASSERT_TRUE(data_[0]->Read(Ctx().get(), r, &rr).ok());
  EXPECT_EQ(rr.error().code(), proto::INVALID_ARGUMENT);
  EXPECT_TRUE(Fsck().empty());
}

// Creates sent ahead travel in batches: applied in order as if sent one
// by one (a refused one touches nothing else); a batch too large or empty
// is refused whole and changes nothing.
TEST_F(MetaClusterTest, CreateBatchesApplyInOrderAndBadOnesChangeNothing) {
  auto create = [](const std::string& name) {
    proto::CreateRequest c;
    c.set_session_id(kSession);
    c.set_parent(kRoot);
    c.set_name(name);
    c.set_mode(S_IFREG | 0644);
    c.set_exclusive(true);
    return c;
  };
  proto::CreateBatchRequest req;
  for (const char* name : {"b1", "b2", "b1", "bad/name", "b3"}) {
    *req.add_creates() = create(name);
  }
  proto::CreateBatchReply rep;
  ASSERT_TRUE(meta_->CreateBatch(Ctx().get(), req, &rep).ok());
  ASSERT_EQ(rep.error().code(), proto::OK) << rep.error().message();
  ASSERT_EQ(rep.replies_size(), 5);
  EXPECT_EQ(rep.replies(0).error().code(), proto::OK);
  EXPECT_EQ(rep.replies(1).error().code(), proto::OK);
  EXPECT_EQ(rep.replies(2).error().code(), proto::EXISTS);  // After b1.
  EXPECT_EQ(rep.replies(3).error().code(), proto::INVALID_ARGUMENT);
  EXPECT_EQ(rep.replies(4).error().code(), proto::OK);
  EXPECT_NE(rep.replies(0).attr().ino(), rep.replies(1).attr().ino());
  EXPECT_EQ(rep.replies(4).parent().ino(), kRoot);

  for (int n : {0, 257}) {
    proto::CreateBatchRequest bad;
    for (int i = 0; i < n; ++i) {
      *bad.add_creates() = create("big" + std::to_string(i));
    }
    proto::CreateBatchReply bad_rep;
    ASSERT_TRUE(meta_->CreateBatch(Ctx().get(), bad, &bad_rep).ok());
    EXPECT_EQ(bad_rep.error().code(), proto::INVALID_ARGUMENT) << n;
    EXPECT_FALSE(bad_rep.error().message().empty());
    EXPECT_EQ(bad_rep.replies_size(), 0);
  }
  proto::LookupRequest look;
  look.set_parent(kRoot);
  look.set_name("big0");
  proto::EntryReply found;
  ASSERT_TRUE(meta_->Lookup(Ctx().get(), look, &found).ok());
  EXPECT_EQ(found.error().code(), proto::NOT_FOUND);
  EXPECT_TRUE(Fsck().empty());
}

TEST_F(MetaClusterTest, FencedSessionIsRefusedByDataAndMetaServers) {
  uint64_t ino = Create("f");
  ASSERT_NE(ino, 0u);
  proto::FenceRequest f;
  f.set_session_id(kSession);
  proto::FenceReply fr;
  ASSERT_TRUE(data_[0]->Fence(Ctx().get(), f, &fr).ok());
  ASSERT_TRUE(meta_->Fence(Ctx().get(), f, &fr).ok());
  proto::WriteRequest w;
  w.set_session_id(kSession);
  w.set_offset(0);
  w.set_data("late");
  proto::WriteReply wr;
  ASSERT_TRUE(data_[0]->Write(Ctx().get(), w, &wr).ok());
  EXPECT_EQ(wr.error().code(), proto::FENCED);
  grpc::Status st;
  EXPECT_EQ(Create("g", &st), 0u);
  // The fence survives a restart of the data server.
  data_proc_[0].Stop(SIGTERM);
  StartData(0);
  auto ctx = Ctx(20000);
  ctx->set_wait_for_ready(true);
  ASSERT_TRUE(data_[0]->Write(ctx.get(), w, &wr).ok());
  EXPECT_EQ(wr.error().code(), proto::FENCED);
}

// A fence recorded only at the metadata server (lockd could not reach the
// data server) reaches the data server through its fence sync.
TEST_F(MetaClusterTest, DataServersLearnFencesFromTheMetadataServer) {
  proto::FenceRequest f;
  f.set_session_id(kSession + 7);
  proto::FenceReply fr;
  ASSERT_TRUE(meta_->Fence(Ctx().get(), f, &fr).ok());
  EXPECT_EQ(fr.fence_lease_ms(), kFenceLeaseMs);
  proto::WriteRequest w;
  w.set_session_id(kSession + 7);
  w.set_offset(0);
  w.set_data("late");
  proto::WriteReply wr;
  for (int d = 0; d < 2; ++d) {
    bool refused = false;
    for (int i = 0; i < 200 && !refused; ++i) {
      ASSERT_TRUE(data_[d]->Write(Ctx().get(), w, &wr).ok());
      refused = wr.error().code() == proto::FENCED;
      if (!refused) std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    EXPECT_TRUE(refused) << "data server " << d << " never learnt the fence";
  }
}

// A data server that cannot reach the metadata server for its fence lease
// takes no writes (it might be missing a fence), and takes them again once
// it has caught up.
TEST_F(MetaClusterTest,
       DataServerOutOfTouchWithTheMetadataServerTakesNoWrites) {
  proto::WriteRequest w;
  w.set_session_id(kSession);
  w.set_offset(0);
  w.set_data(std::string(4096, 'w'));
  proto::WriteReply wr;
  ASSERT_TRUE(data_[0]->Write(Ctx().get(), w, &wr).ok());
  ASSERT_EQ(wr.error().code(), proto::OK);
  meta_proc_.Signal(SIGSTOP);
  const bool ran_out = WaitForLease(0, false);
  ASSERT_TRUE(data_[0]->Write(Ctx().get(), w, &wr).ok());
  meta_proc_.Signal(SIGCONT);
  ASSERT_TRUE(ran_out);
  EXPECT_EQ(wr.error().code(), proto::BUSY) << wr.error().message();
  ASSERT_TRUE(WaitForLease(0, true));
  ASSERT_TRUE(data_[0]->Write(Ctx().get(), w, &wr).ok());
  EXPECT_EQ(wr.error().code(), proto::OK);
}

TEST_F(MetaClusterTest, KillNineOfMetaLosesNothingAcknowledged) {
  // name -> content, recorded only after the reply arrived. The operation
  // in flight when the server dies may or may not have been applied, but
  // never half: `inflight` names what it would change, and `outcomes` the
  // acceptable (name -> content or absent) results for those names.
  std::map<std::string, std::string> acked;
  std::vector<std::map<std::string, std::optional<std::string>>> outcomes;
  std::atomic<int> acked_ops{0};
  std::atomic<bool> stop{false};
  std::thread writer([&] {
    for (int i = 0; i < 2000 && !stop; ++i) {
      std::string name = "f" + std::to_string(i);
      std::string renamed = "g" + std::to_string(i);
      std::string data = Pattern(i, 2 * 4096);
      outcomes = {{{name, std::nullopt}}, {{name, ""}}};
      uint64_t ino = Create(name);
      if (ino == 0) return;
      acked[name] = "";
      ++acked_ops;
      outcomes = {{{name, ""}}, {{name, data}}};
      if (!WriteFile(ino, data)) return;
      acked[name] = data;
      ++acked_ops;
      if (i % 3 == 0) {
        outcomes = {{{name, data}, {renamed, std::nullopt}},
                    {{name, std::nullopt}, {renamed, data}}};
        if (!Rename(name, renamed)) return;
        acked.erase(name);
        acked[renamed] = data;
        ++acked_ops;
      }
    }
    outcomes.clear();
  });
  // Let a stream of operations run, then kill -9 in the middle of it.
  for (int i = 0; i < 400 && acked_ops < 60; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(25));
  }
  ASSERT_GE(acked_ops.load(), 60) << Tail(dir_.Sub("meta.log"));
  meta_proc_.Stop(SIGKILL);
  stop = true;
  writer.join();
  StartMeta();
  auto state_of = [&](const std::string& name) {
    bool found = false;
    std::string got = ReadFile(name, &found);
    return found ? std::optional<std::string>(got) : std::nullopt;
  };
  std::set<std::string> in_flight_names;
  for (const auto& o : outcomes) {
    for (const auto& [name, v] : o) in_flight_names.insert(name);
  }
  for (const auto& [name, content] : acked) {
    if (in_flight_names.count(name)) continue;
    std::optional<std::string> got = state_of(name);
    ASSERT_TRUE(got.has_value()) << name << " was acknowledged but is gone";
    EXPECT_EQ(*got, content) << name;
  }
  if (!outcomes.empty()) {
    bool matched = false;
    for (const auto& o : outcomes) {
      bool all = true;
      for (const auto& [name, v] : o) all &= state_of(name) == v;
      matched |= all;
    }
    EXPECT_TRUE(matched) << "the operation in flight was half-applied";
  }
  std::vector<std::string> problems = Fsck();
  for (const std::string& p : problems) ADD_FAILURE() << p;
  // Service continues, and inode numbers are not reused.
  uint64_t ino = Create("after-restart");
  ASSERT_NE(ino, 0u);
  EXPECT_GT(ino, acked.size());
}

}  // namespace
}  // namespace rangefs
