// The trusted core: everything the enclave does, behind EnclaveCore::Handle, the single entry
// point for the calls declared in edge.h. It checks each call against the edge's allow-list and
// caps, answers the attestation calls itself (info, handshake, channel records) and hands the rest
// to its two services: StreamService (keys, per-stream state, batches, checkpoints) and
// LakeService (the data lake), which share its attested sessions (SessionTable) and its Platform.
// Nothing leaves it except what a call's contract says (ciphertext, evidence, sealed state,
// counters). Not thread-safe: one caller (the enclave's request loop).
#pragma once

#include <functional>
#include <map>
#include <memory>

#include "common/abi/edge.h"
#include "common/attest/identity.h"
#include "common/channel/channel.h"
#include "common/streams/streams.h"
#include "enclave/core/lake_service.h"
#include "enclave/core/platform.h"
#include "enclave/core/sealing.h"
#include "enclave/core/sessions.h"
#include "enclave/core/stream_service.h"

namespace medstream::enclave {

struct CoreOptions {
  std::string backend = "process";  // "process" or "inproc": reported, never trusted for security
  bool debug = false;
  attest::SignedIdentity identity;
  std::string platform_dir;
  SealPolicy seal_policy = SealPolicy::kMrEnclave;
  std::string hardening;        // what the process backend applied, for the honest note
  size_t analysis_threads = 0;  // threads analysing a batch's windows; 0: one per CPU
};

std::string HonestNote(std::string_view backend, bool debug);

class EnclaveCore {
 public:
  static Result<std::unique_ptr<EnclaveCore>> Create(const CoreOptions& options);

  // Handles one call. `request` is untrusted: unknown calls and oversized requests are refused
  // before parsing, and every parser is bounds-checked.
  Result<crypto::Bytes> Handle(uint16_t call_id, crypto::ByteView request);
  bool shutdown_requested() const { return shutdown_; }

  // process_batch on a request of `size` bytes the host left in untrusted shared memory: read
  // through StreamService::ProcessSharedBatch (each byte copied into private memory once, a
  // segment at a time, before it is used), which may still be arriving (edge.h, SharedProgress).
  Result<crypto::Bytes> HandleSharedBatch(const uint8_t* shared, size_t size,
                                          std::atomic_ref<uint64_t> delivered);

 private:
  EnclaveCore(CoreOptions options, std::unique_ptr<Platform> platform);

  Result<crypto::Bytes> Info() const;
  Result<crypto::Bytes> Handshake(crypto::ByteView request);
  Result<crypto::Bytes> Channel(crypto::ByteView request);
  SealIdentity Self() const;

  CoreOptions options_;
  // Quotes, the sealing root, the checkpoint's and the lake manifest's counters, the clock.
  std::unique_ptr<Platform> platform_;
  SessionTable sessions_;
  StreamService streams_;
  LakeService lake_;
  bool shutdown_ = false;
};

}  // namespace medstream::enclave
