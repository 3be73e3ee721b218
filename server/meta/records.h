// On-disk records of the metadata server and the plain value types its
// operations use. Keys are big-endian so RocksDB's order is numeric order:
//
//   inodes    ino                       -> InodeRecord
//   dentries  parent ino | name         -> child ino | file type
//   extents   ino | file offset         -> Extent (length, device, physical,
//                                          state, generation)
//   free      device | physical offset  -> length (free space extents)
//   meta      name                      -> filesystem metadata (fs id, block
//                                          size, devices, next inode, fences)
//   orphans   ino                       -> "" (nlink 0, still open somewhere)
//   xattrs    ino | name                -> value
//   handles   ino | session             -> open count
//   replies   client | seq              -> what a change answered (replies.h)
#ifndef RANGEFS_SERVER_META_RECORDS_H_
#define RANGEFS_SERVER_META_RECORDS_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/coding.h"

namespace rangefs::meta {

inline constexpr uint64_t kRootIno = 1;
inline constexpr uint64_t kBlockSize = 4096;
inline constexpr uint64_t kMaxNameLength = 255;
inline constexpr uint64_t kMaxSymlinkLength = 4095;
// Largest range one MapRead/MapWrite covers, and most mappings returned.
inline constexpr uint64_t kMaxMapLength = 1ull << 30;
inline constexpr size_t kMaxMappings = 1024;
inline constexpr uint32_t kMaxLinks = 65000;
inline constexpr size_t kMaxXattrName = 255;
inline constexpr size_t kMaxXattrValue = 65536;
// Per inode: the names with their NULs must fit listxattr's largest buffer
// (XATTR_LIST_MAX), and names plus values stay within 1 MiB.
inline constexpr size_t kMaxXattrList = 65536;
inline constexpr size_t kMaxXattrBytes = 1 << 20;

struct Timespec {
  int64_t sec = 0;
  uint32_t nsec = 0;
  bool operator==(const Timespec& o) const {
    return sec == o.sec && nsec == o.nsec;
  }
  bool operator<(const Timespec& o) const {
    return sec < o.sec || (sec == o.sec && nsec < o.nsec);
  }
};

Timespec Now();

// A Timespec in a record: seconds (BE64) and nanoseconds (BE32).
void PutTime(Encoder* e, const Timespec& t);
Timespec GetTime(Decoder* d);

struct InodeRecord {
  uint64_t ino = 0;
  uint32_t mode = 0;
  uint32_t nlink = 0;
  uint32_t uid = 0;
  uint32_t gid = 0;
  uint64_t size = 0;
  uint64_t rdev = 0;
  Timespec atime, mtime, ctime, btime;
  // Bumped by every change of the inode's extent map: the validity cookie.
  uint64_t extent_gen = 1;
  uint64_t generation = 0;  // Inode generation (never reused numbers).
  uint64_t parent = 0;      // Directories: the parent directory.
  uint64_t blocks = 0;      // Allocated blocks of kBlockSize.
  std::string symlink;      // Symlink target.
};

std::string EncodeInode(const InodeRecord& r);
absl::StatusOr<InodeRecord> DecodeInode(absl::string_view v);

enum class ExtentState : uint8_t { kHole = 0, kUnwritten = 1, kWritten = 2 };
const char* ExtentStateName(ExtentState s);

// file [offset, offset + length) -> device `device` at `physical`.
struct Extent {
  uint64_t offset = 0;
  uint64_t length = 0;
  uint32_t device = 0;
  uint64_t physical = 0;
  ExtentState state = ExtentState::kHole;
  // The inode's extent generation when the mapping of these bytes last
  // changed; a commit with an older cookie is STALE.
  uint64_t gen = 0;

  uint64_t end() const { return offset + length; }
  bool operator==(const Extent& o) const {
    return offset == o.offset && length == o.length && device == o.device &&
           physical == o.physical && state == o.state && gen == o.gen;
  }
};

std::string EncodeExtent(const Extent& e);
// `offset` comes from the key.
absl::StatusOr<Extent> DecodeExtent(uint64_t offset, absl::string_view v);

// Space on a device: [physical, physical + length).
struct PhysExtent {
  uint32_t device = 0;
  uint64_t physical = 0;
  uint64_t length = 0;
};

struct DeviceInfo {
  uint32_t id = 0;
  uint64_t size = 0;
  std::string address;  // host:port of its rangefs-data.
};

std::string EncodeDevices(const std::vector<DeviceInfo>& d);
absl::StatusOr<std::vector<DeviceInfo>> DecodeDevices(absl::string_view v);

// Keys.
std::string InodeKey(uint64_t ino);
std::string DentryPrefix(uint64_t parent);
std::string DentryKey(uint64_t parent, absl::string_view name);
std::string ExtentPrefix(uint64_t ino);
std::string ExtentKey(uint64_t ino, uint64_t offset);
std::string FreeKey(uint32_t device, uint64_t physical);
std::string XattrPrefix(uint64_t ino);
std::string XattrKey(uint64_t ino, absl::string_view name);
std::string HandleKey(uint64_t ino, uint64_t session);
std::string FenceKey(uint64_t session);
std::string ReplyKey(uint64_t client, uint64_t seq);
// Inode numbers leased to a session (MetaServer::ReserveInodes): the key,
// and the value, pairs of big-endian [next, end).
std::string LeaseKey(uint64_t session);
std::string EncodeLease(const std::vector<std::pair<uint64_t, uint64_t>>& r);
bool DecodeLease(absl::string_view v,
                 std::vector<std::pair<uint64_t, uint64_t>>* out);

std::string EncodeDentry(uint64_t ino, uint32_t type);
absl::Status DecodeDentry(absl::string_view v, uint64_t* ino, uint32_t* type);

// The attributes a client sees.
struct Attr {
  uint64_t ino = 0;
  uint32_t mode = 0;
  uint32_t nlink = 0;
  uint32_t uid = 0;
  uint32_t gid = 0;
  uint64_t size = 0;
  uint64_t blocks = 0;  // 512-byte units.
  uint32_t blksize = kBlockSize;
  uint64_t rdev = 0;
  Timespec atime, mtime, ctime, btime;
  uint64_t extent_gen = 0;
  uint64_t generation = 0;
};

Attr AttrOf(const InodeRecord& r);

}  // namespace rangefs::meta

#endif  // RANGEFS_SERVER_META_RECORDS_H_
