#include "algo/hrv/metrics.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>

namespace medstream::hrv {

namespace {

// Sum with four independent accumulators: the additions pipeline instead of waiting on one
// dependency chain (about 4x faster on the hot rolling-SDNN path), and the order is fixed, so the
// result is deterministic.
double SumOf(const double* x, size_t n) {
  double a0 = 0, a1 = 0, a2 = 0, a3 = 0;
  size_t i = 0;
  for (; i + 4 <= n; i += 4) {
    a0 += x[i];
    a1 += x[i + 1];
    a2 += x[i + 2];
    a3 += x[i + 3];
  }
  for (; i < n; ++i) a0 += x[i];
  return (a0 + a1) + (a2 + a3);
}

double SumSquaredDeviations(const double* x, size_t n, double mean) {
  double a0 = 0, a1 = 0, a2 = 0, a3 = 0;
  size_t i = 0;
  for (; i + 4 <= n; i += 4) {
    const double d0 = x[i] - mean, d1 = x[i + 1] - mean, d2 = x[i + 2] - mean, d3 = x[i + 3] - mean;
    a0 += d0 * d0;
    a1 += d1 * d1;
    a2 += d2 * d2;
    a3 += d3 * d3;
  }
  for (; i < n; ++i) a0 += (x[i] - mean) * (x[i] - mean);
  return (a0 + a1) + (a2 + a3);
}

double Median(std::span<const double> x, std::vector<double>* scratch) {
  scratch->assign(x.begin(), x.end());
  const size_t n = scratch->size();
  auto mid = scratch->begin() + static_cast<std::ptrdiff_t>(n / 2);
  std::nth_element(scratch->begin(), mid, scratch->end());
  if (n % 2 == 1) return *mid;
  const double upper = *mid;
  const double lower = *std::max_element(scratch->begin(), mid);
  return 0.5 * (lower + upper);
}

// Tallest bin of the histogram with bins floor(x / width).
double TallestBin(std::span<const double> x, double width, std::vector<double>* scratch) {
  int64_t lo = INT64_MAX, hi = INT64_MIN;
  for (double v : x) {
    const auto b = static_cast<int64_t>(std::floor(v / width));
    lo = std::min(lo, b);
    hi = std::max(hi, b);
  }
  if (hi - lo < 4096) {
    std::vector<uint32_t> counts(static_cast<size_t>(hi - lo + 1), 0);
    uint32_t best = 0;
    for (double v : x) {
      const auto b = static_cast<size_t>(static_cast<int64_t>(std::floor(v / width)) - lo);
      best = std::max(best, ++counts[b]);
    }
    return best;
  }
  // Absurd spreads (cleaning off, garbage input) fall back to sorting rather than a huge array.
  scratch->resize(x.size());
  for (size_t i = 0; i < x.size(); ++i) (*scratch)[i] = std::floor(x[i] / width);
  std::sort(scratch->begin(), scratch->end());
  size_t best = 0;
  for (size_t i = 0; i < scratch->size();) {
    size_t j = i;
    while (j < scratch->size() && (*scratch)[j] == (*scratch)[i]) ++j;
    best = std::max(best, j - i);
    i = j;
  }
  return static_cast<double>(best);
}

}  // namespace

double Sum(std::span<const double> x) {
  return SumOf(x.data(), x.size());
}

namespace {

MeanSd MeanSdGivenSum(std::span<const double> x, double sum) {
  MeanSd r;
  const size_t n = x.size();
  if (n == 0) return r;
  r.mean = sum / static_cast<double>(n);
  if (n >= 2) r.sd = std::sqrt(SumSquaredDeviations(x.data(), n, r.mean) / double(n - 1));
  return r;
}

}  // namespace

MeanSd ComputeMeanSd(std::span<const double> x) {
  return MeanSdGivenSum(x, Sum(x));
}

double SampleEntropy(std::span<const double> x, int m, double r, std::vector<double>* scratch) {
  const size_t n = x.size();
  if (m < 1 || n < static_cast<size_t>(m) + 2 || !(r > 0) || !std::isfinite(r)) return kNaN;
  const size_t templates = n - static_cast<size_t>(m);
  // scratch holds template start indices (exactly representable as doubles up to 2^53).
  scratch->resize(templates);
  std::iota(scratch->begin(), scratch->end(), 0.0);
  std::sort(scratch->begin(), scratch->end(), [&](double a, double b) {
    return x[static_cast<size_t>(a)] < x[static_cast<size_t>(b)];
  });
  uint64_t matches_m = 0, matches_m1 = 0;
  const double* v = x.data();
  for (size_t a = 0; a < templates; ++a) {
    const size_t i = static_cast<size_t>((*scratch)[a]);
    const double xi = v[i];
    for (size_t b = a + 1; b < templates; ++b) {
      const size_t j = static_cast<size_t>((*scratch)[b]);
      if (v[j] - xi > r) break;
      bool match = true;
      for (int k = 1; k < m && match; ++k) match = std::fabs(v[i + k] - v[j + k]) <= r;
      if (!match) continue;
      ++matches_m;
      if (std::fabs(v[i + m] - v[j + m]) <= r) ++matches_m1;
    }
  }
  if (matches_m == 0 || matches_m1 == 0) return kNaN;
  return -std::log(static_cast<double>(matches_m1) / static_cast<double>(matches_m));
}

double DfaAlpha(std::span<const double> x, int n_lo, int n_hi, std::vector<double>* scratch) {
  const size_t n = x.size();
  if (n_lo < 3 || n_hi < n_lo || n < 2 * static_cast<size_t>(n_hi)) return kNaN;
  const double mean = SumOf(x.data(), n) / static_cast<double>(n);
  scratch->resize(n);
  double* y = scratch->data();
  double acc = 0;
  for (size_t i = 0; i < n; ++i) y[i] = acc += x[i] - mean;
  // Least-squares line of log F(n) on log n, accumulated as we go.
  double sx = 0, sy = 0, sxx = 0, sxy = 0;
  int points = 0;
  for (int box = n_lo; box <= n_hi; ++box) {
    const size_t len = static_cast<size_t>(box);
    const size_t boxes = n / len;
    const double kbar = 0.5 * (box - 1);
    const double skk = box * (static_cast<double>(box) * box - 1) / 12.0;  // sum (k - kbar)^2
    double rss = 0;
    for (size_t b = 0; b < boxes; ++b) {
      const double* yb = y + b * len;
      const double ybar = SumOf(yb, len) / box;
      double sky = 0, syy = 0;
      for (size_t k = 0; k < len; ++k) {
        const double dy = yb[k] - ybar;
        sky += (static_cast<double>(k) - kbar) * dy;
        syy += dy * dy;
      }
      rss += std::max(0.0, syy - sky * sky / skk);
    }
    const double f = std::sqrt(rss / static_cast<double>(boxes * len));
    if (!(f > 0)) return kNaN;  // a perfectly linear profile has no fluctuation to scale
    const double lx = std::log(static_cast<double>(box));
    const double ly = std::log(f);
    sx += lx;
    sy += ly;
    sxx += lx * lx;
    sxy += lx * ly;
    ++points;
  }
  if (points < 2) return kNaN;
  const double denom = points * sxx - sx * sx;
  return (points * sxy - sx * sy) / denom;
}

void MetricsEngine::ComputeTimeDomain(std::span<const double> nn, Metrics* m) {
  const size_t n = nn.size();
  m->median_nn_ms = Median(nn, &scratch_);
  if (n >= 2) {
    const size_t nd = n - 1;
    double sum_d = 0, sum_d2 = 0;
    uint64_t over50 = 0, over20 = 0;
    for (size_t i = 0; i < nd; ++i) {
      const double d = nn[i + 1] - nn[i];
      sum_d += d;
      sum_d2 += d * d;
      const double ad = std::fabs(d);
      over50 += ad > 50;
      over20 += ad > 20;
    }
    m->rmssd_ms = std::sqrt(sum_d2 / static_cast<double>(nd));
    if (nd >= 2) {
      const double mean_d = sum_d / static_cast<double>(nd);
      double ss = 0;
      for (size_t i = 0; i < nd; ++i) {
        const double e = (nn[i + 1] - nn[i]) - mean_d;
        ss += e * e;
      }
      m->sdsd_ms = std::sqrt(ss / static_cast<double>(nd - 1));
    }
    m->nn50 = static_cast<double>(over50);
    m->pnn50_pct = 100.0 * static_cast<double>(over50) / static_cast<double>(nd);
    m->nn20 = static_cast<double>(over20);
    m->pnn20_pct = 100.0 * static_cast<double>(over20) / static_cast<double>(nd);
  }
  m->cvnn = m->sdnn_ms / m->mean_nn_ms;
  scratch_.resize(n);
  double hr_min = INFINITY, hr_max = -INFINITY;
  for (size_t i = 0; i < n; ++i) {
    const double hr = 60000.0 / nn[i];
    scratch_[i] = hr;
    hr_min = std::min(hr_min, hr);
    hr_max = std::max(hr_max, hr);
  }
  const MeanSd hr = ComputeMeanSd(scratch_);
  m->mean_hr_bpm = hr.mean;
  m->std_hr_bpm = hr.sd;
  m->min_hr_bpm = hr_min;
  m->max_hr_bpm = hr_max;
  m->hrv_triangular_index = static_cast<double>(n) / TallestBin(nn, 1000.0 / 128.0, &scratch_);
}

Metrics MetricsEngine::Compute(std::span<const double> t, std::span<const double> nn) {
  return Compute(t, nn, Sum(nn));
}

Metrics MetricsEngine::Compute(std::span<const double> t, std::span<const double> nn,
                               double sum_nn) {
  Metrics m;
  const size_t n = nn.size();
  m.n_beats = static_cast<double>(n);
  if (n == 0) return m;
  const MeanSd basic = MeanSdGivenSum(nn, sum_nn);
  m.mean_nn_ms = basic.mean;
  m.sdnn_ms = basic.sd;
  if (select_.time_domain || select_.nonlinear) ComputeTimeDomain(nn, &m);
  if (select_.spectral) spectral_.Compute(t, nn, &m);
  if (select_.nonlinear) {
    m.sd1_ms = std::sqrt(0.5 * m.sdsd_ms * m.sdsd_ms);
    m.sd2_ms = std::sqrt(2 * m.sdnn_ms * m.sdnn_ms - 0.5 * m.sdsd_ms * m.sdsd_ms);
    m.sd1_sd2 = m.sd1_ms / m.sd2_ms;
    m.dfa_alpha1 = DfaAlpha(nn, 4, 16, &scratch_);
    m.dfa_alpha2 = DfaAlpha(nn, 16, 64, &scratch_);
  }
  if (select_.sample_entropy) m.sampen = SampleEntropy(nn, 2, 0.2 * m.sdnn_ms, &scratch_);
  return m;
}

}  // namespace medstream::hrv
