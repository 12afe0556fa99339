// lease_keeper: renews a worker's partition leases and its registration on a thread of its own,
// apart from the batches it processes (docs/scale-out.md, "Leases").
//
// Why a thread: a worker processes up to fetch_batch batches of each partition in a run, and a
// batch of an expensive job takes seconds. Renewed only between runs, the leases outlasted by a
// run expired under the worker that was busy with them; it lost them and replayed their batches
// from the last checkpoint, run after run. Renewed between the batches of a run on the
// processing thread, a renewal waited for a batch and a batch for a renewal while a NATS node
// failed over (both take seconds then), and the worker fell behind.
//
// Promises:
//  * A lease is renewed every lease_s / 3 while the processing thread is alive: it pulsed
//    (Pulse) within the last hung_s, or it is inside an enclave call (Busy) whose budget, and
//    hung_s after it, have not run out. hung_s is longer than a lease on purpose: the processing
//    thread's every cluster call is bounded (a NATS call 5 s, a result's publish 10 s), and a
//    thread busy in one is not dead; renewing only within a lease of the last pulse let every
//    lease go whenever a cluster call timed out while a node failed over. An enclave call is
//    bounded by its own budget (edge.h: a 65 MiB batch's is 160 s, a state part's up to 300 s),
//    which may be longer than hung_s: the process backend's watchdog ends it by then. A thread
//    that shows no life past these limits (a deadlock, an inproc enclave that never answers: no
//    watchdog stops it) lets its leases and its registration expire, as if the worker had died.
//  * A lease is lost (Held is false, for good) when a renewal finds it taken or gone, or when it
//    was not renewed for a whole lease (a node failing over, a partition of the network): not
//    ours, or not surely ours any more. Fencing (worker.h) keeps a worker that processes on a lost
//    lease from writing over the new owner; Held lets it stop early.
//  * An answer to a renewal of a lease that was removed (or removed and added again) meanwhile
//    changes nothing.
//  * After Stop, no call reaches the store.
//
// Thread-safety: every method may be called from any thread; the store is called from one
// thread at a time.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "adapters/nats/nats.h"
#include "common/base/result.h"

namespace medstream::host {

// What the keeper needs of the cluster: the lease bucket and the worker bucket.
class LeaseStore {
 public:
  virtual ~LeaseStore() = default;
  // Rewrites partition p's lease if its revision is still `rev`: the new revision.
  // kFailedPrecondition or kNotFound: taken by another, expired or deleted.
  virtual Result<uint64_t> RenewLease(uint32_t p, uint64_t rev) = 0;
  // Writes the worker's registration entry ("ready": it can process).
  virtual Status Register(bool ready) = 0;
};

// The cluster's buckets, through handles of their own on `connection` (which outlives it).
Result<std::unique_ptr<LeaseStore>> NatsLeaseStore(nats::Connection& connection,
                                                   const std::string& worker,
                                                   const std::string& instance);

class LeaseKeeper {
 public:
  using Clock = std::chrono::steady_clock;
  LeaseKeeper(std::unique_ptr<LeaseStore> store, std::string worker, double lease_s, double hung_s);
  ~LeaseKeeper();  // Stop()
  LeaseKeeper(const LeaseKeeper&) = delete;
  LeaseKeeper& operator=(const LeaseKeeper&) = delete;

  // Starts the thread: a Round every lease_s / 3.
  void Start();
  // Ends the thread (idempotent). No store call after it returns.
  void Stop();

  // The processing thread is alive at `now`, and out of any call it said it was in (Busy).
  void Pulse(Clock::time_point now);
  // The processing thread starts, at `now`, a call that ends within `limit` (an enclave call's
  // budget): it counts as alive until `limit` and hung_s after it, or until its next Pulse.
  // The hung_s after it (120 s by default) also covers the wait for the enclave's lock, held at
  // most for a relayed call's budget (30 s), and the watchdog's kill.
  void Busy(Clock::time_point now, Clock::duration limit);
  // Partition p's lease was written at revision `rev` no earlier than `now`.
  void Add(uint32_t p, uint64_t rev, Clock::time_point now);
  void Remove(uint32_t p);
  // Partition p's lease is ours at `now`: added, not lost, renewed within the last lease_s.
  bool Held(uint32_t p, Clock::time_point now) const;
  // Registers as ready at once (the processing thread's Rebalance counts it next).
  Status SetReady();
  // Renewal rounds done.
  uint64_t rounds() const;

  // One round, as the thread does it: register and renew every lease not lost, if the
  // processing thread is alive at `now`; a lease is lost as said above. Tests call it directly.
  void Round(Clock::time_point now);

 private:
  struct Lease {
    uint64_t rev = 0;
    uint64_t generation = 0;  // tells an answer for this lease from one for a lease removed
    Clock::time_point renewed{};
    bool lost = false;
  };
  void Loop();

  const std::string worker_;
  const Clock::duration lease_, hung_;
  mutable std::mutex mu_;
  std::condition_variable wake_;
  std::map<uint32_t, Lease> leases_;
  uint64_t generations_ = 0;
  Clock::time_point pulse_{};
  Clock::time_point busy_until_{};  // the end of the call the thread is in (Busy), if any
  bool ready_ = false;
  bool stopping_ = false;
  uint64_t rounds_ = 0;
  std::mutex store_mu_;  // held across every store call
  std::unique_ptr<LeaseStore> store_;
  std::thread thread_;
};

}  // namespace medstream::host
