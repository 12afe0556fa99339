// The rolling analyzer driven with arbitrary beats (any doubles: NaN, infinities, huge, negative,
// out of order) and window options, in arbitrary chunks, with a checkpoint round trip in the
// middle: what the enclave does with whatever a sensor, a gateway bug or an attacker sends.
// Checks that it terminates (libFuzzer's -timeout), that every window lies inside the limits,
// and that a save/restore mid-stream changes nothing.
#include <fuzzer/FuzzedDataProvider.h>

#include "algo/hrv/jobs.h"
#include "fuzz/fuzz.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace medstream;
  FuzzedDataProvider in(data, size);
  hrv::WindowOptions w;
  // Half the time any doubles (Validate must refuse the bad ones), else plausible settings.
  if (in.ConsumeBool()) {
    w.window_s = in.ConsumeFloatingPoint<double>();
    w.step_s = in.ConsumeFloatingPoint<double>();
  } else {
    w.window_s = in.ConsumeFloatingPointInRange<double>(1, 3600);
    w.step_s = in.ConsumeFloatingPointInRange<double>(0.01, 600);
  }
  w.min_coverage = in.ConsumeProbability<double>();
  // hrv-bands (a spectrum per window) only where few windows overlap a beat, to keep runs short.
  const hrv::JobKind kind =
      w.window_s / w.step_s <= 50 && in.ConsumeBool()
          ? hrv::JobKind::kHrvBands
          : (in.ConsumeBool() ? hrv::JobKind::kSdnn : hrv::JobKind::kIdentity);
  hrv::AnalysisOptions options;
  options.cleaning.enabled = in.ConsumeBool();
  auto job = hrv::StreamJob::Create(kind, options, w);
  if (!job) return 0;
  // (The identity job has no windows and ignores them.)
  MEDSTREAM_FUZZ_CHECK(kind == hrv::JobKind::kIdentity ||
                       (w.window_s >= hrv::kMinWindowS && w.step_s >= hrv::kMinStepS));
  std::vector<hrv::Beat> beats;
  const bool plausible = in.ConsumeBool();
  double t = in.ConsumeFloatingPointInRange<double>(0, 2e9);
  while (in.remaining_bytes() >= 4) {
    hrv::Beat b;
    if (plausible) {
      b.rr_ms = in.ConsumeFloatingPointInRange<double>(-100, 3000);
      t += in.ConsumeFloatingPointInRange<double>(-1, 30);
      b.t_s = t;
    } else {
      b.t_s = in.ConsumeFloatingPoint<double>();
      b.rr_ms = in.ConsumeFloatingPoint<double>();
    }
    beats.push_back(b);
  }
  hrv::MetricsEngine engine(options.spectral, hrv::JobSelection(kind));
  hrv::JobOutput out, out2;
  const size_t half = beats.size() / 2;
  job->Push(std::span(beats).first(half), engine, &out);
  // Checkpoint round trip: the restored job continues exactly like the original.
  std::vector<uint8_t> state;
  ByteWriter writer(&state);
  job->SaveState(&writer);
  ByteReader reader(state);
  auto restored = hrv::StreamJob::LoadState(&reader, options, w);
  MEDSTREAM_FUZZ_CHECK(restored.has_value());
  out2 = out;
  job->Push(std::span(beats).subspan(half), engine, &out);
  job->Finish(engine, &out);
  restored->Push(std::span(beats).subspan(half), engine, &out2);
  restored->Finish(engine, &out2);
  MEDSTREAM_FUZZ_CHECK(out.windows.size() == out2.windows.size());
  for (const hrv::WindowResult& r : out.windows) {
    MEDSTREAM_FUZZ_CHECK(std::isfinite(r.t_start) && std::isfinite(r.t_end) && r.t_end > r.t_start);
    MEDSTREAM_FUZZ_CHECK(r.t_start >= -hrv::kMaxBeatTimeS - w.window_s &&
                         r.t_end <= hrv::kMaxBeatTimeS + w.window_s + w.step_s);
  }
  return 0;
}
