// LockCache: a node's cache of cluster locks, GFS2's glock state machine.
//
// The node holds cluster locks (owner: its session, task 0) on behalf of
// all its threads and keeps them after use. A thread ("task") asks for a
// lock with Lock(); the request is satisfied locally, without an RPC, when
// the node's cluster locks already cover it, and threads are arbitrated
// among themselves by a local RangeLockTable (owner: the task), FIFO.
// A task that would wait on a lock it holds itself gets EDEADLK at once.
//
// Lock() first makes sure the node's cluster mode covers the request
// (asking lockd, converting SH->EX when needed), then queues locally, then
// checks the coverage again (a callback may have taken it meanwhile) and
// retries if it is gone. A thread never holds a local lock while it waits
// for lockd, so a blocking callback only ever waits for threads that are
// doing their I/O.
//
// A blocking callback from lockd runs on the cache's own worker threads:
// after the minimum hold time it queues a "demote" holder in the local
// table (blocking new local holders behind it, FIFO) in the mode that
// conflicts with what must go (EX to give up everything, SH to keep SH,
// DF to keep DF), waits for the conflicting local holders to finish, runs
// the registered hooks of the resource kind (INVAL: write back, then drop
// cached copies), drops its coverage, and sends the release or downgrade
// of exactly the called-back range.
//
// A cached lock is used only while the session's lease is known to run
// (LockClient::trusted): when lockd has not answered for most of a lease
// (a partition, a stalled lockd), tasks wait, and every cached lock of
// that shard is given back through the hooks, so the node stops serving
// cached data before lockd can hand the locks to another node.
//
// If lockd evicts the node, every cached lock is gone: the hooks' Lost()
// runs for everything cached (dirty data is reported lost, never written
// later), pending requests fail with FENCED, and the cache opens a new
// session with a new id at every shard.
//
// Thread-safe. Lock order: mu_ -> the local table's mutex. Hooks run with
// no cache mutex held.
#ifndef RANGEFS_CLIENT_LOCK_CACHE_H_
#define RANGEFS_CLIENT_LOCK_CACHE_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "client/lock_client.h"
#include "common/cluster_config.h"
#include "common/thread_pool.h"
#include "lockmgr/range_lock_table.h"

namespace rangefs::client {

using lockmgr::LockKind;
using lockmgr::LockMode;
using lockmgr::ResourceId;

// What a node does to its caches around its cluster locks; registered per
// lock kind (the client's page cache registers INVAL hooks).
class LockHooks {
 public:
  virtual ~LockHooks() = default;
  // The node's lock on `range` is about to drop to at most `keep`. No local
  // holder conflicts meanwhile. INVAL: for SH write back dirty pages; for
  // DF or UN write back, then drop every cached copy of the range.
  virtual void Demote(const ResourceId& res, const ByteRange& range,
                      LockMode keep) = 0;
  // The session was lost: every lock on `range` is gone. Drop cached
  // copies; dirty data is lost (report EIO), never written later. POSIX:
  // a record lock of the node's processes is gone.
  virtual void Lost(const ResourceId& res, const ByteRange& range) = 0;
};

struct LockCacheOptions {
  std::string node_name = "node";
  uint64_t lease_ms = 10000;
  // A callback is honoured no earlier than this after the node was granted
  // the resource, so two nodes writing one page do not bounce the lock at
  // RPC speed (GFS2's gl_hold_time). 0 for ping-pong measurements.
  uint64_t min_hold_ms = 10;
  // Cached locks unused this long are given back (0: only on callback).
  uint64_t idle_release_ms = 30000;
  // A callback on a resource no local task has used for this long gives
  // back the node's whole lock on it (down to the mode the callback lets
  // it keep), not only the range asked for: a reader after a quiet writer
  // then pays one callback, not one per page (0: only the range asked).
  uint64_t expand_idle_ms = 100;
  // Resources cached at most; beyond it the least recently used go back.
  size_t max_cached_resources = 65536;
  int callback_threads = 4;
};

// A lock held by a local task. Give it back with Unlock exactly once.
struct LocalLock {
  ResourceId resource;
  ByteRange range;
  LockMode mode = LockMode::kUn;
  uint64_t task = 0;
};

struct LockCacheStats {
  uint64_t local_hits = 0;  // Lock() with no RPC.
  uint64_t cluster_requests = 0;
  uint64_t callbacks = 0;
  uint64_t demotes = 0;
  uint64_t idle_releases = 0;
  uint64_t lapse_releases = 0;  // Given back when the lease lapsed.
  uint64_t replays = 0;
  uint64_t sessions_lost = 0;
  uint64_t cached_resources = 0;
};

class LockCache : public LockClientListener {
 public:
  LockCache(const ClusterConfig& config, const LockCacheOptions& options);
  ~LockCache() override;  // Stop().
  LockCache(const LockCache&) = delete;
  LockCache& operator=(const LockCache&) = delete;

  // Opens the session with every lockd shard.
  absl::Status Start();
  // Gives every cached lock back (running the hooks) and closes the
  // sessions.
  void Stop();

  // Hooks for one lock kind; `hooks` must outlive the cache.
  void SetHooks(LockKind kind, LockHooks* hooks);

  // Blocks until task `task` holds `mode` on `range` of `res`. Errors:
  // DEADLOCK (the task holds a conflicting lock), WOULD_BLOCK (try_only),
  // TIMED_OUT (timeout_ms passed, 0 = none), FENCED (session lost),
  // INVALID_ARGUMENT.
  absl::StatusOr<LocalLock> Lock(const ResourceId& res, const ByteRange& range,
                                 LockMode mode, uint64_t task,
                                 bool try_only = false,
                                 uint64_t timeout_ms = 0);
  void Unlock(const LocalLock& lock);

  // POSIX record locks (fcntl, flock) of local lock owner `owner` on
  // resource (ino, POSIX): held at lockd by (session, owner), never cached
  // and never called back (lockd sends no callbacks for them: a waiter
  // waits until the holder unlocks or its node is evicted). SH/EX replace
  // the owner's locks in `range` (upgrade, downgrade, split); UN unlocks.
  // wait=false: WOULD_BLOCK if another owner conflicts. DEADLOCK when
  // waiting would close a cycle; INTERRUPTED-style CANCELLED (kTimedOut)
  // if CancelPosix ran for the owner meanwhile.
  absl::Status PosixLock(uint64_t ino, const ByteRange& range, LockMode mode,
                         uint64_t owner, bool wait);
  // Makes the owner's queued PosixLock calls on `ino` give up (the owner's
  // process is gone: its file was closed).
  void CancelPosix(uint64_t ino, uint64_t owner);
  // Every queued PosixLock call gives up (the mount is going away).
  void CancelAllPosix();
  struct PosixConflict {
    ByteRange range;
    LockMode mode = LockMode::kUn;
    uint64_t session = 0;
    uint64_t owner = 0;
  };
  // A lock of another owner that conflicts with `mode` on `range`
  // (F_GETLK), asked from lockd; nullopt if none.
  absl::StatusOr<std::optional<PosixConflict>> TestPosix(uint64_t ino,
                                                         const ByteRange& range,
                                                         LockMode mode,
                                                         uint64_t owner);

  // The session id this node uses now (it changes after an eviction).
  uint64_t session_id() const { return session_id_.load(); }
  // Bumped each time the session is lost; I/O paths compare it.
  uint64_t incarnation() const { return incarnation_.load(); }
  // The session id and incarnation, read together: data made under one
  // incarnation is written only with that incarnation's session.
  struct SessionSnapshot {
    uint64_t session = 0;
    uint64_t incarnation = 0;
  };
  SessionSnapshot Snapshot();
  // Whether the node's cluster locks cover `range` in `mode` right now
  // (a hint that stays true only while a local lock pins it, or until the
  // kind's hooks are called for the range).
  bool Covered(const ResourceId& res, const ByteRange& range, LockMode mode);
  // Whether local task `task` holds a lock on `range` of `res` that a
  // request for `mode` by any other task would wait for (the page-fault
  // handler asks this about the faulting thread: serving the fault would
  // wait on that very thread).
  bool TaskConflicts(const ResourceId& res, const ByteRange& range,
                     LockMode mode, uint64_t task);
  LockCacheStats Stats();

  // LockClientListener: OnMessage on a stream reaction (short locks only),
  // the others on a shard client's event thread.
  void OnMessage(uint32_t shard, uint64_t session,
                 const proto::ServerMessage& m) override;
  void OnReconnected(uint32_t shard, uint64_t session, bool in_grace) override;
  void OnEvicted(uint32_t shard, uint64_t session,
                 const std::string& reason) override;
  // Every cached lock of the shard goes back, as on an idle release (the
  // hooks write dirty data back and drop cached copies), and no task uses
  // a cached lock of the shard until lockd answers again.
  void OnLeaseLapsed(uint32_t shard, uint64_t session) override;

 private:
  struct Piece {
    uint64_t end;
    LockMode mode;
  };
  struct Resource {
    std::map<uint64_t, Piece> cover;  // The node's cluster locks.
    int64_t granted_ns = 0;           // Last cluster grant.
    int64_t used_ns = 0;              // Last local use.
    int holders = 0;                  // Local holders right now.
    uint64_t grant_seq = 0;           // Highest grant of lockd applied.
    int demoting = 0;                 // Demotes in progress.
  };
  struct Pending {  // A request to lockd.
    ResourceId resource;
    ByteRange range;
    LockMode mode = LockMode::kUn;
    bool done = false;
    bool replay = false;
    bool try_only = false;  // Joined only by try-locks, and they only this.
    absl::Status status;
    uint64_t posix_owner = 0;  // For POSIX resources: the lock owner.
  };

  static bool Covers(const Resource& r, const ByteRange& range, LockMode mode);
  void SetCover(Resource& r, const ByteRange& range, LockMode mode)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The first run of `range` (from its first position on) that the node's
  // locks do not cover in `mode`; empty at range.end when all is covered.
  static ByteRange FirstUncovered(const Resource& r, const ByteRange& range,
                                  LockMode mode);
  void ReduceCover(Resource& r, const ByteRange& range, LockMode keep)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  LockClient* ClientFor(const ResourceId& res)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void CancelPosixWhere(const std::function<bool(const Pending&)>& which);
  proto::NodeMessage AcquireMessage(uint64_t id, const ResourceId& res,
                                    const ByteRange& range, LockMode mode,
                                    uint64_t task, bool try_only, bool replay)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Re-establishes `r`'s locks at a restarted lockd shard.
  void Replay(uint32_t shard, const ResourceId& res, const Resource& r,
              uint64_t task) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  absl::Status EnsureCovered(const ResourceId& res, const ByteRange& range,
                             LockMode mode, bool try_only, absl::Time deadline)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Waits for a local-table ticket to be granted; false on deadline.
  bool AwaitLocal(uint64_t ticket, absl::Time deadline)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void NoteLocalGrants(const lockmgr::Effects& e)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Gives up `range` of `res` down to `keep` (callback, idle, shutdown).
  // Waits for conflicting local holders until `deadline` (shutdown only;
  // callbacks wait as long as it takes, lockd's timeout is the bound).
  void Demote(const ResourceId& res, const ByteRange& range, LockMode keep,
              uint64_t callback_id,
              absl::Time deadline = absl::InfiniteFuture());
  void LoseSession(const std::string& reason);
  void Janitor();
  // Gives the node's whole lock on `res` back on a worker thread.
  void GiveBackLocked(const ResourceId& res) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void OpenSessions(uint64_t session_id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const ClusterConfig config_;
  const LockCacheOptions options_;
  std::atomic<uint64_t> session_id_{0};
  std::atomic<uint64_t> incarnation_{0};
  lockmgr::RangeLockTable local_;

  absl::Mutex mu_;
  std::vector<std::unique_ptr<LockClient>> clients_ ABSL_GUARDED_BY(mu_);
  std::map<ResourceId, Resource> resources_ ABSL_GUARDED_BY(mu_);
  std::map<uint64_t, Pending> pending_ ABSL_GUARDED_BY(mu_);  // By request id.
  // POSIX locks held at lockd, per (resource, owner), for replay after a
  // lockd restart.
  std::map<std::pair<ResourceId, uint64_t>, Resource> posix_
      ABSL_GUARDED_BY(mu_);
  // Record lock requests given up by their caller: a grant that raced
  // with the cancel is given back at once. By request id: (resource,
  // owner).
  std::map<uint64_t, std::pair<ResourceId, uint64_t>> cancelled_posix_
      ABSL_GUARDED_BY(mu_);
  void SendPosixRelease(const ResourceId& res, uint64_t owner,
                        const ByteRange& range)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Waits until lockd has handled everything sent before on `c`'s stream.
  absl::Status BarrierLocked(LockClient* c) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  uint64_t next_barrier_ ABSL_GUARDED_BY(mu_) = 1;
  std::set<uint64_t> barriers_done_ ABSL_GUARDED_BY(mu_);
  std::set<uint64_t> local_granted_ ABSL_GUARDED_BY(mu_);
  std::map<LockKind, LockHooks*> hooks_ ABSL_GUARDED_BY(mu_);
  uint64_t next_request_ ABSL_GUARDED_BY(mu_) = 1;
  uint64_t next_demote_task_ ABSL_GUARDED_BY(mu_) = 1ull << 62;
  LockCacheStats stats_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool recovering_ ABSL_GUARDED_BY(mu_) = false;

  std::unique_ptr<ThreadPool> workers_;  // Callbacks and demotes.
  std::thread janitor_;
  std::thread recovery_;
};

}  // namespace rangefs::client

#endif  // RANGEFS_CLIENT_LOCK_CACHE_H_
