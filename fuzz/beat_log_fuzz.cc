// The gateway's write-ahead log as it is read back at start (owner/gateway/beat_log.h, ScanLog):
// whatever the bytes (a failing disk, power loss), every byte is readable, damaged or a torn
// last record, exactly once, and what is readable frames again as it was.
#include "common/crypto/crypto.h"
#include "fuzz/fuzz.h"
#include "owner/gateway/beat_log.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace medstream;
  static crypto::Key256 key = [] {
    crypto::Key256 k;
    for (size_t i = 0; i < k.span().size(); ++i) k.span()[i] = static_cast<uint8_t>(i * 7 + 1);
    return k;
  }();
  static crypto::AesGcm gcm = crypto::AesGcm::Create(key).value();
  const auto bytes = fuzz::Bytes(data, size);
  const gateway::LogScan scan = gateway::ScanLog(bytes, gcm, "user-0001");
  MEDSTREAM_FUZZ_CHECK(scan.readable.size() + scan.damaged_bytes + scan.torn_bytes == size);
  MEDSTREAM_FUZZ_CHECK(scan.first_unreadable <= size);
  MEDSTREAM_FUZZ_CHECK(scan.damaged_beats_at_most * 16 <= scan.damaged_bytes);
  // The readable records, framed alone, are all readable and nothing else.
  const gateway::LogScan again = gateway::ScanLog(scan.readable, gcm, "user-0001");
  MEDSTREAM_FUZZ_CHECK(again.damaged_bytes == 0 && again.torn_bytes == 0 &&
                       again.recovered.size() == scan.recovered.size());
  return 0;
}
