// results: reading the owner's result files back (both sources), bounded and forgiving of damage.
#include "owner/results/results.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>

#include "common/base/file.h"

namespace medstream::results {
namespace {

namespace fs = std::filesystem;

class ResultsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("results-test-" + std::to_string(getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  fs::path dir_;
};

TEST(IsoUtcTest, FormatsUtcWithMillisecondsOnlyWhenThereAreAny) {
  EXPECT_EQ(IsoUtc(0), "1970-01-01T00:00:00Z");
  EXPECT_EQ(IsoUtc(1764672000), "2025-12-02T10:40:00Z");
  EXPECT_EQ(IsoUtc(1764672000.25), "2025-12-02T10:40:00.250Z");
  EXPECT_EQ(IsoUtc(-1), "1969-12-31T23:59:59Z");
  EXPECT_EQ(IsoUtc(1e10), "2286-11-20T17:46:40Z");  // hrv's beat-time limit
  EXPECT_EQ(IsoUtc(NAN), "");
  EXPECT_EQ(IsoUtc(1e300), "");
}

TEST(ParseLineTest, ReadsGatewayAndHrvLinesAndRefusesOthers) {
  auto w =
      ParseLine(R"({"seq":3,"job":"sdnn","t_start":30,"t_end":330,"coverage":0.9,"n_beats":400,)"
                R"("mean_nn_ms":800,"sdnn_ms":42.5,"lost_beats":2})");
  ASSERT_TRUE(w.has_value()) << w.error().message();
  EXPECT_EQ(w->job, "sdnn");
  EXPECT_EQ(w->seq, 3u);
  EXPECT_EQ(w->lost_beats, 2u);
  EXPECT_DOUBLE_EQ(w->metrics.sdnn_ms, 42.5);
  EXPECT_TRUE(std::isnan(w->metrics.rmssd_ms));  // not in the line: no value, not 0
  auto h = ParseLine(R"({"t_start":0,"t_end":300,"coverage":1,"rmssd_ms":null,"lf_hf":1.5})");
  ASSERT_TRUE(h.has_value());
  EXPECT_EQ(h->job, "");
  EXPECT_TRUE(std::isnan(h->metrics.rmssd_ms));
  EXPECT_DOUBLE_EQ(h->metrics.lf_hf, 1.5);
  EXPECT_EQ(ParseLine(R"({"seq":4,"windows":0})").error().code(), Error::Code::kNotFound);
  for (const char* bad : {"", "{", "[]", "42", R"({"t_start":"x","t_end":1})",
                          R"({"t_start":10,"t_end":5})", R"({"t_start":1e400,"t_end":5})"}) {
    EXPECT_EQ(ParseLine(bad).error().code(), Error::Code::kCorrupt) << bad;
  }
}

TEST_F(ResultsTest, ADamagedFileIsReadAroundItsBadLines) {
  const std::string lines =
      R"({"seq":1,"job":"sdnn","t_start":0,"t_end":300,"coverage":1,"sdnn_ms":40})"
      "\n{\"seq\":2,\"job\":\"sdnn\",\"t_st\n"  // a crash mid-append
      "\n" +
      std::string(kMaxLineBytes + 1, ' ') + "\n" +
      R"({"seq":2,"windows":0})"
      "\n"
      R"({"seq":3,"job":"sdnn","t_start":30,"t_end":330,"coverage":1,"sdnn_ms":41})";
  ASSERT_TRUE(WriteFileAtomic((dir_ / "u1.jsonl").string(), lines));
  auto r = ReadUser(dir_.string(), "u1");
  ASSERT_TRUE(r.has_value()) << r.error().message();
  ASSERT_EQ(r->windows.size(), 2u);
  EXPECT_EQ(r->malformed_lines, 2u);
  EXPECT_DOUBLE_EQ(r->windows[1].metrics.sdnn_ms, 41);
  EXPECT_EQ(ReadUser(dir_.string(), "nobody").error().code(), Error::Code::kNotFound);
  EXPECT_EQ(ReadUser(dir_.string(), "../etc/passwd").error().code(), Error::Code::kInvalidArgument);
}

TEST_F(ResultsTest, LatestWindowMergesEveryJobOfTheLastWindow) {
  const std::string lines =
      R"({"seq":1,"job":"sdnn","t_start":0,"t_end":300,"coverage":1,"sdnn_ms":40})"
      "\n"
      R"({"seq":1,"job":"hrv-bands","t_start":0,"t_end":300,"coverage":1,"lf_hf":2})"
      "\n"
      R"({"seq":2,"job":"hrv-bands","t_start":30,"t_end":330,"coverage":1,"lf_hf":3})"
      "\n"
      R"({"seq":2,"job":"sdnn","t_start":30,"t_end":330,"coverage":1,"sdnn_ms":50,"lost_beats":4})"
      "\n";
  ASSERT_TRUE(WriteFileAtomic((dir_ / "u2.jsonl").string(), lines));
  ASSERT_TRUE(WriteFileAtomic((dir_ / "u1.jsonl").string(), lines));
  ASSERT_TRUE(WriteFileAtomic((dir_ / "u1.sdnn.csv").string(), "not a jsonl file"));
  auto all = Load(dir_.string());
  ASSERT_TRUE(all.has_value()) << all.error().message();
  ASSERT_EQ(all->size(), 2u);
  EXPECT_EQ((*all)[0].user, "u1");
  const Latest latest = LatestWindow((*all)[0].windows);
  ASSERT_TRUE(latest.ok);
  EXPECT_EQ(latest.t_start, 30);
  EXPECT_DOUBLE_EQ(latest.metrics.sdnn_ms, 50);
  EXPECT_DOUBLE_EQ(latest.metrics.lf_hf, 3);
  EXPECT_EQ(latest.lost_beats, 4u);
  const auto merged = MergeByWindow((*all)[0].windows);
  ASSERT_EQ(merged.size(), 2u);
  EXPECT_DOUBLE_EQ(merged[0].metrics.lf_hf, 2);
  EXPECT_DOUBLE_EQ(merged[0].metrics.sdnn_ms, 40);
  EXPECT_FALSE(LatestWindow({}).ok);

  auto one = Load((dir_ / "u2.jsonl").string(), "patient-7");
  ASSERT_TRUE(one.has_value());
  EXPECT_EQ((*one)[0].user, "patient-7");
  auto named = Load((dir_ / "u2.jsonl").string());
  EXPECT_EQ((*named)[0].user, "u2");
  fs::create_directories(dir_ / "empty");
  EXPECT_EQ(Load((dir_ / "empty").string()).error().code(), Error::Code::kNotFound);
  EXPECT_EQ(Load((dir_ / "absent").string()).error().code(), Error::Code::kNotFound);
}

TEST(LabelTest, NamesAndUnitsForPeople) {
  EXPECT_EQ(Label(*hrv::FindMetric("sdnn_ms")), "SDNN ms");
  EXPECT_EQ(Label(*hrv::FindMetric("lf_ms2")), "LF ms²");
  EXPECT_EQ(Label(*hrv::FindMetric("mean_hr_bpm")), "HR bpm");
  EXPECT_EQ(Label(*hrv::FindMetric("lf_hf")), "LF/HF");
  EXPECT_EQ(HeadlineMetrics().size(), 7u);
  for (const auto* m : HeadlineMetrics()) EXPECT_NE(m, nullptr);
}

}  // namespace
}  // namespace medstream::results
