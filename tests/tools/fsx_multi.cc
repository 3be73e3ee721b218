// rangefs-fsx: random file operations from several processes at once,
// every result checked against a byte model (the idea of fsx and of
// tests/fuse/fsx.py, concurrent, and fast enough for 100k operations per
// process).
//
//   rangefs-fsx [--procs N] [--ops N] [--seed S] [--size BYTES] [--shared]
//               [--only K] DIR [DIR2]
//
// --only K runs process K alone (and its partner), with the operations it
// has in the full run: a failure found with many processes, again.
//
// Each process works on a file of its own (DIR/fsx.K), alternately in DIR
// and DIR2 when two are given. With --shared, processes work in pairs on
// one file, taking turns operation by operation: with DIR2 the pair's
// first process works through DIR and the second through DIR2 (two mounts
// of one filesystem), so every operation of one is checked against what
// the other did through the other mount. Operations: buffered writes and
// reads, stores and loads through shared mappings (the tail of the last
// page past EOF must read as zeros), O_DIRECT writes and reads, truncate
// up and down, fallocate (allocate, punch hole, zero range, with and
// without keep-size), copy_file_range, fsync, and reopening the file.
// Every read is compared with the model, and every 256 operations the
// whole file and its size are.
//
// Exit 0 when every check passed; 1 after the first mismatch or failed
// call, with the file's last operations and, for a wrong byte, the
// operation that wrote what the model expects there, on stderr.
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cinttypes>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

namespace {

constexpr uint64_t kPage = 4096;
constexpr uint64_t kMaxSize = 1 << 20;  // --size at most.
constexpr int kHistory = 128;
constexpr int kDescLen = 120;

// One file's model, shared by the processes working on it.
struct Group {
  std::atomic<uint64_t> turn;  // Operations done on the file so far.
  uint64_t size;
  struct Entry {
    uint64_t seq;
    char desc[kDescLen];
  } history[kHistory];
  uint8_t model[kMaxSize];
  uint32_t writer[kMaxSize];  // The operation that wrote each byte (seq+1).
};

std::atomic<int>* failed;  // Shared: any process failed.

struct Options {
  int procs = 6;
  uint64_t ops = 10000;
  uint64_t seed = 1;
  uint64_t size = 256 << 10;
  bool shared = false;
  int only = -1;  // Run only this process (the others' files stay idle).
  std::vector<std::string> dirs;
};

uint8_t Pattern(uint64_t seq, uint64_t off) {
  const uint64_t h =
      (seq + 1) * 0x9E3779B97F4A7C15ull ^ (off * 0xC2B2AE3D27D4EB4Full);
  return static_cast<uint8_t>((h >> 29) % 255 + 1);  // Never 0.
}

class Worker {
 public:
  Worker(const Options& o, int proc, Group* g, int members, int member,
         std::string path)
      : o_(o),
        proc_(proc),
        g_(g),
        members_(members),
        member_(member),
        path_(std::move(path)),
        rng_(o.seed * 1000003 + static_cast<uint64_t>(proc)) {}

  int Run() {
    if (!Open()) {
      failed->store(1);
      return 1;
    }
    for (uint64_t i = 0; i < o_.ops; ++i) {
      // Our turn on the file.
      while (g_->turn.load() % members_ != static_cast<uint64_t>(member_)) {
        if (failed->load()) return 1;
        sched_yield();
      }
      if (failed->load()) return 1;
      seq_ = g_->turn.load();
      if (!Step()) {
        failed->store(1);
        return 1;
      }
      g_->turn.fetch_add(1);
    }
    return Close() ? 0 : 1;
  }

 private:
  uint64_t Rand(uint64_t n) { return n == 0 ? 0 : rng_() % n; }

  bool Open() {
    fd_ = open(path_.c_str(), O_RDWR | O_CREAT, 0644);
    dfd_ = open(path_.c_str(), O_RDWR | O_DIRECT);
    if (fd_ < 0 || dfd_ < 0) return Fail("open %s", path_.c_str());
    return true;
  }
  // close(2) reports write-back errors (data the node lost).
  bool Close() {
    const bool ok = close(fd_) == 0 && close(dfd_) == 0;
    fd_ = dfd_ = -1;
    return ok || Fail("close");
  }

  void Note(const char* format, ...) __attribute__((format(printf, 2, 3))) {
    Group::Entry& e = g_->history[seq_ % kHistory];
    e.seq = seq_;
    int n = snprintf(e.desc, kDescLen, "proc %d (%s): ", proc_,
                     o_.dirs.size() > 1 ? path_.c_str() : "");
    va_list ap;
    va_start(ap, format);
    vsnprintf(e.desc + n, kDescLen - n, format, ap);
    va_end(ap);
  }

  void PrintHistory() {
    fprintf(stderr, "last operations on %s (size in the model %" PRIu64 "):\n",
            path_.c_str(), g_->size);
    for (uint64_t s = seq_ + 1 > kHistory ? seq_ + 1 - kHistory : 0; s <= seq_;
         ++s) {
      const Group::Entry& e = g_->history[s % kHistory];
      if (e.seq == s) fprintf(stderr, "  #%" PRIu64 " %s\n", s, e.desc);
    }
  }

  bool Fail(const char* format, ...) __attribute__((format(printf, 2, 3))) {
    const int err = errno;
    fprintf(stderr, "rangefs-fsx: seed %" PRIu64 " proc %d op #%" PRIu64 ": ",
            o_.seed, proc_, seq_);
    va_list ap;
    va_start(ap, format);
    vfprintf(stderr, format, ap);
    va_end(ap);
    fprintf(stderr, " (errno %d %s)\n", err, strerror(err));
    PrintHistory();
    return false;
  }

  // `got` holds the file's bytes [off, off+len): compared with the model.
  bool Check(const char* what, uint64_t off, const uint8_t* got, uint64_t len) {
    for (uint64_t i = 0; i < len; ++i) {
      const uint64_t at = off + i;
      const uint8_t want = at < g_->size ? g_->model[at] : 0;
      if (got[i] == want) continue;
      uint64_t end = i;
      while (end < len &&
             got[end] != (off + end < g_->size ? g_->model[off + end] : 0)) {
        ++end;
      }
      const uint32_t w = at < g_->size ? g_->writer[at] : 0;
      errno = 0;
      Fail("%s: byte %" PRIu64 " is 0x%02x, want 0x%02x (%" PRIu64
           " bytes wrong from there; what is wanted came from %s)",
           what, at, got[i], want, end - i,
           w == 0 ? "no write (zeros)"
                  : ("op #" + std::to_string(w - 1)).c_str());
      return false;
    }
    return true;
  }

  void Store(uint64_t off, uint64_t len, std::vector<uint8_t>* data) {
    data->resize(len);
    for (uint64_t i = 0; i < len; ++i) (*data)[i] = Pattern(seq_, off + i);
  }
  void ModelWrite(uint64_t off, const uint8_t* data, uint64_t len) {
    memcpy(g_->model + off, data, len);
    for (uint64_t i = 0; i < len; ++i) g_->writer[off + i] = seq_ + 1;
    if (off + len > g_->size) g_->size = off + len;
  }
  void ModelZero(uint64_t off, uint64_t len) {
    memset(g_->model + off, 0, len);
    memset(g_->writer + off, 0, len * sizeof(uint32_t));
  }
  void ModelResize(uint64_t size) {
    if (size < g_->size) ModelZero(size, g_->size - size);
    g_->size = size;
  }

  bool Step() {
    const uint64_t max = o_.size;
    uint64_t off = Rand(max);
    uint64_t len = 1 + Rand(std::min<uint64_t>(64 << 10, max - off));
    const uint64_t op = Rand(100);
    std::vector<uint8_t> buf;
    if (seq_ % 256 == 255) return CheckAll();
    if (op < 18) {  // write
      Note("write %" PRIu64 "+%" PRIu64, off, len);
      Store(off, len, &buf);
      if (pwrite(fd_, buf.data(), len, static_cast<off_t>(off)) !=
          static_cast<ssize_t>(len)) {
        return Fail("pwrite");
      }
      ModelWrite(off, buf.data(), len);
      return true;
    }
    if (op < 32) {  // read
      Note("read %" PRIu64 "+%" PRIu64, off, len);
      buf.resize(len);
      const ssize_t n = pread(fd_, buf.data(), len, static_cast<off_t>(off));
      const uint64_t want = off >= g_->size ? 0 : std::min(len, g_->size - off);
      if (n != static_cast<ssize_t>(want)) {
        errno = 0;
        return Fail("pread returned %zd, want %" PRIu64, n, want);
      }
      return Check("read", off, buf.data(), want);
    }
    if (op < 42) return MapWrite(off, len);
    if (op < 52) return MapRead(off, len);
    if (op < 57) {  // truncate
      const uint64_t size = Rand(2) == 0 ? Rand(max) : Rand(g_->size + 1);
      Note("truncate %" PRIu64 " (from %" PRIu64 ")", size, g_->size);
      if (ftruncate(fd_, static_cast<off_t>(size)) != 0) {
        return Fail("ftruncate");
      }
      ModelResize(size);
      return true;
    }
    if (op < 72) return Fallocate(off, len, op);
    if (op < 78) return Copy(off, len);
    if (op < 94) {  // O_DIRECT: whole pages, up to 16.
      off = off / kPage * kPage;
      len = std::min<uint64_t>((1 + Rand(16)) * kPage, max - off);
      return op < 86 ? DirectWrite(off, len) : DirectRead(off, len);
    }
    if (op < 97) {
      Note("fsync");
      if (fsync(fd_) != 0) return Fail("fsync");
      return true;
    }
    Note("reopen");
    return Close() && Open();
  }

  bool DirectWrite(uint64_t off, uint64_t len) {
    std::vector<uint8_t> buf;
    Note("direct write %" PRIu64 "+%" PRIu64, off, len);
    void* p = nullptr;
    if (posix_memalign(&p, kPage, len) != 0) return Fail("memalign");
    Store(off, len, &buf);
    memcpy(p, buf.data(), len);
    const ssize_t n = pwrite(dfd_, p, len, static_cast<off_t>(off));
    free(p);
    if (n != static_cast<ssize_t>(len)) return Fail("O_DIRECT pwrite %zd", n);
    ModelWrite(off, buf.data(), len);
    return true;
  }

  bool DirectRead(uint64_t off, uint64_t len) {
    Note("direct read %" PRIu64 "+%" PRIu64, off, len);
    void* p = nullptr;
    if (posix_memalign(&p, kPage, len) != 0) return Fail("memalign");
    const ssize_t n = pread(dfd_, p, len, static_cast<off_t>(off));
    const uint64_t want = off >= g_->size ? 0 : std::min(len, g_->size - off);
    bool ok = true;
    if (n != static_cast<ssize_t>(want)) {
      errno = 0;
      ok = Fail("O_DIRECT pread returned %zd, want %" PRIu64, n, want);
    } else {
      ok = Check("direct read", off, static_cast<uint8_t*>(p), want);
    }
    free(p);
    return ok;
  }

  // Programs learn a file's size before they map it (fstat): the kernel
  // of a mount faults SIGBUS past the size it knows, and a page fault
  // never asks for a newer one (docs/fuse.md). The size must be the
  // model's.
  bool StatSize() {
    struct stat st;
    if (fstat(fd_, &st) != 0) return Fail("fstat");
    if (static_cast<uint64_t>(st.st_size) != g_->size) {
      errno = 0;
      return Fail("fstat size %" PRId64 ", want %" PRIu64,
                  static_cast<int64_t>(st.st_size), g_->size);
    }
    return true;
  }

  bool MapWrite(uint64_t off, uint64_t len) {
    Note("mapped store %" PRIu64 "+%" PRIu64 " (size %" PRIu64 ")", off, len,
         g_->size);
    if (!StatSize()) return false;
    if (off + len > g_->size) {
      // A store past EOF faults: the file grows first (fsx does so too).
      if (ftruncate(fd_, static_cast<off_t>(off + len)) != 0) {
        return Fail("ftruncate before a mapped store");
      }
      ModelResize(off + len);
    }
    const uint64_t start = off / kPage * kPage;
    const uint64_t span = off + len - start;
    void* m = mmap(nullptr, span, PROT_READ | PROT_WRITE, MAP_SHARED, fd_,
                   static_cast<off_t>(start));
    if (m == MAP_FAILED) return Fail("mmap for a store");
    std::vector<uint8_t> buf;
    Store(off, len, &buf);
    memcpy(static_cast<uint8_t*>(m) + (off - start), buf.data(), len);
    if (Rand(2) == 0 && msync(m, span, MS_SYNC) != 0) return Fail("msync");
    munmap(m, span);
    ModelWrite(off, buf.data(), len);
    return true;
  }

  bool MapRead(uint64_t off, uint64_t len) {
    if (off >= g_->size) {
      Note("mapped load: nothing (size %" PRIu64 ")", g_->size);
      return true;
    }
    len = std::min(len, g_->size - off);
    Note("mapped load %" PRIu64 "+%" PRIu64, off, len);
    if (!StatSize()) return false;
    const uint64_t start = off / kPage * kPage;
    // To the end of the page: the bytes past EOF read as zeros.
    const uint64_t end = (off + len + kPage - 1) / kPage * kPage;
    void* m = mmap(nullptr, end - start, PROT_READ, MAP_SHARED, fd_,
                   static_cast<off_t>(start));
    if (m == MAP_FAILED) return Fail("mmap for a load");
    const uint8_t* p = static_cast<uint8_t*>(m);
    bool ok = Check("mapped load", off, p + (off - start), len);
    if (ok && off + len == g_->size) {
      ok = Check("mapped load past EOF", g_->size, p + (g_->size - start),
                 end - g_->size);
    }
    munmap(m, end - start);
    return ok;
  }

  bool Fallocate(uint64_t off, uint64_t len, uint64_t op) {
    int mode = 0;
    const char* name = "allocate";
    switch (op % 5) {
      case 0:
        mode = FALLOC_FL_KEEP_SIZE;
        name = "allocate keep-size";
        break;
      case 1:
      case 2:
        mode = FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE;
        name = "punch";
        break;
      case 3:
        mode = FALLOC_FL_ZERO_RANGE;
        name = "zero";
        break;
      case 4:
        mode = FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE;
        name = "zero keep-size";
        break;
    }
    if (op % 7 == 0) mode = 0;
    Note("fallocate %s %" PRIu64 "+%" PRIu64 " (size %" PRIu64 ")",
         mode == 0 ? "allocate" : name, off, len, g_->size);
    if (fallocate(fd_, mode, static_cast<off_t>(off),
                  static_cast<off_t>(len)) != 0) {
      return Fail("fallocate");
    }
    if (mode & (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE)) {
      if (off < g_->size) {
        ModelZero(off, std::min(len, g_->size - off));
      }
    }
    if (!(mode & FALLOC_FL_KEEP_SIZE) && off + len > g_->size) {
      ModelResize(off + len);
    }
    return true;
  }

  bool Copy(uint64_t dst, uint64_t len) {
    if (g_->size == 0) {
      Note("copy: nothing (empty)");
      return true;
    }
    const uint64_t src = Rand(g_->size);
    len = std::min(len, g_->size - src);
    // Same file: the ranges must not overlap.
    if (dst < src + len && src < dst + len) {
      Note("copy: none (ranges overlap)");
      return true;
    }
    Note("copy_file_range %" PRIu64 "+%" PRIu64 " to %" PRIu64, src, len, dst);
    // The kernel cuts the copy at the size it knows, and asks for none
    // (docs/fuse.md): cp(1) stats its source first, and so do we.
    if (!StatSize()) return false;
    std::vector<uint8_t> moved(g_->model + src, g_->model + src + len);
    std::vector<uint32_t> from(g_->writer + src, g_->writer + src + len);
    uint64_t done = 0;
    while (done < len) {
      loff_t in = static_cast<loff_t>(src + done);
      loff_t out = static_cast<loff_t>(dst + done);
      const ssize_t n = copy_file_range(fd_, &in, fd_, &out, len - done, 0);
      if (n < 0) return Fail("copy_file_range");
      if (n == 0) break;
      done += static_cast<uint64_t>(n);
    }
    if (done != len) {
      errno = 0;
      return Fail("copy_file_range copied %" PRIu64 " of %" PRIu64, done, len);
    }
    ModelWrite(dst, moved.data(), len);
    memcpy(g_->writer + dst, from.data(), len * sizeof(uint32_t));
    return true;
  }

  bool CheckAll() {
    Note("check the whole file (size %" PRIu64 ")", g_->size);
    struct stat st;
    if (fstat(fd_, &st) != 0) return Fail("fstat");
    if (static_cast<uint64_t>(st.st_size) != g_->size) {
      errno = 0;
      return Fail("size %" PRId64 ", want %" PRIu64,
                  static_cast<int64_t>(st.st_size), g_->size);
    }
    std::vector<uint8_t> buf(g_->size + 1);
    const ssize_t n = pread(fd_, buf.data(), buf.size(), 0);
    if (n != static_cast<ssize_t>(g_->size)) {
      errno = 0;
      return Fail("whole-file read returned %zd, want %" PRIu64, n, g_->size);
    }
    return Check("whole-file read", 0, buf.data(), g_->size);
  }

  const Options& o_;
  const int proc_;
  Group* const g_;
  const int members_, member_;
  const std::string path_;
  std::mt19937_64 rng_;
  uint64_t seq_ = 0;
  int fd_ = -1, dfd_ = -1;
};

int Usage() {
  fprintf(stderr,
          "usage: rangefs-fsx [--procs N] [--ops N] [--seed S] [--size "
          "BYTES] [--shared] [--only K] DIR [DIR2]\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> uint64_t {
      if (i + 1 >= argc) exit(Usage());
      return strtoull(argv[++i], nullptr, 0);
    };
    if (a == "--procs") {
      o.procs = static_cast<int>(value());
    } else if (a == "--ops") {
      o.ops = value();
    } else if (a == "--seed") {
      o.seed = value();
    } else if (a == "--size") {
      o.size = value();
    } else if (a == "--only") {
      o.only = static_cast<int>(value());
    } else if (a == "--shared") {
      o.shared = true;
    } else if (a == "-h" || a == "--help") {
      Usage();
      return 0;
    } else if (!a.empty() && a[0] == '-') {
      return Usage();
    } else {
      o.dirs.push_back(a);
    }
  }
  if (o.dirs.empty() || o.dirs.size() > 2 || o.procs < 1 || o.procs > 64 ||
      o.size < kPage || o.size > kMaxSize || (o.shared && o.procs % 2 != 0)) {
    return Usage();
  }
  const int members = o.shared ? 2 : 1;
  const int groups = o.procs / members;
  failed = static_cast<std::atomic<int>*>(
      mmap(nullptr, sizeof(std::atomic<int>), PROT_READ | PROT_WRITE,
           MAP_SHARED | MAP_ANONYMOUS, -1, 0));
  auto* g = static_cast<Group*>(mmap(nullptr, sizeof(Group) * groups,
                                     PROT_READ | PROT_WRITE,
                                     MAP_SHARED | MAP_ANONYMOUS, -1, 0));
  if (failed == MAP_FAILED || g == MAP_FAILED) {
    perror("mmap");
    return 1;
  }
  for (int k = 0; k < groups; ++k) {
    const std::string path =
        o.dirs[0] + "/fsx." + std::to_string(o.seed) + "." + std::to_string(k);
    unlink(path.c_str());
  }
  std::vector<pid_t> pids;
  for (int p = 0; p < o.procs; ++p) {
    const int group = p / members, member = p % members;
    // Pairs: one member per directory. Own files: alternate directories.
    const std::string& dir = o.dirs[(o.shared ? member : p) % o.dirs.size()];
    const std::string path =
        dir + "/fsx." + std::to_string(o.seed) + "." + std::to_string(group);
    if (o.only >= 0 && group != o.only / members) continue;
    const pid_t pid = fork();
    if (pid == 0) {
      Worker w(o, p, &g[group], members, member, path);
      _exit(w.Run());
    }
    pids.push_back(pid);
  }
  int rc = 0;
  for (size_t left = pids.size(); left > 0; --left) {
    int status = 0;
    const pid_t pid = waitpid(-1, &status, 0);
    if (pid < 0) break;
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) continue;
    rc = 1;
    failed->store(1);  // Its partner stops waiting for its turn.
    if (WIFSIGNALED(status)) {
      const int p = static_cast<int>(std::find(pids.begin(), pids.end(), pid) -
                                     pids.begin());
      fprintf(stderr, "rangefs-fsx: seed %" PRIu64 " proc %d killed by %s\n",
              o.seed, p, strsignal(WTERMSIG(status)));
    }
  }
  if (rc == 0) {
    printf("rangefs-fsx: %zu processes x %" PRIu64 " operations, seed %" PRIu64
           ": all checks passed\n",
           pids.size(), o.ops, o.seed);
  }
  return rc;
}
