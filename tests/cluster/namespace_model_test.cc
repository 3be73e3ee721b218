// Model-based multi-node random test of the namespace: seeded random
// creates, mkdirs, links, unlinks, rmdirs and renames (plain, NOREPLACE,
// EXCHANGE, of files and of whole directories) from random nodes, each
// node answering lookups from its own cache of names and attributes.
// After every operation every node must agree with a model of the tree:
// each path resolves to the inode the model has (or is absent), with the
// model's type and link count, and each directory lists the model's names.
// A node serving a name or an attribute it should have dropped shows up
// as a divergence. Reproducible from the seed; prints the operation log on
// a failure. RANGEFS_NAMESPACE_SEEDS=N runs more seeds.
#include <fcntl.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstdlib>
#include <map>
#include <random>
#include <set>
#include <sstream>

#include "client/rangefs.h"
#include "common/status.h"
#include "gtest/gtest.h"
#include "tests/util/client_fixture.h"

namespace rangefs::client {
namespace {

constexpr int kNodes = 3;
constexpr int kSteps = 250;
const char* const kNames[] = {"a", "b", "c", "d"};

struct Entry {
  bool dir = false;
  uint64_t ino = 0;
};

// path ("/a/b") -> what it names; the root is "".
using Tree = std::map<std::string, Entry>;

std::string Parent(const std::string& path) {
  return path.substr(0, path.rfind('/'));
}
std::string Base(const std::string& path) {
  return path.substr(path.rfind('/') + 1);
}
bool Under(const std::string& path, const std::string& dir) {
  return path.size() > dir.size() && path.compare(0, dir.size(), dir) == 0 &&
         path[dir.size()] == '/';
}

class NamespaceRun {
 public:
  // The model's root is the directory `top` (inode `root`).
  NamespaceRun(std::vector<std::unique_ptr<Client>>* nodes, uint64_t seed,
               const std::string& top, uint64_t root)
      : nodes_(nodes), rng_(seed), top_(top) {
    tree_[""] = {true, root};
  }

  bool Run(int steps, std::string* why) {
    for (int i = 0; i < steps; ++i) {
      std::string err = Step();
      if (err.empty()) err = Check();
      if (!err.empty()) {
        std::ostringstream o;
        o << "step " << i << ": " << err << "\noperations:\n";
        for (const std::string& l : log_) o << "  " << l << "\n";
        *why = o.str();
        return false;
      }
    }
    return true;
  }

 private:
  std::vector<std::string> Dirs() const {
    std::vector<std::string> out;
    for (const auto& [p, e] : tree_) {
      // Two levels below the root at most, so the tree stays small.
      if (e.dir && std::count(p.begin(), p.end(), '/') < 2) out.push_back(p);
    }
    return out;
  }
  std::string RandomPath() {
    std::vector<std::string> dirs = Dirs();
    std::string d = dirs[rng_() % dirs.size()];
    return d + "/" + kNames[rng_() % 4];
  }
  std::string Existing(bool dirs_too) {
    std::vector<std::string> out;
    for (const auto& [p, e] : tree_) {
      if (!p.empty() && (dirs_too || !e.dir)) out.push_back(p);
    }
    return out.empty() ? "" : out[rng_() % out.size()];
  }
  uint64_t Ino(Client& c, const std::string& dir, std::string* err) {
    absl::StatusOr<Attr> a = c.Resolve(top_ + dir);
    if (!a.ok()) {
      *err = "node cannot resolve directory " + dir + ": " +
             std::string(a.status().message());
      return 0;
    }
    return a->ino;
  }

  // One random operation; applies it to the model when the cluster says it
  // succeeded. An error string only for what no cluster may do.
  std::string Step() {
    const int n = static_cast<int>(rng_() % kNodes);
    Client& c = *(*nodes_)[n];
    std::ostringstream op;
    op << "node " << n << ": ";
    std::string err;
    absl::Status s;
    switch (rng_() % 7) {
      case 0:
      case 1: {  // create a file, or a directory
        const bool dir = rng_() % 3 == 0;
        std::string p = RandomPath();
        op << (dir ? "mkdir " : "create ") << p;
        uint64_t parent = Ino(c, Parent(p), &err);
        if (!err.empty()) return err;
        absl::StatusOr<Attr> a =
            dir ? c.Mkdir(parent, Base(p), 0755, Creds())
                : c.Mknod(parent, Base(p), S_IFREG | 0644, 0, Creds());
        s = a.status();
        if (a.ok()) {
          if (tree_.count(p)) return op.str() + ": succeeded over an entry";
          tree_[p] = {dir, a->ino};
        }
        break;
      }
      case 2: {  // link
        std::string from = Existing(/*dirs_too=*/false);
        if (from.empty()) return "";
        std::string p = RandomPath();
        op << "link " << from << " " << p;
        uint64_t parent = Ino(c, Parent(p), &err);
        if (!err.empty()) return err;
        absl::StatusOr<Attr> a = c.Link(tree_[from].ino, parent, Base(p));
        s = a.status();
        if (a.ok()) tree_[p] = tree_[from];
        break;
      }
      case 3: {  // unlink or rmdir
        std::string p = Existing(/*dirs_too=*/true);
        if (p.empty()) return "";
        const bool dir = tree_[p].dir;
        op << (dir ? "rmdir " : "unlink ") << p;
        uint64_t parent = Ino(c, Parent(p), &err);
        if (!err.empty()) return err;
        s = dir ? c.Rmdir(parent, Base(p)) : c.Unlink(parent, Base(p));
        if (s.ok()) tree_.erase(p);
        break;
      }
      default: {  // rename
        std::string from = Existing(/*dirs_too=*/true);
        if (from.empty()) return "";
        std::string to = RandomPath();
        const uint32_t flags = rng_() % 4 == 0 ? 2 : rng_() % 4 == 0 ? 1 : 0;
        op << "rename " << from << " " << to << " flags " << flags;
        uint64_t p1 = Ino(c, Parent(from), &err);
        uint64_t p2 = Ino(c, Parent(to), &err);
        if (!err.empty()) return err;
        s = c.Rename(p1, Base(from), p2, Base(to), flags);
        if (s.ok()) ApplyRename(from, to, flags == 2);
        break;
      }
    }
    op << " -> " << (s.ok() ? "ok" : std::string(s.message()));
    log_.push_back(op.str());
    return "";
  }

  void ApplyRename(const std::string& from, const std::string& to,
                   bool exchange) {
    if (from == to) return;
    // Two names of one file: POSIX rename does nothing.
    auto target = tree_.find(to);
    if (!exchange && target != tree_.end() &&
        target->second.ino == tree_[from].ino) {
      return;
    }
    Tree moved, swapped;
    for (auto it = tree_.begin(); it != tree_.end();) {
      if (it->first == from || Under(it->first, from)) {
        moved[to + it->first.substr(from.size())] = it->second;
        it = tree_.erase(it);
      } else if (it->first == to || Under(it->first, to)) {
        // Replaced (an empty directory or a file), or swapped.
        if (exchange) swapped[from + it->first.substr(to.size())] = it->second;
        it = tree_.erase(it);
      } else {
        ++it;
      }
    }
    tree_.insert(moved.begin(), moved.end());
    tree_.insert(swapped.begin(), swapped.end());
  }

  // Every node against the model.
  std::string Check() {
    std::map<uint64_t, uint32_t> links;
    std::map<std::string, uint32_t> subdirs;
    for (const auto& [p, e] : tree_) {
      if (p.empty()) continue;
      if (!e.dir) ++links[e.ino];
      if (e.dir) ++subdirs[Parent(p)];
    }
    for (int n = 0; n < kNodes; ++n) {
      Client& c = *(*nodes_)[n];
      std::ostringstream where;
      where << "node " << n << ": ";
      for (const auto& [p, e] : tree_) {
        absl::StatusOr<Attr> a = c.Resolve(top_ + p);
        if (!a.ok()) {
          return where.str() + p +
                 " missing: " + std::string(a.status().message());
        }
        if (a->ino != e.ino || S_ISDIR(a->mode) != e.dir) {
          return where.str() + p + " names another inode";
        }
        const uint32_t want = e.dir ? 2 + subdirs[p] : links[e.ino];
        if (a->nlink != want) {
          return where.str() + p + " has " + std::to_string(a->nlink) +
                 " links, the model " + std::to_string(want);
        }
        if (!e.dir) continue;
        for (const char* name : kNames) {
          std::string child = p + "/" + name;
          if (tree_.count(child)) continue;
          if (c.Resolve(top_ + child).ok()) {
            return where.str() + child + " exists";
          }
        }
        absl::StatusOr<DirPage> page = c.ReadDir(a->ino, "", 100, false);
        if (!page.ok()) return where.str() + "readdir " + p + " failed";
        std::set<std::string> listed;
        for (const DirEntry& d : page->entries) {
          if (d.name != "." && d.name != "..") listed.insert(d.name);
        }
        std::set<std::string> want_names;
        for (const char* name : kNames) {
          if (tree_.count(p + "/" + name)) want_names.insert(name);
        }
        if (listed != want_names) {
          std::string got;
          for (const std::string& l : listed) got += " " + l;
          return where.str() + "listing of " + p + ":" + got;
        }
      }
    }
    return "";
  }

  std::vector<std::unique_ptr<Client>>* nodes_;
  std::mt19937_64 rng_;
  const std::string top_;
  Tree tree_;
  std::vector<std::string> log_;
};

class NamespaceModelTest : public ClientClusterFixture {};

TEST_F(NamespaceModelTest, RandomNamespaceChangesOnThreeNodesMatchAModel) {
  StartCluster();
  std::vector<std::unique_ptr<Client>> nodes;
  for (int i = 0; i < kNodes; ++i) {
    nodes.push_back(Node("ns" + std::to_string(i)));
    ASSERT_NE(nodes.back(), nullptr);
  }
  // RANGEFS_NAMESPACE_SEEDS=N runs seeds 1..N (default 3).
  uint64_t seeds = 3;
  if (const char* env = getenv("RANGEFS_NAMESPACE_SEEDS")) {
    seeds = strtoull(env, nullptr, 10);
  }
  for (uint64_t seed = 1; seed <= seeds; ++seed) {
    // Each seed in its own directory, made by the first node.
    std::string top = "/seed" + std::to_string(seed);
    absl::StatusOr<Attr> root = nodes[0]->Resolve("/");
    ASSERT_TRUE(root.ok());
    absl::StatusOr<Attr> d =
        nodes[0]->Mkdir(root->ino, top.substr(1), 0755, Creds());
    ASSERT_TRUE(d.ok()) << d.status();
    NamespaceRun run(&nodes, seed, top, d->ino);
    std::string why;
    EXPECT_TRUE(run.Run(kSteps, &why)) << "seed " << seed << ": " << why;
  }
}

}  // namespace
}  // namespace rangefs::client
