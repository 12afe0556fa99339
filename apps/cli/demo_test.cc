// `medstream demo` end to end (real Mosquitto, server and process enclave as processes): nothing
// lost or duplicated, and every user's results equal `medstream hrv` run offline over the beats
// that user's sensor sent.
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "tests/shell.h"

namespace medstream {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

std::string Shell(const std::string& cmd, int* status) {
  auto r = testing::Shell(cmd);
  *status = r.exit_code;
  return r.out;
}

TEST(Demo, NothingLostAndResultsEqualOfflineAnalysis) {
  const fs::path dir = fs::temp_directory_path() / ("md-" + std::to_string(getpid()));
  fs::remove_all(dir);
  const std::string summary = (dir / "summary.json").string();
  int status = 0;
  const std::string out =
      Shell(std::string(MEDSTREAM_BINARY) + " demo --users 3 --duration 8 --speed 60 " +
                "--batch-seconds 1 --jobs sdnn,hrv-full --keep " + dir.string() +
                " --summary-json " + summary,
            &status);
  ASSERT_EQ(status, 0) << out;
  const json s = json::parse(std::ifstream(summary));
  EXPECT_EQ(s["lost_beats"], 0) << out;
  EXPECT_EQ(s["lost_batches"], 0);
  EXPECT_EQ(s["duplicates"], 0);
  EXPECT_GT(s["beats_published"].get<int>(), 1000);
  EXPECT_EQ(s["beats_published"], s["beats_processed"]);
  EXPECT_GT(s["windows"].get<int>(), 20);

  for (int u = 1; u <= 3; ++u) {
    char user[16];
    std::snprintf(user, sizeof user, "user-%04d", u);
    for (const std::string job : {"sdnn", "hrv-full"}) {
      // Offline: the beats this user's sensor sent, through `medstream hrv`.
      const std::string offline_out =
          Shell(std::string(MEDSTREAM_BINARY) + " hrv --json --window 300 --step 30 --job " + job +
                    " " + (dir / "sensors" / (std::string(user) + ".csv")).string(),
                &status);
      ASSERT_EQ(status, 0) << offline_out;
      std::vector<json> offline;
      std::istringstream lines(offline_out);
      for (std::string line; std::getline(lines, line);) offline.push_back(json::parse(line));
      // Streamed: what the gateway decrypted from the enclave's results.
      std::vector<json> streamed;
      std::ifstream in(dir / "results" / (std::string(user) + ".jsonl"));
      for (std::string line; std::getline(in, line);) {
        json j = json::parse(line);
        if (j.value("job", "") == job) streamed.push_back(j);
      }
      ASSERT_FALSE(streamed.empty()) << user << " " << job;
      // The stream never ends, so its last windows may still be open; every window it did
      // report must be the offline one, in order.
      ASSERT_LE(streamed.size(), offline.size());
      EXPECT_GE(streamed.size() + 12, offline.size()) << "too many windows missing";
      for (size_t i = 0; i < streamed.size(); ++i) {
        for (const auto& [key, value] : offline[i].items()) {
          if (value.is_null()) {
            EXPECT_TRUE(streamed[i][key].is_null()) << user << " " << job << " " << key;
          } else if (value.is_number()) {
            EXPECT_DOUBLE_EQ(streamed[i][key].get<double>(), value.get<double>())
                << user << " " << job << " window " << i << " " << key;
          }
        }
      }
    }
  }
  // Issue 16: the summary lists every user's latest window, equal to the result files; the
  // gateway kept each user's beats, so the report draws every figure from them.
  ASSERT_EQ(s["users"].size(), 3u) << s.dump();
  EXPECT_EQ(s["user_count"], 3);
  for (const json& u : s["users"]) {
    const std::string user = u["user"];
    double latest_start = -1;
    json latest;
    std::ifstream in(dir / "results" / (user + ".jsonl"));
    for (std::string line; std::getline(in, line);) {
      json j = json::parse(line);
      if (j.value("job", "") == "hrv-full" && j["t_start"].get<double>() > latest_start) {
        latest_start = j["t_start"];
        latest = j;
      }
    }
    ASSERT_FALSE(latest.is_null()) << user;
    EXPECT_EQ(u["t_start"], latest["t_start"]) << user;
    EXPECT_EQ(u["start_utc"], latest["start_utc"]) << user;
    for (const char* m : {"mean_hr_bpm", "sdnn_ms", "rmssd_ms", "pnn50_pct", "lf_hf"})
      EXPECT_DOUBLE_EQ(u[m].get<double>(), latest[m].get<double>()) << user << " " << m;
    const std::string html = (dir / (user + ".html")).string();
    const std::string report =
        Shell(std::string(MEDSTREAM_BINARY) + " report " + (dir / "results").string() + " --user " +
                  user + " --out " + html,
              &status);
    ASSERT_EQ(status, 0) << report;
    std::ifstream page(html);
    const std::string text((std::istreambuf_iterator<char>(page)), {});
    for (const char* figure :
         {"id=\"tachogram\"", "id=\"psd\"", "id=\"poincare\"", "id=\"trend-sdnn\""})
      EXPECT_NE(text.find(figure), std::string::npos) << user << " " << figure;
  }
  // The server's directories hold ciphertext only: no sensor value appears in them.
  std::ifstream raw(dir / "sensors" / "user-0002.csv");
  std::string header, first;
  std::getline(raw, header);
  std::getline(raw, first);
  const double rr = std::stod(first.substr(first.find(',') + 1));
  for (const auto& e : fs::recursive_directory_iterator(dir / "server")) {
    if (!e.is_regular_file()) continue;
    std::ifstream f(e.path(), std::ios::binary);
    const std::string bytes((std::istreambuf_iterator<char>(f)), {});
    ASSERT_EQ(bytes.find(std::string(reinterpret_cast<const char*>(&rr), 8)), std::string::npos)
        << e.path();
    const float rr32 = static_cast<float>(rr);
    ASSERT_EQ(bytes.find(std::string(reinterpret_cast<const char*>(&rr32), 4)), std::string::npos)
        << e.path();
  }
  fs::remove_all(dir);
}

TEST(Demo, OverSftpThroughOpenSsh) {
  const fs::path summary =
      fs::temp_directory_path() / ("md-sftp-" + std::to_string(getpid()) + ".json");
  int status = 0;
  const std::string out = Shell(std::string(MEDSTREAM_BINARY) +
                                    " demo --sftp --users 3 --duration 6 --speed 60 "
                                    "--batch-seconds 1 --summary-json " +
                                    summary.string(),
                                &status);
  ASSERT_EQ(status, 0) << out;
  EXPECT_NE(out.find("internal-sftp chrooted"), std::string::npos) << out;
  const json s = json::parse(std::ifstream(summary));
  EXPECT_EQ(s["lost_beats"], 0) << out;
  EXPECT_EQ(s["lost_batches"], 0);
  EXPECT_EQ(s["duplicates"], 0);
  EXPECT_EQ(s["beats_published"], s["beats_processed"]);
  EXPECT_GT(s["results"].get<int>(), 10);
  fs::remove(summary);
  // Without --keep the demo leaves only the decrypted results, for a user to read; a test is no
  // user, so it takes them away too (one folder per run would pile up in /tmp).
  const std::string mark = "working in ";
  const size_t at = out.find(mark);
  ASSERT_NE(at, std::string::npos) << out;
  const fs::path work = out.substr(at + mark.size(), out.find('\n', at) - at - mark.size());
  EXPECT_TRUE(fs::exists(work / "results")) << work;
  ASSERT_EQ(work.filename().string().rfind("medstream-demo-", 0), 0u) << work;
  fs::remove_all(work);
}

}  // namespace
}  // namespace medstream
