// The I/O paths of a node: buffered and direct read/write, truncate,
// fallocate, seek, fsync. Each takes its cluster locks in the order DATA ->
// INVAL -> INODE (DESIGN.md's table), prefaults the window of the caller's
// buffer before locking, copies only through user_copy.h while locked, and
// on a short copy keeps the bytes done, unlocks and retries from there.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "absl/cleanup/cleanup.h"
#include "client/client_internal.h"
#include "client/user_copy.h"
#include "common/fault_injection.h"
#include "common/log.h"
#include "common/status.h"

namespace rangefs::client {
namespace {

// One locked window of a buffered call; bigger calls loop.
constexpr uint64_t kIoWindow = 4ull << 20;
// Retries after a copy that made no progress at all before giving up.
constexpr int kMaxFruitlessRetries = 8;
constexpr uint64_t kMinReadahead = 128 << 10;
// Whole pages a write stores at once (StorePages).
constexpr uint64_t kStoreRunPages = 256;

constexpr LockMode kSh = LockMode::kSh;
constexpr LockMode kDf = LockMode::kDf;
constexpr LockMode kEx = LockMode::kEx;
constexpr LockKind kData = LockKind::kData;
constexpr LockKind kInval = LockKind::kInval;
constexpr LockKind kInode = LockKind::kInode;

bool Writable(int flags) { return (flags & O_ACCMODE) != O_RDONLY; }
bool Readable(int flags) { return (flags & O_ACCMODE) != O_WRONLY; }

absl::Status CheckDirectAlignment(uint64_t offset, uint64_t length) {
  if (offset % kPageSize != 0 || length % kPageSize != 0) {
    return MakeError(Errc::kInvalidArgument,
                     "O_DIRECT needs 4096-byte aligned offset and length",
                     EINVAL);
  }
  return absl::OkStatus();
}

// Whether a buffered read continues the inode's sequential stream: it
// starts where the last one ended or, while a stream runs (its window is
// open), within `slack` of the furthest end so far, either way. Calls in
// flight together (the kernel's own readahead through FUSE sends several
// windows of 1 MiB requests) reach the node in any order; they are still
// the sequence they are.
bool SequentialRead(const InodeState& in, uint64_t pos, uint64_t want,
                    uint64_t slack) ABSL_EXCLUSIVE_LOCKS_REQUIRED(in.mu) {
  if (pos == in.next_read) return true;
  return in.ra_window > 0 && pos + want + slack >= in.next_read &&
         pos <= in.next_read + slack;
}

// Copies that stop short (the caller's buffer is not resident) are retried
// after unlocking; this many in a row that made no progress end the call.
class ShortCopyBudget {
 public:
  // After a copy that stopped short having copied `copied` bytes: true to
  // unlock, prefault and retry, false to give up.
  bool Retry(size_t copied) {
    if (copied > 0) fruitless_ = 0;
    return copied > 0 || ++fruitless_ <= kMaxFruitlessRetries;
  }

 private:
  int fruitless_ = 0;
};

// Before locking. A test switch skips it, so that a copy under the locks
// meets pages that were never faulted in (the EDEADLK path, docs/mmap.md).
void Prefault(void* buf, size_t n, bool for_write) {
  if (FaultPoint("client.skip_prefault").ok()) PrefaultUser(buf, n, for_write);
}

// The call gives up on a buffer it could not copy (after the retries).
absl::Status BadBuffer() {
  if (LastCopyStop() == CopyStop::kDeadlock) {
    return MakeError(Errc::kDeadlock,
                     "the buffer maps the range this call locks, and its "
                     "pages could not be kept resident",
                     EDEADLK);
  }
  return MakeError(Errc::kInvalidArgument, "bad user buffer", EFAULT);
}

absl::Status CheckLost(InodeState& in, const Handle& h) {
  absl::MutexLock lock(&in.mu);
  if (in.lost != h.lost_seen) {
    return MakeError(Errc::kIoError,
                     "dirty data of this file was lost (node evicted); "
                     "reopen the file",
                     EIO);
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status HeldLocks::Take(LockKind kind, uint64_t ino,
                             const ByteRange& range, LockMode mode,
                             bool try_only) {
  absl::StatusOr<LocalLock> l =
      cache_->Lock(ResourceId{ino, kind}, range, mode, CurrentTask(), try_only);
  if (!l.ok()) {
    if (ErrcOf(l.status()) == Errc::kFenced) {
      return MakeError(
          Errc::kIoError,
          "lock session lost: " + std::string(l.status().message()), EIO);
    }
    return l.status();
  }
  held_.push_back(*l);
  return absl::OkStatus();
}

void HeldLocks::Release() {
  while (!held_.empty()) {
    cache_->Unlock(held_.back());
    held_.pop_back();
  }
}

absl::StatusOr<Attr> Client::Impl::CachedAttr(InodeState& in) {
  // Data not yet written back will take at least a block per page: count
  // it, as ext4 counts its delayed allocations (du right after a write).
  const uint64_t dirty_blocks = pages_.DirtyPagesOf(in.ino) * kPageSize / 512;
  auto with_dirty = [dirty_blocks](Attr a) {
    a.blocks = std::max(a.blocks, dirty_blocks);
    return a;
  };
  {
    absl::MutexLock lock(&in.mu);
    if (in.attr_valid) return with_dirty(in.attr);
  }
  absl::StatusOr<Attr> a = stubs_->GetAttr(in.ino);
  if (!a.ok()) return a.status();
  absl::MutexLock lock(&in.mu);
  if (!in.attr_valid) {
    in.attr = *a;
    in.attr_valid = true;
  }
  return with_dirty(in.attr);
}

absl::StatusOr<Attr> Client::Impl::FileAttr(InodeState& in) {
  HeldLocks held(&locks_);
  if (absl::Status s = held.Take(kInode, in.ino, WholeFile(), kSh); !s.ok()) {
    return s;
  }
  return CachedAttr(in);
}

// ---------------------------------------------------------------- read

absl::StatusOr<size_t> Client::Impl::Read(const Handle& h, char* buf,
                                          size_t len, uint64_t offset,
                                          const CacheFill* fill) {
  InodeState& in = *h.inode;
  if (!Readable(h.flags)) {
    return MakeError(Errc::kInvalidArgument, "not open for reading", EBADF);
  }
  if (offset >= kMaxFileSize || len == 0) return 0;
  len = std::min<uint64_t>(len, kMaxFileSize - offset);
  bool direct = h.flags & O_DIRECT;
  if (direct) {
    if (absl::Status s = CheckDirectAlignment(offset, len); !s.ok()) return s;
  }
  size_t done = 0;
  ShortCopyBudget budget;
  BufferPool::Buffer bounce(&buffers_);
  // Last resort for a buffer that maps what the call reads and keeps being
  // taken away under contention: read into `staged` under the locks and
  // copy to the caller after unlocking (faults then served as usual).
  bool stage = false;
  std::vector<char> staged;
  while (done < len) {
    const uint64_t pos = offset + done;
    // A fill for the cache above is delivered under one set of locks.
    const uint64_t want =
        fill != nullptr ? len : std::min<uint64_t>(len - done, kIoWindow);
    char* dst = nullptr;  // A fill delivers from the cache's own frames.
    if (fill == nullptr) {
      Prefault(buf + done, want, /*for_write=*/true);
      dst = buf + done;
    }
    if (stage) {
      staged.resize(want);
      dst = staged.data();
    }
    // Readahead (buffered only): the INVAL lock this call takes covers
    // `ra` bytes past the read, and [ra_start, ra_end) of them are filled
    // in the background once the call holds its locks (StartReadAhead).
    uint64_t ra = 0;
    uint64_t ra_start = 0, ra_end = 0;
    if (!direct) {
      absl::MutexLock lock(&in.mu);
      // Pages a readahead is fetching arrive soon: wait for them rather
      // than read them twice. Nothing is locked yet, so the readahead
      // (which only try-locks) cannot be waiting for us.
      while (AwaitsReadAhead(in, pos, want)) in.ra_progress.Wait(&in.mu);
      const bool sequential =
          SequentialRead(in, pos, want, 2 * options_.readahead_bytes);
      if (sequential) {
        in.ra_window = std::min(
            options_.readahead_bytes,
            std::max({kMinReadahead, in.ra_window * 2, PageCeil(want)}));
        in.next_read = std::max(in.next_read, pos + want);
      } else {
        in.ra_window = 0;
        in.ra_filled = 0;
        in.next_read = pos + want;
      }
      ra = std::min(in.ra_window, kMaxFileSize - pos - want);
      // Top up once less than half a window lies read ahead (Linux's
      // PG_readahead mark), at most kMaxReadAheads per inode in flight.
      if (ra > 0 && pos + want + ra / 2 >= in.ra_filled &&
          in.ra_busy.size() < kMaxReadAheads) {
        ra_start = std::max(in.ra_filled, pos + want);
        ra_end = pos + want + ra;
        in.ra_filled = ra_end;
        // Nothing to fetch (a cached re-read): no background work.
        const uint64_t known_end =
            in.attr_valid ? std::min(ra_end, PageCeil(in.attr.size)) : ra_end;
        if (ra_start >= known_end ||
            pages_
                .MissingRuns(in.ino, ra_start / kPageSize,
                             PageCeil(known_end) / kPageSize)
                .empty()) {
          ra_end = 0;
        } else {
          in.ra_busy.push_back({ra_start, ra_end});
        }
      }
    }
    // Until it is handed to StartReadAhead, the readahead is ours to drop.
    auto drop_ra = absl::MakeCleanup([this, &in, &ra_start, &ra_end] {
      if (ra_end == 0) return;
      EndReadAhead(in, {ra_start, ra_end}, /*filled=*/false);
    });
    HeldLocks held(&locks_);
    const LockMode mode = direct ? kDf : kSh;
    if (absl::Status s = held.Take(kData, in.ino, {pos, pos + want}, mode);
        !s.ok()) {
      return s;
    }
    // A cache above that may dirty what it caches (writable mappings)
    // holds it under INVAL EX, like this node's own dirty pages.
    const LockMode inval_mode =
        fill != nullptr && fill->exclusive ? LockMode::kEx : mode;
    const ByteRange inval_range = PageCover(pos, want + ra);
    // Pieces held SH become DF: the cache above may hold pages of them,
    // which DF does not let anyone keep (another node's direct write would
    // not call them back).
    const bool sh_to_df =
        direct && !locks_.Covered(ResourceId{in.ino, kInval}, inval_range, kDf);
    if (absl::Status s = held.Take(kInval, in.ino, inval_range, inval_mode);
        !s.ok()) {
      return s;
    }
    if (direct) {
      // INVAL DF keeps every node's cache of the range empty, this one's
      // included (pieces this node holds EX stay EX): drop what the cache
      // above had under SH (its dirty pages, under EX, come down into ours
      // first), then write back and drop what we have.
      if (sh_to_df) InvalidateAbove(in.ino, inval_range);
      absl::MutexLock lock(&in.wb_mu);
      if (absl::Status s = WritebackLocked(in, {pos, pos + want}); !s.ok()) {
        return s;
      }
      DropCached(in, {pos, pos + want});
    }
    if (absl::Status s = held.Take(kInode, in.ino, WholeFile(), kSh); !s.ok()) {
      return s;
    }
    if (absl::Status s = CheckLost(in, h); !s.ok()) return s;
    absl::StatusOr<Attr> attr = CachedAttr(in);
    if (!attr.ok()) return attr.status();
    const uint64_t size = attr->size;
    if (pos >= size) break;
    const uint64_t end = std::min(pos + want, size);
    size_t copied = 0;
    bool short_copy = false;
    if (direct) {
      char* bounced = bounce.Get(PageCeil(end - pos));
      if (absl::Status s =
              ReadBlocksDirect(in, pos, PageCeil(end - pos), bounced);
          !s.ok()) {
        return s;
      }
      copied = CopyToUser(buf + done, bounced, end - pos);
      short_copy = copied < end - pos;
    } else {
      // Stores through this node's mappings are newer than the pages.
      mmaps_->Collect(in, PageCover(pos, end - pos));
      // Through the pipe of a cache above, nothing is read ahead here: the
      // cache above reads ahead itself (the kernel keeps several READs in
      // flight), and pages read ahead would take the slower way.
      const bool piped = fill != nullptr && PipeFillable(in, pos, end, *fill);
      if (ra_end != 0 && ra_start < size && !piped) {
        // The range as registered (in.ra_busy): the fill stops at EOF.
        StartReadAhead(h.inode, ra_start, ra_end);
        ra_end = 0;
      }
      if (piped) {
        absl::StatusOr<bool> sent =
            PipeFill(in, pos, end, PageCover(pos, want + ra), *fill);
        if (!sent.ok()) return sent.status();
        if (*sent) return end - pos;
      }
      if (absl::Status s =
              FillPages(in, pos / kPageSize, PageCeil(end) / kPageSize, size,
                        PageCover(pos, want + ra));
          !s.ok()) {
        return s;
      }
      if (fill != nullptr) {
        // The cache above gets the bytes while our locks still cover them:
        // a callback's invalidation of that cache comes after, never
        // before, the copy it would have to remove.
        return DeliverFill(in, pos, end, *fill);
      }
      absl::StatusOr<size_t> c =
          CopyCached(in, pos, end, dst, CopyToUser, &short_copy);
      if (!c.ok()) return c.status();
      copied = *c;
      if (short_copy) {
        absl::MutexLock lock(&in.mu);
        in.next_read = pos + copied;  // The retry goes on from there.
      }
    }
    if (stage) {
      held.Release();
      memcpy(buf + done, staged.data(), copied);
    }
    done += copied;
    if (short_copy) {
      ++counters.short_copies;
      if (!budget.Retry(copied)) {
        if (direct && options_.fault_fallbacks) {
          // The buffer keeps losing its pages to our own INVAL DF: it maps
          // the range being read. A buffered read makes progress.
          ++counters.direct_fallbacks;
          direct = false;
          budget = ShortCopyBudget();
          continue;
        }
        if (options_.fault_fallbacks && !direct && !stage &&
            LastCopyStop() != CopyStop::kNone) {
          ++counters.staged_copies;
          stage = true;
          budget = ShortCopyBudget();
          continue;
        }
        if (done > 0) break;
        return BadBuffer();
      }
      continue;  // Unlock, prefault, retry from where the copy stopped.
    }
    if (end < pos + want) break;  // EOF.
  }
  return done;
}

absl::StatusOr<size_t> Client::Impl::CopyCached(InodeState& in, uint64_t pos,
                                                uint64_t end, char* out,
                                                PageCache::CopyFn copy,
                                                bool* short_copy) {
  char page[kPageSize];
  size_t copied = 0;
  for (uint64_t p = pos; p < end;) {
    PageCache::CopyResult r =
        pages_.CopyOut(in.ino, p, end - p, out + copied, copy);
    copied += r.copied;
    p += r.copied;
    if (r.short_copy) {
      *short_copy = true;
      break;
    }
    if (p == end) break;
    // A page reclaimed since the fill (a tiny cache): read it through.
    const uint64_t in_page = p % kPageSize;
    const uint64_t n = std::min(kPageSize - in_page, end - p);
    if (absl::Status s = ReadBlocksDirect(in, PageFloor(p), kPageSize, page);
        !s.ok()) {
      return s;
    }
    size_t c = copy(out + copied, page + in_page, n);
    copied += c;
    p += c;
    if (c < n) {
      *short_copy = true;
      break;
    }
  }
  return copied;
}

absl::StatusOr<size_t> Client::Impl::DeliverFill(InodeState& in, uint64_t pos,
                                                 uint64_t end,
                                                 const CacheFill& fill) {
  // The cache above keeps what it gets: the clean pages go to it in their
  // own frames and leave this cache (drop-behind), no copy made or kept.
  const uint64_t base = PageFloor(pos);
  std::vector<char*> frames =
      pages_.TakeCleanRun(in.ino, base / kPageSize, PageCeil(end) / kPageSize);
  auto give_back = absl::MakeCleanup(
      [this, &frames] { pages_.GiveFrames(frames.data(), frames.size()); });
  const uint64_t taken_end =
      std::max(pos, std::min(end, base + frames.size() * kPageSize));
  std::vector<struct iovec> iov;
  if (taken_end > pos)
    iov = PageSpans(frames.data(), pos - base, taken_end - pos);
  // The rest (from a dirty page on, or a page reclaimed since the fill) is
  // copied, and what was cached stays.
  BufferPool::Buffer rest(&buffers_);
  if (taken_end < end) {
    char* out = rest.Get(end - taken_end);
    bool short_copy = false;
    absl::StatusOr<size_t> c = CopyCached(
        in, taken_end, end, out,
        +[](void* d, const void* s, size_t n) {
          memcpy(d, s, n);
          return n;
        },
        &short_copy);
    if (!c.ok()) return c.status();
    iov.push_back({out, end - taken_end});
  }
  (*fill.deliver)(iov.data(), static_cast<int>(iov.size()), end - pos);
  return end - pos;
}

// --------------------------------------------------------------- write

absl::StatusOr<size_t> Client::Impl::Write(const Handle& h, const char* buf,
                                           size_t len, uint64_t offset) {
  InodeState& in = *h.inode;
  if (!Writable(h.flags)) {
    return MakeError(Errc::kInvalidArgument, "not open for writing", EBADF);
  }
  if (len == 0) return 0;
  bool direct = h.flags & O_DIRECT;
  bool fell_back = false;
  const bool append = h.flags & O_APPEND;
  const bool sync = h.flags & (O_SYNC | O_DSYNC);
  if (direct && !append) {
    if (absl::Status s = CheckDirectAlignment(offset, len); !s.ok()) return s;
  }
  size_t done = 0;
  ShortCopyBudget budget;
  uint64_t first_pos = offset;
  BufferPool::Buffer bounce(&buffers_);
  // Last resort for a buffer that maps what the call writes and keeps being
  // taken away under contention: copy the window before locking (faults
  // then served as usual) and write from that copy.
  bool stage = false;
  std::vector<char> staged;
  while (done < len) {
    uint64_t pos = offset + done;
    const uint64_t want = std::min<uint64_t>(len - done, kIoWindow);
    Prefault(const_cast<char*>(buf + done), want, /*for_write=*/false);
    const char* src = buf + done;
    if (stage) {
      staged.assign(buf + done, buf + done + want);
      src = staged.data();
    }
    const LockCache::SessionSnapshot snap = locks_.Snapshot();
    HeldLocks held(&locks_);
    if (append) {
      // The end of file is stable while we hold DATA EX over all of it:
      // every size change takes DATA EX over the bytes it changes.
      if (absl::Status s = held.Take(kData, in.ino, WholeFile(), kEx);
          !s.ok()) {
        return s;
      }
      HeldLocks peek(&locks_);
      if (absl::Status s = peek.Take(kInode, in.ino, WholeFile(), kSh);
          !s.ok()) {
        return s;
      }
      absl::StatusOr<Attr> a = CachedAttr(in);
      if (!a.ok()) return a.status();
      pos = a->size;
      if (done == 0) first_pos = pos;
      if (direct) {
        if (absl::Status s = CheckDirectAlignment(pos, len); !s.ok()) return s;
      }
    } else if (absl::Status s = held.Take(kData, in.ino, {pos, pos + want},
                                          direct ? kDf : kEx);
               !s.ok()) {
      return s;
    }
    if (pos >= kMaxFileSize || want > kMaxFileSize - pos) {
      if (done > 0) break;
      return MakeError(Errc::kFileTooBig, "write past the maximum file size",
                       EFBIG);
    }
    if (absl::Status s =
            held.Take(kInval, in.ino, PageCover(pos, want), direct ? kDf : kEx);
        !s.ok()) {
      return s;
    }
    if (direct) {
      size_t copied = 0;
      {
        absl::MutexLock lock(&in.wb_mu);
        if (absl::Status s = WritebackLocked(in, {pos, pos + want}); !s.ok()) {
          return s;
        }
        DropCached(in, {pos, pos + want});
      }
      if (absl::Status s = CheckLost(in, h); !s.ok()) return s;
      char* bounced = bounce.Get(want);
      copied = PageFloor(CopyFromUser(bounced, src, want));
      absl::Status failed;
      if (copied > 0) {
        uint64_t committed = 0;
        failed = WriteBlocks(in, pos, PageSlices(bounced, copied).data(),
                             copied, pos + copied, sync, snap, &committed);
        // What was committed before a failure (space ran out) is written:
        // a short count, as Linux returns, unless nothing was.
        if (!failed.ok() && done + committed == 0) return failed;
        if (!failed.ok()) copied = committed;
      }
      // Other nodes' cached attributes go when we take INODE EX; the
      // committed size is already on the server.
      if (absl::Status s = held.Take(kInode, in.ino, WholeFile(), kEx);
          !s.ok()) {
        return s;
      }
      {
        absl::MutexLock lock(&in.mu);
        if (in.attr_valid) {
          in.attr.size = std::max(in.attr.size, pos + copied);
          in.attr.mtime = in.attr.ctime = NowTimespec();
        }
      }
      done += copied;
      if (!failed.ok()) break;
      if (copied < want) {
        ++counters.short_copies;
        if (!budget.Retry(copied)) {
          if (options_.fault_fallbacks) {
            // The buffer maps the very range being written (generic/729):
            // our INVAL DF zaps it on every retry. Write the rest buffered
            // and write it back before returning (GFS2's fa58cc888d67).
            ++counters.direct_fallbacks;
            direct = false;
            fell_back = true;
            budget = ShortCopyBudget();
            continue;
          }
          if (done > 0) break;
          return BadBuffer();
        }
      }
      continue;
    }
    if (absl::Status s = held.Take(kInode, in.ino, WholeFile(), kEx); !s.ok()) {
      return s;
    }
    if (locks_.incarnation() != snap.incarnation) continue;  // Lost: redo.
    if (absl::Status s = CheckLost(in, h); !s.ok()) return s;
    absl::StatusOr<Attr> attr = CachedAttr(in);
    if (!attr.ok()) return attr.status();
    const uint64_t size = attr->size;
    // Stores made through mappings of the range come first; the pages the
    // copy changes are copied into those mappings after it.
    mmaps_->Collect(in, PageCover(pos, want));
    absl::StatusOr<size_t> stored = StorePages(in, pos, src, want, size);
    if (!stored.ok()) return stored.status();
    const size_t copied = *stored;
    const bool short_copy = copied < want;
    if (copied > 0) mmaps_->Refresh(in, PageCover(pos, copied));
    {
      absl::MutexLock lock(&in.mu);
      in.attr.size = std::max(in.attr.size, pos + copied);
      in.attr.mtime = in.attr.ctime = NowTimespec();
      in.dirty_incarnation = snap.incarnation;
    }
    if (locks_.incarnation() != snap.incarnation) {
      // The session went while we copied: what we dirtied has no lock.
      NoteLost(in, DropCached(in, PageCover(pos, copied)));
      return MakeError(Errc::kIoError, "lock session lost during write", EIO);
    }
    done += copied;
    held.Release();
    if (short_copy) {
      ++counters.short_copies;
      if (!budget.Retry(copied)) {
        if (options_.fault_fallbacks && !stage &&
            LastCopyStop() != CopyStop::kNone) {
          ++counters.staged_copies;
          stage = true;
          budget = ShortCopyBudget();
          continue;
        }
        if (done > 0) break;
        return BadBuffer();
      }
      continue;
    }
    if (absl::Status s = ThrottleWriter(in); !s.ok()) return s;
  }
  if (fell_back && done > 0) {
    // O_DIRECT's promise: the data is on the data servers on return.
    if (absl::Status s = Writeback(in, PageCover(first_pos, done)); !s.ok()) {
      return s;
    }
  }
  if (sync && !direct && done > 0) {
    if (absl::Status s = Writeback(in, PageCover(first_pos, done)); !s.ok()) {
      return s;
    }
    if (absl::Status s = stubs_->FlushData(locks_.session_id()); !s.ok()) {
      return s;
    }
  }
  return done;
}

absl::StatusOr<size_t> Client::Impl::StorePages(InodeState& in, uint64_t pos,
                                                const char* src, uint64_t want,
                                                uint64_t size) {
  char page[kPageSize];
  size_t copied = 0;
  for (uint64_t p = pos; p < pos + want;) {
    const uint64_t idx = p / kPageSize;
    const uint64_t in_page = p % kPageSize;
    if (in_page == 0 && pos + want - p >= kPageSize) {
      // Whole pages: copied straight into frames of their own, cached in
      // one go (no copy through a staging page, no lock per page).
      const uint64_t full =
          std::min<uint64_t>((pos + want - p) / kPageSize, kStoreRunPages);
      std::vector<char*> frames = pages_.TakeFrames(full);
      uint64_t filled = 0;
      while (filled < full &&
             CopyFromUser(frames[filled], src + copied + filled * kPageSize,
                          kPageSize) == kPageSize) {
        ++filled;
      }
      pages_.AdoptDirtyRun(in.ino, idx, filled, frames.data());
      pages_.GiveFrames(frames.data() + filled, full - filled);
      copied += filled * kPageSize;
      p += filled * kPageSize;
      if (filled < full) break;  // The copy stopped short.
      continue;
    }
    const uint64_t n = std::min(kPageSize - in_page, pos + want - p);
    const bool partial = n < kPageSize;
    const bool has_old = idx * kPageSize < size;
    if (partial && has_old && !pages_.Contains(in.ino, idx)) {
      if (absl::Status s =
              FillPages(in, idx, idx + 1, size, PageCover(pos, want));
          !s.ok()) {
        return s;
      }
    }
    size_t c = CopyFromUser(page, src + copied, n);
    if (c > 0 && !pages_.Write(in.ino, idx, in_page, page, c)) {
      // Not cached: a new page (zeros past the old data, as on disk), or
      // an old one reclaimed since the fill.
      char full[kPageSize];
      if (partial && has_old) {
        if (absl::Status s =
                ReadBlocksDirect(in, idx * kPageSize, kPageSize, full);
            !s.ok()) {
          return s;
        }
      } else {
        memset(full, 0, kPageSize);
      }
      memcpy(full + in_page, page, c);
      pages_.Insert(in.ino, idx, full, /*dirty=*/true);
    }
    copied += c;
    p += c;
    if (c < n) break;
  }
  return copied;
}

// The cache above got these pages under our INVAL EX (ReadForCache with
// exclusive) and dirtied them; it writes them back here, often from inside
// our own callback hook (its invalidation launders dirty pages), so this
// takes no lock that could wait: the INVAL EX it relies on is the node's
// cached lock, still held until the hook returns.
absl::StatusOr<size_t> Client::Impl::WriteFromCache(const Handle& h,
                                                    const char* buf, size_t len,
                                                    uint64_t offset) {
  InodeState& in = *h.inode;
  if (!Writable(h.flags)) {
    return MakeError(Errc::kInvalidArgument, "not open for writing", EBADF);
  }
  if (len == 0) return 0;
  if (offset >= kMaxFileSize || len > kMaxFileSize - offset) {
    return MakeError(Errc::kFileTooBig, "write past the maximum file size",
                     EFBIG);
  }
  const LockCache::SessionSnapshot snap = locks_.Snapshot();
  if (!locks_.Covered(ResourceId{in.ino, kInval}, PageCover(offset, len),
                      LockMode::kEx)) {
    RANGEFS_LOG(ERROR) << "inode " << in.ino << ": the kernel wrote back "
                       << len << " bytes at " << offset
                       << " that the node no longer holds INVAL EX for";
    return MakeError(Errc::kIoError,
                     "cached pages written back without the node's lock", EIO);
  }
  if (absl::Status s = CheckLost(in, h); !s.ok()) return s;
  mmaps_->Collect(in, PageCover(offset, len));
  // Partial pages are completed from the servers: past EOF they read as
  // zeros there too, so no size is needed.
  absl::StatusOr<size_t> stored =
      StorePages(in, offset, buf, len, kMaxFileSize);
  if (!stored.ok()) return stored.status();
  mmaps_->Refresh(in, PageCover(offset, *stored));
  // mtime, when the attribute lock comes without waiting (a callback of
  // ours may be what is waiting for it).
  HeldLocks attr(&locks_);
  const bool have_attr =
      attr.Take(kInode, in.ino, WholeFile(), LockMode::kEx, /*try_only=*/true)
          .ok();
  {
    absl::MutexLock lock(&in.mu);
    if (have_attr && in.attr_valid) {
      in.attr.size = std::max(in.attr.size, offset + *stored);
      in.attr.mtime = in.attr.ctime = NowTimespec();
    } else if (!have_attr) {
      in.mtime_pending = true;
    }
    in.dirty_incarnation = snap.incarnation;
  }
  if (locks_.incarnation() != snap.incarnation) {
    NoteLost(in, DropCached(in, PageCover(offset, *stored)));
    return MakeError(Errc::kIoError, "lock session lost during write", EIO);
  }
  return *stored;
}

absl::Status Client::Impl::SettleMtime(InodeState& in) {
  {
    absl::MutexLock lock(&in.mu);
    if (!in.mtime_pending) return absl::OkStatus();
  }
  // INODE EX calls back every node caching the old attributes; the commit
  // of the data then moves the server's mtime.
  HeldLocks held(&locks_);
  if (absl::Status s = held.Take(kInode, in.ino, WholeFile(), kEx); !s.ok()) {
    return s;
  }
  absl::MutexLock lock(&in.mu);
  in.mtime_pending = false;
  if (in.attr_valid) in.attr.mtime = in.attr.ctime = NowTimespec();
  return absl::OkStatus();
}

absl::Status Client::Impl::Fsync(const Handle& h) {
  InodeState& in = *h.inode;
  if (absl::Status s = SettleMtime(in); !s.ok()) return s;
  if (absl::Status s = Writeback(in, WholeFile()); !s.ok()) return s;
  if (absl::Status s = CheckLost(in, h); !s.ok()) return s;
  if (absl::Status s = stubs_->FlushData(locks_.session_id()); !s.ok()) {
    return s;
  }
  // The file's creation or rename may not be synced yet (the metadata
  // server syncs namespace changes lazily): fsync covers them, as a local
  // filesystem's journal commit does.
  return stubs_->SyncMeta();
}

// --------------------------------------------------- truncate, fallocate

absl::Status Client::Impl::Truncate(InodeState& in, uint64_t size) {
  if (size > kMaxFileSize) {
    return MakeError(Errc::kFileTooBig, "size past the maximum file size",
                     EFBIG);
  }
  const ByteRange cut{PageFloor(size), kInfinity};
  HeldLocks held(&locks_);
  if (absl::Status s = held.Take(kData, in.ino, cut, kEx); !s.ok()) return s;
  if (absl::Status s = held.Take(kInval, in.ino, cut, kEx); !s.ok()) return s;
  if (absl::Status s = held.Take(kInode, in.ino, WholeFile(), kEx); !s.ok()) {
    return s;
  }
  absl::StatusOr<Attr> attr = CachedAttr(in);
  if (!attr.ok()) return attr.status();
  const uint64_t old = attr->size;
  absl::MutexLock wb(&in.wb_mu);
  mmaps_->Collect(in, cut);
  if (size < old && size % kPageSize != 0) {
    // Bytes past EOF on disk are always zero: zero the tail of the new
    // last block and write it (docs/metadata-server.md).
    const uint64_t idx = size / kPageSize;
    if (absl::Status s = FillPages(in, idx, idx + 1, old, cut); !s.ok()) {
      return s;
    }
    const char zeros[kPageSize] = {};
    uint64_t in_page = size % kPageSize;
    if (!pages_.Write(in.ino, idx, in_page, zeros, kPageSize - in_page)) {
      char full[kPageSize];
      if (absl::Status s =
              ReadBlocksDirect(in, idx * kPageSize, kPageSize, full);
          !s.ok()) {
        return s;
      }
      memset(full + in_page, 0, kPageSize - in_page);
      pages_.Insert(in.ino, idx, full, /*dirty=*/true);
    }
    mmaps_->Refresh(in, {idx * kPageSize, (idx + 1) * kPageSize});
    {
      absl::MutexLock lock(&in.mu);
      in.dirty_incarnation = locks_.incarnation();
    }
    if (absl::Status s = WritebackLocked(in, {idx * kPageSize, size});
        !s.ok()) {
      return s;
    }
  }
  DropCached(in, {PageCeil(size), kInfinity});
  {
    absl::MutexLock lock(&in.mu);
    DropMaps(in, cut);
  }
  SetAttrArgs args;
  args.valid = kSetSize;
  args.size = size;
  absl::StatusOr<Attr> a = stubs_->SetAttr(locks_.session_id(), in.ino, args);
  absl::MutexLock lock(&in.mu);
  // Again once the server changed the map: a reader elsewhere in the file
  // may have asked for it meanwhile (MapRange keeps no answer a drop
  // overtook).
  DropMaps(in, cut);
  if (!a.ok()) return a.status();
  in.attr = *a;
  in.attr_valid = true;
  return absl::OkStatus();
}

absl::Status Client::Impl::Fallocate(const Handle& h, uint32_t mode,
                                     uint64_t offset, uint64_t length) {
  InodeState& in = *h.inode;
  if (!Writable(h.flags)) {
    return MakeError(Errc::kInvalidArgument, "not open for writing", EBADF);
  }
  if (length == 0 || offset >= kMaxFileSize || length > kMaxFileSize - offset) {
    return MakeError(length == 0 ? Errc::kInvalidArgument : Errc::kFileTooBig,
                     "bad fallocate range");
  }
  const bool shift = mode & (kFallocCollapseRange | kFallocInsertRange);
  const bool clears = mode & (kFallocPunchHole | kFallocZeroRange);
  const uint64_t end = offset + length;
  const ByteRange locked{PageFloor(offset), shift ? kInfinity : PageCeil(end)};
  HeldLocks held(&locks_);
  if (absl::Status s = held.Take(kData, in.ino, locked, kEx); !s.ok()) {
    return s;
  }
  if (absl::Status s = held.Take(kInval, in.ino, locked, kEx); !s.ok()) {
    return s;
  }
  if (absl::Status s = held.Take(kInode, in.ino, WholeFile(), kEx); !s.ok()) {
    return s;
  }
  if (absl::Status s = CheckLost(in, h); !s.ok()) return s;
  absl::StatusOr<Attr> attr = CachedAttr(in);
  if (!attr.ok()) return attr.status();
  const uint64_t size = attr->size;
  absl::MutexLock wb(&in.wb_mu);
  // The server shifts or frees what is on disk: the node's dirty pages go
  // there first, and nothing cached may survive at an old index.
  if (absl::Status s = WritebackLocked(in, locked); !s.ok()) return s;
  if (shift) {
    DropCached(in, locked);
  } else if (clears) {
    // Partial blocks at the edges keep their other bytes: zero the cleared
    // part and write the block back when it holds data on disk.
    for (uint64_t edge : {offset, end}) {
      if (edge % kPageSize == 0 || edge >= PageCeil(size)) continue;
      const uint64_t idx = edge / kPageSize;
      const uint64_t from = std::max(offset, idx * kPageSize);
      const uint64_t to = std::min(end, (idx + 1) * kPageSize);
      absl::StatusOr<MapResult> m =
          stubs_->Map(locks_.session_id(), in.ino, idx * kPageSize, kPageSize,
                      /*for_write=*/false);
      if (!m.ok()) return m.status();
      if (m->mappings[0].state != ExtentState::kWritten) continue;
      if (absl::Status s = FillPages(in, idx, idx + 1, size, locked); !s.ok()) {
        return s;
      }
      const char zeros[kPageSize] = {};
      if (!pages_.Write(in.ino, idx, from % kPageSize, zeros, to - from)) {
        char full[kPageSize];
        if (absl::Status s =
                ReadBlocksDirect(in, idx * kPageSize, kPageSize, full);
            !s.ok()) {
          return s;
        }
        memset(full + from % kPageSize, 0, to - from);
        pages_.Insert(in.ino, idx, full, /*dirty=*/true);
      }
      {
        absl::MutexLock lock(&in.mu);
        in.dirty_incarnation = locks_.incarnation();
      }
      if (absl::Status s =
              WritebackLocked(in, {idx * kPageSize, (idx + 1) * kPageSize});
          !s.ok()) {
        return s;
      }
    }
    if (PageCeil(offset) < PageFloor(end)) {
      DropCached(in, {PageCeil(offset), PageFloor(end)});
    }
    // Mapped copies of the edge pages too: the next access faults in the
    // zeroed page.
    mmaps_->Zap(in, PageCover(offset, length));
  }
  {
    absl::MutexLock lock(&in.mu);
    DropMaps(in, locked);
  }
  absl::StatusOr<Attr> a =
      stubs_->Fallocate(locks_.session_id(), in.ino, mode, offset, length);
  absl::MutexLock lock(&in.mu);
  DropMaps(in, locked);  // Again, as Truncate does.
  if (!a.ok()) return a.status();
  uint64_t local_size = in.attr_valid ? in.attr.size : 0;
  in.attr = *a;
  // Dirty pages below the range may still carry a size ahead of the
  // server's; a shift wrote every byte past `offset` first.
  if (!shift) in.attr.size = std::max(in.attr.size, local_size);
  in.attr_valid = true;
  return absl::OkStatus();
}

absl::StatusOr<uint64_t> Client::Impl::Seek(const Handle& h, uint64_t offset,
                                            bool data) {
  InodeState& in = *h.inode;
  // SEEK_DATA/SEEK_HOLE answer from the extent map: every node's dirty
  // data past `offset` must be on the servers first.
  HeldLocks held(&locks_);
  if (absl::Status s =
          held.Take(kInval, in.ino, {PageFloor(offset), kInfinity}, kSh);
      !s.ok()) {
    return s;
  }
  if (absl::Status s = held.Take(kInode, in.ino, WholeFile(), kSh); !s.ok()) {
    return s;
  }
  if (absl::Status s = Writeback(in, {PageFloor(offset), kInfinity}); !s.ok()) {
    return s;
  }
  return stubs_->Seek(in.ino, offset, data);
}

}  // namespace rangefs::client
