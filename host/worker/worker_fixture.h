// The fixture of the worker tests (worker_test.cc, worker_state_test.cc): a real 3-node NATS
// JetStream cluster (nats-server from Debian) started on 127.0.0.1, workers in threads of this
// process with their own enclave processes, a gateway publishing through its cluster link, and
// the reference the results are held equal to: the same beats through one server (inproc).
// Thread-safety: a fixture is used from its test's thread; each RunningWorker steps its worker
// on a thread of its own.
#pragma once

#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <sstream>
#include <thread>
#include "adapters/proc/proc.h"
#include "common/attest/identity.h"
#include "common/attest/sim_platform.h"
#include "common/base/file.h"
#include "common/wire/cluster.h"
#include "host/cluster/cluster.h"
#include "host/inproc/inproc.h"
#include "host/server/server.h"
#include "host/worker/partition_state.h"
#include "host/worker/worker.h"
#include "owner/gateway/cluster_link.h"
#include "owner/gateway/gateway.h"
#include "owner/sensor/sensor.h"
#include "tests/wait.h"

namespace medstream::host {

namespace fs = std::filesystem;

using Feed = gateway::FeedSource;

// `n` beats of user `u` in messages of 10, with their sequence numbers.
inline std::vector<std::vector<uint8_t>> Messages(int u, size_t n) {
  sensor::Generator gen(3, u, 1.7e9);
  std::vector<hrv::Beat> beats;
  while (beats.size() < n) {
    const hrv::Beat b = gen.Next();
    if (!gen.dropped()) beats.push_back(b);
  }
  std::vector<std::vector<uint8_t>> out;
  sensor::Sequence seq{static_cast<uint64_t>(100 + u), 0, 0};
  for (size_t i = 0; i < n; i += 10) {
    const auto chunk = std::span(beats).subspan(i, std::min<size_t>(10, n - i));
    out.push_back(sensor::EncodePayload(seq, chunk));
    ++seq.seq;
    seq.first_beat += chunk.size();
  }
  return out;
}

inline std::string Slurp(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

inline constexpr int kUsers = 6;
inline constexpr size_t kBeats = 1500;

// A worker in a thread of this process (its enclave is a process of its own).
struct RunningWorker {
  std::unique_ptr<Worker> worker;
  std::atomic<bool> stop{false};
  std::thread thread;
  Status status;
  std::atomic<bool> failed{false};  // Step failed: the thread ended (a fail-stop)
  void Launch() {
    // Step by step (Run would release the partitions at the end: a crash does not).
    thread = std::thread([this] {
      while (!stop) {
        status = worker->Step();
        if (!status) {
          std::fprintf(stderr, "worker stopped: %s\n", status.error().message().c_str());
          failed = true;
          return;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
      }
    });
  }
  // A crash: no release, no last checkpoint; the enclave process dies with it.
  void Crash() {
    stop = true;
    thread.join();
  }
  ~RunningWorker() {
    stop = true;
    if (thread.joinable()) thread.join();
  }
};

class WorkerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = (fs::temp_directory_path() / ("wk-" + std::to_string(getpid()))).string();
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    ASSERT_TRUE(attest::InitPlatform({.dir = dir_ + "/platform", .now = time(nullptr)}));
    ASSERT_TRUE(cluster::Init(
        {.dir = dir_ + "/cluster", .max_payload = max_payload_, .now = time(nullptr)}));
    auto c = cluster::LocalCluster::Start(dir_ + "/cluster");
    ASSERT_TRUE(c) << c.error().message();
    cluster_ = std::move(*c);
    options_.state_dir = dir_ + "/gateway";
    options_.results_dir = dir_ + "/results";
    options_.site = "t";
    options_.batch_beats = 100;
    options_.batch_seconds = 3600;  // cut by size or by CutAll
    options_.config.jobs = {hrv::JobKind::kSdnn, hrv::JobKind::kHrvBands};
    options_.root_ca = attest::SimPlatform::RootPath(dir_ + "/platform");
    options_.policy.mr_enclave = {attest::LoadIdentity(MEDSTREAM_ENCLAVE_BINARY)->mr_enclave};
    options_.policy.allow_simulated = true;
  }
  void TearDown() override {
    workers_.clear();
    cluster_.reset();
    if (!HasFailure()) fs::remove_all(dir_);
  }
  WorkerOptions WorkerOpts(const std::string& name) {
    WorkerOptions w;
    w.name = name;
    w.nats = *cluster::ClientOptions(dir_ + "/cluster", cluster::kWorkerRole);
    w.enclave = {.backend = "process",
                 .platform_dir = dir_ + "/platform",
                 .enclave_path = MEDSTREAM_ENCLAVE_BINARY};
    w.partitions = 4;
    w.lease_s = 3;
    w.checkpoint_every = 3;
    return w;
  }
  RunningWorker& AddWorker(const WorkerOptions& o) {
    auto w = Worker::Start(o);
    EXPECT_TRUE(w) << w.error().message();
    workers_.push_back(std::make_unique<RunningWorker>());
    workers_.back()->worker = std::move(*w);
    workers_.back()->Launch();
    return *workers_.back();
  }
  gateway::ClusterLinkOptions LinkOpts() {
    gateway::ClusterLinkOptions lo;
    lo.nats = *cluster::ClientOptions(dir_ + "/cluster", cluster::kGatewayRole);
    lo.partitions = 4;
    lo.lease_s = 3;
    return lo;
  }
  std::unique_ptr<gateway::Gateway> StartGateway(Feed** feed) {
    auto link = gateway::ClusterLink(LinkOpts());
    EXPECT_TRUE(link) << link.error().message();
    if (!link) return nullptr;
    auto f = std::make_unique<Feed>();
    *feed = f.get();
    auto g = gateway::Gateway::Start(options_, std::move(f), std::move(*link));
    EXPECT_TRUE(g) << g.error().message();
    return g ? std::move(*g) : nullptr;
  }
  // Sends every user's messages, a third at a time, calling `between` after each third.
  void Send(Feed& feed, gateway::Gateway& g, const std::function<void(int)>& between) {
    std::vector<std::vector<std::vector<uint8_t>>> all;
    for (int u = 1; u <= kUsers; ++u) all.push_back(Messages(u, kBeats));
    const size_t n = all[0].size();
    for (int third = 0; third < 3; ++third) {
      for (size_t i = third * n / 3; i < (third + 1) * n / 3; ++i) {
        for (int u = 1; u <= kUsers; ++u) {
          feed.Send(sensor::Topic("t", "user-" + std::to_string(u)), all[u - 1][i]);
        }
      }
      ASSERT_TRUE(g.Tick());
      between(third);
    }
  }
  void Drain(gateway::Gateway& g) {
    ASSERT_TRUE(g.CutAll());
    const bool done = testing::WaitFor(
        [&] {
          auto s = g.Tick();
          EXPECT_TRUE(s) << s.error().message();
          return g.outstanding() == 0;
        },
        90);
    ASSERT_TRUE(done) << g.outstanding() << " batches without a result";
  }
  // The reference: the same beats through one server (inproc) in this process.
  void Reference(const std::string& out) {
    ASSERT_TRUE(host::SignThisExecutableForInproc());
    host::ServerOptions so;
    so.dir = dir_ + "/ref-server";
    so.mode = "inproc";
    so.inproc = host::LaunchInproc;
    so.platform_dir = dir_ + "/ref-platform";
    ASSERT_TRUE(attest::InitPlatform({.dir = so.platform_dir, .now = time(nullptr)}));
    auto server = host::Server::Start(so);
    ASSERT_TRUE(server) << server.error().message();
    gateway::Options o = options_;
    o.state_dir = dir_ + "/ref-gateway";
    o.results_dir = out;
    o.server_dir = so.dir;
    o.root_ca = attest::SimPlatform::RootPath(so.platform_dir);
    o.policy.mr_enclave = {attest::LoadIdentity(SelfPath().value())->mr_enclave};
    auto f = std::make_unique<Feed>();
    Feed* feed = f.get();
    auto g = gateway::Gateway::Start(o, std::move(f));
    ASSERT_TRUE(g) << g.error().message();
    Send(*feed, **g, [](int) {});
    ASSERT_TRUE((*g)->CutAll());
    for (int i = 0; i < 50 && (*g)->outstanding() > 0; ++i) {
      ASSERT_TRUE((*g)->Tick());
      ASSERT_TRUE((*server)->ProcessInbox());
      ASSERT_TRUE((*g)->Tick());
    }
    ASSERT_EQ((*g)->outstanding(), 0u);
  }
  void ExpectResultsEqualReference(const gateway::Stats& s) {
    EXPECT_EQ(s.beats_in, kUsers * kBeats);
    EXPECT_EQ(s.beats_processed, kUsers * kBeats);
    EXPECT_EQ(s.lost_beats, 0u);
    EXPECT_EQ(s.results, s.batches_sealed);
    const std::string ref = dir_ + "/ref-results";
    Reference(ref);
    for (int u = 1; u <= kUsers; ++u) {
      for (const char* f : {".jsonl", ".sdnn.csv", ".hrv-bands.csv"}) {
        const std::string name = "user-" + std::to_string(u) + f;
        const std::string want = Slurp(fs::path(ref) / name);
        ASSERT_FALSE(want.empty()) << name;
        EXPECT_EQ(Slurp(fs::path(options_.results_dir) / name), want) << name;
      }
    }
  }
  // The cluster holds ciphertext only: no node's store (batches, results, checkpoints, leases)
  // holds a user's name, an MQTT payload, or any beat as the gateway and enclave see it.
  void ExpectNoPlaintextInTheStores() {
    std::vector<std::string> needles;
    for (int u = 1; u <= kUsers; ++u) {
      needles.push_back("user-" + std::to_string(u));
      const auto msgs = Messages(u, kBeats);
      for (size_t i = 0; i < msgs.size(); i += 37) {
        needles.emplace_back(msgs[i].begin(), msgs[i].end());
        // The beats' binary form inside a batch (time s, RR ms as doubles).
        const auto beats = sensor::DecodePayload(msgs[i]);
        ASSERT_TRUE(beats);
        const hrv::Beat& b = beats->front();
        needles.emplace_back(reinterpret_cast<const char*>(&b), sizeof b);
        needles.emplace_back(reinterpret_cast<const char*>(&b.rr_ms), sizeof b.rr_ms);
      }
    }
    size_t files = 0;
    for (const auto& e : fs::recursive_directory_iterator(dir_ + "/cluster/nodes")) {
      if (!e.is_regular_file() || e.path().string().find("/store/") == std::string::npos) continue;
      ++files;
      const std::string bytes = Slurp(e.path());
      for (const std::string& n : needles) {
        ASSERT_EQ(bytes.find(n), std::string::npos) << e.path() << " holds plaintext";
      }
    }
    EXPECT_GT(files, 10u) << "the stores were searched";
  }
  uint64_t Processed() {
    uint64_t n = 0;
    for (auto& w : workers_) n += w->worker->counters().processed;
    return n;
  }

  // The keys of the partitions' state chunks (worker.cc, ChunkManifest).
  std::vector<std::string> ChunkKeys() {
    auto conn =
        nats::Connection::Connect(*cluster::ClientOptions(dir_ + "/cluster", cluster::kWorkerRole));
    EXPECT_TRUE(conn) << conn.error().message();
    if (!conn) return {};
    auto kv = (*conn)->EnsureKeyValue({.bucket = wire::cluster::kStateBucket});
    EXPECT_TRUE(kv) << kv.error().message();
    if (!kv) return {};
    auto keys = (*kv)->Keys();
    EXPECT_TRUE(keys) << keys.error().message();
    std::vector<std::string> out;
    for (const std::string& k : keys ? *keys : std::vector<std::string>{}) {
      if (k.find(".s.") != std::string::npos) out.push_back(k);
    }
    return out;
  }

  // The most export parts any partition's state entry holds now (partition_state.h; an entry
  // whose state is in chunks counts as none).
  size_t MostExportParts() {
    auto conn =
        nats::Connection::Connect(*cluster::ClientOptions(dir_ + "/cluster", cluster::kWorkerRole));
    if (!conn) return 0;
    auto kv = (*conn)->EnsureKeyValue({.bucket = wire::cluster::kStateBucket});
    if (!kv) return 0;
    size_t most = 0;
    for (uint32_t p = 0; p < 4; ++p) {
      auto e = (*kv)->Get(wire::cluster::PartitionKey(p));
      if (!e) continue;
      auto entry = StateEntry::Decode(e->value);
      if (!entry || ChunkManifest::Is(entry->portable)) continue;
      auto parts = DecodeExportParts({entry->portable});
      if (parts) most = std::max(most, parts->size());
    }
    return most;
  }

  int64_t max_payload_ = 8 << 20;
  std::string dir_;
  gateway::Options options_;
  std::unique_ptr<cluster::LocalCluster> cluster_;
  std::vector<std::unique_ptr<RunningWorker>> workers_;
};

}  // namespace medstream::host
