// The fixture of the FUSE mount tests: a local cluster and two
// rangefs-fuse daemons (two client nodes) mounted in the test's directory,
// and the watchdog every test that could deadlock runs under. Skipped when
// /dev/fuse is not usable.
#ifndef RANGEFS_TESTS_FUSE_TWO_MOUNTS_H_
#define RANGEFS_TESTS_FUSE_TWO_MOUNTS_H_

#include <fcntl.h>
#include <sys/types.h>
#include <sys/wait.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "tests/util/local_cluster.h"
#include "tests/util/subprocess.h"

namespace rangefs::testing {

bool Mounted(const std::string& path);
std::string ReadFile(const std::string& path);
bool WriteFile(const std::string& path, const std::string& data,
               int flags = O_WRONLY | O_CREAT | O_TRUNC);

// What RunGuarded saw.
struct Guarded {
  bool hung = false;   // Killed past its bound (the report says where).
  int status = 0;      // The child's wait status.
  std::string report;  // When hung: the kernel stacks of the stuck tasks.
  bool ok() const {
    return !hung && WIFEXITED(status) && WEXITSTATUS(status) == 0;
  }
};

class TwoMountsTest : public ::testing::Test {
 protected:
  void SetUp() override;
  void TearDown() override;

  virtual LocalClusterOptions ClusterOptions() { return {}; }
  // More of the daemons' -o options (",name=value...").
  virtual std::string MountOptions() { return ""; }
  // More of daemon `i`'s environment ("NAME=value").
  virtual std::vector<std::string> MountEnv(int) { return {}; }

  void Mount(int i);
  // SIGTERM: the daemon writes back, unmounts and exits.
  void Unmount(int i);

  std::string P(int node, const std::string& name) const {
    return mnt_[node] + "/" + name;
  }

  // The FUSE connection of mount `i` (testing::FuseConnection).
  std::string Connection(int i) const;
  // Aborts both mounts' FUSE connections (their requests fail at once):
  // how a test gets its threads back from a deadlocked kernel. Not through
  // system(): a child would inherit the test's open files of the mounts,
  // and their flush at its exit would hang too.
  void AbortConnections();

  // The watchdog. Runs `body` in a child process of its own process group
  // (its exit code is what `body` returns; it must only make system calls,
  // the child of a threaded process) and waits for it at most `seconds`.
  // Past that the child is taken as deadlocked: the report gets the kernel
  // stacks (/proc/PID/task/*/stack) of the tasks of its group and of the
  // daemons' threads that wait in the kernel, both mounts' FUSE
  // connections are aborted (so the stuck tasks return), the group is
  // killed and the child reaped. Fork before this process opens any file
  // of the mounts: the child's exit would flush them. The mounts are dead
  // after a hang.
  Guarded RunGuarded(const std::function<int()>& body, int seconds) {
    return RunGuarded(std::vector<std::function<int()>>{body}, seconds);
  }
  // The same with several children at once (each body in its own): hung
  // if any is still running at the bound; `status` is the first non-zero
  // one.
  Guarded RunGuarded(const std::vector<std::function<int()>>& bodies,
                     int seconds);

  std::unique_ptr<LocalCluster> cluster_;
  std::string conf_;
  std::string mnt_[2];
  std::unique_ptr<Subprocess> daemons_[2];
};

}  // namespace rangefs::testing

#endif  // RANGEFS_TESTS_FUSE_TWO_MOUNTS_H_
