// HRV engine benchmarks (issue: rolling SDNN >= 50 M beats/s on one core; one 5-minute window of
// every metric but sample entropy < 200 us; a 24 h record windowed 300 s / 30 s with every metric
// < 2 s). Inputs are the bundled real recordings.
#include <benchmark/benchmark.h>

#include <cstdio>
#include <cstdlib>
#include <map>

#include "adapters/recording/recording.h"
#include "algo/hrv/jobs.h"

namespace medstream::hrv {
namespace {

const std::vector<Beat>& LoadOrDie(const std::string& file, recording::Unit unit) {
  static std::map<std::string, std::vector<Beat>> cache;
  auto it = cache.find(file);
  if (it != cache.end()) return it->second;
  recording::ReadOptions o;
  o.unit = unit;
  auto rec = recording::ReadRecording(std::string(MEDSTREAM_TEST_DATA_DIR) + "/rr/" + file, o);
  if (!rec) {
    std::fprintf(stderr, "%s\n", rec.error().message().c_str());
    std::exit(1);
  }
  return cache[file] = std::move(rec->beats);
}

// 24 h congestive heart failure record, 112 k beats.
const std::vector<Beat>& Day() {
  return LoadOrDie("chf2db_chf201_rr_secs.txt", recording::Unit::kS);
}

void RunJob(benchmark::State& state, JobKind kind, const std::vector<Beat>& beats) {
  const AnalysisOptions options;
  MetricsEngine engine(options.spectral, JobSelection(kind));
  size_t windows = 0;
  for (auto _ : state) {
    auto job = StreamJob::Create(kind, options, WindowOptions{});
    JobOutput out;
    job->Push(beats, engine, &out);
    job->Finish(engine, &out);
    windows = out.windows.size();
    benchmark::DoNotOptimize(out.windows.data());
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * beats.size()));
  state.counters["beats"] = static_cast<double>(beats.size());
  state.counters["windows"] = static_cast<double>(windows);
}

void BM_RollingSdnn_24h(benchmark::State& state) {
  RunJob(state, JobKind::kSdnn, Day());
}
BENCHMARK(BM_RollingSdnn_24h)->Unit(benchmark::kMillisecond);

void BM_RollingHrvBands_24h(benchmark::State& state) {
  RunJob(state, JobKind::kHrvBands, Day());
}
BENCHMARK(BM_RollingHrvBands_24h)->Unit(benchmark::kMillisecond);

void BM_RollingHrvFull_24h(benchmark::State& state) {
  RunJob(state, JobKind::kHrvFull, Day());
}
BENCHMARK(BM_RollingHrvFull_24h)->Unit(benchmark::kMillisecond);

// One 5-minute window (the first 300 s of MIT-BIH record 100 after cleaning).
void FiveMinuteWindow(std::vector<double>* t, std::vector<double>* nn) {
  const auto& beats = LoadOrDie("mitdb_100_rr.csv", recording::Unit::kAuto);
  Cleaner cleaner(CleaningOptions{});
  for (const Beat& b : beats) {
    if (b.t_s >= 300) break;
    if (cleaner.Classify(b) == Cleaner::Verdict::kAccepted) {
      t->push_back(b.t_s);
      nn->push_back(b.rr_ms);
    }
  }
}

void BM_Window5min(benchmark::State& state, bool with_sampen) {
  std::vector<double> t, nn;
  FiveMinuteWindow(&t, &nn);
  MetricSelection select;
  select.sample_entropy = with_sampen;
  MetricsEngine engine(SpectralOptions{}, select);
  for (auto _ : state) {
    Metrics m = engine.Compute(t, nn);
    benchmark::DoNotOptimize(m);
  }
  state.counters["beats"] = static_cast<double>(nn.size());
}
BENCHMARK_CAPTURE(BM_Window5min, all_but_sampen, false)->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_Window5min, all_metrics, true)->Unit(benchmark::kMicrosecond);

void BM_WholeRecord_24h(benchmark::State& state) {
  const AnalysisOptions options;
  for (auto _ : state) {
    auto r = AnalyzeRecord(Day(), options);
    benchmark::DoNotOptimize(r);
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * Day().size()));
}
BENCHMARK(BM_WholeRecord_24h)->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace medstream::hrv

BENCHMARK_MAIN();
