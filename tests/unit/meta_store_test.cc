// MetaStore over RocksDB: reads stay inside their inode's keys, so the
// tombstones of deleted files do not slow down the files that remain.
#include "server/meta/meta_store.h"

#include <rocksdb/perf_context.h>
#include <rocksdb/perf_level.h>

#include <memory>

#include "gtest/gtest.h"
#include "server/meta/records.h"
#include "tests/util/temp_dir.h"

namespace rangefs::meta {
namespace {

// Deleted keys a RocksDB iterator stepped over during `fn`.
template <typename Fn>
uint64_t TombstonesSkipped(Fn fn) {
  rocksdb::SetPerfLevel(rocksdb::PerfLevel::kEnableCount);
  rocksdb::get_perf_context()->Reset();
  fn();
  uint64_t n = rocksdb::get_perf_context()->internal_delete_skipped_count;
  rocksdb::SetPerfLevel(rocksdb::PerfLevel::kDisable);
  return n;
}

// An unlink or a first write looks for the extent before an offset: it
// must not walk back through the extents of every file deleted before it.
TEST(MetaStoreTest, SeekForPrevStopsAtItsPrefix) {
  testing::TempDir dir;
  auto store = MetaStore::Open(dir.Sub("db"), /*sync=*/false);
  ASSERT_TRUE(store.ok()) << store.status();
  Batch live;
  live.Put(Cf::kExtents, ExtentKey(3, 0), "three");
  ASSERT_TRUE((*store)->Commit(std::move(live)).ok());
  constexpr int kDeleted = 5000;
  Batch made, gone;
  for (int i = 0; i < kDeleted; ++i) {
    made.Put(Cf::kExtents, ExtentKey(5, i * 4096ull), "x");
    gone.Delete(Cf::kExtents, ExtentKey(5, i * 4096ull));
  }
  ASSERT_TRUE((*store)->Commit(std::move(made)).ok());
  ASSERT_TRUE((*store)->Commit(std::move(gone)).ok());

  uint64_t skipped = TombstonesSkipped([&] {
    auto prev =
        (*store)->SeekForPrev(Cf::kExtents, ExtentPrefix(7), ExtentKey(7, 0));
    ASSERT_TRUE(prev.ok()) << prev.status();
    EXPECT_FALSE(prev->has_value());
  });
  EXPECT_LT(skipped, 10u);
  // Inside its prefix it still finds what is there.
  auto found =
      (*store)->SeekForPrev(Cf::kExtents, ExtentPrefix(3), ExtentKey(3, 8192));
  ASSERT_TRUE(found.ok());
  ASSERT_TRUE(found->has_value());
  EXPECT_EQ((*found)->second, "three");
}

}  // namespace
}  // namespace rangefs::meta
