// Client::Impl: the node's state and I/O paths (docs/client.md).
//
// Files: client.cc (setup, namespace, attributes, open/close), file_io.cc
// (buffered and direct read/write, truncate, fallocate, seek, fsync),
// writeback.cc (page fills, writeback through MapWrite/CommitWrite, the
// INVAL and INODE lock hooks, the flusher).
//
// Lock order, outermost first:
//   cluster locks (LockCache, taken DATA -> INVAL -> INODE by a task)
//   -> InodeState::wb_mu (writeback and extent changes of one inode)
//   -> InodeState::open_mu (the node's opens; held across their requests)
//   -> InodeState::mu (attributes, cached mappings; short)
//   -> Impl::mu_ (handle and inode tables; short)
// and PageCache / LockCache internals are leaves. Nothing waits for a
// cluster lock while holding wb_mu, so the lock hooks (which take wb_mu)
// always make progress.
#ifndef RANGEFS_CLIENT_CLIENT_INTERNAL_H_
#define RANGEFS_CLIENT_CLIENT_INTERNAL_H_

#include <atomic>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "client/lock_cache.h"
#include "client/mmap.h"
#include "client/page_cache.h"
#include "client/rangefs.h"
#include "client/stubs.h"
#include "common/thread_pool.h"

namespace rangefs::client {

inline constexpr uint64_t kMaxDataCall = 4ull << 20;  // Data server limit.
// Ranges of one MapWrite or CommitWrite (the metadata server's limit).
inline constexpr size_t kMaxMapRanges = 1024;
// Asynchronous readaheads of one inode in flight at once.
inline constexpr size_t kMaxReadAheads = 2;

inline uint64_t PageFloor(uint64_t x) { return x & ~(kPageSize - 1); }
// The page boundary at or after `x`: kMaxExtentEnd for the last bytes of
// a file of the largest size; kInfinity only within a page of it.
inline uint64_t PageCeil(uint64_t x) {
  return x > kInfinity - (kPageSize - 1) ? kInfinity
                                         : PageFloor(x + kPageSize - 1);
}
// The pages covering [offset, offset + length).
inline ByteRange PageCover(uint64_t offset, uint64_t length) {
  return {PageFloor(offset), PageCeil(offset + length)};
}

// A name in a directory as the node last saw it: the inode and its type
// bits, or ino 0 when the name is known to be absent.
struct Dentry {
  uint64_t ino = 0;
  uint32_t mode = 0;
};

// A directory's cached names are forgotten past this many in it, or past
// this many on the node (its lock stays).
inline constexpr size_t kMaxCachedNames = 16384;
inline constexpr uint64_t kMaxCachedNamesTotal = 1 << 19;

// What the node knows about one inode. Lives as long as the node (an
// inode's locks and pages may outlive its last open handle).
struct InodeState {
  explicit InodeState(uint64_t i) : ino(i) {}
  const uint64_t ino;

  // Held by every writeback of this inode and by operations that change
  // its extents, so a page copy taken for writeback never lands after the
  // extents under it were punched or shifted.
  absl::Mutex wb_mu;

  absl::Mutex mu;
  // Attributes, valid only while the node holds INODE SH or EX (every
  // change of an inode's attributes, its link count included, takes its
  // INODE EX). Under EX the size and mtime here may be ahead of the server
  // (dirty pages past the committed size): writeback commits them.
  bool attr_valid ABSL_GUARDED_BY(mu) = false;
  Attr attr ABSL_GUARDED_BY(mu);
  // A directory's names, valid like `attr` (every change of a directory's
  // names takes the directory's INODE EX). `names_complete`: every name of
  // the directory is here (the node made it and has held its lock since),
  // so a name not here is absent. `names_epoch` moves whenever they are
  // dropped: a lookup answered meanwhile is not cached.
  absl::flat_hash_map<std::string, Dentry> names ABSL_GUARDED_BY(mu);
  bool names_complete ABSL_GUARDED_BY(mu) = false;
  uint64_t names_epoch ABSL_GUARDED_BY(mu) = 0;
  // Data the cache above wrote back (WriteFromCache) moved the mtime while
  // the node could not take INODE EX to say so: the next fsync or last
  // close takes it (SettleMtime), so other nodes drop what they cached.
  bool mtime_pending ABSL_GUARDED_BY(mu) = false;
  // Attributes the kernel asks for often that are known absent (bits of
  // kAbsentXattrs in namespace.cc: security.capability before every write
  // through a cached FUSE file, the POSIX ACLs at every permission check
  // and create); valid like `attr`, under INODE SH or EX. Setting or
  // removing an attribute takes INODE EX.
  uint32_t absent_xattrs ABSL_GUARDED_BY(mu) = 0;
  // Bumped when dirty data of this inode was lost (eviction, fenced
  // writeback): handles opened before return EIO.
  uint64_t lost ABSL_GUARDED_BY(mu) = 0;
  // The lock-session incarnation under which the dirty pages were made.
  uint64_t dirty_incarnation ABSL_GUARDED_BY(mu) = 0;
  // Cached extent mappings by file offset, only under INVAL SH or EX of
  // their range; dropped with the pages when that coverage goes.
  std::map<uint64_t, Mapping> maps ABSL_GUARDED_BY(mu);
  // Bumped by every DropMaps: a mapping fetched before a drop may only be
  // cached inside the range the fetching call holds locked.
  uint64_t maps_epoch ABSL_GUARDED_BY(mu) = 0;
  // Readahead: where the next sequential read would start, and the window.
  uint64_t next_read ABSL_GUARDED_BY(mu) = 0;
  uint64_t ra_window ABSL_GUARDED_BY(mu) = 0;
  // End of the last readahead: the next one starts once a sequential
  // reader comes within half a window of it (Linux's PG_readahead mark), so
  // a cached sequential read does not scan the window on every call.
  uint64_t ra_filled ABSL_GUARDED_BY(mu) = 0;
  // The ranges asynchronous readaheads are filling (at most
  // kMaxReadAheads). A reader of pages in them that are not in yet waits,
  // holding no cluster lock; ra_progress is signalled as pieces arrive and
  // when a readahead ends.
  std::vector<ByteRange> ra_busy ABSL_GUARDED_BY(mu);
  absl::CondVar ra_progress;
  // Files this node made in this directory whose own INODE EX is still on
  // its way (Create asks for it in the background). The directory's lock
  // waits for them before it goes (InodeDemote): no other node can find
  // such a file before this node holds its lock.
  int new_children ABSL_GUARDED_BY(mu) = 0;
  absl::CondVar children_locked;
  // Names were dropped (DropNames) while some of those files' creates were
  // still queued: until they are all answered, a name not cached may be
  // one of them, so a lookup at the server must wait behind them.
  bool names_dropped_with_new ABSL_GUARDED_BY(mu) = false;
  // The node's open handles of the inode. The metadata server keeps an
  // unlinked file while some session has it open, and hears of this
  // node's opens lazily: a node with opens either holds the INODE lock
  // (Open takes it) or has registered them under `open_session` (0: not
  // registered). The INODE demote hook registers before the lock goes,
  // the node's own unlink or rename-over before the name goes, and the
  // last close unregisters; a file created, written and closed while the
  // node keeps its lock costs no open or close request. open_mu is held
  // across those requests.
  absl::Mutex open_mu;
  int opens ABSL_GUARDED_BY(open_mu) = 0;
  uint64_t open_session ABSL_GUARDED_BY(open_mu) = 0;
  // Memory mappings of the inode on this node (MmapTable's fast path).
  std::atomic<int> mmaps{0};
};

// Buffers for page fills and direct I/O, kept for reuse: a large buffer
// allocated afresh for every call costs a page fault and a zeroing per
// page, more than the data transfer it is for. Thread-safe.
// The buffers that hold bytes [rel, rel + n) of a range laid out in
// `pages` (pages[k] holds its bytes [k * kPageSize, (k + 1) * kPageSize)),
// neighbouring frames merged.
std::vector<struct iovec> PageSpans(char* const* pages, uint64_t rel,
                                    uint64_t n);
// One buffer of `length` bytes in that layout.
std::vector<char*> PageSlices(char* buf, uint64_t length);

class BufferPool {
 public:
  // Holds a buffer of the pool (none at first) and gives it back when
  // destroyed.
  class Buffer {
   public:
    explicit Buffer(BufferPool* pool) : pool_(pool) {}
    ~Buffer() { Release(); }
    Buffer(const Buffer&) = delete;
    Buffer& operator=(const Buffer&) = delete;
    // At least `size` bytes, uninitialised (earlier contents are not
    // kept when it grows).
    char* Get(size_t size);

   private:
    void Release();
    BufferPool* const pool_;
    std::unique_ptr<char[]> data_;
    size_t capacity_ = 0;
  };

 private:
  // Idle buffers kept: up to this many, and this many bytes in all.
  static constexpr size_t kMaxIdle = 8;
  static constexpr size_t kMaxIdleBytes = 32u << 20;
  absl::Mutex mu_;
  std::vector<std::pair<size_t, std::unique_ptr<char[]>>> idle_
      ABSL_GUARDED_BY(mu_);
  size_t idle_bytes_ ABSL_GUARDED_BY(mu_) = 0;
};

class HeldLocks;

struct Handle {
  std::shared_ptr<InodeState> inode;
  int flags = 0;
  uint64_t lost_seen = 0;
};

class Client::Impl {
 public:
  Impl(const ClusterConfig& config, const ClientOptions& options,
       std::unique_ptr<Stubs> stubs);
  ~Impl();
  absl::Status Start();
  void Stop();

  // ---- client.cc
  absl::StatusOr<Attr> Lookup(uint64_t parent, const std::string& name);
  absl::StatusOr<Attr> GetAttr(uint64_t ino);
  absl::StatusOr<Attr> SetAttr(uint64_t ino, const SetAttrArgs& args);
  absl::Status Accessed(uint64_t ino, bool strict);
  absl::StatusOr<Attr> Mknod(uint64_t parent, const std::string& name,
                             uint32_t mode, uint64_t rdev, const Creds& creds,
                             bool exclusive);
  absl::StatusOr<Attr> Mkdir(uint64_t parent, const std::string& name,
                             uint32_t mode, const Creds& creds);
  absl::StatusOr<Attr> Symlink(uint64_t parent, const std::string& name,
                               const std::string& target, const Creds& creds);
  absl::StatusOr<Attr> Link(uint64_t ino, uint64_t new_parent,
                            const std::string& new_name);
  absl::Status Unlink(uint64_t parent, const std::string& name);
  // A file lost its last name: without a handle or a mapping of it here,
  // nothing on this node can read it again, and its clean pages go now
  // rather than when eviction or its lock takes them (the kernel drops an
  // unlinked inode's page cache at its last iput). Dropping clean pages
  // is always safe: a read refills them.
  void DropUnreachable(uint64_t ino);
  absl::Status Rmdir(uint64_t parent, const std::string& name);
  absl::Status Rename(uint64_t old_parent, const std::string& old_name,
                      uint64_t new_parent, const std::string& new_name,
                      uint32_t flags);
  absl::StatusOr<uint64_t> Open(uint64_t ino, int flags);
  // Open in two halves: CountOpen under the file's INODE lock (or, for a
  // file just made, its directory's: see LockNewFileLater), then
  // OpenCounted, holding no lock, makes the handle (and truncates for
  // O_TRUNC). `a`: the attributes seen under that lock.
  void CountOpen(InodeState& in);
  // `lost_seen`: the lost count the handle starts from (default: now).
  absl::StatusOr<uint64_t> OpenCounted(
      std::shared_ptr<InodeState> in, int flags, const Attr& a,
      std::optional<uint64_t> lost_seen = std::nullopt);
  absl::StatusOr<std::pair<Attr, uint64_t>> Create(uint64_t parent,
                                                   const std::string& name,
                                                   uint32_t mode, int flags,
                                                   const Creds& creds);
  absl::Status Close(uint64_t fh);
  absl::StatusOr<Handle> HandleOf(uint64_t fh);
  absl::Status SyncAll();
  uint64_t DropCaches();
  ClientStats Stats();
  Stubs& stubs() { return *stubs_; }
  uint64_t session_id() { return locks_.session_id(); }

  // ---- file_io.cc
  // `fill`: the read fills a cache above the node (Client::ReadForCache).
  struct CacheFill {
    bool exclusive = false;
    const Client::Delivery* deliver = nullptr;
    const Client::FillPipe* pipe = nullptr;
  };
  // `buf` is unused (null) with a fill.
  absl::StatusOr<size_t> Read(const Handle& h, char* buf, size_t len,
                              uint64_t offset, const CacheFill* fill = nullptr);
  // Copies [pos, end) of `in` out of its cached pages into `out` with
  // `copy`, reading a page reclaimed since the fill through from the data
  // servers. Returns the bytes copied; sets *short_copy if `copy` stopped.
  // Caller holds the locks of a read of the range, the pages filled.
  absl::StatusOr<size_t> CopyCached(InodeState& in, uint64_t pos, uint64_t end,
                                    char* out, PageCache::CopyFn copy,
                                    bool* short_copy);
  // Hands [pos, end) of `in`, filled, to the cache above (fill.deliver).
  absl::StatusOr<size_t> DeliverFill(InodeState& in, uint64_t pos, uint64_t end,
                                     const CacheFill& fill);
  absl::StatusOr<size_t> WriteFromCache(const Handle& h, const char* buf,
                                        size_t len, uint64_t offset);
  // Copies `want` bytes from `src` (a stoppable copy) into the cached pages
  // at `pos`, dirty, first filling partial pages that hold old data (below
  // `size`). Returns the bytes copied: fewer when the copy stopped short.
  // Caller holds INVAL EX over the pages.
  absl::StatusOr<size_t> StorePages(InodeState& in, uint64_t pos,
                                    const char* src, uint64_t want,
                                    uint64_t size);
  absl::StatusOr<size_t> Write(const Handle& h, const char* buf, size_t len,
                               uint64_t offset);
  absl::Status Fsync(const Handle& h);
  // The metadata server's acknowledged changes become durable.
  absl::Status SyncMeta();
  // See InodeState::mtime_pending. Takes INODE EX: not from a lock hook.
  absl::Status SettleMtime(InodeState& in);
  absl::Status Truncate(InodeState& in, uint64_t size);
  absl::Status Fallocate(const Handle& h, uint32_t mode, uint64_t offset,
                         uint64_t length);
  absl::StatusOr<uint64_t> Seek(const Handle& h, uint64_t offset, bool data);
  absl::StatusOr<Attr> FileAttr(InodeState& in);
  // Attributes under the caller's INODE SH or EX (fetched when not cached).
  absl::StatusOr<Attr> CachedAttr(InodeState& in);

  // ---- writeback.cc
  // Fills the missing pages of [first, end) page indexes that lie below
  // `size`. Caller holds INVAL SH or EX over `locked`, which contains them.
  // Returns the pages it inserted in *filled, if given.
  absl::Status FillPages(InodeState& in, uint64_t first, uint64_t end,
                         uint64_t size, const ByteRange& locked,
                         std::atomic<uint64_t>* filled = nullptr);
  // Whether [pos, end) of `in` may be filled through the pipe of `fill`
  // (PipeFill): it has one big enough and the node caches no page of it.
  bool PipeFillable(InodeState& in, uint64_t pos, uint64_t end,
                    const CacheFill& fill);
  // Sends [pos, end) of `in` from the data servers through the pipe of
  // `fill` to its delivery. Caller holds the locks of a fill of the range
  // over `locked`. false: it went nowhere (the pipe filled up, a piece has
  // no bulk channel); the caller fills through pages instead.
  absl::StatusOr<bool> PipeFill(InodeState& in, uint64_t pos, uint64_t end,
                                const ByteRange& locked, const CacheFill& fill);
  // Mappings covering [offset, end): cached ones when `locked` (the INVAL
  // SH/EX range the caller holds) is given, else fresh and not cached.
  absl::StatusOr<std::vector<Mapping>> MapRange(InodeState& in, uint64_t offset,
                                                uint64_t end,
                                                const ByteRange* locked);
  // Writes back the dirty pages of `range`. Caller holds in.wb_mu.
  absl::Status WritebackLocked(InodeState& in, const ByteRange& range)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(in.wb_mu);
  absl::Status Writeback(InodeState& in, const ByteRange& range);
  // Maps [offset, offset + length) for writing (allocating holes), writes
  // the data (laid out in `pages` as ReadMapped's) to the data servers and
  // commits it, remapping and redoing a piece whose commit is STALE.
  // Block-aligned. The size becomes at least min(size_floor, end of the
  // data).
  // On failure, *committed (if given) is how many bytes from `offset` are
  // on the servers and committed (a short write: space ran out).
  absl::Status WriteBlocks(InodeState& in, uint64_t offset, char* const* pages,
                           uint64_t length, uint64_t size_floor, bool sync,
                           const LockCache::SessionSnapshot& snap,
                           uint64_t* committed = nullptr);
  // WriteBlocks of several runs (in order, in disjoint blocks), mapped and
  // committed together, up to kMaxMapRanges per MapWrite and CommitWrite.
  // Each run's `committed` says how much of it is on the servers and
  // committed, also on failure.
  struct BlockRun {
    uint64_t offset = 0;
    char* const* pages = nullptr;  // Its data, laid out as ReadMapped's.
    uint64_t length = 0;
    uint64_t committed = 0;
  };
  absl::Status WriteRuns(InodeState& in, std::vector<BlockRun>& runs,
                         uint64_t size_floor, bool sync,
                         const LockCache::SessionSnapshot& snap);
  // Reads [offset, offset + length) of the file through fresh mappings into
  // `out` (direct I/O; holes and unwritten read as zeros).
  absl::Status ReadBlocksDirect(InodeState& in, uint64_t offset,
                                uint64_t length, char* out);
  // Reads the WRITTEN pieces of `maps` (which start at `offset`) into
  // `pages`, zeros elsewhere: pages[k] receives the bytes from offset + k *
  // kPageSize to the next kPageSize (page-cache frames, or slices of one
  // buffer). `arrived(file offset, length)`, if given, is called for each
  // piece once it is in, from any thread, before this returns.
  absl::Status ReadMapped(
      const std::vector<Mapping>& maps, uint64_t offset, char* const* pages,
      const std::function<void(uint64_t, uint64_t)>* arrived = nullptr);
  // Fills the missing pages of [start, end) of `in` in the background,
  // under try-locks (it never waits for a cluster lock; without them it
  // does nothing), then takes the range off in.ra_busy, where the caller
  // put it.
  void StartReadAhead(std::shared_ptr<InodeState> in, uint64_t start,
                      uint64_t end);
  void ReadAhead(InodeState& in, uint64_t start, uint64_t end);
  void EndReadAhead(InodeState& in, const ByteRange& range, bool filled);
  // Whether pages of [pos, pos + want) that a readahead is filling are
  // still missing.
  bool AwaitsReadAhead(InodeState& in, uint64_t pos, uint64_t want)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(in.mu);
  // Runs independent data-server calls, a few at a time; the first error.
  absl::Status RunParallel(std::vector<std::function<absl::Status()>> calls);
  // Drops pages and cached mappings of `range`.
  uint64_t DropCached(InodeState& in, const ByteRange& range);
  void DropMaps(InodeState& in, const ByteRange& range)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(in.mu);
  void DropMapsKeepEpoch(InodeState& in, const ByteRange& range)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(in.mu);
  void NoteLost(InodeState& in, uint64_t pages);
  // A lock callback's write-back failed and the lock goes anyway: the
  // dirty data of `range` is lost (Linux marks such pages clean and reports
  // the error at fsync), and the cached attributes that described it.
  void LoseUnwritten(InodeState& in, const ByteRange& range);
  // Whether a failed write-back in a callback is worth another try.
  static bool RetryWriteback(const absl::Status& s);

  std::shared_ptr<InodeState> GetInode(uint64_t ino);
  std::shared_ptr<InodeState> FindInode(uint64_t ino);

  // Lock hooks.
  void InvalDemote(uint64_t ino, const ByteRange& range, LockMode keep);
  void InvalLost(uint64_t ino, const ByteRange& range);
  void InodeDemote(uint64_t ino, LockMode keep);
  // A regular file `in` just made in `dir` under the caller's INODE EX of
  // `dir`, its attributes cached: asks for its INODE EX in the background
  // (its number is new, so the grant is immediate; the create does not
  // wait the round trip) and returns true; false if the node is stopping.
  // Until the grant nobody else can reach the file (dir->new_children).
  // If the lock cannot be had, what was cached of the file is dropped.
  bool LockNewFileLater(std::shared_ptr<InodeState> dir,
                        std::shared_ptr<InodeState> in);
  // One of `dir`'s new_children (its lock or its create sent ahead) is
  // through: wakes a demote waiting for them.
  void NewChildSettled(InodeState& dir);
  // Create's fast way, under the caller's INODE EX of `dir` with `name`
  // known absent: makes the file here with a leased inode number and
  // sends its create in the background (Stubs::CreateLater); the
  // directory's lock waits for the answer before it goes. nullopt when it
  // cannot (no lease, the directory's attributes unknown, a name the
  // server might refuse): the caller creates the usual way.
  // `*lost` is the file's InodeState::lost before the create was sent (a
  // handle opened after a failed one must still see the failure).
  std::optional<Attr> CreateAhead(const std::shared_ptr<InodeState>& dir,
                                  const std::string& name, uint32_t mode,
                                  const Creds& creds, uint64_t* lost);
  // A leased inode number of the current session (0: none left; a new
  // lease is then being fetched).
  uint64_t LeasedIno();
  void InodeLost(uint64_t ino);
  // The node's record locks on `ino` were lost with its session.
  void RecordLocksLost(uint64_t ino);

  LockCache& locks() { return locks_; }
  PageCache& pages() { return pages_; }
  MmapTable& mmaps() { return *mmaps_; }
  absl::StatusOr<std::string> GetXattr(uint64_t ino, const std::string& name);
  // `name` (of absent-cache bit `bit`) from the server, or ENODATA known
  // from the cache; the caller holds `in`'s INODE lock.
  absl::StatusOr<std::string> GetXattrCached(InodeState& in,
                                             const std::string& name,
                                             uint32_t bit);
  absl::Status SetXattr(uint64_t ino, const std::string& name,
                        const std::string& value, uint32_t flags);
  absl::Status RemoveXattr(uint64_t ino, const std::string& name);
  // Client::SetCacheAbove; told before the node's INVAL hooks act.
  std::atomic<CacheAbove*> cache_above{nullptr};
  void InvalidateAbove(uint64_t ino, const ByteRange& range);
  void InvalidateAttributesAbove(uint64_t ino);
  void InvalidateNamesAbove();
  // The mtime a commit of `in`'s dirty data gives the file.
  Timespec DataMtime(InodeState& in);
  const ClientOptions& options() const { return options_; }

  struct Counters {
    std::atomic<uint64_t> map_cache_hits{0}, map_calls{0}, writeback_pages{0},
        stale_retries{0}, short_copies{0}, inval_demotes{0}, inode_demotes{0},
        pages_dropped{0}, lost_dirty_pages{0}, direct_fallbacks{0},
        staged_copies{0}, readaheads{0}, readaheads_abandoned{0},
        readahead_pages{0}, creates_ahead{0}, creates_ahead_failed{0},
        piped_fills{0}, pipe_fallbacks{0};
  };
  Counters counters;

 private:
  // The INVAL, INODE and POSIX hooks the lock cache calls (writeback.cc).
  class Hooks : public LockHooks {
   public:
    Hooks(Impl* impl, LockKind kind) : impl_(impl), kind_(kind) {}
    void Demote(const ResourceId& res, const ByteRange& range,
                LockMode keep) override;
    void Lost(const ResourceId& res, const ByteRange& range) override;

   private:
    Impl* const impl_;  // Owns this.
    const LockKind kind_;
  };
  void InstallHooks();
  void Flusher();
  // A writer's share of write-back (Linux's balance_dirty_pages): past half
  // the dirty limit the flusher starts; past the limit the writer waits for
  // it (writing back itself if it makes no progress).
  absl::Status ThrottleWriter(InodeState& in);
  // Forgets inodes the node no longer needs state for.
  void TrimInodes();
  // Whether anything is cached under the inode's INODE lock (true when
  // that cannot be told without waiting).
  static bool HoldsCache(InodeState& in);

  // Makes the node's opens of `in`, if any, known to the metadata server
  // under the current session.
  absl::Status RegisterOpens(InodeState& in);

  // ---- namespace.cc
  // `name` in directory `dir`: from the node's cache of the directory's
  // names, else from the metadata server (then cached). NOT_FOUND when
  // absent. Caller holds dir's INODE SH or EX.
  absl::StatusOr<Dentry> NameLocked(InodeState& dir, const std::string& name);
  // The same under the directory's INODE SH, taken for the call.
  absl::StatusOr<Dentry> LookupName(uint64_t parent, const std::string& name);
  void RememberName(InodeState& dir, const std::string& name, const Dentry& d)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(dir.mu);
  void DropNames(InodeState& dir) ABSL_EXCLUSIVE_LOCKS_REQUIRED(dir.mu);
  // A change the caller made under the directory's INODE EX: `name` now
  // names `now`; or it is not known what it names (a failed call).
  void NameChanged(uint64_t dir, const std::string& name, const Dentry& now);
  void NameUnknown(uint64_t dir, const std::string& name);
  // After a call that makes `name` in `dir`: the name, and the
  // directory's attributes (its mtime and size changed; `dir_now` as
  // DirChanged).
  void NameMade(uint64_t dir, const std::string& name,
                const absl::StatusOr<Attr>& made, const Attr& dir_now);
  // The inode's attributes changed under the caller's INODE EX (ino 0 is
  // ignored): forgotten here and in the cache above.
  void AttrChanged(uint64_t ino);
  // As AttrChanged for a directory the caller changed under its INODE EX,
  // except that the cache above is not told; `now` (when its ino is `dir`:
  // the server's attributes right after the change) is cached, so the next
  // stat or lookup needs no server.
  void DirChanged(uint64_t dir, const Attr& now);
  void XattrChanged(uint64_t ino);
  // Before a namespace change removes or replaces a name of `inos` (under
  // the caller's INODE EX): writes their dirty data back and registers
  // their opens with the metadata server.
  void PrepareForChange(const std::vector<uint64_t>& inos);
  // Forgets everything cached under the inode's INODE lock.
  void ForgetInode(InodeState& in);
  // Takes INODE EX on `inos` in inode order (0s and repeats skipped).
  absl::Status TakeInodesEx(HeldLocks& held, std::vector<uint64_t> inos);
  // Takes INODE EX on `dirs` and on the inodes `names` (directory, name)
  // name, in inode order; returns what the names named under the locks.
  absl::StatusOr<std::vector<Dentry>> LockNamesEx(
      HeldLocks& held, const std::vector<uint64_t>& dirs,
      const std::vector<std::pair<uint64_t, const std::string*>>& names);
  // Unlink or rmdir.
  absl::Status RemoveName(uint64_t parent, const std::string& name, bool dir);

  const ClusterConfig config_;
  const ClientOptions options_;
  std::unique_ptr<Stubs> stubs_;
  LockCache locks_;
  PageCache pages_;
  std::unique_ptr<Hooks> inval_hooks_, inode_hooks_, posix_hooks_;
  std::unique_ptr<MmapTable> mmaps_;
  BufferPool buffers_;
  ThreadPool io_pool_{4};  // Data-server calls of one writeback or read.
  // Asynchronous readahead (their data-server calls go to io_pool_).
  ThreadPool ra_pool_{2};
  // INODE EX of files just made (LockNewFileLater).
  ThreadPool new_lock_pool_{2};

  absl::Mutex mu_;
  std::map<uint64_t, std::shared_ptr<InodeState>> inodes_ ABSL_GUARDED_BY(mu_);
  std::map<uint64_t, Handle> handles_ ABSL_GUARDED_BY(mu_);
  uint64_t next_fh_ ABSL_GUARDED_BY(mu_) = 1;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  int readaheads_ ABSL_GUARDED_BY(mu_) = 0;      // Queued or running.
  int new_file_locks_ ABSL_GUARDED_BY(mu_) = 0;  // Queued or running.
  // Held from taking a leased inode number to queueing its create: the
  // metadata server takes a session's numbers in increasing order (those
  // below the last one used go unused), so creates must queue in number
  // order. Before lease_mu_ and every other mutex.
  absl::Mutex create_order_mu_;
  // Inode numbers leased to the session `lease_session_` ([next, end)
  // ranges, oldest first), and whether a new lease is on its way.
  absl::Mutex lease_mu_;
  std::deque<std::pair<uint64_t, uint64_t>> leases_ ABSL_GUARDED_BY(lease_mu_);
  uint64_t lease_session_ ABSL_GUARDED_BY(lease_mu_) = 0;
  bool leasing_ ABSL_GUARDED_BY(lease_mu_) = false;
  // Set by a writer past half the dirty limit: the flusher starts at once.
  bool flush_kick_ ABSL_GUARDED_BY(mu_) = false;
  // Names cached in all directories' InodeState::names.
  std::atomic<uint64_t> cached_names_{0};
  std::thread flusher_;
};

// The cluster locks one system call holds, released in reverse order when
// it goes out of scope. The task is the calling thread.
class HeldLocks {
 public:
  explicit HeldLocks(LockCache* cache) : cache_(cache) {}
  ~HeldLocks() { Release(); }
  HeldLocks(const HeldLocks&) = delete;
  HeldLocks& operator=(const HeldLocks&) = delete;

  absl::Status Take(LockKind kind, uint64_t ino, const ByteRange& range,
                    LockMode mode, bool try_only = false);
  void Release();

 private:
  LockCache* cache_;
  std::vector<LocalLock> held_;
};

uint64_t CurrentTask();
Timespec NowTimespec();
inline Timespec LaterOf(const Timespec& a, const Timespec& b) {
  return a.sec != b.sec ? (a.sec > b.sec ? a : b) : (a.nsec >= b.nsec ? a : b);
}
// The whole file, for the INODE lock and whole-file operations.
inline ByteRange WholeFile() { return {0, kInfinity}; }

}  // namespace rangefs::client

#endif  // RANGEFS_CLIENT_CLIENT_INTERNAL_H_
