// How a caller lends threads to the HRV analysis. The algorithms create no thread of their own:
// the enclave's threads must all exist before its sandbox closes, and a pure algorithm does no
// system work. A RollingAnalyzer given workers computes the windows a chunk of beats completes in
// parallel, each window with one worker's own MetricsEngine; every window is computed from its own
// NN intervals alone, so the output is bit-identical to the serial one (tested).
#pragma once

#include <cstddef>
#include <functional>
#include <span>

namespace medstream::hrv {

class MetricsEngine;

class Parallel {
 public:
  virtual ~Parallel() = default;
  // Workers Run uses, the calling thread included (>= 1).
  virtual size_t workers() const = 0;
  // Calls fn(worker, i) exactly once for every i in [0, n), with worker < workers() and each worker
  // index on one thread at a time; returns when every call has returned. One Run at a time.
  virtual void Run(size_t n, const std::function<void(size_t worker, size_t i)>& fn) = 0;
};

// The engines of one job's analysis: engines[w] is used by worker w alone. parallel null (or one
// worker): serial on engines[0].
struct WindowWorkers {
  Parallel* parallel = nullptr;
  std::span<MetricsEngine* const> engines;
};

}  // namespace medstream::hrv
