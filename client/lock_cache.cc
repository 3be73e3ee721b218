#include "client/lock_cache.h"

#include <chrono>
#include <random>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/fault_injection.h"
#include "common/log.h"
#include "common/status.h"
#include "rpc/channel.h"
#include "rpc/convert.h"

namespace rangefs::client {
namespace {

using lockmgr::Meet;
using lockmgr::Owner;

int64_t NowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

uint64_t RandomSessionId() {
  std::random_device rd;
  uint64_t v = (static_cast<uint64_t>(rd()) << 32) ^ rd();
  return v == 0 ? 1 : v;
}

// Does a node lock in `have` let a local task hold `want`?
bool CoversMode(LockMode have, LockMode want) {
  return have == LockMode::kEx || have == want;
}

proto::ResourceId ToProto(const ResourceId& r) {
  proto::ResourceId p;
  p.set_ino(r.ino);
  p.set_kind(static_cast<proto::LockKind>(r.kind));
  return p;
}

// Sleeps (releasing `mu`) until `deadline` or until `stop` turns true.
void NapLocked(absl::Mutex* mu, const bool* stop, absl::Duration d)
    ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
  mu->AwaitWithTimeout(absl::Condition(stop), d);
}

}  // namespace

LockCache::LockCache(const ClusterConfig& config,
                     const LockCacheOptions& options)
    : config_(config),
      options_(options),
      workers_(std::make_unique<ThreadPool>(options.callback_threads)) {}

LockCache::~LockCache() { Stop(); }

void LockCache::OpenSessions(uint64_t session_id) {
  session_id_ = session_id;
  for (uint32_t s = 0; s < config_.lockd.size(); ++s) {
    LockClientOptions o;
    o.address = config_.lockd[s];
    o.shard = s;
    o.session_id = session_id;
    o.node_name = options_.node_name;
    o.lease_ms = options_.lease_ms;
    clients_.push_back(std::make_unique<LockClient>(o, this));
  }
}

absl::Status LockCache::Start() {
  std::vector<LockClient*> clients;
  {
    absl::MutexLock lock(&mu_);
    if (!clients_.empty()) return absl::OkStatus();
    OpenSessions(RandomSessionId());
    for (auto& c : clients_) clients.push_back(c.get());
  }
  for (LockClient* c : clients) {
    if (absl::Status s = c->Start(); !s.ok()) return s;
  }
  janitor_ = std::thread([this] { Janitor(); });
  return absl::OkStatus();
}

void LockCache::SetHooks(LockKind kind, LockHooks* hooks) {
  absl::MutexLock lock(&mu_);
  hooks_[kind] = hooks;
}

LockClient* LockCache::ClientFor(const ResourceId& res) {
  return clients_[ShardOf(res.ino, static_cast<uint8_t>(res.kind),
                          clients_.size())]
      .get();
}

bool LockCache::Covers(const Resource& r, const ByteRange& range,
                       LockMode mode) {
  uint64_t pos = range.start;
  auto it = r.cover.upper_bound(pos);
  if (it != r.cover.begin()) --it;
  for (; it != r.cover.end() && pos < range.end; ++it) {
    if (it->second.end <= pos) continue;
    if (it->first > pos || !CoversMode(it->second.mode, mode)) return false;
    pos = it->second.end;
  }
  return pos >= range.end;
}

ByteRange LockCache::FirstUncovered(const Resource& r, const ByteRange& range,
                                    LockMode mode) {
  uint64_t pos = range.start;
  auto it = r.cover.upper_bound(pos);
  if (it != r.cover.begin()) --it;
  while (it != r.cover.end() && it->second.end <= pos) ++it;
  // Past the pieces that cover `mode` from range.start on, without a gap.
  while (pos < range.end && it != r.cover.end() && it->first <= pos &&
         CoversMode(it->second.mode, mode)) {
    pos = it->second.end;
    ++it;
  }
  if (pos >= range.end) return {range.end, range.end};
  // Then up to the next piece that does (pieces are disjoint: it starts
  // past `pos`).
  for (; it != r.cover.end() && it->first < range.end; ++it) {
    if (it->first > pos && CoversMode(it->second.mode, mode)) {
      return {pos, it->first};
    }
  }
  return {pos, range.end};
}

void LockCache::ReduceCover(Resource& r, const ByteRange& range,
                            LockMode keep) {
  std::map<uint64_t, Piece> out;
  for (const auto& [start, p] : r.cover) {
    ByteRange piece{start, p.end};
    if (!piece.Overlaps(range)) {
      out[start] = p;
      continue;
    }
    if (start < range.start) out[start] = Piece{range.start, p.mode};
    ByteRange mid = piece.Intersect(range);
    LockMode m = Meet(p.mode, keep);
    if (m != LockMode::kUn) out[mid.start] = Piece{mid.end, m};
    if (p.end > range.end) out[range.end] = Piece{p.end, p.mode};
  }
  r.cover = std::move(out);
}

void LockCache::SetCover(Resource& r, const ByteRange& range, LockMode mode) {
  ReduceCover(r, range, LockMode::kUn);
  r.cover[range.start] = Piece{range.end, mode};
  // Merge neighbours of the same mode.
  for (auto it = r.cover.begin(); it != r.cover.end();) {
    auto next = std::next(it);
    if (next != r.cover.end() && it->second.end == next->first &&
        it->second.mode == next->second.mode) {
      it->second.end = next->second.end;
      r.cover.erase(next);
    } else {
      it = next;
    }
  }
}

void LockCache::NoteLocalGrants(const lockmgr::Effects& e) {
  for (const lockmgr::Grant& g : e.grants) local_granted_.insert(g.ticket);
}

bool LockCache::AwaitLocal(uint64_t ticket, absl::Time deadline) {
  auto granted = [this, ticket]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return local_granted_.count(ticket) != 0 || stopping_;
  };
  mu_.AwaitWithDeadline(absl::Condition(&granted), deadline);
  bool ok = local_granted_.erase(ticket) != 0;
  return ok;
}

absl::Status LockCache::EnsureCovered(const ResourceId& res,
                                      const ByteRange& range, LockMode mode,
                                      bool try_only, absl::Time deadline) {
  bool asked = false;
  for (;;) {
    if (stopping_) return MakeError(Errc::kUnavailable, "lock cache stopped");
    Resource& r = resources_[res];
    if (Covers(r, range, mode)) {
      if (!clients_.empty() && !ClientFor(res)->trusted()) {
        // The lease lapsed: wait until lockd answers again, or until the
        // lapse's release has taken the coverage (then ask lockd).
        NapLocked(&mu_, &stopping_, absl::Milliseconds(10));
        if (absl::Now() > deadline) {
          return MakeError(Errc::kTimedOut, "lock manager unreachable");
        }
        continue;
      }
      if (!asked) ++stats_.local_hits;
      return absl::OkStatus();
    }
    if (clients_.empty()) {
      return MakeError(Errc::kUnavailable, "lock cache not started");
    }
    // Join a request of ours already on its way, or send one. A try-lock
    // must not wait on a request that waits, nor a waiting lock take a
    // try's refusal for an answer.
    uint64_t id = 0;
    for (const auto& [pid, p] : pending_) {
      if (!p.done && !p.replay && p.try_only == try_only && p.resource == res &&
          p.range.Contains(range) && CoversMode(p.mode, mode)) {
        id = pid;
        break;
      }
    }
    bool mine = id == 0;
    if (mine) {
      // Only what the node's locks do not cover yet: a request over a piece
      // it holds in a stronger mode would convert that piece down (EX to
      // DF) without the callback hooks, leaving caches above with pages
      // the node no longer holds the lock for. The rest is asked for in
      // later rounds.
      const ByteRange want = FirstUncovered(r, range, mode);
      bool convert = false;
      for (const auto& [start, p] : r.cover) {
        convert |= ByteRange{start, p.end}.Overlaps(want);
      }
      id = next_request_++;
      Pending& p = pending_[id];
      p.resource = res;
      p.range = want;
      p.mode = mode;
      p.try_only = try_only;
      proto::NodeMessage m;
      proto::AcquireRequest* a = m.mutable_acquire();
      a->set_request_id(id);
      *a->mutable_resource() = ToProto(res);
      a->mutable_owner()->set_session_id(session_id_);
      a->set_mode(static_cast<proto::LockMode>(mode));
      a->mutable_range()->set_start(want.start);
      a->mutable_range()->set_end(want.end);
      a->set_convert(convert);
      a->set_exact(convert);
      a->set_try_only(try_only);
      if (deadline != absl::InfiniteFuture()) {
        a->set_deadline_ms(std::max<int64_t>(
            1, absl::ToInt64Milliseconds(deadline - absl::Now())));
      }
      ++stats_.cluster_requests;
      asked = true;
      LockClient* c = ClientFor(res);
      if (!c->connected()) {
        pending_.erase(id);
        NapLocked(&mu_, &stopping_, absl::Milliseconds(50));
        if (absl::Now() > deadline) {
          return MakeError(Errc::kTimedOut, "lock manager unreachable");
        }
        continue;
      }
      c->Send(m);
    }
    auto done = [this, id]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      auto it = pending_.find(id);
      return stopping_ || it == pending_.end() || it->second.done;
    };
    mu_.AwaitWithDeadline(absl::Condition(&done), deadline);
    auto it = pending_.find(id);
    if (it == pending_.end()) continue;  // Taken by another waiter.
    if (!it->second.done) {
      if (stopping_) return MakeError(Errc::kUnavailable, "lock cache stopped");
      if (mine) {
        proto::NodeMessage m;
        m.mutable_cancel()->set_request_id(id);
        ClientFor(res)->Send(m);
        pending_.erase(it);
      }
      return MakeError(Errc::kTimedOut, "timed out waiting for a cluster lock");
    }
    absl::Status st = it->second.status;
    if (mine) pending_.erase(it);
    if (st.ok()) continue;  // The grant updated the coverage: check again.
    switch (ErrcOf(st)) {
      case Errc::kGrace:  // lockd restarting: its grace period will end.
        NapLocked(&mu_, &stopping_, absl::Milliseconds(100));
        break;
      case Errc::kDeadlock:
        // The node's own cached lock is being called back: once the
        // callback is through, asking again succeeds.
        NapLocked(&mu_, &stopping_, absl::Milliseconds(2));
        break;
      default:
        return st;
    }
    if (absl::Now() > deadline) {
      return MakeError(Errc::kTimedOut, "timed out waiting for a cluster lock");
    }
  }
}

absl::StatusOr<LocalLock> LockCache::Lock(const ResourceId& res,
                                          const ByteRange& range, LockMode mode,
                                          uint64_t task, bool try_only,
                                          uint64_t timeout_ms) {
  if (absl::Status s = ValidateRange(range); !s.ok()) return s;
  if (mode != LockMode::kSh && mode != LockMode::kDf && mode != LockMode::kEx) {
    return MakeError(Errc::kInvalidArgument, "bad lock mode");
  }
  if (task >= (1ull << 62)) {
    return MakeError(Errc::kInvalidArgument, "task id out of range");
  }
  absl::Time deadline = timeout_ms == 0
                            ? absl::InfiniteFuture()
                            : absl::Now() + absl::Milliseconds(timeout_ms);
  absl::MutexLock lock(&mu_);
  for (;;) {
    if (absl::Status s = EnsureCovered(res, range, mode, try_only, deadline);
        !s.ok()) {
      return s;
    }
    lockmgr::LockRequest lr;
    lr.resource = res;
    lr.owner = Owner{0, task};
    lr.mode = mode;
    lr.range = range;
    lr.exact = true;
    lr.try_only = try_only;
    absl::StatusOr<lockmgr::AcquireResult> a = local_.Acquire(lr);
    if (!a.ok()) return a.status();  // DEADLOCK, WOULD_BLOCK.
    NoteLocalGrants(a->effects);
    if (!AwaitLocal(a->ticket, deadline)) {
      absl::StatusOr<lockmgr::Effects> e = local_.Cancel(a->ticket);
      if (e.ok()) {
        NoteLocalGrants(*e);
      } else {
        // Granted just now: give it back.
        local_granted_.erase(a->ticket);
        auto r = local_.Release(res, lr.owner, range);
        if (r.ok()) NoteLocalGrants(*r);
      }
      return MakeError(stopping_ ? Errc::kUnavailable : Errc::kTimedOut,
                       "timed out waiting for a local lock");
    }
    Resource& r = resources_[res];
    if (Covers(r, range, mode) && ClientFor(res)->trusted()) {
      ++r.holders;
      r.used_ns = NowNs();
      return LocalLock{res, range, mode, task};
    }
    // A callback took the coverage while we queued: give back and retry.
    auto e = local_.Release(res, lr.owner, range);
    if (e.ok()) NoteLocalGrants(*e);
  }
}

void LockCache::Unlock(const LocalLock& l) {
  absl::MutexLock lock(&mu_);
  auto e = local_.Release(l.resource, Owner{0, l.task}, l.range);
  if (e.ok()) NoteLocalGrants(*e);
  auto it = resources_.find(l.resource);
  if (it != resources_.end()) {
    --it->second.holders;
    it->second.used_ns = NowNs();
  }
}

void LockCache::OnMessage(uint32_t, uint64_t session,
                          const proto::ServerMessage& m) {
  std::vector<std::pair<ResourceId, ByteRange>> lost;
  LockHooks* hooks = nullptr;
  {
    absl::MutexLock lock(&mu_);
    // A late message of a session this node already lost grants nothing.
    if (session != session_id_ || stopping_) return;
    if (m.has_heartbeat_ack()) {
      barriers_done_.insert(m.heartbeat_ack().sequence());
      return;
    }
    if (m.has_grant()) {
      const proto::Grant& g = m.grant();
      ResourceId res{g.resource().ino(),
                     static_cast<LockKind>(g.resource().kind())};
      auto it = pending_.find(g.request_id());
      if (res.kind == LockKind::kPosix) {
        auto cx = cancelled_posix_.find(g.request_id());
        if (cx != cancelled_posix_.end()) {
          // Granted before lockd saw our cancel: nobody wants it.
          SendPosixRelease(cx->second.first, cx->second.second,
                           rpc::FromProto(g.range()));
          cancelled_posix_.erase(cx);
          return;
        }
        // Not cached: tracked per owner for replay, nothing else.
        if (it != pending_.end()) {
          SetCover(posix_[{res, it->second.posix_owner}],
                   rpc::FromProto(g.range()), static_cast<LockMode>(g.mode()));
          if (it->second.replay) {
            pending_.erase(it);
          } else {
            it->second.done = true;
            it->second.status = absl::OkStatus();
          }
        }
        return;
      }
      Resource& r = resources_[res];
      SetCover(r, rpc::FromProto(g.range()), static_cast<LockMode>(g.mode()));
      r.grant_seq = std::max(r.grant_seq, g.grant_seq());
      r.granted_ns = NowNs();
      if (it != pending_.end()) {
        if (it->second.replay) {
          pending_.erase(it);
        } else {
          it->second.done = true;
          it->second.status = absl::OkStatus();
        }
      }
      // A grant nobody waits for (a resent one, or one that raced with a
      // cancel) simply stays cached.
    } else if (m.has_deny()) {
      auto it = pending_.find(m.deny().request_id());
      if (it != pending_.end()) {
        absl::Status st = rpc::FromProto(m.deny().error());
        if (it->second.replay && it->second.resource.kind == LockKind::kPosix) {
          ReduceCover(posix_[{it->second.resource, it->second.posix_owner}],
                      it->second.range, LockMode::kUn);
          RANGEFS_LOG(ERROR) << "a record lock was not re-established after "
                             << "a lockd restart";
          pending_.erase(it);
        } else if (it->second.replay) {
          // lockd would not re-establish a lock we held: it is lost.
          Resource& r = resources_[it->second.resource];
          ReduceCover(r, it->second.range, LockMode::kUn);
          lost.emplace_back(it->second.resource, it->second.range);
          hooks = hooks_.count(it->second.resource.kind)
                      ? hooks_[it->second.resource.kind]
                      : nullptr;
          pending_.erase(it);
        } else {
          it->second.done = true;
          it->second.status = st;
        }
      }
    } else if (m.has_callback()) {
      const proto::Callback& c = m.callback();
      ResourceId res{c.resource().ino(),
                     static_cast<LockKind>(c.resource().kind())};
      ByteRange range = rpc::FromProto(c.range());
      LockMode keep = static_cast<LockMode>(c.keep_mode());
      uint64_t id = c.callback_id();
      ++stats_.callbacks;
      RANGEFS_LOG(DEBUG) << "callback " << id << " " << res.ToString() << " "
                         << range.ToString() << " keep "
                         << static_cast<int>(keep);
      workers_->Submit(
          [this, res, range, keep, id] { Demote(res, range, keep, id); });
    }
  }
  if (!lost.empty() && hooks != nullptr) {
    // Hooks may block: not on the stream's reaction thread.
    workers_->Submit([hooks, lost] {
      for (const auto& [res, range] : lost) hooks->Lost(res, range);
    });
  }
}

void LockCache::Demote(const ResourceId& res, const ByteRange& asked,
                       LockMode keep, uint64_t callback_id,
                       absl::Time deadline) {
  ByteRange range = asked;
  uint64_t task;
  LockHooks* hooks = nullptr;
  std::vector<ByteRange> above;  // Parts held stronger than `keep`.
  {
    absl::MutexLock lock(&mu_);
    Resource& r = resources_[res];
    ++r.demoting;
    // The minimum hold time since the node was granted the resource.
    int64_t wait_ns = r.granted_ns +
                      static_cast<int64_t>(options_.min_hold_ms) * 1000000 -
                      NowNs();
    if (wait_ns > 0) NapLocked(&mu_, &stopping_, absl::Nanoseconds(wait_ns));
    if (callback_id != 0 && options_.expand_idle_ms > 0) {
      Resource& now = resources_[res];
      const int64_t idle_ns =
          static_cast<int64_t>(options_.expand_idle_ms) * 1000000;
      if (now.holders == 0 && now.demoting == 1 &&
          NowNs() - now.used_ns > idle_ns) {
        range = ByteRange{0, kInfinity};  // Quiet here: give it all back.
      }
    }
    // Queue behind the local holders that conflict with giving up the
    // range, blocking new ones (FIFO).
    task = next_demote_task_++;
    lockmgr::LockRequest lr;
    lr.resource = res;
    lr.owner = Owner{0, task};
    lr.mode = keep == LockMode::kUn ? LockMode::kEx : keep;
    lr.range = range;
    lr.exact = true;
    absl::StatusOr<lockmgr::AcquireResult> a = local_.Acquire(lr);
    if (a.ok()) {
      NoteLocalGrants(a->effects);
      if (!AwaitLocal(a->ticket, deadline)) {
        // Only at shutdown: a local holder never let go. Leave its lock.
        auto e = local_.Cancel(a->ticket);
        if (e.ok()) NoteLocalGrants(*e);
        --resources_[res].demoting;
        RANGEFS_LOG(WARNING) << "gave up demoting " << res.ToString()
                             << ": a local holder did not let go";
        return;
      }
    }
    Resource& rr = resources_[res];
    for (const auto& [start, p] : rr.cover) {
      ByteRange piece = ByteRange{start, p.end}.Intersect(range);
      if (piece.Valid() && Meet(p.mode, keep) != p.mode) above.push_back(piece);
    }
    if (hooks_.count(res.kind)) hooks = hooks_[res.kind];
  }
  // Caches obey first (write back, drop), with no cache lock held.
  if (hooks) {
    for (const ByteRange& piece : above) hooks->Demote(res, piece, keep);
  }
  absl::MutexLock lock(&mu_);
  Resource& r = resources_[res];
  ReduceCover(r, range, keep);
  if (!clients_.empty() && (!above.empty() || callback_id != 0)) {
    proto::NodeMessage m;
    proto::ReleaseRequest* rel = m.mutable_release();
    *rel->mutable_resource() = ToProto(res);
    rel->mutable_owner()->set_session_id(session_id_);
    rel->mutable_range()->set_start(range.start);
    rel->mutable_range()->set_end(range.end);
    rel->set_new_mode(static_cast<proto::LockMode>(keep));
    rel->set_callback_id(callback_id);
    // What the node gives back is what it had seen: a grant on its way
    // now is the node's after this release.
    rel->set_upto_grant_seq(r.grant_seq);
    RANGEFS_LOG(DEBUG) << "release " << res.ToString() << " "
                       << range.ToString() << " keep " << static_cast<int>(keep)
                       << " callback " << callback_id << " upto "
                       << r.grant_seq;
    ClientFor(res)->Send(m);
  }
  auto e = local_.Release(res, Owner{0, task}, range);
  if (e.ok()) NoteLocalGrants(*e);
  --r.demoting;
  ++stats_.demotes;
  if (r.cover.empty() && r.holders == 0 && r.demoting == 0) {
    resources_.erase(res);
  }
}

void LockCache::OnReconnected(uint32_t shard, uint64_t session, bool in_grace) {
  // For the race suite: a node that replays late, after another node's
  // request reached the restarted lockd (scenario 10).
  if (in_grace) (void)FaultPoint("client.before_replay");
  absl::MutexLock lock(&mu_);
  if (!in_grace || session != session_id_)
    return;  // lockd kept our session: it resent what we hold.
  RANGEFS_LOG(INFO) << "lockd shard " << shard
                    << " restarted: replaying cached locks";
  // Requests queued at the old lockd are gone: their waiters ask again.
  for (auto& [id, p] : pending_) {
    if (!p.done && !p.replay &&
        ShardOf(p.resource.ino, static_cast<uint8_t>(p.resource.kind),
                clients_.size()) == shard) {
      p.done = true;
      p.status = MakeError(Errc::kGrace, "lockd restarted");
    }
  }
  for (const auto& [res, r] : resources_) Replay(shard, res, r, 0);
  for (const auto& [key, r] : posix_) Replay(shard, key.first, r, key.second);
}

void LockCache::Replay(uint32_t shard, const ResourceId& res, const Resource& r,
                       uint64_t task) {
  if (ShardOf(res.ino, static_cast<uint8_t>(res.kind), clients_.size()) !=
      shard) {
    return;
  }
  for (const auto& [start, p] : r.cover) {
    uint64_t id = next_request_++;
    Pending& pd = pending_[id];
    pd.resource = res;
    pd.range = ByteRange{start, p.end};
    pd.mode = p.mode;
    pd.replay = true;
    pd.posix_owner = task;
    clients_[shard]->Send(AcquireMessage(id, res, pd.range, p.mode, task,
                                         /*try_only=*/false, /*replay=*/true));
    ++stats_.replays;
  }
}

void LockCache::OnEvicted(uint32_t shard, uint64_t session,
                          const std::string& reason) {
  absl::MutexLock lock(&mu_);
  if (recovering_ || stopping_ || session != session_id_) return;
  recovering_ = true;
  RANGEFS_LOG(ERROR) << "lockd shard " << shard << " evicted this node ("
                     << reason << "): cached locks and unwritten data are lost";
  if (recovery_.joinable()) recovery_.detach();
  recovery_ = std::thread([this, reason] { LoseSession(reason); });
}

void LockCache::LoseSession(const std::string& reason) {
  std::vector<std::pair<ResourceId, ByteRange>> lost;
  std::vector<std::unique_ptr<LockClient>> old;
  std::vector<LockClient*> fresh;
  std::map<LockKind, LockHooks*> hooks;
  {
    absl::MutexLock lock(&mu_);
    ++stats_.sessions_lost;
    ++incarnation_;
    // Record locks die with the session (like NFS locks after a lease
    // loss); the POSIX hooks tell their files' open handles (EIO).
    for (const auto& [key, r] : posix_) {
      for (const auto& [start, p] : r.cover) {
        lost.emplace_back(key.first, ByteRange{start, p.end});
      }
    }
    posix_.clear();
    cancelled_posix_.clear();
    barriers_done_.clear();
    for (auto& [res, r] : resources_) {
      for (const auto& [start, p] : r.cover) {
        lost.emplace_back(res, ByteRange{start, p.end});
      }
      r.cover.clear();
    }
    for (auto& [id, p] : pending_) {
      if (!p.done) {
        p.done = true;
        p.status = MakeError(Errc::kFenced, "session evicted: " + reason);
      }
    }
    hooks = hooks_;
    old = std::move(clients_);
    clients_.clear();
    if (!stopping_) {
      OpenSessions(RandomSessionId());
      for (auto& c : clients_) fresh.push_back(c.get());
    }
  }
  for (const auto& [res, range] : lost) {
    if (hooks.count(res.kind)) hooks[res.kind]->Lost(res, range);
  }
  // Other shards still hold the old session: say goodbye there.
  for (auto& c : old) c->Stop(/*goodbye=*/true);
  old.clear();
  for (LockClient* c : fresh) {
    if (absl::Status s = c->Start(); !s.ok()) {
      RANGEFS_LOG(ERROR) << "could not open a new lock session: "
                         << s.message();
    }
  }
  absl::MutexLock lock(&mu_);
  recovering_ = false;
}

void LockCache::OnLeaseLapsed(uint32_t shard, uint64_t session) {
  absl::MutexLock lock(&mu_);
  if (stopping_ || recovering_ || session != session_id_) return;
  for (auto& [res, r] : resources_) {
    if (r.cover.empty() || ShardOf(res.ino, static_cast<uint8_t>(res.kind),
                                   clients_.size()) != shard) {
      continue;
    }
    ++stats_.lapse_releases;
    GiveBackLocked(res);
  }
}

void LockCache::GiveBackLocked(const ResourceId& res) {
  resources_[res].demoting++;  // Keep it from being picked twice.
  workers_->Submit([this, res] {
    Demote(res, ByteRange{0, kInfinity}, LockMode::kUn, 0);
    absl::MutexLock l(&mu_);
    auto it = resources_.find(res);
    if (it != resources_.end() && --it->second.demoting == 0 &&
        it->second.cover.empty() && it->second.holders == 0) {
      resources_.erase(it);
    }
  });
}

void LockCache::Janitor() {
  const absl::Duration period = absl::Milliseconds(
      std::clamp<uint64_t>(options_.idle_release_ms / 4, 10, 1000));
  absl::MutexLock lock(&mu_);
  while (!stopping_) {
    NapLocked(&mu_, &stopping_, period);
    if (stopping_ || options_.idle_release_ms == 0) continue;
    int64_t now = NowNs();
    int64_t idle_ns = static_cast<int64_t>(options_.idle_release_ms) * 1000000;
    std::vector<std::pair<int64_t, ResourceId>> idle;
    std::vector<std::pair<int64_t, ResourceId>> all;
    for (const auto& [res, r] : resources_) {
      if (r.holders != 0 || r.demoting != 0 || r.cover.empty()) continue;
      all.emplace_back(r.used_ns, res);
      if (now - r.used_ns > idle_ns) idle.emplace_back(r.used_ns, res);
    }
    // Beyond the cap, the least recently used go back too.
    if (resources_.size() > options_.max_cached_resources) {
      std::sort(all.begin(), all.end());
      size_t excess = resources_.size() - options_.max_cached_resources;
      for (size_t i = 0; i < excess && i < all.size(); ++i)
        idle.push_back(all[i]);
    }
    for (const auto& [used, res] : idle) {
      ++stats_.idle_releases;
      GiveBackLocked(res);
    }
  }
}

void LockCache::Stop() {
  std::vector<ResourceId> cached;
  bool give_back;
  {
    absl::MutexLock lock(&mu_);
    give_back = !stopping_ && !clients_.empty();
    if (give_back) {
      for (const auto& [res, r] : resources_) {
        if (!r.cover.empty()) cached.push_back(res);
      }
    }
  }
  // Give every cached lock back cleanly: the hooks write dirty data back.
  for (const ResourceId& res : cached) {
    Demote(res, ByteRange{0, kInfinity}, LockMode::kUn, 0,
           absl::Now() + absl::Seconds(5));
  }
  std::vector<std::unique_ptr<LockClient>> clients;
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
    clients = std::move(clients_);
    clients_.clear();
  }
  if (janitor_.joinable()) janitor_.join();
  if (recovery_.joinable()) recovery_.join();
  // Streams deliver to this cache (and its workers) until they are gone.
  for (auto& c : clients) c->Stop(/*goodbye=*/true);
  clients.clear();
  workers_.reset();
}

// An exact acquire for `task` (0: the node itself); a POSIX request that is
// not a replay is a conversion (it replaces the owner's locks in range).
proto::NodeMessage LockCache::AcquireMessage(uint64_t id, const ResourceId& res,
                                             const ByteRange& range,
                                             LockMode mode, uint64_t task,
                                             bool try_only, bool replay) {
  proto::NodeMessage m;
  proto::AcquireRequest* a = m.mutable_acquire();
  a->set_request_id(id);
  *a->mutable_resource() = ToProto(res);
  a->mutable_owner()->set_session_id(session_id_);
  a->mutable_owner()->set_task(task);
  a->set_mode(static_cast<proto::LockMode>(mode));
  a->mutable_range()->set_start(range.start);
  a->mutable_range()->set_end(range.end);
  a->set_exact(true);
  a->set_convert(!replay && res.kind == LockKind::kPosix);
  a->set_try_only(try_only);
  a->set_replay(replay);
  return m;
}

absl::Status LockCache::PosixLock(uint64_t ino, const ByteRange& range,
                                  LockMode mode, uint64_t owner, bool wait) {
  if (absl::Status s = ValidateRange(range); !s.ok()) return s;
  const ResourceId res{ino, LockKind::kPosix};
  absl::MutexLock lock(&mu_);
  for (;;) {
    if (stopping_) return MakeError(Errc::kUnavailable, "lock cache stopped");
    if (clients_.empty()) {
      return MakeError(Errc::kUnavailable, "lock cache not started");
    }
    LockClient* c = ClientFor(res);
    if (mode == LockMode::kUn) {
      auto it = posix_.find({res, owner});
      if (it == posix_.end()) return absl::OkStatus();
      ReduceCover(it->second, range, LockMode::kUn);
      if (it->second.cover.empty()) posix_.erase(it);
      SendPosixRelease(res, owner, range);
      // unlock(2) returns once the lock is gone at lockd: another node's
      // request that follows must find it free (the release itself has no
      // reply; a heartbeat behind it on the same stream does).
      return BarrierLocked(c);
    }
    if (!c->connected()) {
      NapLocked(&mu_, &stopping_, absl::Milliseconds(50));
      continue;
    }
    uint64_t id = next_request_++;
    Pending& p = pending_[id];
    p.resource = res;
    p.range = range;
    p.mode = mode;
    p.posix_owner = owner;
    c->Send(AcquireMessage(id, res, range, mode, owner, !wait, false));
    auto done = [this, id]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      auto it = pending_.find(id);
      return stopping_ || it == pending_.end() || it->second.done;
    };
    mu_.Await(absl::Condition(&done));
    auto it = pending_.find(id);
    if (it == pending_.end() || !it->second.done) {
      return MakeError(Errc::kUnavailable, "lock cache stopped");
    }
    absl::Status st = it->second.status;
    pending_.erase(it);
    if (ErrcOf(st) == Errc::kGrace) {
      NapLocked(&mu_, &stopping_, absl::Milliseconds(100));
      continue;  // lockd restarted: ask again once its grace is over.
    }
    return st;
  }
}

absl::Status LockCache::BarrierLocked(LockClient* c) {
  const uint64_t seq = (1ull << 63) | next_barrier_++;
  proto::NodeMessage m;
  m.mutable_heartbeat()->set_sequence(seq);
  c->Send(m);
  auto done = [this, seq]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return stopping_ || barriers_done_.count(seq) != 0;
  };
  bool ok = mu_.AwaitWithTimeout(absl::Condition(&done), absl::Seconds(10));
  barriers_done_.erase(seq);
  if (!ok || stopping_) {
    return MakeError(Errc::kUnavailable,
                     "lock manager did not confirm the unlock");
  }
  return absl::OkStatus();
}

void LockCache::SendPosixRelease(const ResourceId& res, uint64_t owner,
                                 const ByteRange& range) {
  if (clients_.empty()) return;
  proto::NodeMessage m;
  proto::ReleaseRequest* rel = m.mutable_release();
  *rel->mutable_resource() = ToProto(res);
  rel->mutable_owner()->set_session_id(session_id_);
  rel->mutable_owner()->set_task(owner);
  rel->mutable_range()->set_start(range.start);
  rel->mutable_range()->set_end(range.end);
  rel->set_new_mode(proto::UN);
  ClientFor(res)->Send(m);
}

void LockCache::CancelPosix(uint64_t ino, uint64_t owner) {
  CancelPosixWhere([&](const Pending& p) {
    return p.resource == ResourceId{ino, LockKind::kPosix} &&
           p.posix_owner == owner;
  });
}

void LockCache::CancelAllPosix() {
  CancelPosixWhere(
      [](const Pending& p) { return p.resource.kind == LockKind::kPosix; });
}

void LockCache::CancelPosixWhere(
    const std::function<bool(const Pending&)>& which) {
  absl::MutexLock lock(&mu_);
  for (auto& [id, p] : pending_) {
    if (p.resource.kind == LockKind::kPosix && which(p) && !p.done &&
        !p.replay) {
      const ResourceId res = p.resource;
      proto::NodeMessage m;
      m.mutable_cancel()->set_request_id(id);
      if (!clients_.empty()) ClientFor(res)->Send(m);
      cancelled_posix_[id] = {res, p.posix_owner};
      p.done = true;
      p.status =
          MakeError(Errc::kTimedOut, "record lock request cancelled", EINTR);
    }
  }
}

absl::StatusOr<std::optional<LockCache::PosixConflict>> LockCache::TestPosix(
    uint64_t ino, const ByteRange& range, LockMode mode, uint64_t owner) {
  const ResourceId res{ino, LockKind::kPosix};
  uint64_t session = session_id_.load();
  std::string address = config_.lockd[ShardOf(
      ino, static_cast<uint8_t>(LockKind::kPosix), config_.lockd.size())];
  auto stub = proto::LockService::NewStub(rpc::MakeChannel(address));
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  proto::DumpRequest req;
  req.set_ino(ino);
  proto::DumpReply rep;
  grpc::Status s = stub->Dump(&ctx, req, &rep);
  if (!s.ok()) {
    return MakeError(Errc::kUnavailable,
                     "lock manager not reachable at " + address);
  }
  for (const proto::LockEntry& e : rep.locks()) {
    if (e.waiting() || e.resource().kind() != proto::POSIX) continue;
    if (e.owner().session_id() == session && e.owner().task() == owner) {
      continue;
    }
    ByteRange r = rpc::FromProto(e.range());
    LockMode m = static_cast<LockMode>(e.mode());
    if (r.Overlaps(range) && !lockmgr::Compatible(m, mode)) {
      return std::optional<PosixConflict>(
          PosixConflict{r, m, e.owner().session_id(), e.owner().task()});
    }
  }
  (void)res;
  return std::optional<PosixConflict>();
}

bool LockCache::Covered(const ResourceId& res, const ByteRange& range,
                        LockMode mode) {
  absl::MutexLock lock(&mu_);
  auto it = resources_.find(res);
  return it != resources_.end() && Covers(it->second, range, mode);
}

bool LockCache::TaskConflicts(const ResourceId& res, const ByteRange& range,
                              LockMode mode, uint64_t task) {
  return local_.HoldsConflicting(res, lockmgr::Owner{0, task}, range, mode);
}

LockCache::SessionSnapshot LockCache::Snapshot() {
  absl::MutexLock lock(&mu_);
  return {session_id_.load(), incarnation_.load()};
}

LockCacheStats LockCache::Stats() {
  absl::MutexLock lock(&mu_);
  LockCacheStats s = stats_;
  s.cached_resources = resources_.size();
  return s;
}

}  // namespace rangefs::client
