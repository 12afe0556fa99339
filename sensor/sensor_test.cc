// The sensor generator's realism, the payload format, and publishing through a real Mosquitto.
#include "sensor/sensor.h"

#include <gtest/gtest.h>
#include <sys/wait.h>

#include <atomic>
#include <map>
#include <mutex>

#include "hrv/jobs.h"
#include "mqtt/mqtt.h"
#include "proc/proc.h"
#include "tests/broker.h"

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
  auto payload = EncodePayload(beats);
  EXPECT_EQ(payload.size(), 6 + 12 * beats.size());
  auto back = DecodePayload(payload).value();
  ASSERT_EQ(back.size(), beats.size());
  EXPECT_EQ(back[3].t_s, beats[3].t_s);
  EXPECT_NEAR(back[3].rr_ms, beats[3].rr_ms, 1e-4);
  EXPECT_FALSE(DecodePayload(std::span(payload).first(payload.size() - 1)).has_value());
  payload[0] = 'X';
  EXPECT_FALSE(DecodePayload(payload).has_value());
  EXPECT_FALSE(DecodePayload({}).has_value());
  std::vector<uint8_t> zero = {'M', 'S', 'P', '1', 0, 0};
  EXPECT_FALSE(DecodePayload(zero).has_value());
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
    auto r = DecodePayload(EncodePayload(beats));
    ASSERT_FALSE(r.has_value()) << b.t_s << " " << b.rr_ms;
    EXPECT_EQ(r.error().code(), Error::Code::kCorrupt);
  }
  EXPECT_TRUE(DecodePayload(EncodePayload(std::vector<hrv::Beat>{{1.7e9, 800}})).has_value());
}

TEST(SensorOverMqtt, EveryBeatArrivesOnItsUsersTopic) {
  testing::Broker broker;
  ASSERT_TRUE(broker.ok()) << broker.error();
  auto sub = mqtt::Client::Connect("127.0.0.1", broker.port(), "test-subscriber").value();
  std::mutex mu;
  std::map<std::string, std::vector<hrv::Beat>> got;
  size_t bad = 0;
  ASSERT_TRUE(sub->Subscribe("medstream/t1/+/rr", 1, [&](const mqtt::Message& m) {
    auto beats = DecodePayload(m.payload);
    std::lock_guard lock(mu);
    if (!beats) {
      ++bad;
      return;
    }
    auto& v = got[m.topic];
    v.insert(v.end(), beats->begin(), beats->end());
  }));
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  const std::string cmd = std::string(MEDSTREAM_BINARY) + " sensor --broker " + broker.address() +
                          " --site t1 --users 3 --duration 120 --speed 0 --seed 11 "
                          "--beats-per-message 4 --start 1000 > /dev/null";
  ASSERT_EQ(std::system(cmd.c_str()), 0);
  const auto want1 = Generate(11, 1, 120), want3 = Generate(11, 3, 120);
  for (int i = 0; i < 300; ++i) {
    {
      std::lock_guard lock(mu);
      if (got[Topic("t1", UserName(3))].size() >= want3.size() &&
          got[Topic("t1", UserName(1))].size() >= want1.size()) {
        break;
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  std::lock_guard lock(mu);
  EXPECT_EQ(bad, 0u);
  const auto& u1 = got[Topic("t1", UserName(1))];
  ASSERT_EQ(u1.size(), want1.size());
  for (size_t i = 0; i < u1.size(); ++i) {
    ASSERT_EQ(u1[i].t_s, want1[i].t_s);
    ASSERT_NEAR(u1[i].rr_ms, want1[i].rr_ms, 1e-3);
  }
  EXPECT_EQ(got[Topic("t1", UserName(3))].size(), want3.size());
}

// The gateway's write-ahead log relies on this: with the threaded network loop, libmosquitto sends
// a QoS 1 acknowledgement only after the message handler has returned, so a subscriber that dies
// inside its handler gets the message again (persistent session). Pinned here, because a
// libmosquitto that acknowledged first would let a gateway crash lose a message.
TEST(SensorOverMqtt, AMessageIsAcknowledgedOnlyAfterItsHandlerReturns) {
  testing::Broker broker;
  ASSERT_TRUE(broker.ok()) << broker.error();
  const pid_t child = fork();  // before this process has any MQTT thread
  ASSERT_GE(child, 0);
  if (child == 0) {
    auto c = mqtt::Client::Connect("127.0.0.1", broker.port(), "ack-order", false);
    if (!c) _exit(2);
    (void)(*c)->Subscribe("ack/order", 1, [](const mqtt::Message&) { _exit(0); });
    std::this_thread::sleep_for(std::chrono::seconds(10));
    _exit(1);
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  auto pub = mqtt::Client::Connect("127.0.0.1", broker.port(), "ack-order-pub").value();
  const std::vector<uint8_t> payload = {1, 2, 3};
  ASSERT_TRUE(pub->Publish("ack/order", payload, 1));
  ASSERT_TRUE(pub->Flush(5000));
  int status = 0;
  waitpid(child, &status, 0);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "the subscriber got nothing";
  std::atomic<int> again{0};
  auto sub = mqtt::Client::Connect("127.0.0.1", broker.port(), "ack-order", false).value();
  ASSERT_TRUE(sub->Subscribe("ack/order", 1, [&](const mqtt::Message&) { ++again; }));
  for (int i = 0; i < 250 && again == 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_EQ(again, 1) << "the message died with the subscriber's handler";
}

// Messages queued for a persistent session while its client was away arrive at once on
// reconnection: with the subscription given to Connect, every one reaches the handler.
TEST(SensorOverMqtt, APersistentSessionGetsWhatWasQueuedWhileAway) {
  testing::Broker broker;
  ASSERT_TRUE(broker.ok()) << broker.error();
  std::atomic<int> got{0};
  auto subscription = [&] {
    return mqtt::Client::Subscription{
        .pattern = "queued/+", .qos = 1, .handler = [&](const mqtt::Message&) { ++got; }};
  };
  {
    auto sub =
        mqtt::Client::Connect("127.0.0.1", broker.port(), "queued-sub", false, subscription());
    ASSERT_TRUE(sub) << sub.error().message();
  }
  auto pub = mqtt::Client::Connect("127.0.0.1", broker.port(), "queued-pub").value();
  const std::vector<uint8_t> payload(100, 7);
  for (int i = 0; i < 500; ++i)
    ASSERT_TRUE(pub->Publish("queued/" + std::to_string(i % 7), payload));
  ASSERT_TRUE(pub->Flush(5000));
  auto sub = mqtt::Client::Connect("127.0.0.1", broker.port(), "queued-sub", false, subscription());
  ASSERT_TRUE(sub);
  for (int i = 0; i < 250 && got < 500; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_EQ(got, 500);
}

TEST(SensorOverMqtt, NoBrokerIsAClearError) {
  const int port = proc::FreeLoopbackPort();
  auto c = mqtt::Client::Connect("127.0.0.1", port, "nobody");
  ASSERT_FALSE(c.has_value());
  EXPECT_NE(c.error().message().find("cannot connect to the MQTT broker"), std::string::npos);
}

}  // namespace
}  // namespace medstream::sensor
