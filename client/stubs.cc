// gRPC adapter for client/stubs.h: converts client value types to and from
// the generated MetaService / DataService messages.
#include "client/stubs.h"

#include <atomic>
#include <chrono>
#include <deque>
#include <functional>
#include <random>
#include <set>
#include <thread>
#include <type_traits>

#include "client/bulk_client.h"
#include "common/fault_injection.h"
#include "common/status.h"
#include "proto/data.grpc.pb.h"
#include "proto/meta.grpc.pb.h"
#include "rpc/channel.h"
#include "rpc/convert.h"

namespace rangefs::client {
namespace {

constexpr int kDataConnections = 4;

Timespec FromProto(const proto::Timespec& t) { return {t.sec(), t.nsec()}; }

void ToProto(const Timespec& t, proto::Timespec* out) {
  out->set_sec(t.sec);
  out->set_nsec(t.nsec);
}

Attr FromProto(const proto::Attr& a) {
  Attr r;
  r.ino = a.ino();
  r.mode = a.mode();
  r.nlink = a.nlink();
  r.uid = a.uid();
  r.gid = a.gid();
  r.size = a.size();
  r.blocks = a.blocks();
  r.blksize = a.blksize();
  r.rdev = a.rdev();
  r.atime = FromProto(a.atime());
  r.mtime = FromProto(a.mtime());
  r.ctime = FromProto(a.ctime());
  r.btime = FromProto(a.btime());
  r.generation = a.generation();
  return r;
}

void ToProto(const Creds& c, proto::Creds* out) {
  out->set_uid(c.uid);
  out->set_gid(c.gid);
  for (uint32_t g : c.groups) out->add_groups(g);
}

// Requests that name their call (CallId in proto/meta.proto).
template <typename R, typename = void>
struct Named : std::false_type {};
template <typename R>
struct Named<R, std::void_t<decltype(std::declval<R&>().mutable_call())>>
    : std::true_type {};

uint64_t RandomClientId() {
  std::random_device rd;
  uint64_t id = 0;
  while (id == 0) id = (uint64_t{rd()} << 32) | rd();
  return id;
}

absl::Status Transport(const grpc::Status& s, const char* what) {
  return MakeError(Errc::kUnavailable,
                   std::string(what) + ": " + s.error_message());
}

// The mappings of a MapReply for `ranges` (what was asked), checked:
// each piece continues the range being covered, or starts the next range
// at its start once that one is covered.
absl::StatusOr<MapResult> MappingsOf(const proto::MapReply& rep,
                                     const std::vector<ByteRange>& ranges) {
  MapResult r;
  r.cookie = rep.cookie();
  r.size = rep.size();
  size_t k = 0;
  uint64_t pos = ranges[0].start;
  for (const proto::Mapping& m : rep.mappings()) {
    if (pos == ranges[k].end && k + 1 < ranges.size()) pos = ranges[++k].start;
    if (m.offset() != pos || m.length() == 0 ||
        m.length() > ranges[k].end - pos || m.state() > proto::WRITTEN) {
      return MakeError(Errc::kInternal, "malformed mapping reply");
    }
    r.mappings.push_back({m.offset(), m.length(),
                          static_cast<ExtentState>(m.state()), m.device(),
                          m.physical()});
    pos += m.length();
  }
  if (r.mappings.empty()) {
    return MakeError(Errc::kInternal, "empty mapping reply");
  }
  return r;
}

class GrpcStubs : public Stubs {
 public:
  GrpcStubs(const ClusterConfig& config, uint64_t timeout_ms)
      : timeout_ms_(timeout_ms),
        // The race suite's switch for N6 (docs/race-suite.md): data calls
        // that give up long before the lease instead of waiting for their
        // servers within the call's deadline.
        data_timeout_ms_(UnsafeSwitch("unsafe.client.data_fail_fast")
                             ? std::min<uint64_t>(timeout_ms, 200)
                             : timeout_ms),
        client_id_(RandomClientId()),
        meta_(proto::MetaService::NewStub(rpc::MakeChannel(config.meta))) {
    // Several connections per data server: one HTTP/2 connection carries
    // one large message at a time, and writeback and fills keep a few in
    // flight (client_bench: about 2x the throughput of one connection).
    for (const DataServerConfig& d : config.data) {
      auto& stubs = data_[d.device];
      for (int i = 0; i < kDataConnections; ++i) {
        stubs.push_back(
            proto::DataService::NewStub(rpc::MakeChannel(d.address)));
      }
      if (!d.bulk.empty()) {
        bulk_[d.device] =
            std::make_unique<BulkChannel>(d.bulk, data_timeout_ms_);
      }
    }
    sender_ = std::thread([this] { SendCreates(); });
    sender_id_ = sender_.get_id();
  }

  ~GrpcStubs() override {
    {
      absl::MutexLock lock(&queue_mu_);
      stop_ = true;
    }
    if (sender_.joinable()) sender_.join();
  }

  absl::StatusOr<uint64_t> ReserveInodes(uint64_t session,
                                         uint64_t count) override {
    proto::ReserveInodesRequest req;
    req.set_session_id(session);
    req.set_count(count);
    proto::ReserveInodesReply rep;
    // Unordered: a new lease leaves the older ones queued creates use.
    if (absl::Status s = Call(&proto::MetaService::Stub::ReserveInodes, req,
                              &rep, "reserve inodes", /*ordered=*/false);
        !s.ok()) {
      return s;
    }
    return rep.first();
  }

  void CreateLater(uint64_t session, NewFile f, CreateDone done) override {
    absl::MutexLock lock(&queue_mu_);
    queue_mu_.Await(absl::Condition(
        +[](GrpcStubs* g) ABSL_EXCLUSIVE_LOCKS_REQUIRED(g->queue_mu_) {
          return g->queue_.size() < kMaxQueuedCreates;
        },
        this));
    queue_.push_back(QueuedCreate{session, std::move(f), std::move(done)});
    ++queued_unlocked_;
    queued_.store(queued_unlocked_, std::memory_order_release);
  }

  uint64_t meta_calls() const override {
    return meta_calls_.load(std::memory_order_relaxed);
  }

  absl::StatusOr<Attr> Lookup(uint64_t parent, const std::string& name,
                              bool after_creates) override {
    proto::LookupRequest req;
    req.set_parent(parent);
    req.set_name(name);
    proto::EntryReply rep;
    return Entry(Call(&proto::MetaService::Stub::Lookup, req, &rep, "lookup",
                      after_creates),
                 rep);
  }
  absl::StatusOr<Attr> GetAttr(uint64_t ino) override {
    proto::GetAttrRequest req;
    req.set_ino(ino);
    proto::AttrReply rep;
    return Entry(Call(&proto::MetaService::Stub::GetAttr, req, &rep, "getattr"),
                 rep);
  }
  absl::StatusOr<Attr> SetAttr(uint64_t session, uint64_t ino,
                               const SetAttrArgs& a) override {
    proto::SetAttrRequest req;
    req.set_session_id(session);
    req.set_ino(ino);
    req.set_valid(a.valid);
    req.set_mode(a.mode);
    req.set_uid(a.uid);
    req.set_gid(a.gid);
    req.set_size(a.size);
    ToProto(a.atime, req.mutable_atime());
    ToProto(a.mtime, req.mutable_mtime());
    ToProto(a.ctime, req.mutable_ctime());
    proto::AttrReply rep;
    return Entry(Call(&proto::MetaService::Stub::SetAttr, req, &rep, "setattr"),
                 rep);
  }
  absl::StatusOr<Attr> Create(uint64_t session, uint64_t parent,
                              const std::string& name, uint32_t mode,
                              uint64_t rdev, const Creds& creds, bool exclusive,
                              Attr* parent_attr) override {
    proto::CreateRequest req;
    req.set_session_id(session);
    req.set_parent(parent);
    req.set_name(name);
    req.set_mode(mode);
    req.set_rdev(rdev);
    ToProto(creds, req.mutable_creds());
    req.set_exclusive(exclusive);
    req.set_umask(creds.umask);
    proto::EntryReply rep;
    return Made(Call(&proto::MetaService::Stub::Create, req, &rep, "create"),
                rep, parent_attr);
  }
  absl::StatusOr<Attr> Mkdir(uint64_t session, uint64_t parent,
                             const std::string& name, uint32_t mode,
                             const Creds& creds, Attr* parent_attr) override {
    proto::MkdirRequest req;
    req.set_session_id(session);
    req.set_parent(parent);
    req.set_name(name);
    req.set_mode(mode);
    ToProto(creds, req.mutable_creds());
    req.set_umask(creds.umask);
    proto::EntryReply rep;
    return Made(Call(&proto::MetaService::Stub::Mkdir, req, &rep, "mkdir"), rep,
                parent_attr);
  }
  absl::StatusOr<Attr> Symlink(uint64_t session, uint64_t parent,
                               const std::string& name,
                               const std::string& target, const Creds& creds,
                               Attr* parent_attr) override {
    proto::SymlinkRequest req;
    req.set_session_id(session);
    req.set_parent(parent);
    req.set_name(name);
    req.set_target(target);
    ToProto(creds, req.mutable_creds());
    proto::EntryReply rep;
    return Made(Call(&proto::MetaService::Stub::Symlink, req, &rep, "symlink"),
                rep, parent_attr);
  }
  absl::StatusOr<Attr> Link(uint64_t session, uint64_t ino, uint64_t new_parent,
                            const std::string& new_name,
                            Attr* parent_attr) override {
    proto::LinkRequest req;
    req.set_session_id(session);
    req.set_ino(ino);
    req.set_new_parent(new_parent);
    req.set_new_name(new_name);
    proto::EntryReply rep;
    return Made(Call(&proto::MetaService::Stub::Link, req, &rep, "link"), rep,
                parent_attr);
  }
  absl::StatusOr<uint64_t> Unlink(uint64_t session, uint64_t parent,
                                  const std::string& name,
                                  Attr* parent_attr) override {
    proto::UnlinkRequest req;
    req.set_session_id(session);
    req.set_parent(parent);
    req.set_name(name);
    proto::UnlinkReply rep;
    if (absl::Status s =
            Call(&proto::MetaService::Stub::Unlink, req, &rep, "unlink");
        !s.ok()) {
      return s;
    }
    if (parent_attr != nullptr) *parent_attr = FromProto(rep.parent());
    return rep.ino();
  }
  absl::Status Rmdir(uint64_t session, uint64_t parent, const std::string& name,
                     Attr* parent_attr) override {
    proto::RmdirRequest req;
    req.set_session_id(session);
    req.set_parent(parent);
    req.set_name(name);
    proto::UnlinkReply rep;
    absl::Status s = Call(&proto::MetaService::Stub::Rmdir, req, &rep, "rmdir");
    if (s.ok() && parent_attr != nullptr) {
      *parent_attr = FromProto(rep.parent());
    }
    return s;
  }
  absl::StatusOr<uint64_t> Rename(uint64_t session, uint64_t old_parent,
                                  const std::string& old_name,
                                  uint64_t new_parent,
                                  const std::string& new_name,
                                  uint32_t flags) override {
    proto::RenameRequest req;
    req.set_session_id(session);
    req.set_old_parent(old_parent);
    req.set_old_name(old_name);
    req.set_new_parent(new_parent);
    req.set_new_name(new_name);
    req.set_flags(flags);
    proto::RenameReply rep;
    if (absl::Status s =
            Call(&proto::MetaService::Stub::Rename, req, &rep, "rename");
        !s.ok()) {
      return s;
    }
    return rep.replaced_ino();
  }
  absl::StatusOr<std::string> Readlink(uint64_t ino) override {
    proto::ReadlinkRequest req;
    req.set_ino(ino);
    proto::ReadlinkReply rep;
    if (absl::Status s =
            Call(&proto::MetaService::Stub::Readlink, req, &rep, "readlink");
        !s.ok()) {
      return s;
    }
    return rep.target();
  }
  absl::StatusOr<DirPage> ReadDir(uint64_t ino, const std::string& after,
                                  uint32_t max_entries, bool plus) override {
    proto::ReadDirRequest req;
    req.set_ino(ino);
    req.set_after(after);
    req.set_max_entries(max_entries);
    req.set_plus(plus);
    proto::ReadDirReply rep;
    if (absl::Status s =
            Call(&proto::MetaService::Stub::ReadDir, req, &rep, "readdir");
        !s.ok()) {
      return s;
    }
    DirPage page;
    page.eof = rep.eof();
    for (const proto::DirEntry& e : rep.entries()) {
      page.entries.push_back(
          {e.name(), e.ino(), e.type(), plus ? FromProto(e.attr()) : Attr{}});
    }
    return page;
  }
  absl::StatusOr<FsStat> StatFs() override {
    proto::StatFsRequest req;
    proto::StatFsReply rep;
    if (absl::Status s =
            Call(&proto::MetaService::Stub::StatFs, req, &rep, "statfs");
        !s.ok()) {
      return s;
    }
    return FsStat{rep.block_size(), rep.total_blocks(), rep.free_blocks(),
                  rep.files(),      rep.free_files(),   rep.name_max()};
  }
  absl::StatusOr<MapResult> Map(uint64_t session, uint64_t ino, uint64_t offset,
                                uint64_t length, bool for_write) override {
    proto::MapRequest req;
    req.set_session_id(session);
    req.set_ino(ino);
    req.set_offset(offset);
    req.set_length(length);
    proto::MapReply rep;
    absl::Status s =
        for_write
            ? Call(&proto::MetaService::Stub::MapWrite, req, &rep, "mapwrite")
            : Call(&proto::MetaService::Stub::MapRead, req, &rep, "mapread");
    if (!s.ok()) return s;
    return MappingsOf(rep, {ByteRange{offset, offset + length}});
  }
  absl::StatusOr<MapResult> MapWriteRanges(
      uint64_t session, uint64_t ino,
      const std::vector<ByteRange>& ranges) override {
    if (ranges.empty()) {
      return MakeError(Errc::kInvalidArgument, "no range to map");
    }
    proto::MapRequest req;
    req.set_session_id(session);
    req.set_ino(ino);
    req.set_offset(ranges[0].start);
    req.set_length(ranges[0].Length());
    for (size_t k = 1; k < ranges.size(); ++k) {
      *req.add_more() = rpc::ToProto(ranges[k]);
    }
    proto::MapReply rep;
    absl::Status s =
        Call(&proto::MetaService::Stub::MapWrite, req, &rep, "mapwrite");
    if (!s.ok()) return s;
    return MappingsOf(rep, ranges);
  }
  absl::StatusOr<CommitResult> CommitWrite(uint64_t session, uint64_t ino,
                                           const std::vector<ByteRange>& ranges,
                                           uint64_t cookie, uint64_t new_size,
                                           const Timespec& mtime) override {
    proto::CommitWriteRequest req;
    req.set_session_id(session);
    req.set_ino(ino);
    for (const ByteRange& r : ranges) *req.add_ranges() = rpc::ToProto(r);
    req.set_cookie(cookie);
    req.set_new_size(new_size);
    ToProto(mtime, req.mutable_mtime());
    proto::CommitWriteReply rep;
    if (absl::Status s =
            Call(&proto::MetaService::Stub::CommitWrite, req, &rep, "commit");
        !s.ok()) {
      return s;
    }
    return CommitResult{rep.cookie(), FromProto(rep.attr())};
  }
  absl::StatusOr<Attr> Fallocate(uint64_t session, uint64_t ino, uint32_t mode,
                                 uint64_t offset, uint64_t length) override {
    proto::FallocateRequest req;
    req.set_session_id(session);
    req.set_ino(ino);
    req.set_mode(mode);
    req.set_offset(offset);
    req.set_length(length);
    proto::AttrReply rep;
    return Entry(
        Call(&proto::MetaService::Stub::Fallocate, req, &rep, "fallocate"),
        rep);
  }
  absl::StatusOr<uint64_t> Seek(uint64_t ino, uint64_t offset,
                                bool data) override {
    proto::SeekRequest req;
    req.set_ino(ino);
    req.set_offset(offset);
    req.set_data(data);
    proto::SeekReply rep;
    if (absl::Status s =
            Call(&proto::MetaService::Stub::Seek, req, &rep, "seek");
        !s.ok()) {
      return s;
    }
    return rep.offset();
  }
  absl::StatusOr<Attr> Open(uint64_t session, uint64_t ino,
                            bool close) override {
    proto::OpenRequest req;
    req.set_session_id(session);
    req.set_ino(ino);
    req.set_close(close);
    proto::AttrReply rep;
    return Entry(Call(&proto::MetaService::Stub::Open, req, &rep, "open"), rep);
  }
  absl::StatusOr<std::string> GetXattr(uint64_t ino,
                                       const std::string& name) override {
    proto::XattrRequest req;
    req.set_ino(ino);
    req.set_name(name);
    proto::XattrReply rep;
    if (absl::Status s =
            Call(&proto::MetaService::Stub::GetXattr, req, &rep, "getxattr");
        !s.ok()) {
      return s;
    }
    return rep.value();
  }
  absl::Status SetXattr(uint64_t session, uint64_t ino, const std::string& name,
                        const std::string& value, uint32_t flags) override {
    proto::XattrRequest req;
    req.set_session_id(session);
    req.set_ino(ino);
    req.set_name(name);
    req.set_value(value);
    req.set_flags(flags);
    proto::XattrReply rep;
    return Call(&proto::MetaService::Stub::SetXattr, req, &rep, "setxattr");
  }
  absl::StatusOr<std::vector<std::string>> ListXattr(uint64_t ino) override {
    proto::XattrRequest req;
    req.set_ino(ino);
    proto::XattrReply rep;
    if (absl::Status s =
            Call(&proto::MetaService::Stub::ListXattr, req, &rep, "listxattr");
        !s.ok()) {
      return s;
    }
    return std::vector<std::string>(rep.names().begin(), rep.names().end());
  }
  absl::Status RemoveXattr(uint64_t session, uint64_t ino,
                           const std::string& name) override {
    proto::XattrRequest req;
    req.set_session_id(session);
    req.set_ino(ino);
    req.set_name(name);
    proto::XattrReply rep;
    return Call(&proto::MetaService::Stub::RemoveXattr, req, &rep,
                "removexattr");
  }

  absl::Status ReadData(uint64_t session, uint32_t device, uint64_t physical,
                        uint64_t length, const struct iovec* iov,
                        int n) override {
    if (BulkChannel* b = Bulk(device, length); b != nullptr) {
      return b->Read(session, physical, static_cast<uint32_t>(length), iov, n);
    }
    proto::DataService::Stub* stub = DataStub(device);
    if (stub == nullptr) return UnknownDevice(device);
    proto::ReadRequest req;
    req.set_session_id(session);
    req.set_offset(physical);
    req.set_length(length);
    proto::ReadReply rep;
    if (absl::Status s =
            Call(stub, &proto::DataService::Stub::Read, req, &rep, "data read");
        !s.ok()) {
      return s;
    }
    if (rep.data().size() != length) {
      return MakeError(Errc::kIoError, "short read from a data server");
    }
    size_t at = 0;
    for (int i = 0; i < n && at < length; ++i) {
      const size_t c = std::min<size_t>(iov[i].iov_len, length - at);
      rep.data().copy(static_cast<char*>(iov[i].iov_base), c, at);
      at += c;
    }
    return absl::OkStatus();
  }
  absl::Status ReadDataToPipe(uint64_t session, uint32_t device,
                              uint64_t physical, uint64_t length,
                              int pipe_fd) override {
    BulkChannel* b = Bulk(device, length);
    if (b == nullptr) {
      return MakeError(Errc::kNotSupported,
                       "no bulk channel to device " + std::to_string(device));
    }
    return b->ReadToPipe(session, physical, static_cast<uint32_t>(length),
                         pipe_fd);
  }
  // A data server out of touch with the metadata server takes no writes
  // until it has caught up with the fences (BUSY; server/data/
  // fence_sync.h): a moment after a start or a metadata server's restart.
  // Writes and flushes wait for it, a few seconds at most.
  static absl::Status RetryBusy(const std::function<absl::Status()>& call) {
    absl::Status s;
    for (int i = 0; i < 60; ++i) {
      s = call();
      if (ErrcOf(s) != Errc::kBusy) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return s;
  }
  absl::Status WriteData(uint64_t session, uint32_t device, uint64_t physical,
                         const struct iovec* iov, int n, uint64_t length,
                         bool sync) override {
    return RetryBusy([&] {
      return WriteDataOnce(session, device, physical, iov, n, length, sync);
    });
  }
  absl::Status WriteDataOnce(uint64_t session, uint32_t device,
                             uint64_t physical, const struct iovec* iov, int n,
                             uint64_t length, bool sync) {
    if (BulkChannel* b = Bulk(device, length); b != nullptr) {
      return b->Write(session, physical, iov, n, static_cast<uint32_t>(length),
                      sync);
    }
    proto::DataService::Stub* stub = DataStub(device);
    if (stub == nullptr) return UnknownDevice(device);
    proto::WriteRequest req;
    req.set_session_id(session);
    req.set_offset(physical);
    std::string* data = req.mutable_data();
    data->reserve(length);
    for (int i = 0; i < n; ++i) {
      data->append(static_cast<const char*>(iov[i].iov_base), iov[i].iov_len);
    }
    req.set_sync(sync);
    proto::WriteReply rep;
    return Call(stub, &proto::DataService::Stub::Write, req, &rep,
                "data write");
  }
  absl::Status SyncMeta() override {
    proto::SyncRequest req;
    proto::SyncReply rep;
    return Call(&proto::MetaService::Stub::Sync, req, &rep, "metadata sync");
  }
  absl::Status FlushData(uint64_t session) override {
    for (auto& [device, stubs] : data_) {
      proto::FlushRequest req;
      req.set_session_id(session);
      proto::FlushReply rep;
      proto::DataService::Stub* stub = stubs[0].get();
      if (absl::Status s = RetryBusy([&] {
            return Call(stub, &proto::DataService::Stub::Flush, req, &rep,
                        "data flush");
          });
          !s.ok()) {
        return s;
      }
    }
    return absl::OkStatus();
  }

 private:
  template <typename Reply>
  static absl::StatusOr<Attr> Entry(const absl::Status& s, const Reply& rep) {
    if (!s.ok()) return s;
    return FromProto(rep.attr());
  }
  static absl::StatusOr<Attr> Made(const absl::Status& s,
                                   const proto::EntryReply& rep,
                                   Attr* parent_attr) {
    if (!s.ok()) return s;
    if (parent_attr != nullptr) *parent_attr = FromProto(rep.parent());
    return FromProto(rep.attr());
  }

  // A data server call: waits for the server up to the deadline.
  void Prepare(grpc::ClientContext* ctx) const {
    ctx->set_wait_for_ready(true);
    ctx->set_deadline(std::chrono::system_clock::now() +
                      std::chrono::milliseconds(data_timeout_ms_));
  }

  // A unary call; the reply's `error` field becomes the status.
  template <typename Stub, typename Req, typename Rep>
  absl::Status Call(Stub* stub,
                    grpc::Status (Stub::*method)(grpc::ClientContext*,
                                                 const Req&, Rep*),
                    const Req& req, Rep* rep, const char* what) {
    grpc::ClientContext ctx;
    Prepare(&ctx);
    grpc::Status s = (stub->*method)(&ctx, req, rep);
    if (!s.ok()) return Transport(s, what);
    return rpc::FromProto(rep->error());
  }
  // A metadata call: after the creates queued before it (CreateLater),
  // unless `ordered` is false (the call cannot depend on them). A call
  // whose connection broke (the server died or restarted under it) is sent
  // again until the deadline: a change under the same name (CallId), which
  // the server applies once, and any other call as it is, since it
  // changes nothing.
  template <typename Req, typename Rep>
  absl::Status Call(grpc::Status (proto::MetaService::Stub::*method)(
                        grpc::ClientContext*, const Req&, Rep*),
                    Req& req, Rep* rep, const char* what, bool ordered = true) {
    if (ordered) AwaitQueuedCreates();
    uint64_t seq = 0;
    if constexpr (Named<Req>::value) seq = BeginCall(req.mutable_call());
    const auto deadline = std::chrono::system_clock::now() +
                          std::chrono::milliseconds(timeout_ms_);
    absl::Status status;
    for (;;) {
      grpc::ClientContext ctx;
      ctx.set_wait_for_ready(true);
      ctx.set_deadline(deadline);
      meta_calls_.fetch_add(1, std::memory_order_relaxed);
      grpc::Status s = (meta_.get()->*method)(&ctx, req, rep);
      if (s.ok()) {
        status = rpc::FromProto(rep->error());
        break;
      }
      if (s.error_code() != grpc::StatusCode::UNAVAILABLE ||
          std::chrono::system_clock::now() + kRetryPause >= deadline) {
        status = Transport(s, what);
        break;
      }
      rep->Clear();
      std::this_thread::sleep_for(kRetryPause);
    }
    if (seq != 0) EndCall(seq);
    return status;
  }

  // Names a change: the next number of this client, and the lowest one
  // still waiting for its answer.
  uint64_t BeginCall(proto::CallId* id) {
    absl::MutexLock lock(&calls_mu_);
    const uint64_t seq = next_seq_++;
    waiting_.insert(seq);
    id->set_client(client_id_);
    id->set_seq(seq);
    id->set_acked(*waiting_.begin());
    return seq;
  }
  void EndCall(uint64_t seq) {
    absl::MutexLock lock(&calls_mu_);
    waiting_.erase(seq);
  }

  void AwaitQueuedCreates() {
    if (queued_.load(std::memory_order_acquire) == 0 ||
        std::this_thread::get_id() == sender_id_) {
      return;
    }
    absl::MutexLock lock(&queue_mu_);
    queue_mu_.Await(absl::Condition(
        +[](GrpcStubs* g) ABSL_EXCLUSIVE_LOCKS_REQUIRED(g->queue_mu_) {
          return g->queued_unlocked_ == 0;
        },
        this));
  }

  // Sends what is queued, in order, up to kMaxCreateBatch creates per call.
  void SendCreates() {
    absl::MutexLock lock(&queue_mu_);
    for (;;) {
      queue_mu_.Await(absl::Condition(
          +[](GrpcStubs* g) ABSL_EXCLUSIVE_LOCKS_REQUIRED(g->queue_mu_) {
            return g->stop_ || !g->queue_.empty();
          },
          this));
      if (queue_.empty()) return;  // Stopping, nothing left.
      std::vector<QueuedCreate> batch;
      while (!queue_.empty() && batch.size() < kMaxCreateBatch) {
        batch.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
      queue_mu_.Unlock();
      proto::CreateBatchRequest req;
      for (const QueuedCreate& q : batch) {
        proto::CreateRequest* c = req.add_creates();
        c->set_session_id(q.session);
        c->set_parent(q.file.parent);
        c->set_name(q.file.name);
        c->set_mode(q.file.mode);
        ToProto(q.file.creds, c->mutable_creds());
        c->set_exclusive(true);
        c->set_ino(q.file.ino);
        c->mutable_time()->set_sec(q.file.time.sec);
        c->mutable_time()->set_nsec(q.file.time.nsec);
      }
      // Each create is a change of its own: a retry of the batch applies
      // the ones already applied once.
      std::vector<uint64_t> seqs;
      for (proto::CreateRequest& c : *req.mutable_creates()) {
        seqs.push_back(BeginCall(c.mutable_call()));
      }
      proto::CreateBatchReply rep;
      absl::Status s = FaultPoint("client.before_create_sent");
      if (s.ok()) {
        s = Call(&proto::MetaService::Stub::CreateBatch, req, &rep, "create",
                 /*ordered=*/false);
      }
      for (uint64_t seq : seqs) EndCall(seq);
      if (s.ok() && rep.replies_size() != static_cast<int>(batch.size())) {
        s = MakeError(Errc::kIoError,
                      "the metadata server answered " +
                          std::to_string(rep.replies_size()) + " of " +
                          std::to_string(batch.size()) + " creates");
      }
      for (size_t i = 0; i < batch.size(); ++i) {
        Attr dir;
        if (!s.ok()) {
          batch[i].done(s, dir);
          continue;
        }
        const proto::EntryReply& r = rep.replies(static_cast<int>(i));
        batch[i].done(Made(rpc::FromProto(r.error()), r, &dir), dir);
      }
      queue_mu_.Lock();
      // Counted down only now: a call waiting for the queue runs after the
      // answers were applied.
      queued_unlocked_ -= static_cast<int>(batch.size());
      queued_.store(queued_unlocked_, std::memory_order_release);
    }
  }

  proto::DataService::Stub* DataStub(uint32_t device) {
    auto it = data_.find(device);
    if (it == data_.end()) return nullptr;
    return it
        ->second[next_.fetch_add(1, std::memory_order_relaxed) %
                 it->second.size()]
        .get();
  }
  // The bulk channel to `device`, if it has one and `length` fits.
  BulkChannel* Bulk(uint32_t device, uint64_t length) {
    auto it = bulk_.find(device);
    if (it == bulk_.end() || length == 0 || length > bulk::kMaxLength) {
      return nullptr;
    }
    return it->second.get();
  }
  static absl::Status UnknownDevice(uint32_t device) {
    return MakeError(Errc::kIoError,
                     "mapping names device " + std::to_string(device) +
                         ", which the cluster configuration does not list");
  }

  static constexpr std::chrono::milliseconds kRetryPause{20};
  const uint64_t timeout_ms_;
  const uint64_t data_timeout_ms_;
  const uint64_t client_id_;  // CallId.client: this process's name.
  absl::Mutex calls_mu_;
  uint64_t next_seq_ ABSL_GUARDED_BY(calls_mu_) = 1;
  std::set<uint64_t> waiting_ ABSL_GUARDED_BY(calls_mu_);
  std::unique_ptr<proto::MetaService::Stub> meta_;
  std::map<uint32_t, std::vector<std::unique_ptr<proto::DataService::Stub>>>
      data_;
  std::map<uint32_t, std::unique_ptr<BulkChannel>> bulk_;
  std::atomic<uint64_t> next_{0};
  std::atomic<uint64_t> meta_calls_{0};

  // CreateLater's queue and its sender thread.
  struct QueuedCreate {
    uint64_t session;
    NewFile file;
    CreateDone done;
  };
  static constexpr size_t kMaxQueuedCreates = 256;
  static constexpr size_t kMaxCreateBatch = 64;  // <= CreateBatchRequest's.

  absl::Mutex queue_mu_;
  std::deque<QueuedCreate> queue_ ABSL_GUARDED_BY(queue_mu_);
  // Queued or being sent; `queued_` mirrors it for a lock-free look.
  int queued_unlocked_ ABSL_GUARDED_BY(queue_mu_) = 0;
  std::atomic<int> queued_{0};
  bool stop_ ABSL_GUARDED_BY(queue_mu_) = false;
  std::thread sender_;
  std::thread::id sender_id_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Stubs>> Stubs::Create(
    const ClusterConfig& config, uint64_t timeout_ms) {
  if (config.meta.empty()) {
    return MakeError(Errc::kInvalidArgument,
                     "the cluster configuration names no metadata server");
  }
  if (config.data.empty()) {
    return MakeError(Errc::kInvalidArgument,
                     "the cluster configuration names no data server");
  }
  return std::unique_ptr<Stubs>(new GrpcStubs(config, timeout_ms));
}

}  // namespace rangefs::client
