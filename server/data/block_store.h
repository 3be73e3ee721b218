// BlockStore: the storage of one rangefs-data server. One preallocated file
// (or block device), addressed by physical offset; reads and writes carry
// the caller's session id, and a fenced session's I/O is refused from the
// moment Fence() returns (the fence list is persisted, so it survives a
// restart). Never-written blocks of a file-backed store read as zeros.
//
// Writes whose device offset, length and buffer are 4 KiB aligned go
// around the server's page cache (O_DIRECT): the node caches the data, so
// a second copy here only doubles the memory traffic of every write. Reads
// and unaligned writes are buffered (reads keep the kernel's readahead).
// The kernel drops cached pages a direct write covers, before and after
// it; what it cannot keep coherent is a buffered write overlapping a
// direct write of the same block in time, which the nodes' locks exclude.
//
// Thread-safe. Reads and writes of different sessions run concurrently;
// Fence(s) waits for I/O of s already past its fence check, so once Fence
// returns no write of s can land.
#ifndef RANGEFS_SERVER_DATA_BLOCK_STORE_H_
#define RANGEFS_SERVER_DATA_BLOCK_STORE_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <set>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"

namespace rangefs::data {

// CLOCK_MONOTONIC in nanoseconds: the clock of fence leases.
int64_t SteadyNs();

// Largest read or write in one call.
inline constexpr uint64_t kMaxIo = 4ull << 20;

struct BlockStoreStats {
  uint64_t device_size = 0;
  uint64_t bytes_read = 0;
  uint64_t bytes_written = 0;
  uint64_t reads = 0;
  uint64_t writes = 0;
  uint64_t fenced_refusals = 0;
  // Writes refused because the fence lease had run out (SetFenceLease).
  uint64_t lease_refusals = 0;
  bool fence_lease_held = true;  // Writes are taken (SetFenceLease).
  uint64_t fence_seq = 0;  // The last fence learnt from the metadata server.
  std::set<uint64_t> fenced;
};

class BlockStore {
 public:
  // Opens the store in directory `dir` (created if missing): the device is
  // `dir/blocks`, sized `size` bytes on first use. `size` must match an
  // existing device, or be 0 to accept its size. `device`, if not empty,
  // names a file or block device to use instead of dir/blocks.
  // `direct_io`: use O_DIRECT for aligned I/O where the file system
  // allows it.
  static absl::StatusOr<std::unique_ptr<BlockStore>> Open(
      const std::string& dir, uint64_t size, const std::string& device = "",
      bool direct_io = true);
  ~BlockStore();
  BlockStore(const BlockStore&) = delete;
  BlockStore& operator=(const BlockStore&) = delete;

  // [offset, offset + length) must lie within the device, length in
  // 1..kMaxIo. FENCED if the session is fenced.
  absl::StatusOr<std::string> Read(uint64_t session, uint64_t offset,
                                   uint64_t length);
  // The same into `out` (length bytes).
  absl::Status ReadInto(uint64_t session, uint64_t offset, uint64_t length,
                        char* out);
  // For a caller that moves the bytes itself (sendfile(2) to a socket):
  // runs `read(fd)` with the store's buffered descriptor after the checks
  // of ReadInto, and returns what it returns (or the checks' error,
  // without running it). The fence lock is not held across `read` (it may
  // wait on the network): a fence does not wait for it.
  absl::Status ReadThrough(uint64_t session, uint64_t offset, uint64_t length,
                           const std::function<absl::Status(int fd)>& read);
  // Session 0 is refused: every writer identifies itself.
  absl::Status Write(uint64_t session, uint64_t offset, absl::string_view data,
                     bool sync);
  absl::Status Flush(uint64_t session);
  // Fences `session` durably; idempotent.
  absl::Status Fence(uint64_t session);
  // Writes (and flushes) are taken only before `until_ns` (CLOCK_MONOTONIC):
  // the end of the fence lease of the server's last completed fence sync
  // with the metadata server (FenceSync), after which lockd may hand an
  // evicted session's locks to others without this server's own answer.
  // Until the first call no lease is needed (a store used alone). `seq`:
  // the metadata server's last fence, now applied here.
  void SetFenceLease(int64_t until_ns, uint64_t seq);

  uint64_t size() const { return size_; }
  bool direct_io() const { return direct_fd_ >= 0; }
  // The alignment of offsets, lengths and buffers that direct writes need.
  static constexpr uint64_t kDirectAlign = 4096;
  BlockStoreStats Stats() const;

 private:
  BlockStore(std::string dir, int fd, int direct_fd, uint64_t size);
  // The descriptor for a write of `length` bytes at `offset` from `buf`.
  int FdFor(uint64_t offset, uint64_t length, const void* buf) const;
  absl::Status CheckRange(uint64_t offset, uint64_t length) const;
  // BUSY once the fence lease has run out (clients retry a while).
  absl::Status CheckFenceLease() const;
  // Requires fence_mu_ held (shared or exclusive).
  absl::Status CheckFence(uint64_t session) const
      ABSL_SHARED_LOCKS_REQUIRED(fence_mu_);
  absl::Status PersistFences() ABSL_EXCLUSIVE_LOCKS_REQUIRED(fence_mu_);
  absl::Status LoadFences() ABSL_EXCLUSIVE_LOCKS_REQUIRED(fence_mu_);

  const std::string dir_;
  const int fd_;
  const int direct_fd_;  // -1: no direct I/O.
  const uint64_t size_;
  // Held shared by every I/O across its fence check and the system call,
  // exclusively by Fence().
  mutable absl::Mutex fence_mu_;
  std::set<uint64_t> fenced_ ABSL_GUARDED_BY(fence_mu_);

  std::atomic<uint64_t> bytes_read_{0};
  std::atomic<uint64_t> bytes_written_{0};
  std::atomic<uint64_t> reads_{0};
  std::atomic<uint64_t> writes_{0};
  mutable std::atomic<uint64_t> fenced_refusals_{0};
  mutable std::atomic<uint64_t> lease_refusals_{0};
  std::atomic<int64_t> lease_until_ns_{INT64_MAX};  // SetFenceLease.
  std::atomic<uint64_t> fence_seq_{0};
};

}  // namespace rangefs::data

#endif  // RANGEFS_SERVER_DATA_BLOCK_STORE_H_
