// `medstream cluster` (the NATS JetStream cluster's set-up and, on one machine, its nodes) and
// `medstream worker` (a cluster's worker): docs/scale-out.md.
#include <csignal>
#include <cstdio>
#include <ctime>
#include <nlohmann/json.hpp>
#include <thread>

#include "apps/cli/commands.h"
#include "apps/cli/json_out.h"
#include "common/base/file.h"
#include "host/cluster/cluster.h"
#include "host/inproc/inproc.h"
#include "host/worker/worker.h"

namespace medstream::cli {

namespace {

std::atomic<bool> g_stop{false};
void OnSignal(int) {
  g_stop = true;
}

void RegisterClusterInit(CLI::App& parent, int* exit_code) {
  auto o = std::make_shared<cluster::InitOptions>();
  CLI::App* cmd = parent.add_subcommand(
      "init", "Create the cluster's CA, node certificates and configs, and client passwords");
  cmd->add_option("--dir", o->dir, "Cluster directory (created)")->required();
  cmd->add_option("--nodes", o->nodes, "Nodes (3 for replicated streams)")
      ->check(CLI::Range(1, 9))
      ->capture_default_str();
  cmd->add_option("--client-ports", o->client_ports, "One client port per node (default: free)");
  cmd->add_option("--route-ports", o->route_ports, "One route port per node (default: free)");
  cmd->add_option("--name", o->names,
                  "Host names or addresses the nodes' certificates carry (the first is dialled)")
      ->capture_default_str();
  cmd->add_option("--max-payload", o->max_payload,
                  "Largest message in bytes (batches are cut at half of it)")
      ->check(CLI::Range(int64_t{1024}, int64_t{64} << 20))
      ->capture_default_str();
  cmd->callback([o, exit_code] {
    o->now = time(nullptr);
    if (auto s = cluster::Init(*o); !s) {
      *exit_code = ExitWithError("cluster init", s.error());
      return;
    }
    auto info = cluster::Load(o->dir);
    if (!info) {
      *exit_code = ExitWithError("cluster init", info.error());
      return;
    }
    std::printf("medstream cluster: %zu nodes in %s\n", info->nodes.size(), info->dir.c_str());
    for (const auto& n : info->nodes) {
      std::printf("  %s: %s (client %d, routes %d): nats-server -c %s\n", n.name.c_str(),
                  info->urls[&n - info->nodes.data()].c_str(), n.client_port, n.route_port,
                  n.config.c_str());
    }
    std::printf("  clients: --cluster %s (gateway and worker passwords in %s/users, 0600)\n",
                info->dir.c_str(), info->dir.c_str());
  });
}

void RegisterClusterRun(CLI::App& parent, int* exit_code) {
  auto dir = std::make_shared<std::string>();
  CLI::App* cmd = parent.add_subcommand(
      "run", "Run every node of the cluster on this machine until Ctrl-C (demos, tests)");
  cmd->add_option("--dir", *dir, "Cluster directory (`medstream cluster init`)")->required();
  cmd->callback([dir, exit_code] {
    auto c = cluster::LocalCluster::Start(*dir);
    if (!c) {
      *exit_code = ExitWithError("cluster run", c.error());
      return;
    }
    std::printf("medstream cluster: %zu nodes up, JetStream ready (Ctrl-C stops them)\n",
                (*c)->info().nodes.size());
    std::fflush(stdout);
    std::signal(SIGINT, OnSignal);
    std::signal(SIGTERM, OnSignal);
    while (!g_stop) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  });
}

}  // namespace

void RegisterClusterCommands(CLI::App& app, int* exit_code) {
  CLI::App* cluster = app.add_subcommand(
      "cluster", "The NATS JetStream cluster medstream scales out on (docs/scale-out.md)");
  cluster->require_subcommand(1);
  RegisterClusterInit(*cluster, exit_code);
  RegisterClusterRun(*cluster, exit_code);

  struct Args {
    host::WorkerOptions o;
    std::string cluster_dir, stats_json;
  };
  auto a = std::make_shared<Args>();
  a->o.enclave.platform_dir = DefaultPlatformDir();
  CLI::App* cmd = app.add_subcommand(
      "worker",
      "Run a cluster worker: its own enclave, attested by the gateway, processing its share of "
      "the partitions");
  cmd->add_option("--cluster", a->cluster_dir, "Cluster directory (`medstream cluster init`)")
      ->required();
  cmd->add_option("--name", a->o.name, "This worker's name, unique in the cluster")->required();
  cmd->add_option("--mode", a->o.enclave.backend, "Enclave backend")
      ->check(CLI::IsMember({"inproc", "process"}))
      ->capture_default_str();
  cmd->add_option("--platform", a->o.enclave.platform_dir, "Simulated platform directory")
      ->capture_default_str();
  cmd->add_option("--enclave", a->o.enclave.enclave_path, "medstream-enclave (process mode)");
  cmd->add_option("--partitions", a->o.partitions,
                  "Partitions of the batch stream (the gateway's --partitions)")
      ->check(CLI::Range(1u, 4096u))
      ->capture_default_str();
  cmd->add_option("--replicas", a->o.replicas, "Replicas of the streams it creates")
      ->check(CLI::Range(1, 5))
      ->capture_default_str();
  cmd->add_option("--lease", a->o.lease_s,
                  "Seconds a partition's lease lasts unless renewed (the same for every worker)")
      ->check(FiniteRange(1.0, 600.0))
      ->capture_default_str();
  // At least 40 s: after an enclave call's budget it also covers the wait for the enclave's lock,
  // which a call relayed for the gateway holds for up to 30 s (lease_keeper.h).
  cmd->add_option("--hung", a->o.hung_s,
                  "Seconds the processing thread may go without a sign of life outside an "
                  "enclave call before the worker lets its leases go (a deadlock frees the "
                  "partitions for other workers after this long)")
      ->check(FiniteRange(40.0, 86400.0))
      ->capture_default_str();
  cmd->add_option("--checkpoint-every", a->o.checkpoint_every,
                  "Batches of a partition between its checkpoints")
      ->check(Positive())
      ->capture_default_str();
  cmd->add_option("--max-partitions", a->o.max_partitions,
                  "At most this many partitions (0: a fair share)")
      ->capture_default_str();
  cmd->add_option("--stats-json", a->stats_json, "Keep the worker's counters in this JSON file");
  cmd->callback([a, exit_code] {
    auto fail = [&](const Error& e) { *exit_code = ExitWithError("worker", e); };
    auto nats = cluster::ClientOptions(a->cluster_dir, cluster::kWorkerRole);
    if (!nats) return fail(nats.error());
    a->o.nats = *nats;
    a->o.nats.name = "medstream-worker-" + a->o.name;
    a->o.enclave.inproc = host::LaunchInproc;
    auto w = host::Worker::Start(a->o);
    if (!w) return fail(w.error());
    std::printf("medstream worker %s: enclave %s (pid %d), waiting to be attested\n",
                a->o.name.c_str(), a->o.enclave.backend.c_str(), (*w)->enclave_pid());
    std::fflush(stdout);
    std::signal(SIGINT, OnSignal);
    std::signal(SIGTERM, OnSignal);
    auto write_stats = [&] {
      const host::WorkerCounters c = (*w)->counters();
      if (a->stats_json.empty()) return Status{};
      const nlohmann::ordered_json j{{"name", a->o.name},
                                     {"provisioned", (*w)->provisioned()},
                                     {"batches_processed", c.processed},
                                     {"beats_processed", c.beats},
                                     {"replays", c.replays},
                                     {"quarantined", c.quarantined},
                                     {"takeovers", c.takeovers},
                                     {"released", c.released},
                                     {"lost", c.lost},
                                     {"checkpoints", c.checkpoints},
                                     {"checkpoint_failures", c.checkpoint_failures},
                                     {"partitions_damaged", c.partitions_damaged},
                                     {"partitions", c.owned},
                                     {"partitions_left_damaged", c.damaged}};
      return WriteFileAtomic(a->stats_json, DumpJson(j, 2) + "\n");
    };
    bool said = false;
    auto last = std::chrono::steady_clock::now();
    while (!g_stop) {
      if (auto s = (*w)->Step(); !s) {
        (void)write_stats();
        return fail(s.error());
      }
      if (!said && (*w)->provisioned()) {
        std::printf("medstream worker %s: attested and provisioned\n", a->o.name.c_str());
        std::fflush(stdout);
        said = true;
      }
      const auto now = std::chrono::steady_clock::now();
      if (now - last >= std::chrono::seconds(1)) {
        if (auto s = write_stats(); !s) return fail(s.error());
        last = now;
      }
      if ((*w)->counters().owned.empty()) {
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
      }
    }
    if (auto s = (*w)->Release(); !s) return fail(s.error());
    if (auto s = write_stats(); !s) return fail(s.error());
    const host::WorkerCounters c = (*w)->counters();
    std::printf(
        "worker %s: batches %llu (replays %llu, quarantined %llu), takeovers %llu, "
        "checkpoints %llu (failed %llu)\n",
        a->o.name.c_str(), static_cast<unsigned long long>(c.processed),
        static_cast<unsigned long long>(c.replays), static_cast<unsigned long long>(c.quarantined),
        static_cast<unsigned long long>(c.takeovers),
        static_cast<unsigned long long>(c.checkpoints),
        static_cast<unsigned long long>(c.checkpoint_failures));
  });
}

}  // namespace medstream::cli
