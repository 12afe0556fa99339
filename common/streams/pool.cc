#include "common/streams/pool.h"

#include <algorithm>

namespace medstream::streams {

ThreadPool::ThreadPool(size_t workers) {
  if (workers == 0) workers = std::max(1u, std::thread::hardware_concurrency());
  workers = std::min(workers, kMaxWorkers);
  threads_.reserve(workers - 1);
  for (size_t w = 1; w < workers; ++w) threads_.emplace_back([this, w] { Loop(w); });
  std::unique_lock lock(mu_);
  done_.wait(lock, [this] { return running_ == threads_.size(); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  wake_.notify_all();
  for (std::thread& t : threads_) t.join();
}

void ThreadPool::Work(size_t worker) {
  for (size_t i = next_.fetch_add(1); i < n_; i = next_.fetch_add(1)) (*fn_)(worker, i);
}

void ThreadPool::Run(size_t n, const std::function<void(size_t, size_t)>& fn) {
  if (n == 0) return;
  if (threads_.empty() || n == 1) {
    for (size_t i = 0; i < n; ++i) fn(0, i);
    return;
  }
  {
    std::lock_guard lock(mu_);
    fn_ = &fn;
    n_ = n;
    next_.store(0);
    open_ = true;
    ++generation_;
  }
  wake_.notify_all();
  Work(0);
  // Done here: close the run, so a pool thread not yet woken (its CPU busy with other work) skips
  // it instead of this thread waiting for it to be scheduled only to find nothing left; wait only
  // for the threads that joined, each finishing the item it holds.
  std::unique_lock lock(mu_);
  open_ = false;
  done_.wait(lock, [this] { return active_ == 0; });
  fn_ = nullptr;
}

void ThreadPool::Loop(size_t worker) {
  std::unique_lock lock(mu_);
  ++running_;
  done_.notify_all();
  uint64_t seen = generation_;
  for (;;) {
    wake_.wait(lock, [&] { return stop_ || generation_ != seen; });
    if (stop_) return;
    seen = generation_;
    if (!open_) continue;  // finished without this thread
    ++active_;
    lock.unlock();
    Work(worker);
    lock.lock();
    if (--active_ == 0) done_.notify_all();
  }
}

}  // namespace medstream::streams
