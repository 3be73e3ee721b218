#include "common/fault_injection.h"

#include <cstdlib>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace rangefs {

FaultRegistry& FaultRegistry::Global() {
  static FaultRegistry* registry = new FaultRegistry();
  return *registry;
}

void FaultRegistry::Set(const std::string& point, const FaultRule& rule) {
  absl::MutexLock lock(&mu_);
  rules_[point] = rule;
  any_ = true;
}

void FaultRegistry::Clear(const std::string& point) {
  absl::MutexLock lock(&mu_);
  rules_.erase(point);
  any_ = !rules_.empty();
}

void FaultRegistry::ClearAll() {
  absl::MutexLock lock(&mu_);
  rules_.clear();
  any_ = false;
}

absl::Status FaultRegistry::SetFromSpec(absl::string_view spec) {
  std::vector<std::pair<std::string, FaultRule>> parsed;
  for (absl::string_view item : absl::StrSplit(spec, ',', absl::SkipEmpty())) {
    std::vector<absl::string_view> kv = absl::StrSplit(item, '=');
    if (kv.size() != 2 || kv[0].empty()) {
      return MakeError(Errc::kInvalidArgument,
                       absl::StrCat("fault rule '", item,
                                    "' is not point=delay_ms[:ERROR[:count]]"));
    }
    std::vector<absl::string_view> parts = absl::StrSplit(kv[1], ':');
    FaultRule rule;
    if (!parts[0].empty() && !absl::SimpleAtoi(parts[0], &rule.delay_ms)) {
      return MakeError(Errc::kInvalidArgument,
                       absl::StrCat("bad delay in fault rule '", item, "'"));
    }
    if (parts.size() > 1 && !parts[1].empty()) {
      bool found = false;
      for (int i = 1; i <= kMaxErrc; ++i) {
        if (parts[1] == ErrcName(static_cast<Errc>(i))) {
          rule.error = static_cast<Errc>(i);
          found = true;
        }
      }
      if (!found) {
        return MakeError(Errc::kInvalidArgument,
                         absl::StrCat("unknown error '", parts[1],
                                      "' in fault rule '", item, "'"));
      }
    }
    if (parts.size() > 2 && !absl::SimpleAtoi(parts[2], &rule.count)) {
      return MakeError(Errc::kInvalidArgument,
                       absl::StrCat("bad count in fault rule '", item, "'"));
    }
    if (parts.size() > 3) {
      return MakeError(
          Errc::kInvalidArgument,
          absl::StrCat("too many fields in fault rule '", item, "'"));
    }
    parsed.emplace_back(std::string(kv[0]), rule);
  }
  for (const auto& [point, rule] : parsed) Set(point, rule);
  return absl::OkStatus();
}

absl::Status FaultRegistry::Hit(absl::string_view point) {
  if (!any_.load(std::memory_order_relaxed)) return absl::OkStatus();
  FaultRule rule;
  {
    absl::MutexLock lock(&mu_);
    auto it = rules_.find(point);
    if (it == rules_.end()) return absl::OkStatus();
    rule = it->second;
    ++hits_[std::string(point)];
    if (it->second.count > 0 && --it->second.count == 0) {
      rules_.erase(it);
      any_ = !rules_.empty();
    }
  }
  if (rule.delay_ms > 0) absl::SleepFor(absl::Milliseconds(rule.delay_ms));
  if (rule.error != Errc::kOk) {
    return MakeError(rule.error, absl::StrCat("injected fault at ", point));
  }
  return absl::OkStatus();
}

uint64_t FaultRegistry::Hits(const std::string& point) const {
  absl::MutexLock lock(&mu_);
  auto it = hits_.find(point);
  return it == hits_.end() ? 0 : it->second;
}

absl::Status LoadFaultsFromEnv() {
  const char* spec = getenv("RANGEFS_FAULTS");
  if (spec == nullptr) return absl::OkStatus();
  return FaultRegistry::Global().SetFromSpec(spec);
}

}  // namespace rangefs
