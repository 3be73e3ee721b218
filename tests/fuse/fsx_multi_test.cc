// rangefs-fsx (tests/tools/fsx_multi.cc) on FUSE mounts, bounded for CI
// (label race): six processes at once, each on its own file of one mount;
// three pairs taking turns on shared files through two mounts; the same
// with node page caches small enough to evict. Each run is under the
// watchdog (a hang prints the kernel stacks, aborts the mounts and fails).
// RANGEFS_FSX_OPS sets the operations per process (default 800; the long
// run of docs/fuse.md uses 100000), RANGEFS_FSX_SEED the seed.
#include <fcntl.h>
#include <unistd.h>

#include <cstdlib>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "tests/fuse/two_mounts.h"

namespace rangefs {
namespace {

std::string Env(const char* name, const char* fallback) {
  const char* v = getenv(name);
  return v != nullptr && *v != '\0' ? v : fallback;
}

class FsxMultiTest : public testing::TwoMountsTest {
 protected:
  // Runs rangefs-fsx with `args` (after the common ones) under the
  // watchdog, its output in the test directory.
  void RunFsx(const std::vector<std::string>& args) {
    const std::string log = cluster_->dir() + "/fsx.log";
    std::vector<std::string> argv = {testing::BinDir() + "/tests/rangefs-fsx",
                                     "--ops", Env("RANGEFS_FSX_OPS", "800"),
                                     "--seed", Env("RANGEFS_FSX_SEED", "1")};
    argv.insert(argv.end(), args.begin(), args.end());
    testing::Guarded g = RunGuarded(
        [&] {
          const int fd = open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
          if (fd < 0) return 126;
          dup2(fd, 1);
          dup2(fd, 2);
          std::vector<char*> v;
          for (const std::string& a : argv)
            v.push_back(const_cast<char*>(a.c_str()));
          v.push_back(nullptr);
          execv(v[0], v.data());
          return 127;
        },
        // Generous: a hang, not slowness, is what this bound catches.
        std::max(600, atoi(Env("RANGEFS_FSX_OPS", "800").c_str()) / 10));
    ASSERT_FALSE(g.hung) << g.report << testing::Tail(log, 60);
    EXPECT_TRUE(g.ok()) << testing::Tail(log, 60);
  }
};

TEST_F(FsxMultiTest, SixProcessesOnOneMountEachOnItsOwnFile) {
  RunFsx({"--procs", "6", mnt_[0]});
}

TEST_F(FsxMultiTest, ThreePairsTakingTurnsOnSharedFilesThroughTwoMounts) {
  RunFsx({"--procs", "6", "--shared", mnt_[0], mnt_[1]});
}

// Node caches of 1 MiB: eviction, the node's readahead and the kernel's
// invalidations interleave.
class FsxMultiSmallCacheTest : public FsxMultiTest {
  std::string MountOptions() override { return ",cache_mb=1"; }
};

TEST_F(FsxMultiSmallCacheTest, SixProcessesOnOneMountEachOnItsOwnFile) {
  RunFsx({"--procs", "6", mnt_[0]});
}

TEST_F(FsxMultiSmallCacheTest,
       ThreePairsTakingTurnsOnSharedFilesThroughTwoMounts) {
  RunFsx({"--procs", "6", "--shared", mnt_[0], mnt_[1]});
}

}  // namespace
}  // namespace rangefs
