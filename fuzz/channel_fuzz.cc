// The attested channel as the enclave and the client parse it: ClientHello, ServerHello, and
// records under fixed keys (every record type).
#include "common/channel/channel.h"
#include "fuzz/fuzz.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace medstream;
  const auto in = fuzz::Bytes(data, size);
  (void)channel::ClientHello::Decode(in);
  (void)channel::ServerHello::Decode(in);
  // The enclave's response to a ClientHello (the quoter returns fixed evidence).
  auto server = channel::ServerHandshake::Respond(
      in, 1,
      [](const channel::ReportData&) -> Result<crypto::Bytes> { return crypto::Bytes(64, 0x42); });
  if (server) (void)server->OnClientFinished(in);
  crypto::Key256 a, b;
  for (size_t i = 0; i < 32; ++i) {
    a.span()[i] = static_cast<uint8_t>(i);
    b.span()[i] = static_cast<uint8_t>(255 - i);
  }
  auto records = channel::RecordLayer::Create(a, b);
  if (records) {
    for (auto type : {channel::RecordType::kFinished, channel::RecordType::kApplication,
                      channel::RecordType::kError}) {
      (void)records->Open(in, type);
    }
  }
  return 0;
}
