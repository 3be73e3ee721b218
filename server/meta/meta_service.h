// The gRPC adapter of rangefs-meta: translates MetaService calls into
// MetaServer calls, run on the server's own thread pool (they may wait for
// a synced RocksDB write). The only file of the metadata server that
// includes generated code.
#ifndef RANGEFS_SERVER_META_META_SERVICE_H_
#define RANGEFS_SERVER_META_META_SERVICE_H_

#include <string>

#include "common/thread_pool.h"
#include "proto/meta.grpc.pb.h"
#include "server/meta/meta_server.h"

namespace rangefs::meta {

class MetaServiceImpl final : public proto::MetaService::CallbackService {
 public:
  // How long a data server may take writes after it last asked for the
  // fences (FenceList; docs/lock-manager.md): the default.
  static constexpr uint64_t kDefaultFenceLeaseMs = 5000;

  // `server` and `pool` must outlive the service.
  MetaServiceImpl(MetaServer* server, ThreadPool* pool, std::string name,
                  uint64_t fence_lease_ms = kDefaultFenceLeaseMs)
      : server_(server),
        pool_(pool),
        name_(std::move(name)),
        fence_lease_ms_(fence_lease_ms) {}

#define RANGEFS_META_RPC(Method, Request, Reply)                     \
  grpc::ServerUnaryReactor* Method(grpc::CallbackServerContext* ctx, \
                                   const proto::Request* req,        \
                                   proto::Reply* reply) override;
  RANGEFS_META_RPC(Lookup, LookupRequest, EntryReply)
  RANGEFS_META_RPC(GetAttr, GetAttrRequest, AttrReply)
  RANGEFS_META_RPC(SetAttr, SetAttrRequest, AttrReply)
  RANGEFS_META_RPC(Create, CreateRequest, EntryReply)
  RANGEFS_META_RPC(CreateBatch, CreateBatchRequest, CreateBatchReply)
  RANGEFS_META_RPC(Mkdir, MkdirRequest, EntryReply)
  RANGEFS_META_RPC(Symlink, SymlinkRequest, EntryReply)
  RANGEFS_META_RPC(Link, LinkRequest, EntryReply)
  RANGEFS_META_RPC(Unlink, UnlinkRequest, UnlinkReply)
  RANGEFS_META_RPC(Rmdir, RmdirRequest, UnlinkReply)
  RANGEFS_META_RPC(Rename, RenameRequest, RenameReply)
  RANGEFS_META_RPC(Readlink, ReadlinkRequest, ReadlinkReply)
  RANGEFS_META_RPC(ReadDir, ReadDirRequest, ReadDirReply)
  RANGEFS_META_RPC(StatFs, StatFsRequest, StatFsReply)
  RANGEFS_META_RPC(Sync, SyncRequest, SyncReply)
  RANGEFS_META_RPC(ReserveInodes, ReserveInodesRequest, ReserveInodesReply)
  RANGEFS_META_RPC(MapRead, MapRequest, MapReply)
  RANGEFS_META_RPC(MapWrite, MapRequest, MapReply)
  RANGEFS_META_RPC(CommitWrite, CommitWriteRequest, CommitWriteReply)
  RANGEFS_META_RPC(Fallocate, FallocateRequest, AttrReply)
  RANGEFS_META_RPC(Seek, SeekRequest, SeekReply)
  RANGEFS_META_RPC(Open, OpenRequest, AttrReply)
  RANGEFS_META_RPC(GetXattr, XattrRequest, XattrReply)
  RANGEFS_META_RPC(SetXattr, XattrRequest, XattrReply)
  RANGEFS_META_RPC(ListXattr, XattrRequest, XattrReply)
  RANGEFS_META_RPC(RemoveXattr, XattrRequest, XattrReply)
  RANGEFS_META_RPC(Fence, FenceRequest, FenceReply)
  RANGEFS_META_RPC(FenceList, FenceListRequest, FenceListReply)
  RANGEFS_META_RPC(Fsck, FsckRequest, FsckReply)
  RANGEFS_META_RPC(Status, StatFsRequest, StatusReply)
  RANGEFS_META_RPC(Ping, PingRequest, PingReply)
  RANGEFS_META_RPC(SetFault, SetFaultRequest, SetFaultReply)
#undef RANGEFS_META_RPC

  // CreateBatchRequest's cap (meta.proto).
  static constexpr int kMaxCreateBatch = 256;

 private:
  void ApplyCreate(const proto::CreateRequest& req, proto::EntryReply* reply);

  MetaServer* const server_;
  ThreadPool* const pool_;
  const std::string name_;
  const uint64_t fence_lease_ms_;
};

}  // namespace rangefs::meta

#endif  // RANGEFS_SERVER_META_META_SERVICE_H_
