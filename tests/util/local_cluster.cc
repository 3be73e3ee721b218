#include "tests/util/local_cluster.h"

#include <grpcpp/grpcpp.h>
#include <signal.h>

#include <chrono>
#include <filesystem>
#include <thread>

#include "absl/strings/str_cat.h"
#include "proto/data.grpc.pb.h"
#include "proto/lock.grpc.pb.h"
#include "proto/meta.grpc.pb.h"
#include "rpc/channel.h"
#include "tests/util/netlab.h"

namespace rangefs::testing {
namespace {

// Until the server answers a ping (20 s at most), or its process is gone
// (it could not bind: then whoever holds the port must not be taken for
// it).
template <typename Stub>
bool WaitReady(Stub* stub, Subprocess* proc) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (std::chrono::steady_clock::now() < deadline) {
    if (!proc->running()) return false;
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() +
                     std::chrono::milliseconds(500));
    ctx.set_wait_for_ready(true);
    proto::PingRequest req;
    proto::PingReply reply;
    if (stub->Ping(&ctx, req, &reply).ok()) return proc->running();
  }
  return false;
}

}  // namespace

LocalCluster::LocalCluster(const LocalClusterOptions& options)
    : options_(options) {
  for (int i = 0; i < options_.data_servers; ++i) {
    data_.push_back(std::make_unique<Subprocess>());
  }
  for (int i = 0; i < options_.lockd_shards; ++i) {
    lockd_.push_back(std::make_unique<Subprocess>());
  }
  if (NetLab* lab = options_.lab) {
    std::vector<std::string> hosts = {"meta"};
    for (int i = 0; i < options_.data_servers; ++i) {
      hosts.push_back("data" + std::to_string(i));
    }
    for (int i = 0; i < options_.lockd_shards; ++i) {
      hosts.push_back("lockd" + std::to_string(i));
    }
    for (const std::string& h : hosts) {
      if (lab->AddHost(h, &lab_error_).empty()) break;
    }
  }
  PickPorts();
}

std::string LocalCluster::Address(const std::string& name, int port) const {
  const std::string host =
      options_.lab != nullptr ? options_.lab->Address(name) : "127.0.0.1";
  return host + ":" + std::to_string(port);
}

void LocalCluster::Place(Subprocess* proc, const std::string& name) const {
  if (options_.lab != nullptr) proc->set_netns(options_.lab->NetnsPath(name));
}

void LocalCluster::PickPorts() {
  data_ports_.clear();
  bulk_ports_.clear();
  lockd_ports_.clear();
  // In a lab every server has an address of its own: fixed ports.
  const bool lab = options_.lab != nullptr;
  for (int i = 0; i < options_.data_servers; ++i) {
    data_ports_.push_back(lab ? 7000 : FreePort());
    bulk_ports_.push_back(lab ? 7100 : FreePort());
  }
  for (int i = 0; i < options_.lockd_shards; ++i) {
    lockd_ports_.push_back(lab ? 7201 : FreePort());
  }
  meta_port_ = lab ? 7001 : FreePort();
  config_ = "fs_id test\n";
  for (int i = 0; i < options_.lockd_shards; ++i) {
    config_ += "lockd " + lockd_address(i) + "\n";
  }
  config_ += "meta " + meta_address() + "\n";
  for (int i = 0; i < options_.data_servers; ++i) {
    config_ += "data " + std::to_string(i) + " " + data_address(i) + " " +
               std::to_string(options_.device_size) +
               " bulk=" + bulk_address(i) + "\n";
  }
}

LocalCluster::~LocalCluster() = default;

std::string LocalCluster::data_address(int i) const {
  return Address("data" + std::to_string(i), data_ports_[i]);
}
std::string LocalCluster::bulk_address(int i) const {
  return Address("data" + std::to_string(i), bulk_ports_[i]);
}
std::string LocalCluster::lockd_address(int i) const {
  return Address("lockd" + std::to_string(i), lockd_ports_[i]);
}
std::string LocalCluster::meta_address() const {
  return Address("meta", meta_port_);
}

std::string LocalCluster::LogTail(const std::string& name) const {
  return "--- " + name + ".log\n" + Tail(dir_.Sub(name + ".log"));
}

void LocalCluster::StartLockd(int shard) {
  std::string name = "lockd" + std::to_string(shard);
  Place(lockd_[shard].get(), name);
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
  if (WaitReady(stub.get(), lockd_[shard].get())) return true;
  *why = LogTail("lockd" + std::to_string(shard));
  return false;
}

bool LocalCluster::Start(std::string* why) {
  if (!lab_error_.empty()) {
    *why = "network lab: " + lab_error_;
    return false;
  }
  for (int attempt = 1;; ++attempt) {
    if (StartOnce(why)) return true;
    if (attempt == 5 || why->find("cannot listen") == std::string::npos) {
      return false;
    }
    // Another process took a port between FreePort() and the bind: start
    // over on new ports, with fresh state (the metadata server formatted
    // its devices with the old addresses).
    StopAll();
    std::error_code ec;
    for (const auto& entry :
         std::filesystem::directory_iterator(dir_.path(), ec)) {
      if (entry.is_directory()) std::filesystem::remove_all(entry.path(), ec);
    }
    PickPorts();
  }
}

void LocalCluster::StopAll() {
  for (auto& d : data_) {
    if (d->running()) d->Stop(SIGKILL);
  }
  for (auto& l : lockd_) {
    if (l->running()) l->Stop(SIGKILL);
  }
  if (meta_.running()) meta_.Stop(SIGKILL);
}

bool LocalCluster::StartOnce(std::string* why) {
  std::string devices;
  for (int i = 0; i < options_.data_servers; ++i) {
    StartData(i);
    devices += (i ? "," : "") + std::to_string(i) + "=" + data_address(i) +
               ":" + std::to_string(options_.device_size);
  }
  devices_ = devices;
  StartMeta();
  for (int i = 0; i < options_.lockd_shards; ++i) StartLockd(i);
  for (int i = 0; i < options_.data_servers; ++i) {
    auto stub = proto::DataService::NewStub(rpc::MakeChannel(data_address(i)));
    if (!WaitReady(stub.get(), data_[i].get())) {
      *why = LogTail("data" + std::to_string(i));
      return false;
    }
  }
  if (!WaitMeta(why)) return false;
  for (int i = 0; i < options_.lockd_shards; ++i) {
    if (!WaitLockd(i, why)) return false;
  }
  for (int i = 0; i < options_.data_servers; ++i) {
    if (!WaitDataWrites(i, why)) return false;
  }
  return true;
}

void LocalCluster::StartMeta(const std::string& faults) {
  std::vector<std::string> meta_args = {BinDir() + "/server/rangefs-meta",
                                        "--listen",
                                        meta_address(),
                                        "--dir",
                                        dir_.Sub("meta"),
                                        "--fs_id",
                                        "test",
                                        "--devices",
                                        devices_};
  if (options_.fence_lease_ms != 0) {
    meta_args.push_back("--fence_lease_ms");
    meta_args.push_back(std::to_string(options_.fence_lease_ms));
  }
  std::vector<std::string> env;
  if (!faults.empty()) {
    const char* base = getenv("RANGEFS_FAULTS");
    env.push_back(absl::StrCat(
        "RANGEFS_FAULTS=", base != nullptr && *base != 0 ? base : "",
        base != nullptr && *base != 0 ? "," : "", faults));
  }
  Place(&meta_, "meta");
  meta_.Start(meta_args, dir_.Sub("meta.log"), env);
}

void LocalCluster::StopMeta(int sig) { meta_.Stop(sig); }

bool LocalCluster::WaitMeta(std::string* why) {
  auto meta = proto::MetaService::NewStub(rpc::MakeChannel(meta_address()));
  if (WaitReady(meta.get(), &meta_)) return true;
  *why = LogTail("meta");
  return false;
}

void LocalCluster::StartData(int i) {
  std::string name = "data" + std::to_string(i);
  Place(data_[i].get(), name);
  data_[i]->Start(
      {BinDir() + "/server/rangefs-data", "--listen", data_address(i),
       "--bulk_listen", bulk_address(i), "--dir", dir_.Sub(name), "--size",
       std::to_string(options_.device_size), "--meta", meta_address()},
      dir_.Sub(name + ".log"));
}

void LocalCluster::StopData(int i, int sig) { data_[i]->Stop(sig); }

void LocalCluster::SignalData(int i, int sig) { data_[i]->Signal(sig); }

bool LocalCluster::WaitDataWrites(int i, std::string* why) {
  auto stub = proto::DataService::NewStub(rpc::MakeChannel(data_address(i)));
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (std::chrono::steady_clock::now() < deadline) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() +
                     std::chrono::milliseconds(500));
    ctx.set_wait_for_ready(true);
    proto::DataStatsRequest req;
    proto::DataStatsReply reply;
    if (stub->Stats(&ctx, req, &reply).ok() && reply.fence_lease_held()) {
      return true;
    }
    if (!data_[i]->running()) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  *why = "data server " + std::to_string(i) +
         " does not take writes: " + LogTail("data" + std::to_string(i));
  return false;
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
