// Recordings (rr or csv) as `medstream hrv` and `medstream sensor --replay` read them.
#include "adapters/recording/recording.h"
#include "fuzz/fuzz.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace medstream;
  if (size == 0) return 0;
  recording::ReadOptions o;
  o.format = static_cast<recording::Format>(data[0] % 3);
  o.unit = static_cast<recording::Unit>((data[0] / 3) % 3);
  auto rec = recording::ParseRecording(fuzz::Text(data + 1, size - 1), "fuzz", o);
  if (rec) {
    for (const hrv::Beat& b : rec->beats) {
      MEDSTREAM_FUZZ_CHECK(std::isfinite(b.t_s) && std::fabs(b.t_s) <= hrv::kMaxBeatTimeS &&
                           std::isfinite(b.rr_ms));
    }
  }
  return 0;
}
