// sensor: simulated wearable sensors and the MQTT payload they publish.
//
// The generator makes realistic RR series: a per-user mean heart rate and variability; a
// respiratory (HF, 0.15-0.4 Hz) and a Mayer-wave (LF, ~0.1 Hz) oscillation; a slow bounded drift;
// beat-to-beat noise; occasional ectopic beats (a premature beat and its compensatory pause); and
// dropouts (a beat the strap misses: it is not published, so receivers see a gap). Seeded, so a
// test or a demo can regenerate exactly what was sent.
//
// Payload (MQTT topic medstream/<site>/<user>/rr, QoS 1), version 1, little-endian:
//   "MSP1" | count u16 | count x (beat time f64 s since the epoch, RR f32 ms)
// 12 bytes a beat; one or several beats per message.
#pragma once

#include <cstdint>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "base/result.h"
#include "hrv/types.h"

namespace medstream::sensor {

struct Profile {
  double mean_hr_bpm = 70;
  double lf_hz = 0.1, lf_amp_ms = 25;
  double hf_hz = 0.25, hf_amp_ms = 20;
  double noise_ms = 6;
  double ectopic_rate = 0.003;  // per beat
  double dropout_rate = 0.002;  // per beat
};

class Generator {
 public:
  // User `user` of a run seeded with `seed`: its profile is drawn from both.
  Generator(uint64_t seed, int user, double start_time_s);
  // The next beat, including beats that will be dropped (see dropped()).
  hrv::Beat Next();
  // Whether the beat Next() just returned is lost by the sensor (not published).
  bool dropped() const { return dropped_; }
  const Profile& profile() const { return profile_; }

 private:
  std::mt19937_64 rng_;
  Profile profile_;
  double t_;
  double phase_lf_, phase_hf_;
  double drift_ms_ = 0;
  int pending_compensation_ = 0;  // 1 after a premature beat
  double last_premature_ms_ = 0;
  bool dropped_ = false;
};

inline constexpr size_t kMaxBeatsPerMessage = 1024;

std::vector<uint8_t> EncodePayload(std::span<const hrv::Beat> beats);
// Validates everything: magic, count, exact size, finite values.
Result<std::vector<hrv::Beat>> DecodePayload(std::span<const uint8_t> payload);

std::string Topic(const std::string& site, const std::string& user);
std::string UserName(int index);  // "user-0001"

}  // namespace medstream::sensor
