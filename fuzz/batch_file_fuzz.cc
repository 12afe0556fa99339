// Batch files as the enclave (and vanilla mode) reads them from the untrusted inbox: the header,
// the segment layout, and the beats, both in plain files and under a stream key.
#include "common/crypto/crypto.h"
#include "common/wire/wire.h"
#include "fuzz/fuzz.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace medstream;
  const auto file = fuzz::Bytes(data, size);
  std::vector<hrv::Beat> beats;
  if (auto h = wire::OpenBatchInto(file, nullptr, &beats); h) {
    MEDSTREAM_FUZZ_CHECK(beats.size() * 16 <= size);
  }
  wire::SegmentLayout layout;
  (void)wire::PrepareBatch(file, &beats, &layout);
  static crypto::Key256 key = [] {
    crypto::Key256 k;
    for (size_t i = 0; i < k.span().size(); ++i) k.span()[i] = static_cast<uint8_t>(i * 7 + 1);
    return k;
  }();
  auto gcm = crypto::AesGcm::Create(key);
  if (gcm) (void)wire::OpenBatchInto(file, &*gcm, &beats);
  return 0;
}
