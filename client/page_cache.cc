#include "client/page_cache.h"

#include <algorithm>
#include <cstring>

namespace rangefs::client {

PageCache::PageCache(uint64_t capacity_bytes)
    : capacity_pages_(std::max<uint64_t>(capacity_bytes / kPageSize, 1)) {}

void PageCache::Touch(uint64_t, uint64_t, Page& p) { p.referenced = true; }

void PageCache::SetDirty(uint64_t ino, uint64_t index, Page& p, bool dirty) {
  if (dirty) p.seq = next_seq_++;
  if (p.dirty == dirty) return;
  if (dirty) {
    lru_.erase(p.lru);
    ++dirty_;
    ++dirty_by_inode_[ino];
  } else {
    p.lru = lru_.insert(lru_.end(), {ino, index});
    --dirty_;
    if (--dirty_by_inode_[ino] == 0) dirty_by_inode_.erase(ino);
  }
  p.dirty = dirty;
}

PageCache::PageMap::iterator PageCache::EraseLocked(uint64_t ino,
                                                    PageMap& pages,
                                                    PageMap::iterator it) {
  if (it->second.dirty) {
    --dirty_;
    if (--dirty_by_inode_[ino] == 0) dirty_by_inode_.erase(ino);
  } else {
    lru_.erase(it->second.lru);
  }
  --pages_;
  return pages.erase(it);
}

void PageCache::EvictLocked() {
  while (pages_ > capacity_pages_ && !lru_.empty()) {
    auto [ino, index] = lru_.front();
    PageMap& pages = inodes_[ino];
    auto it = pages.find(index);
    if (it->second.referenced) {
      it->second.referenced = false;
      lru_.splice(lru_.end(), lru_, it->second.lru);
      continue;
    }
    EraseLocked(ino, pages, it);
    if (pages.empty()) inodes_.erase(ino);
    ++stats_.evictions;
  }
}

bool PageCache::Read(uint64_t ino, uint64_t index, char* out) {
  absl::MutexLock lock(&mu_);
  auto iit = inodes_.find(ino);
  if (iit != inodes_.end()) {
    auto pit = iit->second.find(index);
    if (pit != iit->second.end()) {
      memcpy(out, pit->second.data.data(), kPageSize);
      Touch(ino, index, pit->second);
      ++stats_.hits;
      return true;
    }
  }
  ++stats_.misses;
  return false;
}

PageCache::CopyResult PageCache::CopyOut(uint64_t ino, uint64_t offset,
                                         uint64_t length, char* out,
                                         CopyFn copy) {
  CopyResult r;
  absl::MutexLock lock(&mu_);
  auto iit = inodes_.find(ino);
  if (iit == inodes_.end()) {
    ++stats_.misses;
    return r;
  }
  PageMap& pages = iit->second;
  auto pit = pages.find(offset / kPageSize);
  while (r.copied < length) {
    const uint64_t pos = offset + r.copied;
    const uint64_t index = pos / kPageSize;
    if (pit == pages.end() || pit->first != index) {
      ++stats_.misses;
      return r;
    }
    const uint64_t in_page = pos % kPageSize;
    const uint64_t n = std::min(kPageSize - in_page, length - r.copied);
    size_t c = copy(out + r.copied, pit->second.data.data() + in_page, n);
    Touch(ino, index, pit->second);
    ++stats_.hits;
    r.copied += c;
    if (c < n) {
      r.short_copy = true;
      return r;
    }
    ++pit;
  }
  return r;
}

std::vector<std::pair<uint64_t, uint64_t>> PageCache::MissingRuns(uint64_t ino,
                                                                  uint64_t from,
                                                                  uint64_t to) {
  std::vector<std::pair<uint64_t, uint64_t>> runs;
  absl::MutexLock lock(&mu_);
  auto iit = inodes_.find(ino);
  if (iit == inodes_.end()) {
    if (from < to) runs.push_back({from, to});
    return runs;
  }
  const PageMap& pages = iit->second;
  uint64_t pos = from;
  for (auto it = pages.lower_bound(from); it != pages.end() && it->first < to;
       ++it) {
    if (it->first > pos) runs.push_back({pos, it->first});
    pos = it->first + 1;
  }
  if (pos < to) runs.push_back({pos, to});
  return runs;
}

bool PageCache::Contains(uint64_t ino, uint64_t index) {
  absl::MutexLock lock(&mu_);
  auto iit = inodes_.find(ino);
  return iit != inodes_.end() && iit->second.count(index) != 0;
}

void PageCache::Insert(uint64_t ino, uint64_t index, const char* page,
                       bool dirty) {
  absl::MutexLock lock(&mu_);
  PageMap& pages = inodes_[ino];
  auto [it, fresh] = pages.try_emplace(index);
  Page& p = it->second;
  if (fresh) {
    p.data.resize(kPageSize);
    p.lru = lru_.insert(lru_.end(), {ino, index});
    ++pages_;
  } else {
    Touch(ino, index, p);
  }
  memcpy(p.data.data(), page, kPageSize);
  SetDirty(ino, index, p, dirty);
  EvictLocked();
}

bool PageCache::InsertClean(uint64_t ino, uint64_t index, const char* page) {
  absl::MutexLock lock(&mu_);
  PageMap& pages = inodes_[ino];
  auto [it, fresh] = pages.try_emplace(index);
  if (!fresh) return false;
  Page& p = it->second;
  p.data.assign(page, page + kPageSize);
  p.lru = lru_.insert(lru_.end(), {ino, index});
  ++pages_;
  EvictLocked();
  return true;
}

bool PageCache::Write(uint64_t ino, uint64_t index, uint64_t offset,
                      const char* data, uint64_t length) {
  if (offset > kPageSize || length > kPageSize - offset) return false;
  absl::MutexLock lock(&mu_);
  auto iit = inodes_.find(ino);
  if (iit == inodes_.end()) return false;
  auto pit = iit->second.find(index);
  if (pit == iit->second.end()) return false;
  memcpy(pit->second.data.data() + offset, data, length);
  SetDirty(ino, index, pit->second, true);
  return true;
}

std::vector<DirtyPage> PageCache::TakeDirty(uint64_t ino,
                                            const ByteRange& range) {
  absl::MutexLock lock(&mu_);
  std::vector<DirtyPage> out;
  auto iit = inodes_.find(ino);
  if (iit == inodes_.end() || !range.Valid()) return out;
  uint64_t first = range.start / kPageSize;
  uint64_t last = (range.end - 1) / kPageSize;  // Inclusive.
  for (auto it = iit->second.lower_bound(first);
       it != iit->second.end() && it->first <= last; ++it) {
    if (!it->second.dirty) continue;
    out.push_back(DirtyPage{it->first, it->second.seq, it->second.data});
  }
  return out;
}

void PageCache::MarkClean(uint64_t ino, uint64_t index, uint64_t seq) {
  absl::MutexLock lock(&mu_);
  auto iit = inodes_.find(ino);
  if (iit == inodes_.end()) return;
  auto pit = iit->second.find(index);
  if (pit == iit->second.end() || !pit->second.dirty ||
      pit->second.seq != seq) {
    return;  // Gone, already clean, or dirtied again since.
  }
  SetDirty(ino, index, pit->second, false);
  EvictLocked();
}

uint64_t PageCache::Drop(uint64_t ino, const ByteRange& range) {
  absl::MutexLock lock(&mu_);
  auto iit = inodes_.find(ino);
  if (iit == inodes_.end() || !range.Valid()) return 0;
  uint64_t first = range.start / kPageSize;
  uint64_t last = (range.end - 1) / kPageSize;
  uint64_t dirty = 0;
  PageMap& pages = iit->second;
  for (auto it = pages.lower_bound(first);
       it != pages.end() && it->first <= last;) {
    dirty += it->second.dirty;
    it = EraseLocked(ino, pages, it);
  }
  if (pages.empty()) inodes_.erase(iit);
  return dirty;
}

void PageCache::ZeroTail(uint64_t ino, uint64_t index, uint64_t offset) {
  if (offset >= kPageSize) return;
  absl::MutexLock lock(&mu_);
  auto iit = inodes_.find(ino);
  if (iit == inodes_.end()) return;
  auto pit = iit->second.find(index);
  if (pit == iit->second.end()) return;
  memset(pit->second.data.data() + offset, 0, kPageSize - offset);
}

std::vector<uint64_t> PageCache::DirtyInodes() {
  absl::MutexLock lock(&mu_);
  std::vector<uint64_t> out;
  for (const auto& [ino, n] : dirty_by_inode_) out.push_back(ino);
  return out;
}

bool PageCache::HasDirty(uint64_t ino) {
  absl::MutexLock lock(&mu_);
  return dirty_by_inode_.count(ino) != 0;
}

uint64_t PageCache::dirty_bytes() {
  absl::MutexLock lock(&mu_);
  return dirty_ * kPageSize;
}

PageCacheStats PageCache::Stats() {
  absl::MutexLock lock(&mu_);
  PageCacheStats s = stats_;
  s.pages = pages_;
  s.dirty_pages = dirty_;
  s.capacity_pages = capacity_pages_;
  return s;
}

}  // namespace rangefs::client
