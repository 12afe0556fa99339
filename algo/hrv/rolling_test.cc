// Rolling windows: chunking invariance on real data, alignment, coverage, degenerate input.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <random>

#include "algo/hrv/jobs.h"
#include "algo/hrv/parallel.h"
#include "tests/test_data.h"

namespace medstream::hrv {
namespace {

using testing::Same;

// Runs a job over the beats fed in chunks whose sizes come from `next_chunk`.
template <class NextChunk>
JobOutput RunChunked(JobKind kind, const std::vector<Beat>& beats, NextChunk next_chunk,
                     const WindowOptions& windows = {}) {
  AnalysisOptions options;
  auto job = StreamJob::Create(kind, options, windows);
  EXPECT_TRUE(job.has_value());
  MetricsEngine engine(options.spectral, JobSelection(kind));
  JobOutput out;
  for (size_t i = 0; i < beats.size();) {
    const size_t n = std::min(next_chunk(), beats.size() - i);
    job->Push(std::span(beats).subspan(i, n), engine, &out);
    i += n;
  }
  job->Finish(engine, &out);
  return out;
}

JobOutput RunWhole(JobKind kind, const std::vector<Beat>& beats, const WindowOptions& w = {}) {
  return RunChunked(
      kind, beats, [&] { return beats.size() + 1; }, w);
}

void ExpectIdentical(const JobOutput& a, const JobOutput& b, const std::string& label) {
  ASSERT_EQ(a.windows.size(), b.windows.size()) << label;
  for (size_t i = 0; i < a.windows.size(); ++i) {
    const WindowResult &x = a.windows[i], &y = b.windows[i];
    ASSERT_EQ(x.index, y.index) << label;
    ASSERT_TRUE(Same(x.coverage, y.coverage)) << label;
    for (const MetricInfo& m : kMetricTable) {
      ASSERT_TRUE(Same(x.metrics.*(m.field), y.metrics.*(m.field)))
          << label << " window " << x.index << " " << m.name << ": " << x.metrics.*(m.field)
          << " vs " << y.metrics.*(m.field);
    }
  }
  ASSERT_EQ(a.beats, b.beats) << label;
}

class ChunkingTest : public ::testing::TestWithParam<JobKind> {};

TEST_P(ChunkingTest, OutputIndependentOfChunkingOnRealData) {
  // The noisy exercise recording: ectopic beats, rate changes, 40 minutes.
  const auto beats = testing::LoadBeats("rr/rhenanbartels_noisy_rri_ms.txt");
  ASSERT_GT(beats.size(), 3000u);
  const JobOutput whole = RunWhole(GetParam(), beats);
  if (GetParam() != JobKind::kIdentity) {
    ASSERT_GT(whole.windows.size(), 50u);
  }
  ExpectIdentical(whole, RunChunked(GetParam(), beats, [] { return size_t{1}; }), "one by one");
  std::mt19937 rng(42);
  std::uniform_int_distribution<size_t> size(0, 700);  // includes empty pushes
  ExpectIdentical(whole, RunChunked(GetParam(), beats, [&] { return size(rng); }), "random");
  ExpectIdentical(whole, RunChunked(GetParam(), beats, [] { return size_t{37}; }), "37s");
}

TEST(Identity, RefersToTheBatchByCountAndDigestInsteadOfEchoingIt) {
  const auto beats = testing::LoadBeats("rr/rhenanbartels_noisy_rri_ms.txt");
  const JobOutput out = RunWhole(JobKind::kIdentity, beats);
  EXPECT_EQ(out.beats.count, beats.size());
  EXPECT_EQ(out.beats.digest, BeatDigest(beats));
  EXPECT_NE(out.beats.digest, kBeatDigestSeed);
  EXPECT_TRUE(out.windows.empty());
  // Any other batch is told apart: one value a ulp off, two beats swapped, t and rr swapped within
  // a beat, one beat missing, one beat extra.
  auto differs = [&](const std::vector<Beat>& other) {
    return BeatDigest(other) != BeatDigest(beats);
  };
  auto nudged = beats;
  nudged[1234].rr_ms = std::nextafter(nudged[1234].rr_ms, 1e9);
  EXPECT_TRUE(differs(nudged));
  auto swapped = beats;
  std::swap(swapped[10], swapped[11]);
  EXPECT_TRUE(differs(swapped));
  auto crossed = beats;
  std::swap(crossed[10].t_s, crossed[10].rr_ms);
  EXPECT_TRUE(differs(crossed));
  EXPECT_TRUE(differs({beats.begin(), beats.end() - 1}));
  auto longer = beats;
  longer.push_back(beats.back());
  EXPECT_TRUE(differs(longer));
  EXPECT_EQ(BeatDigest({}), kBeatDigestSeed);
}

INSTANTIATE_TEST_SUITE_P(AllJobs, ChunkingTest, ::testing::ValuesIn(kAllJobs), [](const auto& p) {
  std::string name(JobName(p.param));
  std::erase(name, '-');
  return name;
});

TEST_P(ChunkingTest, SaveAndRestoreMidStreamChangesNothing) {
  const auto beats = testing::LoadBeats("rr/rhenanbartels_noisy_rri_ms.txt");
  const JobOutput whole = RunWhole(GetParam(), beats);
  const AnalysisOptions options;
  MetricsEngine engine(options.spectral, JobSelection(GetParam()));
  JobOutput out;
  auto job = StreamJob::Create(GetParam(), options, {}).value();
  // Stop every 500 beats, serialise, and continue from a fresh job restored from the bytes.
  for (size_t i = 0; i < beats.size(); i += 500) {
    job.Push(std::span(beats).subspan(i, std::min<size_t>(500, beats.size() - i)), engine, &out);
    std::vector<uint8_t> state;
    ByteWriter w(&state);
    job.SaveState(&w);
    ByteReader r(state);
    job = StreamJob::LoadState(&r, options, {}).value();
    ASSERT_TRUE(r.done());
  }
  job.Finish(engine, &out);
  ExpectIdentical(whole, out, "save/restore");
  EXPECT_EQ(job.report().seen, beats.size());
  // Truncated state is refused, not misread.
  std::vector<uint8_t> state;
  ByteWriter w(&state);
  job.SaveState(&w);
  for (size_t n = 0; n + 1 < state.size(); n += 13) {
    ByteReader r(std::span<const uint8_t>(state).first(n));
    EXPECT_FALSE(StreamJob::LoadState(&r, options, {}).has_value()) << n;
  }
}

// A Parallel that runs each window on the calling thread and records, at every Run, how much the
// analyzer holds: days pushed at once must not be held at once (issue 17: a 1.5 M-beat batch
// kept all its NN intervals and pending windows until its end, 23 MB more enclave memory).
class WatchingParallel : public Parallel {
 public:
  explicit WatchingParallel(const RollingAnalyzer* analyzer) : analyzer_(analyzer) {}
  size_t workers() const override { return 2; }
  void Run(size_t n, const std::function<void(size_t, size_t)>& fn) override {
    ++runs;
    most_windows = std::max(most_windows, n);
    most_held = std::max(most_held, analyzer_->held());
    for (size_t i = 0; i < n; ++i) fn(i % 2, i);
  }
  size_t runs = 0, most_windows = 0, most_held = 0;

 private:
  const RollingAnalyzer* analyzer_;
};

// Three days: a real day recorded three times over, one after the other.
std::vector<Beat> ThreeDays() {
  const auto one = testing::LoadBeats("rr/chf2db_chf201_rr_secs.txt");
  std::vector<Beat> days;
  if (one.empty()) return days;
  const double span = one.back().t_s - one.front().t_s + 1;
  for (int d = 0; d < 3; ++d) {
    for (Beat b : one) {
      b.t_s += d * span;
      days.push_back(b);
    }
  }
  return days;
}

// Runs `days` through a serial analyzer and through a parallel one that `feed` pushes to, then
// flushes it; expects the same windows, and returns what the parallel side's pool saw.
struct PoolRecord {
  size_t runs = 0, most_held = 0, most_windows = 0;
};
using Feed =
    std::function<void(RollingAnalyzer&, const WindowWorkers&, std::vector<WindowResult>*)>;
PoolRecord CompareWithSerial(const std::vector<Beat>& days, const Feed& feed) {
  AnalysisOptions options;
  auto serial = RollingAnalyzer::Create(options.cleaning, {});
  auto parallel = RollingAnalyzer::Create(options.cleaning, {});
  if (!serial || !parallel) {
    ADD_FAILURE() << "analyzers not created";
    return {};
  }
  MetricsEngine a(options.spectral, JobSelection(JobKind::kSdnn));
  MetricsEngine b(options.spectral, JobSelection(JobKind::kSdnn));
  MetricsEngine* engines[] = {&a, &b};
  WatchingParallel watch(&*parallel);
  const WindowWorkers workers{.parallel = &watch, .engines = engines};
  std::vector<WindowResult> expected, got;
  serial->Push(days, a, &expected);
  feed(*parallel, workers, &got);
  parallel->Flush(workers, &got);
  EXPECT_EQ(got.size(), expected.size());
  for (size_t i = 0; i < std::min(got.size(), expected.size()); ++i) {
    if (got[i].index != expected[i].index ||
        !Same(got[i].metrics.sdnn_ms, expected[i].metrics.sdnn_ms)) {
      ADD_FAILURE() << "window " << i << " differs from the serial run";
      break;
    }
  }
  // A Flush with nothing pending runs nothing.
  const size_t runs = watch.runs;
  parallel->Flush(workers, &got);
  EXPECT_EQ(watch.runs, runs);
  return {.runs = watch.runs, .most_held = watch.most_held, .most_windows = watch.most_windows};
}

TEST(Rolling, AParallelPushOfDaysHoldsAboutOnePieceAtATime) {
  const auto day = ThreeDays();
  ASSERT_GT(day.size(), 4 * RollingAnalyzer::kParallelPieceBeats);
  const PoolRecord pool =
      CompareWithSerial(day, [&](RollingAnalyzer& r, const WindowWorkers& workers,
                                 std::vector<WindowResult>* out) { r.Push(day, workers, out); });
  EXPECT_GE(pool.runs, day.size() / RollingAnalyzer::kParallelPieceBeats);
  // Compaction keeps at most about two pieces, plus one window's intervals (a few hundred beats).
  EXPECT_LE(pool.most_held, 2 * RollingAnalyzer::kParallelPieceBeats + 1000);
  EXPECT_LE(pool.most_windows, RollingAnalyzer::kParallelPieceBeats / 10);
}

// The enclave pushes a batch as its 256 KiB segments (16384 beats) are authenticated: the windows
// must still be computed one pool run per piece, not one per push (issue 17: the enclave paid four
// pool runs where vanilla, pushing the batch whole, paid one), and the output must not depend on
// how the beats were cut.
TEST(Rolling, ShortParallelPushesShareAPoolRunPerPiece) {
  const auto day = ThreeDays();
  ASSERT_GT(day.size(), 4 * RollingAnalyzer::kParallelPieceBeats);
  size_t pushes = 0;
  const PoolRecord pool = CompareWithSerial(
      day, [&](RollingAnalyzer& r, const WindowWorkers& workers, std::vector<WindowResult>* out) {
        for (size_t at = 0, n = 1000; at < day.size(); at += n, n = n % 20000 + 3001) {
          r.Push(std::span(day).subspan(at, std::min(n, day.size() - at)), workers, out);
          ++pushes;
        }
      });
  ASSERT_GT(pushes, 3 * (day.size() / RollingAnalyzer::kParallelPieceBeats));
  // One run per whole piece pushed, and one for the rest at Flush.
  EXPECT_EQ(pool.runs, day.size() / RollingAnalyzer::kParallelPieceBeats + 1);
  EXPECT_LE(pool.most_held, RollingAnalyzer::kParallelPieceBeats + 1000);
}

TEST(Rolling, SdnnJobAgreesWithFullJob) {
  const auto beats = testing::LoadBeats("rr/mitdb_100_rr.csv");
  const JobOutput sdnn = RunWhole(JobKind::kSdnn, beats);
  const JobOutput full = RunWhole(JobKind::kHrvFull, beats);
  ASSERT_EQ(sdnn.windows.size(), full.windows.size());
  for (size_t i = 0; i < sdnn.windows.size(); ++i) {
    EXPECT_TRUE(Same(sdnn.windows[i].metrics.sdnn_ms, full.windows[i].metrics.sdnn_ms));
    EXPECT_TRUE(std::isnan(sdnn.windows[i].metrics.lf_ms2));  // not computed by the sdnn job
  }
}

TEST(Rolling, WindowsAlignToAbsoluteTimeWhateverTheStart) {
  // Two streams of the same rhythm, one starting 1000 s later: shared windows must agree.
  std::vector<Beat> a, b;
  double t = 0;
  for (int i = 0; i < 4000; ++i) {
    const double rr = 800 + 40 * std::sin(i * 0.3) + 15 * std::sin(i * 0.05);
    t += rr / 1000;
    a.push_back({t, rr});
    if (t >= 1000) b.push_back({t, rr});
  }
  const JobOutput ra = RunWhole(JobKind::kHrvFull, a);
  const JobOutput rb = RunWhole(JobKind::kHrvFull, b);
  ASSERT_GT(rb.windows.size(), 20u);
  size_t matched = 0, later = 0;
  for (const WindowResult& wb : rb.windows) {
    EXPECT_EQ(std::fmod(wb.t_start, 30.0), 0.0);
    // Windows starting before b's first beat are partial in b (reported when >= 85 % covered).
    if (wb.t_start < 1000) continue;
    ++later;
    for (const WindowResult& wa : ra.windows) {
      if (wa.index != wb.index) continue;
      EXPECT_TRUE(Same(wa.metrics.sdnn_ms, wb.metrics.sdnn_ms));
      EXPECT_TRUE(Same(wa.metrics.lf_ms2, wb.metrics.lf_ms2));
      ++matched;
    }
  }
  EXPECT_EQ(matched, later);
  EXPECT_GT(later, 20u);
  // b starts at 1000 s: [960, 1260) holds 260 s of beats (87 %) and is reported, [930, 1230) is
  // not.
  EXPECT_EQ(rb.windows.front().t_start, 960.0);
}

TEST(Rolling, CoverageRuleSuppressesEdgeAndGapWindows) {
  std::vector<Beat> beats;
  double t = 0;
  auto run = [&](double until) {
    while (t < until) {
      t += 1.0;
      beats.push_back({t, 1000});
    }
  };
  run(900);
  t = 2000;  // a 1100 s gap: longer than a window
  run(2900);
  const JobOutput out = RunWhole(JobKind::kSdnn, beats);
  ASSERT_FALSE(out.windows.empty());
  for (const WindowResult& w : out.windows) {
    EXPECT_GE(w.coverage, 0.85);
    const bool before_gap = w.t_end <= 900 + 0.85 * 300 + 1;
    const bool after_gap = w.t_start >= 2000 - 0.15 * 300 - 1;
    EXPECT_TRUE(before_gap || after_gap) << "window over the gap reported: " << w.t_start;
    EXPECT_EQ(w.metrics.sdnn_ms, 0.0);  // constant RR
  }
  // The first covered window is [-30, 270) (269 beats of 1 s: 90 %); the last is [2640, 2940),
  // whose 261 beats still cover 87 %.
  EXPECT_EQ(out.windows.front().t_start, -30.0);
  EXPECT_EQ(out.windows.back().t_end, 2940.0);
}

TEST(Rolling, DegenerateInputsGiveDefinedResults) {
  const AnalysisOptions options;
  MetricsEngine engine(options.spectral, options.select);
  auto job = StreamJob::Create(JobKind::kHrvFull, options, {});
  ASSERT_TRUE(job.has_value());
  JobOutput out;
  // Empty input.
  job->Push({}, engine, &out);
  job->Finish(engine, &out);
  EXPECT_TRUE(out.windows.empty());

  const double nan = std::numeric_limits<double>::quiet_NaN();
  const double inf = std::numeric_limits<double>::infinity();
  std::vector<Beat> bad = {{1, 800}, {2, nan},   {nan, 800}, {3, inf}, {4, -800}, {5, 0},
                           {6, 800}, {5.5, 800}, {6, 800},   {7, 100}, {8, 5000}, {9, 800}};
  auto job2 = StreamJob::Create(JobKind::kHrvFull, options, {});
  job2->Push(bad, engine, &out);
  job2->Finish(engine, &out);
  const CleaningReport r = job2->report();
  EXPECT_EQ(r.seen, bad.size());
  EXPECT_EQ(r.invalid, 5u);
  EXPECT_EQ(r.time_order, 2u);
  EXPECT_EQ(r.range, 2u);
  EXPECT_EQ(r.accepted, 3u);
  EXPECT_EQ(r.removed() + r.accepted, r.seen);
  EXPECT_TRUE(out.windows.empty());  // 3 beats cannot cover 85 % of 5 minutes
}

TEST(Rolling, InvalidOptionsAreRefusedWithAReason) {
  auto job = StreamJob::Create(JobKind::kSdnn, {}, WindowOptions{.window_s = 0});
  ASSERT_FALSE(job.has_value());
  EXPECT_EQ(job.error().code(), Error::Code::kInvalidArgument);
  job = StreamJob::Create(JobKind::kSdnn, {}, WindowOptions{.step_s = -1});
  ASSERT_FALSE(job.has_value());
  AnalysisOptions o;
  o.spectral.noverlap = 256;
  job = StreamJob::Create(JobKind::kHrvBands, o, {});
  ASSERT_FALSE(job.has_value());
  EXPECT_EQ(job.error().code(), Error::Code::kInvalidArgument);
}

// Issue 11, item 1: a beat time of 1e25 once overflowed the window index and looped ~2^64 times.
// Beats outside the limits (types.h) are invalid beats now: counted, never analysed, and the
// windows are exactly those of the stream without them.
TEST(Rolling, BeatsOutsideTheLimitsAreCountedInvalidAndChangeNothing) {
  auto clean = testing::LoadBeats("rr/rhenanbartels_exercise_rri_ms.txt");
  clean.resize(1500);
  std::vector<Beat> hostile;
  const std::vector<Beat> bad = {{1e25, 800},
                                 {-1e25, 800},
                                 {1e21, 800},
                                 {kMaxBeatTimeS * 2, 800},
                                 {std::nan(""), 800},
                                 {1e308, 800},
                                 {-std::numeric_limits<double>::infinity(), 800}};
  for (size_t i = 0; i < clean.size(); ++i) {
    hostile.push_back(clean[i]);
    if (i % 200 == 100) {
      hostile.insert(hostile.end(), bad.begin(), bad.end());
      hostile.push_back({clean[i].t_s + 0.1, kMaxRrMs * 10});  // RR past the limit
    }
  }
  for (JobKind kind : {JobKind::kSdnn, JobKind::kHrvBands}) {
    const JobOutput want = RunWhole(kind, clean);
    ASSERT_GT(want.windows.size(), 10u);
    const JobOutput got = RunChunked(kind, hostile, [] { return size_t{37}; });
    ExpectIdentical(got, want, "hostile beats");
    auto job = StreamJob::Create(kind, {}, {}).value();
    MetricsEngine engine(SpectralOptions{}, JobSelection(kind));
    JobOutput out;
    job.Push(hostile, engine, &out);
    EXPECT_EQ(job.report().invalid, (bad.size() + 1) * 7);  // at i = 100, 300, ..., 1300
  }
}

// Regression: beat times and RR intervals are independent fields, and only the times' order was
// checked. A sensor sending beats a microsecond apart, each with a normal RR, made the open windows
// hold every one of them (16 bytes a beat, without end: the enclave's memory, then its checkpoint's
// cap). A beat closer than kMinBeatGapS to the previous valid one is refused now (time_order), so
// a window holds at most window / kMinBeatGapS + 1 beats; real recordings lose none.
TEST(Rolling, BeatsCloserThanAnyHeartBeatsAreRefusedSoAWindowStaysBounded) {
  std::vector<Beat> dense(2'000'000);
  for (size_t i = 0; i < dense.size(); ++i) {
    dense[i] = {1000 + static_cast<double>(i) * 1e-6, 800};  // 2 s of beats, 800 ms RR each
  }
  for (bool cleaning : {false, true}) {
    auto rolling = RollingAnalyzer::Create({.enabled = cleaning}, {}).value();
    MetricsEngine engine(SpectralOptions{}, JobSelection(JobKind::kSdnn));
    std::vector<WindowResult> out;
    rolling.Push(dense, engine, &out);
    EXPECT_LE(rolling.held(), static_cast<size_t>(2 / kMinBeatGapS) + 1) << cleaning;
    EXPECT_EQ(rolling.report().accepted, rolling.held()) << cleaning;
    EXPECT_EQ(rolling.report().time_order, dense.size() - rolling.report().accepted) << cleaning;
  }
  for (const char* file :
       {"rr/chf2db_chf201_rr_secs.txt", "rr/physionet_rr_healthy_subjects_007_ms.txt",
        "rr/rhenanbartels_exercise_rri_ms.txt", "rr/rhenanbartels_noisy_rri_ms.txt",
        "rr/mitdb_105_rr.csv"}) {
    auto rolling = RollingAnalyzer::Create({.enabled = false}, {}).value();
    MetricsEngine engine(SpectralOptions{}, JobSelection(JobKind::kSdnn));
    std::vector<WindowResult> out;
    const auto beats = testing::LoadBeats(file);
    ASSERT_GT(beats.size(), 1000u) << file;
    rolling.Push(beats, engine, &out);
    EXPECT_EQ(rolling.report().time_order, 0u) << file;
    EXPECT_EQ(rolling.report().accepted, beats.size()) << file;
  }
}

// Checkpoints size their parts by StreamJob::kMaxStateBytes at compile time (the enclave's
// checkpoint call carries at most 1 GiB): the densest stream the limits allow, in the longest
// window, saves no more than that, and about that much (the bound is not loose).
TEST(Rolling, TheDensestLongestWindowSavesNoMoreThanTheStatedBound) {
  AnalysisOptions analysis;
  analysis.cleaning.enabled = false;
  auto job = StreamJob::Create(JobKind::kSdnn, analysis,
                               {.window_s = kMaxWindowS, .step_s = kMaxWindowS / 100})
                 .value();
  MetricsEngine engine(SpectralOptions{}, JobSelection(JobKind::kSdnn));
  JobOutput out;
  std::vector<Beat> piece;
  // A hair over kMinBeatGapS apart: i * 0.1 can round a gap below it, refused as too close.
  const double gap = kMinBeatGapS * (1 + 1e-7);
  const auto beats = static_cast<int64_t>(kMaxWindowS / gap);
  for (int64_t i = 0; i < beats; ++i) {
    piece.push_back({static_cast<double>(i) * gap, 100});
    if (piece.size() == 1 << 20 || i + 1 == beats) {
      job.Push(piece, engine, &out);
      piece.clear();
    }
  }
  std::vector<uint8_t> state;
  ByteWriter w(&state);
  job.SaveState(&w);
  EXPECT_LE(state.size(), StreamJob::kMaxStateBytes);
  EXPECT_GE(state.size(), StreamJob::kMaxStateBytes * 99 / 100);
}

TEST(Rolling, WindowOptionsOutsideTheirLimitsAreRefused) {
  const double nan = std::nan("");
  for (const WindowOptions& w :
       {WindowOptions{.window_s = 300, .step_s = 1e-9},
        WindowOptions{.window_s = 300, .step_s = 1e-300}, WindowOptions{.window_s = 1e308},
        WindowOptions{.window_s = nan}, WindowOptions{.window_s = 300, .step_s = nan},
        WindowOptions{.window_s = 300, .step_s = 0},
        WindowOptions{.window_s = kMaxWindowS, .step_s = kMinStepS},
        WindowOptions{.window_s = 0.5}}) {
    auto job = StreamJob::Create(JobKind::kSdnn, {}, w);
    EXPECT_FALSE(job.has_value()) << w.window_s << " / " << w.step_s;
    if (!job) {
      EXPECT_EQ(job.error().code(), Error::Code::kInvalidArgument);
    }
  }
  EXPECT_TRUE(StreamJob::Create(JobKind::kSdnn, {}, {.window_s = 300, .step_s = 0.05}));
}

TEST(Rolling, TwentyFourHourRecordStaysAccurate) {
  // 24 h with epoch-sized timestamps: a one-pass variance would lose most digits here.
  auto beats = testing::LoadBeats("rr/chf2db_chf201_rr_secs.txt", "s");
  ASSERT_GT(beats.size(), 100000u);
  for (Beat& b : beats) b.t_s += 1.7e9;
  const JobOutput out = RunChunked(JobKind::kSdnn, beats, [] { return size_t{1000}; });
  ASSERT_GT(out.windows.size(), 2500u);
  for (const WindowResult& w : out.windows) {
    ASSERT_TRUE(std::isfinite(w.metrics.sdnn_ms));
    ASSERT_GE(w.metrics.sdnn_ms, 0);
    ASSERT_LT(w.metrics.sdnn_ms, 500);
  }
}

}  // namespace
}  // namespace medstream::hrv
