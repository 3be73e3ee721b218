// PageCache: a node's cached file data, 4 KiB pages per inode, with a
// memory cap. Clean pages are evicted least recently used first when the
// cap is reached (approximated by second chance: a hit marks the page, and
// eviction requeues marked pages once); dirty pages stay until written back.
// Pure memory: it does not know about locks or servers. The I/O paths (and the
// INVAL lock hooks) decide when pages may exist: clean pages only under the
// node's INVAL SH or EX, dirty pages only under EX (DESIGN.md).
//
// Writeback is race-free through dirty sequence numbers: TakeDirty()
// returns copies of the dirty pages with the sequence each had, and
// MarkClean() cleans a page only if it was not dirtied again meanwhile.
//
// Thread-safe: one mutex guards the maps; page contents are copied in and
// out under it (4 KiB copies), so callers never hold references into it.
#ifndef RANGEFS_CLIENT_PAGE_CACHE_H_
#define RANGEFS_CLIENT_PAGE_CACHE_H_

#include <cstdint>
#include <list>
#include <memory>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/btree_map.h"
#include "absl/synchronization/mutex.h"
#include "common/range.h"

namespace rangefs::client {

inline constexpr uint64_t kPageSize = 4096;

struct DirtyPage {
  uint64_t index = 0;  // Page number: file offset / kPageSize.
  uint64_t seq = 0;    // Dirty sequence, for MarkClean.
};

class PageCache;

// Dirty pages taken for write-back, in page order: their own frames, no
// copy. The frames are pinned while this lives: a page dropped meanwhile
// (or cleaned and dropped) keeps its frame until the pin goes, so a send
// in flight never reads a frame that holds another page by then. The bytes
// may change under the send (a write into the page): that write moved the
// page's sequence, and MarkClean leaves it dirty for the next write-back.
class DirtyPages {
 public:
  DirtyPages() = default;
  ~DirtyPages();
  DirtyPages(DirtyPages&& o) noexcept;
  DirtyPages& operator=(DirtyPages&& o) noexcept;
  DirtyPages(const DirtyPages&) = delete;
  DirtyPages& operator=(const DirtyPages&) = delete;

  std::vector<DirtyPage> pages;
  size_t size() const { return pages.size(); }
  bool empty() const { return pages.empty(); }
  const DirtyPage& operator[](size_t k) const { return pages[k]; }
  const char* Data(size_t k) const { return frames_[k]; }
  // Frames of pages [k, k + n): the layout ReadMapped / WriteBlocks take.
  char* const* Frames(size_t k) const { return frames_.data() + k; }

 private:
  friend class PageCache;
  void Release();
  PageCache* cache_ = nullptr;
  std::vector<char*> frames_;
};

struct PageCacheStats {
  uint64_t pages = 0;
  uint64_t dirty_pages = 0;
  uint64_t hits = 0;
  uint64_t misses = 0;
  uint64_t evictions = 0;
  uint64_t capacity_pages = 0;
};

class PageCache {
 public:
  explicit PageCache(uint64_t capacity_bytes);
  PageCache(const PageCache&) = delete;
  PageCache& operator=(const PageCache&) = delete;

  // Copies page `index` of `ino` into `out` (kPageSize bytes); false if not
  // cached.
  bool Read(uint64_t ino, uint64_t index, char* out);
  // Caches a whole page (e.g. filled from the servers), clean or dirty.
  // Replaces what was there. Evicts clean pages beyond the cap.
  void Insert(uint64_t ino, uint64_t index, const char* page, bool dirty);
  // A fill without a copy: TakeFrames hands out `n` page frames (contents
  // undefined, not cached, not counted against the cap), the caller
  // receives data straight into them outside the cache's lock, then
  // AdoptCleanRun caches frames[i] as clean page first + i unless that page
  // is already cached (a fill must never overwrite newer data). Every frame
  // passed to AdoptCleanRun is the cache's again afterwards, kept or not;
  // frames that never get filled go back through GiveFrames (null entries
  // skipped). AdoptCleanRun returns how many pages it inserted.
  std::vector<char*> TakeFrames(size_t n);
  // The other way: takes the clean cached pages first, first + 1, ... out
  // of the cache, up to `end` or the first page that is missing or dirty,
  // and hands their frames over (for a cache above that keeps the data
  // itself: drop-behind). Give them back with GiveFrames.
  std::vector<char*> TakeCleanRun(uint64_t ino, uint64_t first, uint64_t end);
  void GiveFrames(char* const* frames, size_t n);
  uint64_t AdoptCleanRun(uint64_t ino, uint64_t first, uint64_t n,
                         char* const* frames);
  // The same for whole pages a write filled: frames[i] becomes dirty page
  // first + i, or, where that page is cached, its bytes are copied into it
  // (which is marked dirty) and the frame goes back.
  void AdoptDirtyRun(uint64_t ino, uint64_t first, uint64_t n,
                     char* const* frames);
  // Copies `length` bytes into the cached page at `offset` and marks it
  // dirty; false (changing nothing) if the page is not cached.
  bool Write(uint64_t ino, uint64_t index, uint64_t offset, const char* data,
             uint64_t length);
  bool Contains(uint64_t ino, uint64_t index);

  // Copies bytes [offset, offset + length) of `ino` out of cached pages
  // with `copy` under one lock acquisition (the copy must never block: the
  // I/O paths pass their faults-disabled user copy). Stops at the first
  // page that is not cached, or where `copy` stopped short.
  using CopyFn = size_t (*)(void* dst, const void* src, size_t n);
  struct CopyResult {
    uint64_t copied = 0;
    bool short_copy = false;  // `copy` stopped; else a page was missing.
  };
  CopyResult CopyOut(uint64_t ino, uint64_t offset, uint64_t length, char* out,
                     CopyFn copy);
  // The runs [first, end) of page indexes in [from, to) that are not cached.
  std::vector<std::pair<uint64_t, uint64_t>> MissingRuns(uint64_t ino,
                                                         uint64_t from,
                                                         uint64_t to);

  // The dirty pages of `ino` whose bytes overlap `range`, in page order,
  // pinned: the first `max_pages` of them.
  DirtyPages TakeDirty(uint64_t ino, const ByteRange& range,
                       size_t max_pages = SIZE_MAX);
  // Marks written-back pages clean unless dirtied again after TakeDirty
  // (their sequence changed). `drop`: takes them out of the cache instead
  // (a cache above holds them; their frames serve the next pages).
  void MarkClean(uint64_t ino, const DirtyPage* pages, size_t n,
                 bool drop = false);
  void MarkClean(uint64_t ino, uint64_t index, uint64_t seq) {
    DirtyPage p{index, seq};
    MarkClean(ino, &p, 1);
  }
  // Drops every page of `ino` overlapping `range`, dirty ones included;
  // returns how many dirty pages were dropped (data lost unless written).
  uint64_t Drop(uint64_t ino, const ByteRange& range);
  // Drops every clean page (dirty ones stay); their frames serve the next
  // pages. Returns how many went.
  uint64_t DropClean();
  // The same for the clean pages of `ino` alone.
  uint64_t DropClean(uint64_t ino);
  // Zeroes the bytes of page `index` from `offset` to its end, if cached
  // (the tail past a new EOF), without changing its dirty state.
  void ZeroTail(uint64_t ino, uint64_t index, uint64_t offset);

  bool HasDirty(uint64_t ino);
  // How many pages of `ino` are dirty.
  uint64_t DirtyPagesOf(uint64_t ino);
  // Inodes with dirty pages (for background writeback).
  std::vector<uint64_t> DirtyInodes();
  uint64_t dirty_bytes();
  PageCacheStats Stats();

 private:
  using LruList = std::list<std::pair<uint64_t, uint64_t>>;
  struct Page {
    bool dirty = false;
    // Used since it was last queued: eviction gives it a second chance
    // (CLOCK), so a cache hit costs no list operation.
    bool referenced = false;
    uint64_t seq = 0;
    // Position in lru_ when clean (dirty pages are not on the list).
    LruList::iterator lru;
    char* data = nullptr;  // A frame of frames_.
  };
  // Page frames: 4 KiB slices of aligned 2 MiB slabs, reused once freed. A page
  // allocated on its own costs a page fault and a zeroing of fresh memory,
  // dearer than the copy that fills it. Slabs stay until the cache goes: as
  // many as the most pages it ever held needed.
  class Frames {
   public:
    Frames() = default;
    ~Frames();
    Frames(const Frames&) = delete;
    Frames& operator=(const Frames&) = delete;
    char* Take();
    void Give(char* frame) { free_.push_back(frame); }

   private:
    std::vector<char*> free_;
    std::vector<char*> slabs_;
  };
  // An inode's pages in aligned runs of kChunkPages indexes: a sequential
  // copy or scan walks arrays and a bitmap, not one tree node per page.
  static constexpr uint64_t kChunkPages = 64;
  struct Chunk {
    uint64_t present = 0;  // Bit i: slot[i] holds a page.
    std::unique_ptr<Page> slot[kChunkPages];
  };
  struct InodePages {
    absl::btree_map<uint64_t, std::unique_ptr<Chunk>> chunks;  // By index/64.
    uint64_t count = 0;
  };

  // The page, or null.
  static Page* Find(InodePages& pages, uint64_t index);
  // The page at `index`, created (clean, on the LRU, its data undefined)
  // if absent, in `frame` if given (else a frame of frames_; an unused
  // `frame` is the caller's still).
  Page& Emplace(uint64_t ino, InodePages& pages, uint64_t index, bool* fresh,
                char* frame = nullptr) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Calls fn(index, page) for each cached page in [first, last], in order;
  // fn may not erase.
  template <typename Fn>
  static void ForEach(InodePages& pages, uint64_t first, uint64_t last, Fn fn);
  void Touch(Page& p) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    p.referenced = true;
  }
  void SetDirty(uint64_t ino, uint64_t index, Page& p, bool dirty)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Erases one page (the caller erases the inode's entry once it has no
  // pages left); its frame is freed, or handed to the caller if `frame`.
  void EraseLocked(uint64_t ino, InodePages& pages, uint64_t index,
                   char** frame = nullptr) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void EvictLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Page records and LRU entries are reused, not freed: a page written
  // through the cache is created, queued, taken off the queue when dirtied,
  // queued again when written back and erased, and each was an allocation
  // (~9% of a writing daemon's samples went to malloc). There are never
  // more spares than the most pages the cache held.
  std::unique_ptr<Page> NewPage() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  LruList::iterator LruAdd(uint64_t ino, uint64_t index)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void LruRemove(LruList::iterator it) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // A frame whose page is gone: free, or doomed until its pins go.
  void ReleaseFrame(char* frame) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  friend class DirtyPages;
  void Unpin(const std::vector<char*>& frames);

  const uint64_t capacity_pages_;
  absl::Mutex mu_;
  Frames frames_ ABSL_GUARDED_BY(mu_);
  std::unordered_map<uint64_t, InodePages> inodes_ ABSL_GUARDED_BY(mu_);
  // Clean pages, least recently used at the front: (ino, index).
  LruList lru_ ABSL_GUARDED_BY(mu_);
  LruList spare_lru_ ABSL_GUARDED_BY(mu_);  // LruAdd's entries to reuse.
  std::vector<std::unique_ptr<Page>> spare_pages_ ABSL_GUARDED_BY(mu_);
  uint64_t pages_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t dirty_ ABSL_GUARDED_BY(mu_) = 0;
  std::unordered_map<uint64_t, uint64_t> dirty_by_inode_ ABSL_GUARDED_BY(mu_);
  uint64_t next_seq_ ABSL_GUARDED_BY(mu_) = 1;
  PageCacheStats stats_ ABSL_GUARDED_BY(mu_);
  // Frames pinned by DirtyPages (how many times), and those of them whose
  // page went meanwhile.
  std::unordered_map<char*, uint32_t> pins_ ABSL_GUARDED_BY(mu_);
  std::unordered_set<char*> doomed_ ABSL_GUARDED_BY(mu_);
};

}  // namespace rangefs::client

#endif  // RANGEFS_CLIENT_PAGE_CACHE_H_
