// rangefs-locknode: a node process for lock manager tests. It opens a
// LockCache against a cluster and obeys commands on stdin, one per line,
// answering each on stdout:
//
//   lock ID KIND INO START END MODE [try]   -> "ok ID" | "err ID CODE"
//   unlock ID                               -> "ok ID"
//   session                                 -> "session N"
//   stats                                   -> "stats hits=.. requests=.."
//   quit
//
// KIND is data|inval|inode, MODE sh|df|ex. With --hook_ms=-1 its cache
// hooks never return (a node that ignores callbacks); otherwise they sleep
// that long. Hook events are printed as "hook demote INO START END KEEP".
#include <unistd.h>

#include <iostream>
#include <map>
#include <sstream>
#include <string>
#include <thread>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "client/lock_cache.h"
#include "common/log.h"
#include "common/status.h"

ABSL_FLAG(std::string, cluster, "", "cluster configuration");
ABSL_FLAG(int, hook_ms, 0, "hook delay; -1 = never return");
ABSL_FLAG(uint64_t, lease_ms, 10000, "session lease");
ABSL_FLAG(std::string, name, "locknode", "node name");

namespace rangefs::client {
namespace {

std::mutex out_mu;
void Say(const std::string& s) {
  std::lock_guard<std::mutex> l(out_mu);
  std::cout << s << std::endl;
}

class PrintingHooks : public LockHooks {
 public:
  void Demote(const ResourceId& r, const ByteRange& range,
              LockMode keep) override {
    Say("hook demote " + std::to_string(r.ino) + " " +
        std::to_string(range.start) + " " + std::to_string(range.end) + " " +
        lockmgr::LockModeName(keep));
    int ms = absl::GetFlag(FLAGS_hook_ms);
    if (ms < 0) {
      for (;;) std::this_thread::sleep_for(std::chrono::hours(1));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(ms));
  }
  void Lost(const ResourceId& r, const ByteRange&) override {
    Say("hook lost " + std::to_string(r.ino));
  }
};

int Main() {
  auto config = LoadClusterConfig(absl::GetFlag(FLAGS_cluster));
  if (!config.ok()) {
    std::cerr << config.status().message() << "\n";
    return 2;
  }
  LockCacheOptions o;
  o.node_name = absl::GetFlag(FLAGS_name);
  o.lease_ms = absl::GetFlag(FLAGS_lease_ms);
  LockCache cache(*config, o);
  PrintingHooks hooks;
  for (LockKind k : {LockKind::kData, LockKind::kInval, LockKind::kInode}) {
    cache.SetHooks(k, &hooks);
  }
  if (absl::Status s = cache.Start(); !s.ok()) {
    std::cerr << s.message() << "\n";
    return 1;
  }
  Say("ready " + std::to_string(cache.session_id()));
  std::map<std::string, LocalLock> held;
  std::string line;
  while (std::getline(std::cin, line)) {
    std::istringstream in(line);
    std::string cmd, id;
    in >> cmd;
    if (cmd == "lock") {
      std::string kind, mode, flag;
      uint64_t ino, start, end;
      in >> id >> kind >> ino >> start >> end >> mode >> flag;
      LockKind k = kind == "data"    ? LockKind::kData
                   : kind == "inval" ? LockKind::kInval
                                     : LockKind::kInode;
      LockMode m = mode == "sh"   ? LockMode::kSh
                   : mode == "df" ? LockMode::kDf
                                  : LockMode::kEx;
      auto l = cache.Lock(ResourceId{ino, k}, ByteRange{start, end}, m,
                          std::hash<std::string>()(id) % (1ull << 40) + 1,
                          flag == "try", 30000);
      if (l.ok()) {
        held[id] = *l;
        Say("ok " + id);
      } else {
        Say("err " + id + " " + ErrcName(ErrcOf(l.status())));
      }
    } else if (cmd == "unlock") {
      in >> id;
      if (held.count(id)) cache.Unlock(held[id]);
      held.erase(id);
      Say("ok " + id);
    } else if (cmd == "session") {
      Say("session " + std::to_string(cache.session_id()));
    } else if (cmd == "stats") {
      LockCacheStats s = cache.Stats();
      Say("stats hits=" + std::to_string(s.local_hits) +
          " requests=" + std::to_string(s.cluster_requests) +
          " lost=" + std::to_string(s.sessions_lost));
    } else if (cmd == "quit") {
      break;
    }
  }
  _exit(0);  // Tests kill nodes in odd states; do not wait for hooks.
}

}  // namespace
}  // namespace rangefs::client

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  rangefs::InitLogging("rangefs-locknode");
  return rangefs::client::Main();
}
