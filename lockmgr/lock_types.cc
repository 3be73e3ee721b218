#include "lockmgr/lock_types.h"

#include "absl/strings/str_cat.h"

namespace rangefs::lockmgr {

const char* LockModeName(LockMode m) {
  switch (m) {
    case LockMode::kUn:
      return "UN";
    case LockMode::kSh:
      return "SH";
    case LockMode::kDf:
      return "DF";
    case LockMode::kEx:
      return "EX";
  }
  return "?";
}

const char* LockKindName(LockKind k) {
  switch (k) {
    case LockKind::kData:
      return "DATA";
    case LockKind::kInval:
      return "INVAL";
    case LockKind::kInode:
      return "INODE";
    case LockKind::kPosix:
      return "POSIX";
  }
  return "?";
}

std::string ResourceId::ToString() const {
  return absl::StrCat(ino, "/", LockKindName(kind));
}

std::string Owner::ToString() const { return absl::StrCat(session, ".", task); }

}  // namespace rangefs::lockmgr
