#include "server/data/block_store.h"

#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/coding.h"
#include "common/fault_injection.h"
#include "common/log.h"
#include "common/status.h"

namespace rangefs::data {

int64_t SteadyNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

namespace {

absl::Status ErrnoError(Errc code, const std::string& what) {
  return MakeError(code, absl::StrCat(what, ": ", strerror(errno)), errno);
}

}  // namespace

absl::StatusOr<std::unique_ptr<BlockStore>> BlockStore::Open(
    const std::string& dir, uint64_t size, const std::string& device,
    bool direct_io) {
  if (mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) {
    return ErrnoError(Errc::kIoError, "mkdir " + dir);
  }
  std::string path = device.empty() ? dir + "/blocks" : device;
  int fd = open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) return ErrnoError(Errc::kIoError, "open " + path);
  struct stat st;
  if (fstat(fd, &st) != 0) {
    close(fd);
    return ErrnoError(Errc::kIoError, "stat " + path);
  }
  uint64_t existing = static_cast<uint64_t>(st.st_size);
  if (S_ISBLK(st.st_mode)) {
    if (ioctl(fd, BLKGETSIZE64, &existing) != 0) {
      close(fd);
      return ErrnoError(Errc::kIoError, "BLKGETSIZE64 " + path);
    }
  }
  if (existing == 0 && S_ISREG(st.st_mode)) {
    if (size == 0) {
      close(fd);
      return MakeError(Errc::kInvalidArgument,
                       "a new device needs a size (--size)");
    }
    // Sparse: never-written blocks read as zeros and take no space.
    if (ftruncate(fd, static_cast<off_t>(size)) != 0) {
      close(fd);
      return ErrnoError(Errc::kIoError, "size " + path);
    }
    existing = size;
  } else if (size != 0 && size != existing) {
    close(fd);
    return MakeError(Errc::kInvalidArgument,
                     absl::StrCat(path, " holds ", existing,
                                  " bytes, not the requested ", size));
  }
  int direct_fd = -1;
  if (direct_io) {
    direct_fd = open(path.c_str(), O_RDWR | O_DIRECT | O_CLOEXEC);
    if (direct_fd < 0) {
      RANGEFS_LOG(WARNING) << "no direct I/O on " << path << " ("
                           << strerror(errno) << "): every write is buffered";
    }
  }
  auto store =
      std::unique_ptr<BlockStore>(new BlockStore(dir, fd, direct_fd, existing));
  {
    absl::MutexLock lock(&store->fence_mu_);
    if (absl::Status s = store->LoadFences(); !s.ok()) return s;
  }
  return store;
}

BlockStore::BlockStore(std::string dir, int fd, int direct_fd, uint64_t size)
    : dir_(std::move(dir)), fd_(fd), direct_fd_(direct_fd), size_(size) {}

BlockStore::~BlockStore() {
  close(fd_);
  if (direct_fd_ >= 0) close(direct_fd_);
}

int BlockStore::FdFor(uint64_t offset, uint64_t length, const void* buf) const {
  const uint64_t mask = kDirectAlign - 1;
  if (direct_fd_ >= 0 && (offset & mask) == 0 && (length & mask) == 0 &&
      (reinterpret_cast<uintptr_t>(buf) & mask) == 0) {
    return direct_fd_;
  }
  return fd_;
}

absl::Status BlockStore::CheckRange(uint64_t offset, uint64_t length) const {
  if (length == 0 || length > kMaxIo) {
    return MakeError(Errc::kInvalidArgument,
                     absl::StrCat("length ", length, " not in 1..", kMaxIo));
  }
  if (offset > size_ || length > size_ - offset) {
    return MakeError(
        Errc::kInvalidArgument,
        absl::StrCat("[", offset, ", +", length, ") is outside the device of ",
                     size_, " bytes"));
  }
  return absl::OkStatus();
}

absl::Status BlockStore::CheckFence(uint64_t session) const {
  if (fenced_.count(session) != 0 &&
      !UnsafeSwitch("unsafe.data.ignore_fence")) {
    ++fenced_refusals_;
    return MakeError(Errc::kFenced,
                     absl::StrCat("session ", session, " is fenced"));
  }
  return absl::OkStatus();
}

absl::Status BlockStore::CheckFenceLease() const {
  if (SteadyNs() < lease_until_ns_.load(std::memory_order_acquire)) {
    return absl::OkStatus();
  }
  ++lease_refusals_;
  return MakeError(Errc::kBusy,
                   "this data server has not reached the metadata server "
                   "within its fence lease: it takes no writes until it has "
                   "caught up with the fences");
}

void BlockStore::SetFenceLease(int64_t until_ns, uint64_t seq) {
  fence_seq_.store(seq);
  lease_until_ns_.store(until_ns, std::memory_order_release);
}

absl::StatusOr<std::string> BlockStore::Read(uint64_t session, uint64_t offset,
                                             uint64_t length) {
  if (absl::Status s = CheckRange(offset, length); !s.ok()) return s;
  std::string buf(length, '\0');
  if (absl::Status s = ReadInto(session, offset, length, buf.data()); !s.ok()) {
    return s;
  }
  return buf;
}

absl::Status BlockStore::ReadInto(uint64_t session, uint64_t offset,
                                  uint64_t length, char* out) {
  if (absl::Status s = CheckRange(offset, length); !s.ok()) return s;
  absl::ReaderMutexLock lock(&fence_mu_);
  if (absl::Status s = CheckFence(session); !s.ok()) return s;
  uint64_t done = 0;
  while (done < length) {
    ssize_t n = pread(fd_, out + done, length - done,
                      static_cast<off_t>(offset + done));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return ErrnoError(Errc::kIoError, "pread");
    if (n == 0) break;  // A block device shorter than it claimed: zeros.
    done += static_cast<uint64_t>(n);
  }
  if (done < length) memset(out + done, 0, length - done);
  ++reads_;
  bytes_read_ += length;
  return absl::OkStatus();
}

absl::Status BlockStore::ReadThrough(
    uint64_t session, uint64_t offset, uint64_t length,
    const std::function<absl::Status(int fd)>& read) {
  if (absl::Status s = CheckRange(offset, length); !s.ok()) return s;
  {
    // Not held across `read`, which may wait on a slow or dead client:
    // a Fence (an eviction) must not wait for that. A read checked just
    // before a fence may finish after it; it changes nothing stored.
    absl::ReaderMutexLock lock(&fence_mu_);
    if (absl::Status s = CheckFence(session); !s.ok()) return s;
  }
  ++reads_;
  bytes_read_ += length;
  return read(fd_);
}

absl::Status BlockStore::Write(uint64_t session, uint64_t offset,
                               absl::string_view data, bool sync) {
  if (session == 0) {
    return MakeError(Errc::kInvalidArgument, "writes need a session id");
  }
  if (absl::Status s = CheckRange(offset, data.size()); !s.ok()) return s;
  // Before the fence check, so a write delayed here past an eviction is
  // refused rather than landing late.
  if (absl::Status s = FaultPoint("data.write"); !s.ok()) return s;
  absl::ReaderMutexLock lock(&fence_mu_);
  if (absl::Status s = CheckFence(session); !s.ok()) return s;
  if (absl::Status s = CheckFenceLease(); !s.ok()) return s;
  int fd = FdFor(offset, data.size(), data.data());
  uint64_t done = 0;
  while (done < data.size()) {
    ssize_t n = pwrite(fd, data.data() + done, data.size() - done,
                       static_cast<off_t>(offset + done));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return ErrnoError(Errc::kIoError, "pwrite");
    done += static_cast<uint64_t>(n);
    fd = fd_;  // A short transfer leaves the rest unaligned.
  }
  if (sync && fdatasync(fd_) != 0)
    return ErrnoError(Errc::kIoError, "fdatasync");
  ++writes_;
  bytes_written_ += data.size();
  return absl::OkStatus();
}

absl::Status BlockStore::Flush(uint64_t session) {
  absl::ReaderMutexLock lock(&fence_mu_);
  if (absl::Status s = CheckFence(session); !s.ok()) return s;
  if (absl::Status s = CheckFenceLease(); !s.ok()) return s;
  if (fdatasync(fd_) != 0) return ErrnoError(Errc::kIoError, "fdatasync");
  return absl::OkStatus();
}

absl::Status BlockStore::Fence(uint64_t session) {
  if (session == 0) {
    return MakeError(Errc::kInvalidArgument, "session 0 cannot be fenced");
  }
  // Exclusive: waits for I/O of every session already past its check.
  absl::MutexLock lock(&fence_mu_);
  if (fenced_.count(session) != 0) return absl::OkStatus();
  fenced_.insert(session);
  if (absl::Status s = PersistFences(); !s.ok()) {
    fenced_.erase(session);
    return s;
  }
  RANGEFS_LOG(INFO) << "fenced session " << session;
  return absl::OkStatus();
}

absl::Status BlockStore::PersistFences() {
  std::string data;
  for (uint64_t s : fenced_) PutBE64(&data, s);
  std::string tmp = dir_ + "/fenced.tmp";
  std::string path = dir_ + "/fenced";
  int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return ErrnoError(Errc::kIoError, "open " + tmp);
  bool ok = write(fd, data.data(), data.size()) ==
                static_cast<ssize_t>(data.size()) &&
            fsync(fd) == 0;
  close(fd);
  if (!ok || rename(tmp.c_str(), path.c_str()) != 0) {
    return ErrnoError(Errc::kIoError, "write " + path);
  }
  int dfd = open(dir_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    fsync(dfd);
    close(dfd);
  }
  return absl::OkStatus();
}

absl::Status BlockStore::LoadFences() {
  std::ifstream in(dir_ + "/fenced", std::ios::binary);
  if (!in) return absl::OkStatus();
  std::string data((std::istreambuf_iterator<char>(in)),
                   std::istreambuf_iterator<char>());
  if (data.size() % 8 != 0) {
    return MakeError(Errc::kIoError, dir_ + "/fenced is corrupt");
  }
  for (size_t i = 0; i < data.size(); i += 8) {
    fenced_.insert(LoadBE64(data.data() + i));
  }
  return absl::OkStatus();
}

BlockStoreStats BlockStore::Stats() const {
  BlockStoreStats s;
  s.device_size = size_;
  s.bytes_read = bytes_read_;
  s.bytes_written = bytes_written_;
  s.reads = reads_;
  s.writes = writes_;
  s.fenced_refusals = fenced_refusals_;
  s.lease_refusals = lease_refusals_;
  s.fence_lease_held = SteadyNs() < lease_until_ns_.load();
  s.fence_seq = fence_seq_;
  absl::ReaderMutexLock lock(&fence_mu_);
  s.fenced = fenced_;
  return s;
}

}  // namespace rangefs::data
