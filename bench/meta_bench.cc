// Metadata server throughput with synced writes, beside the raw rate of
// RocksDB synced WriteBatches at the same concurrency, measured in the same
// run on the same disk. The ratio is the figure that matters: it shows how
// much of RocksDB's group-commit rate the server keeps.
//
//   meta_bench [--threads N] [--seconds S] [--dir DIR]
#include <rocksdb/db.h>
#include <rocksdb/options.h>
#include <rocksdb/write_batch.h>
#include <sys/stat.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "common/process.h"
#include "server/meta/meta_server.h"

namespace rangefs::meta {
namespace {

struct Options {
  int threads = 16;
  double seconds = 3;
  std::string dir = "/tmp/rangefs-meta-bench";
};

// Runs fn(thread, iteration) on `threads` threads for `seconds`; returns
// operations per second.
double Measure(const Options& o, const std::function<bool(int, uint64_t)>& fn) {
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> total{0};
  std::vector<std::thread> ts;
  auto start = std::chrono::steady_clock::now();
  for (int t = 0; t < o.threads; ++t) {
    ts.emplace_back([&, t] {
      uint64_t n = 0;
      while (!stop) {
        if (!fn(t, n)) {
          fprintf(stderr, "operation failed\n");
          exit(1);
        }
        ++n;
      }
      total += n;
    });
  }
  std::this_thread::sleep_for(std::chrono::duration<double>(o.seconds));
  stop = true;
  for (auto& t : ts) t.join();
  double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
          .count();
  return total / secs;
}

double RawRocksDb(const Options& o) {
  std::string path = o.dir + "/raw";
  rocksdb::Options opts;
  opts.create_if_missing = true;
  opts.IncreaseParallelism(2);
  rocksdb::DB* db = nullptr;
  if (!rocksdb::DB::Open(opts, path, &db).ok()) {
    fprintf(stderr, "cannot open %s\n", path.c_str());
    exit(1);
  }
  rocksdb::WriteOptions wo;
  wo.sync = true;
  double rate = Measure(o, [&](int t, uint64_t n) {
    // About what a create writes: an inode, an entry, a parent update.
    rocksdb::WriteBatch b;
    std::string k = std::to_string(t) + "/" + std::to_string(n);
    b.Put("i" + k, std::string(120, 'x'));
    b.Put("d" + k, std::string(12, 'y'));
    b.Put("p" + std::to_string(t), std::string(120, 'z'));
    return db->Write(wo, &b).ok();
  });
  delete db;
  return rate;
}

void Print(const char* what, double rate, double base) {
  printf("%-34s %10.0f ops/s   %5.2fx raw RocksDB sync batch\n", what, rate,
         rate / base);
}

int Run(const Options& o) {
  std::filesystem::remove_all(o.dir);
  std::filesystem::create_directories(o.dir);
  printf("threads %d, %.1f s per figure, dir %s\n", o.threads, o.seconds,
         o.dir.c_str());
  double raw = RawRocksDb(o);
  printf("%-34s %10.0f ops/s   (baseline)\n", "raw RocksDB sync WriteBatch",
         raw);

  auto server = MetaServer::Open(
      o.dir + "/meta", "bench",
      {DeviceInfo{0, 64ull << 30, ""}, DeviceInfo{1, 64ull << 30, ""}});
  if (!server.ok()) {
    fprintf(stderr, "open: %s\n",
            std::string(server.status().message()).c_str());
    return 1;
  }
  MetaServer& m = **server;
  // One directory per thread: creates in one directory serialise on it.
  std::vector<uint64_t> dirs;
  for (int t = 0; t < o.threads; ++t) {
    dirs.push_back(
        m.Mkdir(1, kRootIno, "d" + std::to_string(t), 0755, Creds{}, 0)->ino);
  }
  std::vector<std::vector<uint64_t>> created(o.threads);
  double creates = Measure(o, [&](int t, uint64_t n) {
    auto a = m.Create(1, dirs[t], "f" + std::to_string(n), S_IFREG | 0644, 0,
                      Creds{}, true, 0);
    if (a.ok() && created[t].size() < 100000) created[t].push_back(a->ino);
    return a.ok();
  });
  Print("create (own directory per thread)", creates, raw);

  double shared_creates = Measure(o, [&](int t, uint64_t n) {
    return m
        .Create(1, kRootIno, "s" + std::to_string(t) + "-" + std::to_string(n),
                S_IFREG | 0644, 0, Creds{}, true, 0)
        .ok();
  });
  Print("create (one shared directory)", shared_creates, raw);

  double getattrs = Measure(o, [&](int t, uint64_t n) {
    const auto& v = created[t];
    return m.GetAttr(v[n % v.size()]).ok();
  });
  Print("getattr", getattrs, raw);

  std::vector<uint64_t> files;
  for (int t = 0; t < o.threads; ++t) files.push_back(created[t][0]);
  double writes = Measure(o, [&](int t, uint64_t n) {
    constexpr uint64_t kChunk = 64 << 10;
    uint64_t off = (n % 4096) * kChunk;
    auto map = m.MapWrite(1, files[t], off, kChunk);
    if (!map.ok()) return false;
    return m
        .CommitWrite(1, files[t], {{off, off + kChunk}}, map->cookie,
                     off + kChunk, Timespec{})
        .ok();
  });
  Print("MapWrite+CommitWrite (64 KiB)", writes, raw);
  printf("synced writes %lu for %lu batches (%.1f batches per fsync)\n",
         static_cast<unsigned long>(m.store()->sync_writes()),
         static_cast<unsigned long>(m.store()->batches_written()),
         double(m.store()->batches_written()) / m.store()->sync_writes());
  server->reset();
  std::filesystem::remove_all(o.dir);
  return 0;
}

}  // namespace
}  // namespace rangefs::meta

int main(int argc, char** argv) {
  // As the servers run (common/process.h).
  rangefs::InitProgram("meta_bench");
  rangefs::meta::Options o;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!strcmp(argv[i], "--threads")) o.threads = atoi(argv[i + 1]);
    if (!strcmp(argv[i], "--seconds")) o.seconds = atof(argv[i + 1]);
    if (!strcmp(argv[i], "--dir")) o.dir = argv[i + 1];
  }
  return rangefs::meta::Run(o);
}
