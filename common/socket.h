// Blocking TCP sockets for the bulk data protocol (common/bulk_wire.h):
// listen on an address, connect with a time limit, and send or receive
// whole buffers. Addresses are "HOST:PORT" as in the cluster
// configuration (host names, IPv4 or bracketed IPv6 literals).
#ifndef RANGEFS_COMMON_SOCKET_H_
#define RANGEFS_COMMON_SOCKET_H_

#include <sys/uio.h>

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/status/statusor.h"

namespace rangefs {

// A listening socket bound to `address` (port 0: any free port). *port
// gets the port it listens on. The caller owns the descriptor.
absl::StatusOr<int> ListenTcp(const std::string& address, int* port);

// A connected socket with TCP_NODELAY; sends and receives on it fail with
// EAGAIN after `timeout_ms` without progress. The caller owns it.
absl::StatusOr<int> ConnectTcp(const std::string& address, uint64_t timeout_ms);

// Sends every byte of the `n` buffers (modifies `iov`), with `flags`
// (MSG_MORE, say) besides MSG_NOSIGNAL. False on error; errno tells which.
bool SendAll(int fd, struct iovec* iov, int n, int flags = 0);

// Sends `length` bytes of file `file_fd` from `offset` to socket `fd`
// with sendfile(2) (no copy through user memory); zeros for any part past
// the file's end. False on error; errno tells which.
bool SendFileAll(int fd, int file_fd, uint64_t offset, uint64_t length);

// Receives exactly `n` bytes. Returns n, fewer if the peer closed the
// connection first, or -1 on error (errno).
ssize_t RecvAll(int fd, char* buf, size_t n);
// The same into the `n` buffers of `iov` (modifies `iov`): returns the
// bytes received, fewer than they hold if the peer closed first, or -1.
ssize_t RecvAllV(int fd, struct iovec* iov, int n);

// Moves exactly `n` bytes from socket `fd` into the pipe `pipe_fd` (its
// write end) with splice(2): no copy through user memory (over loopback,
// the pipe then holds the sender's pages). Waits up to `timeout_ms` for
// each piece. Returns n, fewer if the peer closed first, or -1 with errno
// EAGAIN (nothing came in time), ENOSPC (the pipe filled up first: it
// holds fragments, and a pipe of P pages may take less than P pages of
// data) or another error. What was moved stays in the pipe either way.
ssize_t SpliceFromSocket(int fd, int pipe_fd, size_t n, int timeout_ms);

}  // namespace rangefs

#endif  // RANGEFS_COMMON_SOCKET_H_
