// worker: the cluster counterpart of host/server (docs/scale-out.md). A worker runs its own
// enclave, registers with the cluster, waits until a gateway attested and provisioned that enclave
// (over NATS request/reply, edge_relay.h), then owns a fair share of the partitions: for each, a
// lease, the partition's portable state restored into its enclave, and a pull consumer of the
// partition's sealed batches from where that state ends. Results are published to the results
// stream; the partition's state is checkpointed back, sealed under the data owner's key.
//
// Guarantees (the ciphertext-only cluster is untrusted like the server):
//  * One owner at a time: leases are compare-and-set entries that expire unless renewed
//    (lease_s); a dead worker's partitions are free after at most lease_s, and live workers take
//    them within a step after.
//  * Fencing: a new owner first rewrites the partition's state entry (a compare-and-set), and
//    every checkpoint is a compare-and-set on the revision its writer last saw, so a worker that
//    lost its lease (paused, cut off) can never write state over the new owner's; each takeover
//    reads through a consumer of its own, and deletes the previous owner's.
//  * Exactly once, byte-identical: a partition's state says which batch comes next; a new owner
//    restores it and reads from there. Batches processed after the last checkpoint are processed
//    again from the same state, which gives the same sealed result bytes (results are
//    deterministic), published under the same message id, so the results stream keeps one.
//  * A batch the enclave refuses (damaged, forged, replayed under another key), or whose result
//    is over the cluster's max_payload, goes to the quarantine stream with its reason and never
//    stops the partition. If the enclave dies or hangs, the worker marks the batch in the
//    partition's state entry and stops (fail-stop): its leases expire and others continue from
//    the last checkpoint. A batch marked kMaxBatchAttempts times is quarantined without another
//    try, so one poison batch takes down at most that many enclaves, ever. A worker that takes
//    over from an owner that died without saying why marks each batch before the enclave gets
//    it, until its first checkpoint (an inproc enclave, or the machine, dies with its worker).
//
// Thread-safety: Step/Run/Release from one thread (the processing thread); the edge relay's
// handler runs on NATS's thread and shares the enclave under a mutex; the leases are renewed on a
// thread of their own (lease_keeper.h).
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "adapters/nats/nats.h"
#include "host/server/server.h"
#include "host/server/transport.h"
#include "host/worker/lease_keeper.h"
#include "host/worker/partition_state.h"

namespace medstream::host {

struct WorkerOptions {
  std::string name;  // unique in the cluster (wire::cluster::ValidWorkerName)
  nats::ConnectOptions nats;
  EnclaveLaunch enclave;  // its own enclave: "process" (default) or "inproc"
  uint32_t partitions = 16;
  int replicas = 3;  // of the streams and buckets, if this worker is the first to create them
  // A lease (and the worker's registration) not renewed for this long expires; renewed every
  // lease_s / 3 on a thread of its own (lease_keeper.h).
  double lease_s = 6;
  // While the processing thread shows life (between batches, takeovers, parts of a state) at least
  // this often; past it, it is taken for hung and the leases are let go. Inside an enclave call
  // it is alive until the call's budget and this long after it (lease_keeper.h).
  double hung_s = 120;
  int checkpoint_every = 20;         // batches of a partition between its checkpoints
  double checkpoint_interval_s = 2;  // and at least this often while batches come
  int fetch_batch = 16;              // batches fetched at a time per partition
  double publish_timeout_s = 10;     // a result publish retried this long (a node failing over)
  // At most this many partitions (0: a fair share, ceil(partitions / live workers)).
  uint32_t max_partitions = 0;
  // A partition's portable state larger than this is stored in chunks of this size beside its
  // state entry (0: the nodes' max_payload less 4 KiB; tests set it small).
  size_t state_chunk_bytes = 0;
  // A partition's state is exported from the enclave in parts of about this size (0: 64 MiB,
  // edge.h's kCheckpointPartBytes; tests set it small).
  uint32_t export_part_bytes = 0;
  // A partition's state larger than this is not checkpointed (0: kMaxPortableBytes, 64 GiB;
  // tests set it small). The partition is processed on without checkpoints.
  size_t max_state_bytes = 0;
};

struct WorkerCounters {
  uint64_t processed = 0;    // batches analysed, results published
  uint64_t replays = 0;      // batches the restored state already covered (skipped)
  uint64_t quarantined = 0;  // refused by the enclave: in the quarantine stream
  uint64_t takeovers = 0;    // partitions acquired
  uint64_t released = 0;     // handed back (rebalancing, a graceful stop)
  uint64_t lost = 0;         // leases or state writes lost to another worker (fenced)
  uint64_t checkpoints = 0;
  uint64_t renewals = 0;             // rounds of lease renewal
  uint64_t checkpoint_failures = 0;  // checkpoints that failed (tried again; logged once a streak)
  // Stored states found damaged (a partition's state entry or its chunks do not open), each once.
  uint64_t partitions_damaged = 0;
  uint64_t beats = 0;             // beats in processed batches (from the enclave's counters)
  std::vector<uint32_t> owned;    // partitions owned now
  std::vector<uint32_t> damaged;  // partitions left alone now: their stored state is damaged
};

class Worker {
 public:
  static Result<std::unique_ptr<Worker>> Start(const WorkerOptions& options);
  ~Worker();

  // One round: take or hand back partitions, process what the owned partitions have, checkpoint
  // where due. An error is fatal (the enclave died, the cluster unreachable past the leases):
  // stop the worker.
  Status Step();
  // Steps until `stop`, then Release().
  Status Run(const std::atomic<bool>& stop);
  // Checkpoints every owned partition and hands its lease back (others take over at once).
  Status Release();

  bool provisioned();  // a gateway provisioned this worker's enclave
  WorkerCounters counters() const;
  int enclave_pid() const;
  const std::string& instance() const { return instance_; }

 private:
  explicit Worker(WorkerOptions o) : options_(std::move(o)) {}
  struct Partition {
    uint32_t id = 0;
    uint64_t state_rev = 0;
    uint64_t next_seq = 1;  // the next stream sequence of MEDSTREAM_BATCHES to read
    std::string consumer_name;
    std::unique_ptr<nats::PullConsumer> consumer;
    int since_checkpoint = 0;
    std::chrono::steady_clock::time_point last_checkpoint;
    // The state entry as last written (a suspect mark rewrites it with only the mark changed).
    uint64_t written_next_seq = 1;
    crypto::Bytes written_portable;
    // The batch an enclave died or hung on, and how often (StateEntry in worker.cc).
    uint64_t suspect_seq = 0;
    uint32_t suspect_tries = 0;
    // The previous owner died (or a batch is suspect): every batch is marked in the state entry
    // before the enclave gets it, until the first checkpoint.
    bool careful = false;
    bool checkpoint_failing = false;  // the last checkpoint failed (said once, not every round)
    // The state is more than a checkpoint carries: not tried again before this (each try exports
    // and seals the whole state).
    std::chrono::steady_clock::time_point too_large_until{};
  };
  using Clock = std::chrono::steady_clock;
  // A call into the enclave, from any thread (the relay's, the processing thread's).
  Result<crypto::Bytes> CallEnclave(enclave::Call call, crypto::ByteView request);
  // The processing thread's call: the keeper counts the thread alive for the call's budget, which
  // may be longer than hung_s (lease_keeper.h).
  Result<crypto::Bytes> ProcessingCall(enclave::Call call, crypto::ByteView request);
  Status StepOnce();
  // Partition p's lease is not ours (any more): it is dropped, its lease left to its next owner.
  void LoseLease(uint32_t p);
  Status Rebalance();
  // Restores the partition's stored state into the enclave and fences the previous owner.
  // `state_rev`: the revision of the state entry read (0: none). kCorrupt: the stored state is
  // damaged (the entry, its chunks, or a stream in it).
  Status TakeOver(uint32_t p, uint64_t* state_rev);
  Status ProcessSome(Partition& p);
  // The partition's state, exported in parts (stored through ExportPartsPieces, never copied
  // whole: partition_state.h).
  Result<std::vector<crypto::Bytes>> ExportPartition(const enclave::PartitionSelector& sel);
  // Imports a stored state into the enclave, part by part.
  // Each call is built from the pieces (the chunks as read): the state is held once.
  Status ImportPartition(const enclave::PartitionSelector& sel, const StatePieces& stored);
  // Exports the partition's state and writes it (compare-and-set). kFailedPrecondition: fenced.
  // `clean`: the partition is being handed back (its next owner need not be careful).
  Status Checkpoint(Partition& p, bool clean = false);
  // Rewrites the state entry as last written with the partition's suspect batch and tries, and
  // `inflight`: the batch the enclave is about to get (0: none).
  Status Mark(Partition& p, uint64_t inflight);
  void Drop(uint32_t p, bool delete_lease);
  // The size of the chunks a portable state larger than one message is stored in.
  size_t ChunkBytes() const;
  Status Quarantine(Partition& p, nats::Message& m, const Error& why);
  // Quarantines `m` and moves the partition past it; false if the partition was dropped (the
  // quarantine stream did not store it: the partition starts again from its checkpoint).
  bool QuarantineAndGoOn(Partition& p, nats::Message& m, const Error& why);

  WorkerOptions options_;
  std::string instance_;
  std::array<uint8_t, 8> instance_id_{};  // instance_ in bytes: names the chunks it writes
  // Partitions whose stored state is damaged, and the state entry's revision then: left alone
  // until the entry changes.
  std::map<uint32_t, uint64_t> damaged_;
  std::unique_ptr<nats::Connection> nats_;
  std::unique_ptr<nats::KeyValue> leases_, state_, workers_;
  std::unique_ptr<StateBucket> bucket_;  // state_, as the chunk store sees it
  std::unique_ptr<ChunkStore> chunks_;
  std::unique_ptr<nats::Connection::Service> relay_;
  std::mutex enclave_mu_;
  std::unique_ptr<EnclaveTransport> enclave_;
  bool provisioned_ = false;
  std::map<uint32_t, Partition> owned_;
  Clock::time_point last_rebalance_{};
  // Declared after nats_: it stops, and lets go of its handles, before the connection closes.
  std::unique_ptr<LeaseKeeper> keeper_;
  mutable std::mutex counters_mu_;
  WorkerCounters counters_;
};

// Creates the streams and buckets of the cluster's layout (idempotent): gateways and workers
// both call it at start. `replicas`: 3 on a 3-node cluster; 1 on a single node.
Status EnsureClusterLayout(nats::Connection& connection, int replicas, double lease_s);

}  // namespace medstream::host
