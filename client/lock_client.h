// LockClient: a node's session with one lockd shard. Owns the long-lived
// Session stream (a ClientBidiReactor with one write in flight), sends
// heartbeats, reconnects with resume=true when the stream breaks, and hands
// lockd's messages to a listener: grants, denials and callbacks straight
// from the stream's read reaction (the listener must not block), session
// events (reconnected, evicted) on the client's own event thread.
//
// Thread-safe. Send() never blocks.
#ifndef RANGEFS_CLIENT_LOCK_CLIENT_H_
#define RANGEFS_CLIENT_LOCK_CLIENT_H_

#include <atomic>
#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "proto/lock.grpc.pb.h"

namespace rangefs::client {

class LockClientListener {
 public:
  virtual ~LockClientListener() = default;
  // Every Grant, Deny and Callback, in the order lockd sent them. Called on
  // a gRPC callback thread: must not block (take only short locks; hand
  // longer work to threads of its own).
  // `session` is the id of the session it arrived on: after an eviction a
  // listener must ignore what still comes in for the old one.
  virtual void OnMessage(uint32_t shard, uint64_t session,
                         const proto::ServerMessage& m) = 0;
  // A new stream was welcomed after the previous one broke. `in_grace`:
  // lockd restarted and the node must replay the locks it holds.
  virtual void OnReconnected(uint32_t shard, uint64_t session,
                             bool in_grace) = 0;
  // lockd evicted the session: every lock of it is gone.
  virtual void OnEvicted(uint32_t shard, uint64_t session,
                         const std::string& reason) = 0;
  // The session's locks can no longer be trusted (LockClient::trusted):
  // lockd has not answered for most of a lease. Called once per lapse, on
  // the client's event thread.
  virtual void OnLeaseLapsed(uint32_t shard, uint64_t session) = 0;
};

struct LockClientOptions {
  std::string address;
  uint32_t shard = 0;
  uint64_t session_id = 0;
  std::string node_name;
  uint64_t lease_ms = 10000;
};

class LockClient {
 public:
  // `listener` must outlive the client.
  LockClient(const LockClientOptions& options, LockClientListener* listener);
  ~LockClient();  // Stop(false).
  LockClient(const LockClient&) = delete;
  LockClient& operator=(const LockClient&) = delete;

  // Opens the session; waits (up to `timeout_ms`) for lockd's Welcome.
  absl::Status Start(uint64_t timeout_ms = 20000);
  // Queues a message for lockd (dropped if no stream is up: the node
  // learns of the loss through OnReconnected / OnEvicted).
  void Send(const proto::NodeMessage& m);
  // Ends the session; with `goodbye`, lockd drops its locks at once.
  void Stop(bool goodbye);

  uint32_t shard() const { return options_.shard; }
  bool connected();
  // Whether the session's locks are still its own for certain: lockd
  // answered a heartbeat (or the Hello) sent less than 3/4 of the lease
  // ago. lockd hands an evicted session's locks to others no earlier than
  // a lease after the last message it answered, so a node that uses its
  // cached locks only while trusted() never serves data another node may
  // have changed meanwhile, however the network fails.
  bool trusted() const;
  uint64_t lease_ms() const { return options_.lease_ms; }

 private:
  class Stream;
  void EventLoop();
  void Connect() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Called from stream reactions.
  void Incoming(Stream* s, const proto::ServerMessage& m);
  void StreamDone(Stream* s);  // The stream takes no more messages.
  // lockd answered a message sent at `sent_ns`: trust until 3/4 of a
  // lease after it.
  void Renew(int64_t sent_ns) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // OnDone ran: the stream is freed after a grace period (lock_client.cc).
  void Bury(Stream* s);
  void FreeBuried(absl::Time older_than);

  const LockClientOptions options_;
  LockClientListener* const listener_;
  std::unique_ptr<proto::LockService::Stub> stub_;

  absl::Mutex mu_;
  Stream* stream_ ABSL_GUARDED_BY(mu_) = nullptr;
  bool welcomed_ ABSL_GUARDED_BY(mu_) = false;
  bool ever_welcomed_ ABSL_GUARDED_BY(mu_) = false;
  bool evicted_ ABSL_GUARDED_BY(mu_) = false;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool wanted_ ABSL_GUARDED_BY(mu_) = false;  // Start() was called.
  absl::Time next_connect_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  int live_streams_ ABSL_GUARDED_BY(mu_) = 0;
  std::deque<proto::ServerMessage> inbox_ ABSL_GUARDED_BY(mu_);
  // The lease: when the last Hello and the recent timer heartbeats
  // (sequence, steady ns) were sent, and until when (steady ns) the
  // session's locks are trusted.
  int64_t hello_sent_ns_ ABSL_GUARDED_BY(mu_) = 0;
  std::deque<std::pair<uint64_t, int64_t>> beats_ ABSL_GUARDED_BY(mu_);
  uint64_t beat_seq_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t trust_ns_ ABSL_GUARDED_BY(mu_) = 0;  // 3/4 of the lease.
  std::atomic<int64_t> trusted_until_ns_{0};
  bool lapsed_ ABSL_GUARDED_BY(mu_) = false;
  // Finished streams and when they finished, oldest first.
  std::deque<std::pair<absl::Time, Stream*>> graveyard_ ABSL_GUARDED_BY(mu_);
  std::thread events_;
};

}  // namespace rangefs::client

#endif  // RANGEFS_CLIENT_LOCK_CLIENT_H_
