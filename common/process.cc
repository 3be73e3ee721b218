#include "common/process.h"

#include <malloc.h>

#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

#include "absl/synchronization/mutex.h"
#include "common/log.h"

namespace rangefs {

void InitProgram(const std::string& program) {
  InitLogging(program);
  // Data moves in messages of up to 4 MiB (and write-back runs of 32 MiB).
  // Past glibc's mmap threshold each such buffer is mapped fresh and the
  // kernel zeroes every page of it on first touch: a sixth of all CPU
  // time of a streaming write on this machine went to the data server's
  // page faults. Big buffers come from the heap instead, and freed memory
  // stays there for the next message.
  mallopt(M_MMAP_THRESHOLD, 64 << 20);
  mallopt(M_TRIM_THRESHOLD, 256 << 20);
  const char* checks = getenv("RANGEFS_MUTEX_CHECKS");
  if (checks == nullptr || strcmp(checks, "1") != 0) {
    absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  }
}

std::string MountDevice(const std::string& mount_point) {
  std::ifstream mi("/proc/self/mountinfo");
  std::string line, dev;
  while (std::getline(mi, line)) {
    std::istringstream f(line);
    std::string id, parent, majmin, root, point;
    f >> id >> parent >> majmin >> root >> point;
    if (point == mount_point) dev = majmin;  // The last one is on top.
  }
  return dev;
}

}  // namespace rangefs
