#include "enclave/lake/dp.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

namespace medstream::lake::dp {

namespace {

// Uniform integer in [0, n), n >= 1, without modulo bias (rejection).
uint64_t Uniform(uint64_t n, const RandomSource& rng) {
  if (n <= 1) return 0;
  const uint64_t limit =
      std::numeric_limits<uint64_t>::max() - std::numeric_limits<uint64_t>::max() % n;
  for (;;) {
    const uint64_t x = rng();
    if (x < limit) return x % n;
  }
}

bool Bernoulli(uint64_t num, uint64_t den, const RandomSource& rng) {
  return Uniform(den, rng) < num;
}

// Bernoulli(exp(-num/den)) for 0 <= num <= den (CKS20 Algorithm 1, first part).
bool BernoulliExpSmall(uint64_t num, uint64_t den, const RandomSource& rng) {
  uint64_t k = 1;
  for (;;) {
    // Bernoulli(num / (den * k)); den * k cannot overflow for the scales used here (k stays small:
    // the loop ends with probability >= 1 - 1/k each time).
    if (k > (uint64_t{1} << 40) / den || !Bernoulli(num, den * k, rng)) break;
    ++k;
  }
  return k % 2 == 1;
}

// Bernoulli(exp(-num/den)) for any num >= 0.
bool BernoulliExp(uint64_t num, uint64_t den, const RandomSource& rng) {
  while (num > den) {
    if (!BernoulliExpSmall(1, 1, rng)) return false;
    num -= den;
  }
  return BernoulliExpSmall(num, den, rng);
}

}  // namespace

int64_t DiscreteLaplace(uint64_t num, uint64_t den, const RandomSource& rng) {
  // Scale t = num / den (CKS20 Algorithm 2 with s = num, t = den swapped to our naming).
  const uint64_t s = num < 1 ? 1 : num, t = den < 1 ? 1 : den;
  for (;;) {
    const uint64_t u = Uniform(s, rng);
    if (!BernoulliExp(u, s, rng)) continue;
    uint64_t v = 0;
    while (BernoulliExp(1, 1, rng)) ++v;
    // In 128 bits: s * v passes 2^64 for a large scale (s up to 2^62, kMaxScale) once v >= 4.
    const unsigned __int128 x = u + static_cast<unsigned __int128>(s) * v;
    const unsigned __int128 y128 = x / t;
    const auto y = static_cast<int64_t>(
        std::min<unsigned __int128>(y128, std::numeric_limits<int64_t>::max()));
    const bool negative = Bernoulli(1, 2, rng);
    if (negative && y == 0) continue;
    return negative ? -y : y;
  }
}

uint64_t ScaleNumerator(double scale) {
  // Callers keep scale within (0, kMaxScale]; the clamp only keeps the conversion defined.
  const double clamped = std::isnan(scale) ? kMaxScale : std::clamp(scale, 0.0, kMaxScale);
  return std::max<uint64_t>(
      1, static_cast<uint64_t>(std::ceil(clamped * static_cast<double>(kScaleDen))));
}

double NoisyCount(uint64_t count, double eps, const RandomSource& rng) {
  const int64_t noise = DiscreteLaplace(ScaleNumerator(1 / eps), kScaleDen, rng);
  return static_cast<double>(count) + static_cast<double>(noise);
}

double NoisySum(std::span<const double> values, double lo, double hi, double eps,
                const RandomSource& rng) {
  const double sensitivity = std::max(std::fabs(lo), std::fabs(hi));
  if (sensitivity == 0) return static_cast<double>(DiscreteLaplace(1, 1, rng)) * 0;
  const double g = sensitivity / kSumGrid;
  // Each value clamped and rounded to the grid contributes at most kSumGrid units.
  int64_t units = 0;
  for (double v : values) {
    if (std::isnan(v)) continue;
    units += static_cast<int64_t>(std::llround(std::clamp(v, lo, hi) / g));
  }
  const int64_t noise = DiscreteLaplace(ScaleNumerator(kSumGrid / eps), kScaleDen, rng);
  return static_cast<double>(units + noise) * g;
}

double NoisyPercentile(std::span<const double> values, double lo, double hi, double p, double eps,
                       const RandomSource& rng) {
  std::vector<double> bins(kPercentileBins, 0);
  // In halves: hi - lo passes the largest double for bounds near +-1.8e308, and (x - lo) / width
  // was then inf / inf, whose NaN converted to int is undefined (on x86 INT_MIN: a write far
  // outside `bins`). Halved, every difference is finite and a bin's position within 0..256.
  const double half_width = (hi / 2 - lo / 2) / kPercentileBins;
  for (double v : values) {
    if (std::isnan(v)) continue;
    const double x = std::clamp(v, lo, hi);
    const double pos = half_width > 0 ? (x / 2 - lo / 2) / half_width : 0;
    // Clamped before the conversion: a subnormal width could round the quotient past 256.
    const int b = static_cast<int>(std::clamp(pos, 0.0, kPercentileBins - 1.0));
    bins[b] += 1;
  }
  double total = 0;
  for (double& c : bins) {
    c = std::max(0.0,
                 c + static_cast<double>(DiscreteLaplace(ScaleNumerator(1 / eps), kScaleDen, rng)));
    total += c;
  }
  if (total <= 0) return std::numeric_limits<double>::quiet_NaN();
  const double target = std::clamp(p, 0.0, 100.0) / 100 * total;
  double below = 0;
  for (int b = 0; b < kPercentileBins; ++b) {
    if (bins[b] > 0 && below + bins[b] >= target) {
      const double half = half_width * (b + (target - below) / bins[b]);
      return lo + half + half;
    }
    below += bins[b];
  }
  return hi;
}

double Error95(double scale) {
  // P(|X| >= w) for DL of scale b is 2 e^{-w/b} / (1 + e^{-1/b}) <= 2 e^{-w/b}: 5 % at b ln 40.
  return scale * std::log(40.0);
}

double ReleaseThreshold(double count_scale, double delta) {
  return 1 + count_scale * std::log(1 / (2 * delta));
}

}  // namespace medstream::lake::dp
