// Randomized test of RangeLockTable against a brute-force model: the same
// rules (docs/lock-table.md) written as linear scans over plain vectors.
// After every step the table and the model must agree on every granted
// lock (as per-owner, per-mode coverage), the queue, the outcome of the
// call, the grants it caused (in order) and the granted ranges; and the
// table must satisfy the invariants on its own:
//  * no two incompatible granted locks overlap;
//  * no queued request is grantable;
//  * every granted lock that blocks a queued request has a callback demand
//    covering the blocked part with a keep mode the request allows.
#include <algorithm>
#include <cstdint>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "common/status.h"
#include "gtest/gtest.h"
#include "lockmgr/range_lock_table.h"

namespace rangefs::lockmgr {
namespace {

struct MLock {
  Owner owner;
  LockMode mode;
  ByteRange range;
};

struct MWaiter {
  uint64_t ticket;
  LockRequest req;
};

struct MResource {
  std::vector<MLock> locks;
  std::vector<MWaiter> waiters;  // In ticket order.
};

// Queue order: conversions first, then FIFO.
bool Ahead(const MWaiter& q, const LockRequest& req, uint64_t ticket) {
  if (q.ticket == ticket) return false;
  return q.req.convert ? (!req.convert || q.ticket < ticket)
                       : (!req.convert && q.ticket < ticket);
}

bool LockBlocks(const MLock& l, const LockRequest& req) {
  return l.range.Overlaps(req.range) && !Compatible(l.mode, req.mode) &&
         !(req.convert && l.owner == req.owner);
}

class Model {
 public:
  struct Outcome {
    Errc code = Errc::kOk;
    bool granted = false;
    ByteRange granted_range;
    std::vector<Grant> grants;
  };

  Outcome Acquire(const LockRequest& req, uint64_t ticket) {
    MResource& r = res_[req.resource];
    Outcome out;
    bool grantable =
        !BlockedByGranted(r, req) && !BlockedByWaiter(r, req, ticket);
    if (!grantable) {
      if (Deadlock(r, req)) {
        out.code = Errc::kDeadlock;
        return out;
      }
      if (req.try_only) {
        out.code = Errc::kWouldBlock;
        return out;
      }
      r.waiters.push_back(MWaiter{ticket, req});
      return out;
    }
    out.granted = true;
    out.granted_range = DoGrant(r, req, ticket, &out.grants);
    if (req.convert) Process(r, &out.grants);
    return out;
  }

  std::vector<Grant> Reduce(const ResourceId& id, const Owner& owner,
                            const ByteRange& range, LockMode keep) {
    std::vector<Grant> grants;
    MResource& r = res_[id];
    ReduceIn(r, owner, range, keep);
    Process(r, &grants);
    return grants;
  }

  bool Cancel(uint64_t ticket, std::vector<Grant>* grants) {
    for (auto& [id, r] : res_) {
      for (size_t i = 0; i < r.waiters.size(); ++i) {
        if (r.waiters[i].ticket == ticket) {
          r.waiters.erase(r.waiters.begin() + i);
          Process(r, grants);
          return true;
        }
      }
    }
    return false;
  }

  std::vector<Grant> DropSession(uint64_t session) {
    std::vector<Grant> grants;
    for (auto& [id, r] : res_) {
      bool had = false;
      for (size_t i = 0; i < r.waiters.size();) {
        if (r.waiters[i].req.owner.session == session) {
          r.waiters.erase(r.waiters.begin() + i);
          had = true;
        } else {
          ++i;
        }
      }
      for (size_t i = 0; i < r.locks.size();) {
        if (r.locks[i].owner.session == session) {
          r.locks.erase(r.locks.begin() + i);
          had = true;
        } else {
          ++i;
        }
      }
      if (had) Process(r, &grants);
    }
    return grants;
  }

  const std::map<ResourceId, MResource>& resources() const { return res_; }

  std::vector<uint64_t> WaitingTickets() const {
    std::vector<uint64_t> t;
    for (const auto& [id, r] : res_) {
      for (const MWaiter& w : r.waiters) t.push_back(w.ticket);
    }
    return t;
  }

 private:
  static bool BlockedByGranted(const MResource& r, const LockRequest& req) {
    for (const MLock& l : r.locks) {
      if (LockBlocks(l, req)) return true;
    }
    return false;
  }

  static bool BlockedByWaiter(const MResource& r, const LockRequest& req,
                              uint64_t ticket) {
    for (const MWaiter& q : r.waiters) {
      if (Ahead(q, req, ticket) && q.req.range.Overlaps(req.range) &&
          !Compatible(q.req.mode, req.mode)) {
        return true;
      }
    }
    return false;
  }

  static bool OwnerBlocks(const MResource& r, const Owner& owner,
                          const LockRequest& req) {
    if (req.convert && req.owner == owner) return false;
    for (const MLock& l : r.locks) {
      if (l.owner == owner && LockBlocks(l, req)) return true;
    }
    return false;
  }

  static bool Deadlock(const MResource& r, const LockRequest& req) {
    if (OwnerBlocks(r, req.owner, req)) return true;
    for (const MWaiter& q : r.waiters) {
      if (req.convert && !q.req.convert) continue;
      if (q.req.range.Overlaps(req.range) &&
          !Compatible(q.req.mode, req.mode) &&
          OwnerBlocks(r, req.owner, q.req)) {
        return true;
      }
    }
    return false;
  }

  static ByteRange Expand(const MResource& r, const LockRequest& req,
                          uint64_t ticket) {
    if (req.exact || req.convert) return req.range;
    std::vector<std::pair<LockMode, ByteRange>> others;
    for (const MLock& l : r.locks) others.push_back({l.mode, l.range});
    for (const MWaiter& w : r.waiters) {
      if (w.ticket != ticket) others.push_back({w.req.mode, w.req.range});
    }
    uint64_t lo = 0, hi = kInfinity;
    for (const auto& [mode, range] : others) {
      if (Compatible(mode, req.mode)) continue;
      if (range.Overlaps(req.range)) return req.range;
      if (range.start < req.range.start) lo = std::max(lo, range.end);
      if (range.start >= req.range.end) hi = std::min(hi, range.start);
    }
    return {lo, hi};
  }

  static void ReduceIn(MResource& r, const Owner& owner, const ByteRange& range,
                       LockMode keep) {
    std::vector<MLock> out;
    for (const MLock& l : r.locks) {
      if (l.owner != owner || !l.range.Overlaps(range)) {
        out.push_back(l);
        continue;
      }
      LockMode reduced = Meet(l.mode, keep);
      if (l.range.start < range.start) {
        out.push_back({owner, l.mode, {l.range.start, range.start}});
      }
      if (reduced != LockMode::kUn) {
        out.push_back({owner, reduced, l.range.Intersect(range)});
      }
      if (range.end < l.range.end) {
        out.push_back({owner, l.mode, {range.end, l.range.end}});
      }
    }
    r.locks = std::move(out);
  }

  static ByteRange DoGrant(MResource& r, const LockRequest& req,
                           uint64_t ticket, std::vector<Grant>* grants) {
    ByteRange range = Expand(r, req, ticket);
    if (req.convert) ReduceIn(r, req.owner, req.range, LockMode::kUn);
    r.locks.push_back({req.owner, req.mode, range});
    grants->push_back(
        Grant{ticket, req.tag, req.resource, req.owner, req.mode, range});
    return range;
  }

  // Grants the first grantable request in queue order until none is left.
  static void Process(MResource& r, std::vector<Grant>* grants) {
    for (;;) {
      std::vector<MWaiter> order = r.waiters;
      std::stable_sort(order.begin(), order.end(),
                       [](const MWaiter& a, const MWaiter& b) {
                         return a.req.convert > b.req.convert;
                       });
      bool granted = false;
      for (const MWaiter& w : order) {
        // Erase first: a request does not block itself.
        auto it = std::find_if(
            r.waiters.begin(), r.waiters.end(),
            [&](const MWaiter& x) { return x.ticket == w.ticket; });
        if (BlockedByGranted(r, w.req) || BlockedByWaiter(r, w.req, w.ticket)) {
          continue;
        }
        r.waiters.erase(it);
        DoGrant(r, w.req, w.ticket, grants);
        granted = true;
        break;
      }
      if (!granted) return;
    }
  }

  std::map<ResourceId, MResource> res_;
};

// Coverage of (resource, owner, mode) as disjoint sorted intervals.
using Coverage = std::map<std::tuple<ResourceId, uint64_t, uint64_t, int>,
                          std::vector<ByteRange>>;

std::vector<ByteRange> Normalize(std::vector<ByteRange> v) {
  std::sort(v.begin(), v.end(), [](const ByteRange& a, const ByteRange& b) {
    return a.start < b.start;
  });
  std::vector<ByteRange> out;
  for (const ByteRange& r : v) {
    if (!out.empty() && r.start <= out.back().end) {
      out.back().end = std::max(out.back().end, r.end);
    } else {
      out.push_back(r);
    }
  }
  return out;
}

Coverage CoverageOf(const std::vector<LockInfo>& rows) {
  std::map<std::tuple<ResourceId, uint64_t, uint64_t, int>,
           std::vector<ByteRange>>
      raw;
  for (const LockInfo& i : rows) {
    if (i.waiting) continue;
    raw[{i.resource, i.owner.session, i.owner.task, static_cast<int>(i.mode)}]
        .push_back(i.range);
  }
  Coverage c;
  for (auto& [k, v] : raw) c[k] = Normalize(v);
  return c;
}

Coverage CoverageOf(const Model& m) {
  std::map<std::tuple<ResourceId, uint64_t, uint64_t, int>,
           std::vector<ByteRange>>
      raw;
  for (const auto& [id, r] : m.resources()) {
    for (const MLock& l : r.locks) {
      raw[{id, l.owner.session, l.owner.task, static_cast<int>(l.mode)}]
          .push_back(l.range);
    }
  }
  Coverage c;
  for (auto& [k, v] : raw) c[k] = Normalize(v);
  return c;
}

std::string Describe(const LockRequest& r) {
  std::ostringstream s;
  s << r.resource.ToString() << " " << r.owner.ToString() << " "
    << LockModeName(r.mode) << " " << r.range.ToString()
    << (r.exact ? " exact" : "") << (r.try_only ? " try" : "")
    << (r.convert ? " convert" : "");
  return s.str();
}

std::string Describe(const std::vector<Grant>& gs) {
  std::ostringstream s;
  for (const Grant& g : gs) {
    s << " #" << g.ticket << ":" << g.owner.ToString() << ":"
      << LockModeName(g.mode) << g.range.ToString();
  }
  return s.str();
}

class RandomRun {
 public:
  explicit RandomRun(uint32_t seed) : rng_(seed) {}

  ByteRange RandomRange() {
    // A small offset space, so ranges collide often, plus infinity.
    uint64_t a = Uniform(0, 15);
    uint64_t b = Chance(0.15) ? kInfinity : Uniform(a + 1, 16);
    return {a, b};
  }

  LockMode RandomMode() {
    static const LockMode kModes[] = {LockMode::kSh, LockMode::kDf,
                                      LockMode::kEx};
    return kModes[Uniform(0, 2)];
  }

  Owner RandomOwner() { return Owner{Uniform(1, 3), Uniform(0, 1)}; }

  ResourceId RandomResource() {
    return ResourceId{1, Chance(0.5) ? LockKind::kData : LockKind::kInval};
  }

  uint64_t Uniform(uint64_t lo, uint64_t hi) {
    return std::uniform_int_distribution<uint64_t>(lo, hi)(rng_);
  }
  bool Chance(double p) { return std::bernoulli_distribution(p)(rng_); }

 private:
  std::mt19937_64 rng_;
};

void CheckInvariants(const RangeLockTable& table, const std::string& where) {
  std::vector<LockInfo> rows = table.Dump();
  std::vector<const LockInfo*> locks, waiters;
  for (const LockInfo& i : rows) (i.waiting ? waiters : locks).push_back(&i);
  for (size_t i = 0; i < locks.size(); ++i) {
    for (size_t j = i + 1; j < locks.size(); ++j) {
      const LockInfo& a = *locks[i];
      const LockInfo& b = *locks[j];
      ASSERT_FALSE(a.resource == b.resource && a.range.Overlaps(b.range) &&
                   !Compatible(a.mode, b.mode))
          << where << ": incompatible locks overlap: " << a.owner.ToString()
          << LockModeName(a.mode) << a.range.ToString() << " and "
          << b.owner.ToString() << LockModeName(b.mode) << b.range.ToString();
    }
  }
  for (const LockInfo* w : waiters) {
    for (const LockInfo* l : locks) {
      if (!(l->resource == w->resource) || !l->range.Overlaps(w->range) ||
          Compatible(l->mode, w->mode) ||
          (w->convert && l->owner == w->owner)) {
        continue;
      }
      ByteRange needed = l->range.Intersect(w->range);
      LockMode keep = KeepModeFor(w->mode);
      ASSERT_TRUE(l->callback_pending && l->callback_range.Contains(needed) &&
                  Meet(l->callback_keep, keep) == l->callback_keep)
          << where << ": waiter #" << w->ticket << " " << w->owner.ToString()
          << LockModeName(w->mode) << w->range.ToString() << " is blocked by "
          << l->owner.ToString() << LockModeName(l->mode) << l->range.ToString()
          << " which was never called back for it";
    }
  }
}

void RunSequence(uint32_t seed, int steps) {
  RandomRun rnd(seed);
  RangeLockTable table;
  Model model;
  uint64_t next_ticket = 1;
  std::vector<std::string> log;
  auto where = [&]() {
    std::ostringstream s;
    s << "seed " << seed << " step " << log.size() << "\n";
    size_t from = log.size() > 25 ? log.size() - 25 : 0;
    for (size_t i = from; i < log.size(); ++i) s << "  " << log[i] << "\n";
    return s.str();
  };
  for (int step = 0; step < steps; ++step) {
    double op = rnd.Uniform(0, 99);
    std::vector<Grant> expect_grants;
    std::vector<Grant> got_grants;
    if (op < 50) {
      LockRequest req;
      req.resource = rnd.RandomResource();
      req.owner = rnd.RandomOwner();
      req.mode = rnd.RandomMode();
      req.range = rnd.RandomRange();
      req.exact = rnd.Chance(0.3);
      req.try_only = rnd.Chance(0.1);
      req.convert = rnd.Chance(0.15);
      req.tag = step;
      log.push_back("acquire " + Describe(req));
      Model::Outcome want = model.Acquire(req, next_ticket);
      absl::StatusOr<AcquireResult> got = table.Acquire(req);
      ASSERT_EQ(ErrcOf(got.status()), want.code) << where() << got.status();
      if (!got.ok()) continue;
      ASSERT_EQ(got->ticket, next_ticket) << where();
      ++next_ticket;
      ASSERT_EQ(got->granted, want.granted) << where();
      if (want.granted) {
        ASSERT_EQ(got->effects.grants.at(0).range, want.granted_range)
            << where() << " got " << got->effects.grants[0].range.ToString();
      }
      expect_grants = want.grants;
      got_grants = got->effects.grants;
    } else if (op < 85) {
      ResourceId id = rnd.RandomResource();
      Owner owner = rnd.RandomOwner();
      ByteRange range = rnd.RandomRange();
      static const LockMode kKeep[] = {LockMode::kUn, LockMode::kUn,
                                       LockMode::kSh, LockMode::kDf};
      LockMode keep = kKeep[rnd.Uniform(0, 3)];
      log.push_back("reduce " + id.ToString() + " " + owner.ToString() + " " +
                    range.ToString() + " keep " + LockModeName(keep));
      expect_grants = model.Reduce(id, owner, range, keep);
      absl::StatusOr<Effects> got = table.Reduce(id, owner, range, keep);
      ASSERT_TRUE(got.ok()) << where() << got.status();
      got_grants = got->grants;
    } else if (op < 96) {
      std::vector<uint64_t> waiting = model.WaitingTickets();
      if (waiting.empty()) continue;
      uint64_t t = waiting[rnd.Uniform(0, waiting.size() - 1)];
      log.push_back("cancel #" + std::to_string(t));
      ASSERT_TRUE(model.Cancel(t, &expect_grants));
      absl::StatusOr<Effects> got = table.Cancel(t);
      ASSERT_TRUE(got.ok()) << where() << got.status();
      got_grants = got->grants;
    } else {
      uint64_t session = rnd.Uniform(1, 3);
      log.push_back("drop session " + std::to_string(session));
      expect_grants = model.DropSession(session);
      got_grants = table.DropSession(session).grants;
    }
    ASSERT_EQ(Describe(got_grants), Describe(expect_grants)) << where();
    if (!got_grants.empty() || !expect_grants.empty()) {
      log.back() += " => grants" + Describe(got_grants);
    }
    std::vector<LockInfo> rows = table.Dump();
    ASSERT_EQ(CoverageOf(rows), CoverageOf(model)) << where();
    std::vector<uint64_t> table_waiting;
    for (const LockInfo& i : rows) {
      if (i.waiting) table_waiting.push_back(i.ticket);
    }
    std::vector<uint64_t> model_waiting = model.WaitingTickets();
    std::sort(table_waiting.begin(), table_waiting.end());
    std::sort(model_waiting.begin(), model_waiting.end());
    ASSERT_EQ(table_waiting, model_waiting) << where();
    CheckInvariants(table, where());
    if (::testing::Test::HasFatalFailure()) return;
  }
}

TEST(RangeLockModelTest, RandomSequencesMatchBruteForceModel) {
  // 2000 sequences of 300 steps: 600k operations, each checked.
  for (uint32_t seed = 1; seed <= 2000; ++seed) {
    RunSequence(seed, 300);
    if (::testing::Test::HasFatalFailure()) return;
  }
}

}  // namespace
}  // namespace rangefs::lockmgr
