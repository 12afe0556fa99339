// Scale-out end to end on a real 3-node NATS JetStream cluster (host/cluster, nats-server from
// Debian): a gateway publishing sealed batches through its cluster link, workers with their own
// enclave processes attested and provisioned over NATS, partitions shared by leases. The results
// must be byte-identical to one server's (which the other tests hold equal to the offline
// analysis), with nothing lost or doubled: with two workers, after a worker dies mid-stream,
// after a NATS node dies mid-stream, with a worker the policy refuses, with workers paused past
// their lease, with a batch that kills every enclave, and with a gateway that dies holding
// results. The stored state's tests are in worker_state_test.cc.
#include "host/worker/worker_fixture.h"

namespace medstream::host {
namespace {

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
  // What the workers said, for a failure's message: the end of each one's log.
  auto logs = [&] {
    std::string out;
    for (const std::string name : {"w1", "w2"}) {
      const std::string text = ReadFileText(dir_ + "/" + name + ".log").value_or("(no log)");
      out += "\n--- " + name + ".log, owning " + std::to_string(owned(name)) + " ---\n" +
             text.substr(text.size() > 4000 ? text.size() - 4000 : 0);
    }
    return out;
  };
  pid_t w1 = spawn("w1");
  pid_t w2 = spawn("w2");
  Feed* feed = nullptr;
  auto g = StartGateway(&feed);
  ASSERT_TRUE(g);
  ASSERT_TRUE(testing::WaitFor([&] { return g->Tick() && g->stats().workers_attested == 2; }, 60));
  ASSERT_TRUE(testing::WaitFor([&] { return owned("w1") == 2 && owned("w2") == 2; }, 60)) << logs();
  Send(*feed, *g, [&](int third) {
    if (third == 0) {
      // w1 pauses holding two partitions; w2 takes them once the leases expire.
      ASSERT_TRUE(testing::WaitFor([&] { return g->Tick() && g->stats().results > 0; }, 60));
      kill(w1, SIGSTOP);
      ASSERT_TRUE(testing::WaitFor([&] { return g->Tick() && owned("w2") == 4; }, 60)) << logs();
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

// An enclave whose batches take `delay` more (an expensive job, hrv-full): every batch, or only
// the first `slow` of them.
class SlowBatches : public EnclaveTransport {
 public:
  SlowBatches(std::unique_ptr<EnclaveTransport> inner, std::chrono::milliseconds delay,
              int slow = -1)
      : inner_(std::move(inner)), delay_(delay), slow_(slow) {}
  Result<crypto::Bytes> Call(enclave::Call call, crypto::ByteView request) override {
    if (call == enclave::Call::kProcessBatch && slow_ != 0) {
      if (slow_ > 0) --slow_;
      std::this_thread::sleep_for(delay_);  // the work
    }
    return inner_->Call(call, request);
  }
  std::string_view backend() const override { return inner_->backend(); }
  int pid() const override { return inner_->pid(); }

 private:
  std::unique_ptr<EnclaveTransport> inner_;
  const std::chrono::milliseconds delay_;
  int slow_;  // the processing thread's alone
};

// A worker whose enclave is a real process, each of its batches slowed as SlowBatches says.
WorkerOptions SlowedWorker(WorkerOptions o, std::chrono::milliseconds delay, int slow = -1) {
  o.enclave.backend = "inproc";  // the factory below: a real enclave process, slowed
  o.enclave.inproc = [delay,
                      slow](const EnclaveLaunch& l) -> Result<std::unique_ptr<EnclaveTransport>> {
    EnclaveLaunch real = l;
    real.backend = "process";
    real.inproc = nullptr;
    MEDSTREAM_TRY(inner, LaunchEnclave(real));
    return std::unique_ptr<EnclaveTransport>(new SlowBatches(std::move(inner), delay, slow));
  };
  return o;
}

// One worker `a` (slowed) gets every batch done, `beats` in all, holding its 4 partitions
// throughout: no lease lost, no partition taken twice, no batch replayed.
void ExpectAllDoneWithNoLeaseLost(gateway::Gateway& g, RunningWorker& a, uint64_t beats) {
  ASSERT_TRUE(testing::WaitFor([&] { return g.Tick() && g.outstanding() == 0; }, 90))
      << g.outstanding() << " batches without a result";
  // A lease lost in the last run would be found lost by a round of renewal: two more.
  const uint64_t renewals = a.worker->counters().renewals;
  ASSERT_TRUE(testing::WaitFor([&] { return a.worker->counters().renewals >= renewals + 2; }, 30));
  EXPECT_FALSE(a.failed);
  const WorkerCounters c = a.worker->counters();
  EXPECT_EQ(c.lost, 0u) << "a partition's lease was lost while its batches were analysed";
  EXPECT_EQ(c.takeovers, 4u);
  EXPECT_EQ(c.replays, 0u);
  EXPECT_EQ(g.stats().beats_processed, beats);
}

// A partition's run of batches (up to 16 fetched at a time) that outlasts the lease keeps it: the
// leases are renewed on a thread of their own (lease_keeper.h). They were renewed only between
// runs, so the worker lost every partition it was busy with, and took it again, replaying the
// batches since its checkpoint, run after run. Here 15 batches of 0.3 s in a run, against a 3 s
// lease.
TEST_F(WorkerTest, ARunOfBatchesLongerThanTheLeaseKeepsItsPartition) {
  Feed* feed = nullptr;
  auto g = StartGateway(&feed);
  ASSERT_TRUE(g);
  for (int u = 1; u <= 2; ++u) {  // 2 users, 15 batches each, in the stream before any worker
    for (const auto& m : Messages(u, kBeats)) {
      feed->Send(sensor::Topic("t", "user-" + std::to_string(u)), m);
    }
  }
  ASSERT_TRUE(g->CutAll());
  ASSERT_TRUE(testing::WaitFor([&] { return g->Tick() && g->stats().batches_uploaded == 30; }, 30))
      << g->stats().batches_uploaded << " of 30 batches uploaded";
  RunningWorker& a = AddWorker(SlowedWorker(WorkerOpts("wa"), std::chrono::milliseconds(300)));
  ExpectAllDoneWithNoLeaseLost(*g, a, 2 * kBeats);
}

// One enclave call longer than hung_s and a lease together (7 s, against a hung_s and a lease of
// 3 s) keeps its partition: the keeper counts the processing thread alive for the call's budget
// (lease_keeper.h). It took the thread for hung after hung_s before, stopped renewing, and the
// worker lost the partition in the cluster, took it again and replayed the batch.
TEST_F(WorkerTest, AnEnclaveCallLongerThanTheHungLimitKeepsItsPartition) {
  Feed* feed = nullptr;
  auto g = StartGateway(&feed);
  ASSERT_TRUE(g);
  for (const auto& m : Messages(1, kBeats)) feed->Send(sensor::Topic("t", "user-1"), m);
  ASSERT_TRUE(g->CutAll());
  ASSERT_TRUE(testing::WaitFor([&] { return g->Tick() && g->stats().batches_uploaded == 15; }, 30))
      << g->stats().batches_uploaded << " of 15 batches uploaded";
  WorkerOptions o = SlowedWorker(WorkerOpts("wa"), std::chrono::milliseconds(7000), /*slow=*/1);
  o.hung_s = 1;  // the keeper's limit is then the lease, 3 s
  ExpectAllDoneWithNoLeaseLost(*g, AddWorker(o), kBeats);
}

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
