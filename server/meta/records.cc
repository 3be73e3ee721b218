#include "server/meta/records.h"

#include <time.h>

#include "common/coding.h"
#include "common/status.h"

namespace rangefs::meta {
namespace {

constexpr uint8_t kInodeVersion = 1;
constexpr uint8_t kExtentVersion = 1;

absl::Status Corrupt(const char* what) {
  return MakeError(Errc::kInternal, std::string("corrupt ") + what + " record");
}

}  // namespace

void PutTime(Encoder* e, const Timespec& t) {
  e->I64(t.sec);
  e->U32(t.nsec);
}

Timespec GetTime(Decoder* d) {
  Timespec t;
  t.sec = d->I64();
  t.nsec = d->U32();
  return t;
}

Timespec Now() {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return Timespec{ts.tv_sec, static_cast<uint32_t>(ts.tv_nsec)};
}

std::string EncodeInode(const InodeRecord& r) {
  Encoder e;
  e.U8(kInodeVersion);
  e.U64(r.ino);
  e.U32(r.mode);
  e.U32(r.nlink);
  e.U32(r.uid);
  e.U32(r.gid);
  e.U64(r.size);
  e.U64(r.rdev);
  PutTime(&e, r.atime);
  PutTime(&e, r.mtime);
  PutTime(&e, r.ctime);
  PutTime(&e, r.btime);
  e.U64(r.extent_gen);
  e.U64(r.generation);
  e.U64(r.parent);
  e.U64(r.blocks);
  e.Bytes(r.symlink);
  return e.Take();
}

absl::StatusOr<InodeRecord> DecodeInode(absl::string_view v) {
  Decoder d(v);
  if (d.U8() != kInodeVersion) return Corrupt("inode");
  InodeRecord r;
  r.ino = d.U64();
  r.mode = d.U32();
  r.nlink = d.U32();
  r.uid = d.U32();
  r.gid = d.U32();
  r.size = d.U64();
  r.rdev = d.U64();
  r.atime = GetTime(&d);
  r.mtime = GetTime(&d);
  r.ctime = GetTime(&d);
  r.btime = GetTime(&d);
  r.extent_gen = d.U64();
  r.generation = d.U64();
  r.parent = d.U64();
  r.blocks = d.U64();
  r.symlink = d.Bytes();
  if (!d.done()) return Corrupt("inode");
  return r;
}

const char* ExtentStateName(ExtentState s) {
  switch (s) {
    case ExtentState::kHole:
      return "hole";
    case ExtentState::kUnwritten:
      return "unwritten";
    case ExtentState::kWritten:
      return "written";
  }
  return "?";
}

std::string EncodeExtent(const Extent& x) {
  Encoder e;
  e.U8(kExtentVersion);
  e.U64(x.length);
  e.U32(x.device);
  e.U64(x.physical);
  e.U8(static_cast<uint8_t>(x.state));
  e.U64(x.gen);
  return e.Take();
}

absl::StatusOr<Extent> DecodeExtent(uint64_t offset, absl::string_view v) {
  Decoder d(v);
  if (d.U8() != kExtentVersion) return Corrupt("extent");
  Extent x;
  x.offset = offset;
  x.length = d.U64();
  x.device = d.U32();
  x.physical = d.U64();
  uint8_t state = d.U8();
  x.gen = d.U64();
  if (!d.done() || x.length == 0 ||
      (state != static_cast<uint8_t>(ExtentState::kUnwritten) &&
       state != static_cast<uint8_t>(ExtentState::kWritten))) {
    return Corrupt("extent");
  }
  x.state = static_cast<ExtentState>(state);
  return x;
}

std::string EncodeDevices(const std::vector<DeviceInfo>& devices) {
  Encoder e;
  e.U32(static_cast<uint32_t>(devices.size()));
  for (const DeviceInfo& d : devices) {
    e.U32(d.id);
    e.U64(d.size);
    e.Bytes(d.address);
  }
  return e.Take();
}

absl::StatusOr<std::vector<DeviceInfo>> DecodeDevices(absl::string_view v) {
  Decoder d(v);
  uint32_t n = d.U32();
  std::vector<DeviceInfo> out;
  for (uint32_t i = 0; i < n && d.ok(); ++i) {
    DeviceInfo info;
    info.id = d.U32();
    info.size = d.U64();
    info.address = d.Bytes();
    out.push_back(info);
  }
  if (!d.done()) return Corrupt("device list");
  return out;
}

std::string InodeKey(uint64_t ino) {
  std::string k;
  PutBE64(&k, ino);
  return k;
}

std::string DentryPrefix(uint64_t parent) { return InodeKey(parent); }

std::string DentryKey(uint64_t parent, absl::string_view name) {
  std::string k = InodeKey(parent);
  k.append(name.data(), name.size());
  return k;
}

std::string ExtentPrefix(uint64_t ino) { return InodeKey(ino); }

std::string ExtentKey(uint64_t ino, uint64_t offset) {
  std::string k = InodeKey(ino);
  PutBE64(&k, offset);
  return k;
}

std::string FreeKey(uint32_t device, uint64_t physical) {
  std::string k;
  PutBE32(&k, device);
  PutBE64(&k, physical);
  return k;
}

std::string XattrPrefix(uint64_t ino) { return InodeKey(ino); }

std::string XattrKey(uint64_t ino, absl::string_view name) {
  return DentryKey(ino, name);
}

std::string HandleKey(uint64_t ino, uint64_t session) {
  std::string k = InodeKey(ino);
  PutBE64(&k, session);
  return k;
}

std::string FenceKey(uint64_t session) {
  std::string k = "fence/";
  PutBE64(&k, session);
  return k;
}

std::string ReplyKey(uint64_t client, uint64_t seq) {
  std::string k;
  PutBE64(&k, client);
  PutBE64(&k, seq);
  return k;
}

std::string LeaseKey(uint64_t session) {
  std::string k = "lease/";
  PutBE64(&k, session);
  return k;
}

std::string EncodeLease(const std::vector<std::pair<uint64_t, uint64_t>>& r) {
  std::string v;
  for (const auto& [next, end] : r) {
    PutBE64(&v, next);
    PutBE64(&v, end);
  }
  return v;
}

bool DecodeLease(absl::string_view v,
                 std::vector<std::pair<uint64_t, uint64_t>>* out) {
  if (v.size() % 16 != 0) return false;
  out->clear();
  for (size_t i = 0; i < v.size(); i += 16) {
    out->emplace_back(LoadBE64(v.data() + i), LoadBE64(v.data() + i + 8));
  }
  return true;
}

std::string EncodeDentry(uint64_t ino, uint32_t type) {
  std::string v;
  PutBE64(&v, ino);
  PutBE32(&v, type);
  return v;
}

absl::Status DecodeDentry(absl::string_view v, uint64_t* ino, uint32_t* type) {
  if (v.size() != 12) return Corrupt("directory entry");
  *ino = LoadBE64(v.data());
  *type = LoadBE32(v.data() + 8);
  return absl::OkStatus();
}

Attr AttrOf(const InodeRecord& r) {
  Attr a;
  a.ino = r.ino;
  a.mode = r.mode;
  a.nlink = r.nlink;
  a.uid = r.uid;
  a.gid = r.gid;
  a.size = r.size;
  a.blocks = r.blocks * (kBlockSize / 512);
  a.rdev = r.rdev;
  a.atime = r.atime;
  a.mtime = r.mtime;
  a.ctime = r.ctime;
  a.btime = r.btime;
  a.extent_gen = r.extent_gen;
  a.generation = r.generation;
  return a;
}

}  // namespace rangefs::meta
