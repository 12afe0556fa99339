// `medstream sensor`: simulated users (or a replayed recording) publishing beats over MQTT.
#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <thread>

#include <fmt/format.h>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>

#include "adapters/mqtt/mqtt.h"
#include "adapters/recording/recording.h"
#include "adapters/wfdb/ecg_file.h"
#include "adapters/wfdb/wfdb.h"
#include "apps/cli/commands.h"
#include "apps/cli/json_out.h"
#include "common/base/bytes.h"
#include "common/base/file.h"
#include "common/crypto/crypto.h"
#include "owner/broker/broker.h"
#include "owner/sensor/sensor.h"

namespace medstream::cli {

namespace {

// One user's beats, made (or replayed) as they are sent.
struct Source {
  Source(const std::string& site, std::string name)
      : user(std::move(name)), topic(sensor::Topic(site, user)) {}
  // The next message: up to `n` beats until `end_s` (dropouts are not sent).
  void Fill(size_t n, double end_s) {
    message.clear();
    while (message.size() < n) {
      hrv::Beat b;
      if (generator) {
        b = generator->Next();
        if (b.t_s > end_s) break;
        if (generator->dropped()) continue;
      } else {
        if (next >= replay.size()) break;
        if (!ready.empty()) ready_last = ready[next];
        b = replay[next++];
      }
      message.push_back(b);
    }
  }
  // Keeps the message just published: the record holds what was sent, not what was made ahead.
  void Sent() {
    if (!record) return;
    for (const hrv::Beat& b : message)
      *record << b.t_s << "," << static_cast<float>(b.rr_ms) << "\n";
  }
  // Recordings are plaintext health data: 0600 files (in a 0700 folder, see the caller).
  Status Record(const std::string& dir) {
    const std::string path = dir + "/" + user + ".csv";
    if (auto s = CreatePrivateFile(path); !s) return s;
    record = std::make_unique<std::ofstream>(path);
    if (!*record) return IoError("cannot open " + path);
    *record << "time_s,rr_ms\n";
    record->precision(17);
    return {};
  }

  // This device's own connection (its certificate is its identity at the broker) and where its
  // session stands.
  Status Connect(const mqtt::Client::Options& options) {
    MEDSTREAM_TRY(c, mqtt::Client::Connect(options));
    client = std::move(c);
    return crypto::RandomBytes(
        {reinterpret_cast<uint8_t*>(&sequence.session), sizeof sequence.session});
  }
  // What the device has sent so far, retained by the broker (see sensor.h).
  Status PublishStatus(const std::string& site, bool final) {
    const auto payload =
        sensor::EncodeStatus({sequence.session, sequence.seq, sequence.first_beat, final});
    return client->Publish(sensor::StatusTopic(site, user), payload, 1, /*retain=*/true);
  }

  std::string user, topic;
  std::unique_ptr<mqtt::Client> client;
  sensor::Sequence sequence;  // of the next message
  std::optional<sensor::Generator> generator;
  std::vector<hrv::Beat> replay;
  // --replay-ecg: when each replayed beat became known to the detector (seconds, like t_s); the
  // message goes out then, as a device would send it.
  std::vector<double> ready;
  double ready_last = -1;  // of the message being filled
  size_t next = 0;
  std::vector<hrv::Beat> message;
  std::unique_ptr<std::ofstream> record;
};

// Replays keep the file's times unless --start moves them (see above).
constexpr double kReplayStartS = 0;
// One connection (and network thread) per device: a process simulates at most this many.
constexpr int kMaxDevicesPerProcess = 2000;

// "replay-" + the file's name without its extension, other characters as '_', at most 64.
std::string ReplayDeviceName(const std::string& path) {
  std::string stem = std::filesystem::path(path).stem().string();
  for (char& c : stem) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_') c = '_';
  }
  return ("replay-" + stem).substr(0, 64);
}

}  // namespace

void RegisterSensorCommand(CLI::App& app, int* exit_code) {
  struct Args {
    std::string broker = "127.0.0.1:8883";
    std::string ca, cert, key, credentials;
    std::string site = "demo";
    int users = 20;
    double duration_s = 60;
    double speed = 1;
    double rate = 0;
    uint64_t seed = 1;
    int per_message = 1;
    std::string replay;
    std::string replay_ecg;
    int channel = 0;
    std::string device;
    double start_s = 1.7e9;
    std::string record;
    std::string summary_json;
    double for_s = 0;
  };
  auto a = std::make_shared<Args>();
  CLI::App* cmd = app.add_subcommand(
      "sensor", "Simulate wearable users (or replay a recording) publishing beats over MQTT");
  cmd->add_option("--broker", a->broker, "MQTT broker host:port (TLS)")->capture_default_str();
  cmd->add_option("--credentials", a->credentials,
                  "A `medstream broker init` folder: its ca.crt, and clients/DEVICE.crt and .key "
                  "for every device simulated (`medstream broker enroll` makes them)");
  cmd->add_option("--ca", a->ca, "The broker CA's certificate (instead of --credentials)");
  cmd->add_option("--cert", a->cert, "This device's certificate (one device only)");
  cmd->add_option("--key", a->key, "This device's private key (one device only)");
  cmd->add_option("--site", a->site, "Site name in the topic medstream/SITE/USER/rr")
      ->capture_default_str();
  cmd->add_option("--users", a->users, "Simulated users (devices)")
      ->check(CLI::Range(1, kMaxDevicesPerProcess))
      ->capture_default_str();
  cmd->add_option("--duration", a->duration_s, "Seconds of heart beats per user (simulated time)")
      ->check(CLI::Range(1e-3, hrv::kMaxBeatTimeS / 2))
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
  cmd->add_option("--replay", a->replay,
                  "Replay this recording (rr or csv) as one device instead (e.g. "
                  "tests/data/rr/physionet_rr_healthy_subjects_007_ms.txt)")
      ->check(CLI::ExistingFile);
  cmd->add_option("--replay-ecg", a->replay_ecg,
                  "Replay a raw ECG (WFDB record NAME.hea, or an ECG CSV) as one device that "
                  "detects its beats (medstream ecg) and sends each once it is detected");
  cmd->add_option("--channel", a->channel, "--replay-ecg: the ECG signal (0-based)")
      ->capture_default_str();
  cmd->add_option("--device", a->device,
                  "Device (user) name of the replay (default: replay-<file name>)")
      ->check([](const std::string& d) {
        return broker::ValidDeviceName(d) ? std::string()
                                          : std::string("1 to 64 of A-Z a-z 0-9 - _");
      });
  // Bounded so that every beat made keeps hrv's limits (a time past them would be refused by the
  // gateway, and a huge one stops advancing: t + RR == t).
  cmd->add_option("--start", a->start_s,
                  "Time of the first beat (Unix seconds); with --replay, added to the file's "
                  "times (default 0: the file's own)")
      ->check(CLI::Range(0.0, hrv::kMaxBeatTimeS / 2))
      ->capture_default_str();
  cmd->add_option("--record", a->record,
                  "Also write every beat sent to DIR/<user>.csv (time_s,rr_ms), for checking");
  cmd->add_option("--for", a->for_s, "Stop after this many wall-clock seconds (0 = no limit)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--summary-json", a->summary_json,
                  "Write what was published (users, beats, messages, seconds) as JSON");
  cmd->callback([a, exit_code, cmd] {
    auto fail = [&](const std::string& m) {
      std::fprintf(stderr, "medstream sensor: error: %s\n", m.c_str());
      *exit_code = 1;
    };
    auto addr = mqtt::ParseAddress(a->broker);
    if (!addr) return fail(addr.error().message());
    const bool single = !a->cert.empty() || !a->key.empty();
    if (single && !a->credentials.empty()) {
      return fail("--credentials DIR or --ca/--cert/--key, not both");
    }
    if (!single && a->credentials.empty()) {
      return fail(
          "the broker takes TLS clients with certificates only: pass --credentials DIR (a "
          "`medstream broker init` folder with the devices enrolled) or --ca/--cert/--key");
    }
    // Beats are made as they are sent (a Stream-Big run makes tens of millions), one message's
    // worth per user ahead.
    std::vector<Source> users;
    const double end_s = a->start_s + a->duration_s;
    if (!a->replay_ecg.empty()) {
      if (!a->replay.empty()) return fail("--replay or --replay-ecg, not both");
      // The detector runs here, on the sensor's side; each beat carries the time the detector
      // decided it, and is sent then (pacing below).
      auto ecg = wfdb::LoadEcg(a->replay_ecg, a->channel);
      if (!ecg) return fail(ecg.error().message());
      auto beats = wfdb::DetectBeats(*ecg);
      if (!beats) return fail(beats.error().message());
      if (beats->size() < 2) return fail(a->replay_ecg + ": fewer than two beats detected");
      Source src(a->site, a->device.empty()
                              ? "ecg-" + ReplayDeviceName(wfdb::RecordBase(a->replay_ecg)).substr(7)
                              : a->device);
      const double start = cmd->count("--start") > 0 ? a->start_s : kReplayStartS;
      for (size_t i = 1; i < beats->size(); ++i) {
        const auto& b = (*beats)[i];
        src.replay.push_back(
            {start + static_cast<double>(b.sample) / ecg->fs,
             static_cast<double>(b.sample - (*beats)[i - 1].sample) * 1000 / ecg->fs});
        src.ready.push_back(start + static_cast<double>(b.decided_at) / ecg->fs);
      }
      users.push_back(std::move(src));
    } else if (!a->replay.empty()) {
      auto rec = recording::ReadRecording(a->replay, {});
      if (!rec) return fail(rec.error().message());
      if (rec->beats.empty()) return fail(a->replay + " has no beats");
      // Its own device (a replay as user-0001 would collide with a simulated user and be dropped
      // as repeats), with the file's own beat times by default (a running sum from 0 for rr
      // files): windows then fall on exactly the beats `medstream hrv` sees offline. (An offset
      // of ~1.7e9 s would round times a hair below a window boundary onto it.)
      Source src(a->site, a->device.empty() ? ReplayDeviceName(a->replay) : a->device);
      const double start = cmd->count("--start") > 0 ? a->start_s : kReplayStartS;
      for (hrv::Beat b : rec->beats) {
        b.t_s += start;
        src.replay.push_back(b);
      }
      users.push_back(std::move(src));
    } else {
      for (int u = 1; u <= a->users; ++u) {
        Source src(a->site, sensor::UserName(u));
        src.generator.emplace(a->seed, u, a->start_s);
        users.push_back(std::move(src));
      }
    }
    if (single && users.size() != 1) {
      return fail("--cert/--key are one device's; " + std::to_string(users.size()) +
                  " users need --credentials DIR");
    }
    // Each device connects as itself. A persistent session, so messages in flight when the broker
    // goes away are sent again after it returns (a clean session would drop them); duplicates are
    // harmless downstream.
    for (Source& src : users) {
      broker::Credentials c = single ? broker::Credentials{a->ca, a->cert, a->key}
                                     : broker::ClientCredentials(a->credentials, src.user);
      mqtt::Client::Options co;
      co.host = addr->first;
      co.port = addr->second;
      co.client_id = "medstream-sensor-" + a->site + "-" + src.user;
      co.tls = {c.ca, c.cert, c.key};
      co.clean_session = false;
      if (auto s = src.Connect(co); !s) {
        return fail(src.user + ": " + s.error().message());
      }
      // A new session starts: say so before its first message (sensor.h).
      if (auto s = src.PublishStatus(a->site, false); !s) return fail(s.error().message());
    }
    double speed = a->speed;
    if (a->rate > 0) {
      // Beats per second of heart time across users, from their profiles (or the recording).
      double per_heart_second = 0;
      if (users[0].generator == std::nullopt) {
        const auto& r = users[0].replay;
        per_heart_second = static_cast<double>(r.size()) / std::max(1.0, r.back().t_s - r[0].t_s);
      } else {
        for (const Source& src : users) {
          const auto& p = src.generator->profile();
          per_heart_second += p.mean_hr_bpm / 60 * (1 - p.dropout_rate);
        }
      }
      speed = a->rate / per_heart_second;
    }
    if (!a->record.empty()) {
      bool tightened = false;
      if (auto s = MakePrivateDir(a->record, &tightened); !s) return fail(s.error().message());
      if (tightened) {
        std::fprintf(stderr, "medstream sensor: %s is now 0700 (it holds recorded beats)\n",
                     a->record.c_str());
      }
      for (Source& src : users) {
        if (auto s = src.Record(a->record); !s) return fail(s.error().message());
      }
    }
    const double heart_span =
        users[0].generator ? a->duration_s : users[0].replay.back().t_s - users[0].replay[0].t_s;
    std::printf(
        "medstream sensor: %zu users, %.0f s of heart time, %s\n", users.size(), heart_span,
        speed == 0 ? "as fast as possible" : fmt::format("{:.6g}x real time", speed).c_str());
    std::fflush(stdout);
    for (Source& src : users) src.Fill(static_cast<size_t>(a->per_message), end_s);
    // Heart time 0 of the pacing: the start (simulated users) or the replay's first beat (its
    // times can be anything, epoch seconds included).
    const double origin = !users[0].ready.empty() ? users[0].ready.front()
                          : !users[0].generator   ? users[0].replay.front().t_s
                                                  : a->start_s;
    const auto wall0 = std::chrono::steady_clock::now();
    size_t published = 0, messages = 0;
    auto last_report = wall0;
    for (;;) {
      // The user whose next message is due first.
      Source* due = nullptr;
      for (Source& src : users) {
        if (!src.message.empty() && (!due || src.message.front().t_s < due->message.front().t_s)) {
          due = &src;
        }
      }
      if (!due) break;
      if (a->for_s > 0 &&
          std::chrono::steady_clock::now() - wall0 > std::chrono::duration<double>(a->for_s)) {
        break;
      }
      const double at = (due->ready.empty() ? due->message.back().t_s : due->ready_last) - origin;
      if (speed > 0) {
        std::this_thread::sleep_until(wall0 + std::chrono::duration<double>(at / speed));
      }
      const auto payload = sensor::EncodePayload(due->sequence, due->message);
      if (auto s = due->client->Publish(due->topic, payload, 1); !s) {
        return fail(s.error().message());
      }
      ++due->sequence.seq;
      due->sequence.first_beat += due->message.size();
      due->Sent();
      published += due->message.size();
      ++messages;
      due->Fill(static_cast<size_t>(a->per_message), end_s);
      const auto now = std::chrono::steady_clock::now();
      if (now - last_report > std::chrono::seconds(5)) {
        std::printf("  %zu beats published (%.0f %% of the heart time)\n", published,
                    100 * std::min(1.0, at / heart_span));
        std::fflush(stdout);
        last_report = now;
        for (Source& src : users) {
          if (auto s = src.PublishStatus(a->site, false); !s) return fail(s.error().message());
        }
      }
    }
    // The final status: how much each device sent, kept by the broker for the gateway.
    for (Source& src : users) {
      if (auto s = src.PublishStatus(a->site, true); !s) return fail(s.error().message());
    }
    for (Source& src : users) {
      if (auto s = src.client->Flush(30000); !s) return fail(src.user + ": " + s.error().message());
    }
    const double wall =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - wall0).count();
    std::printf(
        "published %zu beats in %zu messages for %zu users in %.1f s (%.0f beats/s), all "
        "acknowledged\n",
        published, messages, users.size(), wall, static_cast<double>(published) / wall);
    if (!a->summary_json.empty()) {
      const nlohmann::ordered_json j{{"users", users.size()},
                                     {"beats", published},
                                     {"messages", messages},
                                     {"seconds", wall},
                                     {"beats_per_second", static_cast<double>(published) / wall}};
      if (auto s = WriteFileAtomic(a->summary_json, DumpJson(j, 2) + "\n"); !s) {
        return fail(s.error().message());
      }
    }
  });
}

}  // namespace medstream::cli
