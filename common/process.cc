#include "common/process.h"

#include <cstdlib>
#include <cstring>

#include "absl/synchronization/mutex.h"
#include "common/log.h"

namespace rangefs {

void InitProgram(const std::string& program) {
  InitLogging(program);
  const char* checks = getenv("RANGEFS_MUTEX_CHECKS");
  if (checks == nullptr || strcmp(checks, "1") != 0) {
    absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  }
}

}  // namespace rangefs
