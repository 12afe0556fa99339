// open_batch: one user's beats not yet sealed, the gateway's batch assembler. Messages arrive at
// least once and in any order (QoS 1, reconnections): the batch keeps its beats in time order,
// each once, and drops what was sealed already. Pure: no I/O, no clock (the caller stamps when the
// batch opened). Not thread-safe (the gateway holds its lock).
#pragma once

#include <chrono>
#include <limits>
#include <span>
#include <vector>

#include "algo/hrv/types.h"

namespace medstream::gateway {

class OpenBatch {
 public:
  struct Merged {
    size_t added = 0;  // new beats
    size_t stale = 0;  // at or before the last beat sealed: dropped
  };
  Merged Merge(std::span<const hrv::Beat> beats);
  // The batch was sealed: it empties and later beats must be newer than its last.
  void Sealed() { SealedFirst(beats_.size()); }
  // Its first `n` beats were sealed (a batch too large for one file is sealed in pieces): they
  // leave it, and later beats must be newer than the last of them.
  void SealedFirst(size_t n);
  // After a restart: what was sealed before (STATE/seq, or an adopted spool file).
  void SetSealedUntil(double t) { sealed_until_ = std::max(sealed_until_, t); }

  bool empty() const { return beats_.empty(); }
  size_t size() const { return beats_.size(); }
  const std::vector<hrv::Beat>& beats() const { return beats_; }
  double sealed_until() const { return sealed_until_; }
  // The newest beat seen: the open batch's last, else the last sealed.
  double newest() const { return beats_.empty() ? sealed_until_ : beats_.back().t_s; }
  std::chrono::steady_clock::time_point opened;  // when the first open beat arrived

 private:
  std::vector<hrv::Beat> beats_;  // in time order, each beat once
  double sealed_until_ = -std::numeric_limits<double>::infinity();
};

}  // namespace medstream::gateway
