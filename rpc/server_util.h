// Helpers for rangefs gRPC servers: building a server on the address it is
// given, and running a unary callback handler on the server's own thread
// pool (handlers that fsync or do disk I/O never run on gRPC's threads).
#ifndef RANGEFS_RPC_SERVER_UTIL_H_
#define RANGEFS_RPC_SERVER_UTIL_H_

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "common/thread_pool.h"
#include "proto/common.pb.h"

namespace rangefs::rpc {

// Largest message either way (a 4 MiB data payload plus headers).
inline constexpr int kMaxMessageBytes = 16 << 20;

// Starts a server on `address` ("host:port"; port 0 picks one) with
// `services`. Fails with a clear error when the address cannot be bound.
// `*bound_port` receives the port actually bound.
absl::StatusOr<std::unique_ptr<grpc::Server>> StartServer(
    const std::string& address, const std::vector<grpc::Service*>& services,
    int* bound_port);

// Runs fn() on `pool`, then finishes the call with OK (application errors
// travel in the reply's Error field).
template <typename Fn>
grpc::ServerUnaryReactor* RunOnPool(ThreadPool* pool,
                                    grpc::CallbackServerContext* ctx, Fn fn) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  pool->Submit([reactor, fn = std::move(fn)]() mutable {
    fn();
    reactor->Finish(grpc::Status::OK);
  });
  return reactor;
}

// Runs fn() inline (for handlers that never block) and finishes.
template <typename Fn>
grpc::ServerUnaryReactor* RunInline(grpc::CallbackServerContext* ctx, Fn fn) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  fn();
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

// The Ping and SetFault handlers every rangefs service has.
grpc::ServerUnaryReactor* AnswerPing(grpc::CallbackServerContext* ctx,
                                     const proto::PingRequest* req,
                                     proto::PingReply* reply,
                                     const std::string& server);
grpc::ServerUnaryReactor* AnswerSetFault(grpc::CallbackServerContext* ctx,
                                         const proto::SetFaultRequest* req,
                                         proto::SetFaultReply* reply);

// Blocks SIGINT/SIGTERM in the calling thread; call first thing in main()
// so every thread started later inherits the mask.
void BlockTerminationSignals();
// Waits for SIGINT or SIGTERM; returns the signal number.
int WaitForTerminationSignal();

}  // namespace rangefs::rpc

#endif  // RANGEFS_RPC_SERVER_UTIL_H_
