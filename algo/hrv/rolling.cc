#include "algo/hrv/rolling.h"

#include <fmt/format.h>
#include <algorithm>
#include <cmath>

namespace medstream::hrv {

Status Validate(const WindowOptions& o) {
  // Written so that NaN fails every test.
  if (!(o.window_s >= kMinWindowS && o.window_s <= kMaxWindowS)) {
    return InvalidArgument(fmt::format("window length must be {} to {} s, got {:.6g}", kMinWindowS,
                                       kMaxWindowS, o.window_s));
  }
  if (!(o.step_s >= kMinStepS && o.step_s <= kMaxWindowS)) {
    return InvalidArgument(fmt::format("window step must be {} to {} s, got {:.6g}", kMinStepS,
                                       kMaxWindowS, o.step_s));
  }
  if (!(o.window_s / o.step_s <= kMaxWindowsPerBeat)) {
    return InvalidArgument(
        fmt::format("window / step must be at most {} (windows overlapping one beat), got {:.6g}",
                    kMaxWindowsPerBeat, o.window_s / o.step_s));
  }
  if (!(o.min_coverage >= 0 && o.min_coverage <= 1)) {
    return InvalidArgument(
        fmt::format("minimum coverage must be in [0, 1], got {}", o.min_coverage));
  }
  return {};
}

Status Validate(const AnalysisOptions& o) {
  const CleaningOptions& c = o.cleaning;
  if (!(c.min_rr_ms > 0 && c.min_rr_ms < c.max_rr_ms)) {
    return InvalidArgument(fmt::format("RR range must satisfy 0 < min < max, got [{}, {}] ms",
                                       c.min_rr_ms, c.max_rr_ms));
  }
  if (!(c.ectopic_threshold > 0)) {
    return InvalidArgument(
        fmt::format("ectopic threshold must be > 0, got {}", c.ectopic_threshold));
  }
  if (c.ectopic_reset_after < 1) return InvalidArgument("ectopic reset count must be >= 1");
  const SpectralOptions& s = o.spectral;
  if (!(s.fs_hz > 0)) return InvalidArgument("resampling rate must be > 0 Hz");
  if (s.nperseg < 8 || s.noverlap < 0 || s.noverlap >= s.nperseg) {
    return InvalidArgument(
        fmt::format("Welch segments need nperseg >= 8 and 0 <= noverlap < nperseg, got {} and {}",
                    s.nperseg, s.noverlap));
  }
  if (!(s.lomb_oversampling >= 1)) return InvalidArgument("Lomb-Scargle oversampling must be >= 1");
  if (!(s.vlf_lo >= 0 && s.vlf_lo < s.vlf_hi && s.vlf_hi <= s.lf_lo && s.lf_lo < s.lf_hi &&
        s.lf_hi <= s.hf_lo && s.hf_lo < s.hf_hi)) {
    return InvalidArgument("frequency bands must be ordered: 0 <= vlf < lf < hf, without overlap");
  }
  return {};
}

Result<RollingAnalyzer> RollingAnalyzer::Create(const CleaningOptions& cleaning,
                                                const WindowOptions& windows) {
  if (auto s = Validate(windows); !s) return std::unexpected(s.error());
  return RollingAnalyzer(cleaning, windows);
}

int64_t RollingAnalyzer::FirstWindowEndingAfter(double t) const {
  const double w = options_.window_s, s = options_.step_s;
  // |t| <= kMaxBeatTimeS and step >= kMinStepS (Cleaner and Validate enforce both) keep k far
  // inside int64 and exact in a double.
  auto k = static_cast<int64_t>(std::floor((t - w) / s)) + 1;
  // The division can round either way by one; settle on the exact boundary with the same products
  // CloseWindow uses. Bounded: within the limits a handful of steps always suffices.
  for (int i = 0; i < 64 && static_cast<double>(k - 1) * s + w > t; ++i) --k;
  for (int i = 0; i < 64 && static_cast<double>(k) * s + w <= t; ++i) ++k;
  return k;
}

void RollingAnalyzer::SetNextWindow(int64_t k) {
  next_k_ = k;
  next_end_ = static_cast<double>(k) * options_.step_s + options_.window_s;
  // Drop what no later window can contain; compact once the dead prefix dominates.
  const double start = static_cast<double>(k) * options_.step_s;
  head_ = static_cast<size_t>(
      std::lower_bound(t_.begin() + static_cast<std::ptrdiff_t>(head_), t_.end(), start) -
      t_.begin());
  if (pending_.empty()) Compact();
}

void RollingAnalyzer::Compact() {
  if (head_ >= 1024 && head_ * 2 >= t_.size()) {
    t_.erase(t_.begin(), t_.begin() + static_cast<std::ptrdiff_t>(head_));
    nn_.erase(nn_.begin(), nn_.begin() + static_cast<std::ptrdiff_t>(head_));
    head_ = 0;
  }
}

void RollingAnalyzer::CloseWindow(MetricsEngine* engine, std::vector<WindowResult>* out) {
  const double start = static_cast<double>(next_k_) * options_.step_s;
  const double end = next_end_;
  const auto first = t_.begin() + static_cast<std::ptrdiff_t>(head_);
  const size_t lo = static_cast<size_t>(std::lower_bound(first, t_.end(), start) - t_.begin());
  const size_t hi = static_cast<size_t>(std::lower_bound(first, t_.end(), end) - t_.begin());
  if (hi > lo) {
    const std::span<const double> nn(nn_.data() + lo, hi - lo);
    const double covered_ms = Sum(nn);
    const double coverage = covered_ms / (options_.window_s * 1000.0);
    if (coverage >= options_.min_coverage) {
      WindowResult& r = out->emplace_back();
      r.index = next_k_;
      r.t_start = start;
      r.t_end = end;
      r.coverage = coverage;
      if (engine) {
        r.metrics =
            engine->Compute(std::span<const double>(t_.data() + lo, hi - lo), nn, covered_ms);
      } else {
        pending_.push_back({.out = out->size() - 1, .lo = lo, .hi = hi, .covered_ms = covered_ms});
      }
    }
  }
  SetNextWindow(next_k_ + 1);
  // Skip windows that cannot contain any buffered beat (gaps), instead of visiting each.
  if (head_ < t_.size() && t_[head_] >= next_end_) {
    SetNextWindow(FirstWindowEndingAfter(t_[head_]));
  }
}

void RollingAnalyzer::Push(std::span<const Beat> beats, MetricsEngine& engine,
                           std::vector<WindowResult>* out) {
  PushBeats(beats, &engine, out);
}

void RollingAnalyzer::Push(std::span<const Beat> beats, const WindowWorkers& workers,
                           std::vector<WindowResult>* out) {
  if (!workers.parallel || workers.parallel->workers() < 2) {
    Flush(workers, out);  // nothing pending unless the workers changed
    PushBeats(beats, workers.engines[0], out);
    return;
  }
  // A bounded piece at a time, counted across calls: the NN buffer is compacted, and the pending
  // windows computed, after each, so a batch of any size holds about one piece of intervals and
  // windows in flight (pushed whole, a 1.5 M-beat batch held all its intervals, 23 MB, until its
  // end), and a batch pushed in 16384-beat segments (the enclave, as they are authenticated) pays
  // one pool run per piece, not per segment: four times fewer runs, each a wake-up of the pool.
  for (size_t at = 0; at < beats.size();) {
    const size_t n = std::min(kParallelPieceBeats - unflushed_, beats.size() - at);
    PushBeats(beats.subspan(at, n), nullptr, out);
    at += n;
    unflushed_ += n;
    if (unflushed_ == kParallelPieceBeats) Flush(workers, out);
  }
}

void RollingAnalyzer::Flush(const WindowWorkers& workers, std::vector<WindowResult>* out) {
  unflushed_ = 0;
  if (pending_.empty()) return;
  auto compute = [&](size_t w, size_t i) {
    const Pending& p = pending_[i];
    (*out)[p.out].metrics = workers.engines[w]->Compute(
        std::span<const double>(t_.data() + p.lo, p.hi - p.lo),
        std::span<const double>(nn_.data() + p.lo, p.hi - p.lo), p.covered_ms);
  };
  if (workers.parallel && workers.parallel->workers() >= 2) {
    // Run computes a single window on this thread itself.
    workers.parallel->Run(pending_.size(), compute);
  } else {
    for (size_t i = 0; i < pending_.size(); ++i) compute(0, i);
  }
  pending_.clear();
  Compact();
}

void RollingAnalyzer::PushBeats(std::span<const Beat> beats, MetricsEngine* engine,
                                std::vector<WindowResult>* out) {
  // Reserve for the windows this chunk can close, so a long chunk does not regrow the output; never
  // more than the beats can fill (each beat lies in at most window / step windows), nor past a
  // fixed bound: the span comes from untrusted beat times.
  if (!beats.empty()) {
    const double span_s = beats.back().t_s - beats.front().t_s;
    const double per_beat = options_.window_s / options_.step_s + 1;
    const double windows = std::min({span_s / options_.step_s + 2 + per_beat,
                                     static_cast<double>(beats.size()) * per_beat, 1e6});
    // Geometric, as push_back grows: an exact reserve per piece would copy the whole output once
    // per piece (quadratic in the batch).
    const size_t need = out->size() + static_cast<size_t>(std::max(0.0, windows));
    if (need > out->capacity()) out->reserve(std::max(need, 2 * out->capacity()));
  }
  for (const Beat& beat : beats) {
    const Cleaner::Verdict verdict = cleaner_.Classify(beat);
    if (verdict == Cleaner::Verdict::kInvalid || verdict == Cleaner::Verdict::kTimeOrder) continue;
    // Any beat with a valid time proves that every window ending at or before it is complete.
    if (!started_) {
      started_ = true;
      SetNextWindow(FirstWindowEndingAfter(beat.t_s));
    }
    while (beat.t_s >= next_end_) {
      if (head_ == t_.size()) {
        SetNextWindow(FirstWindowEndingAfter(beat.t_s));
        break;
      }
      CloseWindow(engine, out);
    }
    if (verdict == Cleaner::Verdict::kAccepted) {
      t_.push_back(beat.t_s);
      nn_.push_back(beat.rr_ms);
    }
  }
}

void RollingAnalyzer::SaveState(ByteWriter* w) const {
  cleaner_.SaveState(w);
  w->U8(started_ ? 1 : 0);
  w->I64(next_k_);
  w->U64(t_.size() - head_);
  for (size_t i = head_; i < t_.size(); ++i) {
    w->F64(t_[i]);
    w->F64(nn_[i]);
  }
}

Result<RollingAnalyzer> RollingAnalyzer::LoadState(ByteReader* r, const CleaningOptions& cleaning,
                                                   const WindowOptions& windows) {
  MEDSTREAM_TRY(a, Create(cleaning, windows));
  if (auto s = a.cleaner_.LoadState(r); !s) return std::unexpected(s.error());
  MEDSTREAM_TRY(started, r->U8("started flag"));
  MEDSTREAM_TRY(next_k, r->I64("next window"));
  MEDSTREAM_TRY(n, r->U64("buffered beats"));
  if (n > r->remaining() / 16) return Corrupt("buffered beat count exceeds the state's size");
  a.t_.resize(n);
  a.nn_.resize(n);
  for (size_t i = 0; i < n; ++i) {
    a.t_[i] = *r->F64("beat time");
    a.nn_[i] = *r->F64("beat NN");
  }
  a.started_ = started != 0;
  a.next_k_ = next_k;
  a.next_end_ = static_cast<double>(next_k) * windows.step_s + windows.window_s;
  return a;
}

void RollingAnalyzer::Finish(MetricsEngine& engine, std::vector<WindowResult>* out) {
  MetricsEngine* const engines[] = {&engine};
  Flush({.parallel = nullptr, .engines = engines}, out);
  while (head_ < t_.size()) CloseWindow(&engine, out);
}

}  // namespace medstream::hrv
