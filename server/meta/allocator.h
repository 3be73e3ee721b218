// Allocator: free space of every data device, in memory, as sorted maps of
// free extents. The metadata server loads it from the `free` column family
// at start and writes every change back in the same batch as the operation
// that made it (TakeChanges). Allocation prefers the goal position (after
// the file's previous extent) on the goal device, then the rest of that
// device, then the other devices.
//
// Thread-compatible: the metadata server serialises use (its sequencing
// mutex), so changes reach RocksDB in the order they were made.
#ifndef RANGEFS_SERVER_META_ALLOCATOR_H_
#define RANGEFS_SERVER_META_ALLOCATOR_H_

#include <cstdint>
#include <map>
#include <set>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "server/meta/records.h"

namespace rangefs::meta {

class Allocator {
 public:
  // Registers a device with no free space (LoadFree adds it).
  void AddDevice(uint32_t device, uint64_t size);
  // Adds a free extent read from the store (no change is recorded).
  void LoadFree(const PhysExtent& free);

  // Allocates `length` bytes (a multiple of kBlockSize) in one or more
  // pieces. NO_SPACE, changing nothing, when there is not enough.
  absl::StatusOr<std::vector<PhysExtent>> Allocate(uint64_t length,
                                                   uint32_t goal_device,
                                                   uint64_t goal_physical);
  // Returns space; merges with free neighbours. INTERNAL (and no change) if
  // any of it is already free or outside its device: a double free.
  absl::Status Free(const PhysExtent& space);

  // Free-map records changed since the last call: for each (device,
  // physical) key, the new length, or 0 when the record must be deleted.
  std::vector<std::pair<std::pair<uint32_t, uint64_t>, uint64_t>> TakeChanges();
  // Forgets recorded changes (after a failed operation was rolled back by
  // reloading) — only used by tests.
  bool HasChanges() const { return !changed_.empty(); }

  uint64_t total_bytes() const;
  uint64_t free_bytes() const { return free_bytes_; }
  std::vector<uint32_t> devices() const;
  // The free extents of a device, for fsck.
  const std::map<uint64_t, uint64_t>& free_map(uint32_t device) const;

 private:
  struct Device {
    uint64_t size = 0;
    std::map<uint64_t, uint64_t> free;  // physical -> length
  };
  void Insert(Device& d, uint32_t id, uint64_t start, uint64_t length);
  void Erase(Device& d, uint32_t id, uint64_t start);
  // Takes up to `want` bytes from device `id`, starting near `goal`.
  void TakeFrom(uint32_t id, uint64_t goal, uint64_t* want,
                std::vector<PhysExtent>* out);

  std::map<uint32_t, Device> devices_;
  uint64_t free_bytes_ = 0;
  std::set<std::pair<uint32_t, uint64_t>> changed_;
};

}  // namespace rangefs::meta

#endif  // RANGEFS_SERVER_META_ALLOCATOR_H_
