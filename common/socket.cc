#include "common/socket.h"

#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
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

}  // namespace

absl::StatusOr<int> ListenTcp(const std::string& address, int* port) {
  absl::StatusOr<addrinfo*> list = Resolve(address, true);
  if (!list.ok()) return list.status();
  int err = 0;
  for (addrinfo* ai = *list; ai != nullptr; ai = ai->ai_next) {
    int fd =
        socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0) {
      err = errno;
      continue;
    }
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, 128) == 0) {
      freeaddrinfo(*list);
      if (port != nullptr) *port = PortOf(fd);
      return fd;
    }
    err = errno;
    close(fd);
  }
  freeaddrinfo(*list);
  return MakeError(
      Errc::kUnavailable,
      absl::StrCat("cannot listen on ", address, ": ", strerror(err)));
}

absl::StatusOr<int> ConnectTcp(const std::string& address,
                               uint64_t timeout_ms) {
  absl::StatusOr<addrinfo*> list = Resolve(address, false);
  if (!list.ok()) return list.status();
  int err = ECONNREFUSED;
  for (addrinfo* ai = *list; ai != nullptr; ai = ai->ai_next) {
    int fd =
        socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK,
               ai->ai_protocol);
    if (fd < 0) {
      err = errno;
      continue;
    }
    int rc = connect(fd, ai->ai_addr, ai->ai_addrlen);
    if (rc != 0 && errno == EINPROGRESS) {
      pollfd p{fd, POLLOUT, 0};
      int timeout = timeout_ms > 60000 ? 60000 : static_cast<int>(timeout_ms);
      do {
        rc = poll(&p, 1, timeout);
      } while (rc < 0 && errno == EINTR);
      if (rc == 1) {
        int so = 0;
        socklen_t len = sizeof(so);
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &so, &len);
        errno = so;
        rc = so == 0 ? 0 : -1;
      } else {
        errno = rc == 0 ? ETIMEDOUT : errno;
        rc = -1;
      }
    }
    if (rc == 0) {
      freeaddrinfo(*list);
      // Back to blocking, with time limits on each send and receive.
      int one = 1;
      setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
      timeval tv{static_cast<time_t>(timeout_ms / 1000),
                 static_cast<suseconds_t>((timeout_ms % 1000) * 1000)};
      setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
      setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
      int fl = fcntl(fd, F_GETFL);
      fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
      return fd;
    }
    err = errno;
    close(fd);
  }
  freeaddrinfo(*list);
  return MakeError(
      Errc::kUnavailable,
      absl::StrCat("cannot connect to ", address, ": ", strerror(err)));
}

bool SendAll(int fd, struct iovec* iov, int n) {
  while (n > 0) {
    msghdr msg{};
    msg.msg_iov = iov;
    msg.msg_iovlen = static_cast<size_t>(n);
    ssize_t sent = sendmsg(fd, &msg, MSG_NOSIGNAL);
    if (sent < 0 && errno == EINTR) continue;
    if (sent < 0) return false;
    size_t left = static_cast<size_t>(sent);
    while (n > 0 && left >= iov->iov_len) {
      left -= iov->iov_len;
      ++iov;
      --n;
    }
    if (n > 0) {
      iov->iov_base = static_cast<char*>(iov->iov_base) + left;
      iov->iov_len -= left;
    }
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

}  // namespace rangefs
