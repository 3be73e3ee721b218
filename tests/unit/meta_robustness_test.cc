// Bad input never crashes the metadata server and never damages what is
// stored: thousands of random requests with random (mostly invalid)
// arguments, then fsck must be clean.
#include <sys/stat.h>

#include <random>

#include "gtest/gtest.h"
#include "server/meta/meta_server.h"
#include "tests/util/temp_dir.h"

namespace rangefs::meta {
namespace {

TEST(MetaRobustnessTest, RandomRequestsLeaveTheStoreConsistent) {
  testing::TempDir dir;
  auto s = MetaServer::Open(dir.Sub("m"), "fs", {DeviceInfo{0, 4 << 20, ""}},
                            /*sync=*/false);
  ASSERT_TRUE(s.ok());
  MetaServer& m = **s;
  std::mt19937_64 rng(7);
  auto pick = [&](std::initializer_list<uint64_t> v) {
    return *(v.begin() + rng() % v.size());
  };
  auto num = [&]() -> uint64_t {
    return pick({0, 1, 2, 3, 4, 5, 4095, 4096, 1ull << 40, kMaxFileSize,
                 kMaxFileSize + 1, kInfinity - 1, kInfinity, rng()});
  };
  auto name = [&]() -> std::string {
    switch (rng() % 16) {
      case 0:
        return "";
      case 1:
        return ".";
      case 2:
        return "..";
      case 3:
        return "a/b";
      case 4:
        return std::string("x\0y", 3);
      case 5:
        return std::string(300, 'n');
      default:
        return "n" + std::to_string(rng() % 6);
    }
  };
  auto ino = [&]() -> uint64_t { return rng() % 5 ? 1 + rng() % 12 : num(); };
  int ok = 0;
  auto count = [&](const absl::Status& st) { ok += st.ok(); };
  for (int i = 0; i < 50000; ++i) {
    uint64_t sess = rng() % 4;
    switch (rng() % 16) {
      case 0:
        count(m.Create(sess, ino(), name(), static_cast<uint32_t>(rng()), num(),
                       Creds{}, rng() % 2, rng())
                  .status());
        break;
      case 1:
        count(m.Mkdir(sess, ino(), name(), rng(), Creds{}, rng()).status());
        break;
      case 2:
        count(m.Unlink(sess, ino(), name(), rng() % 2).status());
        break;
      case 3:
        count(m.Rmdir(sess, ino(), name()).status());
        break;
      case 4:
        count(m.Rename(sess, ino(), name(), ino(), name(), rng() % 5).status());
        break;
      case 5:
        count(m.Link(sess, ino(), ino(), name()).status());
        break;
      case 6:
        count(m.Symlink(sess, ino(), name(), name(), Creds{}).status());
        break;
      case 7: {
        SetAttrArgs a;
        a.valid = rng() % 1024;
        a.size = num();
        a.mode = rng();
        count(m.SetAttr(sess, ino(), a).status());
        break;
      }
      case 8:
        count(m.MapWrite(sess, ino(), num(), num()).status());
        break;
      case 9:
        count(m.MapRead(sess, ino(), num(), num()).status());
        break;
      case 10:
        count(m.CommitWrite(sess, ino(), {{num(), num()}}, num(), num(),
                            Timespec{})
                  .status());
        break;
      case 11:
        count(m.Fallocate(sess, ino(), rng() % 64, num(), num()).status());
        break;
      case 12:
        count(m.Seek(ino(), num(), rng() % 2).status());
        break;
      case 13:
        count(m.ReadDir(ino(), name(), rng() % 5000, rng() % 2).status());
        break;
      case 14:
        count(m.SetXattr(sess, ino(), "user." + name(), name(), rng() % 4));
        break;
      case 15:
        count(rng() % 2 ? m.Open(sess, ino()).status() : m.Close(sess, ino()));
        break;
    }
  }
  // Enough requests were valid to change real state.
  EXPECT_GT(ok, 3000);
  auto rep = m.Fsck();
  ASSERT_TRUE(rep.ok());
  for (const std::string& p : rep->problems) ADD_FAILURE() << p;
}

}  // namespace
}  // namespace rangefs::meta
