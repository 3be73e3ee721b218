// The test harness's own cluster: tests running side by side pick ports
// that may be taken before the servers bind them.
#include "tests/util/local_cluster.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <string>

#include "gtest/gtest.h"

namespace rangefs::testing {
namespace {

int PortOf(const std::string& address) {
  return std::stoi(address.substr(address.rfind(':') + 1));
}

// Listens on 127.0.0.1:port, as another test's server would.
int Occupy(int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
      listen(fd, 1) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

TEST(LocalClusterTest, StartsWhenAPortItPickedWasTakenMeanwhile) {
  LocalCluster cluster;
  const std::string meta = cluster.meta_address();
  const std::string data = cluster.data_address(0);
  int a = Occupy(PortOf(meta));
  int b = Occupy(PortOf(data));
  ASSERT_GE(a, 0);
  ASSERT_GE(b, 0);
  std::string why;
  EXPECT_TRUE(cluster.Start(&why)) << why;
  EXPECT_NE(cluster.meta_address(), meta);
  EXPECT_NE(cluster.data_address(0), data);
  EXPECT_NE(cluster.config().find(cluster.meta_address()), std::string::npos);
  std::vector<std::string> problems = cluster.Fsck();
  EXPECT_TRUE(problems.empty())
      << problems[0] << cluster.LogTail("meta") << cluster.LogTail("data0");
  close(a);
  close(b);
}

}  // namespace
}  // namespace rangefs::testing
