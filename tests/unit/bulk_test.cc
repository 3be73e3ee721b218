// The bulk data protocol: its framing (common/bulk_wire.h), and a data
// server's BulkServer driven by the node's BulkChannel and by raw sockets
// over loopback, in one process.
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <string>
#include <thread>
#include <vector>

#include "client/bulk_client.h"
#include "common/bulk_wire.h"
#include "common/fault_injection.h"
#include "common/socket.h"
#include "common/status.h"
#include "gtest/gtest.h"
#include "server/data/block_store.h"
#include "server/data/bulk_server.h"
#include "tests/util/temp_dir.h"

namespace rangefs {
namespace {

using bulk::Op;
using bulk::Request;

TEST(BulkWireTest, RequestsRoundTrip) {
  Request r;
  r.op = Op::kWrite;
  r.sync = true;
  r.session = 0x0102030405060708ull;
  r.offset = 0xfffffffffffff000ull;
  r.length = bulk::kMaxLength;
  char buf[bulk::kRequestSize];
  bulk::EncodeRequest(r, buf);
  auto d = bulk::DecodeRequest(buf);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->op, Op::kWrite);
  EXPECT_TRUE(d->sync);
  EXPECT_EQ(d->session, r.session);
  EXPECT_EQ(d->offset, r.offset);
  EXPECT_EQ(d->length, r.length);
}

TEST(BulkWireTest, MalformedRequestsAreRefused) {
  Request r;
  r.length = 4096;
  char good[bulk::kRequestSize];
  bulk::EncodeRequest(r, good);
  ASSERT_TRUE(bulk::DecodeRequest(good).ok());
  auto refused = [&](int byte, char value) {
    char b[bulk::kRequestSize];
    std::copy(good, good + sizeof(b), b);
    b[byte] = value;
    auto d = bulk::DecodeRequest(b);
    return !d.ok() && ErrcOf(d.status()) == Errc::kInvalidArgument;
  };
  EXPECT_TRUE(refused(0, 'X'));  // Magic.
  EXPECT_TRUE(refused(4, 0));    // Op 0.
  EXPECT_TRUE(refused(4, 3));    // Op 3.
  EXPECT_TRUE(refused(5, 2));    // Unknown flag.
  EXPECT_TRUE(refused(6, 1));    // Reserved.
  EXPECT_TRUE(refused(31, 1));   // Reserved.
  EXPECT_TRUE(refused(24, 1));   // Length 16 MiB + 4096 > 4 MiB.
  r.length = 0;
  bulk::EncodeRequest(r, good);
  EXPECT_FALSE(bulk::DecodeRequest(good).ok());
}

TEST(BulkWireTest, RepliesMustCarryWhatTheRequestAskedFor) {
  Request read;
  read.op = Op::kRead;
  read.length = 8192;
  std::string message;
  bulk::Reply ok = bulk::ReplyFor(absl::OkStatus(), read, &message);
  char buf[bulk::kReplySize];
  bulk::EncodeReply(ok, buf);
  auto d = bulk::DecodeReply(buf, read);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->data_length, 8192u);
  Request other = read;
  other.length = 4096;
  EXPECT_FALSE(bulk::DecodeReply(buf, other).ok());  // Too much data.

  bulk::Reply fenced = bulk::ReplyFor(
      MakeError(Errc::kFenced, "session 5 is fenced"), read, &message);
  bulk::EncodeReply(fenced, buf);
  d = bulk::DecodeReply(buf, read);
  ASSERT_TRUE(d.ok());
  absl::Status s = bulk::StatusOf(*d, message);
  EXPECT_EQ(ErrcOf(s), Errc::kFenced);
  EXPECT_EQ(s.message(), "session 5 is fenced");

  bulk::Reply bad = fenced;
  bad.code = 99;
  bulk::EncodeReply(bad, buf);
  EXPECT_FALSE(bulk::DecodeReply(buf, read).ok());
  bad = fenced;
  bad.message_length = bulk::kMaxMessage + 1;
  bulk::EncodeReply(bad, buf);
  EXPECT_FALSE(bulk::DecodeReply(buf, read).ok());
}

TEST(SocketTest, BadOrBusyAddressesAreClearErrors) {
  int port = 0;
  EXPECT_EQ(ErrcOf(ListenTcp("no-port", &port).status()),
            Errc::kInvalidArgument);
  auto first = ListenTcp("127.0.0.1:0", &port);
  ASSERT_TRUE(first.ok()) << first.status();
  auto again = ListenTcp("127.0.0.1:" + std::to_string(port), nullptr);
  EXPECT_EQ(ErrcOf(again.status()), Errc::kUnavailable);
  EXPECT_NE(std::string(again.status().message()).find("in use"),
            std::string::npos)
      << again.status();
  auto conn = ConnectTcp("127.0.0.1:" + std::to_string(port), 1000);
  ASSERT_TRUE(conn.ok()) << conn.status();
  close(*conn);
  close(*first);
}

TEST(SocketTest, SendFileAllSendsTheFileThenZerosPastItsEnd) {
  testing::TempDir dir;
  const std::string path = dir.Sub("f");
  int file = open(path.c_str(), O_RDWR | O_CREAT, 0600);
  ASSERT_GE(file, 0);
  ASSERT_EQ(pwrite(file, "0123456789", 10, 0), 10);
  int pair[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, pair), 0);
  ASSERT_TRUE(SendFileAll(pair[0], file, 4, 16));
  char got[16];
  ASSERT_EQ(RecvAll(pair[1], got, sizeof(got)), 16);
  EXPECT_EQ(std::string(got, 16),
            std::string("456789") + std::string(10, '\0'));
  close(pair[0]);
  close(pair[1]);
  close(file);
}

// sendfile(2) has no MSG_NOSIGNAL: to a peer that has gone it must fail
// with EPIPE, not raise SIGPIPE (which ends the data server). A reader
// whose pipe filled up closes its connection mid-reply.
TEST(SocketTest, SendFileAllToAClosedPeerIsEpipeNotSigpipe) {
  testing::TempDir dir;
  const std::string path = dir.Sub("f");
  int file = open(path.c_str(), O_RDWR | O_CREAT, 0600);
  ASSERT_GE(file, 0);
  ASSERT_EQ(ftruncate(file, 1 << 20), 0);
  int pair[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, pair), 0);
  close(pair[1]);
  errno = 0;
  EXPECT_FALSE(SendFileAll(pair[0], file, 0, 1 << 20));
  EXPECT_EQ(errno, EPIPE);
  // Past the file's end the zeros go by send: EPIPE there too.
  errno = 0;
  EXPECT_FALSE(SendFileAll(pair[0], file, 2 << 20, 4096));
  EXPECT_EQ(errno, EPIPE);
  // No SIGPIPE is left pending on this thread either.
  sigset_t pending;
  ASSERT_EQ(sigpending(&pending), 0);
  EXPECT_FALSE(sigismember(&pending, SIGPIPE));
  close(pair[0]);
  close(file);
}

class BulkServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto s = data::BlockStore::Open(dir_.Sub("d"), kDevice);
    ASSERT_TRUE(s.ok()) << s.status();
    store_ = std::move(*s);
    StartServer("127.0.0.1:0");
  }
  void StartServer(const std::string& address) {
    auto b = data::BulkServer::Start(address, store_.get(), &port_);
    ASSERT_TRUE(b.ok()) << b.status();
    server_ = std::move(*b);
  }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }

  // A raw connection to the server.
  int Raw() {
    auto fd = ConnectTcp(address(), 5000);
    EXPECT_TRUE(fd.ok()) << fd.status();
    return fd.ok() ? *fd : -1;
  }

  static constexpr uint64_t kDevice = 16 << 20;
  testing::TempDir dir_;
  std::unique_ptr<data::BlockStore> store_;
  std::unique_ptr<data::BulkServer> server_;
  int port_ = 0;
};

TEST_F(BulkServerTest, WritesAndReadsReachTheBlockStore) {
  client::BulkChannel ch(address(), 5000);
  std::string data(4 << 20, '\0');
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<char>(i * 7);
  ASSERT_TRUE(ch.Write(1, 4096, data.data(), data.size(), false).ok());
  auto stored = store_->Read(1, 4096, data.size());
  ASSERT_TRUE(stored.ok());
  EXPECT_TRUE(*stored == data);
  ASSERT_TRUE(store_->Write(1, 100, "hello", true).ok());
  char out[5];
  ASSERT_TRUE(ch.Read(1, 100, 5, out).ok());
  EXPECT_EQ(std::string(out, 5), "hello");
}

TEST_F(BulkServerTest, ManyCallersAtOnceEachGetTheirOwnBytes) {
  client::BulkChannel ch(address(), 5000);
  std::vector<std::thread> threads;
  std::vector<bool> ok(8, false);
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      std::string mine(256 << 10, static_cast<char>('a' + t));
      std::string back(mine.size(), '\0');
      bool good = true;
      for (int round = 0; round < 20 && good; ++round) {
        uint64_t off = static_cast<uint64_t>(t) * mine.size();
        good = ch.Write(1, off, mine.data(), mine.size(), false).ok() &&
               ch.Read(1, off, back.size(), back.data()).ok() && back == mine;
      }
      ok[t] = good;
    });
  }
  for (auto& t : threads) t.join();
  for (int t = 0; t < 8; ++t) EXPECT_TRUE(ok[t]) << "caller " << t;
}

TEST_F(BulkServerTest, ServerErrorsComeBackWithTheirCodes) {
  client::BulkChannel ch(address(), 5000);
  ASSERT_TRUE(store_->Fence(5).ok());
  char buf[4096] = {};
  EXPECT_EQ(ErrcOf(ch.Write(5, 0, buf, sizeof(buf), false)), Errc::kFenced);
  EXPECT_EQ(ErrcOf(ch.Read(5, 0, sizeof(buf), buf)), Errc::kFenced);
  EXPECT_EQ(ErrcOf(ch.Write(0, 0, buf, sizeof(buf), false)),
            Errc::kInvalidArgument);  // Session 0.
  EXPECT_EQ(ErrcOf(ch.Read(1, kDevice - 10, sizeof(buf), buf)),
            Errc::kInvalidArgument);  // Past the device.
  // The channel still works after them.
  EXPECT_TRUE(ch.Write(1, 0, buf, sizeof(buf), false).ok());
}

// A pipe's bytes (non-blocking read end), all of them.
std::string Drain(int read_fd) {
  std::string out;
  char buf[65536];
  for (;;) {
    ssize_t n = read(read_fd, buf, sizeof(buf));
    if (n <= 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

TEST_F(BulkServerTest, ReadsIntoAPipeCarryTheStoredBytes) {
  int p[2];
  ASSERT_EQ(pipe2(p, O_NONBLOCK | O_CLOEXEC), 0);
  ASSERT_GE(fcntl(p[0], F_SETPIPE_SZ, 1 << 20), 1 << 20);
  client::BulkChannel ch(address(), 5000);
  std::string data(512 << 10, '\0');
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<char>(i * 13);
  ASSERT_TRUE(store_->Write(1, 8192, data, false).ok());
  for (int round = 0; round < 3; ++round) {  // The connection is reused.
    ASSERT_TRUE(ch.ReadToPipe(1, 8192, data.size(), p[1]).ok());
    EXPECT_TRUE(Drain(p[0]) == data) << "round " << round;
  }
  // The server's errors come back with nothing in the pipe.
  EXPECT_EQ(ErrcOf(ch.ReadToPipe(1, kDevice - 10, 4096, p[1])),
            Errc::kInvalidArgument);
  EXPECT_EQ(Drain(p[0]), "");
  close(p[0]);
  close(p[1]);
}

// A pipe holds fragments: one too small for the data is kWouldBlock, not a
// hang, and the channel goes on (on a new connection).
TEST_F(BulkServerTest, APipeThatFillsUpIsWouldBlockAndTheChannelGoesOn) {
  int p[2];
  ASSERT_EQ(pipe2(p, O_NONBLOCK | O_CLOEXEC), 0);
  ASSERT_GT(fcntl(p[0], F_SETPIPE_SZ, 4096), 0);  // One slot.
  client::BulkChannel ch(address(), 5000);
  std::string data(256 << 10, 'q');
  ASSERT_TRUE(store_->Write(1, 0, data, false).ok());
  EXPECT_EQ(ErrcOf(ch.ReadToPipe(1, 0, data.size(), p[1])), Errc::kWouldBlock);
  EXPECT_LE(Drain(p[0]).size(), data.size());
  std::string back(data.size(), '\0');
  ASSERT_TRUE(ch.Read(1, 0, back.size(), back.data()).ok());
  EXPECT_TRUE(back == data);
  close(p[0]);
  close(p[1]);
}

TEST_F(BulkServerTest, GarbageGetsAnErrorAndACloseAndChangesNothing) {
  ASSERT_TRUE(store_->Write(1, 0, std::string(4096, 'k'), false).ok());
  // A header with a bad magic, then what would be a write's data.
  int fd = Raw();
  ASSERT_GE(fd, 0);
  std::string junk(bulk::kRequestSize + 4096, 'Z');
  ASSERT_EQ(send(fd, junk.data(), junk.size(), MSG_NOSIGNAL),
            static_cast<ssize_t>(junk.size()));
  char head[bulk::kReplySize];
  ASSERT_EQ(RecvAll(fd, head, sizeof(head)),
            static_cast<ssize_t>(sizeof(head)));
  Request any;
  auto reply = bulk::DecodeReply(head, any);
  ASSERT_TRUE(reply.ok()) << reply.status();
  EXPECT_EQ(reply->code, static_cast<uint32_t>(Errc::kInvalidArgument));
  std::string message(reply->message_length, '\0');
  ASSERT_EQ(RecvAll(fd, message.data(), message.size()),
            static_cast<ssize_t>(message.size()));
  EXPECT_NE(message.find("magic"), std::string::npos) << message;
  char more;
  EXPECT_EQ(RecvAll(fd, &more, 1), 0);  // Closed.
  close(fd);

  // A valid write header whose data never comes: nothing is written.
  fd = Raw();
  Request w;
  w.op = Op::kWrite;
  w.session = 1;
  w.length = 4096;
  char req[bulk::kRequestSize];
  bulk::EncodeRequest(w, req);
  ASSERT_EQ(send(fd, req, sizeof(req), MSG_NOSIGNAL),
            static_cast<ssize_t>(sizeof(req)));
  ASSERT_EQ(send(fd, "xx", 2, MSG_NOSIGNAL), 2);
  close(fd);

  // A header cut short.
  fd = Raw();
  ASSERT_EQ(send(fd, req, 7, MSG_NOSIGNAL), 7);
  close(fd);

  client::BulkChannel ch(address(), 5000);
  char out[4096];
  ASSERT_TRUE(ch.Read(1, 0, sizeof(out), out).ok());
  EXPECT_EQ(std::string(out, sizeof(out)), std::string(4096, 'k'));
  EXPECT_EQ(store_->Stats().writes, 1u);
}

TEST_F(BulkServerTest, AChannelReconnectsToARestartedServer) {
  client::BulkChannel ch(address(), 10000);
  char buf[4096] = {'r'};
  ASSERT_TRUE(ch.Write(1, 0, buf, sizeof(buf), false).ok());
  // The channel keeps that connection; the server goes away and comes back
  // on the same port while it sits idle.
  const std::string same = address();
  server_.reset();
  std::thread restart([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    StartServer(same);
  });
  absl::Status s = ch.Write(1, 4096, buf, sizeof(buf), false);
  restart.join();
  EXPECT_TRUE(s.ok()) << s;
  char out[4096];
  ASSERT_TRUE(ch.Read(1, 4096, sizeof(out), out).ok());
  EXPECT_EQ(out[0], 'r');
}

TEST_F(BulkServerTest, AnUnreachableServerIsUnavailableAfterTheTimeout) {
  const std::string gone = address();
  server_.reset();
  client::BulkChannel ch(gone, 300);
  char buf[16];
  absl::Status s = ch.Read(1, 0, sizeof(buf), buf);
  EXPECT_EQ(ErrcOf(s), Errc::kUnavailable);
  EXPECT_NE(std::string(s.message()).find(gone), std::string::npos) << s;
}

TEST_F(BulkServerTest, StopWaitsForARequestBeingServed) {
  // A write delayed in the store still lands and is answered when the
  // server stops meanwhile.
  client::BulkChannel ch(address(), 10000);
  char buf[4096];
  std::fill(buf, buf + sizeof(buf), 's');
  FaultRule slow;
  slow.delay_ms = 400;
  slow.count = 1;
  FaultRegistry::Global().Set("data.write", slow);
  absl::Status s;
  std::thread writer([&] { s = ch.Write(1, 8192, buf, sizeof(buf), true); });
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  server_->Stop();
  writer.join();
  FaultRegistry::Global().ClearAll();
  EXPECT_TRUE(s.ok()) << s;
  EXPECT_EQ(*store_->Read(1, 8192, 1), "s");
}

}  // namespace
}  // namespace rangefs
