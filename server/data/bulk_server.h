// BulkServer: a data server's block reads and writes over the bulk protocol
// (common/bulk_wire.h), on an address of its own beside DataService. Each
// connection has a thread; requests on one connection run one at a time.
// Everything a request does goes through BlockStore, so fencing, range
// checks and fault points are those of DataService.
//
// Thread-safe. Stop() (or the destructor) stops accepting, lets every
// request already received finish and reply, and closes the connections.
#ifndef RANGEFS_SERVER_DATA_BULK_SERVER_H_
#define RANGEFS_SERVER_DATA_BULK_SERVER_H_

#include <cstdlib>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "server/data/block_store.h"

namespace rangefs::data {

class BulkServer {
 public:
  // Listens on `address` (port 0: any; *port gets the port). `store`
  // outlives the server.
  static absl::StatusOr<std::unique_ptr<BulkServer>> Start(
      const std::string& address, BlockStore* store, int* port);
  ~BulkServer();
  BulkServer(const BulkServer&) = delete;
  BulkServer& operator=(const BulkServer&) = delete;

  void Stop();

  // More connections than this are closed at once.
  static constexpr int kMaxConnections = 1024;
  // A reply that cannot be sent for this long ends its connection.
  static constexpr int kSendTimeoutSeconds = 30;

 private:
  // A receive buffer aligned for the store's direct I/O.
  class Buffer {
   public:
    Buffer() = default;
    ~Buffer() { free(data_); }
    Buffer(const Buffer&) = delete;
    Buffer& operator=(const Buffer&) = delete;
    // At least `n` bytes (contents not kept).
    char* Get(size_t n);

   private:
    char* data_ = nullptr;
    size_t size_ = 0;
  };

  struct Connection {
    int fd = -1;
    bool done = false;
    std::thread thread;
  };

  BulkServer(int listen_fd, BlockStore* store);
  void AcceptLoop();
  void Serve(Connection* c);
  // Answers one request; false when the connection should close.
  bool ServeOne(int fd, Buffer* buffer);
  // Joins and frees connections whose thread has ended.
  void Reap() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const int listen_fd_;
  BlockStore* const store_;
  std::thread accept_thread_;
  absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::unique_ptr<Connection>> connections_ ABSL_GUARDED_BY(mu_);
};

}  // namespace rangefs::data

#endif  // RANGEFS_SERVER_DATA_BULK_SERVER_H_
