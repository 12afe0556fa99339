#include "adapters/recording/recording.h"

#include <gtest/gtest.h>

namespace medstream::recording {
namespace {

TEST(Recording, RrFileTimesAreRunningSum) {
  auto r = ParseRecording("# header comment\n800\n\n810.5\r\n790\n", "x.txt", {});
  ASSERT_TRUE(r.has_value()) << r.error().message();
  ASSERT_EQ(r->beats.size(), 3u);
  EXPECT_DOUBLE_EQ(r->beats[0].t_s, 0.8);
  EXPECT_DOUBLE_EQ(r->beats[1].t_s, 1.6105);
  EXPECT_DOUBLE_EQ(r->beats[2].rr_ms, 790);
}

TEST(Recording, SecondsDetectedByMagnitudeOrForced) {
  auto r = ParseRecording("0.8\n0.81\n", "x", {});
  ASSERT_TRUE(r.has_value());
  EXPECT_DOUBLE_EQ(r->beats[1].rr_ms, 810);
  ReadOptions ms;
  ms.unit = Unit::kMs;
  r = ParseRecording("0.8\n0.81\n", "x", ms);
  EXPECT_DOUBLE_EQ(r->beats[1].rr_ms, 0.81);
}

TEST(Recording, CsvColumnsDetectedAndUnitFromName) {
  auto r = ParseRecording("beat_time_s,\"nn_s\",label\n1.0,0.8,N\n1.81,0.81,N\n", "x.csv", {});
  ASSERT_TRUE(r.has_value()) << r.error().message();
  ASSERT_EQ(r->beats.size(), 2u);
  EXPECT_DOUBLE_EQ(r->beats[1].t_s, 1.81);
  EXPECT_DOUBLE_EQ(r->beats[1].rr_ms, 810);
  EXPECT_NE(r->source.find("beat_time_s"), std::string::npos);
}

TEST(Recording, CsvTimeOnlyDerivesIntervals) {
  auto r = ParseRecording("time\n10\n10.8\n11.6\n", "x.csv", {});
  ASSERT_TRUE(r.has_value());
  ASSERT_EQ(r->beats.size(), 2u);
  EXPECT_NEAR(r->beats[0].rr_ms, 800, 1e-9);
  r = ParseRecording("time\n10\n", "one.csv", {});
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), Error::Code::kCorrupt);
}

TEST(Recording, ErrorsNameFileAndLine) {
  auto r = ParseRecording("800\n810\nabc\n", "rec.txt", {});
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().message(),
            "rec.txt line 3: 'abc' is not a number (rr format expects one RR interval per line)");
  r = ParseRecording("time,rr\n1,800\n2,8x0\n", "rec.csv", {});
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().message(), "rec.csv line 3: column 'rr' value '8x0' is not a number");
  r = ParseRecording("time,rr\n1\n", "rec.csv", {});
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), Error::Code::kCorrupt);
}

TEST(Recording, MissingColumnsAndEmptyFilesAreExplained) {
  auto r = ParseRecording("a,b\n1,2\n", "rec.csv", {});
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), Error::Code::kNotFound);
  ReadOptions named;
  named.rr_col = "ibi";
  r = ParseRecording("time,rr\n1,800\n", "rec.csv", named);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), Error::Code::kNotFound);
  r = ParseRecording("", "empty.txt", {});
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().message(), "empty.txt: empty file, no beats");
  r = ParseRecording("time,rr\n", "h.csv", {});
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), Error::Code::kCorrupt);
}

TEST(Recording, MissingFileIsAnIoError) {
  auto r = ReadRecording("/nonexistent/x.txt", {});
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), Error::Code::kIo);
  EXPECT_EQ(r.error().code(), Error::Code::kIo);
}

}  // namespace
}  // namespace medstream::recording
