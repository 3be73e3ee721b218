// MetaServer extent operations: MapRead, MapWrite, CommitWrite (the
// validity-cookie check), truncate, fallocate in every mode, and
// SEEK_DATA/SEEK_HOLE. docs/extent-map.md describes the rules.
//
// The metadata server works in whole blocks. Bytes of partial blocks at the
// edges of a punch or zero range, and the tail of the last block past EOF
// after a truncate down, are the client's to zero (it holds the page and
// the EX locks); a client always writes whole blocks.
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>

#include "absl/strings/str_cat.h"
#include "common/coding.h"
#include "common/fault_injection.h"
#include "common/status.h"
#include "server/meta/extent_set.h"
#include "server/meta/meta_server.h"
#include "server/meta/meta_server_internal.h"

namespace rangefs::meta {
namespace {

absl::Status RequireRegular(const InodeRecord& r) {
  if (S_ISREG(r.mode)) return absl::OkStatus();
  if (S_ISDIR(r.mode)) {
    return MakeError(Errc::kIsDir, absl::StrCat(r.ino, " is a directory"));
  }
  return MakeError(Errc::kInvalidArgument,
                   absl::StrCat(r.ino, " is not a regular file"));
}

// A range to map: whole blocks may reach kMaxExtentEnd, one past the
// largest file size, so the last bytes of a file of that size have one.
absl::StatusOr<ByteRange> MapRange(uint64_t offset, uint64_t length) {
  if (length > kMaxMapLength) {
    return MakeError(
        Errc::kInvalidArgument,
        absl::StrCat("mapping of ", length, " bytes exceeds ", kMaxMapLength));
  }
  absl::StatusOr<ByteRange> r = RangeFromOffsetLength(offset, length);
  if (!r.ok()) return r;
  if (r->end > kMaxExtentEnd) {
    return MakeError(Errc::kFileTooBig,
                     absl::StrCat("range ", r->ToString(),
                                  " ends past the last block of a file"));
  }
  return r;
}

std::vector<Extent> Limit(std::vector<Extent> m) {
  if (m.size() > kMaxMappings) m.resize(kMaxMappings);
  return m;
}

}  // namespace

absl::StatusOr<uint64_t> MetaServer::FillHoles(Op& op, InodeRecord& r,
                                               ExtentSet& set, uint64_t start,
                                               uint64_t end, uint64_t gen,
                                               uint64_t* fit_end) {
  std::vector<ByteRange> holes = set.Holes(start, end);
  uint64_t total = 0;
  for (const ByteRange& h : holes) total += h.Length();
  if (total == 0) return 0;
  // Allocate next to the extent before the first hole, if any.
  uint32_t goal_device = 0;
  uint64_t goal_physical = 0;
  bool have_goal = false;
  auto prev = store_->SeekForPrev(Cf::kExtents, ExtentPrefix(r.ino),
                                  ExtentKey(r.ino, holes[0].start));
  if (!prev.ok()) return prev.status();
  if (*prev && (*prev)->first.size() == 16) {
    absl::StatusOr<Extent> e =
        DecodeExtent(LoadBE64((*prev)->first.data() + 8), (*prev)->second);
    if (!e.ok()) return e.status();
    goal_device = e->device;
    goal_physical = e->physical + (holes[0].start - e->offset);
    have_goal = true;
  }
  if (absl::Status s = op.LockSeq(); !s.ok()) return s;
  seq_mu_.AssertHeld();
  if (!have_goal) {
    // New files are spread over the devices by inode number.
    std::vector<uint32_t> ids = allocator_.devices();
    goal_device = ids[r.ino % ids.size()];
  }
  if (fit_end != nullptr && total > allocator_.free_bytes()) {
    // Fill as far as the free space goes: [start, *fit_end) ends inside
    // the hole where it runs out. Mapped blocks before the first hole need no
    // space, so only a range that starts in a hole can find none at all.
    uint64_t budget = allocator_.free_bytes();
    std::vector<ByteRange> fit;
    for (const ByteRange& h : holes) {
      uint64_t take = std::min(h.Length(), budget);
      if (take == 0) {
        *fit_end = h.start;
        break;
      }
      fit.push_back({h.start, h.start + take});
      budget -= take;
      if (take < h.Length()) {
        *fit_end = h.start + take;
        break;
      }
    }
    if (*fit_end == start) {
      return MakeError(Errc::kNoSpace,
                       absl::StrCat("no free block for inode ", r.ino));
    }
    holes = std::move(fit);
    total = allocator_.free_bytes() - budget;
    if (total == 0) return 0;
  }
  absl::StatusOr<std::vector<PhysExtent>> pieces =
      allocator_.Allocate(total, goal_device, goal_physical);
  if (!pieces.ok()) return pieces.status();
  ++counters_.allocations;
  size_t pi = 0;
  uint64_t used = 0;  // Bytes of pieces[pi] already handed out.
  for (const ByteRange& h : holes) {
    uint64_t pos = h.start;
    while (pos < h.end) {
      const PhysExtent& p = (*pieces)[pi];
      uint64_t take = std::min(h.end - pos, p.length - used);
      Extent e;
      e.offset = pos;
      e.length = take;
      e.device = p.device;
      e.physical = p.physical + used;
      e.state = ExtentState::kUnwritten;
      e.gen = gen;
      set.Add(e);
      pos += take;
      used += take;
      if (used == p.length) {
        ++pi;
        used = 0;
      }
    }
  }
  set.Compact();
  r.blocks += total / kBlockSize;
  return total;
}

absl::StatusOr<MapResult> MetaServer::MapRead(uint64_t session, uint64_t ino,
                                              uint64_t offset,
                                              uint64_t length) {
  absl::StatusOr<ByteRange> range = MapRange(offset, length);
  if (!range.ok()) return range.status();
  if (absl::Status s = CheckSession(session); !s.ok()) return s;
  std::unique_ptr<ReadView> view = store_->View();
  absl::StatusOr<InodeRecord> r = ReadInode(ino, view.get());
  if (!r.ok()) return r.status();
  if (absl::Status s = RequireRegular(*r); !s.ok()) return s;
  absl::StatusOr<ExtentSet> set =
      ExtentSet::Load(store_.get(), view.get(), ino, range->start, range->end);
  if (!set.ok()) return set.status();
  MapResult out;
  out.mappings = Limit(set->Mappings(range->start, range->end));
  out.cookie = r->extent_gen;
  out.size = r->size;
  return out;
}

absl::StatusOr<MapResult> MetaServer::MapWrite(uint64_t session, uint64_t ino,
                                               uint64_t offset,
                                               uint64_t length) {
  return MapWriteRanges(session, ino, {{offset, length}});
}

absl::StatusOr<MapResult> MetaServer::MapWriteRanges(
    uint64_t session, uint64_t ino,
    const std::vector<std::pair<uint64_t, uint64_t>>& ranges) {
  if (ranges.empty() || ranges.size() > kMaxMappings) {
    return MakeError(Errc::kInvalidArgument, "1 to 1024 ranges per mapping");
  }
  std::vector<ByteRange> blocks;  // Each range widened to whole blocks.
  for (const auto& [offset, length] : ranges) {
    absl::StatusOr<ByteRange> range = MapRange(offset, length);
    if (!range.ok()) return range.status();
    uint64_t a = BlockDown(range->start), b = BlockUp(range->end);
    if (!blocks.empty() && a < blocks.back().end) {
      return MakeError(Errc::kInvalidArgument,
                       "mapped ranges must be in order, in disjoint blocks");
    }
    blocks.push_back({a, b});
  }
  if (blocks.size() > 1 &&
      blocks.back().end > blocks.front().start + kMaxMapLength) {
    return MakeError(Errc::kInvalidArgument,
                     "mapped ranges must lie within 1 GiB of each other");
  }
  if (MapResult kept; Replayed(&kept)) return kept;
  if (absl::Status s = CheckSession(session); !s.ok()) return s;
  Op op(this, session, {ino});
  absl::StatusOr<InodeRecord> r = ReadInode(ino);
  if (!r.ok()) return r.status();
  if (absl::Status s = RequireRegular(*r); !s.ok()) return s;
  const uint64_t gen = r->extent_gen + 1;
  // One window over every range, so each range's edits see the others'.
  absl::StatusOr<ExtentSet> set = ExtentSet::Load(
      store_.get(), nullptr, ino, blocks.front().start, blocks.back().end);
  if (!set.ok()) return set.status();
  bool allocated_any = false;
  MapResult out;
  for (size_t k = 0; k < blocks.size(); ++k) {
    uint64_t a = blocks[k].start, b = blocks[k].end;
    if (a >= b) break;  // Past the largest file.
    // A short mapping when space runs out (iomap may map less than asked):
    // the client writes what fits, and only its next call gets NO_SPACE.
    absl::StatusOr<uint64_t> allocated = FillHoles(op, *r, *set, a, b, gen, &b);
    if (!allocated.ok()) {
      if (k == 0) return allocated.status();
      break;  // The prefix mapped so far is the answer.
    }
    allocated_any |= *allocated > 0;
    for (const Extent& e : set->Mappings(a, b)) {
      if (out.mappings.size() == kMaxMappings) break;
      out.mappings.push_back(e);
    }
    if (out.mappings.size() == kMaxMappings || b < blocks[k].end) break;
  }
  if (!allocated_any) {
    out.cookie = r->extent_gen;
    out.size = r->size;
    return out;
  }
  r->extent_gen = gen;
  set->WriteTo(ino, &op.batch());
  op.PutInode(*r);
  out.cookie = r->extent_gen;
  out.size = r->size;
  return op.Commit(std::move(out));
}

absl::StatusOr<Attr> MetaServer::CommitWrite(
    uint64_t session, uint64_t ino, const std::vector<ByteRange>& ranges,
    uint64_t cookie, uint64_t new_size, const Timespec& mtime) {
  if (ranges.empty() || ranges.size() > kMaxMappings) {
    return MakeError(Errc::kInvalidArgument, "1 to 1024 ranges per commit");
  }
  std::vector<ByteRange> sorted = ranges;
  std::sort(
      sorted.begin(), sorted.end(),
      [](const ByteRange& x, const ByteRange& y) { return x.start < y.start; });
  for (size_t i = 0; i < sorted.size(); ++i) {
    const ByteRange& g = sorted[i];
    if (!g.Valid() || g.start % kBlockSize || g.end % kBlockSize ||
        g.end > kMaxExtentEnd || g.Length() > kMaxMapLength) {
      return MakeError(Errc::kInvalidArgument,
                       "commit ranges must be valid whole blocks");
    }
    if (i > 0 && sorted[i - 1].end > g.start) {
      return MakeError(Errc::kInvalidArgument, "commit ranges overlap");
    }
  }
  if (sorted.back().end - sorted.front().start > kMaxMapLength) {
    return MakeError(Errc::kInvalidArgument,
                     "commit ranges must lie within 1 GiB of each other");
  }
  if (new_size > kMaxFileSize) {
    return MakeError(Errc::kFileTooBig, "size past the maximum");
  }
  if (Attr kept; Replayed(&kept)) return kept;
  if (absl::Status s = CheckSession(session); !s.ok()) return s;
  // xfs/559-style: hold a commit while the extents change under it.
  if (absl::Status s = FaultPoint("meta.commit.apply"); !s.ok()) return s;
  Op op(this, session, {ino});
  absl::StatusOr<InodeRecord> r = ReadInode(ino);
  if (!r.ok()) return r.status();
  if (absl::Status s = RequireRegular(*r); !s.ok()) return s;
  if (cookie > r->extent_gen) {
    return MakeError(Errc::kInvalidArgument,
                     absl::StrCat("cookie ", cookie, " is from the future (",
                                  r->extent_gen, ")"));
  }
  uint64_t gen = r->extent_gen + 1;
  bool changed = false;
  // One window over every range: two ranges may lie in one extent, and
  // each one's split must see the other's.
  absl::StatusOr<ExtentSet> set = ExtentSet::Load(
      store_.get(), nullptr, ino, sorted.front().start, sorted.back().end);
  if (!set.ok()) return set.status();
  for (const ByteRange& g : sorted) {
    if ((!set->Holes(g.start, g.end).empty() ||
         set->MaxGen(g.start, g.end) > cookie) &&
        !UnsafeSwitch("unsafe.meta.ignore_cookie")) {
      absl::MutexLock lock(&seq_mu_);
      ++counters_.stale_commits;
      return MakeError(Errc::kStale,
                       absl::StrCat("extents of ", ino, " under ", g.ToString(),
                                    " changed after cookie ", cookie));
    }
    changed |= set->SetState(g.start, g.end, ExtentState::kWritten, gen);
  }
  if (changed) r->extent_gen = gen;
  set->WriteTo(ino, &op.batch());
  r->size = std::max(r->size, new_size);
  // The node's time of the write (its clock, like a create's), else now;
  // ctime never goes back.
  r->mtime = mtime.sec != 0 ? mtime : Now();
  if (mtime.sec == 0 || r->ctime < mtime) {
    r->ctime = mtime.sec != 0 ? mtime : Now();
  }
  op.PutInode(*r);
  return op.Commit(AttrOf(*r));
}

absl::Status MetaServer::Truncate(Op& op, InodeRecord& r, uint64_t new_size) {
  if (new_size < r.size || new_size == 0) {
    // Everything past the new last block goes, preallocation included.
    uint64_t from = BlockUp(new_size);
    absl::StatusOr<ExtentSet> set =
        ExtentSet::Load(store_.get(), nullptr, r.ino, from, kInfinity);
    if (!set.ok()) return set.status();
    std::vector<PhysExtent> freed = set->Cut(from, kInfinity);
    if (!freed.empty()) {
      if (absl::Status s = op.LockSeq(); !s.ok()) return s;
      seq_mu_.AssertHeld();
      for (const PhysExtent& p : freed) {
        if (absl::Status s = allocator_.Free(p); !s.ok()) return s;
        r.blocks -= p.length / kBlockSize;
      }
      ++r.extent_gen;
      set->WriteTo(r.ino, &op.batch());
    }
  }
  r.size = new_size;
  return absl::OkStatus();
}

absl::StatusOr<Attr> MetaServer::Fallocate(uint64_t session, uint64_t ino,
                                           uint32_t mode, uint64_t offset,
                                           uint64_t length) {
  constexpr uint32_t kKnown = kFallocKeepSize | kFallocPunchHole |
                              kFallocCollapseRange | kFallocZeroRange |
                              kFallocInsertRange;
  if (mode & ~kKnown) {
    return MakeError(Errc::kNotSupported, "unknown fallocate mode");
  }
  // vfs_fallocate's rules.
  if ((mode & kFallocPunchHole) && (mode & kFallocZeroRange)) {
    return MakeError(Errc::kNotSupported, "punch and zero together");
  }
  if ((mode & kFallocPunchHole) && !(mode & kFallocKeepSize)) {
    return MakeError(Errc::kNotSupported, "punch hole needs keep size");
  }
  if ((mode & (kFallocCollapseRange | kFallocInsertRange)) &&
      (mode & ~(kFallocCollapseRange | kFallocInsertRange))) {
    return MakeError(Errc::kInvalidArgument,
                     "collapse and insert take no other flag");
  }
  if ((mode & kFallocCollapseRange) && (mode & kFallocInsertRange)) {
    return MakeError(Errc::kInvalidArgument, "collapse and insert together");
  }
  absl::StatusOr<ByteRange> range = FileRange(offset, length);
  if (!range.ok()) return range.status();
  if (Attr kept; Replayed(&kept)) return kept;
  if (absl::Status s = CheckSession(session); !s.ok()) return s;
  Op op(this, session, {ino});
  absl::StatusOr<InodeRecord> r = ReadInode(ino);
  if (!r.ok()) return r.status();
  if (absl::Status s = RequireRegular(*r); !s.ok()) return s;
  uint64_t old_gen = r->extent_gen;
  uint64_t old_size = r->size;
  absl::Status s;
  if (mode & (kFallocPunchHole | kFallocZeroRange)) {
    s = PunchOrZero(op, *r, mode, offset, length);
  } else if (mode & (kFallocCollapseRange | kFallocInsertRange)) {
    s = CollapseOrInsert(op, *r, mode, offset, length);
  } else {
    uint64_t a = BlockDown(range->start), b = BlockUp(range->end);
    absl::StatusOr<ExtentSet> set =
        ExtentSet::Load(store_.get(), nullptr, ino, a, b);
    if (!set.ok()) return set.status();
    absl::StatusOr<uint64_t> n = FillHoles(op, *r, *set, a, b, old_gen + 1);
    if (!n.ok()) return n.status();
    if (*n > 0) {
      r->extent_gen = old_gen + 1;
      set->WriteTo(ino, &op.batch());
    }
    if (!(mode & kFallocKeepSize)) r->size = std::max(r->size, range->end);
  }
  if (!s.ok()) return s;
  Timespec now = Now();
  if (r->extent_gen != old_gen || r->size != old_size) {
    r->ctime = now;
    if (mode != 0 && mode != kFallocKeepSize) r->mtime = now;
    op.PutInode(*r);
    return op.Commit(AttrOf(*r));
  }
  return AttrOf(*r);
}

absl::Status MetaServer::PunchOrZero(Op& op, InodeRecord& r, uint32_t mode,
                                     uint64_t offset, uint64_t length) {
  const uint64_t end = offset + length;
  const uint64_t gen = r.extent_gen + 1;
  // Whole blocks inside the range; edges are the client's to zero.
  const uint64_t a = BlockUp(offset), b = BlockDown(end);
  // Zero range allocates the blocks it touches, as Linux does.
  const uint64_t lo = (mode & kFallocZeroRange) ? BlockDown(offset) : a;
  const uint64_t hi = (mode & kFallocZeroRange) ? BlockUp(end) : b;
  if (lo >= hi) return absl::OkStatus();
  absl::StatusOr<ExtentSet> set =
      ExtentSet::Load(store_.get(), nullptr, r.ino, lo, hi);
  if (!set.ok()) return set.status();
  bool changed = false;
  if (mode & kFallocPunchHole) {
    std::vector<PhysExtent> freed = set->Cut(a, b);
    if (!freed.empty()) {
      if (absl::Status s = op.LockSeq(); !s.ok()) return s;
      seq_mu_.AssertHeld();
      for (const PhysExtent& p : freed) {
        if (absl::Status s = allocator_.Free(p); !s.ok()) return s;
        r.blocks -= p.length / kBlockSize;
      }
      changed = true;
    }
  } else {
    if (a < b) changed |= set->SetState(a, b, ExtentState::kUnwritten, gen);
    absl::StatusOr<uint64_t> n = FillHoles(op, r, *set, lo, hi, gen);
    if (!n.ok()) return n.status();
    changed |= *n > 0;
    if (!(mode & kFallocKeepSize)) r.size = std::max(r.size, end);
  }
  if (changed) {
    r.extent_gen = gen;
    set->WriteTo(r.ino, &op.batch());
  }
  return absl::OkStatus();
}

absl::Status MetaServer::CollapseOrInsert(Op& op, InodeRecord& r, uint32_t mode,
                                          uint64_t offset, uint64_t length) {
  if (offset % kBlockSize || length % kBlockSize) {
    return MakeError(Errc::kInvalidArgument,
                     "collapse and insert need block-aligned ranges");
  }
  const uint64_t gen = r.extent_gen + 1;
  absl::StatusOr<ExtentSet> set =
      ExtentSet::Load(store_.get(), nullptr, r.ino, offset, kInfinity);
  if (!set.ok()) return set.status();
  if (mode & kFallocCollapseRange) {
    if (offset + length >= r.size) {
      return MakeError(Errc::kInvalidArgument,
                       "collapse range reaches end of file");
    }
    std::vector<PhysExtent> freed = set->Cut(offset, offset + length);
    if (absl::Status s = op.LockSeq(); !s.ok()) return s;
    seq_mu_.AssertHeld();
    for (const PhysExtent& p : freed) {
      if (absl::Status s = allocator_.Free(p); !s.ok()) return s;
      r.blocks -= p.length / kBlockSize;
    }
    set->ShiftDown(offset + length, length, gen);
    r.size -= length;
  } else {
    if (offset >= r.size) {
      return MakeError(Errc::kInvalidArgument, "insert range at or past EOF");
    }
    uint64_t last_end = r.size;
    if (!set->extents().empty()) {
      last_end = std::max(last_end, set->extents().rbegin()->second.end());
    }
    if (length > kMaxFileSize - last_end) {
      return MakeError(Errc::kFileTooBig, "insert range past maximum size");
    }
    set->ShiftUp(offset, length, gen);
    r.size += length;
  }
  r.extent_gen = gen;
  set->WriteTo(r.ino, &op.batch());
  return absl::OkStatus();
}

absl::StatusOr<uint64_t> MetaServer::Seek(uint64_t ino, uint64_t offset,
                                          bool data) {
  std::unique_ptr<ReadView> view = store_->View();
  absl::StatusOr<InodeRecord> r = ReadInode(ino, view.get());
  if (!r.ok()) return r.status();
  if (absl::Status s = RequireRegular(*r); !s.ok()) return s;
  if (offset >= r->size) {
    return MakeError(Errc::kOutOfRange, "seek past end of file", ENXIO);
  }
  absl::StatusOr<ExtentSet> set =
      ExtentSet::Load(store_.get(), view.get(), ino, offset, r->size);
  if (!set.ok()) return set.status();
  // Unwritten extents read as zeros: they count as holes.
  for (const Extent& m : set->Mappings(offset, r->size)) {
    bool is_data = m.state == ExtentState::kWritten;
    if (is_data == data) return std::max(offset, m.offset);
  }
  if (data) return MakeError(Errc::kOutOfRange, "no data after offset", ENXIO);
  return r->size;
}

}  // namespace rangefs::meta
