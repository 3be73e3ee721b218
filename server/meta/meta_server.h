// MetaServer: the operations of rangefs-meta, without gRPC: namespace,
// attributes, extent maps with validity cookies, fallocate and truncate,
// open handles and orphans, fencing, extended attributes, fsck. The gRPC
// adapter (meta_service.cc) translates calls; tests drive this class
// directly.
//
// Concurrency. Each operation takes the inode locks of the inodes it
// changes (striped, in stripe order: the written lock order), reads what
// it needs, builds one batch, and submits it under seq_mu_, the sequencing
// mutex that also guards the allocator, the inode counter and the fence
// set, so batches reach RocksDB in the order their in-memory effects
// happened. It then waits for durability with only its inode locks held:
// operations on other inodes share the group commit. Directory renames
// also hold rename_mu_ (taken before any inode lock) so two renames cannot
// build a cycle.
//
// Lock order: rename_mu_ -> inode locks (ascending stripe) -> seq_mu_.
#ifndef RANGEFS_SERVER_META_META_SERVER_H_
#define RANGEFS_SERVER_META_META_SERVER_H_

#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "common/range.h"
#include "server/meta/allocator.h"
#include "server/meta/meta_store.h"
#include "server/meta/records.h"

namespace rangefs::meta {

struct Creds {
  uint32_t uid = 0;
  uint32_t gid = 0;
};

// Bits of SetAttrArgs::valid (same values as proto SetAttrField).
enum SetAttrBits : uint32_t {
  kSetMode = 1,
  kSetUid = 2,
  kSetGid = 4,
  kSetSize = 8,
  kSetAtime = 16,
  kSetMtime = 32,
  kSetAtimeNow = 64,
  kSetMtimeNow = 128,
  kSetCtime = 256,
  kKeepCtime = 512,  // With kSetAtime or kSetAtimeNow only: an access.
};

struct SetAttrArgs {
  uint32_t valid = 0;
  uint32_t mode = 0;
  uint32_t uid = 0;
  uint32_t gid = 0;
  uint64_t size = 0;
  Timespec atime, mtime, ctime;
};

// Bits of Fallocate's mode (same values as Linux FALLOC_FL_*).
enum FallocateBits : uint32_t {
  kFallocKeepSize = 1,
  kFallocPunchHole = 2,
  kFallocCollapseRange = 8,
  kFallocZeroRange = 16,
  kFallocInsertRange = 32,
};

// Bits of Rename's flags (as renameat2).
enum RenameBits : uint32_t { kRenameNoReplace = 1, kRenameExchange = 2 };

struct DirEntry {
  std::string name;
  uint64_t ino = 0;
  uint32_t type = 0;  // S_IFMT bits.
  Attr attr;          // Only with plus.
};

struct ReadDirResult {
  std::vector<DirEntry> entries;
  bool eof = false;
};

struct MapResult {
  std::vector<Extent> mappings;  // Contiguous from the requested offset.
  uint64_t cookie = 0;
  uint64_t size = 0;
};

struct ChosenInode {
  uint64_t ino = 0;
  Timespec time;
};

struct UnlinkResult {
  uint64_t ino = 0;
  bool orphaned = false;  // Kept on the orphan list: still open somewhere.
  Attr parent;            // Unlink, rmdir: the directory's attributes after it.
};

struct StatFs {
  uint64_t block_size = kBlockSize;
  uint64_t total_blocks = 0;
  uint64_t free_blocks = 0;
  uint64_t files = 0;
  uint64_t free_files = 0;
  std::string fs_id;
};

struct FsckReport {
  std::vector<std::string> problems;
  uint64_t inodes = 0;
  uint64_t extents = 0;
  uint64_t orphans = 0;
  uint64_t allocated_bytes = 0;
  uint64_t free_bytes = 0;
};

// A change a node asks for, named so that a retry applies it once: the
// node's id (random, one per process), the call's number (increasing per
// node), and the lowest number the node still waits for an answer to.
struct CallId {
  uint64_t client = 0;  // 0: unnamed; every attempt applies.
  uint64_t seq = 0;
  uint64_t acked = 0;  // Answers kept for numbers below it can go.
};

struct MetaCounters {
  uint64_t stale_commits = 0;
  uint64_t fenced_refusals = 0;
  uint64_t commits = 0;
  uint64_t allocations = 0;
  uint64_t replayed = 0;  // Retries answered with a kept reply.
};

class MetaServer {
 public:
  // Opens the database in `dir`. A new (empty) directory is formatted with
  // `devices` and `fs_id`; an existing one must carry the same fs id (an
  // empty `fs_id` accepts any) and its own devices are used (`devices`
  // may add new ones, never change or drop old ones).
  // `sync` = false is for tests only (see MetaStore::Open).
  static absl::StatusOr<std::unique_ptr<MetaServer>> Open(
      const std::string& dir, const std::string& fs_id,
      const std::vector<DeviceInfo>& devices, bool sync = true);
  ~MetaServer();
  MetaServer(const MetaServer&) = delete;
  MetaServer& operator=(const MetaServer&) = delete;

  // Exactly-once changes (docs/metadata-server.md, "Retries"). While a
  // Call lives on a thread, a change that thread makes on this server is
  // kept with its answer, in the change's own batch; the same call again
  // (a retry: the node lost the answer to a reset connection or to a
  // restart of this server) gets the kept answer and changes nothing. A
  // Call first waits for an attempt of the same call still running. A call
  // that changed nothing keeps nothing: its retry runs again. The answers
  // of a node are dropped as its `acked` passes them, and any answer older
  // than kKeepRepliesSec when the server starts.
  class Call {
   public:
    Call(MetaServer* server, const CallId& id);
    ~Call();
    Call(const Call&) = delete;
    Call& operator=(const Call&) = delete;

   private:
    friend class MetaServer;
    MetaServer* const server_;
    const CallId id_;
    std::vector<uint64_t> trim_;  // Kept answers of the node to drop.
    const Call* outer_;           // The thread's Call before this one.
  };
  static constexpr int64_t kKeepRepliesSec = 3600;
  // Answers kept now.
  size_t kept_replies();

  // Namespace. `session` identifies the caller for fencing.
  absl::StatusOr<Attr> Lookup(uint64_t parent, const std::string& name);
  absl::StatusOr<Attr> GetAttr(uint64_t ino);
  absl::StatusOr<Attr> SetAttr(uint64_t session, uint64_t ino,
                               const SetAttrArgs& args);
  // Create, Mkdir, Symlink and Link set `*parent` (when not null) to the
  // directory's attributes right after the change.
  // `chosen` (optional): the inode number, from the session's lease
  // (ReserveInodes), and the time the node stamped the new file with; the
  // create then answers as the node already told its caller.
  absl::StatusOr<Attr> Create(uint64_t session, uint64_t parent,
                              const std::string& name, uint32_t mode,
                              uint64_t rdev, const Creds& creds, bool exclusive,
                              uint32_t umask, Attr* parent_attr = nullptr,
                              const ChosenInode* chosen = nullptr);
  // Leases `count` (1..4096) new inode numbers to `session`, returned as
  // the first: a node creates files with them without waiting for this
  // server (Create's `chosen`), each number once, in increasing order
  // within a lease. A session keeps its last kMaxLeases leases.
  absl::StatusOr<uint64_t> ReserveInodes(uint64_t session, uint64_t count);
  absl::StatusOr<Attr> Mkdir(uint64_t session, uint64_t parent,
                             const std::string& name, uint32_t mode,
                             const Creds& creds, uint32_t umask,
                             Attr* parent_attr = nullptr);
  absl::StatusOr<Attr> Symlink(uint64_t session, uint64_t parent,
                               const std::string& name,
                               const std::string& target, const Creds& creds,
                               Attr* parent_attr = nullptr);
  absl::StatusOr<Attr> Link(uint64_t session, uint64_t ino, uint64_t new_parent,
                            const std::string& new_name,
                            Attr* parent_attr = nullptr);
  absl::StatusOr<UnlinkResult> Unlink(uint64_t session, uint64_t parent,
                                      const std::string& name,
                                      bool keep_if_open);
  absl::StatusOr<UnlinkResult> Rmdir(uint64_t session, uint64_t parent,
                                     const std::string& name);
  // Returns the inode that lost its last link, if any.
  absl::StatusOr<UnlinkResult> Rename(uint64_t session, uint64_t old_parent,
                                      const std::string& old_name,
                                      uint64_t new_parent,
                                      const std::string& new_name,
                                      uint32_t flags);
  absl::StatusOr<std::string> Readlink(uint64_t ino);
  absl::StatusOr<ReadDirResult> ReadDir(uint64_t ino, const std::string& after,
                                        uint32_t max_entries, bool plus);
  absl::StatusOr<StatFs> GetStatFs();
  // Every change acknowledged so far becomes durable (MetaStore::Sync).
  absl::Status Sync();

  // Extent maps.
  absl::StatusOr<MapResult> MapRead(uint64_t session, uint64_t ino,
                                    uint64_t offset, uint64_t length);
  absl::StatusOr<MapResult> MapWrite(uint64_t session, uint64_t ino,
                                     uint64_t offset, uint64_t length);
  // MapWrite of several ranges in one synced batch: [offset, offset +
  // length) of each (each at most kMaxMapLength), in order and in disjoint
  // blocks, at most kMaxMappings of them. The mappings cover a prefix of
  // the ranges (MapReply); an error in any range but the first ends the
  // prefix there instead.
  absl::StatusOr<MapResult> MapWriteRanges(
      uint64_t session, uint64_t ino,
      const std::vector<std::pair<uint64_t, uint64_t>>& ranges);
  // Ranges must be block-aligned: clients write whole blocks.
  absl::StatusOr<Attr> CommitWrite(uint64_t session, uint64_t ino,
                                   const std::vector<ByteRange>& ranges,
                                   uint64_t cookie, uint64_t new_size,
                                   const Timespec& mtime);
  absl::StatusOr<Attr> Fallocate(uint64_t session, uint64_t ino, uint32_t mode,
                                 uint64_t offset, uint64_t length);
  // SEEK_DATA (data = true) or SEEK_HOLE. OUT_OF_RANGE (ENXIO) past EOF.
  absl::StatusOr<uint64_t> Seek(uint64_t ino, uint64_t offset, bool data);

  // Open handles: the last close of an unlinked inode frees it.
  absl::StatusOr<Attr> Open(uint64_t session, uint64_t ino);
  absl::Status Close(uint64_t session, uint64_t ino);

  // Extended attributes. flags: 1 = XATTR_CREATE, 2 = XATTR_REPLACE.
  absl::StatusOr<std::string> GetXattr(uint64_t ino, const std::string& name);
  absl::Status SetXattr(uint64_t session, uint64_t ino, const std::string& name,
                        const std::string& value, uint32_t flags);
  absl::StatusOr<std::vector<std::string>> ListXattr(uint64_t ino);
  absl::Status RemoveXattr(uint64_t session, uint64_t ino,
                           const std::string& name);

  // Refuses every later request of `session` (persisted) and drops its
  // open handles.
  absl::Status Fence(uint64_t session);
  bool IsFenced(uint64_t session);

  // Consistency check of everything stored (docs/extent-map.md, "fsck").
  absl::StatusOr<FsckReport> Fsck();

  const std::string& fs_id() const { return fs_id_; }
  std::vector<DeviceInfo> devices() const;
  std::vector<uint64_t> fenced_sessions();
  // The sessions fenced after sequence number `after_seq` into *sessions;
  // returns the last fence's sequence number (each fence gets the next).
  uint64_t FencesAfter(uint64_t after_seq, std::vector<uint64_t>* sessions);
  MetaCounters counters();
  MetaStore* store() { return store_.get(); }

 private:
  class InodeLocks;
  class Op;

  MetaServer(std::unique_ptr<MetaStore> store, std::string fs_id);
  absl::Status Format(const std::vector<DeviceInfo>& devices);
  absl::Status Load(const std::vector<DeviceInfo>& extra);
  absl::Status FreeUnusedOrphans();
  absl::Status LoadReplies();

  // The thread's Call on this server, or null.
  const Call* CurrentCall() const;
  // A retry of the thread's Call that was applied before: its kept answer
  // into *out. False when there is none (or no Call).
  template <typename T>
  bool Replayed(T* out);
  // Adds the thread's Call's kept answer `value` and the deletion of the
  // answers it trims to `batch`; returns the Call, or null.
  const Call* KeepIn(Batch* batch, const std::string& value);
  // After the batch of KeepIn(call) is written.
  void Kept(const Call& call);

  absl::Status CheckSession(uint64_t session);
  absl::StatusOr<InodeRecord> ReadInode(uint64_t ino,
                                        const ReadView* view = nullptr);
  // The directory `ino`; NOT_FOUND if it was removed, unless `removed_ok`.
  absl::StatusOr<InodeRecord> ReadDir(uint64_t ino,
                                      const ReadView* view = nullptr,
                                      bool removed_ok = false);
  absl::StatusOr<std::optional<std::pair<uint64_t, uint32_t>>> ReadDentry(
      uint64_t parent, const std::string& name);
  absl::StatusOr<bool> DirIsEmpty(uint64_t ino);
  // Finds `name` in `parent` and returns an operation holding the locks of
  // both inodes, the entry checked again under them; `*ino` is the child.
  absl::StatusOr<std::unique_ptr<Op>> LockEntry(uint64_t session,
                                                uint64_t parent,
                                                const std::string& name,
                                                uint64_t* ino);
  absl::StatusOr<bool> HasHandles(uint64_t ino);

  // Takes `ino` out of `session`'s leases inside `op` (under seq_mu_).
  absl::Status UseLeased(Op& op, uint64_t session, uint64_t ino)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(seq_mu_);
  // Shared by Create, Mkdir and Symlink. `mode`'s permission bits are
  // limited by the directory's default ACL if it has one, else by `umask`.
  absl::StatusOr<Attr> MakeNode(uint64_t session, uint64_t parent,
                                const std::string& name, uint32_t mode,
                                uint32_t umask, uint64_t rdev,
                                const Creds& creds, bool exclusive,
                                const std::string& target, Attr* parent_attr,
                                const ChosenInode* chosen = nullptr);
  // Drops one link of `r` (already updated in memory by the caller's
  // nlink--) inside `op`: frees it, orphans it, or just writes it.
  absl::Status DropLink(Op& op, InodeRecord& r, bool keep_if_open,
                        bool* orphaned);
  // Adds to `op` the deletion of every record of `r` and the freeing of its
  // blocks.
  absl::Status FreeInode(Op& op, const InodeRecord& r);
  absl::Status Truncate(Op& op, InodeRecord& r, uint64_t new_size);
  absl::Status CheckNotAncestor(uint64_t ino, uint64_t dir);

  absl::Status PunchOrZero(Op& op, InodeRecord& r, uint32_t mode,
                           uint64_t offset, uint64_t length);
  absl::Status CollapseOrInsert(Op& op, InodeRecord& r, uint32_t mode,
                                uint64_t offset, uint64_t length);
  // Allocates UNWRITTEN extents for the holes of [start, end) in `set`,
  // stamping them with `gen`. Returns the bytes allocated. All or nothing
  // (NO_SPACE) unless `fit_end` is given: then it fills as far as the free
  // space goes and sets *fit_end to where that is (`end` when all fit);
  // NO_SPACE only when `start` lies in a hole and no block is free.
  absl::StatusOr<uint64_t> FillHoles(Op& op, InodeRecord& r,
                                     class ExtentSet& set, uint64_t start,
                                     uint64_t end, uint64_t gen,
                                     uint64_t* fit_end = nullptr);

  std::unique_ptr<MetaStore> store_;
  const std::string fs_id_;
  std::unique_ptr<InodeLocks> inode_locks_;
  absl::Mutex rename_mu_;

  // Sequencing: guards in-memory state whose changes are persisted, and
  // the submission order of batches.
  absl::Mutex seq_mu_;
  Allocator allocator_ ABSL_GUARDED_BY(seq_mu_);
  uint64_t next_ino_ ABSL_GUARDED_BY(seq_mu_) = 0;
  // What "next_ino" says on disk: no number at or above it went out.
  uint64_t ino_bound_ ABSL_GUARDED_BY(seq_mu_) = 0;
  static constexpr uint64_t kInodeNumbersPerSync = 4096;
  // Inode numbers leased to sessions: [next, end) ranges, oldest first.
  static constexpr size_t kMaxLeases = 4;
  std::map<uint64_t, std::vector<std::pair<uint64_t, uint64_t>>> leases_
      ABSL_GUARDED_BY(seq_mu_);
  uint64_t inode_count_ ABSL_GUARDED_BY(seq_mu_) = 0;
  // Fenced sessions, each with its fence's sequence number.
  std::map<uint64_t, uint64_t> fenced_ ABSL_GUARDED_BY(seq_mu_);
  uint64_t fence_seq_ ABSL_GUARDED_BY(seq_mu_) = 0;
  std::vector<DeviceInfo> devices_ ABSL_GUARDED_BY(seq_mu_);
  MetaCounters counters_ ABSL_GUARDED_BY(seq_mu_);

  // Exactly-once changes (Call). Lock order: after seq_mu_ or alone.
  absl::Mutex calls_mu_;
  // Calls running now: client, seq.
  std::set<std::pair<uint64_t, uint64_t>> running_ ABSL_GUARDED_BY(calls_mu_);
  // The answers kept on disk: client -> seqs.
  std::map<uint64_t, std::set<uint64_t>> kept_ ABSL_GUARDED_BY(calls_mu_);
  uint64_t replayed_ ABSL_GUARDED_BY(calls_mu_) = 0;
};

}  // namespace rangefs::meta

#endif  // RANGEFS_SERVER_META_META_SERVER_H_
