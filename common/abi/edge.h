// common/abi/edge.h: the one declared interface between the untrusted host and the enclave.
//
// Like an SGX EDL file, this is the complete list of ways in: a versioned set of calls, each with
// a size cap, checked against an allow-list on the trusted side before anything is parsed. The
// host never calls enclave code any other way, in every backend (inproc dispatches in-process
// through the same checks; process sends the same frames over a socketpair). There are no
// ocalls: the enclave asks the host for nothing. What it needs from its platform (quotes, the
// sealing root, monotonic counters, the clock) is declared in enclave/core/platform.h.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "algo/hrv/jobs.h"
#include "common/base/bytes.h"
#include "common/crypto/crypto.h"

namespace medstream::enclave {

// 2: checkpoint and restore in parts (CheckpointRequest, CheckpointPart, RestoreProgress).
// 3: a partition's streams exported and imported in parts (ExportRequest, ExportPart,
// ImportRequest).
inline constexpr uint16_t kEdgeVersion = 3;

enum class Call : uint16_t {
  kInfo = 1,          // -> EnclaveInfo
  kHandshake = 2,     // ClientHello -> ServerHello (with evidence)
  kChannel = 3,       // session id u64 | channel record -> channel record
  kProcessBatch = 4,  // encrypted batch file -> encrypted result file
  kCheckpoint = 5,    // CheckpointRequest -> CheckpointPart (version = committed + 1)
  kCommit = 6,        // version u64: the host has stored that checkpoint durably
  kRestore = 7,       // one sealed part of a checkpoint, in order -> RestoreProgress
  kStats = 8,         // -> EnclaveStats
  kShutdown = 9,      // -> () and the enclave exits
  // The data lake (enclave/lake/lake.h):
  kLakeLoad = 10,     // kind u8 (1 manifest, 2 page, 3 done) | key string | sealed blob -> ()
  kLakeRequest = 11,  // session id u64 | channel record -> LakeResponse
  kLakeCommit = 12,   // version u64: the host stored that manifest durably -> the withheld record
  // The cluster's portable state (docs/scale-out.md):
  kExportStreams = 13,  // ExportRequest -> ExportPart (a part of the partition's streams)
  // ImportRequest (a part of an export, in order) -> (): once the last part is in, the
  // partition's streams become exactly those of the export (none: the partition starts afresh)
  kImportStreams = 14,
};

// Which relay may forward a call from outside the host: the server's relay socket (gateways: the
// handshake, their channel, stats) and the lake's (lake clients). Never batches, checkpoints,
// restores, commits, lake loads or shutdown: those are the host's own, and a client that could
// send them could replay or roll back state.
enum Relay : uint8_t {
  kHostOnly = 0,
  kServerRelay = 1 << 0,
  kLakeRelay = 1 << 1,
};

// A call's caps: request and response sizes, checked on both sides before anything is parsed or
// allocated, and its time budget (budget_s + budget_s_per_mib x request MiB), after which the
// host's watchdog kills the enclave process (the process backend) so that one input can never
// stall every other stream. Budgets are generous (a 65 MiB hrv-full batch needs about 12 s on one
// core; the budget gives it 160 s) since a false alarm costs a restart and a retry.
// Which identity a sealed blob is bound to (chosen by the host at launch, part of the ABI):
// this exact enclave build, or any build of its signer (upgrades can unseal).
enum class SealPolicy : uint8_t { kMrEnclave = 1, kMrSigner = 2 };

struct CallSpec {
  Call call;
  std::string_view name;
  uint64_t max_request;
  uint64_t max_response;
  double budget_s = 30;
  double budget_s_per_mib = 0;
  uint8_t relays = kHostOnly;  // Relay bits: who may forward it
};

inline constexpr uint64_t kMiB = 1 << 20;
inline constexpr std::array kCalls = {
    CallSpec{Call::kInfo, "info", 0, 4096, 30, 0, kServerRelay | kLakeRelay},
    CallSpec{Call::kHandshake, "handshake", 1024, 64 * 1024, 30, 0, kServerRelay | kLakeRelay},
    CallSpec{Call::kChannel, "channel", 64 * 1024, 64 * 1024, 30, 0, kServerRelay | kLakeRelay},
    CallSpec{Call::kProcessBatch, "process_batch", 65 * kMiB, 130 * kMiB, 30, 2},
    CallSpec{Call::kCheckpoint, "checkpoint", 4, 1024 * kMiB, 300},
    CallSpec{Call::kCommit, "commit", 8, 0, 30},
    CallSpec{Call::kRestore, "restore", 1024 * kMiB, 1, 60, 1},
    CallSpec{Call::kStats, "stats", 0, 4096, 30, 0, kServerRelay},
    CallSpec{Call::kShutdown, "shutdown", 0, 0, 30},
    CallSpec{Call::kLakeLoad, "lake_load", 64 * kMiB, 0, 30, 1},
    CallSpec{Call::kLakeRequest, "lake_request", 64 * kMiB, 128 * kMiB, 300, 2, kLakeRelay},
    CallSpec{Call::kLakeCommit, "lake_commit", 8, 128 * kMiB, 30},
    CallSpec{Call::kExportStreams, "export_streams", 16, 1024 * kMiB, 300},
    CallSpec{Call::kImportStreams, "import_streams", 1024 * kMiB, 0, 60, 1},
};
// A call's caps, for compile-time checks that what it carries fits (0 for a value not a call).
constexpr uint64_t MaxRequest(Call call) {
  for (const CallSpec& spec : kCalls) {
    if (spec.call == call) return spec.max_request;
  }
  return 0;
}
constexpr uint64_t MaxResponse(Call call) {
  for (const CallSpec& spec : kCalls) {
    if (spec.call == call) return spec.max_response;
  }
  return 0;
}
inline double CallBudgetSeconds(const CallSpec& spec, uint64_t request_bytes) {
  return spec.budget_s + spec.budget_s_per_mib * static_cast<double>(request_bytes) / kMiB;
}
// The allow-list: nullptr for an id that is not a call.
const CallSpec* FindCall(uint16_t id);
// Whether `relay` may forward call `id` (false for an id that is not a call).
bool RelayMayForward(Relay relay, uint16_t id);

// Frames on the process backend's socket (all integers little-endian):
//   request:  "MSEQ" | edge version u16 | call id u16 | payload length u64 | payload
//   response: "MSER" | edge version u16 | status u16   | payload length u64 | payload
// status 0 is success; otherwise it is 1 + Error::Code and the payload is the error message.
// Large payloads travel through a shared memory region instead (the process backend maps a memfd
// on both sides): bit 15 of the call id / status is then set, the frame carries no payload bytes,
// and the payload lies at offset 0 (requests) or kSharedResponseOffset (responses). The region
// only ever holds what the socket would have carried (ciphertext), and the enclave copies every
// byte it reads into its own memory once, before reading it (a batch a segment at a time as it is
// authenticated, other requests whole), so the host cannot change it underneath. The host reads
// a batch file straight into the region and writes a result straight from it (no host copies).
inline constexpr size_t kFrameHeaderSize = 16;
inline constexpr uint16_t kSharedPayloadFlag = 0x8000;
inline constexpr size_t kSharedThreshold = 64 * 1024;
inline constexpr size_t kSharedResponseOffset = size_t{72} << 20;
inline constexpr size_t kSharedSize = size_t{208} << 20;
// A process_batch request is delivered while the enclave already works on it: the host sends the
// frame as soon as it knows the file's size and then reads the file into the region, publishing in
// the progress word (its own page, at the region's end) how many leading bytes are in place. The
// enclave reads no byte the word does not yet cover, so the host's read overlaps the enclave's
// wake-up, decryption and analysis instead of preceding them. The word is only a hint: bytes it
// covers are still copied once and authenticated before use, and a host that lies about it gains
// nothing it could not do by writing the region at any time. kSharedFillFailed: the host could not
// deliver the rest (the enclave gives up on the batch, leaving no trace).
inline constexpr size_t kSharedProgressOffset = kSharedSize - 4096;
inline constexpr uint64_t kSharedFillFailed = ~uint64_t{0};
// The region's progress word (8-byte aligned; lock-free, so it works across the two processes).
inline std::atomic_ref<uint64_t> SharedProgress(uint8_t* shared) {
  return std::atomic_ref<uint64_t>(*reinterpret_cast<uint64_t*>(shared + kSharedProgressOffset));
}
// Both ends poll the socket this long before they block (SpinUntilReadable): the host for an
// answer, the enclave for the next call (a batch is followed by its checkpoint's calls).
inline constexpr int kChannelSpinMicros = 100;
void EncodeFrameHeader(bool request, uint16_t call_or_status, uint64_t length, uint8_t* out);
struct FrameHeader {
  uint16_t call_or_status = 0;
  uint64_t length = 0;
};
Result<FrameHeader> DecodeFrameHeader(bool request, std::span<const uint8_t> in);
Error ErrorFromStatus(uint16_t status, std::string_view message);
uint16_t StatusFromError(const Error& e);

// kChannel's and kLakeRequest's request: a session's channel record (the session id comes from the
// handshake). `record` is a view into the decoded buffer.
struct SessionRecord {
  uint64_t session = 0;
  std::span<const uint8_t> record;
  crypto::Bytes Encode() const;
  static Result<SessionRecord> Decode(std::span<const uint8_t> b);
};

// kCommit's and kLakeCommit's request: the checkpoint (or lake manifest) version the host has
// durably stored, which the enclave then makes its monotonic counter's value.
struct CommitVersion {
  uint64_t version = 0;
  crypto::Bytes Encode() const;
  // Exactly 8 bytes (kCorrupt otherwise).
  static Result<CommitVersion> Decode(std::span<const uint8_t> b);
};

// The enclave's stream state is checkpointed in parts, so that however many streams it holds, no
// call carries more than one part (a part is about kCheckpointPartBytes of state, or one stream's
// state when that is larger: streams::kMaxSavedStreamBytes, which fits the call's cap). Part 0
// holds the keys and counts; the others hold streams. Each part is sealed with the checkpoint's
// version and names the SHA-256 of the sealed part before it, and the last says it is the last,
// so a restore refuses parts missing, reordered or mixed from two checkpoints.
inline constexpr size_t kCheckpointPartBytes = 64 * kMiB;
// The host's bound on the parts of one checkpoint (a loop bound: 64 TiB of state).
inline constexpr uint32_t kMaxCheckpointParts = 1u << 20;
// kCheckpoint's request: the part wanted. Part 0 starts a checkpoint (a new snapshot, dropping one
// in progress); part n follows part n - 1 of the same checkpoint, and is refused
// (kFailedPrecondition) when the streams changed since part 0: start again at part 0.
struct CheckpointRequest {
  uint32_t part = 0;
  crypto::Bytes Encode() const;
  // Exactly 4 bytes (kCorrupt otherwise).
  static Result<CheckpointRequest> Decode(std::span<const uint8_t> b);
};
// kCheckpoint's answer: the sealed part, the checkpoint's version (what kCommit names once every
// part is stored) and whether it is the last part. `sealed` is a view into the decoded buffer.
struct CheckpointPart {
  bool last = false;
  uint64_t version = 0;
  std::span<const uint8_t> sealed;
  crypto::Bytes Encode() const;
  static Result<CheckpointPart> Decode(std::span<const uint8_t> b);
};
// kRestore's answer: 1 once the part given was the last (the state is restored), 0 while more are
// expected. A checkpoint from before parts (one sealed blob) is restored by one call.
struct RestoreProgress {
  bool complete = false;
  crypto::Bytes Encode() const;
  // Exactly 1 byte, 0 or 1 (kCorrupt otherwise).
  static Result<RestoreProgress> Decode(std::span<const uint8_t> b);
};

// kExportStreams' request: the streams whose wire::PartitionOf(stream, partitions) is
// `partition`. partitions in [1, kMaxPartitions], partition below it (kInvalidArgument otherwise).
inline constexpr uint32_t kMaxPartitions = 4096;
struct PartitionSelector {
  uint32_t partition = 0;
  uint32_t partitions = 1;
  crypto::Bytes Encode() const;
  // Exactly 8 bytes (kCorrupt otherwise).
  static Result<PartitionSelector> Decode(std::span<const uint8_t> b);
};

// A partition's streams leave the enclave in parts (kExportStreams) and enter another in parts
// (kImportStreams), as the checkpoint does, so that no partition is too large to move: a part
// holds streams until it passes its part size (at most kCheckpointPartBytes), so at most that and
// one stream's state (compile-time checks in enclave/core/stream_service.cc). Each part is a
// portable state of its own (the partition's header, then its streams, each sealed under a key
// derived from its data key).
// kExportStreams' request: the partition, the part wanted and the part size. Part 0 starts an
// export (a snapshot of which streams the partition has, dropping one in progress); part n
// follows part n - 1 of the same export and is refused (kFailedPrecondition) when the streams
// changed since part 0: start again at part 0. part_bytes 0, or more than kCheckpointPartBytes:
// kCheckpointPartBytes.
struct ExportRequest {
  PartitionSelector selector;
  uint32_t part = 0;
  uint32_t part_bytes = 0;
  crypto::Bytes Encode() const;
  // Exactly 16 bytes (kCorrupt otherwise; the selector as PartitionSelector::Decode).
  static Result<ExportRequest> Decode(std::span<const uint8_t> b);
};
// kExportStreams' answer: whether this is the last part, then the part (a view into the decoded
// buffer).
struct ExportPart {
  bool last = false;
  std::span<const uint8_t> portable;
  crypto::Bytes Encode() const;
  static Result<ExportPart> Decode(std::span<const uint8_t> b);
};
// kImportStreams' request: part `part` of an export of the partition, and whether it is the last.
// Nothing changes until the last part is in; a part out of order, for another partition, a stream
// given twice, or a batch or export between two parts drops what was imported so far (kCorrupt,
// kFailedPrecondition). An empty `portable` (part 0, last) makes the partition start afresh.
inline constexpr size_t kImportHeaderBytes = 13;
struct ImportRequest {
  PartitionSelector selector;
  uint32_t part = 0;
  bool last = true;
  std::span<const uint8_t> portable;
  crypto::Bytes Encode() const;
  // Encode()'s bytes for a request whose portable state is the concatenation of `pieces` (a
  // stored state read back in chunks), without joining the pieces first.
  static crypto::Bytes EncodePieces(const PartitionSelector& selector, uint32_t part, bool last,
                                    std::span<const crypto::ByteView> pieces);
  static Result<ImportRequest> Decode(std::span<const uint8_t> b);
};

// kLakeLoad's request: the host hands the enclave its stored blobs in order, the manifest first,
// then each page, then kDone. `blob` is a view into the decoded buffer.
enum class LakeLoadKind : uint8_t { kManifest = 1, kPage = 2, kDone = 3 };
inline constexpr size_t kMaxLakeKey = 256;
struct LakeLoad {
  LakeLoadKind kind = LakeLoadKind::kDone;
  std::string key;  // the store's key ("manifest", "page/<id>/<n>", "overlap/..."), <= kMaxLakeKey
  std::span<const uint8_t> blob;
  crypto::Bytes Encode() const;
  // kInvalidArgument for an unknown kind; kCorrupt (truncated) or kResourceExhausted (key too
  // long).
  static Result<LakeLoad> Decode(std::span<const uint8_t> b);
};

// kLakeRequest's response: the channel record for the client, then what the host must store
// (sealed blobs; an empty blob deletes its key), and whether a new manifest version must be
// committed once stored.
struct LakeResponse {
  crypto::Bytes record;
  uint64_t version = 0;
  bool mutated = false;
  std::vector<std::pair<std::string, crypto::Bytes>> writes;
  crypto::Bytes Encode() const;
  static Result<LakeResponse> Decode(std::span<const uint8_t> b);
};

// What a data owner provisions for a key: the key and how its streams are analysed. The analysis
// configuration travels with the key, over the attested channel, so the host cannot change it.
struct StreamConfig {
  std::vector<hrv::JobKind> jobs = {hrv::JobKind::kSdnn};
  hrv::WindowOptions windows;
  bool clean = true;
  hrv::SpectralMethod spectral = hrv::SpectralMethod::kWelch;
  hrv::AnalysisOptions Analysis() const;
  void Encode(ByteWriter* w) const;
  static Result<StreamConfig> Decode(ByteReader* r);
};

// Messages inside application records of the attested channel.
enum class ChannelMessage : uint8_t { kProvisionKey = 1, kOk = 2, kError = 3 };
struct ProvisionKey {
  uint32_t key_id = 0;
  crypto::Key256 key;
  StreamConfig config;
  crypto::Bytes Encode() const;
  static Result<ProvisionKey> Decode(std::span<const uint8_t> b);
};

struct EnclaveInfo {
  uint16_t edge_version = kEdgeVersion;
  std::string backend;  // "inproc" or "process"
  bool simulated = true;
  bool debug = false;
  crypto::Digest mr_enclave{};
  crypto::Digest mr_signer{};
  uint16_t isv_prod_id = 0;
  uint16_t isv_svn = 0;
  std::string note;  // an honest one-line statement of what protects this enclave
  crypto::Bytes Encode() const;
  static Result<EnclaveInfo> Decode(std::span<const uint8_t> b);
};

struct EnclaveStats {
  uint64_t batches_ok = 0;
  uint64_t batches_refused = 0;
  uint64_t beats = 0;
  uint64_t streams = 0;
  uint64_t sessions = 0;
  uint64_t keys = 0;
  uint64_t checkpoint_version = 0;
  crypto::Bytes Encode() const;
  static Result<EnclaveStats> Decode(std::span<const uint8_t> b);
};

}  // namespace medstream::enclave
