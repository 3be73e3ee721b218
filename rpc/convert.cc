#include "rpc/convert.h"

#include "common/fault_injection.h"
#include "common/status.h"

namespace rangefs::rpc {

void ToProto(const absl::Status& s, proto::Error* out) {
  out->Clear();
  if (s.ok()) return;
  out->set_code(static_cast<proto::ErrorCode>(static_cast<int>(ErrcOf(s))));
  out->set_message(std::string(s.message()));
  out->set_posix_errno(ErrnoOf(s));
}

absl::Status FromProto(const proto::Error& e) {
  if (e.code() == proto::OK) return absl::OkStatus();
  int code = static_cast<int>(e.code());
  if (code < 0 || code > kMaxErrc) code = static_cast<int>(Errc::kInternal);
  return MakeError(static_cast<Errc>(code), e.message(), e.posix_errno());
}

void ApplySetFault(const proto::SetFaultRequest& req,
                   proto::SetFaultReply* reply) {
  FaultRegistry& reg = FaultRegistry::Global();
  if (req.clear_all()) reg.ClearAll();
  for (const proto::FaultRule& r : req.rules()) {
    if (r.point().empty()) {
      ToProto(MakeError(Errc::kInvalidArgument, "fault rule without a point"),
              reply->mutable_error());
      return;
    }
    int code = static_cast<int>(r.error());
    if (code < 0 || code > kMaxErrc) {
      ToProto(MakeError(Errc::kInvalidArgument, "unknown error code"),
              reply->mutable_error());
      return;
    }
  }
  for (const proto::FaultRule& r : req.rules()) {
    if (r.delay_ms() == 0 && r.error() == proto::OK) {
      reg.Clear(r.point());
      continue;
    }
    FaultRule rule;
    rule.delay_ms = r.delay_ms();
    rule.error = static_cast<Errc>(static_cast<int>(r.error()));
    rule.count = r.count();
    reg.Set(r.point(), rule);
  }
}

}  // namespace rangefs::rpc
