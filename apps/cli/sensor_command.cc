// `medstream sensor`: simulated users (or a replayed recording) publishing beats over MQTT.
#include <algorithm>
#include <chrono>
#include <cstdio>

#include <fmt/format.h>
#include <memory>
#include <nlohmann/json.hpp>

#include "apps/cli/commands.h"
#include "apps/cli/json_out.h"
#include "common/base/file.h"
#include "owner/broker/broker.h"
#include "owner/devices/devices.h"
#include "owner/sensor/sensor.h"

namespace medstream::cli {

void RegisterSensorCommand(CLI::App& app, int* exit_code) {
  struct Args : devices::PublishOptions {
    std::string summary_json;
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
      ->check(CLI::Range(1, devices::kMaxDevicesPerProcess))
      ->capture_default_str();
  cmd->add_option("--duration", a->duration_s, "Seconds of heart beats per user (simulated time)")
      ->check(FiniteRange(1e-3, hrv::kMaxBeatTimeS / 2))
      ->capture_default_str();
  cmd->add_option("--speed", a->speed, "Times faster than real time (0 = as fast as possible)")
      ->check(NonNegative())
      ->capture_default_str();
  cmd->add_option("--rate", a->rate,
                  "Total samples per second across users (overrides --speed), e.g. 1424")
      ->check(NonNegative());
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
      ->check(FiniteRange(0.0, hrv::kMaxBeatTimeS / 2))
      ->capture_default_str();
  cmd->add_option("--record", a->record,
                  "Also write every beat sent to DIR/<user>.csv (time_s,rr_ms), for checking");
  cmd->add_option("--for", a->for_s, "Stop after this many wall-clock seconds (0 = no limit)")
      ->check(NonNegative());
  cmd->add_option("--summary-json", a->summary_json,
                  "Write what was published (users, beats, messages, seconds) as JSON");
  cmd->callback([a, exit_code, cmd] {
    auto fail = [&](const auto& e) { *exit_code = ExitWithError("sensor", e); };
    a->start_given = cmd->count("--start") > 0;
    auto said = devices::Publish(*a, [](const std::string& line) {
      std::printf("%s%s\n", line.starts_with(" ") ? "" : "medstream sensor: ", line.c_str());
      std::fflush(stdout);
    });
    if (!said) return fail(said.error());
    const devices::PublishSummary& sum = *said;
    const double wall = sum.seconds, published = static_cast<double>(sum.beats);
    std::printf(
        "published %zu beats in %zu messages for %zu users in %.1f s (%.0f beats/s), all "
        "acknowledged\n",
        sum.beats, sum.messages, sum.users, wall, published / wall);
    if (!a->summary_json.empty()) {
      const nlohmann::ordered_json j{{"users", sum.users},
                                     {"beats", sum.beats},
                                     {"messages", sum.messages},
                                     {"seconds", wall},
                                     {"beats_per_second", published / wall}};
      const auto t0 = std::chrono::steady_clock::now();
      if (auto s = WriteFileAtomic(a->summary_json, DumpJson(j, 2) + "\n"); !s) {
        return fail(s.error());
      }
      // The write is synced to disk; on a disk busy with other writes that can take long, and a
      // harness waiting for this process would otherwise see only a slow run.
      const double took =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      if (took > 1)
        std::printf("medstream sensor: writing %s took %.1f s\n", a->summary_json.c_str(), took);
    }
  });
}

}  // namespace medstream::cli
