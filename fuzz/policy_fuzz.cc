// A verifier policy file (JSON) as the gateway and `medstream attest` read it.
#include "common/attest/policy.h"
#include "fuzz/fuzz.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace medstream;
  auto p = attest::ParsePolicy(fuzz::Text(data, size));
  if (p) {
    // What parses prints back to JSON that parses to the same policy.
    auto again = attest::ParsePolicy(attest::PolicyToJson(*p));
    MEDSTREAM_FUZZ_CHECK(again.has_value());
  }
  return 0;
}
