// Set-up every rangefs program does first.
#ifndef RANGEFS_COMMON_PROCESS_H_
#define RANGEFS_COMMON_PROCESS_H_

#include <string>

namespace rangefs {

// Names the program in its log lines (InitLogging), keeps large buffers
// in the malloc heap rather than mapping each fresh (process.cc), and
// switches off
// abseil's mutex deadlock detection unless RANGEFS_MUTEX_CHECKS=1:
// Debian's abseil is built with it on, and it keeps a process-wide graph
// of lock acquisitions behind one global lock, taken on every Mutex::Lock
// of every thread. The tests' processes run with it (testing::Subprocess
// sets RANGEFS_MUTEX_CHECKS=1), where a lock-order cycle aborts at once.
void InitProgram(const std::string& program);

// The device ("major:minor") of the topmost mount at `mount_point`, an
// absolute path as /proc/self/mountinfo shows it; empty if none. Reads no
// file of the mount itself, so it works on a mount that hangs.
std::string MountDevice(const std::string& mount_point);

}  // namespace rangefs

#endif  // RANGEFS_COMMON_PROCESS_H_
