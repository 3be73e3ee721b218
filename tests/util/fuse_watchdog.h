// What a test does when a FUSE mount may have deadlocked: show where every
// task waits in the kernel, then abort the mount's FUSE connection so the
// stuck tasks return (their requests fail) and the test can go on to fail.
// Never gdb: a debugger waits on D-state threads too.
#ifndef RANGEFS_TESTS_UTIL_FUSE_WATCHDOG_H_
#define RANGEFS_TESTS_UTIL_FUSE_WATCHDOG_H_

#include <sys/types.h>

#include <string>
#include <vector>

namespace rangefs::testing {

// The kernel stacks (/proc/PID/task/*/stack, readable by root) of the
// tasks of `pid`: all of them, or with `waiting_only` those in D state or
// waiting on pages or in FUSE (not a daemon's idle readers of /dev/fuse).
std::string KernelStacks(pid_t pid, bool waiting_only);

// The processes of process group `pgid` (from /proc).
std::vector<pid_t> ProcessGroup(pid_t pgid);

// The FUSE connection of the mount at `mount_point`
// (/sys/fs/fuse/connections/N, mounting fusectl if needed), found through
// mountinfo, so it works on a mount that hangs; "" if there is no such
// mount.
std::string FuseConnection(const std::string& mount_point);

// Aborts the FUSE connection of the mount at `mount_point`
// (FuseConnection()/abort): every request of it fails at once. False if
// there is no such mount.
bool AbortFuseConnection(const std::string& mount_point);

// The mount points under directory `dir` (absolute, as mountinfo shows
// them), deepest last. Reads no file of the mounts.
std::vector<std::string> MountsUnder(const std::string& dir);

}  // namespace rangefs::testing

#endif  // RANGEFS_TESTS_UTIL_FUSE_WATCHDOG_H_
