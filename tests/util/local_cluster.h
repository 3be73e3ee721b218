// A whole rangefs cluster of real processes on loopback for tests: data
// servers, a metadata server and lockd shards, with the cluster
// configuration they share. Processes are stopped by PID (never by name)
// and die with the test.
#ifndef RANGEFS_TESTS_UTIL_LOCAL_CLUSTER_H_
#define RANGEFS_TESTS_UTIL_LOCAL_CLUSTER_H_

#include <memory>
#include <string>
#include <vector>

#include "tests/util/subprocess.h"
#include "tests/util/temp_dir.h"

namespace rangefs::testing {

class NetLab;

struct LocalClusterOptions {
  int data_servers = 2;
  int lockd_shards = 1;
  uint64_t device_size = 256ull << 20;
  uint64_t callback_timeout_ms = 10000;
  uint64_t grace_ms = 1000;
  // The metadata server's --fence_lease_ms (0: its default).
  uint64_t fence_lease_ms = 0;
  // Each server in a host of its own in `lab` (named meta, lockdI,
  // dataI), on that host's address, instead of on loopback.
  NetLab* lab = nullptr;
};

class LocalCluster {
 public:
  explicit LocalCluster(const LocalClusterOptions& options = {});
  ~LocalCluster();

  // Starts every server and waits until each answers. False (with the log
  // tails in *why) if one does not come up. A port taken meanwhile (tests
  // run side by side pick free ports independently) moves the cluster to
  // new ports: config() and the addresses are final once Start returns.
  bool Start(std::string* why);
  // The cluster configuration text every binary and node reads.
  const std::string& config() const { return config_; }
  const std::string& dir() const { return dir_.path(); }

  void StartLockd(int shard);
  // The metadata server: start it (on its address, with its data; with
  // the fault rules `faults` added to RANGEFS_FAULTS), stop it with `sig`,
  // and wait until it answers.
  void StartMeta(const std::string& faults = "");
  void StopMeta(int sig);
  bool WaitMeta(std::string* why);
  // Data server `i`: start it (on its address, with its data), stop it
  // with `sig`, and wait until it takes writes (it has learnt the fences
  // from the metadata server: docs/lock-manager.md).
  void StartData(int i);
  void StopData(int i, int sig);
  void SignalData(int i, int sig);  // Without waiting (SIGSTOP, SIGCONT).
  bool WaitDataWrites(int i, std::string* why);
  // Sends `sig` to lockd shard `shard` and waits for it to exit.
  void StopLockd(int shard, int sig);
  bool WaitLockd(int shard, std::string* why);
  std::string data_address(int i) const;
  std::string bulk_address(int i) const;  // Its bulk protocol.
  std::string lockd_address(int i) const;
  std::string meta_address() const;
  std::string LogTail(const std::string& name) const;
  // The metadata server's fsck: its problems (empty when consistent), or
  // one line saying the call failed.
  std::vector<std::string> Fsck() const;

 private:
  void PickPorts();
  // The address of server host `name`, and its process placed there.
  std::string Address(const std::string& name, int port) const;
  void Place(Subprocess* proc, const std::string& name) const;
  bool StartOnce(std::string* why);
  void StopAll();

  LocalClusterOptions options_;
  TempDir dir_;
  std::string config_;
  std::string devices_;    // The metadata server's --devices.
  std::string lab_error_;  // Hosts the lab could not make.
  std::vector<int> data_ports_, bulk_ports_, lockd_ports_;
  int meta_port_ = 0;
  std::vector<std::unique_ptr<Subprocess>> data_, lockd_;
  Subprocess meta_;
};

}  // namespace rangefs::testing

#endif  // RANGEFS_TESTS_UTIL_LOCAL_CLUSTER_H_
