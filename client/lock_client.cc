#include "client/lock_client.h"

#include <chrono>

#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/fault_injection.h"
#include "common/log.h"
#include "common/status.h"
#include "rpc/channel.h"

namespace rangefs::client {

namespace {
// How long a finished stream reactor is kept before it is freed.
constexpr absl::Duration kStreamGrace = absl::Milliseconds(200);

int64_t SteadyNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}
}  // namespace

// One Session stream. Deletes itself after OnDone, having told the client
// (under the client's mutex, which also guards every Send to it).
class LockClient::Stream
    : public grpc::ClientBidiReactor<proto::NodeMessage, proto::ServerMessage> {
 public:
  Stream(LockClient* owner, proto::LockService::Stub* stub) : owner_(owner) {
    stub->async()->Session(&ctx_, this);
    // Writes start from threads outside gRPC's reactions (Send): without a
    // hold, the call may complete (and its objects go) between our check
    // and StartWrite once the last read has failed ("pure virtual method
    // called" in a reconnect storm under ASAN). The hold goes when reading
    // ends; no write starts after that.
    AddHold();
    StartRead(&in_);
    StartCall();
  }

  void Send(const proto::NodeMessage& m) {
    absl::MutexLock lock(&mu_);
    if (closing_ || done_ || unheld_) return;
    out_.push_back(m);
    if (!writing_) WriteNext();
  }

  // Half-closes after the queued messages.
  void CloseWrites() {
    absl::MutexLock lock(&mu_);
    closing_ = true;
    if (!writing_ && !writes_done_ && !done_ && !unheld_) {
      writes_done_ = true;
      StartWritesDone();
    }
  }

  void Cancel() { ctx_.TryCancel(); }

  void OnReadDone(bool ok) override {
    if (!ok) {
      // The stream is over: no more writes, and OnDone may follow.
      {
        absl::MutexLock lock(&mu_);
        unheld_ = true;
      }
      RemoveHold();
      return;
    }
    owner_->Incoming(this, in_);
    StartRead(&in_);
  }

  void OnWriteDone(bool ok) override {
    absl::MutexLock lock(&mu_);
    writing_ = false;
    out_.pop_front();
    if (!ok || unheld_) return;
    if (!out_.empty()) {
      WriteNext();
    } else if (closing_ && !writes_done_) {
      writes_done_ = true;
      StartWritesDone();
    }
  }

  void OnDone(const grpc::Status&) override {
    {
      // gRPC considers the call over: starting any operation now would
      // complete after this object is gone.
      absl::MutexLock lock(&mu_);
      done_ = true;
    }
    owner_->StreamDone(this);  // No one sends to this stream any more.
    // Not `delete this`: gRPC 1.51 may still be finishing a failed
    // operation's bookkeeping on another thread, reading this ClientContext
    // (ASAN: heap-use-after-free in RunInterceptorsPostRecv during a
    // reconnect storm). The client frees the stream a grace period later on
    // its own event thread, which also keeps the last channel reference
    // off gRPC's callback threads (grpc/grpc#32584).
    owner_->Bury(this);
  }

 private:
  void WriteNext() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    writing_ = true;
    StartWrite(&out_.front());
  }

  LockClient* const owner_;
  grpc::ClientContext ctx_;
  proto::ServerMessage in_;
  absl::Mutex mu_;
  std::deque<proto::NodeMessage> out_ ABSL_GUARDED_BY(mu_);
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool closing_ ABSL_GUARDED_BY(mu_) = false;
  bool writes_done_ ABSL_GUARDED_BY(mu_) = false;
  bool done_ ABSL_GUARDED_BY(mu_) = false;    // OnDone has begun.
  bool unheld_ ABSL_GUARDED_BY(mu_) = false;  // Reading ended, hold gone.
};

LockClient::LockClient(const LockClientOptions& options,
                       LockClientListener* listener)
    : options_(options),
      listener_(listener),
      stub_(proto::LockService::NewStub(rpc::MakeChannel(options.address))) {
  events_ = std::thread([this] { EventLoop(); });
}

LockClient::~LockClient() { Stop(false); }

void LockClient::Connect() {
  next_connect_ = absl::Now() + absl::Milliseconds(100);
  stream_ = new Stream(this, stub_.get());
  ++live_streams_;
  welcomed_ = false;
  proto::NodeMessage hello;
  proto::Hello* h = hello.mutable_hello();
  h->set_session_id(options_.session_id);
  h->set_node_name(options_.node_name);
  h->set_lease_ms(options_.lease_ms);
  h->set_resume(ever_welcomed_);
  hello_sent_ns_ = SteadyNs();
  stream_->Send(hello);
}

bool LockClient::trusted() const {
  // The race suite's switch: cached locks used however long lockd is
  // silent (scenario N3 then serves stale data).
  if (UnsafeSwitch("unsafe.client.ignore_lease")) return true;
  return SteadyNs() < trusted_until_ns_.load(std::memory_order_acquire);
}

absl::Status LockClient::Start(uint64_t timeout_ms) {
  absl::MutexLock lock(&mu_);
  wanted_ = true;
  if (stream_ == nullptr && !ever_welcomed_) Connect();
  auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return ever_welcomed_ || evicted_ || stopping_;
  };
  mu_.AwaitWithTimeout(absl::Condition(&ready), absl::Milliseconds(timeout_ms));
  if (ever_welcomed_) return absl::OkStatus();
  if (evicted_) {
    return MakeError(Errc::kFenced, "lockd refused the session (evicted)");
  }
  return MakeError(Errc::kUnavailable,
                   "lock manager not reachable at " + options_.address);
}

void LockClient::Send(const proto::NodeMessage& m) {
  absl::MutexLock lock(&mu_);
  if (stream_ != nullptr && welcomed_) stream_->Send(m);
}

bool LockClient::connected() {
  absl::MutexLock lock(&mu_);
  return stream_ != nullptr && welcomed_;
}

void LockClient::Incoming(Stream* s, const proto::ServerMessage& m) {
  {
    absl::MutexLock lock(&mu_);
    if (s != stream_) return;  // A stream being replaced.
    if (m.has_welcome()) {
      welcomed_ = true;
      // The lease lockd grants (it clamps what the node asked for).
      trust_ns_ = static_cast<int64_t>(m.welcome().lease_ms()) * 750000;
      Renew(hello_sent_ns_);
    }
    if (m.has_heartbeat_ack()) {
      // A timer heartbeat's answer: the lease runs from when it was sent.
      const uint64_t seq = m.heartbeat_ack().sequence();
      while (seq >> 63 == 0 && !beats_.empty() && beats_.front().first <= seq) {
        if (beats_.front().first == seq) Renew(beats_.front().second);
        beats_.pop_front();
      }
    }
    if (m.has_welcome() || m.has_evicted() || m.has_error() ||
        !ever_welcomed_) {
      inbox_.push_back(m);
      return;
    }
  }
  // Grants, denials and callbacks go straight to the listener, in stream
  // order (reads are sequential): one thread hop less per lock request.
  // The listener only takes short locks and queues real work elsewhere.
  // Acks of the client's own timer heartbeats are dropped; acks of
  // barrier heartbeats (top bit set, sent by the listener) go through.
  if (!m.has_heartbeat_ack() || (m.heartbeat_ack().sequence() >> 63) != 0) {
    listener_->OnMessage(options_.shard, options_.session_id, m);
  }
}

void LockClient::Renew(int64_t sent_ns) {
  const int64_t until = sent_ns + trust_ns_;
  if (until > trusted_until_ns_.load(std::memory_order_relaxed)) {
    trusted_until_ns_.store(until, std::memory_order_release);
  }
}

void LockClient::StreamDone(Stream* s) {
  absl::MutexLock lock(&mu_);
  if (stream_ == s) {
    stream_ = nullptr;
    welcomed_ = false;
  }
}

void LockClient::Bury(Stream* s) {
  absl::MutexLock lock(&mu_);
  graveyard_.push_back({absl::Now(), s});
  --live_streams_;
}

void LockClient::FreeBuried(absl::Time older_than) {
  std::vector<Stream*> free;
  {
    absl::MutexLock lock(&mu_);
    while (!graveyard_.empty() && graveyard_.front().first <= older_than) {
      free.push_back(graveyard_.front().second);
      graveyard_.pop_front();
    }
  }
  for (Stream* s : free) delete s;
}

void LockClient::EventLoop() {
  const absl::Duration heartbeat =
      absl::Milliseconds(std::max<uint64_t>(options_.lease_ms / 4, 20));
  absl::Time next_heartbeat = absl::Now() + heartbeat;
  absl::MutexLock lock(&mu_);
  for (;;) {
    auto reconnect_due = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return stream_ == nullptr && wanted_ && !evicted_ &&
             absl::Now() >= next_connect_;
    };
    auto wake = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return stopping_ || !inbox_.empty() || reconnect_due();
    };
    // Wake at least every 50 ms: a reconnect attempt can fail during the
    // wait, and the retry is due long before the next heartbeat.
    absl::Time deadline =
        std::min(next_heartbeat, absl::Now() + absl::Milliseconds(50));
    mu_.AwaitWithDeadline(absl::Condition(&wake), deadline);
    if (stopping_) return;
    while (!inbox_.empty()) {
      proto::ServerMessage m = std::move(inbox_.front());
      inbox_.pop_front();
      bool first = !ever_welcomed_;
      mu_.Unlock();
      if (m.has_welcome()) {
        if (!first) {
          listener_->OnReconnected(options_.shard, options_.session_id,
                                   m.welcome().in_grace());
        }
      } else if (m.has_evicted()) {
        listener_->OnEvicted(options_.shard, options_.session_id,
                             m.evicted().reason());
      } else if (m.has_error()) {
        RANGEFS_LOG(ERROR) << "lockd " << options_.address
                           << " refused the stream: " << m.error().message();
      } else if (!m.has_heartbeat_ack()) {
        listener_->OnMessage(options_.shard, options_.session_id, m);
      }
      mu_.Lock();
      if (m.has_welcome()) ever_welcomed_ = true;
      if (m.has_evicted()) evicted_ = true;
      if (stopping_) return;
    }
    absl::Time now = absl::Now();
    if (!graveyard_.empty() && graveyard_.front().first + kStreamGrace <= now) {
      mu_.Unlock();
      FreeBuried(now - kStreamGrace);
      mu_.Lock();
      if (stopping_) return;
    }
    if (reconnect_due()) {
      // The stream broke (or lockd was not up yet): reconnect, resuming the
      // session if it was ever welcomed.
      if (ever_welcomed_) {
        RANGEFS_LOG(INFO) << "reconnecting to lockd " << options_.address;
      }
      Connect();
    }
    if (now >= next_heartbeat) {
      if (stream_ != nullptr && welcomed_) {
        proto::NodeMessage hb;
        const uint64_t seq = ++beat_seq_;
        hb.mutable_heartbeat()->set_sequence(seq);
        if (beats_.size() >= 64) beats_.pop_front();
        beats_.emplace_back(seq, SteadyNs());
        stream_->Send(hb);
      }
      next_heartbeat = now + heartbeat;
    }
    // No answer for 3/4 of a lease: the locks are not known to be ours.
    const bool lapsed = ever_welcomed_ && !evicted_ && !trusted();
    if (lapsed && !lapsed_) {
      lapsed_ = true;
      RANGEFS_LOG(WARNING) << "no answer from lockd " << options_.address
                           << " for most of the lease: cached locks are "
                              "given back until it answers";
      mu_.Unlock();
      listener_->OnLeaseLapsed(options_.shard, options_.session_id);
      mu_.Lock();
      if (stopping_) return;
    } else if (!lapsed && lapsed_) {
      lapsed_ = false;
      RANGEFS_LOG(INFO) << "lockd " << options_.address << " answers again";
    }
  }
}

void LockClient::Stop(bool goodbye) {
  {
    absl::MutexLock lock(&mu_);
    if (stopping_ && live_streams_ == 0) return;
    wanted_ = false;  // The event loop must not reconnect from here on.
    if (goodbye && stream_ != nullptr && welcomed_) {
      proto::NodeMessage bye;
      bye.mutable_goodbye()->set_reason("node shutting down");
      stream_->Send(bye);
      stream_->CloseWrites();
      // Give lockd a moment to read it and end the stream.
      auto gone = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return live_streams_ == 0;
      };
      mu_.AwaitWithTimeout(absl::Condition(&gone), absl::Seconds(2));
    }
    stopping_ = true;
  }
  if (events_.joinable()) events_.join();
  absl::MutexLock lock(&mu_);
  if (stream_ != nullptr) stream_->Cancel();
  auto gone = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return live_streams_ == 0;
  };
  mu_.Await(absl::Condition(&gone));
  // Every stream is done; free them once their grace period is over.
  absl::Time last = graveyard_.empty() ? absl::Now() : graveyard_.back().first;
  mu_.Unlock();
  absl::SleepFor(
      std::max(absl::ZeroDuration(), last + kStreamGrace - absl::Now()));
  FreeBuried(absl::InfiniteFuture());
  mu_.Lock();
}

}  // namespace rangefs::client
