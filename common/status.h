// Errors as values. rangefs code returns absl::Status / absl::StatusOr; a
// status made by MakeError also carries the rangefs error code (the same
// numbers as proto ErrorCode), so a caller can tell STALE from FENCED from
// DEADLOCK without parsing messages. Service adapters convert to and from
// the wire form; nothing here depends on gRPC or protobuf.
#ifndef RANGEFS_COMMON_STATUS_H_
#define RANGEFS_COMMON_STATUS_H_

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace rangefs {

// Mirrors proto ErrorCode value for value.
enum class Errc : int {
  kOk = 0,
  kInvalidArgument = 1,
  kNotFound = 2,
  kExists = 3,
  kNotDir = 4,
  kIsDir = 5,
  kNotEmpty = 6,
  kNoSpace = 7,
  kStale = 8,
  kFenced = 9,
  kDeadlock = 10,
  kWouldBlock = 11,
  kTimedOut = 12,
  kNoSession = 13,
  kGrace = 14,
  kPermission = 15,
  kNameTooLong = 16,
  kFileTooBig = 17,
  kNotSupported = 18,
  kCrossDevice = 19,
  kIoError = 20,
  kNoData = 21,
  kOutOfRange = 22,
  kTooManyLinks = 23,
  kLoop = 24,
  kBusy = 25,
  kUnavailable = 26,
  kInternal = 27,
};
inline constexpr int kMaxErrc = 27;

// A non-OK status carrying `code` (kOk gives OkStatus()). `posix_errno`
// overrides the default errno for the code (e.g. EACCES vs EPERM).
absl::Status MakeError(Errc code, absl::string_view message,
                       int posix_errno = 0);

// The rangefs code of a status: kOk for OK, the carried code when made by
// MakeError, otherwise one derived from the canonical absl code.
Errc ErrcOf(const absl::Status& status);

// The errno a POSIX caller should see for this status (0 for OK).
int ErrnoOf(const absl::Status& status);

// The default errno of a code.
int DefaultErrno(Errc code);

// "STALE", "FENCED", ... for logs.
const char* ErrcName(Errc code);

}  // namespace rangefs

#endif  // RANGEFS_COMMON_STATUS_H_
