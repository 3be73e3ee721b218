// rangefs-racenode: one client node of the race suite (docs/race-suite.md),
// driven by the harness one command per line on stdin, one reply line per
// command on stdout ("ok ..." or "err ERRNO text"). The node is a
// librangefs Client of --cluster, or with --mount DIR a process doing the
// same operations with system calls on a FUSE mount.
//
// Commands (PATH is a path in the filesystem, BYTE a character):
//   write PATH OFF LEN BYTE [direct]      -> ok N t=MONOTONIC_NS
//   read PATH OFF LEN [direct]            -> ok RUNS
//   truncate PATH SIZE | fsync PATH
//   rename PATH NEWPATH                   (root-level paths)
//   fallocate PATH MODE OFF LEN   (alloc alloc_keep punch zero zero_keep
//                                  collapse insert)
//   mmap NAME PATH OFF LEN [private] [direct]
//                                         (librangefs: Client::Mmap);
//                                         direct: through the O_DIRECT
//                                         handle the direct commands use
//   mstore NAME OFF LEN BYTE              -> ok | err SIGBUS
//   mload NAME OFF LEN                    -> ok RUNS | err SIGBUS
//   msync NAME | munmap NAME
//   dwrite_map PATH OFF LEN NAME MOFF     O_DIRECT write from the mapping
//   dread_map PATH OFF LEN NAME MOFF      O_DIRECT read into the mapping
//   mwatch NAME OFF LEN                   a thread re-reads one byte per
//   mwatch_stop NAME                      page until stopped -> ok loads=N
//                                         T@PAGE:HEX ... (each value a page
//                                         showed, last time it was seen)
//   fault SPEC                            fault rules in the node
//                                         (RANGEFS_FAULTS syntax): this
//                                         process, or through a mount its
//                                         daemon (fault_control=1)
//   stats                                 -> ok key=value ...
//   stat PATH                             -> ok size=N blocks=N
//   sleep MS | quit
// RUNS describes bytes as runs: OFF+LEN=HEX,... (absolute offsets).
#include <fcntl.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <csetjmp>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_split.h"
#include "client/fuse/rangefs_ioctl.h"
#include "client/rangefs.h"
#include "common/cluster_config.h"
#include "common/fault_injection.h"
#include "common/log.h"
#include "common/status.h"

ABSL_FLAG(std::string, cluster, "", "cluster configuration (text or file)");
ABSL_FLAG(std::string, name, "node", "node name");
ABSL_FLAG(std::string, mount, "", "FUSE mount to use instead of librangefs");
ABSL_FLAG(uint64_t, lease_ms, 10000, "lock session lease");

namespace rangefs::race {
namespace {

using client::Client;

int64_t NowNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

std::string Runs(uint64_t base, const char* p, size_t n) {
  std::ostringstream o;
  size_t i = 0;
  char hex[3];
  while (i < n) {
    size_t j = i + 1;
    while (j < n && p[j] == p[i]) ++j;
    snprintf(hex, sizeof hex, "%02x", static_cast<unsigned char>(p[i]));
    if (i > 0) o << ",";
    o << base + i << "+" << j - i << "=" << hex;
    i = j;
  }
  return o.str();
}

// SIGBUS on a mapping: the access that raised it jumps back.
thread_local sigjmp_buf* volatile bus_jump = nullptr;
void OnSigbus(int) {
  if (bus_jump != nullptr) siglongjmp(*bus_jump, 1);
  signal(SIGBUS, SIG_DFL);
  raise(SIGBUS);
}
// Copies with SIGBUS caught; false if it was raised.
bool GuardedCopy(char* dst, const char* src, size_t n) {
  sigjmp_buf jump;
  if (sigsetjmp(jump, 1) != 0) {
    bus_jump = nullptr;
    return false;
  }
  bus_jump = &jump;
  for (size_t i = 0; i < n; ++i) {
    const_cast<volatile char*>(dst)[i] =
        const_cast<volatile const char*>(src)[i];
  }
  bus_jump = nullptr;
  return true;
}

struct Mapping {
  char* addr = nullptr;
  size_t len = 0;
  std::unique_ptr<std::thread> watcher;
  std::atomic<bool> stop{false};
  uint64_t loads = 0;
  std::string changes;
};

// The operations, on librangefs or on a mount.
class Node {
 public:
  virtual ~Node() = default;
  virtual absl::StatusOr<size_t> Write(const std::string& path, uint64_t off,
                                       const char* buf, size_t len,
                                       bool direct) = 0;
  virtual absl::StatusOr<size_t> Read(const std::string& path, uint64_t off,
                                      char* buf, size_t len, bool direct) = 0;
  virtual absl::Status Truncate(const std::string& path, uint64_t size) = 0;
  virtual absl::Status Fsync(const std::string& path) = 0;
  // Renames a file of the root directory; open handles of `from` go.
  virtual absl::Status Rename(const std::string& from,
                              const std::string& to) = 0;
  virtual absl::Status Fallocate(const std::string& path, uint32_t mode,
                                 uint64_t off, uint64_t len) = 0;
  virtual absl::StatusOr<char*> Mmap(const std::string& path, uint64_t off,
                                     size_t len, bool priv, bool direct) = 0;
  virtual absl::Status Msync(char* addr, size_t len) = 0;
  virtual absl::Status Munmap(char* addr, size_t len) = 0;
  virtual std::string Stats() = 0;
  // A fault rule (RANGEFS_FAULTS syntax) inside the node.
  virtual absl::Status SetFault(const std::string& spec) {
    return FaultRegistry::Global().SetFromSpec(spec);
  }
  // "size=N blocks=N" (512-byte units allocated).
  virtual absl::StatusOr<std::string> Stat(const std::string& path) = 0;
};

absl::Status Errno(const std::string& what) {
  int e = errno;
  return MakeError(Errc::kIoError, what + ": " + strerror(e), e);
}

class LibNode : public Node {
 public:
  explicit LibNode(std::unique_ptr<Client> c) : c_(std::move(c)) {}
  absl::StatusOr<uint64_t> Fh(const std::string& path, bool direct) {
    auto& m = direct ? direct_ : buffered_;
    auto it = m.find(path);
    if (it != m.end()) return it->second;
    absl::StatusOr<uint64_t> fh =
        c_->OpenPath(path, O_RDWR | O_CREAT | (direct ? O_DIRECT : 0), 0644);
    if (fh.ok()) m[path] = *fh;
    return fh;
  }
  absl::StatusOr<size_t> Write(const std::string& path, uint64_t off,
                               const char* buf, size_t len,
                               bool direct) override {
    absl::StatusOr<uint64_t> fh = Fh(path, direct);
    if (!fh.ok()) return fh.status();
    return c_->Write(*fh, buf, len, off);
  }
  absl::StatusOr<size_t> Read(const std::string& path, uint64_t off, char* buf,
                              size_t len, bool direct) override {
    absl::StatusOr<uint64_t> fh = Fh(path, direct);
    if (!fh.ok()) return fh.status();
    return c_->Read(*fh, buf, len, off);
  }
  absl::Status Truncate(const std::string& path, uint64_t size) override {
    absl::StatusOr<uint64_t> fh = Fh(path, false);
    if (!fh.ok()) return fh.status();
    client::SetAttrArgs a;
    a.valid = client::kSetSize;
    a.size = size;
    return c_->SetAttr(c_->InoOf(*fh), a).status();
  }
  absl::Status Fsync(const std::string& path) override {
    absl::StatusOr<uint64_t> fh = Fh(path, false);
    if (!fh.ok()) return fh.status();
    return c_->Fsync(*fh, false);
  }
  absl::Status Rename(const std::string& from, const std::string& to) override {
    for (auto* m : {&direct_, &buffered_}) {
      auto it = m->find(from);
      if (it != m->end()) {
        (void)c_->Close(it->second);
        m->erase(it);
      }
    }
    if (from.size() < 2 || to.size() < 2 || from[0] != '/' || to[0] != '/') {
      return absl::InvalidArgumentError("rename: root-level paths only");
    }
    return c_->Rename(client::kRootIno, from.substr(1), client::kRootIno,
                      to.substr(1));
  }
  absl::Status Fallocate(const std::string& path, uint32_t mode, uint64_t off,
                         uint64_t len) override {
    absl::StatusOr<uint64_t> fh = Fh(path, false);
    if (!fh.ok()) return fh.status();
    return c_->Fallocate(*fh, mode, off, len);
  }
  absl::StatusOr<char*> Mmap(const std::string& path, uint64_t off, size_t len,
                             bool priv, bool direct) override {
    absl::StatusOr<uint64_t> fh = Fh(path, direct);
    if (!fh.ok()) return fh.status();
    absl::StatusOr<void*> m = c_->Mmap(*fh, off, len, PROT_READ | PROT_WRITE,
                                       priv ? MAP_PRIVATE : MAP_SHARED);
    if (!m.ok()) return m.status();
    return static_cast<char*>(*m);
  }
  absl::Status Msync(char* addr, size_t len) override {
    return c_->Msync(addr, len, MS_SYNC);
  }
  absl::StatusOr<std::string> Stat(const std::string& path) override {
    absl::StatusOr<uint64_t> fh = Fh(path, false);
    if (!fh.ok()) return fh.status();
    absl::StatusOr<client::Attr> a = c_->FileAttr(*fh);
    if (!a.ok()) return a.status();
    return "size=" + std::to_string(a->size) +
           " blocks=" + std::to_string(a->blocks);
  }
  absl::Status Munmap(char* addr, size_t len) override {
    return c_->Munmap(addr, len);
  }
  std::string Stats() override {
    client::ClientStats s = c_->Stats();
    std::ostringstream o;
    o << "stale_retries=" << s.stale_retries
      << " inval_demotes=" << s.inval_demotes
      << " read_faults=" << s.read_faults << " write_faults=" << s.write_faults
      << " refused_faults=" << s.refused_faults
      << " deadlock_faults=" << s.deadlock_faults
      << " direct_fallbacks=" << s.direct_fallbacks
      << " zapped=" << s.mapped_pages_zapped
      << " lost_dirty_pages=" << s.lost_dirty_pages
      << " session=" << s.session_id;
    return o.str();
  }

 private:
  std::unique_ptr<Client> c_;
  std::map<std::string, uint64_t> buffered_, direct_;
};

class MountNode : public Node {
 public:
  explicit MountNode(std::string dir) : dir_(std::move(dir)) {}
  ~MountNode() override {
    for (auto& [k, fd] : fds_) close(fd);
  }
  absl::StatusOr<int> Fd(const std::string& path, bool direct) {
    auto key = std::make_pair(path, direct);
    auto it = fds_.find(key);
    if (it != fds_.end()) return it->second;
    int fd = open((dir_ + path).c_str(),
                  O_RDWR | O_CREAT | (direct ? O_DIRECT : 0), 0644);
    if (fd < 0) return Errno("open " + path);
    fds_[key] = fd;
    return fd;
  }
  absl::StatusOr<size_t> Write(const std::string& path, uint64_t off,
                               const char* buf, size_t len,
                               bool direct) override {
    absl::StatusOr<int> fd = Fd(path, direct);
    if (!fd.ok()) return fd.status();
    ssize_t n = pwrite(*fd, buf, len, static_cast<off_t>(off));
    if (n < 0) return Errno("pwrite");
    return static_cast<size_t>(n);
  }
  absl::StatusOr<size_t> Read(const std::string& path, uint64_t off, char* buf,
                              size_t len, bool direct) override {
    absl::StatusOr<int> fd = Fd(path, direct);
    if (!fd.ok()) return fd.status();
    ssize_t n = pread(*fd, buf, len, static_cast<off_t>(off));
    if (n < 0) return Errno("pread");
    return static_cast<size_t>(n);
  }
  // Like the librangefs node's: the file is made if it is not there.
  absl::Status Truncate(const std::string& path, uint64_t size) override {
    absl::StatusOr<int> fd = Fd(path, false);
    if (!fd.ok()) return fd.status();
    if (ftruncate(*fd, static_cast<off_t>(size)) != 0) {
      return Errno("ftruncate");
    }
    return absl::OkStatus();
  }
  absl::Status Rename(const std::string& from, const std::string& to) override {
    for (bool direct : {false, true}) {
      auto it = fds_.find(std::make_pair(from, direct));
      if (it != fds_.end()) {
        close(it->second);
        fds_.erase(it);
      }
    }
    if (rename((dir_ + from).c_str(), (dir_ + to).c_str()) != 0) {
      return Errno("rename");
    }
    return absl::OkStatus();
  }
  absl::Status Fsync(const std::string& path) override {
    absl::StatusOr<int> fd = Fd(path, false);
    if (!fd.ok()) return fd.status();
    if (fsync(*fd) != 0) return Errno("fsync");
    return absl::OkStatus();
  }
  absl::Status Fallocate(const std::string& path, uint32_t mode, uint64_t off,
                         uint64_t len) override {
    absl::StatusOr<int> fd = Fd(path, false);
    if (!fd.ok()) return fd.status();
    // The kernel passes collapse and insert to no FUSE daemon: rangefs
    // takes them as ioctls (rangefs_ioctl.h).
    if (mode == client::kFallocCollapseRange ||
        mode == client::kFallocInsertRange) {
      rangefs_shift_range r = {off, len};
      if (ioctl(*fd,
                mode == client::kFallocCollapseRange
                    ? RANGEFS_IOC_COLLAPSE_RANGE
                    : RANGEFS_IOC_INSERT_RANGE,
                &r) != 0) {
        return Errno("ioctl (collapse or insert range)");
      }
      return absl::OkStatus();
    }
    if (fallocate(*fd, static_cast<int>(mode), static_cast<off_t>(off),
                  static_cast<off_t>(len)) != 0) {
      return Errno("fallocate");
    }
    return absl::OkStatus();
  }
  absl::StatusOr<char*> Mmap(const std::string& path, uint64_t off, size_t len,
                             bool priv, bool direct) override {
    absl::StatusOr<int> fd = Fd(path, direct);
    if (!fd.ok()) return fd.status();
    void* m =
        mmap(nullptr, len, PROT_READ | PROT_WRITE,
             priv ? MAP_PRIVATE : MAP_SHARED, *fd, static_cast<off_t>(off));
    if (m == MAP_FAILED) return Errno("mmap");
    return static_cast<char*>(m);
  }
  absl::Status Msync(char* addr, size_t len) override {
    if (msync(addr, len, MS_SYNC) != 0) return Errno("msync");
    return absl::OkStatus();
  }
  absl::Status Munmap(char* addr, size_t len) override {
    if (munmap(addr, len) != 0) return Errno("munmap");
    return absl::OkStatus();
  }
  // The mount's node: its counters and fault rules through the ioctls of
  // rangefs_ioctl.h on the mount's root.
  std::string Stats() override {
    rangefs_node_stats s = {};
    const int fd = open(dir_.c_str(), O_RDONLY | O_DIRECTORY);
    const bool ok = fd >= 0 && ioctl(fd, RANGEFS_IOC_NODE_STATS, &s) == 0;
    if (fd >= 0) close(fd);
    if (!ok) return "mount=" + dir_ + " stats_error=" + strerror(errno);
    std::ostringstream o;
    o << "stale_retries=" << s.stale_retries
      << " inval_demotes=" << s.inval_demotes
      << " lost_dirty_pages=" << s.lost_dirty_pages
      << " direct_fallbacks=" << s.direct_fallbacks
      << " sessions_lost=" << s.sessions_lost << " session=" << s.session_id
      << " mount=" << dir_;
    return o.str();
  }
  absl::Status SetFault(const std::string& spec) override {
    rangefs_fault_spec f = {};
    if (spec.size() >= sizeof f.spec) {
      return MakeError(Errc::kInvalidArgument, "fault rule too long");
    }
    memcpy(f.spec, spec.data(), spec.size());
    const int fd = open(dir_.c_str(), O_RDONLY | O_DIRECTORY);
    if (fd < 0) return Errno("open " + dir_);
    const int rc = ioctl(fd, RANGEFS_IOC_SET_FAULT, &f);
    absl::Status s = rc == 0 ? absl::OkStatus()
                             : Errno(
                                   "ioctl RANGEFS_IOC_SET_FAULT (mounted "
                                   "with fault_control=1, as root?)");
    close(fd);
    return s;
  }
  absl::StatusOr<std::string> Stat(const std::string& path) override {
    struct stat st;
    if (stat((dir_ + path).c_str(), &st) != 0) return Errno("stat");
    return "size=" + std::to_string(st.st_size) +
           " blocks=" + std::to_string(st.st_blocks);
  }

 private:
  const std::string dir_;
  std::map<std::pair<std::string, bool>, int> fds_;
};

uint32_t FallocMode(const std::string& m) {
  using namespace client;
  if (m == "alloc") return 0;
  if (m == "alloc_keep") return kFallocKeepSize;
  if (m == "punch") return kFallocPunchHole | kFallocKeepSize;
  if (m == "zero") return kFallocZeroRange;
  if (m == "zero_keep") return kFallocZeroRange | kFallocKeepSize;
  if (m == "collapse") return kFallocCollapseRange;
  if (m == "insert") return kFallocInsertRange;
  return ~0u;
}

std::string Err(const absl::Status& s) {
  return "err " + std::to_string(ErrnoOf(s)) + " " + std::string(s.message());
}

// Re-reads one byte of every page of the range until stopped; reports
// each value a page showed with the last time it was loaded:
// " LASTSEEN_NS@PAGE:HEX" per value, in order.
void Watch(Mapping* m, uint64_t off, uint64_t len) {
  const size_t pages = (len + 4095) / 4096;
  std::vector<int> value(pages, -1);
  std::vector<int64_t> seen(pages, 0);
  auto emit = [&](size_t p) {
    char hex[3];
    snprintf(hex, sizeof hex, "%02x", value[p]);
    m->changes += " " + std::to_string(seen[p]) + "@" +
                  std::to_string(off / 4096 + p) + ":" + hex;
  };
  while (!m->stop.load()) {
    for (size_t p = 0; p < pages; ++p) {
      // The time before the load: the load happened no earlier, so a load
      // stamped after an operation completed surely came after it (a
      // stamp taken after the load could be late by a preemption).
      const int64_t now = NowNs();
      char c;
      if (!GuardedCopy(&c, m->addr + off + p * 4096, 1)) continue;
      ++m->loads;
      const int v = static_cast<unsigned char>(c);
      if (v != value[p] && value[p] >= 0) emit(p);
      value[p] = v;
      seen[p] = now;
    }
  }
  for (size_t p = 0; p < pages; ++p) {
    if (value[p] >= 0) emit(p);
  }
}

std::string Do(Node& node,
               std::map<std::string, std::unique_ptr<Mapping>>& maps,
               const std::vector<std::string>& a, bool* quit) {
  auto num = [&](size_t i) -> uint64_t {
    return i < a.size() ? strtoull(a[i].c_str(), nullptr, 10) : 0;
  };
  const std::string& cmd = a[0];
  auto mapping = [&](const std::string& name) -> Mapping* {
    auto it = maps.find(name);
    return it == maps.end() ? nullptr : it->second.get();
  };
  if (cmd == "quit") {
    *quit = true;
    return "ok";
  }
  if (cmd == "sleep") {
    usleep(static_cast<useconds_t>(num(1) * 1000));
    return "ok";
  }
  if (cmd == "write" && a.size() >= 5) {
    const bool direct = a.size() > 5 && a[5] == "direct";
    std::vector<char> buf(num(3), a[4][0]);
    void* aligned = nullptr;
    if (posix_memalign(&aligned, 4096, std::max<size_t>(buf.size(), 1)) != 0) {
      return "err 12 memalign";
    }
    memcpy(aligned, buf.data(), buf.size());
    absl::StatusOr<size_t> n = node.Write(
        a[1], num(2), static_cast<char*>(aligned), buf.size(), direct);
    free(aligned);
    if (!n.ok()) return Err(n.status());
    return "ok " + std::to_string(*n) + " t=" + std::to_string(NowNs());
  }
  if (cmd == "read" && a.size() >= 4) {
    const bool direct = a.size() > 4 && a[4] == "direct";
    void* buf = nullptr;
    if (posix_memalign(&buf, 4096, std::max<uint64_t>(num(3), 1)) != 0) {
      return "err 12 memalign";
    }
    absl::StatusOr<size_t> n =
        node.Read(a[1], num(2), static_cast<char*>(buf), num(3), direct);
    std::string out = n.ok() ? "ok " + Runs(num(2), static_cast<char*>(buf), *n)
                             : Err(n.status());
    free(buf);
    return out;
  }
  if (cmd == "truncate" && a.size() >= 3) {
    absl::Status s = node.Truncate(a[1], num(2));
    return s.ok() ? "ok" : Err(s);
  }
  if (cmd == "rename" && a.size() >= 3) {
    absl::Status s = node.Rename(a[1], a[2]);
    return s.ok() ? "ok" : Err(s);
  }
  if (cmd == "fsync" && a.size() >= 2) {
    absl::Status s = node.Fsync(a[1]);
    return s.ok() ? "ok" : Err(s);
  }
  if (cmd == "fallocate" && a.size() >= 5) {
    uint32_t mode = FallocMode(a[2]);
    if (mode == ~0u) return "err 22 unknown fallocate mode";
    absl::Status s = node.Fallocate(a[1], mode, num(3), num(4));
    return s.ok() ? "ok" : Err(s);
  }
  if (cmd == "mmap" && a.size() >= 5) {
    bool priv = false, direct = false;
    for (size_t i = 5; i < a.size(); ++i) {
      priv |= a[i] == "private";
      direct |= a[i] == "direct";
    }
    absl::StatusOr<char*> m = node.Mmap(a[2], num(3), num(4), priv, direct);
    if (!m.ok()) return Err(m.status());
    auto mp = std::make_unique<Mapping>();
    mp->addr = *m;
    mp->len = num(4);
    maps[a[1]] = std::move(mp);
    return "ok";
  }
  if ((cmd == "mstore" || cmd == "mload") && a.size() >= 4) {
    Mapping* m = mapping(a[1]);
    if (m == nullptr || num(2) + num(3) > m->len) return "err 22 bad mapping";
    if (cmd == "mstore") {
      if (a.size() < 5) return "err 22 usage";
      std::vector<char> src(num(3), a[4][0]);
      return GuardedCopy(m->addr + num(2), src.data(), src.size())
                 ? "ok"
                 : "err 7 SIGBUS";
    }
    std::vector<char> dst(num(3));
    if (!GuardedCopy(dst.data(), m->addr + num(2), dst.size())) {
      return "err 7 SIGBUS";
    }
    return "ok " + Runs(num(2), dst.data(), dst.size());
  }
  if ((cmd == "msync" || cmd == "munmap") && a.size() >= 2) {
    Mapping* m = mapping(a[1]);
    if (m == nullptr) return "err 22 bad mapping";
    absl::Status s = cmd == "msync" ? node.Msync(m->addr, m->len)
                                    : node.Munmap(m->addr, m->len);
    if (cmd == "munmap") maps.erase(a[1]);
    return s.ok() ? "ok" : Err(s);
  }
  if ((cmd == "dwrite_map" || cmd == "dread_map") && a.size() >= 6) {
    Mapping* m = mapping(a[4]);
    if (m == nullptr || num(5) + num(3) > m->len) return "err 22 bad mapping";
    absl::StatusOr<size_t> n =
        cmd == "dwrite_map"
            ? node.Write(a[1], num(2), m->addr + num(5), num(3), true)
            : node.Read(a[1], num(2), m->addr + num(5), num(3), true);
    if (!n.ok()) return Err(n.status());
    return "ok " + std::to_string(*n) + " t=" + std::to_string(NowNs());
  }
  if (cmd == "mwatch" && a.size() >= 4) {
    Mapping* m = mapping(a[1]);
    if (m == nullptr || m->watcher || num(2) + num(3) > m->len) {
      return "err 22 bad mapping";
    }
    m->stop.store(false);
    m->watcher = std::make_unique<std::thread>(Watch, m, num(2), num(3));
    return "ok";
  }
  if (cmd == "mwatch_stop" && a.size() >= 2) {
    Mapping* m = mapping(a[1]);
    if (m == nullptr || !m->watcher) return "err 22 not watching";
    m->stop.store(true);
    m->watcher->join();
    m->watcher.reset();
    std::string out = "ok loads=" + std::to_string(m->loads) + m->changes;
    m->loads = 0;
    m->changes.clear();
    return out;
  }
  if (cmd == "fault" && a.size() >= 2) {
    absl::Status s = node.SetFault(a[1]);
    return s.ok() ? "ok" : Err(s);
  }
  if (cmd == "stats") return "ok " + node.Stats();
  if (cmd == "stat" && a.size() >= 2) {
    absl::StatusOr<std::string> st = node.Stat(a[1]);
    return st.ok() ? "ok " + *st : Err(st.status());
  }
  return "err 22 unknown command or arguments: " + cmd;
}

int Main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  InitLogging("rangefs-racenode");
  if (absl::Status s = LoadFaultsFromEnv(); !s.ok()) {
    std::cerr << s << "\n";
    return 2;
  }
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = OnSigbus;
  sa.sa_flags = SA_NODEFER;
  sigaction(SIGBUS, &sa, nullptr);
  std::unique_ptr<Node> node;
  const std::string mount = absl::GetFlag(FLAGS_mount);
  if (!mount.empty()) {
    node = std::make_unique<MountNode>(mount);
  } else {
    absl::StatusOr<ClusterConfig> config =
        LoadClusterConfig(absl::GetFlag(FLAGS_cluster));
    if (!config.ok()) {
      std::cerr << config.status() << "\n";
      return 2;
    }
    client::ClientOptions o;
    o.node_name = absl::GetFlag(FLAGS_name);
    o.min_hold_ms = 0;
    o.lease_ms = absl::GetFlag(FLAGS_lease_ms);
    absl::StatusOr<std::unique_ptr<Client>> c = Client::Connect(*config, o);
    if (!c.ok()) {
      std::cerr << c.status() << "\n";
      return 1;
    }
    node = std::make_unique<LibNode>(std::move(*c));
  }
  std::cout << "ready" << std::endl;
  std::map<std::string, std::unique_ptr<Mapping>> maps;
  std::string line;
  bool quit = false;
  while (!quit && std::getline(std::cin, line)) {
    std::vector<std::string> a = absl::StrSplit(line, ' ', absl::SkipEmpty());
    if (a.empty()) continue;
    std::cerr << NowNs() / 1000000 << " " << absl::GetFlag(FLAGS_name) << "> "
              << line << "\n";
    std::string reply = Do(*node, maps, a, &quit);
    std::cerr << NowNs() / 1000000 << " " << absl::GetFlag(FLAGS_name) << "< "
              << reply.substr(0, 300) << "\n";
    std::cout << reply << std::endl;
  }
  for (auto& [name, m] : maps) {
    if (m->watcher) {
      m->stop.store(true);
      m->watcher->join();
    }
  }
  return 0;
}

}  // namespace
}  // namespace rangefs::race

int main(int argc, char** argv) { return rangefs::race::Main(argc, argv); }
