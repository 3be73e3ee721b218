// MetaServer::Fsck: checks everything stored against the filesystem's
// invariants, over one consistent snapshot:
//  * directory entries name live inodes of the type they record, in live
//    directories; link counts equal the entries (plus 2 and subdirectories
//    for directories); directories' parent pointers match their entry;
//  * inodes with no link are on the orphan list, and orphans have no link;
//  * extents belong to live regular files, are block-aligned, do not
//    overlap within a file, lie inside their device, carry a generation no
//    newer than their inode's, and add up to the inode's block count;
//  * no block is owned twice or both owned and free, and owned plus free
//    space is exactly each device's size;
//  * the inode count and next inode number agree with the inodes present;
//    handles and extended attributes belong to live inodes.
#include <sys/stat.h>

#include <map>
#include <set>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/coding.h"
#include "server/meta/meta_server.h"
#include "server/meta/meta_server_internal.h"

namespace rangefs::meta {

absl::StatusOr<FsckReport> MetaServer::Fsck() {
  FsckReport rep;
  std::unique_ptr<ReadView> view = store_->View();
  auto problem = [&](std::string p) {
    if (rep.problems.size() < 1000) rep.problems.push_back(std::move(p));
  };
  std::map<uint64_t, InodeRecord> inodes;
  absl::Status s = store_->Scan(
      Cf::kInodes, "", "",
      [&](absl::string_view k, absl::string_view v) {
        absl::StatusOr<InodeRecord> r = DecodeInode(v);
        if (k.size() != 8 || !r.ok() || r->ino != LoadBE64(k.data())) {
          problem("undecodable inode record");
          return true;
        }
        inodes[r->ino] = *r;
        return true;
      },
      view.get());
  if (!s.ok()) return s;
  rep.inodes = inodes.size();
  if (inodes.count(kRootIno) == 0 || !S_ISDIR(inodes[kRootIno].mode)) {
    problem("root directory missing");
  }

  // Directory entries.
  std::map<uint64_t, uint32_t> links, subdirs;
  std::map<uint64_t, uint64_t> entries, dir_parent;
  s = store_->Scan(
      Cf::kDentries, "", "",
      [&](absl::string_view k, absl::string_view v) {
        uint64_t parent = LoadBE64(k.data()), ino = 0;
        uint32_t type = 0;
        std::string name(k.substr(8));
        if (!DecodeDentry(v, &ino, &type).ok()) {
          problem("undecodable entry " + name);
          return true;
        }
        auto p = inodes.find(parent);
        if (p == inodes.end() || !S_ISDIR(p->second.mode)) {
          problem(
              absl::StrCat("entry ", name, " in missing directory ", parent));
        }
        auto c = inodes.find(ino);
        if (c == inodes.end()) {
          problem(absl::StrCat("entry ", parent, "/", name,
                               " names missing inode ", ino));
          return true;
        }
        if ((c->second.mode & S_IFMT) != type) {
          problem(
              absl::StrCat("entry ", parent, "/", name, " has the wrong type"));
        }
        ++links[ino];
        ++entries[parent];
        if (S_ISDIR(c->second.mode)) {
          ++subdirs[parent];
          if (dir_parent.count(ino)) {
            problem(absl::StrCat("directory ", ino, " has two entries"));
          }
          dir_parent[ino] = parent;
        }
        return true;
      },
      view.get());
  if (!s.ok()) return s;

  std::set<uint64_t> orphans;
  s = store_->Scan(
      Cf::kOrphans, "", "",
      [&](absl::string_view k, absl::string_view) {
        orphans.insert(LoadBE64(k.data()));
        return true;
      },
      view.get());
  if (!s.ok()) return s;
  rep.orphans = orphans.size();

  uint64_t max_ino = 0;
  for (const auto& [ino, r] : inodes) {
    max_ino = std::max(max_ino, ino);
    if (S_ISDIR(r.mode) && r.nlink == 0) {
      // Removed while open somewhere: no entries, no name (an orphan).
      if (dir_parent.count(ino) != 0 || entries[ino] != 0 || r.size != 0) {
        problem(absl::StrCat("removed directory ", ino,
                             " still has a name or entries"));
      }
    } else if (S_ISDIR(r.mode)) {
      uint32_t want = 2 + subdirs[ino];
      if (r.nlink != want) {
        problem(absl::StrCat("directory ", ino, " nlink ", r.nlink,
                             ", expected ", want));
      }
      uint64_t parent = ino == kRootIno ? kRootIno : dir_parent[ino];
      if (ino != kRootIno && dir_parent.count(ino) == 0) {
        problem(absl::StrCat("directory ", ino, " is not in any directory"));
      } else if (r.parent != parent) {
        problem(absl::StrCat("directory ", ino, " parent pointer ", r.parent,
                             ", entry in ", parent));
      }
      if (r.size != entries[ino]) {
        problem(absl::StrCat("directory ", ino, " size ", r.size, ", ",
                             entries[ino], " entries"));
      }
    } else if (r.nlink != links[ino]) {
      problem(absl::StrCat("inode ", ino, " nlink ", r.nlink, ", ", links[ino],
                           " entries"));
    }
    if (r.nlink == 0 && !orphans.count(ino)) {
      problem(absl::StrCat("inode ", ino, " has no link and is no orphan"));
    }
  }
  for (uint64_t o : orphans) {
    auto it = inodes.find(o);
    if (it == inodes.end() || it->second.nlink != 0) {
      problem(absl::StrCat("orphan ", o, " is missing or still linked"));
    }
  }

  // Extents and space.
  std::vector<DeviceInfo> devices;
  {
    absl::MutexLock lock(&seq_mu_);
    devices = devices_;
  }
  std::map<uint32_t, uint64_t> device_size;
  for (const DeviceInfo& d : devices) {
    device_size[d.id] = d.size / kBlockSize * kBlockSize;
  }
  // device -> physical -> (length, owner description)
  std::map<uint32_t, std::map<uint64_t, std::pair<uint64_t, std::string>>> used;
  auto claim = [&](uint32_t dev, uint64_t phys, uint64_t len,
                   const std::string& who) {
    auto ds = device_size.find(dev);
    if (ds == device_size.end() || phys > ds->second ||
        len > ds->second - phys) {
      problem(who + " lies outside its device");
      return;
    }
    used[dev][phys] = {len, who};
  };
  std::map<uint64_t, uint64_t> blocks, file_end;
  s = store_->Scan(
      Cf::kExtents, "", "",
      [&](absl::string_view k, absl::string_view v) {
        uint64_t ino = LoadBE64(k.data()), off = LoadBE64(k.data() + 8);
        absl::StatusOr<Extent> e = DecodeExtent(off, v);
        std::string who = absl::StrCat("extent ", ino, "@", off);
        if (!e.ok()) {
          problem("undecodable " + who);
          return true;
        }
        ++rep.extents;
        auto it = inodes.find(ino);
        if (it == inodes.end() || !S_ISREG(it->second.mode)) {
          problem(who + " belongs to no regular file");
        } else if (e->gen > it->second.extent_gen) {
          problem(who + " is newer than its inode's generation");
        }
        if (off % kBlockSize || e->length % kBlockSize ||
            e->physical % kBlockSize) {
          problem(who + " is not block-aligned");
        }
        if (file_end.count(ino) && file_end[ino] > off) {
          problem(who + " overlaps the previous extent");
        }
        file_end[ino] = e->end();
        blocks[ino] += e->length / kBlockSize;
        claim(e->device, e->physical, e->length, who);
        return true;
      },
      view.get());
  if (!s.ok()) return s;
  for (const auto& [ino, r] : inodes) {
    if (r.blocks != blocks[ino]) {
      problem(absl::StrCat("inode ", ino, " counts ", r.blocks,
                           " blocks, extents hold ", blocks[ino]));
    }
  }
  s = store_->Scan(
      Cf::kFree, "", "",
      [&](absl::string_view k, absl::string_view v) {
        uint32_t dev = LoadBE32(k.data());
        uint64_t phys = LoadBE64(k.data() + 4), len = LoadBE64(v.data());
        rep.free_bytes += len;
        claim(dev, phys, len, absl::StrCat("free space ", dev, "@", phys));
        return true;
      },
      view.get());
  if (!s.ok()) return s;
  for (const auto& [dev, m] : used) {
    uint64_t pos = 0;
    std::string prev = "device start";
    for (const auto& [phys, entry] : m) {
      if (phys < pos) {
        problem(
            absl::StrCat(entry.second, " overlaps ", prev, " on device ", dev));
      } else if (phys > pos) {
        problem(absl::StrCat("device ", dev, " bytes ", pos, "..", phys,
                             " are neither free nor owned"));
      }
      pos = std::max(pos, phys + entry.first);
      prev = entry.second;
    }
    if (pos != device_size[dev]) {
      problem(absl::StrCat("device ", dev, " accounts for ", pos, " of ",
                           device_size[dev], " bytes"));
    }
  }
  for (const auto& [dev, size] : device_size) {
    if (used.count(dev) == 0 && size > 0) {
      problem(absl::StrCat("device ", dev, " has no free or owned space"));
    }
  }
  uint64_t total = 0;
  for (const auto& [dev, size] : device_size) total += size;
  rep.allocated_bytes = total - std::min(total, rep.free_bytes);

  // Counters, handles and attributes.
  auto counter = [&](const char* name) -> uint64_t {
    absl::StatusOr<std::optional<std::string>> v =
        store_->Get(Cf::kMeta, name, view.get());
    uint64_t n = 0;
    if (!v.ok() || !*v || !absl::SimpleAtoi(**v, &n)) {
      problem(absl::StrCat("meta/", name, " missing"));
    }
    return n;
  };
  if (counter("inode_count") != inodes.size()) {
    problem(absl::StrCat("inode count ", counter("inode_count"), ", found ",
                         inodes.size()));
  }
  if (counter("next_ino") <= max_ino) {
    problem("next inode number would reuse an existing one");
  }
  for (Cf cf : {Cf::kHandles, Cf::kXattrs}) {
    s = store_->Scan(
        cf, "", "",
        [&](absl::string_view k, absl::string_view) {
          uint64_t ino = LoadBE64(k.data());
          if (inodes.count(ino) == 0) {
            problem(absl::StrCat(cf == Cf::kHandles ? "handle" : "xattr",
                                 " of missing inode ", ino));
          }
          return true;
        },
        view.get());
    if (!s.ok()) return s;
  }
  return rep;
}

}  // namespace rangefs::meta
