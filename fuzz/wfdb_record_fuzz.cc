// A WFDB record as `medstream ecg` reads one from a user's folder: the header (.hea) and its
// signal file (formats 212 and 16). Input: a 2-byte header length, the header, the signal bytes.
#include "adapters/wfdb/wfdb.h"
#include "fuzz/fuzz.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace medstream;
  if (size < 2) return 0;
  const size_t n = std::min<size_t>(size - 2, data[0] | (data[1] << 8));
  auto h = wfdb::ParseHeader(fuzz::Text(data + 2, n), "fuzz.hea");
  if (!h) return 0;
  MEDSTREAM_FUZZ_CHECK(!h->signals.empty() && h->signals.size() <= 64 && h->fs > 0);
  auto s = wfdb::DecodeSignals(*h, fuzz::Bytes(data + 2 + n, size - 2 - n), "fuzz.dat");
  if (s) {
    // Never more samples than the bytes hold, all signals alike, within the format's range.
    MEDSTREAM_FUZZ_CHECK(s->size() == h->signals.size());
    for (const auto& sig : *s) {
      MEDSTREAM_FUZZ_CHECK(sig.size() == (*s)[0].size() && sig.size() <= size);
      for (int v : sig) MEDSTREAM_FUZZ_CHECK(v >= -32768 && v <= 32767);
    }
  }
  return 0;
}
