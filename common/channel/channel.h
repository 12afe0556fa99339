// channel: the attested channel between a client (gateway, hospital, analyst) and the enclave.
//
// It replaces the SGX SIGMA / IAS flow of the original work:
//   client -> enclave  ClientHello  {versions, suites, nonce, ephemeral X25519 key}
//   enclave -> client  ServerHello  {version, suite, ephemeral X25519 key, evidence}
//                      where the evidence's REPORTDATA = SHA-256(transcript) || SHA-256(label)
//   client             verifies the evidence (chain, policy) and all 64 bytes of REPORTDATA
//   both               keys = HKDF-SHA256(X25519 secret, salt = transcript, info = direction)
//   client -> enclave  Finished record;  enclave -> client  Finished record (key confirmation)
//   then AES-256-GCM records whose 64-bit counters are the nonces: a replayed, reordered,
//   truncated or modified record is refused.
// The offered versions and suites are in the transcript, so a man in the middle who strips them
// (a downgrade) changes REPORTDATA and is caught by the client.
#pragma once

#include <array>
#include <functional>
#include <optional>
#include <vector>

#include "common/base/result.h"
#include "common/crypto/crypto.h"

namespace medstream::channel {

using crypto::Bytes;
using crypto::ByteView;
using crypto::Digest;

inline constexpr uint16_t kVersion1 = 1;
inline constexpr uint16_t kSuiteX25519Aes256GcmSha256 = 0x0001;
using ReportData = std::array<uint8_t, 64>;

struct ClientHello {
  std::vector<uint16_t> versions;
  std::vector<uint16_t> suites;
  std::array<uint8_t, 32> nonce{};
  std::array<uint8_t, 32> public_key{};
  Bytes Encode() const;
  static Result<ClientHello> Decode(ByteView b);
};

struct ServerHello {
  uint16_t version = 0;
  uint16_t suite = 0;
  uint64_t session_id = 0;
  std::array<uint8_t, 32> public_key{};
  Bytes evidence;
  Bytes EncodeCore() const;  // everything but the evidence: what the transcript covers
  Bytes Encode() const;
  static Result<ServerHello> Decode(ByteView b);
};

// SHA-256 over a label and both hellos (the server's without its evidence).
Digest Transcript(ByteView client_hello, ByteView server_hello_core);
// The REPORTDATA an enclave must put in its evidence for this transcript.
ReportData ReportDataFor(const Digest& transcript);

// Record types.
enum class RecordType : uint8_t { kFinished = 1, kApplication = 2, kError = 3 };

// One side's record protection: seals with its send key and counter, opens with the receive key
// and expects the peer's counter to advance by exactly one.
class RecordLayer {
 public:
  static constexpr size_t kHeaderSize = 9;  // type (1) | sequence number (8)
  static Result<RecordLayer> Create(const crypto::Key256& send_key,
                                    const crypto::Key256& receive_key);
  Result<Bytes> Seal(RecordType type, ByteView plaintext);
  // Refuses a record whose sequence number is not the next one expected (replay, reordering,
  // loss) and any record that fails authentication.
  Result<Bytes> Open(ByteView record, RecordType expected_type);

 private:
  RecordLayer(crypto::AesGcm send, crypto::AesGcm receive)
      : send_(std::move(send)), receive_(std::move(receive)) {}
  crypto::AesGcm send_, receive_;
  uint64_t send_seq_ = 0, receive_seq_ = 0;
};

// Checks evidence and returns its verified REPORTDATA (the caller records the claims it wants).
using EvidenceVerifier = std::function<Result<ReportData>(ByteView evidence)>;

class ClientHandshake {
 public:
  static Result<ClientHandshake> Start(std::vector<uint16_t> versions = {kVersion1},
                                       std::vector<uint16_t> suites = {
                                           kSuiteX25519Aes256GcmSha256});
  const Bytes& hello() const { return hello_; }
  // Verifies the reply and derives the keys; returns the client's Finished record.
  Result<Bytes> OnServerHello(ByteView server_hello, const EvidenceVerifier& verify);
  // Checks the enclave's Finished record; the channel is then ready.
  Result<RecordLayer> OnServerFinished(ByteView record);
  uint64_t session_id() const { return session_id_; }

 private:
  ClientHandshake() = default;
  ClientHello sent_;
  Bytes hello_;
  crypto::Key256 private_key_;
  Digest transcript_{};
  uint64_t session_id_ = 0;
  std::optional<RecordLayer> records_;
};

// The enclave's side. `quote` produces evidence over the given REPORTDATA.
using Quoter = std::function<Result<Bytes>(const ReportData&)>;

class ServerHandshake {
 public:
  static Result<ServerHandshake> Respond(ByteView client_hello, uint64_t session_id,
                                         const Quoter& quote);
  const Bytes& reply() const { return reply_; }
  // Checks the client's Finished; returns the enclave's Finished record and the ready channel.
  Result<Bytes> OnClientFinished(ByteView record);
  bool ready() const { return ready_; }
  RecordLayer& records() { return *records_; }

 private:
  ServerHandshake() = default;
  Bytes reply_;
  Digest transcript_{};
  std::optional<RecordLayer> records_;
  bool ready_ = false;
};

}  // namespace medstream::channel
