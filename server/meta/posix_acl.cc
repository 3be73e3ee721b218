#include "server/meta/posix_acl.h"

#include "absl/strings/str_cat.h"
#include "common/status.h"

namespace rangefs::meta {
namespace {

constexpr uint32_t kAclVersion = 2;
constexpr uint32_t kUndefinedId = ~0u;
constexpr size_t kHeaderBytes = 4;
constexpr size_t kEntryBytes = 8;
// The kernel's largest list (it reads ACLs into one page).
constexpr size_t kMaxEntries = (4096 - kHeaderBytes) / kEntryBytes;

uint32_t Le32(const char* p) {
  const auto* u = reinterpret_cast<const unsigned char*>(p);
  return u[0] | u[1] << 8 | u[2] << 16 | static_cast<uint32_t>(u[3]) << 24;
}

uint16_t Le16(const char* p) {
  const auto* u = reinterpret_cast<const unsigned char*>(p);
  return static_cast<uint16_t>(u[0] | u[1] << 8);
}

void PutLe(std::string* out, uint32_t v, int bytes) {
  for (int i = 0; i < bytes; ++i)
    out->push_back(static_cast<char>(v >> (8 * i)));
}

absl::Status Invalid(const std::string& why) {
  return MakeError(Errc::kInvalidArgument, "bad POSIX ACL: " + why);
}

}  // namespace

absl::StatusOr<Acl> ParseAcl(absl::string_view value) {
  if (value.size() < kHeaderBytes ||
      (value.size() - kHeaderBytes) % kEntryBytes != 0) {
    return Invalid(absl::StrCat("size ", value.size()));
  }
  if (Le32(value.data()) != kAclVersion) return Invalid("version");
  const size_t n = (value.size() - kHeaderBytes) / kEntryBytes;
  if (n > kMaxEntries) return Invalid(absl::StrCat(n, " entries"));
  Acl acl(n);
  int owner = 0, group = 0, other = 0, mask = 0, named = 0;
  uint16_t last_tag = 0;
  uint32_t last_id = 0;
  for (size_t i = 0; i < n; ++i) {
    const char* p = value.data() + kHeaderBytes + i * kEntryBytes;
    AclEntry& e = acl[i];
    e.tag = Le16(p);
    e.perm = Le16(p + 2);
    e.id = Le32(p + 4);
    if (e.perm & ~7u) return Invalid("permission bits past rwx");
    if (e.tag < last_tag) return Invalid("entries out of order");
    switch (e.tag) {
      case kAclUserObj:
        ++owner;
        break;
      case kAclGroupObj:
        ++group;
        break;
      case kAclOther:
        ++other;
        break;
      case kAclMask:
        ++mask;
        break;
      case kAclUser:
      case kAclGroup:
        if (e.id == kUndefinedId) return Invalid("named entry without id");
        if (e.tag == last_tag && e.id <= last_id) {
          return Invalid("named ids repeat or fall");
        }
        ++named;
        last_id = e.id;
        break;
      default:
        return Invalid(absl::StrCat("tag ", e.tag));
    }
    if (e.tag != kAclUser && e.tag != kAclGroup) e.id = kUndefinedId;
    last_tag = e.tag;
  }
  if (owner != 1 || group != 1 || other != 1 || mask > 1) {
    return Invalid("needs one owner, owning group and other entry");
  }
  if (named > 0 && mask == 0) return Invalid("named entries without a mask");
  return acl;
}

std::string EncodeAcl(const Acl& acl) {
  std::string out;
  out.reserve(kHeaderBytes + acl.size() * kEntryBytes);
  PutLe(&out, kAclVersion, 4);
  for (const AclEntry& e : acl) {
    PutLe(&out, e.tag, 2);
    PutLe(&out, e.perm, 2);
    PutLe(&out, e.id, 4);
  }
  return out;
}

uint32_t AclPermBits(const Acl& acl) {
  uint32_t owner = 0, group = 0, other = 0, mask = 0;
  bool has_mask = false;
  for (const AclEntry& e : acl) {
    switch (e.tag) {
      case kAclUserObj:
        owner = e.perm;
        break;
      case kAclGroupObj:
        group = e.perm;
        break;
      case kAclOther:
        other = e.perm;
        break;
      case kAclMask:
        mask = e.perm;
        has_mask = true;
        break;
      default:
        break;
    }
  }
  return owner << 6 | (has_mask ? mask : group) << 3 | other;
}

bool AclIsMode(const Acl& acl) {
  for (const AclEntry& e : acl) {
    if (e.tag == kAclUser || e.tag == kAclGroup || e.tag == kAclMask) {
      return false;
    }
  }
  return true;
}

namespace {

// The entry of the group class: the mask when there is one, else the
// owning group's.
AclEntry* GroupClass(Acl* acl) {
  AclEntry* group = nullptr;
  for (AclEntry& e : *acl) {
    if (e.tag == kAclMask) return &e;
    if (e.tag == kAclGroupObj) group = &e;
  }
  return group;
}

}  // namespace

void AclChmod(Acl* acl, uint32_t mode) {
  for (AclEntry& e : *acl) {
    if (e.tag == kAclUserObj) e.perm = (mode >> 6) & 7;
    if (e.tag == kAclOther) e.perm = mode & 7;
  }
  if (AclEntry* g = GroupClass(acl)) g->perm = (mode >> 3) & 7;
}

uint32_t AclCreate(Acl* acl, uint32_t mode) {
  // Each class's entry keeps what both the list and the mode allow, and the
  // mode keeps what that entry allows (named entries keep their bits: the
  // mask bounds them).
  uint32_t perms = mode & 0777;
  for (AclEntry& e : *acl) {
    if (e.tag == kAclUserObj) {
      e.perm &= (perms >> 6) & 7;
      perms &= ~0700u | e.perm << 6;
    } else if (e.tag == kAclOther) {
      e.perm &= perms & 7;
      perms &= ~07u | e.perm;
    }
  }
  if (AclEntry* g = GroupClass(acl)) {
    g->perm &= (perms >> 3) & 7;
    perms &= ~070u | g->perm << 3;
  }
  return (mode & ~0777u) | perms;
}

}  // namespace rangefs::meta
