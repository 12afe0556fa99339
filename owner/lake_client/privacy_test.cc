// Issue 13: the lake's privacy against a determined analyst, through the real executable. Each
// attack here worked before: differencing two sums, a one-query oracle telling a suppressed group
// from an empty one, grouping on a patient id, and averaging a repeated query.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "common/base/file.h"
#include "host/lake_host/lake_host.h"
#include "owner/lake_client/lake_client.h"
#include "tests/shell.h"

namespace medstream {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

class LakePrivacy : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("lake-privacy-" + std::to_string(getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    csv_ = (dir_ / "adm.csv").string();
    ASSERT_TRUE(WriteFileAtomic(csv_, lakesvc::SynthesizeAdmissions(20000, 1)));
    ASSERT_EQ(Lake("init").exit_code, 0);
    analyst_ = (dir_ / "analyst.pem").string();
    ASSERT_EQ(Lake("keygen --out " + analyst_).exit_code, 0);
  }
  void TearDown() override { fs::remove_all(dir_); }
  testing::ShellResult Lake(const std::string& args, const std::string& identity = "") {
    return testing::Shell(std::string(MEDSTREAM_BINARY) + " lake --dir " +
                          (dir_ / "lake").string() +
                          (identity.empty() ? "" : " --identity " + identity) + " " + args);
  }
  static std::string Q(const std::string& sql) {
    std::string out = "'";
    for (char c : sql) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
    return out + "'";
  }
  // Ingests the admissions with `flags` and grants the analyst.
  void Ingest(const std::string& flags) {
    const auto r = Lake("ingest --dataset admissions " + flags + " " + csv_);
    ASSERT_EQ(r.exit_code, 0) << r.out;
    ASSERT_EQ(
        Lake("grant --key " + analyst_ + ".pub --name eve --role analyst --dataset admissions")
            .exit_code,
        0);
  }
  // One number from an analyst's (or the owner's) JSON answer.
  double Number(const std::string& sql, const std::string& identity,
                const std::string& flags = "") {
    const auto r = Lake("query --json " + flags + " " + Q(sql), identity);
    EXPECT_EQ(r.exit_code, 0) << sql << "\n" << r.out;
    if (r.exit_code != 0) return NAN;
    const json j = json::parse(r.out);
    return j["rows"].empty() ? NAN : j["rows"][0][0].get<double>();
  }
  fs::path dir_;
  std::string csv_, analyst_;
  // Patient P0000001 (seed 1): 2023-06-11, 51, M, icu, I50, systolic 131.
  const std::string kQuasi = "ward = 'icu' AND sex = 'M' AND diagnosis = 'I50'";
  const std::string kHim = "age = 51 AND admission_date = '2023-06-11'";
};

TEST_F(LakePrivacy, ExactDatasetsRefuseDifferencingIdentifiersAndTheOracle) {
  Ingest("--privacy exact --attributes patient_id:id");
  // The owner still reads its own rows, and the patient is who we think.
  EXPECT_EQ(Number("SELECT systolic_bp FROM admissions WHERE patient_id = 'P0000001'", ""), 131);
  // Direct identifiers: not in WHERE, not in GROUP BY, not selected.
  for (const std::string sql :
       {"SELECT SUM(systolic_bp) FROM admissions WHERE patient_id <> 'P0000001'",
        "SELECT patient_id, COUNT(*) FROM admissions GROUP BY patient_id",
        "SELECT COUNT(patient_id) FROM admissions"}) {
    EXPECT_EQ(Lake("query " + Q(sql), analyst_).exit_code,
              ExitStatus(Error::Code::kFailedPrecondition))
        << sql;
  }
  // Differencing by quasi-identifiers: the second query's rows differ from the first's by one.
  const std::string all = "SELECT SUM(systolic_bp) FROM admissions WHERE " + kQuasi;
  const double sum = Number(all, analyst_);
  EXPECT_FALSE(std::isnan(sum));
  const auto second = Lake("query " + Q(all + " AND NOT (" + kHim + ")"), analyst_);
  EXPECT_EQ(second.exit_code, ExitStatus(Error::Code::kFailedPrecondition))
      << "differencing answered: " << second.out;
  // ... also when the second query comes first and through GROUP BY.
  const auto grouped = Lake("query " + Q("SELECT sex, COUNT(*) FROM admissions WHERE " + kQuasi +
                                         " AND NOT (" + kHim + ") GROUP BY sex"),
                            analyst_);
  EXPECT_EQ(grouped.exit_code, ExitStatus(Error::Code::kFailedPrecondition)) << grouped.out;
  // The one-query oracle: a true guess (a group of one, suppressed) and a false one (no group)
  // look exactly the same (asked by two analysts: one analyst asking both is refused the second,
  // as the two sets differ by one row).
  const std::string other = (dir_ / "other.pem").string();
  ASSERT_EQ(Lake("keygen --out " + other).exit_code, 0);
  ASSERT_EQ(Lake("grant --key " + other + ".pub --name mallory --role analyst --dataset admissions")
                .exit_code,
            0);
  const auto yes = Lake("query --json " + Q("SELECT sex, COUNT(*) FROM admissions WHERE " + kQuasi +
                                            " AND " + kHim + " AND systolic_bp = 131 GROUP BY sex"),
                        analyst_);
  const auto no = Lake("query --json " + Q("SELECT sex, COUNT(*) FROM admissions WHERE " + kQuasi +
                                           " AND " + kHim + " AND systolic_bp = 130 GROUP BY sex"),
                       other);
  EXPECT_EQ(yes.exit_code, 0) << yes.out;
  EXPECT_EQ(yes.out, no.out);
  EXPECT_EQ(Lake("query --json " + Q("SELECT sex, COUNT(*) FROM admissions WHERE " + kQuasi +
                                     " AND " + kHim + " AND systolic_bp = 130 GROUP BY sex"),
                 analyst_)
                .exit_code,
            ExitStatus(Error::Code::kFailedPrecondition));
}

TEST_F(LakePrivacy, DpAnswersAreNoisyWithinABudgetThatAveragingCannotOutrun) {
  Ingest(
      "--privacy dp --epsilon 0.5 --budget 5 --attributes "
      "patient_id:id,age:0..120,systolic_bp:60..250,diastolic_bp:30..150,heart_rate:30..220,"
      "bmi:10..70,length_of_stay:0..365");
  const std::string all = "SELECT SUM(systolic_bp) FROM admissions WHERE " + kQuasi;
  const std::string without = all + " AND NOT (" + kHim + ")";
  // The owner's exact answers (an owner is answered exactly, k-suppression aside).
  const double exact = Number(all, "") - Number(without, "");
  ASSERT_EQ(exact, 131);
  // The averaging attack: ask both until the budget runs out.
  std::vector<double> differences;
  for (;;) {
    const auto a = Lake("query --json " + Q(all), analyst_);
    if (a.exit_code != 0) break;
    const auto b = Lake("query --json " + Q(without), analyst_);
    if (b.exit_code != 0) break;
    const json ja = json::parse(a.out), jb = json::parse(b.out);
    EXPECT_GT(ja["differential_privacy"]["error95"][0].get<double>(), 0);
    differences.push_back(ja["rows"][0][0].get<double>() - jb["rows"][0][0].get<double>());
    ASSERT_LT(differences.size(), 10u) << "the budget never ran out";
  }
  // 5 / 0.5 = 10 queries: five pairs, then refusal.
  EXPECT_EQ(differences.size(), 5u);
  double mean = 0;
  for (double d : differences) mean += d / static_cast<double>(differences.size());
  // Each SUM carries noise of scale 250 / (0.5 / 2) = 1000: five pairs cannot pin 131 exactly.
  EXPECT_GT(std::fabs(mean - exact), 0.01) << "the patient's value came out";
  const auto refused = Lake("query " + Q("SELECT COUNT(*) FROM admissions"), analyst_);
  EXPECT_EQ(refused.exit_code, ExitStatus(Error::Code::kResourceExhausted)) << refused.out;
  // The budget is in the sealed manifest: a new process (every command is one) still sees it.
  const auto list = Lake("list", analyst_);
  EXPECT_NE(list.out.find("spent 5"), std::string::npos) << list.out;
  // Identifiers stay closed, and what has no private form here is refused.
  EXPECT_NE(Lake("query " + Q("SELECT patient_id, COUNT(*) FROM admissions GROUP BY patient_id"),
                 analyst_)
                .exit_code,
            0);
}

TEST_F(LakePrivacy, DpGroupsAreShownOnlyPastANoisyThresholdAndRollbackIsRefused) {
  Ingest("--privacy dp --epsilon 1 --budget 100 --attributes patient_id:id,systolic_bp:60..250");
  // A group of one patient (and its existence) does not come out.
  const auto one = Lake("query --json " + Q("SELECT sex, COUNT(*) FROM admissions WHERE " + kQuasi +
                                            " AND " + kHim + " GROUP BY sex"),
                        analyst_);
  ASSERT_EQ(one.exit_code, 0) << one.out;
  EXPECT_EQ(json::parse(one.out)["rows"].size(), 0u);
  // Big groups do, with answers near the truth and stated error bounds.
  const auto wards =
      Lake("query --json " + Q("SELECT ward, AVG(systolic_bp), COUNT(*) FROM admissions GROUP "
                               "BY ward"),
           analyst_);
  ASSERT_EQ(wards.exit_code, 0) << wards.out;
  const json jw = json::parse(wards.out);
  ASSERT_GE(jw["rows"].size(), 3u);
  for (const auto& row : jw["rows"]) {
    EXPECT_GT(row[1].get<double>(), 100);
    EXPECT_LT(row[1].get<double>(), 160);
  }
  EXPECT_GT(jw["differential_privacy"]["error95"][1].get<double>(), 0);
  // Unbounded columns cannot be aggregated, and MIN/MAX (one patient's value) are refused; the
  // median and the standard deviation have private forms.
  EXPECT_EQ(Lake("query " + Q("SELECT AVG(bmi) FROM admissions"), analyst_).exit_code,
            ExitStatus(Error::Code::kFailedPrecondition));
  EXPECT_EQ(Lake("query " + Q("SELECT MAX(systolic_bp) FROM admissions"), analyst_).exit_code,
            ExitStatus(Error::Code::kFailedPrecondition));
  const double median = Number("SELECT MEDIAN(systolic_bp) FROM admissions", analyst_);
  const double exact_median = Number("SELECT MEDIAN(systolic_bp) FROM admissions", "");
  EXPECT_NEAR(median, exact_median, 3);
  const double sd = Number("SELECT STDDEV(systolic_bp) FROM admissions", analyst_);
  const double exact_sd = Number("SELECT STDDEV(systolic_bp) FROM admissions", "");
  EXPECT_NEAR(sd, exact_sd, 0.1 * exact_sd);
  // A store rolled back to before a query (to refund its budget) is refused.
  const fs::path db = dir_ / "lake" / "lake.db";
  fs::copy_file(db, dir_ / "before.db");
  ASSERT_EQ(Lake("query " + Q("SELECT COUNT(*) FROM admissions"), analyst_).exit_code, 0);
  fs::copy_file(dir_ / "before.db", db, fs::copy_options::overwrite_existing);
  const auto rolled = Lake("query " + Q("SELECT COUNT(*) FROM admissions"), analyst_);
  EXPECT_EQ(rolled.exit_code, ExitStatus(Error::Code::kRolledBack)) << rolled.out;
}

}  // namespace
}  // namespace medstream
