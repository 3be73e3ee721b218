#include "tests/fuse/two_mounts.h"

#include <signal.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <chrono>
#include <thread>

#include "tests/util/fuse_watchdog.h"

namespace rangefs::testing {
namespace {

constexpr long kFuseMagic = 0x65735546;

}  // namespace

bool Mounted(const std::string& path) {
  struct statfs st;
  return statfs(path.c_str(), &st) == 0 && st.f_type == kFuseMagic;
}

std::string ReadFile(const std::string& path) { return ReadWhole(path); }

bool WriteFile(const std::string& path, const std::string& data, int flags) {
  int fd = open(path.c_str(), flags, 0644);
  if (fd < 0) return false;
  bool ok =
      write(fd, data.data(), data.size()) == static_cast<ssize_t>(data.size());
  return close(fd) == 0 && ok;
}

void TwoMountsTest::SetUp() {
  if (access("/dev/fuse", R_OK | W_OK) != 0) {
    GTEST_SKIP() << "/dev/fuse is not usable here";
  }
  cluster_ = std::make_unique<LocalCluster>(ClusterOptions());
  std::string why;
  ASSERT_TRUE(cluster_->Start(&why)) << why;
  conf_ = cluster_->dir() + "/cluster.conf";
  ASSERT_TRUE(WriteFile(conf_, cluster_->config()));
  for (int i = 0; i < 2; ++i) Mount(i);
}

void TwoMountsTest::TearDown() {
  for (int i = 0; i < 2; ++i) Unmount(i);
}

void TwoMountsTest::Mount(int i) {
  mnt_[i] = cluster_->dir() + "/mnt" + std::to_string(i);
  mkdir(mnt_[i].c_str(), 0755);
  daemons_[i] = std::make_unique<Subprocess>();
  ASSERT_TRUE(daemons_[i]->Start(
      {BinDir() + "/client/rangefs-fuse", conf_, mnt_[i], "-f", "-o",
       "node=node" + std::to_string(i) + ",default_permissions,allow_other" +
           MountOptions()},
      cluster_->dir() + "/node" + std::to_string(i) + ".log", MountEnv(i)));
  for (int t = 0; t < 200 && !Mounted(mnt_[i]); ++t) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ASSERT_TRUE(Mounted(mnt_[i]))
      << cluster_->LogTail("node" + std::to_string(i));
}

void TwoMountsTest::Unmount(int i) {
  if (daemons_[i] == nullptr) return;
  int status = daemons_[i]->Stop(SIGTERM);
  EXPECT_TRUE(WIFEXITED(status)) << "daemon " << i << " status " << status;
  daemons_[i].reset();
  // Also when statfs fails: an aborted connection leaves its mount.
  std::string cmd = "fusermount3 -u -z " + mnt_[i] + " 2>/dev/null";
  (void)!system(cmd.c_str());
}

std::string TwoMountsTest::Connection(int i) const {
  return FuseConnection(mnt_[i]);
}

void TwoMountsTest::AbortConnections() {
  for (int i = 0; i < 2; ++i) AbortFuseConnection(mnt_[i]);
}

Guarded TwoMountsTest::RunGuarded(
    const std::vector<std::function<int()>>& bodies, int seconds) {
  Guarded g;
  std::vector<pid_t> running;
  for (const auto& body : bodies) {
    const pid_t child = fork();
    if (child == 0) {
      setpgid(0, 0);  // Its own group: what it forks is killed with it.
      _exit(body());
    }
    if (child < 0) {
      g.status = -1;
      break;
    }
    running.push_back(child);
  }
  auto reap = [&g](pid_t child, int flags) {
    int status = 0;
    if (waitpid(child, &status, flags) != child) return false;
    if (g.status == 0) g.status = status;
    return true;
  };
  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::seconds(seconds);
  while (!running.empty() && std::chrono::steady_clock::now() < deadline) {
    for (size_t i = 0; i < running.size();) {
      if (reap(running[i], WNOHANG)) {
        running.erase(running.begin() + static_cast<ptrdiff_t>(i));
      } else {
        ++i;
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  if (running.empty()) return g;
  g.hung = true;
  g.report = "stuck after " + std::to_string(seconds) + " s\n";
  for (pid_t child : running) {
    for (pid_t p : ProcessGroup(child)) {
      g.report +=
          "program " + std::to_string(p) + ":\n" + KernelStacks(p, false);
    }
  }
  for (int i = 0; i < 2; ++i) {
    if (daemons_[i] == nullptr) continue;
    g.report += "daemon " + std::to_string(i) + " threads waiting:\n" +
                KernelStacks(daemons_[i]->pid(), true);
  }
  AbortConnections();
  for (pid_t child : running) {
    kill(-child, SIGKILL);  // Its group: ours, by PID.
    reap(child, 0);
  }
  return g;
}

}  // namespace rangefs::testing
