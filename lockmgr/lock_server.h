// LockServer: the state of one rangefs-lockd shard around its
// RangeLockTable: sessions with leases, the messages of each session's
// stream, blocking callbacks with deadlines, request deadlines, eviction
// (fence first, then drop locks), and the grace period after a restart in
// which nodes replay their locks. Transport-free: a session's stream is a
// SessionSink, fencing a Fencer; the gRPC adapter (lock_service.cc)
// provides both, and tests provide fakes.
//
// Thread-safe. No call blocks on the network: messages go to sinks that
// only queue them, and fencing runs on the server's own eviction thread.
#ifndef RANGEFS_LOCKMGR_LOCK_SERVER_H_
#define RANGEFS_LOCKMGR_LOCK_SERVER_H_

#include <atomic>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "lockmgr/range_lock_table.h"
#include "proto/lock.pb.h"

namespace rangefs::lockmgr {

// The node end of one session's stream, as lockd sees it.
class SessionSink {
 public:
  virtual ~SessionSink() = default;
  // Queues a message for the node. Never blocks.
  virtual void Send(const proto::ServerMessage& m) = 0;
  // Ends the stream once queued messages are written. Never blocks.
  virtual void Close() = 0;
};

// Makes the metadata and data servers refuse a session from now on.
class Fencer {
 public:
  virtual ~Fencer() = default;
  // Blocks until every server acknowledged the fence (retrying as needed)
  // or the fencer is shut down.
  virtual absl::Status Fence(uint64_t session, const std::string& reason) = 0;
};

struct LockServerOptions {
  uint32_t shard = 0;
  uint32_t shard_count = 1;
  // Leases: what a node asks for is clamped to [min, max].
  uint64_t min_lease_ms = 200;
  uint64_t max_lease_ms = 120000;
  // A holder must answer a blocking callback within this long.
  uint64_t callback_timeout_ms = 10000;
  // After a restart: only replays are granted for this long.
  uint64_t grace_ms = 0;
  // Timer resolution for leases, deadlines and the grace period.
  uint64_t tick_ms = 10;
  // Where the evicted session ids are kept across restarts (appended and
  // synced at each eviction; "": in memory only). An evicted id is refused
  // for ever, also by a restarted lockd.
  std::string evicted_path;
  // Where the sessions lockd has welcomed are kept (an open record synced
  // before the Welcome, a close record at a goodbye or an eviction; "": in
  // memory only). A restarted lockd takes the sessions still open as its
  // own: each must come back and replay within its lease or is evicted
  // (fenced) like any other, the grace period lasts until every one has,
  // and a node resuming a session lockd has no record of is refused as
  // evicted (it may believe it holds locks nobody else knows of).
  std::string sessions_path;
};

class LockServer {
 public:
  // `fencer` must outlive the server.
  LockServer(const LockServerOptions& options, Fencer* fencer);
  ~LockServer();
  LockServer(const LockServer&) = delete;
  LockServer& operator=(const LockServer&) = delete;

  // A stream opened with `hello`. Sends its first message through `sink`:
  // Welcome (the sink now carries the session; what the node may have
  // missed on an earlier stream follows: its locks, with their request
  // ids, and the callbacks it owes), or Evicted / Error and closes it.
  // Returns true on Welcome. `sink` must stay valid until Detach.
  bool Attach(const proto::Hello& hello, SessionSink* sink);
  // The stream of `session` through `sink` ended.
  void Detach(uint64_t session, SessionSink* sink);
  // A message on the stream of `session`.
  void Handle(uint64_t session, const proto::NodeMessage& m);

  proto::DumpReply Dump(uint64_t ino);
  // Administrative eviction (also used by tests).
  absl::Status Evict(uint64_t session, const std::string& reason);
  bool in_grace();
  std::map<std::string, uint64_t> Counters();

 private:
  struct Session {
    uint64_t id = 0;
    std::string node;
    uint64_t lease_ns = 0;
    int64_t last_heard_ns = 0;
    SessionSink* sink = nullptr;
    bool evicting = false;
    // Open when lockd last stopped, not back since (sessions_path).
    bool restored = false;
  };
  struct Waiting {  // A queued request.
    uint64_t session = 0;
    uint64_t request_id = 0;
    int64_t deadline_ns = 0;  // 0 = none.
  };
  struct PendingCallback {
    uint64_t id = 0;
    Callback cb;
    int64_t deadline_ns = 0;
  };

  void HandleAcquire(Session& s, const proto::AcquireRequest& a)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void HandleRelease(Session& s, const proto::ReleaseRequest& r)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void HandleCancel(Session& s, const proto::CancelRequest& c)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Sends what a table call caused: grants to waiters, callbacks to holders.
  void Deliver(const Effects& e) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void SendCallback(const PendingCallback& p)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void SendTo(uint64_t session, const proto::ServerMessage& m)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Deny(Session& s, uint64_t request_id, const absl::Status& why)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Forgets the queued requests and owed callbacks of a session that is
  // going away (before its locks are dropped).
  void ForgetRequests(uint64_t session) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Starts evicting `session` (fencing happens on the eviction thread).
  void StartEviction(uint64_t session, const std::string& reason)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void FinishEviction(uint64_t session, const std::string& reason);

  void TimerLoop();
  void Tick() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void EvictionLoop();

  const LockServerOptions options_;
  bool forget_sessions_ = false;  // unsafe.lockd.forget_sessions
  Fencer* const fencer_;
  RangeLockTable table_;

  absl::Mutex mu_;
  std::map<uint64_t, Session> sessions_ ABSL_GUARDED_BY(mu_);
  std::set<uint64_t> evicted_ ABSL_GUARDED_BY(mu_);
  std::map<uint64_t, Waiting> waiting_ ABSL_GUARDED_BY(mu_);  // By ticket.
  std::map<std::pair<uint64_t, uint64_t>, uint64_t> tickets_
      ABSL_GUARDED_BY(mu_);  // (session, request id) -> ticket.
  std::map<uint64_t, PendingCallback> callbacks_ ABSL_GUARDED_BY(mu_);
  uint64_t next_callback_id_ ABSL_GUARDED_BY(mu_) = 1;
  int64_t grace_end_ns_ ABSL_GUARDED_BY(mu_) = 0;
  std::deque<std::pair<uint64_t, std::string>> to_evict_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, uint64_t> counters_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;

  // Appends `session` to options_.evicted_path and syncs it.
  absl::Status PersistEvicted(uint64_t session);
  // Appends a session record (sessions_path), synced with `sync`.
  absl::Status PersistSession(uint64_t session, uint64_t lease_ms, bool open,
                              bool sync);
  // Loads sessions_path: the sessions open at the last stop become
  // restored sessions, and the file is rewritten with only those.
  void RestoreSessions() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  std::thread timer_;
  std::thread evictor_;
  // Each eviction runs on a thread of its own (one waiting for a server
  // must not hold up the others): EvictionLoop's, joined once done.
  struct Evicting {
    std::thread thread;
    std::shared_ptr<std::atomic<bool>> done;
  };
  std::vector<Evicting> evicting_;  // EvictionLoop's thread only.
};

}  // namespace rangefs::lockmgr

#endif  // RANGEFS_LOCKMGR_LOCK_SERVER_H_
