#include "enclave/core/worker.h"

namespace medstream::enclave {

Worker::Worker() : thread_([this] { Loop(); }) {
  // Returns only once the thread runs: a thread registers itself with the kernel (rseq) as it
  // starts, and the process backend's seccomp filter, installed right after the core is made and
  // applied to every thread, allows no such call.
  std::unique_lock lock(mu_);
  cv_.wait(lock, [this] { return running_; });
}

Worker::~Worker() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

void Worker::Start(std::function<void()> task) {
  {
    std::lock_guard lock(mu_);
    task_ = std::move(task);
    busy_ = true;
  }
  cv_.notify_all();
}

void Worker::Wait() {
  std::unique_lock lock(mu_);
  if (busy_ && task_) {  // not started: withdrawn (the thread may not have been scheduled yet)
    task_ = nullptr;
    busy_ = false;
    return;
  }
  cv_.wait(lock, [this] { return !busy_; });
}

void Worker::Loop() {
  std::unique_lock lock(mu_);
  running_ = true;
  cv_.notify_all();
  for (;;) {
    cv_.wait(lock, [this] { return stop_ || (busy_ && task_); });
    if (stop_) return;
    auto task = std::move(task_);
    task_ = nullptr;
    lock.unlock();
    task();
    lock.lock();
    busy_ = false;
    cv_.notify_all();
  }
}

}  // namespace medstream::enclave
