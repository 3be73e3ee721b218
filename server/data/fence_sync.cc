#include "server/data/fence_sync.h"

#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <chrono>

#include "common/log.h"
#include "proto/meta.grpc.pb.h"
#include "rpc/channel.h"

namespace rangefs::data {

class FenceSync::Meta {
 public:
  explicit Meta(const std::string& address)
      : stub_(proto::MetaService::NewStub(rpc::MakeChannel(address))) {}
  grpc::Status FenceList(uint64_t after_seq, int64_t timeout_ms,
                         proto::FenceListReply* reply) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() +
                     std::chrono::milliseconds(timeout_ms));
    proto::FenceListRequest req;
    req.set_after_seq(after_seq);
    return stub_->FenceList(&ctx, req, reply);
  }

 private:
  std::unique_ptr<proto::MetaService::Stub> stub_;
};

FenceSync::FenceSync(BlockStore* store, const std::string& meta_address)
    : store_(store), meta_(std::make_unique<Meta>(meta_address)) {
  store_->SetFenceLease(0, 0);  // No writes before the first sync.
  thread_ = std::thread([this] { Loop(); });
}

FenceSync::~FenceSync() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  thread_.join();
}

bool FenceSync::SyncOnce() {
  // The lease runs from before the question: the answer holds every fence
  // recorded before the metadata server read its list, which was after.
  const int64_t asked_ns = SteadyNs();
  const int64_t timeout_ms =
      lease_ms_ == 0
          ? 1000
          : std::max<int64_t>(100, static_cast<int64_t>(lease_ms_) / 2);
  proto::FenceListReply reply;
  grpc::Status s = meta_->FenceList(applied_seq_, timeout_ms, &reply);
  if (!s.ok() || reply.error().code() != proto::OK) {
    if (held_) {
      RANGEFS_LOG(WARNING) << "cannot reach the metadata server for the "
                              "fence list: "
                           << (s.ok() ? reply.error().message()
                                      : s.error_message())
                           << " (writes stop when the fence lease runs out)";
    }
    return false;
  }
  if (reply.seq() < applied_seq_) {
    // A metadata server with a shorter fence list than we applied (a new
    // filesystem on that address): every fence of it, from the start.
    RANGEFS_LOG(WARNING) << "the metadata server's fence list restarted at "
                         << reply.seq() << " (was " << applied_seq_ << ")";
    applied_seq_ = 0;
    return false;
  }
  for (uint64_t session : reply.session_ids()) {
    if (absl::Status f = store_->Fence(session); !f.ok()) {
      RANGEFS_LOG(ERROR) << "cannot apply the fence of session " << session
                         << ": " << f.message();
      return false;
    }
  }
  applied_seq_ = reply.seq();
  lease_ms_ = reply.fence_lease_ms();
  until_ns_ = asked_ns + static_cast<int64_t>(lease_ms_) * 1000000;
  store_->SetFenceLease(until_ns_, applied_seq_);
  if (!held_) {
    RANGEFS_LOG(INFO) << "fence list synced with the metadata server (seq "
                      << applied_seq_ << ", lease " << lease_ms_
                      << " ms): taking writes";
  }
  held_ = true;
  return true;
}

void FenceSync::Loop() {
  for (;;) {
    const bool ok = SyncOnce();
    if (!ok && held_ && SteadyNs() >= until_ns_) {
      RANGEFS_LOG(WARNING) << "fence lease ran out: no writes until the "
                              "metadata server answers";
      held_ = false;
    }
    // A quarter of the lease between syncs: two may fail before it runs
    // out. Faster while it does not hold.
    const int64_t wait_ms =
        ok && lease_ms_ > 0
            ? std::max<int64_t>(50, static_cast<int64_t>(lease_ms_) / 4)
            : 100;
    absl::MutexLock lock(&mu_);
    if (mu_.AwaitWithTimeout(absl::Condition(&stopping_),
                             absl::Milliseconds(wait_ms))) {
      return;
    }
  }
}

}  // namespace rangefs::data
