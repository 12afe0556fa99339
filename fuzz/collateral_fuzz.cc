// Collateral JSON (TCB info, QE identity, CRLs) as the verifier reads it beside a real quote.
#include "common/attest/collateral.h"
#include "common/base/file.h"
#include "common/crypto/crypto.h"
#include "fuzz/fuzz.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace medstream;
  static const auto quote =
      ReadFileBytes(MEDSTREAM_TEST_DATA_DIR "/attestation/phala_sgx_quote.bin").value();
  static const auto root =
      crypto::Certificate::FromPem(
          ReadFileText(MEDSTREAM_TEST_DATA_DIR "/attestation/Intel_SGX_Root_CA.pem").value())
          .value();
  (void)attest::EvaluateTcb(quote, root, 1751624924, fuzz::Text(data, size));
  return 0;
}
