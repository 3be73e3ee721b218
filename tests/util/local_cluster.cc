#include "tests/util/local_cluster.h"

#include <grpcpp/grpcpp.h>
#include <signal.h>

#include <chrono>

#include "proto/data.grpc.pb.h"
#include "proto/lock.grpc.pb.h"
#include "proto/meta.grpc.pb.h"
#include "rpc/channel.h"

namespace rangefs::testing {
namespace {

template <typename Stub>
bool WaitReady(Stub* stub) {
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
  ctx.set_wait_for_ready(true);
  proto::PingRequest req;
  proto::PingReply reply;
  return stub->Ping(&ctx, req, &reply).ok();
}

}  // namespace

LocalCluster::LocalCluster(const LocalClusterOptions& options)
    : options_(options) {
  for (int i = 0; i < options_.data_servers; ++i) {
    data_ports_.push_back(FreePort());
    data_.push_back(std::make_unique<Subprocess>());
  }
  for (int i = 0; i < options_.lockd_shards; ++i) {
    lockd_ports_.push_back(FreePort());
    lockd_.push_back(std::make_unique<Subprocess>());
  }
  meta_port_ = FreePort();
  config_ = "fs_id test\n";
  for (int i = 0; i < options_.lockd_shards; ++i) {
    config_ += "lockd " + lockd_address(i) + "\n";
  }
  config_ += "meta " + meta_address() + "\n";
  for (int i = 0; i < options_.data_servers; ++i) {
    config_ += "data " + std::to_string(i) + " " + data_address(i) + " " +
               std::to_string(options_.device_size) + "\n";
  }
}

LocalCluster::~LocalCluster() = default;

std::string LocalCluster::data_address(int i) const {
  return "127.0.0.1:" + std::to_string(data_ports_[i]);
}
std::string LocalCluster::lockd_address(int i) const {
  return "127.0.0.1:" + std::to_string(lockd_ports_[i]);
}
std::string LocalCluster::meta_address() const {
  return "127.0.0.1:" + std::to_string(meta_port_);
}

std::string LocalCluster::LogTail(const std::string& name) const {
  return "--- " + name + ".log\n" + Tail(dir_.Sub(name + ".log"));
}

void LocalCluster::StartLockd(int shard) {
  std::string name = "lockd" + std::to_string(shard);
  lockd_[shard]->Start(
      {BinDir() + "/lockmgr/rangefs-lockd", "--cluster", config_, "--shard",
       std::to_string(shard), "--dir", dir_.Sub(name), "--callback_timeout_ms",
       std::to_string(options_.callback_timeout_ms), "--grace_ms",
       std::to_string(options_.grace_ms)},
      dir_.Sub(name + ".log"));
}

void LocalCluster::StopLockd(int shard, int sig) { lockd_[shard]->Stop(sig); }

bool LocalCluster::WaitLockd(int shard, std::string* why) {
  auto stub =
      proto::LockService::NewStub(rpc::MakeChannel(lockd_address(shard)));
  if (WaitReady(stub.get())) return true;
  *why = LogTail("lockd" + std::to_string(shard));
  return false;
}

bool LocalCluster::Start(std::string* why) {
  std::string devices;
  for (int i = 0; i < options_.data_servers; ++i) {
    std::string name = "data" + std::to_string(i);
    data_[i]->Start({BinDir() + "/server/rangefs-data", "--listen",
                     data_address(i), "--dir", dir_.Sub(name), "--size",
                     std::to_string(options_.device_size)},
                    dir_.Sub(name + ".log"));
    devices += (i ? "," : "") + std::to_string(i) + "=" + data_address(i) +
               ":" + std::to_string(options_.device_size);
  }
  meta_.Start(
      {BinDir() + "/server/rangefs-meta", "--listen", meta_address(), "--dir",
       dir_.Sub("meta"), "--fs_id", "test", "--devices", devices},
      dir_.Sub("meta.log"));
  for (int i = 0; i < options_.lockd_shards; ++i) StartLockd(i);
  for (int i = 0; i < options_.data_servers; ++i) {
    auto stub = proto::DataService::NewStub(rpc::MakeChannel(data_address(i)));
    if (!WaitReady(stub.get())) {
      *why = LogTail("data" + std::to_string(i));
      return false;
    }
  }
  auto meta = proto::MetaService::NewStub(rpc::MakeChannel(meta_address()));
  if (!WaitReady(meta.get())) {
    *why = LogTail("meta");
    return false;
  }
  for (int i = 0; i < options_.lockd_shards; ++i) {
    if (!WaitLockd(i, why)) return false;
  }
  return true;
}

std::vector<std::string> LocalCluster::Fsck() const {
  auto stub = proto::MetaService::NewStub(rpc::MakeChannel(meta_address()));
  grpc::ClientContext ctx;
  proto::FsckRequest req;
  proto::FsckReply rep;
  if (!stub->Fsck(&ctx, req, &rep).ok()) return {"fsck RPC failed"};
  return {rep.problems().begin(), rep.problems().end()};
}

}  // namespace rangefs::testing
