// rangefs-meta: the metadata server. Keeps inodes, directories and extent
// maps in RocksDB under --dir and serves MetaService on --listen.
//
//   rangefs-meta --listen 127.0.0.1:7001 --dir /var/lib/rangefs/meta
//                --fs_id demo
//                --devices
//                0=127.0.0.1:7101:1073741824,1=127.0.0.1:7102:1073741824
//
// --devices is needed to format a new directory; on an existing one it may
// add devices or change their addresses, never their sizes.
#include <chrono>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/fault_injection.h"
#include "common/log.h"
#include "common/process.h"
#include "common/status.h"
#include "rpc/server_util.h"
#include "server/meta/meta_server.h"
#include "server/meta/meta_service.h"

ABSL_FLAG(std::string, listen, "127.0.0.1:7001", "address to serve on");
ABSL_FLAG(std::string, dir, "", "RocksDB directory");
ABSL_FLAG(std::string, fs_id, "",
          "filesystem id: formats a new directory, must match an old one");
ABSL_FLAG(std::string, devices, "",
          "data devices: ID=HOST:PORT:SIZE[,ID=HOST:PORT:SIZE...]");
ABSL_FLAG(int, threads, 32,
          "handler threads (concurrent requests share one synced write)");

ABSL_FLAG(uint64_t, fence_lease_ms, 5000,
          "how long a data server may take writes after it last learnt the "
          "fences from this server; lockd waits this long (and half again) "
          "for a data server it cannot reach before it hands an evicted "
          "node's locks over");

namespace rangefs::meta {
namespace {

absl::StatusOr<std::vector<DeviceInfo>> ParseDevices(const std::string& spec) {
  std::vector<DeviceInfo> out;
  for (absl::string_view item : absl::StrSplit(spec, ',', absl::SkipEmpty())) {
    std::vector<absl::string_view> kv = absl::StrSplit(item, '=');
    size_t colon = kv.size() == 2 ? kv[1].rfind(':') : absl::string_view::npos;
    DeviceInfo d;
    if (colon == absl::string_view::npos || !absl::SimpleAtoi(kv[0], &d.id) ||
        !absl::SimpleAtoi(kv[1].substr(colon + 1), &d.size)) {
      return MakeError(
          Errc::kInvalidArgument,
          absl::StrCat("bad device '", item, "': want ID=HOST:PORT:SIZE"));
    }
    d.address = std::string(kv[1].substr(0, colon));
    out.push_back(d);
  }
  return out;
}

int Main() {
  std::string dir = absl::GetFlag(FLAGS_dir);
  if (dir.empty()) {
    RANGEFS_LOG(ERROR) << "--dir is required";
    return 2;
  }
  absl::StatusOr<std::vector<DeviceInfo>> devices =
      ParseDevices(absl::GetFlag(FLAGS_devices));
  if (!devices.ok()) {
    RANGEFS_LOG(ERROR) << devices.status().message();
    return 2;
  }
  absl::StatusOr<std::unique_ptr<MetaServer>> server =
      MetaServer::Open(dir, absl::GetFlag(FLAGS_fs_id), *devices);
  if (!server.ok()) {
    RANGEFS_LOG(ERROR) << "cannot open " << dir << ": "
                       << server.status().message();
    return 1;
  }
  ThreadPool pool(absl::GetFlag(FLAGS_threads));
  std::string listen = absl::GetFlag(FLAGS_listen);
  const uint64_t fence_lease_ms = absl::GetFlag(FLAGS_fence_lease_ms);
  if (fence_lease_ms < 100 || fence_lease_ms > 600000) {
    RANGEFS_LOG(ERROR) << "--fence_lease_ms " << fence_lease_ms
                       << " is not in 100..600000";
    return 2;
  }
  MetaServiceImpl service(server->get(), &pool,
                          absl::StrCat("rangefs-meta ", listen),
                          fence_lease_ms);
  int port = 0;
  auto grpc_server = rpc::StartServer(listen, {&service}, &port);
  if (!grpc_server.ok()) {
    RANGEFS_LOG(ERROR) << grpc_server.status().message();
    return 1;
  }
  RANGEFS_LOG(INFO) << "filesystem " << (*server)->fs_id() << " serving on "
                    << listen << " (port " << port << ")";
  int sig = rpc::WaitForTerminationSignal();
  RANGEFS_LOG(INFO) << "signal " << sig << ", shutting down";
  (*grpc_server)
      ->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  return 0;
}

}  // namespace
}  // namespace rangefs::meta

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage("rangefs metadata server");
  absl::ParseCommandLine(argc, argv);
  rangefs::rpc::BlockTerminationSignals();
  rangefs::InitProgram("rangefs-meta");
  if (absl::Status s = rangefs::LoadFaultsFromEnv(); !s.ok()) {
    RANGEFS_LOG(ERROR) << "RANGEFS_FAULTS: " << s.message();
    return 2;
  }
  return rangefs::meta::Main();
}
