// BulkChannel: a node's block reads and writes to one data server over the
// bulk protocol (common/bulk_wire.h). Connections are made on demand and
// kept for reuse; each carries one request at a time, so concurrent
// callers use connections of their own. A write is one sendmsg of the
// header and the caller's bytes; a read's data is received into the
// caller's buffer.
//
// Like the gRPC calls (wait_for_ready), a call waits up to `timeout_ms` for
// the server to be reachable. A request is sent again on a new connection
// only when the server closed or reset the connection before any reply
// (it is gone, or restarting, and will not carry the first try out later);
// a reply that does not come in time is UNAVAILABLE and is not retried.
//
// Thread-safe.
#ifndef RANGEFS_CLIENT_BULK_CLIENT_H_
#define RANGEFS_CLIENT_BULK_CLIENT_H_

#include <sys/uio.h>

#include <cstdint>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "common/bulk_wire.h"

namespace rangefs::client {

class BulkChannel {
 public:
  BulkChannel(std::string address, uint64_t timeout_ms);
  ~BulkChannel();
  BulkChannel(const BulkChannel&) = delete;
  BulkChannel& operator=(const BulkChannel&) = delete;

  // Receives the `length` bytes into the `n` buffers of `iov`, which hold
  // exactly that many.
  absl::Status Read(uint64_t session, uint64_t offset, uint32_t length,
                    const struct iovec* iov, int n);
  absl::Status Read(uint64_t session, uint64_t offset, uint32_t length,
                    char* out) {
    const struct iovec v = {out, length};
    return Read(session, offset, length, &v, 1);
  }
  // Moves the `length` bytes into the pipe `pipe_fd` (its write end) with
  // splice(2), no copy through this process. kWouldBlock when the
  // pipe filled up first; after any error the pipe may hold part of the
  // data.
  absl::Status ReadToPipe(uint64_t session, uint64_t offset, uint32_t length,
                          int pipe_fd);
  // Sends the `length` bytes of the `n` buffers of `iov`, which hold
  // exactly that many.
  absl::Status Write(uint64_t session, uint64_t offset, const struct iovec* iov,
                     int n, uint32_t length, bool sync);
  absl::Status Write(uint64_t session, uint64_t offset, const char* data,
                     uint32_t length, bool sync) {
    const struct iovec v = {const_cast<char*>(data), length};
    return Write(session, offset, &v, 1, length, sync);
  }

  const std::string& address() const { return address_; }

  // Idle connections kept for reuse.
  static constexpr size_t kMaxIdle = 16;

 private:
  enum class Outcome { kDone, kGone, kBroken };
  // A write's data comes from, a read's reply data goes to, the `n`
  // buffers of `iov`.
  // A read's data goes to the pipe `pipe_fd` instead when it is not -1.
  absl::Status Call(const bulk::Request& r, const struct iovec* iov, int n,
                    int pipe_fd = -1);
  // One exchange on `fd`. kDone: *status is the server's answer and the
  // connection can be reused; kGone: closed or reset before any reply;
  // kBroken: anything else (*status says what), the connection is dropped.
  Outcome Exchange(int fd, const bulk::Request& r, const struct iovec* iov,
                   int n, int pipe_fd, absl::Status* status);
  int TakeIdle();
  void GiveBack(int fd);

  const std::string address_;
  const uint64_t timeout_ms_;
  absl::Mutex mu_;
  std::vector<int> idle_ ABSL_GUARDED_BY(mu_);
};

}  // namespace rangefs::client

#endif  // RANGEFS_CLIENT_BULK_CLIENT_H_
