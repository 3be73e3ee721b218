#include "tests/util/subprocess.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <deque>
#include <fstream>
#include <sstream>

namespace rangefs::testing {

Subprocess::~Subprocess() {
  if (pid_ > 0) Stop(SIGKILL);
}

bool Subprocess::Start(const std::vector<std::string>& argv,
                       const std::string& log,
                       const std::vector<std::string>& env) {
  return StartPiped(argv, log, env, nullptr, nullptr);
}

bool Subprocess::StartPiped(const std::vector<std::string>& argv,
                            const std::string& log,
                            const std::vector<std::string>& env, int* to_child,
                            int* from_child) {
  int in[2] = {-1, -1}, out[2] = {-1, -1};
  if (to_child != nullptr &&
      (pipe2(in, O_CLOEXEC) != 0 || pipe2(out, O_CLOEXEC) != 0)) {
    return false;
  }
  int netns = -1;
  if (!netns_.empty() &&
      (netns = open(netns_.c_str(), O_RDONLY | O_CLOEXEC)) < 0) {
    return false;
  }
  std::vector<char*> args;
  for (const std::string& a : argv)
    args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = fork();
  if (pid < 0) {
    if (netns >= 0) close(netns);
    return false;
  }
  if (pid == 0) {
    if (netns >= 0 && setns(netns, CLONE_NEWNET) != 0) _exit(126);
    int fd = open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd >= 0) {
      dup2(fd, 1);
      dup2(fd, 2);
      close(fd);
    }
    if (to_child != nullptr) {
      dup2(in[0], 0);
      dup2(out[1], 1);
    }
    // A server must not outlive a test that crashed or was killed.
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    // Children must not inherit blocked signals from the test.
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    // Tests run rangefs's programs with abseil's mutex deadlock detection
    // (common/process.h); a benchmark sets RANGEFS_MUTEX_CHECKS=0 first.
    setenv("RANGEFS_MUTEX_CHECKS", "1", /*overwrite=*/0);
    for (const std::string& e : env) putenv(strdup(e.c_str()));
    execv(args[0], args.data());
    _exit(127);
  }
  if (netns >= 0) close(netns);
  pid_ = pid;
  if (to_child != nullptr) {
    close(in[0]);
    close(out[1]);
    *to_child = in[1];
    *from_child = out[0];
  }
  return true;
}

void Subprocess::Signal(int sig) {
  if (pid_ > 0) kill(pid_, sig);
}

int Subprocess::Stop(int sig) {
  if (pid_ <= 0) return -1;
  kill(pid_, sig);
  int status = 0;
  waitpid(pid_, &status, 0);
  pid_ = -1;
  return status;
}

bool Subprocess::running() {
  if (pid_ <= 0) return false;
  int status = 0;
  if (waitpid(pid_, &status, WNOHANG) == pid_) {
    pid_ = -1;
    return false;
  }
  return true;
}

int FreePort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  socklen_t len = sizeof(addr);
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  close(fd);
  return ntohs(addr.sin_port);
}

std::string BinDir() {
  const char* env = getenv("RANGEFS_BIN_DIR");
  return env ? env : RANGEFS_DEFAULT_BIN_DIR;
}

std::string ReadWhole(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

std::string Tail(const std::string& path, int lines) {
  std::ifstream in(path);
  std::deque<std::string> last;
  std::string line;
  while (std::getline(in, line)) {
    last.push_back(line);
    if (static_cast<int>(last.size()) > lines) last.pop_front();
  }
  std::ostringstream out;
  for (const std::string& l : last) out << l << "\n";
  return out.str();
}

}  // namespace rangefs::testing
