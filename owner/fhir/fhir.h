// fhir: HRV results as an HL7 FHIR R4 Bundle (type "collection") that an EHR can import.
//
// One Observation per window and metric (docs/outputs.md):
//   code      heart rate: LOINC 8867-4; SDNN: LOINC 80404-7 (R-R interval.standard deviation);
//             every other metric: kHrvCodeSystem, code = medstream's metric name (sdnn_ms, lf_hf,
//             ...)
//   subject   {identifier: {system: kPseudonymSystem, value: the pseudonymous user id}}: the
//             mapping to real patients stays with the data owner
//   effectivePeriod  the window, ISO-8601 UTC
//   valueQuantity    UCUM units (ms, ms2, /min, %, Hz, 1)
//   identifier       kWindowSystem | user/t_start/metric: stable, so a re-import is recognisable
//   note             when beats the device sent inside the window never arrived
// Entries carry fullUrl urn:uuid:<name-based UUID of the identifier>, so the output is
// deterministic for the same results and `timestamp`.
//
// Pure (no I/O); thread-compatible.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "owner/results/results.h"

namespace medstream::fhir {

inline constexpr std::string_view kLoinc = "http://loinc.org";
inline constexpr std::string_view kUcum = "http://unitsofmeasure.org";
inline constexpr std::string_view kHrvCodeSystem = "urn:medstream:fhir:hrv-metric";
inline constexpr std::string_view kPseudonymSystem = "urn:medstream:pseudonym";
inline constexpr std::string_view kWindowSystem = "urn:medstream:window";

struct BundleOptions {
  // The Bundle's timestamp (Unix seconds): the caller's clock.
  double timestamp = 0;
  // Only these metrics (kMetricTable names); empty: every metric a window has a value for.
  std::vector<std::string> metrics;
};

// The Observations of every window of every user (windows of several jobs over one period are
// merged first, see results::MergeByWindow). Metrics without a value (NaN) are left out.
nlohmann::ordered_json Bundle(const std::vector<results::UserResults>& users,
                              const BundleOptions& options);

// One Observation (exposed for tests and the dashboard).
nlohmann::ordered_json Observation(const std::string& user, const results::Window& window,
                                   const hrv::MetricInfo& metric, double value);

}  // namespace medstream::fhir
