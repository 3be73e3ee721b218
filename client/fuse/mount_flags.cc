#include "client/fuse/mount_flags.h"

#include <sys/mount.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <vector>

#include "absl/strings/str_split.h"

namespace rangefs::fuse {
namespace {

// mountinfo escapes space, tab, newline and backslash in paths as \ooo.
std::string Unescape(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 3 < s.size()) {
      const std::string oct = s.substr(i + 1, 3);
      if (oct.find_first_not_of("01234567") == std::string::npos) {
        out.push_back(static_cast<char>(std::stoi(oct, nullptr, 8)));
        i += 3;
        continue;
      }
    }
    out.push_back(s[i]);
  }
  return out;
}

}  // namespace

bool ApplyMountOption(const std::string& option, MountFlags* f) {
  struct Rule {
    const char* name;
    void (*apply)(MountFlags*);
  };
  static const Rule kRules[] = {
      {"ro", [](MountFlags* m) { m->read_only = true; }},
      {"rw", [](MountFlags* m) { m->read_only = false; }},
      {"nosuid", [](MountFlags* m) { m->nosuid = true; }},
      {"suid", [](MountFlags* m) { m->nosuid = false; }},
      {"nodev", [](MountFlags* m) { m->nodev = true; }},
      {"dev", [](MountFlags* m) { m->nodev = false; }},
      {"noexec", [](MountFlags* m) { m->noexec = true; }},
      {"exec", [](MountFlags* m) { m->noexec = false; }},
      {"noatime", [](MountFlags* m) { m->atime = Atime::kNever; }},
      {"atime", [](MountFlags* m) { m->atime = Atime::kRelative; }},
      {"relatime", [](MountFlags* m) { m->atime = Atime::kRelative; }},
      {"norelatime", [](MountFlags* m) { m->atime = Atime::kAlways; }},
      {"strictatime", [](MountFlags* m) { m->atime = Atime::kAlways; }},
      {"nostrictatime", [](MountFlags* m) { m->atime = Atime::kRelative; }},
      {"nodiratime", [](MountFlags* m) { m->nodiratime = true; }},
      {"diratime", [](MountFlags* m) { m->nodiratime = false; }},
      {"sync", [](MountFlags* m) { m->sync = true; }},
      {"async", [](MountFlags* m) { m->sync = false; }},
      {"dirsync", [](MountFlags* m) { m->dirsync = true; }},
      // Times are kept by the metadata server: nothing to defer.
      {"lazytime", [](MountFlags*) {}},
      {"nolazytime", [](MountFlags*) {}},
  };
  for (const Rule& r : kRules) {
    if (option == r.name) {
      r.apply(f);
      return true;
    }
  }
  return false;
}

bool ReadMountFlags(const std::string& mountpoint, MountFlags* flags) {
  std::ifstream in("/proc/self/mountinfo");
  bool found = false;
  for (std::string line; std::getline(in, line);) {
    // ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - TYPE ...
    std::vector<std::string> f = absl::StrSplit(line, ' ');
    if (f.size() < 6 || Unescape(f[4]) != mountpoint) continue;
    MountFlags m;
    m.atime = Atime::kAlways;  // mountinfo names relatime and noatime.
    for (absl::string_view o : absl::StrSplit(f[5], ',')) {
      ApplyMountOption(std::string(o), &m);
    }
    // The superblock's options follow "- TYPE SOURCE": sync, dirsync.
    for (size_t i = 6; i + 3 < f.size(); ++i) {
      if (f[i] != "-") continue;
      for (absl::string_view o : absl::StrSplit(f[i + 3], ',')) {
        if (o == "sync" || o == "dirsync") ApplyMountOption(std::string(o), &m);
      }
      break;
    }
    *flags = m;  // The last line is the topmost mount.
    found = true;
  }
  return found;
}

unsigned long MsFlags(const MountFlags& f) {
  unsigned long ms = 0;
  if (f.read_only) ms |= MS_RDONLY;
  if (f.nosuid) ms |= MS_NOSUID;
  if (f.nodev) ms |= MS_NODEV;
  if (f.noexec) ms |= MS_NOEXEC;
  if (f.nodiratime) ms |= MS_NODIRATIME;
  if (f.sync) ms |= MS_SYNCHRONOUS;
  if (f.dirsync) ms |= MS_DIRSYNC;
  switch (f.atime) {
    case Atime::kRelative:
      ms |= MS_RELATIME;
      break;
    case Atime::kNever:
      ms |= MS_NOATIME;
      break;
    case Atime::kAlways:
      ms |= MS_STRICTATIME;
      break;
  }
  return ms;
}

std::string Remount(const std::string& mountpoint, const std::string& options,
                    bool bind) {
  MountFlags flags;
  if (!ReadMountFlags(mountpoint, &flags)) {
    return mountpoint + " is not mounted";
  }
  for (absl::string_view o : absl::StrSplit(options, ',', absl::SkipEmpty())) {
    ApplyMountOption(std::string(o),
                     &flags);  // Others (remount, node=...) are not ours.
  }
  unsigned long ms = MS_REMOUNT | MsFlags(flags);
  if (bind) ms |= MS_BIND;
  if (mount(nullptr, mountpoint.c_str(), nullptr, ms, nullptr) != 0) {
    return std::string("mount(2) with MS_REMOUNT of ") + mountpoint + ": " +
           strerror(errno);
  }
  return "";
}

}  // namespace rangefs::fuse
