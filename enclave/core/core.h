// The trusted core: everything the enclave does, behind EnclaveCore::Handle, the single entry
// point for the calls declared in edge.h. It holds the provisioned keys, the per-stream state and
// the attested sessions; nothing leaves it except what a call's contract says (ciphertext,
// evidence, sealed state, counters).
#pragma once

#include <functional>
#include <map>
#include <memory>

#include "common/abi/edge.h"
#include "common/attest/identity.h"
#include "common/channel/channel.h"
#include "common/streams/streams.h"
#include "enclave/core/platform.h"
#include "enclave/core/sealing.h"
#include "enclave/core/worker.h"
#include "enclave/lake/lake.h"

namespace medstream::enclave {

struct CoreOptions {
  std::string backend = "process";  // "process" or "inproc": reported, never trusted for security
  bool debug = false;
  attest::SignedIdentity identity;
  std::string platform_dir;
  SealPolicy seal_policy = SealPolicy::kMrEnclave;
  std::string hardening;  // what the process backend applied, for the honest note
};

std::string HonestNote(std::string_view backend, bool debug);

class EnclaveCore {
 public:
  static Result<std::unique_ptr<EnclaveCore>> Create(const CoreOptions& options);

  // Handles one call. `request` is untrusted: unknown calls and oversized requests are refused
  // before parsing, and every parser is bounds-checked.
  Result<crypto::Bytes> Handle(uint16_t call_id, crypto::ByteView request);
  bool shutdown_requested() const { return shutdown_; }

  // Makes bytes [0, n) of a request present (copies them in from where the host left them).
  using Fill = std::function<void(size_t n)>;
  // process_batch on a request whose bytes are brought in on demand: the worker copies each
  // segment just before authenticating it, so the copy overlaps with the analysis. Everything is
  // read from `request` (private memory) only after `fill` put it there.
  Result<crypto::Bytes> HandleBatchWithFill(crypto::ByteView request, const Fill& fill);

 private:
  EnclaveCore(CoreOptions options, std::unique_ptr<Platform> platform)
      : options_(std::move(options)), platform_(std::move(platform)) {}

  Result<crypto::Bytes> Info() const;
  Result<crypto::Bytes> Handshake(crypto::ByteView request);
  Result<crypto::Bytes> Channel(crypto::ByteView request);
  Result<crypto::Bytes> ProcessBatch(crypto::ByteView request, const Fill* fill);
  Result<crypto::Bytes> Checkpoint();
  Result<crypto::Bytes> Commit(crypto::ByteView request);
  Result<crypto::Bytes> Restore(crypto::ByteView request);
  Result<crypto::Bytes> ApplicationMessage(crypto::ByteView message);
  // The stream's cipher for this thread, or for the worker thread.
  Result<crypto::AesGcm*> StreamCipher(uint32_t key_id, const wire::StreamId& stream,
                                       bool for_worker = false);
  SealIdentity Self() const;
  Result<crypto::Bytes> LakeLoad(crypto::ByteView request);
  Result<crypto::Bytes> LakeRequest(crypto::ByteView request);
  Result<crypto::Bytes> LakeCommit(crypto::ByteView request);

  CoreOptions options_;
  // Quotes, the sealing root, the checkpoint's and the lake manifest's counters, the clock.
  std::unique_ptr<Platform> platform_;
  // The reply to a request that changed the lake, held until the host commits its version: no
  // answer leaves before the state that records it (an analyst's spent privacy budget, the audit
  // entry) is stored and counted, so a host that restarts the enclave cannot refund a budget.
  crypto::Bytes pending_record_;
  uint64_t pending_version_ = 0;
  std::unique_ptr<lake::Lake> lake_;

  struct Session {
    std::unique_ptr<channel::ServerHandshake> handshake;
  };
  std::map<uint64_t, Session> sessions_;
  uint64_t next_session_ = 1;

  struct KeyEntry {
    crypto::Key256 key;
    StreamConfig config;
    std::map<wire::StreamId, std::unique_ptr<crypto::AesGcm>> ciphers;
    std::map<wire::StreamId, std::unique_ptr<crypto::AesGcm>> worker_ciphers;  // the worker's
  };
  std::map<uint32_t, KeyEntry> keys_;
  streams::StreamTable streams_;
  EnclaveStats stats_;
  uint64_t pending_checkpoint_ = 0;
  bool shutdown_ = false;
  // Reused across batches: large fresh buffers cost more in page faults than the analytics.
  std::vector<hrv::Beat> beats_;
  crypto::Bytes result_;
  Worker worker_;
};

}  // namespace medstream::enclave
