// The FUSE low-level operations of rangefs-fuse over one librangefs node.
//
// One mount is one client node. Attributes and entries are given with a
// zero timeout, so the kernel keeps no attribute or name cache of its own.
// File data goes through the kernel page cache (KernelCache: pages the
// node gave it under its INVAL locks, dropped on every callback) unless the
// mount has kernel_cache=0 or runs single-threaded, in which case files
// are opened with direct I/O (FOPEN_DIRECT_IO) and every read and write
// reaches the node. docs/fuse.md.
#ifndef RANGEFS_CLIENT_FUSE_FUSE_OPS_H_
#define RANGEFS_CLIENT_FUSE_FUSE_OPS_H_

#define FUSE_USE_VERSION 34
#include <fuse_lowlevel.h>

#include <atomic>
#include <cstdint>
#include <map>
#include <set>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

#include "client/fuse/kernel_cache.h"
#include "client/fuse/mount_flags.h"
#include "client/rangefs.h"

namespace rangefs::fuse {

// State of one mount; `client` outlives the session.
struct Mount {
  client::Client* client = nullptr;
  KernelCache* kcache = nullptr;         // Null: no kernel page cache.
  std::atomic<bool> initialized{false};  // The kernel's INIT was answered.
  // The kernel's limit of background requests (readahead READs, write-back
  // WRITEs, RELEASEs): fewer than the daemon's workers.
  unsigned max_background = 256;
  // Cold READs of cached opens go from the data servers to the kernel
  // through a pipe (Client::FillPipe), when the kernel takes spliced
  // replies.
  // (Set before the session loop, cleared by INIT if the kernel cannot.)
  std::atomic<bool> pipe_fills{true};
  unsigned max_read = 0;  // The max_read mount option (0: none).
  // RANGEFS_IOC_SET_FAULT is served (to root): the fault_control option.
  bool fault_control = false;
  // POSIX ACLs (FUSE_POSIX_ACL): the acl/noacl option.
  bool acl = true;
  // How an open for reading (or of a directory) moves the atime: the
  // mount's VFS flags, followed through remounts (main.cc).
  std::atomic<Atime> atime{Atime::kRelative};
  std::atomic<bool> nodiratime{false};
  // The lock owners that took fcntl locks through each open file (by
  // handle): at its release, the last close of the open file description,
  // they are released. An open file description lock's owner is the
  // description itself, and the kernel sends nothing else for it at the
  // last close; a process's POSIX locks went at its close's FLUSH already.
  absl::Mutex owners_mu;
  std::map<uint64_t, std::set<uint64_t>> lock_owners ABSL_GUARDED_BY(owners_mu);
};

// The operations table (userdata: a Mount*).
const fuse_lowlevel_ops& Operations();

}  // namespace rangefs::fuse

#endif  // RANGEFS_CLIENT_FUSE_FUSE_OPS_H_
