// The cluster configuration every rangefs binary reads: where the lock
// manager shards, the metadata server and the data servers are. Given as a
// file path or as the text itself, one entry per line (or separated by
// ';'), '#' starting a comment:
//
//   fs_id  demo
//   lockd  127.0.0.1:7201          # shard 0
//   lockd  127.0.0.1:7202          # shard 1 (order defines shard numbers)
//   meta   127.0.0.1:7001
//   data   0 127.0.0.1:7101 1073741824   # device id, address, size
//   data   1 127.0.0.1:7102 1073741824 bulk=127.0.0.1:7112
//
// `bulk=` names a data server's bulk protocol address (rangefs-data
// --bulk-listen): block reads and writes then bypass gRPC.
#ifndef RANGEFS_COMMON_CLUSTER_CONFIG_H_
#define RANGEFS_COMMON_CLUSTER_CONFIG_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace rangefs {

struct DataServerConfig {
  uint32_t device = 0;
  std::string address;  // DataService (gRPC).
  uint64_t size = 0;
  // The bulk protocol's address (common/bulk_wire.h), empty when the data
  // server offers none: block reads and writes then go through gRPC.
  std::string bulk;
};

struct ClusterConfig {
  std::string fs_id;
  std::vector<std::string> lockd;  // Index = shard number.
  std::string meta;
  std::vector<DataServerConfig> data;

  // The text form (parses back to the same configuration).
  std::string ToString() const;
};

// Parses the text form. INVALID_ARGUMENT names the offending line.
absl::StatusOr<ClusterConfig> ParseClusterConfig(const std::string& text);

// `spec` is a path to a file holding the text, or the text itself.
absl::StatusOr<ClusterConfig> LoadClusterConfig(const std::string& spec);

// The lockd shard owning a resource (inode, kind).
uint32_t ShardOf(uint64_t ino, uint8_t kind, uint32_t shards);

}  // namespace rangefs

#endif  // RANGEFS_COMMON_CLUSTER_CONFIG_H_
