// `medstream server`: the untrusted host's batch loop.
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <nlohmann/json.hpp>

#include "apps/cli/commands.h"
#include "apps/cli/http_options.h"
#include "apps/cli/json_out.h"
#include "common/base/file.h"
#include "common/base/stats.h"
#include "host/inproc/inproc.h"
#include "host/server/server.h"

namespace medstream::cli {

namespace {

std::atomic<bool> g_stop{false};
void OnSignal(int) {
  g_stop = true;
}

}  // namespace

void RegisterServerCommand(CLI::App& app, int* exit_code) {
  struct Args {
    host::ServerOptions options;
    std::string jobs = "sdnn";
    bool once = false;
    HttpArgs metrics;
    std::string stats_json;
  };
  auto a = std::make_shared<Args>();
  a->options.platform_dir = DefaultPlatformDir();
  CLI::App* cmd = app.add_subcommand(
      "server",
      "Run the untrusted server: batches from DIR/inbox through the enclave to DIR/outbox");
  cmd->add_option("--dir", a->options.dir,
                  "Server directory (inbox, outbox, done, quarantine, "
                  "state)")
      ->required();
  cmd->add_option("--mode", a->options.mode, "Execution mode")
      ->check(CLI::IsMember({"vanilla", "inproc", "process"}))
      ->capture_default_str();
  cmd->add_option("--platform", a->options.platform_dir, "Simulated platform directory")
      ->capture_default_str();
  cmd->add_option("--enclave", a->options.enclave_path, "medstream-enclave (process mode)");
  cmd->add_option("--checkpoint-every", a->options.checkpoint_every,
                  "Batches between sealed checkpoints")
      ->check(Positive())
      ->capture_default_str();
  cmd->add_option("--call-budget", a->options.call_budget_s,
                  "Process mode: seconds any one enclave call may take before the enclave is "
                  "stopped and restarted (0 = each call's own budget, about 30 s + 2 s/MiB for "
                  "a batch)")
      ->check(FiniteRange(0.0, 86400.0))
      ->capture_default_str();
  cmd->add_option("--jobs", a->jobs,
                  "Vanilla mode only (elsewhere the data owner chooses): comma-separated jobs")
      ->capture_default_str();
  cmd->add_option("--stats-json", a->stats_json,
                  "At exit, write counters and batch processing times (no data) as JSON");
  AddMetricsOptions(cmd, &a->metrics);
  cmd->add_flag("--once", a->once, "Process what is in the inbox now, checkpoint, and exit");
  cmd->callback([a, exit_code] {
    auto fail = [&](const auto& e) { *exit_code = ExitWithError("server", e); };
    auto jobs = hrv::ParseJobList(a->jobs);
    if (!jobs) return fail(jobs.error());
    a->options.vanilla_config.jobs = *jobs;
    a->options.inproc = host::LaunchInproc;
    auto server = host::Server::Start(a->options);
    if (!server) return fail(server.error());
    std::printf("medstream server: %s\n  %s/inbox -> %s/outbox\n", (*server)->Describe().c_str(),
                a->options.dir.c_str(), a->options.dir.c_str());
    host::Server* running = server->get();
    auto metrics = StartMetrics(a->metrics, [running] { return running->MetricsText(); });
    if (!metrics) return fail(metrics.error());
    if (*metrics) std::printf("  metrics at %s/metrics\n", (*metrics)->url().c_str());
    std::fflush(stdout);
    if (a->once) {
      auto n = (*server)->ProcessInbox();
      if (!n) return fail(n.error());
      if (auto s = (*server)->Checkpoint(); !s) return fail(s.error());
    } else {
      std::signal(SIGINT, OnSignal);
      std::signal(SIGTERM, OnSignal);
      if (auto s = (*server)->Run(g_stop); !s) return fail(s.error());
    }
    const auto& c = (*server)->counters();
    const Spread t = Summarize(c.batch_s);
    std::printf(
        "processed %llu, quarantined %llu, checkpoints %llu, enclave restarts %llu\n"
        "batch time: mean %.1f ms, p50 %.1f ms, p99 %.1f ms, max %.1f ms\n",
        static_cast<unsigned long long>(c.processed),
        static_cast<unsigned long long>(c.quarantined),
        static_cast<unsigned long long>(c.checkpoints),
        static_cast<unsigned long long>(c.enclave_restarts), t.mean * 1e3, t.p50 * 1e3, t.p99 * 1e3,
        t.max * 1e3);
    if (c.replay_missing > 0) {
      std::printf("journalled batches gone at start (their streams rebuilt without them): %llu\n",
                  static_cast<unsigned long long>(c.replay_missing));
    }
    if (!a->stats_json.empty()) {
      const nlohmann::ordered_json j{{"mode", a->options.mode},
                                     {"processed", c.processed},
                                     {"quarantined", c.quarantined},
                                     {"checkpoints", c.checkpoints},
                                     {"enclave_restarts", c.enclave_restarts},
                                     {"bytes_in", c.bytes_in},
                                     {"quarantined_by_reason", c.quarantined_by_reason},
                                     {"replay_missing", c.replay_missing},
                                     {"batch_ms",
                                      {{"mean", t.mean * 1e3},
                                       {"p50", t.p50 * 1e3},
                                       {"p99", t.p99 * 1e3},
                                       {"max", t.max * 1e3}}}};
      if (auto s = WriteFileAtomic(a->stats_json, DumpJson(j, 2) + "\n"); !s) {
        return fail(s.error());
      }
    }
  });
}

}  // namespace medstream::cli
