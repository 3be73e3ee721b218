// The race suite's harness (docs/race-suite.md): node processes
// (rangefs-racenode) driven one command at a time, scripts of concurrent
// per-node steps with named barriers and seeded jitter, a trace of what
// happened when, and the oracles the scenarios share.
#ifndef RANGEFS_TESTS_RACE_RACE_HARNESS_H_
#define RANGEFS_TESTS_RACE_RACE_HARNESS_H_

#include <cstdint>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "tests/util/subprocess.h"

namespace rangefs::race {

int64_t MonotonicNs();

struct Reply {
  bool ok = false;
  int err = 0;       // errno of an "err" reply; ETIMEDOUT: no reply.
  std::string text;  // After "ok " or "err N ".
  int64_t t_ns = 0;  // When the reply arrived.
};

// One node process. Commands: tests/tools/race_node.cc.
class RaceNode {
 public:
  RaceNode() = default;
  ~RaceNode();
  RaceNode(const RaceNode&) = delete;
  RaceNode& operator=(const RaceNode&) = delete;

  // A librangefs node of `config`, or a process working on `mount`.
  bool Start(const std::string& name, const std::string& config,
             const std::string& log, const std::string& mount = "",
             const std::vector<std::string>& extra_args = {});
  // The node `binary` run through `prefix` (docker exec -i CONTAINER):
  // ends when its input closes, so Kill() of the prefix ends it too.
  bool StartIn(const std::vector<std::string>& prefix,
               const std::string& binary, const std::string& name,
               const std::string& config, const std::string& log,
               const std::vector<std::string>& extra_args = {});
  // Sends one command and waits for its reply at most `timeout_ms`
  // (then the reply is ETIMEDOUT and the node is considered hung).
  Reply Call(const std::string& cmd, int timeout_ms = 30000);
  void Kill();           // SIGKILL, by PID.
  void Signal(int sig);  // SIGSTOP / SIGCONT: cut the node off and back.
  void Quit();  // "quit", then waits for the exit (SIGKILL if it hangs).
  // Start() runs the node in this network namespace (testing::NetLab).
  void set_netns(const std::string& path) { proc_.set_netns(path); }
  const std::string& name() const { return name_; }
  pid_t pid() const { return proc_.pid(); }
  const std::string& log() const { return log_; }
  bool hung() const { return hung_; }

 private:
  testing::Subprocess proc_;
  std::string name_, log_;
  int to_ = -1, from_ = -1;
  std::string buf_;
  bool hung_ = false;
};

// One line of an interleaving.
struct TraceLine {
  int64_t start_ns = 0, end_ns = 0;
  std::string node, cmd;
  std::string label;  // Of an "@LABEL CMD" step.
  Reply reply;
};

// Steps per node, run concurrently (one thread per node, each node's steps
// in order). Besides node commands a step may be
//   barrier NAME   wait until every script naming NAME reaches it
//   jitter MS      sleep a time in [0, MS] ms drawn from the seed
//   @LABEL CMD     run CMD and keep its reply under LABEL
struct ScriptResult {
  bool hung = false;  // A node did not answer in time.
  std::vector<TraceLine> trace;
  std::map<std::string, Reply> labels;
  std::string Interleaving() const;  // The trace, by start time.
  const Reply& Get(const std::string& label) const;
  // The step labelled `label`, with its start and end, or null.
  const TraceLine* Line(const std::string& label) const;
};
ScriptResult RunScript(const std::vector<RaceNode*>& nodes,
                       const std::vector<std::vector<std::string>>& steps,
                       uint64_t seed, int step_timeout_ms = 30000);

// ---- byte contents, as the nodes report them ("OFF+LEN=HEX,...").
std::string Runs(uint64_t base, const std::string& bytes);
// Parses runs back into bytes starting at `base`.
std::string FromRuns(uint64_t base, const std::string& runs);

// ---- the visibility oracle (scenarios 1, 4, 5).
// A writer applies operations one after another; models[k] is the file
// after k of them and done_ns[k] (k >= 1) when operation k returned. A
// watcher's report (mwatch_stop) lists, per page, each value it loaded and
// the last time it loaded it. A load at time T of page p is valid when it
// equals models[k][p] for some k >= the number of operations done before
// T: a node must never show data older than a completed operation (a page
// re-inserted between an invalidation and the write's completion, or a
// page at its old index after a collapse). Returns "" or the violation.
// A page past the end of every allowed model must not load at all
// (SIGBUS); with `zeros_past_eof` it may load as zeros: a FUSE mount's
// kernel keeps a larger i_size after another node's truncate until it
// asks again (no notification can shrink it), and the page past the end
// it faults in is the zeros of a short READ, never older data.
std::string CheckVisibility(const std::vector<std::string>& models,
                            const std::vector<int64_t>& done_ns,
                            const std::string& watch_report,
                            bool zeros_past_eof = false);

}  // namespace rangefs::race

#endif  // RANGEFS_TESTS_RACE_RACE_HARNESS_H_
