// WFDB (MIT-format) annotation files, as `medstream ecg eval` reads a record's reference beats.
#include "adapters/wfdb/wfdb.h"
#include "fuzz/fuzz.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace medstream;
  auto a = wfdb::ParseAnnotations(fuzz::Bytes(data, size), "fuzz.atr");
  if (!a) return 0;
  // Every annotation is at a sample within the record, with a known code; at most one per word.
  MEDSTREAM_FUZZ_CHECK(a->size() <= size / 2);
  for (const auto& x : *a) MEDSTREAM_FUZZ_CHECK(x.sample >= 0 && x.code >= 1 && x.code <= 41);
  return 0;
}
