// The fixture of the gateway's fault tests (gateway_test.cc, bridge_test.cc): a simulated platform,
// `medstream server` and `medstream gateway` as their own processes against a real Mosquitto, and
// checks that nothing was lost and that results equal `medstream hrv` offline.
#pragma once

#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fmt/format.h>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <thread>

#include "adapters/mqtt/mqtt.h"
#include "adapters/proc/proc.h"
#include "common/attest/identity.h"
#include "common/attest/policy.h"
#include "common/attest/sim_platform.h"
#include "common/base/file.h"
#include "host/cluster/cluster.h"
#include "host/server/server.h"
#include "owner/sensor/sensor.h"
#include "tests/broker.h"
#include "tests/shell.h"
#include "tests/wait.h"

namespace medstream {
namespace fault {

namespace fs = std::filesystem;
using nlohmann::json;

inline int Wait(pid_t pid) {
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

using testing::WaitFor;

inline std::string Shell(const std::string& cmd) {
  return testing::Shell(cmd).out;
}

class FaultTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = (fs::temp_directory_path() / ("mf-" + std::to_string(getpid()))).string();
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    ASSERT_TRUE(attest::InitPlatform({.dir = dir_ + "/platform", .now = time(nullptr)}));
    auto id = attest::LoadIdentity(MEDSTREAM_ENCLAVE_BINARY).value();
    attest::Policy p;
    p.mr_enclave = {id.mr_enclave};
    p.allow_simulated = true;
    ASSERT_TRUE(WriteFileAtomic(dir_ + "/policy.json", attest::PolicyToJson(p)));
    http_port_ = proc::FreeLoopbackPort();
    metrics_port_ = proc::FreeLoopbackPort();
  }
  void TearDown() override {
    std::vector<pid_t> pids = workers_;
    pids.push_back(gateway_);
    pids.push_back(server_);
    for (pid_t pid : pids) {
      if (pid > 0) {
        kill(pid, SIGKILL);
        waitpid(pid, nullptr, 0);
      }
    }
    cluster_.reset();
    if (!HasFailure()) fs::remove_all(dir_);
  }

  // Scale-out instead of the server: a 3-node NATS cluster and `workers` worker processes over 4
  // partitions; the gateway then publishes with --cluster (docs/scale-out.md).
  void StartCluster(int workers = 2) {
    ASSERT_TRUE(cluster::Init({.dir = dir_ + "/cluster", .now = time(nullptr)}));
    auto c = cluster::LocalCluster::Start(dir_ + "/cluster");
    ASSERT_TRUE(c) << c.error().message();
    cluster_ = std::move(*c);
    for (int w = 1; w <= workers; ++w) {
      const std::string name = "w" + std::to_string(w);
      workers_.push_back(
          proc::Spawn({MEDSTREAM_BINARY, "worker", "--cluster", dir_ + "/cluster", "--name", name,
                       "--platform", dir_ + "/platform", "--enclave", MEDSTREAM_ENCLAVE_BINARY,
                       "--partitions", "4", "--stats-json", dir_ + "/" + name + ".json"},
                      dir_ + "/" + name + ".log"));
    }
  }

  void StartServer() {
    server_ =
        proc::Spawn({MEDSTREAM_BINARY, "server", "--dir", dir_ + "/server", "--mode", "process",
                     "--platform", dir_ + "/platform", "--enclave", MEDSTREAM_ENCLAVE_BINARY,
                     "--metrics", "127.0.0.1:" + std::to_string(metrics_port_)},
                    dir_ + "/server.log");
    // Up once its relay answers (the enclave attested and listening).
    ASSERT_TRUE(
        WaitFor([&] { return host::ConnectRelay(dir_ + "/server/enclave.sock").has_value(); }, 10));
  }
  void StartGateway(const testing::Broker& broker, const std::string& batch_beats = "60",
                    const std::string& batch_seconds = "0.3",
                    const std::string& status_interval = "10", const std::string& window = "300") {
    const size_t started = Count(ReadFileText(dir_ + "/gateway.log").value_or(""), "subscribed");
    gateway_ = proc::Spawn({MEDSTREAM_BINARY,
                            "gateway",
                            "--window",
                            window,
                            "--min-coverage",
                            window == "300" ? "0.85" : "0.3",
                            "--state",
                            dir_ + "/gateway",
                            "--results",
                            dir_ + "/results",
                            cluster_ ? "--cluster" : "--server-dir",
                            cluster_ ? dir_ + "/cluster" : dir_ + "/server",
                            "--partitions",
                            "4",
                            "--broker",
                            broker.address(),
                            "--credentials",
                            broker.dir(),
                            "--stats-json",
                            dir_ + "/gateway-stats.json",
                            "--record-beats",
                            "--http",
                            "127.0.0.1:" + std::to_string(http_port_),
                            "--status-interval",
                            status_interval,
                            "--site",
                            "f",
                            "--batch-beats",
                            batch_beats,
                            "--batch-seconds",
                            batch_seconds,
                            "--jobs",
                            "sdnn",
                            "--root-ca",
                            dir_ + "/platform/root_ca.pem",
                            "--policy",
                            dir_ + "/policy.json"},
                           dir_ + "/gateway.log");
    ASSERT_TRUE(WaitFor(
        [&] {
          return Count(ReadFileText(dir_ + "/gateway.log").value_or(""), "subscribed") > started;
        },
        10))
        << Shell("cat " + dir_ + "/gateway.log " + dir_ + "/server.log");
  }
  static size_t Count(const std::string& text, const std::string& what) {
    size_t n = 0;
    for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
    return n;
  }
  pid_t StartSensors(testing::Broker& broker, double heart_seconds, double speed) {
    for (int u = 1; u <= 3; ++u) broker.Device(sensor::UserName(u));
    return proc::Spawn({MEDSTREAM_BINARY,
                        "sensor",
                        "--broker",
                        broker.address(),
                        "--credentials",
                        broker.dir(),
                        "--site",
                        "f",
                        "--users",
                        "3",
                        "--duration",
                        std::to_string(heart_seconds),
                        "--speed",
                        std::to_string(speed),
                        "--seed",
                        "5",
                        "--beats-per-message",
                        "3",
                        "--record",
                        dir_ + "/sensors"},
                       dir_ + "/sensor.log");
  }
  void Sensors(testing::Broker& broker, double heart_seconds, double speed) {
    ASSERT_EQ(Wait(StartSensors(broker, heart_seconds, speed)), 0)
        << Shell("cat " + dir_ + "/sensor.log");
  }
  // SIGTERM: the gateway cuts its open batches and waits for their results.
  void StopGateway() {
    kill(gateway_, SIGTERM);
    ASSERT_EQ(Wait(gateway_), 0) << Shell("cat " + dir_ + "/gateway.log");
    gateway_ = -1;
  }
  // The end of a streaming fault test: the sensors are done, the gateway stops and has every
  // result, nothing was quarantined, and the results equal the offline analysis.
  void FinishAndExpectNothingLost(pid_t sensors) {
    ASSERT_EQ(Wait(sensors), 0) << Shell("cat " + dir_ + "/sensor.log");
    StopGateway();
    ASSERT_TRUE(WaitFor([&] { return Spooled() == 0 && AllResultsIn(); }, 5))
        << Shell("cat " + dir_ + "/gateway.log");
    if (!cluster_) {
      EXPECT_TRUE(fs::is_empty(dir_ + "/server/quarantine"));
    }
    ExpectResultsEqualOffline();
  }
  // kill -9 of the gateway three times while the sensors publish (the broker queues meanwhile),
  // then the end of the run: nothing lost, results equal offline, each kill's open batches
  // recovered from the write-ahead log.
  void KillGatewayThreeTimesAndFinish(const testing::Broker& broker, pid_t sensors) {
    for (int kill_round = 0; kill_round < 3; ++kill_round) {
      std::this_thread::sleep_for(std::chrono::milliseconds(2500));  // the scenario's pace
      kill(gateway_, SIGKILL);
      waitpid(gateway_, nullptr, 0);
      std::this_thread::sleep_for(std::chrono::milliseconds(300));
      StartGateway(broker, "400", "30");
    }
    FinishAndExpectNothingLost(sensors);
    const std::string log = Shell("cat " + dir_ + "/gateway.log");
    EXPECT_EQ(Count(log, "recovered from the write-ahead log"), 3u) << log;
  }
  size_t Spooled() const {
    size_t n = 0;
    if (!fs::exists(dir_ + "/gateway/spool")) return 0;
    for (const auto& e : fs::directory_iterator(dir_ + "/gateway/spool"))
      n += e.path().extension() == ".batch";
    return n;
  }
  // The seq of the last result in `user`'s .jsonl; nullopt if none is whole yet. The gateway may
  // be in the middle of appending: a last line without its newline is not there yet (parsing it
  // threw, and failed the test, when a poll caught an append midway).
  std::optional<uint64_t> LastResultSeq(const std::string& user) const {
    auto text = ReadFileText(dir_ + "/results/" + user + ".jsonl");
    if (!text || text->empty() || text->back() != '\n') return std::nullopt;
    const std::string last = text->substr(text->rfind('\n', text->size() - 2) + 1);
    const json j = json::parse(last, nullptr, /*allow_exceptions=*/false);
    if (!j.is_object() || !j.contains("seq") || !j["seq"].is_number_unsigned()) return std::nullopt;
    return j["seq"].get<uint64_t>();
  }
  // Every batch the gateway sealed has its result read: the seq file and the outputs agree.
  bool AllResultsIn(int expected_users = 3) const {
    auto seq = ReadFileText(dir_ + "/gateway/seq");
    if (!seq) return false;
    std::istringstream in(*seq);
    int users = 0;
    for (std::string line; std::getline(in, line);) {
      std::istringstream fields(line);
      std::string user;
      uint64_t next = 0;
      fields >> user >> next;
      ++users;
      if (next == 0 || LastResultSeq(user) != std::optional<uint64_t>(next - 1)) return false;
    }
    return users == expected_users;
  }
  // Results equal the offline analysis of what each sensor sent; each seq appears once.
  void ExpectResultsEqualOffline() {
    for (int u = 1; u <= 3; ++u) {
      char user[16];
      std::snprintf(user, sizeof user, "user-%04d", u);
      std::vector<json> offline, streamed;
      std::istringstream off(Shell(std::string(MEDSTREAM_BINARY) +
                                   " hrv --json --window 300 --step 30 --job sdnn " + dir_ +
                                   "/sensors/" + user + ".csv"));
      for (std::string line; std::getline(off, line);) offline.push_back(json::parse(line));
      std::ifstream in(dir_ + "/results/" + user + ".jsonl");
      uint64_t last_seq = 0;
      for (std::string line; std::getline(in, line);) {
        json j = json::parse(line);
        ASSERT_GE(j["seq"].get<uint64_t>(), last_seq) << "results out of order or repeated";
        last_seq = j["seq"];
        if (j.contains("sdnn_ms")) streamed.push_back(j);
      }
      ASSERT_GT(streamed.size(), 5u) << user;
      ASSERT_LE(streamed.size(), offline.size()) << user;
      EXPECT_GE(streamed.size() + 12, offline.size()) << user;
      for (size_t i = 0; i < streamed.size(); ++i) {
        ASSERT_EQ(streamed[i]["t_start"], offline[i]["t_start"]) << user << " window " << i;
        ASSERT_DOUBLE_EQ(streamed[i]["sdnn_ms"].get<double>(), offline[i]["sdnn_ms"].get<double>())
            << user << " window " << i;
        ASSERT_EQ(streamed[i]["n_beats"], offline[i]["n_beats"]) << user << " window " << i;
      }
    }
  }

  // The windows `medstream hrv --json ARGS` computes offline (a warning line is skipped).
  static std::vector<json> OfflineWindows(const std::string& args) {
    std::vector<json> out;
    std::istringstream in(Shell(std::string(MEDSTREAM_BINARY) + " hrv --json " + args));
    for (std::string line; std::getline(in, line);) {
      if (line.starts_with("{")) out.push_back(json::parse(line));
    }
    return out;
  }
  // The sdnn windows the gateway wrote for `device`.
  std::vector<json> StreamedWindows(const std::string& device) const {
    std::vector<json> out;
    std::ifstream in(dir_ + "/results/" + device + ".jsonl");
    for (std::string line; std::getline(in, line);) {
      json j = json::parse(line);
      if (j.contains("sdnn_ms")) out.push_back(std::move(j));
    }
    return out;
  }

  // GET http://127.0.0.1:PORT/metrics, checked by Prometheus's own linter (promtool).
  static std::string Metrics(int port) {
    const std::string file = fmt::format("/tmp/metrics-{}-{}.prom", getpid(), port);
    const auto got = testing::Shell(
        fmt::format("curl -sf http://127.0.0.1:{}/metrics > {} && promtool check metrics < {}",
                    port, file, file));
    EXPECT_EQ(got.exit_code, 0) << got.out;
    std::string text = ReadFileText(file).value_or("");
    fs::remove(file);
    return text;
  }
  // The value of the sample `series` (name with its labels, as exposed) in a metrics text.
  static double Sample(const std::string& text, const std::string& series) {
    std::istringstream in(text);
    for (std::string line; std::getline(in, line);) {
      if (line.starts_with(series + " ")) return std::stod(line.substr(series.size() + 1));
    }
    ADD_FAILURE() << series << " not exposed";
    return -1;
  }

  std::string dir_;
  pid_t server_ = -1, gateway_ = -1;
  std::unique_ptr<cluster::LocalCluster> cluster_;
  std::vector<pid_t> workers_;
  int http_port_ = 0, metrics_port_ = 0;
};

}  // namespace fault
}  // namespace medstream
