// Runs the real medstream executable and checks its output and exit codes.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>

#include "tests/shell.h"
#include "tests/test_data.h"

namespace medstream {
namespace {

using CmdResult = testing::ShellResult;

CmdResult Medstream(const std::string& args) {
  return testing::Shell(std::string(MEDSTREAM_BINARY) + " " + args);
}

std::string Data(const std::string& rel) {
  return testing::TestDataPath(rel);
}

TEST(Cli, HelpListsCommands) {
  const CmdResult r = Medstream("--help");
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_NE(r.out.find("hrv"), std::string::npos);
  const CmdResult h = Medstream("hrv --help");
  EXPECT_EQ(h.exit_code, 0);
  EXPECT_NE(h.out.find("--window"), std::string::npos);
}

TEST(Cli, WholeRecordTable) {
  const CmdResult r = Medstream("hrv " + Data("rr/mitdb_100_rr.csv"));
  ASSERT_EQ(r.exit_code, 0) << r.out;
  EXPECT_NE(r.out.find("sdnn_ms"), std::string::npos);
  EXPECT_NE(r.out.find("2272 beats read, 2219 used"), std::string::npos) << r.out;
}

TEST(Cli, WholeRecordJsonHasEveryMetric) {
  const CmdResult r = Medstream("hrv --json " + Data("rr/rhenanbartels_exercise_rri_ms.txt"));
  ASSERT_EQ(r.exit_code, 0) << r.out;
  const auto j = nlohmann::json::parse(r.out);
  for (const auto& m : hrv::kMetricTable) EXPECT_TRUE(j.contains(std::string(m.name))) << m.name;
  EXPECT_EQ(j["n_beats"].get<int>(), 4108);
  EXPECT_EQ(j["cleaning"]["seen"].get<int>(), 4117);
}

TEST(Cli, WindowsAsJsonLines) {
  const CmdResult r = Medstream("hrv --json --window 300 --step 30 --job sdnn " +
                                Data("rr/rhenanbartels_exercise_rri_ms.txt"));
  ASSERT_EQ(r.exit_code, 0) << r.out;
  std::istringstream lines(r.out);
  std::string line;
  int rows = 0;
  double last_start = -1e300;
  while (std::getline(lines, line)) {
    const auto j = nlohmann::json::parse(line);
    EXPECT_GT(j["t_start"].get<double>(), last_start);
    last_start = j["t_start"].get<double>();
    EXPECT_EQ(j["t_end"].get<double>() - last_start, 300);
    EXPECT_TRUE(j.contains("sdnn_ms"));
    EXPECT_FALSE(j.contains("lf_ms2"));
    ++rows;
  }
  EXPECT_EQ(rows, 78);
}

TEST(Cli, BadFilesFailWithFileAndLine) {
  // The status says what went wrong; the message, where (file and line, for a person to fix).
  CmdResult r = Medstream("hrv " + Data("bad/rr_typo_line3.txt"));
  EXPECT_EQ(r.exit_code, ExitStatus(Error::Code::kCorrupt)) << r.out;
  EXPECT_NE(r.out.find("rr_typo_line3.txt line 3: '7o4'"), std::string::npos) << r.out;
  r = Medstream("hrv " + Data("bad/no_rr_column.csv"));
  EXPECT_EQ(r.exit_code, ExitStatus(Error::Code::kNotFound)) << r.out;
  EXPECT_NE(r.out.find("header has: when, hr"), std::string::npos) << r.out;
  r = Medstream("hrv " + Data("bad/empty.txt"));
  EXPECT_EQ(r.exit_code, ExitStatus(Error::Code::kCorrupt)) << r.out;
  r = Medstream("hrv /nonexistent.txt");
  EXPECT_EQ(r.exit_code, ExitStatus(Error::Code::kIo)) << r.out;
  r = Medstream("hrv --window -5 " + Data("rr/mitdb_100_rr.csv"));
  EXPECT_NE(r.exit_code, 0);
}

// Issue 11, item 5: input that is not RR data, values out of range, and options past their
// limits each get a clear error and a non-zero exit, never numbers or a hang.
TEST(Cli, HrvRefusesWhatIsNotRrDataAndOptionsPastTheirLimits) {
  const std::string rr = Data("rr/mitdb_100_rr.csv");
  for (const std::string opts : {"--window 300 --step 1e-9", "--window 300 --step 1e-300",
                                 "--window 1e308", "--window 300 --step 0"}) {
    const CmdResult r = Medstream("hrv " + opts + " " + rr);
    EXPECT_EQ(r.exit_code, ExitStatus(Error::Code::kInvalidArgument)) << opts << ": " << r.out;
    EXPECT_LT(r.out.size(), 300u) << "no 300-digit ranges: " << r.out;
  }
  // A folder of this run's own: fixed names in the shared temp folder collide between runs.
  const std::string dir = ::testing::TempDir() + "/cli-bad-rr-" + std::to_string(getpid());
  std::filesystem::create_directories(dir);
  for (const auto& [name, text] : std::vector<std::pair<std::string, std::string>>{
           {"nan.txt", "800\n810\nnan\n820\n"},
           {"inf.txt", "800\n810\ninf\n820\n"},
           {"huge.txt", "800\n810\n1e308\n820\n"},
           {"huge_time.csv", "time_s,rr_ms\n1,800\n2,810\n1e25,800\n1e25,800\n"}}) {
    const std::string path = dir + "/" + name;
    std::FILE* f = std::fopen(path.c_str(), "w");
    std::fputs(text.c_str(), f);
    std::fclose(f);
    const CmdResult r = Medstream("hrv " + path);
    EXPECT_NE(r.exit_code, 0) << name << ": " << r.out;
    EXPECT_NE(r.out.find(" line "), std::string::npos) << name << ": " << r.out;
  }
  // A raw ECG, and its voltage column named as RR: refused as not RR data.
  const std::string ecg = Data("ecg/mitdb_100_first10s_360Hz_mV.csv");
  for (const std::string opts : {"", "--rr-col MLII_mV ", "--rr-col MLII_mV --unit ms "}) {
    const CmdResult r = Medstream("hrv " + opts + ecg);
    EXPECT_EQ(r.exit_code, ExitStatus(Error::Code::kInvalidArgument)) << opts << r.out;
  }
  // One 5 MB bad line: the error quotes a bounded excerpt of it.
  const std::string longline = dir + "/longline.txt";
  {
    std::FILE* f = std::fopen(longline.c_str(), "w");
    std::fputs("800\n", f);
    std::fputs(std::string(5 << 20, '7').append("x\n").c_str(), f);
    std::fclose(f);
  }
  const CmdResult r = Medstream("hrv " + longline);
  EXPECT_NE(r.exit_code, 0);
  EXPECT_LT(r.out.size(), 400u);
  EXPECT_NE(r.out.find("bytes"), std::string::npos) << r.out;
  std::filesystem::remove_all(dir);
}

TEST(Cli, HrvHonoursBeatMarksInAnnotationTables) {
  // 2691 rows, 119 of them rhythm, noise or comment marks (is_beat = 0): 2572 beats, 2571 RR.
  const CmdResult r = Medstream("hrv --json " + Data("rr/mitdb_105_annotations.csv"));
  ASSERT_EQ(r.exit_code, 0) << r.out;
  const auto j = nlohmann::json::parse(r.out.substr(r.out.find('{')));
  EXPECT_EQ(j["cleaning"]["seen"], 2571);
  EXPECT_EQ(r.out.find("warning"), std::string::npos) << r.out;  // 3 % removed
}

TEST(Cli, HrvWarnsWhenCleaningRemovesMoreThanAFifth) {
  // Every third RR is 2500 ms: plausible RR data, but a third of it is past the 2000 ms cleaning
  // limit.
  const std::string path =
      ::testing::TempDir() + "/third_removed-" + std::to_string(getpid()) + ".txt";
  std::string text;
  for (int i = 0; i < 600; ++i) text += i % 3 == 2 ? "2500\n" : "800\n";
  std::FILE* f = std::fopen(path.c_str(), "w");
  std::fputs(text.c_str(), f);
  std::fclose(f);
  const CmdResult r = Medstream("hrv " + path);
  ASSERT_EQ(r.exit_code, 0) << r.out;
  EXPECT_NE(r.out.find("warning: cleaning removed 33%"), std::string::npos) << r.out;
  std::filesystem::remove(path);
}

TEST(Cli, BadHostPortIsAClearErrorNotAnAbort) {
  // Once: "--sftp host:x" threw std::invalid_argument past CLI11 and aborted; "tcp://h:x" and
  // "--listen h:x" were read as port 0.
  for (const std::string args :
       {"gateway --sftp host:x --ssh-key k --host-key h --policy p --root-ca r --server-dir d "
        "--state s --results r",
        "lake --dir /nonexistent --server tcp://127.0.0.1:x list",
        "lake --dir /nonexistent serve --listen 127.0.0.1:x", "sensor --broker 127.0.0.1:99999"}) {
    const CmdResult r = Medstream(args);
    EXPECT_EQ(r.exit_code, ExitStatus(Error::Code::kInvalidArgument)) << args << "\n" << r.out;
  }
}

TEST(Cli, NumbersPastTheirLimitsAreRefusedNotConverted) {
  // Once: "--big-loads 1e30" or "inf" converted a double past uint64 (undefined behaviour; it ran
  // as a 0-byte load), "--workers 1x" read as 1 (and 99999999999 overflowed atoi), and
  // "attest verify --at 99999999999999999999" was taken as the largest long long. Loads above
  // 64 MB are past the stated limit. CLI11's own range checks let "nan" through ("--min-coverage
  // nan" suppressed every window; "--batch-seconds nan" became a duration, undefined behaviour),
  // and its usage errors ended with its own statuses (105, 109), not kInvalidArgument's.
  const std::string file = Data("rr/mitdb_100_rr.csv");
  const std::string bench = "bench --no-baseline --modes vanilla --jobs identity ";
  const std::string gateway =
      "gateway --policy p --root-ca r --server-dir d --state s --results r ";
  const std::string worker = "worker --cluster c --name w ";
  for (const std::string& args :
       {bench + "--workloads batch-big --big-loads 1e30",
        bench + "--workloads batch-big --big-loads inf",
        bench + "--workloads batch-big --big-loads nan",
        bench + "--workloads batch-big --big-loads 65M",
        bench + "--workloads batch-big --big-loads 0",
        bench + "--workloads batch-big --big-loads -1",
        bench + "--workloads batch-small --small-loads 1x",
        bench + "--cluster --workers 99999999999",
        bench + "--cluster --workers 1x",
        bench + "--cluster --e2e --workers 0",
        "attest verify " + file + " --root " + file + " --at 99999999999999999999",
        "attest verify " + file + " --root " + file + " --at 253402300800",
        worker + "--hung 39",
        worker + "--hung nan",
        worker + "--lease inf",
        gateway + "--stop-grace -1",
        gateway + "--stop-grace nan",
        gateway + "--max-open-beats 0",
        gateway + "--max-open-beats 1x",
        gateway + "--batch-seconds nan",
        gateway + "--batch-seconds -1",
        gateway + "--batch-beats 0",
        "hrv " + file + " --min-coverage nan",
        "hrv " + file + " --window inf",
        "hrv " + file + " --window 1e400",
        "hrv " + file + " --no-such-option"}) {
    const CmdResult r = Medstream(args);
    EXPECT_EQ(r.exit_code, ExitStatus(Error::Code::kInvalidArgument)) << args << "\n" << r.out;
    EXPECT_LT(r.out.size(), 300u) << args << "\n" << r.out;
  }
}

TEST(Cli, SensorRefusesAStartTimePastTheLimits) {
  // Once: beats at 1e25 s, a sensor that never ended and an enclave that hung on them.
  const CmdResult r = Medstream("sensor --start 1e25 --broker 127.0.0.1:1");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.out.find("--start"), std::string::npos) << r.out;
}

// Issue 12: the sensor hop has no plaintext or anonymous mode. Without credentials the sensor
// says what to pass before it touches the network; one certificate cannot serve several devices.
TEST(Cli, SensorWithoutCredentialsIsRefusedBeforeConnecting) {
  CmdResult r = Medstream("sensor --broker 127.0.0.1:1 --users 2 --duration 10");
  EXPECT_EQ(r.exit_code, ExitStatus(Error::Code::kInvalidArgument)) << r.out;
  EXPECT_NE(r.out.find("--credentials"), std::string::npos) << r.out;
  r = Medstream("sensor --broker 127.0.0.1:1 --users 2 --duration 10 --ca a --cert b --key c");
  EXPECT_EQ(r.exit_code, ExitStatus(Error::Code::kInvalidArgument)) << r.out;
  r = Medstream(
      "sensor --broker 127.0.0.1:1 --users 1 --duration 10 --ca /nonexistent/ca.crt "
      "--cert /nonexistent/c --key /nonexistent/k");
  EXPECT_EQ(r.exit_code, ExitStatus(Error::Code::kInvalidArgument)) << r.out;
  EXPECT_NE(r.out.find("/nonexistent/ca.crt"), std::string::npos) << r.out;
}

TEST(Cli, BrokerInitAndEnroll) {
  const std::string dir = ::testing::TempDir() + "/cli-broker-" + std::to_string(getpid());
  CmdResult r = Medstream("broker init --dir " + dir + " --site ward3 --port 18883");
  ASSERT_EQ(r.exit_code, 0) << r.out;
  EXPECT_NE(r.out.find("mosquitto -c " + dir + "/broker/mosquitto.conf"), std::string::npos)
      << r.out;
  r = Medstream("broker enroll --dir " + dir + " --users 3 wrist-7");
  ASSERT_EQ(r.exit_code, 0) << r.out;
  for (const char* n : {"user-0001", "user-0003", "wrist-7"}) {
    EXPECT_TRUE(std::filesystem::exists(dir + "/clients/" + n + ".crt")) << n;
    EXPECT_EQ(std::filesystem::status(dir + "/clients/" + n + ".key").permissions(),
              std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
  }
  // Enrolling again keeps existing certificates; bad and reserved names are refused.
  EXPECT_EQ(Medstream("broker enroll --dir " + dir + " wrist-7").exit_code, 0);
  EXPECT_EQ(Medstream("broker enroll --dir " + dir + " 'a/b'").exit_code,
            ExitStatus(Error::Code::kInvalidArgument));
  EXPECT_EQ(Medstream("broker enroll --dir " + dir + " medstream-gateway").exit_code,
            ExitStatus(Error::Code::kInvalidArgument));
  EXPECT_EQ(Medstream("broker enroll --dir " + dir + "/none x").exit_code,
            ExitStatus(Error::Code::kFailedPrecondition));
  std::filesystem::remove_all(dir);
}

// Issue 18: beats from raw ECG. On the repository's MIT-BIH 119 excerpt the detector finds every
// annotated beat; `ecg detect` writes sample,time_s,rr_ms.
TEST(Cli, EcgDetectAndEval) {
  const std::string rec = Data("wfdb/119_3min");
  CmdResult r = Medstream("ecg eval " + rec);
  ASSERT_EQ(r.exit_code, 0) << r.out;
  EXPECT_NE(r.out.find("gross             197    197      0      0    100.00    100.00"),
            std::string::npos)
      << r.out;
  const std::string out = ::testing::TempDir() + "/beats-" + std::to_string(getpid()) + ".csv";
  r = Medstream("ecg detect " + rec + ".hea --out " + out);
  ASSERT_EQ(r.exit_code, 0) << r.out;
  std::ifstream in(out);
  std::string header, first, second;
  std::getline(in, header);
  std::getline(in, first);
  std::getline(in, second);
  EXPECT_EQ(header, "sample,time_s,rr_ms");
  EXPECT_EQ(first.back(), ',');  // the first beat has no RR
  EXPECT_NE(second.find(','), std::string::npos);
  // A patient's beats are plaintext on the owner's side: the owner's file alone (it was 0644).
  EXPECT_EQ(std::filesystem::status(out).permissions() & std::filesystem::perms::all,
            std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
  std::filesystem::remove(out);
  // HRV from the record's annotations: NN intervals only between normal beats, the rest said.
  r = Medstream("hrv --json --job sdnn " + rec + ".hea");
  ASSERT_EQ(r.exit_code, 0) << r.out;
  EXPECT_EQ(nlohmann::json::parse(r.out)["n_beats"], 115);  // 197 beats, 81 intervals next to a V
  r = Medstream("hrv --job sdnn " + rec + ".hea");
  EXPECT_NE(r.out.find("115 NN intervals (between N, L or R beats), 81 excluded next to: 81 V"),
            std::string::npos)
      << r.out;
  r = Medstream("hrv --json --job sdnn --detect " + rec);
  ASSERT_EQ(r.exit_code, 0) << r.out;
  // Not a record, a channel that is not there, an ECG CSV without its reference.
  EXPECT_EQ(Medstream("ecg detect " + Data("rr/mitdb_100_rr.csv")).exit_code,
            ExitStatus(Error::Code::kInvalidArgument));
  EXPECT_EQ(Medstream("ecg detect " + rec + " --channel 5").exit_code,
            ExitStatus(Error::Code::kInvalidArgument));
  EXPECT_EQ(Medstream("ecg eval " + Data("ecg/mitdb_100_first10s_360Hz_mV.csv")).exit_code,
            ExitStatus(Error::Code::kInvalidArgument));
}

TEST(Cli, AttestVerifyRealIntelQuoteWithCollateral) {
  const std::string d = Data("attestation/");
  const std::string base = "attest verify " + d + "phala_sgx_quote.bin --root " + d +
                           "Intel_SGX_Root_CA.pem --at 2025-07-04T10:28:44Z";
  CmdResult r = Medstream(base + " --json --collateral " + d + "phala_collateral.json");
  ASSERT_EQ(r.exit_code, 0) << r.out;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["mrenclave"], "33d8736db756ed4997e04ba358d27833188f1932ff7b1d156904d3f560452fbb");
  EXPECT_EQ(j["tcb_status"], "ConfigurationAndSWHardeningNeeded");
  EXPECT_EQ(j["simulated"], false);
  // Another root pinned: refused, with the reason.
  r = Medstream("attest verify " + d + "phala_sgx_quote.bin --root " + d +
                "../attestation/Intel_SGX_Root_CA.pem --at 2099-01-01T00:00:00Z");
  EXPECT_NE(r.exit_code, 0);
  // One flipped byte of REPORTDATA: refused.
  std::string bytes = testing::ReadTestFile("attestation/phala_sgx_quote.bin");
  bytes[368] ^= 1;
  const std::string tampered =
      ::testing::TempDir() + "/tampered_quote-" + std::to_string(getpid()) + ".bin";
  {
    FILE* f = std::fopen(tampered.c_str(), "wb");
    std::fwrite(bytes.data(), 1, bytes.size(), f);
    std::fclose(f);
  }
  r = Medstream("attest verify " + tampered + " --root " + d +
                "Intel_SGX_Root_CA.pem --at 2025-07-04T10:28:44Z");
  EXPECT_EQ(r.exit_code, ExitStatus(Error::Code::kCorrupt)) << r.out;
  std::filesystem::remove(tampered);
  r = Medstream("attest verify " + d + "phala_sgx_quote.bin");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.out.find("--root"), std::string::npos);
}

}  // namespace
}  // namespace medstream
