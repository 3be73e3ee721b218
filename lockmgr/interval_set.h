// IntervalSet: a set of half-open intervals [start, end), each named by a
// unique 64-bit id, that answers overlap and neighbour queries in
// O(log n + k) for k reported intervals, never in proportion to interval
// length. A treap ordered by (start, id) whose nodes carry the largest end
// in their subtree (the classic augmented interval tree).
//
// Thread-compatible: callers serialise access (the lock table's mutex).
#ifndef RANGEFS_LOCKMGR_INTERVAL_SET_H_
#define RANGEFS_LOCKMGR_INTERVAL_SET_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>

namespace rangefs::lockmgr {

class IntervalSet {
 public:
  struct Entry {
    uint64_t start;
    uint64_t end;
    uint64_t id;
  };

  IntervalSet() = default;
  IntervalSet(const IntervalSet&) = delete;
  IntervalSet& operator=(const IntervalSet&) = delete;
  IntervalSet(IntervalSet&&) = default;
  IntervalSet& operator=(IntervalSet&&) = default;
  ~IntervalSet();

  // Requires start < end, id < UINT64_MAX, and no entry with the same
  // (start, id).
  void Insert(uint64_t start, uint64_t end, uint64_t id);
  // Removes the entry (start, id); returns false when absent.
  bool Erase(uint64_t start, uint64_t id);

  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }

  // Calls fn(const Entry&) for every entry overlapping [start, end), in
  // start order, until fn returns false. Returns false if fn stopped it.
  template <typename Fn>
  bool ForEachOverlap(uint64_t start, uint64_t end, Fn&& fn) const {
    return Visit(root_.get(), start, end, fn);
  }

  // True if some entry overlaps [start, end).
  bool AnyOverlap(uint64_t start, uint64_t end) const {
    return !ForEachOverlap(start, end, [](const Entry&) { return false; });
  }

  // The largest end among entries with start < `start`, if any.
  std::optional<uint64_t> MaxEndStartingBefore(uint64_t start) const;
  // The smallest start among entries with start >= `start`, if any.
  std::optional<uint64_t> MinStartAtOrAfter(uint64_t start) const;

 private:
  struct Node {
    Entry e;
    uint64_t max_end;
    uint32_t priority;
    std::unique_ptr<Node> left, right;
  };
  using NodePtr = std::unique_ptr<Node>;

  static bool Less(const Entry& a, uint64_t start, uint64_t id) {
    return a.start < start || (a.start == start && a.id < id);
  }
  static void Update(Node* n);
  // Splits t into keys < (start, id) and keys >= (start, id).
  static void Split(NodePtr t, uint64_t start, uint64_t id, NodePtr* lo,
                    NodePtr* hi);
  static NodePtr Merge(NodePtr a, NodePtr b);

  template <typename Fn>
  static bool Visit(const Node* n, uint64_t start, uint64_t end, Fn& fn) {
    // Iterative on the right spine, recursive on the left: depth is
    // O(log n) expected for a treap.
    while (n != nullptr && n->max_end > start) {
      if (!Visit(n->left.get(), start, end, fn)) return false;
      if (n->e.start >= end) return true;  // Everything further starts later.
      if (n->e.end > start && !fn(n->e)) return false;
      n = n->right.get();
    }
    return true;
  }

  uint32_t NextPriority();

  NodePtr root_;
  size_t size_ = 0;
  uint64_t rng_ = 0x9E3779B97F4A7C15ull;
};

}  // namespace rangefs::lockmgr

#endif  // RANGEFS_LOCKMGR_INTERVAL_SET_H_
