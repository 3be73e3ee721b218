#include "server/meta/meta_service.h"

#include "common/status.h"
#include "rpc/convert.h"
#include "rpc/server_util.h"

namespace rangefs::meta {
namespace {

using rpc::RunInline;
using rpc::RunOnPool;
using rpc::ToProto;

void FillTime(const Timespec& t, proto::Timespec* p) {
  p->set_sec(t.sec);
  p->set_nsec(t.nsec);
}

Timespec TimeOf(const proto::Timespec& p) {
  // Out-of-range nanoseconds are clamped rather than trusted.
  return Timespec{p.sec(), p.nsec() < 1000000000u ? p.nsec() : 999999999u};
}

void FillAttr(const Attr& a, proto::Attr* p) {
  p->set_ino(a.ino);
  p->set_mode(a.mode);
  p->set_nlink(a.nlink);
  p->set_uid(a.uid);
  p->set_gid(a.gid);
  p->set_size(a.size);
  p->set_blocks(a.blocks);
  p->set_blksize(a.blksize);
  p->set_rdev(a.rdev);
  FillTime(a.atime, p->mutable_atime());
  FillTime(a.mtime, p->mutable_mtime());
  FillTime(a.ctime, p->mutable_ctime());
  FillTime(a.btime, p->mutable_btime());
  p->set_extent_generation(a.extent_gen);
  p->set_generation(a.generation);
}

// Replies carrying an Attr or an error.
template <typename Reply>
void Answer(const absl::StatusOr<Attr>& a, Reply* reply) {
  if (a.ok()) {
    FillAttr(*a, reply->mutable_attr());
  } else {
    ToProto(a.status(), reply->mutable_error());
  }
}

// A namespace change's reply: the entry and its directory's attributes.
void AnswerEntry(const absl::StatusOr<Attr>& a, const Attr& parent,
                 proto::EntryReply* reply) {
  Answer(a, reply);
  if (a.ok() && parent.ino != 0) FillAttr(parent, reply->mutable_parent());
}

void FillMap(const absl::StatusOr<MapResult>& m, proto::MapReply* reply) {
  if (!m.ok()) {
    ToProto(m.status(), reply->mutable_error());
    return;
  }
  for (const Extent& e : m->mappings) {
    proto::Mapping* p = reply->add_mappings();
    p->set_offset(e.offset);
    p->set_length(e.length);
    p->set_state(static_cast<proto::ExtentState>(e.state));
    p->set_device(e.device);
    p->set_physical(e.physical);
  }
  reply->set_cookie(m->cookie);
  reply->set_size(m->size);
}

Creds CredsOf(const proto::Creds& c) { return Creds{c.uid(), c.gid()}; }

CallId CallOf(const proto::CallId& c) {
  return CallId{c.client(), c.seq(), c.acked()};
}

}  // namespace

grpc::ServerUnaryReactor* MetaServiceImpl::Lookup(
    grpc::CallbackServerContext* ctx, const proto::LookupRequest* req,
    proto::EntryReply* reply) {
  return RunOnPool(pool_, ctx, [=] {
    Answer(server_->Lookup(req->parent(), req->name()), reply);
  });
}

grpc::ServerUnaryReactor* MetaServiceImpl::GetAttr(
    grpc::CallbackServerContext* ctx, const proto::GetAttrRequest* req,
    proto::AttrReply* reply) {
  return RunOnPool(pool_, ctx,
                   [=] { Answer(server_->GetAttr(req->ino()), reply); });
}

grpc::ServerUnaryReactor* MetaServiceImpl::SetAttr(
    grpc::CallbackServerContext* ctx, const proto::SetAttrRequest* req,
    proto::AttrReply* reply) {
  return RunOnPool(pool_, ctx, [=] {
    MetaServer::Call call(server_, CallOf(req->call()));
    SetAttrArgs a;
    a.valid = req->valid();
    a.mode = req->mode();
    a.uid = req->uid();
    a.gid = req->gid();
    a.size = req->size();
    a.atime = TimeOf(req->atime());
    a.mtime = TimeOf(req->mtime());
    a.ctime = TimeOf(req->ctime());
    Answer(server_->SetAttr(req->session_id(), req->ino(), a), reply);
  });
}

void MetaServiceImpl::ApplyCreate(const proto::CreateRequest& req,
                                  proto::EntryReply* reply) {
  MetaServer::Call call(server_, CallOf(req.call()));
  Attr parent;
  ChosenInode chosen{req.ino(), TimeOf(req.time())};
  AnswerEntry(
      server_->Create(req.session_id(), req.parent(), req.name(), req.mode(),
                      req.rdev(), CredsOf(req.creds()), req.exclusive(),
                      req.umask(), &parent, req.ino() != 0 ? &chosen : nullptr),
      parent, reply);
}

grpc::ServerUnaryReactor* MetaServiceImpl::Create(
    grpc::CallbackServerContext* ctx, const proto::CreateRequest* req,
    proto::EntryReply* reply) {
  return RunOnPool(pool_, ctx, [=] { ApplyCreate(*req, reply); });
}

grpc::ServerUnaryReactor* MetaServiceImpl::CreateBatch(
    grpc::CallbackServerContext* ctx, const proto::CreateBatchRequest* req,
    proto::CreateBatchReply* reply) {
  return RunOnPool(pool_, ctx, [=] {
    const int n = req->creates_size();
    if (n == 0 || n > kMaxCreateBatch) {
      ToProto(MakeError(Errc::kInvalidArgument,
                        "a create batch holds 1 to " +
                            std::to_string(kMaxCreateBatch) + " creates, not " +
                            std::to_string(n)),
              reply->mutable_error());
      return;
    }
    for (const proto::CreateRequest& c : req->creates()) {
      ApplyCreate(c, reply->add_replies());
    }
  });
}

grpc::ServerUnaryReactor* MetaServiceImpl::Mkdir(
    grpc::CallbackServerContext* ctx, const proto::MkdirRequest* req,
    proto::EntryReply* reply) {
  return RunOnPool(pool_, ctx, [=] {
    MetaServer::Call call(server_, CallOf(req->call()));
    Attr parent;
    AnswerEntry(server_->Mkdir(req->session_id(), req->parent(), req->name(),
                               req->mode(), CredsOf(req->creds()), req->umask(),
                               &parent),
                parent, reply);
  });
}

grpc::ServerUnaryReactor* MetaServiceImpl::Symlink(
    grpc::CallbackServerContext* ctx, const proto::SymlinkRequest* req,
    proto::EntryReply* reply) {
  return RunOnPool(pool_, ctx, [=] {
    MetaServer::Call call(server_, CallOf(req->call()));
    Attr parent;
    AnswerEntry(server_->Symlink(req->session_id(), req->parent(), req->name(),
                                 req->target(), CredsOf(req->creds()), &parent),
                parent, reply);
  });
}

grpc::ServerUnaryReactor* MetaServiceImpl::Link(
    grpc::CallbackServerContext* ctx, const proto::LinkRequest* req,
    proto::EntryReply* reply) {
  return RunOnPool(pool_, ctx, [=] {
    MetaServer::Call call(server_, CallOf(req->call()));
    Attr parent;
    AnswerEntry(server_->Link(req->session_id(), req->ino(), req->new_parent(),
                              req->new_name(), &parent),
                parent, reply);
  });
}

grpc::ServerUnaryReactor* MetaServiceImpl::Unlink(
    grpc::CallbackServerContext* ctx, const proto::UnlinkRequest* req,
    proto::UnlinkReply* reply) {
  return RunOnPool(pool_, ctx, [=] {
    MetaServer::Call call(server_, CallOf(req->call()));
    auto r = server_->Unlink(req->session_id(), req->parent(), req->name(),
                             req->keep_if_open());
    if (!r.ok()) return ToProto(r.status(), reply->mutable_error());
    reply->set_ino(r->ino);
    reply->set_orphaned(r->orphaned);
    FillAttr(r->parent, reply->mutable_parent());
  });
}

grpc::ServerUnaryReactor* MetaServiceImpl::Rmdir(
    grpc::CallbackServerContext* ctx, const proto::RmdirRequest* req,
    proto::UnlinkReply* reply) {
  return RunOnPool(pool_, ctx, [=] {
    MetaServer::Call call(server_, CallOf(req->call()));
    auto r = server_->Rmdir(req->session_id(), req->parent(), req->name());
    if (!r.ok()) return ToProto(r.status(), reply->mutable_error());
    reply->set_ino(r->ino);
    FillAttr(r->parent, reply->mutable_parent());
  });
}

grpc::ServerUnaryReactor* MetaServiceImpl::Rename(
    grpc::CallbackServerContext* ctx, const proto::RenameRequest* req,
    proto::RenameReply* reply) {
  return RunOnPool(pool_, ctx, [=] {
    MetaServer::Call call(server_, CallOf(req->call()));
    auto r =
        server_->Rename(req->session_id(), req->old_parent(), req->old_name(),
                        req->new_parent(), req->new_name(), req->flags());
    if (!r.ok()) return ToProto(r.status(), reply->mutable_error());
    reply->set_replaced_ino(r->ino);
    reply->set_replaced_orphaned(r->orphaned);
  });
}

grpc::ServerUnaryReactor* MetaServiceImpl::Readlink(
    grpc::CallbackServerContext* ctx, const proto::ReadlinkRequest* req,
    proto::ReadlinkReply* reply) {
  return RunOnPool(pool_, ctx, [=] {
    auto r = server_->Readlink(req->ino());
    if (!r.ok()) return ToProto(r.status(), reply->mutable_error());
    reply->set_target(*r);
  });
}

grpc::ServerUnaryReactor* MetaServiceImpl::ReadDir(
    grpc::CallbackServerContext* ctx, const proto::ReadDirRequest* req,
    proto::ReadDirReply* reply) {
  return RunOnPool(pool_, ctx, [=] {
    auto r = server_->ReadDir(req->ino(), req->after(), req->max_entries(),
                              req->plus());
    if (!r.ok()) return ToProto(r.status(), reply->mutable_error());
    for (const DirEntry& e : r->entries) {
      proto::DirEntry* p = reply->add_entries();
      p->set_name(e.name);
      p->set_ino(e.ino);
      p->set_type(e.type);
      if (req->plus()) FillAttr(e.attr, p->mutable_attr());
    }
    reply->set_eof(r->eof);
  });
}

grpc::ServerUnaryReactor* MetaServiceImpl::StatFs(
    grpc::CallbackServerContext* ctx, const proto::StatFsRequest*,
    proto::StatFsReply* reply) {
  return RunOnPool(pool_, ctx, [=] {
    auto r = server_->GetStatFs();
    if (!r.ok()) return ToProto(r.status(), reply->mutable_error());
    reply->set_block_size(r->block_size);
    reply->set_total_blocks(r->total_blocks);
    reply->set_free_blocks(r->free_blocks);
    reply->set_files(r->files);
    reply->set_free_files(r->free_files);
    reply->set_name_max(kMaxNameLength);
    reply->set_fs_id(r->fs_id);
  });
}

grpc::ServerUnaryReactor* MetaServiceImpl::Sync(
    grpc::CallbackServerContext* ctx, const proto::SyncRequest*,
    proto::SyncReply* reply) {
  return RunOnPool(pool_, ctx,
                   [=] { ToProto(server_->Sync(), reply->mutable_error()); });
}

grpc::ServerUnaryReactor* MetaServiceImpl::ReserveInodes(
    grpc::CallbackServerContext* ctx, const proto::ReserveInodesRequest* req,
    proto::ReserveInodesReply* reply) {
  return RunOnPool(pool_, ctx, [=] {
    MetaServer::Call call(server_, CallOf(req->call()));
    auto r = server_->ReserveInodes(req->session_id(), req->count());
    if (!r.ok()) return ToProto(r.status(), reply->mutable_error());
    reply->set_first(*r);
  });
}

grpc::ServerUnaryReactor* MetaServiceImpl::MapRead(
    grpc::CallbackServerContext* ctx, const proto::MapRequest* req,
    proto::MapReply* reply) {
  return RunOnPool(pool_, ctx, [=] {
    if (req->more_size() > 0) {
      return ToProto(MakeError(Errc::kInvalidArgument,
                               "further ranges are for MapWrite only"),
                     reply->mutable_error());
    }
    FillMap(server_->MapRead(req->session_id(), req->ino(), req->offset(),
                             req->length()),
            reply);
  });
}

grpc::ServerUnaryReactor* MetaServiceImpl::MapWrite(
    grpc::CallbackServerContext* ctx, const proto::MapRequest* req,
    proto::MapReply* reply) {
  return RunOnPool(pool_, ctx, [=] {
    MetaServer::Call call(server_, CallOf(req->call()));
    std::vector<std::pair<uint64_t, uint64_t>> ranges = {
        {req->offset(), req->length()}};
    for (const proto::Range& r : req->more()) {
      // [start, end) on the wire; an inverted one is refused as too long.
      ranges.push_back({r.start(), r.end() - r.start()});
    }
    FillMap(server_->MapWriteRanges(req->session_id(), req->ino(), ranges),
            reply);
  });
}

grpc::ServerUnaryReactor* MetaServiceImpl::CommitWrite(
    grpc::CallbackServerContext* ctx, const proto::CommitWriteRequest* req,
    proto::CommitWriteReply* reply) {
  return RunOnPool(pool_, ctx, [=] {
    MetaServer::Call call(server_, CallOf(req->call()));
    std::vector<ByteRange> ranges;
    for (const proto::Range& r : req->ranges()) {
      ranges.push_back(rpc::FromProto(r));
    }
    auto a = server_->CommitWrite(req->session_id(), req->ino(), ranges,
                                  req->cookie(), req->new_size(),
                                  TimeOf(req->mtime()));
    if (!a.ok()) return ToProto(a.status(), reply->mutable_error());
    FillAttr(*a, reply->mutable_attr());
    reply->set_cookie(a->extent_gen);
  });
}

grpc::ServerUnaryReactor* MetaServiceImpl::Fallocate(
    grpc::CallbackServerContext* ctx, const proto::FallocateRequest* req,
    proto::AttrReply* reply) {
  return RunOnPool(pool_, ctx, [=] {
    MetaServer::Call call(server_, CallOf(req->call()));
    Answer(server_->Fallocate(req->session_id(), req->ino(), req->mode(),
                              req->offset(), req->length()),
           reply);
  });
}

grpc::ServerUnaryReactor* MetaServiceImpl::Seek(
    grpc::CallbackServerContext* ctx, const proto::SeekRequest* req,
    proto::SeekReply* reply) {
  return RunOnPool(pool_, ctx, [=] {
    auto r = server_->Seek(req->ino(), req->offset(), req->data());
    if (!r.ok()) return ToProto(r.status(), reply->mutable_error());
    reply->set_offset(*r);
  });
}

grpc::ServerUnaryReactor* MetaServiceImpl::Open(
    grpc::CallbackServerContext* ctx, const proto::OpenRequest* req,
    proto::AttrReply* reply) {
  return RunOnPool(pool_, ctx, [=] {
    MetaServer::Call call(server_, CallOf(req->call()));
    if (req->close()) {
      ToProto(server_->Close(req->session_id(), req->ino()),
              reply->mutable_error());
    } else {
      Answer(server_->Open(req->session_id(), req->ino()), reply);
    }
  });
}

grpc::ServerUnaryReactor* MetaServiceImpl::GetXattr(
    grpc::CallbackServerContext* ctx, const proto::XattrRequest* req,
    proto::XattrReply* reply) {
  return RunOnPool(pool_, ctx, [=] {
    auto r = server_->GetXattr(req->ino(), req->name());
    if (!r.ok()) return ToProto(r.status(), reply->mutable_error());
    reply->set_value(*r);
  });
}

grpc::ServerUnaryReactor* MetaServiceImpl::SetXattr(
    grpc::CallbackServerContext* ctx, const proto::XattrRequest* req,
    proto::XattrReply* reply) {
  return RunOnPool(pool_, ctx, [=] {
    MetaServer::Call call(server_, CallOf(req->call()));
    ToProto(server_->SetXattr(req->session_id(), req->ino(), req->name(),
                              req->value(), req->flags()),
            reply->mutable_error());
  });
}

grpc::ServerUnaryReactor* MetaServiceImpl::ListXattr(
    grpc::CallbackServerContext* ctx, const proto::XattrRequest* req,
    proto::XattrReply* reply) {
  return RunOnPool(pool_, ctx, [=] {
    auto r = server_->ListXattr(req->ino());
    if (!r.ok()) return ToProto(r.status(), reply->mutable_error());
    for (const std::string& n : *r) reply->add_names(n);
  });
}

grpc::ServerUnaryReactor* MetaServiceImpl::RemoveXattr(
    grpc::CallbackServerContext* ctx, const proto::XattrRequest* req,
    proto::XattrReply* reply) {
  return RunOnPool(pool_, ctx, [=] {
    MetaServer::Call call(server_, CallOf(req->call()));
    ToProto(server_->RemoveXattr(req->session_id(), req->ino(), req->name()),
            reply->mutable_error());
  });
}

grpc::ServerUnaryReactor* MetaServiceImpl::Fence(
    grpc::CallbackServerContext* ctx, const proto::FenceRequest* req,
    proto::FenceReply* reply) {
  return RunOnPool(pool_, ctx, [=] {
    ToProto(server_->Fence(req->session_id()), reply->mutable_error());
    reply->set_fence_lease_ms(fence_lease_ms_);
  });
}

grpc::ServerUnaryReactor* MetaServiceImpl::FenceList(
    grpc::CallbackServerContext* ctx, const proto::FenceListRequest* req,
    proto::FenceListReply* reply) {
  return RunOnPool(pool_, ctx, [=] {
    std::vector<uint64_t> sessions;
    reply->set_seq(server_->FencesAfter(req->after_seq(), &sessions));
    for (uint64_t s : sessions) reply->add_session_ids(s);
    reply->set_fence_lease_ms(fence_lease_ms_);
  });
}

grpc::ServerUnaryReactor* MetaServiceImpl::Fsck(
    grpc::CallbackServerContext* ctx, const proto::FsckRequest*,
    proto::FsckReply* reply) {
  return RunOnPool(pool_, ctx, [=] {
    auto r = server_->Fsck();
    if (!r.ok()) return ToProto(r.status(), reply->mutable_error());
    for (const std::string& p : r->problems) reply->add_problems(p);
    reply->set_inodes(r->inodes);
    reply->set_extents(r->extents);
    reply->set_orphans(r->orphans);
  });
}

grpc::ServerUnaryReactor* MetaServiceImpl::Status(
    grpc::CallbackServerContext* ctx, const proto::StatFsRequest*,
    proto::StatusReply* reply) {
  return RunInline(ctx, [=] {
    reply->set_fs_id(server_->fs_id());
    reply->set_block_size(kBlockSize);
    for (uint64_t s : server_->fenced_sessions()) {
      reply->add_fenced_sessions(s);
    }
    for (const DeviceInfo& d : server_->devices()) {
      proto::Device* p = reply->add_devices();
      p->set_id(d.id);
      p->set_size(d.size);
      p->set_address(d.address);
    }
    MetaCounters c = server_->counters();
    auto& m = *reply->mutable_counters();
    m["stale_commits"] = c.stale_commits;
    m["fenced_refusals"] = c.fenced_refusals;
    m["commits"] = c.commits;
    m["allocations"] = c.allocations;
    m["replayed"] = c.replayed;
    m["kept_replies"] = server_->kept_replies();
    m["sync_writes"] = server_->store()->sync_writes();
  });
}

grpc::ServerUnaryReactor* MetaServiceImpl::Ping(
    grpc::CallbackServerContext* ctx, const proto::PingRequest* req,
    proto::PingReply* reply) {
  return rpc::AnswerPing(ctx, req, reply, name_);
}

grpc::ServerUnaryReactor* MetaServiceImpl::SetFault(
    grpc::CallbackServerContext* ctx, const proto::SetFaultRequest* req,
    proto::SetFaultReply* reply) {
  return rpc::AnswerSetFault(ctx, req, reply);
}

}  // namespace rangefs::meta
