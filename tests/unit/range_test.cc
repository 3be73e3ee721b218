#include "common/range.h"

#include "common/status.h"
#include "gtest/gtest.h"

namespace rangefs {
namespace {

TEST(RangeTest, OffsetLengthBuildsHalfOpenRange) {
  absl::StatusOr<ByteRange> r = RangeFromOffsetLength(4096, 4096);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(*r, (ByteRange{4096, 8192}));
}

TEST(RangeTest, ZeroLengthIsInvalid) {
  EXPECT_EQ(ErrcOf(RangeFromOffsetLength(5, 0).status()),
            Errc::kInvalidArgument);
}

TEST(RangeTest, OverflowingSumIsInvalid) {
  EXPECT_EQ(ErrcOf(RangeFromOffsetLength(kInfinity, 1).status()),
            Errc::kInvalidArgument);
  EXPECT_EQ(ErrcOf(RangeFromOffsetLength(1, kInfinity).status()),
            Errc::kInvalidArgument);
}

TEST(RangeTest, SumOfExactlyMaxReachesInfinity) {
  absl::StatusOr<ByteRange> r = RangeFromOffsetLength(1, kInfinity - 1);
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->ToInfinity());
}

TEST(RangeTest, FileRangesStopAtMaxFileSize) {
  EXPECT_TRUE(FileRange(kMaxFileSize - 1, 1).ok());
  EXPECT_EQ(ErrcOf(FileRange(kMaxFileSize, 1).status()), Errc::kFileTooBig);
}

TEST(RangeTest, AdjacentRangesDoNotOverlap) {
  EXPECT_FALSE((ByteRange{0, 10}).Overlaps(ByteRange{10, 20}));
  EXPECT_TRUE((ByteRange{0, 11}).Overlaps(ByteRange{10, 20}));
}

TEST(RangeTest, InvertedRangeIsInvalid) {
  EXPECT_FALSE(ValidateRange(ByteRange{10, 5}).ok());
  EXPECT_FALSE(ValidateRange(ByteRange{5, 5}).ok());
}

}  // namespace
}  // namespace rangefs
