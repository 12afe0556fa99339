#include "algo/hrv/jobs.h"

#include <bit>

#include <fmt/format.h>

namespace medstream::hrv {

namespace {

template <size_t N>
constexpr std::array<const MetricInfo*, N> Pick(const std::array<std::string_view, N>& names) {
  std::array<const MetricInfo*, N> out{};
  for (size_t i = 0; i < N; ++i) {
    for (const MetricInfo& info : kMetricTable) {
      if (info.name == names[i]) out[i] = &info;
    }
  }
  return out;
}

constexpr auto kSdnnMetrics =
    Pick(std::array<std::string_view, 3>{"n_beats", "mean_nn_ms", "sdnn_ms"});
constexpr auto kBandMetrics = Pick(
    std::array<std::string_view, 10>{"n_beats", "vlf_ms2", "lf_ms2", "hf_ms2", "total_power_ms2",
                                     "lf_hf", "lf_nu", "hf_nu", "lf_peak_hz", "hf_peak_hz"});
constexpr auto kAllMetrics = [] {
  std::array<const MetricInfo*, kMetricTable.size()> out{};
  for (size_t i = 0; i < kMetricTable.size(); ++i) out[i] = &kMetricTable[i];
  return out;
}();

}  // namespace

const MetricInfo* FindMetric(std::string_view name) {
  for (const MetricInfo& info : kMetricTable) {
    if (info.name == name) return &info;
  }
  return nullptr;
}

uint64_t BeatDigest(std::span<const Beat> beats, uint64_t digest) {
  // One bijective step per 64-bit word (xor, rotate, odd multiply): any changed, missing, extra or
  // reordered word changes the digest with overwhelming likelihood, at ~5 cycles a word.
  constexpr uint64_t kOdd = 0x9e37'79b9'7f4a'7c15;
  auto step = [](uint64_t h, double v) {
    return std::rotl(h ^ std::bit_cast<uint64_t>(v), 29) * kOdd;
  };
  for (const Beat& b : beats) digest = step(step(digest, b.t_s), b.rr_ms);
  return digest;
}

std::string_view JobName(JobKind kind) {
  switch (kind) {
    case JobKind::kIdentity:
      return "identity";
    case JobKind::kSdnn:
      return "sdnn";
    case JobKind::kHrvBands:
      return "hrv-bands";
    case JobKind::kHrvFull:
      return "hrv-full";
  }
  return "?";
}

Result<JobKind> ParseJobKind(std::string_view name) {
  for (JobKind kind : kAllJobs) {
    if (JobName(kind) == name) return kind;
  }
  return InvalidArgument(
      fmt::format("unknown job '{}': expected identity, sdnn, hrv-bands or hrv-full", name));
}

Result<std::vector<JobKind>> ParseJobList(std::string_view list) {
  std::vector<JobKind> out;
  for (size_t from = 0; from <= list.size();) {
    const size_t comma = std::min(list.find(',', from), list.size());
    auto kind = ParseJobKind(list.substr(from, comma - from));
    if (!kind) return std::unexpected(kind.error());
    out.push_back(*kind);
    from = comma + 1;
  }
  return out;
}

std::span<const MetricInfo* const> JobMetrics(JobKind kind) {
  switch (kind) {
    case JobKind::kIdentity:
      return {};
    case JobKind::kSdnn:
      return kSdnnMetrics;
    case JobKind::kHrvBands:
      return kBandMetrics;
    case JobKind::kHrvFull:
      return kAllMetrics;
  }
  return {};
}

MetricSelection JobSelection(JobKind kind) {
  switch (kind) {
    case JobKind::kIdentity:
    case JobKind::kSdnn:
      return {.time_domain = false, .spectral = false, .nonlinear = false, .sample_entropy = false};
    case JobKind::kHrvBands:
      return {.time_domain = false, .spectral = true, .nonlinear = false, .sample_entropy = false};
    case JobKind::kHrvFull:
      return {};
  }
  return {};
}

Result<StreamJob> StreamJob::Create(JobKind kind, const AnalysisOptions& analysis,
                                    const WindowOptions& windows) {
  if (auto s = Validate(analysis); !s) return std::unexpected(s.error());
  if (kind == JobKind::kIdentity) return StreamJob(kind, nullptr);
  auto rolling = RollingAnalyzer::Create(analysis.cleaning, windows);
  if (!rolling) return std::unexpected(rolling.error());
  return StreamJob(kind, std::make_unique<RollingAnalyzer>(std::move(*rolling)));
}

void StreamJob::Push(std::span<const Beat> beats, MetricsEngine& engine, JobOutput* out) {
  if (!rolling_) {
    identity_seen_ += beats.size();
    out->beats.count += beats.size();
    out->beats.digest = BeatDigest(beats, out->beats.digest);
    return;
  }
  rolling_->Push(beats, engine, &out->windows);
}

void StreamJob::Push(std::span<const Beat> beats, const WindowWorkers& workers, JobOutput* out) {
  if (!rolling_) {
    Push(beats, *workers.engines[0], out);
    return;
  }
  rolling_->Push(beats, workers, &out->windows);
}

void StreamJob::Flush(const WindowWorkers& workers, JobOutput* out) {
  if (rolling_) rolling_->Flush(workers, &out->windows);
}

void StreamJob::Finish(MetricsEngine& engine, JobOutput* out) {
  if (rolling_) rolling_->Finish(engine, &out->windows);
}

CleaningReport StreamJob::report() const {
  if (rolling_) return rolling_->report();
  CleaningReport r;
  r.seen = r.accepted = identity_seen_;
  return r;
}

void StreamJob::SaveState(ByteWriter* w) const {
  w->U8(static_cast<uint8_t>(kind_));
  if (rolling_) {
    rolling_->SaveState(w);
  } else {
    w->U64(identity_seen_);
  }
}

Result<StreamJob> StreamJob::LoadState(ByteReader* r, const AnalysisOptions& analysis,
                                       const WindowOptions& windows) {
  MEDSTREAM_TRY(kind_byte, r->U8("job kind"));
  if (kind_byte > static_cast<uint8_t>(JobKind::kHrvFull)) {
    return Corrupt("unknown job kind " + std::to_string(kind_byte) + " in saved state");
  }
  const auto kind = static_cast<JobKind>(kind_byte);
  if (kind == JobKind::kIdentity) {
    MEDSTREAM_TRY(seen, r->U64("identity count"));
    StreamJob job(kind, nullptr);
    job.identity_seen_ = seen;
    return job;
  }
  if (auto s = Validate(analysis); !s) return std::unexpected(s.error());
  MEDSTREAM_TRY(rolling, RollingAnalyzer::LoadState(r, analysis.cleaning, windows));
  return StreamJob(kind, std::make_unique<RollingAnalyzer>(std::move(rolling)));
}

Result<RecordAnalysis> AnalyzeRecord(std::span<const Beat> beats, const AnalysisOptions& options) {
  if (auto s = Validate(options); !s) return std::unexpected(s.error());
  Cleaner cleaner(options.cleaning);
  std::vector<double> t, nn;
  t.reserve(beats.size());
  nn.reserve(beats.size());
  for (const Beat& b : beats) {
    if (cleaner.Classify(b) == Cleaner::Verdict::kAccepted) {
      t.push_back(b.t_s);
      nn.push_back(b.rr_ms);
    }
  }
  MetricsEngine engine(options.spectral, options.select);
  RecordAnalysis out;
  out.metrics = engine.Compute(t, nn);
  out.cleaning = cleaner.report();
  return out;
}

}  // namespace medstream::hrv
