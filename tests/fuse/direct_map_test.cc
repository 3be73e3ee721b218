// Direct I/O to and from a mapping of the same file through FUSE mounts:
// the race of ../shared/background/2019-bcachefs-pagecache-add-lock.txt and
// 2023-faults-disabled-mapping.txt where users meet it. The kernel faults
// the buffer in (get_user_pages) while the direct request is being made,
// so the READ that fills the mapping's page comes to the daemon beside the
// direct request, with the page locked until it is answered. Every program
// runs under the watchdog (TwoMountsTest::RunGuarded): a hang prints the
// kernel stacks, aborts the connections and fails. docs/fuse.md, "Direct
// I/O and mappings", has the argument.
#include <fcntl.h>
#include <stdarg.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <string>
#include <tuple>
#include <vector>

#include "gtest/gtest.h"
#include "tests/fuse/two_mounts.h"

namespace rangefs {
namespace {

using testing::ReadFile;

constexpr size_t kPage = 4096;
constexpr int kBound = 60;  // Seconds a program may take.

// A page of the program's failure message, shared with its child.
class Message {
 public:
  Message()
      : text_(static_cast<char*>(mmap(nullptr, kPage, PROT_READ | PROT_WRITE,
                                      MAP_SHARED | MAP_ANONYMOUS, -1, 0))) {
    text_[0] = '\0';
  }
  ~Message() { munmap(text_, kPage); }
  Message(const Message&) = delete;
  Message& operator=(const Message&) = delete;
  // Sets the message (with errno's text) and returns 1: `return Fail(...)`.
  int Fail(const char* format, ...) __attribute__((format(printf, 2, 3))) {
    const int err = errno;
    va_list ap;
    va_start(ap, format);
    int n = vsnprintf(text_, kPage, format, ap);
    va_end(ap);
    if (n >= 0 && static_cast<size_t>(n) < kPage) {
      snprintf(text_ + n, kPage - n, " (errno %d %s)", err, strerror(err));
    }
    return 1;
  }
  std::string text() const { return text_; }

 private:
  char* text_;
};

std::string Page(char c) { return std::string(kPage, c); }

// File "f" of a case: pages 'a', 'b', a hole, 'd'. The direct I/O is on
// page 1.
const std::string kF = Page('a') + Page('b') + Page('\0') + Page('d');
const std::string kG = Page('g');  // The other file.

enum class Op { kRead, kWrite };
enum class Map { kPrivate, kShared };
// Which page the direct I/O's buffer maps.
enum class Target { kItself, kNeighbour, kHole, kOtherFile };
// The mapping's descriptor: the O_DIRECT one, or a buffered one.
enum class Fd { kSame, kOther };

const char* Name(Target t) {
  switch (t) {
    case Target::kItself:
      return "the range itself";
    case Target::kNeighbour:
      return "a neighbouring page";
    case Target::kHole:
      return "a hole";
    case Target::kOtherFile:
      return "another file";
  }
  return "?";
}

// One program: O_DIRECT pread of page 1 of `f` into a page of a mapping, or
// pwrite of page 1 from it, with the buffer never touched before (the
// kernel faults it in during the direct request). With `leftover`, first
// what the program did: open `f` buffered, map it MAP_PRIVATE,
// pread page 1 into the mapping, fsync, close, and keep the mapping.
struct Program {
  std::string f, g;  // Paths, on the mount the program runs on.
  Op op;
  Map map;
  Target target;
  Fd fd;
  bool leftover;

  int Run(Message* m) const {
    if (leftover) {
      int fd0 = open(f.c_str(), O_RDWR);
      if (fd0 < 0) return m->Fail("open for the leftover mapping");
      void* left =
          mmap(nullptr, 4 * kPage, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd0, 0);
      if (left == MAP_FAILED) return m->Fail("leftover mmap");
      if (pread(fd0, left, kPage, kPage) != static_cast<ssize_t>(kPage)) {
        return m->Fail("buffered pread into the leftover mapping");
      }
      fsync(fd0);
      close(fd0);  // The mapping stays, and with it the open file.
    }
    const int dio = open(f.c_str(), O_RDWR | O_DIRECT);
    if (dio < 0) return m->Fail("open O_DIRECT");
    const std::string& mapped = target == Target::kOtherFile ? g : f;
    int mfd = dio;
    if (target == Target::kOtherFile || fd == Fd::kOther) {
      mfd = open(mapped.c_str(), O_RDWR | (fd == Fd::kSame ? O_DIRECT : 0));
      if (mfd < 0) return m->Fail("open %s to map", mapped.c_str());
    }
    const size_t len = target == Target::kOtherFile ? kPage : 4 * kPage;
    char* base = static_cast<char*>(
        mmap(nullptr, len, PROT_READ | PROT_WRITE,
             map == Map::kShared ? MAP_SHARED : MAP_PRIVATE, mfd, 0));
    if (base == MAP_FAILED) return m->Fail("mmap %s", mapped.c_str());
    char* buf = base;
    if (target == Target::kItself) buf = base + kPage;
    if (target == Target::kHole) buf = base + 2 * kPage;
    if (op == Op::kRead) {
      const ssize_t n = pread(dio, buf, kPage, kPage);
      if (n != static_cast<ssize_t>(kPage)) {
        return m->Fail("O_DIRECT pread into %s returned %zd", Name(target), n);
      }
      if (std::string(buf, kPage) != Page('b')) {
        return m->Fail("O_DIRECT pread into %s: wrong bytes", Name(target));
      }
    } else {
      const ssize_t n = pwrite(dio, buf, kPage, kPage);
      if (n != static_cast<ssize_t>(kPage)) {
        return m->Fail("O_DIRECT pwrite from %s returned %zd", Name(target), n);
      }
    }
    if (map == Map::kShared && msync(base, len, MS_SYNC) != 0) {
      return m->Fail("msync");
    }
    munmap(base, len);
    if (mfd != dio) close(mfd);
    if (fsync(dio) != 0) return m->Fail("fsync");
    if (close(dio) != 0) return m->Fail("close");
    return 0;
  }

  // What `f` and `g` hold after a successful run.
  std::pair<std::string, std::string> Expected() const {
    std::string ef = kF, eg = kG;
    if (op == Op::kWrite) {
      const std::string from = target == Target::kItself      ? Page('b')
                               : target == Target::kNeighbour ? Page('a')
                               : target == Target::kHole      ? Page('\0')
                                                              : Page('g');
      ef.replace(kPage, kPage, from);
    } else if (map == Map::kShared) {
      // The page the buffer maps now holds what was read.
      if (target == Target::kOtherFile) {
        eg = Page('b');
      } else {
        const size_t at = target == Target::kItself      ? 1
                          : target == Target::kNeighbour ? 0
                                                         : 2;
        ef.replace(at * kPage, kPage, Page('b'));
      }
    }
    return {ef, eg};
  }
};

// Where the first difference is, for a failure message.
std::string Diff(const std::string& got, const std::string& want) {
  if (got.size() != want.size()) {
    return "size " + std::to_string(got.size()) + ", want " +
           std::to_string(want.size());
  }
  for (size_t i = 0; i < got.size(); ++i) {
    if (got[i] != want[i]) {
      return "byte " + std::to_string(i) + " is " +
             std::to_string(static_cast<int>(got[i])) + ", want " +
             std::to_string(static_cast<int>(want[i]));
    }
  }
  return "equal";
}

class FuseDirectMapTest : public testing::TwoMountsTest,
                          public ::testing::WithParamInterface<
                              std::tuple<Op, Map, /*leftover=*/bool>> {
 protected:
  // Runs `p` on mount 0, with its files written on mount 1 (so mount 0's
  // kernel caches none of their pages), and checks both files on both
  // mounts. False if it failed or hung (the mounts are dead then).
  bool RunProgram(Program p, const std::string& name) {
    SCOPED_TRACE(name);
    EXPECT_TRUE(testing::WriteFile(P(1, name + "f"), kF));
    EXPECT_TRUE(testing::WriteFile(P(1, name + "g"), kG));
    p.f = P(0, name + "f");
    p.g = P(0, name + "g");
    Message m;
    testing::Guarded g = RunGuarded([&] { return p.Run(&m); }, kBound);
    if (g.hung) {
      ADD_FAILURE() << "the program hung: " << g.report;
      return false;
    }
    if (!g.ok()) {
      ADD_FAILURE() << "the program failed: " << m.text();
      return false;
    }
    const auto [want_f, want_g] = p.Expected();
    for (int node = 0; node < 2; ++node) {
      EXPECT_EQ(Diff(ReadFile(P(node, name + "f")), want_f), "equal")
          << "f on mount " << node;
      EXPECT_EQ(Diff(ReadFile(P(node, name + "g")), want_g), "equal")
          << "g on mount " << node;
    }
    return !HasFailure();
  }
};

// Every target, from the O_DIRECT descriptor's own mapping and from
// another descriptor's.
TEST_P(FuseDirectMapTest, DirectIoWithTheBufferInAMappingNeverHangs) {
  const auto [op, map, leftover] = GetParam();
  int k = 0;
  for (Target target : {Target::kItself, Target::kNeighbour, Target::kHole,
                        Target::kOtherFile}) {
    for (Fd fd : {Fd::kSame, Fd::kOther}) {
      Program p{"", "", op, map, target, fd, leftover};
      const std::string name = "c" + std::to_string(k++);
      if (!RunProgram(p, name)) {
        ADD_FAILURE() << "case " << name << ": buffer in " << Name(target)
                      << ", mapped through the "
                      << (fd == Fd::kSame ? "O_DIRECT" : "other")
                      << " descriptor";
        return;  // After a hang the mounts are gone.
      }
    }
  }
}

std::string CaseName(
    const ::testing::TestParamInfo<FuseDirectMapTest::ParamType>& info) {
  const auto [op, map, leftover] = info.param;
  return std::string(op == Op::kRead ? "Read" : "Write") +
         (map == Map::kShared ? "Shared" : "Private") +
         (leftover ? "AfterALeftoverMapping" : "");
}

INSTANTIATE_TEST_SUITE_P(
    AllKinds, FuseDirectMapTest,
    ::testing::Combine(::testing::Values(Op::kRead, Op::kWrite),
                       ::testing::Values(Map::kPrivate, Map::kShared),
                       ::testing::Bool()),
    CaseName);

class FuseDirectMapMountTest : public testing::TwoMountsTest {};

// The program of the issue, step for step: a file with a hole at page 0,
// an O_DIRECT pread into a MAP_PRIVATE mapping of it, then the same again
// through an O_DIRECT descriptor with the first mapping left in place.
// The second pread hung for ever: the page-0 READ of its fault came on the
// O_DIRECT handle, was taken for direct I/O, and the daemon invalidated the
// kernel's pages of its range, page 0 included, which the fault held
// locked until that very READ was answered.
TEST_F(FuseDirectMapMountTest, ODirectReadIntoAMappingLeftByAnEarlierOpen) {
  const std::string path = P(0, "f");
  Message m;
  auto step = [&](bool direct_open) {
    int fd = open(path.c_str(), O_CREAT | O_TRUNC | O_WRONLY | O_DIRECT, 0644);
    if (fd < 0) return m.Fail("create");
    void* page = nullptr;
    if (posix_memalign(&page, kPage, kPage) != 0) return m.Fail("memalign");
    memset(page, 'x', kPage);
    if (pwrite(fd, page, kPage, kPage) != static_cast<ssize_t>(kPage)) {
      return m.Fail("O_DIRECT pwrite of page 1");
    }
    free(page);
    close(fd);
    fd = open(path.c_str(), O_RDWR | (direct_open ? O_DIRECT : 0));
    if (fd < 0) return m.Fail("open");
    char* map = static_cast<char*>(
        mmap(nullptr, 2 * kPage, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0));
    if (map == MAP_FAILED) return m.Fail("mmap");
    if (pread(fd, map, kPage, kPage) != static_cast<ssize_t>(kPage)) {
      return m.Fail("pread into the mapping (O_DIRECT: %d)", direct_open);
    }
    if (std::string(map, kPage) != Page('x')) return m.Fail("wrong bytes");
    fsync(fd);
    close(fd);
    return 0;  // No munmap.
  };
  testing::Guarded g = RunGuarded(
      [&] {
        if (int rc = step(false); rc != 0) return rc;
        return step(true);
      },
      kBound);
  ASSERT_FALSE(g.hung) << g.report;
  ASSERT_TRUE(g.ok()) << m.text();
  EXPECT_EQ(ReadFile(P(1, "f")), Page('\0') + Page('x'));
}

// MAP_SHARED of an O_DIRECT descriptor (ENODEV while such opens bypassed
// the kernel's cache): stores are seen by the other mount, and the other
// mount's writes are seen through the mapping.
TEST_F(FuseDirectMapMountTest, SharedMappingsOfODirectDescriptorsAreCoherent) {
  ASSERT_TRUE(testing::WriteFile(P(0, "f"), Page('a') + Page('b')));
  Message m;
  testing::Guarded g = RunGuarded(
      [&] {
        int fd = open(P(0, "f").c_str(), O_RDWR | O_DIRECT);
        if (fd < 0) return m.Fail("open O_DIRECT");
        char* map = static_cast<char*>(mmap(
            nullptr, 2 * kPage, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0));
        if (map == MAP_FAILED) return m.Fail("MAP_SHARED of O_DIRECT");
        memset(map, 'm', kPage);  // Seen by mount 1 without msync.
        if (ReadFile(P(1, "f")) != Page('m') + Page('b')) {
          return m.Fail("mount 1 does not see the store");
        }
        if (!testing::WriteFile(P(1, "f"), Page('n'), O_WRONLY)) {
          return m.Fail("write on mount 1");
        }
        if (std::string(map, kPage) != Page('n')) {
          return m.Fail("the mapping does not see mount 1's write");
        }
        // And an O_DIRECT read of the same descriptor sees both.
        void* page = nullptr;
        if (posix_memalign(&page, kPage, 2 * kPage) != 0) {
          return m.Fail("memalign");
        }
        map[kPage] = 'o';
        if (pread(fd, page, 2 * kPage, 0) != static_cast<ssize_t>(2 * kPage) ||
            std::string(static_cast<char*>(page), 2 * kPage) !=
                Page('n') + 'o' + std::string(kPage - 1, 'b')) {
          return m.Fail("O_DIRECT read after stores through the mapping");
        }
        free(page);
        munmap(map, 2 * kPage);
        close(fd);
        return 0;
      },
      kBound);
  ASSERT_FALSE(g.hung) << g.report;
  ASSERT_TRUE(g.ok()) << m.text();
}

// Two mounts: A's O_DIRECT reads fault their buffers in (a private mapping
// of the range itself, a shared one of its neighbour) while B keeps
// writing that range: A's fills wait for B's locks, B's writes call back
// A's pages. Every page A reads is one of B's writes, whole.
TEST_F(FuseDirectMapMountTest, DirectReadsFaultingWhileAnotherMountWrites) {
  ASSERT_TRUE(testing::WriteFile(P(0, "f"), Page('a') + Page('b')));
  Message ma, mb;
  constexpr int kRounds = 200;
  const std::string fa = P(0, "f"), fb = P(1, "f");
  auto reader = [&] {
    int fd = open(fa.c_str(), O_RDWR | O_DIRECT);
    if (fd < 0) return ma.Fail("open O_DIRECT");
    for (int i = 0; i < kRounds; ++i) {
      const bool shared = i % 2 == 1;
      char* map =
          static_cast<char*>(mmap(nullptr, 2 * kPage, PROT_READ | PROT_WRITE,
                                  shared ? MAP_SHARED : MAP_PRIVATE, fd, 0));
      if (map == MAP_FAILED) return ma.Fail("mmap");
      char* buf = shared ? map : map + kPage;
      if (pread(fd, buf, kPage, kPage) != static_cast<ssize_t>(kPage)) {
        return ma.Fail("O_DIRECT pread in round %d", i);
      }
      const char c = buf[0];
      if (std::string(buf, kPage) != Page(c) || !(c == 'b' || c >= 'A')) {
        return ma.Fail("round %d read a torn or foreign page", i);
      }
      munmap(map, 2 * kPage);
    }
    close(fd);
    return 0;
  };
  auto writer = [&] {
    int fd = open(fb.c_str(), O_RDWR);
    if (fd < 0) return mb.Fail("open");
    for (int i = 0; i < kRounds; ++i) {
      const std::string p = Page(static_cast<char>('A' + i % 26));
      if (pwrite(fd, p.data(), kPage, kPage) != static_cast<ssize_t>(kPage)) {
        return mb.Fail("pwrite in round %d", i);
      }
    }
    close(fd);
    return 0;
  };
  testing::Guarded g = RunGuarded({reader, writer}, kBound);
  ASSERT_FALSE(g.hung) << g.report;
  ASSERT_TRUE(g.ok()) << ma.text() << mb.text();
  const std::string last = Page(static_cast<char>('A' + (kRounds - 1) % 26));
  EXPECT_EQ(ReadFile(P(0, "f")).substr(kPage), last);
  EXPECT_EQ(ReadFile(P(1, "f")).substr(kPage), last);
}

// An O_DIRECT read leaves its mount no pages the node no longer holds a
// lock for caching: pages its kernel had read under SH are dropped, so a
// later O_DIRECT write on the other mount (DF, which needs no callback
// from a DF holder) is seen by a buffered read.
TEST_F(FuseDirectMapMountTest, ODirectReadDropsPagesItsMountCachedToRead) {
  ASSERT_TRUE(testing::WriteFile(P(1, "f"), Page('a') + Page('a')));
  Message m;
  testing::Guarded g = RunGuarded(
      [&] {
        if (ReadFile(P(0, "f")) != Page('a') + Page('a')) {
          return m.Fail("buffered read on mount 0");
        }
        void* buf = nullptr;
        if (posix_memalign(&buf, kPage, 2 * kPage) != 0) {
          return m.Fail("memalign");
        }
        int dio = open(P(0, "f").c_str(), O_RDONLY | O_DIRECT);
        if (dio < 0) return m.Fail("open O_DIRECT");
        if (pread(dio, buf, 2 * kPage, 0) != 2 * kPage) {
          return m.Fail("O_DIRECT pread on mount 0");
        }
        close(dio);
        int wio = open(P(1, "f").c_str(), O_WRONLY | O_DIRECT);
        if (wio < 0) return m.Fail("open O_DIRECT on mount 1");
        memset(buf, 'n', 2 * kPage);
        if (pwrite(wio, buf, 2 * kPage, 0) != 2 * kPage) {
          return m.Fail("O_DIRECT pwrite on mount 1");
        }
        close(wio);
        free(buf);
        if (ReadFile(P(0, "f")) != Page('n') + Page('n')) {
          return m.Fail("mount 0 read its old pages after mount 1's write");
        }
        return 0;
      },
      kBound);
  ASSERT_FALSE(g.hung) << g.report;
  ASSERT_TRUE(g.ok()) << m.text();
}

}  // namespace
}  // namespace rangefs
