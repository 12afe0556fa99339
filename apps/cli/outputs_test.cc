// The owner's outputs through the `medstream` executable: `export fhir` validated against the
// official FHIR R4 JSON schema (tools/web/validate-fhir.js, node), `report` rendered in headless
// Chromium, the dashboard.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>

#include <fmt/format.h>
#include <sys/wait.h>

#include "adapters/proc/proc.h"
#include "common/base/file.h"
#include "tests/shell.h"
#include "tests/wait.h"

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

std::vector<std::string> Lines(const std::string& path) {
  std::vector<std::string> out;
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}

// Issue 16: the dashboard in headless Chromium: no console error, the numbers shown for a user
// equal the result file's latest window, and the trend redraws itself when new results arrive
// (appended the way the gateway appends them); a screenshot is kept.
TEST(Outputs, DashboardShowsTheResultFilesAndUpdatesAsResultsArrive) {
  const fs::path dir = fs::temp_directory_path() / ("dash-test-" + std::to_string(getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir / "results");
  const std::string rec =
      std::string(MEDSTREAM_TEST_DATA_DIR) + "/rr/physionet_rr_healthy_subjects_007_ms.txt";
  auto r = testing::Shell(std::string(MEDSTREAM_BINARY) + " hrv --window 300 --step 60 --json " +
                          rec + " > " + (dir / "all.jsonl").string());
  ASSERT_EQ(r.exit_code, 0) << r.out;
  const auto lines = Lines((dir / "all.jsonl").string());
  ASSERT_GT(lines.size(), 400u);
  const std::string results = (dir / "results" / "p007.jsonl").string();
  std::string first;
  for (size_t i = 0; i < 300; ++i) first += lines[i] + "\n";
  ASSERT_TRUE(WriteFileAtomic(results, first));

  const int port = proc::FreeLoopbackPort();
  const pid_t board =
      proc::Spawn({MEDSTREAM_BINARY, "dashboard", (dir / "results").string(), "--http",
                   "127.0.0.1:" + std::to_string(port), "--alert-hr", "40..90"},
                  (dir / "dashboard.log").string());
  ASSERT_TRUE(proc::WaitForListener(port, 10000));
  const std::string url = "http://127.0.0.1:" + std::to_string(port);

  // The user's page, watched while 100 more windows arrive.
  fs::create_directories(MEDSTREAM_ARTIFACTS_DIR);
  const std::string ready = (dir / "ready").string(), out = (dir / "browse.json").string();
  const pid_t browser =
      proc::Spawn({"/bin/sh", "-c",
                   "node " + std::string(MEDSTREAM_SOURCE_DIR) + "/tools/web/browse.js " + url +
                       "/user/p007 --watch trend-sdnn --timeout 30 --ready " + ready +
                       " --screenshot " + MEDSTREAM_ARTIFACTS_DIR + "/dashboard-user.png > " + out},
                  (dir / "browse.log").string());
  ASSERT_TRUE(testing::WaitFor([&] { return fs::exists(ready); }, 60))
      << testing::Shell("cat " + (dir / "browse.log").string()).out;
  std::string more;
  for (size_t i = 300; i < 400; ++i) more += lines[i] + "\n";
  ASSERT_TRUE(AppendPrivateFile(results, more));
  int status = 0;
  ASSERT_EQ(waitpid(browser, &status, 0), browser);
  const json page = json::parse(ReadFileText(out).value());
  EXPECT_TRUE(page["errors"].empty()) << page["errors"];
  EXPECT_EQ(page["watched"]["before"], 300);
  EXPECT_EQ(page["watched"]["after"], 400);
  // The values shown are the latest window's in the file, to the last digit.
  const json last = json::parse(lines[399]);
  for (const char* m :
       {"mean_hr_bpm", "sdnn_ms", "rmssd_ms", "pnn50_pct", "lf_ms2", "hf_ms2", "lf_hf"}) {
    EXPECT_EQ(page["values"]["latest"][m].get<double>(), last[m].get<double>()) << m;
  }
  EXPECT_EQ(page["figures"].size(), 4u);

  // The overview: one row per user with the same numbers, and the HR alert (HR > 90 early on).
  const json overview = Browse(url + "/ --screenshot " MEDSTREAM_ARTIFACTS_DIR "/dashboard.png");
  EXPECT_TRUE(overview["errors"].empty()) << overview["errors"];
  EXPECT_EQ(overview["cells"]["p007/sdnn_ms"],
            fmt::format("{:.1f}", last["sdnn_ms"].get<double>()));
  // The API and the FHIR endpoint.
  const json users = json::parse(testing::Shell("curl -sf " + url + "/api/users").out);
  EXPECT_EQ(users["users"][0]["windows"], 400);
  const json bundle = json::parse(testing::Shell("curl -sf " + url + "/fhir/p007").out);
  EXPECT_EQ(bundle["resourceType"], "Bundle");
  EXPECT_EQ(testing::Shell("curl -s -o /dev/null -w '%{http_code}' " + url + "/user/nobody").out,
            "404");
  EXPECT_EQ(testing::Shell("curl -s -o /dev/null -w '%{http_code}' -X POST " + url + "/").out,
            "405");
  proc::Stop(board);
  fs::remove_all(dir);
}

// Bound to a non-loopback address the dashboard needs TLS and a token: without them it does not
// start; with them a request without the token is refused (401), with it served.
TEST(Outputs, DashboardOffLoopbackNeedsTlsAndATokenAndRefusesRequestsWithoutIt) {
  const fs::path dir = fs::temp_directory_path() / ("dash-tls-" + std::to_string(getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir / "results");
  ASSERT_TRUE(WriteFileAtomic(
      (dir / "results" / "u1.jsonl").string(),
      R"({"seq":1,"job":"sdnn","t_start":0,"t_end":300,"coverage":1,"sdnn_ms":42,"mean_hr_bpm":70})"
      "\n"));
  const std::string bin = MEDSTREAM_BINARY;
  const int port = proc::FreeLoopbackPort();
  const std::string any = "0.0.0.0:" + std::to_string(port);
  auto r = testing::Shell(bin + " dashboard " + (dir / "results").string() + " --http " + any);
  EXPECT_NE(r.exit_code, 0) << r.out;  // refused at start: no TLS, no token
  const std::string cert = (dir / "cert.pem").string(), key = (dir / "key.pem").string(),
                    token_file = (dir / "token").string();
  r = testing::Shell(
      "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 "
      "-subj /CN=127.0.0.1 -keyout " +
      key + " -out " + cert + " 2>&1");
  ASSERT_EQ(r.exit_code, 0) << r.out;
  const std::string token = "t0ken-" + std::to_string(getpid()) + "-abcdefghijkl";
  ASSERT_TRUE(WriteFileAtomic(token_file, token + "\n", 0600));
  r = testing::Shell(bin + " dashboard " + (dir / "results").string() + " --http " + any +
                     " --http-cert " + cert + " --http-key " + key);
  EXPECT_NE(r.exit_code, 0) << r.out;  // TLS alone is not enough
  const pid_t board =
      proc::Spawn({bin, "dashboard", (dir / "results").string(), "--http", any, "--http-cert", cert,
                   "--http-key", key, "--http-token-file", token_file},
                  (dir / "dashboard.log").string());
  ASSERT_TRUE(proc::WaitForListener(port, 10000));
  const std::string url = "https://127.0.0.1:" + std::to_string(port);
  auto code = [&](const std::string& extra, const std::string& path) {
    return testing::Shell("curl -sk -o /dev/null -w '%{http_code}' " + extra + " " + url + path)
        .out;
  };
  EXPECT_EQ(code("", "/"), "401");
  EXPECT_EQ(code("", "/user/u1"), "401");
  EXPECT_EQ(code("", "/api/users"), "401");
  EXPECT_EQ(code("-H 'Authorization: Bearer wrong-token-wrong-token'", "/"), "401");
  EXPECT_EQ(code("-H 'Authorization: Bearer " + token + "'", "/"), "200");
  EXPECT_EQ(code("", "/healthz"), "200");
  EXPECT_EQ(testing::Shell("curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:" +
                           std::to_string(port) + "/")
                .out,
            "000");  // no plaintext HTTP on a TLS port
  // The page in Chromium: refused without the token, shown with it.
  EXPECT_EQ(Browse(url + "/user/u1")["status"], 401);
  const json page = Browse(url + "/user/u1 --token " + token);
  EXPECT_EQ(page["status"], 200);
  EXPECT_TRUE(page["errors"].empty()) << page["errors"];
  EXPECT_EQ(page["values"]["latest"]["sdnn_ms"], 42.0);
  proc::Stop(board);
  fs::remove_all(dir);
}

}  // namespace
}  // namespace medstream
