// The MQTT payload a sensor publishes, as the gateway decodes it (sensor::DecodePayload).
#include "fuzz/fuzz.h"
#include "sensor/sensor.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace medstream;
  auto beats = sensor::DecodePayload(fuzz::Bytes(data, size));
  if (!beats) return 0;
  // Whatever is accepted keeps hrv's limits and encodes back to the same bytes.
  for (const hrv::Beat& b : *beats) MEDSTREAM_FUZZ_CHECK(hrv::BeatInLimits(b));
  const auto again = sensor::EncodePayload(*beats);
  MEDSTREAM_FUZZ_CHECK(again.size() == size && std::equal(again.begin(), again.end(), data));
  return 0;
}
