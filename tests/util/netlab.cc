#include "tests/util/netlab.h"

#include <dirent.h>
#include <fcntl.h>
#include <net/if.h>
#include <sched.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>

namespace rangefs::testing {
namespace {

constexpr char kSubnet[] = "10.201.0.";

// Labs made by this process so far: a lab's names are its own, as the
// kernel frees a namespace (and the veth in it) only some time after its
// last process is gone.
std::atomic<int> labs{0};

// The program `name` from the system directories ("" if absent): tests
// run with whatever PATH their runner has.
std::string Which(const std::string& name) {
  for (const char* dir : {"/usr/sbin/", "/sbin/", "/usr/bin/", "/bin/"}) {
    std::string path = dir + name;
    if (access(path.c_str(), X_OK) == 0) return path;
  }
  return "";
}

ino_t NetnsInode(const char* path) {
  struct stat st {};
  return stat(path, &st) == 0 ? st.st_ino : 0;
}

// Runs `argv` (argv[0] a bare program name) in the network namespace at
// `netns` ("" for this one); its output in *out.
bool RunIn(const std::vector<std::string>& argv, const std::string& netns,
           std::string* out) {
  std::string prog = Which(argv[0]);
  if (prog.empty()) {
    *out = argv[0] + " is not installed";
    return false;
  }
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) {
    *out = "pipe: " + std::string(strerror(errno));
    return false;
  }
  std::vector<char*> args;
  args.push_back(prog.data());
  for (size_t i = 1; i < argv.size(); ++i) {
    args.push_back(const_cast<char*>(argv[i].c_str()));
  }
  args.push_back(nullptr);
  int ns = netns.empty() ? -1 : open(netns.c_str(), O_RDONLY | O_CLOEXEC);
  pid_t pid = fork();
  if (pid == 0) {
    dup2(fds[1], 1);
    dup2(fds[1], 2);
    if (ns >= 0 && setns(ns, CLONE_NEWNET) != 0) _exit(126);
    execv(args[0], args.data());
    _exit(127);
  }
  close(fds[1]);
  if (ns >= 0) close(ns);
  out->clear();
  char buf[512];
  ssize_t n;
  while ((n = read(fds[0], buf, sizeof buf)) > 0) out->append(buf, n);
  close(fds[0]);
  int status = 0;
  if (pid < 0 || waitpid(pid, &status, 0) != pid) return false;
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return true;
  std::string cmd;
  for (const std::string& a : argv) cmd += (cmd.empty() ? "" : " ") + a;
  *out = cmd + ": " + *out;
  return false;
}

bool LoopbackUp(std::string* why) {
  int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  struct ifreq ifr {};
  strncpy(ifr.ifr_name, "lo", IFNAMSIZ - 1);
  bool ok = fd >= 0 && ioctl(fd, SIOCGIFFLAGS, &ifr) == 0;
  if (ok) {
    ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
    ok = ioctl(fd, SIOCSIFFLAGS, &ifr) == 0;
  }
  if (!ok) *why = "loopback up: " + std::string(strerror(errno));
  if (fd >= 0) close(fd);
  return ok;
}

}  // namespace

bool NetLab::EnterPrivateNetwork(std::string* why) {
  if (unshare(CLONE_NEWNET) != 0) {
    *why = "unshare(CLONE_NEWNET): " + std::string(strerror(errno));
    return false;
  }
  return LoopbackUp(why);
}

std::string NetLab::Unavailable() {
  if (geteuid() != 0) return "network namespaces need root";
  if (NetnsInode("/proc/self/ns/net") == NetnsInode("/proc/1/ns/net")) {
    return "this process is in the machine's network namespace "
           "(NetLab::EnterPrivateNetwork was not called, or failed)";
  }
  for (const char* prog : {"ip", "iptables"}) {
    if (Which(prog).empty()) return std::string(prog) + " is not installed";
  }
  return "";
}

bool NetLab::Run(const std::vector<std::string>& argv, std::string* why) {
  return RunIn(argv, "", why);
}

void NetLab::RemoveOrphans() {
  DIR* d = opendir("/run/netns");
  if (d == nullptr) return;
  std::vector<std::string> dead;
  while (dirent* e = readdir(d)) {
    unsigned pid = 0;
    char dash = 0;
    if (sscanf(e->d_name, "rfs%u%c", &pid, &dash) == 2 && dash == '-' &&
        kill(static_cast<pid_t>(pid), 0) != 0 && errno == ESRCH) {
      dead.push_back(e->d_name);
    }
  }
  closedir(d);
  std::string ignored;
  for (const std::string& ns : dead) Run({"ip", "netns", "del", ns}, &ignored);
}

bool NetLab::Init(std::string* why) {
  if (ready_) return true;
  if (std::string u = Unavailable(); !u.empty()) {
    *why = u;
    return false;
  }
  RemoveOrphans();
  lab_ = std::to_string(labs++);
  prefix_ = "rfs" + std::to_string(getpid()) + "-" + lab_ + "-";
  bridge_ = "rfsbr" + lab_;
  if (!Run({"ip", "link", "add", bridge_, "type", "bridge"}, why) ||
      !Run({"ip", "addr", "add", std::string(kSubnet) + "254/24", "dev",
            bridge_},
           why) ||
      !Run({"ip", "link", "set", bridge_, "up"}, why)) {
    return false;
  }
  ready_ = true;
  return true;
}

NetLab::~NetLab() {
  std::string ignored;
  for (const auto& [name, h] : hosts_) {
    Run({"ip", "netns", "del", h.netns}, &ignored);
  }
  if (ready_) Run({"ip", "link", "del", bridge_}, &ignored);
}

std::string NetLab::AddHost(const std::string& name, std::string* why) {
  if (!Init(why)) return "";
  if (HasHost(name)) return Address(name);
  Host h;
  h.index = static_cast<int>(hosts_.size()) + 1;
  if (h.index > 200) {
    *why = "too many hosts";
    return "";
  }
  h.netns = prefix_ + name;
  h.address = kSubnet + std::to_string(h.index);
  // The bridge's end of the pair: at most 15 characters.
  const std::string port = "rv" + lab_ + "." + std::to_string(h.index);
  if (!Run({"ip", "netns", "add", h.netns}, why)) return "";
  hosts_[name] = h;  // The destructor removes it from here on.
  const std::string path = "/run/netns/" + h.netns;
  if (!Run({"ip", "link", "add", port, "type", "veth", "peer", "name", "eth0",
            "netns", h.netns},
           why) ||
      !Run({"ip", "link", "set", port, "master", bridge_, "up"}, why) ||
      !Run({"ip", "-n", h.netns, "addr", "add", h.address + "/24", "dev",
            "eth0"},
           why) ||
      !Run({"ip", "-n", h.netns, "link", "set", "eth0", "up"}, why) ||
      !Run({"ip", "-n", h.netns, "link", "set", "lo", "up"}, why)) {
    return "";
  }
  return h.address;
}

std::string NetLab::Address(const std::string& name) const {
  auto it = hosts_.find(name);
  return it == hosts_.end() ? "" : it->second.address;
}

std::string NetLab::NetnsPath(const std::string& name) const {
  auto it = hosts_.find(name);
  return it == hosts_.end() ? "" : "/run/netns/" + it->second.netns;
}

void NetLab::Rule(const std::string& name, const std::vector<std::string>& rule,
                  bool add) {
  std::vector<std::string> argv = {"iptables", "-w", add ? "-A" : "-D"};
  argv.insert(argv.end(), rule.begin(), rule.end());
  std::string out;
  if (!RunIn(argv, NetnsPath(name), &out)) {
    fprintf(stderr, "netlab: %s\n", out.c_str());
    if (error_.empty()) error_ = out;
  }
}

void NetLab::Cut(const std::string& a, const std::string& b) {
  for (const auto& [x, y] : {std::pair(a, b), std::pair(b, a)}) {
    Rule(x, {"OUTPUT", "-d", Address(y), "-j", "DROP"}, true);
    Rule(x, {"INPUT", "-s", Address(y), "-j", "DROP"}, true);
  }
}

void NetLab::Heal(const std::string& a, const std::string& b) {
  for (const auto& [x, y] : {std::pair(a, b), std::pair(b, a)}) {
    Rule(x, {"OUTPUT", "-d", Address(y), "-j", "DROP"}, false);
    Rule(x, {"INPUT", "-s", Address(y), "-j", "DROP"}, false);
  }
}

void NetLab::Isolate(const std::string& name) {
  Rule(name, {"OUTPUT", "-o", "eth0", "-j", "DROP"}, true);
  Rule(name, {"INPUT", "-i", "eth0", "-j", "DROP"}, true);
}

void NetLab::Rejoin(const std::string& name) {
  Rule(name, {"OUTPUT", "-o", "eth0", "-j", "DROP"}, false);
  Rule(name, {"INPUT", "-i", "eth0", "-j", "DROP"}, false);
}

void NetLab::Lossy(const std::string& name, double p) {
  auto rules = [](double share) {
    const std::string ps = std::to_string(share);
    return std::vector<std::vector<std::string>>{
        {"OUTPUT", "-o", "eth0", "-m", "statistic", "--mode", "random",
         "--probability", ps, "-j", "DROP"},
        {"INPUT", "-i", "eth0", "-m", "statistic", "--mode", "random",
         "--probability", ps, "-j", "DROP"}};
  };
  if (auto it = lossy_.find(name); it != lossy_.end()) {
    for (const auto& r : rules(it->second)) Rule(name, r, false);
    lossy_.erase(it);
  }
  if (p > 0) {
    for (const auto& r : rules(p)) Rule(name, r, true);
    lossy_[name] = p;
  }
}

}  // namespace rangefs::testing
