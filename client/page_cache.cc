#include "client/page_cache.h"

#include <sys/mman.h>

#include <algorithm>
#include <cstring>
#include <new>
#include <utility>

namespace rangefs::client {

namespace {
constexpr size_t kSlabBytes = 2u << 20;
}  // namespace

PageCache::Frames::~Frames() {
  for (char* slab : slabs_) munmap(slab, kSlabBytes);
}

char* PageCache::Frames::Take() {
  if (free_.empty()) {
    // Twice the size, trimmed to an aligned slab (where the kernel gives
    // transparent huge pages to all memory, one backs it). No
    // MADV_HUGEPAGE: under the default defrag policy its faults compact
    // memory synchronously, slower than the small pages they save.
    void* m = mmap(nullptr, 2 * kSlabBytes, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) throw std::bad_alloc();
    char* base = static_cast<char*>(m);
    char* slab = reinterpret_cast<char*>(
        (reinterpret_cast<uintptr_t>(base) + kSlabBytes - 1) &
        ~(uintptr_t{kSlabBytes} - 1));
    if (slab > base) munmap(base, slab - base);
    if (slab + kSlabBytes < base + 2 * kSlabBytes) {
      munmap(slab + kSlabBytes, base + 2 * kSlabBytes - (slab + kSlabBytes));
    }
    slabs_.push_back(slab);
    for (size_t off = kSlabBytes; off > 0; off -= kPageSize) {
      free_.push_back(slab + off - kPageSize);
    }
  }
  char* frame = free_.back();
  free_.pop_back();
  return frame;
}

DirtyPages::~DirtyPages() { Release(); }

DirtyPages::DirtyPages(DirtyPages&& o) noexcept
    : pages(std::move(o.pages)),
      cache_(std::exchange(o.cache_, nullptr)),
      frames_(std::move(o.frames_)) {}

DirtyPages& DirtyPages::operator=(DirtyPages&& o) noexcept {
  if (this != &o) {
    Release();
    pages = std::move(o.pages);
    cache_ = std::exchange(o.cache_, nullptr);
    frames_ = std::move(o.frames_);
  }
  return *this;
}

void DirtyPages::Release() {
  if (cache_ != nullptr && !frames_.empty()) cache_->Unpin(frames_);
  cache_ = nullptr;
  frames_.clear();
}

void PageCache::ReleaseFrame(char* frame) {
  if (!pins_.empty() && pins_.count(frame) != 0) {
    doomed_.insert(frame);
  } else {
    frames_.Give(frame);
  }
}

void PageCache::Unpin(const std::vector<char*>& frames) {
  absl::MutexLock lock(&mu_);
  for (char* f : frames) {
    auto it = pins_.find(f);
    if (it == pins_.end() || --it->second > 0) continue;
    pins_.erase(it);
    if (doomed_.erase(f) != 0) frames_.Give(f);
  }
}

PageCache::PageCache(uint64_t capacity_bytes)
    : capacity_pages_(std::max<uint64_t>(capacity_bytes / kPageSize, 1)) {}

PageCache::Page* PageCache::Find(InodePages& pages, uint64_t index) {
  auto cit = pages.chunks.find(index / kChunkPages);
  if (cit == pages.chunks.end()) return nullptr;
  return cit->second->slot[index % kChunkPages].get();
}

std::unique_ptr<PageCache::Page> PageCache::NewPage() {
  if (spare_pages_.empty()) return std::make_unique<Page>();
  std::unique_ptr<Page> p = std::move(spare_pages_.back());
  spare_pages_.pop_back();
  *p = Page();
  return p;
}

PageCache::LruList::iterator PageCache::LruAdd(uint64_t ino, uint64_t index) {
  if (spare_lru_.empty()) return lru_.insert(lru_.end(), {ino, index});
  auto it = spare_lru_.begin();
  *it = {ino, index};
  lru_.splice(lru_.end(), spare_lru_, it);
  return it;
}

void PageCache::LruRemove(LruList::iterator it) {
  spare_lru_.splice(spare_lru_.end(), lru_, it);
}

PageCache::Page& PageCache::Emplace(uint64_t ino, InodePages& pages,
                                    uint64_t index, bool* fresh, char* frame) {
  std::unique_ptr<Chunk>& chunk = pages.chunks[index / kChunkPages];
  if (chunk == nullptr) chunk = std::make_unique<Chunk>();
  std::unique_ptr<Page>& slot = chunk->slot[index % kChunkPages];
  *fresh = slot == nullptr;
  if (*fresh) {
    // Not value-initialised: the caller fills the data.
    if (frame == nullptr) frame = frames_.Take();  // First: it may throw.
    slot = NewPage();
    slot->data = frame;
    slot->lru = LruAdd(ino, index);
    chunk->present |= 1ull << (index % kChunkPages);
    ++pages.count;
    ++pages_;
  }
  return *slot;
}

template <typename Fn>
void PageCache::ForEach(InodePages& pages, uint64_t first, uint64_t last,
                        Fn fn) {
  for (auto cit = pages.chunks.lower_bound(first / kChunkPages);
       cit != pages.chunks.end() && cit->first <= last / kChunkPages; ++cit) {
    const uint64_t base = cit->first * kChunkPages;
    uint64_t bits = cit->second->present;
    while (bits != 0) {
      const int i = __builtin_ctzll(bits);
      bits &= bits - 1;
      const uint64_t index = base + i;
      if (index < first) continue;
      if (index > last) return;
      fn(index, *cit->second->slot[i]);
    }
  }
}

void PageCache::SetDirty(uint64_t ino, uint64_t index, Page& p, bool dirty) {
  if (dirty) p.seq = next_seq_++;
  if (p.dirty == dirty) return;
  if (dirty) {
    LruRemove(p.lru);
    ++dirty_;
    ++dirty_by_inode_[ino];
  } else {
    p.lru = LruAdd(ino, index);
    --dirty_;
    if (--dirty_by_inode_[ino] == 0) dirty_by_inode_.erase(ino);
  }
  p.dirty = dirty;
}

void PageCache::EraseLocked(uint64_t ino, InodePages& pages, uint64_t index,
                            char** frame) {
  auto cit = pages.chunks.find(index / kChunkPages);
  std::unique_ptr<Page>& slot = cit->second->slot[index % kChunkPages];
  if (slot->dirty) {
    --dirty_;
    if (--dirty_by_inode_[ino] == 0) dirty_by_inode_.erase(ino);
  } else {
    LruRemove(slot->lru);
  }
  if (frame != nullptr) {
    *frame = slot->data;
  } else {
    ReleaseFrame(slot->data);
  }
  spare_pages_.push_back(std::move(slot));
  cit->second->present &= ~(1ull << (index % kChunkPages));
  if (cit->second->present == 0) pages.chunks.erase(cit);
  --pages.count;
  --pages_;
}

void PageCache::EvictLocked() {
  while (pages_ > capacity_pages_ && !lru_.empty()) {
    auto [ino, index] = lru_.front();
    InodePages& pages = inodes_[ino];
    Page* p = Find(pages, index);
    if (p->referenced) {
      p->referenced = false;
      lru_.splice(lru_.end(), lru_, p->lru);
      continue;
    }
    EraseLocked(ino, pages, index);
    if (pages.count == 0) inodes_.erase(ino);
    ++stats_.evictions;
  }
}

uint64_t PageCache::DropClean() {
  absl::MutexLock lock(&mu_);
  uint64_t dropped = 0;
  while (!lru_.empty()) {
    auto [ino, index] = lru_.front();
    auto iit = inodes_.find(ino);
    EraseLocked(ino, iit->second, index);
    if (iit->second.count == 0) inodes_.erase(iit);
    ++dropped;
  }
  return dropped;
}

uint64_t PageCache::DropClean(uint64_t ino) {
  absl::MutexLock lock(&mu_);
  auto iit = inodes_.find(ino);
  if (iit == inodes_.end()) return 0;
  std::vector<uint64_t> clean;
  ForEach(iit->second, 0, ~uint64_t{0}, [&](uint64_t index, Page& p) {
    if (!p.dirty) clean.push_back(index);
  });
  for (uint64_t index : clean) EraseLocked(ino, iit->second, index);
  if (iit->second.count == 0) inodes_.erase(iit);
  return clean.size();
}

bool PageCache::Read(uint64_t ino, uint64_t index, char* out) {
  absl::MutexLock lock(&mu_);
  auto iit = inodes_.find(ino);
  if (iit != inodes_.end()) {
    if (Page* p = Find(iit->second, index)) {
      memcpy(out, p->data, kPageSize);
      Touch(*p);
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
  auto& chunks = iit->second.chunks;
  auto cit = chunks.end();
  // Pages whose frames lie side by side are copied in one call: `span`
  // bytes from `from`, not copied yet, end at `queued`.
  const char* from = nullptr;
  uint64_t span = 0;
  auto flush = [&]() {
    if (span == 0) return true;
    size_t c = copy(out + r.copied, from, span);
    r.copied += c;
    const bool whole = c == span;
    span = 0;
    if (!whole) r.short_copy = true;
    return whole;
  };
  for (uint64_t queued = 0; queued < length;) {
    const uint64_t pos = offset + queued;
    const uint64_t index = pos / kPageSize;
    if (cit == chunks.end() || cit->first != index / kChunkPages) {
      cit = chunks.find(index / kChunkPages);
    }
    Page* p = cit == chunks.end()
                  ? nullptr
                  : cit->second->slot[index % kChunkPages].get();
    if (p == nullptr) {
      ++stats_.misses;
      flush();
      return r;
    }
    const uint64_t in_page = pos % kPageSize;
    const uint64_t n = std::min(kPageSize - in_page, length - queued);
    const char* src = p->data + in_page;
    if (span > 0 && from + span != src && !flush()) return r;
    if (span == 0) from = src;
    span += n;
    queued += n;
    Touch(*p);
    ++stats_.hits;
  }
  flush();
  return r;
}

std::vector<std::pair<uint64_t, uint64_t>> PageCache::MissingRuns(uint64_t ino,
                                                                  uint64_t from,
                                                                  uint64_t to) {
  std::vector<std::pair<uint64_t, uint64_t>> runs;
  if (from >= to) return runs;
  absl::MutexLock lock(&mu_);
  auto iit = inodes_.find(ino);
  if (iit == inodes_.end()) {
    runs.push_back({from, to});
    return runs;
  }
  uint64_t pos = from;  // First index not yet known to be cached.
  ForEach(iit->second, from, to - 1, [&](uint64_t index, Page&) {
    if (index > pos) runs.push_back({pos, index});
    pos = index + 1;
  });
  if (pos < to) runs.push_back({pos, to});
  return runs;
}

bool PageCache::Contains(uint64_t ino, uint64_t index) {
  absl::MutexLock lock(&mu_);
  auto iit = inodes_.find(ino);
  return iit != inodes_.end() && Find(iit->second, index) != nullptr;
}

void PageCache::Insert(uint64_t ino, uint64_t index, const char* page,
                       bool dirty) {
  absl::MutexLock lock(&mu_);
  bool fresh = false;
  Page& p = Emplace(ino, inodes_[ino], index, &fresh);
  if (!fresh) Touch(p);
  memcpy(p.data, page, kPageSize);
  SetDirty(ino, index, p, dirty);
  EvictLocked();
}

std::vector<char*> PageCache::TakeFrames(size_t n) {
  std::vector<char*> frames(n);
  absl::MutexLock lock(&mu_);
  for (char*& f : frames) f = frames_.Take();
  return frames;
}

void PageCache::GiveFrames(char* const* frames, size_t n) {
  absl::MutexLock lock(&mu_);
  for (size_t i = 0; i < n; ++i) {
    if (frames[i] != nullptr) ReleaseFrame(frames[i]);
  }
}

std::vector<char*> PageCache::TakeCleanRun(uint64_t ino, uint64_t first,
                                           uint64_t end) {
  std::vector<char*> frames;
  absl::MutexLock lock(&mu_);
  auto iit = inodes_.find(ino);
  if (iit == inodes_.end()) return frames;
  for (uint64_t index = first; index < end; ++index) {
    Page* p = Find(iit->second, index);
    if (p == nullptr || p->dirty) break;
    char* frame = nullptr;
    EraseLocked(ino, iit->second, index, &frame);
    frames.push_back(frame);
    ++stats_.hits;
  }
  if (iit->second.count == 0) inodes_.erase(iit);
  return frames;
}

void PageCache::AdoptDirtyRun(uint64_t ino, uint64_t first, uint64_t n,
                              char* const* frames) {
  absl::MutexLock lock(&mu_);
  InodePages& inode = inodes_[ino];
  for (uint64_t i = 0; i < n; ++i) {
    bool fresh = false;
    Page& p = Emplace(ino, inode, first + i, &fresh, frames[i]);
    if (!fresh) {
      memcpy(p.data, frames[i], kPageSize);
      Touch(p);
      ReleaseFrame(frames[i]);
    }
    SetDirty(ino, first + i, p, true);
  }
  EvictLocked();
}

uint64_t PageCache::AdoptCleanRun(uint64_t ino, uint64_t first, uint64_t n,
                                  char* const* frames) {
  absl::MutexLock lock(&mu_);
  InodePages& inode = inodes_[ino];
  uint64_t inserted = 0;
  for (uint64_t i = 0; i < n; ++i) {
    if (Find(inode, first + i) != nullptr) {
      ReleaseFrame(frames[i]);
      continue;
    }
    bool fresh = false;
    Emplace(ino, inode, first + i, &fresh, frames[i]);
    ++inserted;
  }
  EvictLocked();
  return inserted;
}

bool PageCache::Write(uint64_t ino, uint64_t index, uint64_t offset,
                      const char* data, uint64_t length) {
  if (offset > kPageSize || length > kPageSize - offset) return false;
  absl::MutexLock lock(&mu_);
  auto iit = inodes_.find(ino);
  if (iit == inodes_.end()) return false;
  Page* p = Find(iit->second, index);
  if (p == nullptr) return false;
  memcpy(p->data + offset, data, length);
  SetDirty(ino, index, *p, true);
  return true;
}

DirtyPages PageCache::TakeDirty(uint64_t ino, const ByteRange& range,
                                size_t max_pages) {
  absl::MutexLock lock(&mu_);
  DirtyPages out;
  auto iit = inodes_.find(ino);
  if (iit == inodes_.end() || !range.Valid() || max_pages == 0) return out;
  auto dit = dirty_by_inode_.find(ino);
  const size_t most = std::min<size_t>(
      max_pages, dit == dirty_by_inode_.end() ? 0 : dit->second);
  out.pages.reserve(most);
  out.frames_.reserve(most);
  ForEach(iit->second, range.start / kPageSize, (range.end - 1) / kPageSize,
          [&](uint64_t index, Page& p) {
            if (!p.dirty || out.pages.size() >= max_pages) return;
            out.pages.push_back(DirtyPage{index, p.seq});
            out.frames_.push_back(p.data);
          });
  for (char* f : out.frames_) ++pins_[f];
  if (!out.frames_.empty()) out.cache_ = this;
  return out;
}

void PageCache::MarkClean(uint64_t ino, const DirtyPage* pages, size_t n,
                          bool drop) {
  absl::MutexLock lock(&mu_);
  auto iit = inodes_.find(ino);
  if (iit == inodes_.end()) return;
  for (size_t k = 0; k < n; ++k) {
    Page* p = Find(iit->second, pages[k].index);
    if (p == nullptr || !p->dirty || p->seq != pages[k].seq) {
      continue;  // Gone, already clean, or dirtied again since.
    }
    SetDirty(ino, pages[k].index, *p, false);
    if (drop) EraseLocked(ino, iit->second, pages[k].index);
  }
  if (iit->second.count == 0) inodes_.erase(iit);
  EvictLocked();
}

uint64_t PageCache::Drop(uint64_t ino, const ByteRange& range) {
  absl::MutexLock lock(&mu_);
  auto iit = inodes_.find(ino);
  if (iit == inodes_.end() || !range.Valid()) return 0;
  std::vector<uint64_t> doomed;
  uint64_t dirty = 0;
  ForEach(iit->second, range.start / kPageSize, (range.end - 1) / kPageSize,
          [&](uint64_t index, Page& p) {
            dirty += p.dirty;
            doomed.push_back(index);
          });
  for (uint64_t index : doomed) EraseLocked(ino, iit->second, index);
  if (iit->second.count == 0) inodes_.erase(iit);
  return dirty;
}

void PageCache::ZeroTail(uint64_t ino, uint64_t index, uint64_t offset) {
  if (offset >= kPageSize) return;
  absl::MutexLock lock(&mu_);
  auto iit = inodes_.find(ino);
  if (iit == inodes_.end()) return;
  if (Page* p = Find(iit->second, index)) {
    memset(p->data + offset, 0, kPageSize - offset);
  }
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

uint64_t PageCache::DirtyPagesOf(uint64_t ino) {
  absl::MutexLock lock(&mu_);
  auto it = dirty_by_inode_.find(ino);
  return it == dirty_by_inode_.end() ? 0 : it->second;
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
