// Client I/O benchmark, one run against a local cluster it starts on
// loopback (rangefs-lockd, rangefs-meta, two rangefs-data). Each figure is
// printed beside a baseline measured in the same run, on the same disk:
//  * sequential 1 MiB buffered writes + fsync vs pwrite + fsync of a local
//    file (target >= 0.5x);
//  * cold sequential 1 MiB reads (the node's cache dropped) vs pread of the
//    local file after dropping its page cache (target >= 0.5x);
//  * cached re-read on the same node vs cached pread (target >= 0.8x);
//  * cold 4 KiB random reads on a fresh node vs bare gRPC pings to the
//    metadata server (target >= 0.5x: one round trip per miss);
//  * O_DIRECT 1 MiB writes and reads vs O_DIRECT on the local file;
//  * coherence: two nodes alternately writing one 4 KiB page, vs pings;
//  * scattered 4 KiB writes + fsync (write-back of many short runs) vs the
//    same pwrites + fsync of the local file.
//
//   client_bench [--mib N]   (file size, default 128)
#include <fcntl.h>
#include <grpcpp/grpcpp.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "client/bulk_client.h"
#include "client/rangefs.h"
#include "common/process.h"
#include "proto/data.grpc.pb.h"
#include "proto/meta.grpc.pb.h"
#include "rpc/channel.h"
#include "tests/util/local_cluster.h"

namespace rangefs::bench {
namespace {

using Clock = std::chrono::steady_clock;
using client::Client;
using client::ClientOptions;

constexpr uint64_t kMiB = 1 << 20;

double Seconds(Clock::duration d) {
  return std::chrono::duration<double>(d).count();
}

void Die(const std::string& what) {
  fprintf(stderr, "client_bench: %s\n", what.c_str());
  exit(1);
}

template <typename T>
T Must(absl::StatusOr<T> v, const char* what) {
  if (!v.ok())
    Die(std::string(what) + ": " + std::string(v.status().message()));
  return std::move(*v);
}
void Must(const absl::Status& s, const char* what) {
  if (!s.ok()) Die(std::string(what) + ": " + std::string(s.message()));
}

void Report(const char* name, double value, const char* unit, double base,
            const char* base_name, const char* target) {
  printf("%-34s %10.1f %-7s | %-24s %10.1f | ratio %5.2fx %s\n", name, value,
         unit, base_name, base, value / base, target);
}

// ---- local file baselines
double LocalWrite(const std::string& path, uint64_t bytes, bool direct) {
  int fd = open(path.c_str(),
                O_RDWR | O_CREAT | O_TRUNC | (direct ? O_DIRECT : 0), 0644);
  if (fd < 0) Die("open " + path);
  void* buf = nullptr;
  if (posix_memalign(&buf, 4096, kMiB) != 0) Die("memalign");
  memset(buf, 'l', kMiB);
  auto t0 = Clock::now();
  for (uint64_t off = 0; off < bytes; off += kMiB) {
    if (pwrite(fd, buf, kMiB, off) != static_cast<ssize_t>(kMiB)) {
      Die("pwrite");
    }
  }
  fsync(fd);
  double s = Seconds(Clock::now() - t0);
  close(fd);
  free(buf);
  return bytes / s / kMiB;
}

double LocalRead(const std::string& path, uint64_t bytes, bool cold,
                 bool direct, int passes = 1) {
  int fd = open(path.c_str(), O_RDONLY | (direct ? O_DIRECT : 0));
  if (fd < 0) Die("open " + path);
  if (cold) posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
  void* buf = nullptr;
  if (posix_memalign(&buf, 4096, kMiB) != 0) Die("memalign");
  auto t0 = Clock::now();
  for (int pass = 0; pass < passes; ++pass) {
    for (uint64_t off = 0; off < bytes; off += kMiB) {
      if (pread(fd, buf, kMiB, off) != static_cast<ssize_t>(kMiB)) {
        Die("pread");
      }
    }
  }
  double s = Seconds(Clock::now() - t0);
  close(fd);
  free(buf);
  return passes * bytes / s / kMiB;
}

void DropLocalCache(const std::string& path) {
  int fd = open(path.c_str(), O_RDONLY);
  if (fd < 0) Die("open " + path);
  posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
  close(fd);
}

// ---- rangefs
double RangefsWrite(Client& c, uint64_t fh, uint64_t bytes) {
  std::vector<char> buf(kMiB, 'r');
  auto t0 = Clock::now();
  for (uint64_t off = 0; off < bytes; off += kMiB) {
    if (Must(c.Write(fh, buf.data(), kMiB, off), "write") != kMiB) Die("short");
  }
  auto t1 = Clock::now();
  Must(c.Fsync(fh, false), "fsync");
  if (getenv("BENCH_PHASES")) {
    fprintf(stderr, "  writes %.3f s, fsync %.3f s\n", Seconds(t1 - t0),
            Seconds(Clock::now() - t1));
  }
  return bytes / Seconds(Clock::now() - t0) / kMiB;
}

double RangefsRead(Client& c, uint64_t fh, uint64_t bytes, int passes = 1) {
  void* buf = nullptr;
  if (posix_memalign(&buf, 4096, kMiB) != 0) Die("memalign");
  auto t0 = Clock::now();
  for (int pass = 0; pass < passes; ++pass) {
    for (uint64_t off = 0; off < bytes; off += kMiB) {
      if (Must(c.Read(fh, buf, kMiB, off), "read") != kMiB) Die("short read");
    }
  }
  double s = Seconds(Clock::now() - t0);
  free(buf);
  return passes * bytes / s / kMiB;
}

// The page indexes of the scattered-write figure: `n` distinct pages of
// the first `span` pages, in random order (seeded: every run the same).
std::vector<uint64_t> ScatteredPages(uint64_t n, uint64_t span) {
  std::vector<uint64_t> all(span);
  for (uint64_t i = 0; i < span; ++i) all[i] = i;
  std::shuffle(all.begin(), all.end(), std::mt19937_64(7));
  all.resize(n);
  return all;
}

double LocalScatteredWrites(const std::string& path,
                            const std::vector<uint64_t>& pages) {
  int fd = open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) Die("open " + path);
  std::vector<char> page(4096, 's');
  auto t0 = Clock::now();
  for (uint64_t p : pages) {
    if (pwrite(fd, page.data(), 4096, p * 4096) != 4096) Die("pwrite");
  }
  fsync(fd);
  double s = Seconds(Clock::now() - t0);
  close(fd);
  return pages.size() / s;
}

double RangefsScatteredWrites(Client& c, uint64_t fh,
                              const std::vector<uint64_t>& pages) {
  std::vector<char> page(4096, 's');
  auto t0 = Clock::now();
  for (uint64_t p : pages) Must(c.Write(fh, page.data(), 4096, p * 4096), "w");
  Must(c.Fsync(fh, false), "fsync");
  return pages.size() / Seconds(Clock::now() - t0);
}

double PingRate(const std::string& meta, int n) {
  auto stub = proto::MetaService::NewStub(rpc::MakeChannel(meta));
  auto t0 = Clock::now();
  for (int i = 0; i < n; ++i) {
    grpc::ClientContext ctx;
    proto::PingRequest req;
    proto::PingReply rep;
    if (!stub->Ping(&ctx, req, &rep).ok()) Die("ping");
  }
  return n / Seconds(Clock::now() - t0);
}

// The transport floor: 4 MiB DataService writes straight to one data
// server, four in flight on connections of their own (what a writeback run
// does), no metadata calls.
double RawDataWrites(const std::string& address, uint64_t bytes) {
  std::string chunk(4 * kMiB, 'w');
  auto t0 = Clock::now();
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      auto stub = proto::DataService::NewStub(rpc::MakeChannel(address));
      for (uint64_t off = t * 4 * kMiB; off < bytes; off += 16 * kMiB) {
        grpc::ClientContext ctx;
        proto::WriteRequest req;
        req.set_session_id(1);
        req.set_offset(off);
        req.set_data(chunk);
        proto::WriteReply rep;
        if (!stub->Write(&ctx, req, &rep).ok() || rep.error().code() != 0) {
          Die("raw data write");
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  return bytes / Seconds(Clock::now() - t0) / kMiB;
}

// The same over the bulk protocol (what the node uses when the cluster
// configuration names a bulk address).
double RawBulkWrites(const std::string& address, uint64_t bytes) {
  std::string chunk(4 * kMiB, 'b');
  client::BulkChannel channel(address, 30000);
  auto t0 = Clock::now();
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (uint64_t off = t * 4 * kMiB; off < bytes; off += 16 * kMiB) {
        if (!channel.Write(1, off, chunk.data(), chunk.size(), false).ok()) {
          Die("raw bulk write");
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  return bytes / Seconds(Clock::now() - t0) / kMiB;
}

// Reads back what RawBulkWrites wrote (cold: those writes bypassed the
// data server's page cache) in 1 MiB requests, `streams` in flight,
// starting at `from`.
double RawBulkReads(const std::string& address, uint64_t bytes, int streams,
                    uint64_t from = 0) {
  client::BulkChannel channel(address, 30000);
  auto t0 = Clock::now();
  std::vector<std::thread> threads;
  for (int t = 0; t < streams; ++t) {
    threads.emplace_back([&, t] {
      std::vector<char> buf(kMiB);
      for (uint64_t off = t * kMiB; off < bytes; off += streams * kMiB) {
        if (!channel.Read(1, from + off, kMiB, buf.data()).ok())
          Die("raw bulk read");
      }
    });
  }
  for (auto& t : threads) t.join();
  return bytes / Seconds(Clock::now() - t0) / kMiB;
}

constexpr int kRounds = 3;
constexpr int kHotPasses = 8;

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

std::unique_ptr<Client> Node(const ClusterConfig& config,
                             const std::string& name, uint64_t min_hold_ms) {
  ClientOptions o;
  o.node_name = name;
  o.min_hold_ms = min_hold_ms;
  o.cache_bytes = 512 * kMiB;
  o.dirty_limit_bytes = 256 * kMiB;
  return Must(Client::Connect(config, o), "connect");
}

int Main(int argc, char** argv) {
  uint64_t mib = 128;
  bool sequential_only = false;  // --sequential: the first section alone.
  for (int i = 1; i < argc; ++i) {
    if (strcmp(argv[i], "--sequential") == 0) sequential_only = true;
    if (strcmp(argv[i], "--mib") == 0 && i + 1 < argc) {
      mib = strtoull(argv[i + 1], nullptr, 10);
    }
  }
  const uint64_t bytes = mib * kMiB;
  testing::LocalClusterOptions co;
  co.device_size = (kRounds + 3) * bytes + 256 * kMiB;
  testing::LocalCluster cluster(co);
  std::string why;
  if (!cluster.Start(&why)) Die(why);
  ClusterConfig config = Must(ParseClusterConfig(cluster.config()), "config");
  const std::string local = cluster.dir() + "/local-baseline";
  printf("client_bench: %llu MiB files; baselines on the same disk (%s)\n",
         static_cast<unsigned long long>(mib), cluster.dir().c_str());

  // The transport alone (before any file exists: these blocks are not
  // owned by anything yet).
  double raw = RawDataWrites(cluster.data_address(0), bytes);
  double raw_bulk = RawBulkWrites(cluster.bulk_address(0), bytes);
  double raw_read = RawBulkReads(cluster.bulk_address(0), bytes / 2, 1);
  double raw_read4 =
      RawBulkReads(cluster.bulk_address(0), bytes / 2, 4, bytes / 2);

  // Sequential write, cold read, cached re-read, as nodes that have been
  // up for a while do them: one writer node and one reader node for every
  // round; rounds alternate between the local file and rangefs, and
  // medians are compared. Each node drops its clean pages where the local
  // baseline loses its own (O_TRUNC frees the old file's pages, the cold
  // read drops the page cache), so both take memory they freed. The first
  // round is not counted: it is a new node's first touch of its memory,
  // which on a VM with free page reporting costs a host fault per page
  // (the local file's pages were freed a moment ago); it is shown apart.
  std::vector<double> local_w, w, local_cold, cold, local_hot, hot;
  double first_w = 0, first_cold = 0;
  {
    auto writer = Node(config, "writer", 10);
    auto reader = Node(config, "reader", 10);
    for (int round = -1; round < kRounds; ++round) {
      const std::string name = "/seq" + std::to_string(round + 1);
      const double lw = LocalWrite(local, bytes, false);
      writer->DropCaches();
      uint64_t fw = Must(writer->OpenPath(name, O_RDWR | O_CREAT), "open");
      const double rw = RangefsWrite(*writer, fw, bytes);
      Must(writer->Close(fw), "close");
      const double lc = LocalRead(local, bytes, true, false);
      // Cached reads take milliseconds: several passes each.
      const double lh = LocalRead(local, bytes, false, false, kHotPasses);
      // Each cold read starts right after `bytes` of page cache were
      // dropped: the local one its own file's, rangefs's the local file's.
      // The data server's page cache then takes pages freed a moment ago,
      // as the local read does. (Pages free for a few seconds have been
      // handed back to the host on this VM: reading into those runs at a
      // third of the speed, local or not.)
      DropLocalCache(local);
      reader->DropCaches();
      uint64_t fr = Must(reader->OpenPath(name, O_RDONLY), "open");
      const double rc = RangefsRead(*reader, fr, bytes);
      const double rh = RangefsRead(*reader, fr, bytes, kHotPasses);
      Must(reader->Close(fr), "close");
      if (round < 0) {
        first_w = rw;
        first_cold = rc;
        continue;
      }
      local_w.push_back(lw);
      w.push_back(rw);
      local_cold.push_back(lc);
      cold.push_back(rc);
      local_hot.push_back(lh);
      hot.push_back(rh);
    }
  }
  printf("(medians of %d alternating rounds)\n", kRounds);
  Report("sequential write 1 MiB + fsync", Median(w), "MiB/s", Median(local_w),
         "local pwrite+fsync", "(target >= 0.5x)");
  Report("  (same, vs the transport alone)", Median(w), "MiB/s", raw_bulk,
         "raw 4 MiB bulk writes", "");
  Report("  (bulk protocol vs gRPC, raw)", raw_bulk, "MiB/s", raw,
         "raw 4 MiB gRPC writes", "");
  Report("cold sequential read 1 MiB", Median(cold), "MiB/s",
         Median(local_cold), "local pread, cache dropped", "(target >= 0.5x)");
  Report("  (same, vs the transport alone)", Median(cold), "MiB/s", raw_read,
         "raw 1 MiB bulk reads", "");
  Report("  (transport: 4 reads in flight)", raw_read4, "MiB/s", raw_read,
         "raw 1 MiB bulk reads", "");
  Report("cached re-read 1 MiB", Median(hot), "MiB/s", Median(local_hot),
         "local pread, cached", "(target >= 0.8x)");
  Report("  (a new node's first write)", first_w, "MiB/s", Median(w),
         "the node later", "(fresh memory)");
  Report("  (a new node's first cold read)", first_cold, "MiB/s", Median(cold),
         "the node later", "(fresh memory)");
  if (sequential_only) return 0;

  // Cold 4 KiB random reads on another fresh node.
  const int kRandom = 3000;
  double ping = PingRate(cluster.meta_address(), kRandom);
  {
    auto rnd = Node(config, "random", 10);
    uint64_t fh = Must(rnd->OpenPath("/seq0", O_RDONLY), "open");
    std::mt19937_64 rng(7);
    std::vector<char> buf(4096);
    auto t0 = Clock::now();
    for (int i = 0; i < kRandom; ++i) {
      uint64_t off = (rng() % (bytes / 4096)) * 4096;
      Must(rnd->Read(fh, buf.data(), 4096, off), "read");
    }
    double iops = kRandom / Seconds(Clock::now() - t0);
    Report("cold random read 4 KiB", iops, "IOPS", ping, "gRPC ping",
           "(target >= 0.5x)");
  }

  // Direct I/O.
  double local_dw = LocalWrite(local, bytes, true);
  double local_dr = LocalRead(local, bytes, false, true);
  {
    auto writer = Node(config, "direct", 10);
    uint64_t fd =
        Must(writer->OpenPath("/direct", O_RDWR | O_CREAT | O_DIRECT), "open");
    void* buf = nullptr;
    if (posix_memalign(&buf, 4096, kMiB) != 0) Die("memalign");
    memset(buf, 'd', kMiB);
    auto t0 = Clock::now();
    for (uint64_t off = 0; off < bytes; off += kMiB) {
      Must(writer->Write(fd, buf, kMiB, off), "direct write");
    }
    double dw = bytes / Seconds(Clock::now() - t0) / kMiB;
    t0 = Clock::now();
    for (uint64_t off = 0; off < bytes; off += kMiB) {
      Must(writer->Read(fd, buf, kMiB, off), "direct read");
    }
    double dr = bytes / Seconds(Clock::now() - t0) / kMiB;
    free(buf);
    Report("O_DIRECT write 1 MiB", dw, "MiB/s", local_dw, "local O_DIRECT", "");
    Report("O_DIRECT read 1 MiB", dr, "MiB/s", local_dr, "local O_DIRECT", "");
  }

  // Memory mappings (docs/mmap.md): reading a cached file through a
  // mapping (the first pass faults every 64 KiB from the page cache; the
  // second is plain memory) against memcpy from a local mapping, and the
  // latency of a cold fault against a gRPC round trip.
  {
    const uint64_t mbytes = std::min<uint64_t>(bytes, 64 * kMiB);
    auto m = Node(config, "mapper", 10);
    uint64_t fh = Must(m->OpenPath("/seq0", O_RDONLY), "open");
    RangefsRead(*m, fh, mbytes);  // Into the page cache.
    std::vector<char> sink(kMiB);
    auto pass = [&](const char* src) {
      auto t0 = Clock::now();
      for (uint64_t off = 0; off < mbytes; off += kMiB) {
        memcpy(sink.data(), src + off, kMiB);
      }
      return mbytes / Seconds(Clock::now() - t0) / kMiB;
    };
    char* local_map = static_cast<char*>(
        mmap(nullptr, mbytes, PROT_READ | PROT_WRITE,
             MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0));
    if (local_map == MAP_FAILED) Die("mmap");
    memset(local_map, 'l', mbytes);
    double local_rate = pass(local_map);
    char* map = static_cast<char*>(
        Must(m->Mmap(fh, 0, mbytes, PROT_READ, MAP_SHARED), "Mmap"));
    double first = pass(map);
    double again = pass(map);
    Must(m->Munmap(map, mbytes), "Munmap");
    munmap(local_map, mbytes);
    Report("mmap read of a cached file, 1st", first, "MiB/s", local_rate,
           "memcpy, local mapping", "(faults from the page cache)");
    Report("mmap read of a cached file, 2nd", again, "MiB/s", local_rate,
           "memcpy, local mapping", "");

    auto cold = Node(config, "coldfault", 10);
    uint64_t fc = Must(cold->OpenPath("/seq1", O_RDONLY), "open");
    const char* cmap = static_cast<const char*>(
        Must(cold->Mmap(fc, 0, mbytes, PROT_READ, MAP_SHARED), "Mmap"));
    const int kFaults = 500;
    std::mt19937_64 rng(11);
    auto t0 = Clock::now();
    for (int i = 0; i < kFaults; ++i) {
      // One page per 64 KiB window: no fault-around help.
      uint64_t off = (rng() % (mbytes / (64 * 1024))) * 64 * 1024;
      (void)*static_cast<const volatile char*>(cmap + off);
    }
    double per_fault_us = Seconds(Clock::now() - t0) / kFaults * 1e6;
    Must(cold->Munmap(const_cast<char*>(cmap), mbytes), "Munmap");
    Report("cold page fault latency", per_fault_us, "us", 1e6 / ping,
           "gRPC ping round trip", "(lower is better)");
  }

  // Coherence: two nodes alternately writing one page.
  {
    auto a = Node(config, "ping-a", 0);
    auto b = Node(config, "ping-b", 0);
    uint64_t fa = Must(a->OpenPath("/pingpong", O_RDWR | O_CREAT), "open");
    uint64_t fb = Must(b->OpenPath("/pingpong", O_RDWR), "open");
    std::vector<char> page(4096, 'p');
    const int kPingPong = 300;
    auto t0 = Clock::now();
    for (int i = 0; i < kPingPong; ++i) {
      Must(a->Write(fa, page.data(), 4096, 0), "write a");
      Must(b->Write(fb, page.data(), 4096, 0), "write b");
    }
    double ops = 2 * kPingPong / Seconds(Clock::now() - t0);
    Report("two nodes alternating 4 KiB writes", ops, "ops/s", ping,
           "gRPC ping", "(cost of coherence)");
    // What one hand-off costs, in messages: each write takes the page
    // back from the other node (its DATA, INVAL and INODE locks, each a
    // request here and a callback there; the other node's write-back).
    client::ClientStats sa = a->Stats(), sb = b->Stats();
    const double writes = 2.0 * kPingPong;
    printf(
        "  (per write: %.1f lock requests, %.1f callbacks answered, "
        "%.1f metadata calls, %.1f pages written back)\n",
        (sa.lock_requests + sb.lock_requests) / writes,
        (sa.lock_callbacks + sb.lock_callbacks) / writes,
        (sa.meta_calls + sb.meta_calls) / writes,
        (sa.writeback_pages + sb.writeback_pages) / writes);
  }

  // Scattered 4 KiB writes, then fsync: the write-back of many short runs
  // (each its own MapWrite, data write and commit).
  {
    const std::vector<uint64_t> pages =
        ScatteredPages(4000, std::max<uint64_t>(bytes / 4096, 8000));
    auto n = Node(config, "scatter", 10);
    std::vector<double> local_s, rfs_s;
    for (int round = 0; round < kRounds; ++round) {
      local_s.push_back(LocalScatteredWrites(local, pages));
      std::string name = "/scatter" + std::to_string(round);
      uint64_t fh =
          Must(n->OpenPath(name, O_RDWR | O_CREAT | O_TRUNC), "open scatter");
      rfs_s.push_back(RangefsScatteredWrites(*n, fh, pages));
      Must(n->Close(fh), "close");
    }
    Report("scattered 4 KiB writes + fsync", Median(rfs_s), "pages/s",
           Median(local_s), "local pwrite+fsync", "");
  }
  unlink(local.c_str());
  return 0;
}

}  // namespace
}  // namespace rangefs::bench

int main(int argc, char** argv) {
  // Measured as the programs run in a cluster (common/process.h): the
  // servers this starts and the nodes in this process.
  setenv("RANGEFS_MUTEX_CHECKS", "0", /*overwrite=*/1);
  rangefs::InitProgram("client_bench");
  return rangefs::bench::Main(argc, argv);
}
