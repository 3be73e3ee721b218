#include "client/bulk_client.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/socket.h"
#include "common/status.h"

namespace rangefs::client {
namespace {

using Clock = std::chrono::steady_clock;

}  // namespace

BulkChannel::BulkChannel(std::string address, uint64_t timeout_ms)
    : address_(std::move(address)), timeout_ms_(timeout_ms) {}

BulkChannel::~BulkChannel() {
  absl::MutexLock lock(&mu_);
  for (int fd : idle_) close(fd);
}

absl::Status BulkChannel::Read(uint64_t session, uint64_t offset,
                               uint32_t length, const struct iovec* iov,
                               int n) {
  bulk::Request r;
  r.op = bulk::Op::kRead;
  r.session = session;
  r.offset = offset;
  r.length = length;
  return Call(r, iov, n);
}

absl::Status BulkChannel::ReadToPipe(uint64_t session, uint64_t offset,
                                     uint32_t length, int pipe_fd) {
  bulk::Request r;
  r.op = bulk::Op::kRead;
  r.session = session;
  r.offset = offset;
  r.length = length;
  return Call(r, nullptr, 0, pipe_fd);
}

absl::Status BulkChannel::Write(uint64_t session, uint64_t offset,
                                const struct iovec* iov, int n, uint32_t length,
                                bool sync) {
  bulk::Request r;
  r.op = bulk::Op::kWrite;
  r.sync = sync;
  r.session = session;
  r.offset = offset;
  r.length = length;
  return Call(r, iov, n);
}

int BulkChannel::TakeIdle() {
  absl::MutexLock lock(&mu_);
  if (idle_.empty()) return -1;
  int fd = idle_.back();
  idle_.pop_back();
  return fd;
}

void BulkChannel::GiveBack(int fd) {
  {
    absl::MutexLock lock(&mu_);
    if (idle_.size() < kMaxIdle) {
      idle_.push_back(fd);
      return;
    }
  }
  close(fd);
}

absl::Status BulkChannel::Call(const bulk::Request& r, const struct iovec* iov,
                               int n, int pipe_fd) {
  if (r.length == 0 || r.length > bulk::kMaxLength) {
    return MakeError(Errc::kInvalidArgument,
                     absl::StrCat("bulk I/O of ", r.length, " bytes"));
  }
  size_t room = 0;
  for (int i = 0; i < n; ++i) room += iov[i].iov_len;
  if (pipe_fd >= 0) room = r.length;  // The pipe takes it all.
  if (room != r.length || n < 0) {
    return MakeError(Errc::kInvalidArgument,
                     absl::StrCat("bulk I/O of ", r.length, " bytes in ", n,
                                  " buffers of ", room, " bytes"));
  }
  const Clock::time_point deadline =
      Clock::now() + std::chrono::milliseconds(timeout_ms_);
  auto backoff = std::chrono::milliseconds(5);
  absl::Status last;
  for (;;) {
    int fd = TakeIdle();
    const bool reused = fd >= 0;
    if (fd < 0) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - Clock::now());
      absl::StatusOr<int> c =
          ConnectTcp(address_, std::max<int64_t>(1, left.count()));
      if (c.ok()) {
        fd = *c;
      } else {
        last = c.status();
      }
    }
    if (fd >= 0) {
      absl::Status status;
      switch (Exchange(fd, r, iov, n, pipe_fd, &status)) {
        case Outcome::kDone:
          GiveBack(fd);
          return status;
        case Outcome::kBroken:
          close(fd);
          return status;
        case Outcome::kGone:
          close(fd);
          last = status;
          // An idle connection the server closed: try the next at once.
          if (reused) continue;
          break;
      }
    }
    if (Clock::now() + backoff >= deadline) {
      return MakeError(
          Errc::kUnavailable,
          absl::StrCat("data server ", address_, ": ", last.message()));
    }
    std::this_thread::sleep_for(backoff);
    backoff = std::min(backoff * 2, std::chrono::milliseconds(500));
  }
}

BulkChannel::Outcome BulkChannel::Exchange(int fd, const bulk::Request& r,
                                           const struct iovec* iov, int n,
                                           int pipe_fd, absl::Status* status) {
  char head[bulk::kRequestSize];
  bulk::EncodeRequest(r, head);
  // The header, then a write's data (SendAll moves along a copy).
  std::vector<struct iovec> out = {{head, sizeof(head)}};
  if (r.op == bulk::Op::kWrite) out.insert(out.end(), iov, iov + n);
  auto broken = [&](const std::string& what) {
    *status = MakeError(Errc::kUnavailable,
                        absl::StrCat("data server ", address_, ": ", what));
  };
  if (!SendAll(fd, out.data(), static_cast<int>(out.size()))) {
    int err = errno;
    broken(absl::StrCat("send: ", strerror(err)));
    return err == EPIPE || err == ECONNRESET ? Outcome::kGone
                                             : Outcome::kBroken;
  }
  char reply_head[bulk::kReplySize];
  ssize_t got = RecvAll(fd, reply_head, sizeof(reply_head));
  if (got == 0 || (got < 0 && errno == ECONNRESET)) {
    broken("connection closed");
    return Outcome::kGone;
  }
  if (got != static_cast<ssize_t>(sizeof(reply_head))) {
    broken(got < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)
               ? "no reply in time"
               : "reply cut short");
    return Outcome::kBroken;
  }
  absl::StatusOr<bulk::Reply> reply = bulk::DecodeReply(reply_head, r);
  if (!reply.ok()) {
    broken(std::string(reply.status().message()));
    return Outcome::kBroken;
  }
  std::string message(reply->message_length, '\0');
  if (RecvAll(fd, message.data(), message.size()) !=
      static_cast<ssize_t>(message.size())) {
    broken("reply cut short");
    return Outcome::kBroken;
  }
  if (reply->data_length > 0 && pipe_fd >= 0) {
    const ssize_t moved = SpliceFromSocket(fd, pipe_fd, reply->data_length,
                                           static_cast<int>(timeout_ms_));
    if (moved < 0 && errno == ENOSPC) {
      *status = MakeError(Errc::kWouldBlock,
                          "the pipe filled up before the data was in");
      return Outcome::kBroken;  // The rest is still on the connection.
    }
    if (moved != static_cast<ssize_t>(reply->data_length)) {
      broken(moved < 0 && errno == EAGAIN ? "no reply in time"
                                          : "reply cut short");
      return Outcome::kBroken;
    }
  } else if (reply->data_length > 0) {
    // DecodeReply checked data_length against the request's length, which
    // the buffers hold exactly (Call).
    std::vector<struct iovec> in(iov, iov + n);
    if (RecvAllV(fd, in.data(), n) !=
        static_cast<ssize_t>(reply->data_length)) {
      broken("reply cut short");
      return Outcome::kBroken;
    }
  }
  *status = bulk::StatusOf(*reply, message);
  // The server closes a connection after refusing a malformed request.
  return ErrcOf(*status) == Errc::kInvalidArgument ? Outcome::kBroken
                                                   : Outcome::kDone;
}

}  // namespace rangefs::client
