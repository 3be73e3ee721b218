// Lock kinds, modes and owners shared by lockd and the node's lock cache
// (DESIGN.md, "Locks"). Plain values; no gRPC.
#ifndef RANGEFS_LOCKMGR_LOCK_TYPES_H_
#define RANGEFS_LOCKMGR_LOCK_TYPES_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>

namespace rangefs::lockmgr {

// Same numbers as proto LockKind.
enum class LockKind : uint8_t {
  kData = 1,   // I/O range lock (cluster IOLOCK).
  kInval = 2,  // Page-cache-invalidation range lock.
  kInode = 3,  // Attributes.
  kPosix = 4,  // fcntl/flock record locks.
};

// Same numbers as proto LockMode. kUn only appears as a "mode to keep".
enum class LockMode : uint8_t { kUn = 0, kSh = 1, kDf = 2, kEx = 3 };

// DESIGN.md's matrix: SH-SH and DF-DF are compatible, nothing else is.
inline bool Compatible(LockMode a, LockMode b) {
  return a == b && (a == LockMode::kSh || a == LockMode::kDf);
}

// The strongest mode that is no stronger than both a and b: what a holder
// of `a` keeps when told it may keep at most `b`. EX covers SH and DF; SH and
// DF are unordered, so Meet(SH, DF) = UN.
inline LockMode Meet(LockMode a, LockMode b) {
  if (a == b) return a;
  if (a == LockMode::kEx) return b;
  if (b == LockMode::kEx) return a;
  return LockMode::kUn;
}

// The highest mode another owner may keep beside a grant of `requested`:
// SH beside SH, DF beside DF, nothing beside EX.
inline LockMode KeepModeFor(LockMode requested) {
  return Compatible(requested, requested) ? requested : LockMode::kUn;
}

const char* LockModeName(LockMode m);
const char* LockKindName(LockKind k);

struct ResourceId {
  uint64_t ino = 0;
  LockKind kind = LockKind::kData;

  bool operator==(const ResourceId& o) const {
    return ino == o.ino && kind == o.kind;
  }
  bool operator<(const ResourceId& o) const {
    return ino != o.ino ? ino < o.ino : kind < o.kind;
  }
  std::string ToString() const;
};

// Who holds a lock: a session (one node incarnation) and a task within it.
// task 0 is the node's lock cache acting for the node as a whole.
struct Owner {
  uint64_t session = 0;
  uint64_t task = 0;

  bool operator==(const Owner& o) const {
    return session == o.session && task == o.task;
  }
  bool operator!=(const Owner& o) const { return !(*this == o); }
  std::string ToString() const;
};

struct ResourceIdHash {
  size_t operator()(const ResourceId& r) const {
    return std::hash<uint64_t>()(r.ino * 8 + static_cast<uint64_t>(r.kind));
  }
};

struct OwnerHash {
  size_t operator()(const Owner& o) const {
    return std::hash<uint64_t>()(o.session * 0x9E3779B97F4A7C15ull ^ o.task);
  }
};

}  // namespace rangefs::lockmgr

#endif  // RANGEFS_LOCKMGR_LOCK_TYPES_H_
