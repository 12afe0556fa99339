// One background thread of the enclave, used to authenticate a batch's later segments while the
// main thread analyses the earlier ones. Created with the core, i.e. before the process backend's
// seccomp filter closes (which allows futex but not clone); the constructor returns once the
// thread runs. Thread-safety: Start and Wait from one thread.
#pragma once

#include <condition_variable>
#include <functional>
#include <mutex>
#include <thread>

namespace medstream::enclave {

class Worker {
 public:
  Worker();
  ~Worker();
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  // Offers `task` to the worker thread. Wait() returns once it has finished, or withdraws it if
  // the thread has not started it yet: a task must leave nothing undone when it never runs (its
  // caller claims the same work, as wire::Helper's users do), and Wait is always called.
  void Start(std::function<void()> task);
  void Wait();

 private:
  void Loop();
  std::mutex mu_;
  std::condition_variable cv_;
  std::function<void()> task_;
  bool busy_ = false;
  bool stop_ = false;
  bool running_ = false;  // the thread has started (see the constructor)
  std::thread thread_;
};

}  // namespace medstream::enclave
