// streams: the analytics behind every backend: per-stream sequence checking and job state. The
// enclave runs it on decrypted batches; vanilla mode (host/server/vanilla.h) runs the very same
// code on plaintext ones, which is why it lives in common/ and not in the trusted core. It does no
// I/O and no crypto: beats in, wire::BatchResult out. Thread-compatible (one table per thread).
#pragma once

#include <functional>
#include <map>
#include <memory>

#include "common/abi/edge.h"
#include "common/wire/wire.h"

namespace medstream::streams {

using enclave::StreamConfig;

class StreamTable {
 public:
  // Runs `config`'s jobs over the beats of batch `seq` of `stream`. Sequence numbers start at 1
  // and must increase: a batch at or below the last one processed is refused as a replay; a jump
  // is processed and reported (missing_before) so the client sees the gap.
  Result<wire::BatchResult> Process(const wire::StreamId& stream, uint64_t seq, uint32_t key_id,
                                    const StreamConfig& config, std::span<const hrv::Beat> beats);

  // The same in steps, for a batch whose beats become available (authenticated) piece by piece:
  // Begin checks the sequence and remembers the stream's state, Push feeds beats (pieces of any
  // size: windows are computed in parallel once per RollingAnalyzer::kParallelPieceBeats beats,
  // and the rest at Commit), Commit ends the batch; Abort puts the stream back exactly as it was
  // before Begin (a later segment failed authentication, so nothing computed from this batch may
  // stand).
  class Batch;
  Result<Batch> Begin(const wire::StreamId& stream, uint64_t seq, uint32_t key_id,
                      const StreamConfig& config);
  void Push(Batch& batch, std::span<const hrv::Beat> beats);
  wire::BatchResult Commit(Batch& batch);
  void Abort(Batch& batch);

  // Windows a chunk completes are computed on `parallel`'s workers (owned by the caller, outliving
  // the table; null: on this thread). Results are bit-identical either way.
  void set_parallel(hrv::Parallel* parallel) { parallel_ = parallel; }

  size_t size() const { return streams_.size(); }
  uint64_t LastSeq(const wire::StreamId& stream) const;

  // The most SaveStream writes for one stream: its id, sequence number, key id and job count, and
  // each job's state (hrv::StreamJob::kMaxStateBytes).
  static constexpr uint64_t kMaxSavedStreamBytes =
      16 + 8 + 4 + 1 + hrv::kAllJobs.size() * hrv::StreamJob::kMaxStateBytes;

  // Checkpoint: every stream's sequence number, key id and job state. `config_of` maps a key id
  // back to its provisioned configuration (restored first).
  void Save(ByteWriter* w) const;
  Status Load(ByteReader* r, const std::function<const StreamConfig*(uint32_t)>& config_of);
  // One stream's part of a checkpoint, alone (the cluster's portable state, docs/scale-out.md):
  // SaveStream writes what Save writes for it (kNotFound: no such stream); LoadStream reads one
  // such record and returns it, and Put then replaces (or adds) that stream.
  struct Saved;
  Status SaveStream(const wire::StreamId& id, ByteWriter* w) const;
  Result<Saved> LoadStream(ByteReader* r,
                           const std::function<const StreamConfig*(uint32_t)>& config_of) const;
  void Put(Saved saved);
  void Erase(const wire::StreamId& id) { streams_.erase(id); }
  std::vector<wire::StreamId> Ids() const;

 private:
  struct Stream {
    uint64_t last_seq = 0;
    uint32_t key_id = 0;
    std::vector<hrv::StreamJob> jobs;
  };

 public:
  struct Saved {
    wire::StreamId id{};
    uint32_t key_id() const { return stream.key_id; }
    uint64_t last_seq() const { return stream.last_seq; }

   private:
    friend class StreamTable;
    Stream stream;
  };
  class Batch {
   private:
    friend class StreamTable;
    wire::StreamId id{};
    uint64_t seq = 0;
    const StreamConfig* config = nullptr;
    bool created = false;    // the stream did not exist before this batch
    crypto::Bytes snapshot;  // its job states before this batch otherwise
    wire::BatchResult result;
  };

 private:
  // The workers for a job: one engine per worker for the job kind and spectral method (engines[w]
  // is worker w's) and the table's pool.
  hrv::WindowWorkers Workers(hrv::JobKind kind, const StreamConfig& config);
  static void SaveOne(const wire::StreamId& id, const Stream& s, ByteWriter* w);

  std::map<wire::StreamId, Stream> streams_;
  struct EngineSet {
    std::vector<std::unique_ptr<hrv::MetricsEngine>> owned;
    std::vector<hrv::MetricsEngine*> ptrs;
  };
  std::map<std::pair<int, int>, EngineSet> engines_;
  hrv::Parallel* parallel_ = nullptr;
};

}  // namespace medstream::streams
