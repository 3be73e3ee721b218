// The race suite checks itself (docs/race-suite.md, "Evidence that the
// checks can fail"): each scenario of race_test, run with an unsafe switch
// that removes a protection it stands for, must fail. A scenario that
// passes without its protection proves nothing about it.
//
// Each row runs `race_test --gtest_filter=RaceTest.SCENARIO` from seed 1
// with the switch set in RANGEFS_FAULTS (so in every server, node and
// daemon it starts), in a process group and a TMPDIR of its own, and
// passes only if the scenario's oracle reported a failure (a hang counts:
// the suite's watchdog reports it). If race_test itself does not end, the
// row prints the kernel stacks of its processes, aborts the FUSE mounts it
// made and fails.
//
//   RANGEFS_SELFCHECK_SECONDS  the scenario's budget (default 30): a
//                              switch must break it within that
//   RANGEFS_RACE_TABLE_DIR     each row writes its line of the table
//                              there (scripts/race-selfcheck puts them
//                              in docs/race-suite.md)
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "tests/util/fuse_watchdog.h"
#include "tests/util/subprocess.h"
#include "tests/util/temp_dir.h"

namespace rangefs::race {
namespace {

struct Row {
  const char* scenario;  // A RaceTest test name.
  const char* unsafe;    // The switch (common/fault_injection.h).
};

// Which switch breaks which scenario. A scenario appears once for each
// protection it stands for; each F scenario also with the mount's own.
const Row kRows[] = {
    {"S1_DirectWriteVsFaultsOnAnotherNode", "unsafe.client.inval_keep_cache"},
    {"S1_DirectWriteVsFaultsOnAnotherNode",
     "unsafe.client.fault_without_inval"},
    {"S2_DirectWriteFromItsOwnMapping", "unsafe.client.no_copy_stops"},
    {"S3_WriteFaultsVsFallocate", "unsafe.client.fault_without_inval"},
    {"S4_TruncateAndPunchVsFaults", "unsafe.client.inval_keep_cache"},
    {"S5_CollapseAndInsertVsFaults", "unsafe.client.inval_keep_cache"},
    {"S6_StaleMappingIsRemapped", "unsafe.meta.ignore_cookie"},
    {"S7_SimultaneousWriteFaultsOnAHole", "unsafe.client.fault_without_inval"},
    {"S8_MappedAndBufferedWritesOverHoles",
     "unsafe.client.fault_without_inval"},
    {"S9_CutOffNodeIsFencedAndItsLateWriteNeverLands",
     "unsafe.data.ignore_fence"},
    {"S9_CutOffNodeIsFencedAndItsLateWriteNeverLands",
     "unsafe.lockd.never_evict"},
    {"S10_LockdRestartReplaysBeforeGranting", "unsafe.lockd.grant_in_grace"},
    {"Stress_RandomOperationsConverge", "unsafe.client.inval_keep_cache"},
    {"F1_DirectWriteVsFaultsThroughMounts", "unsafe.fuse.keep_kernel_cache"},
    {"F2_DirectWriteFromItsOwnMappingThroughMounts",
     "unsafe.fuse.direct_by_open_flags"},
    {"F3_WriteFaultsVsFallocateThroughMounts", "unsafe.fuse.keep_kernel_cache"},
    {"F4_TruncateAndPunchVsFaultsThroughMounts",
     "unsafe.fuse.keep_kernel_cache"},
    {"F4_TruncateAndPunchVsFaultsThroughMounts",
     "unsafe.client.inval_keep_cache"},
    {"F4_TruncateAndPunchVsFaultsThroughMounts",
     "unsafe.fuse.inval_waits_on_requests"},
    {"F5_CollapseAndInsertVsFaultsThroughMounts",
     "unsafe.fuse.keep_kernel_cache"},
    {"F6_StaleMappingIsRemappedThroughMounts", "unsafe.meta.ignore_cookie"},
    {"F7_SimultaneousWriteFaultsOnAHoleThroughMounts",
     "unsafe.fuse.keep_kernel_cache"},
    {"F9_CutOffNodeIsFencedAndItsLateWriteNeverLandsThroughMounts",
     "unsafe.data.ignore_fence"},
    {"F10_LockdRestartReplaysBeforeGrantingThroughMounts",
     "unsafe.lockd.grant_in_grace"},
    {"FStress_RandomOperationsThroughMountsConverge",
     "unsafe.client.inval_keep_cache"},
    {"FStress_RandomOperationsThroughMountsConverge",
     "unsafe.fuse.keep_kernel_cache"},
    // Compose only (RANGEFS_RACE_COMPOSE; skipped without it).
    {"C1_PartitionedContainerIsFencedAndItsLateWriteNeverLands",
     "unsafe.data.ignore_fence"},
    {"C2_KilledContainerLosesItsLocksAndTheOthersGoOn",
     "unsafe.lockd.never_evict"},
    {"N1_PartitionedNodeIsFencedAndItsLateWriteNeverLands",
     "unsafe.data.ignore_fence"},
    {"FN1_PartitionedNodeIsFencedAndItsLateWriteNeverLandsThroughMounts",
     "unsafe.data.ignore_fence"},
    {"FN3_NodeCutOffFromLockdStopsServingItsCacheThroughMounts",
     "unsafe.client.ignore_lease"},
    {"N2_LockdUnreachableForLessThanTheLeaseEvictsNothing",
     "unsafe.lockd.evict_early"},
    {"FN2_LockdUnreachableForLessThanTheLeaseEvictsNothingThroughMounts",
     "unsafe.lockd.evict_early"},
    {"N4_LockdKilledAroundTheEvictionOfACutOffNode",
     "unsafe.lockd.forget_sessions"},
    {"FN4_LockdKilledAroundTheEvictionOfACutOffNodeThroughMounts",
     "unsafe.lockd.forget_sessions"},
    {"N5_MetadataServerKilledUnderLoad", "unsafe.meta.forget_replies"},
    {"N6_DataServersUnreachableForLessThanTheLeaseLoseNothing",
     "unsafe.client.data_fail_fast"},
    {"FN6_DataServersUnreachableForLessThanTheLeaseLoseNothingThroughMounts",
     "unsafe.client.data_fail_fast"},
    {"N7_LossyLinkLosesNothing", "unsafe.client.data_fail_fast"},
    {"FN7_LossyLinkLosesNothingThroughMounts", "unsafe.client.data_fail_fast"},
    {"FN5_MetadataServerKilledUnderLoadThroughMounts",
     "unsafe.meta.forget_replies"},
};

uint64_t EnvOr(const char* name, uint64_t dflt) {
  const char* v = getenv(name);
  return v == nullptr ? dflt : strtoull(v, nullptr, 10);
}

// One line for a markdown table cell.
std::string Cell(std::string s, size_t max = 220) {
  for (char& c : s) {
    if (c == '\n' || c == '\t') c = ' ';
  }
  std::string out;
  for (char c : s) {
    if (c == '|') out += '\\';
    out += c;
  }
  if (out.size() > max) out = out.substr(0, max - 3) + "...";
  return out;
}

// What race_test printed for a failed scenario: "seed N (iteration I)" and
// the oracle's report, or empty strings.
void ParseFailure(const std::string& out, const std::string& scenario,
                  std::string* where, std::string* report) {
  const std::string tag = scenario + ": FAILED at seed ";
  const size_t at = out.find(tag);
  if (at == std::string::npos) return;
  const size_t colon = out.find("): ", at + tag.size());
  if (colon == std::string::npos) return;
  *where = "seed " + out.substr(at + tag.size(), colon + 1 - at - tag.size());
  const size_t end = out.find("\ninterleaving:", colon);
  *report = out.substr(colon + 3, end == std::string::npos ? std::string::npos
                                                           : end - colon - 3);
}

class SelfCheck : public ::testing::TestWithParam<int> {};

TEST_P(SelfCheck, ScenarioFailsWithoutItsProtection) {
  const Row& row = kRows[GetParam()];
  testing::TempDir tmp;
  ASSERT_FALSE(tmp.path().empty());
  const std::string log = tmp.path() + "/race_test.log";
  const std::string bin = testing::BinDir() + "/tests/race_test";
  const std::string filter =
      std::string("--gtest_filter=RaceTest.") + row.scenario;
  const uint64_t budget = EnvOr("RANGEFS_SELFCHECK_SECONDS", 30);
  const auto start = std::chrono::steady_clock::now();
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    setpgid(0, 0);  // Its own group: the cluster it starts dies with it.
    const int fd = open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd >= 0) {
      dup2(fd, 1);
      dup2(fd, 2);
    }
    setenv("RANGEFS_FAULTS", (std::string(row.unsafe) + "=0:INTERNAL").c_str(),
           1);
    setenv("RANGEFS_RACE_SECONDS", std::to_string(budget).c_str(), 1);
    setenv("RANGEFS_RACE_SEED", "1", 1);
    setenv("TMPDIR", tmp.path().c_str(), 1);
    execl(bin.c_str(), bin.c_str(), filter.c_str(),
          static_cast<char*>(nullptr));
    _exit(127);
  }
  setpgid(child, child);
  // The scenario's budget, its last iteration, its watchdog (20 s a step)
  // and its cluster's start and stop.
  const auto deadline = start + std::chrono::seconds(budget + 240);
  int status = 0;
  bool ended = false;
  while (std::chrono::steady_clock::now() < deadline) {
    if (waitpid(child, &status, WNOHANG) == child) {
      ended = true;
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  std::string stuck;
  if (!ended) {
    stuck = "race_test did not end; kernel stacks:\n";
    for (pid_t p : testing::ProcessGroup(child)) {
      stuck += testing::KernelStacks(p, false);
    }
  }
  // Whatever it left: its mounts aborted and unmounted, its group killed.
  const std::vector<std::string> mounts = testing::MountsUnder(tmp.path());
  for (const std::string& m : mounts) testing::AbortFuseConnection(m);
  kill(-child, SIGKILL);  // The group we made, by PID.
  if (!ended) waitpid(child, &status, 0);
  for (auto it = mounts.rbegin(); it != mounts.rend(); ++it) {
    (void)!system(("umount -l " + *it + " 2>/dev/null").c_str());
  }
  const double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
          .count();
  const std::string out = testing::ReadWhole(log);
  if (ended && out.find("[  SKIPPED ]") != std::string::npos) {
    GTEST_SKIP() << row.scenario << " was skipped: " << testing::Tail(log, 8);
  }
  ASSERT_TRUE(ended) << row.scenario << " with " << row.unsafe << ": " << stuck
                     << "\n"
                     << testing::Tail(log, 60);
  ASSERT_FALSE(WIFEXITED(status) && WEXITSTATUS(status) == 0)
      << row.scenario << " passed with " << row.unsafe
      << " set: it does not check the protection that switch removes.\n"
      << testing::Tail(log, 20);
  std::string where, report;
  ParseFailure(out, row.scenario, &where, &report);
  ASSERT_FALSE(where.empty())
      << row.scenario << " with " << row.unsafe
      << " failed, but not by its oracle (status " << status << "):\n"
      << testing::Tail(log, 60);
  printf("selfcheck %-44s %-36s fails at %s in %.0f s: %s\n", row.scenario,
         row.unsafe, where.c_str(), secs, Cell(report, 160).c_str());
  if (const char* dir = getenv("RANGEFS_RACE_TABLE_DIR")) {
    char name[32];
    snprintf(name, sizeof name, "/%03d.row", GetParam());
    std::ofstream(std::string(dir) + name)
        << "| `" << row.scenario << "` | `" << row.unsafe << "` | " << where
        << " | " << Cell(report) << " |\n";
  }
}

std::string RowName(const ::testing::TestParamInfo<int>& info) {
  const Row& row = kRows[info.param];
  std::string s = row.scenario;
  s = s.substr(0, s.find('_'));
  std::string sw = std::string(row.unsafe).substr(sizeof("unsafe.") - 1);
  for (char& c : sw) {
    if (c == '.') c = '_';
  }
  return s + "_" + sw;
}

INSTANTIATE_TEST_SUITE_P(Rows, SelfCheck,
                         ::testing::Range(0, static_cast<int>(sizeof kRows /
                                                              sizeof *kRows)),
                         RowName);

}  // namespace
}  // namespace rangefs::race
