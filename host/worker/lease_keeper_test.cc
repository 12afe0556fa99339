// The lease keeper's rules in-process, over a lease store in memory and a clock the tests move
// (worker_test.cc runs it on a real cluster, against a run of batches longer than the lease).
#include "host/worker/lease_keeper.h"

#include <gtest/gtest.h>

#include <atomic>
#include <functional>
#include <map>
#include <optional>
#include <utility>

#include "tests/wait.h"

namespace medstream::host {
namespace {

using Clock = LeaseKeeper::Clock;
using namespace std::chrono_literals;

// The lease bucket in memory: a lease is renewed if its revision is still the one asked with.
struct Bucket {
  std::mutex mu;
  std::map<uint32_t, uint64_t> revs;
  // Every call fails with this if set (kIo: a node failing over).
  std::optional<Error::Code> failing;
  std::atomic<int> renewals{0}, registrations{0};
  std::atomic<bool> ready{false};
  std::function<void(uint32_t)> during_renewal;  // runs while a renewal is asked
};

class MemoryLeases final : public LeaseStore {
 public:
  explicit MemoryLeases(Bucket& b) : b_(b) {}
  Result<uint64_t> RenewLease(uint32_t p, uint64_t rev) override {
    ++b_.renewals;
    if (b_.during_renewal) b_.during_renewal(p);
    std::lock_guard lock(b_.mu);
    if (b_.failing) return Fail(*b_.failing, "no answer");
    auto it = b_.revs.find(p);
    if (it == b_.revs.end()) return Fail(Error::Code::kNotFound, "no lease");
    if (it->second != rev) return Fail(Error::Code::kFailedPrecondition, "wrong revision");
    return ++it->second;
  }
  Status Register(bool ready) override {
    std::lock_guard lock(b_.mu);
    if (b_.failing) return Fail(*b_.failing, "no answer");
    ++b_.registrations;
    b_.ready = ready;
    return {};
  }

 private:
  Bucket& b_;
};

constexpr double kLease = 6;
constexpr double kHung = 20;

class LeaseKeeperTest : public ::testing::Test {
 protected:
  LeaseKeeperTest() : keeper_(std::make_unique<MemoryLeases>(bucket_), "w", kLease, kHung) {}
  void Own(uint32_t p, uint64_t rev, Clock::time_point now) {
    {
      std::lock_guard lock(bucket_.mu);
      bucket_.revs[p] = rev;
    }
    keeper_.Add(p, rev, now);
  }
  Bucket bucket_;
  LeaseKeeper keeper_;
  const Clock::time_point t0_ = Clock::now();
};

TEST_F(LeaseKeeperTest, RenewsEveryLeaseAndTheRegistrationWhileTheProcessingThreadIsAlive) {
  Own(1, 5, t0_);
  Own(2, 9, t0_);
  keeper_.Pulse(t0_);
  keeper_.Round(t0_ + 2s);
  EXPECT_EQ(bucket_.renewals.load(), 2);
  EXPECT_EQ(bucket_.revs[1], 6u);
  EXPECT_EQ(bucket_.registrations.load(), 1);
  EXPECT_FALSE(bucket_.ready.load());
  // Renewed at t0 + 2 s: held a whole lease from then, not from t0.
  EXPECT_TRUE(keeper_.Held(1, t0_ + 7s));
  EXPECT_FALSE(keeper_.Held(1, t0_ + 8s + 1ms));
  EXPECT_FALSE(keeper_.Held(3, t0_ + 2s)) << "never added";
  // The next round asks with the revision the last one got.
  keeper_.Pulse(t0_ + 3s);
  keeper_.Round(t0_ + 4s);
  EXPECT_EQ(bucket_.revs[1], 7u);
  EXPECT_TRUE(keeper_.Held(1, t0_ + 9s));
  ASSERT_TRUE(keeper_.SetReady());
  EXPECT_TRUE(bucket_.ready.load());
  EXPECT_EQ(keeper_.rounds(), 2u);
}

TEST_F(LeaseKeeperTest, ALeaseTakenByAnotherIsLostForGood) {
  Own(1, 5, t0_);
  bucket_.revs[1] = 40;  // expired and taken by another worker
  keeper_.Pulse(t0_);
  keeper_.Round(t0_ + 1s);
  EXPECT_FALSE(keeper_.Held(1, t0_ + 1s));
  bucket_.revs[1] = 5;  // even if the revision came back, it is not asked again
  keeper_.Round(t0_ + 2s);
  EXPECT_EQ(bucket_.renewals.load(), 1);
  EXPECT_FALSE(keeper_.Held(1, t0_ + 2s));
  // Deleted: lost too.
  Own(2, 3, t0_ + 2s);
  bucket_.revs.erase(2);
  keeper_.Round(t0_ + 3s);
  EXPECT_FALSE(keeper_.Held(2, t0_ + 3s));
}

TEST_F(LeaseKeeperTest, ALeaseTheClusterDoesNotRenewForAWholeLeaseIsLost) {
  Own(1, 5, t0_);
  bucket_.failing = Error::Code::kIo;  // a node failing over: no answers
  for (auto t : {2s, 4s}) {
    keeper_.Pulse(t0_ + t);
    keeper_.Round(t0_ + t);
    EXPECT_TRUE(keeper_.Held(1, t0_ + t)) << "not renewed for only " << t.count() << " s";
  }
  // Not renewed for a whole lease: not surely ours, without waiting for the next round ...
  EXPECT_FALSE(keeper_.Held(1, t0_ + 6s));
  keeper_.Pulse(t0_ + 6s);
  keeper_.Round(t0_ + 6s);
  // ... and lost for good, even if the cluster answers again.
  bucket_.failing.reset();
  keeper_.Round(t0_ + 7s);
  EXPECT_FALSE(keeper_.Held(1, t0_ + 7s));
  EXPECT_EQ(bucket_.revs[1], 5u);
}

// A processing thread busy for longer than a lease in one bounded call (a cluster call timing out
// while a node fails over, an enclave call) is not dead: its leases are kept. Renewing only
// within a lease of its last sign of life let every lease go at each such call.
TEST_F(LeaseKeeperTest, AProcessingThreadBusyLongerThanALeaseKeepsItsLeases) {
  Own(1, 5, t0_);
  keeper_.Pulse(t0_);
  for (auto t : {2s, 4s, 6s, 8s, 10s}) keeper_.Round(t0_ + t);
  EXPECT_EQ(bucket_.renewals.load(), 5);
  EXPECT_TRUE(keeper_.Held(1, t0_ + 10s));
}

TEST_F(LeaseKeeperTest, AProcessingThreadSilentPastHungRenewsNothing) {
  Own(1, 5, t0_);
  keeper_.Pulse(t0_);
  keeper_.Round(t0_ + 19s);  // alive: the last sign of life is less than kHung old
  EXPECT_EQ(bucket_.renewals.load(), 1);
  keeper_.Round(t0_ + 20s);  // hung (or paused) for kHung: it holds nothing
  EXPECT_EQ(bucket_.renewals.load(), 1);
  EXPECT_EQ(bucket_.registrations.load(), 1) << "its registration expires too";
  keeper_.Round(t0_ + 25s);
  EXPECT_FALSE(keeper_.Held(1, t0_ + 25s));
  // Back: what it lost stays lost; a lease taken again is renewed.
  keeper_.Pulse(t0_ + 26s);
  Own(2, 8, t0_ + 26s);
  keeper_.Round(t0_ + 27s);
  EXPECT_FALSE(keeper_.Held(1, t0_ + 27s));
  EXPECT_TRUE(keeper_.Held(2, t0_ + 27s));
  EXPECT_EQ(bucket_.revs[2], 9u);
}

// An enclave call may be given longer than hung_s (a 65 MiB batch's budget is 160 s): the thread
// inside one is alive until the budget and hung_s after it. It lost its leases at hung_s before.
// Once the call has returned (a Pulse), hung_s counts from then again, not from the budget.
TEST_F(LeaseKeeperTest, AThreadInAnEnclaveCallLongerThanHungKeepsItsLeasesUntilTheBudget) {
  Own(1, 5, t0_);
  keeper_.Busy(t0_, 100s);
  for (auto t : {2s, 30s, 60s, 90s, 119s}) keeper_.Round(t0_ + t);
  EXPECT_EQ(bucket_.renewals.load(), 5);
  EXPECT_TRUE(keeper_.Held(1, t0_ + 119s));
  keeper_.Round(t0_ + 120s);  // the budget and hung_s are over: taken for hung
  EXPECT_EQ(bucket_.renewals.load(), 5);
  // A call that returns early: its budget no longer counts.
  keeper_.Remove(1);
  Own(2, 7, t0_ + 120s);
  keeper_.Busy(t0_ + 120s, 100s);
  keeper_.Pulse(t0_ + 121s);
  keeper_.Round(t0_ + 140s);
  EXPECT_EQ(bucket_.renewals.load(), 6);
  keeper_.Round(t0_ + 141s);
  EXPECT_EQ(bucket_.renewals.load(), 6) << "hung_s after the call returned, not after its budget";
}

TEST_F(LeaseKeeperTest, AnAnswerForALeaseDroppedAndTakenAgainMeanwhileChangesNothing) {
  Own(1, 5, t0_);
  keeper_.Pulse(t0_);
  // While the renewal is asked, the processing thread drops the partition, deletes its lease and
  // takes it again, at a new revision: the old renewal fails, and must not make it lost.
  bool once = false;
  bucket_.during_renewal = [&](uint32_t p) {
    if (std::exchange(once, true)) return;
    keeper_.Remove(p);
    {
      std::lock_guard lock(bucket_.mu);
      bucket_.revs[p] = 100;
    }
    keeper_.Add(p, 100, t0_ + 1s);
  };
  keeper_.Round(t0_ + 1s);
  EXPECT_TRUE(keeper_.Held(1, t0_ + 2s));
  keeper_.Round(t0_ + 2s);
  EXPECT_EQ(bucket_.revs[1], 101u) << "renewed with the new revision";
  EXPECT_TRUE(keeper_.Held(1, t0_ + 7s));
}

TEST(LeaseKeeperThread, RenewsOnItsOwnAndCallsNothingAfterStop) {
  Bucket bucket;
  {
    std::lock_guard lock(bucket.mu);
    bucket.revs[1] = 1;
  }
  LeaseKeeper keeper(std::make_unique<MemoryLeases>(bucket), "w", 1.0, 1.0);  // a round every 1/3 s
  keeper.Add(1, 1, Clock::now());
  keeper.Start();
  // The processing thread does nothing but say it is alive: the lease outlives several leases.
  const auto start = Clock::now();
  ASSERT_TRUE(testing::WaitFor(
      [&] {
        keeper.Pulse(Clock::now());
        return Clock::now() - start > 2500ms;
      },
      10));
  EXPECT_TRUE(keeper.Held(1, Clock::now()));
  EXPECT_GE(bucket.renewals.load(), 5);
  keeper.Stop();
  const int renewals = bucket.renewals.load(), registrations = bucket.registrations;
  keeper.Round(Clock::now());
  EXPECT_TRUE(keeper.SetReady());
  EXPECT_EQ(bucket.renewals.load(), renewals);
  EXPECT_EQ(bucket.registrations.load(), registrations);
  EXPECT_FALSE(bucket.ready.load());
}

}  // namespace
}  // namespace medstream::host
