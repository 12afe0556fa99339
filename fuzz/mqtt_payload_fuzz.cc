// The MQTT payloads a sensor publishes, as the gateway decodes them: beat messages (versions 1 and
// 2, JSON, Bluetooth heart rate measurements: sensor::DecodeMessage) and device statuses
// (sensor::DecodeStatus).
#include "fuzz/fuzz.h"
#include "owner/sensor/sensor.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace medstream;
  const auto bytes = fuzz::Bytes(data, size);
  auto m = sensor::DecodeMessage(bytes);
  if (m && m->version == sensor::kBluetoothHeartRate) {
    // Untimed RR values within hrv's limits; timed from a plausible clock they stay within them.
    MEDSTREAM_FUZZ_CHECK(m->beats.empty() && size <= sensor::kMaxHeartRatePayloadBytes);
    for (double rr : m->untimed_rr_ms) MEDSTREAM_FUZZ_CHECK(rr > 0 && rr <= hrv::kMaxRrMs);
    for (const hrv::Beat& b : sensor::TimeBeats(m->untimed_rr_ms, 1.7e9, 1.7e9 + 1))
      MEDSTREAM_FUZZ_CHECK(hrv::BeatInLimits(b));
    m = std::unexpected(Error(Error::Code::kNotFound, "checked"));
  }
  if (m) {
    // Whatever is accepted keeps hrv's and the sequence's limits and encodes back to the same
    // bytes.
    for (const hrv::Beat& b : m->beats) MEDSTREAM_FUZZ_CHECK(hrv::BeatInLimits(b));
    MEDSTREAM_FUZZ_CHECK(m->sequence.seq <= sensor::kMaxSequence &&
                         m->sequence.first_beat <= sensor::kMaxSequence);
    MEDSTREAM_FUZZ_CHECK(!m->beats.empty() && m->beats.size() <= sensor::kMaxBeatsPerMessage);
    if (m->version != sensor::kJsonPayload) {
      const auto again = m->version == 1 ? sensor::EncodePayloadV1(m->beats)
                                         : sensor::EncodePayload(m->sequence, m->beats);
      MEDSTREAM_FUZZ_CHECK(again.size() == size && std::equal(again.begin(), again.end(), data));
    }
  }
  if (auto st = sensor::DecodeStatus(bytes)) {
    MEDSTREAM_FUZZ_CHECK(st->beats >= st->messages && st->beats <= sensor::kMaxSequence);
    const auto again = sensor::EncodeStatus(*st);
    MEDSTREAM_FUZZ_CHECK(again.size() == size && std::equal(again.begin(), again.end(), data));
  }
  return 0;
}
