// Beats from other senders than `medstream sensor`: a phone bridge publishing JSON or raw
// Bluetooth heart rate measurements with the real mosquitto_pub, through the whole system.
#include "owner/gateway/fault_fixture.h"

namespace medstream {
namespace fault {
namespace {

// Issue 16 (standard payloads, first part): JSON messages published by mosquitto_pub give the
// results of `medstream hrv` on the same beats; malformed ones
// are counted and logged, never fatal.
TEST_F(FaultTest, JsonFromMosquittoPubEqualsOfflineAnalysis) {
  testing::Broker broker;
  ASSERT_TRUE(broker.ok()) << broker.error();
  StartServer();
  StartGateway(broker);
  const std::string device = "bridge-1";
  const auto creds = broker.Device(device);
  // 900 s of a simulated heart, eight beats a message, as a bridge would forward them.
  sensor::Generator gen(4, 1, 1.7e9);
  std::string lines, csv = "time_s,rr_ms\n";
  uint64_t seq = 0, first_beat = 0, beats = 0;
  for (;;) {
    std::vector<hrv::Beat> message;
    while (message.size() < 8) message.push_back(gen.Next());
    if (message.back().t_s > 1.7e9 + 900) break;
    // RR values with a fraction, as JSON carries them; each beat = the previous + its RR.
    std::string rr;
    double t = message[0].t_s;
    for (size_t i = 0; i < message.size(); ++i) {
      const double v = std::round(message[i].rr_ms * 100) / 100;
      if (i > 0) t += v / 1000;
      rr += fmt::format("{}{}", i ? "," : "", v);
      csv += fmt::format("{},{}\n", i == 0 ? message[0].t_s : t, v);
    }
    // With the optional sequence fields, so the gateway can count losses (none here).
    const std::string sequence =
        fmt::format(R"(, "session": 5, "seq": {}, "first_beat": {})", seq, first_beat);
    lines += fmt::format(R"({{"t": {}, "rr_ms": [{}]{}}})", message[0].t_s, rr, sequence) + "\n";
    ++seq;
    first_beat += message.size();
    beats += message.size();
  }
  // Malformed ones in between: not JSON, no rr_ms, an RR out of range, half a sequence.
  lines += "{not json\n";
  lines += R"({"t": 1700000000})"
           "\n";
  lines += R"({"t": 1700000000, "rr_ms": [800, -5]})"
           "\n";
  lines += R"({"t": 1700000000, "rr_ms": [800], "seq": 1})"
           "\n";
  ASSERT_TRUE(WriteFileAtomic(dir_ + "/bridge.jsonl", lines));
  ASSERT_TRUE(WriteFileAtomic(dir_ + "/bridge.csv", csv));
  const auto pub =
      testing::Shell("mosquitto_pub -h 127.0.0.1 -p " + std::to_string(broker.port()) +
                     " --cafile " + creds.ca + " --cert " + creds.cert + " --key " + creds.key +
                     " -q 1 -t " + sensor::Topic("f", device) + " -l < " + dir_ + "/bridge.jsonl");
  ASSERT_EQ(pub.exit_code, 0) << pub.out;
  ASSERT_TRUE(WaitFor(
      [&] {
        auto text = ReadFileText(dir_ + "/gateway-stats.json");
        return text && json::parse(*text)["beats_in"].get<uint64_t>() == beats;
      },
      30))
      << Shell("cat " + dir_ + "/gateway.log");
  // Issue 16: the gateway's /metrics parses (promtool) and counts what happened.
  const std::string gm = Metrics(http_port_);
  EXPECT_EQ(Sample(gm, "medstream_gateway_beats_received_total"), static_cast<double>(beats));
  EXPECT_EQ(Sample(gm, "medstream_gateway_malformed_messages_total"), 4);
  EXPECT_EQ(Sample(gm, "medstream_gateway_lost_beats_total"), 0);
  EXPECT_EQ(Sample(gm, "medstream_gateway_messages_total"), static_cast<double>(seq + 4));
  StopGateway();
  const json st = json::parse(ReadFileText(dir_ + "/gateway-stats.json").value());
  EXPECT_EQ(st["malformed"], 4);
  EXPECT_EQ(st["lost_beats"], 0);
  // The gateway's final counters and the server's /metrics agree: every batch sealed was
  // processed, each result read, nothing quarantined.
  ASSERT_TRUE(WaitFor([&] { return Spooled() == 0; }, 10));
  const std::string sm = Metrics(metrics_port_);
  EXPECT_EQ(Sample(sm, "medstream_server_batches_processed_total"),
            st["batches_sealed"].get<double>());
  EXPECT_EQ(st["results"], st["batches_sealed"]);
  EXPECT_EQ(Sample(sm, R"(medstream_server_quarantined_total{reason="refused"})"), 0);
  EXPECT_EQ(Sample(sm, "medstream_server_enclave_call_seconds_count"),
            st["batches_sealed"].get<double>());
  const std::vector<json> offline =
      OfflineWindows("--window 300 --step 30 --job sdnn " + dir_ + "/bridge.csv");
  const std::vector<json> streamed = StreamedWindows(device);
  ASSERT_GT(streamed.size(), 10u);
  ASSERT_LE(streamed.size(), offline.size());
  for (size_t i = 0; i < streamed.size(); ++i) {
    ASSERT_EQ(streamed[i]["t_start"], offline[i]["t_start"]) << i;
    ASSERT_EQ(streamed[i]["n_beats"], offline[i]["n_beats"]) << i;
    ASSERT_NEAR(streamed[i]["sdnn_ms"].get<double>(), offline[i]["sdnn_ms"].get<double>(), 1e-6)
        << i;
  }
}

// Issue 16: raw Bluetooth Heart Rate Measurements (0x2A37) as a phone bridge forwards them,
// published one by one with the real mosquitto_pub: the gateway times the beats (each the previous
// plus its RR), keeps them in RESULTS/<device>.beats.csv with exactly the RR values sent, and the
// windows equal `medstream hrv` over those beats. Malformed measurements are counted, a heart
// rate without RR is no beat, nothing is fatal.
TEST_F(FaultTest, BluetoothHeartRateFromMosquittoPubEqualsOfflineAnalysis) {
  testing::Broker broker;
  ASSERT_TRUE(broker.ok()) << broker.error();
  StartServer();
  StartGateway(broker);
  const std::string device = "strap-1";
  const auto creds = broker.Device(device);
  sensor::Generator gen(9, 2, 1.7e9);
  std::vector<double> sent_ms;
  std::vector<std::vector<uint8_t>> messages;
  while (sent_ms.size() < 900) {
    std::vector<uint16_t> rr;
    while (rr.size() < 12) {
      const hrv::Beat b = gen.Next();
      rr.push_back(static_cast<uint16_t>(std::lround(b.rr_ms * 1024 / 1000)));
      sent_ms.push_back(rr.back() * 1000.0 / 1024);
    }
    messages.push_back(sensor::EncodeHeartRateMeasurement(72, rr));
  }
  messages.insert(messages.begin() + 5, {0x30, 70, 0x00, 0x04});  // a reserved flag bit
  messages.insert(messages.begin() + 9, {0x10, 70, 0x00});        // half an RR value
  messages.insert(messages.begin() + 11, {0x00, 64});             // heart rate only
  std::string script = "set -e\n";
  for (size_t i = 0; i < messages.size(); ++i) {
    const std::string file = fmt::format("{}/hrm-{:04}.bin", dir_, i);
    ASSERT_TRUE(WriteFileAtomic(file, std::span<const uint8_t>(messages[i])));
    script += "mosquitto_pub -h 127.0.0.1 -p " + std::to_string(broker.port()) + " --cafile " +
              creds.ca + " --cert " + creds.cert + " --key " + creds.key + " -q 1 -t " +
              sensor::Topic("f", device) + " -f " + file + "\n";
  }
  ASSERT_TRUE(WriteFileAtomic(dir_ + "/publish.sh", script));
  const auto pub = testing::Shell("sh " + dir_ + "/publish.sh");
  ASSERT_EQ(pub.exit_code, 0) << pub.out;
  ASSERT_TRUE(WaitFor(
      [&] {
        auto text = ReadFileText(dir_ + "/gateway-stats.json");
        return text && json::parse(*text)["beats_in"].get<uint64_t>() == sent_ms.size();
      },
      30))
      << Shell("cat " + dir_ + "/gateway.log");
  StopGateway();
  const json st = json::parse(ReadFileText(dir_ + "/gateway-stats.json").value());
  EXPECT_EQ(st["malformed"], 2);
  EXPECT_EQ(st["heart_rate_only"], 1);
  // The beats the gateway timed: the RR values sent, in order, each beat the previous plus its RR.
  const std::string beats_csv = dir_ + "/results/" + device + ".beats.csv";
  std::ifstream in(beats_csv);
  std::string line;
  std::getline(in, line);
  ASSERT_EQ(line, "time_s,rr_ms");
  std::vector<hrv::Beat> timed;
  while (std::getline(in, line)) {
    const size_t comma = line.find(',');
    timed.push_back({std::stod(line.substr(0, comma)), std::stod(line.substr(comma + 1))});
  }
  ASSERT_EQ(timed.size(), sent_ms.size());
  for (size_t i = 0; i < timed.size(); ++i) {
    ASSERT_EQ(timed[i].rr_ms, sent_ms[i]) << i;
    if (i > 0) {
      ASSERT_NEAR(timed[i].t_s - timed[i - 1].t_s, sent_ms[i] / 1000, 1e-6) << i;
    }
  }
  const double now =
      std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  EXPECT_NEAR(timed.front().t_s, now, 120);  // anchored at the first measurement's arrival
  const std::vector<json> offline =
      OfflineWindows("--window 300 --step 30 --job sdnn " + beats_csv);
  const std::vector<json> streamed = StreamedWindows(device);
  ASSERT_GT(streamed.size(), 10u);
  ASSERT_LE(streamed.size(), offline.size());
  for (size_t i = 0; i < streamed.size(); ++i) {
    ASSERT_EQ(streamed[i]["t_start"], offline[i]["t_start"]) << i;
    ASSERT_EQ(streamed[i]["n_beats"], offline[i]["n_beats"]) << i;
    ASSERT_DOUBLE_EQ(streamed[i]["sdnn_ms"].get<double>(), offline[i]["sdnn_ms"].get<double>())
        << i;
  }
}

}  // namespace
}  // namespace fault
}  // namespace medstream
