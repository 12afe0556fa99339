// Scale-out end to end on a real 3-node NATS JetStream cluster (host/cluster, nats-server from
// Debian): a gateway publishing sealed batches through its cluster link, workers with their own
// enclave processes attested and provisioned over NATS, partitions shared by leases. The results
// must be byte-identical to one server's (which the other tests hold equal to the offline
// analysis), with nothing lost or doubled: with two workers, after a worker dies mid-stream,
// after a NATS node dies mid-stream, and with a worker the policy refuses.
#include "host/worker/worker.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <optional>
#include <set>
#include <sstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "adapters/proc/proc.h"
#include "common/attest/identity.h"
#include "common/attest/sim_platform.h"
#include "common/base/file.h"
#include "common/wire/cluster.h"
#include "host/cluster/cluster.h"
#include "host/inproc/inproc.h"
#include "host/server/server.h"
#include "host/worker/partition_state.h"
#include "owner/gateway/cluster_link.h"
#include "owner/gateway/gateway.h"
#include "owner/sensor/sensor.h"
#include "tests/wait.h"

namespace medstream::host {
namespace {

namespace fs = std::filesystem;

using Feed = gateway::FeedSource;

// `n` beats of user `u` in messages of 10, with their sequence numbers.
std::vector<std::vector<uint8_t>> Messages(int u, size_t n) {
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

std::string Slurp(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

constexpr int kUsers = 6;
constexpr size_t kBeats = 1500;

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
      auto parts = DecodeExportParts(entry->portable);
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

TEST_F(WorkerTest, TwoWorkersShareThePartitionsAndResultsEqualOneServer) {
  RunningWorker& a = AddWorker(WorkerOpts("wa"));
  RunningWorker& b = AddWorker(WorkerOpts("wb"));
  Feed* feed = nullptr;
  auto g = StartGateway(&feed);
  ASSERT_TRUE(g);
  ASSERT_TRUE(testing::WaitFor([&] { return g->Tick() && g->stats().workers_attested == 2; }, 30));
  // Each takes its fair share of the 4 partitions.
  ASSERT_TRUE(testing::WaitFor(
      [&] {
        return a.worker->counters().owned.size() == 2 && b.worker->counters().owned.size() == 2;
      },
      30));
  Send(*feed, *g, [](int) {});
  Drain(*g);
  const gateway::Stats s = g->stats();
  EXPECT_EQ(Processed(), s.batches_sealed);
  ExpectResultsEqualReference(s);
  ExpectNoPlaintextInTheStores();
}

TEST_F(WorkerTest, AWorkerAndANatsNodeDieMidStreamAndNothingIsLostOrDoubled) {
  RunningWorker& a = AddWorker(WorkerOpts("wa"));
  AddWorker(WorkerOpts("wb"));
  Feed* feed = nullptr;
  auto g = StartGateway(&feed);
  ASSERT_TRUE(g);
  ASSERT_TRUE(testing::WaitFor([&] { return g->Tick() && g->stats().workers_attested == 2; }, 30));
  ASSERT_TRUE(testing::WaitFor([&] { return a.worker->counters().owned.size() == 2; }, 30));
  Send(*feed, *g, [&](int third) {
    if (third == 0) {
      // Worker a has processed part of its partitions, beyond its last checkpoint maybe.
      ASSERT_TRUE(
          testing::WaitFor([&] { return g->Tick() && a.worker->counters().processed > 0; }, 30));
      a.Crash();
      a.worker.reset();  // its enclave process dies; its leases expire
    }
    if (third == 1) {
      ASSERT_TRUE(cluster_->Kill(1, SIGKILL));
    }
  });
  Drain(*g);
  ASSERT_TRUE(cluster_->Restart(1));
  EXPECT_TRUE(
      testing::WaitFor([&] { return workers_[1]->worker->counters().owned.size() == 4u; }, 30))
      << "the survivor takes every partition";
  EXPECT_GE(workers_[1]->worker->counters().takeovers, 4u);
  ExpectResultsEqualReference(g->stats());
}

// Nodes that take messages of at most 64 KiB, and windows that hold every beat of the test.
class SmallMessageWorkerTest : public WorkerTest {
 protected:
  void SetUp() override {
    max_payload_ = 64 << 10;
    WorkerTest::SetUp();
    options_.config.windows.window_s = 3600;
  }
};

// A partition's state larger than one message of the cluster (here two users' hour-long windows,
// 64 KB, against 64 KiB) is checkpointed in chunks beside its state entry; before, it was one
// message, and every checkpoint of the partition failed. The next owner restores it whole and
// continues exactly, and the chunks of the owner before are deleted.
TEST_F(SmallMessageWorkerTest, APartitionStateLargerThanOneMessageIsCheckpointedInChunks) {
  RunningWorker& a = AddWorker(WorkerOpts("wa"));
  Feed* feed = nullptr;
  auto g = StartGateway(&feed);
  ASSERT_TRUE(g);
  ASSERT_TRUE(testing::WaitFor([&] { return g->Tick() && g->stats().workers_attested == 1; }, 30));
  ASSERT_TRUE(testing::WaitFor([&] { return a.worker->counters().owned.size() == 4; }, 30));
  Send(*feed, *g, [&](int third) {
    if (third != 1) return;
    ASSERT_TRUE(testing::WaitFor([&] { return g->Tick() && !ChunkKeys().empty(); }, 60))
        << "no partition's state was checkpointed in chunks";
    a.Crash();
    a.worker.reset();
    AddWorker(WorkerOpts("wb"));
  });
  Drain(*g);
  ExpectResultsEqualReference(g->stats());
  // Every chunk left is the new owner's ("p<n>.s.<writer>.<slot>.<i>").
  ASSERT_TRUE(testing::WaitFor(
      [&] {
        std::set<std::string> writers;
        for (const std::string& k : ChunkKeys()) writers.insert(k.substr(k.find(".s.") + 3, 16));
        return writers.size() == 1;
      },
      30))
      << "chunks of the first owner left behind";
}

// A partition's state leaves the enclave in parts and enters the next owner's in parts (here one
// stream a part; by default about 64 MiB a part), so that no partition is too large to move.
// Before, it was one call of at most 1 GiB: a partition of a hundred users of 7-day windows
// could not be checkpointed, and its owner dropped it and replayed it for ever.
TEST_F(WorkerTest, APartitionsStateMovesInPartsAndContinuesExactly) {
  WorkerOptions o = WorkerOpts("wa");
  o.export_part_bytes = 1;
  RunningWorker& a = AddWorker(o);
  Feed* feed = nullptr;
  auto g = StartGateway(&feed);
  ASSERT_TRUE(g);
  ASSERT_TRUE(testing::WaitFor([&] { return g->Tick() && g->stats().workers_attested == 1; }, 30));
  ASSERT_TRUE(testing::WaitFor([&] { return a.worker->counters().owned.size() == 4; }, 30));
  Send(*feed, *g, [&](int third) {
    if (third != 1) return;
    // Six users in four partitions: one holds two streams or more, so two parts or more.
    ASSERT_TRUE(testing::WaitFor([&] { return g->Tick() && MostExportParts() >= 2; }, 60))
        << "no partition's state was checkpointed in parts";
    a.Crash();
    a.worker.reset();
    WorkerOptions ob = WorkerOpts("wb");
    ob.export_part_bytes = 1;
    AddWorker(ob);
  });
  Drain(*g);
  ExpectResultsEqualReference(g->stats());
  EXPECT_GE(workers_.back()->worker->counters().takeovers, 4u);
}

// A partition's state entry anyone with write access to the bucket damaged: once it stopped the
// worker that tried to take the partition, then the next, then every worker of the cluster. And
// an entry whose chunks are damaged or gone was taken for a race with another owner: tried again
// every round, on every worker, for ever, and never said to be damaged. Both are left alone now,
// said once, until an operator repairs or deletes the entry; then the partition is served, its
// batches kept in the stream meanwhile.
TEST_F(WorkerTest, APartitionWhoseStateIsDamagedIsLeftAloneUntilRepairedAndTheWorkerGoesOn) {
  auto conn =
      nats::Connection::Connect(*cluster::ClientOptions(dir_ + "/cluster", cluster::kWorkerRole));
  ASSERT_TRUE(conn) << conn.error().message();
  ASSERT_TRUE(EnsureClusterLayout(**conn, 3, 3));
  auto kv = (*conn)->EnsureKeyValue({.bucket = wire::cluster::kStateBucket});
  ASSERT_TRUE(kv) << kv.error().message();
  ASSERT_TRUE((*kv)->Put(wire::cluster::PartitionKey(2), crypto::AsBytes(std::string("junk"))));
  // A well-formed entry whose manifest names chunks nobody wrote.
  StateEntry entry;
  entry.portable =
      ChunkManifest{.writer = {7}, .slot = 0, .chunks = 2, .bytes = 9000, .sha = {}}.Encode();
  ASSERT_TRUE((*kv)->Put(wire::cluster::PartitionKey(1), entry.Encode()));

  RunningWorker& a = AddWorker(WorkerOpts("wa"));
  Feed* feed = nullptr;
  auto g = StartGateway(&feed);  // provisions it: only then does it take partitions
  ASSERT_TRUE(g);
  ASSERT_TRUE(testing::WaitFor([&] { return g->Tick() && g->stats().workers_attested == 1; }, 30));
  ASSERT_TRUE(testing::WaitFor(
      [&] {
        return a.failed || (a.worker->counters().owned.size() == 2 &&
                            a.worker->counters().partitions_damaged == 2);
      },
      30));
  EXPECT_FALSE(a.failed) << "the worker stopped on a damaged partition";
  EXPECT_EQ(a.worker->counters().damaged, (std::vector<uint32_t>{1, 2}));
  // It goes on: users of the other partitions are served. Users map to partitions by a keyed
  // pseudonym; of 12, some are outside partitions 1 and 2 but for a chance of 2^-12.
  constexpr int kManyUsers = 12, kFewBeats = 300;
  for (int u = 1; u <= kManyUsers; ++u) {
    for (const auto& m : Messages(u, kFewBeats)) {
      feed->Send(sensor::Topic("t", "user-" + std::to_string(u)), m);
    }
  }
  ASSERT_TRUE(g->CutAll());
  ASSERT_TRUE(
      testing::WaitFor([&] { return g->Tick() && g->stats().beats_processed >= kFewBeats; }, 60));
  EXPECT_FALSE(a.failed);
  EXPECT_EQ(a.worker->counters().owned.size(), 2u);
  EXPECT_EQ(a.worker->counters().partitions_damaged, 2u) << "said more than once";
  // The operator deletes the damaged entries: the partitions start afresh and their batches,
  // kept in the stream, are processed. Nothing is lost.
  ASSERT_TRUE((*kv)->Delete(wire::cluster::PartitionKey(1)));
  ASSERT_TRUE((*kv)->Delete(wire::cluster::PartitionKey(2)));
  ASSERT_TRUE(testing::WaitFor(
      [&] {
        return g->Tick() && (a.failed || (a.worker->counters().owned.size() == 4 &&
                                          g->stats().beats_processed == kManyUsers * kFewBeats));
      },
      60))
      << g->stats().beats_processed << " beats processed";
  EXPECT_FALSE(a.failed);
  EXPECT_TRUE(a.worker->counters().damaged.empty());
  EXPECT_EQ(a.worker->counters().partitions_damaged, 2u);
}

// A partition whose state is more than one export and import carry (1 GiB; a hundred users of
// 7-day windows): every checkpoint of it fails. The worker dropped it, took it again (or another
// did), replayed the batches since its last checkpoint and failed again, for ever, and its users
// got no result past that checkpoint. It keeps the partition now and goes on.
TEST_F(WorkerTest, APartitionTooLargeToCheckpointIsProcessedOnNotDroppedAndReplayed) {
  WorkerOptions o = WorkerOpts("wa");
  o.max_state_bytes = 64;  // any stream's state is more
  RunningWorker& a = AddWorker(o);
  Feed* feed = nullptr;
  auto g = StartGateway(&feed);
  ASSERT_TRUE(g);
  ASSERT_TRUE(testing::WaitFor([&] { return g->Tick() && g->stats().workers_attested == 1; }, 30));
  ASSERT_TRUE(
      testing::WaitFor([&] { return a.failed || a.worker->counters().owned.size() == 4; }, 30));
  const uint64_t takeovers = a.worker->counters().takeovers;
  constexpr int kSomeUsers = 4, kWaveBeats = 300;
  for (int wave = 0; wave < 2; ++wave) {
    for (int u = 1; u <= kSomeUsers; ++u) {
      const auto all = Messages(u, 2 * kWaveBeats);
      for (size_t i = wave * all.size() / 2; i < (wave + 1) * all.size() / 2; ++i) {
        feed->Send(sensor::Topic("t", "user-" + std::to_string(u)), all[i]);
      }
    }
    ASSERT_TRUE(g->CutAll());
    const uint64_t want = uint64_t{kSomeUsers} * kWaveBeats * (wave + 1);
    ASSERT_TRUE(testing::WaitFor(
        [&] {
          return g->Tick() && (a.failed || (g->stats().beats_processed >= want &&
                                            a.worker->counters().checkpoint_failures > 0));
        },
        60))
        << g->stats().beats_processed << " of " << want << " beats processed";
    // A worker that dropped a partition on its failed checkpoint had to take it again for the
    // second wave's batches of its users.
  }
  EXPECT_FALSE(a.failed);
  EXPECT_EQ(g->stats().beats_processed, uint64_t{kSomeUsers} * kWaveBeats * 2);
  EXPECT_EQ(a.worker->counters().takeovers, takeovers) << "the partition was dropped and taken";
  EXPECT_EQ(a.worker->counters().owned.size(), 4u);
  EXPECT_EQ(a.worker->counters().lost, 0u);
}

TEST_F(WorkerTest, AWorkerThePolicyRefusesGetsNoKeyAndNoPartition) {
  // An enclave the policy does not name: the inproc build of this test (another measurement).
  ASSERT_TRUE(host::SignThisExecutableForInproc());
  WorkerOptions rogue = WorkerOpts("rogue");
  rogue.enclave.backend = "inproc";
  rogue.enclave.inproc = host::LaunchInproc;
  RunningWorker& r = AddWorker(rogue);
  Feed* feed = nullptr;
  auto g = StartGateway(&feed);
  ASSERT_TRUE(g);
  ASSERT_TRUE(testing::WaitFor([&] { return g->Tick() && g->stats().workers_refused == 1; }, 30));
  AddWorker(WorkerOpts("good"));
  ASSERT_TRUE(testing::WaitFor([&] { return g->Tick() && g->stats().workers_attested == 1; }, 30));
  Send(*feed, *g, [](int) {});
  Drain(*g);
  EXPECT_FALSE(r.worker->provisioned());
  EXPECT_EQ(r.worker->counters().processed, 0u);
  EXPECT_TRUE(r.worker->counters().owned.empty());
  ExpectResultsEqualReference(g->stats());
}

// `medstream worker` as processes: one paused (SIGSTOP) past its lease while the other takes its
// partitions, then resumed (its stale writes must lose), then the other killed -9 mid-stream.
TEST_F(WorkerTest, WorkerProcessesPausedPastTheLeaseAndKilledLoseNothing) {
  auto spawn = [&](const std::string& name) {
    return proc::Spawn(
        {MEDSTREAM_BINARY, "worker", "--cluster", dir_ + "/cluster", "--name", name, "--platform",
         dir_ + "/platform", "--enclave", MEDSTREAM_ENCLAVE_BINARY, "--partitions", "4", "--lease",
         "3", "--checkpoint-every", "3", "--stats-json", dir_ + "/" + name + ".json"},
        dir_ + "/" + name + ".log");
  };
  auto stats = [&](const std::string& name) {
    auto text = ReadFileText(dir_ + "/" + name + ".json");
    if (!text) return nlohmann::json::object();
    try {
      return nlohmann::json::parse(*text);
    } catch (const nlohmann::json::exception&) {
      return nlohmann::json::object();
    }
  };
  auto owned = [&](const std::string& name) {
    return stats(name).value("partitions", nlohmann::json::array()).size();
  };
  pid_t w1 = spawn("w1");
  pid_t w2 = spawn("w2");
  Feed* feed = nullptr;
  auto g = StartGateway(&feed);
  ASSERT_TRUE(g);
  ASSERT_TRUE(testing::WaitFor([&] { return g->Tick() && g->stats().workers_attested == 2; }, 60));
  ASSERT_TRUE(testing::WaitFor([&] { return owned("w1") == 2 && owned("w2") == 2; }, 60));
  Send(*feed, *g, [&](int third) {
    if (third == 0) {
      // w1 pauses holding two partitions; w2 takes them once the leases expire.
      ASSERT_TRUE(testing::WaitFor([&] { return g->Tick() && g->stats().results > 0; }, 60));
      kill(w1, SIGSTOP);
      ASSERT_TRUE(testing::WaitFor([&] { return g->Tick() && owned("w2") == 4; }, 60));
      kill(w1, SIGCONT);  // resumes with stale leases and state: fenced
    }
    if (third == 1) {
      ASSERT_TRUE(testing::WaitFor(
          [&] { return g->Tick() && stats("w2").value("batches_processed", 0) > 0; }, 60));
      kill(w2, SIGKILL);
      int status = 0;
      waitpid(w2, &status, 0);
      w2 = -1;
    }
  });
  Drain(*g);
  EXPECT_GE(stats("w1").value("lost", 0), 1) << "w1 found its partitions taken when it resumed";
  // Nothing doubled in the cluster either: one stored result per batch.
  auto c = nats::Connection::Connect(*cluster::ClientOptions(dir_ + "/cluster", "gateway"));
  ASSERT_TRUE(c);
  EXPECT_EQ(*(*c)->StreamMessages(wire::cluster::kResultStream), g->stats().batches_sealed);
  ExpectResultsEqualReference(g->stats());
  proc::Stop(w1, 10000);
}

// An enclave (a real process) that is killed -9 whenever it is handed one chosen batch: the
// first batch of sequence 2 any of them sees, for all of them (a poison batch).
struct PoisonBatch {
  std::mutex mu;
  std::optional<std::pair<wire::StreamId, uint64_t>> target;
  std::atomic<int> kills{0};
};
class KilledOnPoison : public EnclaveTransport {
 public:
  KilledOnPoison(std::unique_ptr<EnclaveTransport> inner, std::shared_ptr<PoisonBatch> poison)
      : inner_(std::move(inner)), poison_(std::move(poison)) {}
  Result<crypto::Bytes> Call(enclave::Call call, crypto::ByteView request) override {
    if (call == enclave::Call::kProcessBatch) {
      auto h = wire::Header::Decode(request);
      std::lock_guard lock(poison_->mu);
      if (h && h->seq == 2 && !poison_->target) poison_->target = {h->stream, h->seq};
      if (h && poison_->target && poison_->target->first == h->stream &&
          poison_->target->second == h->seq) {
        ++poison_->kills;
        kill(inner_->pid(), SIGKILL);
      }
    }
    return inner_->Call(call, request);
  }
  std::string_view backend() const override { return inner_->backend(); }
  int pid() const override { return inner_->pid(); }

 private:
  std::unique_ptr<EnclaveTransport> inner_;
  std::shared_ptr<PoisonBatch> poison_;
};

// A batch that kills every enclave it is given is quarantined after kMaxBatchAttempts deaths
// (marked in the partition's state entry, which survives the workers), and the other batches
// of its partition and of the others all come through.
TEST_F(WorkerTest, ABatchThatKillsEveryEnclaveIsQuarantinedAfterBoundedTries) {
  auto poison = std::make_shared<PoisonBatch>();
  auto opts = [&](const std::string& name) {
    WorkerOptions o = WorkerOpts(name);
    o.enclave.backend = "inproc";  // the factory below: a real enclave process, wrapped
    o.enclave.inproc =
        [poison](const EnclaveLaunch& l) -> Result<std::unique_ptr<EnclaveTransport>> {
      EnclaveLaunch real = l;
      real.backend = "process";
      real.inproc = nullptr;
      MEDSTREAM_TRY(inner, LaunchEnclave(real));
      return std::unique_ptr<EnclaveTransport>(new KilledOnPoison(std::move(inner), poison));
    };
    return o;
  };
  options_.quarantine_check_s = 1;  // the gateway asks about a late result soon
  Feed* feed = nullptr;
  auto g = StartGateway(&feed);
  ASSERT_TRUE(g);
  Send(*feed, *g, [](int) {});
  ASSERT_TRUE(g->CutAll());
  const uint64_t sealed = g->stats().batches_sealed;
  // Workers one after another: each one the poison kills is replaced (a supervisor's restart).
  int started = 0;
  for (; started < kMaxBatchAttempts + 2; ++started) {
    RunningWorker& w = AddWorker(opts("w" + std::to_string(started)));
    const bool settled = testing::WaitFor(
        [&] {
          auto s = g->Tick();
          EXPECT_TRUE(s) << s.error().message();
          return w.failed.load() || w.worker->counters().quarantined == 1;
        },
        90);
    ASSERT_TRUE(settled) << g->stats().results << " of " << sealed << " results";
    if (!w.failed) break;
    EXPECT_EQ(w.status.error().code(), Error::Code::kInternal) << w.status.error().message();
    w.Crash();
    w.worker.reset();
  }
  EXPECT_EQ(poison->kills.load(), kMaxBatchAttempts) << "one enclave per try, no more";
  EXPECT_EQ(started, kMaxBatchAttempts) << "the worker after the last try quarantined it";
  EXPECT_EQ(workers_.back()->worker->counters().quarantined, 1u);
  // In the quarantine stream, with a reason.
  auto c = nats::Connection::Connect(*cluster::ClientOptions(dir_ + "/cluster", "gateway"));
  ASSERT_TRUE(c);
  EXPECT_EQ(*(*c)->StreamMessages(wire::cluster::kQuarantineStream), 1u);
  auto q = (*c)->PullSubscribe(wire::cluster::kQuarantineStream, "t", "medstream.quarantine.>", 30);
  ASSERT_TRUE(q);
  auto got = (*q)->Fetch(1, 10);
  ASSERT_TRUE(got && got->size() == 1u);
  auto h = wire::Header::Decode((*got)[0].data());
  ASSERT_TRUE(h);
  EXPECT_EQ(h->stream, poison->target->first);
  EXPECT_EQ(h->seq, 2u);
  EXPECT_FALSE((*got)[0].header("Medstream-Reason").value_or("").empty());
  // The gateway learns it was quarantined, says so in the user's .jsonl and goes on: nothing
  // outstanding, every other result read.
  EXPECT_TRUE(testing::WaitFor([&] { return g->Tick() && g->outstanding() == 0; }, 30));
  EXPECT_EQ(g->stats().results, sealed - 1);
  EXPECT_EQ(g->stats().batches_quarantined, 1u);
  int marked = 0;
  for (int u = 1; u <= kUsers; ++u) {
    std::istringstream lines(
        Slurp(fs::path(options_.results_dir) / ("user-" + std::to_string(u) + ".jsonl")));
    for (std::string line; std::getline(lines, line);) {
      const auto j = nlohmann::json::parse(line);
      if (j.contains("quarantined")) {
        ++marked;
        EXPECT_EQ(j.value("seq", 0), 2);
        EXPECT_FALSE(j.value("quarantined", "").empty());
      }
    }
  }
  EXPECT_EQ(marked, 1);
  const std::string ref = dir_ + "/ref-results";
  Reference(ref);
  int equal = 0;
  for (int u = 1; u <= kUsers; ++u) {
    const std::string name = "user-" + std::to_string(u) + ".sdnn.csv";
    equal += Slurp(fs::path(options_.results_dir) / name) == Slurp(fs::path(ref) / name) ? 1 : 0;
  }
  EXPECT_EQ(equal, kUsers - 1);
}

// The gateway reads results through a durable consumer and acknowledges them once held: a gateway
// that dies before storing them finds them again by reading the stream, after a few seconds.
TEST_F(WorkerTest, ResultsTheConsumerHandedToADeadGatewayAreReadFromTheStream) {
  const gateway::ClusterLinkOptions lo = LinkOpts();
  auto first = gateway::ClusterLink(lo);
  ASSERT_TRUE(first) << first.error().message();
  // Results as a worker publishes them (a gateway may not).
  auto c =
      nats::Connection::Connect(*cluster::ClientOptions(dir_ + "/cluster", cluster::kWorkerRole));
  ASSERT_TRUE(c);
  wire::StreamId id{};
  id[0] = 7;
  const crypto::Bytes r1 = {1, 2, 3}, r2 = {4, 5, 6};
  for (auto [seq, bytes] : {std::pair{uint64_t{1}, &r1}, std::pair{uint64_t{2}, &r2}}) {
    ASSERT_TRUE((*c)->Publish(wire::cluster::ResultSubject(id, seq), *bytes,
                              wire::ResultFileName(id, seq), 10));
  }
  // The first gateway takes both from its consumer and stores only result 1.
  Result<crypto::Bytes> got = NotFound("");
  ASSERT_TRUE(testing::WaitFor(
      [&] { return (got = (*first)->ReadResult(wire::ResultFileName(id, 1))).has_value(); }, 10));
  EXPECT_EQ(*got, r1);
  first->reset();  // dies holding result 2, acknowledged
  auto second = gateway::ClusterLink(lo);
  ASSERT_TRUE(second) << second.error().message();
  const auto start = std::chrono::steady_clock::now();
  ASSERT_TRUE(testing::WaitFor(
      [&] { return (got = (*second)->ReadResult(wire::ResultFileName(id, 2))).has_value(); }, 20));
  EXPECT_EQ(*got, r2);
  EXPECT_GE(std::chrono::steady_clock::now() - start, std::chrono::seconds(4))
      << "not from the consumer, which had delivered it";
}

}  // namespace
}  // namespace medstream::host
