// Stoppable user copies (user_copy.h, docs/mmap.md).
#include "client/user_copy.h"

#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <csetjmp>
#include <cstring>
#include <mutex>
#include <unordered_map>

#include "absl/synchronization/mutex.h"

namespace rangefs::client {
namespace {

constexpr uintptr_t kPage = 4096;

// One thread's copy state. The fault handler reads it through the
// registry; the thread's own signal handler through the TLS pointer.
struct CopyState {
  pid_t tid = 0;
  std::atomic<bool> in_section{false};
  std::atomic<int> stop{0};
  sigjmp_buf* volatile jump = nullptr;
};

std::atomic<bool> g_enabled{false};

absl::Mutex& RegistryMu() {
  static absl::Mutex* mu = new absl::Mutex;
  return *mu;
}
std::unordered_map<pid_t, CopyState*>& Registry() {
  static auto* r = new std::unordered_map<pid_t, CopyState*>;
  return *r;
}

// Registers the thread's state on first use and removes it at thread exit.
struct ThreadCopyState {
  CopyState state;
  ThreadCopyState() {
    state.tid = static_cast<pid_t>(syscall(SYS_gettid));
    absl::MutexLock lock(&RegistryMu());
    Registry()[state.tid] = &state;
  }
  ~ThreadCopyState() {
    absl::MutexLock lock(&RegistryMu());
    Registry().erase(state.tid);
  }
};

// Set before the first copy section of a thread, so the signal handler
// never causes a TLS allocation.
__attribute__((tls_model("initial-exec"))) thread_local CopyState* tls_state =
    nullptr;

CopyState& Self() {
  if (tls_state == nullptr) {
    thread_local ThreadCopyState owner;
    tls_state = &owner.state;
  }
  return *tls_state;
}

void OnCopyStop(int) {
  CopyState* st = tls_state;
  if (st == nullptr || !st->in_section.load(std::memory_order_relaxed)) {
    return;  // Late: the copy finished after all. Nothing to stop.
  }
  sigjmp_buf* j = st->jump;
  if (j != nullptr) siglongjmp(*j, 1);
}

// Copies n bytes, page of the user buffer by page, and stops at the first
// page whose fault the handler refuses.
size_t GuardedCopy(char* dst, const char* src, size_t n, uintptr_t user) {
  if (!g_enabled.load(std::memory_order_acquire)) {
    memcpy(dst, src, n);
    return n;
  }
  CopyState& st = Self();
  volatile size_t done = 0;
  sigjmp_buf jump;
  if (sigsetjmp(jump, 0) != 0) {
    st.in_section.store(false);
    st.jump = nullptr;
    return done;
  }
  st.stop.store(static_cast<int>(CopyStop::kNone));
  st.jump = &jump;
  st.in_section.store(true);  // Sequentially consistent: before any access.
  while (done < n) {
    size_t chunk = std::min<size_t>(n - done, kPage - ((user + done) % kPage));
    memcpy(dst + done, src + done, chunk);
    done = done + chunk;
  }
  st.in_section.store(false);
  st.jump = nullptr;
  return n;
}

}  // namespace

size_t CopyToUser(void* user_dst, const void* src, size_t n) {
  return GuardedCopy(static_cast<char*>(user_dst),
                     static_cast<const char*>(src), n,
                     reinterpret_cast<uintptr_t>(user_dst));
}

size_t CopyFromUser(void* dst, const void* user_src, size_t n) {
  return GuardedCopy(static_cast<char*>(dst),
                     static_cast<const char*>(user_src), n,
                     reinterpret_cast<uintptr_t>(user_src));
}

CopyStop LastCopyStop() { return static_cast<CopyStop>(Self().stop.load()); }

void PrefaultUser(void* user_buf, size_t n, bool for_write) {
  if (n == 0) return;
  volatile char* p = static_cast<volatile char*>(user_buf);
  uintptr_t first = reinterpret_cast<uintptr_t>(user_buf);
  uintptr_t last = first + n - 1;
  for (uintptr_t a = first;; a = (a | (kPage - 1)) + 1) {
    volatile char* c = p + (a - first);
    if (for_write) {
      __atomic_fetch_add(c, 0, __ATOMIC_RELAXED);
    } else {
      (void)*c;
    }
    if ((a | (kPage - 1)) >= last) break;
  }
}

int CopyStopSignal() { return SIGRTMAX - 3; }

void EnableCopyStops() {
  static std::once_flag once;
  std::call_once(once, [] {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = OnCopyStop;
    // NODEFER: the handler leaves by siglongjmp without restoring the
    // mask, so the signal must not be blocked while it runs.
    sa.sa_flags = SA_RESTART | SA_NODEFER;
    sigemptyset(&sa.sa_mask);
    sigaction(CopyStopSignal(), &sa, nullptr);
    g_enabled.store(true, std::memory_order_release);
  });
}

bool StopCopy(pid_t tid, CopyStop why) {
  absl::MutexLock lock(&RegistryMu());
  auto it = Registry().find(tid);
  if (it == Registry().end() || !it->second->in_section.load()) return false;
  it->second->stop.store(static_cast<int>(why));
  syscall(SYS_tgkill, getpid(), tid, CopyStopSignal());
  return true;
}

bool InCopySection(pid_t tid) {
  absl::MutexLock lock(&RegistryMu());
  auto it = Registry().find(tid);
  return it != Registry().end() && it->second->in_section.load();
}

}  // namespace rangefs::client
