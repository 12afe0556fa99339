#include "host/vanilla.h"

namespace medstream::host {

Result<crypto::Bytes> VanillaProcessor::ProcessBatch(crypto::ByteView file) {
  MEDSTREAM_TRY(opened, wire::OpenFile(file, wire::Kind::kBatch, nullptr));
  MEDSTREAM_TRY(beats, wire::DecodeBeats(opened.payload));
  MEDSTREAM_TRY(r, streams_.Process(opened.header.stream, opened.header.seq, opened.header.key_id,
                                    config_, beats));
  crypto::Bytes payload;
  wire::EncodeResult(r, &payload);
  wire::Header out = opened.header;
  out.kind = wire::Kind::kResult;
  return wire::MakeFile(out, payload, nullptr);
}

}  // namespace medstream::host
