#include "server/data/bulk_server.h"

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <system_error>

#include "common/bulk_wire.h"
#include "common/log.h"
#include "common/socket.h"

namespace rangefs::data {

absl::StatusOr<std::unique_ptr<BulkServer>> BulkServer::Start(
    const std::string& address, BlockStore* store, int* port) {
  absl::StatusOr<int> fd = ListenTcp(address, port);
  if (!fd.ok()) return fd.status();
  auto server = std::unique_ptr<BulkServer>(new BulkServer(*fd, store));
  server->accept_thread_ = std::thread([s = server.get()] { s->AcceptLoop(); });
  return server;
}

BulkServer::BulkServer(int listen_fd, BlockStore* store)
    : listen_fd_(listen_fd), store_(store) {}

BulkServer::~BulkServer() {
  Stop();
  close(listen_fd_);
}

void BulkServer::Stop() {
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) return;
    stopping_ = true;
    // A connection's thread waiting for its next request wakes with EOF; a
    // request being served still sends its reply.
    for (auto& c : connections_) shutdown(c->fd, SHUT_RD);
  }
  shutdown(listen_fd_, SHUT_RDWR);
  if (accept_thread_.joinable()) accept_thread_.join();
  std::vector<std::unique_ptr<Connection>> all;
  {
    absl::MutexLock lock(&mu_);
    all.swap(connections_);
  }
  for (auto& c : all) {
    c->thread.join();
    close(c->fd);
  }
}

void BulkServer::AcceptLoop() {
  for (;;) {
    int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      absl::MutexLock lock(&mu_);
      if (stopping_) return;
      // EMFILE and friends: wait a little rather than spin.
      RANGEFS_LOG(WARNING) << "bulk accept: " << strerror(errno);
      mu_.AwaitWithTimeout(absl::Condition(&stopping_),
                           absl::Milliseconds(100));
      if (stopping_) return;
      continue;
    }
    absl::MutexLock lock(&mu_);
    Reap();
    if (stopping_ || connections_.size() >= kMaxConnections) {
      close(fd);
      if (stopping_) return;
      continue;
    }
    // A peer that stops reading its replies cannot hold a thread (and
    // Stop) forever.
    timeval tv{kSendTimeoutSeconds, 0};
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    auto c = std::make_unique<Connection>();
    c->fd = fd;
    Connection* raw = c.get();
    try {
      raw->thread = std::thread([this, raw] { Serve(raw); });
    } catch (const std::system_error& e) {
      RANGEFS_LOG(WARNING) << "bulk: no thread for a connection: " << e.what();
      close(fd);
      continue;
    }
    connections_.push_back(std::move(c));
  }
}

void BulkServer::Reap() {
  for (size_t i = 0; i < connections_.size();) {
    if (connections_[i]->done) {
      connections_[i]->thread.join();
      close(connections_[i]->fd);
      connections_[i] = std::move(connections_.back());
      connections_.pop_back();
    } else {
      ++i;
    }
  }
}

char* BulkServer::Buffer::Get(size_t n) {
  if (n <= size_) return data_;
  free(data_);
  data_ = nullptr;
  size_ = 0;
  // Rounded up so a connection's sizes settle after a few requests.
  const size_t want = (n + (64 << 10) - 1) & ~size_t{(64 << 10) - 1};
  void* p = nullptr;
  if (posix_memalign(&p, BlockStore::kDirectAlign, want) != 0) return nullptr;
  data_ = static_cast<char*>(p);
  size_ = want;
  return data_;
}

void BulkServer::Serve(Connection* c) {
  Buffer buffer;
  while (ServeOne(c->fd, &buffer)) {
  }
  shutdown(c->fd, SHUT_RDWR);
  absl::MutexLock lock(&mu_);
  c->done = true;
}

bool BulkServer::ServeOne(int fd, Buffer* buffer) {
  char head[bulk::kRequestSize];
  ssize_t got = RecvAll(fd, head, sizeof(head));
  if (got != static_cast<ssize_t>(sizeof(head))) return false;  // EOF, error.
  absl::StatusOr<bulk::Request> req = bulk::DecodeRequest(head);
  bulk::Request r;
  char* data = nullptr;
  absl::Status status;
  bool keep = true;
  if (!req.ok()) {
    status = req.status();
    keep = false;  // The framing is lost: answer, then close.
  } else {
    r = *req;
    if (r.op == bulk::Op::kWrite) {
      data = buffer->Get(r.length);
      if (data == nullptr) {
        RANGEFS_LOG(ERROR) << "bulk: no memory for " << r.length << " bytes";
        return false;
      }
      got = RecvAll(fd, data, r.length);
      if (got != static_cast<ssize_t>(r.length)) return false;  // Cut short.
      status = store_->Write(r.session, r.offset,
                             absl::string_view(data, r.length), r.sync);
    } else {
      // The reply, then the blocks straight from the store's page cache
      // (sendfile: no copy through this process). Once the reply is out,
      // a failure can only end the connection.
      bool sent = false;
      status =
          store_->ReadThrough(r.session, r.offset, r.length, [&](int file_fd) {
            std::string none;
            char out[bulk::kReplySize];
            bulk::EncodeReply(bulk::ReplyFor(absl::OkStatus(), r, &none), out);
            struct iovec iov = {out, sizeof(out)};
            sent = SendAll(fd, &iov, 1, MSG_MORE) &&
                   SendFileAll(fd, file_fd, r.offset, r.length);
            if (!sent) {
              RANGEFS_LOG(WARNING)
                  << "bulk: read of " << r.length << " at " << r.offset
                  << " cut short: " << strerror(errno);
            }
            return absl::OkStatus();
          });
      if (status.ok()) return sent;
    }
  }
  std::string message;
  bulk::Reply reply = bulk::ReplyFor(status, r, &message);
  char out[bulk::kReplySize];
  bulk::EncodeReply(reply, out);
  struct iovec iov[3] = {
      {out, sizeof(out)},
      {message.data(), message.size()},
      {data, reply.data_length},
  };
  if (!SendAll(fd, iov, 3)) return false;
  return keep;
}

}  // namespace rangefs::data
