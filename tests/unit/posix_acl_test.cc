// POSIX ACLs at the metadata server: the kernel's xattr format, the list
// rules, and the mode kept in step with the access ACL on setxattr, chmod
// and create under a default ACL.
#include "server/meta/posix_acl.h"

#include <sys/stat.h>

#include "common/status.h"
#include "gtest/gtest.h"
#include "server/meta/meta_server.h"
#include "tests/util/temp_dir.h"

namespace rangefs::meta {
namespace {

constexpr uint64_t kSession = 7;
constexpr uint32_t kNone = ~0u;

// u::rwx,u:1001:rw-,g::r-x,g:2000:r--,m::rwx,o::---
Acl FullList() {
  return {{kAclUserObj, 7, kNone},  {kAclUser, 6, 1001},
          {kAclGroupObj, 5, kNone}, {kAclGroup, 4, 2000},
          {kAclMask, 7, kNone},     {kAclOther, 0, kNone}};
}

Acl ModeList(uint32_t mode) {
  return {{kAclUserObj, static_cast<uint16_t>((mode >> 6) & 7), kNone},
          {kAclGroupObj, static_cast<uint16_t>((mode >> 3) & 7), kNone},
          {kAclOther, static_cast<uint16_t>(mode & 7), kNone}};
}

uint16_t PermOf(const Acl& acl, uint16_t tag, uint32_t id = kNone) {
  for (const AclEntry& e : acl) {
    if (e.tag == tag && (id == kNone || e.id == id)) return e.perm;
  }
  return 0xffff;
}

TEST(PosixAclTest, KernelFormatRoundTrips) {
  const std::string v = EncodeAcl(FullList());
  ASSERT_EQ(v.size(), 4u + 6 * 8);
  EXPECT_EQ(v.substr(0, 4), std::string("\x02\x00\x00\x00", 4));
  // The named user: tag 2, perm 6, id 1001, little-endian.
  EXPECT_EQ(v.substr(12, 8),
            std::string("\x02\x00\x06\x00\xe9\x03\x00\x00", 8));
  absl::StatusOr<Acl> back = ParseAcl(v);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(EncodeAcl(*back), v);
  EXPECT_EQ(AclPermBits(*back), 0770u);  // The mask is the group class.
  EXPECT_FALSE(AclIsMode(*back));
  EXPECT_TRUE(AclIsMode(ModeList(0640)));
  EXPECT_EQ(AclPermBits(ModeList(0640)), 0640u);
}

TEST(PosixAclTest, MalformedListsAreRefused) {
  const std::string good = EncodeAcl(FullList());
  std::vector<std::string> bad = {
      "", good.substr(0, 3), good.substr(0, good.size() - 1),
      std::string("\x01\x00\x00\x00", 4) + good.substr(4),  // version
  };
  Acl no_mask = FullList();
  no_mask.erase(no_mask.begin() + 4);
  bad.push_back(EncodeAcl(no_mask));
  Acl no_other = ModeList(0644);
  no_other.pop_back();
  bad.push_back(EncodeAcl(no_other));
  Acl two_owners = ModeList(0644);
  two_owners.insert(two_owners.begin(), two_owners[0]);
  bad.push_back(EncodeAcl(two_owners));
  Acl disorder = ModeList(0644);
  std::swap(disorder[0], disorder[1]);
  bad.push_back(EncodeAcl(disorder));
  Acl repeat = FullList();
  repeat.insert(repeat.begin() + 1, repeat[1]);
  bad.push_back(EncodeAcl(repeat));
  Acl wide = ModeList(0644);
  wide[0].perm = 8;
  bad.push_back(EncodeAcl(wide));
  Acl tag = ModeList(0644);
  tag[2].tag = 0x40;
  bad.push_back(EncodeAcl(tag));
  for (const std::string& v : bad) {
    EXPECT_EQ(ErrcOf(ParseAcl(v).status()), Errc::kInvalidArgument)
        << v.size() << " bytes";
  }
}

TEST(PosixAclTest, ChmodSetsOwnerMaskAndOther) {
  Acl acl = FullList();
  AclChmod(&acl, 0751);
  EXPECT_EQ(PermOf(acl, kAclUserObj), 7);
  EXPECT_EQ(PermOf(acl, kAclMask), 5);
  EXPECT_EQ(PermOf(acl, kAclGroupObj), 5);  // Unchanged under a mask.
  EXPECT_EQ(PermOf(acl, kAclUser, 1001), 6);
  EXPECT_EQ(PermOf(acl, kAclOther), 1);
  Acl plain = ModeList(0777);
  AclChmod(&plain, 0640);
  EXPECT_EQ(AclPermBits(plain), 0640u);
}

TEST(PosixAclTest, CreateLimitsEachClassByTheMode) {
  Acl acl = FullList();  // Default list: owner rwx, mask rwx, other ---.
  EXPECT_EQ(AclCreate(&acl, 0666), 0660u);
  EXPECT_EQ(PermOf(acl, kAclUserObj), 6);
  EXPECT_EQ(PermOf(acl, kAclMask), 6);
  EXPECT_EQ(PermOf(acl, kAclOther), 0);
  EXPECT_EQ(PermOf(acl, kAclUser, 1001), 6);  // Named entries keep theirs.
  Acl plain = ModeList(0750);
  EXPECT_EQ(AclCreate(&plain, S_ISGID | 0777), S_ISGID | 0750u);
  EXPECT_EQ(AclPermBits(plain), 0750u);
}

class MetaAclTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto s = MetaServer::Open(dir_.Sub("meta"), "testfs",
                              {DeviceInfo{0, 1 << 23, "127.0.0.1:1"}},
                              /*sync=*/false);
    ASSERT_TRUE(s.ok()) << s.status();
    m_ = std::move(*s);
  }
  Acl StoredAcl(uint64_t ino, const char* name) {
    absl::StatusOr<std::string> v = m_->GetXattr(ino, name);
    if (!v.ok()) return {};
    absl::StatusOr<Acl> acl = ParseAcl(*v);
    EXPECT_TRUE(acl.ok()) << acl.status();
    return acl.ok() ? *acl : Acl{};
  }

  testing::TempDir dir_;
  std::unique_ptr<MetaServer> m_;
};

TEST_F(MetaAclTest, AnAccessListSetsTheModeAndAModeListIsNotKept) {
  auto f = m_->Create(kSession, kRootIno, "f", S_IFREG | S_ISGID | 0644, 0,
                      Creds{1000, 1000}, true, 0);
  ASSERT_TRUE(f.ok()) << f.status();
  ASSERT_TRUE(
      m_->SetXattr(kSession, f->ino, kAclAccess, EncodeAcl(FullList()), 0)
          .ok());
  EXPECT_EQ(m_->GetAttr(f->ino)->mode, S_IFREG | S_ISGID | 0770u);
  EXPECT_EQ(StoredAcl(f->ino, kAclAccess).size(), 6u);
  // Three entries say no more than the mode: the mode changes, the
  // attribute goes; the caller outside the group loses S_ISGID.
  ASSERT_TRUE(m_->SetXattr(kSession, f->ino, kAclAccess,
                           EncodeAcl(ModeList(0604)), kXattrKillSgid)
                  .ok());
  EXPECT_EQ(m_->GetAttr(f->ino)->mode, S_IFREG | 0604u);
  EXPECT_EQ(ErrcOf(m_->GetXattr(f->ino, kAclAccess).status()), Errc::kNoData);
  // Bad lists and flags change nothing.
  EXPECT_EQ(ErrcOf(m_->SetXattr(kSession, f->ino, kAclAccess, "junk", 0)),
            Errc::kInvalidArgument);
  EXPECT_EQ(
      ErrcOf(m_->SetXattr(kSession, f->ino, "user.x", "1", kXattrKillSgid)),
      Errc::kInvalidArgument);
  EXPECT_EQ(ErrnoOf(m_->SetXattr(kSession, f->ino, kAclDefault,
                                 EncodeAcl(FullList()), 0)),
            EACCES);
  EXPECT_EQ(m_->GetAttr(f->ino)->mode, S_IFREG | 0604u);
}

TEST_F(MetaAclTest, ChmodRewritesTheAccessList) {
  auto f = m_->Create(kSession, kRootIno, "f", S_IFREG | 0644, 0,
                      Creds{1000, 1000}, true, 0);
  ASSERT_TRUE(f.ok());
  ASSERT_TRUE(
      m_->SetXattr(kSession, f->ino, kAclAccess, EncodeAcl(FullList()), 0)
          .ok());
  SetAttrArgs chmod;
  chmod.valid = kSetMode;
  chmod.mode = 0640;
  ASSERT_TRUE(m_->SetAttr(kSession, f->ino, chmod).ok());
  Acl acl = StoredAcl(f->ino, kAclAccess);
  EXPECT_EQ(PermOf(acl, kAclMask), 4);
  EXPECT_EQ(PermOf(acl, kAclUserObj), 6);
  EXPECT_EQ(PermOf(acl, kAclOther), 0);
  EXPECT_EQ(PermOf(acl, kAclUser, 1001), 6);
}

TEST_F(MetaAclTest, NewInodesInheritTheDirectorysDefaultList) {
  auto d = m_->Mkdir(kSession, kRootIno, "d", 0755, Creds{}, 022);
  ASSERT_TRUE(d.ok());
  ASSERT_TRUE(
      m_->SetXattr(kSession, d->ino, kAclDefault, EncodeAcl(FullList()), 0)
          .ok());
  // The umask (077) is not applied: the default list stands for it.
  auto f = m_->Create(kSession, d->ino, "f", S_IFREG | 0666, 0,
                      Creds{1000, 1000}, true, 077);
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ(f->mode, S_IFREG | 0660u);
  EXPECT_EQ(m_->GetAttr(f->ino)->mode, S_IFREG | 0660u);
  Acl acl = StoredAcl(f->ino, kAclAccess);
  EXPECT_EQ(acl.size(), 6u);
  EXPECT_EQ(PermOf(acl, kAclMask), 6);
  EXPECT_EQ(ErrcOf(m_->GetXattr(f->ino, kAclDefault).status()), Errc::kNoData);
  auto sub = m_->Mkdir(kSession, d->ino, "sub", 0777, Creds{}, 077);
  ASSERT_TRUE(sub.ok());
  EXPECT_EQ(sub->mode, S_IFDIR | 0770u);
  EXPECT_EQ(StoredAcl(sub->ino, kAclDefault).size(), 6u);
  EXPECT_EQ(StoredAcl(sub->ino, kAclAccess).size(), 6u);
  auto link = m_->Symlink(kSession, d->ino, "s", "f", Creds{});
  ASSERT_TRUE(link.ok());
  EXPECT_EQ(link->mode, S_IFLNK | 0777u);
  EXPECT_EQ(ErrcOf(m_->GetXattr(link->ino, kAclAccess).status()),
            Errc::kNoData);
  // Without a default list the umask applies.
  auto g = m_->Create(kSession, kRootIno, "g", S_IFREG | 0666, 0,
                      Creds{1000, 1000}, true, 027);
  ASSERT_TRUE(g.ok());
  EXPECT_EQ(g->mode, S_IFREG | 0640u);
  auto rep = m_->Fsck();
  ASSERT_TRUE(rep.ok());
  EXPECT_TRUE(rep->problems.empty());
}

}  // namespace
}  // namespace rangefs::meta
