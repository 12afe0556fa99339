// The owner's outputs through the `medstream` executable: `export fhir` validated against the
// official FHIR R4 JSON schema (tools/web/validate-fhir.js, node), `report` rendered in headless
// Chromium, the dashboard.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
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

}  // namespace
}  // namespace medstream
