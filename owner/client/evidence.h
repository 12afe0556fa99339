// evidence: offline verification of a quote from files, as `medstream attest verify` does it for
// a person holding a quote (hardware or simulated): the quote (binary or hex), the pinned root (PEM
// or DER), the verification time, CRLs, optionally a policy and Intel's collateral for the TCB
// status. Everything is read from files the caller names; nothing is fetched. Thread-safe.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/attest/collateral.h"
#include "common/attest/quote.h"
#include "common/base/result.h"

namespace medstream::client {

struct EvidenceFiles {
  std::string quote;
  bool hex = false;  // the quote file is hex text
  std::string root;  // PEM or DER
  int64_t at = 0;    // Unix seconds
  std::vector<std::string> crls;
  std::string policy;      // optional: also check this policy (JSON)
  std::string collateral;  // optional: QuoteCollateralV3 JSON, or a folder with collateral.json
};

struct VerifiedEvidence {
  attest::Claims claims;
  std::optional<attest::TcbResult> tcb;  // with collateral
};

// The checks of attest::VerifyQuote, then the policy, then the TCB status. The error names the
// stage ("policy: ...", "collateral: ...") and keeps its code (kCorrupt for a bad signature or
// chain, kFailedPrecondition for a policy refusal, kNotFound/kIo for a file).
Result<VerifiedEvidence> VerifyEvidenceFiles(const EvidenceFiles& files);

// A trust anchor from a PEM or DER file.
Result<crypto::Certificate> LoadRootCertificate(const std::string& path);

// Unix seconds, or an ISO 8601 UTC time such as 2025-07-04T10:28:44Z; empty: now.
Result<int64_t> ParseTimeArgument(const std::string& text);

}  // namespace medstream::client
