// KernelCache: the Linux page cache of one FUSE mount, kept coherent with
// the cluster as a cache above the node (client::CacheAbove).
//
// The kernel caches a page only when the node gave it through
// Client::ReadForCache, which hands the bytes over (the READ reply) while
// the node's INVAL lock still covers them. When that lock is called back,
// the node's hook calls Invalidate() before anything else:
// fuse_lowlevel_notify_inval_inode drops the kernel's pages of the range
// and launders its dirty ones (stores through shared mappings) into the
// node through WRITE requests, which Client::WriteFromCache takes without
// waiting for any lock.
//
// The trap (docs/fuse.md): the kernel invalidation locks each page, and a
// READ or write(2) in flight holds its pages locked until the daemon
// answers it. Such a request may be waiting for a cluster lock that waits
// for this very callback. Invalidate() therefore never notifies the range
// of a request in flight on this mount (Register/Unregister): those pages
// are locked and not up to date, so they hold nothing stale, and their
// request gets its bytes under a lock granted after the callback. Each
// notification runs on its own thread. When a request comes in flight
// over a range whose notification is still blocked (maybe on that
// request's pages), the blocked one is left to finish by itself and the
// range is notified again minus what is in flight; nothing else starts a
// new notification, so threads are bounded by the requests.
//
// Pages the kernel may dirty (a shared writable mapping needs a writable
// open file) must sit under INVAL EX: while an inode has a writable
// cached open on this mount, its fills ask for EX (Exclusive()), and the
// writable open itself drops what was cached under SH (no FOPEN_KEEP_CACHE).
//
// Names: the kernel keeps a dentry (a name, or its absence) while the
// node holds the directory's INODE lock; when the node gives up (or loses)
// a directory's lock, InvalidateNames() moves the connection's dentry
// epoch (FUSE_NOTIFY_INC_EPOCH, Linux 6.16), which makes every dentry of
// the mount ask again, taking no lock in the kernel. (Invalidating one
// name, notify_inval_entry, takes the directory's i_rwsem, which a request
// waiting for that very lock may hold.) The kernel reads the epoch before
// it sends a LOOKUP or CREATE, so an answer overtaken by a callback is not
// kept. On a kernel without the epoch the kernel keeps no names.
//
// Sizes: the kernel drops an attribute answer (GETATTR) when a
// notification of its inode came after it asked (each one moves the
// inode's attribute version), and then goes on with the i_size it had: a
// read(2) past that old size stops there although the file grew on
// another node before the read began. The daemon cannot make the kernel
// ask again, but it can tell the size another way: a store notification
// that ends past i_size moves i_size up whatever the attribute version.
// AttrAsked/Overtaken tell when an answer may be dropped; StoreSize then
// stores the file's last byte at size-1 (read under the node's INVAL
// lock). Both must be current: an attribute notification after the size
// was had (the node may have given up its INODE lock) or a page
// notification after the byte was read makes StoreSize give up (the
// caller asks again). A notification that starts while a store is under
// way waits for it (20 ms at most: the store may wait on a page locked by
// a request that waits for this very callback), and if it did not wait
// long enough the page is notified again afterwards. Where the kernel
// may have dirtied the last page (a writable open), Retrieve first asks
// it what it holds there (see op_getattr).
//
// Thread-safe.
#ifndef RANGEFS_CLIENT_FUSE_KERNEL_CACHE_H_
#define RANGEFS_CLIENT_FUSE_KERNEL_CACHE_H_

#define FUSE_USE_VERSION 34
#include <fuse_lowlevel.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "client/rangefs.h"
#include "common/range.h"

namespace rangefs::fuse {

class KernelCache : public client::CacheAbove {
 public:
  // What sends one page-cache notification: 0 or -errno, like
  // fuse_lowlevel_notify_inval_inode (length 0: to the end of the file).
  using Notifier =
      std::function<int(uint64_t ino, int64_t offset, int64_t length)>;

  // What sends one store notification of one byte: 0 or -errno, like
  // fuse_lowlevel_notify_store.
  using Storer = std::function<int(uint64_t ino, uint64_t offset, char byte)>;

  KernelCache() = default;
  // Notifications go to `notify` (attributes only: offset -1) and stores
  // to `store`, not to a session (tests).
  explicit KernelCache(Notifier notify, Storer store = {})
      : notify_(std::move(notify)), store_(std::move(store)) {}
  ~KernelCache() override;  // Shutdown().
  KernelCache(const KernelCache&) = delete;
  KernelCache& operator=(const KernelCache&) = delete;

  // The session notifications go to; set once, before the first request.
  void Attach(fuse_session* se);
  // No notification after this; waits up to `wait_ms` for the ones under
  // way (they end when their pages unlock, or when the connection goes).
  // False if some are still running (the session must then be leaked).
  bool Shutdown(int wait_ms = 2000);

  // A request whose pages the kernel holds locked until it is answered
  // (every page it touches, partial ones included). Returns an id for
  // Unregister, which must come right after the reply.
  uint64_t Register(uint64_t ino, uint64_t offset, uint64_t length);
  void Unregister(uint64_t ino, uint64_t id);

  // Open handles whose pages go through the kernel cache.
  void Opened(uint64_t fh, uint64_t ino, bool writable);
  // False if `fh` was not opened through Opened (a direct-I/O handle).
  bool Closed(uint64_t fh);
  bool Cached(uint64_t fh);
  // Whether fills of `ino` must take INVAL EX (a writable cached open).
  bool Exclusive(uint64_t ino);
  // Whether the kernel may hold pages of `ino` (it was opened cached).
  bool MayCache(uint64_t ino);

  // client::CacheAbove. length 0 or past 2^63: to the end of the file.
  void Invalidate(uint64_t ino, uint64_t offset, uint64_t length) override;
  // The kernel forgets the attributes of `ino` (they were given with a
  // timeout, op_getattr); the next stat or read(2) asks again. Touches no
  // page, so it is sent at once.
  void InvalidateAttributes(uint64_t ino) override;
  // Moves the dentry epoch (see above). Touches nothing locked.
  void InvalidateNames() override;

  // When an attribute request of `ino` came in (before the node is asked).
  struct AttrTicket {
    uint64_t seq = 0;  // Notifications started before it.
    absl::Time at;
  };
  AttrTicket AttrAsked(uint64_t ino);
  // Whether the kernel may drop the answer to the request of `t`: a
  // notification of `ino` started after it, is under way, or ended less
  // than kKernelQueueMargin before it came in (the kernel read its
  // attribute version before sending the request).
  bool Overtaken(uint64_t ino, const AttrTicket& t);
  static constexpr absl::Duration kKernelQueueMargin = absl::Seconds(1);
  // The notifications of any inode started so far; taken before the last
  // byte for StoreSize is read.
  uint64_t NoticeSeq();
  // One size store (StoreSize).
  struct SizeStore {
    uint64_t size = 0;  // > 0.
    char last = 0;      // The byte at size-1.
    // NoticeSeq() before the node was asked for `size`: an attribute
    // notification of the inode since then (the node may have given up
    // its INODE lock) means `size` may be old.
    uint64_t size_seq = 0;
    // NoticeSeq() before `last` was read: a page notification of the
    // inode since then means `last` may be old.
    uint64_t byte_seq = 0;
    // For a file the kernel may dirty: RequestMark() before its last page
    // was written back and dropped; a request of the inode in flight or
    // come since then may have brought that page back, maybe dirty.
    uint64_t quiet_since = kAnyRequests;
  };
  static constexpr uint64_t kAnyRequests = ~0ull;
  // Moves the kernel's i_size of regular file `ino` up to `s.size` (no
  // change if it is that or more) by storing `s.last` at size-1. False if
  // any of `s` may be old (nothing was stored; or, when a notification
  // stopped waiting for the store, its page was notified again after): ask
  // the node again. A store the kernel refuses is logged.
  bool StoreSize(uint64_t ino, const SizeStore& s);
  // The last request id given so far (Register).
  uint64_t RequestMark();
  // What the kernel holds of `ino` from `offset`: at most `size` bytes,
  // only below its i_size and up to its first missing page
  // (FUSE_NOTIFY_RETRIEVE; touches no attribute version). Waits up to
  // `wait` for the kernel's answer, a request that another worker of the
  // session hands to RetrieveReply.
  absl::StatusOr<std::string> Retrieve(uint64_t ino, uint64_t offset,
                                       size_t size,
                                       absl::Duration wait = absl::Seconds(1));
  // The kernel's answer to a Retrieve (fuse_lowlevel_ops::retrieve_reply).
  void RetrieveReply(void* cookie, struct fuse_bufvec* data);
  void CountSizeGivenUp();

  // Lets the kernel keep names (EntryTimeout() > 0) if it has the dentry
  // epoch (tried at the first EntryTimeout()).
  void EnableNames();
  // How long the kernel may keep a name the node answered under the
  // directory's INODE lock: until InvalidateNames(), or 0. Called by a
  // request before the node is asked.
  double EntryTimeout();

  struct Stats {
    uint64_t invalidations = 0;  // Invalidate() calls.
    uint64_t notifications = 0;  // notify_inval_inode calls.
    uint64_t excluded = 0;       // Ranges skipped: a request in flight.
    uint64_t abandoned = 0;      // Notifications left to finish alone.
    uint64_t name_epochs = 0;    // InvalidateNames() notifications.
    uint64_t size_stores = 0;    // StoreSize() stores.
    // Overtaken answers answered without a store: requests or page
    // notifications of the inode kept coming (CountSizeGivenUp).
    uint64_t sizes_given_up = 0;
  };
  Stats stats();

 private:
  struct Batch;
  // Starts one notification on a thread of its own.
  void Notify(uint64_t ino, const ByteRange& range,
              const std::shared_ptr<Batch>& batch);
  // FUSE_NOTIFY_INC_EPOCH; 0 or -errno.
  static int IncEpoch(fuse_session* se);
  // Bookkeeping of a notification of `ino` (Overtaken, StoreSize).
  void NoticeStarts(uint64_t ino, bool pages)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void NoticeEnds(uint64_t ino) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // A notification of `ino` that starts while a StoreSize() of it is under
  // way lets it land first (20 ms at most: the store may wait on a page
  // locked by a request that waits for this very callback).
  void AwaitSizeStores(uint64_t ino) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const Notifier notify_;  // Empty: the session's.
  const Storer store_;     // Empty: the session's.
  absl::Mutex mu_;
  fuse_session* se_ ABSL_GUARDED_BY(mu_) = nullptr;
  bool names_ ABSL_GUARDED_BY(mu_) = false;  // The kernel keeps names.
  bool names_wanted_ ABSL_GUARDED_BY(mu_) = false;
  bool names_probed_ ABSL_GUARDED_BY(mu_) = false;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  int running_ ABSL_GUARDED_BY(mu_) = 0;  // Notification threads alive.
  uint64_t next_id_ ABSL_GUARDED_BY(mu_) = 1;
  // ino -> request id -> range.
  std::map<uint64_t, std::map<uint64_t, ByteRange>> inflight_
      ABSL_GUARDED_BY(mu_);
  struct Open {
    uint64_t ino;
    bool writable;
  };
  std::map<uint64_t, Open> opens_ ABSL_GUARDED_BY(mu_);  // By fh.
  // ino -> writable cached opens.
  std::map<uint64_t, int> writable_ ABSL_GUARDED_BY(mu_);
  std::set<uint64_t> cached_inodes_ ABSL_GUARDED_BY(mu_);  // Ever opened so.
  // The notifications and requests of each inode, for the attribute
  // answers they may overtake and the size stores. Entries idle for a
  // minute are dropped.
  struct Notices {
    uint64_t last_seq = 0;       // notice_seq_ when the last one started.
    uint64_t last_page_seq = 0;  // The same of page notifications,
    uint64_t last_attr_seq = 0;  // and of attribute-only ones.
    int running = 0;
    absl::Time last_end = absl::InfinitePast();
    int storing = 0;            // StoreSize() stores under way.
    uint64_t last_request = 0;  // The id of the last Register().
    absl::Time last_request_at = absl::InfinitePast();
  };
  // Retrieve() calls waiting for the kernel, by cookie.
  struct Retrieval {
    bool done = false;
    std::string data;
  };
  uint64_t next_retrieval_ ABSL_GUARDED_BY(mu_) = 1;
  std::map<uint64_t, Retrieval> retrievals_ ABSL_GUARDED_BY(mu_);
  uint64_t notice_seq_ ABSL_GUARDED_BY(mu_) = 0;
  std::map<uint64_t, Notices> notices_ ABSL_GUARDED_BY(mu_);
  absl::Time last_prune_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  Stats stats_ ABSL_GUARDED_BY(mu_);
};

}  // namespace rangefs::fuse

#endif  // RANGEFS_CLIENT_FUSE_KERNEL_CACHE_H_
