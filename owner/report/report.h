// report: one user's HRV report as a self-contained HTML page (inline SVG figures, no script, no
// external asset), like the report a Kubios HRV user prints:
//   - the metric table of the whole recording with units (when the beats are at hand), computed
//     as `medstream hrv` computes it, and of the latest window;
//   - the tachogram (RR against time), the power spectral density with the VLF, LF and HF bands
//     shaded, the Poincare plot with its SD1/SD2 ellipse (these three need the beats);
//   - per-window trends of heart rate, SDNN, RMSSD and LF/HF (these need window results).
// Values in the tables carry data-metric / data-value attributes with every digit, for checks.
//
// Thread-compatible; Render is pure, Load reads the files it is given.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "algo/hrv/types.h"
#include "common/base/result.h"
#include "owner/results/results.h"

namespace medstream::report {

struct Input {
  std::string user;
  std::string results_source;            // where the windows came from (shown)
  std::vector<results::Window> windows;  // may be empty
  std::string beats_source;              // where the beats came from (shown)
  std::optional<std::vector<hrv::Beat>> beats;
  hrv::AnalysisOptions analysis;  // as `medstream hrv` (cleaning on, Welch)
  double generated_at = 0;        // Unix seconds, shown
};

// Reads what a report is made of. `results`: a gateway's results directory (with `user`) or one
// `medstream hrv --json` file; `beats`: a recording (any format `medstream hrv` reads) or "" for
// RESULTS/<user>.beats.csv when the gateway kept one (--record-beats), else none.
Result<Input> Load(const std::string& results, const std::string& user, const std::string& beats);

// The page. kInvalidArgument when there is nothing to report (no windows and no beats).
Result<std::string> Render(const Input& input);

}  // namespace medstream::report
