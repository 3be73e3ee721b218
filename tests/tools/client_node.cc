// rangefs-clientnode: a librangefs node in its own process, for tests that
// kill a node. Writes --bytes bytes of --fill to --path (buffered, in 1 MiB
// calls), fsyncs, creates PATH.done as the signal, then waits to be killed
// (at most --wait_s seconds).
#include <fcntl.h>
#include <unistd.h>

#include <iostream>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "client/rangefs.h"
#include "common/cluster_config.h"

ABSL_FLAG(std::string, cluster, "", "cluster configuration (text or file)");
ABSL_FLAG(std::string, path, "/data", "file to write");
ABSL_FLAG(uint64_t, bytes, 1 << 20, "bytes to write");
ABSL_FLAG(std::string, fill, "x", "byte to write");
ABSL_FLAG(int, wait_s, 120, "seconds to wait after the fsync");

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  using rangefs::client::Client;
  auto config = rangefs::LoadClusterConfig(absl::GetFlag(FLAGS_cluster));
  if (!config.ok()) {
    std::cerr << config.status() << "\n";
    return 2;
  }
  auto client = Client::Connect(*config);
  if (!client.ok()) {
    std::cerr << client.status() << "\n";
    return 1;
  }
  const std::string path = absl::GetFlag(FLAGS_path);
  auto fh = (*client)->OpenPath(path, O_RDWR | O_CREAT | O_TRUNC);
  if (!fh.ok()) {
    std::cerr << fh.status() << "\n";
    return 1;
  }
  const uint64_t total = absl::GetFlag(FLAGS_bytes);
  std::string chunk(1 << 20, absl::GetFlag(FLAGS_fill)[0]);
  for (uint64_t off = 0; off < total; off += chunk.size()) {
    uint64_t n = std::min<uint64_t>(chunk.size(), total - off);
    auto w = (*client)->Write(*fh, chunk.data(), n, off);
    if (!w.ok() || *w != n) {
      std::cerr << "write: " << w.status() << "\n";
      return 1;
    }
  }
  if (auto s = (*client)->Fsync(*fh, false); !s.ok()) {
    std::cerr << "fsync: " << s << "\n";
    return 1;
  }
  auto done = (*client)->OpenPath(path + ".done", O_RDWR | O_CREAT);
  if (!done.ok()) {
    std::cerr << done.status() << "\n";
    return 1;
  }
  std::cerr << "fsynced " << total << " bytes\n";
  sleep(absl::GetFlag(FLAGS_wait_s));
  return 0;
}
