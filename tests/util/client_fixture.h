// A fixture for tests of librangefs nodes against a real local cluster:
// several Client instances in one process, each its own node.
#ifndef RANGEFS_TESTS_UTIL_CLIENT_FIXTURE_H_
#define RANGEFS_TESTS_UTIL_CLIENT_FIXTURE_H_

#include <grpcpp/grpcpp.h>

#include <fcntl.h>

#include <memory>
#include <string>
#include <vector>

#include "client/rangefs.h"
#include "common/fault_injection.h"
#include "common/status.h"
#include "gtest/gtest.h"
#include "proto/lock.grpc.pb.h"
#include "proto/meta.grpc.pb.h"
#include "rpc/channel.h"
#include "tests/util/local_cluster.h"

namespace rangefs::client {

using testing::LocalCluster;
using testing::LocalClusterOptions;

inline constexpr uint64_t kPage = 4096;

// Compares byte strings, reporting the first difference instead of both.
inline ::testing::AssertionResult SameBytes(const std::string& got,
                                            const std::string& want) {
  if (got == want) return ::testing::AssertionSuccess();
  size_t i = 0;
  while (i < got.size() && i < want.size() && got[i] == want[i]) ++i;
  auto at = [i](const std::string& s) {
    return i < s.size() ? std::to_string(static_cast<unsigned char>(s[i]))
                        : std::string("end");
  };
  return ::testing::AssertionFailure()
         << "sizes " << got.size() << " vs " << want.size()
         << ", first difference at byte " << i << ": got " << at(got)
         << ", want " << at(want);
}

class ClientClusterFixture : public ::testing::Test {
 protected:
  void StartCluster(const LocalClusterOptions& o = {}) {
    cluster_ = std::make_unique<LocalCluster>(o);
    std::string why;
    ASSERT_TRUE(cluster_->Start(&why)) << why;
    absl::StatusOr<ClusterConfig> c = ParseClusterConfig(cluster_->config());
    ASSERT_TRUE(c.ok()) << c.status();
    config_ = *c;
  }
  void SetUp() override { FaultRegistry::Global().ClearAll(); }
  void TearDown() override { FaultRegistry::Global().ClearAll(); }

  std::unique_ptr<Client> Node(const std::string& name,
                               ClientOptions o = ClientOptions()) {
    o.node_name = name;
    o.min_hold_ms = 0;
    absl::StatusOr<std::unique_ptr<Client>> c = Client::Connect(config_, o);
    EXPECT_TRUE(c.ok()) << c.status();
    return c.ok() ? std::move(*c) : nullptr;
  }

  static uint64_t MustOpen(Client& c, const std::string& path, int flags) {
    absl::StatusOr<uint64_t> fh = c.OpenPath(path, flags, 0644);
    EXPECT_TRUE(fh.ok()) << path << ": " << fh.status();
    return fh.ok() ? *fh : 0;
  }
  static void MustWrite(Client& c, uint64_t fh, const std::string& data,
                        uint64_t off) {
    absl::StatusOr<size_t> n = c.Write(fh, data.data(), data.size(), off);
    ASSERT_TRUE(n.ok()) << n.status();
    ASSERT_EQ(*n, data.size());
  }
  static std::string MustRead(Client& c, uint64_t fh, uint64_t off,
                              size_t len) {
    std::string buf(len, '\0');
    absl::StatusOr<size_t> n = c.Read(fh, buf.data(), len, off);
    EXPECT_TRUE(n.ok()) << n.status();
    buf.resize(n.ok() ? *n : 0);
    return buf;
  }
  // Aligned buffers for O_DIRECT.
  static std::string Fill(char c, size_t n) { return std::string(n, c); }
  // `n` MiB, the k-th of them all 'a' + k.
  static std::string MiBRuns(int n) {
    std::string data;
    for (int i = 0; i < n; ++i)
      data += Fill(static_cast<char>('a' + i), 1 << 20);
    return data;
  }
  // `path` made on `c` holding `data`, fsync'd; its handle.
  static uint64_t WriteSynced(Client& c, const std::string& path,
                              const std::string& data) {
    uint64_t fh = MustOpen(c, path, O_RDWR | O_CREAT);
    MustWrite(c, fh, data, 0);
    EXPECT_TRUE(c.Fsync(fh, false).ok());
    return fh;
  }

  proto::EvictReply Evict(uint64_t session) {
    auto stub = proto::LockService::NewStub(
        rpc::MakeChannel(cluster_->lockd_address(0)));
    grpc::ClientContext ctx;
    proto::EvictRequest req;
    req.set_session_id(session);
    req.set_reason("test");
    proto::EvictReply rep;
    EXPECT_TRUE(stub->Evict(&ctx, req, &rep).ok());
    return rep;
  }
  // The size the metadata server itself has (asking another node would
  // call the writer back and make it write back).
  uint64_t ServerSize(uint64_t ino) {
    auto stub =
        proto::MetaService::NewStub(rpc::MakeChannel(cluster_->meta_address()));
    grpc::ClientContext ctx;
    proto::GetAttrRequest req;
    req.set_ino(ino);
    proto::AttrReply rep;
    EXPECT_TRUE(stub->GetAttr(&ctx, req, &rep).ok());
    return rep.attr().size();
  }
  std::vector<std::string> Fsck() { return cluster_->Fsck(); }

  std::unique_ptr<LocalCluster> cluster_;
  ClusterConfig config_;
};

}  // namespace rangefs::client

#endif  // RANGEFS_TESTS_UTIL_CLIENT_FIXTURE_H_
