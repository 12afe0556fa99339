#include "algo/ecg/score.h"

#include <cstdlib>

namespace medstream::ecg {

double Score::Sensitivity() const {
  return tp + fn ? static_cast<double>(tp) / static_cast<double>(tp + fn) : 1;
}
double Score::PositivePredictivity() const {
  return tp + fp ? static_cast<double>(tp) / static_cast<double>(tp + fp) : 1;
}
Score& Score::operator+=(const Score& o) {
  tp += o.tp;
  fn += o.fn;
  fp += o.fp;
  return *this;
}

Score Compare(std::span<const int64_t> ref, std::span<const int64_t> det, int64_t window) {
  Score s;
  size_t j = 0;
  std::vector<bool> used(det.size(), false);
  for (int64_t r : ref) {
    while (j < det.size() && det[j] < r - window) ++j;
    // The nearest unused detection within the window.
    size_t best = det.size();
    for (size_t k = j; k < det.size() && det[k] <= r + window; ++k) {
      if (used[k]) continue;
      if (best == det.size() || std::llabs(det[k] - r) < std::llabs(det[best] - r)) best = k;
    }
    if (best == det.size()) {
      ++s.fn;
    } else {
      used[best] = true;
      ++s.tp;
    }
  }
  for (bool u : used) s.fp += !u;
  return s;
}

}  // namespace medstream::ecg
