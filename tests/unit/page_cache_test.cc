#include "client/page_cache.h"

#include <algorithm>
#include <cstring>
#include <iterator>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace rangefs::client {
namespace {

std::string Page(char c) { return std::string(kPageSize, c); }

std::string ReadOut(PageCache& c, uint64_t ino, uint64_t index) {
  std::string out(kPageSize, '\0');
  if (!c.Read(ino, index, out.data())) return "";
  return out;
}

TEST(PageCacheTest, InsertedPagesReadBack) {
  PageCache c(1 << 20);
  c.Insert(1, 0, Page('a').data(), false);
  EXPECT_EQ(ReadOut(c, 1, 0), Page('a'));
  EXPECT_EQ(ReadOut(c, 1, 1), "");
  EXPECT_EQ(ReadOut(c, 2, 0), "");
}

TEST(PageCacheTest, AdoptCleanRunSkipsCachedPagesAndKeepsTheirData) {
  PageCache c(1 << 20);
  c.Insert(1, 2, Page('d').data(), true);
  c.Insert(1, 3, Page('c').data(), false);
  std::vector<char*> frames = c.TakeFrames(5);
  const char fill[] = {'0', '1', '2', '3', '4'};
  for (int i = 0; i < 5; ++i) memset(frames[i], fill[i], kPageSize);
  EXPECT_EQ(c.Stats().pages, 2u);  // Taken frames are not cached pages.
  EXPECT_EQ(c.AdoptCleanRun(1, 0, 5, frames.data()), 3u);
  EXPECT_EQ(ReadOut(c, 1, 0), Page('0'));
  EXPECT_EQ(ReadOut(c, 1, 1), Page('1'));
  EXPECT_EQ(ReadOut(c, 1, 2), Page('d'));  // Dirty: newer than the fill.
  EXPECT_EQ(ReadOut(c, 1, 3), Page('c'));
  EXPECT_EQ(ReadOut(c, 1, 4), Page('4'));
  EXPECT_EQ(c.Stats().dirty_pages, 1u);
  EXPECT_EQ(c.Stats().pages, 5u);
}

// Frames a fill took but did not fill go back, and are handed out again
// (the two refused by AdoptCleanRun too): the cache allocates no more.
TEST(PageCacheTest, FramesGivenBackAreReused) {
  PageCache c(1 << 20);
  std::vector<char*> first = c.TakeFrames(4);
  c.Insert(1, 0, Page('a').data(), false);
  EXPECT_EQ(c.AdoptCleanRun(1, 0, 2, first.data()), 1u);  // Page 0 cached.
  first[0] = first[1] = nullptr;                          // The cache's again.
  c.GiveFrames(first.data(), first.size());
  std::vector<char*> again = c.TakeFrames(3);
  std::vector<char*> expect = {first[2], first[3]};
  int reused = 0;
  for (char* f : again) {
    reused += std::count(expect.begin(), expect.end(), f);
  }
  EXPECT_EQ(reused, 2);
  c.GiveFrames(again.data(), again.size());
  EXPECT_EQ(c.Stats().pages, 2u);
}

// Frames of dropped and evicted pages are reused: a page never shows
// what its frame held before.
TEST(PageCacheTest, ReusedFramesHoldOnlyTheirNewPage) {
  PageCache c(600 * kPageSize);  // Past one 2 MiB slab of frames.
  for (int round = 0; round < 4; ++round) {
    const char ch = static_cast<char>('a' + round);
    for (uint64_t i = 0; i < 1000; ++i) c.Insert(7, i, Page(ch).data(), false);
    EXPECT_LE(c.Stats().pages, 600u);
    for (uint64_t i = 400; i < 1000; ++i) {
      EXPECT_EQ(ReadOut(c, 7, i), Page(ch)) << round << " " << i;
    }
    if (round % 2 == 1) c.Drop(7, {0, kInfinity});
  }
}

TEST(PageCacheTest, WriteNeedsACachedPageAndDirtiesIt) {
  PageCache c(1 << 20);
  EXPECT_FALSE(c.Write(1, 0, 0, "x", 1));
  c.Insert(1, 0, Page('a').data(), false);
  ASSERT_TRUE(c.Write(1, 0, 10, "xyz", 3));
  std::string want = Page('a');
  want.replace(10, 3, "xyz");
  EXPECT_EQ(ReadOut(c, 1, 0), want);
  EXPECT_EQ(c.dirty_bytes(), kPageSize);
  EXPECT_FALSE(c.Write(1, 0, kPageSize - 1, "ab", 2));  // Past the page.
}

TEST(PageCacheTest, CleanPagesAreEvictedLeastRecentlyUsedFirst) {
  PageCache c(3 * kPageSize);
  c.Insert(1, 0, Page('a').data(), false);
  c.Insert(1, 1, Page('b').data(), false);
  c.Insert(1, 2, Page('c').data(), false);
  ReadOut(c, 1, 0);  // Page 0 is now the most recently used.
  c.Insert(1, 3, Page('d').data(), false);
  EXPECT_TRUE(c.Contains(1, 0));
  EXPECT_FALSE(c.Contains(1, 1));
  EXPECT_EQ(c.Stats().evictions, 1u);
}

TEST(PageCacheTest, DirtyPagesAreNeverEvicted) {
  PageCache c(2 * kPageSize);
  c.Insert(1, 0, Page('a').data(), true);
  c.Insert(1, 1, Page('b').data(), true);
  c.Insert(1, 2, Page('c').data(), true);
  EXPECT_TRUE(c.Contains(1, 0) && c.Contains(1, 1) && c.Contains(1, 2));
  EXPECT_EQ(c.Stats().dirty_pages, 3u);
}

TEST(PageCacheTest, WritebackCleansOnlyPagesNotDirtiedAgain) {
  PageCache c(1 << 20);
  c.Insert(1, 0, Page('a').data(), true);
  c.Insert(1, 1, Page('b').data(), true);
  DirtyPages d = c.TakeDirty(1, {0, 2 * kPageSize});
  ASSERT_EQ(d.size(), 2u);
  c.Write(1, 1, 0, "z", 1);  // Redirtied while being written back.
  for (const DirtyPage& p : d.pages) c.MarkClean(1, p.index, p.seq);
  EXPECT_EQ(c.Stats().dirty_pages, 1u);
  d = c.TakeDirty(1, {0, kInfinity});
  ASSERT_EQ(d.size(), 1u);
  EXPECT_EQ(d[0].index, 1u);
  EXPECT_EQ(d.Data(0)[0], 'z');
}

// CopyOut copies pages whose frames are neighbours in one call; a copy
// that stops short there still reports exactly the bytes it copied.
TEST(PageCacheTest, CopyOutAcrossNeighbouringFramesStopsWhereTheCopyStopped) {
  PageCache c(1 << 20);
  for (uint64_t i = 0; i < 8; ++i) {
    c.Insert(1, i, Page(static_cast<char>('a' + i)).data(), false);
  }
  static size_t budget;
  static int calls;
  auto stopping = [](void* d, const void* s, size_t n) {
    ++calls;
    const size_t c = std::min(n, budget);
    memcpy(d, s, c);
    budget -= c;
    return c;
  };
  std::string out(8 * kPageSize - 100, '\0');
  budget = SIZE_MAX;
  calls = 0;
  PageCache::CopyResult r = c.CopyOut(1, 100, out.size(), out.data(), stopping);
  EXPECT_EQ(r.copied, out.size());
  EXPECT_FALSE(r.short_copy);
  EXPECT_LT(calls, 8);  // Fresh frames of one slab lie side by side.
  std::string want;
  for (int i = 0; i < 8; ++i) want += Page(static_cast<char>('a' + i));
  EXPECT_EQ(out, want.substr(100));
  budget = 3 * kPageSize + 7;
  r = c.CopyOut(1, 100, out.size(), out.data(), stopping);
  EXPECT_TRUE(r.short_copy);
  EXPECT_EQ(r.copied, 3 * kPageSize + 7);
}

// Write-back sends dirty pages from their own frames: a page dropped
// while its write-back is in flight keeps its frame until the write-back
// lets go, so no other page lands in it meanwhile.
TEST(PageCacheTest, PinnedFramesOutliveTheirDroppedPages) {
  PageCache c(1 << 20);
  c.Insert(1, 0, Page('a').data(), true);
  c.Insert(1, 1, Page('b').data(), true);
  std::vector<const char*> pinned;
  {
    DirtyPages d = c.TakeDirty(1, {0, kInfinity});
    ASSERT_EQ(d.size(), 2u);
    pinned = {d.Data(0), d.Data(1)};
    DirtyPages moved = std::move(d);  // One pin, whoever holds it.
    EXPECT_EQ(c.Drop(1, {0, kInfinity}), 2u);
    std::vector<char*> fresh = c.TakeFrames(600);
    for (char* f : fresh) {
      EXPECT_TRUE(f != pinned[0] && f != pinned[1]);
    }
    c.GiveFrames(fresh.data(), fresh.size());
    c.Insert(2, 0, Page('x').data(), false);
    EXPECT_EQ(std::string(moved.Data(0), kPageSize), Page('a'));
    EXPECT_EQ(std::string(moved.Data(1), kPageSize), Page('b'));
  }
  std::vector<char*> again = c.TakeFrames(600);
  int reused = 0;
  for (char* f : again) reused += f == pinned[0] || f == pinned[1];
  EXPECT_EQ(reused, 2);
  c.GiveFrames(again.data(), again.size());
}

// drop_caches for the node: clean pages go, dirty ones stay, and the
// page cleaned by its write-back goes at the next drop.
TEST(PageCacheTest, DropCleanKeepsOnlyDirtyPages) {
  PageCache c(1 << 20);
  c.Insert(1, 0, Page('a').data(), false);
  c.Insert(1, 1, Page('b').data(), true);
  c.Insert(2, 0, Page('c').data(), false);
  EXPECT_EQ(c.DropClean(), 2u);
  EXPECT_EQ(ReadOut(c, 1, 0), "");
  EXPECT_EQ(ReadOut(c, 2, 0), "");
  EXPECT_EQ(ReadOut(c, 1, 1), Page('b'));
  EXPECT_EQ(c.Stats().pages, 1u);
  EXPECT_EQ(c.Stats().dirty_pages, 1u);
  EXPECT_EQ(c.DropClean(), 0u);
  // Page 1 cleaned by its write-back: now it goes too.
  {
    DirtyPages d = c.TakeDirty(1, {0, kInfinity});
    ASSERT_EQ(d.size(), 1u);
    c.MarkClean(1, &d.pages[0], 1);
  }
  EXPECT_EQ(c.DropClean(), 1u);
  EXPECT_EQ(c.Stats().pages, 0u);
}

TEST(PageCacheTest, TakeDirtySelectsPagesOverlappingTheRange) {
  PageCache c(1 << 20);
  for (uint64_t i = 0; i < 4; ++i) c.Insert(1, i, Page('a').data(), true);
  auto d = c.TakeDirty(1, {kPageSize + 1, 2 * kPageSize + 1});
  ASSERT_EQ(d.size(), 2u);
  EXPECT_EQ(d[0].index, 1u);
  EXPECT_EQ(d[1].index, 2u);
}

TEST(PageCacheTest, TakeDirtyStopsAtMaxPagesInPageOrder) {
  PageCache c(1 << 20);
  for (uint64_t i = 0; i < 6; ++i) {
    c.Insert(1, i, Page(static_cast<char>('a' + i)).data(), i != 2);
  }
  DirtyPages d = c.TakeDirty(1, {0, kInfinity}, 3);
  ASSERT_EQ(d.size(), 3u);
  EXPECT_EQ(d[0].index, 0u);
  EXPECT_EQ(d[1].index, 1u);
  EXPECT_EQ(d[2].index, 3u);
  EXPECT_EQ(d.Data(2)[0], 'd');
  DirtyPages rest = c.TakeDirty(1, {4 * kPageSize, kInfinity}, 3);
  ASSERT_EQ(rest.size(), 2u);
  EXPECT_EQ(rest[1].index, 5u);
}

TEST(PageCacheTest, DropRemovesTheRangeAndCountsLostDirtyPages) {
  PageCache c(1 << 20);
  c.Insert(1, 0, Page('a').data(), true);
  c.Insert(1, 1, Page('b').data(), false);
  c.Insert(1, 5, Page('c').data(), false);
  EXPECT_EQ(c.Drop(1, {0, 2 * kPageSize}), 1u);
  EXPECT_FALSE(c.Contains(1, 0));
  EXPECT_FALSE(c.Contains(1, 1));
  EXPECT_TRUE(c.Contains(1, 5));
  EXPECT_EQ(c.Drop(1, {0, kInfinity}), 0u);
  EXPECT_EQ(c.Stats().pages, 0u);
}

TEST(PageCacheTest, ZeroTailKeepsTheHead) {
  PageCache c(1 << 20);
  c.Insert(1, 0, Page('a').data(), false);
  c.ZeroTail(1, 0, 100);
  std::string want = Page('a');
  std::fill(want.begin() + 100, want.end(), '\0');
  EXPECT_EQ(ReadOut(c, 1, 0), want);
}

// Random operations against a plain map model: contents always match for
// cached pages, dirty pages are never lost, the cap holds for clean pages.
TEST(PageCacheTest, RandomOperationsMatchAModel) {
  std::mt19937_64 rng(3);
  PageCache c(8 * kPageSize);
  std::map<std::pair<uint64_t, uint64_t>, std::pair<std::string, bool>> model;
  // Indexes on both sides of the cache's 64-page chunk boundaries.
  const uint64_t kIndexes[] = {0, 1, 2, 62, 63, 64, 65, 127, 128, 200};
  auto pick = [&] { return kIndexes[rng() % std::size(kIndexes)]; };
  // A page the cache does not have any more: fine if the model had it
  // clean (evicted), a lost write if dirty.
  auto gone = [&](std::pair<uint64_t, uint64_t> key, int step) {
    if (model.count(key)) {
      ASSERT_FALSE(model[key].second) << "dirty page lost, step " << step;
      model.erase(key);
    }
  };
  for (int step = 0; step < 40000; ++step) {
    uint64_t ino = rng() % 3, index = pick();
    auto key = std::make_pair(ino, index);
    switch (rng() % 9) {
      case 0:
      case 1: {
        bool dirty = rng() % 2;
        std::string p = Page(static_cast<char>('a' + rng() % 26));
        c.Insert(ino, index, p.data(), dirty);
        model[key] = {p, dirty};
        break;
      }
      case 2: {
        char b = static_cast<char>(rng());
        uint64_t off = rng() % kPageSize;
        bool ok = c.Write(ino, index, off, &b, 1);
        if (ok) {
          ASSERT_TRUE(model.count(key));
          model[key].first[off] = b;
          model[key].second = true;
        } else {
          gone(key, step);
        }
        break;
      }
      case 3: {
        DirtyPages dirty = c.TakeDirty(ino, {0, kInfinity});
        for (size_t k = 0; k < dirty.size(); ++k) {
          const DirtyPage& d = dirty[k];
          ASSERT_EQ(std::string(dirty.Data(k), kPageSize),
                    model[std::make_pair(ino, d.index)].first);
          model[std::make_pair(ino, d.index)].second = false;
        }
        // Cleaned as write-back does: a run of pages at once.
        c.MarkClean(ino, dirty.pages.data(), dirty.size());
        break;
      }
      case 4: {
        c.Drop(ino, {index * kPageSize, (index + 1) * kPageSize});
        model.erase(key);
        break;
      }
      case 5: {
        std::string got = ReadOut(c, ino, index);
        if (!got.empty()) {
          ASSERT_TRUE(model.count(key));
          ASSERT_EQ(got, model[key].first) << "step " << step;
        } else {
          gone(key, step);
        }
        break;
      }
      case 6: {  // Missing runs over a span of pages.
        uint64_t a = pick(), b = pick();
        if (a > b) std::swap(a, b);
        ++b;
        uint64_t pos = a;
        for (auto [from, to] : c.MissingRuns(ino, a, b)) {
          ASSERT_LT(from, to);
          ASSERT_LE(pos, from) << "step " << step;
          ASSERT_LE(to, b);
          for (uint64_t i = pos; i < from; ++i) {
            ASSERT_TRUE(c.Contains(ino, i));
          }
          for (uint64_t i = from; i < to; ++i) {
            ASSERT_FALSE(c.Contains(ino, i)) << "step " << step;
            gone({ino, i}, step);
          }
          pos = to;
        }
        break;
      }
      case 7: {  // A copy across pages stops at the first missing one.
        uint64_t a = pick(), n = 1 + rng() % 70;
        uint64_t skip = rng() % kPageSize;
        std::string out(n * kPageSize - skip, '\0');
        PageCache::CopyResult r =
            c.CopyOut(ino, a * kPageSize + skip, out.size(), out.data(),
                      [](void* d, const void* s, size_t len) {
                        memcpy(d, s, len);
                        return len;
                      });
        ASSERT_FALSE(r.short_copy);
        for (uint64_t done = 0; done < r.copied;) {
          const uint64_t pos = a * kPageSize + skip + done;
          const uint64_t i = pos / kPageSize, in_page = pos % kPageSize;
          const uint64_t len = std::min(kPageSize - in_page, r.copied - done);
          const auto k = std::make_pair(ino, i);
          ASSERT_TRUE(model.count(k)) << "step " << step;
          ASSERT_EQ(out.substr(done, len), model[k].first.substr(in_page, len))
              << "step " << step;
          done += len;
        }
        if (r.copied < out.size()) {
          const uint64_t stop = (a * kPageSize + skip + r.copied) / kPageSize;
          ASSERT_FALSE(c.Contains(ino, stop));
          gone({ino, stop}, step);
        }
        break;
      }
      case 8: {  // Drop a span of pages.
        uint64_t a = pick(), b = pick();
        if (a > b) std::swap(a, b);
        c.Drop(ino, {a * kPageSize + 1, b * kPageSize + 2});
        for (uint64_t i = a; i <= b; ++i) {
          model.erase({ino, i});
          ASSERT_FALSE(c.Contains(ino, i));
        }
        break;
      }
    }
    // Pages the model holds dirty are always present.
    for (const auto& [k, v] : model) {
      if (v.second) {
        ASSERT_TRUE(c.Contains(k.first, k.second));
      }
    }
    PageCacheStats st = c.Stats();
    ASSERT_LE(st.pages, std::max<uint64_t>(8, st.dirty_pages));
  }
}

}  // namespace
}  // namespace rangefs::client
