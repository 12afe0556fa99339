// The relying party's attestation policy: which enclaves it will talk to.
//
// A JSON file the client owns, e.g.
//   {"mrenclave": ["33d8..."], "mrsigner": ["815f..."], "isv_prod_id": 1, "min_isv_svn": 2,
//    "allow_debug": false, "allow_simulated": true}
// At least one of mrenclave / mrsigner must be given (pinning the code, or trusting a signer's
// releases for upgrades). Every refusal names the claim and the rule it broke.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "common/attest/quote.h"

namespace medstream::attest {

struct Policy {
  std::vector<Digest> mr_enclave;  // any of these (empty: not checked)
  std::vector<Digest> mr_signer;   // any of these (empty: not checked)
  std::optional<uint16_t> isv_prod_id;
  uint16_t min_isv_svn = 0;
  bool allow_debug = false;
  bool allow_simulated = false;
};

Result<Policy> ParsePolicy(std::string_view json);
Result<Policy> LoadPolicy(const std::string& path);
std::string PolicyToJson(const Policy& policy);

// OK, or the first rule the claims break.
Status CheckPolicy(const Claims& claims, const Policy& policy);

}  // namespace medstream::attest
