#include "server/meta/extent_set.h"

#include <algorithm>

#include "common/coding.h"

namespace rangefs::meta {

absl::StatusOr<ExtentSet> ExtentSet::Load(MetaStore* store,
                                          const ReadView* view, uint64_t ino,
                                          uint64_t start, uint64_t end) {
  ExtentSet set(start, end);
  absl::Status status;
  auto add = [&](absl::string_view key, absl::string_view value) {
    absl::StatusOr<Extent> e = DecodeExtent(LoadBE64(key.data() + 8), value);
    if (!e.ok()) {
      status = e.status();
      return false;
    }
    if (e->end() > start && e->offset < end) set.original_[e->offset] = *e;
    return true;
  };
  // An extent starting before `start` may reach into the window.
  auto prev = store->SeekForPrev(Cf::kExtents, ExtentPrefix(ino),
                                 ExtentKey(ino, start), view);
  if (!prev.ok()) return prev.status();
  if (*prev && (*prev)->first.size() == 16)
    add((*prev)->first, (*prev)->second);
  if (!status.ok()) return status;
  std::string to =
      end == kInfinity ? ExtentKey(ino + 1, 0) : ExtentKey(ino, end);
  absl::Status s =
      store->Scan(Cf::kExtents, ExtentKey(ino, start), to, add, view);
  if (!s.ok()) return s;
  if (!status.ok()) return status;
  set.current_ = set.original_;
  return set;
}

std::vector<ByteRange> ExtentSet::Holes(uint64_t start, uint64_t end) const {
  std::vector<ByteRange> holes;
  uint64_t pos = start;
  for (const Extent& e : Mappings(start, end)) {
    if (e.state == ExtentState::kHole) holes.push_back({e.offset, e.end()});
    pos = e.end();
  }
  (void)pos;
  return holes;
}

std::vector<Extent> ExtentSet::Mappings(uint64_t start, uint64_t end) const {
  std::vector<Extent> out;
  uint64_t pos = start;
  auto it = current_.upper_bound(start);
  if (it != current_.begin()) --it;
  for (; it != current_.end() && it->second.offset < end; ++it) {
    const Extent& e = it->second;
    if (e.end() <= pos) continue;
    if (e.offset > pos) {
      Extent hole;
      hole.offset = pos;
      hole.length = e.offset - pos;
      out.push_back(hole);
      pos = e.offset;
    }
    Extent piece = e;
    uint64_t s = std::max(e.offset, pos), t = std::min(e.end(), end);
    piece.physical = e.physical + (s - e.offset);
    piece.offset = s;
    piece.length = t - s;
    out.push_back(piece);
    pos = t;
  }
  if (pos < end) {
    Extent hole;
    hole.offset = pos;
    hole.length = end - pos;
    out.push_back(hole);
  }
  return out;
}

uint64_t ExtentSet::MaxGen(uint64_t start, uint64_t end) const {
  uint64_t g = 0;
  for (const Extent& e : Mappings(start, end)) g = std::max(g, e.gen);
  return g;
}

void ExtentSet::SplitAt(uint64_t at) {
  auto it = current_.upper_bound(at);
  if (it == current_.begin()) return;
  --it;
  Extent& e = it->second;
  if (e.offset >= at || e.end() <= at) return;
  Extent right = e;
  right.offset = at;
  right.length = e.end() - at;
  right.physical = e.physical + (at - e.offset);
  e.length = at - e.offset;
  current_[at] = right;
}

std::vector<PhysExtent> ExtentSet::Cut(uint64_t start, uint64_t end) {
  SplitAt(start);
  SplitAt(end);
  std::vector<PhysExtent> freed;
  for (auto it = current_.lower_bound(start);
       it != current_.end() && it->first < end;) {
    const Extent& e = it->second;
    if (!freed.empty() && freed.back().device == e.device &&
        freed.back().physical + freed.back().length == e.physical) {
      freed.back().length += e.length;
    } else {
      freed.push_back(PhysExtent{e.device, e.physical, e.length});
    }
    it = current_.erase(it);
  }
  return freed;
}

bool ExtentSet::SetState(uint64_t start, uint64_t end, ExtentState state,
                         uint64_t gen) {
  SplitAt(start);
  SplitAt(end);
  bool changed = false;
  for (auto it = current_.lower_bound(start);
       it != current_.end() && it->first < end; ++it) {
    if (it->second.state != state) {
      it->second.state = state;
      it->second.gen = gen;
      changed = true;
    }
  }
  Compact();
  return changed;
}

void ExtentSet::Compact() {
  auto it = current_.begin();
  while (it != current_.end()) {
    auto next = std::next(it);
    if (next == current_.end()) break;
    Extent& a = it->second;
    const Extent& b = next->second;
    if (a.end() == b.offset && a.device == b.device &&
        a.physical + a.length == b.physical && a.state == b.state &&
        a.gen == b.gen) {
      a.length += b.length;
      current_.erase(next);
    } else {
      it = next;
    }
  }
}

void ExtentSet::Add(const Extent& e) { current_[e.offset] = e; }

void ExtentSet::ShiftDown(uint64_t from, uint64_t delta, uint64_t gen) {
  std::map<uint64_t, Extent> out;
  for (auto& [off, e] : current_) {
    Extent x = e;
    if (off >= from) {
      x.offset -= delta;
      x.gen = gen;
    }
    out[x.offset] = x;
  }
  current_ = std::move(out);
}

void ExtentSet::ShiftUp(uint64_t from, uint64_t delta, uint64_t gen) {
  SplitAt(from);
  std::map<uint64_t, Extent> out;
  for (auto& [off, e] : current_) {
    Extent x = e;
    if (off >= from) {
      x.offset += delta;
      x.gen = gen;
    }
    out[x.offset] = x;
  }
  current_ = std::move(out);
}

uint64_t ExtentSet::MappedBytes() const {
  uint64_t n = 0;
  for (const auto& [off, e] : current_) n += e.length;
  return n;
}

void ExtentSet::WriteTo(uint64_t ino, Batch* batch) const {
  for (const auto& [off, e] : original_) {
    if (current_.count(off) == 0)
      batch->Delete(Cf::kExtents, ExtentKey(ino, off));
  }
  for (const auto& [off, e] : current_) {
    auto it = original_.find(off);
    if (it == original_.end() || !(it->second == e)) {
      batch->Put(Cf::kExtents, ExtentKey(ino, off), EncodeExtent(e));
    }
  }
}

}  // namespace rangefs::meta
