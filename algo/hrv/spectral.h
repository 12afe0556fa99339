// Frequency-domain HRV: resampling of the NN series and power spectral density estimation.
// Conventions are documented on SpectralOptions (algo/hrv/types.h).
#pragma once

#include <span>
#include <vector>

#include "algo/hrv/types.h"

namespace medstream::hrv {

// Evaluates the not-a-knot cubic spline through (x[i], y[i]) at the points xq, writing out[j].
// x strictly increasing with at least 2 points; xq ascending within [x.front(), x.back()].
// Matches scipy.interpolate.CubicSpline(x, y, bc_type='not-a-knot') (2 points: the line,
// 3 points: the parabola, as scipy does). `scratch` is reused between calls to avoid allocation.
void InterpolateNotAKnot(std::span<const double> x, std::span<const double> y,
                         std::span<const double> xq, std::span<double> out,
                         std::vector<double>* scratch);

// A one-sided power spectral density: f[k] in Hz, p[k] in (input unit)^2 / Hz.
struct Psd {
  std::vector<double> f;
  std::vector<double> p;
};

// Computes PSDs with one reusable FFTW plan and buffers. Not thread-safe: one per thread.
class SpectralEstimator {
 public:
  explicit SpectralEstimator(const SpectralOptions& options);
  ~SpectralEstimator();
  SpectralEstimator(const SpectralEstimator&) = delete;
  SpectralEstimator& operator=(const SpectralEstimator&) = delete;

  // PSD of an evenly sampled signal, as scipy.signal.welch with the configured fs, Hann window,
  // nperseg, noverlap, constant detrend and density scaling. False if x is shorter than nperseg.
  bool Welch(std::span<const double> x, Psd* psd);

  // PSD of the NN series by the configured method. t: beat times (s, increasing), nn: NN (ms).
  // False when the record is too short for the method (metrics stay NaN).
  bool NnPsd(std::span<const double> t, std::span<const double> nn, Psd* psd);

  // Fills the frequency-domain fields of `m` from the NN series (NaN where undefined).
  void Compute(std::span<const double> t, std::span<const double> nn, Metrics* m);

  const SpectralOptions& options() const { return options_; }

 private:
  SpectralOptions options_;
  struct Fftw;
  Fftw* fftw_;  // plan and aligned buffers, kept out of the header so fftw3.h stays private
  std::vector<double> window_;
  double window_power_ = 0;  // sum of window^2
  std::vector<double> grid_, relative_t_, resampled_, scratch_;
  Psd psd_;
};

// Lomb-Scargle PSD (see SpectralOptions for the scaling) of y sampled at t, at f = df, 2 df, ...
// up to f_max.
void LombScarglePsd(std::span<const double> t, std::span<const double> y, double df, double f_max,
                    Psd* psd);

// Trapezoidal power over the bins lo <= f < hi, and the frequency of the largest bin there.
struct BandPower {
  double power = kNaN;
  double peak_hz = kNaN;
};
BandPower IntegrateBand(const Psd& psd, double lo, double hi);

}  // namespace medstream::hrv
