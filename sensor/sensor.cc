#include "sensor/sensor.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numbers>

#include <fmt/format.h>

#include "base/bytes.h"

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

std::vector<uint8_t> EncodePayload(std::span<const hrv::Beat> beats) {
  std::vector<uint8_t> out;
  out.reserve(6 + beats.size() * 12);
  ByteWriter w(&out);
  w.Raw("MSP1", 4);
  w.U16(static_cast<uint16_t>(beats.size()));
  for (const hrv::Beat& b : beats) {
    w.F64(b.t_s);
    const float rr = static_cast<float>(b.rr_ms);
    w.Raw(&rr, sizeof rr);
  }
  return out;
}

Result<std::vector<hrv::Beat>> DecodePayload(std::span<const uint8_t> payload) {
  if (payload.size() < 6 || std::memcmp(payload.data(), "MSP1", 4) != 0) {
    return Corrupt("not a medstream sensor payload (bad magic or version)");
  }
  uint16_t n;
  std::memcpy(&n, payload.data() + 4, 2);
  if (n == 0 || n > kMaxBeatsPerMessage)
    return Corrupt("beat count " + std::to_string(n) + " out of range");
  if (payload.size() != 6 + size_t{n} * 12) {
    return Corrupt("payload of " + std::to_string(payload.size()) + " bytes for " +
                   std::to_string(n) + " beats");
  }
  std::vector<hrv::Beat> beats(n);
  const uint8_t* p = payload.data() + 6;
  for (auto& b : beats) {
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
          (p - payload.data() - 6) / 12, n, b.t_s, b.rr_ms, hrv::kMaxBeatTimeS, hrv::kMaxRrMs));
    }
  }
  return beats;
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
