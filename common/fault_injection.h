// Named fault-injection points, switched on at run time (like XFS's error
// injection used by fstests xfs/559): code calls Hit("meta.commit.apply")
// at the point; a rule for that name makes the call sleep, fail, or both,
// for its next `count` hits (0 = until cleared). Rules come from the
// RANGEFS_FAULTS environment variable at start and from each server's
// SetFault admin RPC.
//
//   RANGEFS_FAULTS="point=delay_ms[:ERROR[:count]][,point=...]"
//   e.g. RANGEFS_FAULTS="data.write=200::1,meta.commit.apply=0:IO_ERROR:1"
//
// ERROR is an Errc name (common/status.h) or empty. Thread-safe; when no
// rule is set, Hit() costs one relaxed atomic load.
#ifndef RANGEFS_COMMON_FAULT_INJECTION_H_
#define RANGEFS_COMMON_FAULT_INJECTION_H_

#include <atomic>
#include <cstdint>
#include <map>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "common/status.h"

namespace rangefs {

struct FaultRule {
  uint64_t delay_ms = 0;
  Errc error = Errc::kOk;
  uint64_t count = 0;  // Remaining hits it applies to; 0 = unlimited.
};

class FaultRegistry {
 public:
  // The process-wide registry.
  static FaultRegistry& Global();

  FaultRegistry() = default;
  FaultRegistry(const FaultRegistry&) = delete;
  FaultRegistry& operator=(const FaultRegistry&) = delete;

  void Set(const std::string& point, const FaultRule& rule);
  void Clear(const std::string& point);
  void ClearAll();
  // Parses the RANGEFS_FAULTS syntax; INVALID_ARGUMENT (and no change) on a
  // malformed spec.
  absl::Status SetFromSpec(absl::string_view spec);

  // Applies the rule for `point`, if any: sleeps delay_ms (without holding
  // any lock), then returns the rule's error. OK when no rule applies.
  absl::Status Hit(absl::string_view point);

  // How many times `point` was hit while a rule was set for it.
  uint64_t Hits(const std::string& point) const;

 private:
  mutable absl::Mutex mu_;
  std::map<std::string, FaultRule, std::less<>> rules_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, uint64_t, std::less<>> hits_ ABSL_GUARDED_BY(mu_);
  std::atomic<bool> any_{false};
};

// Shorthand for FaultRegistry::Global().Hit(point).
inline absl::Status FaultPoint(absl::string_view point) {
  return FaultRegistry::Global().Hit(point);
}

// Switches that turn one protection off, for the race suite's evidence
// that its checks can fail (docs/race-suite.md): "unsafe.*" points; any
// rule with an error switches the protection off, e.g.
// RANGEFS_FAULTS="unsafe.client.inval_keep_cache=0:INTERNAL".
inline bool UnsafeSwitch(absl::string_view point) {
  return !FaultRegistry::Global().Hit(point).ok();
}

// Loads RANGEFS_FAULTS into the global registry (program start).
absl::Status LoadFaultsFromEnv();

}  // namespace rangefs

#endif  // RANGEFS_COMMON_FAULT_INJECTION_H_
