// Real FUSE mounts: a local cluster and two rangefs-fuse daemons (two
// client nodes) mounted in the test's directory, driven with ordinary
// system calls. Skipped when /dev/fuse is not usable.
#include <dirent.h>
#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/time.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <new>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "client/fuse/rangefs_ioctl.h"
#include "common/process.h"
#include "gtest/gtest.h"
#include "tests/fuse/two_mounts.h"
#include "tests/util/local_cluster.h"
#include "tests/util/subprocess.h"

namespace rangefs {
namespace {

using testing::Mounted;
using testing::ReadFile;
using testing::WriteFile;

// Runs `cmd` (a shell command, its stderr joined to stdout) and expects
// exit status 0, with its output in the failure message.
void ExpectCommandSucceeds(const std::string& cmd) {
  FILE* p = popen(cmd.c_str(), "r");
  ASSERT_NE(p, nullptr);
  std::string out;
  char buf[4096];
  for (size_t n; (n = fread(buf, 1, sizeof buf, p)) > 0;) out.append(buf, n);
  int status = pclose(p);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << out;
}

class FuseMountTest : public testing::TwoMountsTest {
 protected:
  // Mount 0 makes file "w" and takes a write lock on all of it (`*l`)
  // through `*fd`.
  void HoldWholeFileWriteLock(int* fd, struct flock* l) {
    ASSERT_TRUE(WriteFile(P(0, "w"), "w"));
    *fd = open(P(0, "w").c_str(), O_RDWR);
    ASSERT_GE(*fd, 0);
    *l = {};
    l->l_type = F_WRLCK;
    l->l_whence = SEEK_SET;
    ASSERT_EQ(fcntl(*fd, F_SETLK, l), 0);
  }

  // Mount 0 writes and truncates a file that mount 1 reads (with
  // readahead) and stores into through a shared mapping: every write is an
  // INVAL callback on mount 1 with READs and mapped-page write-back in
  // flight.
  void RevokeUnderReadsAndMappedStores(int readers = 1) {
    // 4 MiB for each reader's readahead to be its own.
    const size_t kLen = static_cast<size_t>(readers) * (4 << 20);
    const int kChunks = static_cast<int>(kLen / (64 << 10)) - 4;
    ASSERT_TRUE(WriteFile(P(0, "busy"), std::string(kLen, 'b')));
    std::atomic<bool> stop{false};
    std::atomic<int> reads{0};
    std::atomic<int> finished{0};
    // The stores come from a child process: once a hang is aborted its
    // next fault is a SIGBUS, which must not end the test. It is forked
    // before any file of the mounts is open here (its exit would flush
    // them).
    void* shared =
        mmap(nullptr, sizeof(std::atomic<bool>), PROT_READ | PROT_WRITE,
             MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    ASSERT_NE(shared, MAP_FAILED);
    auto* child_stop = new (shared) std::atomic<bool>(false);
    const std::string mapped = P(1, "busy");
    const pid_t child = fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
      int fd = open(mapped.c_str(), O_RDWR);
      if (fd < 0) _exit(2);
      char* m = static_cast<char*>(
          mmap(nullptr, 1 << 20, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0));
      if (m == MAP_FAILED) _exit(3);
      for (int i = 0; !child_stop->load(); ++i) {
        m[(i * 4096 * 3) % (1 << 20)] = 'm';
        struct timespec ms = {0, 1000000};
        nanosleep(&ms, nullptr);
      }
      munmap(m, 1 << 20);  // Writes the dirty pages back.
      close(fd);
      _exit(0);
    }
    std::vector<std::thread> reader;
    for (int r = 0; r < readers; ++r) {
      reader.emplace_back([&, r] {
        int fd = open(P(1, "busy").c_str(), O_RDONLY);
        ASSERT_GE(fd, 0);
        std::vector<char> buf(256 << 10);
        // Each from its own place in the file.
        const off_t first =
            static_cast<off_t>(r * kLen / readers) / buf.size() * buf.size();
        while (!stop) {
          for (off_t i = 0; i < static_cast<off_t>(kLen) && !stop;
               i += buf.size()) {
            const off_t off = (first + i) % static_cast<off_t>(kLen);
            EXPECT_GE(pread(fd, buf.data(), buf.size(), off), 0)
                << strerror(errno);
          }
          posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);  // Read it again.
          ++reads;
        }
        close(fd);
        ++finished;
      });
    }
    int child_status = 0;
    std::thread mapper([&] {
      waitpid(child, &child_status, 0);
      ++finished;
    });
    std::atomic<bool> written{false};
    std::thread writer([&] {
      int fd0 = open(P(0, "busy").c_str(), O_RDWR);
      ASSERT_GE(fd0, 0);
      std::string w(64 << 10, 'w');
      for (int i = 0; i < 150; ++i) {
        const off_t off = static_cast<off_t>((i * 389 % kChunks) * (64 << 10));
        ASSERT_EQ(pwrite(fd0, w.data(), w.size(), off),
                  static_cast<ssize_t>(w.size()));
        if (i % 50 == 49) {
          ASSERT_EQ(ftruncate(fd0, kLen / 2), 0);
          ASSERT_EQ(ftruncate(fd0, kLen), 0);
        }
      }
      close(fd0);
      written = true;
      ++finished;
    });
    auto deadline =
        std::chrono::steady_clock::now() + std::chrono::seconds(120);
    while (!written && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    stop = true;
    *child_stop = true;
    // Then the reader and the mapper (whose munmap writes back) stop.
    deadline = std::max(deadline, std::chrono::steady_clock::now()) +
               std::chrono::seconds(30);
    while (finished < readers + 2 &&
           std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    const bool hung = finished < readers + 2;
    if (hung) {
      AbortConnections();
      std::this_thread::sleep_for(std::chrono::seconds(2));
      kill(child, SIGKILL);  // If still stuck: it is ours.
    }
    writer.join();
    for (auto& t : reader) t.join();
    mapper.join();
    munmap(shared, sizeof(std::atomic<bool>));
    ASSERT_FALSE(hung) << "written: " << written
                       << ", hung: " << cluster_->LogTail("node1");
    EXPECT_TRUE(WIFEXITED(child_status) && WEXITSTATUS(child_status) == 0)
        << "mapper status " << child_status;
    EXPECT_GT(reads.load(), 0);
    EXPECT_EQ(ReadFile(P(0, "busy")), ReadFile(P(1, "busy")));
  }
};

TEST_F(FuseMountTest, WriteOnOneMountIsReadOnTheOther) {
  ASSERT_TRUE(WriteFile(P(0, "f"), "hello from node 0\n"));
  EXPECT_EQ(ReadFile(P(1, "f")), "hello from node 0\n");
  ASSERT_TRUE(WriteFile(P(1, "f"), "and back"));
  EXPECT_EQ(ReadFile(P(0, "f")), "and back");
  struct stat st;
  ASSERT_EQ(stat(P(0, "f").c_str(), &st), 0);
  EXPECT_EQ(st.st_size, 8);
}

// The kernel may send RELEASEDIR as soon as a READDIR reply is out: the
// daemon must not touch the listing after replying (it did: a use after
// free that crashed the daemon under `rm -rf` of a few directories).
TEST_F(FuseMountTest, DirectoryListingsClosedRightAfterReadingAreSafe) {
  ASSERT_EQ(mkdir(P(0, "dir").c_str(), 0755), 0);
  for (int i = 0; i < 8; ++i) {
    ASSERT_TRUE(WriteFile(P(0, "dir/f" + std::to_string(i)), "x"));
  }
  std::atomic<int> wrong{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 500 && wrong == 0; ++i) {
        DIR* d = opendir(P(0, "dir").c_str());
        if (d == nullptr) {
          ++wrong;
          break;
        }
        int n = 0;
        while (readdir(d) != nullptr) ++n;
        closedir(d);
        if (n != 10) ++wrong;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(wrong, 0);
  EXPECT_TRUE(Mounted(mnt_[0])) << cluster_->LogTail("node0");
  struct stat st;
  EXPECT_EQ(stat(P(0, "dir/f0").c_str(), &st), 0)
      << "the daemon died: " << strerror(errno);
}

TEST_F(FuseMountTest, NamespaceChangesAreSeenOnTheOtherMount) {
  ASSERT_EQ(mkdir(P(0, "d").c_str(), 0755), 0);
  ASSERT_TRUE(WriteFile(P(0, "d/a"), "a"));
  ASSERT_EQ(rename(P(1, "d/a").c_str(), P(1, "d/b").c_str()), 0);
  EXPECT_NE(access(P(0, "d/a").c_str(), F_OK), 0);
  EXPECT_EQ(ReadFile(P(0, "d/b")), "a");
  ASSERT_EQ(symlink("b", P(0, "d/l").c_str()), 0);
  char target[16] = {};
  EXPECT_EQ(readlink(P(1, "d/l").c_str(), target, sizeof(target)), 1);
  ASSERT_EQ(link(P(1, "d/b").c_str(), P(1, "d/c").c_str()), 0);
  struct stat st;
  ASSERT_EQ(stat(P(0, "d/b").c_str(), &st), 0);
  EXPECT_EQ(st.st_nlink, 2u);
  ASSERT_EQ(unlink(P(0, "d/b").c_str()), 0);
  ASSERT_EQ(unlink(P(0, "d/c").c_str()), 0);
  ASSERT_EQ(unlink(P(0, "d/l").c_str()), 0);
  EXPECT_EQ(rmdir(P(1, "d").c_str()), 0);
}

TEST_F(FuseMountTest, TruncateAndAppendAreCoherent) {
  ASSERT_TRUE(WriteFile(P(0, "t"), std::string(10000, 'x')));
  EXPECT_EQ(ReadFile(P(1, "t")).size(), 10000u);
  ASSERT_EQ(truncate(P(1, "t").c_str(), 100), 0);
  EXPECT_EQ(ReadFile(P(0, "t")), std::string(100, 'x'));
  ASSERT_TRUE(WriteFile(P(0, "t"), "A", O_WRONLY | O_APPEND));
  ASSERT_TRUE(WriteFile(P(1, "t"), "B", O_WRONLY | O_APPEND));
  EXPECT_EQ(ReadFile(P(0, "t")), std::string(100, 'x') + "AB");
}

TEST_F(FuseMountTest, UnlinkedFileStaysUsableThroughAnOpenDescriptor) {
  ASSERT_TRUE(WriteFile(P(0, "u"), "still here"));
  int fd = open(P(0, "u").c_str(), O_RDWR);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(unlink(P(1, "u").c_str()), 0);
  char buf[16] = {};
  EXPECT_EQ(pread(fd, buf, sizeof(buf), 0), 10);
  EXPECT_EQ(std::string(buf), "still here");
  EXPECT_EQ(pwrite(fd, "STILL", 5, 0), 5);
  EXPECT_EQ(pread(fd, buf, 10, 0), 10);
  EXPECT_EQ(std::string(buf, 10), "STILL here");
  close(fd);
}

// rmdir(2), and a rename(2) over an empty directory, leave the removed
// directory usable through a descriptor open on either mount until its
// last close, as ext4 does: fstat shows nlink 0, a listing has nothing but
// "." and "..", nothing can be made in it (ENOENT). The daemon used to
// answer the fstat with ENOENT: the metadata server had freed the inode.
TEST_F(FuseMountTest, RemovedDirectoriesStayUsableThroughOpenDescriptors) {
  for (int opener = 0; opener < 2; ++opener) {
    SCOPED_TRACE("open on mount " + std::to_string(opener));
    const std::string k = std::to_string(opener);
    for (const char* d : {"gone", "from", "over"}) {
      ASSERT_EQ(mkdir(P(0, d + k).c_str(), 0755), 0) << strerror(errno);
    }
    const int gone = open(P(opener, "gone" + k).c_str(), O_RDONLY);
    const int over = open(P(opener, "over" + k).c_str(), O_RDONLY);
    ASSERT_GE(gone, 0);
    ASSERT_GE(over, 0);
    ASSERT_EQ(rmdir(P(0, "gone" + k).c_str()), 0) << strerror(errno);
    ASSERT_EQ(rename(P(0, "from" + k).c_str(), P(0, "over" + k).c_str()), 0)
        << strerror(errno);
    for (int fd : {gone, over}) {
      struct stat st;
      ASSERT_EQ(fstat(fd, &st), 0) << strerror(errno);
      EXPECT_TRUE(S_ISDIR(st.st_mode));
      EXPECT_EQ(st.st_nlink, 0u);
      EXPECT_EQ(openat(fd, "new", O_CREAT | O_WRONLY, 0644), -1);
      EXPECT_EQ(errno, ENOENT);
      EXPECT_EQ(mkdirat(fd, "newdir", 0755), -1);
      EXPECT_EQ(errno, ENOENT);
      DIR* dir = fdopendir(dup(fd));
      ASSERT_NE(dir, nullptr);
      while (dirent* e = readdir(dir)) {
        const std::string name = e->d_name;
        EXPECT_TRUE(name == "." || name == "..") << name;
      }
      closedir(dir);
      close(fd);
    }
    struct stat st;
    EXPECT_EQ(stat(P(1 - opener, "over" + k).c_str(), &st), 0);
    EXPECT_EQ(stat(P(1 - opener, "gone" + k).c_str(), &st), -1);
  }
  // Both mounts have let go: nothing is left over.
  for (int i = 0; i < 2; ++i) Unmount(i);
  EXPECT_EQ(cluster_->Fsck(), std::vector<std::string>{});
}

TEST_F(FuseMountTest, DirectIoFallocateAndSeekWork) {
  int fd = open(P(0, "dio").c_str(), O_RDWR | O_CREAT | O_DIRECT, 0644);
  ASSERT_GE(fd, 0);
  void* buf = nullptr;
  ASSERT_EQ(posix_memalign(&buf, 4096, 8192), 0);
  memset(buf, 'D', 8192);
  EXPECT_EQ(pwrite(fd, buf, 8192, 65536), 8192);
  close(fd);
  std::string all = ReadFile(P(1, "dio"));
  ASSERT_EQ(all.size(), 65536u + 8192);
  EXPECT_EQ(all.substr(65536), std::string(8192, 'D'));
  fd = open(P(1, "dio").c_str(), O_RDWR);
  ASSERT_GE(fd, 0);
  EXPECT_EQ(lseek(fd, 0, SEEK_DATA), 65536);
  EXPECT_EQ(lseek(fd, 65536, SEEK_HOLE), 65536 + 8192);
  EXPECT_EQ(
      fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 65536, 4096),
      0);
  close(fd);
  all = ReadFile(P(0, "dio"));
  EXPECT_EQ(all.substr(65536, 4096), std::string(4096, '\0'));
  EXPECT_EQ(all.substr(65536 + 4096), std::string(4096, 'D'));
  free(buf);
}

// The FUSE module passes only allocate, punch and zero to the daemon:
// collapse and insert range go through an ioctl (and the CLI).
TEST_F(FuseMountTest, CollapseAndInsertRangeThroughIoctlAndCli) {
  std::string data;
  for (char c = 'a'; c < 'a' + 8; ++c) data += std::string(4096, c);
  ASSERT_TRUE(WriteFile(P(0, "shift"), data));
  ASSERT_EQ(ReadFile(P(1, "shift")), data);  // Node 1 has it cached.
  int fd = open(P(0, "shift").c_str(), O_RDWR);
  ASSERT_GE(fd, 0);
  rangefs_shift_range r{4096, 8192};
  ASSERT_EQ(ioctl(fd, RANGEFS_IOC_COLLAPSE_RANGE, &r), 0) << strerror(errno);
  close(fd);
  data.erase(4096, 8192);
  EXPECT_EQ(ReadFile(P(1, "shift")), data);
  // The CLI inserts a zeroed block at 4096.
  std::string cmd = testing::BinDir() + "/client/rangefs fallocate --insert " +
                    P(1, "shift") + " 4096 4096";
  ASSERT_EQ(system(cmd.c_str()), 0);
  data.insert(4096, std::string(4096, '\0'));
  EXPECT_EQ(ReadFile(P(0, "shift")), data);
  // Unaligned: EINVAL from the node, nothing changed.
  fd = open(P(0, "shift").c_str(), O_RDWR);
  rangefs_shift_range bad{100, 4096};
  EXPECT_EQ(ioctl(fd, RANGEFS_IOC_COLLAPSE_RANGE, &bad), -1);
  EXPECT_EQ(errno, EINVAL);
  close(fd);
  EXPECT_EQ(ReadFile(P(1, "shift")), data);
}

// The node's counters come through an ioctl on any file or directory;
// fault rules only on a mount made with fault_control=1 (these mounts are
// not), and a malformed request is refused.
TEST_F(FuseMountTest, NodeStatsAndFaultIoctls) {
  const int dir = open(mnt_[0].c_str(), O_RDONLY | O_DIRECTORY);
  ASSERT_GE(dir, 0);
  rangefs_node_stats st = {};
  ASSERT_EQ(ioctl(dir, RANGEFS_IOC_NODE_STATS, &st), 0) << strerror(errno);
  EXPECT_NE(st.session_id, 0u);
  rangefs_fault_spec f = {};
  snprintf(f.spec, sizeof f.spec, "unsafe.data.ignore_fence=0:INTERNAL");
  EXPECT_EQ(ioctl(dir, RANGEFS_IOC_SET_FAULT, &f), -1);
  EXPECT_EQ(errno, EPERM);
  // Collapse and insert need a file.
  rangefs_shift_range r{0, 4096};
  EXPECT_EQ(ioctl(dir, RANGEFS_IOC_COLLAPSE_RANGE, &r), -1);
  close(dir);
}

TEST_F(FuseMountTest, ExtendedAttributesRoundTrip) {
  ASSERT_TRUE(WriteFile(P(0, "x"), ""));
  ASSERT_EQ(setxattr(P(0, "x").c_str(), "user.color", "blue", 4, 0), 0);
  char v[16] = {};
  EXPECT_EQ(getxattr(P(1, "x").c_str(), "user.color", v, sizeof(v)), 4);
  EXPECT_EQ(std::string(v, 4), "blue");
  EXPECT_EQ(getxattr(P(1, "x").c_str(), "user.color", v, 2), -1);
  EXPECT_EQ(errno, ERANGE);
  EXPECT_EQ(getxattr(P(1, "x").c_str(), "user.none", v, sizeof(v)), -1);
  EXPECT_EQ(errno, ENODATA);
}

// POSIX ownership and permission rules for a user other than root, on the
// mount that did not create the tree: chown/chgrp limits, set-id bits
// cleared by writes, truncates and chmod, setgid directories, sticky
// directories, utimes rules, access checks.
TEST_F(FuseMountTest, OtherUsersFollowPosixOwnershipAndPermissionRules) {
  const uid_t kUser = 65534;
  const gid_t kGroup = 65534;
  const gid_t kOtherGroup = 1;  // Not one of kUser's groups.
  auto make = [&](const std::string& name, mode_t mode) {
    ASSERT_TRUE(WriteFile(P(0, name), ""));
    ASSERT_EQ(chmod(P(0, name).c_str(), mode), 0);
  };
  // The mounts live in the test's private directory: let the user through.
  ASSERT_EQ(chmod(cluster_->dir().c_str(), 0711), 0);
  ASSERT_EQ(mkdir(P(0, "u").c_str(), 0777), 0);
  ASSERT_EQ(chmod(P(0, "u").c_str(), 0777), 0);
  make("u/writable", 0666);
  make("u/readonly", 0444);
  ASSERT_EQ(mkdir(P(0, "u/closed").c_str(), 0700), 0);
  make("u/closed/f", 0644);
  ASSERT_EQ(mkdir(P(0, "u/setgid").c_str(), 0777), 0);
  ASSERT_EQ(chown(P(0, "u/setgid").c_str(), 0, kOtherGroup), 0);
  ASSERT_EQ(chmod(P(0, "u/setgid").c_str(), 02777), 0);
  ASSERT_EQ(mkdir(P(0, "u/sticky").c_str(), 01777), 0);
  ASSERT_EQ(chmod(P(0, "u/sticky").c_str(), 01777), 0);
  make("u/sticky/roots", 0666);

  int out[2];
  ASSERT_EQ(pipe(out), 0);
  pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    close(out[0]);
    std::string failed;
    auto check = [&](const char* what, bool ok) {
      if (!ok) failed += std::string(what) + "; ";
    };
    auto fails_with = [](int rc, int e) { return rc == -1 && errno == e; };
    if (setgroups(0, nullptr) != 0 || setresgid(kGroup, kGroup, kGroup) != 0 ||
        setresuid(kUser, kUser, kUser) != 0) {
      failed = "could not become the other user";
    } else {
      umask(0);
      const std::string u = P(1, "u/");
      const std::string mine = u + "mine";
      int fd = open(mine.c_str(), O_CREAT | O_WRONLY, 0644);
      check("create", fd >= 0);
      close(fd);
      check("chown to root refused",
            fails_with(chown(mine.c_str(), 0, -1), EPERM));
      check("chgrp to a foreign group refused",
            fails_with(chown(mine.c_str(), -1, kOtherGroup), EPERM));
      check("chgrp to own group", chown(mine.c_str(), -1, kGroup) == 0);
      chmod(mine.c_str(), 04755);
      fd = open(mine.c_str(), O_WRONLY);
      check("write", fd >= 0 && write(fd, "x", 1) == 1);
      close(fd);
      struct stat st;
      check("write clears set-user-id",
            stat(mine.c_str(), &st) == 0 && (st.st_mode & 04000) == 0);
      chmod(mine.c_str(), 02755);
      check("truncate", truncate(mine.c_str(), 0) == 0);
      check("truncate clears set-group-id",
            stat(mine.c_str(), &st) == 0 && (st.st_mode & 02000) == 0);
      const std::string writable = u + "writable";
      check("utimes to now on a writable file",
            utimes(writable.c_str(), nullptr) == 0);
      struct timeval tv[2] = {{1, 0}, {1, 0}};
      check("explicit utimes on another's file refused",
            fails_with(utimes(writable.c_str(), tv), EPERM));
      check("chmod of another's file refused",
            fails_with(chmod(writable.c_str(), 0777), EPERM));
      check("open of a read-only file for writing refused",
            fails_with(open((u + "readonly").c_str(), O_WRONLY), EACCES));
      check("search of a closed directory refused",
            fails_with(stat((u + "closed/f").c_str(), &st), EACCES));
      check("mkdir in a setgid directory",
            mkdir((u + "setgid/sub").c_str(), 0777) == 0);
      check("subdirectory inherits group and setgid",
            stat((u + "setgid/sub").c_str(), &st) == 0 &&
                st.st_gid == kOtherGroup && (st.st_mode & 02000) != 0);
      fd = open((u + "setgid/f").c_str(), O_CREAT | O_WRONLY, 02777);
      close(fd);
      check("file inherits group, drops setgid (not a member)",
            stat((u + "setgid/f").c_str(), &st) == 0 &&
                st.st_gid == kOtherGroup && (st.st_mode & 02000) == 0);
      check("chmod g+s of a file of a foreign group is dropped",
            chmod((u + "setgid/f").c_str(), 02755) == 0 &&
                stat((u + "setgid/f").c_str(), &st) == 0 &&
                (st.st_mode & 02000) == 0);
      check("rename of another's file in a sticky directory refused",
            fails_with(rename((u + "sticky/roots").c_str(),
                              (u + "sticky/moved").c_str()),
                       EPERM));
      check("unlink of another's file in a sticky directory refused",
            fails_with(unlink((u + "sticky/roots").c_str()), EPERM));
      check("trusted attributes refused",
            fails_with(setxattr(mine.c_str(), "trusted.a", "1", 1, 0), EPERM));
    }
    (void)!write(out[1], failed.data(), failed.size());
    _exit(0);
  }
  close(out[1]);
  std::string failed;
  char buf[512];
  for (ssize_t n; (n = read(out[0], buf, sizeof buf)) > 0;)
    failed.append(buf, n);
  close(out[0]);
  int status = 0;
  waitpid(child, &status, 0);
  EXPECT_TRUE(WIFEXITED(status));
  EXPECT_EQ(failed, "");
}

// open(2) of `path` with `flags` by uid/gid `id` (no supplementary
// groups), in a child: 0 or the errno.
int OpenAs(uint32_t id, const std::string& path, int flags) {
  pid_t child = fork();
  if (child < 0) return -1;
  if (child == 0) {
    if (setgroups(0, nullptr) != 0 || setresgid(id, id, id) != 0 ||
        setresuid(id, id, id) != 0) {
      _exit(255);
    }
    int fd = open(path.c_str(), flags);
    _exit(fd >= 0 ? 0 : errno);
  }
  int status = 0;
  waitpid(child, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

// The kernel's xattr form of an ACL: {tag, perm, id} after a version word.
std::string AclValue(const std::vector<std::array<uint32_t, 3>>& entries) {
  std::string v("\x02\x00\x00\x00", 4);
  for (const auto& [tag, perm, id] : entries) {
    const uint16_t t = tag, p = perm;
    v.append(reinterpret_cast<const char*>(&t), 2);
    v.append(reinterpret_cast<const char*>(&p), 2);
    v.append(reinterpret_cast<const char*>(&id), 4);
  }
  return v;
}

// POSIX ACLs across mounts: the kernel of each mount checks them, caching
// them like attributes, so a list changed through one mount must reach the
// other's next check (the INODE lock's callback drops the kernel's copy),
// and a default list must shape a file another mount creates.
TEST_F(FuseMountTest, AclsSetThroughOneMountAreCheckedByTheOther) {
  constexpr uint32_t kUser = 65534, kNone = ~0u;
  constexpr uint32_t kUserObj = 1, kNamedUser = 2, kGroupObj = 4, kMask = 16,
                     kOther = 32;
  auto grant = [&](uint32_t perm) {
    return AclValue({{kUserObj, 6, kNone},
                     {kNamedUser, perm, kUser},
                     {kGroupObj, 0, kNone},
                     {kMask, perm, kNone},
                     {kOther, 0, kNone}});
  };
  ASSERT_EQ(chmod(cluster_->dir().c_str(), 0711), 0);
  ASSERT_EQ(chmod(mnt_[0].c_str(), 0755), 0);
  ASSERT_TRUE(WriteFile(P(0, "f"), "secret"));
  ASSERT_EQ(chmod(P(0, "f").c_str(), 0600), 0);
  EXPECT_EQ(OpenAs(kUser, P(1, "f"), O_RDONLY), EACCES);
  std::string v = grant(4);
  ASSERT_EQ(setxattr(P(0, "f").c_str(), "system.posix_acl_access", v.data(),
                     v.size(), 0),
            0)
      << strerror(errno);
  EXPECT_EQ(OpenAs(kUser, P(1, "f"), O_RDONLY), 0);
  EXPECT_EQ(OpenAs(kUser, P(1, "f"), O_WRONLY), EACCES);
  struct stat st;
  ASSERT_EQ(stat(P(1, "f").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0640u);  // The mask is the group class.
  v = grant(0);
  ASSERT_EQ(setxattr(P(0, "f").c_str(), "system.posix_acl_access", v.data(),
                     v.size(), 0),
            0);
  EXPECT_EQ(OpenAs(kUser, P(1, "f"), O_RDONLY), EACCES);
  // chmod through mount 1 rewrites the mask mount 0 checks.
  ASSERT_EQ(chmod(P(1, "f").c_str(), 0660), 0);
  EXPECT_EQ(OpenAs(kUser, P(0, "f"), O_RDONLY), EACCES);  // Named: ---.
  v = grant(6);
  ASSERT_EQ(setxattr(P(1, "f").c_str(), "system.posix_acl_access", v.data(),
                     v.size(), 0),
            0);
  ASSERT_EQ(chmod(P(1, "f").c_str(), 0640), 0);  // Mask r--.
  EXPECT_EQ(OpenAs(kUser, P(0, "f"), O_RDONLY), 0);
  EXPECT_EQ(OpenAs(kUser, P(0, "f"), O_WRONLY), EACCES);

  // A default list set through mount 0 shapes mount 1's creates (which it
  // would otherwise make ahead of the server, with the umask).
  ASSERT_EQ(mkdir(P(0, "d").c_str(), 0755), 0);
  v = grant(6);
  ASSERT_EQ(setxattr(P(0, "d").c_str(), "system.posix_acl_default", v.data(),
                     v.size(), 0),
            0);
  const mode_t old_umask = umask(022);
  int fd = open(P(1, "d/new").c_str(), O_CREAT | O_WRONLY, 0660);
  umask(old_umask);
  ASSERT_GE(fd, 0) << strerror(errno);
  close(fd);
  ASSERT_EQ(stat(P(1, "d/new").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0660u);
  ASSERT_EQ(stat(P(0, "d/new").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0660u);
  EXPECT_EQ(OpenAs(kUser, P(0, "d/new"), O_RDWR), 0);
  char got[64];
  EXPECT_EQ(getxattr(P(0, "d/new").c_str(), "system.posix_acl_access", got,
                     sizeof got),
            static_cast<ssize_t>(v.size()));
}

// Export handles (name_to_handle_at, open_by_handle_at; what an NFS
// re-export and handle-based tools use) name an inode cluster-wide: one
// made through mount 0 opens through mount 1, whose kernel has never seen
// the inode (the daemon looks up "." of its number), and a handle of a
// file unlinked since is stale.
TEST_F(FuseMountTest, ExportHandlesOpenThroughEitherMountAndGoStale) {
  ASSERT_EQ(mkdir(P(0, "d").c_str(), 0755), 0);
  ASSERT_TRUE(WriteFile(P(0, "d/f"), "by handle"));
  ASSERT_TRUE(WriteFile(P(0, "d/gone"), "x"));
  auto handle = [&](const std::string& path) {
    auto h = std::make_unique<char[]>(sizeof(file_handle) + MAX_HANDLE_SZ);
    auto* fh = reinterpret_cast<file_handle*>(h.get());
    fh->handle_bytes = MAX_HANDLE_SZ;
    int mount_id = 0;
    EXPECT_EQ(name_to_handle_at(AT_FDCWD, path.c_str(), fh, &mount_id, 0), 0)
        << path << ": " << strerror(errno);
    return h;
  };
  auto f = handle(P(0, "d/f"));
  auto d = handle(P(0, "d"));
  auto gone = handle(P(0, "d/gone"));
  ASSERT_EQ(unlink(P(0, "d/gone").c_str()), 0);
  int root1 = open(mnt_[1].c_str(), O_RDONLY | O_DIRECTORY);
  ASSERT_GE(root1, 0);
  int fd = open_by_handle_at(root1, reinterpret_cast<file_handle*>(f.get()),
                             O_RDONLY);
  ASSERT_GE(fd, 0) << strerror(errno);
  char buf[32] = {};
  EXPECT_EQ(read(fd, buf, sizeof buf), 9);
  EXPECT_EQ(std::string(buf), "by handle");
  close(fd);
  fd = open_by_handle_at(root1, reinterpret_cast<file_handle*>(d.get()),
                         O_RDONLY | O_DIRECTORY);
  EXPECT_GE(fd, 0) << strerror(errno);
  struct stat st;
  EXPECT_EQ(fstatat(fd, "f", &st, 0), 0);
  close(fd);
  EXPECT_EQ(open_by_handle_at(root1, reinterpret_cast<file_handle*>(gone.get()),
                              O_RDONLY),
            -1);
  EXPECT_EQ(errno, ESTALE);
  close(root1);
}

// The kernel never moves a FUSE inode's atime; the daemon does, at opens
// for reading and of directories, by the mount's flags (relatime unless
// told otherwise), following them through `-o remount,...` (what
// mount(8) runs the helper with); the ctime stays. A read-only remount
// refuses changes with EROFS while the other mount goes on writing.
TEST_F(FuseMountTest, AtimeAndReadOnlyFollowTheMountsFlagsThroughRemounts) {
  auto remount = [&](const std::string& opts) {
    ExpectCommandSucceeds(testing::BinDir() + "/client/rangefs-fuse " + conf_ +
                          " " + mnt_[0] + " -o remount," + opts + " 2>&1");
  };
  auto times = [&](int node, const std::string& name) {
    struct stat st = {};
    EXPECT_EQ(stat(P(node, name).c_str(), &st), 0);
    return std::make_pair(st.st_atim.tv_sec * 1000000000 + st.st_atim.tv_nsec,
                          st.st_ctim.tv_sec * 1000000000 + st.st_ctim.tv_nsec);
  };
  auto pause = [] {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  };
  ASSERT_TRUE(WriteFile(P(0, "a"), "data"));
  const auto made = times(0, "a");
  pause();
  EXPECT_EQ(ReadFile(P(0, "a")), "data");
  const auto read1 = times(0, "a");
  EXPECT_GT(read1.first, made.first) << "relatime: atime not after mtime";
  EXPECT_EQ(read1.second, made.second) << "an access moved the ctime";
  EXPECT_EQ(times(1, "a"), read1);  // The other mount sees it at once.
  pause();
  EXPECT_EQ(ReadFile(P(0, "a")), "data");
  EXPECT_EQ(times(0, "a").first, read1.first) << "relatime moved it again";

  remount("strictatime");
  pause();
  EXPECT_EQ(ReadFile(P(0, "a")), "data");
  const auto strict = times(0, "a");
  EXPECT_GT(strict.first, read1.first);
  remount("noatime");
  pause();
  EXPECT_EQ(ReadFile(P(0, "a")), "data");
  EXPECT_EQ(times(0, "a").first, strict.first);

  // A directory listed after a change to it (relatime), on mount 1.
  ASSERT_EQ(mkdir(P(0, "d").c_str(), 0755), 0);
  pause();
  ASSERT_TRUE(WriteFile(P(0, "d/f"), ""));
  const auto dir_before = times(1, "d");
  DIR* dir = opendir(P(1, "d").c_str());
  ASSERT_NE(dir, nullptr);
  while (readdir(dir) != nullptr) {
  }
  closedir(dir);
  EXPECT_GT(times(1, "d").first, dir_before.first);

  remount("ro");
  std::ifstream mounts("/proc/mounts");
  std::string line, opts;
  while (std::getline(mounts, line)) {
    if (line.find(" " + mnt_[0] + " ") != std::string::npos) opts = line;
  }
  EXPECT_NE(opts.find(" ro,"), std::string::npos) << opts;
  EXPECT_EQ(open(P(0, "new").c_str(), O_CREAT | O_WRONLY, 0644), -1);
  EXPECT_EQ(errno, EROFS);
  EXPECT_EQ(open(P(0, "a").c_str(), O_WRONLY), -1);
  EXPECT_EQ(errno, EROFS);
  EXPECT_EQ(chmod(P(0, "a").c_str(), 0600), -1);
  EXPECT_EQ(errno, EROFS);
  EXPECT_EQ(mkdir(P(0, "e").c_str(), 0755), -1);
  EXPECT_EQ(errno, EROFS);
  EXPECT_EQ(ReadFile(P(0, "a")), "data");
  ASSERT_TRUE(WriteFile(P(1, "a"), "more"));  // The other mount writes on.
  EXPECT_EQ(ReadFile(P(0, "a")), "more");
  remount("rw");
  EXPECT_TRUE(WriteFile(P(0, "new"), "x"));
  // Superblock flags too (the kernel then syncs each write; a remount
  // cannot change dirsync, on any filesystem: MS_RMT_MASK).
  remount("sync");
  std::ifstream info("/proc/self/mountinfo");
  opts.clear();
  while (std::getline(info, line)) {
    if (line.find(" " + mnt_[0] + " ") != std::string::npos) opts = line;
  }
  EXPECT_NE(opts.find(" rw,sync,"), std::string::npos) << opts;
  EXPECT_NE(opts.find(" rw,"), std::string::npos) << opts;
  EXPECT_TRUE(WriteFile(P(0, "new"), "synced"));
  remount("async");
  EXPECT_EQ(ReadFile(P(1, "new")), "synced");
}

// write(2) of part of a page keeps the whole page locked in the kernel
// while its WRITE waits for the node's locks; a callback that invalidates
// other bytes of that page must not wait for it (the daemon excluded only
// the bytes of the request, not its pages: both mounts hung for good).
TEST_F(FuseMountTest, OverlappingPartialPageWritesFromBothMountsDoNotDeadlock) {
  ASSERT_TRUE(WriteFile(P(0, "f"), std::string(16 * 4096, 'i')));
  std::atomic<int> finished{0};
  std::atomic<bool> stop{false};
  std::string last[2];
  std::vector<std::thread> writers;
  for (int node = 0; node < 2; ++node) {
    writers.emplace_back([&, node] {
      int fd = open(P(node, "f").c_str(), O_RDWR);
      for (int i = 0; fd >= 0 && i < 100 && !stop; ++i) {
        std::string bytes(500, static_cast<char>('a' + (i + node) % 26));
        for (int page = 0; page < 16; page += 3) {
          if (pwrite(fd, bytes.data(), bytes.size(),
                     page * 4096 + 100 + node * 200) < 0) {
            break;
          }
        }
        last[node] = bytes;
      }
      if (fd >= 0) close(fd);
      ++finished;
    });
  }
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(90);
  while (finished < 2 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  const bool hung = finished < 2;
  if (hung) {
    stop = true;
    AbortConnections();  // So the stuck writers return.
  }
  for (auto& t : writers) t.join();
  ASSERT_FALSE(hung) << "writers hung: " << cluster_->LogTail("node0");
  // The writes overlap by 300 bytes; each node's own 200 are its last.
  for (int node = 0; node < 2; ++node) {
    std::string data = ReadFile(P(1 - node, "f"));
    ASSERT_EQ(data.size(), 16u * 4096);
    EXPECT_EQ(data.substr(3 * 4096 + 100 + node * 500, 200),
              last[node].substr(0, 200));
  }
}

// tests/fuse/fsx.py: random writes, reads, truncates, punches, mapped
// stores and O_DIRECT writes on one file, alternating between the two
// mounts, checked against a byte model after every step. Seed 2 read
// zeros past a truncated EOF through the other mount's stale i_size until
// the daemon asked the kernel to refresh attributes on read
// (FUSE_CAP_AUTO_INVAL_DATA).
TEST_F(FuseMountTest, FsxRandomOperationsOnBothMountsMatchAModel) {
  struct Run {
    int seed, steps;
    const char* mix;  // "more": also O_DIRECT reads, allocate, reopen.
  };
  for (const Run& run :
       {Run{2, 1300, ""}, Run{8, 500, ""}, Run{60, 500, "more"}}) {
    std::string cmd = std::string("python3 ") + RANGEFS_SOURCE_DIR +
                      "/tests/fuse/fsx.py " + mnt_[0] + " " + mnt_[1] + " " +
                      std::to_string(run.seed) + " " +
                      std::to_string(run.steps) + " " + run.mix + " 2>&1";
    ExpectCommandSucceeds(cmd);
  }
}

// tests/fuse/posix_diff.py: the same system calls on a mount and on a
// local directory (errno, modes, links, owners, which times move, xattrs,
// rename/rmdir rules, special files; again as uid 65534 in sticky and
// setgid directories) must give the same results. It found a write-back
// that moved the mtime after a chmod (WriteBackKeepsTheMtimeOfTheWrite).
TEST_F(FuseMountTest, SystemCallsMatchALocalFilesystem) {
  ASSERT_EQ(chmod(cluster_->dir().c_str(), 0711), 0);
  const std::string ref = cluster_->dir() + "/reference";
  ASSERT_EQ(mkdir(ref.c_str(), 0755), 0);
  ASSERT_EQ(chmod(mnt_[0].c_str(), 0755), 0);
  std::string cmd = std::string("python3 ") + RANGEFS_SOURCE_DIR +
                    "/tests/fuse/posix_diff.py " + ref + " " + mnt_[0] +
                    " 2>&1";
  ExpectCommandSucceeds(cmd);
}

// The kernel keeps a regular file's attributes while the node holds its
// INODE lock (op_getattr's timeout); every change elsewhere must reach a
// stat at once: another mount's chmod, truncate, extending write, and this
// mount's own write-back (block count) and mapped stores (mtime).
// Whether stat(2) of `path` returns within `ms` (its result in *rc), run
// on a thread of its own: a stat the kernel must ask a stopped daemon
// about waits until the daemon runs again.
bool StatReturnsWithin(const std::string& path, int ms, int* rc) {
  auto done = std::make_shared<std::atomic<int>>(INT_MIN);
  std::thread([path, done] {
    struct stat st;
    done->store(stat(path.c_str(), &st) == 0 ? 0 : errno);
  }).detach();
  for (int t = 0; t < ms / 10 && done->load() == INT_MIN; ++t) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  *rc = done->load();
  return *rc != INT_MIN;
}

// The kernel keeps names and their absence (its dentries) while the node
// holds the directory's INODE lock: a path walk of a known path needs no
// daemon. Another mount's change of the directory calls that lock back,
// which drops them (the dentry epoch), so the change is seen at once.
TEST_F(FuseMountTest, KernelKeepsNamesUntilAnotherMountChangesThem) {
  ASSERT_EQ(mkdir(P(0, "d").c_str(), 0755), 0);
  ASSERT_EQ(mkdir(P(0, "d/e").c_str(), 0755), 0);
  ASSERT_TRUE(WriteFile(P(0, "d/e/f"), "f"));
  struct stat st;
  ASSERT_EQ(stat(P(1, "d/e/f").c_str(), &st), 0);
  ASSERT_NE(stat(P(1, "d/e/none").c_str(), &st), 0);
  // Mount 1's daemon stopped: its kernel answers from what it keeps.
  daemons_[1]->Signal(SIGSTOP);
  int rc_f = INT_MIN, rc_none = INT_MIN;
  const bool f_kept = StatReturnsWithin(P(1, "d/e/f"), 3000, &rc_f);
  const bool none_kept = StatReturnsWithin(P(1, "d/e/none"), 3000, &rc_none);
  daemons_[1]->Signal(SIGCONT);
  EXPECT_TRUE(f_kept) << "a known name went to the daemon";
  EXPECT_EQ(rc_f, f_kept ? 0 : INT_MIN);
  EXPECT_TRUE(none_kept) << "a known absence went to the daemon";
  EXPECT_EQ(rc_none, none_kept ? ENOENT : INT_MIN);

  // Each change on mount 0 is seen by mount 1 right away.
  ASSERT_TRUE(WriteFile(P(0, "d/e/none"), "n"));  // Absent -> present.
  EXPECT_EQ(ReadFile(P(1, "d/e/none")), "n");
  ASSERT_EQ(rename(P(0, "d/e/f").c_str(), P(0, "d/e/g").c_str()), 0);
  EXPECT_NE(stat(P(1, "d/e/f").c_str(), &st), 0);  // Present -> absent.
  EXPECT_EQ(ReadFile(P(1, "d/e/g")), "f");
  ASSERT_EQ(rename(P(0, "d/e/none").c_str(), P(0, "d/e/g").c_str()), 0);
  EXPECT_EQ(ReadFile(P(1, "d/e/g")), "n");  // Replaced: another inode.
  ASSERT_EQ(rename(P(0, "d/e").c_str(), P(0, "d/e2").c_str()), 0);
  EXPECT_NE(stat(P(1, "d/e/g").c_str(), &st), 0);  // A directory above.
  EXPECT_EQ(ReadFile(P(1, "d/e2/g")), "n");
  ASSERT_EQ(unlink(P(0, "d/e2/g").c_str()), 0);
  ASSERT_EQ(rmdir(P(0, "d/e2").c_str()), 0);
  ASSERT_EQ(mkdir(P(0, "d/e2").c_str(), 0700), 0);  // Same name, new dir.
  ASSERT_EQ(stat(P(1, "d/e2").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0700u);
  EXPECT_NE(stat(P(1, "d/e2/g").c_str(), &st), 0);
  // And the other way round: mount 0 kept names too.
  ASSERT_EQ(stat(P(0, "d/e2").c_str(), &st), 0);
  ASSERT_EQ(rmdir(P(1, "d/e2").c_str()), 0);
  EXPECT_NE(stat(P(0, "d/e2").c_str(), &st), 0);
  ASSERT_TRUE(WriteFile(P(1, "d/e2"), "file now"));
  EXPECT_EQ(ReadFile(P(0, "d/e2")), "file now");
}

TEST_F(FuseMountTest, CachedAttributesFollowChangesOnEitherMount) {
  ASSERT_TRUE(WriteFile(P(0, "f"), std::string(10000, 'a')));
  struct stat st;
  for (int round = 0; round < 5; ++round) {
    ASSERT_EQ(stat(P(1, "f").c_str(), &st), 0);  // Cached on mount 1.
    const mode_t mode = round % 2 ? 0640 : 0604;
    ASSERT_EQ(chmod(P(0, "f").c_str(), mode), 0);
    ASSERT_EQ(stat(P(1, "f").c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 07777, mode);
    ASSERT_EQ(truncate(P(0, "f").c_str(), 5000 + round), 0);
    ASSERT_EQ(stat(P(1, "f").c_str(), &st), 0);
    EXPECT_EQ(st.st_size, 5000 + round);
    ASSERT_TRUE(WriteFile(P(0, "f"), "z", O_WRONLY | O_APPEND));
    ASSERT_EQ(stat(P(1, "f").c_str(), &st), 0);
    EXPECT_EQ(st.st_size, 5001 + round);
  }
  // This mount's own write-back: the blocks show up after fsync.
  int fd = open(P(1, "g").c_str(), O_RDWR | O_CREAT, 0644);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(fstat(fd, &st), 0);
  std::string data(1 << 20, 'b');
  ASSERT_EQ(write(fd, data.data(), data.size()),
            static_cast<ssize_t>(data.size()));
  ASSERT_EQ(fstat(fd, &st), 0);
  ASSERT_EQ(fsync(fd), 0);
  ASSERT_EQ(fstat(fd, &st), 0);
  EXPECT_GE(st.st_blocks, (1 << 20) / 512);
  // A store through a shared mapping moves mtime once written back.
  struct stat before;
  ASSERT_EQ(fstat(fd, &before), 0);
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  char* map = static_cast<char*>(
      mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0));
  ASSERT_NE(map, MAP_FAILED);
  map[0] = 'm';
  ASSERT_EQ(msync(map, 4096, MS_SYNC), 0);
  munmap(map, 4096);
  ASSERT_EQ(fstat(fd, &st), 0);
  EXPECT_TRUE(st.st_mtim.tv_sec > before.st_mtim.tv_sec ||
              (st.st_mtim.tv_sec == before.st_mtim.tv_sec &&
               st.st_mtim.tv_nsec > before.st_mtim.tv_nsec));
  close(fd);
}

TEST_F(FuseMountTest, RecordLocksConflictAcrossMounts) {
  ASSERT_TRUE(WriteFile(P(0, "lk"), std::string(100, 'l')));
  int fa = open(P(0, "lk").c_str(), O_RDWR);
  int fb = open(P(1, "lk").c_str(), O_RDWR);
  ASSERT_GE(fa, 0);
  ASSERT_GE(fb, 0);
  struct flock l = {};
  l.l_type = F_WRLCK;
  l.l_whence = SEEK_SET;
  l.l_start = 10;
  l.l_len = 20;
  ASSERT_EQ(fcntl(fa, F_SETLK, &l), 0) << strerror(errno);
  struct flock t = {};
  t.l_type = F_RDLCK;
  t.l_whence = SEEK_SET;
  t.l_start = 15;
  t.l_len = 1;
  EXPECT_EQ(fcntl(fb, F_SETLK, &t), -1);
  EXPECT_TRUE(errno == EAGAIN || errno == EACCES) << strerror(errno);
  ASSERT_EQ(fcntl(fb, F_GETLK, &t), 0);
  EXPECT_EQ(t.l_type, F_WRLCK);
  EXPECT_EQ(t.l_start, 10);
  EXPECT_EQ(t.l_len, 20);
  // Outside the range: free.
  t.l_type = F_WRLCK;
  t.l_start = 50;
  t.l_len = 5;
  EXPECT_EQ(fcntl(fb, F_SETLK, &t), 0) << strerror(errno);
  // Closing any descriptor of the file drops the process's locks on it.
  close(fa);
  t.l_start = 15;
  t.l_len = 1;
  EXPECT_EQ(fcntl(fb, F_SETLK, &t), 0) << strerror(errno);
  // flock: exclusive on one mount keeps the other out.
  int ga = open(P(0, "lk").c_str(), O_RDWR);
  ASSERT_GE(ga, 0);
  ASSERT_EQ(flock(ga, LOCK_EX), 0);
  EXPECT_EQ(flock(fb, LOCK_EX | LOCK_NB), -1);
  EXPECT_EQ(errno, EWOULDBLOCK);
  ASSERT_EQ(flock(ga, LOCK_UN), 0);
  EXPECT_EQ(flock(fb, LOCK_EX | LOCK_NB), 0) << strerror(errno);
  close(ga);
  close(fb);
}

// Open file description locks (F_OFD_*): owned by the open file, not the
// process. They conflict across mounts, between two descriptions of one
// process, and go at the last close of their description (not at the close
// of another descriptor of the file, as POSIX locks do).
TEST_F(FuseMountTest, OpenFileDescriptionLocksAcrossMounts) {
  ASSERT_TRUE(WriteFile(P(0, "ofd"), std::string(100, 'o')));
  int fa = open(P(0, "ofd").c_str(), O_RDWR);
  int fa2 = open(P(0, "ofd").c_str(), O_RDWR);
  int fb = open(P(1, "ofd").c_str(), O_RDWR);
  ASSERT_GE(fa, 0);
  ASSERT_GE(fa2, 0);
  ASSERT_GE(fb, 0);
  struct flock l = {};
  l.l_type = F_WRLCK;
  l.l_whence = SEEK_SET;
  l.l_start = 10;
  l.l_len = 20;
  ASSERT_EQ(fcntl(fa, F_OFD_SETLK, &l), 0) << strerror(errno);
  struct flock t = l;
  t.l_type = F_RDLCK;
  t.l_start = 15;
  t.l_len = 1;
  // Another mount, and another description in this process: refused.
  EXPECT_EQ(fcntl(fb, F_OFD_SETLK, &t), -1);
  EXPECT_TRUE(errno == EAGAIN || errno == EACCES) << strerror(errno);
  EXPECT_EQ(fcntl(fa2, F_OFD_SETLK, &t), -1);
  EXPECT_TRUE(errno == EAGAIN || errno == EACCES) << strerror(errno);
  struct flock g = t;
  ASSERT_EQ(fcntl(fb, F_OFD_GETLK, &g), 0) << strerror(errno);
  EXPECT_EQ(g.l_type, F_WRLCK);
  EXPECT_EQ(g.l_start, 10);
  EXPECT_EQ(g.l_len, 20);
  EXPECT_EQ(g.l_pid, -1);  // An OFD lock has no process.
  // Closing another descriptor of the file keeps the lock (POSIX locks
  // would go).
  close(fa2);
  EXPECT_EQ(fcntl(fb, F_OFD_SETLK, &t), -1);
  // A blocking wait on the other mount ends when the holder's description
  // is closed.
  pid_t child = fork();
  if (child == 0) {
    close(fa);  // The holder's description is the parent's alone.
    struct flock w = t;
    alarm(20);
    _exit(fcntl(fb, F_OFD_SETLKW, &w) == 0 ? 0 : 1);
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  int status = 0;
  EXPECT_EQ(waitpid(child, &status, WNOHANG), 0) << "the wait did not wait";
  close(fa);
  ASSERT_EQ(waitpid(child, &status, 0), child);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  close(fb);
}

void OnAlarm(int) {}

TEST_F(FuseMountTest, BlockedRecordLockWaitIsInterruptedBySignal) {
  struct flock l = {};
  int fa = -1;
  ASSERT_NO_FATAL_FAILURE(HoldWholeFileWriteLock(&fa, &l));
  std::string path = P(1, "w");
  pid_t child = fork();
  if (child == 0) {
    struct sigaction sa = {};
    sa.sa_handler = OnAlarm;  // No SA_RESTART: the wait ends with EINTR.
    sigaction(SIGALRM, &sa, nullptr);
    int fb = open(path.c_str(), O_RDWR);
    struct flock w = {};
    w.l_type = F_WRLCK;
    w.l_whence = SEEK_SET;
    alarm(1);
    int r = fcntl(fb, F_SETLKW, &w);
    _exit(r == -1 && errno == EINTR ? 0 : 1);
  }
  int status = 0;
  pid_t done = 0;
  for (int i = 0; i < 200 && done == 0; ++i) {  // At most 10 s.
    done = waitpid(child, &status, WNOHANG);
    if (done == 0) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  if (done == 0) {
    // A FUSE request the daemon never answers cannot even be killed; the
    // unmount in TearDown ends it (the daemon gives up lock waits then).
    kill(child, SIGKILL);
    FAIL() << "the interrupted lock wait did not end";
  }
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  // The cancelled wait left nothing behind: after the unlock the file is
  // free for anyone.
  l.l_type = F_UNLCK;
  ASSERT_EQ(fcntl(fa, F_SETLK, &l), 0);
  int fb = open(path.c_str(), O_RDWR);
  struct flock w = {};
  w.l_type = F_WRLCK;
  w.l_whence = SEEK_SET;
  EXPECT_EQ(fcntl(fb, F_SETLK, &w), 0) << strerror(errno);
  close(fb);
  close(fa);
}

// A lock wait the daemon gives up because it is stopping (SIGTERM) is an
// error the caller can read: not EINTR, which the kernel turns into
// ERESTARTSYS for a restart, and with no signal pending that reached the
// caller as errno 512.
// The last bytes of a file of the largest size (2^63 - 1) through the
// mounts: written, synced, read on both mounts and after a reopen.
TEST_F(FuseMountTest, TheLastBytesOfTheLargestFileWorkThroughMounts) {
  constexpr off_t kLast = static_cast<off_t>((uint64_t{1} << 63) - 2);
  int fd = open(P(0, "big").c_str(), O_RDWR | O_CREAT, 0644);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(pwrite(fd, "Z", 1, kLast), 1) << strerror(errno);
  ASSERT_EQ(fsync(fd), 0) << strerror(errno);
  char c = 0;
  ASSERT_EQ(pread(fd, &c, 1, kLast), 1) << strerror(errno);
  EXPECT_EQ(c, 'Z');
  close(fd);
  int g = open(P(1, "big").c_str(), O_RDONLY);
  ASSERT_GE(g, 0);
  struct stat st;
  ASSERT_EQ(fstat(g, &st), 0);
  EXPECT_EQ(st.st_size, kLast + 1);
  // (A read reaching past 2^63 - 1 is EOVERFLOW in the kernel itself.)
  c = 0;
  EXPECT_EQ(pread(g, &c, 1, kLast), 1) << strerror(errno);
  EXPECT_EQ(c, 'Z');
  close(g);
}

// Record locks are POSIX's: a lock that conflicts with no held lock is
// granted even while another process waits for an overlapping range (as
// on Linux). Here the holder of [5, 15) extends its lock to [0, 5) while
// an OFD wait for [0, 10) is queued.
TEST_F(FuseMountTest, RecordLockIsNotHeldBackByAWaiter) {
  ASSERT_TRUE(WriteFile(P(0, "rw"), std::string(100, 'r')));
  int fd = open(P(0, "rw").c_str(), O_RDWR);
  ASSERT_GE(fd, 0);
  struct flock l = {};
  l.l_type = F_WRLCK;
  l.l_whence = SEEK_SET;
  l.l_start = 5;
  l.l_len = 10;
  ASSERT_EQ(fcntl(fd, F_SETLK, &l), 0) << strerror(errno);
  pid_t child = fork();
  if (child == 0) {
    alarm(20);
    int g = open(P(1, "rw").c_str(), O_RDWR);
    struct flock w = {};
    w.l_type = F_WRLCK;
    w.l_whence = SEEK_SET;
    w.l_len = 10;
    _exit(g >= 0 && fcntl(g, F_OFD_SETLKW, &w) == 0 ? 0 : 1);
  }
  // Until the child's wait is queued (if it is not yet, the lock below is
  // granted all the same: the test cannot pass wrongly).
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  struct flock more = l;
  more.l_start = 0;
  more.l_len = 5;
  EXPECT_EQ(fcntl(fd, F_SETLK, &more), 0) << strerror(errno);
  close(fd);  // Drops both: the child's wait is granted.
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
}

// F_SETLKW waits that would close a cycle across two mounts: the wait
// that closes it gets EDEADLK, as on one machine, instead of both hanging.
TEST_F(FuseMountTest, RecordLockWaitCycleAcrossMountsIsEdeadlk) {
  ASSERT_TRUE(WriteFile(P(0, "dx"), "x"));
  ASSERT_TRUE(WriteFile(P(0, "dy"), "y"));
  int ready[2];
  ASSERT_EQ(pipe(ready), 0);
  struct flock l = {};
  l.l_type = F_WRLCK;
  l.l_whence = SEEK_SET;
  pid_t child = fork();
  if (child == 0) {
    // A process of its own (its own lock owner) on mount 1: holds dy,
    // then waits for dx.
    alarm(30);
    int y = open(P(1, "dy").c_str(), O_RDWR);
    struct flock m = l;
    if (y < 0 || fcntl(y, F_SETLK, &m) != 0) _exit(2);
    (void)!write(ready[1], "r", 1);
    int x = open(P(1, "dx").c_str(), O_RDWR);
    if (x < 0) _exit(2);
    _exit(fcntl(x, F_SETLKW, &m) == 0 ? 0 : (errno == EDEADLK ? 3 : 4));
  }
  int x = open(P(0, "dx").c_str(), O_RDWR);
  ASSERT_GE(x, 0);
  ASSERT_EQ(fcntl(x, F_SETLK, &l), 0) << strerror(errno);
  char c;
  ASSERT_EQ(read(ready[0], &c, 1), 1);
  // Until the child waits for dx (a bound, not a timed assertion: if it
  // is not waiting yet there is no cycle and the wait below is ended by
  // the alarm, which fails the test).
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  int y = open(P(0, "dy").c_str(), O_RDWR);
  ASSERT_GE(y, 0);
  struct sigaction sa = {}, old = {};
  sa.sa_handler = OnAlarm;  // No SA_RESTART: a hang ends with EINTR.
  sigaction(SIGALRM, &sa, &old);
  alarm(20);
  struct flock m = l;
  const int r = fcntl(y, F_SETLKW, &m);
  const int err = errno;
  alarm(0);
  sigaction(SIGALRM, &old, nullptr);
  EXPECT_EQ(r, -1);
  EXPECT_EQ(err, EDEADLK) << strerror(err);
  // The cycle is broken: the child gets dx once this process lets go.
  close(x);
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  close(y);
  close(ready[0]);
  close(ready[1]);
}

TEST_F(FuseMountTest, LockWaitEndedByTheDaemonStoppingIsARealError) {
  struct flock l = {};
  int fa = -1;
  ASSERT_NO_FATAL_FAILURE(HoldWholeFileWriteLock(&fa, &l));
  std::string path = P(1, "w");
  int report[2];
  ASSERT_EQ(pipe(report), 0);
  pid_t child = fork();
  if (child == 0) {
    close(report[0]);
    int fb = open(path.c_str(), O_RDWR);
    struct flock w = {};
    w.l_type = F_WRLCK;
    w.l_whence = SEEK_SET;
    (void)!write(report[1], "w", 1);  // About to wait.
    int r = fcntl(fb, F_SETLKW, &w);
    int e = r == -1 ? errno : 0;
    (void)!write(report[1], &e, sizeof(e));
    _exit(0);
  }
  close(report[1]);
  char c;
  ASSERT_EQ(read(report[0], &c, 1), 1);
  std::this_thread::sleep_for(std::chrono::milliseconds(300));  // Waiting.
  Unmount(1);  // SIGTERM: the daemon gives up its lock waits.
  int e = -1;
  EXPECT_EQ(read(report[0], &e, sizeof(e)), static_cast<ssize_t>(sizeof(e)));
  close(report[0]);
  int status = 0;
  waitpid(child, &status, 0);
  EXPECT_EQ(e, ENOLCK) << strerror(e) << " (" << e << ")";
  close(fa);
}

// What `mount -t fuse.rangefs CLUSTER DIR -o ...` runs through mount.fuse3:
// `rangefs CLUSTER DIR -o ...`, which returns once the detached daemon
// has mounted; the mount shows its type and source; FUSE's own options
// (max_read) reach libfuse and the kernel; unmounting ends the daemon.
TEST_F(FuseMountTest, MountHelperFormMountsInTheBackground) {
  std::string dir = cluster_->dir() + "/helper";
  mkdir(dir.c_str(), 0755);
  testing::Subprocess mount;
  ASSERT_TRUE(mount.Start({testing::BinDir() + "/client/rangefs", conf_, dir,
                           "-o", "node=helper,fsname=myfs,max_read=131072"},
                          cluster_->dir() + "/helper.log"));
  int status = mount.Stop(0);  // Waits: it returns once mounted.
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0)
      << cluster_->LogTail("helper");
  ASSERT_TRUE(Mounted(dir));
  std::string mounts = ReadFile("/proc/mounts");
  EXPECT_NE(mounts.find("myfs " + dir + " fuse.rangefs"), std::string::npos)
      << mounts;
  ASSERT_TRUE(WriteFile(dir + "/h", "via helper"));
  EXPECT_EQ(ReadFile(P(1, "h")), "via helper");
  std::string big;
  for (int i = 0; i < 3000; ++i) big += std::to_string(i) + " of 3000\n";
  ASSERT_TRUE(WriteFile(P(1, "big"), big));
  EXPECT_TRUE(ReadFile(dir + "/big") == big);  // In READs of 128 KiB.
  std::string cmd = "fusermount3 -u " + dir;
  ASSERT_EQ(system(cmd.c_str()), 0);
  EXPECT_FALSE(Mounted(dir));
  // A bad mount point fails with the cause, before detaching.
  testing::Subprocess bad;
  ASSERT_TRUE(bad.Start({testing::BinDir() + "/client/rangefs", conf_,
                         cluster_->dir() + "/no/such/dir"},
                        cluster_->dir() + "/bad.log"));
  status = bad.Stop(0);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) != 0);
  EXPECT_NE(ReadFile(cluster_->dir() + "/bad.log").find("mount point"),
            std::string::npos)
      << ReadFile(cluster_->dir() + "/bad.log");
}

TEST_F(FuseMountTest, CleanShutdownWritesDirtyDataBack) {
  ASSERT_TRUE(WriteFile(P(0, "late"), std::string(300000, 'L')));
  Unmount(0);
  EXPECT_EQ(ReadFile(P(1, "late")), std::string(300000, 'L'));
}

// A process-directed SIGTERM goes to any one of the daemon's threads. On
// one that is not reading /dev/fuse (a gRPC or pool thread), libfuse
// before 3.18 only sets the exit flag: the loop went on waiting for the
// next request, and the daemon exited minutes later or never. Sent here
// to such a thread (one waiting on a futex) on purpose.
TEST_F(FuseMountTest, SigtermOnAnyThreadEndsTheDaemonPromptly) {
  ASSERT_TRUE(WriteFile(P(0, "t"), "x"));
  // Once the mount is idle: no request or worker is left to end the loop.
  std::this_thread::sleep_for(std::chrono::seconds(1));
  const pid_t pid = daemons_[0]->pid();
  pid_t target = 0;
  const std::string tasks = "/proc/" + std::to_string(pid) + "/task";
  DIR* d = opendir(tasks.c_str());
  ASSERT_NE(d, nullptr);
  while (dirent* e = readdir(d)) {
    const pid_t tid = static_cast<pid_t>(atoi(e->d_name));
    if (tid <= 0 || tid == pid) continue;
    // The first field of .../syscall is the call it is blocked in.
    std::ifstream sc(tasks + "/" + e->d_name + "/syscall");
    long nr = -1;
    if (sc >> nr && nr == SYS_futex) {
      target = tid;
      break;
    }
  }
  closedir(d);
  ASSERT_NE(target, 0) << "no daemon thread waits on a futex";
  ASSERT_EQ(syscall(SYS_tgkill, pid, target, SIGTERM), 0);
  // Exited: a zombie, still our child until Unmount reaps it.
  auto exited = [&] {
    std::ifstream stat_file("/proc/" + std::to_string(pid) + "/stat");
    std::string pid_field, comm, state;
    stat_file >> pid_field >> comm >> state;
    return state == "Z";
  };
  for (int i = 0; i < 100 && !exited(); ++i) {  // 10 s.
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_TRUE(exited()) << "the daemon still ran 10 s after SIGTERM";
  if (!exited()) {
    struct stat st;
    (void)stat(P(0, "t").c_str(), &st);  // A request lets the old loop go.
  }
  Unmount(0);
  EXPECT_EQ(ReadFile(P(1, "t")), "x");
}

// statfs counts inodes as df -i expects: f_files is the total, of which
// f_ffree are free, so the used count (f_files - f_ffree) is the files
// there are and moves with each create.
TEST_F(FuseMountTest, StatfsInodeCountsAddUp) {
  struct statfs before, after;
  ASSERT_EQ(statfs(mnt_[0].c_str(), &before), 0);
  EXPECT_GE(before.f_files, before.f_ffree);
  ASSERT_TRUE(WriteFile(P(0, "counted"), "x"));
  ASSERT_EQ(mkdir(P(0, "counted.d").c_str(), 0755), 0);
  ASSERT_EQ(statfs(mnt_[1].c_str(), &after), 0);
  EXPECT_EQ(after.f_files, before.f_files);
  EXPECT_EQ(after.f_files - after.f_ffree, before.f_files - before.f_ffree + 2);
}

// Mount 1 answers every GETATTR 300 ms late (the wait for a lock held
// by another node, made long).
class FuseSlowAttrMountTest : public FuseMountTest {
 protected:
  std::vector<std::string> MountEnv(int i) override {
    if (i != 1) return {};
    return {"RANGEFS_FAULTS=fuse.getattr.before_reply=300"};
  }
  // Mount 0 writes `len` bytes 'a' to `name`; mount 1 opens it with
  // `flags` and reads it all, so its kernel holds the pages and the size.
  // The descriptor on mount 1 (the test fails if there is none).
  int CachedOnMount1(const std::string& name, size_t len, int flags) {
    EXPECT_TRUE(WriteFile(P(0, name), std::string(len, 'a')));
    int fd = open(P(1, name).c_str(), flags);
    EXPECT_GE(fd, 0) << strerror(errno);
    std::string buf(len, '\0');
    EXPECT_EQ(pread(fd, buf.data(), len, 0), static_cast<ssize_t>(len));
    return fd;
  }
};

// The kernel drops an attribute reply when a notification for the inode
// came while it was being answered; a read(2) past the kernel's old
// i_size would then stop there. Here mount 1 knows the file at 64 KiB,
// mount 0 makes it 128 KiB, mount 1 reads past 64 KiB (the kernel asks
// for the size) and mount 0 revokes mount 1's cached first page while
// that answer is on its way. The read must still see the new size.
TEST_F(FuseSlowAttrMountTest, ReadPastAnOldSizeSeesTheNewOneDespiteARevoke) {
  const size_t kOld = 64 << 10;
  for (int round = 0; round < 3; ++round) {
    const std::string name = "grow" + std::to_string(round);
    // A file open for writing on mount 1 too (its kernel may dirty pages).
    int fd = CachedOnMount1(name, kOld, round == 0 ? O_RDONLY : O_RDWR);
    ASSERT_GE(fd, 0);
    // The file grows on mount 0.
    int w = open(P(0, name).c_str(), O_WRONLY);
    ASSERT_GE(w, 0);
    ASSERT_EQ(pwrite(w, std::string(kOld, 'd').data(), kOld, kOld),
              static_cast<ssize_t>(kOld));
    ASSERT_EQ(fsync(w), 0);
    std::atomic<ssize_t> got{-2};
    std::string tail(kOld, '\0');
    std::thread reader([&] { got = pread(fd, tail.data(), kOld, kOld); });
    // While mount 1's answer waits, mount 0 writes a page mount 1 caches.
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    EXPECT_EQ(pwrite(w, "e", 1, 0), 1);
    EXPECT_EQ(fsync(w), 0);
    reader.join();
    EXPECT_EQ(got.load(), static_cast<ssize_t>(kOld)) << "round " << round;
    EXPECT_TRUE(tail == std::string(kOld, 'd')) << "round " << round;
    close(w);
    close(fd);
  }
}

// A stat's answer reaches its caller even when the kernel drops it, but
// the kernel's i_size stays old, and a mapping of the size the stat gave
// faults SIGBUS past it (Python's mmap does fstat, then maps): overtaken
// answers of a stat give the size to the kernel too.
TEST_F(FuseSlowAttrMountTest, MappingTheSizeAnOvertakenStatGaveWorks) {
  const size_t kOld = 64 << 10;
  int fd = CachedOnMount1("st", kOld, O_RDWR);
  ASSERT_GE(fd, 0);
  int w = open(P(0, "st").c_str(), O_WRONLY);
  ASSERT_GE(w, 0);
  ASSERT_EQ(pwrite(w, std::string(kOld, 'd').data(), kOld, kOld),
            static_cast<ssize_t>(kOld));
  ASSERT_EQ(fsync(w), 0);
  struct stat st;
  std::atomic<int> stated{-2};
  std::thread stater([&] { stated = fstat(fd, &st); });
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  EXPECT_EQ(pwrite(w, "e", 1, 0), 1);  // Overtakes mount 1's answer.
  EXPECT_EQ(fsync(w), 0);
  stater.join();
  close(w);
  ASSERT_EQ(stated.load(), 0);
  ASSERT_EQ(st.st_size, static_cast<off_t>(2 * kOld));
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    char* m = static_cast<char*>(
        mmap(nullptr, 2 * kOld, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0));
    if (m == MAP_FAILED) _exit(2);
    _exit(m[2 * kOld - 1] == 'd' ? 0 : 3);  // SIGBUS past a stale i_size.
  }
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0)
      << (WIFSIGNALED(status) ? strsignal(WTERMSIG(status)) : "exit")
      << " status " << status;
  close(fd);
}

// The other direction: mount 0 truncates a file mount 1 knows larger, and
// the answer that would make mount 1's i_size smaller is overtaken too.
// No store can shrink i_size, but the pages past the new end went with
// the truncate's callback: the read sends READs for them, their short
// answers shrink i_size, and the read stops at the new end.
TEST_F(FuseSlowAttrMountTest, ReadAfterAnotherMountsTruncateStopsAtTheNewEnd) {
  const size_t kOld = 128 << 10;
  const size_t kNew = 64 << 10;
  for (int round = 0; round < 2; ++round) {
    const std::string name = "shrink" + std::to_string(round);
    int fd = CachedOnMount1(name, kOld, round == 0 ? O_RDONLY : O_RDWR);
    ASSERT_GE(fd, 0);
    std::string buf(kOld, '\0');
    ASSERT_EQ(truncate(P(0, name).c_str(), kNew), 0);
    std::atomic<ssize_t> got{-2};
    std::thread reader([&] { got = pread(fd, buf.data(), kOld, 0); });
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    int w = open(P(0, name).c_str(), O_WRONLY);
    EXPECT_GE(w, 0);
    EXPECT_EQ(pwrite(w, "e", 1, 0), 1);
    EXPECT_EQ(fsync(w), 0);
    close(w);
    reader.join();
    EXPECT_EQ(got.load(), static_cast<ssize_t>(kNew)) << "round " << round;
    close(fd);
  }
}

// The size store of an overtaken answer writes the file's last byte into
// the kernel's page: a byte a process stored there through a shared
// mapping (not yet written back) must survive it.
TEST_F(FuseSlowAttrMountTest,
       AnOvertakenAnswerKeepsAByteStoredThroughAMapping) {
  const size_t kLen = 64 << 10;
  ASSERT_TRUE(WriteFile(P(0, "m"), std::string(kLen, 'a')));
  int fd = open(P(1, "m").c_str(), O_RDWR);
  ASSERT_GE(fd, 0);
  char* map = static_cast<char*>(
      mmap(nullptr, kLen, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0));
  ASSERT_NE(map, MAP_FAILED);
  map[kLen - 1] = 'Z';  // The last page dirty in mount 1's kernel.
  // Mount 1's attributes go (a chmod on mount 0), so its next read past
  // the end asks for them; a second chmod comes while the answer waits:
  // the answer is overtaken (by an attribute notification: no page of
  // mount 1 goes).
  ASSERT_EQ(chmod(P(0, "m").c_str(), 0600), 0);
  std::atomic<ssize_t> got{-2};
  std::thread reader([&] {
    char c;
    got = pread(fd, &c, 1, kLen);
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  EXPECT_EQ(chmod(P(0, "m").c_str(), 0640), 0);
  reader.join();
  EXPECT_EQ(got.load(), 0);  // At the end.
  EXPECT_EQ(map[kLen - 1], 'Z');
  ASSERT_EQ(msync(map, kLen, MS_SYNC), 0);
  munmap(map, kLen);
  close(fd);
  std::string back = ReadFile(P(0, "m"));
  ASSERT_EQ(back.size(), kLen);
  EXPECT_EQ(back[kLen - 1], 'Z');
}

// Mounts whose nodes' leases at lockd are 1.5 s (a killed one's locks
// free sooner than the default 10 s).
class FuseShortLeaseMountTest : public FuseMountTest {
 protected:
  std::string MountOptions() override { return ",lease_ms=1500"; }
};

// kill -9 of one mount's daemon: lockd keeps its locks (a record lock,
// and the DATA and INVAL locks of what it wrote) until its lease runs
// out, then the other mount gets them and goes on. What the killed mount
// fsync'd is there; what it wrote after is there whole or not at all.
TEST_F(FuseShortLeaseMountTest,
       KillNineOfOneMountLetsTheOtherGoOnAfterItsLease) {
  int fd = open(P(0, "k").c_str(), O_RDWR | O_CREAT, 0644);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(pwrite(fd, std::string(8192, 's').data(), 8192, 0), 8192);
  ASSERT_EQ(fsync(fd), 0);
  ASSERT_EQ(pwrite(fd, std::string(4096, 'u').data(), 4096, 8192), 4096);
  struct flock fl;
  memset(&fl, 0, sizeof(fl));
  fl.l_type = F_WRLCK;
  fl.l_whence = SEEK_SET;
  fl.l_len = 100;
  ASSERT_EQ(fcntl(fd, F_SETLK, &fl), 0);
  daemons_[0]->Stop(SIGKILL);
  daemons_[0].reset();
  close(fd);  // Fails: the connection went with its daemon.
  const std::string cmd = "fusermount3 -u -z " + mnt_[0] + " 2>/dev/null";
  (void)!system(cmd.c_str());
  // Mount 1's open waits for the INODE lock mount 0 held, its lock for
  // the record lock: both come when lockd evicts mount 0.
  const auto asked = std::chrono::steady_clock::now();
  int g = open(P(1, "k").c_str(), O_RDWR);
  ASSERT_GE(g, 0);
  ASSERT_EQ(fcntl(g, F_SETLKW, &fl), 0) << strerror(errno);
  // What the wait took (printed, not checked: the machine is shared).
  RecordProperty(
      "wait_for_the_killed_mount_ms",
      static_cast<int>(std::chrono::duration_cast<std::chrono::milliseconds>(
                           std::chrono::steady_clock::now() - asked)
                           .count()));
  ASSERT_EQ(pwrite(g, "v", 1, 0), 1);
  ASSERT_EQ(fsync(g), 0);
  std::string back(16384, '\0');
  const ssize_t n = pread(g, back.data(), back.size(), 0);
  ASSERT_TRUE(n == 8192 || n == 12288) << n;
  EXPECT_EQ(back[0], 'v');
  EXPECT_EQ(back.substr(1, 8191), std::string(8191, 's'));
  if (n == 12288) {
    EXPECT_EQ(back.substr(8192, 4096), std::string(4096, 'u'));
  }
  close(g);
}

// A mount whose node is evicted while a process holds a record lock
// through it: the other mount gets the lock, and the process learns of
// the loss (EIO on its next operation on the file, as NFS reports a lost
// lock), never by finding the file changed under a lock it thinks it has.
TEST_F(FuseShortLeaseMountTest, RecordLockLostAtEvictionIsReported) {
  int fd = open(P(0, "rl").c_str(), O_RDWR | O_CREAT, 0644);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(pwrite(fd, "abc", 3, 0), 3);
  ASSERT_EQ(fsync(fd), 0);  // Nothing dirty: only the lock can be lost.
  struct flock fl = {};
  fl.l_type = F_WRLCK;
  fl.l_whence = SEEK_SET;
  fl.l_len = 10;
  ASSERT_EQ(fcntl(fd, F_SETLK, &fl), 0) << strerror(errno);
  // Mount 0's daemon stops answering anyone (lockd included) past its
  // lease: lockd evicts its node, and mount 1 gets the lock.
  daemons_[0]->Signal(SIGSTOP);
  int g = open(P(1, "rl").c_str(), O_RDWR);
  ASSERT_GE(g, 0);
  struct sigaction sa = {}, old = {};
  sa.sa_handler = OnAlarm;  // No SA_RESTART: a hang ends with EINTR.
  sigaction(SIGALRM, &sa, &old);
  alarm(30);
  struct flock other = fl;
  const int r = fcntl(g, F_SETLKW, &other);
  const int err = errno;
  alarm(0);
  sigaction(SIGALRM, &old, nullptr);
  daemons_[0]->Signal(SIGCONT);
  ASSERT_EQ(r, 0) << "mount 1 did not get the lock: " << strerror(err);
  ASSERT_EQ(pwrite(g, "xyz", 3, 0), 3);
  ASSERT_EQ(fsync(g), 0);
  // Back on mount 0: the process's descriptor reports the loss.
  char buf[3];
  errno = 0;
  EXPECT_EQ(pread(fd, buf, 3, 0), -1) << "a read after the lock was lost";
  EXPECT_EQ(errno, EIO) << strerror(errno);
  close(fd);
  // A fresh open works (and sees mount 1's bytes).
  EXPECT_EQ(ReadFile(P(0, "rl")), "xyz");
  close(g);
}

// A mount of a filesystem with 16 MiB of space.
class FuseSmallMountTest : public FuseMountTest {
 protected:
  testing::LocalClusterOptions ClusterOptions() override {
    testing::LocalClusterOptions o;
    o.device_size = 8ull << 20;
    return o;
  }
};

// Writing until the filesystem is full: the writer gets ENOSPC (from a
// write, fsync or close), the space is used to the last block, both mounts
// agree on the file, and removing it gives the space back.
TEST_F(FuseSmallMountTest,
       FillingTheFilesystemEndsInNoSpaceAndBothMountsAgree) {
  struct statfs before;
  ASSERT_EQ(statfs(mnt_[0].c_str(), &before), 0);
  const uint64_t space = before.f_bfree * before.f_bsize;
  int fd = open(P(0, "full").c_str(), O_WRONLY | O_CREAT, 0644);
  ASSERT_GE(fd, 0) << strerror(errno);
  const std::string chunk(1 << 20, 'F');
  int err = 0;
  for (uint64_t written = 0; written < 16 * space && err == 0;) {
    ssize_t n = write(fd, chunk.data(), chunk.size());
    if (n < 0) {
      err = errno;
    } else {
      written += static_cast<uint64_t>(n);
    }
  }
  if (err == 0 && fsync(fd) != 0) err = errno;
  if (close(fd) != 0 && err == 0) err = errno;
  EXPECT_EQ(err, ENOSPC) << strerror(err);
  struct statfs full;
  ASSERT_EQ(statfs(mnt_[1].c_str(), &full), 0);
  EXPECT_EQ(full.f_bfree, 0u);
  struct stat on0, on1;
  ASSERT_EQ(stat(P(1, "full").c_str(), &on1), 0);
  ASSERT_EQ(stat(P(0, "full").c_str(), &on0), 0);
  EXPECT_EQ(on0.st_size, on1.st_size);
  EXPECT_LE(static_cast<uint64_t>(on1.st_size), space);
  std::string got = ReadFile(P(1, "full"));
  EXPECT_EQ(got.size(), static_cast<size_t>(on1.st_size));
  EXPECT_EQ(got.find_first_not_of('F'), std::string::npos);

  ASSERT_EQ(unlink(P(0, "full").c_str()), 0);
  struct statfs after;
  ASSERT_EQ(statfs(mnt_[1].c_str(), &after), 0);
  EXPECT_EQ(after.f_bfree, before.f_bfree);
  ASSERT_TRUE(WriteFile(P(1, "again"), std::string(1 << 20, 'A')));
  EXPECT_EQ(ReadFile(P(0, "again")), std::string(1 << 20, 'A'));
}

TEST_F(FuseMountTest, ParallelWritersOnBothMountsLeaveConsistentFiles) {
  std::thread writers[4];
  for (int t = 0; t < 4; ++t) {
    writers[t] = std::thread([this, t] {
      std::string name = "p" + std::to_string(t);
      std::string data(1 << 20, static_cast<char>('a' + t));
      for (int round = 0; round < 5; ++round) {
        EXPECT_TRUE(WriteFile(P(t % 2, name), data));
      }
    });
  }
  for (auto& w : writers) w.join();
  for (int t = 0; t < 4; ++t) {
    std::string name = "p" + std::to_string(t);
    EXPECT_EQ(ReadFile(P(0, name)), ReadFile(P(1, name)));
    EXPECT_EQ(ReadFile(P(1, name)),
              std::string(1 << 20, static_cast<char>('a' + t)));
  }
}

// ---- the kernel page cache (docs/fuse.md): pages the node gave the
// kernel under its INVAL locks, dropped by every callback.

// Pages of `fd` [0, len) resident in this mount's kernel page cache.
size_t ResidentPages(int fd, size_t len) {
  void* m = mmap(nullptr, len, PROT_READ, MAP_SHARED, fd, 0);
  if (m == MAP_FAILED) return 0;
  std::vector<unsigned char> vec((len + 4095) / 4096);
  size_t n = 0;
  if (mincore(m, len, vec.data()) == 0) {
    for (unsigned char v : vec) n += v & 1;
  }
  munmap(m, len);
  return n;
}

std::string PRead(int fd, size_t len, off_t off) {
  std::string s(len, '\0');
  ssize_t n = pread(fd, s.data(), len, off);
  s.resize(n < 0 ? 0 : static_cast<size_t>(n));
  return s;
}

TEST_F(FuseMountTest, KernelCacheKeepsReadsAndDropsThemOnAnotherMountsWrite) {
  constexpr size_t kLen = 1 << 20;
  ASSERT_TRUE(WriteFile(P(0, "kc"), std::string(kLen, 'a')));
  int fd1 = open(P(1, "kc").c_str(), O_RDONLY);
  ASSERT_GE(fd1, 0);
  ASSERT_EQ(PRead(fd1, kLen, 0), std::string(kLen, 'a'));
  // The kernel kept what it read: the cache is there to be invalidated.
  EXPECT_EQ(ResidentPages(fd1, kLen), kLen / 4096);
  char* map1 =
      static_cast<char*>(mmap(nullptr, kLen, PROT_READ, MAP_SHARED, fd1, 0));
  ASSERT_NE(map1, MAP_FAILED);
  int fd0 = open(P(0, "kc").c_str(), O_WRONLY);
  ASSERT_GE(fd0, 0);
  for (int i = 0; i < 32; ++i) {
    const off_t off = static_cast<off_t>((i * 37 % 256) * 4096 + i);
    const std::string v(100, static_cast<char>('A' + i % 26));
    ASSERT_EQ(pwrite(fd0, v.data(), v.size(), off), 100);
    // Once the write returned, mount 1 never shows the old bytes: not by
    // read(2), not through its mapping.
    EXPECT_EQ(PRead(fd1, 100, off), v) << "round " << i;
    EXPECT_EQ(std::string(map1 + off, 100), v) << "round " << i;
  }
  // Pages mount 0 did not touch stayed cached on mount 1.
  EXPECT_GT(ResidentPages(fd1, kLen), 0u);
  munmap(map1, kLen);
  close(fd0);
  close(fd1);
}

TEST_F(FuseMountTest, SharedWritableMappingsAreCoherentAcrossMounts) {
  constexpr size_t kLen = 16 * 4096;
  ASSERT_TRUE(WriteFile(P(0, "shm"), std::string(kLen, '.')));
  int fd1 = open(P(1, "shm").c_str(), O_RDWR);
  ASSERT_GE(fd1, 0);
  char* m1 = static_cast<char*>(
      mmap(nullptr, kLen, PROT_READ | PROT_WRITE, MAP_SHARED, fd1, 0));
  ASSERT_NE(m1, MAP_FAILED) << strerror(errno);
  int fd0 = open(P(0, "shm").c_str(), O_RDWR);
  ASSERT_GE(fd0, 0);
  char* m0 = static_cast<char*>(
      mmap(nullptr, kLen, PROT_READ | PROT_WRITE, MAP_SHARED, fd0, 0));
  ASSERT_NE(m0, MAP_FAILED) << strerror(errno);
  for (int i = 0; i < 16; ++i) {
    const size_t page = (i * 5) % 16;
    const char c = static_cast<char>('a' + i);
    // A store on mount 1, no msync: mount 0 reads it, by read(2) and
    // through its own mapping.
    memset(m1 + page * 4096 + 10, c, 50);
    EXPECT_EQ(PRead(fd0, 50, page * 4096 + 10), std::string(50, c))
        << "round " << i;
    EXPECT_EQ(std::string(m0 + page * 4096 + 10, 50), std::string(50, c));
    // And the other way: a store on mount 0 reaches mount 1's mapping.
    const char d = static_cast<char>('A' + i);
    memset(m0 + page * 4096 + 100, d, 20);
    EXPECT_EQ(std::string(m1 + page * 4096 + 100, 20), std::string(20, d))
        << "round " << i;
  }
  munmap(m0, kLen);
  munmap(m1, kLen);
  close(fd0);
  close(fd1);
  // Both mounts agree, and so does the file after both let go.
  EXPECT_EQ(ReadFile(P(0, "shm")), ReadFile(P(1, "shm")));
}

TEST_F(FuseMountTest, DirectWritesReachCachedAndMappedCopiesOnBothMounts) {
  constexpr size_t kLen = 64 * 4096;
  ASSERT_TRUE(WriteFile(P(0, "dw"), std::string(kLen, 'o')));
  int cached1 = open(P(1, "dw").c_str(), O_RDONLY);
  ASSERT_GE(cached1, 0);
  ASSERT_EQ(PRead(cached1, kLen, 0), std::string(kLen, 'o'));
  char* map1 = static_cast<char*>(
      mmap(nullptr, kLen, PROT_READ, MAP_SHARED, cached1, 0));
  ASSERT_NE(map1, MAP_FAILED);
  ASSERT_EQ(map1[0], 'o');
  void* buf = nullptr;
  ASSERT_EQ(posix_memalign(&buf, 4096, 4096), 0);
  for (int node = 0; node < 2; ++node) {
    // O_DIRECT on the other mount, then on mount 1 itself (whose kernel
    // holds the pages: its own direct write must drop them too).
    int dfd = open(P(node, "dw").c_str(), O_WRONLY | O_DIRECT);
    ASSERT_GE(dfd, 0);
    for (int i = 0; i < 8; ++i) {
      const off_t off = static_cast<off_t>(((i * 7 + node) % 64) * 4096);
      const char c = static_cast<char>('0' + node * 10 + i);
      memset(buf, c, 4096);
      ASSERT_EQ(pwrite(dfd, buf, 4096, off), 4096);
      EXPECT_EQ(PRead(cached1, 4096, off), std::string(4096, c))
          << "node " << node << " round " << i;
      EXPECT_EQ(std::string(map1 + off, 4096), std::string(4096, c))
          << "node " << node << " round " << i;
    }
    close(dfd);
  }
  free(buf);
  munmap(map1, kLen);
  close(cached1);
}

// Readers fill the kernel cache (pages locked until the daemon answers)
// while the other mount writes, truncates and stores through a mapping of
// the same ranges: every revoke must get through (no invalidation waiting
// on a READ that waits on the revoke), and both mounts end up agreeing.
TEST_F(FuseMountTest, KernelCacheRevokesDoNotDeadlockWithReadsInFlight) {
  RevokeUnderReadsAndMappedStores();
}

// The same with six readers: their readahead READs (background requests)
// wait for the node's locks in numbers. With the kernel's default limit of
// 12 background requests the write-back WRITEs of mapped pages, which the
// invalidation waits for, queued behind them: both mounts hung.
TEST_F(FuseMountTest, KernelCacheRevokesDoNotDeadlockWithManyReaders) {
  RevokeUnderReadsAndMappedStores(6);
}

// The limit itself: readahead READs waiting for the node's locks must not
// fill it. With `-o max_background=1` the test above hangs at once (a
// notification laundering a mapped page waits for its WRITE, queued behind
// one READ that waits for the lock this callback holds up).
TEST_F(FuseMountTest, TheKernelLeavesRoomForBackgroundRequests) {
  const std::string conn = Connection(1);
  ASSERT_FALSE(conn.empty());
  std::ifstream limit(conn + "/max_background");
  std::ifstream threshold(conn + "/congestion_threshold");
  unsigned max_background = 0, congestion_threshold = 0;
  ASSERT_TRUE(limit >> max_background) << conn;
  ASSERT_TRUE(threshold >> congestion_threshold) << conn;
  EXPECT_EQ(max_background, 256u);  // The kernel's default is 12.
  EXPECT_EQ(congestion_threshold, 192u);
}

}  // namespace
}  // namespace rangefs
