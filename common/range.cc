#include "common/range.h"

#include "absl/strings/str_cat.h"
#include "common/status.h"

namespace rangefs {

std::string ByteRange::ToString() const {
  if (ToInfinity()) return absl::StrCat("[", start, ", inf)");
  return absl::StrCat("[", start, ", ", end, ")");
}

absl::Status ValidateRange(const ByteRange& r) {
  if (!r.Valid()) {
    return MakeError(
        Errc::kInvalidArgument,
        absl::StrCat("empty or inverted range ", r.start, "..", r.end));
  }
  return absl::OkStatus();
}

absl::StatusOr<ByteRange> RangeFromOffsetLength(uint64_t offset,
                                                uint64_t length) {
  if (length == 0) {
    return MakeError(Errc::kInvalidArgument, "zero length");
  }
  if (length > kInfinity - offset) {
    return MakeError(Errc::kInvalidArgument,
                     absl::StrCat("offset ", offset, " + length ", length,
                                  " overflows 64 bits"));
  }
  return ByteRange{offset, offset + length};
}

absl::StatusOr<ByteRange> FileRange(uint64_t offset, uint64_t length) {
  absl::StatusOr<ByteRange> r = RangeFromOffsetLength(offset, length);
  if (!r.ok()) return r;
  if (r->end > kMaxFileSize) {
    return MakeError(Errc::kFileTooBig,
                     absl::StrCat("range ", r->ToString(),
                                  " ends past the maximum file size"));
  }
  return r;
}

}  // namespace rangefs
