#include "lockmgr/lock_service.h"

#include <chrono>
#include <deque>
#include <thread>

#include "absl/strings/str_join.h"
#include "common/log.h"
#include "rpc/channel.h"
#include "rpc/convert.h"
#include "rpc/server_util.h"

namespace rangefs::lockmgr {
namespace {

// One node's stream. Reads go to LockServer; LockServer's messages go to an
// outbox written one at a time. Deletes itself when gRPC is done with it,
// after detaching from LockServer (which uses the sink only under its own
// mutex, so after Detach returns it never touches this object again).
class SessionReactor
    : public grpc::ServerBidiReactor<proto::NodeMessage, proto::ServerMessage>,
      public SessionSink {
 public:
  explicit SessionReactor(LockServer* server) : server_(server) {
    StartRead(&in_);
  }

  void Send(const proto::ServerMessage& m) override {
    absl::MutexLock lock(&mu_);
    if (finished_) return;
    outbox_.push_back(m);
    if (!writing_) WriteNext();
  }

  void Close() override {
    absl::MutexLock lock(&mu_);
    closing_ = true;
    if (!writing_) FinishOnce(grpc::Status::OK);
  }

  void OnReadDone(bool ok) override {
    if (!ok) {
      // The node closed its side or the connection broke.
      absl::MutexLock lock(&mu_);
      closing_ = true;
      if (!writing_) FinishOnce(grpc::Status::OK);
      return;
    }
    if (session_ == 0) {
      if (!in_.has_hello() || in_.hello().session_id() == 0) {
        absl::MutexLock lock(&mu_);
        FinishOnce(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                                "a session stream starts with Hello"));
        return;
      }
      uint64_t id = in_.hello().session_id();
      if (server_->Attach(in_.hello(), this)) session_ = id;
      if (session_ == 0) return;  // Refused: the sink was closed.
    } else {
      server_->Handle(session_, in_);
    }
    StartRead(&in_);
  }

  void OnWriteDone(bool ok) override {
    absl::MutexLock lock(&mu_);
    writing_ = false;
    outbox_.pop_front();
    if (!ok) {
      FinishOnce(grpc::Status::OK);
      return;
    }
    if (!outbox_.empty()) {
      WriteNext();
    } else if (closing_) {
      FinishOnce(grpc::Status::OK);
    }
  }

  void OnDone() override {
    if (session_ != 0) server_->Detach(session_, this);
    delete this;
  }

 private:
  void WriteNext() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (finished_) return;
    writing_ = true;
    StartWrite(&outbox_.front());
  }
  void FinishOnce(const grpc::Status& s) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (finished_) return;
    finished_ = true;
    Finish(s);
  }

  LockServer* const server_;
  proto::NodeMessage in_;
  uint64_t session_ = 0;  // Only touched by read reactions.
  absl::Mutex mu_;
  std::deque<proto::ServerMessage> outbox_ ABSL_GUARDED_BY(mu_);
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool closing_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace

grpc::ServerBidiReactor<proto::NodeMessage, proto::ServerMessage>*
LockServiceImpl::Session(grpc::CallbackServerContext*) {
  return new SessionReactor(server_);
}

grpc::ServerUnaryReactor* LockServiceImpl::Dump(
    grpc::CallbackServerContext* ctx, const proto::DumpRequest* req,
    proto::DumpReply* reply) {
  return rpc::RunInline(ctx, [=] { *reply = server_->Dump(req->ino()); });
}

grpc::ServerUnaryReactor* LockServiceImpl::Evict(
    grpc::CallbackServerContext* ctx, const proto::EvictRequest* req,
    proto::EvictReply* reply) {
  return rpc::RunInline(ctx, [=] {
    rpc::ToProto(
        server_->Evict(req->session_id(),
                       req->reason().empty() ? "administrator" : req->reason()),
        reply->mutable_error());
  });
}

grpc::ServerUnaryReactor* LockServiceImpl::Ping(
    grpc::CallbackServerContext* ctx, const proto::PingRequest* req,
    proto::PingReply* reply) {
  return rpc::AnswerPing(ctx, req, reply, name_);
}

grpc::ServerUnaryReactor* LockServiceImpl::SetFault(
    grpc::CallbackServerContext* ctx, const proto::SetFaultRequest* req,
    proto::SetFaultReply* reply) {
  return rpc::AnswerSetFault(ctx, req, reply);
}

GrpcFencer::GrpcFencer(const ClusterConfig& config)
    : meta_(proto::MetaService::NewStub(rpc::MakeChannel(config.meta))),
      meta_address_(config.meta) {
  for (const DataServerConfig& d : config.data) {
    data_.emplace_back(
        d.address, proto::DataService::NewStub(rpc::MakeChannel(d.address)));
  }
}

absl::Status GrpcFencer::Fence(uint64_t session, const std::string& reason) {
  proto::FenceRequest req;
  req.set_session_id(session);
  req.set_reason(reason);
  // One attempt at `what`: true when it acknowledged the fence.
  auto attempt = [&](const std::string& what, auto call,
                     proto::FenceReply* reply, int tries) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() +
                     std::chrono::seconds(2));
    ctx.set_wait_for_ready(true);
    grpc::Status s = call(&ctx, reply);
    if (s.ok() && reply->error().code() == proto::OK) return true;
    if (tries % 10 == 0) {
      RANGEFS_LOG(WARNING) << "fencing session " << session << " at " << what
                           << " failed, retrying: "
                           << (s.ok() ? reply->error().message()
                                      : s.error_message());
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    return false;
  };
  // The metadata server records the fence; without it nothing goes on (no
  // node can commit or open anything without it either), so it is tried
  // until it answers.
  proto::FenceReply meta_reply;
  for (int tries = 0;; ++tries) {
    if (stopping_) return absl::UnavailableError("shutting down");
    if (attempt(
            meta_address_,
            [&](grpc::ClientContext* c, proto::FenceReply* r) {
              return meta_->Fence(c, req, r);
            },
            &meta_reply, tries)) {
      break;
    }
  }
  const auto recorded = std::chrono::steady_clock::now();
  // Every data server learns the fence from the metadata server and takes
  // no writes once a fence lease has passed without learning it
  // (server/data/fence_sync.h). So a data server that does not answer here
  // is waited for only until a lease and a half has passed since the
  // fence was recorded; a metadata server without leases (0) has every
  // data server waited for.
  const uint64_t lease_ms = meta_reply.fence_lease_ms();
  const auto until = recorded + std::chrono::milliseconds(lease_ms * 3 / 2);
  std::vector<std::string> unreached;
  for (auto& target : data_) {
    proto::DataService::Stub* stub = target.second.get();
    bool acked = false;
    for (int tries = 0; !acked; ++tries) {
      if (stopping_) return absl::UnavailableError("shutting down");
      if (lease_ms != 0 && std::chrono::steady_clock::now() >= until) break;
      proto::FenceReply r;
      acked = attempt(
          target.first,
          [&](grpc::ClientContext* c, proto::FenceReply* rep) {
            return stub->Fence(c, req, rep);
          },
          &r, tries);
    }
    if (!acked) unreached.push_back(target.first);
  }
  if (!unreached.empty()) {
    std::this_thread::sleep_until(until);
    unreached_fences_ += unreached.size();
    RANGEFS_LOG(WARNING)
        << "session " << session << ": data server(s) "
        << absl::StrJoin(unreached, ", ")
        << " did not answer the fence; it is recorded at the metadata "
           "server, from which they learn it, and they take no writes until "
           "they have (their fence lease of "
        << lease_ms << " ms has passed): going on";
  }
  return absl::OkStatus();
}

}  // namespace rangefs::lockmgr
