// The one routine that moves bytes between the node's buffers and a
// caller's buffer while the caller holds cluster locks.
//
// DESIGN.md's rule: no thread takes a page fault while it holds cluster
// locks, because the fault may need a lock that this thread (a direct
// write from an mmap of the range it holds INVAL DF on) or a node waiting
// for it holds. So the I/O paths prefault the next window of the caller's
// buffer before they lock, copy only through CopyToUser/CopyFromUser while
// locked, and treat a short copy as "the buffer is not resident": keep the
// bytes done, release the locks, prefault again and retry from there.
//
// Today the copies are plain memcpy and cannot stop short: rangefs's own
// mappings do not fault through the node yet. The mmap issue (userfaultfd
// mappings) makes them stop at a page whose fault would need a cluster
// lock; every I/O path already handles the short copy.
#ifndef RANGEFS_CLIENT_USER_COPY_H_
#define RANGEFS_CLIENT_USER_COPY_H_

#include <cstddef>
#include <cstdint>
#include <cstring>

namespace rangefs::client {

// Returns the bytes copied, from the start; fewer than `n` means the copy
// stopped at a non-resident page of the user buffer.
inline size_t CopyToUser(void* user_dst, const void* src, size_t n) {
  memcpy(user_dst, src, n);
  return n;
}
inline size_t CopyFromUser(void* dst, const void* user_src, size_t n) {
  memcpy(dst, user_src, n);
  return n;
}
// Makes a window of a user buffer resident before locks are taken, as
// Linux's fault_in_readable / fault_in_writeable: touches one byte of every
// page (for a buffer the call will fill, by writing a zero into it, which
// the call overwrites anyway).
inline void PrefaultUser(void* user_buf, size_t n, bool for_write) {
  constexpr uintptr_t kPage = 4096;
  if (n == 0) return;
  volatile char* p = static_cast<volatile char*>(user_buf);
  uintptr_t first = reinterpret_cast<uintptr_t>(user_buf);
  uintptr_t last = first + n - 1;
  for (uintptr_t a = first; a <= last; a = (a | (kPage - 1)) + 1) {
    volatile char* c = p + (a - first);
    if (for_write) {
      *c = 0;
    } else {
      (void)*c;
    }
    if ((a | (kPage - 1)) >= last) break;
  }
}

}  // namespace rangefs::client

#endif  // RANGEFS_CLIENT_USER_COPY_H_
