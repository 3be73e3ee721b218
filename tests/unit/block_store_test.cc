#include "server/data/block_store.h"

#include <cstdlib>
#include <cstring>
#include <memory>

#include "common/status.h"
#include "gtest/gtest.h"
#include "tests/util/temp_dir.h"

namespace rangefs::data {
namespace {

class BlockStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto s = BlockStore::Open(dir_.Sub("d"), 1 << 20);
    ASSERT_TRUE(s.ok()) << s.status();
    store_ = std::move(*s);
  }
  testing::TempDir dir_;
  std::unique_ptr<BlockStore> store_;
};

TEST_F(BlockStoreTest, NeverWrittenBlocksReadAsZeros) {
  auto r = store_->Read(1, 4096, 4096);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(*r, std::string(4096, '\0'));
}

TEST_F(BlockStoreTest, WriteThenReadBack) {
  ASSERT_TRUE(store_->Write(1, 100, "hello", true).ok());
  EXPECT_EQ(*store_->Read(1, 100, 5), "hello");
}

TEST_F(BlockStoreTest, AlignedAndUnalignedIoSeeEachOther) {
  // Aligned I/O bypasses the page cache where the file system allows it;
  // unaligned I/O of the same blocks goes through it. Each sees the other.
  void* p = nullptr;
  ASSERT_EQ(posix_memalign(&p, BlockStore::kDirectAlign, 8192), 0);
  std::unique_ptr<char, decltype(&free)> aligned(static_cast<char*>(p), free);
  memset(aligned.get(), 'd', 8192);
  ASSERT_TRUE(
      store_->Write(1, 8192, absl::string_view(aligned.get(), 8192), false)
          .ok());
  EXPECT_EQ(*store_->Read(1, 8192 + 100, 3), "ddd");  // Unaligned.
  ASSERT_TRUE(store_->Write(1, 8192 + 10, "buffered", false).ok());
  ASSERT_TRUE(store_->ReadInto(1, 8192, 8192, aligned.get()).ok());
  EXPECT_EQ(std::string(aligned.get() + 10, 8), "buffered");
  EXPECT_EQ(aligned.get()[9], 'd');
  EXPECT_EQ(aligned.get()[18], 'd');
  // Never-written blocks read as zeros either way.
  ASSERT_TRUE(store_->ReadInto(1, 65536, 4096, aligned.get()).ok());
  EXPECT_EQ(std::string(aligned.get(), 4096), std::string(4096, '\0'));
}

TEST_F(BlockStoreTest, OutOfDeviceAndOversizeIoIsRefused) {
  EXPECT_EQ(ErrcOf(store_->Read(1, (1 << 20) - 2, 4).status()),
            Errc::kInvalidArgument);
  EXPECT_EQ(ErrcOf(store_->Read(1, UINT64_MAX - 1, 4).status()),
            Errc::kInvalidArgument);
  EXPECT_EQ(ErrcOf(store_->Read(1, 0, 0).status()), Errc::kInvalidArgument);
  EXPECT_EQ(ErrcOf(store_->Write(1, (1 << 20) - 1, "ab", false)),
            Errc::kInvalidArgument);
  EXPECT_EQ(ErrcOf(store_->Write(0, 0, "ab", false)), Errc::kInvalidArgument);
}

TEST_F(BlockStoreTest, FencedSessionIsRefusedEvenAfterRestart) {
  ASSERT_TRUE(store_->Fence(5).ok());
  EXPECT_EQ(ErrcOf(store_->Write(5, 0, "x", false)), Errc::kFenced);
  EXPECT_EQ(ErrcOf(store_->Read(5, 0, 1).status()), Errc::kFenced);
  EXPECT_TRUE(store_->Write(6, 0, "x", false).ok());
  store_.reset();
  auto s = BlockStore::Open(dir_.Sub("d"), 0);
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(ErrcOf((*s)->Write(5, 0, "x", false)), Errc::kFenced);
  EXPECT_EQ((*s)->Stats().fenced.count(5), 1u);
}

TEST_F(BlockStoreTest, ReopenWithADifferentSizeIsRefused) {
  store_.reset();
  EXPECT_EQ(ErrcOf(BlockStore::Open(dir_.Sub("d"), 2 << 20).status()),
            Errc::kInvalidArgument);
}

}  // namespace
}  // namespace rangefs::data
