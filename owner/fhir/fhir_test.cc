// fhir: the Bundle's coding rules, in-process (apps/cli/outputs_test.cc validates the exported
// file against the FHIR R4 JSON schema).
#include "owner/fhir/fhir.h"

#include <gtest/gtest.h>

#include <set>

namespace medstream::fhir {
namespace {

using json = nlohmann::ordered_json;

results::UserResults TwoWindows() {
  results::UserResults u;
  u.user = "a1b2c3";
  for (int k = 0; k < 2; ++k) {
    results::Window w;
    w.job = "hrv-full";
    w.t_start = 1764672000 + 30 * k;
    w.t_end = w.t_start + 300;
    w.metrics.n_beats = 370;
    w.metrics.mean_hr_bpm = 70 + k;
    w.metrics.sdnn_ms = 40 + k;
    w.metrics.lf_ms2 = 500;
    w.metrics.lf_nu = 60;
    w.lost_beats = k == 1 ? 3 : 0;
    u.windows.push_back(w);
  }
  return u;
}

const json* Find(const json& bundle, std::string_view code, double t_start_of_second) {
  for (const auto& e : bundle["entry"]) {
    const json& r = e["resource"];
    if (r["code"]["coding"][0]["code"] == code &&
        r["effectivePeriod"]["start"] == results::IsoUtc(t_start_of_second))
      return &r;
  }
  return nullptr;
}

TEST(FhirBundle, LoincForHeartRateAndSdnnUcumUnitsPseudonymousSubject) {
  const json b = Bundle({TwoWindows()}, {.timestamp = 1764672999.5, .metrics = {}});
  EXPECT_EQ(b["resourceType"], "Bundle");
  EXPECT_EQ(b["type"], "collection");
  EXPECT_EQ(b["timestamp"], "2025-12-02T10:56:39Z");
  // 5 metrics with a value per window (the other metrics are NaN: left out), 2 windows.
  ASSERT_EQ(b["entry"].size(), 10u);
  const json* hr = Find(b, "8867-4", 1764672000);
  ASSERT_NE(hr, nullptr);
  EXPECT_EQ((*hr)["code"]["coding"][0]["system"], "http://loinc.org");
  EXPECT_EQ((*hr)["category"][0]["coding"][0]["code"], "vital-signs");
  EXPECT_EQ((*hr)["valueQuantity"]["code"], "/min");
  EXPECT_EQ((*hr)["valueQuantity"]["system"], "http://unitsofmeasure.org");
  EXPECT_EQ((*hr)["valueQuantity"]["value"], 70.0);
  EXPECT_EQ((*hr)["subject"]["identifier"]["value"], "a1b2c3");
  EXPECT_EQ((*hr)["effectivePeriod"]["end"], "2025-12-02T10:45:00Z");
  EXPECT_FALSE(hr->contains("note"));
  const json* sdnn = Find(b, "80404-7", 1764672030);
  ASSERT_NE(sdnn, nullptr);
  EXPECT_EQ((*sdnn)["valueQuantity"]["code"], "ms");
  EXPECT_EQ((*sdnn)["valueQuantity"]["value"], 41.0);
  ASSERT_TRUE(sdnn->contains("note"));  // 3 beats never arrived in that window
  const json* lf = Find(b, "lf_ms2", 1764672000);
  ASSERT_NE(lf, nullptr);
  EXPECT_EQ((*lf)["code"]["coding"][0]["system"], std::string(kHrvCodeSystem));
  EXPECT_EQ((*lf)["valueQuantity"]["code"], "ms2");
  EXPECT_EQ((*Find(b, "lf_nu", 1764672000))["valueQuantity"]["code"], "%");
  // Entries are named by stable UUIDs: distinct, and the same in a second export.
  std::set<std::string> urls;
  for (const auto& e : b["entry"]) urls.insert(e["fullUrl"].get<std::string>());
  EXPECT_EQ(urls.size(), 10u);
  EXPECT_EQ(Bundle({TwoWindows()}, {.timestamp = 1764672999.5, .metrics = {}}), b);
  // Only the metrics asked for.
  EXPECT_EQ(Bundle({TwoWindows()}, {.timestamp = 0, .metrics = {"sdnn_ms"}})["entry"].size(), 2u);
}

}  // namespace
}  // namespace medstream::fhir
