// Byte ranges over the 64-bit offset space, and the overflow rules every
// rangefs component applies to offsets and lengths (proto/common.proto).
//
// A ByteRange is the half-open interval [start, end). end == kInfinity
// (2^64-1) means "to infinity": it contains every offset >= start. Values
// are plain data; all functions are thread-compatible.
#ifndef RANGEFS_COMMON_RANGE_H_
#define RANGEFS_COMMON_RANGE_H_

#include <cstdint>
#include <limits>
#include <string>

#include "absl/status/statusor.h"

namespace rangefs {

inline constexpr uint64_t kInfinity = std::numeric_limits<uint64_t>::max();
// Largest file offset or size (Linux's loff_t maximum).
inline constexpr uint64_t kMaxFileSize =
    static_cast<uint64_t>(std::numeric_limits<int64_t>::max());
// Where the last block of a file of that size ends (2^63): mappings and
// extents may reach it.
inline constexpr uint64_t kMaxExtentEnd = kMaxFileSize + 1;

struct ByteRange {
  uint64_t start = 0;
  uint64_t end = 0;

  // True when start < end. Zero-length and inverted ranges are invalid.
  bool Valid() const { return start < end; }
  bool ToInfinity() const { return end == kInfinity; }
  uint64_t Length() const { return end - start; }
  bool Overlaps(const ByteRange& o) const {
    return start < o.end && o.start < end;
  }
  bool Contains(const ByteRange& o) const {
    return start <= o.start && o.end <= end;
  }
  // The overlap of two ranges; invalid (empty) when they do not overlap.
  ByteRange Intersect(const ByteRange& o) const {
    return {start > o.start ? start : o.start, end < o.end ? end : o.end};
  }
  // The smallest range containing both.
  ByteRange Span(const ByteRange& o) const {
    return {start < o.start ? start : o.start, end > o.end ? end : o.end};
  }
  bool operator==(const ByteRange& o) const {
    return start == o.start && end == o.end;
  }
  bool operator!=(const ByteRange& o) const { return !(*this == o); }
  std::string ToString() const;
};

// Validates a range: INVALID_ARGUMENT unless start < end.
absl::Status ValidateRange(const ByteRange& r);

// [offset, offset + length), or INVALID_ARGUMENT when length is 0 or the sum
// wraps. A sum of exactly 2^64-1 gives a range to infinity.
absl::StatusOr<ByteRange> RangeFromOffsetLength(uint64_t offset,
                                                uint64_t length);

// Like RangeFromOffsetLength, and FILE_TOO_BIG when the range reaches past
// kMaxFileSize (for writes, allocation and sizes, not for lock ranges).
absl::StatusOr<ByteRange> FileRange(uint64_t offset, uint64_t length);

}  // namespace rangefs

#endif  // RANGEFS_COMMON_RANGE_H_
