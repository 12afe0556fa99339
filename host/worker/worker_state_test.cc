// A partition's stored state on a real cluster (the rules themselves are unit-tested in
// partition_state_test.cc): a state larger than one message in chunks, in several export parts,
// damaged, or too large to checkpoint. Each worker's results must stay byte-identical to one
// server's, with nothing lost.
#include "host/worker/worker_fixture.h"

namespace medstream::host {
namespace {

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
  // Every partition taken again had its lease lost first (`lost`: a renewal the cluster answered
  // too late, as it did in 1 run in 20 on this loaded 2-core machine with a 3 s lease; the
  // partition is then rightly let go and taken again). None was dropped for its checkpoint.
  const WorkerCounters c = a.worker->counters();
  EXPECT_EQ(c.takeovers - takeovers, c.lost) << "the partition was dropped and taken";
  EXPECT_TRUE(testing::WaitFor([&] { return a.worker->counters().owned.size() == 4u; }, 30));
}

}  // namespace
}  // namespace medstream::host
