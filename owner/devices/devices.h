// devices: the simulated and replayed wearables of `medstream sensor`. Each device publishes its
// beats over MQTT with its own TLS identity (broker/broker.h) and its own session and sequence
// numbers (sensor.h), paced against the wall clock, and leaves a retained status saying how much it
// sent, so the gateway can count what never arrived. Not thread-safe: one Publish at a time.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>

#include "common/base/result.h"

namespace medstream::devices {

// One connection (and network thread) per device: a process simulates at most this many.
inline constexpr int kMaxDevicesPerProcess = 2000;

struct PublishOptions {
  std::string broker = "127.0.0.1:8883";
  // --credentials DIR (a `medstream broker init` folder, every device enrolled) or one device's
  // ca/cert/key.
  std::string ca, cert, key, credentials;
  std::string site = "demo";
  int users = 20;          // simulated users (ignored by replays)
  double duration_s = 60;  // heart time per simulated user
  double speed = 1;        // times real time; 0 = as fast as possible
  double rate = 0;         // total beats per second across users (overrides speed)
  uint64_t seed = 1;
  int per_message = 1;       // beats per message
  std::string replay;        // a recording (rr or csv) as one device
  std::string replay_ecg;    // a raw ECG (WFDB or CSV) whose beats are detected here
  int channel = 0;           // of the ECG
  std::string device;        // the replay's device name (default replay-<file>, ecg-<record>)
  double start_s = 1.7e9;    // time of the first beat
  bool start_given = false;  // replays keep the file's times unless start_s was given
  std::string record;        // also write every beat sent to DIR/<user>.csv (0600 in 0700)
  double for_s = 0;          // stop after this many wall-clock seconds (0 = no limit)
};

struct PublishSummary {
  size_t users = 0;
  size_t beats = 0;
  size_t messages = 0;
  double seconds = 0;
};

// Publishes until every device has sent its beats (or for_s passed), then waits until the broker
// acknowledged everything. `say` gets progress lines (one every 5 s) for a person to read.
// kInvalidArgument for options that do not fit together, kNotFound/kPermissionDenied/kIo from the
// broker (mqtt.h), the recording's own errors for a bad replay.
Result<PublishSummary> Publish(const PublishOptions& options,
                               const std::function<void(const std::string&)>& say);

// "replay-" + the file's name without its extension, other characters as '_', at most 64.
std::string ReplayDeviceName(const std::string& path);

}  // namespace medstream::devices
