// ExtentSet: a window of one inode's extent map, loaded from the store,
// edited in memory, and written back as the puts and deletes that turn the
// loaded state into the edited one. Pure logic apart from Load; the
// metadata server's extent operations are built from these edits.
//
// Generations: every extent records the inode extent generation at which
// the mapping of its bytes last changed. Edits that change a mapping (new
// allocation, state change, shift) stamp the pieces they change with the
// new generation; pieces split off unchanged keep theirs, so a client's own
// sequential commits do not make each other STALE.
#ifndef RANGEFS_SERVER_META_EXTENT_SET_H_
#define RANGEFS_SERVER_META_EXTENT_SET_H_

#include <cstdint>
#include <map>
#include <vector>

#include "absl/status/statusor.h"
#include "common/range.h"
#include "server/meta/meta_store.h"
#include "server/meta/records.h"

namespace rangefs::meta {

class ExtentSet {
 public:
  // Loads every extent of `ino` overlapping [start, end).
  static absl::StatusOr<ExtentSet> Load(MetaStore* store, const ReadView* view,
                                        uint64_t ino, uint64_t start,
                                        uint64_t end);
  // An empty window (for tests and new files).
  ExtentSet(uint64_t start, uint64_t end) : start_(start), end_(end) {}

  const std::map<uint64_t, Extent>& extents() const { return current_; }

  // The unmapped parts of [start, end) (clipped to the window).
  std::vector<ByteRange> Holes(uint64_t start, uint64_t end) const;
  // The mapping of [start, end) as a list covering it exactly, holes
  // included (state kHole), clipped to the range.
  std::vector<Extent> Mappings(uint64_t start, uint64_t end) const;
  // Largest generation among extents overlapping [start, end), 0 if none.
  uint64_t MaxGen(uint64_t start, uint64_t end) const;

  // Removes every mapping of [start, end); returns the space it used.
  std::vector<PhysExtent> Cut(uint64_t start, uint64_t end);
  // Sets mapped bytes of [start, end) to `state`; the pieces whose state
  // changes get generation `gen`. Returns true if anything changed.
  bool SetState(uint64_t start, uint64_t end, ExtentState state, uint64_t gen);
  // Adds an extent; it must not overlap a present one.
  void Add(const Extent& e);
  // Moves every extent at or after `from` by `delta` bytes down (collapse)
  // or up (insert), stamping them with `gen`. The window must reach
  // infinity. Down requires no extent in [from - delta, from).
  void ShiftDown(uint64_t from, uint64_t delta, uint64_t gen);
  void ShiftUp(uint64_t from, uint64_t delta, uint64_t gen);

  // Merges neighbours that continue each other (same device, state and
  // generation, physically contiguous), so splits that changed nothing
  // leave no trace.
  void Compact();

  // Blocks mapped (for st_blocks accounting), over the whole window.
  uint64_t MappedBytes() const;
  bool changed() const { return current_ != original_; }

  // Adds to `batch` the edits that turn the loaded extents into the
  // current ones.
  void WriteTo(uint64_t ino, Batch* batch) const;

 private:
  // Splits the extent containing `at` (if any) so that `at` is a boundary.
  void SplitAt(uint64_t at);

  uint64_t start_, end_;
  std::map<uint64_t, Extent> original_;
  std::map<uint64_t, Extent> current_;
};

}  // namespace rangefs::meta

#endif  // RANGEFS_SERVER_META_EXTENT_SET_H_
