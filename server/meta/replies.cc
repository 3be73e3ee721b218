#include "server/meta/replies.h"

#include "common/coding.h"

namespace rangefs::meta {
namespace {

enum Kind : uint8_t {
  kDone = 1,
  kAttr = 2,
  kEntry = 3,
  kUnlink = 4,
  kMap = 5,
  kNumber = 6,
};

Encoder Start(const Timespec& when, Kind kind) {
  Encoder e;
  PutTime(&e, when);
  e.U8(kind);
  return e;
}

// Skips the time; true when the kind is `kind`.
bool Open(Decoder* d, Kind kind) {
  GetTime(d);
  return d->U8() == kind && d->ok();
}

void PutAttr(Encoder* e, const Attr& a) {
  e->U64(a.ino);
  e->U32(a.mode);
  e->U32(a.nlink);
  e->U32(a.uid);
  e->U32(a.gid);
  e->U64(a.size);
  e->U64(a.blocks);
  e->U32(a.blksize);
  e->U64(a.rdev);
  PutTime(e, a.atime);
  PutTime(e, a.mtime);
  PutTime(e, a.ctime);
  PutTime(e, a.btime);
  e->U64(a.extent_gen);
  e->U64(a.generation);
}

Attr GetAttr(Decoder* d) {
  Attr a;
  a.ino = d->U64();
  a.mode = d->U32();
  a.nlink = d->U32();
  a.uid = d->U32();
  a.gid = d->U32();
  a.size = d->U64();
  a.blocks = d->U64();
  a.blksize = d->U32();
  a.rdev = d->U64();
  a.atime = GetTime(d);
  a.mtime = GetTime(d);
  a.ctime = GetTime(d);
  a.btime = GetTime(d);
  a.extent_gen = d->U64();
  a.generation = d->U64();
  return a;
}

}  // namespace

std::string EncodeKept(const Timespec& when, const Done&) {
  return Start(when, kDone).Take();
}

std::string EncodeKept(const Timespec& when, const Attr& r) {
  Encoder e = Start(when, kAttr);
  PutAttr(&e, r);
  return e.Take();
}

std::string EncodeKept(const Timespec& when, const EntryResult& r) {
  Encoder e = Start(when, kEntry);
  PutAttr(&e, r.first);
  PutAttr(&e, r.second);
  return e.Take();
}

std::string EncodeKept(const Timespec& when, const UnlinkResult& r) {
  Encoder e = Start(when, kUnlink);
  e.U64(r.ino);
  e.U8(r.orphaned ? 1 : 0);
  PutAttr(&e, r.parent);
  return e.Take();
}

std::string EncodeKept(const Timespec& when, const MapResult& r) {
  Encoder e = Start(when, kMap);
  e.U64(r.cookie);
  e.U64(r.size);
  e.U32(static_cast<uint32_t>(r.mappings.size()));
  for (const Extent& x : r.mappings) {
    e.U64(x.offset);
    e.U64(x.length);
    e.U32(x.device);
    e.U64(x.physical);
    e.U8(static_cast<uint8_t>(x.state));
    e.U64(x.gen);
  }
  return e.Take();
}

std::string EncodeKept(const Timespec& when, uint64_t r) {
  Encoder e = Start(when, kNumber);
  e.U64(r);
  return e.Take();
}

bool DecodeKept(absl::string_view v, Done*) {
  Decoder d(v);
  return Open(&d, kDone) && d.done();
}

bool DecodeKept(absl::string_view v, Attr* out) {
  Decoder d(v);
  if (!Open(&d, kAttr)) return false;
  *out = GetAttr(&d);
  return d.done();
}

bool DecodeKept(absl::string_view v, EntryResult* out) {
  Decoder d(v);
  if (!Open(&d, kEntry)) return false;
  out->first = GetAttr(&d);
  out->second = GetAttr(&d);
  return d.done();
}

bool DecodeKept(absl::string_view v, UnlinkResult* out) {
  Decoder d(v);
  if (!Open(&d, kUnlink)) return false;
  out->ino = d.U64();
  out->orphaned = d.U8() != 0;
  out->parent = GetAttr(&d);
  return d.done();
}

bool DecodeKept(absl::string_view v, MapResult* out) {
  Decoder d(v);
  if (!Open(&d, kMap)) return false;
  out->cookie = d.U64();
  out->size = d.U64();
  const uint32_t n = d.U32();
  if (!d.ok() || n > kMaxMappings) return false;
  out->mappings.clear();
  for (uint32_t i = 0; i < n && d.ok(); ++i) {
    Extent x;
    x.offset = d.U64();
    x.length = d.U64();
    x.device = d.U32();
    x.physical = d.U64();
    const uint8_t state = d.U8();
    if (state > static_cast<uint8_t>(ExtentState::kWritten)) return false;
    x.state = static_cast<ExtentState>(state);
    x.gen = d.U64();
    out->mappings.push_back(x);
  }
  return d.done();
}

bool DecodeKept(absl::string_view v, uint64_t* out) {
  Decoder d(v);
  if (!Open(&d, kNumber)) return false;
  *out = d.U64();
  return d.done();
}

bool KeptAt(absl::string_view v, Timespec* when) {
  Decoder d(v);
  *when = GetTime(&d);
  return d.U8() != 0 && d.ok();
}

}  // namespace rangefs::meta
