// lake_service: the data lake inside the enclave (enclave/lake's engine): loading it from the
// sealed blobs the host stores, clients' requests arriving as records of their attested sessions,
// and the versions the host commits. A reply to a request that changed the lake is withheld until
// the host commits that version, so a restart cannot refund what the request spent (a privacy
// budget, an audit entry). Reached through EnclaveCore::Handle only. Not thread-safe: one caller.
#pragma once

#include <memory>

#include "common/abi/edge.h"
#include "enclave/core/platform.h"
#include "enclave/core/sealing.h"
#include "enclave/core/sessions.h"
#include "enclave/lake/lake.h"

namespace medstream::enclave {

class LakeService {
 public:
  // `platform` and `sessions` must outlive the service.
  LakeService(Platform* platform, SessionTable* sessions, SealIdentity self, SealPolicy policy)
      : platform_(platform), sessions_(sessions), self_(std::move(self)), policy_(policy) {}

  Result<crypto::Bytes> Load(crypto::ByteView request);
  Result<crypto::Bytes> Request(crypto::ByteView request);
  Result<crypto::Bytes> Commit(crypto::ByteView request);

 private:
  Platform* platform_;
  SessionTable* sessions_;
  SealIdentity self_;
  SealPolicy policy_;
  std::unique_ptr<lake::Lake> lake_;
  crypto::Bytes pending_record_;
  uint64_t pending_version_ = 0;
};

}  // namespace medstream::enclave
