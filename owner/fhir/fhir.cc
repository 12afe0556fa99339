#include "owner/fhir/fhir.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

#include "common/crypto/crypto.h"

namespace medstream::fhir {

namespace {

using json = nlohmann::ordered_json;

struct Code {
  std::string_view system, code, display;
};

Code CodeFor(const hrv::MetricInfo& m) {
  if (m.name == "mean_hr_bpm") return {kLoinc, "8867-4", "Heart rate"};
  if (m.name == "sdnn_ms")
    return {kLoinc, "80404-7", "R-R interval.standard deviation (Heart rate variability)"};
  return {kHrvCodeSystem, m.name, results::DisplayName(m)};
}

// UCUM code and human unit for a metric's unit.
std::pair<std::string_view, std::string_view> Ucum(const hrv::MetricInfo& m) {
  if (m.unit == "ms") return {"ms", "ms"};
  if (m.unit == "ms2") return {"ms2", "ms2"};
  if (m.unit == "bpm") return {"/min", "beats/minute"};
  if (m.unit == "%") return {"%", "%"};
  if (m.unit == "n.u.") return {"%", "n.u."};  // normalised units: percent of LF + HF
  if (m.unit == "Hz") return {"Hz", "Hz"};
  if (m.name == "n_beats" || m.name == "nn50" || m.name == "nn20") return {"{beats}", "beats"};
  return {"1", "1"};
}

// A name-based UUID (RFC 4122 layout, version 5 bits, SHA-256 instead of SHA-1) of `name`.
std::string NameUuid(std::string_view name) {
  auto d = crypto::Sha256(crypto::AsBytes(name));
  d[6] = static_cast<uint8_t>((d[6] & 0x0f) | 0x50);
  d[8] = static_cast<uint8_t>((d[8] & 0x3f) | 0x80);
  const std::string hex = crypto::ToHex(crypto::ByteView(d.data(), 16));
  return fmt::format("{}-{}-{}-{}-{}", hex.substr(0, 8), hex.substr(8, 4), hex.substr(12, 4),
                     hex.substr(16, 4), hex.substr(20, 12));
}

std::string WindowId(const std::string& user, const results::Window& w, const hrv::MetricInfo& m) {
  return fmt::format("{}/{}/{}", user, results::IsoUtc(w.t_start), m.name);
}

}  // namespace

json Observation(const std::string& user, const results::Window& w, const hrv::MetricInfo& m,
                 double value) {
  const Code code = CodeFor(m);
  const auto [ucum, unit] = Ucum(m);
  const bool vital = code.system == kLoinc && code.code == "8867-4";
  json obs = {
      {"resourceType", "Observation"},
      {"identifier", json::array({{{"system", kWindowSystem}, {"value", WindowId(user, w, m)}}})},
      {"status", "final"},
      {"category",
       json::array({{{"coding", json::array({{{"system",
                                               "http://terminology.hl7.org/CodeSystem/"
                                               "observation-category"},
                                              {"code", vital ? "vital-signs" : "exam"}}})}}})},
      {"code",
       {{"coding",
         json::array({{{"system", code.system}, {"code", code.code}, {"display", code.display}}})},
        {"text", results::Label(m)}}},
      {"subject", {{"identifier", {{"system", kPseudonymSystem}, {"value", user}}}}},
      {"effectivePeriod",
       {{"start", results::IsoUtc(w.t_start)}, {"end", results::IsoUtc(w.t_end)}}},
      {"valueQuantity", {{"value", value}, {"unit", unit}, {"system", kUcum}, {"code", ucum}}},
  };
  if (w.lost_beats > 0) {
    obs["note"] = json::array(
        {{{"text", fmt::format("{} beats the device sent inside this window never arrived; the "
                               "value describes incomplete data",
                               w.lost_beats)}}});
  }
  return obs;
}

json Bundle(const std::vector<results::UserResults>& users, const BundleOptions& options) {
  std::vector<const hrv::MetricInfo*> metrics;
  for (const hrv::MetricInfo& m : hrv::kMetricTable) {
    if (options.metrics.empty() ||
        std::find(options.metrics.begin(), options.metrics.end(), m.name) != options.metrics.end())
      metrics.push_back(&m);
  }
  json entries = json::array();
  for (const results::UserResults& u : users) {
    for (const results::Window& w : results::MergeByWindow(u.windows)) {
      for (const hrv::MetricInfo* m : metrics) {
        const double v = w.metrics.*(m->field);
        if (!std::isfinite(v)) continue;
        entries.push_back({{"fullUrl", "urn:uuid:" + NameUuid(WindowId(u.user, w, *m))},
                           {"resource", Observation(u.user, w, *m, v)}});
      }
    }
  }
  return {{"resourceType", "Bundle"},
          {"type", "collection"},
          {"timestamp", results::IsoUtc(std::floor(options.timestamp))},
          {"entry", std::move(entries)}};
}

}  // namespace medstream::fhir
