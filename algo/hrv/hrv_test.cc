// Unit tests of the HRV building blocks against properties known in closed form.
#include <gtest/gtest.h>

#include <numbers>
#include <random>

#include "algo/hrv/jobs.h"
#include "algo/hrv/metrics.h"
#include "algo/hrv/spectral.h"
#include "tests/test_data.h"

namespace medstream::hrv {
namespace {

TEST(Spline, NotAKnotReproducesCubicsExactly) {
  // A not-a-knot spline has one cubic over the first two and last two intervals, so it
  // reproduces any cubic polynomial, even on uneven knots.
  auto f = [](double x) { return 2 - 3 * x + 0.5 * x * x - 0.25 * x * x * x; };
  std::vector<double> x = {0, 0.7, 1.1, 2.0, 2.2, 3.5, 4.0, 5.3}, y;
  for (double v : x) y.push_back(f(v));
  std::vector<double> q, out(50), scratch;
  for (int i = 0; i < 50; ++i) q.push_back(5.3 * i / 49);
  InterpolateNotAKnot(x, y, q, out, &scratch);
  for (size_t i = 0; i < q.size(); ++i) EXPECT_NEAR(out[i], f(q[i]), 1e-12) << q[i];
}

TEST(Spline, TwoAndThreePointsAreLineAndParabola) {
  std::vector<double> scratch, out(3);
  const std::vector<double> q = {0, 0.5, 2};
  InterpolateNotAKnot(std::vector<double>{0, 2}, std::vector<double>{1, 5}, q, out, &scratch);
  EXPECT_DOUBLE_EQ(out[1], 2);
  InterpolateNotAKnot(std::vector<double>{0, 1, 2}, std::vector<double>{0, 1, 4}, q, out, &scratch);
  EXPECT_DOUBLE_EQ(out[1], 0.25);
  EXPECT_DOUBLE_EQ(out[2], 4);
}

TEST(Welch, SinusoidPowerLandsInItsBandAndIntegratesToVariance) {
  SpectralOptions o;
  SpectralEstimator est(o);
  // 0.1 Hz (LF) amplitude 30 and 0.25 Hz (HF) amplitude 20, sampled at 4 Hz for 10 minutes.
  std::vector<double> x(2400);
  for (size_t i = 0; i < x.size(); ++i) {
    const double t = i / 4.0;
    x[i] = 900 + 30 * std::sin(2 * std::numbers::pi * 0.1 * t) +
           20 * std::sin(2 * std::numbers::pi * 0.25 * t);
  }
  Psd psd;
  ASSERT_TRUE(est.Welch(x, &psd));
  ASSERT_EQ(psd.f.size(), 129u);
  const BandPower lf = IntegrateBand(psd, 0.04, 0.15);
  const BandPower hf = IntegrateBand(psd, 0.15, 0.4);
  EXPECT_NEAR(lf.power, 30 * 30 / 2.0, 0.05 * 450);  // variance of a sinusoid: A^2 / 2
  EXPECT_NEAR(hf.power, 20 * 20 / 2.0, 0.05 * 200);
  EXPECT_NEAR(lf.peak_hz, 0.1, 4.0 / 256);
  EXPECT_NEAR(hf.peak_hz, 0.25, 4.0 / 256);
  EXPECT_FALSE(est.Welch(std::span(x).first(255), &psd));  // shorter than one segment
}

TEST(LombScargle, AgreesWithWelchOnAnEvenlySampledSinusoid) {
  std::vector<double> t, y;
  for (int i = 0; i < 1200; ++i) {
    t.push_back(i * 0.5);
    y.push_back(25 * std::sin(2 * std::numbers::pi * 0.2 * i * 0.5));
  }
  Psd psd;
  LombScarglePsd(t, y, 1.0 / (4 * t.back()), 0.4, &psd);
  EXPECT_NEAR(IntegrateBand(psd, 0.15, 0.4).power, 25 * 25 / 2.0, 0.05 * 312.5);
}

// Quadratic sample entropy straight from the definition, to check the sorted algorithm.
double NaiveSampleEntropy(const std::vector<double>& x, int m, double r) {
  const size_t templates = x.size() - m;
  uint64_t b = 0, a = 0;
  for (size_t i = 0; i < templates; ++i) {
    for (size_t j = i + 1; j < templates; ++j) {
      bool match = true;
      for (int k = 0; k < m && match; ++k) match = std::fabs(x[i + k] - x[j + k]) <= r;
      if (!match) continue;
      ++b;
      if (std::fabs(x[i + m] - x[j + m]) <= r) ++a;
    }
  }
  return (a == 0 || b == 0) ? kNaN : -std::log(double(a) / double(b));
}

TEST(SampleEntropy, SortedCountsEqualTheQuadraticDefinition) {
  // Real RR with many ties (values are whole milliseconds) and real ectopic beats.
  const auto beats = testing::LoadBeats("rr/rhenanbartels_noisy_rri_ms.txt");
  std::vector<double> x, scratch;
  for (const Beat& b : beats) x.push_back(b.rr_ms);
  for (double r : {5.0, 20.0, 60.0}) {
    EXPECT_DOUBLE_EQ(SampleEntropy(x, 2, r, &scratch), NaiveSampleEntropy(x, 2, r)) << r;
    EXPECT_DOUBLE_EQ(SampleEntropy(x, 3, r, &scratch), NaiveSampleEntropy(x, 3, r)) << r;
  }
  EXPECT_TRUE(std::isnan(SampleEntropy(std::vector<double>{1, 2, 3}, 2, 0.5, &scratch)));
  EXPECT_TRUE(std::isnan(SampleEntropy(x, 2, 0, &scratch)));
}

// Issue 17: from kSampleEntropyTreeFrom templates on, the pairs are counted with Fenwick trees;
// the counts still equal the definition's, ties and all (whole-millisecond RR, a flat stretch).
TEST(SampleEntropy, TreeCountsEqualTheQuadraticDefinition) {
  const auto beats = testing::LoadBeats("rr/chf2db_chf201_rr_secs.txt");
  std::vector<double> x, scratch;
  for (const Beat& b : beats) {
    if (x.size() == 6000) break;
    x.push_back(std::round(b.rr_ms));
  }
  ASSERT_GT(x.size(), kSampleEntropyTreeFrom);
  for (size_t i = 100; i < 160; ++i) x[i] = 800;  // many exact ties in every coordinate
  for (double r : {0.0001, 4.0, 15.0, 0.2 * 60, 80.0}) {
    EXPECT_DOUBLE_EQ(SampleEntropy(x, 2, r, &scratch), NaiveSampleEntropy(x, 2, r)) << r;
  }
  // Values on the 128 Hz grid (the record's own, few distinct values: the grid counter) with r
  // exactly a multiple of the grid step, so differences land on r itself; then the same beats at
  // 0.01 ms, more distinct values than the grid counter takes (the general tree counter), with
  // ties.
  std::vector<double> on_grid, fine;
  for (const Beat& b : beats) {
    if (on_grid.size() == 6000) break;
    on_grid.push_back(b.rr_ms);
    fine.push_back(std::round(b.rr_ms * 100 + static_cast<double>(on_grid.size() % 7)) / 100);
  }
  for (size_t i = 300; i < 380; ++i) fine[i] = 812.5;
  for (double r : {7.8125, 15.625, 23.4375, 31.25}) {
    EXPECT_DOUBLE_EQ(SampleEntropy(on_grid, 2, r, &scratch), NaiveSampleEntropy(on_grid, 2, r))
        << r;
    EXPECT_DOUBLE_EQ(SampleEntropy(fine, 2, r, &scratch), NaiveSampleEntropy(fine, 2, r)) << r;
  }
  // Irrational-looking values and r on the edge of rounding: still the definition's counts.
  std::mt19937_64 rng(11);
  std::normal_distribution<double> g(800, 40);
  std::vector<double> y(5000);
  for (double& v : y) v = g(rng);
  for (double r : {1.5, 2.0000001, 7.77, 33.3}) {
    EXPECT_DOUBLE_EQ(SampleEntropy(y, 2, r, &scratch), NaiveSampleEntropy(y, 2, r)) << r;
  }
}

TEST(Dfa, WhiteNoiseScalesWithOneHalf) {
  std::mt19937 rng(7);
  std::normal_distribution<double> noise(800, 50);
  std::vector<double> x(20000), scratch;
  for (double& v : x) v = noise(rng);
  EXPECT_NEAR(DfaAlpha(x, 16, 64, &scratch), 0.5, 0.08);
  EXPECT_TRUE(std::isnan(DfaAlpha(std::span(x).first(127), 16, 64, &scratch)));
}

TEST(Cleaning, RangeAndEctopicRulesWithReset) {
  CleaningOptions o;
  Cleaner c(o);
  using V = Cleaner::Verdict;
  double t = 0;
  auto next = [&](double rr) { return c.Classify({t += rr / 1000, rr}); };
  EXPECT_EQ(next(800), V::kAccepted);
  EXPECT_EQ(next(250), V::kRange);
  EXPECT_EQ(next(2100), V::kRange);
  EXPECT_EQ(next(960), V::kAccepted);  // +20 % exactly is not "more than 20 %"
  EXPECT_EQ(next(600), V::kEctopic);   // premature beat ...
  EXPECT_EQ(next(1300), V::kEctopic);  // ... and its compensatory pause
  EXPECT_EQ(next(950), V::kAccepted);
  // A sustained jump: rejected four times, then accepted as the new rhythm.
  for (int i = 0; i < 4; ++i) EXPECT_EQ(next(600), V::kEctopic);
  EXPECT_EQ(next(600), V::kAccepted);
  EXPECT_EQ(next(610), V::kAccepted);
  EXPECT_EQ(c.report().ectopic, 6u);
  EXPECT_EQ(c.report().range, 2u);

  Cleaner off(CleaningOptions{.enabled = false});
  EXPECT_EQ(off.Classify({1, 5000}), V::kAccepted);
  EXPECT_EQ(off.Classify({2, 100}), V::kAccepted);
  EXPECT_EQ(off.Classify({2, 100}), V::kTimeOrder);
}

TEST(Metrics, ConstantRhythmHasZeroVariabilityAndUndefinedRatios) {
  std::vector<double> t, nn;
  for (int i = 1; i <= 600; ++i) {
    t.push_back(i * 0.75);
    nn.push_back(750);
  }
  MetricsEngine engine(SpectralOptions{}, MetricSelection{});
  const Metrics m = engine.Compute(t, nn);
  EXPECT_EQ(m.n_beats, 600);
  EXPECT_EQ(m.sdnn_ms, 0);
  EXPECT_EQ(m.rmssd_ms, 0);
  EXPECT_EQ(m.mean_hr_bpm, 80);
  EXPECT_EQ(m.hrv_triangular_index, 1);
  EXPECT_EQ(m.lf_ms2, 0);
  EXPECT_TRUE(std::isnan(m.lf_hf));
  EXPECT_TRUE(std::isnan(m.lf_peak_hz));
  EXPECT_TRUE(std::isnan(m.sampen));
  EXPECT_TRUE(std::isnan(m.dfa_alpha1));
}

TEST(Metrics, TinyInputsAreDefined) {
  MetricsEngine engine(SpectralOptions{}, MetricSelection{});
  Metrics m = engine.Compute({}, {});
  EXPECT_EQ(m.n_beats, 0);
  EXPECT_TRUE(std::isnan(m.mean_nn_ms));
  const std::vector<double> t = {1}, nn = {1000};
  m = engine.Compute(t, nn);
  EXPECT_EQ(m.mean_nn_ms, 1000);
  EXPECT_TRUE(std::isnan(m.sdnn_ms));
  EXPECT_TRUE(std::isnan(m.rmssd_ms));
  EXPECT_TRUE(std::isnan(m.lf_ms2));
}

TEST(Jobs, NamesRoundTripAndUnknownNamesAreExplained) {
  for (JobKind k : kAllJobs) EXPECT_EQ(*ParseJobKind(JobName(k)), k);
  auto bad = ParseJobKind("sdnn2");
  ASSERT_FALSE(bad.has_value());
  EXPECT_EQ(bad.error().code(), Error::Code::kInvalidArgument);
  EXPECT_EQ(JobMetrics(JobKind::kHrvFull).size(), kMetricTable.size());
  for (JobKind k : kAllJobs) {
    for (const MetricInfo* m : JobMetrics(k)) ASSERT_NE(m, nullptr);
  }
}

TEST(MetricTable, NamesAreUniqueAndFindable) {
  for (const MetricInfo& m : kMetricTable) {
    EXPECT_EQ(FindMetric(m.name), &m);
  }
  EXPECT_EQ(FindMetric("nope"), nullptr);
}

}  // namespace
}  // namespace medstream::hrv
