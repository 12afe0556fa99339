// `medstream sensor`: simulated users (or a replayed recording) publishing beats over MQTT.
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <thread>

#include "cli/commands.h"
#include "mqtt/mqtt.h"
#include "recording/recording.h"
#include "sensor/sensor.h"

namespace medstream::cli {

void RegisterSensorCommand(CLI::App& app, int* exit_code) {
  struct Args {
    std::string broker = "127.0.0.1:1883";
    std::string site = "demo";
    int users = 20;
    double duration_s = 60;
    double speed = 1;
    double rate = 0;
    uint64_t seed = 1;
    int per_message = 1;
    std::string replay;
    double start_s = 1.7e9;
    std::string record;
  };
  auto a = std::make_shared<Args>();
  CLI::App* cmd = app.add_subcommand(
      "sensor", "Simulate wearable users (or replay a recording) publishing beats over MQTT");
  cmd->add_option("--broker", a->broker, "MQTT broker host:port")->capture_default_str();
  cmd->add_option("--site", a->site, "Site name in the topic medstream/SITE/USER/rr")
      ->capture_default_str();
  cmd->add_option("--users", a->users, "Simulated users")
      ->check(CLI::Range(1, 100000))
      ->capture_default_str();
  cmd->add_option("--duration", a->duration_s, "Seconds of heart beats per user (simulated time)")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd->add_option("--speed", a->speed, "Times faster than real time (0 = as fast as possible)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  cmd->add_option("--rate", a->rate,
                  "Total samples per second across users (overrides --speed), e.g. 1424")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--seed", a->seed, "Random seed (same seed, same beats)")->capture_default_str();
  cmd->add_option("--beats-per-message", a->per_message, "Beats per MQTT message")
      ->check(CLI::Range(1, static_cast<int>(sensor::kMaxBeatsPerMessage)))
      ->capture_default_str();
  cmd->add_option("--replay", a->replay, "Replay this recording (rr or csv) as user-0001 instead")
      ->check(CLI::ExistingFile);
  cmd->add_option("--start", a->start_s, "Time of the first beat (Unix seconds)")
      ->capture_default_str();
  cmd->add_option("--record", a->record,
                  "Also write every beat sent to DIR/<user>.csv (time_s,rr_ms), for checking");
  cmd->callback([a, exit_code] {
    auto fail = [&](const std::string& m) {
      std::fprintf(stderr, "medstream sensor: error: %s\n", m.c_str());
      *exit_code = 1;
    };
    auto addr = mqtt::ParseAddress(a->broker);
    if (!addr) return fail(addr.error().message());
    // A persistent session, so messages in flight when the broker goes away are sent again after
    // it returns (a clean session would drop them); duplicates are harmless downstream.
    auto client = mqtt::Client::Connect(
        addr->first, addr->second, "medstream-sensor-" + a->site + "-" + std::to_string(a->seed),
        /*clean_session=*/false);
    if (!client) return fail(client.error().message());
    // Every user's beats in time order, merged, so publishing follows simulated time.
    struct Pending {
      std::string topic;
      std::vector<hrv::Beat> beats;
      size_t next = 0;
    };
    std::vector<Pending> users;
    if (!a->replay.empty()) {
      auto rec = recording::ReadRecording(a->replay, {});
      if (!rec) return fail(rec.error().message());
      Pending p{sensor::Topic(a->site, sensor::UserName(1)), {}, 0};
      for (hrv::Beat b : rec->beats) {
        b.t_s += a->start_s;
        p.beats.push_back(b);
      }
      users.push_back(std::move(p));
    } else {
      for (int u = 1; u <= a->users; ++u) {
        sensor::Generator g(a->seed, u, a->start_s);
        Pending p{sensor::Topic(a->site, sensor::UserName(u)), {}, 0};
        for (;;) {
          const hrv::Beat b = g.Next();
          if (b.t_s > a->start_s + a->duration_s) break;
          if (!g.dropped()) p.beats.push_back(b);
        }
        users.push_back(std::move(p));
      }
    }
    size_t total = 0;
    for (const auto& p : users) total += p.beats.size();
    if (!a->record.empty()) {
      std::filesystem::create_directories(a->record);
      for (const auto& p : users) {
        const std::string user = p.topic.substr(p.topic.find('/', 10) + 1,
                                                p.topic.rfind('/') - p.topic.find('/', 10) - 1);
        std::ofstream out(a->record + "/" + user + ".csv");
        out << "time_s,rr_ms\n";
        out.precision(17);
        for (const auto& b : p.beats) out << b.t_s << "," << static_cast<float>(b.rr_ms) << "\n";
      }
    }
    double speed = a->speed;
    if (a->rate > 0) {
      const double span = a->replay.empty()
                              ? a->duration_s
                              : users[0].beats.back().t_s - users[0].beats.front().t_s;
      speed = a->rate * span / static_cast<double>(total);
    }
    std::printf(
        "medstream sensor: %zu users, %zu beats over %.0f s of heart time, %s\n", users.size(),
        total, a->duration_s,
        speed == 0 ? "as fast as possible" : (std::to_string(speed) + "x real time").c_str());
    std::fflush(stdout);
    const auto wall0 = std::chrono::steady_clock::now();
    size_t published = 0, messages = 0;
    auto last_report = wall0;
    for (;;) {
      // The user whose next message is due first.
      Pending* due = nullptr;
      for (auto& p : users) {
        if (p.next < p.beats.size() && (!due || p.beats[p.next].t_s < due->beats[due->next].t_s))
          due = &p;
      }
      if (!due) break;
      const size_t n = std::min<size_t>(a->per_message, due->beats.size() - due->next);
      const double at = due->beats[due->next + n - 1].t_s - a->start_s;
      if (speed > 0) {
        std::this_thread::sleep_until(wall0 + std::chrono::duration<double>(at / speed));
      }
      const auto payload = sensor::EncodePayload(std::span(due->beats).subspan(due->next, n));
      if (auto s = (*client)->Publish(due->topic, payload, 1); !s) return fail(s.error().message());
      due->next += n;
      published += n;
      ++messages;
      const auto now = std::chrono::steady_clock::now();
      if (now - last_report > std::chrono::seconds(5)) {
        std::printf("  %zu / %zu beats published\n", published, total);
        std::fflush(stdout);
        last_report = now;
      }
    }
    if (auto s = (*client)->Flush(30000); !s) return fail(s.error().message());
    std::printf("published %zu beats in %zu messages for %zu users (all acknowledged)\n", published,
                messages, users.size());
  });
}

}  // namespace medstream::cli
