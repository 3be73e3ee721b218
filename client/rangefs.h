// librangefs: one client node of a rangefs cluster, as a C++ library.
//
// A Client connects to the lock manager shards, the metadata server and the
// data servers named by one cluster configuration and offers the calls of a
// POSIX filesystem on inode numbers (like FUSE's low-level API and
// libcephfs), plus path helpers. Its page cache and attribute cache stay
// coherent with every other node through the cluster's DATA, INVAL and
// INODE range locks (DESIGN.md; docs/client.md says how).
//
// Errors are absl::Status values carrying a POSIX errno: ErrnoOf() in
// common/status.h. No gRPC or protobuf type appears here.
//
// Thread-safe: any number of threads may call a Client at once.
#ifndef RANGEFS_CLIENT_RANGEFS_H_
#define RANGEFS_CLIENT_RANGEFS_H_

#include <sys/types.h>

#include <sys/uio.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/cluster_config.h"

namespace rangefs::client {

inline constexpr uint64_t kRootIno = 1;

struct Timespec {
  int64_t sec = 0;
  uint32_t nsec = 0;
};

// Attributes of an inode, as struct stat.
struct Attr {
  uint64_t ino = 0;
  uint32_t mode = 0;
  uint32_t nlink = 0;
  uint32_t uid = 0;
  uint32_t gid = 0;
  uint64_t size = 0;
  uint64_t blocks = 0;  // 512-byte units allocated.
  uint32_t blksize = 0;
  uint64_t rdev = 0;
  Timespec atime, mtime, ctime, btime;
  uint64_t generation = 0;
};

// Which fields of SetAttr apply (OR of the bits).
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

// SetXattr flag: setting system.posix_acl_access also drops S_ISGID (the
// caller is neither in the file's group nor privileged).
inline constexpr uint32_t kXattrKillSgid = 4;

struct SetAttrArgs {
  uint32_t valid = 0;
  uint32_t mode = 0;
  uint32_t uid = 0;
  uint32_t gid = 0;
  uint64_t size = 0;
  Timespec atime, mtime, ctime;
};

// The caller of a namespace operation (new files get its ids).
struct Creds {
  uint32_t uid = 0;
  uint32_t gid = 0;
  std::vector<uint32_t> groups;
  uint32_t umask = 0;
};

struct DirEntry {
  std::string name;
  uint64_t ino = 0;
  uint32_t type = 0;  // File type bits of st_mode.
  Attr attr;          // Only from ReadDir(..., plus = true).
};

struct DirPage {
  std::vector<DirEntry> entries;
  bool eof = false;
};

struct FsStat {
  uint32_t block_size = 0;
  // `files` are the inodes in use, `free_files` how many more can be made
  // (statfs's f_files is their sum).
  uint64_t total_blocks = 0, free_blocks = 0, files = 0, free_files = 0;
  uint32_t name_max = 0;
};

// fallocate(2) mode bits (the values of linux/falloc.h).
enum FallocateBits : uint32_t {
  kFallocKeepSize = 1,
  kFallocPunchHole = 2,
  kFallocCollapseRange = 8,
  kFallocZeroRange = 16,
  kFallocInsertRange = 32,
};

struct ClientOptions {
  std::string node_name = "node";
  uint64_t cache_bytes = 256ull << 20;  // Page cache cap.
  // Writers are throttled (they write back) above this many dirty bytes;
  // the background flusher starts at half of it.
  uint64_t dirty_limit_bytes = 64ull << 20;
  uint64_t writeback_interval_ms = 1000;  // Age of dirty data written back.
  // Sequential readahead window, filled in the background.
  uint64_t readahead_bytes = 8ull << 20;
  uint64_t lease_ms = 10000;
  uint64_t min_hold_ms = 10;  // See LockCacheOptions.
  uint64_t idle_release_ms = 30000;
  uint64_t rpc_timeout_ms = 30000;  // One server call, waiting for it to be up.
  // A read or write whose buffer keeps faulting under the call's locks (it
  // maps the very range the call locks) falls back after 8 fruitless
  // retries: direct I/O continues buffered (written back before
  // returning), then a window is staged through a private copy made
  // outside the locks. false: EDEADLK instead.
  bool fault_fallbacks = true;
  // A create of a new regular file returns before the metadata server
  // has it (leased inode numbers; the create is sent in the background,
  // ahead of every later metadata call). false: every create waits.
  bool create_ahead = true;
};

// Counters of what a node did (tests and benchmarks read them).
struct ClientStats {
  uint64_t page_hits = 0, page_misses = 0, pages_cached = 0, dirty_pages = 0;
  uint64_t map_cache_hits = 0, map_calls = 0;
  uint64_t writeback_pages = 0, stale_retries = 0, short_copies = 0;
  uint64_t inval_demotes = 0, inode_demotes = 0, pages_dropped = 0;
  uint64_t lost_dirty_pages = 0, direct_fallbacks = 0, staged_copies = 0;
  // Background readaheads that ran (whole or in part), ones that gave up
  // (a lock not grantable at once, an error), pages they brought in.
  uint64_t readaheads = 0, readaheads_abandoned = 0, readahead_pages = 0;
  // Fills for a cache above that went through its pipe, and ones that
  // started to but went through the node's pages after all (the pipe
  // filled up, a piece had no bulk channel).
  uint64_t piped_fills = 0, pipe_fallbacks = 0;
  // Memory mappings (Mmap): faults served, faults refused because the
  // thread was copying under locks (its copy stopped short) or would have
  // waited on its own lock, SIGBUS sent (past EOF, I/O error), pages moved.
  uint64_t read_faults = 0, write_faults = 0, private_faults = 0;
  uint64_t refused_faults = 0, deadlock_faults = 0, sigbus_faults = 0;
  uint64_t mapped_pages_collected = 0, mapped_pages_zapped = 0;
  uint64_t lock_local_hits = 0, lock_requests = 0, lock_callbacks = 0;
  uint64_t session_id = 0, sessions_lost = 0;
  uint64_t meta_calls = 0;  // Calls to the metadata server.
  // Creates sent ahead (Create returned before the server had the file),
  // and those of them the server then refused.
  uint64_t creates_ahead = 0, creates_ahead_failed = 0;
};

// A cache stacked above the node, such as the FUSE kernel page cache: it
// holds file data the node gave it (Client::ReadForCache) only while the
// node's INVAL locks cover that data, like the node's own page cache.
class CacheAbove {
 public:
  virtual ~CacheAbove() = default;
  // The node is giving up (or has lost) its INVAL lock on [offset, offset +
  // length) of `ino`: drop every copy of that range, handing dirty ones to
  // Client::WriteFromCache first. Runs on the node's callback threads
  // before its own write-back; it must not wait for a call into the node
  // that waits for a cluster lock.
  virtual void Invalidate(uint64_t ino, uint64_t offset, uint64_t length) = 0;
  // The attributes of `ino` this node served may be out of date: the node
  // is giving up (or lost) its INODE lock, or its own write-back changed
  // them. Must not block.
  virtual void InvalidateAttributes(uint64_t /*ino*/) {}
  // The names this node served (lookups, and the entries it made) may be
  // out of date: it is giving up (or lost) a directory's INODE lock, or it
  // does not know whether a change of a name happened. A name is good
  // while the node holds its directory's INODE lock without a break since
  // the answer; every break comes here, before the lock goes. Must not
  // block.
  virtual void InvalidateNames() {}
};

class Client {
 public:
  // Connects (opening the lock sessions) and returns a ready node.
  static absl::StatusOr<std::unique_ptr<Client>> Connect(
      const ClusterConfig& config, const ClientOptions& options = {});
  // Unmount: writes back dirty data, gives every lock back, closes the
  // sessions. Open handles are closed.
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // Writes back everything dirty and waits until it and every metadata
  // change are stable (syncfs).
  absl::Status SyncAll();
  // Drops the node's clean cached pages (drop_caches for this node): the
  // next reads come from the data servers. Dirty pages and locks stay.
  // Returns how many pages went.
  uint64_t DropCaches();

  // ---- namespace (inode-based)
  // "." is `parent` itself and ".." its parent directory (the root's is
  // the root).
  absl::StatusOr<Attr> Lookup(uint64_t parent, const std::string& name);
  absl::StatusOr<Attr> GetAttr(uint64_t ino);
  absl::StatusOr<Attr> SetAttr(uint64_t ino, const SetAttrArgs& args);
  // An access to `ino` (a read, a listing): moves its atime to now if
  // `strict`, else by relatime's rule (the atime is not after the mtime or
  // the ctime, or is a day old). Takes the INODE EX only to move it; the
  // ctime stays.
  absl::Status Accessed(uint64_t ino, bool strict);
  absl::StatusOr<Attr> Mknod(uint64_t parent, const std::string& name,
                             uint32_t mode, uint64_t rdev, const Creds& creds);
  absl::StatusOr<Attr> Mkdir(uint64_t parent, const std::string& name,
                             uint32_t mode, const Creds& creds);
  absl::StatusOr<Attr> Symlink(uint64_t parent, const std::string& name,
                               const std::string& target, const Creds& creds);
  absl::StatusOr<Attr> Link(uint64_t ino, uint64_t new_parent,
                            const std::string& new_name);
  absl::Status Unlink(uint64_t parent, const std::string& name);
  absl::Status Rmdir(uint64_t parent, const std::string& name);
  // flags: RENAME_NOREPLACE (1), RENAME_EXCHANGE (2).
  absl::Status Rename(uint64_t old_parent, const std::string& old_name,
                      uint64_t new_parent, const std::string& new_name,
                      uint32_t flags = 0);
  absl::StatusOr<std::string> Readlink(uint64_t ino);
  // Entries after `after` in name order ("" from the start).
  absl::StatusOr<DirPage> ReadDir(uint64_t ino, const std::string& after,
                                  uint32_t max_entries, bool plus);
  absl::StatusOr<FsStat> StatFs();
  absl::StatusOr<std::string> GetXattr(uint64_t ino, const std::string& name);
  // flags: XATTR_CREATE (1), XATTR_REPLACE (2), and for a POSIX access ACL
  // kXattrKillSgid. The server keeps POSIX ACLs' rules: the mode follows
  // system.posix_acl_access, a chmod rewrites it, and new inodes inherit a
  // directory's system.posix_acl_default (umask then unused). Permissions
  // are the caller's to check (the mount's kernel does).
  absl::Status SetXattr(uint64_t ino, const std::string& name,
                        const std::string& value, uint32_t flags);
  absl::StatusOr<std::vector<std::string>> ListXattr(uint64_t ino);
  absl::Status RemoveXattr(uint64_t ino, const std::string& name);

  // ---- open files. A handle is a small number owned by the caller.
  // flags: O_RDONLY/O_WRONLY/O_RDWR, O_DIRECT, O_APPEND, O_TRUNC, O_SYNC,
  // O_DSYNC (O_CREAT and O_EXCL belong to Create).
  absl::StatusOr<uint64_t> Open(uint64_t ino, int flags);
  // Creates (or with !O_EXCL opens) a regular file and opens it.
  absl::StatusOr<std::pair<Attr, uint64_t>> Create(uint64_t parent,
                                                   const std::string& name,
                                                   uint32_t mode, int flags,
                                                   const Creds& creds);
  // Releases the handle; reports a deferred write-back error (EIO).
  absl::Status Close(uint64_t fh);
  // EIO if dirty data of the handle's file was lost since it was opened
  // (what close(2) reports through FUSE's flush); changes nothing.
  absl::Status CheckError(uint64_t fh);
  // How one call's bytes go: as the handle was opened (O_DIRECT or not),
  // or through the node's cache, or straight between the caller and the
  // data servers, whatever the open said. A FUSE mount needs the choice
  // per request: the kernel sends its O_DIRECT requests and its page-cache
  // requests (faults of a mapping of the same file) on one handle.
  enum class Io { kAsOpened, kBuffered, kDirect };
  absl::StatusOr<size_t> Read(uint64_t fh, void* buf, size_t len,
                              uint64_t offset, Io io = Io::kAsOpened);
  // ---- a cache above the node (docs/fuse.md, kernel page cache).
  // `cache` must outlive the client, or be unset (nullptr) first.
  void SetCacheAbove(CacheAbove* cache);
  // Read for the cache above: `deliver(iov, n, bytes)` is called with the
  // bytes read, in the `n` buffers of `iov` (valid during the call only),
  // while the node's INVAL lock still covers them (SH, or EX when
  // `exclusive`: the cache above may dirty them), so an invalidation for a
  // callback can only come after the cache has them. On EOF or an error
  // `deliver` is not called (the status says which: 0 bytes is OK). The
  // node keeps no copy of the clean pages it hands over (the cache above
  // has them): its memory holds what is read ahead, not a second copy.
  using Delivery =
      std::function<void(const struct iovec* iov, int n, size_t bytes)>;
  // A pipe a fill may go through instead: the data servers' bytes are
  // spliced into `write_fd` (no copy through this process) and
  // `deliver(bytes)` takes them out of `read_fd`, under the same locks
  // as the other delivery. Both ends non-blocking; `capacity` is the
  // pipe's size (F_GETPIPE_SZ). Used when the node caches no page of the
  // range, the read is at most half the capacity and every piece of it
  // has a bulk channel; otherwise, and when the pipe fills up first, the
  // fill goes through the node's pages and `deliver` of ReadForCache. The
  // pipe is empty again when ReadForCache returns.
  struct FillPipe {
    int read_fd = -1;
    int write_fd = -1;
    size_t capacity = 0;
    std::function<void(size_t bytes)> deliver;
  };
  absl::StatusOr<size_t> ReadForCache(uint64_t fh, size_t len, uint64_t offset,
                                      bool exclusive, const Delivery& deliver,
                                      const FillPipe* pipe = nullptr);
  // Dirty data the cache above writes back: it got the pages under the
  // node's INVAL EX, which still holds (often this runs inside the node's
  // own callback, from the cache's Invalidate). Goes into the node's page
  // cache without taking locks; EIO when the node holds no INVAL EX over
  // the range any more (the session was lost).
  absl::StatusOr<size_t> WriteFromCache(uint64_t fh, const void* buf,
                                        size_t len, uint64_t offset);
  // With O_APPEND the offset is ignored: the data goes at the end.
  absl::StatusOr<size_t> Write(uint64_t fh, const void* buf, size_t len,
                               uint64_t offset, Io io = Io::kAsOpened);
  // Data, attributes, and every metadata change the metadata server
  // acknowledged before the call (creates, renames: see docs) are durable.
  absl::Status Fsync(uint64_t fh, bool datasync);
  // fsync(2) of a directory: its entries (every acknowledged metadata
  // change) are durable.
  absl::Status FsyncDir(uint64_t ino);
  absl::Status Fallocate(uint64_t fh, uint32_t mode, uint64_t offset,
                         uint64_t length);
  // whence: SEEK_DATA or SEEK_HOLE. ENXIO at or past EOF.
  absl::StatusOr<uint64_t> Seek(uint64_t fh, uint64_t offset, int whence);
  absl::StatusOr<Attr> FileAttr(uint64_t fh);
  uint64_t InoOf(uint64_t fh);

  // ---- memory mappings (docs/mmap.md). Mmap returns ordinary memory
  // whose pages fault through the node (userfaultfd): reads and stores are
  // coherent with every node under the INVAL locks, as read/write are.
  // flags: MAP_SHARED or MAP_PRIVATE; offset page-aligned; access past EOF
  // gets SIGBUS. The mapping outlives the handle. Munmap takes the whole
  // mapping and writes back what it stored; Msync(MS_SYNC) writes back and
  // flushes the data servers; Fsync of the file covers mapped stores too.
  absl::StatusOr<void*> Mmap(uint64_t fh, uint64_t offset, size_t length,
                             int prot, int flags);
  absl::Status Msync(void* addr, size_t length, int flags);
  absl::Status Munmap(void* addr, size_t length);

  // ---- record locks (fcntl and flock), cluster-wide through lockd. An
  // owner is what the kernel calls the lock owner (FUSE's lock_owner).
  // fcntl ranges are [start, end) below 2^63 (end kInfinity: to EOF and
  // beyond); flock locks the whole file in a space of its own.
  enum class LockType { kRead, kWrite, kUnlock };
  struct LockConflict {
    uint64_t start = 0, end = 0;
    LockType type = LockType::kUnlock;
  };
  // wait=false: EAGAIN if another owner holds a conflicting lock; EDEADLK
  // if waiting would deadlock; EINTR if ReleaseLocks cancelled the wait.
  absl::Status SetLock(uint64_t ino, uint64_t start, uint64_t end,
                       LockType type, uint64_t owner, bool wait, bool flock);
  // F_GETLK: a conflicting lock of another owner, if any.
  absl::StatusOr<std::optional<LockConflict>> GetLock(uint64_t ino,
                                                      uint64_t start,
                                                      uint64_t end,
                                                      LockType type,
                                                      uint64_t owner);
  // Makes the owner's waiting SetLock calls on `ino` return EINTR (its
  // process got a signal).
  void CancelLockWait(uint64_t ino, uint64_t owner);
  // Every waiting SetLock returns EINTR (the mount is going away).
  void CancelAllLockWaits();
  // The owner closed the file: drop its fcntl locks on `ino` (and with
  // `flock` its flock) and cancel its waits.
  void ReleaseLocks(uint64_t ino, uint64_t owner, bool flock);

  // ---- path helpers ("/a/b" from the root; no symlinks followed).
  absl::StatusOr<Attr> Resolve(const std::string& path);
  // open(2): O_CREAT / O_EXCL / O_TRUNC honoured.
  absl::StatusOr<uint64_t> OpenPath(const std::string& path, int flags,
                                    uint32_t mode = 0644);

  ClientStats Stats();
  uint64_t session_id();

  class Impl;

 private:
  explicit Client(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace rangefs::client

#endif  // RANGEFS_CLIENT_RANGEFS_H_
