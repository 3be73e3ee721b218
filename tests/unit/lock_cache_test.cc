// LockCache without a network: the listener side can be driven directly.
#include "client/lock_cache.h"

#include <chrono>
#include <thread>

#include "gtest/gtest.h"

namespace rangefs::client {
namespace {

ClusterConfig Config() {
  return *ParseClusterConfig(
      "lockd 127.0.0.1:1;meta 127.0.0.1:2;data 0 127.0.0.1:3 4096");
}

proto::ServerMessage GrantFor(uint64_t ino) {
  proto::ServerMessage m;
  proto::Grant* g = m.mutable_grant();
  g->set_request_id(99);
  g->mutable_resource()->set_ino(ino);
  g->mutable_resource()->set_kind(proto::INVAL);
  g->set_mode(proto::EX);
  g->mutable_range()->set_start(0);
  g->mutable_range()->set_end(4096);
  return m;
}

TEST(LockCacheTest, LateGrantOfALostSessionGrantsNothing) {
  LockCache cache(Config(), LockCacheOptions{});
  // A grant still arriving on the stream of a session the node no longer
  // has must not become a lock of the current one.
  cache.OnMessage(0, cache.session_id() + 1, GrantFor(7));
  EXPECT_EQ(cache.Stats().cached_resources, 0u);
  // The same grant on the current session is cached.
  cache.OnMessage(0, cache.session_id(), GrantFor(7));
  EXPECT_EQ(cache.Stats().cached_resources, 1u);
}

TEST(LockCacheTest, EvictionNoticeOfAnOldSessionIsIgnored) {
  LockCache cache(Config(), LockCacheOptions{});
  cache.OnEvicted(0, cache.session_id() + 1, "old news");
  // Recovery would run on its own thread: give it the chance.
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  EXPECT_EQ(cache.Stats().sessions_lost, 0u);
}

}  // namespace
}  // namespace rangefs::client
