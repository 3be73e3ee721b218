// MetaStore: the metadata server's RocksDB database, and the only class that
// touches it. Column families: inodes, dentries, extents, free, meta,
// orphans, xattrs, handles, replies (records.h describes their keys).
//
// Writes go through an ordered group commit: Submit() queues a batch (cheap,
// never blocks on I/O, so callers may hold their sequencing mutex: batches
// reach RocksDB in Submit order), and Wait() returns once that batch is
// durable. Whichever waiter finds no write in progress becomes the leader
// and writes every queued batch as one synced WriteBatch, so concurrent
// operations share one fsync (as RocksDB's and LevelDB's own writers do).
// A failed write poisons the store: every later commit fails (UNAVAILABLE)
// until the process restarts and reloads, because in-memory state (the
// allocator) may be ahead of what is on disk.
//
// Thread-safe.
#ifndef RANGEFS_SERVER_META_META_STORE_H_
#define RANGEFS_SERVER_META_META_STORE_H_

#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"

namespace rocksdb {
class ColumnFamilyHandle;
class DB;
class Snapshot;
class WriteBatch;
}  // namespace rocksdb

namespace rangefs::meta {

enum class Cf : int {
  kInodes = 0,
  kDentries,
  kExtents,
  kFree,
  kMeta,
  kOrphans,
  kXattrs,
  kHandles,
  kReplies,
  kCount,
};

// A set of changes applied atomically.
//
// Durability: a batch that changes extents or the free map (allocation,
// commit, truncate, punch), or asks with RequireSync, is synced before
// Commit returns (DESIGN.md: every extent map change is an atomic synced
// write). Any other batch (a create, rename, unlink, chmod, xattrs; and
// the deletion of a file with its blocks, SyncWithNextExtentChange) is in the
// write-ahead log, in the kernel, when Commit returns: it survives the
// server being killed, and is made durable against a machine crash by the
// next synced batch or MetaStore::Sync (what fsync and fsyncdir on a
// node call), as ext4 commits a create with its journal. Batches become
// durable in the order they were submitted, so a crash loses only a
// suffix of them.
class Batch {
 public:
  Batch();
  ~Batch();
  Batch(Batch&&) noexcept;
  Batch& operator=(Batch&&) noexcept;

  void Put(Cf cf, absl::string_view key, absl::string_view value);
  void Delete(Cf cf, absl::string_view key);
  void RequireSync() { sync_ = true; }
  // The batch deletes inodes and frees their blocks: its extent and free
  // map changes need no sync of their own. A crash that loses it loses the
  // deletion with it (the files keep their blocks), and a freed block is
  // used again only through an allocation, a synced batch submitted later,
  // whose sync makes this one durable first (batches become durable in
  // order). RequireSync still syncs it.
  void SyncWithNextExtentChange() { deferred_ = true; }
  size_t count() const;
  bool needs_sync() const { return sync_ || (extent_change_ && !deferred_); }

 private:
  friend class MetaStore;
  struct Op {
    Cf cf;
    std::string key;
    std::optional<std::string> value;  // nullopt = delete
  };
  std::vector<Op> ops_;
  bool sync_ = false;           // RequireSync.
  bool extent_change_ = false;  // An extent or free map change.
  bool deferred_ = false;       // SyncWithNextExtentChange.
};

// A consistent read view (a RocksDB snapshot). Reads through one view see
// one point in time.
class ReadView {
 public:
  ~ReadView();
  ReadView(const ReadView&) = delete;
  ReadView& operator=(const ReadView&) = delete;

 private:
  friend class MetaStore;
  ReadView(rocksdb::DB* db, const rocksdb::Snapshot* snap)
      : db_(db), snap_(snap) {}
  rocksdb::DB* db_;
  const rocksdb::Snapshot* snap_;
};

class MetaStore {
 public:
  // Opens (creating if needed) the database in `dir`. `sync` = false skips
  // the fsync of each group write: for tests only, never for a server.
  static absl::StatusOr<std::unique_ptr<MetaStore>> Open(const std::string& dir,
                                                         bool sync = true);
  ~MetaStore();
  MetaStore(const MetaStore&) = delete;
  MetaStore& operator=(const MetaStore&) = delete;

  std::unique_ptr<ReadView> View();

  // The value of `key`, nullopt if absent. `view` may be null (latest).
  absl::StatusOr<std::optional<std::string>> Get(
      Cf cf, absl::string_view key, const ReadView* view = nullptr);

  // Calls fn(key, value) for keys in [from, to) in order (to empty = no
  // bound) until fn returns false.
  absl::Status Scan(
      Cf cf, absl::string_view from, absl::string_view to,
      const std::function<bool(absl::string_view, absl::string_view)>& fn,
      const ReadView* view = nullptr);

  // The last key <= `key` that starts with `prefix`, with its value.
  absl::StatusOr<std::optional<std::pair<std::string, std::string>>>
  SeekForPrev(Cf cf, absl::string_view prefix, absl::string_view key,
              const ReadView* view = nullptr);

  class Pending;
  // Queues `batch` behind every batch submitted before it. Never blocks on
  // I/O.
  std::shared_ptr<Pending> Submit(Batch batch);
  // Returns once the batch is written (durable as Batch says) or failed.
  absl::Status Wait(const std::shared_ptr<Pending>& pending);
  // Submit + Wait.
  absl::Status Commit(Batch batch) { return Wait(Submit(std::move(batch))); }
  // Makes every batch written before the call durable (no I/O when they
  // all were synced already).
  absl::Status Sync();

  // Number of synced writes and batches, for benchmarks.
  uint64_t sync_writes() const;
  uint64_t batches_written() const;
  bool failed() const;

 private:
  MetaStore(rocksdb::DB* db, std::vector<rocksdb::ColumnFamilyHandle*> cfs,
            bool sync);
  rocksdb::ColumnFamilyHandle* Handle(Cf cf) const {
    return cfs_[static_cast<int>(cf)];
  }
  void WriteGroup() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  rocksdb::DB* db_;
  std::vector<rocksdb::ColumnFamilyHandle*> cfs_;
  const bool sync_;

  mutable absl::Mutex mu_;
  absl::CondVar written_;  // Signalled when a group write ends.
  std::deque<std::shared_ptr<Pending>> queue_ ABSL_GUARDED_BY(mu_);
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool failed_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t sync_writes_ ABSL_GUARDED_BY(mu_) = 0;
  // Some write since the last synced one was not synced.
  bool unsynced_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t batches_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace rangefs::meta

#endif  // RANGEFS_SERVER_META_META_STORE_H_
