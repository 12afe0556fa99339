#include "algo/hrv/spectral.h"

#include <fftw3.h>

#include <algorithm>
#include <cassert>
#include <cmath>
#include <mutex>
#include <numbers>

namespace medstream::hrv {

namespace {

// FFTW's planner is not thread-safe (only fftw_execute is), so plans are created under a lock.
std::mutex& PlannerMutex() {
  static std::mutex mu;
  return mu;
}

}  // namespace

void InterpolateNotAKnot(std::span<const double> x, std::span<const double> y,
                         std::span<const double> xq, std::span<double> out,
                         std::vector<double>* scratch) {
  const size_t n = x.size();
  assert(n >= 2 && y.size() == n && out.size() == xq.size());
  if (n == 2) {
    const double slope = (y[1] - y[0]) / (x[1] - x[0]);
    for (size_t j = 0; j < xq.size(); ++j) out[j] = y[0] + slope * (xq[j] - x[0]);
    return;
  }
  if (n == 3) {
    // The not-a-knot conditions coincide at the single interior knot: scipy fits the parabola.
    const double d01 = (y[1] - y[0]) / (x[1] - x[0]);
    const double d12 = (y[2] - y[1]) / (x[2] - x[1]);
    const double d012 = (d12 - d01) / (x[2] - x[0]);
    for (size_t j = 0; j < xq.size(); ++j) {
      out[j] = y[0] + (xq[j] - x[0]) * (d01 + (xq[j] - x[1]) * d012);
    }
    return;
  }
  // The spline's first derivatives s[i] solve a tridiagonal system (rows as in scipy's
  // CubicSpline); solved by the Thomas algorithm, stable here because the interior rows are
  // diagonally dominant and the not-a-knot end rows have pivots dx[1] and dx[n-3] > 0.
  scratch->resize(5 * n);
  double* dx = scratch->data();  // n-1 used
  double* slope = dx + n;        // n-1 used
  double* cp = slope + n;        // modified super-diagonal
  double* dp = cp + n;           // modified right-hand side, then the solution s
  double* s = dp + n;
  for (size_t i = 0; i + 1 < n; ++i) {
    dx[i] = x[i + 1] - x[i];
    slope[i] = (y[i + 1] - y[i]) / dx[i];
  }
  {
    const double d = x[2] - x[0];
    const double b0 = dx[1];
    const double c0 = d;
    const double r0 = ((dx[0] + 2 * d) * dx[1] * slope[0] + dx[0] * dx[0] * slope[1]) / d;
    cp[0] = c0 / b0;
    dp[0] = r0 / b0;
  }
  for (size_t i = 1; i + 1 < n; ++i) {
    const double a = dx[i];
    const double b = 2 * (dx[i - 1] + dx[i]);
    const double c = dx[i - 1];
    const double r = 3 * (dx[i] * slope[i - 1] + dx[i - 1] * slope[i]);
    const double m = b - a * cp[i - 1];
    cp[i] = c / m;
    dp[i] = (r - a * dp[i - 1]) / m;
  }
  {
    const size_t i = n - 1;
    const double d = x[n - 1] - x[n - 3];
    const double a = d;
    const double b = dx[n - 3];
    const double r =
        (dx[n - 2] * dx[n - 2] * slope[n - 3] + (2 * d + dx[n - 2]) * dx[n - 3] * slope[n - 2]) / d;
    const double m = b - a * cp[i - 1];
    dp[i] = (r - a * dp[i - 1]) / m;
  }
  s[n - 1] = dp[n - 1];
  for (size_t i = n - 1; i-- > 0;) s[i] = dp[i] - cp[i] * s[i + 1];

  size_t seg = 0;
  for (size_t j = 0; j < xq.size(); ++j) {
    const double q = xq[j];
    while (seg + 2 < n && q > x[seg + 1]) ++seg;
    const double h = dx[seg];
    const double t = (s[seg] + s[seg + 1] - 2 * slope[seg]) / h;
    const double c0 = t / h;
    const double c1 = (slope[seg] - s[seg]) / h - t;
    const double u = q - x[seg];
    out[j] = ((c0 * u + c1) * u + s[seg]) * u + y[seg];
  }
}

struct SpectralEstimator::Fftw {
  double* in = nullptr;
  fftw_complex* out = nullptr;
  fftw_plan plan = nullptr;
};

SpectralEstimator::SpectralEstimator(const SpectralOptions& options)
    : options_(options), fftw_(new Fftw) {
  const int n = options_.nperseg;
  fftw_->in = fftw_alloc_real(n);
  fftw_->out = fftw_alloc_complex(n / 2 + 1);
  {
    std::lock_guard lock(PlannerMutex());
    fftw_->plan = fftw_plan_dft_r2c_1d(n, fftw_->in, fftw_->out, FFTW_ESTIMATE);
  }
  // scipy.signal.get_window('hann', n) is the periodic ("DFT-even") Hann window.
  window_.resize(n);
  window_power_ = 0;
  for (int i = 0; i < n; ++i) {
    window_[i] = 0.5 - 0.5 * std::cos(2 * std::numbers::pi * i / n);
    window_power_ += window_[i] * window_[i];
  }
}

SpectralEstimator::~SpectralEstimator() {
  {
    std::lock_guard lock(PlannerMutex());
    fftw_destroy_plan(fftw_->plan);
  }
  fftw_free(fftw_->in);
  fftw_free(fftw_->out);
  delete fftw_;
}

bool SpectralEstimator::Welch(std::span<const double> x, Psd* psd) {
  const size_t len = static_cast<size_t>(options_.nperseg);
  const size_t step = len - static_cast<size_t>(options_.noverlap);
  if (x.size() < len || step == 0) return false;
  const size_t nseg = (x.size() - len) / step + 1;
  const size_t nbins = len / 2 + 1;
  psd->f.resize(nbins);
  psd->p.assign(nbins, 0.0);
  for (size_t seg = 0; seg < nseg; ++seg) {
    const double* xs = x.data() + seg * step;
    double mean = 0;
    for (size_t i = 0; i < len; ++i) mean += xs[i];
    mean /= static_cast<double>(len);
    for (size_t i = 0; i < len; ++i) fftw_->in[i] = (xs[i] - mean) * window_[i];
    fftw_execute(fftw_->plan);
    for (size_t k = 0; k < nbins; ++k) {
      psd->p[k] += fftw_->out[k][0] * fftw_->out[k][0] + fftw_->out[k][1] * fftw_->out[k][1];
    }
  }
  const double scale = 1.0 / (options_.fs_hz * window_power_ * static_cast<double>(nseg));
  for (size_t k = 0; k < nbins; ++k) {
    psd->f[k] = static_cast<double>(k) * options_.fs_hz / static_cast<double>(len);
    // One-sided: every bin but DC (and Nyquist, for even lengths) carries the negative frequency.
    const bool unpaired = k == 0 || (len % 2 == 0 && k == nbins - 1);
    psd->p[k] *= unpaired ? scale : 2 * scale;
  }
  return true;
}

bool SpectralEstimator::NnPsd(std::span<const double> t, std::span<const double> nn, Psd* psd) {
  if (t.size() < 2) return false;
  const double t0 = t.front();
  const double span_s = t.back() - t0;
  if (options_.method == SpectralMethod::kLombScargle) {
    if (t.size() < 4 || !(span_s > 0)) return false;
    double mean = 0;
    for (double v : nn) mean += v;
    mean /= static_cast<double>(nn.size());
    scratch_.resize(2 * nn.size());
    std::span<double> rel(scratch_.data(), nn.size());
    std::span<double> centered(scratch_.data() + nn.size(), nn.size());
    for (size_t i = 0; i < nn.size(); ++i) {
      rel[i] = t[i] - t0;
      centered[i] = nn[i] - mean;
    }
    LombScarglePsd(rel, centered, 1.0 / (options_.lomb_oversampling * span_s), options_.hf_hi, psd);
    return !psd->f.empty();
  }
  const size_t samples = static_cast<size_t>(std::floor(span_s * options_.fs_hz)) + 1;
  if (samples < static_cast<size_t>(options_.nperseg)) return false;
  grid_.resize(samples);
  resampled_.resize(samples);
  for (size_t j = 0; j < samples; ++j) grid_[j] = static_cast<double>(j) / options_.fs_hz;
  // Times relative to the first beat keep the spline well conditioned on epoch timestamps.
  relative_t_.resize(t.size());
  for (size_t i = 0; i < t.size(); ++i) relative_t_[i] = t[i] - t0;
  InterpolateNotAKnot(relative_t_, nn, grid_, resampled_, &scratch_);
  return Welch(resampled_, psd);
}

void SpectralEstimator::Compute(std::span<const double> t, std::span<const double> nn, Metrics* m) {
  if (!NnPsd(t, nn, &psd_)) return;
  const BandPower vlf = IntegrateBand(psd_, options_.vlf_lo, options_.vlf_hi);
  const BandPower lf = IntegrateBand(psd_, options_.lf_lo, options_.lf_hi);
  const BandPower hf = IntegrateBand(psd_, options_.hf_lo, options_.hf_hi);
  m->vlf_ms2 = vlf.power;
  m->lf_ms2 = lf.power;
  m->hf_ms2 = hf.power;
  m->total_power_ms2 = vlf.power + lf.power + hf.power;
  m->lf_hf = hf.power > 0 ? lf.power / hf.power : kNaN;
  const double lfhf = lf.power + hf.power;
  m->lf_nu = lfhf > 0 ? 100 * lf.power / lfhf : kNaN;
  m->hf_nu = lfhf > 0 ? 100 * hf.power / lfhf : kNaN;
  m->lf_peak_hz = lf.peak_hz;
  m->hf_peak_hz = hf.peak_hz;
}

void LombScarglePsd(std::span<const double> t, std::span<const double> y, double df, double f_max,
                    Psd* psd) {
  psd->f.clear();
  psd->p.clear();
  const size_t n = t.size();
  if (n == 0 || !(df > 0)) return;
  const double span_s = t.back() - t.front();
  const double scale = 2.0 * span_s / static_cast<double>(n);
  // O(n * frequencies); cos/sin of every t at each frequency are exact calls rather than a
  // recurrence so the error does not grow along the frequency axis.
  for (size_t k = 1;; ++k) {
    const double f = static_cast<double>(k) * df;
    if (f > f_max) break;
    const double w = 2 * std::numbers::pi * f;
    double s2 = 0, c2 = 0;
    for (size_t i = 0; i < n; ++i) {
      s2 += std::sin(2 * w * t[i]);
      c2 += std::cos(2 * w * t[i]);
    }
    const double tau = std::atan2(s2, c2) / (2 * w);
    double yc = 0, ys = 0, cc = 0, ss = 0;
    for (size_t i = 0; i < n; ++i) {
      const double arg = w * (t[i] - tau);
      const double c = std::cos(arg);
      const double s = std::sin(arg);
      yc += y[i] * c;
      ys += y[i] * s;
      cc += c * c;
      ss += s * s;
    }
    const double p = 0.5 * ((cc > 0 ? yc * yc / cc : 0) + (ss > 0 ? ys * ys / ss : 0));
    psd->f.push_back(f);
    psd->p.push_back(scale * p);
  }
}

BandPower IntegrateBand(const Psd& psd, double lo, double hi) {
  BandPower band;
  double power = 0;
  double best = 0;  // a flat zero spectrum has no peak
  bool any = false;
  size_t prev = 0;
  for (size_t k = 0; k < psd.f.size(); ++k) {
    if (!(psd.f[k] >= lo && psd.f[k] < hi)) continue;
    if (any) power += 0.5 * (psd.p[prev] + psd.p[k]) * (psd.f[k] - psd.f[prev]);
    if (psd.p[k] > best) {
      best = psd.p[k];
      band.peak_hz = psd.f[k];
    }
    any = true;
    prev = k;
  }
  if (any) band.power = power;
  return band;
}

}  // namespace medstream::hrv
