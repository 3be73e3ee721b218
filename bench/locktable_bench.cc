// Lock-table throughput: acquire + release of one small exact EX range on a
// resource that already holds 0, 1k or 100k other locks, and the same with
// an 8 EiB range. The figure to compare is the time per pair across sizes:
// operations are O(log n), so 100k held locks should cost a small constant
// factor over none, and 8 EiB the same as 4 KiB.
#include <benchmark/benchmark.h>

#include "lockmgr/range_lock_table.h"

namespace rangefs::lockmgr {
namespace {

constexpr uint64_t kPage = 4096;
constexpr uint64_t k8EiB = 8ull << 60;

// Fills `table` with `held` SH locks of 4 KiB, spaced 8 KiB apart, held by
// other owners, below the range the benchmark locks.
void Populate(RangeLockTable& table, int64_t held) {
  for (int64_t i = 0; i < held; ++i) {
    LockRequest r;
    r.resource = ResourceId{1, LockKind::kData};
    r.owner = Owner{static_cast<uint64_t>(100 + i % 16), 0};
    r.mode = LockMode::kSh;
    r.range = {static_cast<uint64_t>(i) * 2 * kPage,
               static_cast<uint64_t>(i) * 2 * kPage + kPage};
    r.exact = true;
    if (!table.Acquire(r).ok()) abort();
  }
}

void AcquireRelease(benchmark::State& state, uint64_t length) {
  RangeLockTable table;
  const int64_t held = state.range(0);
  Populate(table, held);
  // Lock above the held ones so the request is grantable.
  const uint64_t base = static_cast<uint64_t>(held) * 2 * kPage + kPage;
  LockRequest req;
  req.resource = ResourceId{1, LockKind::kData};
  req.owner = Owner{1, 0};
  req.mode = LockMode::kEx;
  req.range = {base, base + length};
  req.exact = true;
  for (auto _ : state) {
    auto granted = table.Acquire(req);
    if (!granted.ok() || !granted->granted) {
      state.SkipWithError("not granted");
      break;
    }
    auto released = table.Release(req.resource, req.owner, req.range);
    benchmark::DoNotOptimize(released);
  }
  state.SetItemsProcessed(state.iterations());
  state.counters["held_locks"] = static_cast<double>(held);
}

void BM_AcquireRelease4KiB(benchmark::State& state) {
  AcquireRelease(state, kPage);
}
void BM_AcquireRelease8EiB(benchmark::State& state) {
  AcquireRelease(state, k8EiB);
}

// Non-exact requests exercise the expansion queries as well.
void BM_ExpandingAcquireRelease(benchmark::State& state) {
  RangeLockTable table;
  const int64_t held = state.range(0);
  Populate(table, held);
  LockRequest req;
  req.resource = ResourceId{1, LockKind::kData};
  req.owner = Owner{1, 0};
  req.mode = LockMode::kEx;
  const uint64_t mid = static_cast<uint64_t>(held / 2) * 2 * kPage + kPage;
  req.range = {mid, mid + kPage};
  for (auto _ : state) {
    auto granted = table.Acquire(req);
    if (!granted.ok() || !granted->granted) {
      state.SkipWithError("not granted");
      break;
    }
    auto released = table.Release(req.resource, req.owner,
                                  granted->effects.grants[0].range);
    benchmark::DoNotOptimize(released);
  }
  state.SetItemsProcessed(state.iterations());
}

BENCHMARK(BM_AcquireRelease4KiB)->Arg(0)->Arg(1000)->Arg(100000);
BENCHMARK(BM_AcquireRelease8EiB)->Arg(0)->Arg(1000)->Arg(100000);
BENCHMARK(BM_ExpandingAcquireRelease)->Arg(1)->Arg(1000)->Arg(100000);

}  // namespace
}  // namespace rangefs::lockmgr

BENCHMARK_MAIN();
