#include "owner/gateway/open_batch.h"

#include <algorithm>
#include <cstddef>

namespace medstream::gateway {

OpenBatch::Merged OpenBatch::Merge(std::span<const hrv::Beat> beats) {
  Merged m;
  const size_t before = beats_.size();
  bool ordered = true;
  for (const hrv::Beat& b : beats) {
    // Delivered again after it was sealed (QoS 1 is at least once): drop it.
    if (b.t_s <= sealed_until_) {
      ++m.stale;
      continue;
    }
    ordered = ordered && (beats_.empty() || b.t_s > beats_.back().t_s);
    beats_.push_back(b);
  }
  if (!ordered) {
    // A message sent again after a reconnection can overtake newer ones or arrive twice: keep the
    // open batch in time order, each beat once.
    std::stable_sort(beats_.begin(), beats_.end(),
                     [](const hrv::Beat& x, const hrv::Beat& y) { return x.t_s < y.t_s; });
    beats_.erase(std::unique(beats_.begin(), beats_.end(),
                             [](const hrv::Beat& x, const hrv::Beat& y) { return x.t_s == y.t_s; }),
                 beats_.end());
  }
  m.added = beats_.size() - before;
  return m;
}

void OpenBatch::SealedFirst(size_t n) {
  n = std::min(n, beats_.size());
  if (n == 0) return;
  sealed_until_ = beats_[n - 1].t_s;
  beats_.erase(beats_.begin(), beats_.begin() + static_cast<std::ptrdiff_t>(n));
}

}  // namespace medstream::gateway
