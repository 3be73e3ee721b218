#include "tests/util/fuse_watchdog.h"

#include <dirent.h>
#include <sys/mount.h>

#include <cstdio>
#include <cstdlib>

#include <fstream>
#include <sstream>

#include "common/process.h"
#include "tests/util/subprocess.h"

namespace rangefs::testing {
std::string KernelStacks(pid_t pid, bool waiting_only) {
  std::string out;
  const std::string tasks = "/proc/" + std::to_string(pid) + "/task";
  DIR* d = opendir(tasks.c_str());
  if (d == nullptr) return "(no tasks of " + std::to_string(pid) + ")\n";
  while (dirent* e = readdir(d)) {
    if (e->d_name[0] == '.') continue;
    const std::string t = tasks + "/" + e->d_name;
    std::string stat = ReadWhole(t + "/stat");
    // The state follows the ")" that ends the command name.
    const size_t paren = stat.rfind(')');
    const char state = paren != std::string::npos && paren + 2 < stat.size()
                           ? stat[paren + 2]
                           : '?';
    const std::string stack = ReadWhole(t + "/stack");
    const bool waiting = state == 'D' ||
                         stack.find("folio") != std::string::npos ||
                         stack.find("inval") != std::string::npos ||
                         stack.find("fuse_") != std::string::npos;
    if (waiting_only && !waiting) continue;
    // A daemon thread waiting for the next request is not stuck.
    if (waiting_only && state != 'D' &&
        stack.find("fuse_dev_do_read") != std::string::npos) {
      continue;
    }
    std::string comm = ReadWhole(t + "/comm");
    if (!comm.empty() && comm.back() == '\n') comm.pop_back();
    out += "-- task " + std::to_string(pid) + "/" + e->d_name + " (" + comm +
           ") state " + state + "\n" + stack;
  }
  closedir(d);
  return out;
}

std::vector<pid_t> ProcessGroup(pid_t pgid) {
  std::vector<pid_t> out;
  DIR* d = opendir("/proc");
  if (d == nullptr) return out;
  while (dirent* e = readdir(d)) {
    const pid_t pid = static_cast<pid_t>(atoi(e->d_name));
    if (pid <= 0) continue;
    const std::string stat =
        ReadWhole("/proc/" + std::to_string(pid) + "/stat");
    // After the command name: state, ppid, pgrp.
    const size_t paren = stat.rfind(')');
    if (paren == std::string::npos) continue;
    char state;
    int ppid, pgrp;
    if (sscanf(stat.c_str() + paren + 1, " %c %d %d", &state, &ppid, &pgrp) ==
            3 &&
        pgrp == pgid) {
      out.push_back(pid);
    }
  }
  closedir(d);
  return out;
}

std::string FuseConnection(const std::string& mount_point) {
  (void)mount("fusectl", "/sys/fs/fuse/connections", "fusectl", 0,
              nullptr);  // EBUSY if mounted already.
  const std::string dev = MountDevice(mount_point);
  if (dev.empty()) return "";
  return "/sys/fs/fuse/connections/" + dev.substr(dev.find(':') + 1);
}

bool AbortFuseConnection(const std::string& mount_point) {
  const std::string conn = FuseConnection(mount_point);
  if (conn.empty()) return false;
  std::ofstream abort(conn + "/abort");
  abort << "1";
  return static_cast<bool>(abort);
}

std::vector<std::string> MountsUnder(const std::string& dir) {
  std::vector<std::string> out;
  std::ifstream mi("/proc/self/mountinfo");
  std::string line;
  while (std::getline(mi, line)) {
    std::istringstream f(line);
    std::string id, parent, majmin, root, point;
    f >> id >> parent >> majmin >> root >> point;
    if (point.size() > dir.size() && point.compare(0, dir.size(), dir) == 0 &&
        point[dir.size()] == '/') {
      out.push_back(point);
    }
  }
  return out;
}

}  // namespace rangefs::testing
