// The gRPC adapter of rangefs-lockd: each node's Session stream is a
// ServerBidiReactor that is also the session's SessionSink (an outbox with
// one write in flight); admin calls map to LockServer. GrpcFencer fences
// sessions at the metadata and data servers of the cluster configuration.
// The only lockd files that include generated gRPC code.
#ifndef RANGEFS_LOCKMGR_LOCK_SERVICE_H_
#define RANGEFS_LOCKMGR_LOCK_SERVICE_H_

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "common/cluster_config.h"
#include "lockmgr/lock_server.h"
#include "proto/data.grpc.pb.h"
#include "proto/lock.grpc.pb.h"
#include "proto/meta.grpc.pb.h"

namespace rangefs::lockmgr {

class LockServiceImpl final : public proto::LockService::CallbackService {
 public:
  // `server` must outlive the service.
  LockServiceImpl(LockServer* server, std::string name)
      : server_(server), name_(std::move(name)) {}

  grpc::ServerBidiReactor<proto::NodeMessage, proto::ServerMessage>* Session(
      grpc::CallbackServerContext* ctx) override;
  grpc::ServerUnaryReactor* Dump(grpc::CallbackServerContext* ctx,
                                 const proto::DumpRequest* req,
                                 proto::DumpReply* reply) override;
  grpc::ServerUnaryReactor* Evict(grpc::CallbackServerContext* ctx,
                                  const proto::EvictRequest* req,
                                  proto::EvictReply* reply) override;
  grpc::ServerUnaryReactor* Ping(grpc::CallbackServerContext* ctx,
                                 const proto::PingRequest* req,
                                 proto::PingReply* reply) override;
  grpc::ServerUnaryReactor* SetFault(grpc::CallbackServerContext* ctx,
                                     const proto::SetFaultRequest* req,
                                     proto::SetFaultReply* reply) override;

 private:
  LockServer* const server_;
  const std::string name_;
};

// Fences at the metadata server and every data server, retrying each until
// it acknowledges (or Shutdown()).
class GrpcFencer : public Fencer {
 public:
  explicit GrpcFencer(const ClusterConfig& config);
  // The metadata server first (until it answers), then every data server;
  // one that does not answer is given up on once a fence lease and a half
  // has passed since the metadata server recorded the fence
  // (docs/lock-manager.md, "Fencing a server lockd cannot reach").
  absl::Status Fence(uint64_t session, const std::string& reason) override;
  void Shutdown() { stopping_ = true; }
  // Fences that went on without some data server's answer.
  uint64_t unreached_fences() const { return unreached_fences_; }

 private:
  std::unique_ptr<proto::MetaService::Stub> meta_;
  std::vector<std::pair<std::string, std::unique_ptr<proto::DataService::Stub>>>
      data_;
  std::string meta_address_;
  std::atomic<bool> stopping_{false};
  std::atomic<uint64_t> unreached_fences_{0};
};

}  // namespace rangefs::lockmgr

#endif  // RANGEFS_LOCKMGR_LOCK_SERVICE_H_
