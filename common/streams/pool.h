// ThreadPool: a fixed set of threads that analyse one batch's windows in parallel (hrv::Parallel).
// Every thread is created, and running, before the constructor returns: the process backend's
// seccomp filter, installed right after the enclave core is made, allows futex but neither clone
// nor the rseq registration a new thread makes, so nothing here may start a thread later. The
// thread calling Run is worker 0 and works too; workers() - 1 threads wait on a condition variable
// between runs (futex, no spinning: an idle enclave uses no CPU).
// Thread-safety: Run from one thread at a time; workers() from any.
#pragma once

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

#include "algo/hrv/parallel.h"

namespace medstream::streams {

class ThreadPool final : public hrv::Parallel {
 public:
  // At most kMaxWorkers; 0 means one per CPU this process may run on.
  static constexpr size_t kMaxWorkers = 64;
  explicit ThreadPool(size_t workers);
  ~ThreadPool() override;
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  size_t workers() const override { return threads_.size() + 1; }
  void Run(size_t n, const std::function<void(size_t worker, size_t i)>& fn) override;

 private:
  void Loop(size_t worker);
  void Work(size_t worker);

  std::mutex mu_;
  std::condition_variable wake_, done_;
  const std::function<void(size_t, size_t)>* fn_ = nullptr;
  size_t n_ = 0;
  std::atomic<size_t> next_{0};
  uint64_t generation_ = 0;
  bool open_ = false;   // the current run takes pool threads (until Run's own thread is done)
  size_t active_ = 0;   // pool threads in the current run
  size_t running_ = 0;  // pool threads started (see the constructor)
  bool stop_ = false;
  std::vector<std::thread> threads_;
};

}  // namespace medstream::streams
