// Model-based multi-node random test of librangefs against real servers:
// seeded random sequences of buffered and direct reads and writes,
// truncates, every fallocate mode, fsyncs, loads and stores through each
// node's shared mapping of the file, and direct writes and reads whose
// buffer is that mapping, each from a random node,
// checked after every operation against a byte model of the file (a whole
// read and a stat from a random node). Reproducible from the seed; prints
// the operation log on a failure.
//
// Runs for RANGEFS_MODEL_SECONDS (default 20) under the `cluster` label;
// set it higher for a long run. RANGEFS_MODEL_SEED starts from one seed.
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <deque>
#include <random>
#include <sstream>

#include "client/rangefs.h"
#include "common/status.h"
#include "gtest/gtest.h"
#include "proto/meta.grpc.pb.h"
#include "rpc/channel.h"
#include "tests/util/local_cluster.h"

namespace rangefs::client {
namespace {

constexpr uint64_t kPage = 4096;
constexpr uint64_t kSpan = 256 * 1024;  // Offsets fall below this.
constexpr int kNodes = 3;
constexpr int kStepsPerSeed = 120;

// Each node maps this much of the file (MAP_SHARED) and touches it only
// below EOF.
constexpr uint64_t kMapSpan = 2 * kSpan;

struct Node {
  std::unique_ptr<Client> client;
  uint64_t buffered = 0;
  uint64_t direct = 0;
  char* map = nullptr;
};

class ModelRun {
 public:
  ModelRun(std::vector<Node>* nodes, uint64_t seed)
      : nodes_(nodes), rng_(seed), seed_(seed) {}

  // Runs `steps` random operations; false (with the reason in *why) on
  // the first divergence.
  bool Run(int steps, std::string* why) {
    for (int i = 0; i < steps; ++i) {
      std::string err = Step(i);
      if (err.empty()) err = Check();
      if (!err.empty()) {
        std::ostringstream o;
        o << "seed " << seed_ << ", step " << i << ": " << err
          << "\noperations (last " << log_.size() << "):\n";
        for (const std::string& l : log_) o << "  " << l << "\n";
        *why = o.str();
        return false;
      }
    }
    return true;
  }

 private:
  uint64_t Rand(uint64_t lo, uint64_t hi) {  // [lo, hi]
    return std::uniform_int_distribution<uint64_t>(lo, hi)(rng_);
  }
  void Log(const std::string& s) {
    log_.push_back(s);
    if (log_.size() > 60) log_.pop_front();
  }

  std::string Step(int step) {
    int n = static_cast<int>(Rand(0, kNodes - 1));
    Node& node = (*nodes_)[n];
    Client& c = *node.client;
    const char fill = static_cast<char>('A' + step % 26);
    std::ostringstream op;
    op << "node " << n << ": ";
    absl::Status st;
    const uint64_t mapped = std::min<uint64_t>(model_.size(), kMapSpan);
    switch (Rand(0, 14)) {
      case 0:
      case 1:
      case 2: {  // Buffered write.
        uint64_t off = Rand(0, kSpan);
        uint64_t len = Rand(1, 20000);
        op << "write " << off << " +" << len << " '" << fill << "'";
        Log(op.str());
        std::string data(len, fill);
        absl::StatusOr<size_t> w =
            c.Write(node.buffered, data.data(), len, off);
        if (!w.ok() || *w != len) return "write failed: " + Why(w.status());
        Apply(off, data);
        break;
      }
      case 3: {  // Direct write.
        uint64_t off = Rand(0, kSpan / kPage) * kPage;
        uint64_t len = Rand(1, 8) * kPage;
        op << "direct write " << off << " +" << len << " '" << fill << "'";
        Log(op.str());
        std::string data(len, fill);
        absl::StatusOr<size_t> w = c.Write(node.direct, data.data(), len, off);
        if (!w.ok() || *w != len) return "direct write: " + Why(w.status());
        Apply(off, data);
        break;
      }
      case 4: {  // Buffered read of a random range.
        uint64_t off = Rand(0, kSpan);
        uint64_t len = Rand(1, 30000);
        op << "read " << off << " +" << len;
        Log(op.str());
        return Compare(c, node.buffered, off, len);
      }
      case 5: {  // Direct read.
        uint64_t off = Rand(0, kSpan / kPage) * kPage;
        uint64_t len = Rand(1, 16) * kPage;
        op << "direct read " << off << " +" << len;
        Log(op.str());
        return Compare(c, node.direct, off, len);
      }
      case 6: {  // Truncate.
        uint64_t size = Rand(0, kSpan + 20000);
        op << "truncate " << size;
        Log(op.str());
        SetAttrArgs a;
        a.valid = kSetSize;
        a.size = size;
        st = c.SetAttr(c.InoOf(node.buffered), a).status();
        if (!st.ok()) return "truncate: " + Why(st);
        model_.resize(size, '\0');
        break;
      }
      case 7: {  // Punch hole or zero range (keep size or not).
        uint64_t off = Rand(0, kSpan);
        uint64_t len = Rand(1, 40000);
        bool punch = Rand(0, 1);
        bool keep = punch || Rand(0, 1);
        uint32_t mode = (punch ? kFallocPunchHole : kFallocZeroRange) |
                        (keep ? uint32_t{kFallocKeepSize} : 0u);
        op << (punch ? "punch " : "zero ") << off << " +" << len
           << (keep ? " keep" : "");
        Log(op.str());
        st = c.Fallocate(node.buffered, mode, off, len);
        if (!st.ok()) return "fallocate: " + Why(st);
        uint64_t end =
            keep ? std::min<uint64_t>(off + len, model_.size()) : off + len;
        if (!keep && model_.size() < end) model_.resize(end, '\0');
        for (uint64_t i = off; i < end; ++i) model_[i] = '\0';
        break;
      }
      case 8: {  // Allocate (keep size or not).
        uint64_t off = Rand(0, kSpan);
        uint64_t len = Rand(1, 40000);
        bool keep = Rand(0, 1);
        op << "allocate " << off << " +" << len << (keep ? " keep" : "");
        Log(op.str());
        st = c.Fallocate(node.buffered, keep ? uint32_t{kFallocKeepSize} : 0u,
                         off, len);
        if (!st.ok()) return "allocate: " + Why(st);
        if (!keep && model_.size() < off + len) model_.resize(off + len, '\0');
        break;
      }
      case 9: {  // Collapse or insert range (block aligned).
        uint64_t blocks = model_.size() / kPage;
        bool collapse = Rand(0, 1);
        if (blocks < 2) return "";
        uint64_t off = Rand(0, blocks - 2) * kPage;
        uint64_t len =
            Rand(1, std::min<uint64_t>(8, (model_.size() - off) / kPage - 1)) *
            kPage;
        if (collapse) {
          op << "collapse " << off << " +" << len;
          Log(op.str());
          st = c.Fallocate(node.buffered, kFallocCollapseRange, off, len);
          if (!st.ok()) return "collapse: " + Why(st);
          model_.erase(off, len);
        } else {
          if (model_.size() + len > kSpan * 2) return "";
          op << "insert " << off << " +" << len;
          Log(op.str());
          st = c.Fallocate(node.buffered, kFallocInsertRange, off, len);
          if (!st.ok()) return "insert: " + Why(st);
          model_.insert(off, std::string(len, '\0'));
        }
        break;
      }
      case 10: {  // Stores through the node's mapping (below EOF).
        if (mapped == 0) return "";
        uint64_t off = Rand(0, mapped - 1);
        uint64_t len = Rand(1, std::min<uint64_t>(12000, mapped - off));
        op << "mmap store " << off << " +" << len << " '" << fill << "'";
        Log(op.str());
        memset(node.map + off, fill, len);
        Apply(off, std::string(len, fill));
        break;
      }
      case 11: {  // Loads through the node's mapping.
        if (mapped == 0) return "";
        uint64_t off = Rand(0, mapped - 1);
        uint64_t len = Rand(1, std::min<uint64_t>(30000, mapped - off));
        op << "mmap load " << off << " +" << len;
        Log(op.str());
        return CompareMapped(node, off, len);
      }
      case 12: {  // Direct write whose buffer is the node's own mapping.
        const uint64_t pages = mapped / kPage;
        if (pages < 1) return "";
        uint64_t len = Rand(1, std::min<uint64_t>(8, pages)) * kPage;
        uint64_t src = Rand(0, pages - len / kPage) * kPage;
        // The same range (generic/729) or one that does not overlap it.
        uint64_t dst = src;
        if (Rand(0, 1) == 1) {
          dst = Rand(0, kSpan / kPage) * kPage;
          if (dst < src + len && src < dst + len) dst = src;
        }
        op << "direct write " << dst << " +" << len << " from mapping at "
           << src;
        Log(op.str());
        std::string data = model_.substr(src, len);
        absl::StatusOr<size_t> w =
            c.Write(node.direct, node.map + src, len, dst);
        if (!w.ok() || *w != len) return "direct write: " + Why(w.status());
        Apply(dst, data);
        break;
      }
      case 13: {  // Read into the node's own mapping (buffered or direct).
        const uint64_t pages = mapped / kPage;
        if (pages < 2) return "";
        uint64_t len = Rand(1, std::min<uint64_t>(4, pages / 2)) * kPage;
        uint64_t dst = Rand(0, pages - len / kPage) * kPage;
        uint64_t src = Rand(0, kSpan / kPage) * kPage;
        if (src < dst + len && dst < src + len) return "";
        bool direct = Rand(0, 1) == 1;
        op << (direct ? "direct " : "") << "read " << src << " +" << len
           << " into mapping at " << dst;
        Log(op.str());
        absl::StatusOr<size_t> r = c.Read(direct ? node.direct : node.buffered,
                                          node.map + dst, len, src);
        if (!r.ok()) return "read into mapping: " + Why(r.status());
        uint64_t got = src >= model_.size()
                           ? 0
                           : std::min<uint64_t>(len, model_.size() - src);
        if (*r != got) return "read into mapping: short";
        if (got > 0) Apply(dst, model_.substr(src, got));
        break;
      }
      default: {  // fsync.
        op << "fsync";
        Log(op.str());
        st = c.Fsync(node.buffered, false);
        if (!st.ok()) return "fsync: " + Why(st);
        break;
      }
    }
    return "";
  }

  void Apply(uint64_t off, const std::string& data) {
    if (model_.size() < off + data.size()) {
      model_.resize(off + data.size(), '\0');
    }
    model_.replace(off, data.size(), data);
  }

  static std::string Why(const absl::Status& s) {
    return std::string(s.message()) + " (errno " + std::to_string(ErrnoOf(s)) +
           ")";
  }

  std::string Compare(Client& c, uint64_t fh, uint64_t off, uint64_t len) {
    std::string buf(len, '\x55');
    absl::StatusOr<size_t> r = c.Read(fh, buf.data(), len, off);
    if (!r.ok()) return "read failed: " + Why(r.status());
    uint64_t want =
        off >= model_.size() ? 0 : std::min<uint64_t>(len, model_.size() - off);
    if (*r != want) {
      return "read " + std::to_string(off) + " +" + std::to_string(len) +
             " returned " + std::to_string(*r) + " bytes, model has " +
             std::to_string(want);
    }
    for (uint64_t i = 0; i < want; ++i) {
      if (buf[i] != model_[off + i]) {
        return "byte " + std::to_string(off + i) + " is " +
               std::to_string(static_cast<unsigned char>(buf[i])) +
               ", model says " +
               std::to_string(static_cast<unsigned char>(model_[off + i]));
      }
    }
    return "";
  }

  std::string CompareMapped(const Node& node, uint64_t off, uint64_t len) {
    for (uint64_t i = off; i < off + len; ++i) {
      if (node.map[i] != model_[i]) {
        return "mapped byte " + std::to_string(i) + " is " +
               std::to_string(static_cast<unsigned char>(node.map[i])) +
               ", model says " +
               std::to_string(static_cast<unsigned char>(model_[i]));
      }
    }
    return "";
  }

  // A random node reads the whole file and stats it.
  std::string Check() {
    int n = static_cast<int>(Rand(0, kNodes - 1));
    Node& node = (*nodes_)[n];
    absl::StatusOr<Attr> a = node.client->FileAttr(node.buffered);
    if (!a.ok()) return "stat: " + Why(a.status());
    if (a->size != model_.size()) {
      return "node " + std::to_string(n) + " stat size " +
             std::to_string(a->size) + ", model " +
             std::to_string(model_.size());
    }
    std::string err =
        Compare(*node.client, node.buffered, 0, model_.size() + kPage);
    if (err.empty()) {
      err = CompareMapped(node, 0, std::min<uint64_t>(model_.size(), kMapSpan));
    }
    return err.empty() ? "" : "check on node " + std::to_string(n) + ": " + err;
  }

  std::vector<Node>* nodes_;
  std::mt19937_64 rng_;
  const uint64_t seed_;
  std::string model_;
  std::deque<std::string> log_;
};

uint64_t EnvOr(const char* name, uint64_t dflt) {
  const char* v = getenv(name);
  return v == nullptr ? dflt : strtoull(v, nullptr, 10);
}

TEST(ClientModelTest, RandomMultiNodeOperationsMatchAByteModel) {
  testing::LocalCluster cluster;
  std::string why;
  ASSERT_TRUE(cluster.Start(&why)) << why;
  absl::StatusOr<ClusterConfig> config = ParseClusterConfig(cluster.config());
  ASSERT_TRUE(config.ok());
  const auto budget = std::chrono::seconds(EnvOr("RANGEFS_MODEL_SECONDS", 20));
  uint64_t seed = EnvOr("RANGEFS_MODEL_SEED", 1);
  const auto start = std::chrono::steady_clock::now();
  int seeds = 0;
  uint64_t ops = 0;
  while (seeds == 0 || std::chrono::steady_clock::now() - start < budget) {
    std::vector<Node> nodes(kNodes);
    const std::string path = "/model." + std::to_string(seed);
    for (int i = 0; i < kNodes; ++i) {
      ClientOptions o;
      o.node_name = "n" + std::to_string(i);
      o.min_hold_ms = 0;
      o.cache_bytes = (i == 2 ? 64 : 4096) * kPage;  // Node 2 reclaims a lot.
      absl::StatusOr<std::unique_ptr<Client>> c = Client::Connect(*config, o);
      ASSERT_TRUE(c.ok()) << c.status();
      nodes[i].client = std::move(*c);
      absl::StatusOr<uint64_t> b =
          nodes[i].client->OpenPath(path, O_RDWR | O_CREAT);
      ASSERT_TRUE(b.ok()) << b.status();
      nodes[i].buffered = *b;
      absl::StatusOr<uint64_t> d =
          nodes[i].client->OpenPath(path, O_RDWR | O_DIRECT);
      ASSERT_TRUE(d.ok()) << d.status();
      nodes[i].direct = *d;
      absl::StatusOr<void*> m = nodes[i].client->Mmap(
          nodes[i].buffered, 0, kMapSpan, PROT_READ | PROT_WRITE, MAP_SHARED);
      ASSERT_TRUE(m.ok()) << m.status();
      nodes[i].map = static_cast<char*>(*m);
    }
    ModelRun run(&nodes, seed);
    ASSERT_TRUE(run.Run(kStepsPerSeed, &why)) << why;
    ops += kStepsPerSeed;
    ++seeds;
    ++seed;
  }
  auto stub =
      proto::MetaService::NewStub(rpc::MakeChannel(cluster.meta_address()));
  grpc::ClientContext ctx;
  proto::FsckRequest req;
  proto::FsckReply rep;
  ASSERT_TRUE(stub->Fsck(&ctx, req, &rep).ok());
  EXPECT_EQ(rep.problems_size(), 0) << rep.problems(0);
  std::cout << "model test: " << seeds << " seeds, " << ops
            << " operations from " << kNodes << " nodes\n";
}

}  // namespace
}  // namespace rangefs::client
