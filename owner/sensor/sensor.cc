#include "owner/sensor/sensor.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numbers>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "common/base/bytes.h"

namespace medstream::sensor {

Generator::Generator(uint64_t seed, int user, double start_time_s)
    : rng_(seed * 0x9E3779B97F4A7C15ULL + static_cast<uint64_t>(user) * 0xBF58476D1CE4E5B9ULL + 1),
      t_(start_time_s) {
  std::uniform_real_distribution<double> u(0, 1);
  profile_.mean_hr_bpm = 55 + 30 * u(rng_);
  profile_.lf_hz = 0.08 + 0.04 * u(rng_);
  profile_.lf_amp_ms = 10 + 30 * u(rng_);
  profile_.hf_hz = 0.18 + 0.14 * u(rng_);
  profile_.hf_amp_ms = 8 + 30 * u(rng_);
  phase_lf_ = 2 * std::numbers::pi * u(rng_);
  phase_hf_ = 2 * std::numbers::pi * u(rng_);
}

hrv::Beat Generator::Next() {
  std::normal_distribution<double> noise(0, profile_.noise_ms);
  std::uniform_real_distribution<double> u(0, 1);
  const double mean_rr = 60000.0 / profile_.mean_hr_bpm;
  // Mean-reverting (Ornstein-Uhlenbeck) drift: slow wandering of the rate that does not run away.
  drift_ms_ = std::clamp(0.995 * drift_ms_ + noise(rng_) * 0.3, -0.12 * mean_rr, 0.12 * mean_rr);
  const double w = 2 * std::numbers::pi;
  double rr = mean_rr + drift_ms_ +
              profile_.lf_amp_ms * std::sin(w * profile_.lf_hz * t_ + phase_lf_) +
              profile_.hf_amp_ms * std::sin(w * profile_.hf_hz * t_ + phase_hf_) + noise(rng_);
  if (pending_compensation_) {
    // The compensatory pause: the premature and this interval add up to about two normal ones.
    rr = 2 * rr - last_premature_ms_;
    pending_compensation_ = 0;
  } else if (u(rng_) < profile_.ectopic_rate) {
    rr *= 0.65;
    last_premature_ms_ = rr;
    pending_compensation_ = 1;
  }
  rr = std::max(rr, 250.0);
  t_ += rr / 1000.0;
  dropped_ = u(rng_) < profile_.dropout_rate;
  return {t_, rr};
}

namespace {

void PutBeats(ByteWriter& w, std::span<const hrv::Beat> beats) {
  w.U16(static_cast<uint16_t>(beats.size()));
  for (const hrv::Beat& b : beats) {
    w.F64(b.t_s);
    const float rr = static_cast<float>(b.rr_ms);
    w.Raw(&rr, sizeof rr);
  }
}

uint64_t GetU64(const uint8_t* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  return v;
}

}  // namespace

std::vector<uint8_t> EncodePayload(const Sequence& sq, std::span<const hrv::Beat> beats) {
  std::vector<uint8_t> out;
  out.reserve(30 + beats.size() * 12);
  ByteWriter w(&out);
  w.Raw("MSP2", 4);
  w.U64(sq.session);
  w.U64(sq.seq);
  w.U64(sq.first_beat);
  PutBeats(w, beats);
  return out;
}

std::vector<uint8_t> EncodePayloadV1(std::span<const hrv::Beat> beats) {
  std::vector<uint8_t> out;
  ByteWriter w(&out);
  w.Raw("MSP1", 4);
  PutBeats(w, beats);
  return out;
}

namespace {

Result<Payload> DecodeJson(std::span<const uint8_t> payload) {
  if (payload.size() > kMaxJsonPayloadBytes) {
    return Corrupt(
        fmt::format("JSON payload of {} bytes (at most {})", payload.size(), kMaxJsonPayloadBytes));
  }
  Payload out;
  out.version = kJsonPayload;
  try {
    const auto j = nlohmann::json::parse(payload.begin(), payload.end());
    if (!j.is_object() || !j.contains("t") || !j["t"].is_number() || !j.contains("rr_ms") ||
        !j["rr_ms"].is_array()) {
      return Corrupt(R"(JSON payload needs {"t": seconds, "rr_ms": [...]})");
    }
    const auto& rr = j["rr_ms"];
    if (rr.empty() || rr.size() > kMaxBeatsPerMessage) {
      return Corrupt(
          fmt::format("JSON payload with {} RR values (1 to {})", rr.size(), kMaxBeatsPerMessage));
    }
    const int with = j.contains("session") + j.contains("seq") + j.contains("first_beat");
    if (with != 0 && with != 3) {
      return Corrupt("JSON payload: session, seq and first_beat come together or not at all");
    }
    out.has_sequence = with == 3;
    if (out.has_sequence) {
      for (const char* k : {"session", "seq", "first_beat"}) {
        if (!j[k].is_number_unsigned()) return Corrupt(std::string("JSON payload: bad ") + k);
      }
      out.sequence = {j["session"].get<uint64_t>(), j["seq"].get<uint64_t>(),
                      j["first_beat"].get<uint64_t>()};
      if (out.sequence.seq > kMaxSequence || out.sequence.first_beat > kMaxSequence) {
        return Corrupt("message sequence out of range");
      }
    }
    double t = j["t"].get<double>();
    for (size_t i = 0; i < rr.size(); ++i) {
      if (!rr[i].is_number())
        return Corrupt(fmt::format("JSON payload: rr_ms[{}] is not a number", i));
      const double v = rr[i].get<double>();
      if (i > 0) t += v / 1000;
      const hrv::Beat b{t, v};
      if (!hrv::BeatInLimits(b)) {
        return Corrupt(fmt::format(
            "beat {} of {} out of range (time {:.6g} s, RR {:.6g} ms; limits |time| <= {:g} s, "
            "0 < RR <= {:g} ms)",
            i + 1, rr.size(), b.t_s, b.rr_ms, hrv::kMaxBeatTimeS, hrv::kMaxRrMs));
      }
      out.beats.push_back(b);
    }
  } catch (const nlohmann::json::exception& e) {
    return Corrupt(std::string("JSON payload: ") + e.what());
  }
  return out;
}

}  // namespace

Result<Payload> DecodeHeartRateMeasurement(std::span<const uint8_t> payload) {
  if (payload.size() > kMaxHeartRatePayloadBytes)
    return Corrupt("Bluetooth heart rate measurement of " + std::to_string(payload.size()) +
                   " bytes (at most " + std::to_string(kMaxHeartRatePayloadBytes) + ")");
  const uint8_t flags = payload[0];
  if (flags & 0xe0) return Corrupt("Bluetooth heart rate measurement with reserved flag bits set");
  Payload out;
  out.version = kBluetoothHeartRate;
  out.has_sequence = false;
  size_t pos = 1;
  auto u16 = [&](size_t at) {
    return static_cast<uint16_t>(payload[at] | (static_cast<uint16_t>(payload[at + 1]) << 8));
  };
  const size_t hr_bytes = (flags & 0x01) ? 2 : 1;
  const size_t energy_bytes = (flags & 0x08) ? 2 : 0;
  if (payload.size() < pos + hr_bytes + energy_bytes)
    return Corrupt("Bluetooth heart rate measurement too short for its flags");
  out.heart_rate_bpm = hr_bytes == 2 ? u16(pos) : payload[pos];
  if (out.heart_rate_bpm > kMaxHeartRateBpm)
    return Corrupt(fmt::format("Bluetooth heart rate {} bpm is past {} bpm", out.heart_rate_bpm,
                               kMaxHeartRateBpm));
  pos += hr_bytes + energy_bytes;
  const size_t rest = payload.size() - pos;
  if (!(flags & 0x10)) {
    if (rest != 0) return Corrupt("Bluetooth heart rate measurement with trailing bytes");
    return out;
  }
  if (rest == 0 || rest % 2 != 0)
    return Corrupt("Bluetooth heart rate measurement: " + std::to_string(rest) +
                   " bytes of RR intervals (a positive, even number expected)");
  for (size_t i = 0; i < rest / 2; ++i) {
    const uint16_t raw = u16(pos + 2 * i);
    const double rr_ms = raw * 1000.0 / 1024.0;
    if (raw == 0 || rr_ms > hrv::kMaxRrMs)
      return Corrupt(fmt::format("Bluetooth RR interval {} of {}: {}/1024 s is outside (0, {}] ms",
                                 i + 1, rest / 2, raw, hrv::kMaxRrMs));
    out.untimed_rr_ms.push_back(rr_ms);
  }
  return out;
}

std::vector<hrv::Beat> TimeBeats(std::span<const double> rr_ms, double last_beat_t,
                                 double arrival_t) {
  std::vector<hrv::Beat> beats(rr_ms.size());
  double total_s = 0;
  for (double rr : rr_ms) total_s += rr / 1000;
  const double end = last_beat_t + total_s;
  if (std::isfinite(last_beat_t) && end >= arrival_t - kHeartRateGapS && end <= arrival_t + 3600) {
    // Continuing: each beat is the previous one plus its RR, as an offline reader of the same RR
    // series computes it.
    double t = last_beat_t;
    for (size_t i = 0; i < rr_ms.size(); ++i) beats[i] = {t += rr_ms[i] / 1000, rr_ms[i]};
    return beats;
  }
  // Anchored: backwards from the last beat, placed at the arrival.
  double t = arrival_t;
  for (size_t i = rr_ms.size(); i-- > 0;) {
    beats[i] = {t, rr_ms[i]};
    t -= rr_ms[i] / 1000;
  }
  return beats;
}

std::vector<uint8_t> EncodeHeartRateMeasurement(int heart_rate_bpm,
                                                std::span<const uint16_t> rr_1024) {
  const bool wide = heart_rate_bpm > 255;
  std::vector<uint8_t> out{
      static_cast<uint8_t>((wide ? 0x01 : 0) | 0x06 | (rr_1024.empty() ? 0 : 0x10))};
  out.push_back(static_cast<uint8_t>(heart_rate_bpm & 0xff));
  if (wide) out.push_back(static_cast<uint8_t>(heart_rate_bpm >> 8));
  for (uint16_t rr : rr_1024) {
    out.push_back(static_cast<uint8_t>(rr & 0xff));
    out.push_back(static_cast<uint8_t>(rr >> 8));
  }
  return out;
}

Result<Payload> DecodeMessage(std::span<const uint8_t> payload) {
  if (!payload.empty() && payload[0] == '{') return DecodeJson(payload);
  if (!payload.empty() && payload[0] < 0x20) return DecodeHeartRateMeasurement(payload);
  Payload out;
  size_t header = 0;
  if (payload.size() >= 6 && std::memcmp(payload.data(), "MSP1", 4) == 0) {
    out.version = 1;
    out.has_sequence = false;
    header = 4;
  } else if (payload.size() >= 30 && std::memcmp(payload.data(), "MSP2", 4) == 0) {
    out.version = 2;
    out.sequence = {GetU64(payload.data() + 4), GetU64(payload.data() + 12),
                    GetU64(payload.data() + 20)};
    header = 28;
  } else {
    return Corrupt("not a medstream sensor payload (bad magic or version)");
  }
  uint16_t n;
  std::memcpy(&n, payload.data() + header, 2);
  if (n == 0 || n > kMaxBeatsPerMessage)
    return Corrupt("beat count " + std::to_string(n) + " out of range");
  if (payload.size() != header + 2 + size_t{n} * 12) {
    return Corrupt("payload of " + std::to_string(payload.size()) + " bytes for " +
                   std::to_string(n) + " beats");
  }
  // A sequence that would wrap is not one a device can reach: refused, so counting stays exact.
  if (out.sequence.seq > kMaxSequence || out.sequence.first_beat > kMaxSequence) {
    return Corrupt("message sequence out of range");
  }
  out.beats.resize(n);
  const uint8_t* p = payload.data() + header + 2;
  for (size_t i = 0; i < n; ++i) {
    hrv::Beat& b = out.beats[i];
    float rr;
    std::memcpy(&b.t_s, p, 8);
    std::memcpy(&rr, p + 8, 4);
    b.rr_ms = rr;
    p += 12;
    // Range-checked here, where beats enter from the network (and again by the enclave's cleaner).
    if (!hrv::BeatInLimits(b)) {
      return Corrupt(fmt::format(
          "beat {} of {} out of range (time {:.6g} s, RR {:.6g} ms; limits |time| <= {:g} s, "
          "0 < RR <= {:g} ms)",
          i + 1, n, b.t_s, b.rr_ms, hrv::kMaxBeatTimeS, hrv::kMaxRrMs));
    }
  }
  return out;
}

Result<std::vector<hrv::Beat>> DecodePayload(std::span<const uint8_t> payload) {
  MEDSTREAM_TRY(m, DecodeMessage(payload));
  return std::move(m.beats);
}

std::vector<uint8_t> EncodeStatus(const DeviceStatus& st) {
  std::vector<uint8_t> out;
  ByteWriter w(&out);
  w.Raw("MSS1", 4);
  w.U64(st.session);
  w.U64(st.messages);
  w.U64(st.beats);
  const uint8_t final = st.final ? 1 : 0;
  w.Raw(&final, 1);
  return out;
}

Result<DeviceStatus> DecodeStatus(std::span<const uint8_t> payload) {
  if (payload.size() != 29 || std::memcmp(payload.data(), "MSS1", 4) != 0) {
    return Corrupt("not a medstream device status (" + std::to_string(payload.size()) + " bytes)");
  }
  DeviceStatus st{GetU64(payload.data() + 4), GetU64(payload.data() + 12),
                  GetU64(payload.data() + 20), payload[28] != 0};
  if (payload[28] > 1 || st.messages > kMaxSequence || st.beats > kMaxSequence ||
      st.beats < st.messages) {
    return Corrupt("device status out of range");
  }
  return st;
}

std::string StatusTopic(const std::string& site, const std::string& user) {
  return "medstream/" + site + "/" + user + "/status";
}

std::string Topic(const std::string& site, const std::string& user) {
  return "medstream/" + site + "/" + user + "/rr";
}

std::string UserName(int index) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "user-%04d", index);
  return buf;
}

}  // namespace medstream::sensor
