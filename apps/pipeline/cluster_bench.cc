#include "apps/pipeline/cluster_bench.h"

#include <sys/wait.h>

#include <chrono>
#include <filesystem>
#include <thread>

#include <fmt/format.h>

#include "adapters/proc/proc.h"
#include "common/attest/sim_platform.h"
#include "host/cluster/cluster.h"
#include "owner/client/client.h"
#include "owner/gateway/cluster_link.h"
#include "owner/gateway/gateway.h"
#include "owner/sensor/sensor.h"

namespace medstream::pipeline {

namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

Result<ClusterBenchRow> RunPoint(const ClusterBenchOptions& o, int workers, int rep,
                                 const std::string& dir) {
  auto say = [&](const std::string& line) {
    if (o.progress) o.progress(line);
  };
  fs::remove_all(dir);
  fs::create_directories(dir);
  const std::string platform = dir + "/platform";
  if (auto s = attest::InitPlatform({.dir = platform, .now = time(nullptr)}); !s) {
    return std::unexpected(s.error());
  }
  if (auto s = cluster::Init({.dir = dir + "/cluster", .now = time(nullptr)}); !s) {
    return std::unexpected(s.error());
  }
  MEDSTREAM_TRY(nodes, cluster::LocalCluster::Start(dir + "/cluster"));
  MEDSTREAM_TRY(nats, cluster::ClientOptions(dir + "/cluster", cluster::kGatewayRole));
  MEDSTREAM_TRY(link, gateway::ClusterLink({.nats = nats}));
  MEDSTREAM_TRY(policy, client::PolicyForThisBuild(o.mode));
  gateway::Options go;
  go.state_dir = dir + "/gateway";
  go.results_dir = dir + "/results";
  go.site = "b";
  go.batch_beats = o.batch_beats;
  go.batch_seconds = 1e9;
  go.config.jobs = o.jobs;
  go.root_ca = attest::SimPlatform::RootPath(platform);
  go.policy = policy;
  auto source = std::make_unique<gateway::FeedSource>();
  gateway::FeedSource* feed = source.get();
  MEDSTREAM_TRY(gw, gateway::Gateway::Start(go, std::move(source), std::move(link)));
  // The backlog: every user's beats, sealed and published (acknowledged by the stream).
  constexpr size_t kPerMessage = 500;
  for (int u = 1; u <= o.users; ++u) {
    sensor::Generator gen(7, u, 1.7e9);
    sensor::Sequence seq{static_cast<uint64_t>(u), 0, 0};
    std::vector<hrv::Beat> chunk;
    const std::string topic = sensor::Topic("b", sensor::UserName(u));
    for (size_t n = 0; n < o.beats_per_user;) {
      chunk.clear();
      while (chunk.size() < kPerMessage && n < o.beats_per_user) {
        const hrv::Beat b = gen.Next();
        if (gen.dropped()) continue;
        chunk.push_back(b);
        ++n;
      }
      feed->Send(topic, sensor::EncodePayload(seq, chunk));
      ++seq.seq;
      seq.first_beat += chunk.size();
    }
    if (auto s = gw->Tick(); !s) return std::unexpected(s.error());
  }
  if (auto s = gw->CutAll(); !s) return std::unexpected(s.error());
  while (gw->stats().batches_uploaded < gw->stats().batches_sealed) {
    if (auto s = gw->Tick(); !s) return std::unexpected(s.error());
  }
  const auto backlog = gw->stats();
  say(fmt::format("{} worker(s), run {}: backlog of {} beats in {} sealed batches published",
                  workers, rep + 1, backlog.beats_in, backlog.batches_sealed));
  std::vector<pid_t> pids;
  struct Stop {
    std::vector<pid_t>& p;
    ~Stop() {
      for (pid_t x : p) proc::Stop(x, 30000);
    }
  } stop{pids};
  for (int w = 1; w <= workers; ++w) {
    const std::string name = "w" + std::to_string(w);
    pids.push_back(proc::Spawn({o.self, "worker", "--cluster", dir + "/cluster", "--name", name,
                                "--mode", o.mode, "--platform", platform},
                               dir + "/" + name + ".log"));
  }
  const auto deadline = Clock::now() + std::chrono::seconds(60);
  while (gw->stats().workers_attested < static_cast<uint64_t>(workers)) {
    if (Clock::now() > deadline) {
      return Fail(Error::Code::kDeadlineExceeded,
                  "workers not attested in 60 s (logs in " + dir + ")");
    }
    if (auto s = gw->Tick(); !s) return std::unexpected(s.error());
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  const auto t0 = Clock::now();
  auto progress_at = Clock::now();
  size_t outstanding = gw->outstanding();
  while (outstanding > 0 && Clock::now() - progress_at < std::chrono::seconds(120)) {
    if (auto s = gw->Tick(); !s) return std::unexpected(s.error());
    if (const size_t now = gw->outstanding(); now != outstanding) {
      outstanding = now;
      progress_at = Clock::now();
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  const double seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  const auto st = gw->stats();
  ClusterBenchRow row;
  row.workers = workers;
  row.repetition = rep;
  row.beats = st.beats_processed;
  row.batches = st.results;
  row.seconds = seconds;
  row.beats_per_s = static_cast<double>(st.beats_processed) / seconds;
  row.mb_s = static_cast<double>(st.beats_processed) * sizeof(hrv::Beat) / seconds / 1e6;
  row.lost_batches = st.batches_sealed - std::min(st.batches_sealed, st.results);
  return row;
}

}  // namespace

Result<std::vector<ClusterBenchRow>> RunClusterBench(const ClusterBenchOptions& o) {
  if (o.workers.empty() || o.users < 1 || o.beats_per_user < 1 || o.repetitions < 1) {
    return InvalidArgument("a cluster bench needs workers, users, beats and repetitions");
  }
  std::vector<ClusterBenchRow> rows;
  for (int rep = 0; rep < o.repetitions; ++rep) {
    for (int w : o.workers) {
      const std::string dir = o.work + fmt::format("/w{}-r{}", w, rep);
      MEDSTREAM_TRY(row, RunPoint(o, w, rep, dir));
      rows.push_back(row);
      if (!o.keep) fs::remove_all(dir);
    }
  }
  if (!o.keep) fs::remove_all(o.work);
  return rows;
}

}  // namespace medstream::pipeline
