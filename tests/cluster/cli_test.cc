// The rangefs command line against a local cluster: status, fsck,
// extents, locks and inject print what the servers hold, and errors name
// their cause.
#include <fcntl.h>
#include <sys/wait.h>

#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>

#include "client/rangefs.h"
#include "common/cluster_config.h"
#include "common/fault_injection.h"
#include "gtest/gtest.h"
#include "tests/util/local_cluster.h"
#include "tests/util/subprocess.h"

namespace rangefs {
namespace {

struct Result {
  int code = -1;
  std::string out;
};

class CliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    cluster_ = std::make_unique<testing::LocalCluster>();
    std::string why;
    ASSERT_TRUE(cluster_->Start(&why)) << why;
    conf_ = cluster_->dir() + "/cluster.conf";
    std::ofstream(conf_) << cluster_->config();
  }

  Result Run(std::vector<std::string> args) {
    std::string log = cluster_->dir() + "/cli.out";
    std::remove(log.c_str());
    args.insert(args.begin(), testing::BinDir() + "/client/rangefs");
    testing::Subprocess p;
    Result r;
    if (!p.Start(args, log, {"RANGEFS_CLUSTER=" + conf_})) return r;
    int status = p.Stop(0);  // Signal 0: just wait for it.
    r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    std::ifstream in(log);
    std::stringstream ss;
    ss << in.rdbuf();
    r.out = ss.str();
    return r;
  }

  std::unique_ptr<testing::LocalCluster> cluster_;
  std::string conf_;
};

bool Has(const std::string& s, const std::string& what) {
  return s.find(what) != std::string::npos;
}

TEST_F(CliTest, StatusShowsEveryServerAndTheNodesSessions) {
  auto c = client::Client::Connect(*ParseClusterConfig(cluster_->config()),
                                   client::ClientOptions());
  ASSERT_TRUE(c.ok()) << c.status();
  Result r = Run({"status"});
  EXPECT_EQ(r.code, 0) << r.out;
  EXPECT_TRUE(Has(r.out, "meta")) << r.out;
  EXPECT_TRUE(Has(r.out, "data 0")) << r.out;
  EXPECT_TRUE(Has(r.out, "data 1")) << r.out;
  EXPECT_TRUE(Has(r.out, "1 sessions")) << r.out;
  EXPECT_TRUE(Has(r.out, "node 'node'")) << r.out;
}

TEST_F(CliTest, ExtentsLocksAndFsckDescribeAFile) {
  auto c = client::Client::Connect(*ParseClusterConfig(cluster_->config()),
                                   client::ClientOptions());
  ASSERT_TRUE(c.ok()) << c.status();
  auto fh = (*c)->OpenPath("/f", O_RDWR | O_CREAT);
  ASSERT_TRUE(fh.ok());
  std::string data(3 * 4096, 'x');
  ASSERT_TRUE((*c)->Write(*fh, data.data(), data.size(), 8192).ok());
  ASSERT_TRUE((*c)->Fsync(*fh, false).ok());
  Result e = Run({"extents", "/f"});
  EXPECT_EQ(e.code, 0) << e.out;
  EXPECT_TRUE(Has(e.out, "size 20480")) << e.out;
  EXPECT_TRUE(Has(e.out, "hole")) << e.out;
  EXPECT_TRUE(Has(e.out, "written")) << e.out;
  Result l = Run({"locks", "/f"});
  EXPECT_EQ(l.code, 0) << l.out;
  EXPECT_TRUE(Has(l.out, "INVAL EX")) << l.out;
  Result f = Run({"fsck"});
  EXPECT_EQ(f.code, 0) << f.out;
  EXPECT_TRUE(Has(f.out, "clean")) << f.out;
  Result missing = Run({"extents", "/nope"});
  EXPECT_EQ(missing.code, 1);
  EXPECT_TRUE(Has(missing.out, "/nope")) << missing.out;
}

TEST_F(CliTest, InjectSetsAndClearsFaultsAtTheServers) {
  Result r = Run({"inject", "data.write=0:IO_ERROR"});
  EXPECT_EQ(r.code, 0) << r.out;
  auto c = client::Client::Connect(*ParseClusterConfig(cluster_->config()),
                                   client::ClientOptions());
  ASSERT_TRUE(c.ok());
  auto fh = (*c)->OpenPath("/g", O_RDWR | O_CREAT | O_SYNC);
  ASSERT_TRUE(fh.ok());
  EXPECT_FALSE((*c)->Write(*fh, "abc", 3, 0).ok());
  r = Run({"inject", "--clear"});
  EXPECT_EQ(r.code, 0) << r.out;
  EXPECT_TRUE((*c)->Write(*fh, "abc", 3, 0).ok());
  Result bad = Run({"inject", "nonsense"});
  EXPECT_EQ(bad.code, 1);
  EXPECT_TRUE(Has(bad.out, "POINT=DELAY_MS")) << bad.out;
}

TEST_F(CliTest, UnreachableServersAreNamed) {
  std::ofstream(conf_) << "lockd 127.0.0.1:1\nmeta 127.0.0.1:1\n"
                          "data 0 127.0.0.1:1 4096\n";
  Result r = Run({"status"});
  EXPECT_EQ(r.code, 1);
  EXPECT_TRUE(Has(r.out, "DOWN")) << r.out;
  Result f = Run({"fsck"});
  EXPECT_EQ(f.code, 1);
  EXPECT_TRUE(Has(f.out, "not reachable at 127.0.0.1:1")) << f.out;
}

}  // namespace
}  // namespace rangefs
