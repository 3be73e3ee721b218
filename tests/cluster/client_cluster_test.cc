// librangefs nodes against real servers: several Client instances in this
// process (each its own node: own lock sessions, page cache, attribute
// cache) and rangefs-clientnode processes for node death.
#include <fcntl.h>
#include <grpcpp/grpcpp.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <string>
#include <thread>

#include "client/rangefs.h"
#include "common/fault_injection.h"
#include "common/status.h"
#include "gtest/gtest.h"
#include "proto/lock.grpc.pb.h"
#include "proto/meta.grpc.pb.h"
#include "rpc/channel.h"
#include "tests/util/client_fixture.h"
#include "tests/util/local_cluster.h"
#include "tests/util/subprocess.h"

namespace rangefs::client {
namespace {

class ClientClusterTest : public ClientClusterFixture {
 protected:
  // A cluster whose two data servers hold `device_size` bytes each.
  void StartSmallCluster(uint64_t device_size) {
    LocalClusterOptions o;
    o.device_size = device_size;
    StartCluster(o);
  }
  // Writes pages 0, 2, 4, ... below `pages` of `fh`, each filled with its
  // own letter from `first`; returns the file's expected bytes.
  static std::string WriteEveryOtherPage(Client& c, uint64_t fh, uint64_t pages,
                                         char first) {
    std::string want((pages - 1) * kPage, '\0');  // Ends at the last written.
    for (uint64_t p = 0; p < pages; p += 2) {
      const std::string page(kPage, static_cast<char>(first + p % 26));
      MustWrite(c, fh, page, p * kPage);
      want.replace(p * kPage, kPage, page);
    }
    return want;
  }

  // Writes /first (synced) over all but 16 of the free blocks; returns
  // its handle, and in *free_bytes what was free before.
  static uint64_t FillAllBut16Blocks(Client& c, uint64_t* free_bytes) {
    *free_bytes = FreeBytes(c);
    EXPECT_GT(*free_bytes, 4u << 20);
    return WriteSynced(c, "/first", Fill('1', *free_bytes - 16 * kPage));
  }

  static uint64_t FreeBytes(Client& c) {
    absl::StatusOr<FsStat> s = c.StatFs();
    EXPECT_TRUE(s.ok()) << s.status();
    return s.ok() ? s->free_blocks * s->block_size : 0;
  }
};

int64_t ToNanos(const Timespec& t) { return t.sec * 1000000000 + t.nsec; }

// Creates files in / until one is sent ahead: a node fetches its inode
// number lease in the background, and the creates before it wait.
bool CreatesGoAhead(Client& c) {
  for (int i = 0; i < 100 && c.Stats().creates_ahead == 0; ++i) {
    auto warm =
        c.Create(kRootIno, "warm" + std::to_string(i), 0644, O_RDWR, Creds{});
    if (!warm.ok() || !c.Close(warm->second).ok()) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return c.Stats().creates_ahead > 0;
}

TEST_F(ClientClusterTest, BufferedWriteOnOneNodeIsReadOnAnotherAtOnce) {
  StartCluster();
  auto a = Node("a");
  auto b = Node("b");
  uint64_t fa = MustOpen(*a, "/f", O_RDWR | O_CREAT);
  MustWrite(*a, fa, "hello from a", 0);
  uint64_t fb = MustOpen(*b, "/f", O_RDONLY);
  EXPECT_TRUE(SameBytes(MustRead(*b, fb, 0, 100), "hello from a"));
  absl::StatusOr<Attr> st = b->FileAttr(fb);
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(st->size, 12u);
  EXPECT_TRUE(a->Close(fa).ok());
  EXPECT_TRUE(b->Close(fb).ok());
  EXPECT_TRUE(Fsck().empty());
}

// The last bytes before 2^63 (a file of the largest size): written,
// synced and read back on another node, and after the writer's cache is
// gone. Their block ends at 2^63, past the largest size.
TEST_F(ClientClusterTest, TheLastBytesOfTheLargestFileAreWrittenAndRead) {
  StartCluster();
  auto a = Node("a");
  auto b = Node("b");
  constexpr uint64_t kLast = (uint64_t{1} << 63) - 2;
  uint64_t fa = MustOpen(*a, "/big", O_RDWR | O_CREAT);
  MustWrite(*a, fa, "Z", kLast);
  ASSERT_TRUE(a->Fsync(fa, false).ok());
  EXPECT_TRUE(SameBytes(MustRead(*a, fa, kLast, 100), "Z"));
  uint64_t fb = MustOpen(*b, "/big", O_RDONLY);
  EXPECT_TRUE(SameBytes(MustRead(*b, fb, kLast, 100), "Z"));
  EXPECT_EQ(b->FileAttr(fb)->size, kLast + 1);
  EXPECT_TRUE(a->Close(fa).ok());
  EXPECT_TRUE(b->Close(fb).ok());
  EXPECT_TRUE(Fsck().empty());
}

// The kernel asks for security.capability before every write through a
// cached FUSE file; the node remembers its absence under the INODE lock.
// A capability set or removed on another node must still be seen at once.
TEST_F(ClientClusterTest, CapabilityAttributeAbsenceIsCachedCoherently) {
  StartCluster();
  auto a = Node("a");
  auto b = Node("b");
  uint64_t fa = MustOpen(*a, "/caps", O_RDWR | O_CREAT);
  const uint64_t ino = a->InoOf(fa);
  const std::string kCaps = "security.capability";
  for (int round = 0; round < 3; ++round) {
    for (int i = 0; i < 2; ++i) {  // Twice: the second answer is cached.
      absl::StatusOr<std::string> none = b->GetXattr(ino, kCaps);
      EXPECT_EQ(ErrnoOf(none.status()), ENODATA) << "round " << round;
    }
    const std::string value(20, static_cast<char>('A' + round));
    ASSERT_TRUE(a->SetXattr(ino, kCaps, value, 0).ok());
    absl::StatusOr<std::string> got = b->GetXattr(ino, kCaps);
    ASSERT_TRUE(got.ok()) << "round " << round << ": " << got.status();
    EXPECT_EQ(*got, value);
    ASSERT_TRUE(a->RemoveXattr(ino, kCaps).ok());
    // Writes on b (INODE EX there) keep it right too.
    uint64_t fb = MustOpen(*b, "/caps", O_RDWR);
    MustWrite(*b, fb, "x", round);
    EXPECT_TRUE(b->Close(fb).ok());
  }
  EXPECT_TRUE(a->Close(fa).ok());
}

TEST_F(ClientClusterTest, CachedPagesOnAReaderFollowEveryNewWrite) {
  StartCluster();
  auto a = Node("a");
  auto b = Node("b");
  uint64_t fa = MustOpen(*a, "/f", O_RDWR | O_CREAT);
  uint64_t fb = MustOpen(*b, "/f", O_RDONLY);
  for (int round = 0; round < 5; ++round) {
    std::string data = Fill('a' + round, 3 * kPage + 17);
    MustWrite(*a, fa, data, 1000);
    EXPECT_TRUE(SameBytes(MustRead(*b, fb, 1000, data.size()), data)) << round;
    // B's pages are cached now; the next write must take them away.
    EXPECT_GT(b->Stats().pages_cached, 0u);
  }
  EXPECT_GT(b->Stats().inval_demotes, 0u);
}

// DropCaches is drop_caches for a node: clean pages go, dirty ones stay
// (and still reach the servers), and reads afterwards come from the data
// servers, right.
TEST_F(ClientClusterTest, DropCachesDropsOnlyCleanPages) {
  StartCluster();
  auto a = Node("a");
  const std::string clean = Fill('c', 8 * kPage);
  uint64_t fa = WriteSynced(*a, "/drop", clean);
  const std::string dirty = Fill('d', 2 * kPage);
  MustWrite(*a, fa, dirty, 8 * kPage);
  ASSERT_EQ(a->Stats().pages_cached, 10u);
  EXPECT_EQ(a->DropCaches(), 8u);
  ClientStats st = a->Stats();
  EXPECT_EQ(st.pages_cached, 2u);
  EXPECT_EQ(st.dirty_pages, 2u);
  EXPECT_TRUE(SameBytes(MustRead(*a, fa, 0, 10 * kPage), clean + dirty));
  EXPECT_EQ(a->Stats().pages_cached, 10u);  // Filled again.
  EXPECT_TRUE(a->Close(fa).ok());
  auto b = Node("b");
  uint64_t fb = MustOpen(*b, "/drop", O_RDONLY);
  EXPECT_TRUE(SameBytes(MustRead(*b, fb, 0, 10 * kPage), clean + dirty));
  EXPECT_TRUE(b->Close(fb).ok());
}

// A file that lost its last name takes no cache memory on the node once
// no handle there has it open: at the unlink, or at the last close of a
// handle open across it; a file with another name keeps its pages.
TEST_F(ClientClusterTest, UnreachableFilesLeaveTheNodesCache) {
  StartCluster();
  auto a = Node("a");
  const std::string data = Fill('u', 16 * kPage);
  uint64_t f1 = WriteSynced(*a, "/gone", data);
  ASSERT_TRUE(a->Close(f1).ok());
  uint64_t f2 = WriteSynced(*a, "/open", data);
  uint64_t f3 = WriteSynced(*a, "/linked", data);
  ASSERT_TRUE(a->Close(f3).ok());
  absl::StatusOr<Attr> linked = a->Resolve("/linked");
  ASSERT_TRUE(linked.ok());
  ASSERT_TRUE(a->Link(linked->ino, kRootIno, "other").ok());
  ASSERT_EQ(a->Stats().pages_cached, 48u);
  ASSERT_TRUE(a->Unlink(kRootIno, "gone").ok());
  EXPECT_EQ(a->Stats().pages_cached, 32u);
  ASSERT_TRUE(a->Unlink(kRootIno, "linked").ok());  // "other" is left.
  EXPECT_EQ(a->Stats().pages_cached, 32u);
  ASSERT_TRUE(a->Unlink(kRootIno, "open").ok());
  EXPECT_EQ(a->Stats().pages_cached, 32u);  // Still open: still read.
  EXPECT_TRUE(SameBytes(MustRead(*a, f2, 0, data.size()), data));
  ASSERT_TRUE(a->Close(f2).ok());
  EXPECT_EQ(a->Stats().pages_cached, 16u);
  EXPECT_EQ(a->Stats().dirty_pages, 0u);
}

// Sequential reads bring pages in ahead of the reader, in the background
// and under the node's INVAL SH like any other page: a write on another
// node takes them away, and the reader never returns a stale one.
TEST_F(ClientClusterTest, ReadaheadPagesFollowAnotherNodesWrite) {
  StartCluster();
  auto a = Node("a");
  auto b = Node("b");
  constexpr uint64_t kMiB = 1 << 20;
  std::string data = MiBRuns(16);
  uint64_t fa = WriteSynced(*a, "/ra", data);
  uint64_t fb = MustOpen(*b, "/ra", O_RDONLY);
  for (uint64_t off = 0; off < 3 * kMiB; off += kMiB) {
    ASSERT_TRUE(SameBytes(MustRead(*b, fb, off, kMiB), data.substr(off, kMiB)))
        << off;
  }
  // Three 1 MiB reads grow the window to 4 MiB: pages up to 7 MiB come.
  for (int i = 0; i < 200 && b->Stats().pages_cached < 7 * kMiB / kPage; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ClientStats st = b->Stats();
  EXPECT_GE(st.pages_cached, 7 * kMiB / kPage);
  EXPECT_GT(st.readaheads, 0u);
  EXPECT_GE(st.readahead_pages, 4 * kMiB / kPage);
  // Into what b read ahead.
  const std::string fresh = Fill('N', 64 << 10);
  MustWrite(*a, fa, fresh, 5 * kMiB + 100);
  data.replace(5 * kMiB + 100, fresh.size(), fresh);
  for (uint64_t off = 3 * kMiB; off < data.size(); off += kMiB) {
    ASSERT_TRUE(SameBytes(MustRead(*b, fb, off, kMiB), data.substr(off, kMiB)))
        << off;
  }
  EXPECT_GT(b->Stats().inval_demotes, 0u);
  EXPECT_TRUE(a->Close(fa).ok());
  EXPECT_TRUE(b->Close(fb).ok());
}

// The kernel's readahead through FUSE sends several 1 MiB reads at once,
// and they reach the node in any order. The node took every read not
// starting exactly where the last one ended for a random one, shut its
// window and read the rest of the file a request at a time, without
// readahead.
TEST_F(ClientClusterTest, ReadsArrivingOutOfOrderStillReadAhead) {
  StartCluster();
  auto a = Node("a");
  auto b = Node("b");
  constexpr uint64_t kMiB = 1 << 20;
  std::string data = MiBRuns(24);
  uint64_t fa = WriteSynced(*a, "/shuffled", data);
  uint64_t fb = MustOpen(*b, "/shuffled", O_RDONLY);
  // 0, 2, 1, 4, 3, 6, 5, ...: each pair of requests swapped.
  std::vector<uint64_t> order = {0};
  for (uint64_t m = 1; m + 1 < 24; m += 2) {
    order.push_back(m + 1);
    order.push_back(m);
  }
  for (uint64_t m : order) {
    ASSERT_TRUE(SameBytes(MustRead(*b, fb, m * kMiB, kMiB),
                          data.substr(m * kMiB, kMiB)))
        << m;
  }
  for (int i = 0;
       i < 200 && b->Stats().readaheads + b->Stats().readaheads_abandoned < 4;
       ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ClientStats st = b->Stats();
  EXPECT_GE(st.readahead_pages, 8 * kMiB / kPage)
      << st.readaheads << " readaheads";
  EXPECT_TRUE(a->Close(fa).ok());
  EXPECT_TRUE(b->Close(fb).ok());
}

// A read for the cache above (the kernel's, through FUSE) hands clean
// pages over in their own frames and keeps no copy: the cache above holds
// them. A dirty page in the range is copied and stays, as dirty data must,
// and so do the pages after it.
TEST_F(ClientClusterTest, CacheAboveFillsTakeCleanPagesAndLeaveDirtyOnes) {
  StartCluster();
  auto a = Node("a");
  ClientOptions o;
  o.readahead_bytes = 0;  // Only the pages asked for.
  auto b = Node("b", o);
  std::string data;
  for (int i = 0; i < 64; ++i) data += Fill('A' + i % 26, kPage);
  uint64_t fa = MustOpen(*a, "/handed", O_RDWR | O_CREAT);
  MustWrite(*a, fa, data, 0);
  ASSERT_TRUE(a->Fsync(fa, false).ok());
  uint64_t fb = MustOpen(*b, "/handed", O_RDWR);
  MustWrite(*b, fb, Fill('z', kPage), 10 * kPage);
  data.replace(10 * kPage, kPage, Fill('z', kPage));
  std::string got;
  const Client::Delivery collect = [&got](const struct iovec* iov, int n,
                                          size_t bytes) {
    for (int i = 0; i < n; ++i) {
      got.append(static_cast<const char*>(iov[i].iov_base), iov[i].iov_len);
    }
    EXPECT_EQ(got.size(), bytes);
  };
  absl::StatusOr<size_t> n =
      b->ReadForCache(fb, data.size(), 0, /*exclusive=*/false, collect);
  ASSERT_TRUE(n.ok()) << n.status();
  EXPECT_EQ(*n, data.size());
  EXPECT_TRUE(SameBytes(got, data));
  ClientStats st = b->Stats();
  EXPECT_EQ(st.dirty_pages, 1u);
  EXPECT_EQ(st.pages_cached, 54u);  // Pages 10 (dirty) to 63 stay.
  got.clear();
  n = b->ReadForCache(fb, 53 * kPage, 11 * kPage, /*exclusive=*/false, collect);
  ASSERT_TRUE(n.ok()) << n.status();
  EXPECT_TRUE(SameBytes(got, data.substr(11 * kPage)));
  EXPECT_EQ(b->Stats().pages_cached, 1u);
  // The node's own reads still see it all (from the servers again).
  EXPECT_TRUE(SameBytes(MustRead(*b, fb, 0, data.size()), data));
  EXPECT_TRUE(a->Close(fa).ok());
  EXPECT_TRUE(b->Close(fb).ok());
}

// A fill may go through the cache's pipe: the data servers' bytes, and
// zeros for holes and unwritten extents, arrive in the pipe, never in the
// node's pages. A range with a page of the node's cached, and a pipe that
// fills up, go through the pages instead.
TEST_F(ClientClusterTest, CacheAboveFillsGoThroughItsPipeWhenNothingIsCached) {
  StartCluster();
  auto a = Node("a");
  ClientOptions o;
  o.readahead_bytes = 0;
  auto b = Node("b", o);
  std::string data;
  for (int i = 0; i < 40; ++i) data += Fill('A' + i % 26, kPage);
  uint64_t fa = MustOpen(*a, "/piped", O_RDWR | O_CREAT);
  MustWrite(*a, fa, data, 0);
  ASSERT_TRUE(a->Fsync(fa, false).ok());
  ASSERT_TRUE(
      a->Fallocate(fa, kFallocPunchHole | kFallocKeepSize, 8 * kPage, 4 * kPage)
          .ok());
  ASSERT_TRUE(a->Fallocate(fa, 0, 40 * kPage, 8 * kPage).ok());  // Unwritten.
  ASSERT_TRUE(a->Fsync(fa, false).ok());
  data.replace(8 * kPage, 4 * kPage, std::string(4 * kPage, '\0'));
  data += std::string(8 * kPage, '\0');

  int fds[2];
  ASSERT_EQ(pipe2(fds, O_NONBLOCK | O_CLOEXEC), 0);
  ASSERT_GE(fcntl(fds[0], F_SETPIPE_SZ, 1 << 20), 1 << 20);
  std::string piped, got;
  auto take = [&piped](int fd, size_t bytes) {
    std::string buf(bytes, '\0');
    size_t have = 0;
    while (have < bytes) {
      ssize_t n = read(fd, buf.data() + have, bytes - have);
      if (n <= 0) break;
      have += static_cast<size_t>(n);
    }
    piped.append(buf, 0, have);
    EXPECT_EQ(have, bytes);
  };
  Client::FillPipe pipe;
  pipe.read_fd = fds[0];
  pipe.write_fd = fds[1];
  pipe.capacity = 1 << 20;
  pipe.deliver = [&](size_t bytes) { take(fds[0], bytes); };
  const Client::Delivery collect = [&got](const struct iovec* iov, int n,
                                          size_t) {
    for (int i = 0; i < n; ++i) {
      got.append(static_cast<const char*>(iov[i].iov_base), iov[i].iov_len);
    }
  };
  uint64_t fb = MustOpen(*b, "/piped", O_RDWR);
  // Past EOF: the fill stops there.
  absl::StatusOr<size_t> n =
      b->ReadForCache(fb, data.size() + 1000, 0, false, collect, &pipe);
  ASSERT_TRUE(n.ok()) << n.status();
  EXPECT_EQ(*n, data.size());
  EXPECT_TRUE(SameBytes(piped, data));
  EXPECT_EQ(got, "");
  EXPECT_EQ(b->Stats().piped_fills, 1u);
  EXPECT_EQ(b->Stats().pages_cached, 0u);

  // A page of the node's own (dirty) in the range: through the pages.
  MustWrite(*b, fb, Fill('z', kPage), 20 * kPage);
  data.replace(20 * kPage, kPage, Fill('z', kPage));
  piped.clear();
  n = b->ReadForCache(fb, 32 * kPage, 0, false, collect, &pipe);
  ASSERT_TRUE(n.ok()) << n.status();
  EXPECT_TRUE(SameBytes(got, data.substr(0, 32 * kPage)));
  EXPECT_EQ(piped, "");
  EXPECT_EQ(b->Stats().piped_fills, 1u);

  // A pipe that fills up before the data is in: through the pages, and the
  // pipe is left empty.
  b->DropCaches();
  int small[2];
  ASSERT_EQ(pipe2(small, O_NONBLOCK | O_CLOEXEC), 0);
  ASSERT_GT(fcntl(small[0], F_SETPIPE_SZ, 4096), 0);
  Client::FillPipe tiny = pipe;
  tiny.read_fd = small[0];
  tiny.write_fd = small[1];
  tiny.deliver = [&](size_t bytes) { take(small[0], bytes); };
  got.clear();
  n = b->ReadForCache(fb, 16 * kPage, 24 * kPage, false, collect, &tiny);
  ASSERT_TRUE(n.ok()) << n.status();
  EXPECT_TRUE(SameBytes(got, data.substr(24 * kPage, 16 * kPage)));
  EXPECT_EQ(piped, "");
  EXPECT_EQ(b->Stats().pipe_fallbacks, 1u);
  char left;
  EXPECT_LT(read(small[0], &left, 1), 0);  // EAGAIN: empty.
  for (int fd : {fds[0], fds[1], small[0], small[1]}) close(fd);
  EXPECT_TRUE(a->Close(fa).ok());
  EXPECT_TRUE(b->Close(fb).ok());
}

// With a cache above (the kernel's, through FUSE) the data a node was
// given to write lives there too: once written back, the node's pages
// leave, and their frames take the next writes. Without one they stay.
TEST_F(ClientClusterTest, WrittenBackPagesLeaveWhenACacheAboveHoldsThem) {
  StartCluster();
  struct Above : CacheAbove {
    void Invalidate(uint64_t, uint64_t, uint64_t) override {}
  } above;
  auto a = Node("a");
  a->SetCacheAbove(&above);
  auto b = Node("b");
  std::string data;
  for (int i = 0; i < 64; ++i) data += Fill('a' + i % 26, kPage);
  uint64_t fa = MustOpen(*a, "/above", O_RDWR | O_CREAT);
  uint64_t fb = MustOpen(*b, "/plain", O_RDWR | O_CREAT);
  MustWrite(*a, fa, data, 0);
  MustWrite(*b, fb, data, 0);
  EXPECT_EQ(a->Stats().dirty_pages, 64u);
  ASSERT_TRUE(a->Fsync(fa, false).ok());
  ASSERT_TRUE(b->Fsync(fb, false).ok());
  EXPECT_EQ(a->Stats().pages_cached, 0u);
  EXPECT_EQ(b->Stats().pages_cached, 64u);
  EXPECT_TRUE(SameBytes(MustRead(*a, fa, 0, data.size()), data));
  EXPECT_TRUE(a->Close(fa).ok());
  EXPECT_TRUE(b->Close(fb).ok());
  a->SetCacheAbove(nullptr);
}

// A readahead cut short at the end of the file once stayed registered as
// in flight: a later read of a page it had brought in, dropped since by
// another node's write, waited for it forever.
TEST_F(ClientClusterTest, ReadaheadEndingAtEofLeavesNothingToWaitFor) {
  StartCluster();
  auto a = Node("a");
  auto b = Node("b");
  constexpr uint64_t kMiB = 1 << 20;
  std::string data = Fill('o', 2 * kMiB + kMiB / 2);
  uint64_t fa = MustOpen(*a, "/eof", O_RDWR | O_CREAT);
  MustWrite(*a, fa, data, 0);
  ASSERT_TRUE(a->Fsync(fa, false).ok());
  uint64_t fb = MustOpen(*b, "/eof", O_RDONLY);
  // The second read's readahead runs into EOF.
  EXPECT_TRUE(SameBytes(MustRead(*b, fb, 0, kMiB), data.substr(0, kMiB)));
  EXPECT_TRUE(SameBytes(MustRead(*b, fb, kMiB, kMiB), data.substr(kMiB, kMiB)));
  for (int i = 0; i < 200 && b->Stats().pages_cached < data.size() / kPage;
       ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  MustWrite(*a, fa, Fill('n', kMiB / 2), 2 * kMiB);  // Drops b's pages.
  data.replace(2 * kMiB, kMiB / 2, Fill('n', kMiB / 2));
  std::atomic<bool> done{false};
  std::string got;
  std::thread reader([&] {
    got = MustRead(*b, fb, 2 * kMiB, kMiB);
    done = true;
  });
  for (int i = 0; i < 600 && !done; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  if (!done) {
    fprintf(stderr, "the read after the write hangs\n");
    std::abort();
  }
  reader.join();
  EXPECT_TRUE(SameBytes(got, data.substr(2 * kMiB)));
  EXPECT_TRUE(a->Close(fa).ok());
  EXPECT_TRUE(b->Close(fb).ok());
}

TEST_F(ClientClusterTest, DirectWriteReplacesWhatAReaderCached) {
  StartCluster();
  auto a = Node("a");
  auto b = Node("b");
  uint64_t fa = MustOpen(*a, "/f", O_RDWR | O_CREAT);
  MustWrite(*a, fa, Fill('o', 64 * kPage), 0);
  ASSERT_TRUE(a->Fsync(fa, false).ok());
  uint64_t fb = MustOpen(*b, "/f", O_RDONLY);
  EXPECT_TRUE(
      SameBytes(MustRead(*b, fb, 0, 64 * kPage), Fill('o', 64 * kPage)));
  uint64_t fd = MustOpen(*a, "/f", O_RDWR | O_DIRECT);
  MustWrite(*a, fd, Fill('n', 16 * kPage), 8 * kPage);
  std::string want = Fill('o', 64 * kPage);
  want.replace(8 * kPage, 16 * kPage, Fill('n', 16 * kPage));
  EXPECT_TRUE(SameBytes(MustRead(*b, fb, 0, 64 * kPage), want));
  // The writer's own buffered handle sees it too.
  EXPECT_TRUE(SameBytes(MustRead(*a, fa, 0, 64 * kPage), want));
  uint64_t fbd = MustOpen(*b, "/f", O_RDONLY | O_DIRECT);
  EXPECT_TRUE(SameBytes(MustRead(*b, fbd, 0, 64 * kPage), want));
}

TEST_F(ClientClusterTest, UnalignedDirectIoIsInvalid) {
  StartCluster();
  auto a = Node("a");
  uint64_t fd = MustOpen(*a, "/f", O_RDWR | O_CREAT | O_DIRECT);
  std::string buf(100, 'x');
  EXPECT_EQ(ErrnoOf(a->Write(fd, buf.data(), buf.size(), 0).status()), EINVAL);
  EXPECT_EQ(ErrnoOf(a->Read(fd, buf.data(), kPage, 10).status()), EINVAL);
}

TEST_F(ClientClusterTest, TruncateDownAndUpShowsZerosOnACachingNode) {
  StartCluster();
  auto a = Node("a");
  auto b = Node("b");
  uint64_t fa = MustOpen(*a, "/f", O_RDWR | O_CREAT);
  MustWrite(*a, fa, Fill('x', 10000), 0);
  uint64_t fb = MustOpen(*b, "/f", O_RDONLY);
  EXPECT_TRUE(SameBytes(MustRead(*b, fb, 0, 20000), Fill('x', 10000)));
  SetAttrArgs args;
  args.valid = kSetSize;
  args.size = 5000;
  ASSERT_TRUE(a->SetAttr(a->InoOf(fa), args).ok());
  EXPECT_TRUE(SameBytes(MustRead(*b, fb, 0, 20000), Fill('x', 5000)));
  args.size = 10000;
  ASSERT_TRUE(a->SetAttr(a->InoOf(fa), args).ok());
  std::string want = Fill('x', 5000) + std::string(5000, '\0');
  EXPECT_TRUE(SameBytes(MustRead(*b, fb, 0, 20000), want));
  EXPECT_TRUE(SameBytes(MustRead(*a, fa, 0, 20000), want));
  EXPECT_TRUE(Fsck().empty());
}

TEST_F(ClientClusterTest, CollapseAndInsertShiftWhatACachingNodeSees) {
  StartCluster();
  auto a = Node("a");
  auto b = Node("b");
  uint64_t fa = MustOpen(*a, "/f", O_RDWR | O_CREAT);
  std::string data;
  for (int i = 0; i < 8; ++i) data += Fill('0' + i, kPage);
  MustWrite(*a, fa, data, 0);
  uint64_t fb = MustOpen(*b, "/f", O_RDONLY);
  EXPECT_TRUE(SameBytes(MustRead(*b, fb, 0, data.size()), data));
  ASSERT_TRUE(
      a->Fallocate(fa, kFallocCollapseRange, 2 * kPage, 2 * kPage).ok());
  std::string collapsed = data.substr(0, 2 * kPage) + data.substr(4 * kPage);
  EXPECT_TRUE(SameBytes(MustRead(*b, fb, 0, data.size()), collapsed));
  ASSERT_TRUE(a->Fallocate(fa, kFallocInsertRange, kPage, kPage).ok());
  std::string inserted = collapsed.substr(0, kPage) + std::string(kPage, '\0') +
                         collapsed.substr(kPage);
  EXPECT_TRUE(SameBytes(MustRead(*b, fb, 0, data.size()), inserted));
  EXPECT_TRUE(Fsck().empty());
}

TEST_F(ClientClusterTest, PunchAndZeroKeepTheEdgesOfPartialBlocks) {
  StartCluster();
  auto a = Node("a");
  auto b = Node("b");
  uint64_t fa = MustOpen(*a, "/f", O_RDWR | O_CREAT);
  MustWrite(*a, fa, Fill('p', 6 * kPage), 0);
  uint64_t fb = MustOpen(*b, "/f", O_RDWR);
  EXPECT_TRUE(SameBytes(MustRead(*b, fb, 0, 6 * kPage), Fill('p', 6 * kPage)));
  ASSERT_TRUE(
      b->Fallocate(fb, kFallocPunchHole | kFallocKeepSize, 100, 2 * kPage)
          .ok());
  std::string want = Fill('p', 6 * kPage);
  want.replace(100, 2 * kPage, std::string(2 * kPage, '\0'));
  EXPECT_TRUE(SameBytes(MustRead(*a, fa, 0, 6 * kPage), want));
  ASSERT_TRUE(b->Fallocate(fb, kFallocZeroRange, 4 * kPage - 10, 20).ok());
  want.replace(4 * kPage - 10, 20, std::string(20, '\0'));
  EXPECT_TRUE(SameBytes(MustRead(*a, fa, 0, 6 * kPage), want));
  EXPECT_TRUE(Fsck().empty());
}

TEST_F(ClientClusterTest, DelayedCommitAfterTheExtentsChangedIsStaleAndRedone) {
  StartCluster();
  auto a = Node("a");
  auto b = Node("b");
  uint64_t fa = MustOpen(*a, "/f", O_RDWR | O_CREAT | O_DIRECT);
  uint64_t fb = MustOpen(*b, "/f", O_RDWR | O_DIRECT);
  // A's first commit waits 600 ms after its data write; meanwhile B's
  // direct write of the same fresh range (DF is shared) commits the
  // extents, so A's cookie is stale: A remaps and writes again.
  FaultRegistry::Global().Set("client.before_commit", {600, Errc::kOk, 1});
  std::thread ta([&] { MustWrite(*a, fa, Fill('A', 16 * kPage), 0); });
  while (FaultRegistry::Global().Hits("client.before_commit") == 0) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  MustWrite(*b, fb, Fill('B', 16 * kPage), 0);
  ta.join();
  EXPECT_GE(a->Stats().stale_retries, 1u);
  EXPECT_TRUE(
      SameBytes(MustRead(*b, fb, 0, 16 * kPage), Fill('A', 16 * kPage)));
  EXPECT_TRUE(Fsck().empty());
}

// A read asked for the extent map while this node's own write-back was
// between its MapWrite and its commit, and cached the answer after the
// commit: the committed blocks stayed UNWRITTEN (or a hole) in the node's
// map, and once their pages had left the node's cache they read as zeros
// (rangefs-fsx through a mount, 8 KiB of zeros at seed 3).
// Every data server is down for five seconds, half the callback
// timeout, while another node needs a range this node has dirty: the
// write-back of the callback waits for them and the data is kept, not
// dropped after a few quick tries.
TEST_F(ClientClusterTest, DirtyDataSurvivesDataServersDownForLessThanTheLease) {
  StartCluster();
  auto a = Node("a");
  auto b = Node("b");
  ASSERT_TRUE(a && b);
  uint64_t fa = MustOpen(*a, "/down", O_RDWR | O_CREAT);
  const std::string data(64 << 10, 'd');
  MustWrite(*a, fa, data, 0);  // Dirty at a; no fsync.
  uint64_t fb = MustOpen(*b, "/down", O_RDWR);
  for (int i = 0; i < 2; ++i) cluster_->StopData(i, SIGKILL);
  std::string got(data.size(), '\0');
  absl::StatusOr<size_t> n;
  std::thread reader([&] { n = b->Read(fb, got.data(), got.size(), 0); });
  // (Servers start from this thread: a child dies with the thread that
  // forked it, PR_SET_PDEATHSIG.)
  std::this_thread::sleep_for(std::chrono::seconds(5));
  for (int i = 0; i < 2; ++i) cluster_->StartData(i);
  reader.join();
  ASSERT_TRUE(n.ok()) << n.status();
  EXPECT_EQ(*n, data.size());
  EXPECT_TRUE(got == data) << "b did not read a's data";
  EXPECT_EQ(a->Stats().lost_dirty_pages, 0u);
}

TEST_F(ClientClusterTest, AMapAskedBeforeTheNodesOwnCommitIsNotKept) {
  StartCluster();
  auto a = Node("a");
  const uint64_t fa = WriteSynced(*a, "/m", Fill('c', 4 * kPage));
  const std::string dirty = Fill('d', 2 * kPage);
  MustWrite(*a, fa, dirty, 8 * kPage);  // Pages 4-7 a hole, 8-9 dirty.
  a->DropCaches();                      // Page 0 must be read again.
  // The read's map answer waits before it is cached; the write-back
  // commits meanwhile.
  FaultRegistry::Global().Set("client.map_range.before_cache",
                              {400, Errc::kOk, 1});
  std::thread reader([&] {
    EXPECT_TRUE(SameBytes(MustRead(*a, fa, 0, kPage), Fill('c', kPage)));
  });
  while (FaultRegistry::Global().Hits("client.map_range.before_cache") == 0) {
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  ASSERT_TRUE(a->Fsync(fa, /*datasync=*/false).ok());
  reader.join();
  FaultRegistry::Global().Clear("client.map_range.before_cache");
  a->DropCaches();  // Pages 8 and 9 are clean now: they go too.
  EXPECT_TRUE(SameBytes(MustRead(*a, fa, 8 * kPage, 2 * kPage), dirty));
}

TEST_F(ClientClusterTest, StatOnAnotherNodeSeesSizeOfUnflushedWrite) {
  StartCluster();
  auto a = Node("a");
  auto b = Node("b");
  uint64_t fa = MustOpen(*a, "/f", O_RDWR | O_CREAT);
  absl::StatusOr<Attr> before = b->Resolve("/f");
  ASSERT_TRUE(before.ok());
  EXPECT_EQ(before->size, 0u);
  MustWrite(*a, fa, Fill('s', 12345), 0);
  absl::StatusOr<Attr> after = b->Resolve("/f");
  ASSERT_TRUE(after.ok());
  EXPECT_EQ(after->size, 12345u);
  MustWrite(*a, fa, "tail", 20000);
  after = b->GetAttr(after->ino);
  ASSERT_TRUE(after.ok());
  EXPECT_EQ(after->size, 20004u);
}

// A namespace change's reply carries the directory's new attributes, so
// the stat the kernel sends after every create (and a lookup of the
// directory) needs no server; what the node caches is what others read.
TEST_F(ClientClusterTest, DirectoryAttributesAfterANamespaceChangeAreCached) {
  StartCluster();
  auto a = Node("a");
  auto b = Node("b");
  absl::StatusOr<Attr> d = a->Mkdir(kRootIno, "d", 0755, Creds{});
  ASSERT_TRUE(d.ok()) << d.status();
  auto same = [&](const Attr& x, const Attr& y) {
    EXPECT_EQ(x.size, y.size);
    EXPECT_EQ(x.nlink, y.nlink);
    EXPECT_EQ(ToNanos(x.mtime), ToNanos(y.mtime));
    EXPECT_EQ(ToNanos(x.ctime), ToNanos(y.ctime));
  };
  auto check = [&](const char* what) {
    SCOPED_TRACE(what);
    const uint64_t calls = a->Stats().meta_calls;
    absl::StatusOr<Attr> on_a = a->GetAttr(d->ino);
    ASSERT_TRUE(on_a.ok()) << on_a.status();
    EXPECT_EQ(a->Stats().meta_calls, calls);
    absl::StatusOr<Attr> on_b = b->GetAttr(d->ino);  // From the server.
    ASSERT_TRUE(on_b.ok()) << on_b.status();
    same(*on_a, *on_b);
  };
  auto made = a->Create(d->ino, "f", 0644, O_RDWR, Creds{});
  ASSERT_TRUE(made.ok()) << made.status();
  EXPECT_TRUE(a->Close(made->second).ok());
  check("create");
  ASSERT_TRUE(a->Mkdir(d->ino, "sub", 0755, Creds{}).ok());
  check("mkdir");
  ASSERT_TRUE(a->Symlink(d->ino, "ln", "f", Creds{}).ok());
  check("symlink");
  ASSERT_TRUE(a->Link(made->first.ino, d->ino, "f2").ok());
  check("link");
  ASSERT_TRUE(a->Unlink(d->ino, "f").ok());
  check("unlink");
  ASSERT_TRUE(a->Rmdir(d->ino, "sub").ok());
  check("rmdir");
  EXPECT_TRUE(Fsck().empty());
}

// A POSIX name is any bytes but '/' and NUL, UTF-8 or not (stress-ng's
// filename stressor): every call that carries a name, a symlink target or
// an extended attribute takes them as they are, and another node gets the
// same bytes back.
TEST_F(ClientClusterTest, NamesAreBytesNotText) {
  StartCluster();
  auto a = Node("a");
  auto b = Node("b");
  const std::string dir = "d\xff\xfe";
  const std::string file(255, '\x80');  // The longest name, none of it UTF-8.
  const std::string other = "o\xc3\x28";
  const std::string target = "t\xe2\x28\xa1/\xf0\x90\x28\xbc";
  const std::string xname = "user.\xff";
  const std::string xvalue("\xc0\x00\xff", 3);
  absl::StatusOr<Attr> d = a->Mkdir(kRootIno, dir, 0755, Creds{});
  ASSERT_TRUE(d.ok()) << d.status();
  auto made = a->Create(d->ino, file, 0644, O_RDWR, Creds{});
  ASSERT_TRUE(made.ok()) << made.status();
  ASSERT_TRUE(a->Close(made->second).ok());
  ASSERT_TRUE(a->Symlink(d->ino, "ln\xfa", target, Creds{}).ok());
  ASSERT_TRUE(a->Link(made->first.ino, d->ino, other).ok());
  ASSERT_TRUE(a->SetXattr(made->first.ino, xname, xvalue, 0).ok());

  absl::StatusOr<Attr> bd = b->Lookup(kRootIno, dir);
  ASSERT_TRUE(bd.ok()) << bd.status();
  EXPECT_EQ(bd->ino, d->ino);
  absl::StatusOr<Attr> bf = b->Lookup(d->ino, file);
  ASSERT_TRUE(bf.ok()) << bf.status();
  EXPECT_EQ(bf->ino, made->first.ino);
  absl::StatusOr<Attr> ln = b->Lookup(d->ino, "ln\xfa");
  ASSERT_TRUE(ln.ok()) << ln.status();
  absl::StatusOr<std::string> got_target = b->Readlink(ln->ino);
  ASSERT_TRUE(got_target.ok()) << got_target.status();
  EXPECT_EQ(*got_target, target);
  absl::StatusOr<std::string> got_value = b->GetXattr(bf->ino, xname);
  ASSERT_TRUE(got_value.ok()) << got_value.status();
  EXPECT_EQ(*got_value, xvalue);
  absl::StatusOr<std::vector<std::string>> xnames = b->ListXattr(bf->ino);
  ASSERT_TRUE(xnames.ok()) << xnames.status();
  EXPECT_NE(std::find(xnames->begin(), xnames->end(), xname), xnames->end());

  absl::StatusOr<DirPage> page = b->ReadDir(d->ino, "", 100, true);
  ASSERT_TRUE(page.ok()) << page.status();
  std::vector<std::string> names;
  for (const DirEntry& e : page->entries) names.push_back(e.name);
  std::sort(names.begin(), names.end());
  std::vector<std::string> want = {file, "ln\xfa", other};
  std::sort(want.begin(), want.end());
  EXPECT_EQ(names, want);
  // Listing from a name that is not UTF-8 either.
  absl::StatusOr<DirPage> rest = b->ReadDir(d->ino, names[0], 100, false);
  ASSERT_TRUE(rest.ok()) << rest.status();
  EXPECT_EQ(rest->entries.size(), 2u);

  ASSERT_TRUE(b->Rename(d->ino, other, kRootIno, "r\xfe", 0).ok());
  EXPECT_TRUE(a->Lookup(kRootIno, "r\xfe").ok());
  ASSERT_TRUE(b->RemoveXattr(bf->ino, xname).ok());
  ASSERT_TRUE(b->Unlink(kRootIno, "r\xfe").ok());
  ASSERT_TRUE(b->Unlink(d->ino, file).ok());
  ASSERT_TRUE(b->Unlink(d->ino, "ln\xfa").ok());
  ASSERT_TRUE(a->Rmdir(kRootIno, dir).ok());
  EXPECT_EQ(ErrnoOf(a->Lookup(kRootIno, dir).status()), ENOENT);
  EXPECT_TRUE(Fsck().empty());
}

// A create returns before the new file's INODE EX is granted (it is asked
// for in the background). The directory's lock waits for that grant, so
// another node that finds the file and writes it always calls back the
// creator's cached attributes.
TEST_F(ClientClusterTest, NewFileIsLockedBeforeAnotherNodeCanReachIt) {
  StartCluster();
  auto a = Node("a");
  auto b = Node("b");
  // The grant held up well past the time B needs to find the file.
  FaultRegistry::Global().Set("client.before_new_file_lock",
                              {300, Errc::kOk, 0});
  for (int i = 0; i < 4; ++i) {
    const std::string name = "n" + std::to_string(i);
    auto made = a->Create(kRootIno, name, 0644, O_RDWR, Creds{});
    ASSERT_TRUE(made.ok()) << made.status();
    uint64_t fb = MustOpen(*b, "/" + name, O_RDWR);
    MustWrite(*b, fb, Fill('w', 100 + i), 0);
    absl::StatusOr<Attr> on_a = a->FileAttr(made->second);
    ASSERT_TRUE(on_a.ok()) << on_a.status();
    EXPECT_EQ(on_a->size, 100u + i) << name;
    EXPECT_TRUE(a->Close(made->second).ok());
    EXPECT_TRUE(b->Close(fb).ok());
  }
  FaultRegistry::Global().Clear("client.before_new_file_lock");
  EXPECT_TRUE(Fsck().empty());
}

// A create returns before the metadata server has the file (the create
// is sent ahead, here held up 1.5 s): the node's own later calls, and
// any other node, still see the file as if the create had been
// synchronous; a create the server refuses turns the handle's I/O into EIO.
// The metadata server takes a session's leased inode numbers in order
// (numbers below the last one used go unused), so creates sent ahead from
// two directories at once must reach it in the order of their numbers.
TEST_F(ClientClusterTest, CreatesAheadInTwoDirectoriesAtOnceAllSucceed) {
  StartCluster();
  auto a = Node("a");
  auto b = Node("b");
  ASSERT_TRUE(CreatesGoAhead(*a));
  auto d1 = a->Mkdir(kRootIno, "d1", 0755, Creds{});
  auto d2 = a->Mkdir(kRootIno, "d2", 0755, Creds{});
  ASSERT_TRUE(d1.ok() && d2.ok());
  const ClientStats before = a->Stats();
  // The first create stops after taking its number; the second takes the
  // next number meanwhile.
  FaultRegistry::Global().Set("client.create_ahead.numbered",
                              {400, Errc::kOk, 1});
  std::thread first([&] {
    auto f = a->Create(d1->ino, "x", 0644, O_RDWR, Creds{});
    ASSERT_TRUE(f.ok()) << f.status();
    EXPECT_TRUE(a->Close(f->second).ok());
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  auto g = a->Create(d2->ino, "y", 0644, O_RDWR, Creds{});
  ASSERT_TRUE(g.ok()) << g.status();
  EXPECT_TRUE(a->Close(g->second).ok());
  first.join();
  EXPECT_EQ(a->Stats().creates_ahead, before.creates_ahead + 2);
  EXPECT_TRUE(b->Resolve("/d1/x").ok());
  EXPECT_TRUE(b->Resolve("/d2/y").ok());
  EXPECT_EQ(a->Stats().creates_ahead_failed, before.creates_ahead_failed);
}

TEST_F(ClientClusterTest, CreateSentAheadIsSeenAsIfItHadWaited) {
  StartCluster();
  auto a = Node("a");
  auto b = Node("b");
  ASSERT_TRUE(CreatesGoAhead(*a));
  FaultRegistry::Global().Set("client.before_create_sent",
                              {1500, Errc::kOk, 0});
  EXPECT_EQ(ErrcOf(a->Lookup(kRootIno, "f").status()), Errc::kNotFound);
  const ClientStats before = a->Stats();
  auto made = a->Create(kRootIno, "f", 0640, O_RDWR, Creds{1000, 1000, {}, 0});
  ASSERT_TRUE(made.ok()) << made.status();
  EXPECT_EQ(a->Stats().creates_ahead, before.creates_ahead + 1);
  EXPECT_EQ(a->Stats().meta_calls, before.meta_calls)
      << "the create waited for the server";
  // A name not known absent is looked up at the server, without waiting
  // for the create queued before it (another name).
  auto g = a->Create(kRootIno, "g", 0644, O_RDWR, Creds{});
  ASSERT_TRUE(g.ok()) << g.status();
  EXPECT_EQ(a->Stats().creates_ahead, before.creates_ahead + 2);
  EXPECT_EQ(a->Stats().meta_calls, before.meta_calls + 1)
      << "the lookup waited for the queued create";
  EXPECT_TRUE(a->Close(g->second).ok());
  EXPECT_EQ(made->first.mode, S_IFREG | 0640u);
  EXPECT_EQ(made->first.uid, 1000u);
  // This node: data, a listing (ordered after the create), the same stat.
  MustWrite(*a, made->second, "ahead", 0);
  EXPECT_TRUE(a->Fsync(made->second, false).ok());
  absl::StatusOr<Attr> on_a = a->FileAttr(made->second);
  ASSERT_TRUE(on_a.ok()) << on_a.status();
  auto page = a->ReadDir(kRootIno, "", 1000, false);
  ASSERT_TRUE(page.ok()) << page.status();
  bool listed = false;
  for (const DirEntry& e : page->entries) listed |= e.name == "f";
  EXPECT_TRUE(listed);
  EXPECT_GT(a->Stats().meta_calls, before.meta_calls);
  // Another node: the name, the attributes, the data.
  absl::StatusOr<Attr> on_b = b->Resolve("/f");
  ASSERT_TRUE(on_b.ok()) << on_b.status();
  EXPECT_EQ(on_b->ino, made->first.ino);
  EXPECT_EQ(on_b->mode, S_IFREG | 0640u);
  EXPECT_EQ(ToNanos(on_b->ctime), ToNanos(on_a->ctime));
  EXPECT_EQ(ToNanos(on_b->btime), ToNanos(made->first.btime));
  uint64_t fb = MustOpen(*b, "/f", O_RDONLY);
  EXPECT_TRUE(SameBytes(MustRead(*b, fb, 0, 100), "ahead"));
  EXPECT_TRUE(b->Close(fb).ok());
  EXPECT_TRUE(a->Close(made->second).ok());
  // Refused by the server (here: the send fails): the handle reports EIO
  // and the name is gone.
  FaultRegistry::Global().Set("client.before_create_sent",
                              {0, Errc::kUnavailable, 0});
  auto lost = a->Create(kRootIno, "lost", 0644, O_RDWR, Creds{});
  ASSERT_TRUE(lost.ok()) << lost.status();
  ASSERT_TRUE(a->SyncAll().ok());  // Waits for the queued create's answer.
  FaultRegistry::Global().Clear("client.before_create_sent");
  EXPECT_EQ(a->Stats().creates_ahead_failed, 1u);
  EXPECT_EQ(ErrcOf(a->Resolve("/lost").status()), Errc::kNotFound);
  EXPECT_EQ(ErrnoOf(a->Close(lost->second)), EIO);
  EXPECT_EQ(ErrcOf(b->Resolve("/lost").status()), Errc::kNotFound);
  EXPECT_TRUE(Fsck().empty());
}

// Regression: a node cached the extent mappings of a whole 64 MiB window
// after a small read, beyond the INVAL range it held. Another node then
// allocated and wrote a block there without calling it back, and the stale
// "hole" mapping made a partial write read zeros instead of that block.
TEST_F(ClientClusterTest, MappingsAreNotCachedBeyondTheNodesInvalLock) {
  StartCluster();
  auto a = Node("a");
  auto b = Node("b");
  const uint64_t far = 1 << 20;
  uint64_t fa = MustOpen(*a, "/m", O_RDWR | O_CREAT);
  MustWrite(*a, fa, Fill('a', kPage), 0);
  ASSERT_TRUE(a->Fsync(fa, false).ok());
  uint64_t fb = MustOpen(*b, "/m", O_RDWR);
  EXPECT_TRUE(SameBytes(MustRead(*b, fb, 0, kPage), Fill('a', kPage)));
  MustWrite(*a, fa, Fill('x', kPage), far);
  ASSERT_TRUE(a->Fsync(fa, false).ok());
  MustWrite(*b, fb, Fill('y', 10), far + 100);
  std::string want = Fill('x', kPage);
  want.replace(100, 10, Fill('y', 10));
  EXPECT_TRUE(SameBytes(MustRead(*a, fa, far, kPage), want));
}

TEST_F(ClientClusterTest, AppendsFromTwoNodesNeverOverlap) {
  StartCluster();
  auto a = Node("a");
  auto b = Node("b");
  uint64_t fa = MustOpen(*a, "/log", O_WRONLY | O_CREAT | O_APPEND);
  uint64_t fb = MustOpen(*b, "/log", O_WRONLY | O_APPEND);
  std::thread ta([&] {
    for (int i = 0; i < 30; ++i) MustWrite(*a, fa, Fill('a', 100), 0);
  });
  for (int i = 0; i < 30; ++i) MustWrite(*b, fb, Fill('b', 100), 0);
  ta.join();
  uint64_t fr = MustOpen(*a, "/log", O_RDONLY);
  std::string all = MustRead(*a, fr, 0, 10000);
  ASSERT_EQ(all.size(), 6000u);
  for (size_t i = 0; i < all.size(); i += 100) {
    EXPECT_EQ(all.substr(i, 100), Fill(all[i], 100)) << i;
  }
}

TEST_F(ClientClusterTest, EvictedNodeReportsEioUntilReopenedAndWritesNothing) {
  StartCluster();
  // lockd hands an evicted node's locks over, and tells it, a lease after
  // it last heard from it: a short one here.
  ClientOptions short_lease;
  short_lease.lease_ms = 2000;
  auto a = Node("a", short_lease);
  auto b = Node("b");
  uint64_t fa = MustOpen(*a, "/f", O_RDWR | O_CREAT);
  MustWrite(*a, fa, Fill('1', kPage), 0);
  ASSERT_TRUE(a->Fsync(fa, false).ok());
  MustWrite(*a, fa, Fill('2', kPage), 0);  // Dirty, not written back.
  uint64_t old_session = a->session_id();
  EXPECT_EQ(Evict(old_session).error().code(), proto::OK);
  // A learns it lost its session; its dirty page is gone, never written.
  for (int i = 0; i < 500 && a->Stats().sessions_lost == 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ASSERT_GT(a->Stats().sessions_lost, 0u);
  EXPECT_EQ(ErrnoOf(a->Fsync(fa, false)), EIO);
  std::string buf(kPage, '\0');
  EXPECT_EQ(ErrnoOf(a->Read(fa, buf.data(), kPage, 0).status()), EIO);
  EXPECT_EQ(ErrnoOf(a->CheckError(fa)), EIO);
  EXPECT_EQ(ErrnoOf(a->Close(fa)), EIO);
  uint64_t fb = MustOpen(*b, "/f", O_RDONLY);
  EXPECT_TRUE(SameBytes(MustRead(*b, fb, 0, kPage), Fill('1', kPage)));
  // Reopened on A: works again, under the new session.
  uint64_t again = MustOpen(*a, "/f", O_RDWR);
  EXPECT_NE(a->session_id(), old_session);
  EXPECT_TRUE(SameBytes(MustRead(*a, again, 0, kPage), Fill('1', kPage)));
  MustWrite(*a, again, Fill('3', kPage), 0);
  EXPECT_TRUE(SameBytes(MustRead(*b, fb, 0, kPage), Fill('3', kPage)));
  EXPECT_TRUE(Fsck().empty());
}

// Creates still queued when the node is evicted reach the metadata server
// under the fenced session: refused, they leave nothing behind, and their
// handles report EIO.
TEST_F(ClientClusterTest, CreatesQueuedAtAnEvictionFailAndLeaveNothing) {
  StartCluster();
  ClientOptions short_lease;  // Evictions complete a lease on.
  short_lease.lease_ms = 2000;
  auto a = Node("a", short_lease);
  auto b = Node("b");
  ASSERT_TRUE(CreatesGoAhead(*a));
  // Known absent, so neither create asks the server (which would wait
  // behind the held-up one).
  for (const char* name : {"q1", "q2"}) {
    EXPECT_EQ(ErrcOf(a->Lookup(kRootIno, name).status()), Errc::kNotFound);
  }
  FaultRegistry::Global().Set("client.before_create_sent",
                              {1000, Errc::kOk, 0});
  const ClientStats before = a->Stats();
  std::vector<uint64_t> handles;
  for (const char* name : {"q1", "q2"}) {
    auto made = a->Create(kRootIno, name, 0644, O_RDWR, Creds{});
    ASSERT_TRUE(made.ok()) << made.status();
    handles.push_back(made->second);
  }
  ASSERT_EQ(a->Stats().creates_ahead, before.creates_ahead + 2);
  EXPECT_EQ(Evict(a->session_id()).error().code(), proto::OK);
  for (int i = 0; i < 300 && a->Stats().creates_ahead_failed < 2; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  FaultRegistry::Global().Clear("client.before_create_sent");
  EXPECT_EQ(a->Stats().creates_ahead_failed, 2u);
  for (uint64_t fh : handles) EXPECT_EQ(ErrnoOf(a->Close(fh)), EIO);
  EXPECT_EQ(ErrcOf(b->Resolve("/q1").status()), Errc::kNotFound);
  EXPECT_EQ(ErrcOf(b->Resolve("/q2").status()), Errc::kNotFound);
  EXPECT_EQ(ErrcOf(a->Resolve("/q1").status()), Errc::kNotFound);
  EXPECT_TRUE(Fsck().empty());
}

TEST_F(ClientClusterTest, WriteDelayedPastAnEvictionNeverLands) {
  StartCluster();
  ClientOptions short_lease;  // Evictions complete a lease on.
  short_lease.lease_ms = 2000;
  auto a = Node("a", short_lease);
  auto b = Node("b");
  uint64_t fa = MustOpen(*a, "/f", O_RDWR | O_CREAT);
  MustWrite(*a, fa, Fill('O', 4 * kPage), 0);
  ASSERT_TRUE(a->Fsync(fa, false).ok());
  MustWrite(*a, fa, Fill('N', 4 * kPage), 0);
  // A's writeback stalls between MapWrite and its data write; meanwhile
  // lockd evicts A (fencing it at every server first).
  FaultRegistry::Global().Set("client.after_mapwrite", {1500, Errc::kOk, 1});
  absl::Status synced;
  std::thread t([&] { synced = a->Fsync(fa, false); });
  while (FaultRegistry::Global().Hits("client.after_mapwrite") == 0) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  EXPECT_EQ(Evict(a->session_id()).error().code(), proto::OK);
  t.join();
  EXPECT_EQ(ErrnoOf(synced), EIO) << synced;
  uint64_t fb = MustOpen(*b, "/f", O_RDONLY);
  EXPECT_TRUE(SameBytes(MustRead(*b, fb, 0, 4 * kPage), Fill('O', 4 * kPage)));
  EXPECT_GE(a->Stats().lost_dirty_pages, 4u);
  EXPECT_TRUE(Fsck().empty());
}

TEST_F(ClientClusterTest, BackgroundWritebackReachesTheServersWithoutFsync) {
  StartCluster();
  ClientOptions o;
  o.writeback_interval_ms = 200;
  auto a = Node("a", o);
  uint64_t fa = MustOpen(*a, "/bg", O_RDWR | O_CREAT);
  MustWrite(*a, fa, Fill('b', 10000), 0);
  // The pages are marked clean just after the commit the server shows.
  uint64_t size = 0;
  uint64_t dirty = 1;
  for (int i = 0; i < 100 && (size != 10000 || dirty != 0); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    size = ServerSize(a->InoOf(fa));
    dirty = a->Stats().dirty_pages;
  }
  EXPECT_EQ(size, 10000u);
  EXPECT_EQ(dirty, 0u);
}

// du right after a write (ext4 counts delayed allocations the same way):
// the blocks of data not yet written back count, at least one per page.
TEST_F(ClientClusterTest, StatCountsTheBlocksOfDataNotYetWrittenBack) {
  StartCluster();
  auto a = Node("a");
  uint64_t fa = MustOpen(*a, "/du", O_RDWR | O_CREAT);
  MustWrite(*a, fa, Fill('d', 10000), 0);
  MustWrite(*a, fa, Fill('e', 100), 40 * kPage);
  absl::StatusOr<Attr> dirty = a->GetAttr(a->InoOf(fa));
  ASSERT_TRUE(dirty.ok());
  EXPECT_EQ(dirty->blocks, 4 * kPage / 512);
  ASSERT_TRUE(a->Fsync(fa, false).ok());
  absl::StatusOr<Attr> clean = a->GetAttr(a->InoOf(fa));
  ASSERT_TRUE(clean.ok());
  EXPECT_EQ(clean->blocks, 4 * kPage / 512);
  // Overwriting written blocks adds none.
  MustWrite(*a, fa, Fill('f', kPage), 0);
  EXPECT_EQ(a->GetAttr(a->InoOf(fa))->blocks, 4 * kPage / 512);
}

TEST_F(ClientClusterTest, OsyncWriteIsOnTheServersWhenItReturns) {
  StartCluster();
  auto a = Node("a");
  uint64_t fa = MustOpen(*a, "/s", O_RDWR | O_CREAT | O_SYNC);
  MustWrite(*a, fa, Fill('s', 5000), 0);
  EXPECT_EQ(a->Stats().dirty_pages, 0u);
  EXPECT_EQ(ServerSize(a->InoOf(fa)), 5000u);
}

TEST_F(ClientClusterTest, UnlinkedFileLivesUntilTheLastCloseInTheCluster) {
  StartCluster();
  auto a = Node("a");
  auto b = Node("b");
  absl::StatusOr<FsStat> empty = a->StatFs();
  ASSERT_TRUE(empty.ok());
  uint64_t fa = MustOpen(*a, "/doomed", O_RDWR | O_CREAT);
  MustWrite(*a, fa, Fill('d', 64 * kPage), 0);
  ASSERT_TRUE(a->Fsync(fa, false).ok());
  absl::StatusOr<Attr> root = b->Resolve("/");
  ASSERT_TRUE(root.ok());
  ASSERT_TRUE(b->Unlink(root->ino, "doomed").ok());
  EXPECT_EQ(ErrnoOf(b->Resolve("/doomed").status()), ENOENT);
  // A keeps reading and writing through its handle.
  MustWrite(*a, fa, Fill('e', kPage), 0);
  ASSERT_TRUE(a->Fsync(fa, false).ok());
  EXPECT_TRUE(SameBytes(MustRead(*a, fa, 0, kPage), Fill('e', kPage)));
  absl::StatusOr<Attr> st = a->FileAttr(fa);
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(st->nlink, 0u);
  EXPECT_TRUE(a->Close(fa).ok());
  absl::StatusOr<FsStat> after = a->StatFs();
  ASSERT_TRUE(after.ok());
  EXPECT_EQ(after->free_blocks, empty->free_blocks);
  EXPECT_TRUE(Fsck().empty());
}

// A filesystem fills to its last block: write-back larger than the space
// left writes what fits and reports NO_SPACE for the rest, keeping it
// dirty, so the same fsync succeeds once space is freed.
TEST_F(ClientClusterTest, FillsToTheLastBlockThenNoSpaceUntilSpaceIsFreed) {
  StartSmallCluster(8ull << 20);
  auto a = Node("a");
  auto b = Node("b");
  uint64_t free_bytes = 0;
  // All but 16 blocks in one file, then more than those 16 in another.
  const uint64_t f1 = FillAllBut16Blocks(*a, &free_bytes);
  uint64_t f2 = MustOpen(*a, "/second", O_RDWR | O_CREAT);
  const std::string second = Fill('2', 1 << 20);
  MustWrite(*a, f2, second, 0);
  EXPECT_EQ(ErrnoOf(a->Fsync(f2, false)), ENOSPC);
  // What went to the servers is clean; only what did not fit stays dirty.
  EXPECT_EQ(a->Stats().dirty_pages, second.size() / kPage - 16);
  absl::StatusOr<FsStat> full = a->StatFs();
  ASSERT_TRUE(full.ok());
  EXPECT_EQ(full->free_blocks, 0u);
  EXPECT_GE(ServerSize(a->InoOf(f2)), 16 * kPage);

  ASSERT_TRUE(a->Close(f1).ok());
  ASSERT_TRUE(a->Unlink(kRootIno, "first").ok());
  ASSERT_TRUE(a->Fsync(f2, false).ok());
  ASSERT_TRUE(a->Close(f2).ok());
  uint64_t fb = MustOpen(*b, "/second", O_RDONLY);
  EXPECT_TRUE(SameBytes(MustRead(*b, fb, 0, second.size()), second));
  EXPECT_TRUE(b->Close(fb).ok());
  EXPECT_TRUE(Fsck().empty());
}

// Every other page of a file: each its own run, written back at once.
TEST_F(ClientClusterTest, ScatteredPagesAreAllWrittenBackByOneFsync) {
  StartCluster();
  auto a = Node("a");
  auto b = Node("b");
  uint64_t fa = MustOpen(*a, "/scattered", O_RDWR | O_CREAT);
  const std::string want = WriteEveryOtherPage(*a, fa, 400, 'a');
  ASSERT_TRUE(a->Fsync(fa, false).ok());
  EXPECT_EQ(a->Stats().dirty_pages, 0u);
  EXPECT_EQ(a->Stats().writeback_pages, 200u);
  EXPECT_EQ(ServerSize(a->InoOf(fa)), want.size());
  uint64_t fb = MustOpen(*b, "/scattered", O_RDONLY);
  EXPECT_TRUE(SameBytes(MustRead(*b, fb, 0, want.size()), want));
  EXPECT_TRUE(Fsck().empty());
}

// Scattered runs written back at once, some past the last free block:
// the ones that got space are clean, the others stay dirty until there is
// space again, and nothing is lost or written twice.
TEST_F(ClientClusterTest, ScatteredPagesPastTheLastFreeBlockStayDirty) {
  StartSmallCluster(8ull << 20);
  auto a = Node("a");
  auto b = Node("b");
  uint64_t free_bytes = 0;
  const uint64_t f1 = FillAllBut16Blocks(*a, &free_bytes);
  uint64_t f2 = MustOpen(*a, "/second", O_RDWR | O_CREAT);
  const std::string want = WriteEveryOtherPage(*a, f2, 128, 'A');
  EXPECT_EQ(ErrnoOf(a->Fsync(f2, false)), ENOSPC);
  EXPECT_EQ(a->Stats().dirty_pages, 64u - 16u);
  ASSERT_TRUE(a->Close(f1).ok());
  ASSERT_TRUE(a->Unlink(kRootIno, "first").ok());
  ASSERT_TRUE(a->Fsync(f2, false).ok());
  EXPECT_EQ(a->Stats().dirty_pages, 0u);
  EXPECT_EQ(a->Stats().writeback_pages, 64u + (free_bytes / kPage - 16));
  uint64_t fb = MustOpen(*b, "/second", O_RDONLY);
  EXPECT_TRUE(SameBytes(MustRead(*b, fb, 0, want.size()), want));
  EXPECT_TRUE(Fsck().empty());
}

// A direct write that runs out of space part way returns what it wrote,
// as Linux does: the bytes are on the servers and the size covers them.
TEST_F(ClientClusterTest, DirectWriteRunningOutOfSpaceIsShort) {
  StartSmallCluster(4ull << 20);
  auto a = Node("a");
  auto b = Node("b");
  const uint64_t free_bytes = FreeBytes(*a);
  ASSERT_EQ(free_bytes, 8u << 20);
  uint64_t fa = MustOpen(*a, "/d", O_RDWR | O_CREAT | O_DIRECT);
  MustWrite(*a, fa, Fill('1', 6 << 20), 0);
  const std::string more = Fill('2', 4 << 20);
  absl::StatusOr<size_t> n = a->Write(fa, more.data(), more.size(), 6 << 20);
  ASSERT_TRUE(n.ok()) << n.status();
  EXPECT_EQ(*n, 2u << 20);
  EXPECT_EQ(ErrnoOf(a->Write(fa, more.data(), kPage, 8 << 20).status()),
            ENOSPC);
  uint64_t fb = MustOpen(*b, "/d", O_RDONLY);
  EXPECT_TRUE(SameBytes(MustRead(*b, fb, 0, 12 << 20),
                        Fill('1', 6 << 20) + Fill('2', 2 << 20)));
  EXPECT_TRUE(b->Close(fb).ok());
  EXPECT_TRUE(a->Close(fa).ok());
  EXPECT_TRUE(Fsck().empty());
}

// Dirty data that cannot be written back when another node asks for the
// file (a full filesystem) is lost, as a failed write-back is on Linux:
// the writer gives up its pages and its size with the lock, so both nodes
// agree on what the file holds, and the writer's handle reports the loss.
TEST_F(ClientClusterTest,
       DataThatCannotBeWrittenBackForACallbackIsLostOnBothNodes) {
  StartSmallCluster(4ull << 20);
  auto a = Node("a");
  auto b = Node("b");
  const uint64_t free_bytes = FreeBytes(*a);
  uint64_t fa = MustOpen(*a, "/f", O_RDWR | O_CREAT);
  // Twice the space there is, left dirty (under the node's dirty limit).
  MustWrite(*a, fa, Fill('a', 2 * free_bytes), 0);

  absl::StatusOr<Attr> on_b = b->Resolve("/f");
  ASSERT_TRUE(on_b.ok()) << on_b.status();
  EXPECT_LE(on_b->size, free_bytes);
  absl::StatusOr<Attr> on_a = a->FileAttr(fa);
  ASSERT_TRUE(on_a.ok()) << on_a.status();
  EXPECT_EQ(on_a->size, on_b->size);
  uint64_t fb = MustOpen(*b, "/f", O_RDONLY);
  EXPECT_TRUE(
      SameBytes(MustRead(*b, fb, 0, 2 * free_bytes), Fill('a', on_b->size)));
  EXPECT_NE(a->Fsync(fa, false), absl::OkStatus());
  EXPECT_TRUE(b->Close(fb).ok());
  (void)a->Close(fa);
  EXPECT_TRUE(Fsck().empty());
}

// A node tells the metadata server of its opens only when it lets go of
// the file's INODE lock or removes a name of the file itself: the file
// must live on in both cases, and be freed at the last close.
TEST_F(ClientClusterTest, OpensTheServerHeardOfLazilyKeepUnlinkedFilesAlive) {
  StartCluster();
  ClientOptions quick;
  quick.idle_release_ms = 50;  // Gives the INODE lock back while open.
  auto a = Node("a", quick);
  auto b = Node("b");
  absl::StatusOr<FsStat> empty = a->StatFs();
  ASSERT_TRUE(empty.ok());
  absl::StatusOr<Attr> root = a->Resolve("/");
  ASSERT_TRUE(root.ok());
  // Own unlink of a file the node has open.
  uint64_t own = MustOpen(*a, "/own", O_RDWR | O_CREAT);
  MustWrite(*a, own, Fill('o', 16 * kPage), 0);
  ASSERT_TRUE(a->Unlink(root->ino, "own").ok());
  ASSERT_TRUE(a->Fsync(own, false).ok());
  EXPECT_TRUE(
      SameBytes(MustRead(*a, own, 0, 16 * kPage), Fill('o', 16 * kPage)));
  // Another node's unlink after the opener's lock went idle.
  uint64_t idle = MustOpen(*a, "/idle", O_RDWR | O_CREAT);
  MustWrite(*a, idle, Fill('i', 16 * kPage), 0);
  ASSERT_TRUE(a->Fsync(idle, false).ok());
  absl::SleepFor(absl::Milliseconds(500));
  ASSERT_TRUE(b->Unlink(root->ino, "idle").ok());
  EXPECT_TRUE(
      SameBytes(MustRead(*a, idle, 0, 16 * kPage), Fill('i', 16 * kPage)));
  for (uint64_t fh : {own, idle}) EXPECT_TRUE(a->Close(fh).ok());
  absl::StatusOr<FsStat> after = a->StatFs();
  ASSERT_TRUE(after.ok());
  EXPECT_EQ(after->free_blocks, empty->free_blocks);
  EXPECT_EQ(after->files, empty->files);
  EXPECT_TRUE(Fsck().empty());
}

// A rename changes the ctime of the inode it moves and the link count of a
// file it replaces; nodes that cache those attributes (under INODE SH) must
// not keep the old ones.
TEST_F(ClientClusterTest, RenameUpdatesAttributesOtherNodesCached) {
  StartCluster();
  auto a = Node("a");
  auto b = Node("b");
  uint64_t fa = MustOpen(*a, "/moved", O_RDWR | O_CREAT);
  uint64_t fb = MustOpen(*b, "/victim", O_RDWR | O_CREAT);
  uint64_t fm = MustOpen(*b, "/moved", O_RDONLY);
  absl::StatusOr<Attr> moved_before = b->FileAttr(fm);
  absl::StatusOr<Attr> victim_before = b->FileAttr(fb);
  ASSERT_TRUE(moved_before.ok() && victim_before.ok());
  EXPECT_EQ(victim_before->nlink, 1u);
  absl::SleepFor(absl::Milliseconds(20));  // A later ctime.
  absl::StatusOr<Attr> root = a->Resolve("/");
  ASSERT_TRUE(root.ok());
  ASSERT_TRUE(a->Rename(root->ino, "moved", root->ino, "victim", 0).ok());
  // The node that renamed, and the one that cached.
  for (Client* c : {a.get(), b.get()}) {
    uint64_t fh = c == a.get() ? fa : fm;
    absl::StatusOr<Attr> moved = c->FileAttr(fh);
    ASSERT_TRUE(moved.ok());
    EXPECT_GT(ToNanos(moved->ctime), ToNanos(moved_before->ctime));
  }
  absl::StatusOr<Attr> victim = b->FileAttr(fb);
  ASSERT_TRUE(victim.ok());
  EXPECT_EQ(victim->nlink, 0u);
  for (uint64_t fh : {fb, fm}) EXPECT_TRUE(b->Close(fh).ok());
  EXPECT_TRUE(a->Close(fa).ok());
  EXPECT_TRUE(Fsck().empty());
}

// The size of data still dirty on the node is ahead of the server's: a
// link, rename or unlink of the file on that node must not lose it.
TEST_F(ClientClusterTest, NamespaceChangesKeepTheSizeOfDirtyData) {
  StartCluster();
  auto a = Node("a");
  uint64_t fh = MustOpen(*a, "/grows", O_RDWR | O_CREAT);
  absl::StatusOr<Attr> root = a->Resolve("/");
  absl::StatusOr<Attr> file = a->Resolve("/grows");
  ASSERT_TRUE(root.ok() && file.ok());
  MustWrite(*a, fh, Fill('g', 100), 0);
  ASSERT_TRUE(a->Link(file->ino, root->ino, "second").ok());
  MustWrite(*a, fh, Fill('h', 100), 100);
  ASSERT_TRUE(a->Rename(root->ino, "grows", root->ino, "moved", 0).ok());
  MustWrite(*a, fh, Fill('i', 100), 200);
  ASSERT_TRUE(a->Unlink(root->ino, "second").ok());
  absl::StatusOr<Attr> now = a->FileAttr(fh);
  ASSERT_TRUE(now.ok());
  EXPECT_EQ(now->size, 300u);
  auto b = Node("b");
  absl::StatusOr<Attr> seen = b->Resolve("/moved");
  ASSERT_TRUE(seen.ok());
  EXPECT_EQ(seen->size, 300u);
  EXPECT_TRUE(a->Close(fh).ok());
}

// Data a cache above the node (the kernel's, for mapped stores) writes
// back may arrive while the node holds only INODE SH, so its mtime cannot
// go into the node's cached attributes then; the commit moves the
// server's mtime, and the node's cached one must follow.
TEST_F(ClientClusterTest, CacheAboveWriteBackMovesTheMtimeTheNodeCached) {
  StartCluster();
  auto a = Node("a");
  auto b = Node("b");
  uint64_t fa = MustOpen(*a, "/mapped", O_RDWR | O_CREAT);
  MustWrite(*a, fa, Fill('x', kPage), 0);
  ASSERT_TRUE(a->Fsync(fa, false).ok());
  absl::StatusOr<size_t> got =
      a->ReadForCache(fa, kPage, 0, /*exclusive=*/true,
                      [](const struct iovec*, int, size_t) {});
  ASSERT_TRUE(got.ok() && *got == kPage);
  // B's stat leaves A with INODE SH only.
  ASSERT_TRUE(b->Resolve("/mapped").ok());
  absl::StatusOr<Attr> before = a->FileAttr(fa);
  ASSERT_TRUE(before.ok());
  absl::SleepFor(absl::Milliseconds(20));
  std::string store = Fill('y', kPage);
  absl::StatusOr<size_t> put = a->WriteFromCache(fa, store.data(), kPage, 0);
  ASSERT_TRUE(put.ok()) << put.status();
  ASSERT_TRUE(a->Fsync(fa, false).ok());
  absl::StatusOr<Attr> after = a->FileAttr(fa);
  ASSERT_TRUE(after.ok());
  EXPECT_GT(ToNanos(after->mtime), ToNanos(before->mtime));
  EXPECT_TRUE(SameBytes(MustRead(*a, fa, 0, kPage), store));
  // And B, which cached the old one under INODE SH all along, after A's
  // fsync (msync through a mount).
  absl::StatusOr<Attr> seen = b->Resolve("/mapped");
  ASSERT_TRUE(seen.ok());
  EXPECT_GT(ToNanos(seen->mtime), ToNanos(before->mtime));
  EXPECT_TRUE(a->Close(fa).ok());
}

// A write's mtime is the time of the write: the write-back that brings
// the data to the servers later (a chmod's, an fsync's, a callback's)
// must not move it (the commit used to stamp its own time).
TEST_F(ClientClusterTest, WriteBackKeepsTheMtimeOfTheWrite) {
  StartCluster();
  auto a = Node("a");
  auto b = Node("b");
  uint64_t fa = MustOpen(*a, "/timed", O_RDWR | O_CREAT);
  MustWrite(*a, fa, Fill('x', kPage), 0);
  absl::StatusOr<Attr> written = a->FileAttr(fa);
  ASSERT_TRUE(written.ok());
  absl::SleepFor(absl::Milliseconds(50));
  ASSERT_TRUE(a->Fsync(fa, false).ok());
  absl::StatusOr<Attr> synced = a->FileAttr(fa);
  ASSERT_TRUE(synced.ok());
  EXPECT_EQ(ToNanos(synced->mtime), ToNanos(written->mtime));
  // Another write, brought back by B's stat (A's INODE EX called back).
  MustWrite(*a, fa, Fill('y', kPage), kPage);
  written = a->FileAttr(fa);
  ASSERT_TRUE(written.ok());
  absl::SleepFor(absl::Milliseconds(50));
  absl::StatusOr<Attr> seen = b->Resolve("/timed");
  ASSERT_TRUE(seen.ok());
  EXPECT_EQ(ToNanos(seen->mtime), ToNanos(written->mtime));
  EXPECT_EQ(seen->size, 2 * kPage);
  synced = a->FileAttr(fa);
  ASSERT_TRUE(synced.ok());
  EXPECT_EQ(ToNanos(synced->mtime), ToNanos(written->mtime));
  EXPECT_TRUE(a->Close(fa).ok());
}

// Setting or removing an extended attribute changes the ctime: the node
// that did it must not keep serving the one it had cached.
TEST_F(ClientClusterTest, XattrChangesUpdateTheCtimeTheNodeCached) {
  StartCluster();
  auto a = Node("a");
  uint64_t fh = MustOpen(*a, "/tagged", O_RDWR | O_CREAT);
  absl::StatusOr<Attr> before = a->FileAttr(fh);
  ASSERT_TRUE(before.ok());
  absl::StatusOr<Attr> file = a->Resolve("/tagged");
  ASSERT_TRUE(file.ok());
  absl::SleepFor(absl::Milliseconds(20));  // A later ctime.
  ASSERT_TRUE(a->SetXattr(file->ino, "user.tag", "v", 0).ok());
  absl::StatusOr<Attr> set = a->FileAttr(fh);
  ASSERT_TRUE(set.ok());
  EXPECT_GT(ToNanos(set->ctime), ToNanos(before->ctime));
  absl::SleepFor(absl::Milliseconds(20));
  ASSERT_TRUE(a->RemoveXattr(file->ino, "user.tag").ok());
  absl::StatusOr<Attr> removed = a->FileAttr(fh);
  ASSERT_TRUE(removed.ok());
  EXPECT_GT(ToNanos(removed->ctime), ToNanos(set->ctime));
  EXPECT_TRUE(a->Close(fh).ok());
}

TEST_F(ClientClusterTest, SeekDataAndHoleSeeDirtyDataOfAnotherNode) {
  StartCluster();
  auto a = Node("a");
  auto b = Node("b");
  uint64_t fa = MustOpen(*a, "/sparse", O_RDWR | O_CREAT);
  MustWrite(*a, fa, Fill('d', kPage), 10 * kPage);
  uint64_t fb = MustOpen(*b, "/sparse", O_RDONLY);
  absl::StatusOr<uint64_t> data = b->Seek(fb, 0, SEEK_DATA);
  ASSERT_TRUE(data.ok()) << data.status();
  EXPECT_EQ(*data, 10 * kPage);
  absl::StatusOr<uint64_t> hole = b->Seek(fb, 10 * kPage, SEEK_HOLE);
  ASSERT_TRUE(hole.ok());
  EXPECT_EQ(*hole, 11 * kPage);
}

TEST_F(ClientClusterTest, FsyncedDataSurvivesKillOfTheNode) {
  StartCluster();
  testing::Subprocess node;
  ASSERT_TRUE(
      node.Start({testing::BinDir() + "/tests/rangefs-clientnode", "--cluster",
                  cluster_->config(), "--path", "/durable", "--bytes",
                  std::to_string(3 * 1024 * 1024 + 5), "--fill", "k"},
                 cluster_->dir() + "/clientnode.log"));
  // The node prints nothing; it creates /durable.done after its fsync.
  auto c = Node("c");
  bool done = false;
  for (int i = 0; i < 600 && !done; ++i) {
    done = c->Resolve("/durable.done").ok();
    if (!done) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ASSERT_TRUE(done) << cluster_->LogTail("clientnode");
  node.Stop(SIGKILL);
  // Its locks go when its lease expires; then the data is all there.
  uint64_t fh = MustOpen(*c, "/durable", O_RDONLY);
  std::string got = MustRead(*c, fh, 0, 4 << 20);
  EXPECT_TRUE(SameBytes(got, Fill('k', 3 * 1024 * 1024 + 5)));
  EXPECT_TRUE(Fsck().empty());
}

}  // namespace
}  // namespace rangefs::client
