#include "host/worker/lease_keeper.h"

#include <algorithm>
#include <cstdio>
#include <vector>

#include "common/wire/cluster.h"

namespace medstream::host {

namespace cl = wire::cluster;

namespace {

class NatsStore : public LeaseStore {
 public:
  NatsStore(std::unique_ptr<nats::KeyValue> leases, std::unique_ptr<nats::KeyValue> workers,
            std::string worker, std::string instance)
      : leases_(std::move(leases)),
        workers_(std::move(workers)),
        worker_(std::move(worker)),
        instance_(std::move(instance)) {}
  Result<uint64_t> RenewLease(uint32_t p, uint64_t rev) override {
    return leases_->Update(cl::PartitionKey(p), crypto::AsBytes(worker_), rev);
  }
  Status Register(bool ready) override {
    // "ready" once provisioned: the fair share counts only workers that can process.
    const std::string entry = instance_ + (ready ? " ready" : "");
    auto r = workers_->Put(worker_, crypto::AsBytes(entry));
    if (!r) return std::unexpected(r.error());
    return {};
  }

 private:
  std::unique_ptr<nats::KeyValue> leases_, workers_;  // this store's own handles (nats.h)
  const std::string worker_, instance_;
};

}  // namespace

Result<std::unique_ptr<LeaseStore>> NatsLeaseStore(nats::Connection& connection,
                                                   const std::string& worker,
                                                   const std::string& instance) {
  MEDSTREAM_TRY(leases, connection.EnsureKeyValue({.bucket = cl::kLeaseBucket}));
  MEDSTREAM_TRY(workers, connection.EnsureKeyValue({.bucket = cl::kWorkerBucket}));
  return std::unique_ptr<LeaseStore>(
      new NatsStore(std::move(leases), std::move(workers), worker, instance));
}

namespace {
LeaseKeeper::Clock::duration Seconds(double s) {
  return std::chrono::duration_cast<LeaseKeeper::Clock::duration>(std::chrono::duration<double>(s));
}
}  // namespace

LeaseKeeper::LeaseKeeper(std::unique_ptr<LeaseStore> store, std::string worker, double lease_s,
                         double hung_s)
    : worker_(std::move(worker)),
      lease_(Seconds(lease_s)),
      hung_(Seconds(std::max(lease_s, hung_s))),
      store_(std::move(store)) {}

LeaseKeeper::~LeaseKeeper() {
  Stop();
}

void LeaseKeeper::Start() {
  std::lock_guard lock(mu_);
  if (thread_.joinable() || stopping_) return;
  pulse_ = Clock::now();
  thread_ = std::thread([this] { Loop(); });
}

void LeaseKeeper::Stop() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable() && thread_.get_id() != std::this_thread::get_id()) thread_.join();
  std::lock_guard store_lock(store_mu_);  // a SetReady under way has ended
}

void LeaseKeeper::Loop() {
  std::unique_lock lock(mu_);
  while (!stopping_) {
    // Timed from the end of the last round: a round slowed by a failing node is not followed by
    // another at once.
    if (wake_.wait_for(lock, lease_ / 3, [this] { return stopping_; })) break;
    lock.unlock();
    Round(Clock::now());
    lock.lock();
  }
}

void LeaseKeeper::Pulse(Clock::time_point now) {
  std::lock_guard lock(mu_);
  if (now > pulse_) pulse_ = now;
  busy_until_ = {};
}

void LeaseKeeper::Busy(Clock::time_point now, Clock::duration limit) {
  std::lock_guard lock(mu_);
  if (now > pulse_) pulse_ = now;
  busy_until_ = now + limit;
}

void LeaseKeeper::Add(uint32_t p, uint64_t rev, Clock::time_point now) {
  std::lock_guard lock(mu_);
  leases_[p] = Lease{.rev = rev, .generation = ++generations_, .renewed = now};
}

void LeaseKeeper::Remove(uint32_t p) {
  std::lock_guard lock(mu_);
  leases_.erase(p);
}

bool LeaseKeeper::Held(uint32_t p, Clock::time_point now) const {
  std::lock_guard lock(mu_);
  auto it = leases_.find(p);
  return it != leases_.end() && !it->second.lost && now - it->second.renewed < lease_;
}

Status LeaseKeeper::SetReady() {
  {
    std::lock_guard lock(mu_);
    ready_ = true;
    if (stopping_) return {};
  }
  std::lock_guard store_lock(store_mu_);
  return store_->Register(true);
}

uint64_t LeaseKeeper::rounds() const {
  std::lock_guard lock(mu_);
  return rounds_;
}

void LeaseKeeper::Round(Clock::time_point now) {
  struct Ask {
    uint32_t p;
    uint64_t rev, generation;
  };
  std::vector<Ask> asks;
  bool alive = false, ready = false;
  {
    std::lock_guard lock(mu_);
    if (stopping_) return;
    alive = now - std::max(pulse_, busy_until_) < hung_;
    ready = ready_;
    for (const auto& [p, l] : leases_) {
      if (!l.lost) asks.push_back({p, l.rev, l.generation});
    }
  }
  std::lock_guard store_lock(store_mu_);
  if (alive) {
    if (auto s = store_->Register(ready); !s) {
      // Tried again next round; meanwhile the entry may expire and others count one worker less
      // (they take more partitions, never the ones we hold a lease on).
      std::fprintf(stderr, "worker %s: registering: %s\n", worker_.c_str(),
                   s.error().message().c_str());
    }
  }
  for (const Ask& a : asks) {
    Result<uint64_t> r = Fail(Error::Code::kDeadlineExceeded, "the processing thread is stuck");
    if (alive) {
      {
        std::lock_guard lock(mu_);
        if (stopping_) return;  // a round in a failover is slow: Stop waits for one call
      }
      r = store_->RenewLease(a.p, a.rev);
    }
    std::lock_guard lock(mu_);
    auto it = leases_.find(a.p);
    if (it == leases_.end() || it->second.generation != a.generation) continue;  // removed
    Lease& l = it->second;
    if (r) {
      l.rev = *r;
      // The request left after `now`: the lease lasts at least lease_s from then.
      l.renewed = now;
    } else if (!l.lost &&
               (r.error().code() == Error::Code::kFailedPrecondition ||
                r.error().code() == Error::Code::kNotFound || now - l.renewed >= lease_)) {
      l.lost = true;
      const double age = std::chrono::duration<double>(now - l.renewed).count();
      std::fprintf(stderr,
                   "worker %s: lost the lease of partition %u (%s; last renewed %.1f s ago)\n",
                   worker_.c_str(), a.p, r.error().message().c_str(), age);
    }
  }
  std::lock_guard lock(mu_);
  ++rounds_;
}

}  // namespace medstream::host
