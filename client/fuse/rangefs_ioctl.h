// ioctls on an open file or directory of a rangefs mount: collapse and
// insert range, which the Linux FUSE module does not pass through
// fallocate(2) (docs/fuse.md; `rangefs fallocate --collapse|--insert` uses
// them); the node's counters; and, on a mount made with fault_control=1,
// fault injection inside its node (root only; the race suite's scenarios
// through mounts use it).
#ifndef RANGEFS_CLIENT_FUSE_RANGEFS_IOCTL_H_
#define RANGEFS_CLIENT_FUSE_RANGEFS_IOCTL_H_

#include <linux/ioctl.h>
#include <stdint.h>

struct rangefs_shift_range {
  uint64_t offset;  // Block-aligned, like FALLOC_FL_COLLAPSE_RANGE.
  uint64_t length;
};

#define RANGEFS_IOC_COLLAPSE_RANGE _IOW('R', 1, struct rangefs_shift_range)
#define RANGEFS_IOC_INSERT_RANGE _IOW('R', 2, struct rangefs_shift_range)

// A rule in the RANGEFS_FAULTS syntax (common/fault_injection.h),
// NUL-terminated: "client.before_commit=400::1".
struct rangefs_fault_spec {
  char spec[256];
};

#define RANGEFS_IOC_SET_FAULT _IOW('R', 3, struct rangefs_fault_spec)

// Counters of the mount's node (client::ClientStats), since it started.
struct rangefs_node_stats {
  uint64_t session_id;
  uint64_t stale_retries;  // Commits refused as STALE and redone.
  uint64_t inval_demotes;
  uint64_t lost_dirty_pages;
  uint64_t direct_fallbacks;
  uint64_t sessions_lost;
  uint64_t reserved[10];
};

#define RANGEFS_IOC_NODE_STATS _IOR('R', 4, struct rangefs_node_stats)

#endif  // RANGEFS_CLIENT_FUSE_RANGEFS_IOCTL_H_
