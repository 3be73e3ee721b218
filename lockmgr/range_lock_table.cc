#include "lockmgr/range_lock_table.h"

#include <unordered_set>

#include <algorithm>
#include <chrono>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "lockmgr/interval_set.h"

namespace rangefs::lockmgr {
namespace {

uint64_t NowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// The granted or requested modes that conflict with `m`.
struct ModeList {
  LockMode modes[3];
  int n;
};

ModeList IncompatibleWith(LockMode m) {
  switch (m) {
    case LockMode::kSh:
      return {{LockMode::kDf, LockMode::kEx}, 2};
    case LockMode::kDf:
      return {{LockMode::kSh, LockMode::kEx}, 2};
    default:
      return {{LockMode::kSh, LockMode::kDf, LockMode::kEx}, 3};
  }
}

int Index(LockMode m) { return static_cast<int>(m); }

bool ValidRequestMode(LockMode m) {
  return m == LockMode::kSh || m == LockMode::kDf || m == LockMode::kEx;
}

}  // namespace

struct RangeLockTable::Lock {
  uint64_t id = 0;
  uint64_t ticket = 0;
  uint64_t tag = 0;
  Owner owner;
  LockMode mode = LockMode::kUn;
  ByteRange range;
  uint64_t since_ns = 0;
  uint64_t grant_seq = 0;  // Of the grant it comes from (pieces inherit it).
  // A callback demand already reported for this lock: give up cb_range,
  // keeping at most cb_keep.
  bool cb_pending = false;
  ByteRange cb_range;
  LockMode cb_keep = LockMode::kUn;
};

struct RangeLockTable::Waiter {
  uint64_t ticket = 0;
  LockRequest req;
  uint64_t since_ns = 0;
};

struct RangeLockTable::Resource {
  ResourceId id;
  std::unordered_map<uint64_t, std::unique_ptr<Lock>> locks;
  IntervalSet granted[4];  // Indexed by mode; entry id = lock id.
  std::unordered_map<Owner, IntervalSet, OwnerHash> by_owner;
  std::map<uint64_t, Waiter> waiters;  // By ticket: FIFO order.
  IntervalSet waiting[4];  // Indexed by requested mode; entry id = ticket.
  // Locks plus queued requests per session, to keep by_session_ exact.
  std::unordered_map<uint64_t, uint64_t> session_refs;

  bool Empty() const { return locks.empty() && waiters.empty(); }
};

// Gathers the effects of one call: grants in order, and callback demands
// coalesced per (resource, holder, keep mode).
class RangeLockTable::Collector {
 public:
  void AddGrant(const Grant& g) { effects_.grants.push_back(g); }

  // Demands that the holder of `lock` give up `needed` keeping at most
  // `keep`, unless it was already asked for that (or more).
  void NoteCallback(const ResourceId& res, Lock& lock, const ByteRange& needed,
                    LockMode keep) {
    if (lock.cb_pending && lock.cb_range.Contains(needed) &&
        Meet(lock.cb_keep, keep) == lock.cb_keep) {
      return;
    }
    if (lock.cb_pending) {
      lock.cb_range = lock.cb_range.Span(needed);
      lock.cb_keep = Meet(lock.cb_keep, keep);
    } else {
      lock.cb_pending = true;
      lock.cb_range = needed;
      lock.cb_keep = keep;
    }
    for (Callback& c : effects_.callbacks) {
      if (c.resource == res && c.holder == lock.owner &&
          c.keep_mode == lock.cb_keep && c.range.start <= lock.cb_range.end &&
          lock.cb_range.start <= c.range.end) {
        c.range = c.range.Span(lock.cb_range);
        return;
      }
    }
    effects_.callbacks.push_back(
        Callback{res, lock.owner, lock.cb_range, lock.cb_keep});
  }

  size_t callback_count() const { return effects_.callbacks.size(); }
  Effects Take() { return std::move(effects_); }

 private:
  Effects effects_;
};

RangeLockTable::RangeLockTable() = default;
RangeLockTable::~RangeLockTable() = default;

RangeLockTable::Resource& RangeLockTable::GetResource(const ResourceId& id) {
  std::unique_ptr<Resource>& r = resources_[id];
  if (!r) {
    r = std::make_unique<Resource>();
    r->id = id;
  }
  return *r;
}

void RangeLockTable::MaybeDropResource(const ResourceId& id) {
  auto it = resources_.find(id);
  if (it != resources_.end() && it->second->Empty()) resources_.erase(it);
}

void RangeLockTable::RefSession(Resource& r, uint64_t session) {
  if (r.session_refs[session]++ == 0) by_session_[session].insert(r.id);
}

void RangeLockTable::UnrefSession(Resource& r, uint64_t session) {
  auto it = r.session_refs.find(session);
  if (--it->second > 0) return;
  r.session_refs.erase(it);
  auto sit = by_session_.find(session);
  sit->second.erase(r.id);
  if (sit->second.empty()) by_session_.erase(sit);
}

void RangeLockTable::InsertLock(Resource& r, std::unique_ptr<Lock> lock) {
  Lock& l = *lock;
  r.granted[Index(l.mode)].Insert(l.range.start, l.range.end, l.id);
  r.by_owner[l.owner].Insert(l.range.start, l.range.end, l.id);
  RefSession(r, l.owner.session);
  r.locks.emplace(l.id, std::move(lock));
}

std::unique_ptr<RangeLockTable::Lock> RangeLockTable::EraseLock(Resource& r,
                                                                uint64_t id) {
  auto it = r.locks.find(id);
  std::unique_ptr<Lock> lock = std::move(it->second);
  r.locks.erase(it);
  r.granted[Index(lock->mode)].Erase(lock->range.start, id);
  auto owner_it = r.by_owner.find(lock->owner);
  owner_it->second.Erase(lock->range.start, id);
  if (owner_it->second.empty()) r.by_owner.erase(owner_it);
  UnrefSession(r, lock->owner.session);
  return lock;
}

void RangeLockTable::EraseWaiter(Resource& r, uint64_t ticket) {
  auto it = r.waiters.find(ticket);
  const LockRequest& req = it->second.req;
  r.waiting[Index(req.mode)].Erase(req.range.start, ticket);
  UnrefSession(r, req.owner.session);
  r.waiters.erase(it);
  waiting_.erase(ticket);
}

// Does a lock of `owner` block `req`? (The owner's locks do not block its own
// conversion.)
// Queued requests hold back later ones (so readers cannot starve a
// writer), except for record locks: POSIX grants a lock that conflicts
// with no held lock, whatever waits (Linux's fcntl and flock).
namespace {
bool Fifo(const LockRequest& req) {
  return req.resource.kind != LockKind::kPosix;
}
}  // namespace

bool RangeLockTable::OwnerBlocks(const Resource& r, const Owner& owner,
                                 const LockRequest& req) const {
  if (req.convert && req.owner == owner) return false;
  auto it = r.by_owner.find(owner);
  if (it == r.by_owner.end()) return false;
  return !it->second.ForEachOverlap(
      req.range.start, req.range.end, [&](const IntervalSet::Entry& e) {
        return Compatible(r.locks.at(e.id)->mode, req.mode);
      });
}

bool RangeLockTable::BlockedByGranted(const Resource& r,
                                      const LockRequest& req) const {
  ModeList ml = IncompatibleWith(req.mode);
  for (int i = 0; i < ml.n; ++i) {
    bool stopped = !r.granted[Index(ml.modes[i])].ForEachOverlap(
        req.range.start, req.range.end, [&](const IntervalSet::Entry& e) {
          return req.convert && r.locks.at(e.id)->owner == req.owner;
        });
    if (stopped) return true;
  }
  return false;
}

// Queue order: conversions before plain requests, each FIFO by ticket. A
// queued request blocks every request after it in that order that overlaps
// it with an incompatible mode.
bool RangeLockTable::BlockedByWaiter(const Resource& r, const LockRequest& req,
                                     uint64_t ticket) const {
  ModeList ml = IncompatibleWith(req.mode);
  for (int i = 0; i < ml.n; ++i) {
    bool stopped = !r.waiting[Index(ml.modes[i])].ForEachOverlap(
        req.range.start, req.range.end, [&](const IntervalSet::Entry& e) {
          if (e.id == ticket) return true;
          const LockRequest& q = r.waiters.at(e.id).req;
          bool ahead = q.convert ? (!req.convert || e.id < ticket)
                                 : (!req.convert && e.id < ticket);
          return !ahead;
        });
    if (stopped) return true;
  }
  return false;
}

absl::Status RangeLockTable::CheckDeadlock(const Resource& r,
                                           const LockRequest& req) const {
  if (OwnerBlocks(r, req.owner, req)) {
    return MakeError(Errc::kDeadlock,
                     absl::StrCat("owner ", req.owner.ToString(),
                                  " already holds a conflicting lock on ",
                                  r.id.ToString(), " ", req.range.ToString()));
  }
  // Would the request queue behind one that waits on this owner's lock?
  if (!Fifo(req)) return absl::OkStatus();
  ModeList ml = IncompatibleWith(req.mode);
  for (int i = 0; i < ml.n; ++i) {
    bool stopped = !r.waiting[Index(ml.modes[i])].ForEachOverlap(
        req.range.start, req.range.end, [&](const IntervalSet::Entry& e) {
          mu_.AssertHeld();  // For the analysis: the caller holds mu_.
          const LockRequest& q = r.waiters.at(e.id).req;
          if (req.convert && !q.convert) return true;  // Not ahead of it.
          return !OwnerBlocks(r, req.owner, q);
        });
    if (stopped) {
      return MakeError(Errc::kDeadlock,
                       absl::StrCat("owner ", req.owner.ToString(),
                                    " would queue on ", r.id.ToString(),
                                    " behind a request waiting for its own "
                                    "lock"));
    }
  }
  return absl::OkStatus();
}

void RangeLockTable::BlockersOf(const Resource& r, const LockRequest& req,
                                uint64_t ticket,
                                std::vector<Owner>* out) const {
  ModeList ml = IncompatibleWith(req.mode);
  for (int i = 0; i < ml.n; ++i) {
    r.granted[Index(ml.modes[i])].ForEachOverlap(
        req.range.start, req.range.end, [&](const IntervalSet::Entry& e) {
          mu_.AssertHeld();
          const Owner& o = r.locks.at(e.id)->owner;
          if (o != req.owner) out->push_back(o);
          return true;
        });
    if (!Fifo(req)) continue;  // Only held locks hold record locks back.
    r.waiting[Index(ml.modes[i])].ForEachOverlap(
        req.range.start, req.range.end, [&](const IntervalSet::Entry& e) {
          mu_.AssertHeld();
          if (e.id == ticket) return true;
          const LockRequest& q = r.waiters.at(e.id).req;
          const bool ahead = q.convert ? (!req.convert || e.id < ticket)
                                       : (!req.convert && e.id < ticket);
          if (ahead && q.owner != req.owner) out->push_back(q.owner);
          return true;
        });
  }
}

absl::Status RangeLockTable::CheckWaitCycle(const Resource& r,
                                            const LockRequest& req,
                                            uint64_t ticket) const {
  // Who waits where: each owner's queued record-lock requests.
  std::unordered_map<Owner, std::vector<uint64_t>, OwnerHash> waits;
  for (const auto& [t, id] : waiting_) {
    if (id.kind != LockKind::kPosix) continue;
    waits[resources_.at(id)->waiters.at(t).req.owner].push_back(t);
  }
  std::vector<Owner> todo;
  BlockersOf(r, req, ticket, &todo);
  std::unordered_set<Owner, OwnerHash> seen;
  while (!todo.empty()) {
    const Owner o = todo.back();
    todo.pop_back();
    if (o == req.owner) {
      return MakeError(
          Errc::kDeadlock,
          absl::StrCat("owner ", req.owner.ToString(), " would wait on ",
                       r.id.ToString(), " for an owner that waits for it"));
    }
    if (!seen.insert(o).second) continue;
    auto it = waits.find(o);
    if (it == waits.end()) continue;
    for (uint64_t t : it->second) {
      const Resource& wr = *resources_.at(waiting_.at(t));
      BlockersOf(wr, wr.waiters.at(t).req, t, &todo);
    }
  }
  return absl::OkStatus();
}

// Expansion (docs/lock-table.md): a non-exact, non-conversion request that
// nothing incompatible overlaps grows to the neighbouring incompatible
// granted locks or queued requests, or to the whole offset space.
ByteRange RangeLockTable::ExpandedRange(const Resource& r,
                                        const LockRequest& req,
                                        uint64_t ticket) const {
  if (req.exact || req.convert) return req.range;
  ModeList ml = IncompatibleWith(req.mode);
  uint64_t lo = 0;
  uint64_t hi = kInfinity;
  for (int i = 0; i < ml.n; ++i) {
    for (const IntervalSet* set :
         {&r.granted[Index(ml.modes[i])], &r.waiting[Index(ml.modes[i])]}) {
      bool contended = !set->ForEachOverlap(
          req.range.start, req.range.end,
          [&](const IntervalSet::Entry& e) { return e.id == ticket; });
      if (contended) return req.range;
      if (auto end = set->MaxEndStartingBefore(req.range.start)) {
        lo = std::max(lo, *end);
      }
      if (auto start = set->MinStartAtOrAfter(req.range.end)) {
        hi = std::min(hi, *start);
      }
    }
  }
  return ByteRange{lo, hi};
}

// The owner's locks of the same mode inside the new lock's range add
// nothing: they go, so a node that keeps asking for growing ranges (a
// sequential reader whose grants expand) holds one lock, not one per
// request. Locks with a callback demand outstanding stay (their demand is
// tracked per lock).
void RangeLockTable::AbsorbCovered(Resource& r, const Lock& l) {
  auto it = r.by_owner.find(l.owner);
  if (it == r.by_owner.end()) return;
  std::vector<uint64_t> covered;
  it->second.ForEachOverlap(l.range.start, l.range.end,
                            [&](const IntervalSet::Entry& e) {
                              const Lock& old = *r.locks.at(e.id);
                              if (old.mode == l.mode && !old.cb_pending &&
                                  l.range.Contains(old.range)) {
                                covered.push_back(e.id);
                              }
                              return true;
                            });
  for (uint64_t id : covered) EraseLock(r, id);
  stats_.absorbed += covered.size();
}

Grant RangeLockTable::GrantRequest(Resource& r, const LockRequest& req,
                                   uint64_t ticket, Collector& out) {
  ByteRange range = ExpandedRange(r, req, ticket);
  if (req.convert) ReduceLocked(r, req.owner, req.range, LockMode::kUn);
  auto lock = std::make_unique<Lock>();
  lock->id = next_lock_id_++;
  lock->ticket = ticket;
  lock->tag = req.tag;
  lock->owner = req.owner;
  lock->mode = req.mode;
  lock->range = range;
  lock->since_ns = NowNs();
  lock->grant_seq = next_grant_seq_++;
  Lock& l = *lock;
  AbsorbCovered(r, l);
  InsertLock(r, std::move(lock));
  ++stats_.grants;

  // Requests still queued that the new lock blocks need its holder called
  // back (a conversion or a queued grant can be granted ahead of them).
  ModeList ml = IncompatibleWith(req.mode);
  for (int i = 0; i < ml.n; ++i) {
    r.waiting[Index(ml.modes[i])].ForEachOverlap(
        range.start, range.end, [&](const IntervalSet::Entry& e) {
          const LockRequest& q = r.waiters.at(e.id).req;
          if (!(q.convert && q.owner == l.owner)) {
            out.NoteCallback(r.id, l, l.range.Intersect(q.range),
                             KeepModeFor(q.mode));
          }
          return true;
        });
  }
  Grant g{ticket, req.tag, r.id, req.owner, req.mode, range, l.grant_seq};
  out.AddGrant(g);
  return g;
}

void RangeLockTable::NoteBlockers(Resource& r, const LockRequest& req,
                                  Collector& out) {
  ModeList ml = IncompatibleWith(req.mode);
  std::vector<uint64_t> ids;
  for (int i = 0; i < ml.n; ++i) {
    r.granted[Index(ml.modes[i])].ForEachOverlap(
        req.range.start, req.range.end, [&](const IntervalSet::Entry& e) {
          ids.push_back(e.id);
          return true;
        });
  }
  for (uint64_t id : ids) {
    Lock& l = *r.locks.at(id);
    if (req.convert && l.owner == req.owner) continue;
    out.NoteCallback(r.id, l, l.range.Intersect(req.range),
                     KeepModeFor(req.mode));
  }
}

absl::StatusOr<AcquireResult> RangeLockTable::Acquire(const LockRequest& req) {
  if (absl::Status s = ValidateRange(req.range); !s.ok()) return s;
  if (!ValidRequestMode(req.mode)) {
    return MakeError(
        Errc::kInvalidArgument,
        absl::StrCat("cannot request mode ", LockModeName(req.mode)));
  }
  absl::MutexLock lock(&mu_);
  Resource& r = GetResource(req.resource);
  uint64_t ticket = next_ticket_;
  bool grantable = !BlockedByGranted(r, req) &&
                   !(Fifo(req) && BlockedByWaiter(r, req, ticket));
  if (!grantable) {
    absl::Status s = CheckDeadlock(r, req);
    if (s.ok() && !req.try_only && req.resource.kind == LockKind::kPosix) {
      s = CheckWaitCycle(r, req, ticket);
    }
    if (s.ok() && req.try_only) {
      s = MakeError(Errc::kWouldBlock,
                    absl::StrCat(req.resource.ToString(), " ",
                                 req.range.ToString(), " is locked"));
      ++stats_.would_block;
    } else if (!s.ok()) {
      ++stats_.deadlocks;
    }
    if (!s.ok()) {
      MaybeDropResource(req.resource);
      return s;
    }
  }
  ++next_ticket_;
  AcquireResult result;
  result.ticket = ticket;
  Collector out;
  if (grantable) {
    result.granted = true;
    GrantRequest(r, req, ticket, out);
    if (req.convert) ProcessQueue(r, req.range, out);
  } else {
    Waiter w{ticket, req, NowNs()};
    r.waiting[Index(req.mode)].Insert(req.range.start, req.range.end, ticket);
    r.waiters.emplace(ticket, std::move(w));
    waiting_.emplace(ticket, req.resource);
    RefSession(r, req.owner.session);
    ++stats_.queued;
    NoteBlockers(r, req, out);
  }
  stats_.callbacks += out.callback_count();
  result.effects = out.Take();
  return result;
}

void RangeLockTable::ReduceLocked(Resource& r, const Owner& owner,
                                  const ByteRange& range, LockMode keep,
                                  uint64_t upto_grant_seq) {
  auto owner_it = r.by_owner.find(owner);
  if (owner_it == r.by_owner.end()) return;
  std::vector<uint64_t> ids;
  owner_it->second.ForEachOverlap(range.start, range.end,
                                  [&](const IntervalSet::Entry& e) {
                                    ids.push_back(e.id);
                                    return true;
                                  });
  for (uint64_t id : ids) {
    if (Meet(r.locks.at(id)->mode, keep) == r.locks.at(id)->mode) continue;
    if (r.locks.at(id)->grant_seq > upto_grant_seq) continue;  // Unseen.
    std::unique_ptr<Lock> old = EraseLock(r, id);
    LockMode reduced = Meet(old->mode, keep);
    auto add_piece = [&](ByteRange piece, LockMode mode,
                         bool inside) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      if (!piece.Valid() || mode == LockMode::kUn) return;
      auto l = std::make_unique<Lock>(*old);
      l->id = next_lock_id_++;
      l->mode = mode;
      l->range = piece;
      if (l->cb_pending) {
        l->cb_range = l->cb_range.Intersect(piece);
        bool satisfied = inside && Meet(mode, l->cb_keep) == mode;
        if (!l->cb_range.Valid() || satisfied) l->cb_pending = false;
      }
      InsertLock(r, std::move(l));
    };
    add_piece({old->range.start, std::min(old->range.end, range.start)},
              old->mode, false);
    add_piece(old->range.Intersect(range), reduced, true);
    add_piece({std::max(old->range.start, range.end), old->range.end},
              old->mode, false);
  }
}

// Grants, in queue order, every queued request that `changed` may have
// unblocked, and what those grants unblock in turn.
void RangeLockTable::ProcessQueue(Resource& r, const ByteRange& changed,
                                  Collector& out) {
  // Candidates ordered as the queue is: conversions first, then FIFO.
  std::set<std::pair<int, uint64_t>> candidates;
  auto add_overlapping = [&](const ByteRange& range) {
    for (int m = 1; m <= 3; ++m) {
      r.waiting[m].ForEachOverlap(range.start, range.end,
                                  [&](const IntervalSet::Entry& e) {
                                    bool conv = r.waiters.at(e.id).req.convert;
                                    candidates.emplace(conv ? 0 : 1, e.id);
                                    return true;
                                  });
    }
  };
  add_overlapping(changed);
  while (!candidates.empty()) {
    uint64_t ticket = candidates.begin()->second;
    candidates.erase(candidates.begin());
    auto it = r.waiters.find(ticket);
    if (it == r.waiters.end()) continue;
    LockRequest req = it->second.req;
    if (BlockedByGranted(r, req) ||
        (Fifo(req) && BlockedByWaiter(r, req, ticket))) {
      continue;
    }
    EraseWaiter(r, ticket);
    GrantRequest(r, req, ticket, out);
    add_overlapping(req.range);
  }
}

absl::StatusOr<Effects> RangeLockTable::Reduce(const ResourceId& resource,
                                               const Owner& owner,
                                               const ByteRange& range,
                                               LockMode keep,
                                               uint64_t upto_grant_seq) {
  if (absl::Status s = ValidateRange(range); !s.ok()) return s;
  if (keep == LockMode::kEx) {
    return MakeError(Errc::kInvalidArgument, "cannot reduce a lock to EX");
  }
  absl::MutexLock lock(&mu_);
  auto it = resources_.find(resource);
  if (it == resources_.end()) return Effects{};
  Resource& r = *it->second;
  Collector out;
  ReduceLocked(r, owner, range, keep, upto_grant_seq);
  ProcessQueue(r, range, out);
  stats_.callbacks += out.callback_count();
  MaybeDropResource(resource);
  return out.Take();
}

absl::StatusOr<Effects> RangeLockTable::Cancel(uint64_t ticket) {
  absl::MutexLock lock(&mu_);
  auto wit = waiting_.find(ticket);
  if (wit == waiting_.end()) {
    return MakeError(Errc::kNotFound,
                     absl::StrCat("request ", ticket, " is not waiting"));
  }
  ResourceId id = wit->second;
  Resource& r = *resources_.at(id);
  ByteRange range = r.waiters.at(ticket).req.range;
  EraseWaiter(r, ticket);
  Collector out;
  ProcessQueue(r, range, out);
  stats_.callbacks += out.callback_count();
  MaybeDropResource(id);
  return out.Take();
}

Effects RangeLockTable::DropSession(uint64_t session) {
  absl::MutexLock lock(&mu_);
  Collector out;
  auto sit = by_session_.find(session);
  if (sit == by_session_.end()) return out.Take();
  std::set<ResourceId> ids = sit->second;  // Shrinks as locks go.
  for (const ResourceId& id : ids) {
    auto rit = resources_.find(id);
    if (rit == resources_.end()) continue;
    Resource& r = *rit->second;
    std::vector<uint64_t> tickets;
    for (const auto& [ticket, w] : r.waiters) {
      if (w.req.owner.session == session) tickets.push_back(ticket);
    }
    for (uint64_t t : tickets) EraseWaiter(r, t);
    std::vector<Owner> owners;
    for (const auto& [owner, set] : r.by_owner) {
      if (owner.session == session) owners.push_back(owner);
    }
    for (const Owner& o : owners) {
      ReduceLocked(r, o, ByteRange{0, kInfinity}, LockMode::kUn);
    }
    ProcessQueue(r, ByteRange{0, kInfinity}, out);
    MaybeDropResource(id);
  }
  stats_.callbacks += out.callback_count();
  return out.Take();
}

bool RangeLockTable::AnyOwnLock(
    const ResourceId& resource, const Owner& owner, const ByteRange& range,
    const std::function<bool(LockMode)>& pred) const {
  absl::MutexLock lock(&mu_);
  auto rit = resources_.find(resource);
  if (rit == resources_.end()) return false;
  const Resource& r = *rit->second;
  auto oit = r.by_owner.find(owner);
  if (oit == r.by_owner.end()) return false;
  return !oit->second.ForEachOverlap(range.start, range.end,
                                     [&](const IntervalSet::Entry& e) {
                                       return !pred(r.locks.at(e.id)->mode);
                                     });
}

bool RangeLockTable::Exceeds(const ResourceId& resource, const Owner& owner,
                             const ByteRange& range, LockMode keep) const {
  return AnyOwnLock(resource, owner, range,
                    [keep](LockMode m) { return Meet(m, keep) != m; });
}

bool RangeLockTable::HoldsConflicting(const ResourceId& resource,
                                      const Owner& owner,
                                      const ByteRange& range,
                                      LockMode mode) const {
  return AnyOwnLock(resource, owner, range,
                    [mode](LockMode m) { return !Compatible(m, mode); });
}

std::vector<Grant> RangeLockTable::LocksOf(uint64_t session) const {
  absl::MutexLock lock(&mu_);
  std::vector<Grant> out;
  auto sit = by_session_.find(session);
  if (sit == by_session_.end()) return out;
  for (const ResourceId& id : sit->second) {
    auto rit = resources_.find(id);
    if (rit == resources_.end()) continue;
    for (const auto& [lid, l] : rit->second->locks) {
      if (l->owner.session != session) continue;
      out.push_back(Grant{l->ticket, l->tag, id, l->owner, l->mode, l->range,
                          l->grant_seq});
    }
  }
  return out;
}

std::vector<LockInfo> RangeLockTable::Dump(uint64_t ino) const {
  absl::MutexLock lock(&mu_);
  std::vector<LockInfo> rows;
  for (const auto& [id, r] : resources_) {
    if (ino != 0 && id.ino != ino) continue;
    std::vector<const Lock*> locks;
    for (const auto& [lid, l] : r->locks) locks.push_back(l.get());
    std::sort(locks.begin(), locks.end(), [](const Lock* a, const Lock* b) {
      return a->range.start != b->range.start ? a->range.start < b->range.start
                                              : a->id < b->id;
    });
    for (const Lock* l : locks) {
      LockInfo info;
      info.resource = id;
      info.owner = l->owner;
      info.mode = l->mode;
      info.range = l->range;
      info.ticket = l->ticket;
      info.since_ns = l->since_ns;
      info.callback_pending = l->cb_pending;
      info.callback_range = l->cb_range;
      info.callback_keep = l->cb_keep;
      rows.push_back(info);
    }
    for (const auto& [ticket, w] : r->waiters) {
      LockInfo info;
      info.resource = id;
      info.owner = w.req.owner;
      info.mode = w.req.mode;
      info.range = w.req.range;
      info.waiting = true;
      info.convert = w.req.convert;
      info.ticket = ticket;
      info.since_ns = w.since_ns;
      rows.push_back(info);
    }
  }
  return rows;
}

LockTableStats RangeLockTable::Stats() const {
  absl::MutexLock lock(&mu_);
  LockTableStats s = stats_;
  s.resources = resources_.size();
  s.locks = 0;
  s.waiters = waiting_.size();
  for (const auto& [id, r] : resources_) s.locks += r->locks.size();
  return s;
}

}  // namespace rangefs::lockmgr
