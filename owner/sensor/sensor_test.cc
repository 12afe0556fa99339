// The sensor generator's realism, the payload format, and publishing through a real Mosquitto.
#include "owner/sensor/sensor.h"

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <map>
#include <mutex>

#include "adapters/mqtt/mqtt.h"
#include "adapters/proc/proc.h"
#include "algo/hrv/jobs.h"
#include "tests/broker.h"
#include "tests/wait.h"

namespace medstream::sensor {
namespace {

std::vector<hrv::Beat> Generate(uint64_t seed, int user, double seconds,
                                size_t* dropped = nullptr) {
  Generator g(seed, user, 1000);
  std::vector<hrv::Beat> out;
  for (;;) {
    const hrv::Beat b = g.Next();
    if (b.t_s > 1000 + seconds) break;
    if (g.dropped()) {
      if (dropped) ++*dropped;
      continue;
    }
    out.push_back(b);
  }
  return out;
}

TEST(Generator, SeededAndDifferentPerUser) {
  const auto a = Generate(7, 1, 600), b = Generate(7, 1, 600), c = Generate(7, 2, 600);
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) ASSERT_EQ(a[i].rr_ms, b[i].rr_ms);
  EXPECT_NE(a.size(), c.size());
}

TEST(Generator, LooksLikeAHeartToTheHrvEngine) {
  for (int user = 1; user <= 5; ++user) {
    Generator g(3, user, 0);
    const Profile p = g.profile();
    size_t dropped = 0;
    const auto beats = Generate(3, user, 1800, &dropped);
    hrv::AnalysisOptions o;
    auto r = hrv::AnalyzeRecord(beats, o).value();
    EXPECT_NEAR(r.metrics.mean_hr_bpm, p.mean_hr_bpm, 0.05 * p.mean_hr_bpm) << user;
    // The respiratory oscillation is where the HF peak is.
    EXPECT_NEAR(r.metrics.hf_peak_hz, p.hf_hz, 0.02) << user;
    EXPECT_GT(r.metrics.sdnn_ms, 10);
    EXPECT_LT(r.metrics.sdnn_ms, 150);
    // Ectopic beats are made at about the configured rate, and the cleaning finds them.
    const double n = static_cast<double>(beats.size());
    EXPECT_GT(r.cleaning.ectopic, 0.3 * p.ectopic_rate * n) << user;
    EXPECT_LT(r.cleaning.ectopic, 4 * p.ectopic_rate * n + 4) << user;
    EXPECT_GT(dropped, 0u);
  }
}

TEST(Payload, RoundTripAndRefusals) {
  const auto beats = Generate(1, 1, 10);
  auto payload = EncodePayload({.session = 7, .seq = 3, .first_beat = 40}, beats);
  EXPECT_EQ(payload.size(), 30 + 12 * beats.size());
  auto m = DecodeMessage(payload).value();
  EXPECT_EQ(m.version, 2);
  EXPECT_EQ(m.sequence.session, 7u);
  EXPECT_EQ(m.sequence.seq, 3u);
  EXPECT_EQ(m.sequence.first_beat, 40u);
  const auto& back = m.beats;
  ASSERT_EQ(back.size(), beats.size());
  EXPECT_EQ(back[3].t_s, beats[3].t_s);
  EXPECT_NEAR(back[3].rr_ms, beats[3].rr_ms, 1e-4);
  EXPECT_FALSE(DecodePayload(std::span(payload).first(payload.size() - 1)).has_value());
  payload[0] = 'X';
  EXPECT_FALSE(DecodePayload(payload).has_value());
  EXPECT_FALSE(DecodePayload({}).has_value());
  std::vector<uint8_t> zero = {'M', 'S', 'P', '1', 0, 0};
  EXPECT_FALSE(DecodePayload(zero).has_value());
  // A sequence no device can reach is refused (the counts downstream stay exact).
  EXPECT_FALSE(DecodeMessage(EncodePayload({.seq = kMaxSequence + 1}, beats)).has_value());
}

// Version 1 (no sequence) is still read: its beats count, its losses cannot.
TEST(Payload, VersionOneIsStillRead) {
  const auto beats = Generate(1, 1, 10);
  const auto payload = EncodePayloadV1(beats);
  EXPECT_EQ(payload.size(), 6 + 12 * beats.size());
  auto m = DecodeMessage(payload).value();
  EXPECT_EQ(m.version, 1);
  EXPECT_EQ(m.sequence.seq, 0u);
  ASSERT_EQ(m.beats.size(), beats.size());
  EXPECT_EQ(m.beats.back().t_s, beats.back().t_s);
}

TEST(Payload, JsonIsReadWithOrWithoutASequence) {
  auto text = [](std::string_view t) { return std::vector<uint8_t>(t.begin(), t.end()); };
  auto m = DecodeMessage(text(R"({"t": 1000.5, "rr_ms": [800, 812.5]})")).value();
  EXPECT_EQ(m.version, kJsonPayload);
  EXPECT_FALSE(m.has_sequence);
  ASSERT_EQ(m.beats.size(), 2u);
  EXPECT_EQ(m.beats[0].t_s, 1000.5);
  EXPECT_EQ(m.beats[1].t_s, 1000.5 + 0.8125);  // the previous beat plus its RR
  EXPECT_EQ(m.beats[1].rr_ms, 812.5);
  m = DecodeMessage(text(R"({"t": 1, "rr_ms": [800], "session": 3, "seq": 4, "first_beat": 9})"))
          .value();
  EXPECT_TRUE(m.has_sequence);
  EXPECT_EQ(m.sequence.seq, 4u);
  EXPECT_EQ(m.sequence.first_beat, 9u);
  for (const char* bad : {R"({"t": 1, "rr_ms": []})", R"({"rr_ms": [800]})", R"([1, 2])",
                          R"({"t": 1, "rr_ms": [800, "x"]})", R"({"t": 1, "rr_ms": [0]})",
                          R"({"t": 1e25, "rr_ms": [800]})", R"({"t": 1, "rr_ms": [800], "seq": 1})",
                          R"({"t": 1, "rr_ms": [800], "session": 1, "seq": -1, "first_beat": 0})",
                          "{", "{\"t\": 1, \"rr_ms\": [800]} trailing"}) {
    auto r = DecodeMessage(text(bad));
    ASSERT_FALSE(r.has_value()) << bad;
    EXPECT_EQ(r.error().code(), Error::Code::kCorrupt) << bad;
  }
  std::string big = R"({"t": 1, "rr_ms": [)";
  for (int i = 0; i < 1025; ++i) big += "800,";
  big += "800]}";
  EXPECT_FALSE(DecodeMessage(text(big)).has_value());
}

// Issue 16: the raw Bluetooth Heart Rate Measurement (0x2A37) as phone bridges forward it.
TEST(Payload, BluetoothHeartRateMeasurementIsReadByItsFlags) {
  // 8-bit heart rate, contact detected, two RR values (1/1024 s).
  auto m = DecodeMessage(std::vector<uint8_t>{0x16, 72, 0x00, 0x04, 0x34, 0x03}).value();
  EXPECT_EQ(m.version, kBluetoothHeartRate);
  EXPECT_FALSE(m.has_sequence);
  EXPECT_TRUE(m.beats.empty());  // times come from the gateway (TimeBeats)
  EXPECT_EQ(m.heart_rate_bpm, 72);
  ASSERT_EQ(m.untimed_rr_ms.size(), 2u);
  EXPECT_EQ(m.untimed_rr_ms[0], 1000.0);               // 1024/1024 s
  EXPECT_EQ(m.untimed_rr_ms[1], 820 * 1000.0 / 1024);  // 0x0334
  // 16-bit heart rate and energy expended before the RR values.
  m = DecodeMessage(std::vector<uint8_t>{0x19, 0x2c, 0x01, 0x10, 0x00, 0x00, 0x03}).value();
  EXPECT_EQ(m.heart_rate_bpm, 300);
  EXPECT_FALSE(DecodeMessage(std::vector<uint8_t>{0x01, 0x2d, 0x01}).has_value());  // 301 bpm
  ASSERT_EQ(m.untimed_rr_ms.size(), 1u);
  EXPECT_EQ(m.untimed_rr_ms[0], 750.0);
  // Heart rate only: a valid measurement without beats.
  m = DecodeMessage(std::vector<uint8_t>{0x00, 61}).value();
  EXPECT_TRUE(m.untimed_rr_ms.empty());
  // The encoder used by tests and bridges round-trips.
  const std::vector<uint16_t> rr{800, 790, 1023};
  m = DecodeMessage(EncodeHeartRateMeasurement(70, rr)).value();
  ASSERT_EQ(m.untimed_rr_ms.size(), 3u);
  EXPECT_EQ(m.untimed_rr_ms[2], 1023 * 1000.0 / 1024);
  for (const auto& bad : std::vector<std::vector<uint8_t>>{
           {0x10, 70},                    // RR flag without RR values
           {0x10, 70, 0x00},              // half an RR value
           {0x10, 70, 0x00, 0x00},        // RR 0
           {0x10, 70, 0xff, 0xff},        // RR 64 s: past hrv's limit
           {0x01, 70},                    // 16-bit heart rate cut short
           {0x08, 70, 0x01},              // energy cut short
           {0x00, 70, 0x01},              // trailing byte
           {0x30, 70, 0x00, 0x04},        // a reserved bit
           std::vector<uint8_t>(600, 0),  // larger than any ATT value
       }) {
    auto r = DecodeMessage(bad);
    ASSERT_FALSE(r.has_value()) << bad.size();
    EXPECT_EQ(r.error().code(), Error::Code::kCorrupt);
  }
}

TEST(Payload, BluetoothBeatsContinueFromTheLastBeatOrAnchorAtTheirArrival) {
  const std::vector<double> rr{800, 1000, 900};
  // First message: the last beat at its arrival.
  auto b = TimeBeats(rr, -INFINITY, 1000);
  ASSERT_EQ(b.size(), 3u);
  EXPECT_DOUBLE_EQ(b[2].t_s, 1000);
  EXPECT_DOUBLE_EQ(b[1].t_s, 999.1);
  EXPECT_DOUBLE_EQ(b[0].t_s, 998.1);
  EXPECT_EQ(b[0].rr_ms, 800);
  // Next message: each beat the previous plus its RR, whatever the arrival (a backlog forwarded
  // fast, or a few seconds late).
  for (double arrival : {1000.0, 1003.0, 1012.0, 500.0}) {
    b = TimeBeats(rr, 1000, arrival);
    EXPECT_EQ(b[0].t_s, 1000 + 0.8) << arrival;
    EXPECT_EQ(b[2].t_s, 1000 + 0.8 + 1.0 + 0.9) << arrival;
  }
  // A gap (arriving more than kHeartRateGapS late) or a runaway clock: anchored again.
  EXPECT_DOUBLE_EQ(TimeBeats(rr, 1000, 1020).back().t_s, 1020);
  EXPECT_DOUBLE_EQ(TimeBeats(rr, 1000, -5000).back().t_s, -5000);
}

TEST(Payload, StatusRoundTripAndRefusals) {
  const auto bytes = EncodeStatus({.session = 9, .messages = 12, .beats = 48, .final = true});
  auto st = DecodeStatus(bytes).value();
  EXPECT_EQ(st.session, 9u);
  EXPECT_EQ(st.messages, 12u);
  EXPECT_EQ(st.beats, 48u);
  EXPECT_TRUE(st.final);
  EXPECT_FALSE(DecodeStatus(std::span(bytes).first(bytes.size() - 1)).has_value());
  // More messages than beats: each message has at least one beat.
  EXPECT_FALSE(DecodeStatus(EncodeStatus({.messages = 5, .beats = 4})).has_value());
  auto bad = bytes;
  bad[28] = 7;
  EXPECT_FALSE(DecodeStatus(bad).has_value());
}

// Issue 11, item 1: one message with a beat time of 1e25 once passed the gateway and hung the
// enclave. Values outside hrv's limits are refused where they enter.
TEST(Payload, BeatsOutsideTheLimitsAreRefusedAtTheEdge) {
  for (const hrv::Beat& b : std::vector<hrv::Beat>{{1e25, 800},
                                                   {-1e25, 800},
                                                   {hrv::kMaxBeatTimeS * 1.5, 800},
                                                   {1.7e9, 0},
                                                   {1.7e9, -5},
                                                   {1.7e9, 1e6}}) {
    const std::vector<hrv::Beat> beats = {{1.7e9, 800}, b};
    auto r = DecodePayload(EncodePayload({}, beats));
    ASSERT_FALSE(r.has_value()) << b.t_s << " " << b.rr_ms;
    EXPECT_EQ(r.error().code(), Error::Code::kCorrupt);
  }
  EXPECT_TRUE(DecodePayload(EncodePayload({}, std::vector<hrv::Beat>{{1.7e9, 800}})).has_value());
}

TEST(SensorOverMqtt, EveryBeatArrivesOnItsUsersTopicInSequence) {
  testing::Broker broker({.site = "t1"});
  ASSERT_TRUE(broker.ok()) << broker.error();
  std::mutex mu;
  std::map<std::string, std::vector<hrv::Beat>> got;
  std::map<std::string, uint64_t> next_seq, next_beat;
  std::map<std::string, DeviceStatus> status;
  size_t bad = 0, out_of_sequence = 0;
  auto options = broker.ClientOptions("test-subscriber", broker.Gateway());
  options.also_subscribe = {"medstream/t1/+/status"};
  options.subscription = mqtt::Client::Subscription{
      .pattern = "medstream/t1/+/rr", .qos = 1, .handler = [&](const mqtt::Message& m) {
        std::lock_guard lock(mu);
        if (m.topic.ends_with("/status")) {
          if (auto st = DecodeStatus(m.payload)) status[m.topic] = *st;
          return;
        }
        auto msg = DecodeMessage(m.payload);
        if (!msg) {
          ++bad;
          return;
        }
        out_of_sequence += msg->sequence.seq != next_seq[m.topic] ||
                           msg->sequence.first_beat != next_beat[m.topic];
        ++next_seq[m.topic];
        next_beat[m.topic] += msg->beats.size();
        auto& v = got[m.topic];
        v.insert(v.end(), msg->beats.begin(), msg->beats.end());
      }};
  auto sub = mqtt::Client::Connect(options);
  ASSERT_TRUE(sub) << sub.error().message();
  for (int u = 1; u <= 3; ++u) broker.Device(UserName(u));
  const std::string cmd = std::string(MEDSTREAM_BINARY) + " sensor --broker " + broker.address() +
                          " --credentials " + broker.dir() +
                          " --site t1 --users 3 --duration 120 --speed 0 --seed 11 "
                          "--beats-per-message 4 --start 1000 > /dev/null";
  ASSERT_EQ(std::system(cmd.c_str()), 0);
  const auto want1 = Generate(11, 1, 120), want3 = Generate(11, 3, 120);
  const std::string status3 = "medstream/t1/user-0003/status";
  testing::WaitFor(
      [&] {
        std::lock_guard lock(mu);
        return got[Topic("t1", UserName(3))].size() >= want3.size() &&
               got[Topic("t1", UserName(1))].size() >= want1.size() && status[status3].final;
      },
      3);
  std::lock_guard lock(mu);
  EXPECT_EQ(bad, 0u);
  EXPECT_EQ(out_of_sequence, 0u);
  const auto& u1 = got[Topic("t1", UserName(1))];
  ASSERT_EQ(u1.size(), want1.size());
  for (size_t i = 0; i < u1.size(); ++i) {
    ASSERT_EQ(u1[i].t_s, want1[i].t_s);
    ASSERT_NEAR(u1[i].rr_ms, want1[i].rr_ms, 1e-3);
  }
  EXPECT_EQ(got[Topic("t1", UserName(3))].size(), want3.size());
  // The final status says exactly what was sent.
  EXPECT_TRUE(status[status3].final);
  EXPECT_EQ(status[status3].beats, want3.size());
  EXPECT_EQ(status[status3].messages, next_seq[Topic("t1", UserName(3))]);
}

// The gateway's write-ahead log relies on this: with the threaded network loop, libmosquitto sends
// a QoS 1 acknowledgement only after the message handler has returned, so a subscriber that dies
// inside its handler gets the message again (persistent session). Pinned here, because a
// libmosquitto that acknowledged first would let a gateway crash lose a message.
TEST(SensorOverMqtt, AMessageIsAcknowledgedOnlyAfterItsHandlerReturns) {
  testing::Broker broker;
  ASSERT_TRUE(broker.ok()) << broker.error();
  const auto device = broker.Device("dev-a");
  const std::string topic = Topic("f", "dev-a");
  auto gateway_options = [&](mqtt::Client::Handler h) {
    auto o = broker.ClientOptions("ack-order", broker.Gateway());
    o.clean_session = false;
    o.subscription = mqtt::Client::Subscription{.pattern = topic, .qos = 1, .handler = h};
    return o;
  };
  int ready[2];
  ASSERT_EQ(pipe(ready), 0);
  const pid_t child = fork();  // before this process has any MQTT thread
  ASSERT_GE(child, 0);
  if (child == 0) {
    close(ready[0]);
    auto c = mqtt::Client::Connect(gateway_options([](const mqtt::Message&) { _exit(0); }));
    if (!c) _exit(2);
    // Subscribed (Connect waited for the broker's confirmation): the parent may publish.
    if (write(ready[1], "s", 1) != 1) _exit(3);
    std::this_thread::sleep_for(std::chrono::seconds(10));  // the message ends this earlier
    _exit(1);
  }
  close(ready[1]);
  char subscribed = 0;
  ASSERT_EQ(read(ready[0], &subscribed, 1), 1) << "the subscriber could not connect";
  close(ready[0]);
  auto pub = mqtt::Client::Connect(broker.ClientOptions("ack-order-pub", device)).value();
  const std::vector<uint8_t> payload = {1, 2, 3};
  ASSERT_TRUE(pub->Publish(topic, payload, 1));
  ASSERT_TRUE(pub->Flush(5000));
  int status = 0;
  waitpid(child, &status, 0);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "the subscriber got nothing";
  std::atomic<int> again{0};
  auto sub = mqtt::Client::Connect(gateway_options([&](const mqtt::Message&) { ++again; }));
  ASSERT_TRUE(sub) << sub.error().message();
  testing::WaitFor([&] { return again > 0; }, 5);
  EXPECT_EQ(again, 1) << "the message died with the subscriber's handler";
}

// Messages queued for a persistent session while its client was away arrive at once on
// reconnection: with the subscription given to Connect, every one reaches the handler.
TEST(SensorOverMqtt, APersistentSessionGetsWhatWasQueuedWhileAway) {
  testing::Broker broker;
  ASSERT_TRUE(broker.ok()) << broker.error();
  std::atomic<int> got{0};
  auto options = [&] {
    auto o = broker.ClientOptions("queued-sub", broker.Gateway());
    o.clean_session = false;
    o.subscription = mqtt::Client::Subscription{
        .pattern = "medstream/f/+/rr", .qos = 1, .handler = [&](const mqtt::Message&) { ++got; }};
    return o;
  };
  {
    auto sub = mqtt::Client::Connect(options());
    ASSERT_TRUE(sub) << sub.error().message();
  }
  std::vector<std::unique_ptr<mqtt::Client>> devices;
  for (int d = 0; d < 7; ++d) {
    const std::string name = "dev-" + std::to_string(d);
    devices.push_back(
        mqtt::Client::Connect(broker.ClientOptions("queued-" + name, broker.Device(name))).value());
  }
  const std::vector<uint8_t> payload(100, 7);
  for (int i = 0; i < 500; ++i) {
    ASSERT_TRUE(devices[i % 7]->Publish(Topic("f", "dev-" + std::to_string(i % 7)), payload));
  }
  for (auto& d : devices) ASSERT_TRUE(d->Flush(5000));
  auto sub = mqtt::Client::Connect(options());
  ASSERT_TRUE(sub);
  testing::WaitFor([&] { return got >= 500; }, 5);
  EXPECT_EQ(got, 500);
}

TEST(SensorOverMqtt, NoBrokerIsAClearError) {
  testing::Broker broker;  // for credentials; nobody listens on the port tried
  ASSERT_TRUE(broker.ok()) << broker.error();
  auto o = broker.ClientOptions("nobody", broker.Device("nobody"));
  o.port = proc::FreeLoopbackPort();
  auto c = mqtt::Client::Connect(o);
  ASSERT_FALSE(c.has_value());
  EXPECT_EQ(c.error().code(), Error::Code::kNotFound);
}

TEST(SensorOverMqtt, MissingTlsFilesAreAClearErrorBeforeAnyConnection) {
  mqtt::Client::Options o;
  o.host = "127.0.0.1";
  o.port = 1;
  o.client_id = "x";
  auto c = mqtt::Client::Connect(o);
  ASSERT_FALSE(c.has_value());
  EXPECT_EQ(c.error().code(), Error::Code::kInvalidArgument);
  o.tls = {"/nonexistent/ca.crt", "/nonexistent/c", "/nonexistent/k"};
  c = mqtt::Client::Connect(o);
  ASSERT_FALSE(c.has_value());
  EXPECT_EQ(c.error().code(), Error::Code::kInvalidArgument);
}

}  // namespace
}  // namespace medstream::sensor
