// The lake's differential-privacy mechanisms (enclave/lake/dp.h), with a seeded random source.
#include "enclave/lake/dp.h"

#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <random>
#include <vector>

namespace medstream::lake::dp {
namespace {

RandomSource Seeded(uint64_t seed) {
  auto gen = std::make_shared<std::mt19937_64>(seed);
  return [gen] { return (*gen)(); };
}

// P(Y = y) for discrete Laplace of scale b: (1 - q) / (1 + q) q^|y|, q = e^{-1/b}.
double Pmf(int64_t y, double b) {
  const double q = std::exp(-1 / b);
  return (1 - q) / (1 + q) * std::pow(q, static_cast<double>(std::llabs(y)));
}

// Chi-square of samples against the stated distribution: bins -B..B and the two tails.
double ChiSquare(const std::vector<int64_t>& xs, double b, int64_t bins, int* dof) {
  std::map<int64_t, double> seen;
  for (int64_t x : xs) seen[std::clamp(x, -bins - 1, bins + 1)] += 1;
  double chi = 0, inner = 0;
  const double n = static_cast<double>(xs.size());
  for (int64_t y = -bins; y <= bins; ++y) {
    const double want = n * Pmf(y, b);
    inner += Pmf(y, b);
    chi += (seen[y] - want) * (seen[y] - want) / want;
  }
  const double tail = n * (1 - inner) / 2;
  for (int64_t y : {-bins - 1, bins + 1}) chi += (seen[y] - tail) * (seen[y] - tail) / tail;
  *dof = static_cast<int>(2 * bins + 2);
  return chi;
}

TEST(DiscreteLaplace, MatchesTheStatedDistribution) {
  for (const auto& [num, den] : std::vector<std::pair<uint64_t, uint64_t>>{
           {1, 1}, {3, 1}, {5, 2}, {kScaleDen * 2, kScaleDen}}) {
    const RandomSource rng = Seeded(num * 1000 + den);
    std::vector<int64_t> xs(200000);
    for (auto& x : xs) x = DiscreteLaplace(num, den, rng);
    const double b = static_cast<double>(num) / static_cast<double>(den);
    int dof = 0;
    const double chi = ChiSquare(xs, b, static_cast<int64_t>(std::ceil(4 * b)), &dof);
    // The 99.9 % point of chi-square for these degrees of freedom is below 3.2 * dof + 12.
    EXPECT_LT(chi, 3.2 * dof + 12) << "scale " << b << ", " << dof << " degrees of freedom";
    double mean = 0;
    for (int64_t x : xs) mean += static_cast<double>(x);
    EXPECT_NEAR(mean / static_cast<double>(xs.size()), 0, 0.05 * b + 0.02) << b;
  }
}

// Regression: at the largest scale (a numerator of 2^62) the sampler's s * v passed 2^64 for
// v >= 4 and wrapped, so the tail beyond four times the scale (P = e^-4, 1.8 %) vanished. And a
// scale a double cannot convert (1e300, NaN) was undefined behaviour; it is clamped now.
TEST(DiscreteLaplace, TheLargestScaleKeepsItsTail) {
  EXPECT_EQ(ScaleNumerator(1e300), ScaleNumerator(kMaxScale));
  EXPECT_EQ(ScaleNumerator(std::nan("")), ScaleNumerator(kMaxScale));
  EXPECT_EQ(ScaleNumerator(-1), 1u);
  const uint64_t num = ScaleNumerator(kMaxScale);
  EXPECT_EQ(num, uint64_t{1} << 62);
  const RandomSource rng = Seeded(17);
  const int n = 8000;
  int beyond = 0;
  for (int i = 0; i < n; ++i) {
    const double x = static_cast<double>(DiscreteLaplace(num, kScaleDen, rng));
    beyond += std::fabs(x) >= 4 * kMaxScale;
  }
  EXPECT_NEAR(beyond / static_cast<double>(n), std::exp(-4.0), 0.006);
}

// Regression: with bounds near the largest double, hi - lo overflowed to inf, a value at the upper
// bound fell in bin (inf / inf = NaN) converted to int (undefined; on x86 INT_MIN, a write far
// outside the histogram). Bounds are any finite pair (schema.cc), so the whole range must work.
TEST(NoisyPercentile, BoundsSpanningEveryDoubleStayInsideTheHistogram) {
  const double lo = -1.7e308, hi = 1.7e308;
  std::vector<double> values(200, hi);
  values.insert(values.end(), 200, lo);
  const RandomSource rng = Seeded(3);
  const double top = NoisyPercentile(values, lo, hi, 99, 1, rng);
  const double bottom = NoisyPercentile(values, lo, hi, 1, 1, rng);
  ASSERT_TRUE(std::isfinite(top) && std::isfinite(bottom)) << top << " " << bottom;
  EXPECT_GT(top, hi * 0.98);  // the top bin: within 1/256 of the range below hi
  EXPECT_LT(bottom, lo * 0.98);
}

// Noise must not be a no-op: a wrong sampler (always 0, or one-sided) fails here.
TEST(DiscreteLaplace, IsSymmetricAndSpread) {
  const RandomSource rng = Seeded(7);
  int positive = 0, negative = 0, zero = 0;
  for (int i = 0; i < 20000; ++i) {
    const int64_t x = DiscreteLaplace(4, 1, rng);
    (x > 0 ? positive : x < 0 ? negative : zero) += 1;
  }
  EXPECT_NEAR(positive, negative, 600);
  EXPECT_NEAR(zero / 20000.0, Pmf(0, 4), 0.01);
}

TEST(NoisySum, ClampsToTheBoundsSoOneRowMovesItByAtMostTheSensitivity) {
  const RandomSource rng = Seeded(3);
  // One outlandish value counts as the bound: with eps at its largest the answer is near 100.
  double total = 0;
  for (int i = 0; i < 200; ++i) {
    const std::vector<double> v = {1e9, std::nan("")};
    total += NoisySum(v, 0, 100, 10, rng);
  }
  EXPECT_NEAR(total / 200, 100, 5);
  // Negative bounds: the sensitivity is the larger magnitude.
  total = 0;
  for (int i = 0; i < 200; ++i) {
    const std::vector<double> v = {-1e9};
    total += NoisySum(v, -50, 10, 10, rng);
  }
  EXPECT_NEAR(total / 200, -50, 5);
}

TEST(NoisyCount, ErrorBoundsHoldAsStated) {
  const RandomSource rng = Seeded(11);
  const double eps = 0.5;
  const double w = Error95(1 / eps);
  int outside = 0;
  for (int i = 0; i < 20000; ++i) outside += std::fabs(NoisyCount(1000, eps, rng) - 1000) > w;
  EXPECT_LT(outside / 20000.0, 0.05);
  EXPECT_GT(outside / 20000.0, 0.01);  // and not a wildly loose bound
  // A group of one row passes the release threshold with probability at most delta.
  const double delta = 1e-3;
  const double tau = ReleaseThreshold(1 / eps, delta);
  int released = 0;
  for (int i = 0; i < 100000; ++i) released += NoisyCount(1, eps, rng) >= tau;
  EXPECT_LT(released / 100000.0, 2 * delta);
}

TEST(NoisyPercentile, IsNearTheTruthForALargeGroupAndClampsOutliers) {
  const RandomSource rng = Seeded(5);
  std::vector<double> v;
  for (int i = 0; i < 10000; ++i) v.push_back(100 + (i % 100));  // uniform over 100..199
  v.push_back(1e12);                                             // clamped to the bound
  EXPECT_NEAR(NoisyPercentile(v, 0, 256, 50, 1, rng), 150, 2);
  EXPECT_NEAR(NoisyPercentile(v, 0, 256, 90, 1, rng), 190, 2);
  // An empty group: noise alone, maybe nothing (NaN), never outside the bounds.
  for (int i = 0; i < 100; ++i) {
    const double x = NoisyPercentile({}, 0, 256, 50, 1, rng);
    EXPECT_TRUE(std::isnan(x) || (x >= 0 && x <= 256)) << x;
  }
}

}  // namespace
}  // namespace medstream::lake::dp
