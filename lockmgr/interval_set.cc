#include "lockmgr/interval_set.h"

#include <algorithm>
#include <utility>
#include <vector>

namespace rangefs::lockmgr {

IntervalSet::~IntervalSet() {
  // Tear down without recursion so a degenerate tree cannot blow the stack.
  std::vector<NodePtr> stack;
  if (root_) stack.push_back(std::move(root_));
  while (!stack.empty()) {
    NodePtr n = std::move(stack.back());
    stack.pop_back();
    if (n->left) stack.push_back(std::move(n->left));
    if (n->right) stack.push_back(std::move(n->right));
  }
}

uint32_t IntervalSet::NextPriority() {
  // xorshift64*: priorities only need to be unpredictable to the key order.
  rng_ ^= rng_ >> 12;
  rng_ ^= rng_ << 25;
  rng_ ^= rng_ >> 27;
  return static_cast<uint32_t>((rng_ * 0x2545F4914F6CDD1Dull) >> 32);
}

void IntervalSet::Update(Node* n) {
  uint64_t m = n->e.end;
  if (n->left) m = std::max(m, n->left->max_end);
  if (n->right) m = std::max(m, n->right->max_end);
  n->max_end = m;
}

void IntervalSet::Split(NodePtr t, uint64_t start, uint64_t id, NodePtr* lo,
                        NodePtr* hi) {
  if (!t) {
    lo->reset();
    hi->reset();
    return;
  }
  if (Less(t->e, start, id)) {
    NodePtr r;
    Split(std::move(t->right), start, id, &r, hi);
    t->right = std::move(r);
    Update(t.get());
    *lo = std::move(t);
  } else {
    NodePtr l;
    Split(std::move(t->left), start, id, lo, &l);
    t->left = std::move(l);
    Update(t.get());
    *hi = std::move(t);
  }
}

IntervalSet::NodePtr IntervalSet::Merge(NodePtr a, NodePtr b) {
  if (!a) return b;
  if (!b) return a;
  if (a->priority > b->priority) {
    a->right = Merge(std::move(a->right), std::move(b));
    Update(a.get());
    return a;
  }
  b->left = Merge(std::move(a), std::move(b->left));
  Update(b.get());
  return b;
}

void IntervalSet::Insert(uint64_t start, uint64_t end, uint64_t id) {
  auto node = std::make_unique<Node>();
  node->e = Entry{start, end, id};
  node->max_end = end;
  node->priority = NextPriority();
  NodePtr lo, hi;
  Split(std::move(root_), start, id, &lo, &hi);
  root_ = Merge(Merge(std::move(lo), std::move(node)), std::move(hi));
  ++size_;
}

bool IntervalSet::Erase(uint64_t start, uint64_t id) {
  NodePtr lo, rest, mid, hi;
  Split(std::move(root_), start, id, &lo, &rest);
  // rest's smallest key is >= (start, id); split off exactly that key.
  Split(std::move(rest), start, id + 1, &mid, &hi);
  bool found = mid != nullptr;
  root_ = Merge(std::move(lo), std::move(hi));
  if (found) --size_;
  return found;
}

std::optional<uint64_t> IntervalSet::MaxEndStartingBefore(
    uint64_t start) const {
  std::optional<uint64_t> best;
  const Node* n = root_.get();
  auto take = [&best](uint64_t v) {
    if (!best || v > *best) best = v;
  };
  while (n != nullptr) {
    if (n->e.start < start) {
      // n and its whole left subtree start before `start`.
      take(n->e.end);
      if (n->left) take(n->left->max_end);
      n = n->right.get();
    } else {
      n = n->left.get();
    }
  }
  return best;
}

std::optional<uint64_t> IntervalSet::MinStartAtOrAfter(uint64_t start) const {
  std::optional<uint64_t> best;
  const Node* n = root_.get();
  while (n != nullptr) {
    if (n->e.start >= start) {
      best = n->e.start;
      n = n->left.get();
    } else {
      n = n->right.get();
    }
  }
  return best;
}

}  // namespace rangefs::lockmgr
