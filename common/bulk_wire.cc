#include "common/bulk_wire.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "common/status.h"

namespace rangefs::bulk {
namespace {

void Put32(char* p, uint32_t v) {
  for (int i = 3; i >= 0; --i) {
    p[i] = static_cast<char>(v & 0xff);
    v >>= 8;
  }
}

void Put64(char* p, uint64_t v) {
  for (int i = 7; i >= 0; --i) {
    p[i] = static_cast<char>(v & 0xff);
    v >>= 8;
  }
}

uint32_t Load32(const char* p) {
  uint32_t v = 0;
  for (int i = 0; i < 4; ++i) v = (v << 8) | static_cast<uint8_t>(p[i]);
  return v;
}

uint64_t Load64(const char* p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = (v << 8) | static_cast<uint8_t>(p[i]);
  return v;
}

absl::Status Malformed(const std::string& why) {
  return MakeError(Errc::kInvalidArgument, "bulk protocol: " + why);
}

}  // namespace

void EncodeRequest(const Request& r, char out[kRequestSize]) {
  std::fill(out, out + kRequestSize, '\0');
  Put32(out, kRequestMagic);
  out[4] = static_cast<char>(r.op);
  out[5] = static_cast<char>(r.sync ? 1 : 0);
  Put64(out + 8, r.session);
  Put64(out + 16, r.offset);
  Put32(out + 24, r.length);
}

absl::StatusOr<Request> DecodeRequest(const char in[kRequestSize]) {
  if (Load32(in) != kRequestMagic) return Malformed("bad request magic");
  Request r;
  const uint8_t op = static_cast<uint8_t>(in[4]);
  if (op != static_cast<uint8_t>(Op::kRead) &&
      op != static_cast<uint8_t>(Op::kWrite)) {
    return Malformed(absl::StrCat("unknown op ", op));
  }
  r.op = static_cast<Op>(op);
  const uint8_t flags = static_cast<uint8_t>(in[5]);
  if ((flags & ~1u) != 0) return Malformed("unknown flags");
  r.sync = (flags & 1u) != 0;
  if (in[6] != 0 || in[7] != 0 || Load32(in + 28) != 0) {
    return Malformed("reserved bytes are not zero");
  }
  r.session = Load64(in + 8);
  r.offset = Load64(in + 16);
  r.length = Load32(in + 24);
  if (r.length == 0 || r.length > kMaxLength) {
    return Malformed(
        absl::StrCat("length ", r.length, " not in 1..", kMaxLength));
  }
  return r;
}

void EncodeReply(const Reply& r, char out[kReplySize]) {
  std::fill(out, out + kReplySize, '\0');
  Put32(out, kReplyMagic);
  Put32(out + 4, r.code);
  Put32(out + 8, r.posix_errno);
  Put32(out + 12, r.message_length);
  Put32(out + 16, r.data_length);
}

absl::StatusOr<Reply> DecodeReply(const char in[kReplySize],
                                  const Request& request) {
  if (Load32(in) != kReplyMagic) return Malformed("bad reply magic");
  Reply r;
  r.code = Load32(in + 4);
  r.posix_errno = Load32(in + 8);
  r.message_length = Load32(in + 12);
  r.data_length = Load32(in + 16);
  if (r.code > static_cast<uint32_t>(kMaxErrc)) {
    return Malformed(absl::StrCat("unknown error code ", r.code));
  }
  if (r.message_length > kMaxMessage) return Malformed("message too long");
  const bool ok = r.code == 0;
  const uint32_t want = ok && request.op == Op::kRead ? request.length : 0;
  if (r.data_length != want) {
    return Malformed(absl::StrCat("reply carries ", r.data_length,
                                  " data bytes, not ", want));
  }
  return r;
}

Reply ReplyFor(const absl::Status& status, const Request& request,
               std::string* message) {
  Reply r;
  message->clear();
  if (status.ok()) {
    r.data_length = request.op == Op::kRead ? request.length : 0;
    return r;
  }
  r.code = static_cast<uint32_t>(ErrcOf(status));
  r.posix_errno = static_cast<uint32_t>(ErrnoOf(status));
  message->assign(status.message().data(),
                  std::min<size_t>(status.message().size(), kMaxMessage));
  r.message_length = static_cast<uint32_t>(message->size());
  return r;
}

absl::Status StatusOf(const Reply& reply, const std::string& message) {
  if (reply.code == 0) return absl::OkStatus();
  return MakeError(static_cast<Errc>(reply.code), message,
                   static_cast<int>(reply.posix_errno));
}

}  // namespace rangefs::bulk
