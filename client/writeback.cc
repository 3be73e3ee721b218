// Page fills, writeback through MapWrite -> data write -> CommitWrite with
// the STALE loop, and the INVAL / INODE lock hooks (docs/client.md).
#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <utility>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "client/client_internal.h"
#include "common/fault_injection.h"
#include "common/log.h"
#include "common/status.h"

namespace rangefs::client {
namespace {

// Mapping calls ask for at least this much, aligned, so one call serves
// many small misses (the reply may be shorter: at most 1024 pieces).
constexpr uint64_t kMapWindow = 64ull << 20;
constexpr uint64_t kMaxMapLength = 1ull << 30;
// Runs mapped and committed together lie within this much of each other.
constexpr uint64_t kMaxMapSpan = 64ull << 20;
constexpr int kMaxStaleRetries = 16;
constexpr int kHookRetries = 3;
// One writeback call: one MapWrite, parallel data writes, one commit.
constexpr uint64_t kWritebackRun = 32ull << 20;
// One fill: one mapping lookup, parallel data reads.
constexpr uint64_t kMaxFill = 16ull << 20;
// Reads bigger than this go to the data servers in pieces, in parallel.
constexpr uint64_t kReadPiece = 1ull << 20;

// The part of `m` inside [start, end), physical offset adjusted.
Mapping Clip(const Mapping& m, uint64_t start, uint64_t end) {
  Mapping c = m;
  uint64_t s = std::max(start, m.offset);
  uint64_t e = std::min(end, m.end());
  c.physical = m.physical + (s - m.offset);
  c.offset = s;
  c.length = e - s;
  return c;
}

}  // namespace

// The buffers that hold bytes [rel, rel + n) of a range laid out in
// `pages` (pages[k] holds its bytes [k * kPageSize, (k + 1) * kPageSize)),
// neighbouring frames merged.
std::vector<struct iovec> PageSpans(char* const* pages, uint64_t rel,
                                    uint64_t n) {
  std::vector<struct iovec> spans;
  while (n > 0) {
    const uint64_t in_page = rel % kPageSize;
    const uint64_t c = std::min(kPageSize - in_page, n);
    char* p = pages[rel / kPageSize] + in_page;
    if (!spans.empty() &&
        static_cast<char*>(spans.back().iov_base) + spans.back().iov_len == p) {
      spans.back().iov_len += c;
    } else {
      spans.push_back({p, c});
    }
    rel += c;
    n -= c;
  }
  return spans;
}

std::vector<char*> PageSlices(char* buf, uint64_t length) {
  std::vector<char*> pages((length + kPageSize - 1) / kPageSize);
  for (size_t k = 0; k < pages.size(); ++k) pages[k] = buf + k * kPageSize;
  return pages;
}

absl::StatusOr<std::vector<Mapping>> Client::Impl::MapRange(
    InodeState& in, uint64_t offset, uint64_t end, const ByteRange* locked) {
  const uint64_t session = locks_.session_id();
  std::vector<Mapping> out;
  end = std::min(end, kMaxExtentEnd);  // Nothing is mapped past it.
  uint64_t pos = offset;
  while (pos < end) {
    uint64_t epoch = 0;
    if (locked != nullptr) {
      absl::MutexLock lock(&in.mu);
      epoch = in.maps_epoch;
      auto it = in.maps.upper_bound(pos);
      if (it != in.maps.begin()) {
        --it;
        if (pos < it->second.end()) {
          out.push_back(Clip(it->second, pos, end));
          pos = out.back().end();
          ++counters.map_cache_hits;
          continue;
        }
      }
    }
    // Ask for a whole aligned window: the node may cache the part its
    // cluster INVAL locks cover, so later misses need no mapping call.
    uint64_t want_end = end;
    if (locked != nullptr) {
      uint64_t window_end = (pos / kMapWindow + 1) * kMapWindow;
      want_end = std::max(want_end, std::min(window_end, kMaxExtentEnd));
    }
    ++counters.map_calls;
    absl::StatusOr<MapResult> r = stubs_->Map(
        session, in.ino, pos, std::min(want_end - pos, kMaxMapLength), false);
    if (!r.ok()) return r.status();
    const ByteRange got{pos, r->mappings.back().end()};
    for (const Mapping& m : r->mappings) {
      if (m.offset < end) out.push_back(Clip(m, pos, end));
    }
    if (locked != nullptr) {
      // A switch for tests: an answer on its way while the extents change.
      (void)FaultPoint("client.map_range.before_cache");
      // Cache only an answer nothing can have overtaken: no mapping of the
      // inode was dropped since we asked. The caller's INVAL lock keeps
      // other nodes' changes out of its range, but not this node's own
      // write-back, which commits (UNWRITTEN to WRITTEN) under the node's
      // EX while local readers hold SH; an answer from before such a
      // commit, cached after it, read committed data as zeros. Then the
      // caller's locked range, and the rest of the window if the node's
      // INVAL coverage holds it.
      absl::MutexLock lock(&in.mu);
      ByteRange keep{std::max(got.start, locked->start),
                     std::min(got.end, locked->end)};
      if (in.maps_epoch != epoch) {
        keep = ByteRange{got.start, got.start};
      } else if (locks_.Covered(ResourceId{in.ino, LockKind::kInval}, got,
                                LockMode::kSh)) {
        keep = got;
      }
      if (keep.start < keep.end) {
        if (LogEnabled(LogLevel::kDebug)) {
          std::string states;
          for (const Mapping& m : r->mappings) {
            if (m.end() > keep.start && m.offset < keep.end) {
              absl::StrAppend(&states, " ", m.offset, "+", m.length, ":",
                              static_cast<int>(m.state));
            }
          }
          RANGEFS_LOG(DEBUG) << "ino " << in.ino << " caches maps of "
                             << keep.ToString() << " (asked " << got.ToString()
                             << ", locked " << locked->ToString() << ", epoch "
                             << epoch << "/" << in.maps_epoch << "):" << states;
        }
        DropMapsKeepEpoch(in, keep);
        for (const Mapping& m : r->mappings) {
          if (m.end() > keep.start && m.offset < keep.end) {
            Mapping c = Clip(m, keep.start, keep.end);
            in.maps[c.offset] = c;
          }
        }
      }
    }
    pos = std::min(end, got.end);
  }
  return out;
}

void Client::Impl::DropMaps(InodeState& in, const ByteRange& range) {
  RANGEFS_LOG(DEBUG) << "ino " << in.ino << " drops maps of "
                     << range.ToString() << " (epoch " << in.maps_epoch + 1
                     << ")";
  ++in.maps_epoch;
  DropMapsKeepEpoch(in, range);
}

void Client::Impl::DropMapsKeepEpoch(InodeState& in, const ByteRange& range) {
  auto it = in.maps.upper_bound(range.start);
  if (it != in.maps.begin()) --it;
  std::vector<Mapping> keep;
  while (it != in.maps.end() && it->second.offset < range.end) {
    const Mapping& m = it->second;
    if (m.end() > range.start) {
      if (m.offset < range.start)
        keep.push_back(Clip(m, m.offset, range.start));
      if (m.end() > range.end) keep.push_back(Clip(m, range.end, m.end()));
      it = in.maps.erase(it);
    } else {
      ++it;
    }
  }
  for (const Mapping& m : keep) in.maps[m.offset] = m;
}

uint64_t Client::Impl::DropCached(InodeState& in, const ByteRange& range) {
  uint64_t before = pages_.Stats().pages;
  uint64_t dirty = mmaps_->Zap(in, range);
  dirty += pages_.Drop(in.ino, range);
  counters.pages_dropped += before - std::min(before, pages_.Stats().pages);
  absl::MutexLock lock(&in.mu);
  DropMaps(in, range);
  // What a readahead brought in is gone: the next one fetches it again.
  in.ra_filled = std::min(in.ra_filled, range.start);
  return dirty;
}

void Client::Impl::NoteLost(InodeState& in, uint64_t pages) {
  counters.lost_dirty_pages += pages;
  absl::MutexLock lock(&in.mu);
  ++in.lost;
}

absl::Status Client::Impl::FillPages(InodeState& in, uint64_t first,
                                     uint64_t end, uint64_t size,
                                     const ByteRange& locked,
                                     std::atomic<uint64_t>* filled) {
  end = std::min(end, PageCeil(size) / kPageSize);
  for (auto [run_start, run_end] : pages_.MissingRuns(in.ino, first, end)) {
    for (uint64_t idx = run_start; idx < run_end;) {
      const uint64_t n = std::min(run_end - idx, kMaxFill / kPageSize);
      const uint64_t offset = idx * kPageSize;
      const uint64_t length = n * kPageSize;
      absl::StatusOr<std::vector<Mapping>> maps =
          MapRange(in, offset, offset + length, &locked);
      if (!maps.ok()) return maps.status();
      // The data lands in page frames of the cache (no copy), and each
      // piece is cached as soon as it is in (on the thread that read it),
      // while the others are still on their way. Frames of pieces that
      // fail, and of pages two pieces share, go back.
      std::vector<char*> frames = pages_.TakeFrames(n);
      auto give_back = absl::MakeCleanup(
          [this, &frames] { pages_.GiveFrames(frames.data(), frames.size()); });
      const std::function<void(uint64_t, uint64_t)> arrived =
          [this, &in, &frames, offset, filled](uint64_t at, uint64_t len) {
            const uint64_t from = (at - offset + kPageSize - 1) / kPageSize;
            const uint64_t to = (at + len - offset) / kPageSize;
            if (from >= to) return;
            uint64_t k = pages_.AdoptCleanRun(in.ino, offset / kPageSize + from,
                                              to - from, &frames[from]);
            std::fill(frames.begin() + from, frames.begin() + to, nullptr);
            if (filled != nullptr) *filled += k;
            absl::MutexLock lock(&in.mu);
            in.ra_progress.SignalAll();  // A reader may wait for these.
          };
      if (absl::Status s = ReadMapped(*maps, offset, frames.data(), &arrived);
          !s.ok()) {
        return s;
      }
      idx += n;
    }
  }
  return absl::OkStatus();
}

namespace {

// Empties a pipe whose bytes go nowhere (non-blocking read end).
void DrainPipe(int read_fd) {
  int queued = 0;
  if (ioctl(read_fd, FIONREAD, &queued) == 0 && queued == 0) return;
  char scratch[16384];
  while (read(read_fd, scratch, sizeof(scratch)) > 0) {
  }
}

// Writes `n` zero bytes into a non-blocking pipe. false: it filled up.
bool PipeZeros(int write_fd, uint64_t n) {
  static const char kZeros[16384] = {};
  while (n > 0) {
    ssize_t w = write(write_fd, kZeros, std::min<uint64_t>(n, sizeof(kZeros)));
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return false;
    n -= static_cast<uint64_t>(w);
  }
  return true;
}

}  // namespace

bool Client::Impl::PipeFillable(InodeState& in, uint64_t pos, uint64_t end,
                                const CacheFill& fill) {
  if (fill.pipe == nullptr || end - pos > fill.pipe->capacity / 2) {
    return false;
  }
  const uint64_t first = pos / kPageSize;
  const uint64_t last = PageCeil(end) / kPageSize;
  const auto missing = pages_.MissingRuns(in.ino, first, last);
  return missing.size() == 1 && missing[0].first == first &&
         missing[0].second == last;
}

absl::StatusOr<bool> Client::Impl::PipeFill(InodeState& in, uint64_t pos,
                                            uint64_t end,
                                            const ByteRange& locked,
                                            const CacheFill& fill) {
  const Client::FillPipe& pipe = *fill.pipe;
  // Whatever happens, nothing is left in the pipe for the next fill.
  auto drain = absl::MakeCleanup([&pipe] { DrainPipe(pipe.read_fd); });
  absl::StatusOr<std::vector<Mapping>> maps = MapRange(in, pos, end, &locked);
  if (!maps.ok()) return maps.status();
  const uint64_t session = locks_.session_id();
  auto fall_back = [this] {
    ++counters.pipe_fallbacks;
    return false;
  };
  // The pieces go in one after another (the pipe is a stream); a cache
  // above keeping several fills in flight reads in parallel.
  uint64_t at = pos;
  for (const Mapping& m : *maps) {
    if (m.offset != at) return fall_back();  // Not contiguous: never seen.
    const uint64_t to = std::min(end, m.end());
    if (m.state != ExtentState::kWritten) {
      if (!PipeZeros(pipe.write_fd, to - at)) return fall_back();
      at = to;
      continue;
    }
    for (; at < to;) {
      const uint64_t n = std::min(kReadPiece, to - at);
      absl::Status s = stubs_->ReadDataToPipe(
          session, m.device, m.physical + (at - m.offset), n, pipe.write_fd);
      if (ErrcOf(s) == Errc::kWouldBlock || ErrcOf(s) == Errc::kNotSupported) {
        return fall_back();
      }
      if (!s.ok()) return s;
      at += n;
    }
    if (at == end) break;
  }
  if (at != end) return fall_back();
  ++counters.piped_fills;
  pipe.deliver(end - pos);
  return true;
}

char* BufferPool::Buffer::Get(size_t size) {
  if (data_ != nullptr && capacity_ >= size) return data_.get();
  Release();
  {
    absl::MutexLock lock(&pool_->mu_);
    for (auto it = pool_->idle_.begin(); it != pool_->idle_.end(); ++it) {
      if (it->first >= size) {
        capacity_ = it->first;
        data_ = std::move(it->second);
        pool_->idle_bytes_ -= capacity_;
        pool_->idle_.erase(it);
        return data_.get();
      }
    }
  }
  capacity_ = std::max<size_t>(size, 1);
  data_.reset(new char[capacity_]);  // Not value-initialised.
  return data_.get();
}

void BufferPool::Buffer::Release() {
  if (data_ == nullptr) return;
  std::unique_ptr<char[]> data = std::move(data_);
  const size_t capacity = std::exchange(capacity_, 0);
  if (capacity > kMaxIdleBytes) return;
  absl::MutexLock lock(&pool_->mu_);
  auto& idle = pool_->idle_;
  // Over the limits, the smaller ones go (the bigger serve any request).
  while (!idle.empty() && (idle.size() >= kMaxIdle ||
                           pool_->idle_bytes_ + capacity > kMaxIdleBytes)) {
    auto smallest = std::min_element(
        idle.begin(), idle.end(),
        [](const auto& a, const auto& b) { return a.first < b.first; });
    if (smallest->first >= capacity) return;  // This one goes instead.
    pool_->idle_bytes_ -= smallest->first;
    idle.erase(smallest);
  }
  pool_->idle_bytes_ += capacity;
  idle.emplace_back(capacity, std::move(data));
}

void Client::Impl::StartReadAhead(std::shared_ptr<InodeState> in,
                                  uint64_t start, uint64_t end) {
  {
    absl::MutexLock lock(&mu_);
    if (!stopping_) {
      ++readaheads_;
      ra_pool_.Submit([this, in = std::move(in), start, end] {
        ReadAhead(*in, start, end);
        absl::MutexLock lock(&mu_);
        --readaheads_;
      });
      return;
    }
  }
  EndReadAhead(*in, {start, end}, /*filled=*/false);
}

void Client::Impl::EndReadAhead(InodeState& in, const ByteRange& range,
                                bool filled) {
  absl::MutexLock lock(&in.mu);
  auto it = std::find(in.ra_busy.begin(), in.ra_busy.end(), range);
  if (it != in.ra_busy.end()) in.ra_busy.erase(it);
  // Not filled: a later read asks for it again.
  if (!filled) in.ra_filled = std::min(in.ra_filled, range.start);
  in.ra_progress.SignalAll();
}

bool Client::Impl::AwaitsReadAhead(InodeState& in, uint64_t pos,
                                   uint64_t want) {
  for (const ByteRange& r : in.ra_busy) {
    if (!r.Overlaps({pos, pos + want})) continue;
    const uint64_t end = in.attr_valid
                             ? std::min(pos + want, PageCeil(in.attr.size))
                             : pos + want;
    if (pos < end &&
        !pages_.MissingRuns(in.ino, pos / kPageSize, PageCeil(end) / kPageSize)
             .empty()) {
      return true;
    }
  }
  return false;
}

void Client::Impl::ReadAhead(InodeState& in, uint64_t start, uint64_t end) {
  bool filled = false;
  {
    // Pages only under INVAL SH or EX. A readahead is a guess: it takes
    // what the node can grant at once and gives up otherwise (a callback
    // waiting, a writer queued, a mapping that may hold newer stores).
    HeldLocks held(&locks_);
    const ByteRange r = PageCover(start, end - start);
    if (in.mmaps.load() == 0 &&
        held.Take(LockKind::kInval, in.ino, r, LockMode::kSh, true).ok() &&
        held.Take(LockKind::kInode, in.ino, WholeFile(), LockMode::kSh, true)
            .ok()) {
      absl::StatusOr<Attr> attr = CachedAttr(in);
      filled = attr.ok() &&
               FillPages(in, r.start / kPageSize, PageCeil(end) / kPageSize,
                         attr->size, r, &counters.readahead_pages)
                   .ok();
    }
  }
  ++(filled ? counters.readaheads : counters.readaheads_abandoned);
  EndReadAhead(in, {start, end}, filled);
}

absl::Status Client::Impl::ReadMapped(
    const std::vector<Mapping>& maps, uint64_t offset, char* const* pages,
    const std::function<void(uint64_t, uint64_t)>* arrived) {
  const uint64_t session = locks_.session_id();
  std::vector<std::function<absl::Status()>> reads;
  for (const Mapping& m : maps) {
    if (m.state != ExtentState::kWritten) {
      for (const struct iovec& v :
           PageSpans(pages, m.offset - offset, m.length)) {
        memset(v.iov_base, 0, v.iov_len);
      }
      if (arrived != nullptr) (*arrived)(m.offset, m.length);
      continue;
    }
    for (uint64_t done = 0; done < m.length; done += kReadPiece) {
      uint64_t n = std::min(kReadPiece, m.length - done);
      uint32_t device = m.device;
      uint64_t physical = m.physical + done;
      uint64_t at = m.offset + done;
      reads.push_back([this, session, device, physical, n, at, arrived,
                       spans = PageSpans(pages, at - offset, n)] {
        absl::Status s =
            stubs_->ReadData(session, device, physical, n, spans.data(),
                             static_cast<int>(spans.size()));
        if (s.ok() && arrived != nullptr) (*arrived)(at, n);
        return s;
      });
    }
  }
  if (reads.empty()) return absl::OkStatus();
  return RunParallel(std::move(reads));
}

absl::Status Client::Impl::ReadBlocksDirect(InodeState& in, uint64_t offset,
                                            uint64_t length, char* out) {
  absl::StatusOr<std::vector<Mapping>> maps =
      MapRange(in, offset, offset + length, nullptr);
  if (!maps.ok()) return maps.status();
  return ReadMapped(*maps, offset, PageSlices(out, length).data());
}

absl::Status Client::Impl::RunParallel(
    std::vector<std::function<absl::Status()>> calls) {
  if (calls.size() == 1) return calls[0]();
  // Shared with the pool's tasks: the last one to let go frees it, so no
  // task touches it (not even its mutex, while unlocking) after we return.
  struct Join {
    absl::Mutex mu;
    size_t left = 0;
    absl::Status first ABSL_GUARDED_BY(mu);
  };
  auto join = std::make_shared<Join>();
  join->left = calls.size();
  for (auto& call : calls) {
    io_pool_.Submit([join, call = std::move(call)] {
      absl::Status s = call();
      absl::MutexLock lock(&join->mu);
      if (!s.ok() && join->first.ok()) join->first = s;
      --join->left;
    });
  }
  absl::MutexLock lock(&join->mu);
  join->mu.Await(absl::Condition(
      +[](size_t* n) { return *n == 0; }, &join->left));
  return join->first;
}

absl::Status Client::Impl::WriteBlocks(InodeState& in, uint64_t offset,
                                       char* const* pages, uint64_t length,
                                       uint64_t size_floor, bool sync,
                                       const LockCache::SessionSnapshot& snap,
                                       uint64_t* committed) {
  std::vector<BlockRun> runs = {BlockRun{offset, pages, length}};
  absl::Status s = WriteRuns(in, runs, size_floor, sync, snap);
  if (committed != nullptr) *committed = runs[0].committed;
  return s;
}

absl::Status Client::Impl::WriteRuns(InodeState& in,
                                     std::vector<BlockRun>& runs,
                                     uint64_t size_floor, bool sync,
                                     const LockCache::SessionSnapshot& snap) {
  size_t first = 0;  // Runs before it are committed whole.
  int stale = 0;
  while (first < runs.size()) {
    // One MapWrite for the next runs, each from where it got to, within
    // kMaxMapSpan of the first (the server loads the extents in between).
    std::vector<ByteRange> ask;
    for (size_t k = first; k < runs.size() && ask.size() < kMaxMapRanges; ++k) {
      const uint64_t pos = runs[k].offset + runs[k].committed;
      const uint64_t end = runs[k].offset + runs[k].length;
      if (!ask.empty() && end - ask[0].start > kMaxMapSpan) break;
      ask.push_back({pos, std::min(end, pos + kMaxMapLength)});
    }
    ++counters.map_calls;
    absl::StatusOr<MapResult> r =
        stubs_->MapWriteRanges(snap.session, in.ino, ask);
    if (!r.ok()) return r.status();
    if (absl::Status s = FaultPoint("client.after_mapwrite"); !s.ok()) return s;
    // The mappings cover a prefix of `ask`: covered[k] is the part of
    // ask[k] they cover (empty past the prefix).
    std::vector<ByteRange> covered(ask.size());
    // Data writes, each at most kMaxDataCall: pieces that continue each
    // other on a device go as one write, even from different runs (the
    // blocks a MapWrite allocates for scattered runs are mostly adjacent).
    struct DataWrite {
      uint32_t device = 0;
      uint64_t physical = 0, length = 0;
      std::vector<struct iovec> spans;
    };
    std::vector<DataWrite> data;
    size_t mi = 0;
    for (size_t k = 0; k < ask.size(); ++k) {
      const BlockRun& run = runs[first + k];
      covered[k] = {ask[k].start, ask[k].start};
      for (; mi < r->mappings.size() && r->mappings[mi].offset < ask[k].end;
           ++mi) {
        const Mapping& m = r->mappings[mi];
        if (m.state == ExtentState::kHole) {
          return MakeError(Errc::kInternal, "MapWrite left a hole");
        }
        for (uint64_t p = m.offset; p < m.end();) {
          const uint64_t physical = m.physical + (p - m.offset);
          DataWrite* w = data.empty() ? nullptr : &data.back();
          if (w == nullptr || w->device != m.device ||
              w->physical + w->length != physical ||
              w->length == kMaxDataCall) {
            data.push_back(DataWrite{m.device, physical, 0, {}});
            w = &data.back();
          }
          const uint64_t n = std::min(kMaxDataCall - w->length, m.end() - p);
          for (const struct iovec& v :
               PageSpans(run.pages, p - run.offset, n)) {
            w->spans.push_back(v);
          }
          w->length += n;
          p += n;
        }
        covered[k].end = m.end();
      }
      if (covered[k].end < ask[k].end) break;  // The prefix ends here.
    }
    std::vector<std::function<absl::Status()>> writes;
    for (DataWrite& w : data) {
      writes.push_back([this, &snap, sync, w = std::move(w)] {
        return stubs_->WriteData(
            snap.session, w.device, w.physical, w.spans.data(),
            static_cast<int>(w.spans.size()), w.length, sync);
      });
    }
    if (absl::Status s = RunParallel(std::move(writes)); !s.ok()) return s;
    if (absl::Status s = FaultPoint("client.before_commit"); !s.ok()) return s;
    std::vector<ByteRange> commit;
    for (const ByteRange& c : covered) {
      if (c.Valid()) commit.push_back(c);
    }
    absl::StatusOr<CommitResult> c = stubs_->CommitWrite(
        snap.session, in.ino, commit, r->cookie,
        std::min(size_floor, commit.back().end), DataMtime(in));
    if (!c.ok() && ErrcOf(c.status()) == Errc::kStale) {
      // The extents under a piece changed after we mapped it: remap and
      // write the pieces again (iomap's IOMAP_F_STALE loop).
      ++counters.stale_retries;
      if (++stale > kMaxStaleRetries) {
        return MakeError(Errc::kIoError, "commit stayed stale after retries");
      }
      continue;
    }
    if (!c.ok()) return c.status();
    RANGEFS_LOG(DEBUG) << "ino " << in.ino << " committed "
                       << commit.front().ToString() << ".."
                       << commit.back().ToString() << " (" << commit.size()
                       << " pieces)";
    {
      absl::MutexLock lock(&in.mu);
      for (const ByteRange& piece : commit) DropMaps(in, piece);
      if (in.attr_valid) {
        in.attr.blocks = c->attr.blocks;
        // The commit moved the server's mtime and ctime. Data the cache
        // above wrote back while the node held only INODE SH could not
        // move the cached ones (WriteFromCache): they follow now.
        in.attr.mtime = LaterOf(in.attr.mtime, c->attr.mtime);
        in.attr.ctime = LaterOf(in.attr.ctime, c->attr.ctime);
      }
    }
    InvalidateAttributesAbove(in.ino);  // Its block count changed.
    for (size_t k = 0; k < covered.size(); ++k) {
      runs[first + k].committed += covered[k].Length();
    }
    while (first < runs.size() && runs[first].committed == runs[first].length) {
      ++first;
    }
  }
  return absl::OkStatus();
}

absl::Status Client::Impl::Writeback(InodeState& in, const ByteRange& range) {
  absl::MutexLock lock(&in.wb_mu);
  return WritebackLocked(in, range);
}

absl::Status Client::Impl::WritebackLocked(InodeState& in,
                                           const ByteRange& range) {
  LockCache::SessionSnapshot snap = locks_.Snapshot();
  mmaps_->Collect(in, range);  // Stores through mappings join the pages.
  // In batches of one run (its pages pinned until it is done).
  constexpr size_t kBatchPages = kWritebackRun / kPageSize;
  // Once the data is lost or refused, every later page goes the same way.
  absl::Status failed;
  for (uint64_t from = range.start; from < range.end;) {
    DirtyPages dirty = pages_.TakeDirty(in.ino, {from, range.end}, kBatchPages);
    if (dirty.empty()) break;
    from = (dirty.pages.back().index + 1) * kPageSize;
    const bool last_batch = dirty.size() < kBatchPages;
    uint64_t size = 0;
    bool lost = false;
    {
      absl::MutexLock lock(&in.mu);
      lost = in.dirty_incarnation != snap.incarnation;
      if (in.attr_valid) {
        size = in.attr.size;
      } else {
        // Pages the cache above wrote back without the attribute lock
        // (WriteFromCache): they lie inside the file, whose size stays.
        RANGEFS_LOG(DEBUG) << "dirty pages of inode " << in.ino
                           << " without attributes; size not raised";
      }
    }
    auto drop = [&](size_t first, size_t end) {
      for (size_t i = first; i < end; ++i) {
        pages_.Drop(in.ino, {dirty[i].index * kPageSize,
                             (dirty[i].index + 1) * kPageSize});
      }
      NoteLost(in, end - first);
    };
    if (lost && failed.ok()) {
      // Made under a lock session that was lost: never written (DESIGN.md).
      failed =
          MakeError(Errc::kIoError, "dirty data lost with the lock session");
    }
    if (!failed.ok()) {
      drop(0, dirty.size());
      if (last_batch) break;
      continue;
    }
    // Runs of consecutive pages, each sent from its frames; scattered
    // pages make many short runs, mapped and committed together
    // (WriteRuns).
    std::vector<BlockRun> runs;
    std::vector<size_t> run_first;  // Each run's first page in `dirty`.
    for (size_t i = 0; i < dirty.size();) {
      size_t j = i + 1;
      while (j < dirty.size() && dirty[j].index == dirty[j - 1].index + 1) {
        ++j;
      }
      runs.push_back(BlockRun{dirty[i].index * kPageSize, dirty.Frames(i),
                              (j - i) * kPageSize});
      run_first.push_back(i);
      i = j;
    }
    const absl::Status s = WriteRuns(in, runs, size, /*sync=*/false, snap);
    const Errc e = ErrcOf(s);
    const bool refused =
        !s.ok() && (e == Errc::kFenced || e == Errc::kNotFound);
    for (size_t k = 0; k < runs.size(); ++k) {
      // What the servers have is clean (all of it, or as far as the space
      // went); the rest stays dirty and a later write-back retries it, or
      // is lost if the write-back was refused for good. A cache above
      // (the kernel's) has the data it wrote through us: the written pages
      // leave, and their frames take the next writes.
      const size_t pages = runs[k].length / kPageSize;
      const size_t done = runs[k].committed / kPageSize;
      pages_.MarkClean(in.ino, &dirty.pages[run_first[k]], done,
                       /*drop=*/cache_above.load() != nullptr);
      counters.writeback_pages += done;
      if (refused && done < pages) {
        drop(run_first[k] + done, run_first[k] + pages);
      }
    }
    if (refused) {
      failed = MakeError(Errc::kIoError,
                         "write-back refused: " + std::string(s.message()));
    } else if (!s.ok()) {
      return s;
    }
    if (last_batch) break;
  }
  return failed;
}

// ------------------------------------------------------------ lock hooks

void Client::Impl::InvalidateAbove(uint64_t ino, const ByteRange& range) {
  CacheAbove* above = cache_above.load();
  if (above == nullptr) return;
  above->Invalidate(ino, range.start, range.end - range.start);
}

void Client::Impl::InvalDemote(uint64_t ino, const ByteRange& range,
                               LockMode keep) {
  ++counters.inval_demotes;
  RANGEFS_LOG(DEBUG) << "inval demote ino " << ino << " " << range.ToString()
                     << " keep " << static_cast<int>(keep);
  // The cache above first: its dirty pages come down into ours (through
  // WriteFromCache) and are written back with them. Even when SH stays it
  // drops everything: it could dirty a clean page without asking us.
  InvalidateAbove(ino, range);
  std::shared_ptr<InodeState> in = GetInode(ino);
  absl::MutexLock lock(&in->wb_mu);
  absl::Status s;
  for (int i = 0; i < kHookRetries; ++i) {
    s = WritebackLocked(*in, range);
    if (s.ok() || !RetryWriteback(s)) break;
    absl::SleepFor(absl::Milliseconds(100 << i));
  }
  if (!s.ok()) {
    RANGEFS_LOG(ERROR) << "inode " << ino << ": write-back for a callback "
                       << "failed: " << s.message();
  }
  // A switch for tests: hold the lock between writeback and invalidate.
  (void)FaultPoint("client.inval_between_writeback_and_invalidate");
  if (keep == LockMode::kSh && s.ok()) return;  // Clean pages may stay.
  if (UnsafeSwitch("unsafe.client.inval_keep_cache")) return;
  if (!s.ok()) {
    LoseUnwritten(*in, range);
    return;
  }
  uint64_t dirty = DropCached(*in, range);
  if (dirty > 0) NoteLost(*in, dirty);
}

bool Client::Impl::RetryWriteback(const absl::Status& s) {
  // Refused for good (fenced, lost), or no space: waiting will not help
  // within a callback's time.
  Errc e = ErrcOf(s);
  // The race suite's switch for N6 (with data calls that give up after
  // 200 ms): a server away is given up on at once.
  if (UnsafeSwitch("unsafe.client.data_fail_fast")) return false;
  return e != Errc::kIoError && e != Errc::kNoSpace;
}

void Client::Impl::LoseUnwritten(InodeState& in, const ByteRange& range) {
  uint64_t dirty = DropCached(in, range);
  if (dirty > 0) NoteLost(in, dirty);
  // The size and times of the lost data were only ours: the next stat
  // asks the server, so this node agrees with every other.
  ForgetInode(in);
  InvalidateAttributesAbove(in.ino);
}

void Client::Impl::InvalLost(uint64_t ino, const ByteRange& range) {
  InvalidateAbove(ino, range);  // Its write-backs fail: nothing is covered.
  std::shared_ptr<InodeState> in = FindInode(ino);
  uint64_t dirty = pages_.Drop(ino, range);
  if (in == nullptr) return;
  dirty += mmaps_->Zap(*in, range);
  {
    absl::MutexLock lock(&in->mu);
    DropMaps(*in, range);
  }
  if (dirty > 0) NoteLost(*in, dirty);
}

bool Client::Impl::LockNewFileLater(std::shared_ptr<InodeState> dir,
                                    std::shared_ptr<InodeState> in) {
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) return false;
    ++new_file_locks_;
  }
  {
    absl::MutexLock lock(&dir->mu);
    ++dir->new_children;
  }
  new_lock_pool_.Submit([this, dir = std::move(dir), in = std::move(in)] {
    absl::Status s = FaultPoint("client.before_new_file_lock");
    if (s.ok()) {
      HeldLocks held(&locks_);
      s = held.Take(LockKind::kInode, in->ino, WholeFile(), LockMode::kEx);
    }
    if (!s.ok()) {
      RANGEFS_LOG(WARNING) << "inode " << in->ino
                           << ": no INODE lock for the new file: "
                           << s.message();
      ForgetInode(*in);
      InvalidateAttributesAbove(in->ino);
    }
    NewChildSettled(*dir);
    absl::MutexLock lock(&mu_);
    --new_file_locks_;
  });
  return true;
}

Timespec Client::Impl::DataMtime(InodeState& in) {
  absl::MutexLock lock(&in.mu);
  // The writes set it under INODE EX; otherwise (data the cache above
  // wrote back under SH, or attributes gone) the data is new as of now.
  if (in.attr_valid && !in.mtime_pending) return in.attr.mtime;
  return NowTimespec();
}

void Client::Impl::NewChildSettled(InodeState& dir) {
  absl::MutexLock lock(&dir.mu);
  if (--dir.new_children == 0) dir.names_dropped_with_new = false;
  dir.children_locked.SignalAll();
}

void Client::Impl::InodeDemote(uint64_t ino, LockMode keep) {
  ++counters.inode_demotes;
  std::shared_ptr<InodeState> in = GetInode(ino);
  {
    // Files made here become reachable by others once this lock goes:
    // first this node holds their locks (LockNewFileLater).
    absl::MutexLock lock(&in->mu);
    while (in->new_children > 0) in->children_locked.Wait(&in->mu);
  }
  absl::ReleasableMutexLock lock(&in->wb_mu);
  // The size and mtime of dirty data reach the server with the data.
  absl::Status s;
  for (int i = 0; i < kHookRetries; ++i) {
    s = WritebackLocked(*in, WholeFile());
    if (s.ok() || !RetryWriteback(s)) break;
    absl::SleepFor(absl::Milliseconds(100 << i));
  }
  if (!s.ok()) {
    RANGEFS_LOG(ERROR) << "inode " << ino << ": write-back for an attribute "
                       << "callback failed: " << s.message();
  }
  // Refused for good (no space, a lost session): the attributes go with
  // the lock, and the data they described with them; so do the kernel's
  // copies (clean: it wrote them to us), after wb_mu, which a write from
  // the kernel would need. A server away keeps the pages dirty for the
  // INVAL callback or the flusher to try again.
  const bool lost = !s.ok() && !RetryWriteback(s);
  if (lost) LoseUnwritten(*in, WholeFile());
  if (keep != LockMode::kSh) {
    // Opens counted under the lock must be known to the metadata server
    // before another node may remove the file's last name.
    for (int i = 0; i < kHookRetries; ++i) {
      s = RegisterOpens(*in);
      if (s.ok()) break;
      absl::SleepFor(absl::Milliseconds(100 << i));
    }
    if (!s.ok()) {
      RANGEFS_LOG(ERROR) << "inode " << ino << ": could not register the "
                         << "node's opens before giving up its lock: "
                         << s.message();
    }
    ForgetInode(*in);
    InvalidateAttributesAbove(ino);
  }
  if (lost) {
    lock.Release();
    InvalidateAbove(ino, WholeFile());
  }
}

void Client::Impl::InodeLost(uint64_t ino) {
  InvalidateAttributesAbove(ino);
  if (std::shared_ptr<InodeState> in = FindInode(ino)) ForgetInode(*in);
}

void Client::Impl::InvalidateAttributesAbove(uint64_t ino) {
  if (CacheAbove* above = cache_above.load()) above->InvalidateAttributes(ino);
}

void Client::Impl::InvalidateNamesAbove() {
  if (CacheAbove* above = cache_above.load()) above->InvalidateNames();
}

void Client::Impl::Hooks::Demote(const ResourceId& res, const ByteRange& range,
                                 LockMode keep) {
  if (kind_ == LockKind::kPosix) return;  // Never called back.
  if (kind_ == LockKind::kInval) {
    impl_->InvalDemote(res.ino, range, keep);
  } else {
    impl_->InodeDemote(res.ino, keep);
  }
}

void Client::Impl::Hooks::Lost(const ResourceId& res, const ByteRange& range) {
  if (kind_ == LockKind::kInval) {
    impl_->InvalLost(res.ino, range);
  } else if (kind_ == LockKind::kPosix) {
    impl_->RecordLocksLost(res.ino);
  } else {
    impl_->InodeLost(res.ino);
  }
}

void Client::Impl::RecordLocksLost(uint64_t ino) {
  // As NFS does after it loses a lock with its lease: the processes that
  // have the file open learn of it (EIO on their next operation through a
  // descriptor opened before), never find out by a conflicting write.
  RANGEFS_LOG(ERROR) << "inode " << ino << ": record locks lost with the "
                     << "node's session; open descriptors of it get EIO";
  if (std::shared_ptr<InodeState> in = FindInode(ino)) {
    absl::MutexLock lock(&in->mu);
    ++in->lost;
  }
}

void Client::Impl::InstallHooks() {
  inval_hooks_ = std::make_unique<Hooks>(this, LockKind::kInval);
  inode_hooks_ = std::make_unique<Hooks>(this, LockKind::kInode);
  posix_hooks_ = std::make_unique<Hooks>(this, LockKind::kPosix);
  locks_.SetHooks(LockKind::kInval, inval_hooks_.get());
  locks_.SetHooks(LockKind::kInode, inode_hooks_.get());
  locks_.SetHooks(LockKind::kPosix, posix_hooks_.get());
}

// ------------------------------------------------------------- flusher

bool Client::Impl::HoldsCache(InodeState& in) {
  // Under mu_, which comes after InodeState::mu: only try it.
  if (!in.mu.TryLock()) return true;
  bool cached = in.attr_valid || in.names_complete || !in.names.empty();
  in.mu.Unlock();
  return cached;
}

void Client::Impl::TrimInodes() {
  // An InodeState nobody else references (no handle, no call in flight,
  // no hook running: the map's is the only reference, and new ones are
  // only made under mu_), with no dirty pages and nothing cached under its
  // INODE lock can go; a later call starts from a fresh one. What is
  // cached under the lock (attributes, a directory's names) stays until
  // the lock goes: the lock cache bounds how many.
  std::vector<std::shared_ptr<InodeState>> doomed;
  absl::MutexLock lock(&mu_);
  for (auto it = inodes_.begin(); it != inodes_.end();) {
    if (it->second.use_count() == 1 && !pages_.HasDirty(it->first) &&
        !HoldsCache(*it->second)) {
      doomed.push_back(std::move(it->second));
      it = inodes_.erase(it);
    } else {
      ++it;
    }
  }
}

absl::Status Client::Impl::ThrottleWriter(InodeState& in) {
  const uint64_t limit = options_.dirty_limit_bytes;
  if (pages_.dirty_bytes() <= limit / 2) return absl::OkStatus();
  {
    absl::MutexLock lock(&mu_);
    flush_kick_ = true;
  }
  // The flusher writes back while this writer goes on filling pages; only
  // past the limit does the writer wait, and a flusher that makes no
  // progress (a long callback, a server away) is not waited for long.
  const absl::Time deadline = absl::Now() + absl::Seconds(1);
  while (pages_.dirty_bytes() > limit) {
    if (absl::Now() >= deadline) return Writeback(in, WholeFile());
    absl::SleepFor(absl::Milliseconds(1));
  }
  return absl::OkStatus();
}

void Client::Impl::Flusher() {
  constexpr int64_t kWarningPeriodNs = 5'000'000'000;
  const absl::Duration period = absl::Milliseconds(
      std::max<uint64_t>(10, options_.writeback_interval_ms / 4));
  int64_t last_full = 0;
  // A write-back that keeps failing (a full filesystem) is retried at
  // every pass: say so once every few seconds, not at every pass.
  int64_t last_warning = 0;
  uint64_t quiet_failures = 0;
  auto woken = [this]() ABSL_SHARED_LOCKS_REQUIRED(mu_) {
    return stopping_ || flush_kick_;
  };
  for (;;) {
    {
      absl::MutexLock lock(&mu_);
      mu_.AwaitWithTimeout(absl::Condition(&woken), period);
      if (stopping_) return;
      flush_kick_ = false;
    }
    int64_t now = absl::GetCurrentTimeNanos();
    bool pressure = pages_.dirty_bytes() > options_.dirty_limit_bytes / 2;
    bool aged = now - last_full >=
                static_cast<int64_t>(options_.writeback_interval_ms) * 1000000;
    if (!pressure && !aged) continue;
    if (aged) {
      last_full = now;
      TrimInodes();
    }
    std::vector<uint64_t> inos = pages_.DirtyInodes();
    for (uint64_t ino : mmaps_->DirtyInodes()) inos.push_back(ino);
    for (uint64_t ino : inos) {
      std::shared_ptr<InodeState> in = FindInode(ino);
      if (in == nullptr) continue;
      absl::Status s = Writeback(*in, WholeFile());
      if (s.ok()) continue;
      now = absl::GetCurrentTimeNanos();
      if (now - last_warning < kWarningPeriodNs) {
        ++quiet_failures;
        continue;
      }
      RANGEFS_LOG(WARNING) << "background write-back of inode " << ino << ": "
                           << s.message() << " (" << quiet_failures
                           << " more failures since the last warning)";
      last_warning = now;
      quiet_failures = 0;
    }
  }
}

}  // namespace rangefs::client
