// rangefs: the command line for a rangefs cluster.
//
//   rangefs up [scripts/up options]    start a local cluster with mounts
//   rangefs down [--dir DIR]           stop one started with --detach
//   rangefs status                     servers, sessions, leases, shards
//   rangefs locks [PATH | --ino N]     who holds what (every lockd shard)
//   rangefs extents PATH               the extent map, like filefrag -v
//   rangefs fsck                       metadata consistency check
//   rangefs inject POINT=DELAY_MS[:ERROR[:COUNT]] | --clear
//                                      fault injection at every server
//   rangefs CLUSTER MOUNTPOINT [-o OPTIONS]
//                                      mount (what `mount -t fuse.rangefs
//                                      CLUSTER MOUNTPOINT` runs through
//                                      mount.fuse3): rangefs-fuse does it
//
// Every command but up/down reads the cluster configuration from
// --cluster CONF, else $RANGEFS_CLUSTER, else the one `rangefs up` wrote
// (/tmp/rangefs-local/cluster.conf). Paths are inside the filesystem
// ("/dir/file"), or a path under a mount of it.
#include <fcntl.h>
#include <grpcpp/grpcpp.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "absl/strings/str_split.h"
#include "client/fuse/rangefs_ioctl.h"
#include "common/cluster_config.h"
#include "common/status.h"
#include "proto/data.grpc.pb.h"
#include "proto/lock.grpc.pb.h"
#include "proto/meta.grpc.pb.h"
#include "rpc/channel.h"
#include "rpc/convert.h"

// CMake defines it; a bare compile (scripts/check-thread-safety.sh) does
// not.
#ifndef RANGEFS_SOURCE_DIR
#define RANGEFS_SOURCE_DIR "."
#endif

namespace rangefs::cli {
namespace {

constexpr int kTimeoutMs = 5000;

void Prepare(grpc::ClientContext* ctx) {
  ctx->set_deadline(std::chrono::system_clock::now() +
                    std::chrono::milliseconds(kTimeoutMs));
}

[[noreturn]] void Fail(const std::string& msg) {
  fprintf(stderr, "rangefs: %s\n", msg.c_str());
  exit(1);
}

std::string Unreachable(const std::string& what, const std::string& addr,
                        const grpc::Status& s) {
  return what + " not reachable at " + addr + " (" + s.error_message() +
         "); is the cluster up (`rangefs up`)?";
}

struct Cluster {
  ClusterConfig config;
  std::unique_ptr<proto::MetaService::Stub> meta;
};

Cluster Connect(const std::string& spec) {
  std::string s = spec;
  if (s.empty() && getenv("RANGEFS_CLUSTER") != nullptr) {
    s = getenv("RANGEFS_CLUSTER");
  }
  if (s.empty()) s = "/tmp/rangefs-local/cluster.conf";
  absl::StatusOr<ClusterConfig> c = LoadClusterConfig(s);
  if (!c.ok()) {
    Fail("cluster configuration " + s + ": " +
         std::string(c.status().message()) +
         " (pass --cluster CONF or start one with `rangefs up`)");
  }
  Cluster cl;
  cl.config = *c;
  cl.meta = proto::MetaService::NewStub(rpc::MakeChannel(c->meta));
  return cl;
}

// Resolves a path inside the filesystem, or under one of its mounts (the
// part after the mount point), to an inode.
proto::Attr Resolve(Cluster& cl, const std::string& path) {
  std::string rel = path;
  char real[PATH_MAX];
  if (path[0] != '/' || access(path.c_str(), F_OK) == 0) {
    // A local path: find the mount it is under from /proc/mounts.
    if (realpath(path.c_str(), real) != nullptr) {
      FILE* f = fopen("/proc/mounts", "r");
      std::string best;
      char src[4096], dst[4096], type[256];
      while (f != nullptr &&
             fscanf(f, "%4095s %4095s %255s %*[^\n]", src, dst, type) == 3) {
        std::string d = dst;
        if (std::string(type) == "fuse.rangefs" &&
            std::string(real).rfind(d, 0) == 0 && d.size() > best.size()) {
          best = d;
        }
      }
      if (f != nullptr) fclose(f);
      if (!best.empty()) rel = std::string(real).substr(best.size());
    }
  }
  proto::Attr attr;
  attr.set_ino(1);
  for (absl::string_view part : absl::StrSplit(rel, '/', absl::SkipEmpty())) {
    grpc::ClientContext ctx;
    Prepare(&ctx);
    proto::LookupRequest req;
    req.set_parent(attr.ino());
    req.set_name(std::string(part));
    proto::EntryReply rep;
    grpc::Status s = cl.meta->Lookup(&ctx, req, &rep);
    if (!s.ok()) Fail(Unreachable("metadata server", cl.config.meta, s));
    if (absl::Status st = rpc::FromProto(rep.error()); !st.ok()) {
      Fail(path + ": " + std::string(st.message()));
    }
    attr = rep.attr();
  }
  return attr;
}

const char* KindName(proto::LockKind k) {
  switch (k) {
    case proto::DATA:
      return "DATA";
    case proto::INVAL:
      return "INVAL";
    case proto::INODE:
      return "INODE";
    case proto::POSIX:
      return "POSIX";
    default:
      return "?";
  }
}

const char* ModeName(proto::LockMode m) {
  return proto::LockMode_Name(m).c_str();
}

std::string RangeText(const proto::Range& r) {
  std::string end = r.end() == ~0ull ? "inf" : std::to_string(r.end());
  return "[" + std::to_string(r.start()) + ", " + end + ")";
}

// lockd's lock table and sessions (ino 0: every inode).
grpc::Status Dump(const std::string& addr, uint64_t ino,
                  proto::DumpReply* rep) {
  auto stub = proto::LockService::NewStub(rpc::MakeChannel(addr));
  grpc::ClientContext ctx;
  Prepare(&ctx);
  proto::DumpRequest req;
  req.set_ino(ino);
  return stub->Dump(&ctx, req, rep);
}

int Status(Cluster& cl) {
  int bad = 0;
  {
    grpc::ClientContext ctx;
    Prepare(&ctx);
    proto::StatFsRequest req;
    proto::StatusReply rep;
    grpc::Status s = cl.meta->Status(&ctx, req, &rep);
    if (!s.ok()) {
      printf("meta   %-22s DOWN (%s)\n", cl.config.meta.c_str(),
             s.error_message().c_str());
      ++bad;
    } else {
      printf("meta   %-22s up, filesystem %s, block size %u\n",
             cl.config.meta.c_str(), rep.fs_id().c_str(), rep.block_size());
      for (const proto::Device& d : rep.devices()) {
        printf("         device %u at %s, %llu bytes\n", d.id(),
               d.address().c_str(), static_cast<unsigned long long>(d.size()));
      }
      if (rep.fenced_sessions_size() > 0) {
        printf("         fenced sessions:");
        for (uint64_t f : rep.fenced_sessions()) {
          printf(" %llu", static_cast<unsigned long long>(f));
        }
        printf("\n");
      }
    }
  }
  for (const DataServerConfig& d : cl.config.data) {
    auto stub = proto::DataService::NewStub(rpc::MakeChannel(d.address));
    grpc::ClientContext ctx;
    Prepare(&ctx);
    proto::DataStatsRequest req;
    proto::DataStatsReply rep;
    grpc::Status s = stub->Stats(&ctx, req, &rep);
    if (!s.ok()) {
      printf("data %u %-22s DOWN (%s)\n", d.device, d.address.c_str(),
             s.error_message().c_str());
      ++bad;
      continue;
    }
    printf(
        "data %u %-22s up, %llu bytes written, %llu read, %llu fenced "
        "refusals\n",
        d.device, d.address.c_str(),
        static_cast<unsigned long long>(rep.bytes_written()),
        static_cast<unsigned long long>(rep.bytes_read()),
        static_cast<unsigned long long>(rep.fenced_refusals()));
  }
  for (size_t i = 0; i < cl.config.lockd.size(); ++i) {
    const std::string& addr = cl.config.lockd[i];
    proto::DumpReply rep;
    // No inode has number 2^64-1: sessions only.
    grpc::Status s = Dump(addr, ~0ull, &rep);
    if (!s.ok()) {
      printf("lockd %zu %-21s DOWN (%s)\n", i, addr.c_str(),
             s.error_message().c_str());
      ++bad;
      continue;
    }
    printf("lockd %u/%u %-19s up, %d sessions\n", rep.shard(),
           rep.shard_count(), addr.c_str(), rep.sessions_size());
    for (const proto::SessionEntry& e : rep.sessions()) {
      printf(
          "         session %llu node '%s': %llu locks, lease %llu ms, "
          "heard %llu ms ago\n",
          static_cast<unsigned long long>(e.session_id()),
          e.node_name().c_str(), static_cast<unsigned long long>(e.locks()),
          static_cast<unsigned long long>(e.lease_ms()),
          static_cast<unsigned long long>(e.last_heard_ms()));
    }
  }
  return bad == 0 ? 0 : 1;
}

int Locks(Cluster& cl, uint64_t ino) {
  for (size_t i = 0; i < cl.config.lockd.size(); ++i) {
    const std::string& addr = cl.config.lockd[i];
    proto::DumpReply rep;
    grpc::Status s = Dump(addr, ino, &rep);
    if (!s.ok()) Fail(Unreachable("lockd shard " + std::to_string(i), addr, s));
    for (const proto::LockEntry& l : rep.locks()) {
      printf(
          "ino %-8llu %-5s %-2s %-28s node '%s' session %llu task %llu%s%s\n",
          static_cast<unsigned long long>(l.resource().ino()),
          KindName(l.resource().kind()), ModeName(l.mode()),
          RangeText(l.range()).c_str(), l.node_name().c_str(),
          static_cast<unsigned long long>(l.owner().session_id()),
          static_cast<unsigned long long>(l.owner().task()),
          l.waiting() ? "  WAITING" : "",
          l.callback_pending() ? (std::string("  called back, may keep ") +
                                  ModeName(l.callback_keep_mode()))
                                     .c_str()
                               : "");
    }
  }
  return 0;
}

int Extents(Cluster& cl, const std::string& path) {
  proto::Attr a = Resolve(cl, path);
  printf("%s: inode %llu, size %llu, %llu blocks of 512 bytes\n", path.c_str(),
         static_cast<unsigned long long>(a.ino()),
         static_cast<unsigned long long>(a.size()),
         static_cast<unsigned long long>(a.blocks()));
  printf("%6s %14s %14s %8s %14s %s\n", "ext", "file offset", "length",
         "device", "physical", "state");
  uint64_t pos = 0;
  const uint64_t end = ((a.size() + 4095) / 4096) * 4096;
  int n = 0;
  uint64_t cookie = 0;
  while (pos < end) {
    grpc::ClientContext ctx;
    Prepare(&ctx);
    proto::MapRequest req;
    req.set_ino(a.ino());
    req.set_offset(pos);
    req.set_length(std::min<uint64_t>(end - pos, 1ull << 30));
    proto::MapReply rep;
    grpc::Status s = cl.meta->MapRead(&ctx, req, &rep);
    if (!s.ok()) Fail(Unreachable("metadata server", cl.config.meta, s));
    if (absl::Status st = rpc::FromProto(rep.error()); !st.ok()) {
      Fail(path + ": " + std::string(st.message()));
    }
    if (rep.mappings_size() == 0) break;
    cookie = rep.cookie();
    for (const proto::Mapping& m : rep.mappings()) {
      if (m.state() == proto::HOLE) {
        printf("%6s %14llu %14llu %8s %14s hole\n", "-",
               static_cast<unsigned long long>(m.offset()),
               static_cast<unsigned long long>(m.length()), "-", "-");
      } else {
        printf("%6d %14llu %14llu %8u %14llu %s\n", n++,
               static_cast<unsigned long long>(m.offset()),
               static_cast<unsigned long long>(m.length()), m.device(),
               static_cast<unsigned long long>(m.physical()),
               m.state() == proto::WRITTEN ? "written" : "unwritten");
      }
      pos = m.offset() + m.length();
    }
  }
  printf("extent generation (validity cookie) %llu\n",
         static_cast<unsigned long long>(cookie));
  return 0;
}

int Fsck(Cluster& cl) {
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::minutes(5));
  proto::FsckRequest req;
  proto::FsckReply rep;
  grpc::Status s = cl.meta->Fsck(&ctx, req, &rep);
  if (!s.ok()) Fail(Unreachable("metadata server", cl.config.meta, s));
  printf("%llu inodes, %llu extents, %llu orphans\n",
         static_cast<unsigned long long>(rep.inodes()),
         static_cast<unsigned long long>(rep.extents()),
         static_cast<unsigned long long>(rep.orphans()));
  for (const std::string& p : rep.problems())
    printf("PROBLEM: %s\n", p.c_str());
  printf("%s\n", rep.problems_size() == 0 ? "clean" : "NOT CLEAN");
  return rep.problems_size() == 0 ? 0 : 1;
}

int Inject(Cluster& cl, const std::vector<std::string>& args) {
  proto::SetFaultRequest req;
  for (const std::string& a : args) {
    if (a == "--clear") {
      req.set_clear_all(true);
      continue;
    }
    // POINT=DELAY_MS[:ERROR[:COUNT]], the RANGEFS_FAULTS syntax.
    std::vector<std::string> kv = absl::StrSplit(a, absl::MaxSplits('=', 1));
    if (kv.size() != 2 || kv[0].empty()) {
      Fail("bad rule '" + a + "': want POINT=DELAY_MS[:ERROR[:COUNT]]");
    }
    std::vector<std::string> f = absl::StrSplit(kv[1], ':');
    proto::FaultRule* r = req.add_rules();
    r->set_point(kv[0]);
    r->set_delay_ms(strtoull(f[0].c_str(), nullptr, 10));
    if (f.size() > 1 && !f[1].empty()) {
      proto::ErrorCode code;
      if (!proto::ErrorCode_Parse(f[1], &code)) {
        Fail("unknown error '" + f[1] + "' (an ErrorCode of common.proto)");
      }
      r->set_error(code);
    }
    if (f.size() > 2) r->set_count(strtoull(f[2].c_str(), nullptr, 10));
  }
  int bad = 0;
  auto apply = [&](const std::string& what, const std::string& addr,
                   auto stub) {
    grpc::ClientContext ctx;
    Prepare(&ctx);
    proto::SetFaultReply rep;
    grpc::Status s = stub->SetFault(&ctx, req, &rep);
    if (!s.ok()) {
      fprintf(stderr, "rangefs: %s\n", Unreachable(what, addr, s).c_str());
      ++bad;
    } else if (absl::Status st = rpc::FromProto(rep.error()); !st.ok()) {
      fprintf(stderr, "rangefs: %s %s: %s\n", what.c_str(), addr.c_str(),
              std::string(st.message()).c_str());
      ++bad;
    }
  };
  apply("metadata server", cl.config.meta, cl.meta.get());
  for (const DataServerConfig& d : cl.config.data) {
    apply("data server", d.address,
          proto::DataService::NewStub(rpc::MakeChannel(d.address)).get());
  }
  for (const std::string& l : cl.config.lockd) {
    apply("lockd", l, proto::LockService::NewStub(rpc::MakeChannel(l)).get());
  }
  printf("%s at every server%s\n",
         req.clear_all() ? "faults cleared" : "faults set",
         bad ? " that answered" : "");
  printf("(client-side points take RANGEFS_FAULTS when a node starts)\n");
  return bad == 0 ? 0 : 1;
}

void Usage() {
  fprintf(stderr,
          "usage: rangefs up [--dir DIR] [--nodes N] [--data-servers M] "
          "[--lockd-shards K] [--detach]\n"
          "       rangefs down [--dir DIR]\n"
          "       rangefs status | fsck            [--cluster CONF]\n"
          "       rangefs locks [PATH | --ino N]   [--cluster CONF]\n"
          "       rangefs extents PATH             [--cluster CONF]\n"
          "       rangefs inject POINT=DELAY_MS[:ERROR[:COUNT]]... | --clear\n"
          "       rangefs fallocate --collapse|--insert PATH OFFSET LENGTH\n"
          "                                        (a file on a mounted "
          "rangefs)\n");
}

// `rangefs fallocate --collapse|--insert PATH OFFSET LENGTH`: through the
// mount's ioctl (the FUSE module does not pass these fallocate modes).
int ShiftRange(const std::vector<std::string>& args) {
  if (args.size() != 4 || (args[0] != "--collapse" && args[0] != "--insert")) {
    Usage();
    return 2;
  }
  char* end = nullptr;
  rangefs_shift_range r;
  r.offset = strtoull(args[2].c_str(), &end, 10);
  bool bad = *end != '\0';
  r.length = strtoull(args[3].c_str(), &end, 10);
  bad = bad || *end != '\0';
  if (bad) Fail("OFFSET and LENGTH are byte counts");
  int fd = open(args[1].c_str(), O_RDWR);
  if (fd < 0) Fail(args[1] + ": " + strerror(errno));
  unsigned long cmd = args[0] == "--collapse" ? RANGEFS_IOC_COLLAPSE_RANGE
                                              : RANGEFS_IOC_INSERT_RANGE;
  if (ioctl(fd, cmd, &r) != 0) {
    int e = errno;
    close(fd);
    Fail(args[1] + ": " + strerror(e) +
         (e == ENOTTY ? " (not a file on a rangefs mount)" : ""));
  }
  close(fd);
  return 0;
}

int Main(int argc, char** argv) {
  if (argc < 2) {
    Usage();
    return 2;
  }
  std::string cmd = argv[1];
  static const char* const kCommands[] = {
      "up",     "down", "status", "locks", "extents",  "fsck",
      "inject", "help", "--help", "-h",    "fallocate"};
  bool known = false;
  for (const char* k : kCommands) known |= cmd == k;
  if (!known && argc >= 3 && argv[2][0] != '-') {
    // mount.fuse3 runs `TYPE SOURCE MOUNTPOINT -o OPTIONS` for a
    // fuse.rangefs mount: hand it to rangefs-fuse, which sits beside us.
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    std::string dir = n > 0 ? std::string(self, n) : std::string();
    dir = dir.substr(0, dir.find_last_of('/') + 1);
    std::string fuse = dir + "rangefs-fuse";
    std::vector<char*> args;
    args.push_back(const_cast<char*>(fuse.c_str()));
    for (int i = 1; i < argc; ++i) args.push_back(argv[i]);
    args.push_back(nullptr);
    execv(fuse.c_str(), args.data());
    execvp("rangefs-fuse", args.data());  // Installed elsewhere on PATH.
    Fail("cannot run rangefs-fuse (" + fuse + "): " + strerror(errno));
  }
  if (cmd == "up" || cmd == "down") {
    // The local cluster lives in scripts/up (the same steps on any
    // machine); `rangefs up` is its front door.
    std::string script = std::string(RANGEFS_SOURCE_DIR) + "/scripts/up";
    std::vector<char*> args;
    args.push_back(const_cast<char*>(script.c_str()));
    std::string down = "--down";
    if (cmd == "down") args.push_back(down.data());
    for (int i = 2; i < argc; ++i) args.push_back(argv[i]);
    args.push_back(nullptr);
    execv(script.c_str(), args.data());
    Fail("cannot run " + script + ": " + strerror(errno));
  }
  std::string conf;
  std::vector<std::string> rest;
  for (int i = 2; i < argc; ++i) {
    if (strcmp(argv[i], "--cluster") == 0 && i + 1 < argc) {
      conf = argv[++i];
    } else {
      rest.push_back(argv[i]);
    }
  }
  if (cmd == "help" || cmd == "--help" || cmd == "-h") {
    Usage();
    return 0;
  }
  if (cmd == "fallocate") return ShiftRange(rest);
  Cluster cl = Connect(conf);
  if (cmd == "status") return Status(cl);
  if (cmd == "fsck") return Fsck(cl);
  if (cmd == "inject") {
    if (rest.empty()) {
      Usage();
      return 2;
    }
    return Inject(cl, rest);
  }
  if (cmd == "locks") {
    uint64_t ino = 0;
    if (rest.size() == 2 && rest[0] == "--ino") {
      ino = strtoull(rest[1].c_str(), nullptr, 10);
    } else if (rest.size() == 1) {
      ino = Resolve(cl, rest[0]).ino();
    } else if (!rest.empty()) {
      Usage();
      return 2;
    }
    return Locks(cl, ino);
  }
  if (cmd == "extents" && rest.size() == 1) return Extents(cl, rest[0]);
  Usage();
  return 2;
}

}  // namespace
}  // namespace rangefs::cli

int main(int argc, char** argv) { return rangefs::cli::Main(argc, argv); }
