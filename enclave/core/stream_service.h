// stream_service: the enclave's stream analytics: the data owner's provisioned keys, each
// stream's rolling state (common/streams), batches decrypted, analysed and their results sealed,
// and the sealed, rollback-protected checkpoint of all of it (a monotonic counter names the
// latest). Reached through EnclaveCore::Handle only. Not thread-safe: one caller; its own worker
// thread authenticates later segments while the caller analyses earlier ones, and a pool of
// analysis threads (one per CPU) computes the windows a segment completes in parallel.
#pragma once

#include <algorithm>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>

#include "common/abi/edge.h"
#include "common/base/memory.h"
#include "common/streams/pool.h"
#include "common/streams/streams.h"
#include "enclave/core/platform.h"
#include "enclave/core/sealing.h"
#include "enclave/core/worker.h"

namespace medstream::enclave {

class StreamService {
 public:
  // `platform` must outlive the service; `self` and `policy` seal the checkpoints. The windows of
  // a batch are analysed on `analysis_threads` threads (0: one per CPU), all started here.
  StreamService(Platform* platform, SealIdentity self, SealPolicy policy,
                size_t analysis_threads = 0)
      : platform_(platform), self_(std::move(self)), policy_(policy), pool_(analysis_threads) {
    streams_.set_parallel(&pool_);
  }

  // A key provisioned over an attested channel (an application message of the channel).
  Result<crypto::Bytes> Provision(crypto::ByteView message);

  // Decrypts, analyses and seals one batch held in private memory.
  Result<crypto::Bytes> ProcessBatch(crypto::ByteView request);
  // The same for a batch of `size` bytes the host left in untrusted shared memory, which it can
  // rewrite at any time. Nothing is read there twice: the header, then each segment just before
  // it is authenticated, is copied once into private staging and only the copy is used. So the
  // batch crosses with one copy, a segment (256 KiB) at a time and cache-warm when decrypted,
  // and the enclave holds no private copy of the whole ciphertext. The host may still be writing
  // the batch: a byte is read only once `delivered`, the region's progress word (edge.h,
  // SharedProgress), covers it. kIo when the host reports it could not deliver the rest,
  // kDeadlineExceeded when it has not delivered it within the call's time budget (both leave the
  // stream as it was).
  Result<crypto::Bytes> ProcessSharedBatch(const uint8_t* shared, size_t size,
                                           std::atomic_ref<uint64_t> delivered);
  // The sealed state, in parts (edge.h: CheckpointRequest, CheckpointPart), so that no call
  // carries more than about kCheckpointPartBytes however many streams there are. Part 0 takes a
  // snapshot of which streams there are; a batch or import before the last part makes the next
  // part refused (kFailedPrecondition: start again). After the last part, Commit(version) once
  // the host has stored every part.
  Result<crypto::Bytes> Checkpoint(crypto::ByteView request);
  // Parts of about `bytes` instead (tests: many parts from a few streams); at most
  // kCheckpointPartBytes, which the caps are checked against.
  void set_checkpoint_part_bytes(size_t bytes) {
    part_bytes_ = std::clamp<size_t>(bytes, 1, kCheckpointPartBytes);
  }
  Result<crypto::Bytes> Commit(crypto::ByteView request);
  // One part of a stored checkpoint, in order (RestoreProgress: complete after the last). Nothing
  // changes until the last part is in; a part missing, out of order, from another checkpoint or
  // older than the committed version (kRolledBack) drops what was restored so far. Also takes a
  // checkpoint from before parts (one blob).
  Result<crypto::Bytes> Restore(crypto::ByteView request);
  // The cluster's portable state (docs/scale-out.md), in parts (edge.h: ExportRequest,
  // ExportPart, ImportRequest), so that no partition is too large to move. Export: the streams of
  // one partition, each sealed under a key derived from its provisioned data key, not this
  // machine's sealing key, so that any worker the data owner attested and provisioned can import
  // them and continue the streams exactly. Part 0 takes a snapshot of which streams the partition
  // has; a batch or import before the last part makes the next part refused
  // (kFailedPrecondition: start again). Import, part by part in order: once the last part is in,
  // the partition's streams become exactly the exported ones (streams of the partition it does
  // not hold are forgotten: a worker that owned the partition before and ran ahead of the last
  // checkpoint starts from the checkpoint again). Nothing changes before the last part. Every
  // stream's key must be provisioned here (kFailedPrecondition otherwise); a part out of order,
  // for another partition, a stream given twice, or an entry that fails to open refuses the
  // import (kCorrupt) and drops its parts so far; a batch between two parts, too
  // (kFailedPrecondition).
  Result<crypto::Bytes> ExportStreams(crypto::ByteView request);
  Result<crypto::Bytes> ImportStreams(crypto::ByteView request);
  // Counts of batches, beats, streams and keys (sessions filled in by the caller).
  EnclaveStats Stats() const;

 private:
  // A private view of bytes [offset, offset + n) of the request, valid until `staging` is reused.
  using Reader =
      std::function<Result<crypto::ByteView>(size_t offset, size_t n, crypto::Bytes* staging)>;
  Result<crypto::Bytes> ProcessBatchFrom(size_t size, const Reader& read);
  struct KeyEntry;
  void WriteKeys(ByteWriter* w) const;
  static Status ReadKeys(ByteReader* r, std::map<uint32_t, KeyEntry>* keys);
  Result<bool> RestorePart(crypto::ByteView request);
  // Opens one import part's streams into import_ (kCorrupt, or kFailedPrecondition for a key
  // not provisioned).
  Status StageImportPart(const ImportRequest& req);
  void TrimToRecentWork(size_t batch_bytes);
  // The stream's cipher for this thread, or for the worker thread.
  Result<crypto::AesGcm*> StreamCipher(uint32_t key_id, const wire::StreamId& stream,
                                       bool for_worker = false);

  Platform* platform_;
  SealIdentity self_;
  SealPolicy policy_;
  struct KeyEntry {
    crypto::Key256 key;
    StreamConfig config;
    std::map<wire::StreamId, std::unique_ptr<crypto::AesGcm>> ciphers;
    std::map<wire::StreamId, std::unique_ptr<crypto::AesGcm>> worker_ciphers;  // the worker's
  };
  std::map<uint32_t, KeyEntry> keys_;
  streams::ThreadPool pool_;  // before streams_, which uses it
  streams::StreamTable streams_;
  EnclaveStats stats_;
  uint64_t pending_checkpoint_ = 0;
  // Bumped whenever the streams may change (a batch, an import, a restore), so a checkpoint in
  // parts notices that its parts would mix two moments.
  uint64_t generation_ = 0;
  size_t part_bytes_ = kCheckpointPartBytes;
  // An export in parts: the partition's streams at part 0, in the order the parts hold them.
  struct ExportCursor {
    PartitionSelector selector;
    uint64_t generation = 0;
    std::vector<wire::StreamId> ids;
    size_t next_stream = 0;
    uint32_t next_part = 0;
  };
  std::optional<ExportCursor> export_;
  // An import in parts: nothing of it is used until its last part is in.
  struct ImportStaging {
    PartitionSelector selector;
    uint64_t generation = 0;
    uint32_t next_part = 0;
    std::set<wire::StreamId> ids;
    std::vector<streams::StreamTable::Saved> streams;
  };
  std::optional<ImportStaging> import_;
  struct CheckpointCursor {
    uint64_t version = 0;
    uint64_t generation = 0;          // generation_ at part 0
    std::vector<wire::StreamId> ids;  // the streams at part 0, in the order the parts hold them
    size_t next_stream = 0;
    uint32_t next_part = 0;
    crypto::Digest prev{};  // SHA-256 of the last sealed part
  };
  std::optional<CheckpointCursor> checkpoint_;
  // A checkpoint being restored: nothing of it is used until its last part is in.
  struct RestoreCursor {
    uint64_t version = 0;
    uint32_t next_part = 0;
    crypto::Digest prev{};
    std::map<uint32_t, KeyEntry> keys;
    streams::StreamTable streams;
    std::array<uint64_t, 3> stats{};  // batches ok, refused, beats
    uint64_t streams_expected = 0;
    std::function<const StreamConfig*(uint32_t)> ConfigOf() const {
      return [this](uint32_t id) -> const StreamConfig* {
        auto it = keys.find(id);
        return it == keys.end() ? nullptr : &it->second.config;
      };
    }
  };
  std::unique_ptr<RestoreCursor> restore_;
  // Reused across batches: large fresh buffers cost more in page faults than the analytics. A
  // mapping of its own, given back once recent batches need a quarter of it or less
  // (TrimToRecentWork), which the heap could not do with the enclave's memory locked.
  MappedBuffer<hrv::Beat> beats_;
  RecentPeak recent_batch_bytes_;
  // ProcessSharedBatch's private copies (ciphertext only): the header, and the segment each
  // thread is authenticating (the caller's, the worker's).
  crypto::Bytes head_;
  crypto::Bytes staging_[2];
  Worker worker_;
};

}  // namespace medstream::enclave
