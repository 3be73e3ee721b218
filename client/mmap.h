// MmapTable: a node's memory mappings of rangefs files, made of ordinary
// memory whose page faults come to the node through userfaultfd
// (docs/mmap.md).
//
// Mapped pages live in a memfd ("backing"), indexed by file page: one per
// inode for all MAP_SHARED mappings of it on the node (so two mappings of
// one file see each other's stores at once, as on Linux), one per
// MAP_PRIVATE mapping. Each mapping maps its part of the backing twice:
// the application's view, registered with userfaultfd (missing, minor and
// write-protect faults), and the node's own view, which the node reads and
// writes without faults. A page of a backing is in one of four states:
//   absent   no page table entry: the next access faults;
//   clean    mapped write-protected, equal to the node's page cache copy;
//   dirty    mapped writable: the application may have changed it;
//   private  a MAP_PRIVATE page the application wrote: detached from the
//            file, never written back or invalidated.
// and the lock rules follow the page cache's (DESIGN.md): clean pages only
// under the node's INVAL SH or EX of the page, dirty pages only under EX.
// A read fault takes INVAL SH (and INODE SH for EOF), fills the page from
// the page cache through the node's view and maps it write-protected; a
// write fault takes INVAL EX and INODE EX and makes the page writable.
// Faults never take DATA locks.
//
// The I/O paths keep mappings coherent: Collect() write-protects dirty
// pages and copies them into the page cache as dirty pages (before any
// writeback), Refresh() copies newly written page cache pages into mapped
// clean pages, Zap() removes pages (the next access faults and fetches
// them again under the lock).
//
// Faults from a thread that is inside a copy section (user_copy.h) are not
// served: the copy stops. A fault that would wait on a lock the faulting
// thread itself holds is refused the same way with CopyStop::kDeadlock,
// or, outside a copy section, with SIGBUS instead of a hang. SIGBUS
// (past EOF, failed fills) is userfaultfd's poison marker on the page of
// that view, lifted when the range is next invalidated or written.
//
// Thread-safe. Lock order: cluster locks -> InodeState::wb_mu -> mu_ ->
// PageCache.
#ifndef RANGEFS_CLIENT_MMAP_H_
#define RANGEFS_CLIENT_MMAP_H_

#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "client/rangefs.h"
#include "common/range.h"
#include "common/thread_pool.h"

namespace rangefs::client {

struct InodeState;

struct MmapStats {
  uint64_t read_faults = 0, write_faults = 0, private_faults = 0;
  uint64_t refused_faults = 0, deadlock_faults = 0, sigbus_faults = 0;
  uint64_t pages_collected = 0, pages_zapped = 0, pages_refreshed = 0;
};

class MmapTable {
 public:
  // `impl` owns this (its locks, pages and fills serve the faults).
  explicit MmapTable(Client::Impl* impl);
  ~MmapTable();  // Stop().
  MmapTable(const MmapTable&) = delete;
  MmapTable& operator=(const MmapTable&) = delete;

  absl::StatusOr<void*> Map(std::shared_ptr<InodeState> inode, uint64_t offset,
                            size_t length, int prot, int flags);
  // msync: MS_SYNC writes the mapping's dirty pages back before returning;
  // MS_ASYNC hands them to the page cache's writeback.
  absl::Status Sync(void* addr, size_t length, int flags);
  // Unmaps a whole mapping and writes back what it stored.
  absl::Status Unmap(void* addr, size_t length);
  // Unmaps everything and stops the fault handler.
  void Stop();

  // The I/O paths' calls, for bytes `range` of inode `in`.
  void Collect(InodeState& in, const ByteRange& range);
  // Returns how many dirty pages it dropped.
  uint64_t Zap(InodeState& in, const ByteRange& range);
  void Refresh(InodeState& in, const ByteRange& range);
  // Inodes with dirty mapped pages (for background writeback).
  std::vector<uint64_t> DirtyInodes();
  MmapStats Stats();

 private:
  struct Backing;
  struct View;
  struct Fault {
    uintptr_t address = 0;
    uint64_t flags = 0;
    pid_t tid = 0;
  };
  absl::Status StartLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Reader();
  void Serve(const Fault& f);
  // Handles a fault of a thread that may not wait for it; true if handled.
  bool Refuse(const Fault& f, View& v, uint64_t page);
  std::shared_ptr<View> Find(uintptr_t address)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // For file pages [first, end) of `b`.
  void CollectLocked(Backing& b, uint64_t first, uint64_t end)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  uint64_t ZapLocked(Backing& b, uint64_t first, uint64_t end)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The backings holding pages of `in` (its shared one, private ones).
  std::vector<Backing*> BackingsOf(const InodeState& in)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // SIGBUS for accesses to file page `fp` of `v` (userfaultfd's poison)
  // until Unpoison: the faulting thread gets it when it retries.
  void PoisonLocked(View& v, uint64_t fp) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Unpoison(Backing& b, uint64_t first, uint64_t end)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Removes a userfaultfd write-protect marker from an empty page table
  // entry of the application's view at `address`.
  void ClearMarkers(uintptr_t address);

  Client::Impl* const impl_;
  int uffd_ = -1;
  int stop_fd_ = -1;  // eventfd that wakes the reader.
  std::thread reader_;
  std::unique_ptr<ThreadPool> workers_;

  absl::Mutex mu_;
  std::map<uintptr_t, std::shared_ptr<View>> views_ ABSL_GUARDED_BY(mu_);
  // The shared backing of each inode with MAP_SHARED mappings.
  std::map<uint64_t, std::shared_ptr<Backing>> shared_ ABSL_GUARDED_BY(mu_);
  bool stopped_ ABSL_GUARDED_BY(mu_) = false;
  MmapStats stats_ ABSL_GUARDED_BY(mu_);
};

}  // namespace rangefs::client

#endif  // RANGEFS_CLIENT_MMAP_H_
