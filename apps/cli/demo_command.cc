// `medstream demo`: the whole system on one machine, for real (apps/pipeline/pipeline.h).
//
// Starts Eclipse Mosquitto on a free loopback port, `medstream server` (process mode) as its own
// process, a gateway in this process, and `medstream sensor` simulating users faster than real
// time; then prints what arrived, what was lost (must be 0) and how long it took.
#include <unistd.h>

#include <fmt/format.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "apps/cli/commands.h"
#include "apps/cli/json_out.h"
#include "apps/pipeline/pipeline.h"
#include "common/attest/identity.h"
#include "common/base/file.h"
#include "owner/results/results.h"

namespace medstream::cli {

namespace {

// The latest window of each user, the headline metrics with their units (at most 25 rows: the
// summary JSON has every user).
std::string FormatLatestTable(const std::vector<pipeline::Summary::UserLatest>& users) {
  constexpr size_t kMaxRows = 25;
  std::string out = fmt::format("\nlatest complete window per user\n  {:<14} {:<20} {:>6}", "user",
                                "window start (UTC)", "min");
  const auto metrics = results::HeadlineMetrics();
  for (const hrv::MetricInfo* m : metrics) out += fmt::format(" {:>9}", results::Label(*m));
  out += "\n";
  size_t shown = 0;
  for (const auto& u : users) {
    if (shown++ == kMaxRows) {
      out += fmt::format("  ... and {} more users (--summary-json lists all)\n",
                         users.size() - kMaxRows);
      break;
    }
    if (!u.latest.ok) {
      out += fmt::format("  {:<14} (no complete window yet)\n", u.user);
      continue;
    }
    out += fmt::format("  {:<14} {:<20} {:>6.0f}", u.user, results::IsoUtc(u.latest.t_start),
                       (u.latest.t_end - u.latest.t_start) / 60);
    for (const hrv::MetricInfo* m : metrics) {
      const double v = u.latest.metrics.*(m->field);
      out += std::isnan(v) ? fmt::format(" {:>9}", "-") : fmt::format(" {:>9.1f}", v);
    }
    if (u.latest.lost_beats) out += fmt::format("  ({} beats lost)", u.latest.lost_beats);
    out += "\n";
  }
  return out;
}

}  // namespace

void RegisterDemoCommand(CLI::App& app, int* exit_code) {
  struct Args {
    int users = 20;
    double duration_s = 60;
    double speed = 30;
    double batch_seconds = 10;
    uint64_t seed = 1;
    std::string keep, summary_json;
    std::string jobs = "hrv-full";
    std::string http = "127.0.0.1:0";
    bool sftp = false;
    bool cluster = false;
    int workers = 2;
    double rate = 0;
  };
  auto a = std::make_shared<Args>();
  CLI::App* cmd = app.add_subcommand(
      "demo",
      "Run the whole system on this machine: Mosquitto (TLS, a certificate per device), sensors, "
      "gateway, server and a process-mode enclave, then print a summary");
  cmd->add_option("--users", a->users, "Simulated users")
      ->check(CLI::Range(1, 10000))
      ->capture_default_str();
  cmd->add_option("--duration", a->duration_s, "Seconds the sensors publish (wall clock)")
      ->check(Positive())
      ->capture_default_str();
  cmd->add_option("--speed", a->speed, "Heart time per wall second (faster than real time)")
      ->check(Positive())
      ->capture_default_str();
  cmd->add_option("--rate", a->rate,
                  "Total beats per second across users instead of --speed (Stream-Small: 1424)")
      ->check(NonNegative());
  cmd->add_option("--batch-seconds", a->batch_seconds, "Gateway micro-batch interval (s)")
      ->check(Positive())
      ->capture_default_str();
  cmd->add_option("--seed", a->seed, "Random seed of the simulated users")->capture_default_str();
  cmd->add_option("--jobs", a->jobs, "Jobs the data owner provisions")->capture_default_str();
  cmd->add_option("--keep", a->keep,
                  "Keep every directory here: raw beats sent, server inbox/outbox (ciphertext), "
                  "decrypted results (without it, only the results are kept)");
  cmd->add_option("--summary-json", a->summary_json, "Also write the summary as JSON");
  cmd->add_option("--http", a->http,
                  "The dashboard's loopback HOST:PORT while the demo runs (port 0: a free one; "
                  "\"\" for none); medstream dashboard RESULTS serves it afterwards")
      ->capture_default_str();
  auto* cluster = cmd->add_flag(
      "--cluster", a->cluster,
      "Scale out instead of one server: a 3-node NATS JetStream cluster (TLS, passwords) on "
      "loopback ports and --workers workers, each enclave attested (docs/scale-out.md)");
  cmd->add_option("--workers", a->workers, "With --cluster: workers")
      ->check(CLI::Range(1, 16))
      ->capture_default_str();
  auto* sftp = cmd->add_flag(
      "--sftp", a->sftp,
      "Upload over SFTP: OpenSSH sshd (internal-sftp, chrooted to the server directory, "
      "key auth, pinned host key) on a loopback port; needs root");
  sftp->excludes(cluster);
  cmd->callback([a, exit_code] {
    auto fail = [&](const auto& e) { *exit_code = ExitWithError("demo", e); };
    namespace fs = std::filesystem;
    pipeline::Options o;
    o.self = SelfPath().value_or("medstream");
    o.work =
        a->keep.empty()
            ? (fs::temp_directory_path() / ("medstream-demo-" + std::to_string(getpid()))).string()
            : fs::absolute(a->keep).string();
    // OpenSSH's chroot must be root-owned all the way up, so never under /tmp.
    if (a->sftp) o.server_dir = "/var/lib/medstream/demo-" + std::to_string(getpid()) + "/server";
    o.users = a->users;
    o.cluster = a->cluster;
    o.workers = a->workers;
    o.duration_s = a->duration_s;
    o.speed = a->speed;
    o.rate = a->rate;
    o.batch_seconds = a->batch_seconds;
    o.seed = a->seed;
    o.sftp = a->sftp;
    o.http_listen = a->http;
    auto jobs = hrv::ParseJobList(a->jobs);
    if (!jobs) return fail(jobs.error());
    o.jobs = *jobs;
    o.progress = [](const std::string& line) {
      std::printf("  %s\n", line.c_str());
      std::fflush(stdout);
    };
    std::printf(
        "medstream demo: %d users for %.0f s at %s, enclave in process mode\n"
        "  NOTE: a software-simulated TEE (no TEE hardware here): it protects against the\n"
        "  untrusted server process, not against root or a hypervisor.\n  working in %s\n",
        a->users, a->duration_s,
        a->rate > 0 ? (std::to_string(static_cast<long>(a->rate)) + " beats/s").c_str()
                    : (std::to_string(static_cast<int>(a->speed)) + "x real time").c_str(),
        o.work.c_str());
    auto run = pipeline::Run(o);
    // Without --keep everything but the decrypted results goes (they are what a user came for).
    auto cleanup = [&] {
      if (a->keep.empty()) {
        std::error_code ec;
        for (const auto& e : fs::directory_iterator(o.work, ec)) {
          if (e.path().filename() != "results") fs::remove_all(e.path(), ec);
        }
        if (!fs::exists(fs::path(o.work) / "results")) fs::remove_all(o.work, ec);
      }
      if (a->sftp && a->keep.empty()) fs::remove_all(fs::path(o.server_dir).parent_path());
    };
    if (!run) {
      cleanup();
      return fail(run.error());
    }
    const pipeline::Summary& s = *run;
    nlohmann::ordered_json users = nlohmann::ordered_json::array();
    for (const pipeline::Summary::UserLatest& u : s.users_latest) {
      nlohmann::ordered_json row{{"user", u.user}, {"windows", u.windows}};
      if (u.latest.ok) {
        row["t_start"] = u.latest.t_start;
        row["t_end"] = u.latest.t_end;
        row["start_utc"] = results::IsoUtc(u.latest.t_start);
        row["end_utc"] = results::IsoUtc(u.latest.t_end);
        for (const hrv::MetricInfo* m : results::HeadlineMetrics()) {
          const double v = u.latest.metrics.*(m->field);
          row[std::string(m->name)] =
              std::isnan(v) ? nlohmann::ordered_json() : nlohmann::ordered_json(v);
        }
        row["lost_beats"] = u.latest.lost_beats;
      }
      users.push_back(std::move(row));
    }
    nlohmann::ordered_json j{
        {"user_count", s.users},
        {"users", users},
        {"mode", s.mode},
        {"beats_published", s.beats_published},
        {"beats_received", s.beats_received},
        {"beats_processed", s.beats_processed},
        {"batches", s.batches},
        {"results", s.results},
        {"windows", s.windows},
        {"malformed_messages", s.malformed},
        {"lost_beats", s.lost_beats},
        {"lost_batches", s.lost_batches},
        {"lost_beats_detected", s.lost_beats_detected},
        {"lost_messages_detected", s.lost_messages_detected},
        {"duplicates", s.duplicates},
        {"latency_p50_s", s.latency_s.p50},
        {"latency_p99_s", s.latency_s.p99},
        {"batch_interval_s", s.batch_interval_s},
        {"beats_per_second", s.rate()},
        {"server_batch_ms_mean", s.server_batch_ms.mean},
        {"server_batch_ms_p99", s.server_batch_ms.p99},
        {"results_dir", s.results_dir},
    };
    if (o.cluster) {
      nlohmann::ordered_json workers = nlohmann::ordered_json::array();
      for (const pipeline::Summary::WorkerSummary& w : s.workers) {
        workers.push_back({{"name", w.name},
                           {"batches_processed", w.batches},
                           {"beats_processed", w.beats},
                           {"replays", w.replays},
                           {"quarantined", w.quarantined},
                           {"takeovers", w.takeovers},
                           {"checkpoints", w.checkpoints}});
      }
      j["cluster_nodes"] = s.cluster_nodes;
      j["workers"] = std::move(workers);
    }
    std::printf(
        "\nsummary\n  users %d   beats published %llu (%.0f/s), received %llu, processed in the "
        "enclave %llu\n"
        "  batches %llu   results %llu   windows %llu   malformed messages %llu\n"
        "  lost: %llu beats, %llu batches   duplicates: %llu   (gateway's sequence check: %llu "
        "beats in %llu messages never arrived)\n"
        "  beat-to-result latency: p50 %.2f s, p99 %.2f s (batch interval %.1f s)\n",
        s.users, static_cast<unsigned long long>(s.beats_published), s.rate(),
        static_cast<unsigned long long>(s.beats_received),
        static_cast<unsigned long long>(s.beats_processed),
        static_cast<unsigned long long>(s.batches), static_cast<unsigned long long>(s.results),
        static_cast<unsigned long long>(s.windows), static_cast<unsigned long long>(s.malformed),
        static_cast<unsigned long long>(s.lost_beats),
        static_cast<unsigned long long>(s.lost_batches),
        static_cast<unsigned long long>(s.duplicates),
        static_cast<unsigned long long>(s.lost_beats_detected),
        static_cast<unsigned long long>(s.lost_messages_detected), s.latency_s.p50, s.latency_s.p99,
        s.batch_interval_s);
    if (s.workers.empty()) {
      std::printf("  server time per batch: mean %.1f ms, p99 %.1f ms\n", s.server_batch_ms.mean,
                  s.server_batch_ms.p99);
    } else {
      std::printf("  cluster: %d NATS nodes, %zu workers\n", s.cluster_nodes, s.workers.size());
    }
    for (const pipeline::Summary::WorkerSummary& w : s.workers) {
      std::printf(
          "  %s: batches %llu, beats %llu, takeovers %llu, checkpoints %llu, replays %llu, "
          "quarantined %llu\n",
          w.name.c_str(), static_cast<unsigned long long>(w.batches),
          static_cast<unsigned long long>(w.beats), static_cast<unsigned long long>(w.takeovers),
          static_cast<unsigned long long>(w.checkpoints),
          static_cast<unsigned long long>(w.replays),
          static_cast<unsigned long long>(w.quarantined));
    }
    std::printf("%s", FormatLatestTable(s.users_latest).c_str());
    if (!a->keep.empty()) {
      std::printf(
          "  kept in %s: sensors/ (raw beats sent), results/ (decrypted per user: CSV and\n"
          "  JSON lines), gateway/, platform/; the %s (ciphertext) in %s\n",
          o.work.c_str(), o.cluster ? "cluster's stores" : "server's files",
          o.cluster ? (o.work + "/cluster/nodes/*/store").c_str() : s.server_dir.c_str());
    } else {
      std::printf(
          "  results (decrypted, per user: <user>.jsonl and <user>.<job>.csv, beats) kept in %s\n"
          "  (--keep DIR keeps the sensors' beats and the server's files too)\n",
          s.results_dir.c_str());
    }
    if (!s.users_latest.empty()) {
      const std::string& first = s.users_latest.front().user;
      std::printf(
          "  look at them: medstream dashboard %s   medstream report %s --user %s --out "
          "report.html   medstream export fhir %s --out bundle.json\n",
          s.results_dir.c_str(), s.results_dir.c_str(), first.c_str(), s.results_dir.c_str());
    }
    cleanup();
    if (!a->summary_json.empty()) std::ofstream(a->summary_json) << DumpJson(j, 2) << "\n";
    if (s.lost_beats || s.lost_batches || s.duplicates || s.lost_beats_detected)
      *exit_code = kExitDataLost;
  });
}

}  // namespace medstream::cli
