// `medstream hrv`: HRV metrics of a recording, whole or in rolling windows.
#include <fmt/format.h>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <string>

#include "adapters/recording/recording.h"
#include "adapters/wfdb/ecg_file.h"
#include "algo/hrv/jobs.h"
#include "apps/cli/commands.h"
#include "apps/cli/json_out.h"
#include "common/base/bytes.h"
#include "owner/results/results.h"

namespace medstream::cli {

namespace {

struct HrvArgs {
  std::string input;
  std::string format = "auto";
  std::string unit = "auto";
  std::string time_col, rr_col;
  std::string clean = "on";
  std::string spectral = "welch";
  std::string job = "hrv-full";
  double window_s = 0;
  double step_s = 30;
  double min_coverage = 0.85;
  bool json = false;
  bool detect = false;
  std::string annotator = "atr";
  int channel = 0;
};

nlohmann::ordered_json MetricsJson(const hrv::Metrics& m,
                                   std::span<const hrv::MetricInfo* const> metrics) {
  nlohmann::ordered_json j;
  for (const hrv::MetricInfo* info : metrics) j[std::string(info->name)] = m.*(info->field);
  return j;
}

nlohmann::ordered_json CleaningJson(const hrv::CleaningReport& r) {
  return {{"seen", r.seen},       {"accepted", r.accepted},
          {"invalid", r.invalid}, {"time_order", r.time_order},
          {"range", r.range},     {"ectopic", r.ectopic}};
}

std::string FormatValue(double v) {
  if (std::isnan(v)) return "-";
  if (v == std::floor(v) && std::fabs(v) < 1e15) return fmt::format("{}", static_cast<int64_t>(v));
  return fmt::format("{:.6g}", v);
}

std::string CleaningLine(const hrv::CleaningReport& r) {
  return fmt::format(
      "{} beats read, {} used; removed {} (out of range {}, ectopic {}, invalid {}, time order {})",
      r.seen, r.accepted, r.removed(), r.range, r.ectopic, r.invalid, r.time_order);
}

// Cleaning that removes more than this share of beats is worth a word: the numbers then describe
// a small, possibly unrepresentative part of the recording.
constexpr double kWarnRemovedShare = 0.2;

void WarnIfMostlyRemoved(const hrv::CleaningReport& r) {
  if (r.seen == 0 ||
      static_cast<double>(r.removed()) <= kWarnRemovedShare * static_cast<double>(r.seen))
    return;
  std::fprintf(
      stderr,
      "medstream hrv: warning: cleaning removed %.0f%% of the beats (more than %.0f%%): %s\n",
      100.0 * static_cast<double>(r.removed()) / static_cast<double>(r.seen),
      100 * kWarnRemovedShare, CleaningLine(r).c_str());
}

int RunHrv(const HrvArgs& a) {
  recording::ReadOptions read;
  auto format = recording::ParseFormat(a.format);
  if (!format) return ExitWithError("hrv", format.error());
  auto unit = recording::ParseUnit(a.unit);
  if (!unit) return ExitWithError("hrv", unit.error());
  read.format = *format;
  read.unit = *unit;
  read.time_col = a.time_col;
  read.rr_col = a.rr_col;

  hrv::AnalysisOptions options;
  options.cleaning.enabled = a.clean == "on";
  options.spectral.method =
      a.spectral == "lomb" ? hrv::SpectralMethod::kLombScargle : hrv::SpectralMethod::kWelch;
  auto job = hrv::ParseJobKind(a.job);
  if (!job) return ExitWithError("hrv", job.error());
  if (*job == hrv::JobKind::kIdentity)
    return ExitWithError("hrv", "the identity job has no metrics to print");

  // A WFDB record (NAME.hea), or an ECG with --detect: beats from its annotations or the detector.
  const bool wfdb_input = a.input.ends_with(".hea") || a.detect;
  Result<recording::Recording> rec = [&]() -> Result<recording::Recording> {
    if (!wfdb_input) return recording::ReadRecording(a.input, read);
    MEDSTREAM_TRY(series, wfdb::ReadRecordBeats(a.input, a.annotator, a.detect, a.channel));
    return recording::Recording{std::move(series.beats), std::move(series.source)};
  }();
  if (!rec) return ExitWithError("hrv", rec.error());

  if (a.window_s <= 0) {
    auto analysis = hrv::AnalyzeRecord(rec->beats, options);
    if (!analysis) return ExitWithError("hrv", analysis.error());
    WarnIfMostlyRemoved(analysis->cleaning);
    const auto metrics = hrv::JobMetrics(*job);
    if (a.json) {
      nlohmann::ordered_json j = MetricsJson(analysis->metrics, metrics);
      j["cleaning"] = CleaningJson(analysis->cleaning);
      std::printf("%s\n", DumpJson(j).c_str());
      return 0;
    }
    std::printf("%s\n  %s\n  %s\n\n", a.input.c_str(), rec->source.c_str(),
                CleaningLine(analysis->cleaning).c_str());
    std::printf("  %-22s %14s  %s\n", "metric", "value", "unit");
    for (const hrv::MetricInfo* info : metrics) {
      std::printf("  %-22s %14s  %s\n", std::string(info->name).c_str(),
                  FormatValue(analysis->metrics.*(info->field)).c_str(),
                  std::string(info->unit).c_str());
    }
    return 0;
  }

  hrv::WindowOptions windows{
      .window_s = a.window_s, .step_s = a.step_s, .min_coverage = a.min_coverage};
  options.select = hrv::JobSelection(*job);
  auto stream = hrv::StreamJob::Create(*job, options, windows);
  if (!stream) return ExitWithError("hrv", stream.error());
  hrv::MetricsEngine engine(options.spectral, options.select);
  hrv::JobOutput out;
  stream->Push(rec->beats, engine, &out);
  stream->Finish(engine, &out);
  WarnIfMostlyRemoved(stream->report());
  const auto metrics = hrv::JobMetrics(*job);
  if (a.json) {
    for (const hrv::WindowResult& w : out.windows) {
      nlohmann::ordered_json j{{"t_start", w.t_start},
                               {"t_end", w.t_end},
                               {"start_utc", results::IsoUtc(w.t_start)},
                               {"end_utc", results::IsoUtc(w.t_end)},
                               {"coverage", w.coverage}};
      j.update(MetricsJson(w.metrics, metrics));
      std::printf("%s\n", DumpJson(j).c_str());
    }
    return 0;
  }
  std::printf("%s\n  %s\n  %s\n  %zu windows of %g s every %g s with >= %g%% coverage\n\n",
              a.input.c_str(), rec->source.c_str(), CleaningLine(stream->report()).c_str(),
              out.windows.size(), a.window_s, a.step_s, 100 * a.min_coverage);
  // The table keeps to the headline metrics; --json has them all.
  constexpr std::string_view kColumns[] = {"n_beats",   "mean_nn_ms", "sdnn_ms",   "rmssd_ms",
                                           "pnn50_pct", "lf_ms2",     "hf_ms2",    "lf_hf",
                                           "sd1_ms",    "sampen",     "dfa_alpha1"};
  std::vector<const hrv::MetricInfo*> shown;
  for (std::string_view name : kColumns) {
    for (const hrv::MetricInfo* info : metrics) {
      if (info->name == name) shown.push_back(info);
    }
  }
  std::string header = fmt::format("{:>12} {:>12}", "t_start", "t_end");
  for (const auto* info : shown) header += fmt::format(" {:>11}", info->name);
  std::printf("%s\n", header.c_str());
  for (const hrv::WindowResult& w : out.windows) {
    std::string row = fmt::format("{:>12} {:>12}", FormatValue(w.t_start), FormatValue(w.t_end));
    for (const auto* info : shown)
      row += fmt::format(" {:>11}", FormatValue(w.metrics.*(info->field)));
    std::printf("%s\n", row.c_str());
  }
  return 0;
}

}  // namespace

void RegisterHrvCommand(CLI::App& app, int* exit_code) {
  auto args = std::make_shared<HrvArgs>();
  CLI::App* cmd = app.add_subcommand(
      "hrv", "Heart-rate variability metrics of a recording (whole record or rolling windows).");
  cmd->add_option("input", args->input,
                  "Recording: RR intervals one per line, a CSV file, or a WFDB record (NAME.hea: "
                  "its beat annotations; NN intervals only between normal beats)")
      ->required();
  cmd->add_option("--format", args->format, "Input format")
      ->check(CLI::IsMember({"auto", "rr", "csv"}))
      ->capture_default_str();
  cmd->add_option("--unit", args->unit, "Unit of the RR values (auto: column name, then magnitude)")
      ->check(CLI::IsMember({"auto", "ms", "s"}))
      ->capture_default_str();
  cmd->add_option("--time-col", args->time_col,
                  "CSV column with beat times in s (default: detect)");
  cmd->add_option("--rr-col", args->rr_col, "CSV column with RR intervals (default: detect)");
  cmd->add_option("--clean", args->clean,
                  "Drop RR outside 300-2000 ms and ectopic beats (>20% change from the last NN)")
      ->check(CLI::IsMember({"on", "off"}))
      ->capture_default_str();
  cmd->add_option("--spectral", args->spectral,
                  "Spectral estimator: Welch on a 4 Hz spline, or Lomb-Scargle on the raw beats")
      ->check(CLI::IsMember({"welch", "lomb"}))
      ->capture_default_str();
  cmd->add_option("--job", args->job, "Metric set: sdnn, hrv-bands or hrv-full")
      ->check(CLI::IsMember({"sdnn", "hrv-bands", "hrv-full"}))
      ->capture_default_str();
  cmd->add_option("--window", args->window_s,
                  "Rolling windows of this many seconds (aligned to absolute time); 0 = whole "
                  "record")
      ->check(NonNegative());
  // Ranges (window, step, window/step) are checked by hrv::Validate, with their limits named.
  cmd->add_option("--step", args->step_s, "Seconds between window starts")->capture_default_str();
  cmd->add_option("--min-coverage", args->min_coverage,
                  "Report a window only if its NN intervals cover this fraction of it")
      ->check(FiniteRange(0.0, 1.0))
      ->capture_default_str();
  cmd->add_flag("--detect", args->detect,
                "The input is an ECG (WFDB record or ECG CSV): detect its beats (medstream ecg)");
  cmd->add_option("--annotator", args->annotator,
                  "WFDB record (NAME.hea): the annotator whose beats to use")
      ->capture_default_str();
  cmd->add_option("--channel", args->channel, "--detect: the ECG signal to use (0-based)")
      ->capture_default_str();
  cmd->add_flag("--json", args->json,
                "JSON output: one object (whole record) or one line per window");
  cmd->callback([args, exit_code] { *exit_code = RunHrv(*args); });
}

}  // namespace medstream::cli
