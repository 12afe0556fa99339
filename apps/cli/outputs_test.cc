// The owner's outputs through the `medstream` executable: `export fhir` validated against the
// official FHIR R4 JSON schema (tools/web/validate-fhir.js, node), `report` rendered in headless
// Chromium, the dashboard.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>

#include "common/base/file.h"
#include "tests/shell.h"

namespace medstream {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::ordered_json;

// The output of `medstream export fhir` for a real RR recording (and a gateway-style results
// directory) validates against the FHIR R4 JSON schema; a broken copy does not (the validator
// can fail).
TEST(Outputs, FhirExportValidatesAgainstTheFhirR4JsonSchema) {
  const fs::path dir = fs::temp_directory_path() / ("fhir-test-" + std::to_string(getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir / "results");
  const std::string bin = MEDSTREAM_BINARY;
  const std::string validator = std::string(MEDSTREAM_SOURCE_DIR) + "/tools/web/validate-fhir.js";
  auto r = testing::Shell(bin + " hrv --window 300 --step 300 --json " + MEDSTREAM_TEST_DATA_DIR +
                          "/rr/physionet_rr_healthy_subjects_007_ms.txt > " +
                          (dir / "results" / "p007.jsonl").string());
  ASSERT_EQ(r.exit_code, 0) << r.out;
  const std::string out = (dir / "bundle.json").string();
  r = testing::Shell(bin + " export fhir " + (dir / "results").string() + " --out " + out);
  ASSERT_EQ(r.exit_code, 0) << r.out;
  EXPECT_EQ(fs::status(out).permissions() & fs::perms::all,
            fs::perms::owner_read | fs::perms::owner_write);
  const json bundle = json::parse(std::ifstream(out));
  ASSERT_GT(bundle["entry"].size(), 500u);
  EXPECT_EQ(bundle["entry"][0]["resource"]["subject"]["identifier"]["value"], "p007");
  r = testing::Shell("node " + validator + " " + out);
  EXPECT_EQ(r.exit_code, 0) << r.out;

  json broken = bundle;
  broken["entry"][5]["resource"]["status"] = "done";
  broken["entry"][6]["resource"]["valueQuantity"]["value"] = "41";
  ASSERT_TRUE(WriteFileAtomic((dir / "broken.json").string(), broken.dump()));
  r = testing::Shell("node " + validator + " " + (dir / "broken.json").string());
  EXPECT_EQ(r.exit_code, 1) << r.out;

  // Clear errors: an unknown metric, a missing directory.
  r = testing::Shell(bin + " export fhir " + (dir / "results").string() +
                     " --metrics sdnn_ms,bogus --out " + out);
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.out.find("bogus"), std::string::npos) << r.out;
  r = testing::Shell(bin + " export fhir " + (dir / "absent").string() + " --out " + out);
  EXPECT_NE(r.exit_code, 0);
  fs::remove_all(dir);
}

// The whole-record metrics `medstream hrv --json` prints for `recording`.
json OfflineWhole(const std::string& recording) {
  const auto r = testing::Shell(std::string(MEDSTREAM_BINARY) + " hrv --json " + recording);
  EXPECT_EQ(r.exit_code, 0) << r.out;
  return json::parse(r.out.substr(r.out.find('{')));
}

json Browse(const std::string& args) {
  const auto r =
      testing::Shell("node " + std::string(MEDSTREAM_SOURCE_DIR) + "/tools/web/browse.js " + args);
  EXPECT_EQ(r.exit_code, 0) << r.out;
  return json::parse(r.out.substr(r.out.find('{')));
}

// Issue 16: the report of a real recording (PhysioNet, healthy subject 007, 12 h), from
// `medstream hrv` results of the file, renders in headless Chromium without a console error,
// with every figure drawn, and its values equal `medstream hrv` on the same file.
TEST(Outputs, ReportOfARealRecordingRendersEveryFigureWithHrvsValues) {
  const fs::path dir = fs::temp_directory_path() / ("report-test-" + std::to_string(getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  const std::string bin = MEDSTREAM_BINARY;
  const std::string rec =
      std::string(MEDSTREAM_TEST_DATA_DIR) + "/rr/physionet_rr_healthy_subjects_007_ms.txt";
  auto r = testing::Shell(bin + " hrv --window 300 --step 60 --json " + rec + " > " +
                          (dir / "p007.jsonl").string());
  ASSERT_EQ(r.exit_code, 0) << r.out;
  const size_t windows = std::stoul(testing::Shell("wc -l < " + (dir / "p007.jsonl").string()).out);
  const std::string html = (dir / "report.html").string();
  r = testing::Shell(bin + " report " + (dir / "p007.jsonl").string() + " --beats " + rec +
                     " --out " + html);
  ASSERT_EQ(r.exit_code, 0) << r.out;
  EXPECT_EQ(fs::status(html).permissions() & fs::perms::all,
            fs::perms::owner_read | fs::perms::owner_write);
  fs::create_directories(MEDSTREAM_ARTIFACTS_DIR);
  const json page =
      Browse("file://" + html + " --screenshot " + MEDSTREAM_ARTIFACTS_DIR "/report.png");
  EXPECT_TRUE(page["errors"].empty()) << page["errors"];
  std::map<std::string, int> points;
  for (const auto& f : page["figures"]) points[f["id"]] = f["points"];
  EXPECT_GT(points["tachogram"], 50000);
  EXPECT_GT(points["psd"], 20);
  EXPECT_GT(points["poincare"], 50000);
  for (const char* trend : {"trend-hr", "trend-sdnn", "trend-rmssd", "trend-lf-hf"})
    EXPECT_EQ(points[trend], static_cast<int>(windows)) << trend;
  const json offline = OfflineWhole(rec);
  const json& shown = page["values"]["metrics-record"];
  ASSERT_EQ(shown.size(), offline.size() - 1);  // every metric; hrv adds its cleaning report
  for (const auto& [metric, value] : shown.items()) {
    if (offline[metric].is_null()) {
      EXPECT_TRUE(value.is_null()) << metric;
    } else {
      EXPECT_EQ(value.get<double>(), offline[metric].get<double>()) << metric;
    }
  }
  // The latest window's table is the last window of the file.
  const json last = json::parse(testing::Shell("tail -n 1 " + (dir / "p007.jsonl").string()).out);
  EXPECT_EQ(page["values"]["metrics-latest"]["sdnn_ms"].get<double>(),
            last["sdnn_ms"].get<double>());

  // Without beats: the tables and trends, a clear note instead of the beat figures.
  r = testing::Shell(bin + " report " + (dir / "p007.jsonl").string() + " --out " + html);
  ASSERT_EQ(r.exit_code, 0) << r.out;
  EXPECT_EQ(Browse("file://" + html)["figures"].size(), 4u);
  // A results directory needs the user; an unknown user is a clear error.
  r = testing::Shell(bin + " report " + dir.string() + " --out " + html);
  EXPECT_NE(r.exit_code, 0);
  r = testing::Shell(bin + " report " + dir.string() + " --user nobody --out " + html);
  EXPECT_NE(r.exit_code, 0);
  r = testing::Shell(bin + " report " + dir.string() + " --user p007 --out " + html);
  EXPECT_EQ(r.exit_code, 0) << r.out;
  fs::remove_all(dir);
}

}  // namespace
}  // namespace medstream
