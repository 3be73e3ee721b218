#include "server/data/data_service.h"

#include "rpc/convert.h"
#include "rpc/server_util.h"

namespace rangefs::data {

using rpc::RunInline;
using rpc::RunOnPool;
using rpc::ToProto;

grpc::ServerUnaryReactor* DataServiceImpl::Read(
    grpc::CallbackServerContext* ctx, const proto::ReadRequest* req,
    proto::ReadReply* reply) {
  return RunOnPool(pool_, ctx, [=] {
    absl::StatusOr<std::string> data =
        store_->Read(req->session_id(), req->offset(), req->length());
    if (!data.ok()) {
      ToProto(data.status(), reply->mutable_error());
      return;
    }
    *reply->mutable_data() = std::move(*data);
  });
}

grpc::ServerUnaryReactor* DataServiceImpl::Write(
    grpc::CallbackServerContext* ctx, const proto::WriteRequest* req,
    proto::WriteReply* reply) {
  return RunOnPool(pool_, ctx, [=] {
    ToProto(store_->Write(req->session_id(), req->offset(), req->data(),
                          req->sync()),
            reply->mutable_error());
  });
}

grpc::ServerUnaryReactor* DataServiceImpl::Flush(
    grpc::CallbackServerContext* ctx, const proto::FlushRequest* req,
    proto::FlushReply* reply) {
  return RunOnPool(pool_, ctx, [=] {
    ToProto(store_->Flush(req->session_id()), reply->mutable_error());
  });
}

grpc::ServerUnaryReactor* DataServiceImpl::Fence(
    grpc::CallbackServerContext* ctx, const proto::FenceRequest* req,
    proto::FenceReply* reply) {
  return RunOnPool(pool_, ctx, [=] {
    ToProto(store_->Fence(req->session_id()), reply->mutable_error());
  });
}

grpc::ServerUnaryReactor* DataServiceImpl::Stats(
    grpc::CallbackServerContext* ctx, const proto::DataStatsRequest*,
    proto::DataStatsReply* reply) {
  return RunInline(ctx, [=] {
    BlockStoreStats s = store_->Stats();
    reply->set_device_size(s.device_size);
    reply->set_bytes_read(s.bytes_read);
    reply->set_bytes_written(s.bytes_written);
    reply->set_reads(s.reads);
    reply->set_writes(s.writes);
    reply->set_fenced_refusals(s.fenced_refusals);
    reply->set_lease_refusals(s.lease_refusals);
    reply->set_fence_lease_held(s.fence_lease_held);
    reply->set_fence_seq(s.fence_seq);
    for (uint64_t f : s.fenced) reply->add_fenced_sessions(f);
  });
}

grpc::ServerUnaryReactor* DataServiceImpl::Ping(
    grpc::CallbackServerContext* ctx, const proto::PingRequest* req,
    proto::PingReply* reply) {
  return rpc::AnswerPing(ctx, req, reply, name_);
}

grpc::ServerUnaryReactor* DataServiceImpl::SetFault(
    grpc::CallbackServerContext* ctx, const proto::SetFaultRequest* req,
    proto::SetFaultReply* reply) {
  return rpc::AnswerSetFault(ctx, req, reply);
}

}  // namespace rangefs::data
