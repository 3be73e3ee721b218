#include "common/status.h"

#include <cerrno>
#include <cstdlib>
#include <optional>
#include <string>

#include "absl/strings/cord.h"
#include "absl/strings/numbers.h"

namespace rangefs {
namespace {

constexpr absl::string_view kErrcPayload = "rangefs.errc";
constexpr absl::string_view kErrnoPayload = "rangefs.errno";

struct ErrcInfo {
  const char* name;
  absl::StatusCode canonical;
  int posix;
};

// Indexed by Errc.
constexpr ErrcInfo kInfo[] = {
    {"OK", absl::StatusCode::kOk, 0},
    {"INVALID_ARGUMENT", absl::StatusCode::kInvalidArgument, EINVAL},
    {"NOT_FOUND", absl::StatusCode::kNotFound, ENOENT},
    {"EXISTS", absl::StatusCode::kAlreadyExists, EEXIST},
    {"NOT_DIR", absl::StatusCode::kFailedPrecondition, ENOTDIR},
    {"IS_DIR", absl::StatusCode::kFailedPrecondition, EISDIR},
    {"NOT_EMPTY", absl::StatusCode::kFailedPrecondition, ENOTEMPTY},
    {"NO_SPACE", absl::StatusCode::kResourceExhausted, ENOSPC},
    {"STALE", absl::StatusCode::kAborted, ESTALE},
    {"FENCED", absl::StatusCode::kPermissionDenied, EIO},
    {"DEADLOCK", absl::StatusCode::kAborted, EDEADLK},
    {"WOULD_BLOCK", absl::StatusCode::kUnavailable, EAGAIN},
    {"TIMED_OUT", absl::StatusCode::kDeadlineExceeded, ETIMEDOUT},
    {"NO_SESSION", absl::StatusCode::kFailedPrecondition, EIO},
    {"GRACE", absl::StatusCode::kUnavailable, EAGAIN},
    {"PERMISSION", absl::StatusCode::kPermissionDenied, EPERM},
    {"NAME_TOO_LONG", absl::StatusCode::kInvalidArgument, ENAMETOOLONG},
    {"FILE_TOO_BIG", absl::StatusCode::kOutOfRange, EFBIG},
    {"NOT_SUPPORTED", absl::StatusCode::kUnimplemented, EOPNOTSUPP},
    {"CROSS_DEVICE", absl::StatusCode::kFailedPrecondition, EXDEV},
    {"IO_ERROR", absl::StatusCode::kDataLoss, EIO},
    {"NO_DATA", absl::StatusCode::kNotFound, ENODATA},
    {"OUT_OF_RANGE", absl::StatusCode::kOutOfRange, ERANGE},
    {"TOO_MANY_LINKS", absl::StatusCode::kFailedPrecondition, EMLINK},
    {"LOOP", absl::StatusCode::kFailedPrecondition, ELOOP},
    {"BUSY", absl::StatusCode::kUnavailable, EBUSY},
    {"UNAVAILABLE", absl::StatusCode::kUnavailable, EAGAIN},
    {"INTERNAL", absl::StatusCode::kInternal, EIO},
};
static_assert(sizeof(kInfo) / sizeof(kInfo[0]) == kMaxErrc + 1);

const ErrcInfo& Info(Errc code) {
  int i = static_cast<int>(code);
  if (i < 0 || i > kMaxErrc) i = static_cast<int>(Errc::kInternal);
  return kInfo[i];
}

std::optional<int> IntPayload(const absl::Status& s, absl::string_view key) {
  absl::optional<absl::Cord> p = s.GetPayload(key);
  int v = 0;
  if (!p || !absl::SimpleAtoi(std::string(*p), &v)) return std::nullopt;
  return v;
}

}  // namespace

absl::Status MakeError(Errc code, absl::string_view message, int posix_errno) {
  if (code == Errc::kOk) return absl::OkStatus();
  absl::Status s(Info(code).canonical, message);
  s.SetPayload(kErrcPayload,
               absl::Cord(std::to_string(static_cast<int>(code))));
  if (posix_errno != 0) {
    s.SetPayload(kErrnoPayload, absl::Cord(std::to_string(posix_errno)));
  }
  return s;
}

Errc ErrcOf(const absl::Status& status) {
  if (status.ok()) return Errc::kOk;
  if (std::optional<int> v = IntPayload(status, kErrcPayload);
      v && *v > 0 && *v <= kMaxErrc) {
    return static_cast<Errc>(*v);
  }
  switch (status.code()) {
    case absl::StatusCode::kInvalidArgument:
      return Errc::kInvalidArgument;
    case absl::StatusCode::kNotFound:
      return Errc::kNotFound;
    case absl::StatusCode::kAlreadyExists:
      return Errc::kExists;
    case absl::StatusCode::kResourceExhausted:
      return Errc::kNoSpace;
    case absl::StatusCode::kDeadlineExceeded:
      return Errc::kTimedOut;
    case absl::StatusCode::kPermissionDenied:
      return Errc::kPermission;
    case absl::StatusCode::kUnimplemented:
      return Errc::kNotSupported;
    case absl::StatusCode::kUnavailable:
      return Errc::kUnavailable;
    case absl::StatusCode::kOutOfRange:
      return Errc::kOutOfRange;
    case absl::StatusCode::kDataLoss:
      return Errc::kIoError;
    default:
      return Errc::kInternal;
  }
}

int DefaultErrno(Errc code) { return Info(code).posix; }

int ErrnoOf(const absl::Status& status) {
  if (status.ok()) return 0;
  if (std::optional<int> v = IntPayload(status, kErrnoPayload); v && *v > 0) {
    return *v;
  }
  return DefaultErrno(ErrcOf(status));
}

const char* ErrcName(Errc code) { return Info(code).name; }

}  // namespace rangefs
