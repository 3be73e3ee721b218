#include "common/status.h"

#include <cerrno>

#include "gtest/gtest.h"

namespace rangefs {
namespace {

TEST(StatusTest, CarriesTheRangefsCode) {
  absl::Status s = MakeError(Errc::kStale, "extent map changed");
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(ErrcOf(s), Errc::kStale);
  EXPECT_EQ(ErrnoOf(s), ESTALE);
  EXPECT_STREQ(ErrcName(ErrcOf(s)), "STALE");
}

TEST(StatusTest, ExplicitErrnoOverridesDefault) {
  absl::Status s = MakeError(Errc::kPermission, "no write bit", EACCES);
  EXPECT_EQ(ErrcOf(s), Errc::kPermission);
  EXPECT_EQ(ErrnoOf(s), EACCES);
}

TEST(StatusTest, OkMapsToOk) {
  EXPECT_TRUE(MakeError(Errc::kOk, "").ok());
  EXPECT_EQ(ErrcOf(absl::OkStatus()), Errc::kOk);
  EXPECT_EQ(ErrnoOf(absl::OkStatus()), 0);
}

TEST(StatusTest, PlainAbslStatusGetsACode) {
  EXPECT_EQ(ErrcOf(absl::NotFoundError("x")), Errc::kNotFound);
  EXPECT_EQ(ErrcOf(absl::UnknownError("x")), Errc::kInternal);
}

}  // namespace
}  // namespace rangefs
