// Client channels to rangefs servers: our message size limit, and short
// reconnect backoff so a restarted server is reached again within ~0.1-1 s
// (gRPC's default starts at 1 s and grows to 2 minutes). To wait for a
// server that is starting, send an RPC with wait_for_ready(true) and a
// deadline rather than polling with fail-fast RPCs.
#ifndef RANGEFS_RPC_CHANNEL_H_
#define RANGEFS_RPC_CHANNEL_H_

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>

namespace rangefs::rpc {

std::shared_ptr<grpc::Channel> MakeChannel(const std::string& address);

}  // namespace rangefs::rpc

#endif  // RANGEFS_RPC_CHANNEL_H_
