// `medstream ecg`: beats from raw ECG (algo/ecg/qrs.h) and their evaluation against reference
// annotations (algo/ecg/score.h), on WFDB records or ECG CSV files (adapters/wfdb/ecg_file.h).
#include <cstdio>
#include <fstream>

#include <fmt/format.h>

#include "adapters/wfdb/ecg_file.h"
#include "algo/ecg/qrs.h"
#include "algo/ecg/score.h"
#include "apps/cli/commands.h"
#include "common/base/bytes.h"
#include "common/base/file.h"

namespace medstream::cli {

void RegisterEcgCommand(CLI::App& app, int* exit_code) {
  CLI::App* cmd =
      app.add_subcommand("ecg", "Beats from raw ECG: detect them, or score the detector");
  cmd->require_subcommand(1);
  auto fail = [exit_code](const auto& e) { *exit_code = ExitWithError("ecg", e); };

  struct DetectArgs {
    std::string record, out;
    int channel = 0;
  };
  auto d = std::make_shared<DetectArgs>();
  CLI::App* det = cmd->add_subcommand(
      "detect", "Detect the QRS complexes of an ECG (WFDB record or CSV) and write the beats");
  det->add_option("record", d->record, "WFDB record (DIR/101 or DIR/101.hea) or ECG CSV")
      ->required();
  det->add_option("--channel", d->channel, "Signal to use (0-based)")->capture_default_str();
  det->add_option(
      "--out", d->out,
      "Beats CSV: sample,time_s,rr_ms (0600: it is health data; default: standard output)");
  det->callback([d, fail] {
    auto e = wfdb::LoadEcg(d->record, d->channel);
    if (!e) return fail(e.error());
    auto beats = wfdb::DetectBeats(*e);
    if (!beats) return fail(beats.error());
    std::string csv = "sample,time_s,rr_ms\n";
    for (size_t i = 0; i < beats->size(); ++i) {
      const int64_t s = (*beats)[i].sample;
      csv += fmt::format("{},{:.6f},", s, static_cast<double>(s) / e->fs);
      if (i > 0) {
        csv +=
            fmt::format("{:.3f}", static_cast<double>(s - (*beats)[i - 1].sample) * 1000 / e->fs);
      }
      csv += "\n";
    }
    if (d->out.empty()) {
      std::fputs(csv.c_str(), stdout);
    } else if (auto s = WriteFileAtomic(d->out, csv, 0600); !s) {  // a patient's beats
      return fail(s.error());
    }
    std::fprintf(stderr, "%s: %zu beats in %.0f s (%s, %.0f Hz)\n", e->name.c_str(), beats->size(),
                 static_cast<double>(e->samples.size()) / e->fs, e->channel.c_str(), e->fs);
  });

  struct EvalArgs {
    std::vector<std::string> records;
    std::string annotator = "atr";
    std::vector<std::string> references;
    int channel = 0;
  };
  auto v = std::make_shared<EvalArgs>();
  CLI::App* ev = cmd->add_subcommand(
      "eval",
      "Score the detector against reference beat annotations the ANSI/AAMI EC57 way (150 ms "
      "match window), per record and in total, like PhysioNet's bxb");
  ev->add_option("records", v->records, "WFDB records or ECG CSV files")->required();
  ev->add_option("--annotator", v->annotator, "Reference annotator of WFDB records")
      ->capture_default_str();
  ev->add_option("--reference", v->references,
                 "Annotation CSV for each CSV record, in order (sample and is_beat columns)");
  ev->add_option("--channel", v->channel, "Signal to use (0-based)")->capture_default_str();
  ev->callback([v, fail] {
    ecg::Score gross;
    std::printf("%-12s %8s %6s %6s %6s %9s %9s %13s %9s\n", "record", "beats", "TP", "FN", "FP",
                "Se %", "+P %", "decision max", "searchback");
    size_t csv_index = 0;
    for (const std::string& r : v->records) {
      std::string reference;
      if (r.ends_with(".csv")) {
        if (csv_index >= v->references.size()) {
          return fail(r + ": a CSV record needs its --reference annotation CSV");
        }
        reference = v->references[csv_index++];
      }
      auto result = wfdb::EvaluateRecord(r, v->annotator, reference, v->channel);
      if (!result) return fail(result.error());
      const ecg::Score& s = result->score;
      gross += s;
      std::printf("%-12s %8llu %6llu %6llu %6llu %9.2f %9.2f %11.2f s %9llu\n",
                  result->name.substr(0, 12).c_str(),
                  static_cast<unsigned long long>(result->reference_beats),
                  static_cast<unsigned long long>(s.tp), static_cast<unsigned long long>(s.fn),
                  static_cast<unsigned long long>(s.fp), 100 * s.Sensitivity(),
                  100 * s.PositivePredictivity(), result->decision_max_s,
                  static_cast<unsigned long long>(result->searchback));
    }
    std::printf("%-12s %8llu %6llu %6llu %6llu %9.2f %9.2f\n", "gross",
                static_cast<unsigned long long>(gross.tp + gross.fn),
                static_cast<unsigned long long>(gross.tp),
                static_cast<unsigned long long>(gross.fn),
                static_cast<unsigned long long>(gross.fp), 100 * gross.Sensitivity(),
                100 * gross.PositivePredictivity());
  });
}

}  // namespace medstream::cli
