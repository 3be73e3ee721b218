// The FUSE low-level operations of rangefs-fuse over one librangefs node.
//
// One mount is one client node. Files are opened with direct I/O
// (FOPEN_DIRECT_IO) and attributes and entries are given with a zero
// timeout, so the kernel keeps no data, attribute or name cache of its
// own: every read, write and stat reaches the node, whose caches are the
// coherent ones (docs/fuse.md says why, and what it costs).
#ifndef RANGEFS_CLIENT_FUSE_FUSE_OPS_H_
#define RANGEFS_CLIENT_FUSE_FUSE_OPS_H_

#define FUSE_USE_VERSION 34
#include <fuse_lowlevel.h>

#include "client/rangefs.h"

namespace rangefs::fuse {

// State of one mount; `client` outlives the session.
struct Mount {
  client::Client* client = nullptr;
};

// The operations table (userdata: a Mount*).
const fuse_lowlevel_ops& Operations();

}  // namespace rangefs::fuse

#endif  // RANGEFS_CLIENT_FUSE_FUSE_OPS_H_
