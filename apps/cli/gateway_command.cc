// `medstream gateway`: the data owner's edge, from MQTT to the server and back.
#include <csignal>
#include <cstdio>
#include <thread>

#include "apps/cli/http_options.h"
#include "apps/cli/json_out.h"
#include "common/base/address.h"
#include "common/base/file.h"
#include "common/base/log_limit.h"
#include "owner/broker/broker.h"

#include <nlohmann/json.hpp>
#include "apps/cli/commands.h"
#include "host/cluster/cluster.h"
#include "owner/gateway/cluster_link.h"
#include "owner/gateway/gateway.h"

namespace medstream::cli {

namespace {
std::atomic<bool> g_stop_gateway{false};
void OnGatewaySignal(int) {
  g_stop_gateway = true;
}
}  // namespace

void RegisterGatewayCommand(CLI::App& app, int* exit_code) {
  struct Args {
    gateway::Options o;
    std::string policy, jobs = "sdnn,hrv-bands", sftp, ssh_key, host_key, ssh_user = "root";
    std::string credentials, stats_json, cluster, results_consumer = "gateway";
    uint32_t partitions = 16;
    double stop_grace_s = 10;
    int sftp_timeout_s = 30;
    HttpArgs http;
  };
  auto a = std::make_shared<Args>();
  CLI::App* cmd = app.add_subcommand(
      "gateway",
      "Subscribe to the sensors, attest the enclave, upload sealed micro-batches, "
      "decrypt the results");
  cmd->add_option("--state", a->o.state_dir, "Gateway state: keys, spool, sequence numbers")
      ->required();
  cmd->add_option("--results", a->o.results_dir, "Where per-user CSV and JSON lines go")
      ->required();
  auto* server_dir = cmd->add_option(
      "--server-dir", a->o.server_dir,
      "The server directory (local, or its path on the SFTP host: the relay socket)");
  auto* cluster = cmd->add_option(
      "--cluster", a->cluster,
      "Publish to a NATS JetStream cluster's workers instead (a `medstream cluster init` "
      "folder: its CA and the gateway's password; docs/scale-out.md)");
  server_dir->excludes(cluster);
  cmd->add_option("--partitions", a->partitions,
                  "With --cluster: partitions of the batch stream (the workers' --partitions)")
      ->check(CLI::Range(1u, 4096u))
      ->capture_default_str();
  cmd->add_option("--sftp", a->sftp, "Upload over SFTP to HOST:PORT instead of a local directory");
  cmd->add_option("--ssh-key", a->ssh_key, "SSH private key for --sftp");
  cmd->add_option("--host-key", a->host_key, "The SFTP server's public host key, pinned");
  cmd->add_option("--ssh-user", a->ssh_user, "SSH user")->capture_default_str();
  cmd->add_option("--sftp-timeout", a->sftp_timeout_s,
                  "Seconds --sftp waits for each answer of the server (connecting, each part of "
                  "an upload or download) before it gives the connection up and connects again")
      ->check(CLI::Range(1, 3600))
      ->capture_default_str();
  cmd->add_option("--broker", a->o.broker, "MQTT broker host:port (TLS)")->capture_default_str();
  cmd->add_option("--credentials", a->credentials,
                  "A `medstream broker init` folder: its ca.crt and the gateway's certificate");
  cmd->add_option("--ca", a->o.tls.ca, "The broker CA's certificate (instead of --credentials)");
  cmd->add_option("--cert", a->o.tls.cert, "The gateway's certificate");
  cmd->add_option("--key", a->o.tls.key, "The gateway's private key");
  cmd->add_option("--status-interval", a->o.status_interval_s,
                  "Seconds between asking the broker for the devices' statuses (they reveal "
                  "messages lost at the end of a session)")
      ->check(FiniteRange(0.1, 3600.0))
      ->capture_default_str();
  cmd->add_option("--stats-json", a->stats_json,
                  "Keep the gateway's counters (beats, batches, results, lost) in this JSON file, "
                  "rewritten every 5 s and at the end");
  cmd->add_flag("--record-beats", a->o.record_beats,
                "Also keep each user's beats in RESULTS/<user>.beats.csv (medstream report draws "
                "the tachogram, spectrum and Poincare plot from them)");
  cmd->add_option("--site", a->o.site, "Site (topic medstream/SITE/+/rr)")->capture_default_str();
  cmd->add_option("--batch-beats", a->o.batch_beats, "Cut a user's batch at this many beats")
      ->check(CLI::Range(size_t{1}, size_t{1} << 32))
      ->capture_default_str();
  cmd->add_option("--batch-seconds", a->o.batch_seconds, "... or when it is this old")
      ->check(FiniteRange(0.001, 86400.0))
      ->capture_default_str();
  cmd->add_option("--stop-grace", a->stop_grace_s,
                  "On SIGTERM or Ctrl-C: cut what is open and wait this long for the results "
                  "before stopping (what is left is said, kept in --state and resumed at the next "
                  "start)")
      ->check(FiniteRange(0.0, 3600.0))
      ->capture_default_str();
  cmd->add_option("--max-open-beats", a->o.max_open_beats,
                  "The most beats all users' open batches hold together (16 bytes each), reached "
                  "only while cuts fail; a message past it is dropped and counted as lost")
      ->capture_default_str()
      ->check(Positive());
  cmd->add_option("--late-grace", a->o.late_grace_s,
                  "Hold a user's batch this long while a gap in its message sequence is open "
                  "(reordered messages still arrive in time); later arrivals count as lost")
      ->check(FiniteRange(0.0, 600.0))
      ->capture_default_str();
  cmd->add_option("--quarantine-check", a->o.quarantine_check_s,
                  "Ask whether a user's batch was quarantined once its result is this late (then "
                  "say so in the user's .jsonl and read the later ones)")
      ->check(FiniteRange(1.0, 86400.0))
      ->capture_default_str();
  cmd->add_option("--results-consumer", a->results_consumer,
                  "With --cluster: this gateway's durable consumer of results (one per gateway)")
      ->capture_default_str();
  cmd->add_option("--jobs", a->jobs, "Jobs the enclave runs on our streams")->capture_default_str();
  cmd->add_option("--window", a->o.config.windows.window_s, "Seconds of beats per HRV window")
      ->check(FiniteRange(hrv::kMinWindowS, hrv::kMaxWindowS))
      ->capture_default_str();
  cmd->add_option("--min-coverage", a->o.config.windows.min_coverage,
                  "Smallest share of a window its NN intervals must cover for a result")
      ->check(FiniteRange(0.0, 1.0))
      ->capture_default_str();
  cmd->add_option("--step", a->o.config.windows.step_s, "Seconds between window starts")
      ->check(FiniteRange(hrv::kMinStepS, hrv::kMaxWindowS))
      ->capture_default_str();
  AddHttpOptions(cmd, &a->http, "the dashboard (the results), /metrics and /healthz");
  cmd->add_option("--root-ca", a->o.root_ca, "Attestation trust anchor")->required();
  cmd->add_option("--policy", a->policy, "Verifier policy (JSON) the enclave must satisfy")
      ->required();
  cmd->callback([a, exit_code] {
    auto fail = [&](const auto& e) { *exit_code = ExitWithError("gateway", e); };
    if (!a->credentials.empty()) {
      if (!a->o.tls.cert.empty() || !a->o.tls.key.empty()) {
        return fail("--credentials DIR or --ca/--cert/--key, not both");
      }
      const auto c = broker::ClientCredentials(a->credentials, broker::kGatewayIdentity);
      a->o.tls = {c.ca, c.cert, c.key};
    }
    auto jobs = hrv::ParseJobList(a->jobs);
    if (!jobs) {
      return fail(jobs.error());
    }
    a->o.config.jobs = *jobs;
    if (!a->sftp.empty()) {
      if (a->ssh_key.empty() || a->host_key.empty()) {
        return fail("--sftp HOST:PORT needs --ssh-key and --host-key");
      }
      auto target = ParseHostPort(a->sftp, "--sftp");
      if (!target) return fail(target.error());
      a->o.sftp = sftp::Target{.host = target->host,
                               .port = target->port,
                               .user = a->ssh_user,
                               .private_key = a->ssh_key,
                               .host_key = a->host_key,
                               .timeout_s = a->sftp_timeout_s};
    }
    // Files after the options are checked: a typo is reported before any file is read.
    auto policy = attest::LoadPolicy(a->policy);
    if (!policy) return fail(policy.error());
    a->o.policy = *policy;
    if (a->o.server_dir.empty() && a->cluster.empty()) {
      return fail("give --server-dir (one server) or --cluster (a NATS JetStream cluster)");
    }
    std::unique_ptr<gateway::ServerLink> link;
    if (!a->cluster.empty()) {
      auto nats = cluster::ClientOptions(a->cluster, cluster::kGatewayRole);
      if (!nats) return fail(nats.error());
      auto l = gateway::ClusterLink(
          {.nats = *nats, .partitions = a->partitions, .consumer = a->results_consumer});
      if (!l) return fail(l.error());
      link = std::move(*l);
    }
    auto gw = gateway::Gateway::Start(a->o, nullptr, std::move(link));
    if (!gw) return fail(gw.error());
    if (a->cluster.empty()) {
      std::printf(
          "medstream gateway: enclave attested (mrenclave %s%s), subscribed to "
          "medstream/%s/+/rr (TLS)\n",
          crypto::ToHex((*gw)->claims().mr_enclave).substr(0, 16).c_str(),
          (*gw)->claims().simulated ? ", SIMULATED TEE" : "", a->o.site.c_str());
    } else {
      std::printf(
          "medstream gateway: publishing to the cluster in %s (%u partitions); every worker is "
          "attested before it gets a key; subscribed to medstream/%s/+/rr (TLS)\n",
          a->cluster.c_str(), a->partitions, a->o.site.c_str());
    }
    if (const auto st = (*gw)->stats(); st.beats_recovered > 0) {
      std::printf(
          "medstream gateway: %llu beats of open batches recovered from the write-ahead log\n",
          static_cast<unsigned long long>(st.beats_recovered));
    }
    if (const auto st = (*gw)->stats(); st.wal_bytes_damaged > 0) {
      std::printf(
          "medstream gateway: %llu bytes of the write-ahead logs were damaged and could not be "
          "read: the beats they held are lost (each damaged log is kept as it was beside it, "
          "*.damaged-TIME; the other records were recovered)\n",
          static_cast<unsigned long long>(st.wal_bytes_damaged));
    }
    std::unique_ptr<dashboard::Dashboard> board;
    if (!a->http.listen.empty()) {
      auto options = DashboardOptions(a->http, a->o.results_dir);
      if (!options) return fail(options.error());
      gateway::Gateway* g = gw->get();
      options->metrics = [g] { return g->MetricsText(); };
      auto started = dashboard::Dashboard::Start(std::move(*options));
      if (!started) return fail(started.error());
      board = std::move(*started);
      std::printf("medstream gateway: dashboard at %s (/metrics, /healthz)\n",
                  board->url().c_str());
    }
    std::fflush(stdout);
    std::signal(SIGINT, OnGatewaySignal);
    std::signal(SIGTERM, OnGatewaySignal);
    auto last = std::chrono::steady_clock::now();
    auto print = [&] {
      const auto s = (*gw)->stats();
      std::printf(
          "  beats %llu (repeats dropped %llu), batches %llu (uploaded %llu), results %llu, "
          "windows %llu, malformed %llu, lost %llu beats in %llu messages\n",
          static_cast<unsigned long long>(s.beats_in),
          static_cast<unsigned long long>(s.beats_stale),
          static_cast<unsigned long long>(s.batches_sealed),
          static_cast<unsigned long long>(s.batches_uploaded),
          static_cast<unsigned long long>(s.results), static_cast<unsigned long long>(s.windows),
          static_cast<unsigned long long>(s.malformed),
          static_cast<unsigned long long>(s.lost_beats),
          static_cast<unsigned long long>(s.lost_messages));
      std::fflush(stdout);
      if (!a->stats_json.empty()) {
        const nlohmann::ordered_json j{{"messages", s.messages},
                                       {"malformed", s.malformed},
                                       {"beats_in", s.beats_in},
                                       {"beats_recovered", s.beats_recovered},
                                       {"wal_bytes_damaged", s.wal_bytes_damaged},
                                       {"devices_state_damaged", s.devices_state_damaged},
                                       {"spool_batches_damaged", s.spool_batches_damaged},
                                       {"beats_stale", s.beats_stale},
                                       {"beats_too_late", s.beats_too_late},
                                       {"batches_sealed", s.batches_sealed},
                                       {"batches_uploaded", s.batches_uploaded},
                                       {"results", s.results},
                                       {"results_refused", s.results_refused},
                                       {"batches_quarantined", s.batches_quarantined},
                                       {"results_torn", s.results_torn},
                                       {"results_torn_gone", s.results_torn_gone},
                                       {"wal_append_failed", s.wal_append_failed},
                                       {"beats_dropped_backlog", s.beats_dropped_backlog},
                                       {"wal_sync_failed", s.wal_sync_failed},
                                       {"beats_processed", s.beats_processed},
                                       {"windows", s.windows},
                                       {"lost_messages", s.lost_messages},
                                       {"workers_attested", s.workers_attested},
                                       {"workers_refused", s.workers_refused},
                                       {"workers_unreachable", s.workers_unreachable},
                                       {"lost_beats", s.lost_beats},
                                       {"recovered_beats", s.recovered_beats},
                                       {"old_format_messages", s.old_format_messages},
                                       {"heart_rate_only", s.heart_rate_only}};
        if (auto w = WriteFileAtomic(a->stats_json, DumpJson(j, 2) + "\n"); !w) {
          std::fprintf(stderr, "gateway: %s\n", w.error().message().c_str());
        }
      }
    };
    // A failing disk or an unreachable server fails every tick, ten a second: each kind of
    // failure is said once in 10 s, with how many were held back.
    LogLimiter tick_failures(std::chrono::seconds(10));
    while (!g_stop_gateway) {
      if (auto s = (*gw)->Tick(); !s) {
        const auto kind = std::to_string(static_cast<int>(s.error().code()));
        if (auto held = tick_failures.Admit(kind, std::chrono::steady_clock::now())) {
          std::fprintf(stderr, "gateway: %s%s\n", s.error().message().c_str(),
                       HeldBackNote(*held).c_str());
        }
      }
      if (std::chrono::steady_clock::now() - last > std::chrono::seconds(5)) {
        print();
        last = std::chrono::steady_clock::now();
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    // Stopping: cut what is open and give the server a moment to answer.
    const auto fin = (*gw)->Finish(std::chrono::duration_cast<std::chrono::steady_clock::duration>(
        std::chrono::duration<double>(a->stop_grace_s)));
    print();
    if (!fin.cut) {
      std::fprintf(stderr, "medstream gateway: the final cut failed: %s\n",
                   fin.cut.error().message().c_str());
    }
    if (fin.beats_open > 0) {
      std::fprintf(stderr,
                   "medstream gateway: %llu beats of %zu users are in no sealed batch yet (they "
                   "arrived after the final cut, or it failed); they are in the write-ahead log "
                   "in %s and the next start with this --state cuts them\n",
                   static_cast<unsigned long long>(fin.beats_open), fin.users_open,
                   a->o.state_dir.c_str());
    }
    if (fin.batches_waiting > 0) {
      std::fprintf(stderr,
                   "medstream gateway: %zu batches still wait for their results after a %g s "
                   "grace (--stop-grace; %zu of them not uploaded yet%s%s); they are kept in %s "
                   "and the next start with this --state uploads them and reads their results\n",
                   fin.batches_waiting, a->stop_grace_s, fin.batches_unsent,
                   fin.tick ? "" : "; last error: ",
                   fin.tick ? "" : fin.tick.error().message().c_str(), a->o.state_dir.c_str());
    }
    if (const auto st = (*gw)->stats(); st.lost_beats > 0) {
      std::fprintf(stderr,
                   "medstream gateway: %llu beats in %llu messages were sent but never arrived "
                   "(see the warnings above; their windows carry lost_beats)\n",
                   static_cast<unsigned long long>(st.lost_beats),
                   static_cast<unsigned long long>(st.lost_messages));
    }
  });
}

}  // namespace medstream::cli
