#include "algo/ecg/qrs.h"

#include <algorithm>
#include <cmath>
#include <numbers>
#include <numeric>
#include <utility>

namespace medstream::ecg {

namespace {

// RBJ cookbook biquads, Butterworth (Q = 1/sqrt 2).
void Design(double fs, double f0, bool high, double* b0, double* b1, double* b2, double* a1,
            double* a2) {
  const double w0 = 2 * std::numbers::pi * f0 / fs;
  const double alpha = std::sin(w0) / (2 * std::numbers::sqrt2 / 2);
  const double c = std::cos(w0), a0 = 1 + alpha;
  if (high) {
    *b0 = (1 + c) / 2 / a0;
    *b1 = -(1 + c) / a0;
  } else {
    *b0 = (1 - c) / 2 / a0;
    *b1 = (1 - c) / a0;
  }
  *b2 = *b0;
  *a1 = -2 * c / a0;
  *a2 = (1 - alpha) / a0;
}

}  // namespace

double QrsDetector::Biquad::Step(double x) {
  const double y = b0 * x + b1 * x1 + b2 * x2 - a1 * y1 - a2 * y2;
  x2 = x1;
  x1 = x;
  y2 = y1;
  y1 = y;
  return y;
}

Result<QrsDetector> QrsDetector::Create(double fs) {
  if (!(fs >= 100 && fs <= 2000)) {
    return InvalidArgument("QRS detection needs a sampling rate of 100 to 2000 Hz, not " +
                           std::to_string(fs));
  }
  return QrsDetector(fs);
}

QrsDetector::QrsDetector(double fs) : fs_(fs) {
  struct Stage {
    Biquad* bq;
    double f;
    bool high;
  };
  for (const Stage& st : {Stage{&hp_, 5, true}, Stage{&hp2_, 5, true}, Stage{&lp_, 15, false},
                          Stage{&lp2_, 15, false}}) {
    Design(fs, st.f, st.high, &st.bq->b0, &st.bq->b1, &st.bq->b2, &st.bq->a1, &st.bq->a2);
  }
  auto s = [&](double seconds) { return static_cast<int64_t>(std::lround(seconds * fs)); };
  window_ = std::max<int64_t>(1, s(0.150));
  refractory_ = s(0.200);
  twave_ = s(0.360);
  learn_ = s(2.0);
  keep_ = s(6.0);
}

double QrsDetector::At(const std::deque<double>& buf, int64_t n) const {
  const int64_t i = n - base_;
  if (i < 0 || i >= static_cast<int64_t>(buf.size())) return 0;
  return buf[static_cast<size_t>(i)];
}

// The steepest slope of the band-passed signal in the QRS before this integrated peak.
double QrsDetector::Slope(int64_t peak) const {
  double best = 0;
  for (int64_t i = std::max(base_ + 1, peak - window_ - refractory_ / 2); i <= peak; ++i) {
    best = std::max(best, std::fabs(At(bp_, i) - At(bp_, i - 1)));
  }
  return best;
}

int64_t QrsDetector::RefineR(int64_t peak) const {
  // The QRS on the band-passed signal: its largest magnitude before the integrated peak.
  int64_t q = peak;
  double best = -1;
  for (int64_t i = std::max(base_, peak - window_ - refractory_ / 2); i <= peak; ++i) {
    if (std::fabs(At(bp_, i)) > best) {
      best = std::fabs(At(bp_, i));
      q = i;
    }
  }
  // The R peak on the ECG itself: the largest deviation from the local mean near it (the filters
  // delay the band-passed QRS by a few tens of milliseconds).
  const int64_t from = std::max(base_, q - refractory_ / 2), to = std::min(n_ - 1, q + window_ / 3);
  double mean = 0;
  for (int64_t i = from; i <= to; ++i) mean += At(raw_, i);
  mean /= static_cast<double>(std::max<int64_t>(1, to - from + 1));
  int64_t r = q;
  best = -1;
  for (int64_t i = from; i <= to; ++i) {
    if (std::fabs(At(raw_, i) - mean) > best) {
      best = std::fabs(At(raw_, i) - mean);
      r = i;
    }
  }
  return r;
}

void QrsDetector::Accept(int64_t peak, double height, bool searchback, std::vector<Beat>* out) {
  const int64_t r = RefineR(peak);
  if (last_r_ >= 0 && r - last_r_ < refractory_) {
    // Two peaks of the integrated signal on one (wide) QRS: the same beat, said once.
    best_noise_ = 0;
    best_noise_at_ = -1;
    return;
  }
  // An artefact many times a QRS must not lift the level so high that real beats stop counting.
  const double h = std::min(height, 3 * spk_);
  spk_ = searchback ? 0.25 * h + 0.75 * spk_ : 0.125 * h + 0.875 * spk_;
  if (last_qrs_ >= 0) {
    rr_.push_back(peak - last_qrs_);
    if (rr_.size() > 8) rr_.erase(rr_.begin());
  }
  last_qrs_ = peak;
  last_slope_ = Slope(peak);
  best_noise_ = 0;
  best_noise_at_ = -1;
  last_r_ = r;
  out->push_back({r, n_, searchback});
}

void QrsDetector::Candidate(int64_t peak, double height, std::vector<Beat>* out) {
  if (!learned_) {
    pending_.emplace_back(peak, height);
    return;
  }
  if (last_qrs_ >= 0 && peak - last_qrs_ < refractory_) return;
  const double threshold = npk_ + 0.25 * (spk_ - npk_);
  if (height > threshold) {
    // Within 360 ms of a beat, a peak with half its slope or less is its T wave.
    if (last_qrs_ >= 0 && peak - last_qrs_ < twave_ && Slope(peak) < 0.5 * last_slope_) {
      npk_ = 0.125 * height + 0.875 * npk_;
      return;
    }
    Accept(peak, height, false, out);
    return;
  }
  npk_ = 0.125 * height + 0.875 * npk_;
  if (height > best_noise_) {
    best_noise_ = height;
    best_noise_at_ = peak;
  }
}

void QrsDetector::Step(double x, std::vector<Beat>* out) {
  if (n_ == 0) {
    // Start the high-pass filter as if the signal had always been at its first value: an ECG's
    // offset is not a step (which would ring for a second and mislead the learning).
    hp_.x1 = hp_.x2 = x;
  }
  const double bp = lp2_.Step(lp_.Step(hp2_.Step(hp_.Step(x))));
  // Five-point derivative, squared, integrated over 150 ms.
  const double d = (2 * bp + d1_ - d3_ - 2 * d4_) * fs_ / 8;
  d4_ = d3_;
  d3_ = d2_;
  d2_ = d1_;
  d1_ = bp;
  const double sq = d * d;
  sq_window_.push_back(sq);
  sq_sum_ += sq;
  if (static_cast<int64_t>(sq_window_.size()) > window_) {
    sq_sum_ -= sq_window_.front();
    sq_window_.pop_front();
  }
  const double mwi = std::max(0.0, sq_sum_ / static_cast<double>(window_));
  raw_.push_back(x);
  bp_.push_back(bp);
  mwi_.push_back(mwi);
  const int64_t n = n_++;
  // A peak of the integrated signal is confirmed once it falls to half its height; then the
  // signal is followed down to its trough, and the next rise starts the next peak.
  if (run_max_at_ < 0) {
    if (mwi < run_max_) {
      run_max_ = mwi;
    } else if (mwi > run_max_) {
      run_max_ = mwi;
      run_max_at_ = n;
    }
  } else if (mwi > run_max_) {
    run_max_ = mwi;
    run_max_at_ = n;
  } else if (mwi < 0.5 * run_max_) {
    Candidate(run_max_at_, run_max_, out);
    run_max_ = mwi;
    run_max_at_ = -1;
  }
  if (!learned_ && n_ >= learn_) {
    // Initial levels from the first two seconds, then their candidates go through the rules.
    double top = 0, sum = 0;
    for (double v : mwi_) {
      top = std::max(top, v);
      sum += v;
    }
    spk_ = 0.5 * top;
    npk_ = 0.5 * sum / static_cast<double>(mwi_.size());
    learned_ = true;
    for (const auto& [p, h] : std::exchange(pending_, {})) Candidate(p, h, out);
  }
  // Search-back: no beat for 1.66 mean RR: the largest peak since, at half the threshold.
  if (learned_ && last_qrs_ >= 0 && best_noise_at_ >= 0) {
    const double rr =
        rr_.empty() ? fs_
                    : static_cast<double>(std::accumulate(rr_.begin(), rr_.end(), int64_t{0})) /
                          static_cast<double>(rr_.size());
    const double threshold = npk_ + 0.25 * (spk_ - npk_);
    if (static_cast<double>(n - last_qrs_) > 1.66 * rr && best_noise_ > 0.5 * threshold &&
        best_noise_at_ - last_qrs_ >= refractory_) {
      Accept(best_noise_at_, best_noise_, true, out);
    }
  }
  // Nothing for a long while (a level raised by noise, a change of leads or gain): lower the
  // signal level by half every such stretch until beats are found again.
  if (learned_) {
    const int64_t since = std::max(last_qrs_, std::max(last_decay_, learn_));
    if (n - since > 2 * learn_) {
      spk_ *= 0.5;
      npk_ = std::min(npk_, 0.5 * spk_);
      last_decay_ = n;
    }
  }
  while (static_cast<int64_t>(raw_.size()) > keep_) {
    raw_.pop_front();
    bp_.pop_front();
    mwi_.pop_front();
    ++base_;
  }
}

void QrsDetector::Push(std::span<const double> samples, std::vector<Beat>* out) {
  // A missing sample (NaN) holds the last value: a dropout is not an impulse.
  for (double x : samples) {
    if (std::isfinite(x)) last_x_ = x;
    Step(last_x_, out);
  }
}

void QrsDetector::Finish(std::vector<Beat>* out) {
  if (!learned_) {
    // Shorter than the learning period: levels from what there is.
    double top = 0;
    for (double v : mwi_) top = std::max(top, v);
    spk_ = 0.5 * top;
    npk_ = 0;
    learned_ = true;
    for (const auto& [p, h] : std::exchange(pending_, {})) Candidate(p, h, out);
  }
  if (run_max_at_ >= 0) Candidate(run_max_at_, run_max_, out);
  std::sort(out->begin(), out->end(),
            [](const Beat& a, const Beat& b) { return a.sample < b.sample; });
}

}  // namespace medstream::ecg
