#include "host/server/vanilla.h"

namespace medstream::host {

Result<crypto::Bytes> VanillaProcessor::ProcessBatch(crypto::ByteView file) {
  MEDSTREAM_TRY(header, wire::OpenBatchInto(file, nullptr, &beats_));
  MEDSTREAM_TRY(r, streams_.Process(header.stream, header.seq, header.key_id, config_, beats_));
  result_.clear();
  wire::EncodeResult(r, &result_);
  wire::Header out = header;
  out.kind = wire::Kind::kResult;
  return wire::MakeFile(out, result_, nullptr);
}

}  // namespace medstream::host
