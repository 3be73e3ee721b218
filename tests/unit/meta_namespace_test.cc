// The metadata server's namespace: entries, attributes, links, renames,
// persistence, orphans, fencing, extended attributes.
#include <sys/stat.h>

#include <cerrno>

#include "common/status.h"
#include "gtest/gtest.h"
#include "server/meta/meta_server.h"
#include "tests/util/temp_dir.h"

namespace rangefs::meta {
namespace {

constexpr uint64_t kSession = 42;
constexpr uint64_t kMiB = 1 << 20;

class MetaNamespaceTest : public ::testing::Test {
 protected:
  void SetUp() override { Reopen(); }

  void Reopen(const std::string& fs_id = "testfs") {
    server_.reset();
    auto s = MetaServer::Open(dir_.Sub("meta"), fs_id,
                              {DeviceInfo{0, 8 * kMiB, "127.0.0.1:1"}},
                              /*sync=*/false);
    ASSERT_TRUE(s.ok()) << s.status();
    server_ = std::move(*s);
  }

  Attr MustCreate(uint64_t parent, const std::string& name) {
    auto a = server_->Create(kSession, parent, name, S_IFREG | 0644, 0,
                             Creds{1000, 1000}, true, 022);
    EXPECT_TRUE(a.ok()) << a.status();
    return a.ok() ? *a : Attr{};
  }
  Attr MustMkdir(uint64_t parent, const std::string& name) {
    auto a = server_->Mkdir(kSession, parent, name, 0755, Creds{}, 0);
    EXPECT_TRUE(a.ok()) << a.status();
    return a.ok() ? *a : Attr{};
  }
  void ExpectClean() {
    auto rep = server_->Fsck();
    ASSERT_TRUE(rep.ok()) << rep.status();
    for (const std::string& p : rep->problems) ADD_FAILURE() << p;
  }

  testing::TempDir dir_;
  std::unique_ptr<MetaServer> server_;
};

// Namespace changes are acknowledged once in the log and synced lazily
// (with the next extent change, a Sync, or a new block of inode numbers);
// extent changes are synced before they are acknowledged.
TEST(MetaDurabilityTest, NamespaceChangesAreSyncedLazilyExtentChangesAtOnce) {
  testing::TempDir dir;
  auto open = [&] {
    auto s = MetaServer::Open(dir.Sub("meta"), "testfs",
                              {DeviceInfo{0, 8 * kMiB, "127.0.0.1:1"}},
                              /*sync=*/true);
    EXPECT_TRUE(s.ok()) << s.status();
    return s.ok() ? std::move(*s) : nullptr;
  };
  std::unique_ptr<MetaServer> m = open();
  ASSERT_NE(m, nullptr);
  const Creds creds{1000, 1000};
  auto f1 = m->Create(kSession, kRootIno, "f1", S_IFREG | 0644, 0, creds, true,
                      022);  // The first takes a block of numbers.
  ASSERT_TRUE(f1.ok()) << f1.status();
  const uint64_t synced = m->store()->sync_writes();
  ASSERT_TRUE(
      m->Create(kSession, kRootIno, "f2", S_IFREG | 0644, 0, creds, true, 022)
          .ok());
  auto d = m->Mkdir(kSession, kRootIno, "d", 0755, creds, 022);
  ASSERT_TRUE(d.ok()) << d.status();
  ASSERT_TRUE(m->Rename(kSession, kRootIno, "f2", d->ino, "g", 0).ok());
  ASSERT_TRUE(m->Unlink(kSession, d->ino, "g", false).ok());
  EXPECT_EQ(m->store()->sync_writes(), synced);
  ASSERT_TRUE(m->Sync().ok());
  EXPECT_EQ(m->store()->sync_writes(), synced + 1);
  ASSERT_TRUE(m->Sync().ok());  // Nothing new: no I/O.
  EXPECT_EQ(m->store()->sync_writes(), synced + 1);
  ASSERT_TRUE(m->MapWrite(kSession, f1->ino, 0, 4096).ok());
  EXPECT_EQ(m->store()->sync_writes(), synced + 2);
  ASSERT_TRUE(m->SetAttr(kSession, f1->ino, SetAttrArgs{kSetMode, 0600}).ok());
  EXPECT_EQ(m->store()->sync_writes(), synced + 2);
  // Freeing a deleted file's blocks waits for no sync either: a crash that
  // loses it loses the unlink with it (the file keeps its blocks), and the
  // blocks are only used again by an allocation, whose own sync makes the
  // free durable first (the log is synced as a whole).
  auto f4 =
      m->Create(kSession, kRootIno, "f4", S_IFREG | 0644, 0, creds, true, 022);
  ASSERT_TRUE(f4.ok()) << f4.status();
  auto before = m->GetStatFs();
  ASSERT_TRUE(before.ok()) << before.status();
  ASSERT_TRUE(m->MapWrite(kSession, f4->ino, 0, 64 * 1024).ok());
  EXPECT_EQ(m->store()->sync_writes(), synced + 3);
  ASSERT_TRUE(m->Unlink(kSession, kRootIno, "f4", false).ok());
  EXPECT_EQ(m->store()->sync_writes(), synced + 3);
  auto freed = m->GetStatFs();
  ASSERT_TRUE(freed.ok()) << freed.status();
  EXPECT_EQ(freed->free_blocks, before->free_blocks);
  // Everything acknowledged is there after a restart, and new inode
  // numbers start past every number that went out.
  m.reset();
  m = open();
  ASSERT_NE(m, nullptr);
  auto again = m->Lookup(kRootIno, "d");
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(ErrcOf(m->Lookup(kRootIno, "f4").status()), Errc::kNotFound);
  auto after = m->GetStatFs();
  ASSERT_TRUE(after.ok()) << after.status();
  EXPECT_EQ(after->free_blocks, before->free_blocks);
  EXPECT_EQ(ErrcOf(m->Lookup(d->ino, "g").status()), Errc::kNotFound);
  auto f3 =
      m->Create(kSession, kRootIno, "f3", S_IFREG | 0644, 0, creds, true, 022);
  ASSERT_TRUE(f3.ok()) << f3.status();
  EXPECT_GT(f3->ino, d->ino);
  auto rep = m->Fsck();
  ASSERT_TRUE(rep.ok()) << rep.status();
  for (const std::string& p : rep->problems) ADD_FAILURE() << p;
}

// A node creates files with numbers leased ahead (so it need not wait for
// the server); each number is used once, and only by its session.
TEST_F(MetaNamespaceTest, LeasedInodeNumbersAreUsedOnceByTheirSession) {
  auto first = server_->ReserveInodes(kSession, 8);
  ASSERT_TRUE(first.ok()) << first.status();
  const Timespec when{1700000000, 123};
  ChosenInode c{*first + 1, when};
  auto a = server_->Create(kSession, kRootIno, "a", S_IFREG | 0644, 0,
                           Creds{1000, 1000}, true, 022, nullptr, &c);
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->ino, *first + 1);
  EXPECT_EQ(a->ctime.sec, when.sec);
  EXPECT_EQ(a->mtime.nsec, when.nsec);
  EXPECT_EQ(a->mode, S_IFREG | 0644u);
  // Used, below the next unused one, another session's, never leased.
  for (uint64_t ino : {*first + 1, *first, *first + 8}) {
    ChosenInode bad{ino, when};
    EXPECT_EQ(ErrcOf(server_
                         ->Create(kSession, kRootIno, "b", S_IFREG | 0644, 0,
                                  Creds{}, true, 022, nullptr, &bad)
                         .status()),
              Errc::kInvalidArgument)
        << ino;
  }
  ChosenInode other{*first + 2, when};
  EXPECT_EQ(ErrcOf(server_
                       ->Create(kSession + 1, kRootIno, "b", S_IFREG | 0644, 0,
                                Creds{}, true, 022, nullptr, &other)
                       .status()),
            Errc::kInvalidArgument);
  EXPECT_EQ(ErrcOf(server_->Lookup(kRootIno, "b").status()), Errc::kNotFound);
  EXPECT_EQ(ErrcOf(server_->ReserveInodes(kSession, 0).status()),
            Errc::kInvalidArgument);
  // Leases survive a restart; numbers the server picks never collide.
  Reopen();
  ChosenInode next{*first + 5, when};
  ASSERT_TRUE(server_
                  ->Create(kSession, kRootIno, "c", S_IFREG | 0644, 0, Creds{},
                           true, 022, nullptr, &next)
                  .ok());
  Attr d = MustCreate(kRootIno, "d");
  EXPECT_GE(d.ino, *first + 8);
  // A fence ends the session's leases.
  ASSERT_TRUE(server_->Fence(kSession).ok());
  ChosenInode late{*first + 6, when};
  EXPECT_FALSE(server_
                   ->Create(kSession, kRootIno, "e", S_IFREG | 0644, 0, Creds{},
                            true, 022, nullptr, &late)
                   .ok());
  ExpectClean();
}

TEST_F(MetaNamespaceTest, FormatsARootDirectory) {
  auto root = server_->GetAttr(kRootIno);
  ASSERT_TRUE(root.ok());
  EXPECT_TRUE(S_ISDIR(root->mode));
  EXPECT_EQ(root->nlink, 2u);
  ExpectClean();
}

TEST_F(MetaNamespaceTest, CreateThenLookupFindsTheFile) {
  Attr a = MustCreate(kRootIno, "f");
  auto b = server_->Lookup(kRootIno, "f");
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(a.ino, b->ino);
  EXPECT_EQ(b->mode, S_IFREG | 0644u);
  EXPECT_EQ(b->uid, 1000u);
  ExpectClean();
}

TEST_F(MetaNamespaceTest, ExclusiveCreateOfExistingNameFails) {
  MustCreate(kRootIno, "f");
  auto again = server_->Create(kSession, kRootIno, "f", S_IFREG | 0644, 0,
                               Creds{}, true, 0);
  EXPECT_EQ(ErrcOf(again.status()), Errc::kExists);
  auto open = server_->Create(kSession, kRootIno, "f", S_IFREG | 0644, 0,
                              Creds{}, false, 0);
  EXPECT_TRUE(open.ok());
}

TEST_F(MetaNamespaceTest, BadNamesAreRefusedAndChangeNothing) {
  for (std::string bad :
       {std::string(""), std::string("a/b"), std::string("a\0b", 3),
        std::string("."), std::string(".."), std::string(256, 'x')}) {
    auto a = server_->Create(kSession, kRootIno, bad, S_IFREG | 0644, 0,
                             Creds{}, true, 0);
    EXPECT_FALSE(a.ok()) << "name of " << bad.size() << " bytes";
  }
  EXPECT_EQ(ErrcOf(server_
                       ->Create(kSession, kRootIno, std::string(256, 'x'),
                                S_IFREG, 0, Creds{}, true, 0)
                       .status()),
            Errc::kNameTooLong);
  auto list = server_->ReadDir(kRootIno, "", 100, false);
  ASSERT_TRUE(list.ok());
  EXPECT_TRUE(list->entries.empty());
  ExpectClean();
}

TEST_F(MetaNamespaceTest, UnknownInodeIsNotFound) {
  EXPECT_EQ(ErrcOf(server_->GetAttr(999).status()), Errc::kNotFound);
  EXPECT_EQ(ErrcOf(server_->Lookup(999, "x").status()), Errc::kNotFound);
}

TEST_F(MetaNamespaceTest, LookupInAFileIsNotDir) {
  Attr f = MustCreate(kRootIno, "f");
  EXPECT_EQ(ErrcOf(server_->Lookup(f.ino, "x").status()), Errc::kNotDir);
}

TEST_F(MetaNamespaceTest, MkdirCountsLinks) {
  Attr d = MustMkdir(kRootIno, "d");
  EXPECT_EQ(d.nlink, 2u);
  EXPECT_EQ(server_->GetAttr(kRootIno)->nlink, 3u);
  ExpectClean();
}

TEST_F(MetaNamespaceTest, RmdirOfNonEmptyDirectoryFails) {
  Attr d = MustMkdir(kRootIno, "d");
  MustCreate(d.ino, "f");
  EXPECT_EQ(ErrcOf(server_->Rmdir(kSession, kRootIno, "d").status()),
            Errc::kNotEmpty);
  ASSERT_TRUE(server_->Unlink(kSession, d.ino, "f", false).ok());
  EXPECT_TRUE(server_->Rmdir(kSession, kRootIno, "d").ok());
  EXPECT_EQ(server_->GetAttr(kRootIno)->nlink, 2u);
  ExpectClean();
}

TEST_F(MetaNamespaceTest, UnlinkOfDirectoryIsIsDir) {
  MustMkdir(kRootIno, "d");
  EXPECT_EQ(ErrcOf(server_->Unlink(kSession, kRootIno, "d", false).status()),
            Errc::kIsDir);
  MustCreate(kRootIno, "f");
  EXPECT_EQ(ErrcOf(server_->Rmdir(kSession, kRootIno, "f").status()),
            Errc::kNotDir);
}

TEST_F(MetaNamespaceTest, HardLinksShareTheInode) {
  Attr f = MustCreate(kRootIno, "f");
  auto l = server_->Link(kSession, f.ino, kRootIno, "g");
  ASSERT_TRUE(l.ok());
  EXPECT_EQ(l->nlink, 2u);
  ASSERT_TRUE(server_->Unlink(kSession, kRootIno, "f", false).ok());
  EXPECT_EQ(server_->GetAttr(f.ino)->nlink, 1u);
  ExpectClean();
}

TEST_F(MetaNamespaceTest, SymlinkStoresItsTarget) {
  auto s = server_->Symlink(kSession, kRootIno, "l", "/some/where", Creds{});
  ASSERT_TRUE(s.ok());
  EXPECT_TRUE(S_ISLNK(s->mode));
  EXPECT_EQ(*server_->Readlink(s->ino), "/some/where");
  EXPECT_EQ(s->size, 11u);
}

TEST_F(MetaNamespaceTest, RenameOverExistingFileReplacesIt) {
  Attr a = MustCreate(kRootIno, "a");
  Attr b = MustCreate(kRootIno, "b");
  auto r = server_->Rename(kSession, kRootIno, "a", kRootIno, "b", 0);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->ino, b.ino);
  EXPECT_EQ(server_->Lookup(kRootIno, "b")->ino, a.ino);
  EXPECT_EQ(ErrcOf(server_->Lookup(kRootIno, "a").status()), Errc::kNotFound);
  EXPECT_EQ(ErrcOf(server_->GetAttr(b.ino).status()), Errc::kNotFound);
  ExpectClean();
}

TEST_F(MetaNamespaceTest, RenameNoReplaceRefusesExistingTarget) {
  MustCreate(kRootIno, "a");
  MustCreate(kRootIno, "b");
  EXPECT_EQ(ErrcOf(server_
                       ->Rename(kSession, kRootIno, "a", kRootIno, "b",
                                kRenameNoReplace)
                       .status()),
            Errc::kExists);
}

// rename(2) between two names of one file does nothing and succeeds, but
// RENAME_NOREPLACE still refuses an existing target (as Linux does).
TEST_F(MetaNamespaceTest, RenameBetweenLinksOfOneFile) {
  Attr f = MustCreate(kRootIno, "f");
  ASSERT_TRUE(server_->Link(kSession, f.ino, kRootIno, "g").ok());
  EXPECT_EQ(ErrcOf(server_
                       ->Rename(kSession, kRootIno, "f", kRootIno, "g",
                                kRenameNoReplace)
                       .status()),
            Errc::kExists);
  for (uint32_t flags : {0u, static_cast<uint32_t>(kRenameExchange)}) {
    auto r = server_->Rename(kSession, kRootIno, "f", kRootIno, "g", flags);
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->ino, 0u);
  }
  EXPECT_EQ(server_->Lookup(kRootIno, "f")->ino, f.ino);
  EXPECT_EQ(server_->Lookup(kRootIno, "g")->ino, f.ino);
  EXPECT_EQ(server_->GetAttr(f.ino)->nlink, 2u);
  ExpectClean();
}

TEST_F(MetaNamespaceTest, RenameExchangeSwapsFileAndDirectory) {
  Attr f = MustCreate(kRootIno, "f");
  Attr d1 = MustMkdir(kRootIno, "d1");
  Attr d = MustMkdir(d1.ino, "d");
  ASSERT_TRUE(
      server_->Rename(kSession, kRootIno, "f", d1.ino, "d", kRenameExchange)
          .ok());
  EXPECT_EQ(server_->Lookup(kRootIno, "f")->ino, d.ino);
  EXPECT_EQ(server_->Lookup(d1.ino, "d")->ino, f.ino);
  ExpectClean();
}

TEST_F(MetaNamespaceTest, DirectoryCannotMoveIntoItself) {
  Attr a = MustMkdir(kRootIno, "a");
  Attr b = MustMkdir(a.ino, "b");
  EXPECT_EQ(
      ErrcOf(server_->Rename(kSession, kRootIno, "a", b.ino, "x", 0).status()),
      Errc::kInvalidArgument);
  ExpectClean();
}

TEST_F(MetaNamespaceTest, DirectoryReplacesOnlyEmptyDirectory) {
  Attr a = MustMkdir(kRootIno, "a");
  Attr b = MustMkdir(kRootIno, "b");
  MustCreate(b.ino, "f");
  EXPECT_EQ(
      ErrcOf(
          server_->Rename(kSession, kRootIno, "a", kRootIno, "b", 0).status()),
      Errc::kNotEmpty);
  ASSERT_TRUE(server_->Unlink(kSession, b.ino, "f", false).ok());
  ASSERT_TRUE(server_->Rename(kSession, kRootIno, "a", kRootIno, "b", 0).ok());
  EXPECT_EQ(server_->Lookup(kRootIno, "b")->ino, a.ino);
  ExpectClean();
}

TEST_F(MetaNamespaceTest, MovingADirectoryUpdatesParents) {
  Attr a = MustMkdir(kRootIno, "a");
  Attr c = MustMkdir(kRootIno, "c");
  MustMkdir(a.ino, "b");
  ASSERT_TRUE(server_->Rename(kSession, a.ino, "b", c.ino, "b", 0).ok());
  EXPECT_EQ(server_->GetAttr(a.ino)->nlink, 2u);
  EXPECT_EQ(server_->GetAttr(c.ino)->nlink, 3u);
  ExpectClean();
}

TEST_F(MetaNamespaceTest, ReadDirPagesSurviveConcurrentChanges) {
  for (int i = 0; i < 10; ++i) MustCreate(kRootIno, "f" + std::to_string(i));
  auto page1 = server_->ReadDir(kRootIno, "", 4, false);
  ASSERT_TRUE(page1.ok());
  ASSERT_EQ(page1->entries.size(), 4u);
  EXPECT_FALSE(page1->eof);
  // Change the directory between pages: entries already listed and new
  // ones do not disturb the rest.
  ASSERT_TRUE(server_->Unlink(kSession, kRootIno, "f0", false).ok());
  MustCreate(kRootIno, "a-new");
  std::set<std::string> seen;
  for (const DirEntry& e : page1->entries) seen.insert(e.name);
  std::string after = page1->entries.back().name;
  for (;;) {
    auto page = server_->ReadDir(kRootIno, after, 4, true);
    ASSERT_TRUE(page.ok());
    for (const DirEntry& e : page->entries) {
      EXPECT_TRUE(seen.insert(e.name).second) << e.name << " repeated";
      EXPECT_EQ(e.attr.ino, e.ino);
    }
    if (page->eof) break;
    after = page->entries.back().name;
  }
  for (int i = 1; i < 10; ++i) EXPECT_TRUE(seen.count("f" + std::to_string(i)));
}

TEST_F(MetaNamespaceTest, StateSurvivesReopen) {
  Attr f = MustCreate(kRootIno, "f");
  Reopen();
  EXPECT_EQ(server_->Lookup(kRootIno, "f")->ino, f.ino);
  // Inode numbers are never reused.
  Attr g = MustCreate(kRootIno, "g");
  EXPECT_GT(g.ino, f.ino);
  ExpectClean();
}

TEST_F(MetaNamespaceTest, RefusesAnotherFilesystemsDirectory) {
  server_.reset();
  auto other = MetaServer::Open(dir_.Sub("meta"), "otherfs",
                                {DeviceInfo{0, 8 * kMiB, ""}}, false);
  EXPECT_EQ(ErrcOf(other.status()), Errc::kInvalidArgument);
  Reopen();
}

TEST_F(MetaNamespaceTest, UnlinkedOpenFileBecomesOrphanUntilLastClose) {
  Attr f = MustCreate(kRootIno, "f");
  ASSERT_TRUE(server_->Open(kSession, f.ino).ok());
  auto u = server_->Unlink(kSession, kRootIno, "f", false);
  ASSERT_TRUE(u.ok());
  EXPECT_TRUE(u->orphaned);
  EXPECT_TRUE(server_->GetAttr(f.ino).ok());
  ExpectClean();
  Reopen();  // Orphans survive a restart while open.
  EXPECT_TRUE(server_->GetAttr(f.ino).ok());
  ASSERT_TRUE(server_->Close(kSession, f.ino).ok());
  EXPECT_EQ(ErrcOf(server_->GetAttr(f.ino).status()), Errc::kNotFound);
  ExpectClean();
}

TEST_F(MetaNamespaceTest, FencingRefusesTheSessionAndDropsItsHandles) {
  Attr f = MustCreate(kRootIno, "f");
  ASSERT_TRUE(server_->Open(kSession, f.ino).ok());
  ASSERT_TRUE(server_->Unlink(kSession, kRootIno, "f", false).ok());
  ASSERT_TRUE(server_->Fence(kSession).ok());
  EXPECT_EQ(
      ErrcOf(
          server_->Create(kSession, kRootIno, "g", S_IFREG, 0, Creds{}, true, 0)
              .status()),
      Errc::kFenced);
  // Its handle went with it, so the orphan was freed.
  EXPECT_EQ(ErrcOf(server_->GetAttr(f.ino).status()), Errc::kNotFound);
  Reopen();
  EXPECT_TRUE(server_->IsFenced(kSession));
  EXPECT_TRUE(
      server_->Create(kSession + 1, kRootIno, "g", S_IFREG, 0, Creds{}, true, 0)
          .ok());
  ExpectClean();
}

TEST_F(MetaNamespaceTest, SetgidDirectoryPassesItsGroupOn) {
  Attr d = MustMkdir(kRootIno, "d");
  SetAttrArgs a;
  a.valid = kSetMode | kSetGid;
  a.mode = 02775;
  a.gid = 500;
  ASSERT_TRUE(server_->SetAttr(kSession, d.ino, a).ok());
  auto f = server_->Create(kSession, d.ino, "f", S_IFREG | 0644, 0,
                           Creds{1000, 1000}, true, 0);
  ASSERT_TRUE(f.ok());
  EXPECT_EQ(f->gid, 500u);
  auto sub = server_->Mkdir(kSession, d.ino, "s", 0755, Creds{1000, 1000}, 0);
  ASSERT_TRUE(sub.ok());
  EXPECT_TRUE(sub->mode & S_ISGID);
}

TEST_F(MetaNamespaceTest, ExtendedAttributes) {
  Attr f = MustCreate(kRootIno, "f");
  EXPECT_EQ(ErrcOf(server_->GetXattr(f.ino, "user.a").status()), Errc::kNoData);
  ASSERT_TRUE(server_->SetXattr(kSession, f.ino, "user.a", "1", 0).ok());
  EXPECT_EQ(ErrcOf(server_->SetXattr(kSession, f.ino, "user.a", "2", 1)),
            Errc::kExists);
  EXPECT_EQ(ErrcOf(server_->SetXattr(kSession, f.ino, "user.b", "2", 2)),
            Errc::kNoData);
  EXPECT_EQ(*server_->GetXattr(f.ino, "user.a"), "1");
  EXPECT_EQ(server_->ListXattr(f.ino)->size(), 1u);
  EXPECT_EQ(ErrcOf(server_->SetXattr(kSession, f.ino, "user.big",
                                     std::string(70000, 'x'), 0)),
            Errc::kOutOfRange);
  EXPECT_EQ(ErrcOf(server_->SetXattr(kSession, f.ino, "bogus.a", "1", 0)),
            Errc::kNotSupported);
  ASSERT_TRUE(server_->RemoveXattr(kSession, f.ino, "user.a").ok());
  EXPECT_TRUE(server_->ListXattr(f.ino)->empty());
  ExpectClean();
}

// Attributes per inode are bounded, as on every local filesystem: the
// list of names must fit listxattr's 64 KiB buffer, and names and values
// together 1 MiB. Past either, NO_SPACE (ENOSPC) and nothing changes.
TEST_F(MetaNamespaceTest, ExtendedAttributesPerInodeAreBounded) {
  Attr f = MustCreate(kRootIno, "f");
  size_t list = 0;
  int n = 0;
  for (;; ++n) {
    std::string name = "user.var_" + std::to_string(n);
    absl::Status s = server_->SetXattr(kSession, f.ino, name, "v", 0);
    if (!s.ok()) {
      EXPECT_EQ(ErrcOf(s), Errc::kNoSpace) << s;
      EXPECT_EQ(ErrnoOf(s), ENOSPC);
      EXPECT_GT(list + name.size() + 1, 65536u);
      break;
    }
    list += name.size() + 1;
    ASSERT_LE(list, 65536u);
  }
  EXPECT_EQ(server_->ListXattr(f.ino)->size(), static_cast<size_t>(n));
  // Replacing a value still works; so does removing and adding back.
  ASSERT_TRUE(server_->SetXattr(kSession, f.ino, "user.var_0", "w", 2).ok());
  ASSERT_TRUE(server_->RemoveXattr(kSession, f.ino, "user.var_0").ok());
  ASSERT_TRUE(server_->SetXattr(kSession, f.ino, "user.var_0", "x", 0).ok());

  Attr g = MustCreate(kRootIno, "g");
  const std::string value(65536, 'v');
  int big = 0;
  for (; big < 64; ++big) {
    absl::Status s = server_->SetXattr(
        kSession, g.ino, "user.big" + std::to_string(big), value, 0);
    if (!s.ok()) {
      EXPECT_EQ(ErrcOf(s), Errc::kNoSpace) << s;
      break;
    }
  }
  EXPECT_EQ(big, 15);  // 16 would pass 1 MiB with their names.
  EXPECT_EQ(server_->ListXattr(g.ino)->size(), 15u);
  // A smaller value in place of a big one makes room again.
  ASSERT_TRUE(server_->SetXattr(kSession, g.ino, "user.big0", "s", 2).ok());
  EXPECT_TRUE(server_->SetXattr(kSession, g.ino, "user.big15", value, 0).ok());
  ExpectClean();
}

TEST_F(MetaNamespaceTest, StatFsCountsFilesAndSpace) {
  auto before = server_->GetStatFs();
  MustCreate(kRootIno, "f");
  auto after = server_->GetStatFs();
  EXPECT_EQ(after->files, before->files + 1);
  EXPECT_EQ(after->total_blocks, 8 * kMiB / kBlockSize);
  EXPECT_EQ(after->free_blocks, after->total_blocks);
}

// ".." of a directory is its parent (the root's is the root), and moves
// with a rename: what the mount reconnects a directory's export handle by.
TEST_F(MetaNamespaceTest, DotDotIsTheParentDirectory) {
  Attr d = MustMkdir(kRootIno, "d");
  Attr e = MustMkdir(d.ino, "e");
  Attr f = MustCreate(d.ino, "f");
  EXPECT_EQ(server_->Lookup(e.ino, "..")->ino, d.ino);
  EXPECT_EQ(server_->Lookup(kRootIno, "..")->ino, kRootIno);
  EXPECT_EQ(ErrcOf(server_->Lookup(f.ino, "..").status()), Errc::kNotDir);
  ASSERT_TRUE(server_->Rename(kSession, d.ino, "e", kRootIno, "e", 0).ok());
  EXPECT_EQ(server_->Lookup(e.ino, "..")->ino, kRootIno);
  ASSERT_TRUE(server_->Rmdir(kSession, kRootIno, "e").ok());
  EXPECT_FALSE(server_->Lookup(e.ino, "..").ok());
  EXPECT_EQ(ErrcOf(server_->Lookup(d.ino, ".").status()),
            Errc::kInvalidArgument);
}

// An access (atime now, keep the ctime) moves only the atime; keeping the
// ctime is refused for any other change.
TEST_F(MetaNamespaceTest, AnAccessMovesTheAtimeAndNotTheCtime) {
  Attr f = MustCreate(kRootIno, "f");
  SetAttrArgs access;
  access.valid = kSetAtimeNow | kKeepCtime;
  auto a = server_->SetAttr(kSession, f.ino, access);
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->ctime, f.ctime);
  EXPECT_FALSE(a->atime < f.atime);
  SetAttrArgs chmod = access;
  chmod.valid |= kSetMode;
  chmod.mode = 0600;
  EXPECT_EQ(ErrcOf(server_->SetAttr(kSession, f.ino, chmod).status()),
            Errc::kInvalidArgument);
  EXPECT_EQ(server_->GetAttr(f.ino)->mode & 07777, f.mode & 07777);
}

}  // namespace
}  // namespace rangefs::meta
