// Beats from other senders than `medstream sensor`: a phone bridge publishing JSON with the real
// mosquitto_pub, through the whole system.
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
  StopGateway();
  const json st = json::parse(ReadFileText(dir_ + "/gateway-stats.json").value());
  EXPECT_EQ(st["malformed"], 4);
  EXPECT_EQ(st["lost_beats"], 0);
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

}  // namespace
}  // namespace fault
}  // namespace medstream
