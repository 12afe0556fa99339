// `medstream bench`: the grid's plan, and the quick grid end to end through the real executable
// (server, process enclave, gateway sealing, pandas baseline, gnuplot).
#include "apps/evaluation/evaluation.h"
#include "common/base/file.h"
#include "common/crypto/crypto.h"
#include "tests/shell.h"

#include <gtest/gtest.h>
#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <vector>

namespace medstream::evaluation {
namespace {

namespace fs = std::filesystem;

testing::ShellResult Medstream(const std::string& args) {
  return testing::Shell(std::string(MEDSTREAM_BINARY) + " " + args);
}

std::vector<std::string> Fields(const std::string& line) {
  std::vector<std::string> out;
  std::stringstream ss(line);
  std::string f;
  while (std::getline(ss, f, ',')) out.push_back(f);
  return out;
}

TEST(Plan, FullGridHasEveryPointOnce) {
  Options o;
  const auto points = Plan(o);
  // 4 workloads x 4 jobs x 6 loads x 3 modes, plus pandas beside batch sdnn and hrv-bands.
  EXPECT_EQ(points.size(), 4u * 4 * 6 * 3 + 2 * 2 * 6);
  std::map<std::string, int> modes;
  for (const auto& p : points) ++modes[p.mode];
  EXPECT_EQ(modes["vanilla"], 96);
  EXPECT_EQ(modes["pandas"], 24);
  EXPECT_EQ(points.front().load_bytes, 1024u);
  EXPECT_EQ(points.back().load_bytes, 32u << 20);
}

TEST(Plan, QuickGridIsSmall) {
  EXPECT_EQ(Plan(QuickOptions()).size(), 4u * 2 * 2 * 3 + 2 * 2);
  Options o = QuickOptions();
  o.baseline = false;
  EXPECT_EQ(Plan(o).size(), 4u * 2 * 2 * 3);
}

// Cheap batch points repeat until they have run a while (their median then steadies), up to a
// cap; expensive ones keep --reps.
TEST(Plan, RepetitionsFillTheMinimumTimeWithinLimits) {
  Options o;
  o.reps = 3;
  o.min_time_s = 0.25;
  EXPECT_EQ(RepsFor(o, std::vector<double>{0.002, 0.0025}), 100);  // the slowest mode counts
  EXPECT_EQ(RepsFor(o, std::vector<double>{0.5}), 3);
  EXPECT_EQ(RepsFor(o, std::vector<double>{1e-6}), kMaxReps);
  EXPECT_EQ(RepsFor(o, std::vector<double>{}), 3);
  o.min_time_s = 0;
  EXPECT_EQ(RepsFor(o, std::vector<double>{0.002}), 3);
  o.reps = 2 * kMaxReps;
  o.min_time_s = 0.25;
  EXPECT_EQ(RepsFor(o, std::vector<double>{1e-6}), 2 * kMaxReps);
  EXPECT_EQ(QuickOptions().min_time_s, 0) << "the smoke-test grid stays small";
}

TEST(Labels, Loads) {
  EXPECT_EQ(LoadLabel(1024), "1 kB");
  EXPECT_EQ(LoadLabel(32 << 20), "32 MB");
  EXPECT_EQ(LoadLabel(1000), "1000 B");
}

TEST(BenchCommand, RejectsUnknownNames) {
  // Each is a usage error: the status says so (the message names the word it could not use).
  for (const char* args : {"--modes vanilla,sgx", "--big-loads 3X", "--workloads batch",
                           "--e2e --modes vanilla", "--e2e --workloads batch-big"}) {
    auto r = Medstream(std::string("bench ") + args);
    EXPECT_EQ(r.exit_code, ExitStatus(Error::Code::kInvalidArgument)) << args << "\n" << r.out;
  }
}

// Stream-Small through the whole system (sensors, Mosquitto, gateway, server, process enclave),
// short: the row is complete and nothing is lost or doubled. (Its speed is for the benchmark.)
TEST(BenchCommand, EndToEndStreamSmall) {
  const fs::path dir = fs::temp_directory_path() / ("bench-e2e-" + std::to_string(getpid()));
  fs::remove_all(dir);
  const auto r = Medstream("bench --e2e --workloads stream-small --duration 6 --interval 2 --csv " +
                           (dir / "e2e.csv").string() + " --dir " + (dir / "work").string());
  ASSERT_EQ(r.exit_code, 0) << r.out;
  EXPECT_NE(r.out.find("software-simulated TEE"), std::string::npos);
  EXPECT_NE(r.out.find("AES-256-GCM: intel-ipsec-mb, " + crypto::GcmCodePath() + " code"),
            std::string::npos)
      << r.out;
  std::ifstream in(dir / "e2e.csv");
  std::string header, row;
  ASSERT_TRUE(std::getline(in, header));
  ASSERT_TRUE(std::getline(in, row)) << r.out;
  const auto h = Fields(header), f = Fields(row);
  ASSERT_EQ(h.size(), f.size());
  std::map<std::string, std::string> v;
  for (size_t i = 0; i < h.size(); ++i) v[h[i]] = f[i];
  EXPECT_EQ(v["workload"], "stream-small");
  EXPECT_EQ(v["mode"], "process");
  EXPECT_EQ(v["users"], "20");
  EXPECT_EQ(v["lost_beats"], "0") << r.out;
  EXPECT_EQ(v["duplicates"], "0") << r.out;
  EXPECT_GT(std::stod(v["beats_s"]), 1000) << r.out;  // ~1424 a second, paced by the sensors
  EXPECT_GE(std::stoi(v["batches"]), 40) << r.out;    // 20 users, a batch every 2 s each
  EXPECT_GT(std::stod(v["server_batch_ms_mean"]), 0);
  EXPECT_GT(std::stod(v["latency_p50_s"]), 0);
  EXPECT_FALSE(fs::exists(dir / "work" / "stream-small-process")) << "work is cleaned up";
  fs::remove_all(dir);
}

// The acceptance: `medstream bench --quick --csv out.csv` from a fresh build.
TEST(BenchCommand, QuickGridWritesCsvAndPlots) {
  const fs::path dir = fs::temp_directory_path() / ("bench-test-" + std::to_string(getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  const auto r = Medstream("bench --quick --csv " + (dir / "out.csv").string() + " --plot " +
                           (dir / "plots").string());
  ASSERT_EQ(r.exit_code, 0) << r.out;
  EXPECT_NE(r.out.find("software-simulated TEE"), std::string::npos);
  // The cipher's code path, on which process mode's figures depend about 3x.
  EXPECT_NE(r.out.find("AES-256-GCM: intel-ipsec-mb, " + crypto::GcmCodePath() + " code"),
            std::string::npos)
      << r.out;
  std::ifstream in(dir / "out.csv");
  std::string line;
  ASSERT_TRUE(std::getline(in, line));
  EXPECT_TRUE(line.starts_with(
      "mode,job,workload,load_bytes,samples,elapsed_s,avg_batch_ms,throughput_mb_s,"
      "slowdown_vs_vanilla,peak_rss_mb"))
      << line;
  std::map<std::string, int> modes;
  int rows = 0;
  // The printed table's rows, by "mode job workload load": its samples column (issue 17: it once
  // showed per-batch samples where the CSV had the total).
  std::map<std::string, std::string> table_samples;
  {
    std::istringstream out(r.out);
    for (std::string t; std::getline(out, t);) {
      std::istringstream words(t);
      std::vector<std::string> w;
      for (std::string x; words >> x;) w.push_back(x);
      if (w.size() > 6 && (w[4] == "kB" || w[4] == "MB"))
        table_samples[w[0] + " " + w[1] + " " + w[2] + " " + w[3] + " " + w[4]] = w[5];
    }
  }
  ASSERT_FALSE(table_samples.empty()) << r.out;
  while (std::getline(in, line)) {
    const auto f = Fields(line);
    ASSERT_EQ(f.size(), 17u) << line;
    EXPECT_EQ(table_samples[f[0] + " " + f[1] + " " + f[2] + " " + LoadLabel(std::stoull(f[3]))],
              f[4])
        << line;
    ++rows;
    ++modes[f[0]];
    const uint64_t load = std::stoull(f[3]);
    const uint64_t samples = std::stoull(f[4]);
    if (f[2].starts_with("batch")) {
      EXPECT_EQ(samples, load / 23) << line;  // the original's text encoding
    } else {
      EXPECT_GE(samples, load / 23) << line;  // several batches of load / 23 samples
      EXPECT_EQ(samples % (load / 23), 0u) << line;
    }
    EXPECT_GT(std::stod(f[5]), 0) << line;
    EXPECT_GT(std::stod(f[7]), 0) << line;
    if (f[0] == "vanilla") {
      EXPECT_EQ(f[8], "1.000") << line;
    }
    EXPECT_GT(std::stod(f[8]), 0) << line;
    if (f[0] != "pandas") {
      EXPECT_GT(std::stod(f[9]), 1) << line;  // peak RSS, MB
    }
    if (f[0] == "process") {
      EXPECT_GT(std::stoull(f[13]), load / 23 * 16) << "a batch: header + ciphertext + tags";
      // Issue 17: the enclave's and the host's peak RSS apart, adding up to the total.
      EXPECT_GT(std::stod(f[15]), 1) << line;
      EXPECT_NEAR(std::stod(f[15]) + std::stod(f[16]), std::stod(f[9]), 0.2) << line;
    } else if (f[0] != "pandas") {
      EXPECT_EQ(f[15], "0.0") << line;  // no enclave process
    }
  }
  EXPECT_EQ(rows, static_cast<int>(Plan(QuickOptions()).size()));
  EXPECT_EQ(modes["vanilla"], 16);
  EXPECT_EQ(modes["inproc"], 16);
  EXPECT_EQ(modes["process"], 16);
  EXPECT_EQ(modes["pandas"], 4);
  // A figure per workload, a row of panels per job: times on log-log axes with min-max bars, the
  // slowdown beside them, the machine and repetitions in the title.
  for (const char* name : {"batch-big", "stream-small"}) {
    for (const char* ext : {".png", ".svg"}) {
      const fs::path plot = dir / "plots" / (std::string(name) + ext);
      ASSERT_TRUE(fs::exists(plot)) << plot;
      EXPECT_GT(fs::file_size(plot), 1000u) << plot;
    }
    const std::string svg =
        ReadFileText((dir / "plots" / (std::string(name) + ".svg")).string()).value_or("");
    EXPECT_NE(svg.find("slowdown"), std::string::npos) << name;
    EXPECT_NE(svg.find("repetitions"), std::string::npos) << name;
    EXPECT_NE(svg.find("AES-GCM: " + crypto::GcmCodePath()), std::string::npos) << name;
    for (const char* job : {"identity", "sdnn"}) {
      EXPECT_TRUE(fs::exists(dir / "plots" / (std::string(name) + "-" + job + ".dat"))) << job;
    }
  }
  fs::remove_all(dir);
}

}  // namespace
}  // namespace medstream::evaluation
