// RangeLockTable: byte-range locks on (inode, kind) resources with SH, DF
// and EX modes. The heart of rangefs-lockd and of a node's local lock cache.
// It decides; it never waits: every call returns at once with what happened
// (grants, in order, and the blocking callbacks holders must be sent), and
// the caller delivers those. Semantics in detail: docs/lock-table.md.
//
//  * Granted locks never overlap unless their modes are compatible
//    (SH-SH, DF-DF).
//  * A request that cannot be granted is queued FIFO per resource. A queued
//    request blocks every later request that overlaps it with an
//    incompatible mode, so a stream of readers cannot starve a writer.
//    Conversions (upgrades) queue ahead of plain requests, in their own FIFO
//    order.
//  * For every granted lock that blocks a queued request, the holder is
//    reported in Effects::callbacks with the part of the range it must give
//    up and the highest mode it may keep; the same demand is not repeated.
//  * Reduce() releases (keep = UN) or downgrades part of an owner's locks;
//    locks split as needed. Grants it makes possible come back in order.
//  * An owner never waits on itself: a request conflicting with a lock of
//    the same owner, or queued behind a request that waits on such a lock,
//    fails with DEADLOCK at once. Record locks (kind POSIX, never called
//    back) also fail with DEADLOCK when the wait would close a cycle of
//    owners waiting for each other, across resources (F_SETLKW's EDEADLK).
//  * An uncontended, non-exact request is granted up to the neighbouring
//    incompatible locks and queued requests (the whole range when alone).
//
// Cost: O(log n + k) per call for n locks on the resource and k locks or
// requests the call has to look at; never proportional to range lengths.
// Thread-safe: one internal mutex; no call blocks.
#ifndef RANGEFS_LOCKMGR_RANGE_LOCK_TABLE_H_
#define RANGEFS_LOCKMGR_RANGE_LOCK_TABLE_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <unordered_map>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "common/range.h"
#include "lockmgr/lock_types.h"

namespace rangefs::lockmgr {

struct LockRequest {
  ResourceId resource;
  Owner owner;
  LockMode mode = LockMode::kSh;  // SH, DF or EX.
  ByteRange range;
  // Grant exactly `range`, never more.
  bool exact = false;
  // Fail with WOULD_BLOCK instead of queueing; sends no callbacks.
  bool try_only = false;
  // Upgrade: the owner's own locks in `range` do not conflict, and the grant
  // replaces them. Granted exactly; queued ahead of plain requests.
  bool convert = false;
  // Opaque to the table; returned with the grant (e.g. a wire request id).
  uint64_t tag = 0;
};

// A request that was granted.
struct Grant {
  uint64_t ticket = 0;
  uint64_t tag = 0;
  ResourceId resource;
  Owner owner;
  LockMode mode = LockMode::kUn;
  ByteRange range;         // As granted; contains the requested range.
  uint64_t grant_seq = 0;  // Increasing with each grant of the table.
};

// A holder must make its caches obey, then Reduce(resource, holder, range,
// keep_mode).
struct Callback {
  ResourceId resource;
  Owner holder;
  ByteRange range;
  LockMode keep_mode = LockMode::kUn;
};

// What a call caused. Grants are in the order they happened.
struct Effects {
  std::vector<Grant> grants;
  std::vector<Callback> callbacks;
};

struct AcquireResult {
  uint64_t ticket = 0;  // Names the request (for Cancel) and its grant.
  bool granted = false;
  // When granted, grants[0] is this request's grant. callbacks holds what
  // queueing (or, for a conversion, granting) the request requires.
  Effects effects;
};

// One row of Dump().
struct LockInfo {
  ResourceId resource;
  Owner owner;
  LockMode mode = LockMode::kUn;
  ByteRange range;
  bool waiting = false;  // A queued request rather than a granted lock.
  bool convert = false;
  uint64_t ticket = 0;    // Request ticket (waiting) or lock id (granted).
  uint64_t since_ns = 0;  // Monotonic time it was granted or queued.
  bool callback_pending = false;
  ByteRange callback_range;
  LockMode callback_keep = LockMode::kUn;
};

struct LockTableStats {
  uint64_t resources = 0;
  uint64_t locks = 0;
  uint64_t waiters = 0;
  uint64_t grants = 0;
  uint64_t queued = 0;
  uint64_t callbacks = 0;
  uint64_t deadlocks = 0;
  uint64_t would_block = 0;
  uint64_t absorbed = 0;  // Locks absorbed by a covering grant of their owner.
};

class RangeLockTable {
 public:
  RangeLockTable();
  ~RangeLockTable();
  RangeLockTable(const RangeLockTable&) = delete;
  RangeLockTable& operator=(const RangeLockTable&) = delete;

  // Grants `req` now or queues it. Errors: INVALID_ARGUMENT (range or mode),
  // DEADLOCK (the owner would wait on itself), WOULD_BLOCK (try_only and not
  // grantable now). An error changes nothing.
  absl::StatusOr<AcquireResult> Acquire(const LockRequest& req);

  // Reduces the owner's granted locks on `range` to at most `keep`: kUn
  // releases, SH or DF downgrades an EX (a SH or DF lock told to keep the
  // other mode is released). Locks partly inside `range` split. Reducing
  // what the owner does not hold is a no-op. INVALID_ARGUMENT for a bad
  // range or keep == EX.
  // Only locks from grants up to `upto_grant_seq` are reduced (a holder
  // names the last grant it had seen, so a grant crossing its release is
  // not cut).
  absl::StatusOr<Effects> Reduce(const ResourceId& resource, const Owner& owner,
                                 const ByteRange& range, LockMode keep,
                                 uint64_t upto_grant_seq = UINT64_MAX);
  absl::StatusOr<Effects> Release(const ResourceId& resource,
                                  const Owner& owner, const ByteRange& range) {
    return Reduce(resource, owner, range, LockMode::kUn);
  }

  // Withdraws a queued request (deadline passed, caller gave up).
  // NOT_FOUND when the ticket is not waiting (already granted or unknown).
  absl::StatusOr<Effects> Cancel(uint64_t ticket);

  // Drops every lock and queued request of every owner of `session`
  // (eviction, clean shutdown).
  Effects DropSession(uint64_t session);

  // True if `owner` holds, somewhere in `range`, a lock stronger than
  // `keep` (a callback demanding `keep` is not yet satisfied).
  bool Exceeds(const ResourceId& resource, const Owner& owner,
               const ByteRange& range, LockMode keep) const;
  // True if `owner` holds, somewhere in `range`, a lock incompatible with
  // `mode`: a request of another owner for `mode` there would wait for it.
  bool HoldsConflicting(const ResourceId& resource, const Owner& owner,
                        const ByteRange& range, LockMode mode) const;

  // The granted locks of every owner of `session` (with their tags).
  std::vector<Grant> LocksOf(uint64_t session) const;

  // Locks and queued requests, for one inode or (ino == 0) all.
  std::vector<LockInfo> Dump(uint64_t ino = 0) const;
  LockTableStats Stats() const;

 private:
  struct Resource;
  struct Lock;
  struct Waiter;
  class Collector;

  // Whether one of `owner`'s locks overlapping `range` satisfies `pred`.
  bool AnyOwnLock(const ResourceId& resource, const Owner& owner,
                  const ByteRange& range,
                  const std::function<bool(LockMode)>& pred) const;
  Resource& GetResource(const ResourceId& id)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void MaybeDropResource(const ResourceId& id)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  absl::Status CheckDeadlock(const Resource& r, const LockRequest& req) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The owners whose granted locks, or queued requests ahead of it, the
  // request (queued as `ticket`, or about to be) waits for.
  void BlockersOf(const Resource& r, const LockRequest& req, uint64_t ticket,
                  std::vector<Owner>* out) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Record locks: DEADLOCK if queueing `req` would close a cycle of owners
  // each waiting for the next, over any record-lock resources.
  absl::Status CheckWaitCycle(const Resource& r, const LockRequest& req,
                              uint64_t ticket) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool BlockedByGranted(const Resource& r, const LockRequest& req) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool BlockedByWaiter(const Resource& r, const LockRequest& req,
                       uint64_t ticket) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  ByteRange ExpandedRange(const Resource& r, const LockRequest& req,
                          uint64_t ticket) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void AbsorbCovered(Resource& r, const Lock& l)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool OwnerBlocks(const Resource& r, const Owner& owner,
                   const LockRequest& req) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  Grant GrantRequest(Resource& r, const LockRequest& req, uint64_t ticket,
                     Collector& out) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void NoteBlockers(Resource& r, const LockRequest& req, Collector& out)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ReduceLocked(Resource& r, const Owner& owner, const ByteRange& range,
                    LockMode keep, uint64_t upto_grant_seq = UINT64_MAX)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ProcessQueue(Resource& r, const ByteRange& changed, Collector& out)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void InsertLock(Resource& r, std::unique_ptr<Lock> lock)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  std::unique_ptr<Lock> EraseLock(Resource& r, uint64_t id)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void EraseWaiter(Resource& r, uint64_t ticket)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void RefSession(Resource& r, uint64_t session)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void UnrefSession(Resource& r, uint64_t session)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  mutable absl::Mutex mu_;
  std::map<ResourceId, std::unique_ptr<Resource>> resources_
      ABSL_GUARDED_BY(mu_);
  // Where each queued ticket waits.
  std::unordered_map<uint64_t, ResourceId> waiting_ ABSL_GUARDED_BY(mu_);
  // Resources where a session has locks or queued requests.
  std::unordered_map<uint64_t, std::set<ResourceId>> by_session_
      ABSL_GUARDED_BY(mu_);
  uint64_t next_ticket_ ABSL_GUARDED_BY(mu_) = 1;
  uint64_t next_lock_id_ ABSL_GUARDED_BY(mu_) = 1;
  uint64_t next_grant_seq_ ABSL_GUARDED_BY(mu_) = 1;
  LockTableStats stats_ ABSL_GUARDED_BY(mu_);
};

}  // namespace rangefs::lockmgr

#endif  // RANGEFS_LOCKMGR_RANGE_LOCK_TABLE_H_
