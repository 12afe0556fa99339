// ecg/qrs: a streaming QRS detector (beats from raw ECG), after Pan and Tompkins (IEEE TBME 32(3),
// 1985) with Hamilton and Tompkins' decision rules (IEEE TBME 33(12), 1986):
//   band-pass 5-15 Hz (two Butterworth biquads designed for the sampling rate) -> five-point
//   derivative -> square -> 150 ms moving integration -> peaks, classified against adaptive
//   signal and noise levels (threshold = noise + 0.25 (signal - noise)), a 200 ms refractory
//   period, T-wave rejection by slope within 360 ms, and search-back for a beat missed when no beat
//   came for 1.66 mean RR (threshold halved).
// The beat time is refined to the R peak: the largest deviation of the ECG (from its local mean)
// within the QRS located on the band-passed signal.
//
// Causal: a beat is decided from the samples up to its decision time. A beat found on the first
// pass is decided when the integrated signal has fallen to half its peak: 0.1-0.3 s after the R
// peak (0.37 s at most on the MIT-BIH development records; `medstream ecg eval` reports it). A beat
// found by search-back is decided 1.66 mean RR after the beat before it. The first 2 s learn the
// initial levels, so their beats are decided at 2 s. After 4 s without a beat the signal level is
// halved (every 4 s) until beats are found again: a noise burst cannot silence the detector for
// good. Any sampling rate from 100 to 2000 Hz; no tuning per record. Pure: no I/O, not thread-safe
// (one detector per stream).
#pragma once

#include <cstdint>
#include <deque>
#include <span>
#include <vector>

#include "common/base/result.h"

namespace medstream::ecg {

struct Beat {
  int64_t sample = 0;       // the R peak
  int64_t decided_at = 0;   // the sample at which the detector emitted it
  bool searchback = false;  // found by search-back (decided later than the first pass)
};

class QrsDetector {
 public:
  static Result<QrsDetector> Create(double fs);
  // Feeds samples (any unit, e.g. mV); appends the beats decided meanwhile to `out`, in order.
  void Push(std::span<const double> samples, std::vector<Beat>* out);
  // End of the signal: decides what is pending.
  void Finish(std::vector<Beat>* out);
  double fs() const { return fs_; }

 private:
  explicit QrsDetector(double fs);
  struct Biquad {
    double b0 = 1, b1 = 0, b2 = 0, a1 = 0, a2 = 0;
    double x1 = 0, x2 = 0, y1 = 0, y2 = 0;
    double Step(double x);
  };
  void Step(double x, std::vector<Beat>* out);
  void Candidate(int64_t peak, double height, std::vector<Beat>* out);
  void Accept(int64_t peak, double height, bool searchback, std::vector<Beat>* out);
  int64_t RefineR(int64_t mwi_peak) const;
  double Slope(int64_t mwi_peak) const;
  double At(const std::deque<double>& buf, int64_t n) const;

  double fs_;
  Biquad hp_, lp_, hp2_, lp2_;
  int64_t n_ = 0;      // samples seen
  double last_x_ = 0;  // the last finite sample
  int64_t base_ = 0;   // sample index of the buffers' front
  std::deque<double> raw_, bp_, mwi_;
  std::deque<double> sq_window_;
  double sq_sum_ = 0;
  double d1_ = 0, d2_ = 0, d3_ = 0, d4_ = 0;  // band-passed history for the derivative
  int64_t window_, refractory_, twave_, learn_, keep_;
  // Peak tracking on the integrated signal.
  double run_max_ = 0;
  int64_t run_max_at_ = -1;
  // Levels and state.
  bool learned_ = false;
  double spk_ = 0, npk_ = 0;
  int64_t last_qrs_ = -1;
  int64_t last_decay_ = -1;
  int64_t last_r_ = -1;  // the last beat emitted
  double last_slope_ = 0;
  std::vector<int64_t> rr_;  // the last 8 RR intervals (samples)
  double best_noise_ = 0;    // the largest rejected peak since the last beat (search-back)
  int64_t best_noise_at_ = -1;
  std::vector<std::pair<int64_t, double>> pending_;  // learning phase candidates
};

}  // namespace medstream::ecg
