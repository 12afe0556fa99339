// hrv: heart-rate variability analytics, pure computation (no I/O, no crypto, no transport).
//
// This header holds the vocabulary shared by the module: a Beat, the cleaning options and report,
// and Metrics, the full set of HRV numbers with their conventions. Definitions follow the 1996
// Task Force of the ESC/NASPE ("Heart rate variability: standards of measurement ..."); where the
// popular tools disagree, the convention chosen is written next to the field.
#pragma once

#include <array>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string_view>

namespace medstream::hrv {

// One heart beat: the time the beat occurred and the RR interval that ends at it (the time since
// the previous beat). Times are in seconds on any monotonic clock (epoch seconds or seconds since
// the start of a recording); the RR interval is in milliseconds.
struct Beat {
  double t_s = 0;
  double rr_ms = 0;
  friend bool operator==(const Beat&, const Beat&) = default;
};

inline constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// The limits every beat and every window option must keep, wherever they come from (a sensor, a
// file, a provisioned configuration). They are checked where values enter (the gateway, the
// recording reader, the CLI) and again by the pure algorithms themselves (Cleaner, Validate), so a
// value outside them can never reach arithmetic whose loops or allocations it would scale:
//  - beat times: finite and |t| <= kMaxBeatTimeS (1e10 s, the year 2286 as epoch seconds), so a
//    window index t / step (step >= kMinStepS) stays below 2^53 and is exact in a double;
//  - RR intervals: finite, > 0 and <= kMaxRrMs (one minute; no heart pauses longer);
//  - windows: kMinWindowS <= window <= kMaxWindowS, kMinStepS <= step <= kMaxWindowS, and at most
//    kMaxWindowsPerBeat windows overlap one beat (window / step), which bounds the windows a beat
//    can close and the work per beat;
//  - beats of a stream: at least kMinBeatGapS apart (600 a minute, twice the fastest heart), so a
//    window holds at most window / kMinBeatGapS + 1 beats. Beat times and RR intervals are
//    independent fields: a sensor sending beats a microsecond apart once made a window hold every
//    one of them, 16 bytes each, until the enclave's memory and its checkpoint ran out.
inline constexpr double kMaxBeatTimeS = 1e10;
inline constexpr double kMinBeatGapS = 0.1;
inline constexpr double kMaxRrMs = 60'000;
inline constexpr double kMinWindowS = 1;
inline constexpr double kMaxWindowS = 7 * 86'400;
inline constexpr double kMinStepS = 0.01;
inline constexpr double kMaxWindowsPerBeat = 10'000;

// True when the beat keeps the limits above (it may still be removed by cleaning).
inline bool BeatInLimits(const Beat& b) {
  return std::isfinite(b.t_s) && std::fabs(b.t_s) <= kMaxBeatTimeS && std::isfinite(b.rr_ms) &&
         b.rr_ms > 0 && b.rr_ms <= kMaxRrMs;
}

// How raw RR intervals become NN ("normal-to-normal") intervals. Applied beat by beat in arrival
// order, so the outcome never depends on how a stream is chunked.
//
// Always (even with enabled = false), a beat is rejected when it is outside the limits above
// (time or RR not finite, |time| > kMaxBeatTimeS, RR <= 0 or > kMaxRrMs: "invalid"), or its time is
// not at least kMinBeatGapS after the previous valid beat ("time_order"). When enabled:
//  - "range": RR outside [min_rr_ms, max_rr_ms] is dropped (physiologically impossible).
//  - "ectopic": RR differing from the last accepted NN interval by more than
//    ectopic_threshold x that interval is dropped (the classic 20 % rule, Malik et al.). When
//    ectopic_reset_after intervals in a row are flagged, the last of them is accepted and becomes
//    the new reference: a sustained change of rhythm is not a run of ectopic beats, and without the
//    reset one bad first reference would reject the rest of a record.
// Successive differences (RMSSD, SDSD, pNN50, Poincare) are taken between consecutive accepted NN
// intervals, i.e. across a removed beat, as in hrv-analysis, NeuroKit2 and pyHRV.
struct CleaningOptions {
  bool enabled = true;
  double min_rr_ms = 300;
  double max_rr_ms = 2000;
  double ectopic_threshold = 0.20;
  int ectopic_reset_after = 5;
};

struct CleaningReport {
  uint64_t seen = 0;
  uint64_t accepted = 0;
  uint64_t invalid = 0;     // outside BeatInLimits (non-finite, out of range, RR <= 0)
  uint64_t time_order = 0;  // time not kMinBeatGapS or more after the previous valid beat
  uint64_t range = 0;       // outside [min_rr_ms, max_rr_ms]
  uint64_t ectopic = 0;     // > threshold change from the previous NN interval
  uint64_t removed() const { return invalid + time_order + range + ectopic; }
};

enum class SpectralMethod { kWelch, kLombScargle };

// Frequency-domain conventions. Welch (the default) reproduces
//   scipy.signal.welch(x, fs=4, window='hann', nperseg=256, noverlap=128,
//                      detrend='constant', scaling='density')
// where x is the NN series (ms) as a not-a-knot cubic spline through (beat time - first beat
// time, NN) sampled at 0, 1/fs, 2/fs, ... up to the last beat (no extrapolation). Fewer than
// nperseg samples (64 s at the defaults) leaves the spectral metrics undefined (NaN).
// Lomb-Scargle works on the uneven beat times directly (NN minus its mean), on the grid
// f = k * df (df = 1 / (oversampling * T), T = last - first beat time), scaled to a one-sided
// density in ms^2/Hz as PSD(f) = 2 * P_LS(f) * T / N, so that it integrates to the variance
// like the Welch density does.
// A band's power is the trapezoidal integral of the PSD over the bins with lo <= f < hi.
// total_power = vlf + lf + hf (as in hrv-analysis).
struct SpectralOptions {
  SpectralMethod method = SpectralMethod::kWelch;
  double fs_hz = 4.0;
  int nperseg = 256;
  int noverlap = 128;
  double lomb_oversampling = 4.0;
  double vlf_lo = 0.0033, vlf_hi = 0.04;
  double lf_lo = 0.04, lf_hi = 0.15;
  double hf_lo = 0.15, hf_hi = 0.4;
};

// Which groups of metrics to compute beyond the basic three (n_beats, mean_nn_ms, sdnn_ms, always
// computed); metrics not computed stay NaN. The rolling SDNN job turns everything off.
struct MetricSelection {
  bool time_domain = true;     // the rest of the time-domain set
  bool spectral = true;        // frequency domain
  bool nonlinear = true;       // Poincare and DFA
  bool sample_entropy = true;  // separate because it dominates the cost of a window
};

struct AnalysisOptions {
  CleaningOptions cleaning;
  SpectralOptions spectral;
  MetricSelection select;
};

// All metrics of one record or one window. NaN means "not defined for this input" (too few beats,
// zero variance, ...), printed as null in JSON.
struct Metrics {
  // --- time domain (Task Force 1996). Standard deviations are sample SDs (N-1).
  double n_beats = 0;  // NN intervals used
  double mean_nn_ms = kNaN;
  double median_nn_ms = kNaN;
  double sdnn_ms = kNaN;
  double sdsd_ms = kNaN;  // SD of successive differences, N-1 over the differences
  double rmssd_ms = kNaN;
  double nn50 = kNaN;       // count of |dNN| > 50 ms
  double pnn50_pct = kNaN;  // nn50 / number of differences x 100
  double nn20 = kNaN;
  double pnn20_pct = kNaN;
  double cvnn = kNaN;  // sdnn / mean_nn (a ratio, not %)
  // Over instantaneous rates 60000 / NN; std_hr_bpm is a sample SD (N-1).
  double mean_hr_bpm = kNaN;
  double min_hr_bpm = kNaN;
  double max_hr_bpm = kNaN;
  double std_hr_bpm = kNaN;
  // n_beats / height of the NN histogram's tallest bin; bins are 1/128 s (7.8125 ms) wide and
  // aligned at 0: bin = floor(NN / 7.8125 ms).
  double hrv_triangular_index = kNaN;
  // --- frequency domain, see SpectralOptions.
  double vlf_ms2 = kNaN;
  double lf_ms2 = kNaN;
  double hf_ms2 = kNaN;
  double total_power_ms2 = kNaN;
  double lf_hf = kNaN;
  double lf_nu = kNaN;  // lf / (lf + hf) x 100
  double hf_nu = kNaN;
  double lf_peak_hz = kNaN;  // frequency of the largest PSD bin in the band
  double hf_peak_hz = kNaN;
  // --- nonlinear.
  double sd1_ms = kNaN;  // sqrt(SDSD^2 / 2)
  double sd2_ms = kNaN;  // sqrt(2 SDNN^2 - SDSD^2 / 2)
  double sd1_sd2 = kNaN;
  // Sample entropy (Richman & Moorman 2000), m = 2, r = 0.2 x SDNN, Chebyshev distance <= r,
  // the first N - m templates for both lengths; NaN when no template pair matches.
  double sampen = kNaN;
  // Detrended fluctuation analysis (Peng et al. 1995): y = cumsum(NN - mean), non-overlapping boxes
  // of n beats from the start, linear detrending per box, F(n) = RMS of the residuals; alpha =
  // slope of log F(n) against log n by least squares over every integer n in [4, 16] (alpha1) and
  // [16, 64] (alpha2). Needs at least 2 boxes at the largest n.
  double dfa_alpha1 = kNaN;
  double dfa_alpha2 = kNaN;
};

// The metric table: the single list of names, units and fields that output, JSON and tests use.
struct MetricInfo {
  std::string_view name;
  std::string_view unit;
  double Metrics::*field;
};

inline constexpr std::array kMetricTable = {
    MetricInfo{"n_beats", "", &Metrics::n_beats},
    MetricInfo{"mean_nn_ms", "ms", &Metrics::mean_nn_ms},
    MetricInfo{"median_nn_ms", "ms", &Metrics::median_nn_ms},
    MetricInfo{"sdnn_ms", "ms", &Metrics::sdnn_ms},
    MetricInfo{"sdsd_ms", "ms", &Metrics::sdsd_ms},
    MetricInfo{"rmssd_ms", "ms", &Metrics::rmssd_ms},
    MetricInfo{"nn50", "", &Metrics::nn50},
    MetricInfo{"pnn50_pct", "%", &Metrics::pnn50_pct},
    MetricInfo{"nn20", "", &Metrics::nn20},
    MetricInfo{"pnn20_pct", "%", &Metrics::pnn20_pct},
    MetricInfo{"cvnn", "", &Metrics::cvnn},
    MetricInfo{"mean_hr_bpm", "bpm", &Metrics::mean_hr_bpm},
    MetricInfo{"min_hr_bpm", "bpm", &Metrics::min_hr_bpm},
    MetricInfo{"max_hr_bpm", "bpm", &Metrics::max_hr_bpm},
    MetricInfo{"std_hr_bpm", "bpm", &Metrics::std_hr_bpm},
    MetricInfo{"hrv_triangular_index", "", &Metrics::hrv_triangular_index},
    MetricInfo{"vlf_ms2", "ms2", &Metrics::vlf_ms2},
    MetricInfo{"lf_ms2", "ms2", &Metrics::lf_ms2},
    MetricInfo{"hf_ms2", "ms2", &Metrics::hf_ms2},
    MetricInfo{"total_power_ms2", "ms2", &Metrics::total_power_ms2},
    MetricInfo{"lf_hf", "", &Metrics::lf_hf},
    MetricInfo{"lf_nu", "n.u.", &Metrics::lf_nu},
    MetricInfo{"hf_nu", "n.u.", &Metrics::hf_nu},
    MetricInfo{"lf_peak_hz", "Hz", &Metrics::lf_peak_hz},
    MetricInfo{"hf_peak_hz", "Hz", &Metrics::hf_peak_hz},
    MetricInfo{"sd1_ms", "ms", &Metrics::sd1_ms},
    MetricInfo{"sd2_ms", "ms", &Metrics::sd2_ms},
    MetricInfo{"sd1_sd2", "", &Metrics::sd1_sd2},
    MetricInfo{"sampen", "", &Metrics::sampen},
    MetricInfo{"dfa_alpha1", "", &Metrics::dfa_alpha1},
    MetricInfo{"dfa_alpha2", "", &Metrics::dfa_alpha2},
};

// Looks a metric up by name; nullptr when unknown.
const MetricInfo* FindMetric(std::string_view name);

}  // namespace medstream::hrv
