#include "common/socket.h"

#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "common/status.h"

namespace rangefs {
namespace {

struct HostPort {
  std::string host;
  std::string port;
};

absl::StatusOr<HostPort> Split(const std::string& address) {
  size_t colon = address.rfind(':');
  if (colon == std::string::npos || colon + 1 == address.size()) {
    return MakeError(Errc::kInvalidArgument,
                     "address '" + address + "' is not HOST:PORT");
  }
  HostPort hp{address.substr(0, colon), address.substr(colon + 1)};
  if (hp.host.size() >= 2 && hp.host.front() == '[' && hp.host.back() == ']') {
    hp.host = hp.host.substr(1, hp.host.size() - 2);
  }
  return hp;
}

// getaddrinfo for `address`; the caller frees the list.
absl::StatusOr<addrinfo*> Resolve(const std::string& address, bool passive) {
  absl::StatusOr<HostPort> hp = Split(address);
  if (!hp.ok()) return hp.status();
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV | (passive ? AI_PASSIVE : 0);
  addrinfo* list = nullptr;
  const char* host = hp->host.empty() ? nullptr : hp->host.c_str();
  int rc = getaddrinfo(host, hp->port.c_str(), &hints, &list);
  if (rc != 0) {
    return MakeError(
        Errc::kUnavailable,
        absl::StrCat("cannot resolve ", address, ": ", gai_strerror(rc)));
  }
  return list;
}

int PortOf(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof(ss);
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return 0;
  if (ss.ss_family == AF_INET) {
    return ntohs(reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
  }
  if (ss.ss_family == AF_INET6) {
    return ntohs(reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port);
  }
  return 0;
}

// Runs `attempt` on each address `address` resolves to until one gives a
// descriptor (an attempt that fails returns -1 with errno set and closes
// what it opened).
template <typename Fn>
absl::StatusOr<int> FirstAddressThatWorks(const std::string& address,
                                          bool passive, const char* verb,
                                          Fn attempt) {
  absl::StatusOr<addrinfo*> list = Resolve(address, passive);
  if (!list.ok()) return list.status();
  int err = ECONNREFUSED;
  for (addrinfo* ai = *list; ai != nullptr; ai = ai->ai_next) {
    int fd = attempt(ai);
    if (fd >= 0) {
      freeaddrinfo(*list);
      return fd;
    }
    err = errno;
  }
  freeaddrinfo(*list);
  return MakeError(
      Errc::kUnavailable,
      absl::StrCat("cannot ", verb, " ", address, ": ", strerror(err)));
}

// Closes `fd` keeping errno; returns -1.
int Fail(int fd) {
  int err = errno;
  close(fd);
  errno = err;
  return -1;
}

// Moves past the first `done` bytes of the `*n` buffers at `*iov`.
void Advance(struct iovec** iov, int* n, size_t done) {
  while (*n > 0 && done >= (*iov)->iov_len) {
    done -= (*iov)->iov_len;
    ++*iov;
    --*n;
  }
  if (*n > 0) {
    (*iov)->iov_base = static_cast<char*>((*iov)->iov_base) + done;
    (*iov)->iov_len -= done;
  }
}

}  // namespace

absl::StatusOr<int> ListenTcp(const std::string& address, int* port) {
  return FirstAddressThatWorks(address, true, "listen on", [&](addrinfo* ai) {
    int fd =
        socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0) return -1;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || listen(fd, 128) != 0) {
      return Fail(fd);
    }
    if (port != nullptr) *port = PortOf(fd);
    return fd;
  });
}

absl::StatusOr<int> ConnectTcp(const std::string& address,
                               uint64_t timeout_ms) {
  return FirstAddressThatWorks(address, false, "connect to", [&](addrinfo* ai) {
    int fd =
        socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK,
               ai->ai_protocol);
    if (fd < 0) return -1;
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
      if (errno != EINPROGRESS) return Fail(fd);
      pollfd p{fd, POLLOUT, 0};
      int timeout = timeout_ms > 60000 ? 60000 : static_cast<int>(timeout_ms);
      int rc;
      do {
        rc = poll(&p, 1, timeout);
      } while (rc < 0 && errno == EINTR);
      if (rc == 0) errno = ETIMEDOUT;
      if (rc != 1) return Fail(fd);
      int so = 0;
      socklen_t len = sizeof(so);
      getsockopt(fd, SOL_SOCKET, SO_ERROR, &so, &len);
      if (so != 0) {
        errno = so;
        return Fail(fd);
      }
    }
    // Back to blocking, with time limits on each send and receive.
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    timeval tv{static_cast<time_t>(timeout_ms / 1000),
               static_cast<suseconds_t>((timeout_ms % 1000) * 1000)};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
    return fd;
  });
}

bool SendAll(int fd, struct iovec* iov, int n, int flags) {
  while (n > 0) {
    msghdr msg{};
    msg.msg_iov = iov;
    msg.msg_iovlen = static_cast<size_t>(std::min(n, IOV_MAX));
    ssize_t sent = sendmsg(fd, &msg, MSG_NOSIGNAL | flags);
    if (sent < 0 && errno == EINTR) continue;
    if (sent < 0) return false;
    Advance(&iov, &n, static_cast<size_t>(sent));
  }
  return true;
}

namespace {

// sendfile(2) to a socket whose peer has gone raises SIGPIPE, and unlike
// send(2) it takes no MSG_NOSIGNAL. SIGPIPE from a write is directed at
// the writing thread, so blocking it here, for this thread only, turns it
// into a plain EPIPE; a SIGPIPE this raised is then taken off the thread's
// pending set before the old mask comes back.
class SigpipeBlocked {
 public:
  SigpipeBlocked() {
    sigset_t pipe_only;
    sigemptyset(&pipe_only);
    sigaddset(&pipe_only, SIGPIPE);
    sigset_t pending;
    sigpending(&pending);
    was_pending_ = sigismember(&pending, SIGPIPE) == 1;
    pthread_sigmask(SIG_BLOCK, &pipe_only, &old_);
  }
  ~SigpipeBlocked() {
    int saved = errno;
    sigset_t pending;
    sigpending(&pending);
    if (!was_pending_ && sigismember(&pending, SIGPIPE) == 1) {
      sigset_t pipe_only;
      sigemptyset(&pipe_only);
      sigaddset(&pipe_only, SIGPIPE);
      const timespec now = {0, 0};
      while (sigtimedwait(&pipe_only, nullptr, &now) < 0 && errno == EINTR) {
      }
    }
    pthread_sigmask(SIG_SETMASK, &old_, nullptr);
    errno = saved;
  }
  SigpipeBlocked(const SigpipeBlocked&) = delete;
  SigpipeBlocked& operator=(const SigpipeBlocked&) = delete;

 private:
  sigset_t old_;
  bool was_pending_ = false;
};

}  // namespace

bool SendFileAll(int fd, int file_fd, uint64_t offset, uint64_t length) {
  off_t at = static_cast<off_t>(offset);
  uint64_t left = length;
  {
    SigpipeBlocked quiet;
    while (left > 0) {
      ssize_t sent = sendfile(fd, file_fd, &at, left);
      if (sent < 0 && errno == EINTR) continue;
      if (sent < 0) return false;
      if (sent == 0) break;  // The file ended.
      left -= static_cast<uint64_t>(sent);
    }
  }
  static const char kZeros[64 << 10] = {};
  while (left > 0) {
    struct iovec iov = {const_cast<char*>(kZeros),
                        std::min<size_t>(left, sizeof(kZeros))};
    if (!SendAll(fd, &iov, 1)) return false;
    left -= iov.iov_len;
  }
  return true;
}

ssize_t RecvAll(int fd, char* buf, size_t n) {
  size_t done = 0;
  while (done < n) {
    ssize_t got = recv(fd, buf + done, n - done, MSG_WAITALL);
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) return -1;
    if (got == 0) break;
    done += static_cast<size_t>(got);
  }
  return static_cast<ssize_t>(done);
}

ssize_t RecvAllV(int fd, struct iovec* iov, int n) {
  size_t done = 0;
  while (n > 0) {
    msghdr msg{};
    msg.msg_iov = iov;
    msg.msg_iovlen = static_cast<size_t>(std::min(n, IOV_MAX));
    ssize_t got = recvmsg(fd, &msg, MSG_WAITALL);
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) return -1;
    if (got == 0) break;
    done += static_cast<size_t>(got);
    Advance(&iov, &n, static_cast<size_t>(got));
  }
  return static_cast<ssize_t>(done);
}

ssize_t SpliceFromSocket(int fd, int pipe_fd, size_t n, int timeout_ms) {
  size_t done = 0;
  // Wake-ups with data waiting that still move nothing: the pipe has no
  // room for the next fragment.
  int stuck = 0;
  while (done < n) {
    ssize_t got = splice(fd, nullptr, pipe_fd, nullptr, n - done,
                         SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
    if (got > 0) {
      done += static_cast<size_t>(got);
      stuck = 0;
      continue;
    }
    if (got == 0) break;  // The peer closed.
    if (errno == EINTR) continue;
    if (errno != EAGAIN) return -1;
    struct pollfd room = {pipe_fd, POLLOUT, 0};
    if (poll(&room, 1, 0) == 0 || ++stuck > 100) {
      errno = ENOSPC;
      return -1;
    }
    struct pollfd in = {fd, POLLIN, 0};
    int ready = poll(&in, 1, timeout_ms);
    if (ready < 0 && errno == EINTR) continue;
    if (ready < 0) return -1;
    if (ready == 0) {
      errno = EAGAIN;
      return -1;
    }
  }
  return static_cast<ssize_t>(done);
}

}  // namespace rangefs
