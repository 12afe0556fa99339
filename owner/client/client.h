// client: what a data owner runs (a gateway, a hospital): attest an enclave before trusting it,
// provision keys over the attested channel, seal batches and open results. Trusted code, on the
// data owner's side of the boundary.
#pragma once

#include "common/abi/edge.h"
#include "common/attest/policy.h"
#include "common/channel/channel.h"
#include "common/wire/wire.h"
#include "host/server/transport.h"

namespace medstream::client {

struct AttestOptions {
  const crypto::Certificate* root = nullptr;  // the pinned trust anchor
  attest::Policy policy;
  int64_t at = 0;  // verification time; 0 = now
};

struct Session {
  uint64_t id = 0;
  channel::RecordLayer records;
  attest::Claims claims;
};

// Handshake, evidence verification (chain, policy, REPORTDATA) and key confirmation.
Result<Session> Attest(host::EnclaveTransport& enclave, const AttestOptions& options);

// The verifier policy that pins the enclave build this medstream came with: for mode "inproc" this
// executable, otherwise `enclave_path` (default: medstream-enclave beside it); its measurement and
// signer from its signature file, simulated platforms allowed (the only kind here; the evidence
// says so). One definition for the demo, the benchmark and the lake's embedded host.
Result<attest::Policy> PolicyForThisBuild(const std::string& mode,
                                          const std::string& enclave_path = "");
// Sends a key and its analysis configuration over the session; the enclave acknowledges.
Status Provision(host::EnclaveTransport& enclave, Session& session,
                 const enclave::ProvisionKey& key);

// One stream's batches and results, on the data owner's side.
class StreamSealer {
 public:
  static Result<StreamSealer> Create(const crypto::Key256& data_key, uint32_t key_id,
                                     const wire::StreamId& stream);
  Result<crypto::Bytes> SealBatch(uint64_t seq, std::span<const hrv::Beat> beats);
  // The same file handed to `sink` segment by segment as it is sealed (wire::WriteBatchFileTo, on
  // two threads from 1 MiB): the gateway writes its spool file with no sealed copy of the batch.
  Status SealBatchTo(uint64_t seq, std::span<const hrv::Beat> beats, const FileSink& sink);
  // Opens a batch this stream sealed (the gateway's recovery reads its own spool).
  Result<std::vector<hrv::Beat>> OpenBatch(crypto::ByteView file);
  // Opens a result file of this stream; refuses files of other streams or keys.
  Result<wire::BatchResult> OpenResult(crypto::ByteView file, uint64_t* seq);

 private:
  StreamSealer(crypto::AesGcm gcm, crypto::AesGcm second, uint32_t key_id,
               const wire::StreamId& stream)
      : gcm_(std::move(gcm)), second_(std::move(second)), key_id_(key_id), stream_(stream) {}
  crypto::AesGcm gcm_;
  crypto::AesGcm second_;  // for a wire::ThreadHelper: large files use two threads
  uint32_t key_id_;
  wire::StreamId stream_;
};

}  // namespace medstream::client
