// A data server's side of fencing (docs/lock-manager.md, "Fencing a server
// lockd cannot reach"): it asks the metadata server, which records every
// fence, for the fences it has not applied yet, applies them, and takes
// writes only within the fence lease of its last completed sync. So lockd,
// once the metadata server has recorded a fence and a fence lease has
// passed, knows that every data server has that fence or takes no writes,
// also one it cannot reach.
#ifndef RANGEFS_SERVER_DATA_FENCE_SYNC_H_
#define RANGEFS_SERVER_DATA_FENCE_SYNC_H_

#include <cstdint>
#include <memory>
#include <string>
#include <thread>

#include "absl/synchronization/mutex.h"
#include "server/data/block_store.h"

namespace rangefs::data {

class FenceSync {
 public:
  // Starts syncing `store` (which must outlive this) with the metadata
  // server at `meta_address`. Until the first sync completes the store
  // takes no writes.
  FenceSync(BlockStore* store, const std::string& meta_address);
  ~FenceSync();  // Stops syncing; the lease runs out by itself.
  FenceSync(const FenceSync&) = delete;
  FenceSync& operator=(const FenceSync&) = delete;

 private:
  class Meta;  // The gRPC side (fence_sync.cc).
  void Loop();
  // One FenceList call and its fences applied; false if it failed.
  bool SyncOnce();

  BlockStore* const store_;
  std::unique_ptr<Meta> meta_;
  uint64_t applied_seq_ = 0;  // Loop's thread only.
  uint64_t lease_ms_ = 0;     // From the last reply (0: none yet).
  int64_t until_ns_ = 0;      // The lease's end (SteadyNs).
  bool held_ = false;         // Loop's thread only: for the log.
  absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace rangefs::data

#endif  // RANGEFS_SERVER_DATA_FENCE_SYNC_H_
