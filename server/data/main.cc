// rangefs-data: a data server. Serves one block device (a preallocated file
// by default) over DataService on the address it is given, and block
// reads and writes over the bulk protocol on --bulk_listen.
//
//   rangefs-data --listen 127.0.0.1:7101 --dir /var/lib/rangefs/data0
//                --size 1073741824
#include <chrono>
#include <cstdio>
#include <memory>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "common/fault_injection.h"
#include "common/log.h"
#include "common/process.h"
#include "rpc/server_util.h"
#include "server/data/block_store.h"
#include "server/data/bulk_server.h"
#include "server/data/data_service.h"
#include "server/data/fence_sync.h"

ABSL_FLAG(std::string, listen, "127.0.0.1:7101", "address to serve on");
ABSL_FLAG(std::string, dir, "", "state directory (device file, fence list)");
ABSL_FLAG(std::string, device, "",
          "file or block device to use instead of DIR/blocks");
ABSL_FLAG(uint64_t, size, 0,
          "device size in bytes (required when the device is new)");
ABSL_FLAG(int, threads, 8, "I/O threads");
ABSL_FLAG(bool, direct_io, true,
          "aligned writes bypass the server's page cache (O_DIRECT)");
ABSL_FLAG(std::string, meta, "",
          "the metadata server's address (required): this server learns the "
          "fences from it and takes writes only while it keeps up "
          "(docs/lock-manager.md)");
ABSL_FLAG(std::string, bulk_listen, "",
          "address to serve the bulk protocol on (block reads and writes "
          "beside gRPC; the cluster configuration's bulk=HOST:PORT)");

int main(int argc, char** argv) {
  using namespace rangefs;
  absl::SetProgramUsageMessage("rangefs data server");
  absl::ParseCommandLine(argc, argv);
  rpc::BlockTerminationSignals();
  InitProgram("rangefs-data");
  if (absl::Status s = LoadFaultsFromEnv(); !s.ok()) {
    RANGEFS_LOG(ERROR) << "RANGEFS_FAULTS: " << s.message();
    return 2;
  }
  std::string dir = absl::GetFlag(FLAGS_dir);
  if (dir.empty()) {
    RANGEFS_LOG(ERROR) << "--dir is required";
    return 2;
  }
  const std::string meta = absl::GetFlag(FLAGS_meta);
  if (meta.empty()) {
    RANGEFS_LOG(ERROR) << "--meta is required (the metadata server's "
                          "address: fences are learnt from it)";
    return 2;
  }
  auto store = data::BlockStore::Open(dir, absl::GetFlag(FLAGS_size),
                                      absl::GetFlag(FLAGS_device),
                                      absl::GetFlag(FLAGS_direct_io));
  if (!store.ok()) {
    RANGEFS_LOG(ERROR) << "cannot open the device: "
                       << store.status().message();
    return 1;
  }
  data::FenceSync fence_sync(store->get(), meta);
  ThreadPool pool(absl::GetFlag(FLAGS_threads));
  std::string listen = absl::GetFlag(FLAGS_listen);
  data::DataServiceImpl service(store->get(), &pool,
                                absl::StrCat("rangefs-data ", listen));
  int port = 0;
  auto server = rpc::StartServer(listen, {&service}, &port);
  if (!server.ok()) {
    RANGEFS_LOG(ERROR) << server.status().message();
    return 1;
  }
  std::unique_ptr<data::BulkServer> bulk;
  if (std::string b = absl::GetFlag(FLAGS_bulk_listen); !b.empty()) {
    int bulk_port = 0;
    auto started = data::BulkServer::Start(b, store->get(), &bulk_port);
    if (!started.ok()) {
      RANGEFS_LOG(ERROR) << started.status().message();
      return 1;
    }
    bulk = std::move(*started);
    RANGEFS_LOG(INFO) << "bulk protocol on " << b << " (port " << bulk_port
                      << ")";
  }
  RANGEFS_LOG(INFO) << "serving " << (*store)->size() << " bytes"
                    << ((*store)->direct_io() ? " (direct I/O)" : "") << " on "
                    << listen << " (port " << port << ")";
  int sig = rpc::WaitForTerminationSignal();
  RANGEFS_LOG(INFO) << "signal " << sig << ", shutting down";
  if (bulk) bulk->Stop();
  (*server)->Shutdown(std::chrono::system_clock::now() +
                      std::chrono::seconds(2));
  return 0;
}
