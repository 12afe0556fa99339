// dashboard: the data owner's live view of the results, served by the gateway (--http) or on its
// own over a results directory (medstream dashboard). It runs where the plaintext already is (the
// owner's side) and adds no copy of it.
//
//   /                 every user: the latest window's HR, SDNN, RMSSD, pNN50, LF, HF, LF/HF and
//                     alerts (a value outside its configured range, beats lost in the window)
//   /user/<user>      one user: latest values and trends (HR, SDNN, RMSSD, LF/HF) over time
//   /api/users, /api/user/<user>   the same as JSON; the pages poll them every 2 s and redraw
//                     when new windows arrived (the charts are server-side SVG: owner/charts)
//   /fhir/<user>      the user's windows as a FHIR R4 Bundle (owner/fhir)
//   /metrics, /healthz   the hosting process's Prometheus metrics (Options::metrics), liveness
//   /app.js           the pages' only script (the Content-Security-Policy allows no other)
// Security (adapters/http): loopback only unless TLS and a token are configured.
//
// Thread-safe: requests are served concurrently; results are re-read when their file changed.
#pragma once

#include <functional>
#include <limits>
#include <memory>
#include <string>

#include "adapters/http/http.h"
#include "common/base/result.h"

namespace medstream::dashboard {

// A latest value outside [lo, hi] raises an alert on the overview.
struct Range {
  double lo = -std::numeric_limits<double>::infinity();
  double hi = std::numeric_limits<double>::infinity();
};
// "40..120", "..200", "20.."; kInvalidArgument otherwise.
Result<Range> ParseRange(const std::string& text, const std::string& what);

struct Options {
  http::Options http;
  std::string results_dir;
  Range heart_rate_bpm{40, 120};
  Range sdnn_ms{20, std::numeric_limits<double>::infinity()};
  size_t trend_windows = 2000;  // the most recent windows a trend shows
  // The hosting process's metrics in the Prometheus text format ("" serves none).
  std::function<std::string()> metrics;
  // Unix time now (FHIR timestamps).
  std::function<double()> clock;
};

class Dashboard {
 public:
  static Result<std::unique_ptr<Dashboard>> Start(Options options);
  ~Dashboard();
  std::string url() const { return server_->url(); }

 private:
  Dashboard() = default;
  struct State;
  std::shared_ptr<State> state_;
  std::unique_ptr<http::Server> server_;
};

}  // namespace medstream::dashboard
