// ioctls on an open file of a rangefs mount, for what the Linux FUSE
// module does not pass through fallocate(2): collapse and insert range
// (docs/fuse.md). `rangefs fallocate --collapse|--insert` uses them.
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

#endif  // RANGEFS_CLIENT_FUSE_RANGEFS_IOCTL_H_
