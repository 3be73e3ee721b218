#include "server/meta/allocator.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "common/status.h"

namespace rangefs::meta {

void Allocator::AddDevice(uint32_t device, uint64_t size) {
  devices_[device].size = size;
}

void Allocator::LoadFree(const PhysExtent& f) {
  devices_[f.device].free[f.physical] = f.length;
  free_bytes_ += f.length;
}

void Allocator::Insert(Device& d, uint32_t id, uint64_t start,
                       uint64_t length) {
  d.free[start] = length;
  changed_.insert({id, start});
}

void Allocator::Erase(Device& d, uint32_t id, uint64_t start) {
  d.free.erase(start);
  changed_.insert({id, start});
}

void Allocator::TakeFrom(uint32_t id, uint64_t goal, uint64_t* want,
                         std::vector<PhysExtent>* out) {
  Device& d = devices_[id];
  while (*want > 0 && !d.free.empty()) {
    // The free extent containing the goal, else the first after it, else
    // the first on the device.
    auto it = d.free.upper_bound(goal);
    if (it != d.free.begin()) {
      auto prev = std::prev(it);
      if (prev->first + prev->second > goal) it = prev;
    }
    if (it == d.free.end()) it = d.free.begin();
    uint64_t start = it->first, length = it->second;
    uint64_t from = (goal > start && goal < start + length) ? goal : start;
    uint64_t take = std::min(*want, start + length - from);
    Erase(d, id, start);
    if (from > start) Insert(d, id, start, from - start);
    if (from + take < start + length) {
      Insert(d, id, from + take, start + length - (from + take));
    }
    if (!out->empty() && out->back().device == id &&
        out->back().physical + out->back().length == from) {
      out->back().length += take;
    } else {
      out->push_back(PhysExtent{id, from, take});
    }
    free_bytes_ -= take;
    *want -= take;
    goal = from + take;
  }
}

absl::StatusOr<std::vector<PhysExtent>> Allocator::Allocate(
    uint64_t length, uint32_t goal_device, uint64_t goal_physical) {
  if (length == 0 || length % kBlockSize != 0) {
    return MakeError(Errc::kInvalidArgument,
                     absl::StrCat("allocation of ", length, " bytes"));
  }
  if (length > free_bytes_) {
    return MakeError(Errc::kNoSpace, absl::StrCat("need ", length, " bytes, ",
                                                  free_bytes_, " free"));
  }
  if (devices_.count(goal_device) == 0) {
    goal_device = devices_.begin()->first;
    goal_physical = 0;
  }
  std::vector<PhysExtent> out;
  uint64_t want = length;
  TakeFrom(goal_device, goal_physical, &want, &out);
  for (auto& [id, d] : devices_) {
    if (want == 0) break;
    if (id != goal_device) TakeFrom(id, 0, &want, &out);
  }
  return out;
}

absl::Status Allocator::Free(const PhysExtent& space) {
  auto dit = devices_.find(space.device);
  if (dit == devices_.end() || space.length == 0 ||
      space.physical > dit->second.size ||
      space.length > dit->second.size - space.physical) {
    return MakeError(
        Errc::kInternal,
        absl::StrCat("free of [", space.physical, ", +", space.length,
                     ") outside device ", space.device));
  }
  Device& d = dit->second;
  uint64_t start = space.physical, end = space.physical + space.length;
  auto next = d.free.lower_bound(start);
  if (next != d.free.end() && next->first < end) {
    return MakeError(Errc::kInternal, "double free");
  }
  if (next != d.free.begin()) {
    auto prev = std::prev(next);
    if (prev->first + prev->second > start) {
      return MakeError(Errc::kInternal, "double free");
    }
  }
  // Merge with neighbours that touch.
  if (next != d.free.end() && next->first == end) {
    end += next->second;
    Erase(d, space.device, next->first);
  }
  auto prev = d.free.lower_bound(start);
  if (prev != d.free.begin()) {
    --prev;
    if (prev->first + prev->second == start) {
      start = prev->first;
      Erase(d, space.device, prev->first);
    }
  }
  Insert(d, space.device, start, end - start);
  free_bytes_ += space.length;
  return absl::OkStatus();
}

std::vector<std::pair<std::pair<uint32_t, uint64_t>, uint64_t>>
Allocator::TakeChanges() {
  std::vector<std::pair<std::pair<uint32_t, uint64_t>, uint64_t>> out;
  for (const auto& key : changed_) {
    const auto& free = devices_[key.first].free;
    auto it = free.find(key.second);
    out.push_back({key, it == free.end() ? 0 : it->second});
  }
  changed_.clear();
  return out;
}

uint64_t Allocator::total_bytes() const {
  uint64_t t = 0;
  for (const auto& [id, d] : devices_) t += d.size;
  return t;
}

std::vector<uint32_t> Allocator::devices() const {
  std::vector<uint32_t> ids;
  for (const auto& [id, d] : devices_) ids.push_back(id);
  return ids;
}

const std::map<uint64_t, uint64_t>& Allocator::free_map(uint32_t device) const {
  static const std::map<uint64_t, uint64_t> kEmpty;
  auto it = devices_.find(device);
  return it == devices_.end() ? kEmpty : it->second.free;
}

}  // namespace rangefs::meta
