// Exactly-once changes (MetaServer::Call): a retry of a change that was
// applied gets the kept answer and changes nothing, also after a restart;
// a change that failed runs again; kept answers go as the node acks them.
#include <sys/stat.h>

#include <atomic>
#include <thread>

#include "common/status.h"
#include "gtest/gtest.h"
#include "server/meta/meta_server.h"
#include "tests/util/temp_dir.h"

namespace rangefs::meta {
namespace {

constexpr uint64_t kSession = 42;
constexpr uint64_t kClient = 0x5eed;
constexpr uint64_t kMiB = 1 << 20;

class MetaRepliesTest : public ::testing::Test {
 protected:
  void SetUp() override { Reopen(); }

  void Reopen() {
    server_.reset();
    auto s = MetaServer::Open(dir_.Sub("meta"), "testfs",
                              {DeviceInfo{0, 8 * kMiB, "127.0.0.1:1"}},
                              /*sync=*/false);
    ASSERT_TRUE(s.ok()) << s.status();
    server_ = std::move(*s);
  }

  // Runs `fn` twice under call `seq`: the first attempt and its retry.
  template <typename Fn>
  auto Twice(uint64_t seq, Fn fn) {
    CallId id{kClient, seq, seq};
    {
      MetaServer::Call call(server_.get(), id);
      auto first = fn();
      EXPECT_TRUE(first.ok()) << "first attempt: " << first.status();
    }
    MetaServer::Call call(server_.get(), id);
    return fn();
  }

  Attr Create(const std::string& name) {
    auto a = server_->Create(kSession, kRootIno, name, S_IFREG | 0644, 0,
                             Creds{}, true, 022);
    EXPECT_TRUE(a.ok()) << a.status();
    return a.ok() ? *a : Attr{};
  }
  bool Exists(uint64_t parent, const std::string& name) {
    return server_->Lookup(parent, name).ok();
  }

  testing::TempDir dir_;
  std::unique_ptr<MetaServer> server_;
};

TEST_F(MetaRepliesTest, RetriedNamespaceChangesApplyOnce) {
  Attr parent;
  auto made = Twice(1, [&] {
    return server_->Create(kSession, kRootIno, "f", S_IFREG | 0644, 0, Creds{},
                           /*exclusive=*/true, 022, &parent);
  });
  ASSERT_TRUE(made.ok()) << made.status();  // Not EXISTS.
  EXPECT_EQ(made->ino, server_->Lookup(kRootIno, "f")->ino);
  EXPECT_EQ(parent.ino, kRootIno);

  auto dir = Twice(2, [&] {
    return server_->Mkdir(kSession, kRootIno, "d", 0755, Creds{}, 0);
  });
  ASSERT_TRUE(dir.ok()) << dir.status();

  auto link = Twice(
      3, [&] { return server_->Link(kSession, made->ino, dir->ino, "g"); });
  ASSERT_TRUE(link.ok()) << link.status();
  EXPECT_EQ(link->nlink, 2u);
  EXPECT_EQ(server_->GetAttr(made->ino)->nlink, 2u);

  auto gone =
      Twice(4, [&] { return server_->Unlink(kSession, dir->ino, "g", false); });
  ASSERT_TRUE(gone.ok()) << gone.status();  // Not NOT_FOUND.
  EXPECT_EQ(gone->ino, made->ino);
  EXPECT_EQ(server_->GetAttr(made->ino)->nlink, 1u);

  // An exchange applied twice would swap the names back.
  Attr other = Create("h");
  auto swapped = Twice(5, [&] {
    return server_->Rename(kSession, kRootIno, "f", kRootIno, "h",
                           kRenameExchange);
  });
  ASSERT_TRUE(swapped.ok()) << swapped.status();
  EXPECT_EQ(server_->Lookup(kRootIno, "f")->ino, other.ino);
  EXPECT_EQ(server_->Lookup(kRootIno, "h")->ino, made->ino);

  auto moved = Twice(6, [&] {
    return server_->Rename(kSession, kRootIno, "h", dir->ino, "h2", 0);
  });
  ASSERT_TRUE(moved.ok()) << moved.status();
  EXPECT_TRUE(Exists(dir->ino, "h2"));

  ASSERT_TRUE(server_->Mkdir(kSession, kRootIno, "e", 0755, Creds{}, 0).ok());
  auto removed =
      Twice(7, [&] { return server_->Rmdir(kSession, kRootIno, "e"); });
  EXPECT_TRUE(removed.ok()) << removed.status();  // Not NOT_FOUND.
  auto fsck = server_->Fsck();
  ASSERT_TRUE(fsck.ok());
  EXPECT_TRUE(fsck->problems.empty()) << fsck->problems[0];
}

TEST_F(MetaRepliesTest, RetriedFileChangesApplyOnce) {
  Attr f = Create("f");
  auto set = Twice(1, [&] {
    return server_->SetXattr(kSession, f.ino, "user.a", "1", /*create=*/1).ok()
               ? absl::StatusOr<int>(0)
               : absl::StatusOr<int>(absl::InternalError("setxattr"));
  });
  EXPECT_TRUE(set.ok()) << "XATTR_CREATE applied twice";
  auto removed = Twice(2, [&] {
    absl::Status s = server_->RemoveXattr(kSession, f.ino, "user.a");
    return s.ok() ? absl::StatusOr<int>(0) : absl::StatusOr<int>(s);
  });
  EXPECT_TRUE(removed.ok()) << removed.status();

  ASSERT_TRUE(server_->Fallocate(kSession, f.ino, 0, 0, 64 * 1024).ok());
  auto collapsed = Twice(3, [&] {
    return server_->Fallocate(kSession, f.ino, kFallocCollapseRange, 0, 4096);
  });
  ASSERT_TRUE(collapsed.ok()) << collapsed.status();
  EXPECT_EQ(server_->GetAttr(f.ino)->size, 60u * 1024) << "collapsed twice";

  auto first = Twice(4, [&] { return server_->ReserveInodes(kSession, 16); });
  ASSERT_TRUE(first.ok()) << first.status();
  auto next = server_->ReserveInodes(kSession, 16);
  ASSERT_TRUE(next.ok());
  EXPECT_EQ(*next, *first + 16) << "a retried lease took numbers again";

  // One open, retried: one close frees the unlinked file.
  auto opened = Twice(5, [&] { return server_->Open(kSession, f.ino); });
  ASSERT_TRUE(opened.ok()) << opened.status();
  ASSERT_TRUE(server_->Unlink(kSession, kRootIno, "f", false).ok());
  ASSERT_TRUE(server_->Close(kSession, f.ino).ok());
  EXPECT_FALSE(server_->GetAttr(f.ino).ok()) << "a retried open left a handle";
}

TEST_F(MetaRepliesTest, KeptAnswersSurviveARestart) {
  Create("a");
  {
    MetaServer::Call call(server_.get(), CallId{kClient, 9, 9});
    ASSERT_TRUE(
        server_->Rename(kSession, kRootIno, "a", kRootIno, "b", 0).ok());
  }
  Reopen();
  MetaServer::Call call(server_.get(), CallId{kClient, 9, 9});
  auto again = server_->Rename(kSession, kRootIno, "a", kRootIno, "b", 0);
  EXPECT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(server_->counters().replayed, 1u);
}

TEST_F(MetaRepliesTest, AChangeThatFailedRunsAgain) {
  Create("a");
  CallId id{kClient, 1, 1};
  {
    MetaServer::Call call(server_.get(), id);
    auto r = server_->Mkdir(kSession, kRootIno, "a", 0755, Creds{}, 0);
    EXPECT_EQ(ErrcOf(r.status()), Errc::kExists) << r.status();
  }
  ASSERT_TRUE(server_->Unlink(kSession, kRootIno, "a", false).ok());
  MetaServer::Call call(server_.get(), id);
  EXPECT_TRUE(server_->Mkdir(kSession, kRootIno, "a", 0755, Creds{}, 0).ok());
  EXPECT_EQ(server_->counters().replayed, 0u);
}

TEST_F(MetaRepliesTest, AckedAnswersAreDropped) {
  for (uint64_t seq = 1; seq <= 5; ++seq) {
    MetaServer::Call call(server_.get(), CallId{kClient, seq, 1});
    Create("f" + std::to_string(seq));
  }
  EXPECT_EQ(server_->kept_replies(), 5u);
  {
    MetaServer::Call call(server_.get(), CallId{kClient, 6, 6});
    Create("f6");
  }
  EXPECT_EQ(server_->kept_replies(), 1u);
  Reopen();
  EXPECT_EQ(server_->kept_replies(), 1u);
  // Another client's answers are its own.
  {
    MetaServer::Call call(server_.get(), CallId{kClient + 1, 1, 100});
    Create("g");
  }
  EXPECT_EQ(server_->kept_replies(), 2u);
}

// A retry that comes while the first attempt still runs (the node lost
// its connection, not the server) waits for it and takes its answer.
TEST_F(MetaRepliesTest, ARetryWaitsForTheAttemptStillRunning) {
  CallId id{kClient, 1, 1};
  auto first = std::make_unique<MetaServer::Call>(server_.get(), id);
  std::atomic<bool> entered{false};
  absl::StatusOr<Attr> retried;
  std::thread retry([&] {
    MetaServer::Call call(server_.get(), id);
    entered = true;
    retried = server_->Create(kSession, kRootIno, "f", S_IFREG | 0644, 0,
                              Creds{}, true, 022);
  });
  usleep(100000);
  EXPECT_FALSE(entered) << "the retry ran beside its first attempt";
  Attr made = Create("f");
  first.reset();
  retry.join();
  ASSERT_TRUE(retried.ok()) << retried.status();
  EXPECT_EQ(retried->ino, made.ino);
}

}  // namespace
}  // namespace rangefs::meta
