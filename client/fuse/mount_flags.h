// The VFS flags of a rangefs mount (read-only, nosuid, nodev, noexec, and
// how access times move), as /proc/self/mountinfo shows them and as
// mount(2) sets them. libfuse knows only some of their option names;
// rangefs-fuse takes the rest itself, applies them after the mount, and
// runs `-o remount,...` (what mount(8) asks of the helper) as mount(2)
// with MS_REMOUNT instead of mounting again. FUSE inodes never move their
// atime in the kernel (S_NOATIME): the daemon does it by these flags,
// which it follows through remounts.
#ifndef RANGEFS_CLIENT_FUSE_MOUNT_FLAGS_H_
#define RANGEFS_CLIENT_FUSE_MOUNT_FLAGS_H_

#include <string>

namespace rangefs::fuse {

enum class Atime { kRelative, kNever, kAlways };

struct MountFlags {
  bool read_only = false;
  bool nosuid = false;
  bool nodev = false;
  bool noexec = false;
  bool nodiratime = false;
  bool sync = false;  // Of the superblock, like ro (the kernel syncs).
  bool dirsync = false;
  Atime atime = Atime::kRelative;
};

// Whether `option` is one of the VFS options handled here (ro, rw, suid,
// nosuid, dev, nodev, exec, noexec, atime, noatime, relatime, norelatime,
// strictatime, nostrictatime, diratime, nodiratime, lazytime,
// nolazytime, sync, async, dirsync); if so it is applied to *flags.
bool ApplyMountOption(const std::string& option, MountFlags* flags);

// The flags of the topmost mount at `mountpoint` (an absolute path
// without a trailing slash) from /proc/self/mountinfo; false if none.
bool ReadMountFlags(const std::string& mountpoint, MountFlags* flags);

// mount(2)'s MS_* bits for `flags`.
unsigned long MsFlags(const MountFlags& flags);

// Applies `options` (comma-separated) over the current flags of the mount
// at `mountpoint` with mount(2) (MS_REMOUNT; with `bind`, the mount's own
// flags only, MS_BIND). Returns "" or what failed.
std::string Remount(const std::string& mountpoint, const std::string& options,
                    bool bind);

}  // namespace rangefs::fuse

#endif  // RANGEFS_CLIENT_FUSE_MOUNT_FLAGS_H_
