// `medstream export fhir` and `medstream report`: the owner's decrypted results for an EHR and
// for people (owner/fhir, owner/report). Both read a gateway's results directory or one
// `medstream hrv --json` file (owner/results).
#include <fmt/format.h>

#include <pthread.h>

#include <chrono>
#include <csignal>
#include <cstdio>

#include "apps/cli/commands.h"
#include "apps/cli/http_options.h"
#include "apps/cli/json_out.h"
#include "common/base/file.h"
#include "owner/fhir/fhir.h"
#include "owner/report/report.h"
#include "owner/results/results.h"

namespace medstream::cli {

namespace {}  // namespace

void RegisterExportCommand(CLI::App& app, int* exit_code) {
  CLI::App* cmd = app.add_subcommand("export", "Export results for other systems");
  cmd->require_subcommand(1);
  struct Args {
    std::string results, user, out, metrics;
  };
  auto a = std::make_shared<Args>();
  CLI::App* fhir = cmd->add_subcommand(
      "fhir",
      "An HL7 FHIR R4 Bundle of Observations, one per window and metric (heart rate LOINC "
      "8867-4, SDNN LOINC 80404-7, the others under urn:medstream:fhir:hrv-metric; "
      "docs/outputs.md)");
  fhir->add_option("results", a->results,
                   "A gateway's results directory, or one JSON-lines file of windows (medstream "
                   "hrv --window ... --json)")
      ->required();
  fhir->add_option("--user", a->user,
                   "Only this user (a directory), or the subject's id (a file; default: its name)");
  fhir->add_option("--out", a->out, "Where to write the Bundle (0600: it is health data)")
      ->required();
  fhir->add_option("--metrics", a->metrics,
                   "Comma-separated metric names (e.g. mean_hr_bpm,sdnn_ms); default: every "
                   "metric with a value");
  fhir->callback([a, exit_code] {
    fhir::BundleOptions options;
    options.timestamp =
        std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
    for (size_t pos = 0; pos < a->metrics.size();) {
      size_t end = a->metrics.find(',', pos);
      if (end == std::string::npos) end = a->metrics.size();
      const std::string name = a->metrics.substr(pos, end - pos);
      if (!hrv::FindMetric(name))
        return void(*exit_code = ExitWithError("export", "unknown metric '" + name + "'"));
      options.metrics.push_back(name);
      pos = end + 1;
    }
    auto users = results::Load(a->results, a->user);
    if (!users) return void(*exit_code = ExitWithError("export", users.error()));
    const nlohmann::ordered_json bundle = fhir::Bundle(*users, options);
    if (auto s = WriteFileAtomic(a->out, DumpJson(bundle, 1) + "\n", 0600); !s)
      return void(*exit_code = ExitWithError("export", s.error()));
    uint64_t malformed = 0;
    for (const auto& u : *users) malformed += u.malformed_lines;
    std::printf("%zu observations of %zu users written to %s\n", bundle["entry"].size(),
                users->size(), a->out.c_str());
    if (malformed)
      std::fprintf(stderr, "medstream export: warning: %llu malformed result lines skipped\n",
                   static_cast<unsigned long long>(malformed));
  });
}

void RegisterReportCommand(CLI::App& app, int* exit_code) {
  struct Args {
    std::string results, user, beats, out, spectral = "welch";
  };
  auto a = std::make_shared<Args>();
  CLI::App* cmd = app.add_subcommand(
      "report",
      "One user's HRV report as HTML: metric table, tachogram, spectrum with its bands, "
      "Poincare plot with SD1/SD2, per-window trends");
  cmd->add_option("results", a->results,
                  "A gateway's results directory (with --user), or one JSON-lines file of "
                  "windows (medstream hrv --window ... --json)")
      ->required();
  cmd->add_option("--user", a->user, "The user (a results directory), or the name to show");
  cmd->add_option("--beats", a->beats,
                  "The beats: a recording medstream hrv reads (default: RESULTS/<user>.beats.csv "
                  "when the gateway kept one)");
  cmd->add_option("--spectral", a->spectral, "Spectral estimator, as medstream hrv")
      ->check(CLI::IsMember({"welch", "lomb"}))
      ->capture_default_str();
  cmd->add_option("--out", a->out, "The HTML file to write (0600: it is health data)")->required();
  cmd->callback([a, exit_code] {
    auto input = report::Load(a->results, a->user, a->beats);
    if (!input) return void(*exit_code = ExitWithError("report", input.error()));
    if (a->spectral == "lomb") input->analysis.spectral.method = hrv::SpectralMethod::kLombScargle;
    input->generated_at =
        std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
    auto html = report::Render(*input);
    if (!html) return void(*exit_code = ExitWithError("report", html.error()));
    if (auto s = WriteFileAtomic(a->out, *html, 0600); !s)
      return void(*exit_code = ExitWithError("report", s.error()));
    std::printf(
        "report of %s (%zu windows, %s) written to %s\n", input->user.c_str(),
        input->windows.size(),
        input->beats ? (std::to_string(input->beats->size()) + " beats").c_str() : "no beats",
        a->out.c_str());
  });
}

void RegisterDashboardCommand(CLI::App& app, int* exit_code) {
  struct Args {
    std::string results;
    HttpArgs http;
  };
  auto a = std::make_shared<Args>();
  a->http.listen = "127.0.0.1:8080";
  CLI::App* cmd = app.add_subcommand(
      "dashboard",
      "Serve the dashboard over a results directory (the gateway serves it live with --http)");
  cmd->add_option("results", a->results, "A gateway's results directory")->required();
  AddHttpOptions(cmd, &a->http, "the dashboard");
  cmd->callback([a, exit_code] {
    auto options = DashboardOptions(a->http, a->results);
    if (!options) return void(*exit_code = ExitWithError("dashboard", options.error()));
    // Blocked before the server's threads exist, so they inherit it and only sigwait sees them.
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, nullptr);
    auto board = dashboard::Dashboard::Start(std::move(*options));
    if (!board) return void(*exit_code = ExitWithError("dashboard", board.error()));
    std::printf("medstream dashboard: %s (Ctrl-C stops)\n", (*board)->url().c_str());
    std::fflush(stdout);
    int sig = 0;
    sigwait(&set, &sig);
  });
}

}  // namespace medstream::cli
