// Memory mappings of librangefs nodes (userfaultfd) against real servers,
// and direct I/O whose buffer is such a mapping (docs/mmap.md): the
// scenarios of fstests generic/708 and generic/729, Kent Overstreet's
// direct-I/O-vs-fault race, faults vs hole punch / truncate / collapse,
// simultaneous write faults on a hole, and the EDEADLK path.
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstdio>

#include <atomic>
#include <csetjmp>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "absl/time/clock.h"
#include "tests/util/client_fixture.h"

namespace rangefs::client {
namespace {

// A SIGBUS on this thread jumps back to the probe that caused it.
thread_local sigjmp_buf* volatile bus_jump = nullptr;

void OnSigbus(int, siginfo_t* info, void*) {
  if (bus_jump != nullptr) siglongjmp(*bus_jump, 1);
  char msg[128];
  int n = snprintf(msg, sizeof msg, "unexpected SIGBUS: code %d addr %p\n",
                   info->si_code, info->si_addr);
  (void)!write(2, msg, n);
  signal(SIGBUS, SIG_DFL);
  raise(SIGBUS);
}

// Reads one byte of `p`; false if the access raised SIGBUS.
bool TryRead(const volatile char* p, char* out) {
  sigjmp_buf jump;
  if (sigsetjmp(jump, 1) != 0) {
    bus_jump = nullptr;
    return false;
  }
  bus_jump = &jump;
  *out = *p;
  bus_jump = nullptr;
  return true;
}

class MmapClusterTest : public ClientClusterFixture {
 protected:
  void SetUp() override {
    ClientClusterFixture::SetUp();
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = OnSigbus;
    sa.sa_flags = SA_NODEFER | SA_SIGINFO;
    sigaction(SIGBUS, &sa, &old_bus_);
  }
  void TearDown() override {
    sigaction(SIGBUS, &old_bus_, nullptr);
    ClientClusterFixture::TearDown();
  }
  static char* MustMap(Client& c, uint64_t fh, uint64_t off, size_t len,
                       int prot = PROT_READ | PROT_WRITE,
                       int flags = MAP_SHARED) {
    absl::StatusOr<void*> m = c.Mmap(fh, off, len, prot, flags);
    EXPECT_TRUE(m.ok()) << m.status();
    return m.ok() ? static_cast<char*>(*m) : nullptr;
  }
  // A page-aligned buffer (O_DIRECT needs aligned lengths and offsets; the
  // buffer itself may be anything).
  static std::string Pattern(uint64_t pages, int seed) {
    std::string s(pages * kPage, '\0');
    for (size_t i = 0; i < s.size(); ++i) {
      s[i] = static_cast<char>('a' + (i / kPage + seed) % 26);
    }
    return s;
  }

  struct Mapped {
    uint64_t fh = 0;
    char* map = nullptr;
  };
  // A file of `pages` pages of Pattern(pages, seed), on the servers, and a
  // shared writable mapping of all of it.
  static Mapped WrittenAndMapped(Client& c, const std::string& path,
                                 uint64_t pages, int seed) {
    Mapped m;
    m.fh = MustOpen(c, path, O_RDWR | O_CREAT);
    MustWrite(c, m.fh, Pattern(pages, seed), 0);
    EXPECT_TRUE(c.Fsync(m.fh, false).ok());
    m.map = MustMap(c, m.fh, 0, pages * kPage);
    return m;
  }

  struct sigaction old_bus_;
};

TEST_F(MmapClusterTest, SharedMappingReadsAndStoresAreCoherentAcrossNodes) {
  StartCluster();
  auto a = Node("a");
  auto b = Node("b");
  uint64_t fa = MustOpen(*a, "/f", O_RDWR | O_CREAT);
  MustWrite(*a, fa, Pattern(8, 0), 0);
  char* m = MustMap(*a, fa, 0, 8 * kPage);
  ASSERT_NE(m, nullptr);
  EXPECT_EQ(std::string(m, 8 * kPage), Pattern(8, 0));
  memcpy(m + 3 * kPage + 5, "stored", 6);  // A write fault.
  std::string want = Pattern(8, 0);
  want.replace(3 * kPage + 5, 6, "stored");
  // B reads through read(): A's INVAL callback collects the stores.
  uint64_t fb = MustOpen(*b, "/f", O_RDWR);
  EXPECT_TRUE(SameBytes(MustRead(*b, fb, 0, 8 * kPage), want));
  // B writes: A's mapping loses the page and faults the new data in.
  MustWrite(*b, fb, "from b", 3 * kPage + 5);
  want.replace(3 * kPage + 5, 6, "from b");
  EXPECT_TRUE(SameBytes(std::string(m, 8 * kPage), want));
  // A's own write() shows in its mapping at once.
  MustWrite(*a, fa, "own", 10);
  want.replace(10, 3, "own");
  EXPECT_TRUE(SameBytes(std::string(m, 8 * kPage), want));
  ClientStats s = a->Stats();
  EXPECT_GT(s.read_faults, 0u);
  EXPECT_GT(s.write_faults, 0u);
  EXPECT_GT(s.mapped_pages_collected, 0u);
  EXPECT_GT(s.mapped_pages_zapped, 0u);
  ASSERT_TRUE(a->Munmap(m, 8 * kPage).ok());
  EXPECT_TRUE(Fsck().empty());
}

TEST_F(MmapClusterTest, MsyncWritesBackAndPrivateStoresStayPrivate) {
  StartCluster();
  auto a = Node("a");
  uint64_t fa = MustOpen(*a, "/f", O_RDWR | O_CREAT);
  MustWrite(*a, fa, Pattern(4, 1), 0);
  ASSERT_TRUE(a->Fsync(fa, false).ok());
  char* shared = MustMap(*a, fa, 0, 4 * kPage);
  char* priv =
      MustMap(*a, fa, 0, 4 * kPage, PROT_READ | PROT_WRITE, MAP_PRIVATE);
  ASSERT_NE(shared, nullptr);
  ASSERT_NE(priv, nullptr);
  priv[0] = '!';  // Never reaches the file.
  shared[kPage] = '#';
  ASSERT_TRUE(a->Msync(shared, 4 * kPage, MS_SYNC).ok());
  // The data servers have it: a node that starts now reads it from them.
  auto c = Node("c");
  uint64_t fc = MustOpen(*c, "/f", O_RDONLY);
  std::string got = MustRead(*c, fc, 0, 4 * kPage);
  ASSERT_EQ(got.size(), 4 * kPage);
  EXPECT_EQ(got[0], Pattern(4, 1)[0]);
  EXPECT_EQ(got[kPage], '#');
  EXPECT_EQ(priv[0], '!');
  EXPECT_EQ(priv[kPage], '#');  // Not written privately: follows the file.
  EXPECT_GT(a->Stats().private_faults, 0u);
  ASSERT_TRUE(a->Munmap(priv, 4 * kPage).ok());
  ASSERT_TRUE(a->Munmap(shared, 4 * kPage).ok());
}

TEST_F(MmapClusterTest, AccessPastEofAndAfterTruncateGetsSigbus) {
  StartCluster();
  auto a = Node("a");
  auto b = Node("b");
  uint64_t fa = MustOpen(*a, "/f", O_RDWR | O_CREAT);
  MustWrite(*a, fa, Pattern(3, 2), 0);
  // Writable: its pages are mapped write-protected, and a truncate that
  // zaps such a page leaves a userfaultfd marker behind (the SIGBUS must
  // still come, not a fault that loops).
  char* m = MustMap(*a, fa, 0, 6 * kPage, PROT_READ | PROT_WRITE);
  ASSERT_NE(m, nullptr);
  char c = 0;
  EXPECT_TRUE(TryRead(m + 2 * kPage, &c));
  EXPECT_EQ(c, Pattern(3, 2)[2 * kPage]);
  EXPECT_FALSE(TryRead(m + 3 * kPage, &c));  // Past EOF.
  // B truncates to 1.5 pages: A's mapped pages past it go away.
  uint64_t fb = MustOpen(*b, "/f", O_RDWR);
  SetAttrArgs args;
  args.valid = kSetSize;
  args.size = kPage + kPage / 2;
  ASSERT_TRUE(b->SetAttr(b->InoOf(fb), args).ok());
  EXPECT_FALSE(TryRead(m + 2 * kPage, &c));
  ASSERT_TRUE(TryRead(m + kPage + kPage / 2, &c));
  EXPECT_EQ(c, 0);  // The tail of the last page reads as zeros.
  ASSERT_TRUE(TryRead(m + kPage, &c));
  EXPECT_EQ(c, Pattern(3, 2)[kPage]);
  EXPECT_GE(a->Stats().sigbus_faults, 2u);
  ASSERT_TRUE(a->Munmap(m, 6 * kPage).ok());
}

// fstests generic/708: the source of an O_DIRECT write is a mapping of
// another rangefs file of which only the first page was ever touched.
TEST_F(MmapClusterTest, DirectWriteFromAMappingOfAnotherFile) {
  StartCluster();
  auto a = Node("a");
  uint64_t src = MustOpen(*a, "/src", O_RDWR | O_CREAT);
  MustWrite(*a, src, Pattern(16, 3), 0);
  ASSERT_TRUE(a->Fsync(src, false).ok());
  char* m = MustMap(*a, src, 0, 16 * kPage);
  ASSERT_NE(m, nullptr);
  volatile char first = m[0];
  (void)first;
  uint64_t dst = MustOpen(*a, "/dst", O_RDWR | O_CREAT | O_DIRECT);
  absl::StatusOr<size_t> n = a->Write(dst, m, 16 * kPage, 0);
  ASSERT_TRUE(n.ok()) << n.status();
  EXPECT_EQ(*n, 16 * kPage);
  uint64_t check = MustOpen(*a, "/dst", O_RDONLY);
  EXPECT_TRUE(SameBytes(MustRead(*a, check, 0, 16 * kPage), Pattern(16, 3)));
  ASSERT_TRUE(a->Munmap(m, 16 * kPage).ok());
}

// fstests generic/729: the source of an O_DIRECT write is a mapping of
// the same file over the same range. Every retry's INVAL DF zaps the
// buffer again; the write finishes buffered (GFS2's fa58cc888d67).
TEST_F(MmapClusterTest, DirectWriteFromAMappingOfTheSameRangeFinishes) {
  StartCluster();
  auto a = Node("a");
  auto [fh, m] = WrittenAndMapped(*a, "/f", 8, 4);
  ASSERT_NE(m, nullptr);
  uint64_t d = MustOpen(*a, "/f", O_RDWR | O_DIRECT);
  absl::StatusOr<size_t> n = a->Write(d, m, 8 * kPage, 0);
  ASSERT_TRUE(n.ok()) << n.status();
  EXPECT_EQ(*n, 8 * kPage);
  auto b = Node("b");
  uint64_t fb = MustOpen(*b, "/f", O_RDONLY);
  EXPECT_TRUE(SameBytes(MustRead(*b, fb, 0, 8 * kPage), Pattern(8, 4)));
  ClientStats s = a->Stats();
  EXPECT_GT(s.deadlock_faults, 0u);
  EXPECT_EQ(s.direct_fallbacks, 1u);
  ASSERT_TRUE(a->Munmap(m, 8 * kPage).ok());
}

// The same call with the fallback switched off: the fault that would wait
// on the thread's own INVAL DF is refused and the call says EDEADLK.
TEST_F(MmapClusterTest, FaultOnTheRangeTheThreadLocksIsEdeadlkNotAHang) {
  StartCluster();
  ClientOptions o;
  o.fault_fallbacks = false;
  auto a = Node("a", o);
  auto [fh, m] = WrittenAndMapped(*a, "/f", 4, 5);
  ASSERT_NE(m, nullptr);
  uint64_t d = MustOpen(*a, "/f", O_RDWR | O_DIRECT);
  absl::StatusOr<size_t> n = a->Write(d, m, 4 * kPage, 0);
  ASSERT_FALSE(n.ok());
  EXPECT_EQ(ErrnoOf(n.status()), EDEADLK) << n.status();
  EXPECT_GT(a->Stats().deadlock_faults, 0u);
  // A buffered write holds INVAL EX while it copies. With its prefault
  // switched off, its source is a mapping of its own range never faulted
  // in: every copy is refused as a deadlock and the call says EDEADLK
  // after its retries instead of hanging.
  char* m2 = MustMap(*a, fh, 0, 4 * kPage);
  ASSERT_NE(m2, nullptr);
  uint64_t before = a->Stats().deadlock_faults;
  FaultRegistry::Global().Set("client.skip_prefault", {0, Errc::kInternal, 0});
  absl::StatusOr<size_t> w = a->Write(fh, m2, 4 * kPage, 0);
  FaultRegistry::Global().Clear("client.skip_prefault");
  ASSERT_FALSE(w.ok());
  EXPECT_EQ(ErrnoOf(w.status()), EDEADLK) << w.status();
  EXPECT_GT(a->Stats().deadlock_faults, before);
  // With its prefault the same call simply works.
  w = a->Write(fh, m2, 4 * kPage, 0);
  ASSERT_TRUE(w.ok()) << w.status();
  EXPECT_EQ(*w, 4 * kPage);
  EXPECT_TRUE(SameBytes(MustRead(*a, fh, 0, 4 * kPage), Pattern(4, 5)));
  ASSERT_TRUE(a->Munmap(m2, 4 * kPage).ok());
  ASSERT_TRUE(a->Munmap(m, 4 * kPage).ok());
}

TEST_F(MmapClusterTest, DirectReadIntoAMappingOfTheSameFile) {
  StartCluster();
  auto a = Node("a");
  auto [fh, m] = WrittenAndMapped(*a, "/f", 8, 6);
  ASSERT_NE(m, nullptr);
  uint64_t d = MustOpen(*a, "/f", O_RDWR | O_DIRECT);
  // Pages 4-7 into the mapping of pages 0-3.
  absl::StatusOr<size_t> n = a->Read(d, m, 4 * kPage, 4 * kPage);
  ASSERT_TRUE(n.ok()) << n.status();
  EXPECT_EQ(*n, 4 * kPage);
  std::string want = Pattern(8, 6);
  want.replace(0, 4 * kPage, Pattern(8, 6).substr(4 * kPage));
  EXPECT_TRUE(SameBytes(std::string(m, 8 * kPage), want));
  // Written through the mapping: another node sees it.
  auto b = Node("b");
  uint64_t fb = MustOpen(*b, "/f", O_RDONLY);
  EXPECT_TRUE(SameBytes(MustRead(*b, fb, 0, 8 * kPage), want));
  ASSERT_TRUE(a->Munmap(m, 8 * kPage).ok());
}

// Kent Overstreet's race (2019-bcachefs-pagecache-add-lock.txt): B keeps
// faulting a range in while A writes it with O_DIRECT. Once A's write has
// returned, B must never read the old data again: a page B re-inserted
// between A's invalidation and A's write completing would show it.
TEST_F(MmapClusterTest, DirectWritesOnANodeBeatAHotMappingOnAnother) {
  StartCluster();
  auto a = Node("a");
  auto b = Node("b");
  constexpr uint64_t kPages = 8;
  uint64_t fa = MustOpen(*a, "/f", O_RDWR | O_CREAT | O_DIRECT);
  std::string gen0(kPages * kPage, 'A');
  MustWrite(*a, fa, gen0, 0);
  uint64_t fb = MustOpen(*b, "/f", O_RDONLY);
  const char* m = MustMap(*b, fb, 0, kPages * kPage, PROT_READ);
  ASSERT_NE(m, nullptr);
  std::atomic<int> completed{0};
  std::atomic<bool> stop{false};
  std::atomic<int> stale{0};
  std::atomic<long> reads{0};
  std::thread reader([&] {
    while (!stop.load()) {
      for (uint64_t p = 0; p < kPages; ++p) {
        int done = completed.load();
        char c = static_cast<const volatile char*>(m)[p * kPage + 7];
        // Generation g wrote 'A' + g everywhere.
        if (c < 'A' + done) ++stale;
        ++reads;
      }
    }
  });
  constexpr int kGenerations = 20;
  for (int g = 1; g <= kGenerations; ++g) {
    std::string data(kPages * kPage, static_cast<char>('A' + g));
    MustWrite(*a, fa, data, 0);
    completed.store(g);
    absl::SleepFor(absl::Milliseconds(5));
  }
  stop.store(true);
  reader.join();
  EXPECT_EQ(stale.load(), 0);
  EXPECT_GT(reads.load(), kGenerations);
  EXPECT_EQ(std::string(m, kPages * kPage),
            std::string(kPages * kPage, static_cast<char>('A' + kGenerations)));
  EXPECT_GT(b->Stats().read_faults, static_cast<uint64_t>(kGenerations / 2));
  ASSERT_TRUE(b->Munmap(const_cast<char*>(m), kPages * kPage).ok());
}

// 2015-dax-fault-vs-truncate.txt's first problem: simultaneous write
// faults on one hole, by two threads of a node and by two nodes: one
// block allocated, both stores kept.
TEST_F(MmapClusterTest, SimultaneousWriteFaultsOnAHoleAllocateOnce) {
  StartCluster();
  auto a = Node("a");
  auto b = Node("b");
  uint64_t fa = MustOpen(*a, "/f", O_RDWR | O_CREAT);
  SetAttrArgs args;
  args.valid = kSetSize;
  args.size = 2 * kPage;  // Two holes.
  ASSERT_TRUE(a->SetAttr(a->InoOf(fa), args).ok());
  uint64_t fb = MustOpen(*b, "/f", O_RDWR);
  char* ma = MustMap(*a, fa, 0, 2 * kPage);
  char* mb = MustMap(*b, fb, 0, 2 * kPage);
  ASSERT_NE(ma, nullptr);
  ASSERT_NE(mb, nullptr);
  // Page 0: two threads of node a. Page 1: node a and node b.
  std::thread t1([&] { ma[100] = 'x'; });
  std::thread t2([&] { ma[200] = 'y'; });
  std::thread t3([&] { ma[kPage + 300] = 'p'; });
  std::thread t4([&] { mb[kPage + 400] = 'q'; });
  t1.join();
  t2.join();
  t3.join();
  t4.join();
  ASSERT_TRUE(a->Msync(ma, 2 * kPage, MS_SYNC).ok());
  ASSERT_TRUE(b->Msync(mb, 2 * kPage, MS_SYNC).ok());
  auto c = Node("c");
  uint64_t fc = MustOpen(*c, "/f", O_RDONLY);
  std::string got = MustRead(*c, fc, 0, 2 * kPage);
  ASSERT_EQ(got.size(), 2 * kPage);
  EXPECT_EQ(got[100], 'x');
  EXPECT_EQ(got[200], 'y');
  EXPECT_EQ(got[kPage + 300], 'p');
  EXPECT_EQ(got[kPage + 400], 'q');
  absl::StatusOr<Attr> st = c->FileAttr(fc);
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(st->blocks, 2 * kPage / 512);  // One block per page, no more.
  ASSERT_TRUE(a->Munmap(ma, 2 * kPage).ok());
  ASSERT_TRUE(b->Munmap(mb, 2 * kPage).ok());
  EXPECT_TRUE(Fsck().empty());
}

// 2015-* and 2020-*: B faults pages of a mapping while A punches a hole,
// collapses a range and truncates. After each, B's mapping shows exactly
// the file: zeros in the hole, shifted pages at their new index, SIGBUS
// past the new EOF; never a page at its old index.
TEST_F(MmapClusterTest, FaultsOnANodeFollowPunchCollapseAndTruncateOnAnother) {
  StartCluster();
  auto a = Node("a");
  auto b = Node("b");
  constexpr uint64_t kPages = 16;
  uint64_t fa = MustOpen(*a, "/f", O_RDWR | O_CREAT);
  std::string file = Pattern(kPages, 7);
  MustWrite(*a, fa, file, 0);
  uint64_t fb = MustOpen(*b, "/f", O_RDONLY);
  const char* m = MustMap(*b, fb, 0, kPages * kPage, PROT_READ);
  ASSERT_NE(m, nullptr);
  std::atomic<bool> stop{false};
  std::thread faulter([&] {
    char c;
    while (!stop.load()) {
      for (uint64_t p = 0; p < kPages; ++p) (void)TryRead(m + p * kPage, &c);
    }
  });
  auto mapped = [&](uint64_t len) {
    std::string s(len, '\0');
    for (uint64_t i = 0; i < len; ++i) {
      EXPECT_TRUE(TryRead(m + i, &s[i])) << i;
      if (s[i] != file[i]) break;
    }
    return s;
  };
  EXPECT_TRUE(SameBytes(mapped(kPages * kPage), file));
  ASSERT_TRUE(
      a->Fallocate(fa, kFallocPunchHole | kFallocKeepSize, 2 * kPage, 3 * kPage)
          .ok());
  file.replace(2 * kPage, 3 * kPage, std::string(3 * kPage, '\0'));
  EXPECT_TRUE(SameBytes(mapped(kPages * kPage), file));
  ASSERT_TRUE(
      a->Fallocate(fa, kFallocCollapseRange, 6 * kPage, 4 * kPage).ok());
  file.erase(6 * kPage, 4 * kPage);
  EXPECT_TRUE(SameBytes(mapped(file.size()), file));
  char c;
  EXPECT_FALSE(TryRead(m + file.size(), &c));  // Past the new EOF.
  SetAttrArgs args;
  args.valid = kSetSize;
  args.size = 3 * kPage;
  ASSERT_TRUE(a->SetAttr(a->InoOf(fa), args).ok());
  file.resize(3 * kPage);
  EXPECT_TRUE(SameBytes(mapped(file.size()), file));
  EXPECT_FALSE(TryRead(m + 3 * kPage, &c));
  stop.store(true);
  faulter.join();
  ASSERT_TRUE(b->Munmap(const_cast<char*>(m), kPages * kPage).ok());
  EXPECT_TRUE(Fsck().empty());
}

TEST_F(MmapClusterTest, BadArgumentsAreRefused) {
  StartCluster();
  auto a = Node("a");
  uint64_t ro = MustOpen(*a, "/f", O_RDONLY | O_CREAT);
  EXPECT_EQ(
      ErrnoOf(
          a->Mmap(ro, 0, kPage, PROT_READ | PROT_WRITE, MAP_SHARED).status()),
      EACCES);
  EXPECT_EQ(ErrnoOf(a->Mmap(ro, 100, kPage, PROT_READ, MAP_SHARED).status()),
            EINVAL);
  EXPECT_EQ(ErrnoOf(a->Mmap(ro, 0, 0, PROT_READ, MAP_SHARED).status()), EINVAL);
  EXPECT_EQ(ErrnoOf(a->Mmap(ro, 0, kPage, PROT_READ, 0).status()), EINVAL);
  char* m = MustMap(*a, ro, 0, kPage, PROT_READ);
  ASSERT_NE(m, nullptr);
  EXPECT_EQ(ErrnoOf(a->Munmap(m + kPage, kPage)), EINVAL);
  ASSERT_TRUE(a->Munmap(m, kPage).ok());
}

}  // namespace
}  // namespace rangefs::client
