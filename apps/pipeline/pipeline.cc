#include "apps/pipeline/pipeline.h"
#include "owner/dashboard/dashboard.h"

#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

#include "adapters/nats/nats.h"
#include "adapters/proc/proc.h"
#include "adapters/sftp/sshd.h"
#include "common/attest/identity.h"
#include "common/attest/sim_platform.h"
#include "common/base/file.h"
#include "common/wire/cluster.h"
#include "host/cluster/cluster.h"
#include "host/server/transport.h"
#include "owner/broker/broker.h"
#include "owner/gateway/cluster_link.h"
#include "owner/gateway/gateway.h"

namespace medstream::pipeline {

namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
// Draining gives up after this long without progress (the summary then shows what was lost).
constexpr auto kDrainPatience = std::chrono::seconds(30);

// The processes Run starts, stopped in reverse order whatever happens.
struct Processes {
  pid_t broker = -1, server = -1, sensors = -1;
  std::vector<pid_t> workers;
  ~Processes() {
    proc::Stop(sensors);
    proc::Stop(server, 30000);  // its last checkpoint can take a moment on a big run
    for (pid_t w : workers) proc::Stop(w, 30000);
    proc::Stop(broker);
  }
};

Result<nlohmann::json> ReadJson(const std::string& path) {
  MEDSTREAM_TRY(text, ReadFileText(path));
  try {
    return nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    return Corrupt(path + ": " + e.what());
  }
}

}  // namespace

Result<Summary> Run(const Options& o) {
  const std::string server_dir = o.server_dir.empty() ? o.work + "/server" : o.server_dir;
  fs::remove_all(server_dir);
  // 0711: Mosquitto (its own user, when run as root) must pass through to WORK/broker; what holds
  // plaintext below (sensors/, results/, gateway/) is 0700 itself.
  if (auto s = MakeDirs(o.work, 0711); !s) return std::unexpected(s.error());
  chmod(o.work.c_str(), 0711);
  if (auto s = MakeDirs(fs::path(server_dir).parent_path().string(), 0755); !s) {
    return std::unexpected(s.error());
  }
  auto say = [&](const std::string& line) {
    if (o.progress) o.progress(line);
  };
  const std::string platform = o.work + "/platform";
  if (auto s = attest::InitPlatform({.dir = platform, .force = true, .now = time(nullptr)}); !s) {
    return std::unexpected(s.error());
  }
  Processes p;
  // 1. The broker: TLS only, a certificate per device, the ACL (owner/broker/broker.h).
  const int port = proc::FreeLoopbackPort();
  const std::string broker_dir = o.work + "/broker";
  broker::InitOptions bo;
  bo.dir = broker_dir;
  bo.site = "demo";
  bo.port = port;
  bo.max_queued_messages = o.max_queued_messages;
  bo.now = time(nullptr);
  if (auto s = broker::Init(bo); !s) {
    return std::unexpected(std::move(s.error()).With("setting up the broker"));
  }
  for (int u = 1; u <= o.users; ++u) {
    char name[32];
    std::snprintf(name, sizeof name, "user-%04d", u);
    if (auto c = broker::Enroll(broker_dir, name, time(nullptr)); !c) {
      return std::unexpected(std::move(c.error()).With("enrolling the simulated devices"));
    }
  }
  // (As root, mosquitto drops to its own user; it logs to stderr, redirected here.)
  p.broker = proc::Spawn({"/usr/sbin/mosquitto", "-c", broker::ConfigPath(broker_dir)},
                         o.work + "/broker/mosquitto.log");
  for (int i = 0; i < 300 && !proc::CanConnectLoopback(port); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  if (!proc::CanConnectLoopback(port)) {
    return Fail(Error::Code::kNotFound,
                "mosquitto did not start (is it installed? scripts/install-deps.sh; its log: " +
                    o.work + "/broker/mosquitto.log)");
  }
  say(
      fmt::format("broker     mosquitto on 127.0.0.1:{}, TLS only, {} device certificates + the "
                  "gateway's, ACL",
                  port, o.users));
  // 2. The untrusted side: one server with its enclave, or a NATS cluster and its workers.
  const std::string server_stats = o.work + "/server-stats.json";
  const std::string cluster_dir = o.work + "/cluster";
  std::unique_ptr<cluster::LocalCluster> nats_cluster;
  std::unique_ptr<gateway::ServerLink> link;
  if (o.cluster) {
    fs::remove_all(cluster_dir);
    if (auto s = cluster::Init({.dir = cluster_dir, .now = time(nullptr)}); !s) {
      return std::unexpected(std::move(s.error()).With("setting up the NATS cluster"));
    }
    MEDSTREAM_TRY(c, cluster::LocalCluster::Start(cluster_dir));
    nats_cluster = std::move(c);
    say(
        fmt::format("cluster    {} nats-server nodes (JetStream, TLS on client and route hops, "
                    "passwords), ports {}",
                    nats_cluster->info().nodes.size(), fmt::join(nats_cluster->info().urls, " ")));
    for (int w = 1; w <= o.workers; ++w) {
      const std::string name = "worker-" + std::to_string(w);
      p.workers.push_back(
          proc::Spawn({o.self, "worker", "--cluster", cluster_dir, "--name", name, "--mode", o.mode,
                       "--platform", platform, "--stats-json", o.work + "/" + name + ".json"},
                      o.work + "/" + name + ".log"));
    }
    MEDSTREAM_TRY(nats, cluster::ClientOptions(cluster_dir, cluster::kGatewayRole));
    MEDSTREAM_TRY(l, gateway::ClusterLink({.nats = nats}));
    link = std::move(l);
  } else {
    p.server = proc::Spawn({o.self, "server", "--dir", server_dir, "--mode", o.mode, "--platform",
                            platform, "--stats-json", server_stats},
                           o.work + "/server.log");
    for (int i = 0; i < 500 && !FileExists(server_dir + "/enclave.sock"); ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  // 3. The gateway: attests the enclave against this build's identity before any key leaves.
  // The code to trust: medstream-enclave in process mode, this executable in inproc mode.
  MEDSTREAM_TRY(policy, client::PolicyForThisBuild(o.mode));
  gateway::Options go;
  go.state_dir = o.work + "/gateway";
  go.results_dir = o.work + "/results";
  go.record_beats = o.record;  // the report's tachogram, spectrum and Poincare plot
  go.server_dir = server_dir;
  std::unique_ptr<sftp::Sshd> sshd;
  if (o.sftp) {
    MEDSTREAM_TRY(d, sftp::Sshd::Start(o.work + "/ssh", server_dir, proc::FreeLoopbackPort()));
    sshd = std::move(d);
    go.sftp = sftp::Target{.host = "127.0.0.1",
                           .port = sshd->port(),
                           .user = "root",
                           .private_key = sshd->client_key(),
                           .host_key = sshd->host_key_pub()};
    say(
        fmt::format("transport  SFTP: OpenSSH sshd on 127.0.0.1:{}, internal-sftp chrooted to {},\n"
                    "             key authentication, host key pinned",
                    sshd->port(), server_dir));
  }
  go.broker = "127.0.0.1:" + std::to_string(port);
  {
    const auto c = broker::ClientCredentials(broker_dir, broker::kGatewayIdentity);
    go.tls = {c.ca, c.cert, c.key};
  }
  go.site = "demo";
  go.batch_seconds = o.batch_seconds;
  go.batch_beats = o.batch_beats;
  go.root_ca = attest::SimPlatform::RootPath(platform);
  go.policy = policy;
  go.config.jobs = o.jobs;
  auto gw = gateway::Gateway::Start(go, nullptr, std::move(link));
  if (!gw) {
    return std::unexpected(
        std::move(gw.error()).With("gateway (server log: " + o.work + "/server.log)"));
  }
  if (o.cluster) {
    // Every worker attested and provisioned before the sensors start.
    const auto until = Clock::now() + std::chrono::seconds(60);
    while ((*gw)->stats().workers_attested < static_cast<uint64_t>(o.workers) &&
           Clock::now() < until) {
      if (auto s = (*gw)->Tick(); !s) return std::unexpected(s.error());
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    if ((*gw)->stats().workers_attested < static_cast<uint64_t>(o.workers)) {
      return Fail(Error::Code::kDeadlineExceeded,
                  fmt::format("{} of {} workers attested in 60 s (their logs: {}/worker-N.log)",
                              (*gw)->stats().workers_attested, o.workers, o.work));
    }
    say(
        fmt::format("workers    {} x medstream worker --mode {}, each enclave attested and "
                    "provisioned over NATS:\n             mrenclave {}{}",
                    o.workers, o.mode, crypto::ToHex((*gw)->claims().mr_enclave).substr(0, 16),
                    (*gw)->claims().simulated ? " (simulated)" : ""));
  } else {
    say(
        fmt::format("server     medstream server --mode {} (pid {}), enclave attested:\n"
                    "             mrenclave {}{}",
                    o.mode, p.server, crypto::ToHex((*gw)->claims().mr_enclave).substr(0, 16),
                    (*gw)->claims().simulated ? " (simulated)" : ""));
  }
  // The owner's dashboard over the results as they arrive, with the gateway's /metrics.
  std::unique_ptr<dashboard::Dashboard> board;
  if (!o.http_listen.empty()) {
    dashboard::Options d;
    d.http.listen = o.http_listen;
    d.results_dir = go.results_dir;
    gateway::Gateway* g = gw->get();
    d.metrics = [g] { return g->MetricsText(); };
    auto started = dashboard::Dashboard::Start(std::move(d));
    if (!started) return std::unexpected(std::move(started.error()).With("the dashboard"));
    board = std::move(*started);
    say("dashboard  " + board->url() + "  (results as they arrive; /metrics, /healthz)");
  }
  // 4. The sensors.
  const double heart_seconds = o.rate > 0 ? o.duration_s : o.duration_s * o.speed;
  std::vector<std::string> sensor_args = {o.self,
                                          "sensor",
                                          "--broker",
                                          go.broker,
                                          "--credentials",
                                          broker_dir,
                                          "--site",
                                          "demo",
                                          "--users",
                                          std::to_string(o.users),
                                          "--seed",
                                          std::to_string(o.seed),
                                          "--beats-per-message",
                                          std::to_string(o.beats_per_message),
                                          "--summary-json",
                                          o.work + "/sensors.json"};
  if (o.rate > 0) {
    // Heart time enough for the whole run at any speed; the sensors are stopped by time below.
    sensor_args.insert(sensor_args.end(),
                       {"--rate", fmt::format("{}", o.rate), "--duration", "1e9"});
  } else {
    sensor_args.insert(sensor_args.end(), {"--speed", fmt::format("{}", o.speed), "--duration",
                                           fmt::format("{}", heart_seconds)});
  }
  if (o.record) sensor_args.insert(sensor_args.end(), {"--record", o.work + "/sensors"});
  if (o.rate > 0) {
    sensor_args.insert(sensor_args.end(), {"--for", fmt::format("{}", o.duration_s)});
  }
  p.sensors = proc::Spawn(sensor_args, o.work + "/sensor.log");
  say(fmt::format("sensors    {} simulated users, {}", o.users,
                  o.rate > 0 ? fmt::format("{:.0f} beats/s in total", o.rate)
                             : fmt::format("{:.0f} min of heart beats each", heart_seconds / 60)));
  const auto t0 = Clock::now();
  auto last = t0;
  auto report = [&](const char* what) {
    const auto st = (*gw)->stats();
    say(fmt::format("{:5.0f} s  {:<9} beats in {:10}   batches {:6}   results {:6}   windows {:8}",
                    std::chrono::duration<double>(Clock::now() - t0).count(), what, st.beats_in,
                    st.batches_sealed, st.results, st.windows));
  };
  for (;;) {
    if (auto s = (*gw)->Tick(); !s) return std::unexpected(s.error());
    int status = 0;
    if (waitpid(p.sensors, &status, WNOHANG) == p.sensors) {
      p.sensors = -1;
      if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        return Fail(Error::Code::kInternal, "the sensors failed (see " + o.work + "/sensor.log)");
      }
      break;
    }
    if (Clock::now() - last > std::chrono::seconds(5)) {
      report("running");
      last = Clock::now();
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  // Drain: the messages still queued in the broker (the sensors stop when the broker has them all,
  // not the gateway), then the open batches, then their results.
  MEDSTREAM_TRY(sent, ReadJson(o.work + "/sensors.json"));
  const uint64_t published = sent.value("beats", uint64_t{0});
  uint64_t seen = 0;
  auto progress_at = Clock::now();
  while ((*gw)->stats().beats_in < published && Clock::now() - progress_at < kDrainPatience) {
    if (auto s = (*gw)->Tick(); !s) return std::unexpected(s.error());
    if (const uint64_t now = (*gw)->stats().beats_in; now != seen) {
      seen = now;
      progress_at = Clock::now();
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  // The devices' final statuses (retained by the broker) reveal messages lost at the very end.
  (*gw)->AskStatuses();
  if (auto s = (*gw)->CutAll(); !s) return std::unexpected(s.error());
  progress_at = Clock::now();
  size_t outstanding = (*gw)->outstanding();
  while (outstanding > 0 && Clock::now() - progress_at < kDrainPatience) {
    if (auto s = (*gw)->Tick(); !s) return std::unexpected(s.error());
    if (const size_t now = (*gw)->outstanding(); now != outstanding) {
      outstanding = now;
      progress_at = Clock::now();
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  report("drained");
  const auto st = (*gw)->stats();
  board.reset();  // it asks the gateway for metrics: stopped first
  gw->reset();
  sshd.reset();
  // The server (or each worker) writes its own counters when it stops.
  proc::Stop(p.server, 30000);
  p.server = -1;
  for (pid_t& w : p.workers) {
    proc::Stop(w, 30000);
    w = -1;
  }

  Summary sum;
  sum.users = o.users;
  sum.mode = o.mode;
  sum.server_dir = server_dir;
  sum.results_dir = go.results_dir;
  sum.batch_interval_s = o.batch_seconds;
  sum.beats_published = published;
  sum.wall_s = sent.value("seconds", 0.0);
  sum.beats_received = st.beats_in;
  sum.beats_processed = st.beats_processed;
  sum.batches = st.batches_sealed;
  sum.results = st.results;
  sum.windows = st.windows;
  sum.malformed = st.malformed;
  // Results stored by the untrusted side: the server's outbox, or the cluster's results stream
  // (deduplicated by id: a result published twice is stored once).
  size_t result_files = 0;
  if (o.cluster) {
    MEDSTREAM_TRY(nats, cluster::ClientOptions(cluster_dir, cluster::kGatewayRole));
    MEDSTREAM_TRY(conn, nats::Connection::Connect(nats));
    MEDSTREAM_TRY(n, conn->StreamMessages(wire::cluster::kResultStream));
    result_files = n;
    sum.cluster_nodes = static_cast<int>(nats_cluster->info().nodes.size());
    for (int w = 1; w <= o.workers; ++w) {
      const std::string name = "worker-" + std::to_string(w);
      auto j = ReadJson(o.work + "/" + name + ".json");
      if (!j) {
        say("(" + name + " wrote no statistics: " + j.error().message() + ")");
        continue;
      }
      sum.workers.push_back({.name = name,
                             .batches = j->value("batches_processed", uint64_t{0}),
                             .beats = j->value("beats_processed", uint64_t{0}),
                             .replays = j->value("replays", uint64_t{0}),
                             .quarantined = j->value("quarantined", uint64_t{0}),
                             .takeovers = j->value("takeovers", uint64_t{0}),
                             .checkpoints = j->value("checkpoints", uint64_t{0})});
    }
  } else {
    for (const auto& e : fs::directory_iterator(server_dir + "/outbox")) {
      result_files += e.path().extension() == ".result";
    }
  }
  sum.lost_beats =
      sum.beats_published > st.beats_processed ? sum.beats_published - st.beats_processed : 0;
  sum.lost_batches = st.batches_sealed - std::min(st.batches_sealed, st.results);
  sum.lost_beats_detected = st.lost_beats;
  sum.lost_messages_detected = st.lost_messages;
  sum.duplicates = result_files > st.results ? result_files - st.results : 0;
  sum.latency_s = Summarize(st.latency_s);
  if (o.cluster) {
    // Per worker, in sum.workers.
  } else if (auto server = ReadJson(server_stats)) {
    const auto& ms = (*server)["batch_ms"];
    sum.server_batch_ms = {.count = (*server).value("processed", size_t{0}),
                           .mean = ms.value("mean", 0.0),
                           .p50 = ms.value("p50", 0.0),
                           .p99 = ms.value("p99", 0.0),
                           .max = ms.value("max", 0.0)};
    sum.server_bytes_in = (*server).value("bytes_in", uint64_t{0});
  } else {
    say("(the server wrote no statistics: " + server.error().message() + ")");
  }
  // What a clinician looks at first: each user's latest window.
  if (auto users = results::ListUsers(go.results_dir)) {
    for (const std::string& user : *users) {
      auto r = results::ReadUser(go.results_dir, user);
      if (!r) {
        say("(results of " + user + " unreadable: " + r.error().message() + ")");
        continue;
      }
      sum.users_latest.push_back({.user = user,
                                  .windows = r->windows.size(),
                                  .latest = results::LatestWindow(r->windows)});
    }
  }
  return sum;
}

}  // namespace medstream::pipeline
