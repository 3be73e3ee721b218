// The data servers' bulk protocol: block reads and writes over a plain TCP
// connection, beside DataService (gRPC), which keeps every other call
// (flush, fence, stats, ping, faults). A bulk write is one sendmsg of a
// header and the caller's bytes, and the data server receives them straight
// into the buffer it writes from; a bulk read's reply lands straight in the
// caller's buffer. gRPC's path copies each byte into a protobuf field, into
// its own slices and back out on the other side, in 16 KiB HTTP/2 frames.
//
// One request at a time per connection, answered in order:
//   request  32 bytes: magic "RFB1", op (1 read, 2 write), flags (bit 0:
//            fdatasync before replying), 2 zero bytes, session (u64),
//            device offset (u64), length (u32), 4 zero bytes; a write's
//            `length` data bytes follow.
//   reply    24 bytes: magic "RFB2", rangefs error code (u32, Errc), errno
//            (u32, 0: the code's default), message length (u32, at most
//            kMaxMessage), data length (u32: a read's length on success,
//            else 0), 4 zero bytes; then the message, then the data.
// Integers are big-endian. A request that does not decode gets an
// INVALID_ARGUMENT reply and the connection is closed (its framing cannot
// be trusted any more); nothing is written.
#ifndef RANGEFS_COMMON_BULK_WIRE_H_
#define RANGEFS_COMMON_BULK_WIRE_H_

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace rangefs::bulk {

inline constexpr uint32_t kRequestMagic = 0x52464231;  // "RFB1"
inline constexpr uint32_t kReplyMagic = 0x52464232;    // "RFB2"
inline constexpr size_t kRequestSize = 32;
inline constexpr size_t kReplySize = 24;
inline constexpr uint32_t kMaxMessage = 1024;
inline constexpr uint32_t kMaxLength = 4u << 20;  // As DataService.

enum class Op : uint8_t { kRead = 1, kWrite = 2 };

struct Request {
  Op op = Op::kRead;
  bool sync = false;
  uint64_t session = 0;
  uint64_t offset = 0;
  uint32_t length = 0;
};

struct Reply {
  uint32_t code = 0;  // Errc.
  uint32_t posix_errno = 0;
  uint32_t message_length = 0;
  uint32_t data_length = 0;
};

void EncodeRequest(const Request& r, char out[kRequestSize]);
// Checks the magic, the op, the flags, the zero bytes and 1 <= length <=
// kMaxLength.
absl::StatusOr<Request> DecodeRequest(const char in[kRequestSize]);

void EncodeReply(const Reply& r, char out[kReplySize]);
// Checks the magic, the code and the lengths against what `request` asked.
absl::StatusOr<Reply> DecodeReply(const char in[kReplySize],
                                  const Request& request);

// The reply header for `status` answering `request` (data_length: the
// read's length when OK), and its message (truncated to kMaxMessage).
Reply ReplyFor(const absl::Status& status, const Request& request,
               std::string* message);
// The status a decoded reply stands for.
absl::Status StatusOf(const Reply& reply, const std::string& message);

}  // namespace rangefs::bulk

#endif  // RANGEFS_COMMON_BULK_WIRE_H_
