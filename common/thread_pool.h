// A fixed pool of threads running submitted closures in FIFO order. Servers
// run their blocking handlers (synced RocksDB writes, pread/pwrite, fsync)
// here instead of on gRPC's threads. The destructor finishes queued work,
// then joins.
#ifndef RANGEFS_COMMON_THREAD_POOL_H_
#define RANGEFS_COMMON_THREAD_POOL_H_

#include <deque>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace rangefs {

class ThreadPool {
 public:
  explicit ThreadPool(int threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  void Submit(std::function<void()> fn);

 private:
  void Run();

  absl::Mutex mu_;
  std::deque<std::function<void()>> queue_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> threads_;
};

}  // namespace rangefs

#endif  // RANGEFS_COMMON_THREAD_POOL_H_
