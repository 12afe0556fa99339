// partition_state: how a cluster partition's state is kept in the state bucket
// (docs/scale-out.md): the state entry (which batch comes next, a batch enclaves died on, the
// reading consumer, the enclave's sealed portable state) and, when that portable state does not
// fit one message of the cluster, its chunks beside the entry (ChunkStore). Written against a
// small StateBucket interface, so every rule here is unit-tested in-process
// (partition_state_test.cc); the worker passes its NATS bucket (NatsStateBucket).
//
// Guarantees:
//  * What comes from the bucket is hostile (any holder of the worker role can write it): every
//    decode is bounded and refuses what it cannot read with kCorrupt, never guessing a state.
//  * An entry never names chunks that are incomplete or being rewritten: a writer writes the slot
//    the entry (as it last wrote it) does not name, and only then does the entry's
//    compare-and-set (the worker's) name it. A writer fenced without knowing it therefore cannot
//    spoil the chunks the current entry names.
//  * A stored state comes back only whole: every chunk present and the whole matching the
//    manifest's size and SHA-256.
//
// Thread-safety: none. One ChunkStore per worker, used from the thread that steps it.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "adapters/nats/nats.h"
#include "common/abi/edge.h"
#include "common/base/result.h"
#include "common/crypto/crypto.h"

namespace medstream::host {

// The state entry of a partition: next batch stream sequence u64 | suspect batch sequence u64 |
// its tries u32 | in-flight batch sequence u64 | clean u8 | the reading consumer's name | the
// enclave's portable state of the partition, or the manifest of its chunks (opaque here; empty:
// nothing yet). "Suspect": the batch enclaves died or hung on, and how many times
// (kMaxBatchAttempts bounds it). "In flight": the batch a careful owner handed its enclave last
// (0: none); if the owner dies, the next one counts it as a try on that batch (Decode does).
// "Clean": the owner handed the partition back (Release, rebalancing) rather than died.
struct StateEntry {
  uint64_t next_seq = 1;
  uint64_t suspect_seq = 0;
  uint32_t suspect_tries = 0;
  uint64_t inflight_seq = 0;
  bool clean = false;
  std::string consumer;
  crypto::Bytes portable;
  crypto::Bytes Encode() const;
  static Result<StateEntry> Decode(crypto::ByteView b);
};

// A partition's portable state as the enclave exports it: in parts (edge.h, ExportPart), each a
// portable state of its own ("MSPS"). One part is stored as it is (as before parts); more are
// stored in one container:
//   "MSPM" | part count u32 | for each part: its size u64 | the part
// Read back, every part is checked to fit one import call.
crypto::Bytes EncodeExportParts(const std::vector<crypto::Bytes>& parts);

// A state as the consecutive pieces that make it up (views), so that a state of many parts is
// stored without being copied whole: a worker holds a partition's state once while it checkpoints.
using StatePieces = std::vector<crypto::ByteView>;
// The pieces of EncodeExportParts(parts): views into `parts` and into `framing`, which this fills
// with the container's head and the parts' sizes (both must outlive the pieces).
StatePieces ExportPartsPieces(const std::vector<crypto::Bytes>& parts, crypto::Bytes* framing);
uint64_t TotalBytes(const StatePieces& pieces);
// The state the pieces make up, in one buffer.
crypto::Bytes Join(const StatePieces& pieces);
// The parts the state `stored` holds, in order, each as the pieces of `stored` it lies in (views
// into them, never a copy: a part may span chunks): the state itself if it is not a container (an
// empty state: one empty part). A container that does not decode: kCorrupt.
Result<std::vector<StatePieces>> DecodeExportParts(const StatePieces& stored);
// A container holds at most this many parts (a loop bound; as many as a checkpoint).
inline constexpr uint32_t kMaxExportParts = enclave::kMaxCheckpointParts;

// The largest state stored for one partition (a bound for the chunk manifest, and what a worker
// reads back into its memory): 64 GiB, beyond what the enclave's memory holds.
inline constexpr uint64_t kMaxPortableBytes = uint64_t{64} << 30;

// A portable state stored in chunks: the entry holds this manifest instead of the state.
//   "MSPC" | writer (the worker instance, 8 bytes) | slot u8 | chunk count u32 | bytes u64 |
//   SHA-256 of the state
// Chunk i is key "<partition key>.s.<writer hex>.<slot>.<i>". A portable state starts with
// "MSPS" or "MSPM", never with this magic (and one that did would be stored in chunks).
struct ChunkManifest {
  std::array<uint8_t, 8> writer{};
  uint8_t slot = 0;  // 0 or 1
  uint32_t chunks = 0;
  uint64_t bytes = 0;
  crypto::Digest sha{};
  static bool Is(crypto::ByteView b);
  crypto::Bytes Encode() const;
  // kCorrupt unless it is a manifest of 1..bytes chunks for at most kMaxPortableBytes.
  static Result<ChunkManifest> Decode(crypto::ByteView b);
  // "<partition key>.s.<writer hex>.<slot>." (the chunks' keys add their index).
  std::string KeyPrefix(uint32_t partition) const;
};

// A state read back (ChunkStore::Load): the chunks as they came from the bucket and the pieces of
// the state, views into them (or into the entry's own bytes when the state was not chunked). The
// chunks are not joined into one buffer, which cost a copy of the whole state and reserved up to
// twice its size; the worker builds each import call straight from the pieces, so restoring a
// partition holds its state once plus one call. Movable (a moved vector keeps its buffers).
struct LoadedState {
  std::vector<crypto::Bytes> chunks;
  StatePieces pieces;
};

// What the chunk store needs of the state bucket.
class StateBucket {
 public:
  virtual ~StateBucket() = default;
  virtual Result<crypto::Bytes> Get(const std::string& key) = 0;  // kNotFound if absent
  virtual Status Put(const std::string& key, crypto::ByteView value) = 0;
  virtual Status Delete(const std::string& key) = 0;
  virtual Result<std::vector<std::string>> Keys() = 0;  // those present now
};

// The cluster's state bucket (`kv` outlives it).
std::unique_ptr<StateBucket> NatsStateBucket(nats::KeyValue& kv);

class ChunkStore {
 public:
  // `writer`: this worker instance's id; it names the chunks it writes.
  ChunkStore(StateBucket& bucket, std::array<uint8_t, 8> writer)
      : bucket_(bucket), writer_(writer) {}

  // The portable state (the concatenation of `portable`) as the entry should hold it: itself if
  // it fits `chunk_bytes` (and does not look like a manifest), else the manifest of the chunks
  // written for it, in the slot of this writer that `written` (the entry's state as it is now)
  // does not name. A chunk that lies within one piece is written from it; only a chunk that
  // spans pieces is assembled (one chunk's worth of memory). A state over kMaxPortableBytes:
  // kResourceExhausted. A write that fails deletes what it wrote.
  Result<crypto::Bytes> Store(uint32_t partition, const StatePieces& portable,
                              crypto::ByteView written, size_t chunk_bytes);
  Result<crypto::Bytes> Store(uint32_t partition, crypto::ByteView portable,
                              crypto::ByteView written, size_t chunk_bytes) {
    return Store(partition, StatePieces{portable}, written, chunk_bytes);
  }
  // The portable state `stored` (an entry's) stands for; its pieces may point into `stored`, which
  // must outlive them. A chunk missing: kNotFound; a manifest or chunk damaged, or chunks that do
  // not match the manifest: kCorrupt; the bucket's own errors as they come (kIo,
  // kDeadlineExceeded: transient).
  Result<LoadedState> Load(uint32_t partition, crypto::ByteView stored);
  // Deletes the chunks `stored` names (none if it is not a manifest). Best effort.
  void Delete(uint32_t partition, crypto::ByteView stored);
  // Deletes the partition's chunks other than those `current` names: a previous owner's, and
  // those of a write that lost its compare-and-set. Best effort (the next owner sweeps again).
  void Sweep(uint32_t partition, crypto::ByteView current);

 private:
  StateBucket& bucket_;
  std::array<uint8_t, 8> writer_;
};

}  // namespace medstream::host
