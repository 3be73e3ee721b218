// Private helpers of MetaServer shared by its .cc files.
#ifndef RANGEFS_SERVER_META_META_SERVER_INTERNAL_H_
#define RANGEFS_SERVER_META_META_SERVER_INTERNAL_H_

#include <array>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "common/fault_injection.h"
#include "common/log.h"
#include "server/meta/extent_set.h"
#include "server/meta/meta_server.h"
#include "server/meta/replies.h"

namespace rangefs::meta {

// Striped inode locks. An operation locks the stripes of every inode it
// changes in ascending stripe order and holds them until its batch is
// durable, so the next operation on those inodes reads what it wrote.
class MetaServer::InodeLocks {
 public:
  static constexpr size_t kStripes = 1024;
  InodeLocks();
  static std::vector<size_t> Stripes(std::vector<uint64_t> inos);
  std::array<absl::Mutex, kStripes> mu;
};

// One operation: holds its inode locks (and, from LockSeq() until Commit(),
// the sequencing mutex), collects its batch, and commits it.
class MetaServer::Op {
 public:
  // `session` (0 for the server itself) is refused once fenced.
  // The sequencing mutex is taken and released dynamically (LockSeq to
  // Commit), which clang's analysis cannot follow; callers assert it with
  // seq_mu_.AssertHeld() after LockSeq().
  Op(MetaServer* server, uint64_t session,
     std::vector<uint64_t> inos) ABSL_NO_THREAD_SAFETY_ANALYSIS;
  ~Op() ABSL_NO_THREAD_SAFETY_ANALYSIS;
  Op(const Op&) = delete;
  Op& operator=(const Op&) = delete;

  Batch& batch() { return batch_; }
  void PutInode(const InodeRecord& r);
  // Takes the sequencing mutex (before any allocator or counter change) and
  // refuses a fenced session. Held until Commit or destruction, so no fence
  // can come between the check and the submission.
  absl::Status LockSeq() ABSL_NO_THREAD_SAFETY_ANALYSIS;
  // LockSeq() if not yet held, adds the allocator's free-map changes,
  // submits, and waits until the batch is durable.
  absl::Status Commit() ABSL_NO_THREAD_SAFETY_ANALYSIS;
  // Commit() of a change that answers `result`, which the thread's Call
  // (MetaServer::Call) keeps in the same batch.
  template <typename T>
  absl::StatusOr<T> Commit(T result) {
    const Call* call = server_->KeepIn(&batch_, EncodeKept(Now(), result));
    if (absl::Status s = Commit(); !s.ok()) return s;
    if (call != nullptr) server_->Kept(*call);
    // Stored, not yet answered: where a crash makes the node send it again.
    (void)FaultPoint("meta.change.answer");
    return result;
  }

 private:
  MetaServer* server_;
  const uint64_t session_;
  std::vector<size_t> stripes_;
  bool seq_held_ = false;
  Batch batch_;
};

template <typename T>
bool MetaServer::Replayed(T* out) {
  if (UnsafeSwitch("unsafe.meta.forget_replies")) return false;
  const Call* call = CurrentCall();
  if (call == nullptr) return false;
  {
    absl::MutexLock lock(&calls_mu_);
    auto it = kept_.find(call->id_.client);
    if (it == kept_.end() || it->second.count(call->id_.seq) == 0) return false;
  }
  absl::StatusOr<std::optional<std::string>> v =
      store_->Get(Cf::kReplies, ReplyKey(call->id_.client, call->id_.seq));
  if (!v.ok() || !*v) return false;
  if (!DecodeKept(**v, out)) {
    RANGEFS_LOG(ERROR) << "kept reply of call " << call->id_.client << "/"
                       << call->id_.seq << " does not match its change";
    return false;
  }
  RANGEFS_LOG(INFO) << "call " << call->id_.client << "/" << call->id_.seq
                    << " sent again: answered with its kept reply";
  absl::MutexLock lock(&calls_mu_);
  ++replayed_;
  return true;
}

// An entry change's answer: the entry, and its directory's attributes into
// *parent_attr (when not null).
inline absl::StatusOr<Attr> EntryAnswer(const absl::StatusOr<EntryResult>& e,
                                        Attr* parent_attr) {
  if (!e.ok()) return e.status();
  if (parent_attr != nullptr) *parent_attr = e->second;
  return e->first;
}

// Name checks shared by namespace operations.
absl::Status ValidateName(const std::string& name);

inline uint64_t BlockDown(uint64_t x) { return x / kBlockSize * kBlockSize; }
inline uint64_t BlockUp(uint64_t x) {
  return (x + kBlockSize - 1) / kBlockSize * kBlockSize;
}

}  // namespace rangefs::meta

#endif  // RANGEFS_SERVER_META_META_SERVER_INTERNAL_H_
