// Result files as the gateway reads them back from the untrusted outbox, and the result payload
// (windows and beats) they carry.
#include "common/crypto/crypto.h"
#include "common/wire/wire.h"
#include "fuzz/fuzz.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace medstream;
  const auto file = fuzz::Bytes(data, size);
  if (auto opened = wire::OpenFile(file, wire::Kind::kResult, nullptr); opened) {
    (void)wire::DecodeResult(opened->payload);
  }
  if (auto r = wire::DecodeResult(file); r) {
    // What decodes encodes back to a payload that decodes to the same shape.
    crypto::Bytes again;
    wire::EncodeResult(*r, &again);
    auto back = wire::DecodeResult(again);
    MEDSTREAM_FUZZ_CHECK(back && back->jobs.size() == r->jobs.size() && back->beats == r->beats);
  }
  static crypto::Key256 key = [] {
    crypto::Key256 k;
    for (size_t i = 0; i < k.span().size(); ++i) k.span()[i] = static_cast<uint8_t>(i * 3 + 5);
    return k;
  }();
  auto gcm = crypto::AesGcm::Create(key);
  if (gcm) (void)wire::OpenFile(file, wire::Kind::kResult, &*gcm);
  return 0;
}
