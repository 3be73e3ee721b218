#include "tests/race/race_harness.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <sstream>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"

namespace rangefs::race {

int64_t MonotonicNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

RaceNode::~RaceNode() {
  if (to_ >= 0) close(to_);
  if (from_ >= 0) close(from_);
}

bool RaceNode::Start(const std::string& name, const std::string& config,
                     const std::string& log, const std::string& mount,
                     const std::vector<std::string>& extra_args) {
  name_ = name;
  log_ = log;
  std::vector<std::string> argv = {
      testing::BinDir() + "/tests/rangefs-racenode", "--cluster", config,
      "--name", name};
  if (!mount.empty()) {
    argv.push_back("--mount");
    argv.push_back(mount);
  }
  argv.insert(argv.end(), extra_args.begin(), extra_args.end());
  if (!proc_.StartPiped(argv, log, {}, &to_, &from_)) return false;
  Reply r = Call("", 60000);  // The "ready" line.
  return r.ok;
}

bool RaceNode::StartIn(const std::vector<std::string>& prefix,
                       const std::string& binary, const std::string& name,
                       const std::string& config, const std::string& log,
                       const std::vector<std::string>& extra_args) {
  name_ = name;
  log_ = log;
  std::vector<std::string> argv = prefix;
  for (const std::string& a : {binary, std::string("--cluster"), config,
                               std::string("--name"), name}) {
    argv.push_back(a);
  }
  argv.insert(argv.end(), extra_args.begin(), extra_args.end());
  if (!proc_.StartPiped(argv, log, {}, &to_, &from_)) return false;
  Reply r = Call("", 60000);
  return r.ok;
}

Reply RaceNode::Call(const std::string& cmd, int timeout_ms) {
  Reply r;
  if (hung_) {
    r.err = ETIMEDOUT;
    r.text = "node already hung";
    return r;
  }
  if (!cmd.empty()) {
    std::string line = cmd + "\n";
    if (write(to_, line.data(), line.size()) !=
        static_cast<ssize_t>(line.size())) {
      r.err = EPIPE;
      r.text = "node gone";
      return r;
    }
  }
  const int64_t deadline = MonotonicNs() + int64_t{timeout_ms} * 1000000;
  for (;;) {
    size_t nl = buf_.find('\n');
    if (nl != std::string::npos) {
      std::string line = buf_.substr(0, nl);
      buf_.erase(0, nl + 1);
      r.t_ns = MonotonicNs();
      if (line == "ready" || line == "ok" || line.rfind("ok ", 0) == 0) {
        r.ok = true;
        r.text = line.size() > 3 ? line.substr(3) : "";
      } else if (line.rfind("err ", 0) == 0) {
        std::vector<std::string> parts =
            absl::StrSplit(line.substr(4), absl::MaxSplits(' ', 1));
        (void)absl::SimpleAtoi(parts[0], &r.err);
        r.text = parts.size() > 1 ? parts[1] : "";
      } else {
        r.err = EPROTO;
        r.text = line;
      }
      return r;
    }
    const int64_t left = deadline - MonotonicNs();
    pollfd pf{from_, POLLIN, 0};
    if (left <= 0 || poll(&pf, 1, static_cast<int>(left / 1000000) + 1) == 0) {
      hung_ = true;
      r.err = ETIMEDOUT;
      r.text = "no reply within " + std::to_string(timeout_ms) + " ms";
      return r;
    }
    char chunk[65536];
    ssize_t n = read(from_, chunk, sizeof chunk);
    if (n <= 0) {
      if (n < 0 && errno == EINTR) continue;
      r.err = EPIPE;
      r.text = "node exited";
      return r;
    }
    buf_.append(chunk, static_cast<size_t>(n));
  }
}

void RaceNode::Signal(int sig) { proc_.Signal(sig); }

void RaceNode::Kill() {
  if (proc_.running()) proc_.Stop(SIGKILL);
}

void RaceNode::Quit() {
  if (!proc_.running()) return;
  if (!hung_) {
    Reply r = Call("quit", 30000);
    if (r.ok) {
      for (int i = 0; i < 300 && proc_.running(); ++i) usleep(10000);
    }
  }
  if (proc_.running()) proc_.Stop(SIGKILL);
}

// ------------------------------------------------------------- scripts

namespace {

class Barriers {
 public:
  explicit Barriers(const std::vector<std::vector<std::string>>& steps) {
    for (const auto& node : steps) {
      for (const std::string& s : node) {
        if (s.rfind("barrier ", 0) == 0) ++expected_[s.substr(8)];
      }
    }
  }
  // False if the wait gave up (someone hung).
  bool Wait(const std::string& name, int64_t deadline_ns) {
    absl::MutexLock lock(&mu_);
    ++arrived_[name];
    auto all = [&] {
      mu_.AssertHeld();
      return arrived_[name] >= expected_[name] || aborted_;
    };
    while (!all()) {
      const int64_t left = deadline_ns - MonotonicNs();
      if (left <= 0) return false;
      mu_.AwaitWithTimeout(absl::Condition(&all), absl::Nanoseconds(left));
    }
    return !aborted_;
  }
  void Abort() {
    absl::MutexLock lock(&mu_);
    aborted_ = true;
  }

 private:
  absl::Mutex mu_;
  std::map<std::string, int> expected_;
  std::map<std::string, int> arrived_ ABSL_GUARDED_BY(mu_);
  bool aborted_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace

ScriptResult RunScript(const std::vector<RaceNode*>& nodes,
                       const std::vector<std::vector<std::string>>& steps,
                       uint64_t seed, int step_timeout_ms) {
  ScriptResult result;
  Barriers barriers(steps);
  absl::Mutex mu;
  std::vector<std::thread> threads;
  for (size_t n = 0; n < steps.size(); ++n) {
    threads.emplace_back([&, n] {
      std::mt19937_64 rng(seed * 1000003 + n);
      RaceNode& node = *nodes[n];
      for (const std::string& raw : steps[n]) {
        std::string step = raw;
        std::string label;
        if (!step.empty() && step[0] == '@') {
          size_t sp = step.find(' ');
          label = step.substr(1, sp - 1);
          step = step.substr(sp + 1);
        }
        TraceLine line;
        line.node = node.name();
        line.cmd = step;
        line.label = label;
        line.start_ns = MonotonicNs();
        if (step.rfind("barrier ", 0) == 0) {
          if (!barriers.Wait(
                  step.substr(8),
                  MonotonicNs() + int64_t{step_timeout_ms} * 2000000)) {
            line.reply.err = ETIMEDOUT;
            line.reply.text = "barrier abandoned";
          } else {
            line.reply.ok = true;
          }
        } else if (step.rfind("jitter ", 0) == 0) {
          uint64_t max_ms = strtoull(step.c_str() + 7, nullptr, 10);
          uint64_t us =
              std::uniform_int_distribution<uint64_t>(0, max_ms * 1000)(rng);
          usleep(static_cast<useconds_t>(us));
          line.reply.ok = true;
          line.cmd = "jitter " + std::to_string(us / 1000) + " ms";
        } else {
          line.reply = node.Call(step, step_timeout_ms);
        }
        line.end_ns = MonotonicNs();
        const bool hung = line.reply.err == ETIMEDOUT;
        absl::MutexLock lock(&mu);
        result.trace.push_back(line);
        if (!label.empty()) result.labels[label] = line.reply;
        if (hung) {
          result.hung = true;
          barriers.Abort();
          return;
        }
      }
    });
  }
  for (std::thread& t : threads) t.join();
  return result;
}

std::string ScriptResult::Interleaving() const {
  std::vector<TraceLine> sorted = trace;
  std::sort(sorted.begin(), sorted.end(),
            [](const TraceLine& a, const TraceLine& b) {
              return a.start_ns < b.start_ns;
            });
  const int64_t t0 = sorted.empty() ? 0 : sorted.front().start_ns;
  std::ostringstream o;
  for (const TraceLine& l : sorted) {
    char head[96];
    snprintf(head, sizeof head, "  %8.3f..%8.3f ms  %-4s ",
             (l.start_ns - t0) / 1e6, (l.end_ns - t0) / 1e6, l.node.c_str());
    std::string reply =
        l.reply.ok ? "ok " + l.reply.text
                   : "err " + std::to_string(l.reply.err) + " " + l.reply.text;
    if (reply.size() > 160) reply = reply.substr(0, 160) + "...";
    o << head << l.cmd << "  ->  " << reply << "\n";
  }
  return o.str();
}

const TraceLine* ScriptResult::Line(const std::string& label) const {
  for (const TraceLine& l : trace) {
    if (l.label == label) return &l;
  }
  return nullptr;
}

const Reply& ScriptResult::Get(const std::string& label) const {
  static const Reply missing;
  auto it = labels.find(label);
  return it == labels.end() ? missing : it->second;
}

// ------------------------------------------------------------ contents

std::string Runs(uint64_t base, const std::string& bytes) {
  std::ostringstream o;
  size_t i = 0;
  char hex[3];
  while (i < bytes.size()) {
    size_t j = i + 1;
    while (j < bytes.size() && bytes[j] == bytes[i]) ++j;
    snprintf(hex, sizeof hex, "%02x", static_cast<unsigned char>(bytes[i]));
    if (i > 0) o << ",";
    o << base + i << "+" << j - i << "=" << hex;
    i = j;
  }
  return o.str();
}

std::string FromRuns(uint64_t base, const std::string& runs) {
  std::string out;
  for (absl::string_view run : absl::StrSplit(runs, ',', absl::SkipEmpty())) {
    uint64_t off = 0, len = 0;
    unsigned int byte = 0;
    if (sscanf(std::string(run).c_str(), "%lu+%lu=%x", &off, &len, &byte) !=
        3) {
      continue;
    }
    if (off < base) continue;
    if (out.size() < off - base + len) out.resize(off - base + len, '\0');
    memset(&out[off - base], static_cast<int>(byte), len);
  }
  return out;
}

std::string CheckVisibility(const std::vector<std::string>& models,
                            const std::vector<int64_t>& done_ns,
                            const std::string& watch_report,
                            bool zeros_past_eof) {
  for (absl::string_view item :
       absl::StrSplit(watch_report, ' ', absl::SkipEmpty())) {
    if (item.rfind("loads=", 0) == 0) continue;
    int64_t t = 0;
    uint64_t page = 0;
    unsigned int value = 0;
    if (sscanf(std::string(item).c_str(), "%ld@%lu:%x", &t, &page, &value) !=
        3) {
      return "unreadable watch report item " + std::string(item);
    }
    // Operations done before the load: models from there on are allowed.
    size_t done = 0;
    while (done + 1 < models.size() && done_ns[done + 1] != 0 &&
           done_ns[done + 1] < t) {
      ++done;
    }
    bool valid = false;
    std::string allowed;
    for (size_t k = done; k < models.size(); ++k) {
      const uint64_t at = page * 4096;
      if (at >= models[k].size()) {  // Past EOF then.
        if (zeros_past_eof) {
          allowed += " 0";
          if (value == 0) valid = true;
        }
        continue;
      }
      const unsigned char want = static_cast<unsigned char>(models[k][at]);
      allowed += " " + std::to_string(want);
      if (want == value) valid = true;
    }
    if (!valid) {
      std::ostringstream o;
      o << "page " << page << " showed " << value << " at t=" << t << " after "
        << done << " operations had completed (allowed:" << allowed << ")";
      return o.str();
    }
  }
  return "";
}

}  // namespace rangefs::race
