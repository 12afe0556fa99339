// lake/dp: the differential-privacy mechanisms of the lake's `dp` datasets.
//
// Noise is discrete Laplace (the two-sided geometric distribution), sampled exactly with integer
// arithmetic from uniform random words (Canonne, Kamath, Steinke: "The Discrete Gaussian for
// Differential Privacy", 2020, Algorithm 2). No floating-point sampling is involved, so the low
// bits of an answer leak nothing (Mironov 2012 showed how naive `log(uniform)` Laplace does).
//
//   count   a noisy count: exact count + DL(scale 1/eps)                  (sensitivity 1)
//   sum     values clamped to [lo, hi] and rounded to a grid of step g = max(|lo|,|hi|) / 2^10;
//           the sum in grid units + DL(scale 2^10 / eps), times g         (sensitivity
//           max|lo|,|hi|)
// Scales are rational (numerator / 2^20), rounded up: never less noise than stated.
//
// Randomness comes from the caller (the enclave passes OpenSSL's CSPRNG; tests a seeded one).
// Pure: no I/O; thread-safe as far as the random source is.
#pragma once

#include <cstdint>
#include <functional>
#include <span>

namespace medstream::lake::dp {

// Uniform 64-bit words.
using RandomSource = std::function<uint64_t()>;

// Exactly P(Y = y) proportional to exp(-|y| * den / num), for num, den >= 1.
int64_t DiscreteLaplace(uint64_t num, uint64_t den, const RandomSource& rng);

// The rational scale used for `scale`: num / kScaleDen with num = ceil(scale * kScaleDen).
inline constexpr uint64_t kScaleDen = uint64_t{1} << 20;
// The largest noise scale: its numerator is at most 2^62, so the sampler's arithmetic is exact.
// Callers refuse a query that would need more (a tiny epsilon over many aggregates): converting a
// larger double to an integer would be undefined behaviour, and less noise than asked a privacy
// leak.
inline constexpr double kMaxScale = 4398046511104.0;  // 2^42
// For 0 < scale <= kMaxScale; anything else is clamped into that range.
uint64_t ScaleNumerator(double scale);

// Grid steps in one sensitivity: a sum's values are rounded to max|lo|,|hi| / kSumGrid.
inline constexpr double kSumGrid = 1024;

// Noisy count with privacy parameter eps.
double NoisyCount(uint64_t count, double eps, const RandomSource& rng);
// Noisy sum of `values` (NaNs skipped) clamped to [lo, hi], with privacy parameter eps.
double NoisySum(std::span<const double> values, double lo, double hi, double eps,
                const RandomSource& rng);

// Noisy p-th percentile (0..100) of `values` (NaNs skipped) clamped to [lo, hi]: a histogram of
// kPercentileBins equal bins over [lo, hi], each count + DL(scale 1/eps) (one row moves one count:
// disjoint bins compose in parallel), then the percentile of the noisy histogram, interpolated
// within its bin. NaN when the noisy histogram is empty.
inline constexpr int kPercentileBins = 256;
double NoisyPercentile(std::span<const double> values, double lo, double hi, double p, double eps,
                       const RandomSource& rng);

// Half-width of the 95 % interval of DL noise of scale `scale`: P(|noise| > w) <= 5 %.
double Error95(double scale);
// The smallest noisy count at which a group is released, so that a group of one row shows up
// with probability at most delta: 1 + scale * ln(1 / (2 delta)) (scale of the count's noise).
double ReleaseThreshold(double count_scale, double delta);

}  // namespace medstream::lake::dp
