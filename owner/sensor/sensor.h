// sensor: simulated wearable sensors and the MQTT payload they publish.
//
// The generator makes realistic RR series: a per-user mean heart rate and variability; a
// respiratory (HF, 0.15-0.4 Hz) and a Mayer-wave (LF, ~0.1 Hz) oscillation; a slow bounded drift;
// beat-to-beat noise; occasional ectopic beats (a premature beat and its compensatory pause); and
// dropouts (a beat the strap misses: it is not published, so receivers see a gap). Seeded, so a
// test or a demo can regenerate exactly what was sent.
//
// Payload (MQTT topic medstream/<site>/<user>/rr, QoS 1), little-endian; version 2:
//   "MSP2" | session u64 | seq u64 | first_beat u64 | count u16 |
//   count x (beat time f64 s since the epoch, RR f32 ms)
// session: chosen at random when a device starts sending; seq: the message's number in the session
// (0, 1, ...); first_beat: how many beats the device sent in the session before this message. With
// them the gateway counts exactly what never arrived (a broker dropping, a hop losing), instead of
// letting a hole pass as complete data. Version 1 ("MSP1" | count u16 | beats) is still read; it
// carries no sequence, so its losses cannot be counted.
// 12 bytes a beat; one or several beats per message.
//
// JSON, for phone bridges and other senders (on the same topic, told apart by its first byte '{'):
//   {"t": 1700000000.25, "rr_ms": [812, 790.5], "session": 7, "seq": 0, "first_beat": 0}
// t: the time (Unix seconds) of the first beat of rr_ms; each later beat is the previous one plus
// its RR. 1 to 1024 RR values; "session", "seq" and "first_beat" (as in version 2) are optional:
// with them the gateway counts losses, without them it cannot. At most 64 KiB.
//
// Bluetooth Heart Rate Measurement (GATT characteristic 0x2A37), raw, as a phone bridge forwards
// a notification (on the same topic, told apart by its first byte: the flags, below 0x20):
//   flags u8 | heart rate u8 or u16 (flags bit 0) | [energy expended u16 (bit 3)] |
//   [RR u16 ... in 1/1024 s (bit 4)]
// little-endian; bits 1-2 are sensor contact, bits 5-7 reserved (must be 0); heart rate at most
// kMaxHeartRateBpm, RR values within hrv's limits (0 < RR <= 60 s). At most 512 bytes
// (the largest ATT value). It carries no times and no sequence: the gateway times the beats
// (TimeBeats) and cannot count what never arrived. A measurement without RR carries no beat.
//
// Status (topic medstream/<site>/<user>/status, QoS 1, retained), version 1:
//   "MSS1" | session u64 | messages u64 | beats u64 | final u8
// what the device has sent in the session so far (final: it has stopped). The broker keeps the
// latest one, so a gateway also learns of messages lost at the end of a session, which no later
// message would reveal.
#pragma once

#include <cstdint>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "algo/hrv/types.h"
#include "common/base/result.h"

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
// Sequence numbers and beat counts past this are refused (2^53: exact in a double too).
inline constexpr uint64_t kMaxSequence = uint64_t{1} << 53;
inline constexpr int kJsonPayload = 0;
inline constexpr size_t kMaxJsonPayloadBytes = 64 * 1024;
inline constexpr int kBluetoothHeartRate = 3;
inline constexpr size_t kMaxHeartRatePayloadBytes = 512;
inline constexpr double kMaxHeartRateBpm = 300;  // no human heart beats faster; 0: no contact
// A Bluetooth measurement arriving more than this much later than its beats would end (the
// previous beat + its RR values) follows a gap: its beats are timed from its arrival instead.
inline constexpr double kHeartRateGapS = 10;

// Where a message stands in its device's session (all zero for version 1).
struct Sequence {
  uint64_t session = 0;
  uint64_t seq = 0;
  uint64_t first_beat = 0;
};
struct Payload {
  int version = 2;  // 1 or 2 (binary), kJsonPayload, or kBluetoothHeartRate
  bool has_sequence = true;
  Sequence sequence;
  std::vector<hrv::Beat> beats;
  // kBluetoothHeartRate only: the RR values (ms, in order) without times, and the heart rate the
  // sensor reported (bpm); `beats` is empty until TimeBeats.
  std::vector<double> untimed_rr_ms;
  double heart_rate_bpm = hrv::kNaN;
};

// Times RR values that came without times: each beat is the previous one plus its RR, the first
// after `last_beat_t` (the device's last beat, -inf for none). When there is no previous beat, or
// the beats would end more than kHeartRateGapS before `arrival_t` (a gap), or more than an hour
// after it (a clock that ran away), the last beat is placed at `arrival_t` instead.
std::vector<hrv::Beat> TimeBeats(std::span<const double> rr_ms, double last_beat_t,
                                 double arrival_t);
// A Bluetooth Heart Rate Measurement payload (above), for tests and simulated bridges.
std::vector<uint8_t> EncodeHeartRateMeasurement(int heart_rate_bpm,
                                                std::span<const uint16_t> rr_1024);

std::vector<uint8_t> EncodePayload(const Sequence& sequence, std::span<const hrv::Beat> beats);
// Version 1, for tests of older senders.
std::vector<uint8_t> EncodePayloadV1(std::span<const hrv::Beat> beats);
// Validates everything: magic, count, exact size, beats within hrv's limits.
Result<Payload> DecodeMessage(std::span<const uint8_t> payload);
// The beats of DecodeMessage.
Result<std::vector<hrv::Beat>> DecodePayload(std::span<const uint8_t> payload);

struct DeviceStatus {
  uint64_t session = 0;
  uint64_t messages = 0;  // sent in the session (the next seq)
  uint64_t beats = 0;     // sent in the session
  bool final = false;
};
std::vector<uint8_t> EncodeStatus(const DeviceStatus& status);
Result<DeviceStatus> DecodeStatus(std::span<const uint8_t> payload);
std::string StatusTopic(const std::string& site, const std::string& user);

std::string Topic(const std::string& site, const std::string& user);
std::string UserName(int index);  // "user-0001"

}  // namespace medstream::sensor
