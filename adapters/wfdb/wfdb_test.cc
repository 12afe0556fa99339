// WFDB records: headers, format 212 and 16 signals with their checksums, MIT annotations; against
// the repository's excerpt of MIT-BIH 119 and, when present, the five shared full records.
#include "adapters/wfdb/wfdb.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "adapters/wfdb/ecg_file.h"
#include "common/base/file.h"
#include "tests/shell.h"

namespace medstream::wfdb {
namespace {

namespace fs = std::filesystem;
const std::string kExcerpt = MEDSTREAM_TEST_DATA_DIR "/wfdb/119_3min";
const std::string kShared = MEDSTREAM_SHARED_DATA_DIR "/wfdb/mitdb";

TEST(WfdbHeader, ParsesRecordAndSignalLines) {
  auto h = ParseHeader(
      "101 2 360 650000\n101.dat 212 200 11 1024 955 29832 0 MLII\n"
      "101.dat 212 200(1000)/uV 11 1024 992 19589 0 V1 lead\n# comment\n",
      "t.hea");
  ASSERT_TRUE(h) << h.error().message();
  EXPECT_EQ(h->record, "101");
  EXPECT_EQ(h->fs, 360);
  EXPECT_EQ(h->samples, 650000);
  ASSERT_EQ(h->signals.size(), 2u);
  EXPECT_EQ(h->signals[0].baseline, 1024);  // defaults to the ADC zero
  EXPECT_EQ(h->signals[0].checksum, 29832);
  EXPECT_EQ(h->signals[0].description, "MLII");
  EXPECT_EQ(h->signals[1].baseline, 1000);
  EXPECT_EQ(h->signals[1].units, "uV");
  EXPECT_EQ(h->signals[1].description, "V1 lead");
}

TEST(WfdbHeader, RefusesWhatItCannotReadClearly) {
  for (const char* bad : {"",                             // nothing
                          "r/3 2 360\n",                  // multi-segment
                          "r 2 360\nr.dat 212\n",         // one signal line of two
                          "r 1 360\nr.dat 310\n",         // format
                          "r 1 -5\nr.dat 16\n",           // frequency
                          "r 1 360\n../etc/passwd 16\n",  // a file elsewhere
                          "r 1 360\nr.dat 16 abc\n",      // gain
                          "r 100000 360\n"}) {            // signal count
    auto h = ParseHeader(bad, "bad.hea");
    EXPECT_FALSE(h.has_value()) << bad;
  }
}

TEST(WfdbSignals, Format212And16DecodeAndAreChecked) {
  // Two signals in format 212: samples (1, -1), (2047, -2048) packed in 3 bytes each pair.
  const std::vector<uint8_t> f212 = {0x01, 0xF0, 0xFF, 0xFF, 0x87, 0x00};
  auto h = ParseHeader(
      "r 2 360 2\nr.dat 212 200 12 0 1 2048 0 a\nr.dat 212 200 12 0 -1 -2049 0 b\n", "r.hea");
  ASSERT_TRUE(h);
  auto s = DecodeSignals(*h, f212, "r.dat");
  ASSERT_TRUE(s) << s.error().message();
  EXPECT_EQ((*s)[0], (std::vector<int>{1, 2047}));
  EXPECT_EQ((*s)[1], (std::vector<int>{-1, -2048}));
  // A checksum that does not match, an initial value that does not, a short file.
  auto wrong = ParseHeader(
      "r 2 360 2\nr.dat 212 200 12 0 1 2047 0 a\nr.dat 212 200 12 0 -1 -2049 0 b\n", "r.hea");
  EXPECT_EQ(DecodeSignals(*wrong, f212, "r.dat").error().code(), Error::Code::kCorrupt);
  auto initial = ParseHeader(
      "r 2 360 2\nr.dat 212 200 12 0 5 2048 0 a\nr.dat 212 200 12 0 -1 -2049 0 b\n", "r.hea");
  EXPECT_EQ(DecodeSignals(*initial, f212, "r.dat").error().code(), Error::Code::kCorrupt);
  EXPECT_FALSE(DecodeSignals(*h, std::span(f212).first(3), "r.dat").has_value());
  // Format 16, little-endian.
  auto h16 = ParseHeader("r 1 500\nr.dat 16 100 16 0 -2 1\n", "r.hea");
  ASSERT_TRUE(h16);
  const std::vector<uint8_t> f16 = {0xFE, 0xFF, 0x03, 0x00};
  auto s16 = DecodeSignals(*h16, f16, "r.dat");
  ASSERT_TRUE(s16) << s16.error().message();
  EXPECT_EQ((*s16)[0], (std::vector<int>{-2, 3}));
}

TEST(WfdbRecord, TheExcerptReproducesItsChecksumsAndInitialValues) {
  auto r = ReadRecord(kExcerpt + ".hea");
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_EQ(r->header.signals.size(), 2u);
  EXPECT_EQ(r->samples[0].size(), 64800u);
  EXPECT_DOUBLE_EQ(r->Physical(0, 0), (825 - 1024) / 200.0);
}

TEST(WfdbRecord, TheSharedRecordsReproduceTheirChecksums) {
  if (!fs::exists(kShared)) GTEST_SKIP() << "shared data absent";
  for (const char* rec : {"101", "106", "119", "208", "233"}) {
    auto full = ReadRecord(kShared + "/" + rec);
    ASSERT_TRUE(full) << rec << ": " << full.error().message();
    EXPECT_EQ(full->samples[1].size(), 650000u) << rec;
  }
}

TEST(WfdbRecord, ADamagedSignalFileIsRefused) {
  const std::string dir = ::testing::TempDir() + "/wfdb-damaged";
  fs::create_directories(dir);
  fs::copy_file(kExcerpt + ".hea", dir + "/119_3min.hea", fs::copy_options::overwrite_existing);
  auto bytes = ReadFileBytes(kExcerpt + ".dat").value();
  bytes[1000] ^= 0x01;
  ASSERT_TRUE(WriteFileAtomic(dir + "/119_3min.dat", bytes));
  auto r = ReadRecord(dir + "/119_3min");
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), Error::Code::kCorrupt);
  bytes.resize(bytes.size() - 30);  // short
  ASSERT_TRUE(WriteFileAtomic(dir + "/119_3min.dat", bytes));
  EXPECT_FALSE(ReadRecord(dir + "/119_3min").has_value());
  fs::remove_all(dir);
}

std::string Rows(const std::vector<Annotation>& anns) {
  std::string out;
  for (const Annotation& a : anns) {
    out += std::to_string(a.sample) + "\t" + a.symbol + "\t" + std::to_string(a.subtype) + "\t" +
           std::to_string(a.chan) + "\t" + std::to_string(a.num) + "\t" + a.aux + "\n";
  }
  return out;
}

// The excerpt's annotations, as the reference decoder (below) printed them when the excerpt was
// cut: kept in the repository, so this runs without the shared data.
TEST(WfdbAnnotations, TheExcerptEqualsItsReferenceDecoding) {
  auto anns = ParseAnnotations(ReadFileBytes(kExcerpt + ".atr").value(), "119_3min.atr");
  ASSERT_TRUE(anns) << anns.error().message();
  EXPECT_EQ(Rows(*anns), ReadFileText(kExcerpt + "_atr.tsv").value());
}

// The decoding equals the shared reference decoder (wfdb_ann_decode.py, itself checked against
// PhysioNet's rdann) field by field: sample, symbol, subtype, chan, num, aux.
TEST(WfdbAnnotations, EqualTheReferenceDecoder) {
  const std::string tool = MEDSTREAM_SHARED_DATA_DIR "/rr/tools/wfdb_ann_decode.py";
  std::vector<std::string> files = {kExcerpt + ".atr"};
  if (fs::exists(kShared)) {
    for (const char* rec : {"101", "106", "119", "208", "233"}) {
      files.push_back(kShared + "/" + rec + ".atr");
    }
  }
  if (!fs::exists(tool)) GTEST_SKIP() << "the reference decoder is absent";
  for (const std::string& f : files) {
    auto anns = ParseAnnotations(ReadFileBytes(f).value(), f);
    ASSERT_TRUE(anns) << anns.error().message();
    const auto ref = testing::Shell("python3 " + tool + " " + f);
    ASSERT_EQ(ref.exit_code, 0) << ref.out;
    EXPECT_EQ(Rows(*anns), ref.out) << f;
  }
}

TEST(WfdbAnnotations, RefusesGarbageWithItsOffset) {
  // Code 15 is unused; an AUX running past the end; a SKIP cut short.
  EXPECT_FALSE(ParseAnnotations(std::vector<uint8_t>{0x05, 15 << 2}, "a").has_value());
  EXPECT_FALSE(ParseAnnotations(std::vector<uint8_t>{0x10, 63 << 2, 'a'}, "a").has_value());
  EXPECT_FALSE(ParseAnnotations(std::vector<uint8_t>{0x00, 59 << 2, 0x01}, "a").has_value());
  auto ok = ParseAnnotations(std::vector<uint8_t>{0x12, 1 << 2, 0x00, 0x00}, "a");
  ASSERT_TRUE(ok);
  ASSERT_EQ(ok->size(), 1u);
  EXPECT_EQ((*ok)[0].sample, 0x12);
  EXPECT_EQ((*ok)[0].symbol, 'N');
  EXPECT_TRUE((*ok)[0].IsBeat());
}

TEST(EcgFile, CsvAndWfdbGiveTheSameSignal) {
  auto w = LoadEcg(kExcerpt, 0);
  ASSERT_TRUE(w) << w.error().message();
  EXPECT_EQ(w->fs, 360);
  EXPECT_EQ(w->channel, "MLII");
  const std::string csv = ::testing::TempDir() + "/ecg-excerpt.csv";
  {
    std::ofstream out(csv);
    out << "time_s,MLII_mV\n";
    for (size_t i = 0; i < 3600; ++i) out << i / 360.0 << "," << w->samples[i] << "\n";
  }
  auto c = LoadEcg(csv, 0);
  ASSERT_TRUE(c) << c.error().message();
  EXPECT_EQ(c->fs, 360);
  ASSERT_EQ(c->samples.size(), 3600u);
  EXPECT_NEAR(c->samples[1234], w->samples[1234], 1e-9);
  auto beats = LoadReferenceBeats(kExcerpt, "atr", "");
  ASSERT_TRUE(beats);
  EXPECT_EQ(beats->size(), 197u);  // 156 N + 41 V; rhythm marks are not beats
  EXPECT_FALSE(LoadEcg(kExcerpt, 2).has_value());
  fs::remove(csv);
}

// Regression: a reference CSV's sample column was converted to int64 unchecked, so 1e30 was
// undefined behaviour (and -3 or 2.5 became sample numbers). Only whole numbers from 0 to 2^53
// are samples; anything else is refused with its line.
TEST(EcgFile, AReferenceSampleThatIsNoWholeNumberIsRefused) {
  const std::string csv = ::testing::TempDir() + "/reference.csv";
  auto load = [&](const std::string& row) {
    std::ofstream(csv) << "sample,is_beat\n10,1\n" << row << "\n";
    return LoadReferenceBeats(kExcerpt, "atr", csv);
  };
  for (const char* bad : {"1e30,1", "-3,1", "2.5,1", "9007199254740994,1", "inf,1", "x,1"}) {
    auto r = load(bad);
    ASSERT_FALSE(r) << bad;
    EXPECT_EQ(r.error().code(), Error::Code::kInvalidArgument) << bad;
  }
  auto ok = load("9007199254740992,1");
  ASSERT_TRUE(ok) << ok.error().message();
  EXPECT_EQ(*ok, (std::vector<int64_t>{10, int64_t{1} << 53}));
  fs::remove(csv);
}

}  // namespace
}  // namespace medstream::wfdb
