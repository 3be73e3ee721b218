// The gRPC adapter of rangefs-data: translates DataService calls to
// BlockStore calls on the server's thread pool. The only file of the data
// server that includes generated code.
#ifndef RANGEFS_SERVER_DATA_DATA_SERVICE_H_
#define RANGEFS_SERVER_DATA_DATA_SERVICE_H_

#include <string>

#include "common/thread_pool.h"
#include "proto/data.grpc.pb.h"
#include "server/data/block_store.h"

namespace rangefs::data {

class DataServiceImpl final : public proto::DataService::CallbackService {
 public:
  // `store` and `pool` must outlive the service.
  DataServiceImpl(BlockStore* store, ThreadPool* pool, std::string name)
      : store_(store), pool_(pool), name_(std::move(name)) {}

  grpc::ServerUnaryReactor* Read(grpc::CallbackServerContext* ctx,
                                 const proto::ReadRequest* req,
                                 proto::ReadReply* reply) override;
  grpc::ServerUnaryReactor* Write(grpc::CallbackServerContext* ctx,
                                  const proto::WriteRequest* req,
                                  proto::WriteReply* reply) override;
  grpc::ServerUnaryReactor* Flush(grpc::CallbackServerContext* ctx,
                                  const proto::FlushRequest* req,
                                  proto::FlushReply* reply) override;
  grpc::ServerUnaryReactor* Fence(grpc::CallbackServerContext* ctx,
                                  const proto::FenceRequest* req,
                                  proto::FenceReply* reply) override;
  grpc::ServerUnaryReactor* Stats(grpc::CallbackServerContext* ctx,
                                  const proto::DataStatsRequest* req,
                                  proto::DataStatsReply* reply) override;
  grpc::ServerUnaryReactor* Ping(grpc::CallbackServerContext* ctx,
                                 const proto::PingRequest* req,
                                 proto::PingReply* reply) override;
  grpc::ServerUnaryReactor* SetFault(grpc::CallbackServerContext* ctx,
                                     const proto::SetFaultRequest* req,
                                     proto::SetFaultReply* reply) override;

 private:
  BlockStore* const store_;
  ThreadPool* const pool_;
  const std::string name_;
};

}  // namespace rangefs::data

#endif  // RANGEFS_SERVER_DATA_DATA_SERVICE_H_
