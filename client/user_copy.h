// The one routine that moves bytes between the node's buffers and a
// caller's buffer while the caller holds cluster locks, with page faults
// on rangefs mappings disabled (docs/mmap.md).
//
// DESIGN.md's rule: no thread takes a page fault while it holds cluster
// locks, because the fault may need a lock that this thread (a direct
// write from an mmap of the range it holds INVAL DF on) or a node waiting
// for it holds. So the I/O paths prefault the next window of the caller's
// buffer before they lock, copy only through CopyToUser/CopyFromUser while
// locked, and treat a short copy as "the buffer is not resident": keep the
// bytes done, release the locks, prefault again and retry from there.
//
// How a copy stops short: once any rangefs mapping exists in the process
// (EnableCopyStops), each copy runs in a "copy section" published in a
// per-thread record. The userfaultfd handler (client/mmap.cc) learns the
// faulting thread's id from the kernel; when that thread is in a copy
// section it does not serve the fault but calls StopCopy(), which records
// why and sends the thread kCopyStopSignal. The thread is woken out of its
// fault wait, the signal handler siglongjmps back into the copy routine,
// and the copy returns the bytes done up to the faulting page. Faults on
// ordinary memory are served by the kernel as always.
#ifndef RANGEFS_CLIENT_USER_COPY_H_
#define RANGEFS_CLIENT_USER_COPY_H_

#include <sys/types.h>

#include <cstddef>
#include <cstdint>

namespace rangefs::client {

// Why the calling thread's last copy stopped short.
enum class CopyStop : int {
  kNone = 0,
  // The buffer has a page that is not resident; prefaulting it after
  // unlocking fixes that.
  kNotResident = 1,
  // Serving the fault would wait on a cluster lock this thread holds (it
  // copies to or from a mapping of the range it has locked).
  kDeadlock = 2,
};

// Returns the bytes copied, from the start; fewer than `n` means the copy
// stopped at a page of the user buffer that could not be touched without a
// fault (LastCopyStop() says why).
size_t CopyToUser(void* user_dst, const void* src, size_t n);
size_t CopyFromUser(void* dst, const void* user_src, size_t n);
CopyStop LastCopyStop();

// Makes a window of a user buffer resident before locks are taken, as
// Linux's fault_in_readable / fault_in_safe_writeable: touches every page;
// for a buffer the call will fill, with an atomic add of zero (a write
// access that changes nothing, so a short call leaves the buffer as it
// was).
void PrefaultUser(void* user_buf, size_t n, bool for_write);

// ---- for the page-fault handler (client/mmap.cc)

// Installs the signal handler; from then on copies are stoppable. Idempotent.
void EnableCopyStops();
// If thread `tid` of this process is in a copy section, makes its copy
// stop with `why` and returns true.
bool StopCopy(pid_t tid, CopyStop why);
// Whether thread `tid` is in a copy section now.
bool InCopySection(pid_t tid);
// The signal that stops a copy (a real-time signal; the handler ignores it
// outside a copy section).
int CopyStopSignal();

}  // namespace rangefs::client

#endif  // RANGEFS_CLIENT_USER_COPY_H_
