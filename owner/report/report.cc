#include "owner/report/report.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <numbers>

#include "adapters/recording/recording.h"
#include "algo/hrv/clean.h"
#include "algo/hrv/jobs.h"
#include "algo/hrv/spectral.h"
#include "common/base/bytes.h"
#include "owner/charts/charts.h"

namespace medstream::report {

namespace {

using charts::Escape;

std::string Value(double v) {
  if (std::isnan(v)) return "–";
  if (v == std::floor(v) && std::fabs(v) < 1e9) return fmt::format("{}", static_cast<int64_t>(v));
  return fmt::format("{:.4g}", v);
}

// A table row with the exact value for checks.
std::string MetricRow(const hrv::MetricInfo& m, double v) {
  return fmt::format(
      "<tr><td>{}</td><td class=\"num\" data-metric=\"{}\" data-value=\"{}\">{}</td>"
      "<td>{}</td></tr>\n",
      Escape(results::DisplayName(m)), Escape(m.name),
      std::isnan(v) ? std::string("null") : fmt::format("{}", v), Value(v),
      Escape(results::DisplayUnit(m)));
}

struct NnSeries {
  std::vector<double> t, nn;                  // accepted beats
  std::vector<double> removed_t, removed_rr;  // what cleaning removed
};

NnSeries Clean(const std::vector<hrv::Beat>& beats, const hrv::CleaningOptions& options) {
  NnSeries s;
  hrv::Cleaner cleaner(options);
  for (const hrv::Beat& b : beats) {
    const auto verdict = options.enabled ? cleaner.Classify(b) : hrv::Cleaner::Verdict::kAccepted;
    if (verdict == hrv::Cleaner::Verdict::kAccepted) {
      s.t.push_back(b.t_s);
      s.nn.push_back(b.rr_ms);
    } else if (hrv::BeatInLimits(b)) {
      s.removed_t.push_back(b.t_s);
      s.removed_rr.push_back(b.rr_ms);
    }
  }
  return s;
}

std::string Figures(const Input& in, const hrv::Metrics& m, const NnSeries& s) {
  std::string out;
  charts::Chart tach("tachogram", "Tachogram", "time", "RR (ms)", 960, 260);
  tach.x_is_time = true;
  charts::Series nn_line("NN", "#1f77b4");
  nn_line.x = s.t;
  nn_line.y = s.nn;
  tach.series.push_back(std::move(nn_line));
  if (!s.removed_t.empty()) {
    charts::Series removed("removed by cleaning", "#d62728", charts::Series::Kind::kPoints);
    removed.x = s.removed_t;
    removed.y = s.removed_rr;
    tach.series.push_back(std::move(removed));
  }
  out += charts::Render(tach);

  hrv::SpectralEstimator estimator(in.analysis.spectral);
  hrv::Psd psd;
  const bool have_psd = s.t.size() > 2 && estimator.NnPsd(s.t, s.nn, &psd);
  const auto& sp = in.analysis.spectral;
  charts::Chart spectrum(
      "psd",
      fmt::format("Power spectral density ({})",
                  sp.method == hrv::SpectralMethod::kWelch ? "Welch, 4 Hz spline" : "Lomb-Scargle"),
      "frequency (Hz)", "PSD (ms²/Hz)", 560, 300);
  spectrum.x_min = 0;
  spectrum.x_max = 0.5;
  spectrum.y_min = 0;
  spectrum.bands = {{sp.vlf_lo, sp.vlf_hi, "VLF", "#c7c7c7"},
                    {sp.lf_lo, sp.lf_hi, "LF", "#ffbb78"},
                    {sp.hf_lo, sp.hf_hi, "HF", "#98df8a"}};
  if (have_psd) {
    charts::Series line("PSD", "#1f77b4", charts::Series::Kind::kArea);
    for (size_t k = 0; k < psd.f.size() && psd.f[k] <= 0.5; ++k) {
      line.x.push_back(psd.f[k]);
      line.y.push_back(psd.p[k]);
    }
    spectrum.series.push_back(std::move(line));
  }
  out += charts::Render(spectrum);

  charts::Chart poincare("poincare", "Poincaré plot", "NN(i) (ms)", "NN(i+1) (ms)", 340, 340);
  poincare.square = true;
  charts::Series dots("NN pairs", "#1f77b4", charts::Series::Kind::kPoints);
  for (size_t i = 0; i + 1 < s.nn.size(); ++i) {
    dots.x.push_back(s.nn[i]);
    dots.y.push_back(s.nn[i + 1]);
  }
  poincare.series.push_back(std::move(dots));
  if (std::isfinite(m.sd1_ms) && std::isfinite(m.sd2_ms) && std::isfinite(m.mean_nn_ms)) {
    // The ellipse: SD2 along the line of identity, SD1 across it, centred on the mean NN.
    charts::Series ellipse(fmt::format("SD1 {} ms, SD2 {} ms", Value(m.sd1_ms), Value(m.sd2_ms)),
                           "#d62728");
    for (int k = 0; k <= 96; ++k) {
      const double a = 2 * std::numbers::pi * k / 96;
      const double u = m.sd2_ms * std::cos(a), v = m.sd1_ms * std::sin(a);
      ellipse.x.push_back(m.mean_nn_ms + (u - v) / std::numbers::sqrt2);
      ellipse.y.push_back(m.mean_nn_ms + (u + v) / std::numbers::sqrt2);
    }
    poincare.series.push_back(std::move(ellipse));
  }
  out += charts::Render(poincare);
  return out;
}

std::string Trends(const std::vector<results::Window>& windows) {
  const auto merged = results::MergeByWindow(windows);
  std::string out;
  struct Trend {
    const char* id;
    const char* metric;
    const char* color;
  };
  for (const Trend& t :
       {Trend{"trend-hr", "mean_hr_bpm", "#d62728"}, Trend{"trend-sdnn", "sdnn_ms", "#1f77b4"},
        Trend{"trend-rmssd", "rmssd_ms", "#2ca02c"}, Trend{"trend-lf-hf", "lf_hf", "#9467bd"}}) {
    const hrv::MetricInfo& m = *hrv::FindMetric(t.metric);
    charts::Chart c(t.id, results::Label(m) + " per window", "window end", results::Label(m), 470,
                    220);
    c.x_is_time = true;
    charts::Series s(std::string(results::DisplayName(m)), t.color);
    for (const results::Window& w : merged) {
      s.x.push_back(w.t_end);
      s.y.push_back(w.metrics.*(m.field));
    }
    c.series.push_back(std::move(s));
    out += charts::Render(c);
  }
  return out;
}

}  // namespace

Result<Input> Load(const std::string& results_path, const std::string& user,
                   const std::string& beats) {
  namespace fs = std::filesystem;
  Input in;
  std::error_code ec;
  const bool dir = fs::is_directory(results_path, ec);
  if (dir && user.empty())
    return InvalidArgument(results_path + " is a results directory: name the user (--user)");
  MEDSTREAM_TRY(loaded, results::Load(results_path, user));
  in.user = loaded.front().user;
  in.windows = std::move(loaded.front().windows);
  in.results_source = dir ? results_path + "/" + in.user + ".jsonl" : results_path;
  std::string beats_path = beats;
  if (beats_path.empty() && dir) {
    const std::string kept = results_path + "/" + in.user + ".beats.csv";
    if (fs::exists(kept, ec)) beats_path = kept;
  }
  if (!beats_path.empty()) {
    MEDSTREAM_TRY(rec, recording::ReadRecording(beats_path, recording::ReadOptions{}));
    in.beats = std::move(rec.beats);
    in.beats_source = beats_path;
  }
  return in;
}

Result<std::string> Render(const Input& in) {
  if (in.windows.empty() && !in.beats)
    return InvalidArgument("nothing to report for " + in.user + ": no windows and no beats");
  std::string body;
  hrv::Metrics whole;
  NnSeries nn;
  std::string cleaning;
  if (in.beats) {
    // Beats repeated after a gateway crash (its beats file may hold a batch twice) are the same
    // beat: sorted by time, repeats dropped.
    std::vector<hrv::Beat> beats = *in.beats;
    std::stable_sort(beats.begin(), beats.end(),
                     [](const hrv::Beat& a, const hrv::Beat& b) { return a.t_s < b.t_s; });
    beats.erase(std::unique(beats.begin(), beats.end(),
                            [](const hrv::Beat& a, const hrv::Beat& b) {
                              return a.t_s == b.t_s && a.rr_ms == b.rr_ms;
                            }),
                beats.end());
    MEDSTREAM_TRY(analysis, hrv::AnalyzeRecord(beats, in.analysis));
    whole = analysis.metrics;
    const auto& r = analysis.cleaning;
    cleaning = fmt::format(
        "{} beats read, {} used; removed {} (out of range {}, ectopic {}, invalid {}, time "
        "order {})",
        r.seen, r.accepted, r.removed(), r.range, r.ectopic, r.invalid, r.time_order);
    nn = Clean(beats, in.analysis.cleaning);
  }
  double t0 = INFINITY, t1 = -INFINITY;
  if (!nn.t.empty()) {
    t0 = nn.t.front();
    t1 = nn.t.back();
  }
  uint64_t lost = 0;
  for (const auto& w : in.windows) {
    t0 = std::min(t0, w.t_start);
    t1 = std::max(t1, w.t_end);
    lost += w.lost_beats > 0;
  }
  body += fmt::format(
      "<h1>HRV report: {}</h1>\n<p class=\"meta\">Period {} – {} (UTC). Windows: {} ({}). "
      "Beats: {}.<br>{}Generated {} by medstream.</p>\n",
      Escape(in.user), results::IsoUtc(t0), results::IsoUtc(t1), in.windows.size(),
      Escape(in.results_source.empty() ? "none" : in.results_source),
      Escape(in.beats ? in.beats_source : "none (no tachogram, spectrum or Poincaré plot)"),
      cleaning.empty() ? "" : Escape(cleaning) + ".<br>", results::IsoUtc(in.generated_at));
  if (lost > 0) {
    body += fmt::format(
        "<p class=\"warn\">{} windows were built over beats that the device sent but that never "
        "arrived: their values describe incomplete data.</p>\n",
        lost);
  }
  std::string tables;
  if (in.beats) {
    tables +=
        "<table id=\"metrics-record\"><caption>Whole recording</caption>\n"
        "<tr><th>metric</th><th>value</th><th>unit</th></tr>\n";
    for (const hrv::MetricInfo& m : hrv::kMetricTable) tables += MetricRow(m, whole.*(m.field));
    tables += "</table>\n";
  }
  const results::Latest latest = results::LatestWindow(in.windows);
  if (latest.ok) {
    tables += fmt::format(
        "<table id=\"metrics-latest\"><caption>Latest window {} – {}</caption>\n"
        "<tr><th>metric</th><th>value</th><th>unit</th></tr>\n",
        results::IsoUtc(latest.t_start), results::IsoUtc(latest.t_end));
    for (const hrv::MetricInfo& m : hrv::kMetricTable) {
      const double v = latest.metrics.*(m.field);
      if (!std::isnan(v)) tables += MetricRow(m, v);
    }
    tables += "</table>\n";
  }
  body += "<div class=\"row\">" + tables + "</div>\n";
  if (in.beats) body += "<h2>Beats</h2>\n<div class=\"row\">" + Figures(in, whole, nn) + "</div>\n";
  if (!in.windows.empty())
    body += "<h2>Trends</h2>\n<div class=\"row\">" + Trends(in.windows) + "</div>\n";
  return fmt::format(
      "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n"
      "<title>HRV report: {}</title>\n<style>\n"
      "body{{font-family:sans-serif;margin:24px;color:#222;max-width:1000px}}\n"
      "h1{{font-size:22px}} h2{{font-size:17px;margin-top:28px}}\n"
      ".meta{{color:#555;font-size:13px}} .warn{{color:#a00}}\n"
      ".row{{display:flex;flex-wrap:wrap;gap:16px;align-items:flex-start}}\n"
      "table{{border-collapse:collapse;font-size:13px}} "
      "caption{{font-weight:bold;text-align:left}}\n"
      "td,th{{border-bottom:1px solid #ddd;padding:2px 10px;text-align:left}} "
      "td.num{{text-align:right;font-variant-numeric:tabular-nums}}\n"
      "@media print{{body{{margin:0}}}}\n</style></head>\n<body>\n{}</body></html>\n",
      Escape(in.user), body);
}

}  // namespace medstream::report
