// Metric computation over the NN intervals of one record or one window.
#pragma once

#include <span>
#include <vector>

#include "algo/hrv/spectral.h"
#include "algo/hrv/types.h"

namespace medstream::hrv {

// Mean and sample standard deviation (N-1) by the two-pass algorithm, which stays accurate where
// the one-pass sum-of-squares formula cancels catastrophically (24 h records, epoch-sized values).
struct MeanSd {
  double mean = kNaN;
  double sd = kNaN;
};
MeanSd ComputeMeanSd(std::span<const double> x);
// The sum ComputeMeanSd and MetricsEngine use (fixed order, four accumulators), so a caller that
// needs the sum anyway (window coverage) can pass it on instead of summing twice.
double Sum(std::span<const double> x);

// Sample entropy of x with template length m and tolerance r (see Metrics::sampen). Short series
// (a window) sort templates on their first value and compare only pairs within r there; from
// kSampleEntropyTreeFrom templates on (m = 2, a whole record) the pairs are counted, not
// enumerated: with Fenwick trees over the ranks of the distinct values, O(N log^2 D), when there
// are at most 1024 of them (RR sampled at 128 Hz has a few hundred; 24 h in ~70 ms), else with
// Fenwick trees of sorted values in O(N log^2 N). Either way the counts equal those of the
// quadratic definition exactly (hrv_test checks both against it).
inline constexpr size_t kSampleEntropyTreeFrom = 4096;
double SampleEntropy(std::span<const double> x, int m, double r, std::vector<double>* scratch);

// DFA scaling exponent over box sizes [n_lo, n_hi] (see Metrics::dfa_alpha1); NaN when x has fewer
// than 2 * n_hi values.
double DfaAlpha(std::span<const double> x, int n_lo, int n_hi, std::vector<double>* scratch);

// Computes the selected metrics with reusable buffers. One per thread; cheap to keep per worker
// and share among any number of streams.
class MetricsEngine {
 public:
  MetricsEngine(const SpectralOptions& spectral, const MetricSelection& select)
      : select_(select), spectral_(spectral) {}

  // t: beat times (s, strictly increasing), nn: the NN intervals ending at them (ms).
  Metrics Compute(std::span<const double> t, std::span<const double> nn);
  // The same, given Sum(nn).
  Metrics Compute(std::span<const double> t, std::span<const double> nn, double sum_nn);

  const MetricSelection& selection() const { return select_; }

 private:
  void ComputeTimeDomain(std::span<const double> nn, Metrics* m);

  MetricSelection select_;
  SpectralEstimator spectral_;
  std::vector<double> scratch_;
};

}  // namespace medstream::hrv
