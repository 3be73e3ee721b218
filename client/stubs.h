// The node's calls to the metadata server and the data servers, in client
// value types. stubs.cc is the only client file that touches the generated
// MetaService / DataService code (STYLE.md: generated RPC code behind an
// interface). Every call waits for its server to be reachable up to the
// configured timeout; transport failures come back as UNAVAILABLE.
//
// Thread-safe.
#ifndef RANGEFS_CLIENT_STUBS_H_
#define RANGEFS_CLIENT_STUBS_H_

#include <sys/uio.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "client/rangefs.h"
#include "common/range.h"

namespace rangefs::client {

enum class ExtentState { kHole = 0, kUnwritten = 1, kWritten = 2 };

// File [offset, offset + length) maps to `device` at `physical`.
struct Mapping {
  uint64_t offset = 0;
  uint64_t length = 0;
  ExtentState state = ExtentState::kHole;
  uint32_t device = 0;
  uint64_t physical = 0;
  uint64_t end() const { return offset + length; }
};

struct MapResult {
  std::vector<Mapping> mappings;  // Contiguous from the asked offset.
  uint64_t cookie = 0;
  uint64_t size = 0;
};

struct CommitResult {
  uint64_t cookie = 0;
  Attr attr;
};

// A regular file made by a node ahead of the metadata server (CreateLater):
// its inode number comes from the session's lease (ReserveInodes).
struct NewFile {
  uint64_t parent = 0;
  std::string name;
  uint32_t mode = 0;  // S_IFREG and permission bits (umask applied).
  Creds creds;
  uint64_t ino = 0;
  Timespec time;
};

class Stubs {
 public:
  // Fails on a configuration with no metadata server or data servers.
  static absl::StatusOr<std::unique_ptr<Stubs>> Create(
      const ClusterConfig& config, uint64_t timeout_ms);
  virtual ~Stubs() = default;

  // Calls made to the metadata server so far.
  virtual uint64_t meta_calls() const = 0;

  // ---- metadata server
  // `after_creates` false: the answer cannot depend on the creates queued
  // by CreateLater (the caller knows none of them is this name), so the
  // call does not wait for them.
  virtual absl::StatusOr<Attr> Lookup(uint64_t parent, const std::string& name,
                                      bool after_creates) = 0;
  virtual absl::StatusOr<Attr> GetAttr(uint64_t ino) = 0;
  virtual absl::StatusOr<Attr> SetAttr(uint64_t session, uint64_t ino,
                                       const SetAttrArgs& args) = 0;
  // The namespace changes below set `*parent` (when not null) to the
  // directory's attributes right after the change, or leave its ino 0 when
  // the server did not send them.
  virtual absl::StatusOr<Attr> Create(uint64_t session, uint64_t parent,
                                      const std::string& name, uint32_t mode,
                                      uint64_t rdev, const Creds& creds,
                                      bool exclusive, Attr* parent_attr) = 0;
  virtual absl::StatusOr<Attr> Mkdir(uint64_t session, uint64_t parent,
                                     const std::string& name, uint32_t mode,
                                     const Creds& creds, Attr* parent_attr) = 0;
  virtual absl::StatusOr<Attr> Symlink(uint64_t session, uint64_t parent,
                                       const std::string& name,
                                       const std::string& target,
                                       const Creds& creds,
                                       Attr* parent_attr) = 0;
  virtual absl::StatusOr<Attr> Link(uint64_t session, uint64_t ino,
                                    uint64_t new_parent,
                                    const std::string& new_name,
                                    Attr* parent_attr) = 0;
  // Returns the unlinked inode.
  virtual absl::StatusOr<uint64_t> Unlink(uint64_t session, uint64_t parent,
                                          const std::string& name,
                                          Attr* parent_attr) = 0;
  virtual absl::Status Rmdir(uint64_t session, uint64_t parent,
                             const std::string& name, Attr* parent_attr) = 0;
  // Returns the inode that lost its last link by replacement (0: none).
  virtual absl::StatusOr<uint64_t> Rename(uint64_t session, uint64_t old_parent,
                                          const std::string& old_name,
                                          uint64_t new_parent,
                                          const std::string& new_name,
                                          uint32_t flags) = 0;
  virtual absl::StatusOr<std::string> Readlink(uint64_t ino) = 0;
  virtual absl::StatusOr<DirPage> ReadDir(uint64_t ino,
                                          const std::string& after,
                                          uint32_t max_entries, bool plus) = 0;
  virtual absl::StatusOr<FsStat> StatFs() = 0;
  // Makes every metadata change acknowledged so far durable.
  virtual absl::Status SyncMeta() = 0;
  // Leases `count` new inode numbers to `session`; returns the first.
  virtual absl::StatusOr<uint64_t> ReserveInodes(uint64_t session,
                                                 uint64_t count) = 0;
  // Sends the create of `f` from a background thread, in submission order
  // (waiting first while 256 are queued). Every other metadata call made
  // after CreateLater returns waits until the creates queued before it
  // are answered, so the server never hears of a file before its create.
  // `done` runs on that thread with the answer (the file's and its
  // directory's attributes); it must not call the metadata server.
  using CreateDone =
      std::function<void(const absl::StatusOr<Attr>& made, const Attr& dir)>;
  virtual void CreateLater(uint64_t session, NewFile f, CreateDone done) = 0;
  virtual absl::StatusOr<MapResult> Map(uint64_t session, uint64_t ino,
                                        uint64_t offset, uint64_t length,
                                        bool for_write) = 0;
  // MapWrite of several block-aligned ranges, in order and disjoint, at
  // most 1024: the mappings cover a prefix of them, each range's from its
  // start (MapReply in proto/meta.proto).
  virtual absl::StatusOr<MapResult> MapWriteRanges(
      uint64_t session, uint64_t ino, const std::vector<ByteRange>& ranges) = 0;
  virtual absl::StatusOr<CommitResult> CommitWrite(
      uint64_t session, uint64_t ino, const std::vector<ByteRange>& ranges,
      uint64_t cookie, uint64_t new_size, const Timespec& mtime) = 0;
  virtual absl::StatusOr<Attr> Fallocate(uint64_t session, uint64_t ino,
                                         uint32_t mode, uint64_t offset,
                                         uint64_t length) = 0;
  virtual absl::StatusOr<uint64_t> Seek(uint64_t ino, uint64_t offset,
                                        bool data) = 0;
  virtual absl::StatusOr<Attr> Open(uint64_t session, uint64_t ino,
                                    bool close) = 0;
  virtual absl::StatusOr<std::string> GetXattr(uint64_t ino,
                                               const std::string& name) = 0;
  virtual absl::Status SetXattr(uint64_t session, uint64_t ino,
                                const std::string& name,
                                const std::string& value, uint32_t flags) = 0;
  virtual absl::StatusOr<std::vector<std::string>> ListXattr(uint64_t ino) = 0;
  virtual absl::Status RemoveXattr(uint64_t session, uint64_t ino,
                                   const std::string& name) = 0;

  // ---- data servers, by device id
  // Reads `length` bytes at `physical` into the `n` buffers of `iov`,
  // which hold exactly `length` bytes together.
  virtual absl::Status ReadData(uint64_t session, uint32_t device,
                                uint64_t physical, uint64_t length,
                                const struct iovec* iov, int n) = 0;
  absl::Status ReadData(uint64_t session, uint32_t device, uint64_t physical,
                        uint64_t length, char* out) {
    const struct iovec v = {out, length};
    return ReadData(session, device, physical, length, &v, 1);
  }
  // Reads `length` bytes at `physical` into the pipe `pipe_fd` (its write
  // end) without a copy through this process. kNotSupported when the
  // device has no channel for it (no bulk address), kWouldBlock when the
  // pipe filled up first; after any error the pipe may hold part of the
  // data.
  virtual absl::Status ReadDataToPipe(uint64_t session, uint32_t device,
                                      uint64_t physical, uint64_t length,
                                      int pipe_fd) = 0;
  // Writes the `length` bytes of the `n` buffers of `iov` at `physical`.
  virtual absl::Status WriteData(uint64_t session, uint32_t device,
                                 uint64_t physical, const struct iovec* iov,
                                 int n, uint64_t length, bool sync) = 0;
  absl::Status WriteData(uint64_t session, uint32_t device, uint64_t physical,
                         const char* data, uint64_t length, bool sync) {
    const struct iovec v = {const_cast<char*>(data), length};
    return WriteData(session, device, physical, &v, 1, length, sync);
  }
  // Makes every data server's writes of `session` durable.
  virtual absl::Status FlushData(uint64_t session) = 0;
};

}  // namespace rangefs::client

#endif  // RANGEFS_CLIENT_STUBS_H_
