// POSIX access control lists as Linux stores them in the extended
// attributes system.posix_acl_access and system.posix_acl_default (the
// kernel's posix_acl_xattr format, little-endian: a version word, then
// one {tag, perm, id} entry per line of the list).
//
// With FUSE_POSIX_ACL the kernel checks ACLs itself but leaves to the
// filesystem what a local filesystem does in posix_acl_update_mode,
// posix_acl_chmod and posix_acl_create: the mode follows the access ACL,
// a chmod rewrites the ACL, and a new inode inherits its directory's
// default ACL. The metadata server does all three in the batch of the
// change, so every node sees mode and ACL move together.
#ifndef RANGEFS_SERVER_META_POSIX_ACL_H_
#define RANGEFS_SERVER_META_POSIX_ACL_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace rangefs::meta {

inline constexpr char kAclAccess[] = "system.posix_acl_access";
inline constexpr char kAclDefault[] = "system.posix_acl_default";

// SetXattr flag beside XATTR_CREATE (1) and XATTR_REPLACE (2): setting an
// access ACL also drops S_ISGID (the caller is neither in the file's group
// nor privileged: the mount decides, as the kernel would).
inline constexpr uint32_t kXattrKillSgid = 4;

enum AclTag : uint16_t {
  kAclUserObj = 0x01,
  kAclUser = 0x02,
  kAclGroupObj = 0x04,
  kAclGroup = 0x08,
  kAclMask = 0x10,
  kAclOther = 0x20,
};

struct AclEntry {
  uint16_t tag = 0;
  uint16_t perm = 0;  // rwx: 4, 2, 1.
  uint32_t id = 0;    // uid or gid of a named entry, else ~0.
};

using Acl = std::vector<AclEntry>;

// Decodes and checks a list as the kernel's posix_acl_valid does: one
// owner, owning-group and other entry, a mask when there are named
// entries, tags in order and named ids rising, perms within rwx. Errors
// are kInvalidArgument.
absl::StatusOr<Acl> ParseAcl(absl::string_view value);
std::string EncodeAcl(const Acl& acl);

// The permission bits (0777) the list stands for: owner, mask (or owning
// group when there is none), other.
uint32_t AclPermBits(const Acl& acl);

// Whether the list says no more than its permission bits (three entries),
// so that the mode alone keeps it and no attribute is stored.
bool AclIsMode(const Acl& acl);

// A chmod: owner, mask (or owning group) and other take `mode`'s bits.
void AclChmod(Acl* acl, uint32_t mode);

// A new inode under a directory's default ACL `acl`: the list becomes the
// inode's access ACL, each class limited by the create's `mode`; returns
// `mode` limited in turn by the list (the umask does not apply).
uint32_t AclCreate(Acl* acl, uint32_t mode);

}  // namespace rangefs::meta

#endif  // RANGEFS_SERVER_META_POSIX_ACL_H_
