// wire: the byte formats that cross the untrusted host.
//
// A micro-batch is one stream's beats for one sequence number:
//   header (40 bytes, authenticated as AES-GCM AAD when encrypted)
//     magic "MSB1" | version u16 | flags u16 | key id u32 | stream id (16) | seq u64 | payload u32
//   payload: the beats as packed (f64 time s, f64 RR ms) pairs, count = payload bytes / 16,
//   AES-256-GCM encrypted (ciphertext || tag) unless it is a vanilla-mode plaintext batch. With no
//   count field, the enclave decrypts straight into its beat array: no copy of a large batch.
// A result file has the same header with magic "MSR1" and carries the jobs' outputs.
// Each stream gets its own key, HKDF(data key, salt = stream id); the nonce is a direction tag and
// the sequence number, so (key, nonce) never repeats as long as sequence numbers do not.
// The stream id is a pseudonym chosen by the data owner: the host learns which batches belong
// together, not whose they are.
#pragma once

#include <array>
#include <span>
#include <vector>

#include "base/bytes.h"
#include "crypto/crypto.h"
#include "hrv/jobs.h"

namespace medstream::wire {

using crypto::Bytes;
using crypto::ByteView;
using StreamId = std::array<uint8_t, 16>;

inline constexpr uint16_t kWireVersion = 1;
inline constexpr uint16_t kFlagEncrypted = 1;
inline constexpr size_t kHeaderSize = 40;
inline constexpr size_t kMaxBatchBytes = size_t{64} << 20;  // 64 MiB of payload

enum class Kind { kBatch, kResult };

struct Header {
  Kind kind = Kind::kBatch;
  uint16_t version = kWireVersion;
  uint16_t flags = kFlagEncrypted;
  uint32_t key_id = 0;
  StreamId stream{};
  uint64_t seq = 0;
  uint32_t payload_size = 0;
  bool encrypted() const { return flags & kFlagEncrypted; }
  void Encode(Bytes* out) const;
  static Result<Header> Decode(ByteView b);  // reads the first kHeaderSize bytes
};

std::string StreamName(const StreamId& id);  // hex, for file names and logs (a pseudonym)
Result<StreamId> ParseStreamName(std::string_view hex);

// The per-stream key derived from a provisioned data key.
Result<crypto::Key256> StreamKey(const crypto::Key256& data_key, const StreamId& stream);
// Nonce for a batch (client -> enclave) or its result (enclave -> client).
std::array<uint8_t, 12> Nonce(Kind kind, uint64_t seq);

void EncodeBeats(std::span<const hrv::Beat> beats, Bytes* out);
Result<std::vector<hrv::Beat>> DecodeBeats(ByteView b);

// What one batch produced, per job, plus sequence bookkeeping.
struct BatchResult {
  uint64_t beats = 0;           // beats in the batch
  uint64_t missing_before = 0;  // sequence numbers skipped before this batch (a reported gap)
  std::vector<std::pair<hrv::JobKind, hrv::JobOutput>> jobs;
};
void EncodeResult(const BatchResult& r, Bytes* out);
Result<BatchResult> DecodeResult(ByteView b);

// Batch files: the header and the beats, sealed with the stream key (plain when `gcm` is null).
Result<Bytes> MakeBatchFile(Header header, std::span<const hrv::Beat> beats, crypto::AesGcm* gcm);
// Checks and opens a batch file into `beats` (its capacity is reused).
Result<Header> OpenBatchInto(ByteView file, crypto::AesGcm* gcm, std::vector<hrv::Beat>* beats);

// Whole files: header + payload, sealed with the stream key (or plain when `gcm` is null).
Result<Bytes> MakeFile(Header header, ByteView payload, crypto::AesGcm* gcm);
// Checks the header and opens the payload (authenticating the header as AAD).
struct Opened {
  Header header;
  Bytes payload;
};
Result<Opened> OpenFile(ByteView file, Kind expected, crypto::AesGcm* gcm);

}  // namespace medstream::wire
