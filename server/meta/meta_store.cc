#include "server/meta/meta_store.h"

#include <rocksdb/db.h>
#include <rocksdb/options.h>
#include <rocksdb/slice.h>
#include <rocksdb/utilities/options_util.h>
#include <rocksdb/write_batch.h>

#include <utility>

#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "common/status.h"

namespace rangefs::meta {
namespace {

const char* const kCfNames[] = {"inodes", "dentries", "extents",
                                "free",   "meta",     "orphans",
                                "xattrs", "handles",  "replies"};
static_assert(sizeof(kCfNames) / sizeof(kCfNames[0]) ==
              static_cast<size_t>(Cf::kCount));

absl::Status FromRocks(const rocksdb::Status& s, absl::string_view what) {
  if (s.ok()) return absl::OkStatus();
  return MakeError(Errc::kIoError, absl::StrCat(what, ": ", s.ToString()));
}

rocksdb::Slice Slice(absl::string_view s) {
  return rocksdb::Slice(s.data(), s.size());
}

absl::string_view AsView(const rocksdb::Slice& s) {
  return absl::string_view(s.data(), s.size());
}

}  // namespace

struct MetaStore::Pending {
  Batch batch;
  bool done = false;
  absl::Status status;
};

Batch::Batch() = default;
Batch::~Batch() = default;
Batch::Batch(Batch&&) noexcept = default;
Batch& Batch::operator=(Batch&&) noexcept = default;

namespace {
// Extent maps and the free map change only in synced batches (Batch).
bool SyncedFamily(Cf cf) { return cf == Cf::kExtents || cf == Cf::kFree; }
}  // namespace

void Batch::Put(Cf cf, absl::string_view key, absl::string_view value) {
  extent_change_ |= SyncedFamily(cf);
  ops_.push_back(Op{cf, std::string(key), std::string(value)});
}

void Batch::Delete(Cf cf, absl::string_view key) {
  extent_change_ |= SyncedFamily(cf);
  ops_.push_back(Op{cf, std::string(key), std::nullopt});
}

size_t Batch::count() const { return ops_.size(); }

ReadView::~ReadView() { db_->ReleaseSnapshot(snap_); }

absl::StatusOr<std::unique_ptr<MetaStore>> MetaStore::Open(
    const std::string& dir, bool sync) {
  rocksdb::Options options;
  options.create_if_missing = true;
  options.create_missing_column_families = true;
  options.IncreaseParallelism(2);
  // The WAL is the durability mechanism: every write reaches it (in the
  // kernel) before Write returns; batches that need it are synced (Batch).
  options.manual_wal_flush = false;
  std::vector<rocksdb::ColumnFamilyDescriptor> descs;
  descs.emplace_back(rocksdb::kDefaultColumnFamilyName,
                     rocksdb::ColumnFamilyOptions(options));
  for (const char* name : kCfNames) {
    descs.emplace_back(name, rocksdb::ColumnFamilyOptions(options));
  }
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  rocksdb::DB* db = nullptr;
  rocksdb::Status s =
      rocksdb::DB::Open(rocksdb::DBOptions(options), dir, descs, &handles, &db);
  if (!s.ok()) return FromRocks(s, "open " + dir);
  // Drop the default family's handle; keep ours in Cf order.
  db->DestroyColumnFamilyHandle(handles[0]);
  handles.erase(handles.begin());
  return std::unique_ptr<MetaStore>(
      new MetaStore(db, std::move(handles), sync));
}

MetaStore::MetaStore(rocksdb::DB* db,
                     std::vector<rocksdb::ColumnFamilyHandle*> cfs, bool sync)
    : db_(db), cfs_(std::move(cfs)), sync_(sync) {}

MetaStore::~MetaStore() {
  for (auto* h : cfs_) db_->DestroyColumnFamilyHandle(h);
  db_->Close();
  delete db_;
}

std::unique_ptr<ReadView> MetaStore::View() {
  return std::unique_ptr<ReadView>(new ReadView(db_, db_->GetSnapshot()));
}

absl::StatusOr<std::optional<std::string>> MetaStore::Get(
    Cf cf, absl::string_view key, const ReadView* view) {
  rocksdb::ReadOptions ro;
  if (view) ro.snapshot = view->snap_;
  std::string value;
  rocksdb::Status s = db_->Get(ro, Handle(cf), Slice(key), &value);
  if (s.IsNotFound()) return std::optional<std::string>();
  if (!s.ok()) return FromRocks(s, "get");
  return std::optional<std::string>(std::move(value));
}

absl::Status MetaStore::Scan(
    Cf cf, absl::string_view from, absl::string_view to,
    const std::function<bool(absl::string_view, absl::string_view)>& fn,
    const ReadView* view) {
  rocksdb::ReadOptions ro;
  if (view) ro.snapshot = view->snap_;
  std::string upper(to);
  rocksdb::Slice upper_slice(upper);
  if (!upper.empty()) ro.iterate_upper_bound = &upper_slice;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro, Handle(cf)));
  for (it->Seek(Slice(from)); it->Valid(); it->Next()) {
    if (!fn(AsView(it->key()), AsView(it->value()))) break;
  }
  return FromRocks(it->status(), "scan");
}

absl::StatusOr<std::optional<std::pair<std::string, std::string>>>
MetaStore::SeekForPrev(Cf cf, absl::string_view prefix, absl::string_view key,
                       const ReadView* view) {
  rocksdb::ReadOptions ro;
  if (view) ro.snapshot = view->snap_;
  // Bounded below by the prefix: without it a backward seek walks through
  // every deleted key before it (the extents of each file deleted since
  // the last compaction) to reach a live one it then throws away.
  rocksdb::Slice lower(prefix.data(), prefix.size());
  ro.iterate_lower_bound = &lower;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro, Handle(cf)));
  it->SeekForPrev(Slice(key));
  std::optional<std::pair<std::string, std::string>> out;
  if (it->Valid() && AsView(it->key()).substr(0, prefix.size()) == prefix) {
    out.emplace(it->key().ToString(), it->value().ToString());
  }
  if (absl::Status s = FromRocks(it->status(), "seek"); !s.ok()) return s;
  return out;
}

std::shared_ptr<MetaStore::Pending> MetaStore::Submit(Batch batch) {
  auto p = std::make_shared<Pending>();
  p->batch = std::move(batch);
  absl::MutexLock lock(&mu_);
  if (failed_) {
    p->done = true;
    p->status = MakeError(Errc::kUnavailable,
                          "metadata store failed a write; restart the server");
    return p;
  }
  queue_.push_back(p);
  return p;
}

absl::Status MetaStore::Wait(const std::shared_ptr<Pending>& p) {
  absl::MutexLock lock(&mu_);
  while (!p->done) {
    if (!writing_) {
      WriteGroup();
      continue;
    }
    written_.Wait(&mu_);
  }
  return p->status;
}

void MetaStore::WriteGroup() {
  std::vector<std::shared_ptr<Pending>> group(queue_.begin(), queue_.end());
  queue_.clear();
  writing_ = true;
  mu_.Unlock();
  rocksdb::WriteBatch wb;
  bool sync = false;
  for (const auto& p : group) {
    sync |= p->batch.needs_sync();
    for (const Batch::Op& op : p->batch.ops_) {
      if (op.value) {
        wb.Put(Handle(op.cf), Slice(op.key), Slice(*op.value));
      } else {
        wb.Delete(Handle(op.cf), Slice(op.key));
      }
    }
  }
  sync &= sync_;
  rocksdb::Status s;
  if (wb.Count() > 0) {
    rocksdb::WriteOptions wo;
    wo.sync = sync;
    s = db_->Write(wo, &wb);
  } else if (sync) {
    s = db_->FlushWAL(/*sync=*/true);  // Sync() alone: the log so far.
  }
  absl::Status status = FromRocks(s, sync ? "synced write" : "write");
  mu_.Lock();
  if (status.ok() && (sync || wb.Count() > 0)) unsynced_ = !sync;
  if (!status.ok()) {
    failed_ = true;
    RANGEFS_LOG(ERROR) << "metadata write failed, refusing further writes: "
                       << status.message();
  }
  if (sync) ++sync_writes_;
  batches_ += group.size();
  for (const auto& p : group) {
    p->status = status;
    p->done = true;
  }
  writing_ = false;
  written_.SignalAll();
}

absl::Status MetaStore::Sync() {
  {
    absl::MutexLock lock(&mu_);
    // Wait for a group being written: it may be one this call must cover.
    while (writing_) written_.Wait(&mu_);
    if (!unsynced_ && !failed_) return absl::OkStatus();
  }
  Batch b;
  b.RequireSync();
  return Commit(std::move(b));
}

uint64_t MetaStore::sync_writes() const {
  absl::MutexLock lock(&mu_);
  return sync_writes_;
}

uint64_t MetaStore::batches_written() const {
  absl::MutexLock lock(&mu_);
  return batches_;
}

bool MetaStore::failed() const {
  absl::MutexLock lock(&mu_);
  return failed_;
}

}  // namespace rangefs::meta
