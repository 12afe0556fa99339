// The lake's messages as the enclave decodes a client's request and a client decodes the
// enclave's reply (common/lake_abi): every decoder is bounded, and what decodes re-encodes to
// the same bytes.
#include <cstdlib>

#include "common/lake_abi/messages.h"
#include "fuzz/fuzz.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace medstream;
  const crypto::ByteView bytes(data, size);
  if (auto request = lake::DecodeRequest(bytes)) {
    if (lake::EncodeRequest(*request) != crypto::Bytes(bytes.begin(), bytes.end())) std::abort();
  }
  (void)lake::DecodeReplyFrame(bytes);
  (void)lake::DecodeHelloReply(bytes);
  (void)lake::DecodeProveReply(bytes);
  (void)lake::DecodeIngestChunkReply(bytes);
  (void)lake::DecodeIngestEndReply(bytes);
  (void)lake::DecodeResultSet(bytes);
  (void)lake::DecodeAuditReply(bytes);
  (void)lake::DecodeListReply(bytes);
  return 0;
}
