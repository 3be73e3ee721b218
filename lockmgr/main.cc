// rangefs-lockd: one shard of the distributed lock manager.
//
//   rangefs-lockd --cluster CLUSTER --shard 0 [--dir DIR]
//
// CLUSTER is the cluster configuration (a file or the text itself, see
// common/cluster_config.h): this shard serves on its `lockd` address (or
// --listen) and fences evicted sessions at the `meta` and `data` servers.
// With --dir, a restart is recognised and begins with a grace period in
// which nodes replay the locks they hold.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "common/cluster_config.h"
#include "common/fault_injection.h"
#include "common/log.h"
#include "common/process.h"
#include "lockmgr/lock_service.h"
#include "rpc/server_util.h"

ABSL_FLAG(std::string, cluster, "", "cluster configuration (file or text)");
ABSL_FLAG(uint32_t, shard, 0, "this shard's index in the lockd list");
ABSL_FLAG(std::string, listen, "",
          "address to serve on (default: from the cluster)");
ABSL_FLAG(std::string, dir, "",
          "state directory (restart detection, evicted session ids)");
ABSL_FLAG(uint64_t, callback_timeout_ms, 10000,
          "evict a holder that does not answer a callback within this");
ABSL_FLAG(uint64_t, grace_ms, 5000, "replay period after a restart");

int main(int argc, char** argv) {
  using namespace rangefs;
  absl::SetProgramUsageMessage("rangefs lock manager shard");
  absl::ParseCommandLine(argc, argv);
  rpc::BlockTerminationSignals();
  InitProgram("rangefs-lockd");
  if (absl::Status s = LoadFaultsFromEnv(); !s.ok()) {
    RANGEFS_LOG(ERROR) << "RANGEFS_FAULTS: " << s.message();
    return 2;
  }
  absl::StatusOr<ClusterConfig> config =
      LoadClusterConfig(absl::GetFlag(FLAGS_cluster));
  if (!config.ok()) {
    RANGEFS_LOG(ERROR) << "--cluster: " << config.status().message();
    return 2;
  }
  uint32_t shard = absl::GetFlag(FLAGS_shard);
  if (shard >= config->lockd.size()) {
    RANGEFS_LOG(ERROR) << "--shard " << shard << " but the cluster lists "
                       << config->lockd.size() << " lockd shards";
    return 2;
  }
  lockmgr::LockServerOptions options;
  options.shard = shard;
  options.shard_count = config->lockd.size();
  options.callback_timeout_ms = absl::GetFlag(FLAGS_callback_timeout_ms);
  std::string dir = absl::GetFlag(FLAGS_dir);
  if (!dir.empty()) {
    mkdir(dir.c_str(), 0755);
    options.evicted_path = dir + "/evicted";
    options.sessions_path = dir + "/sessions";
    std::string marker = dir + "/started";
    // A marker from an earlier run means nodes may hold locks: replay them.
    if (access(marker.c_str(), F_OK) == 0) {
      options.grace_ms = absl::GetFlag(FLAGS_grace_ms);
    } else {
      int fd = open(marker.c_str(), O_CREAT | O_WRONLY, 0644);
      if (fd >= 0) {
        fsync(fd);
        close(fd);
      }
    }
  }
  lockmgr::GrpcFencer fencer(*config);
  lockmgr::LockServer server(options, &fencer);
  std::string listen = absl::GetFlag(FLAGS_listen);
  if (listen.empty()) listen = config->lockd[shard];
  lockmgr::LockServiceImpl service(&server,
                                   absl::StrCat("rangefs-lockd ", listen));
  int port = 0;
  auto grpc_server = rpc::StartServer(listen, {&service}, &port);
  if (!grpc_server.ok()) {
    RANGEFS_LOG(ERROR) << grpc_server.status().message();
    return 1;
  }
  RANGEFS_LOG(INFO) << "shard " << shard << "/" << options.shard_count
                    << " serving on " << listen
                    << (options.grace_ms ? " (restart: grace period)" : "");
  int sig = rpc::WaitForTerminationSignal();
  RANGEFS_LOG(INFO) << "signal " << sig << ", shutting down";
  fencer.Shutdown();
  (*grpc_server)
      ->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  return 0;
}
