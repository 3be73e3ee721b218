#include "common/cluster_config.h"

#include "common/status.h"
#include "gtest/gtest.h"

namespace rangefs {
namespace {

TEST(ClusterConfigTest, ParsesEveryEntryAndRoundTrips) {
  auto c = ParseClusterConfig(
      "fs_id demo\nlockd 127.0.0.1:7201 # shard 0\nlockd 127.0.0.1:7202\n"
      "meta 127.0.0.1:7001\ndata 0 127.0.0.1:7101 1048576\n");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->fs_id, "demo");
  ASSERT_EQ(c->lockd.size(), 2u);
  EXPECT_EQ(c->lockd[1], "127.0.0.1:7202");
  EXPECT_EQ(c->data[0].size, 1048576u);
  auto again = ParseClusterConfig(c->ToString());
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->ToString(), c->ToString());
}

TEST(ClusterConfigTest, DataServersMayNameABulkAddress) {
  auto c = ParseClusterConfig(
      "lockd a:1;meta a:2;data 0 a:3 4096 bulk=a:13;data 1 b:3 4096");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->data[0].bulk, "a:13");
  EXPECT_EQ(c->data[1].bulk, "");
  auto again = ParseClusterConfig(c->ToString());
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->data[0].bulk, "a:13");
  EXPECT_FALSE(ParseClusterConfig("lockd a:1;meta a:2;data 0 a:3 4096 a:13")
                   .ok());  // Not bulk=.
  EXPECT_FALSE(
      ParseClusterConfig("lockd a:1;meta a:2;data 0 a:3 4096 bulk=nowhere")
          .ok());
  EXPECT_FALSE(
      ParseClusterConfig("lockd a:1;meta a:2;data 0 a:3 4096 bulk=a:1 x").ok());
}

TEST(ClusterConfigTest, SemicolonsSeparateEntriesInTheStringForm) {
  auto c = ParseClusterConfig(
      "lockd 127.0.0.1:1;meta 127.0.0.1:2;data 3 127.0.0.1:4 4096");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->data[0].device, 3u);
}

TEST(ClusterConfigTest, BadEntriesNameTheirLine) {
  auto c = ParseClusterConfig("lockd nowhere\nmeta 127.0.0.1:2\n");
  EXPECT_EQ(ErrcOf(c.status()), Errc::kInvalidArgument);
  EXPECT_NE(std::string(c.status().message()).find("nowhere"),
            std::string::npos);
  EXPECT_FALSE(ParseClusterConfig("meta 127.0.0.1:2").ok());  // No lockd.
  EXPECT_FALSE(
      ParseClusterConfig("lockd a:1;meta a:2;data 0 a:3 10;data 0 a:4 10")
          .ok());  // Device twice.
}

// Regression: a configuration file that does not exist was parsed as
// configuration text and reported as "unknown entry".
TEST(ClusterConfigTest, MissingFileIsReportedAsAMissingFile) {
  auto c = LoadClusterConfig("/nonexistent/cluster.conf");
  EXPECT_EQ(ErrcOf(c.status()), Errc::kNotFound) << c.status();
  EXPECT_NE(std::string(c.status().message()).find("/nonexistent/cluster.conf"),
            std::string::npos);
}

TEST(ClusterConfigTest, ShardsSpreadResources) {
  int counts[3] = {0, 0, 0};
  for (uint64_t ino = 1; ino <= 3000; ++ino) ++counts[ShardOf(ino, 1, 3)];
  for (int c : counts) EXPECT_GT(c, 800);
  EXPECT_EQ(ShardOf(42, 2, 1), 0u);
}

}  // namespace
}  // namespace rangefs
