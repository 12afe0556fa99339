// Enclave identity: the measurement (MRENCLAVE analogue: SHA-256 of the executable as loaded) and
// the release signature beside it (SIGSTRUCT analogue), which yields MRSIGNER = SHA-256 of the
// signer's public key and the product id / security version.
//
// Signature file ("<executable>.sig"):
//   "MSIG" | format u16 | MRENCLAVE (32) | ISVPRODID u16 | ISVSVN u16 | signer key x||y (64)
//   | ECDSA P-256 signature r||s (64) over everything before it
// Like EINIT, an enclave whose executable does not match its signature refuses to start.
// Shared: the enclave proves its own identity with it, `medstream enclave sign` writes it, and a
// data owner pins a build's identity in its verifier policy. Thread-safe (pure but file reads).
#pragma once

#include <string>

#include "common/crypto/crypto.h"

namespace medstream::attest {

struct SignedIdentity {
  crypto::Digest mr_enclave{};
  crypto::Digest mr_signer{};
  uint16_t isv_prod_id = 0;
  uint16_t isv_svn = 0;
};

Result<crypto::Digest> MeasureFile(const std::string& path);
Result<crypto::Bytes> SignMeasurement(const crypto::Digest& mr_enclave, const crypto::EcKey& key,
                                      uint16_t isv_prod_id, uint16_t isv_svn);
// Checks the signature file against a measurement.
Result<SignedIdentity> CheckSignature(const crypto::Digest& mr_enclave, crypto::ByteView sigfile);
// Measures `executable` and checks `<executable>.sig`.
Result<SignedIdentity> LoadIdentity(const std::string& executable);

}  // namespace medstream::attest
