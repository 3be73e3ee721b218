// Test helpers for real processes: start a binary with arguments (its
// output to a log file), stop it by its PID (SIGTERM or SIGKILL), and pick
// free loopback ports. Only processes started here are ever signalled.
#ifndef RANGEFS_TESTS_UTIL_SUBPROCESS_H_
#define RANGEFS_TESTS_UTIL_SUBPROCESS_H_

#include <sys/types.h>

#include <string>
#include <vector>

namespace rangefs::testing {

class Subprocess {
 public:
  Subprocess() = default;
  ~Subprocess();  // SIGKILLs the process if still running.
  Subprocess(const Subprocess&) = delete;
  Subprocess& operator=(const Subprocess&) = delete;

  // Starts `argv[0]` with `argv`, stdout and stderr appended to `log`.
  // `env` entries ("NAME=value") are added to the environment.
  bool Start(const std::vector<std::string>& argv, const std::string& log,
             const std::vector<std::string>& env = {});
  // The same with the child's stdin and stdout on pipes: *to_child is
  // written to its stdin, *from_child reads its stdout (stderr goes to
  // `log`). The caller closes both.
  bool StartPiped(const std::vector<std::string>& argv, const std::string& log,
                  const std::vector<std::string>& env, int* to_child,
                  int* from_child);
  // Sends `sig` and waits for the exit; returns the wait status.
  int Stop(int sig);
  // Sends `sig` without waiting.
  void Signal(int sig);
  bool running();
  pid_t pid() const { return pid_; }
  // Starts the process in the network namespace at `path`
  // (/run/netns/NAME, testing::NetLab) instead of this one.
  void set_netns(const std::string& path) { netns_ = path; }

 private:
  pid_t pid_ = -1;
  std::string netns_;
};

// A TCP port on 127.0.0.1 that was free a moment ago.
int FreePort();

// The directory holding the rangefs binaries of this build.
std::string BinDir();

// The whole of a file ("" if it cannot be read).
std::string ReadWhole(const std::string& path);

// The last `lines` lines of a file, for failure messages.
std::string Tail(const std::string& path, int lines = 30);

}  // namespace rangefs::testing

#endif  // RANGEFS_TESTS_UTIL_SUBPROCESS_H_
