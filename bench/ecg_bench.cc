// QRS detection speed: MIT-BIH 119 (the repository's 3-minute excerpt, 360 Hz, two channels) and,
// when present, a full shared 30-minute record. Real time factor = signal seconds per second of
// detection, per channel and for both channels of the record.
#include <benchmark/benchmark.h>

#include <filesystem>

#include "adapters/wfdb/ecg_file.h"
#include "algo/ecg/qrs.h"

namespace {

using namespace medstream;

void Detect(benchmark::State& state, const std::string& record, int channels) {
  std::vector<wfdb::Ecg> ecgs;
  for (int c = 0; c < channels; ++c) {
    auto e = wfdb::LoadEcg(record, c);
    if (!e) {
      state.SkipWithError(e.error().message().c_str());
      return;
    }
    ecgs.push_back(std::move(*e));
  }
  size_t beats = 0;
  for (auto _ : state) {
    for (const wfdb::Ecg& e : ecgs) {
      auto d = ecg::QrsDetector::Create(e.fs).value();
      std::vector<ecg::Beat> out;
      d.Push(e.samples, &out);
      d.Finish(&out);
      beats = out.size();
      benchmark::DoNotOptimize(out.data());
    }
  }
  const double seconds = static_cast<double>(ecgs[0].samples.size()) / ecgs[0].fs;
  state.counters["beats"] = static_cast<double>(beats);
  // Record seconds processed per second: the real-time factor (for all channels together).
  state.counters["x_real_time"] = benchmark::Counter(
      seconds * static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
}

void BM_Qrs119Excerpt(benchmark::State& state) {
  Detect(state, MEDSTREAM_TEST_DATA_DIR "/wfdb/119_3min", static_cast<int>(state.range(0)));
}
BENCHMARK(BM_Qrs119Excerpt)->Arg(1)->Arg(2)->Unit(benchmark::kMillisecond);

void BM_Qrs208Full(benchmark::State& state) {
  const std::string record = MEDSTREAM_SHARED_DATA_DIR "/wfdb/mitdb/208";
  if (!std::filesystem::exists(record + ".hea")) {
    state.SkipWithError("shared data absent");
    return;
  }
  Detect(state, record, static_cast<int>(state.range(0)));
}
BENCHMARK(BM_Qrs208Full)->Arg(2)->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
