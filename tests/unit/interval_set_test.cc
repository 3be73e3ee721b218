#include "lockmgr/interval_set.h"

#include <algorithm>
#include <random>
#include <vector>

#include "gtest/gtest.h"

namespace rangefs::lockmgr {
namespace {

using Entry = IntervalSet::Entry;

std::vector<uint64_t> Overlapping(const IntervalSet& s, uint64_t a,
                                  uint64_t b) {
  std::vector<uint64_t> ids;
  s.ForEachOverlap(a, b, [&](const Entry& e) {
    ids.push_back(e.id);
    return true;
  });
  std::sort(ids.begin(), ids.end());
  return ids;
}

TEST(IntervalSetTest, FindsOverlapsAndNotTouchingNeighbours) {
  IntervalSet s;
  s.Insert(0, 10, 1);
  s.Insert(10, 20, 2);
  s.Insert(5, 15, 3);
  EXPECT_EQ(Overlapping(s, 10, 11), (std::vector<uint64_t>{2, 3}));
  EXPECT_EQ(Overlapping(s, 0, 5), (std::vector<uint64_t>{1}));
  EXPECT_EQ(Overlapping(s, 20, 30), (std::vector<uint64_t>{}));
  EXPECT_TRUE(s.AnyOverlap(9, 10));
  EXPECT_FALSE(s.AnyOverlap(20, UINT64_MAX));
}

TEST(IntervalSetTest, HandlesRangesToInfinity) {
  IntervalSet s;
  s.Insert(UINT64_MAX - 1, UINT64_MAX, 7);
  s.Insert(0, UINT64_MAX, 8);
  EXPECT_EQ(Overlapping(s, UINT64_MAX - 1, UINT64_MAX),
            (std::vector<uint64_t>{7, 8}));
  EXPECT_EQ(s.MaxEndStartingBefore(1), UINT64_MAX);
  EXPECT_EQ(s.MinStartAtOrAfter(1), UINT64_MAX - 1);
}

TEST(IntervalSetTest, EraseRemovesOnlyTheNamedEntry) {
  IntervalSet s;
  s.Insert(0, 10, 1);
  s.Insert(0, 10, 2);
  EXPECT_TRUE(s.Erase(0, 1));
  EXPECT_FALSE(s.Erase(0, 1));
  EXPECT_EQ(Overlapping(s, 0, 10), (std::vector<uint64_t>{2}));
  EXPECT_EQ(s.size(), 1u);
}

TEST(IntervalSetTest, NeighbourQueriesOnEmptySet) {
  IntervalSet s;
  EXPECT_FALSE(s.MaxEndStartingBefore(100).has_value());
  EXPECT_FALSE(s.MinStartAtOrAfter(0).has_value());
}

TEST(IntervalSetTest, RandomOperationsMatchAVector) {
  std::mt19937_64 rng(42);
  IntervalSet s;
  std::vector<Entry> model;
  uint64_t next_id = 1;
  for (int step = 0; step < 20000; ++step) {
    int op = rng() % 3;
    if (op < 2 || model.empty()) {
      uint64_t a = rng() % 1000, b = a + 1 + rng() % 200;
      s.Insert(a, b, next_id);
      model.push_back({a, b, next_id++});
    } else {
      size_t i = rng() % model.size();
      ASSERT_TRUE(s.Erase(model[i].start, model[i].id));
      model.erase(model.begin() + i);
    }
    uint64_t qa = rng() % 1200, qb = qa + 1 + rng() % 300;
    std::vector<uint64_t> want;
    std::optional<uint64_t> max_end, min_start;
    for (const Entry& e : model) {
      if (e.start < qb && e.end > qa) want.push_back(e.id);
      if (e.start < qa && (!max_end || e.end > *max_end)) max_end = e.end;
      if (e.start >= qa && (!min_start || e.start < *min_start)) {
        min_start = e.start;
      }
    }
    std::sort(want.begin(), want.end());
    ASSERT_EQ(Overlapping(s, qa, qb), want) << "step " << step;
    ASSERT_EQ(s.MaxEndStartingBefore(qa), max_end) << "step " << step;
    ASSERT_EQ(s.MinStartAtOrAfter(qa), min_start) << "step " << step;
    ASSERT_EQ(s.size(), model.size());
  }
}

}  // namespace
}  // namespace rangefs::lockmgr
