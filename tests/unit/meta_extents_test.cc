// Extent maps: allocation, commit with validity cookies, fallocate modes,
// truncate, seek, and exact space accounting.
#include <sys/stat.h>

#include "common/status.h"
#include "gtest/gtest.h"
#include "server/meta/meta_server.h"
#include "tests/util/temp_dir.h"

namespace rangefs::meta {
namespace {

constexpr uint64_t kS = 7;  // Session.
constexpr uint64_t kB = kBlockSize;
constexpr uint64_t kMiB = 1 << 20;

class MetaExtentsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto s = MetaServer::Open(
        dir_.Sub("meta"), "fs",
        {DeviceInfo{0, 4 * kMiB, ""}, DeviceInfo{1, 4 * kMiB, ""}},
        /*sync=*/false);
    ASSERT_TRUE(s.ok()) << s.status();
    server_ = std::move(*s);
    auto f =
        server_->Create(kS, kRootIno, "f", S_IFREG | 0644, 0, Creds{}, true, 0);
    ASSERT_TRUE(f.ok());
    ino_ = f->ino;
  }
  void TearDown() override {
    auto rep = server_->Fsck();
    ASSERT_TRUE(rep.ok());
    for (const std::string& p : rep->problems) ADD_FAILURE() << p;
  }

  // Maps and commits [off, off+len) as a client's writeback would.
  MapResult WriteBlocks(uint64_t off, uint64_t len) {
    auto m = server_->MapWrite(kS, ino_, off, len);
    EXPECT_TRUE(m.ok()) << m.status();
    auto c = server_->CommitWrite(kS, ino_, {{off, off + len}}, m->cookie,
                                  off + len, Timespec{});
    EXPECT_TRUE(c.ok()) << c.status();
    return *m;
  }
  uint64_t FreeBlocks() { return server_->GetStatFs()->free_blocks; }

  testing::TempDir dir_;
  std::unique_ptr<MetaServer> server_;
  uint64_t ino_ = 0;
};

TEST_F(MetaExtentsTest, MapReadOfNewFileIsOneHole) {
  auto m = server_->MapRead(kS, ino_, 0, 3 * kB);
  ASSERT_TRUE(m.ok());
  ASSERT_EQ(m->mappings.size(), 1u);
  EXPECT_EQ(m->mappings[0].state, ExtentState::kHole);
  EXPECT_EQ(m->mappings[0].length, 3 * kB);
}

TEST_F(MetaExtentsTest, MapWriteAllocatesUnwrittenAndBumpsGeneration) {
  uint64_t gen = server_->GetAttr(ino_)->extent_gen;
  auto m = server_->MapWrite(kS, ino_, 100, 2 * kB);  // Spans 3 blocks.
  ASSERT_TRUE(m.ok());
  ASSERT_EQ(m->mappings.size(), 1u);
  EXPECT_EQ(m->mappings[0].offset, 0u);
  EXPECT_EQ(m->mappings[0].length, 3 * kB);
  EXPECT_EQ(m->mappings[0].state, ExtentState::kUnwritten);
  EXPECT_GT(m->cookie, gen);
  EXPECT_EQ(server_->GetAttr(ino_)->blocks, 3 * kB / 512);
}

TEST_F(MetaExtentsTest, RacingMapWritesOfOneHoleGetOneAllocation) {
  auto a = server_->MapWrite(kS, ino_, 0, kB);
  auto b = server_->MapWrite(kS + 1, ino_, 0, kB);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(a->mappings[0].physical, b->mappings[0].physical);
  EXPECT_EQ(a->mappings[0].device, b->mappings[0].device);
  EXPECT_EQ(FreeBlocks(), 2 * 4 * kMiB / kB - 1);
}

TEST_F(MetaExtentsTest, CommitConvertsToWrittenAndSetsSize) {
  WriteBlocks(0, 2 * kB);
  auto m = server_->MapRead(kS, ino_, 0, 2 * kB);
  ASSERT_EQ(m->mappings.size(), 1u);
  EXPECT_EQ(m->mappings[0].state, ExtentState::kWritten);
  EXPECT_EQ(m->size, 2 * kB);
}

TEST_F(MetaExtentsTest, CommitOfPartOfAnAllocationLeavesTheRestUsable) {
  auto m = server_->MapWrite(kS, ino_, 0, 4 * kB);
  ASSERT_TRUE(
      server_->CommitWrite(kS, ino_, {{0, kB}}, m->cookie, kB, Timespec{})
          .ok());
  // The same cookie still commits the rest: those bytes did not change.
  EXPECT_TRUE(
      server_
          ->CommitWrite(kS, ino_, {{kB, 4 * kB}}, m->cookie, 4 * kB, Timespec{})
          .ok());
}

TEST_F(MetaExtentsTest, CommitAfterPunchIsStale) {
  auto m = server_->MapWrite(kS, ino_, 0, 2 * kB);
  ASSERT_TRUE(
      server_
          ->Fallocate(kS + 1, ino_, kFallocPunchHole | kFallocKeepSize, 0, kB)
          .ok());
  auto c = server_->CommitWrite(kS, ino_, {{0, 2 * kB}}, m->cookie, 2 * kB,
                                Timespec{});
  EXPECT_EQ(ErrcOf(c.status()), Errc::kStale);
  EXPECT_EQ(server_->counters().stale_commits, 1u);
  // Remapping and committing again succeeds.
  WriteBlocks(0, 2 * kB);
}

TEST_F(MetaExtentsTest, CommitAfterRemapOfTheSameBytesIsStale) {
  auto m = server_->MapWrite(kS, ino_, 0, kB);
  ASSERT_TRUE(
      server_->Fallocate(kS, ino_, kFallocPunchHole | kFallocKeepSize, 0, kB)
          .ok());
  ASSERT_TRUE(server_->MapWrite(kS + 1, ino_, 0, kB).ok());
  EXPECT_EQ(
      ErrcOf(
          server_->CommitWrite(kS, ino_, {{0, kB}}, m->cookie, kB, Timespec{})
              .status()),
      Errc::kStale);
}

TEST_F(MetaExtentsTest, CookieFromTheFutureIsInvalid) {
  auto m = server_->MapWrite(kS, ino_, 0, kB);
  EXPECT_EQ(ErrcOf(server_
                       ->CommitWrite(kS, ino_, {{0, kB}}, m->cookie + 100, kB,
                                     Timespec{})
                       .status()),
            Errc::kInvalidArgument);
}

TEST_F(MetaExtentsTest, UnalignedOrOverlappingCommitRangesAreInvalid) {
  auto m = server_->MapWrite(kS, ino_, 0, 2 * kB);
  EXPECT_EQ(
      ErrcOf(
          server_->CommitWrite(kS, ino_, {{0, 100}}, m->cookie, 100, Timespec{})
              .status()),
      Errc::kInvalidArgument);
  EXPECT_EQ(ErrcOf(server_
                       ->CommitWrite(kS, ino_, {{0, kB}, {0, 2 * kB}},
                                     m->cookie, kB, Timespec{})
                       .status()),
            Errc::kInvalidArgument);
}

TEST_F(MetaExtentsTest, OverflowingRangesAreRefused) {
  EXPECT_EQ(ErrcOf(server_->MapWrite(kS, ino_, kInfinity - 10, 100).status()),
            Errc::kInvalidArgument);
  EXPECT_EQ(ErrcOf(server_->MapWrite(kS, ino_, kMaxFileSize, kB).status()),
            Errc::kFileTooBig);
  EXPECT_EQ(ErrcOf(server_->MapRead(kS, ino_, 0, 2ull << 30).status()),
            Errc::kInvalidArgument);
  EXPECT_EQ(ErrcOf(server_->Fallocate(kS, ino_, 0, 5, 0).status()),
            Errc::kInvalidArgument);
}

TEST_F(MetaExtentsTest, FencedSessionCannotMapOrCommit) {
  auto m = server_->MapWrite(kS, ino_, 0, kB);
  ASSERT_TRUE(server_->Fence(kS).ok());
  EXPECT_EQ(ErrcOf(server_->MapWrite(kS, ino_, 0, kB).status()), Errc::kFenced);
  EXPECT_EQ(
      ErrcOf(
          server_->CommitWrite(kS, ino_, {{0, kB}}, m->cookie, kB, Timespec{})
              .status()),
      Errc::kFenced);
  EXPECT_EQ(ErrcOf(server_->MapRead(kS, ino_, 0, kB).status()), Errc::kFenced);
}

TEST_F(MetaExtentsTest, PunchFreesWholeBlocksOnly) {
  WriteBlocks(0, 4 * kB);
  uint64_t free_before = FreeBlocks();
  ASSERT_TRUE(
      server_
          ->Fallocate(kS, ino_, kFallocPunchHole | kFallocKeepSize, 100, 2 * kB)
          .ok());
  // [100, 8292) covers block 1 whole; blocks 0 and 2 are partial.
  EXPECT_EQ(FreeBlocks(), free_before + 1);
  auto m = server_->MapRead(kS, ino_, 0, 4 * kB);
  ASSERT_EQ(m->mappings.size(), 3u);
  EXPECT_EQ(m->mappings[1].state, ExtentState::kHole);
  EXPECT_EQ(m->size, 4 * kB);
}

TEST_F(MetaExtentsTest, PunchWithoutKeepSizeIsNotSupported) {
  EXPECT_EQ(
      ErrcOf(server_->Fallocate(kS, ino_, kFallocPunchHole, 0, kB).status()),
      Errc::kNotSupported);
}

TEST_F(MetaExtentsTest, ZeroRangeMakesBlocksUnwrittenAndExtends) {
  WriteBlocks(0, 2 * kB);
  ASSERT_TRUE(server_->Fallocate(kS, ino_, kFallocZeroRange, 0, 4 * kB).ok());
  auto m = server_->MapRead(kS, ino_, 0, 4 * kB);
  for (const Extent& e : m->mappings) {
    EXPECT_EQ(e.state, ExtentState::kUnwritten);
  }
  EXPECT_EQ(m->size, 4 * kB);
}

TEST_F(MetaExtentsTest, AllocateKeepSizeDoesNotGrowTheFile) {
  ASSERT_TRUE(server_->Fallocate(kS, ino_, kFallocKeepSize, 0, 8 * kB).ok());
  EXPECT_EQ(server_->GetAttr(ino_)->size, 0u);
  EXPECT_EQ(server_->GetAttr(ino_)->blocks, 8 * kB / 512);
  ASSERT_TRUE(server_->Fallocate(kS, ino_, 0, 0, 10 * kB).ok());
  EXPECT_EQ(server_->GetAttr(ino_)->size, 10 * kB);
}

TEST_F(MetaExtentsTest, CollapseShiftsLaterExtentsDown) {
  WriteBlocks(0, 4 * kB);
  auto before = server_->MapRead(kS, ino_, 3 * kB, kB);
  ASSERT_TRUE(
      server_->Fallocate(kS, ino_, kFallocCollapseRange, kB, 2 * kB).ok());
  auto after = server_->MapRead(kS, ino_, kB, kB);
  EXPECT_EQ(after->mappings[0].physical, before->mappings[0].physical);
  EXPECT_EQ(after->size, 2 * kB);
}

TEST_F(MetaExtentsTest, CollapseFollowsLinuxRules) {
  WriteBlocks(0, 4 * kB);
  EXPECT_EQ(
      ErrcOf(
          server_->Fallocate(kS, ino_, kFallocCollapseRange, 100, kB).status()),
      Errc::kInvalidArgument);  // Unaligned.
  EXPECT_EQ(
      ErrcOf(server_->Fallocate(kS, ino_, kFallocCollapseRange, 2 * kB, 2 * kB)
                 .status()),
      Errc::kInvalidArgument);  // Reaches EOF.
  EXPECT_EQ(
      ErrcOf(server_
                 ->Fallocate(kS, ino_, kFallocCollapseRange | kFallocKeepSize,
                             0, kB)
                 .status()),
      Errc::kInvalidArgument);  // Extra flag.
}

TEST_F(MetaExtentsTest, InsertOpensAHoleAndShiftsUp) {
  WriteBlocks(0, 2 * kB);
  auto before = server_->MapRead(kS, ino_, kB, kB);
  ASSERT_TRUE(
      server_->Fallocate(kS, ino_, kFallocInsertRange, kB, 3 * kB).ok());
  auto after = server_->MapRead(kS, ino_, 0, 5 * kB);
  ASSERT_EQ(after->mappings.size(), 3u);
  EXPECT_EQ(after->mappings[1].state, ExtentState::kHole);
  EXPECT_EQ(after->mappings[2].physical, before->mappings[0].physical);
  EXPECT_EQ(after->size, 5 * kB);
  EXPECT_EQ(ErrcOf(server_->Fallocate(kS, ino_, kFallocInsertRange, 5 * kB, kB)
                       .status()),
            Errc::kInvalidArgument);  // At EOF.
}

TEST_F(MetaExtentsTest, TruncateDownFreesBlocksPastTheNewEnd) {
  WriteBlocks(0, 4 * kB);
  uint64_t free_before = FreeBlocks();
  SetAttrArgs a;
  a.valid = kSetSize;
  a.size = kB + 1;
  ASSERT_TRUE(server_->SetAttr(kS, ino_, a).ok());
  EXPECT_EQ(FreeBlocks(), free_before + 2);
  a.size = 10 * kB;  // Up: a hole.
  ASSERT_TRUE(server_->SetAttr(kS, ino_, a).ok());
  auto m = server_->MapRead(kS, ino_, 0, 10 * kB);
  EXPECT_EQ(m->mappings.back().state, ExtentState::kHole);
  EXPECT_EQ(m->size, 10 * kB);
}

TEST_F(MetaExtentsTest, SeekFindsDataAndHoles) {
  WriteBlocks(2 * kB, kB);
  SetAttrArgs a;
  a.valid = kSetSize;
  a.size = 6 * kB;
  ASSERT_TRUE(server_->SetAttr(kS, ino_, a).ok());
  EXPECT_EQ(*server_->Seek(ino_, 0, true), 2 * kB);
  EXPECT_EQ(*server_->Seek(ino_, 2 * kB + 5, false), 3 * kB);
  EXPECT_EQ(*server_->Seek(ino_, 0, false), 0u);
  EXPECT_EQ(ErrcOf(server_->Seek(ino_, 4 * kB, true).status()),
            Errc::kOutOfRange);
  EXPECT_EQ(ErrcOf(server_->Seek(ino_, 6 * kB, false).status()),
            Errc::kOutOfRange);
}

TEST_F(MetaExtentsTest, AllocationBeyondFreeSpaceIsNoSpaceAndChangesNothing) {
  uint64_t free_before = FreeBlocks();
  auto r = server_->Fallocate(kS, ino_, 0, 0, 16 * kMiB);
  EXPECT_EQ(ErrcOf(r.status()), Errc::kNoSpace);
  EXPECT_EQ(FreeBlocks(), free_before);
  EXPECT_EQ(server_->GetAttr(ino_)->size, 0u);
}

// A write-back run larger than the space left is mapped as far as the
// space goes (a short mapping, as iomap allows), so a filesystem fills to
// its last block; only a write that cannot get one block is ENOSPC.
TEST_F(MetaExtentsTest, MapWriteNearFullMapsWhatFitsThenIsNoSpace) {
  auto g =
      server_->Create(kS, kRootIno, "g", S_IFREG | 0644, 0, Creds{}, true, 0);
  ASSERT_TRUE(g.ok());
  ASSERT_TRUE(
      server_->Fallocate(kS, g->ino, 0, 0, FreeBlocks() * kB - 5 * kB).ok());
  ASSERT_EQ(FreeBlocks(), 5u);

  auto m = server_->MapWrite(kS, ino_, 0, 16 * kB);
  ASSERT_TRUE(m.ok()) << m.status();
  uint64_t end = 0;
  for (const Extent& e : m->mappings) {
    EXPECT_EQ(e.offset, end);
    EXPECT_NE(e.state, ExtentState::kHole);
    end = e.end();
  }
  EXPECT_EQ(end, 5 * kB);
  EXPECT_EQ(FreeBlocks(), 0u);
  ASSERT_TRUE(
      server_
          ->CommitWrite(kS, ino_, {{0, 5 * kB}}, m->cookie, 5 * kB, Timespec{})
          .ok());

  // Already-allocated blocks can still be rewritten on a full filesystem:
  // the mapping stops where the first hole starts.
  auto again = server_->MapWrite(kS, ino_, 0, 16 * kB);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->mappings.back().end(), 5 * kB);

  Attr before = *server_->GetAttr(ino_);
  auto full = server_->MapWrite(kS, ino_, 5 * kB, 16 * kB);
  EXPECT_EQ(ErrcOf(full.status()), Errc::kNoSpace);
  Attr after = *server_->GetAttr(ino_);
  EXPECT_EQ(after.extent_gen, before.extent_gen);
  EXPECT_EQ(after.blocks, before.blocks);
}

// A scattered write-back maps its runs in one call: one synced batch, one
// generation, and the commit of all of them with that cookie.
TEST_F(MetaExtentsTest, MapWriteOfSeveralRangesMapsEachInOneBatch) {
  uint64_t gen = server_->GetAttr(ino_)->extent_gen;
  auto m = server_->MapWriteRanges(kS, ino_,
                                   {{0, kB}, {4 * kB, 2 * kB}, {100 * kB, kB}});
  ASSERT_TRUE(m.ok()) << m.status();
  ASSERT_EQ(m->mappings.size(), 3u);
  const uint64_t want[][2] = {{0, kB}, {4 * kB, 2 * kB}, {100 * kB, kB}};
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(m->mappings[i].offset, want[i][0]);
    EXPECT_EQ(m->mappings[i].length, want[i][1]);
    EXPECT_EQ(m->mappings[i].state, ExtentState::kUnwritten);
  }
  EXPECT_EQ(m->cookie, gen + 1);
  EXPECT_EQ(server_->GetAttr(ino_)->blocks, 4 * kB / 512);
  auto c = server_->CommitWrite(
      kS, ino_, {{0, kB}, {4 * kB, 6 * kB}, {100 * kB, 101 * kB}}, m->cookie,
      101 * kB, Timespec{});
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->size, 101 * kB);
  // What is mapped already and what is not, together.
  auto again = server_->MapWriteRanges(kS, ino_, {{0, 2 * kB}, {5 * kB, kB}});
  ASSERT_TRUE(again.ok()) << again.status();
  ASSERT_EQ(again->mappings.size(), 3u);
  EXPECT_EQ(again->mappings[0].state, ExtentState::kWritten);
  EXPECT_EQ(again->mappings[1].state, ExtentState::kUnwritten);
  EXPECT_EQ(again->mappings[1].offset, kB);
  EXPECT_EQ(again->mappings[2].offset, 5 * kB);
  EXPECT_EQ(again->mappings[2].state, ExtentState::kWritten);
}

TEST_F(MetaExtentsTest, MapWriteRangesOutOfOrderOrSharingABlockAreInvalid) {
  uint64_t gen = server_->GetAttr(ino_)->extent_gen;
  EXPECT_EQ(
      ErrcOf(
          server_->MapWriteRanges(kS, ino_, {{4 * kB, kB}, {0, kB}}).status()),
      Errc::kInvalidArgument);
  EXPECT_EQ(
      ErrcOf(
          server_->MapWriteRanges(kS, ino_, {{0, 100}, {200, 100}}).status()),
      Errc::kInvalidArgument);
  EXPECT_EQ(ErrcOf(server_->MapWriteRanges(kS, ino_, {}).status()),
            Errc::kInvalidArgument);
  std::vector<std::pair<uint64_t, uint64_t>> many;
  for (uint64_t i = 0; i <= kMaxMappings; ++i) many.push_back({i * 2 * kB, kB});
  EXPECT_EQ(ErrcOf(server_->MapWriteRanges(kS, ino_, many).status()),
            Errc::kInvalidArgument);
  EXPECT_EQ(server_->GetAttr(ino_)->extent_gen, gen);
  EXPECT_EQ(server_->GetAttr(ino_)->blocks, 0u);
}

// Ranges of one commit inside one extent (fallocate made it): each becomes
// WRITTEN, and neither's edit undoes the other's.
TEST_F(MetaExtentsTest, CommitOfTwoRangesOfOneExtentWritesBoth) {
  ASSERT_TRUE(server_->Fallocate(kS, ino_, 0, 0, 16 * kB).ok());
  auto m = server_->MapWriteRanges(kS, ino_, {{kB, kB}, {8 * kB, 2 * kB}});
  ASSERT_TRUE(m.ok()) << m.status();
  ASSERT_EQ(m->mappings.size(), 2u);
  ASSERT_TRUE(server_
                  ->CommitWrite(kS, ino_, {{kB, 2 * kB}, {8 * kB, 10 * kB}},
                                m->cookie, 16 * kB, Timespec{})
                  .ok());
  auto r = server_->MapRead(kS, ino_, 0, 16 * kB);
  ASSERT_TRUE(r.ok());
  std::vector<std::pair<uint64_t, ExtentState>> got;
  for (const Extent& e : r->mappings) got.push_back({e.offset, e.state});
  const std::vector<std::pair<uint64_t, ExtentState>> want = {
      {0, ExtentState::kUnwritten},
      {kB, ExtentState::kWritten},
      {2 * kB, ExtentState::kUnwritten},
      {8 * kB, ExtentState::kWritten},
      {10 * kB, ExtentState::kUnwritten}};
  EXPECT_EQ(got, want);
}

// Near full, the ranges are mapped in order as far as the space goes; the
// rest is left for the next call, which is the one that gets NO_SPACE.
TEST_F(MetaExtentsTest, MapWriteRangesNearFullMapsAPrefix) {
  auto g =
      server_->Create(kS, kRootIno, "g", S_IFREG | 0644, 0, Creds{}, true, 0);
  ASSERT_TRUE(g.ok());
  ASSERT_TRUE(
      server_->Fallocate(kS, g->ino, 0, 0, FreeBlocks() * kB - 3 * kB).ok());
  ASSERT_EQ(FreeBlocks(), 3u);
  auto m = server_->MapWriteRanges(
      kS, ino_, {{0, kB}, {2 * kB, kB}, {4 * kB, 2 * kB}, {8 * kB, kB}});
  ASSERT_TRUE(m.ok()) << m.status();
  ASSERT_EQ(m->mappings.size(), 3u);
  EXPECT_EQ(m->mappings[2].offset, 4 * kB);
  EXPECT_EQ(m->mappings[2].length, kB);
  EXPECT_EQ(FreeBlocks(), 0u);
  ASSERT_TRUE(server_
                  ->CommitWrite(kS, ino_,
                                {{0, kB}, {2 * kB, 3 * kB}, {4 * kB, 5 * kB}},
                                m->cookie, 5 * kB, Timespec{})
                  .ok());
  EXPECT_EQ(
      ErrcOf(server_->MapWriteRanges(kS, ino_, {{5 * kB, kB}, {8 * kB, kB}})
                 .status()),
      Errc::kNoSpace);
}

TEST_F(MetaExtentsTest, AllocationSpansDevicesWhenOneIsFull) {
  ASSERT_TRUE(server_->Fallocate(kS, ino_, 0, 0, 6 * kMiB).ok());
  auto m = server_->MapRead(kS, ino_, 0, 6 * kMiB);
  std::set<uint32_t> devices;
  for (const Extent& e : m->mappings) devices.insert(e.device);
  EXPECT_EQ(devices.size(), 2u);
}

TEST_F(MetaExtentsTest, UnlinkFreesEveryBlock) {
  uint64_t free_before = FreeBlocks();
  WriteBlocks(0, 8 * kB);
  ASSERT_TRUE(server_->Unlink(kS, kRootIno, "f", false).ok());
  EXPECT_EQ(FreeBlocks(), free_before);
}

}  // namespace
}  // namespace rangefs::meta
