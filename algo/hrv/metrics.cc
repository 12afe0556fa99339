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

namespace {

// Sample entropy's pair counts for m = 2 without enumerating the pairs (a 24 h record has ~10^9
// matching ones): templates are points (a, b, c) = (x[i], x[i+1], x[i+2]); swept in order of a,
// the earlier points within r in a form a sliding window; a Fenwick tree over the ranks of b counts
// the window's points within r in b (matches of length 2), and a Fenwick tree of Fenwick trees
// over (b rank, c) counts those also within r in c (length 3). O(N log^2 N) time, O(N log N)
// memory. Every "within r" is decided by the definition's own test, |u - v| <= r in floating
// point: for a fixed u, u - v is monotone in v, so the v that pass form one run of the sorted
// values, found by binary search with that very test; the counts equal the quadratic
// definition's exactly.
class PairCounter {
 public:
  PairCounter(const double* x, size_t templates, double r) : x_(x), n_(templates), r_(r) {}

  void Count(uint64_t* matches_m, uint64_t* matches_m1) {
    // Ranks in b (ties broken by index, so every point has its own rank).
    by_b_.resize(n_);
    std::iota(by_b_.begin(), by_b_.end(), size_t{0});
    std::sort(by_b_.begin(), by_b_.end(),
              [&](size_t p, size_t q) { return B(p) < B(q) || (B(p) == B(q) && p < q); });
    rank_b_.resize(n_);
    sorted_b_.resize(n_);
    for (size_t k = 0; k < n_; ++k) {
      rank_b_[by_b_[k]] = k;
      sorted_b_[k] = B(by_b_[k]);
    }
    // Outer Fenwick node k (1-based) covers ranks (k - lowbit(k), k]; its points sorted by c.
    node_start_.assign(n_ + 2, 0);
    for (size_t k = 1; k <= n_; ++k) node_start_[k + 1] = node_start_[k] + (k & (~k + 1));
    node_c_.resize(node_start_[n_ + 1]);
    node_fen_.assign(node_start_[n_ + 1], 0);
    for (size_t k = 1; k <= n_; ++k) {
      const size_t len = k & (~k + 1);
      double* c = node_c_.data() + node_start_[k];
      for (size_t t = 0; t < len; ++t) c[t] = C(by_b_[k - len + t]);
      std::sort(c, c + len);
    }
    fen_b_.assign(n_ + 1, 0);

    std::vector<size_t> by_a(n_);
    std::iota(by_a.begin(), by_a.end(), size_t{0});
    std::sort(by_a.begin(), by_a.end(),
              [&](size_t p, size_t q) { return A(p) < A(q) || (A(p) == A(q) && p < q); });
    uint64_t m2 = 0, m3 = 0;
    size_t tail = 0;  // by_a[tail..k) is the window: earlier in a, within r of the current point
    for (size_t k = 0; k < n_; ++k) {
      const size_t i = by_a[k];
      while (!(A(i) - A(by_a[tail]) <= r_)) Update(by_a[tail++], -1);
      // The ranks of b within r of B(i): one run of sorted_b_.
      const double bi = B(i);
      const size_t lo =
          static_cast<size_t>(std::partition_point(sorted_b_.begin(), sorted_b_.end(),
                                                   [&](double v) { return v - bi < -r_; }) -
                              sorted_b_.begin());
      const size_t hi = static_cast<size_t>(
          std::partition_point(sorted_b_.begin() + static_cast<ptrdiff_t>(lo), sorted_b_.end(),
                               [&](double v) { return v - bi <= r_; }) -
          sorted_b_.begin());
      if (hi > lo) {
        m2 += PrefixB(hi) - PrefixB(lo);
        m3 += PrefixBC(hi, C(i)) - PrefixBC(lo, C(i));
      }
      Update(i, +1);
    }
    *matches_m = m2;
    *matches_m1 = m3;
  }

 private:
  double A(size_t i) const { return x_[i]; }
  double B(size_t i) const { return x_[i + 1]; }
  double C(size_t i) const { return x_[i + 2]; }

  void Update(size_t i, int delta) {
    const size_t rb = rank_b_[i] + 1;
    const double c = C(i);
    for (size_t k = rb; k <= n_; k += k & (~k + 1)) {
      fen_b_[k] += delta;
      // Position of one point with value c in the node (which one does not matter: a count of c
      // values is what is kept).
      const size_t len = k & (~k + 1);
      const double* nc = node_c_.data() + node_start_[k];
      const size_t pos = static_cast<size_t>(std::lower_bound(nc, nc + len, c) - nc) + 1;
      int64_t* f = node_fen_.data() + node_start_[k] - 1;  // 1-based within the node
      for (size_t p = pos; p <= len; p += p & (~p + 1)) f[p] += delta;
    }
  }
  // Window points with b rank < `ranks`.
  uint64_t PrefixB(size_t ranks) const {
    int64_t s = 0;
    for (size_t k = ranks; k > 0; k -= k & (~k + 1)) s += fen_b_[k];
    return static_cast<uint64_t>(s);
  }
  // Window points with b rank < `ranks` and |c - ci| <= r.
  uint64_t PrefixBC(size_t ranks, double ci) const {
    int64_t s = 0;
    for (size_t k = ranks; k > 0; k -= k & (~k + 1)) {
      const size_t len = k & (~k + 1);
      const double* nc = node_c_.data() + node_start_[k];
      const size_t lo = static_cast<size_t>(
          std::partition_point(nc, nc + len, [&](double v) { return v - ci < -r_; }) - nc);
      const size_t hi = static_cast<size_t>(
          std::partition_point(nc + lo, nc + len, [&](double v) { return v - ci <= r_; }) - nc);
      const int64_t* f = node_fen_.data() + node_start_[k] - 1;
      auto prefix = [&](size_t p) {
        int64_t t = 0;
        for (; p > 0; p -= p & (~p + 1)) t += f[p];
        return t;
      };
      s += prefix(hi) - prefix(lo);
    }
    return static_cast<uint64_t>(s);
  }

  const double* x_;
  size_t n_;
  double r_;
  std::vector<size_t> by_b_, rank_b_, node_start_;
  std::vector<double> sorted_b_, node_c_;
  std::vector<int64_t> fen_b_, node_fen_;
};

// The same counts when x takes few distinct values, as RR does (a whole record sampled at 128 Hz
// has a few hundred): each value is replaced by its rank u among the D distinct values, and the
// values within r of vals[u] are the run of ranks [lo[u], hi[u]), found once per rank with the
// definition's own test. The sweep in order of a then keeps the window in a Fenwick tree over the
// b ranks and a two-dimensional one over (b, c) ranks: D x D counters, no binary search per step,
// O(N log^2 D) time. Returns false (and counts nothing) when x has a non-finite value or more than
// kGridMaxDistinct distinct values, where the general counter above is used instead.
constexpr size_t kGridMaxDistinct = 1024;

bool CountPairsOnGrid(std::span<const double> x, size_t templates, double r, uint64_t* matches_m,
                      uint64_t* matches_m1) {
  std::vector<double> vals(x.begin(), x.end());
  for (double v : vals) {
    if (!std::isfinite(v)) return false;
  }
  std::sort(vals.begin(), vals.end());
  vals.erase(std::unique(vals.begin(), vals.end()), vals.end());
  const size_t d = vals.size();
  if (d > kGridMaxDistinct) return false;
  std::vector<uint32_t> code(x.size());
  for (size_t i = 0; i < x.size(); ++i) {
    code[i] =
        static_cast<uint32_t>(std::lower_bound(vals.begin(), vals.end(), x[i]) - vals.begin());
  }
  // lo/hi: first rank within r of rank u, and one past the last. |vals[u] - vals[v]| is monotone
  // in v on each side of u, so two moving pointers find every run.
  std::vector<uint32_t> lo(d), hi(d);
  size_t l = 0, h = 0;
  for (size_t u = 0; u < d; ++u) {
    while (!(std::fabs(vals[u] - vals[l]) <= r)) ++l;
    if (h < u) h = u;
    while (h < d && std::fabs(vals[u] - vals[h]) <= r) ++h;
    lo[u] = static_cast<uint32_t>(l);
    hi[u] = static_cast<uint32_t>(h);
  }
  // Templates in order of their a rank (counting sort).
  std::vector<size_t> start(d + 1, 0), order(templates);
  for (size_t i = 0; i < templates; ++i) ++start[code[i] + 1];
  for (size_t u = 0; u < d; ++u) start[u + 1] += start[u];
  for (size_t i = 0; i < templates; ++i) order[start[code[i]]++] = i;

  std::vector<int64_t> fen_b(d + 1, 0), fen_bc((d + 1) * (d + 1), 0);
  auto update = [&](size_t i, int64_t delta) {
    const size_t b = code[i + 1] + 1, c = code[i + 2] + 1;
    for (size_t p = b; p <= d; p += p & (~p + 1)) {
      fen_b[p] += delta;
      int64_t* row = fen_bc.data() + p * (d + 1);
      for (size_t q = c; q <= d; q += q & (~q + 1)) row[q] += delta;
    }
  };
  auto prefix_b = [&](size_t b) {
    int64_t s = 0;
    for (size_t p = b; p > 0; p -= p & (~p + 1)) s += fen_b[p];
    return s;
  };
  auto prefix_bc = [&](size_t b, size_t c) {
    int64_t s = 0;
    for (size_t p = b; p > 0; p -= p & (~p + 1)) {
      const int64_t* row = fen_bc.data() + p * (d + 1);
      for (size_t q = c; q > 0; q -= q & (~q + 1)) s += row[q];
    }
    return s;
  };
  int64_t m2 = 0, m3 = 0;
  size_t tail = 0;
  for (size_t k = 0; k < templates; ++k) {
    const size_t i = order[k];
    while (code[order[tail]] < lo[code[i]]) update(order[tail++], -1);
    const size_t bl = lo[code[i + 1]], bh = hi[code[i + 1]];
    const size_t cl = lo[code[i + 2]], ch = hi[code[i + 2]];
    m2 += prefix_b(bh) - prefix_b(bl);
    m3 += prefix_bc(bh, ch) - prefix_bc(bl, ch) - prefix_bc(bh, cl) + prefix_bc(bl, cl);
    update(i, +1);
  }
  *matches_m = static_cast<uint64_t>(m2);
  *matches_m1 = static_cast<uint64_t>(m3);
  return true;
}

}  // namespace

double SampleEntropy(std::span<const double> x, int m, double r, std::vector<double>* scratch) {
  const size_t n = x.size();
  if (m < 1 || n < static_cast<size_t>(m) + 2 || !(r > 0) || !std::isfinite(r)) return kNaN;
  const size_t templates = n - static_cast<size_t>(m);
  uint64_t matches_m = 0, matches_m1 = 0;
  if (m == 2 && templates >= kSampleEntropyTreeFrom) {
    if (!CountPairsOnGrid(x, templates, r, &matches_m, &matches_m1)) {
      PairCounter(x.data(), templates, r).Count(&matches_m, &matches_m1);
    }
    if (matches_m == 0 || matches_m1 == 0) return kNaN;
    return -std::log(static_cast<double>(matches_m1) / static_cast<double>(matches_m));
  }
  // scratch holds template start indices (exactly representable as doubles up to 2^53).
  scratch->resize(templates);
  std::iota(scratch->begin(), scratch->end(), 0.0);
  std::sort(scratch->begin(), scratch->end(), [&](double a, double b) {
    return x[static_cast<size_t>(a)] < x[static_cast<size_t>(b)];
  });
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
