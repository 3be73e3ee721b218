// Conversions between rangefs values and their wire form. Only service
// adapters and the client's stubs include this (it pulls in generated
// protobuf headers).
#ifndef RANGEFS_RPC_CONVERT_H_
#define RANGEFS_RPC_CONVERT_H_

#include "absl/status/status.h"
#include "common/range.h"
#include "proto/common.pb.h"

namespace rangefs::rpc {

// Fills `out` from `s` (clears it for OK).
void ToProto(const absl::Status& s, proto::Error* out);
// OK for an unset error or code OK; otherwise a status carrying the code.
absl::Status FromProto(const proto::Error& e);

inline proto::Range ToProto(const ByteRange& r) {
  proto::Range p;
  p.set_start(r.start);
  p.set_end(r.end);
  return p;
}
inline ByteRange FromProto(const proto::Range& p) {
  return ByteRange{p.start(), p.end()};
}

// Applies a SetFault request to the process-wide fault registry.
void ApplySetFault(const proto::SetFaultRequest& req,
                   proto::SetFaultReply* reply);

}  // namespace rangefs::rpc

#endif  // RANGEFS_RPC_CONVERT_H_
