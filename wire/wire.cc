#include "wire/wire.h"

#include <cstring>
#include <type_traits>

namespace medstream::wire {

namespace {

const char* Magic(Kind k) {
  return k == Kind::kBatch ? "MSB1" : "MSR1";
}

}  // namespace

void Header::Encode(Bytes* out) const {
  ByteWriter w(out);
  w.Raw(Magic(kind), 4);
  w.U16(version);
  w.U16(flags);
  w.U32(key_id);
  w.Bytes(stream);
  w.U64(seq);
  w.U32(payload_size);
}

Result<Header> Header::Decode(ByteView b) {
  if (b.size() < kHeaderSize) {
    return Corrupt("file too short for a medstream header (" + std::to_string(b.size()) +
                   " bytes)");
  }
  ByteReader r(b.first(kHeaderSize));
  Header h;
  auto magic = *r.Bytes(4, "magic");
  if (std::memcmp(magic.data(), "MSB1", 4) == 0) {
    h.kind = Kind::kBatch;
  } else if (std::memcmp(magic.data(), "MSR1", 4) == 0) {
    h.kind = Kind::kResult;
  } else {
    return Corrupt("not a medstream batch or result (bad magic)");
  }
  h.version = *r.U16("version");
  if (h.version != kWireVersion) {
    return Corrupt("unsupported format version " + std::to_string(h.version));
  }
  h.flags = *r.U16("flags");
  h.key_id = *r.U32("key id");
  auto stream = *r.Bytes(16, "stream id");
  std::memcpy(h.stream.data(), stream.data(), 16);
  h.seq = *r.U64("sequence number");
  h.payload_size = *r.U32("payload size");
  if (h.payload_size > kMaxBatchBytes) {
    return Corrupt("payload of " + std::to_string(h.payload_size) + " bytes exceeds the limit");
  }
  if (b.size() != kHeaderSize + h.payload_size) {
    return Corrupt("header says " + std::to_string(h.payload_size) + " payload bytes, file has " +
                   std::to_string(b.size() - kHeaderSize) + " (truncated or padded)");
  }
  return h;
}

std::string StreamName(const StreamId& id) {
  return crypto::ToHex(id);
}

Result<StreamId> ParseStreamName(std::string_view hex) {
  auto b = crypto::FromHex(hex);
  if (!b || b->size() != 16) return InvalidArgument("stream id must be 32 hex digits");
  StreamId id;
  std::memcpy(id.data(), b->data(), 16);
  return id;
}

Result<crypto::Key256> StreamKey(const crypto::Key256& data_key, const StreamId& stream) {
  crypto::Key256 k;
  if (auto s = crypto::HkdfSha256(data_key.span(), stream,
                                  crypto::AsBytes("medstream v1 stream key"), k.span());
      !s) {
    return std::unexpected(s.error());
  }
  return k;
}

std::array<uint8_t, 12> Nonce(Kind kind, uint64_t seq) {
  std::array<uint8_t, 12> n{};
  n[3] = kind == Kind::kBatch ? 1 : 2;
  for (int i = 0; i < 8; ++i) n[4 + i] = static_cast<uint8_t>(seq >> (56 - 8 * i));
  return n;
}

void EncodeBeats(std::span<const hrv::Beat> beats, Bytes* out) {
  ByteWriter w(out);
  w.U32(static_cast<uint32_t>(beats.size()));
  const size_t at = out->size();
  out->resize(at + beats.size() * 16);
  uint8_t* p = out->data() + at;
  for (const hrv::Beat& b : beats) {
    std::memcpy(p, &b.t_s, 8);
    std::memcpy(p + 8, &b.rr_ms, 8);
    p += 16;
  }
}

Result<std::vector<hrv::Beat>> DecodeBeats(ByteView b) {
  ByteReader r(b);
  MEDSTREAM_TRY(n, r.U32("beat count"));
  if (r.remaining() != size_t{n} * 16) {
    return Corrupt("beat count " + std::to_string(n) + " does not match the payload size");
  }
  std::vector<hrv::Beat> beats(n);
  std::memcpy(beats.data(), b.data() + 4, size_t{n} * 16);
  return beats;
}

namespace {

static_assert(sizeof(hrv::Beat) == 16 && std::is_trivially_copyable_v<hrv::Beat>,
              "batch payloads are the beat array's bytes");

ByteView BeatBytes(std::span<const hrv::Beat> beats) {
  return {reinterpret_cast<const uint8_t*>(beats.data()), beats.size() * sizeof(hrv::Beat)};
}

}  // namespace

Result<Bytes> MakeBatchFile(Header header, std::span<const hrv::Beat> beats, crypto::AesGcm* gcm) {
  header.kind = Kind::kBatch;
  return MakeFile(header, BeatBytes(beats), gcm);
}

Result<Header> OpenBatchInto(ByteView file, crypto::AesGcm* gcm, std::vector<hrv::Beat>* beats) {
  MEDSTREAM_TRY(header, Header::Decode(file));
  if (header.kind != Kind::kBatch) return Corrupt("expected a batch, got a result file");
  const ByteView body = file.subspan(kHeaderSize);
  const size_t plain = header.encrypted()
                           ? body.size() - std::min(body.size(), crypto::AesGcm::kTagSize)
                           : body.size();
  if (header.encrypted() && body.size() < crypto::AesGcm::kTagSize) {
    return Corrupt("truncated ciphertext");
  }
  if (plain % sizeof(hrv::Beat) != 0) {
    return Corrupt("batch payload of " + std::to_string(plain) + " bytes is not whole beats");
  }
  beats->resize(plain / sizeof(hrv::Beat));
  const std::span<uint8_t> out(reinterpret_cast<uint8_t*>(beats->data()), plain);
  if (!header.encrypted()) {
    if (gcm) return Corrupt("plaintext file where an encrypted one is required");
    std::memcpy(out.data(), body.data(), plain);
    return header;
  }
  if (!gcm) return Corrupt("encrypted file but no key to open it");
  if (auto s = gcm->Open(Nonce(header.kind, header.seq), file.first(kHeaderSize), body, out); !s) {
    beats->clear();
    return Corrupt(
        "authentication failed: the file was tampered with or encrypted under "
        "another key");
  }
  return header;
}

void EncodeResult(const BatchResult& r, Bytes* out) {
  ByteWriter w(out);
  w.U64(r.beats);
  w.U64(r.missing_before);
  w.U8(static_cast<uint8_t>(r.jobs.size()));
  for (const auto& [kind, output] : r.jobs) {
    w.U8(static_cast<uint8_t>(kind));
    if (kind == hrv::JobKind::kIdentity) {
      EncodeBeats(output.beats, out);
      continue;
    }
    const auto metrics = hrv::JobMetrics(kind);
    w.U32(static_cast<uint32_t>(output.windows.size()));
    for (const hrv::WindowResult& win : output.windows) {
      w.I64(win.index);
      w.F64(win.t_start);
      w.F64(win.t_end);
      w.F64(win.coverage);
      for (const hrv::MetricInfo* m : metrics) w.F64(win.metrics.*(m->field));
    }
  }
}

Result<BatchResult> DecodeResult(ByteView b) {
  ByteReader r(b);
  BatchResult out;
  MEDSTREAM_TRY(beats, r.U64("beat count"));
  MEDSTREAM_TRY(missing, r.U64("gap"));
  MEDSTREAM_TRY(njobs, r.U8("job count"));
  out.beats = beats;
  out.missing_before = missing;
  for (int j = 0; j < njobs; ++j) {
    MEDSTREAM_TRY(kind_byte, r.U8("job kind"));
    if (kind_byte > static_cast<uint8_t>(hrv::JobKind::kHrvFull)) return Corrupt("unknown job");
    const auto kind = static_cast<hrv::JobKind>(kind_byte);
    hrv::JobOutput output;
    if (kind == hrv::JobKind::kIdentity) {
      MEDSTREAM_TRY(n, r.U32("beat count"));
      if (r.remaining() < size_t{n} * 16) return Corrupt("truncated identity output");
      output.beats.resize(n);
      for (auto& beat : output.beats) {
        beat.t_s = *r.F64("t");
        beat.rr_ms = *r.F64("rr");
      }
    } else {
      const auto metrics = hrv::JobMetrics(kind);
      MEDSTREAM_TRY(n, r.U32("window count"));
      if (r.remaining() < size_t{n} * (32 + 8 * metrics.size())) {
        return Corrupt("truncated window output");
      }
      output.windows.resize(n);
      for (auto& win : output.windows) {
        win.index = *r.I64("index");
        win.t_start = *r.F64("t_start");
        win.t_end = *r.F64("t_end");
        win.coverage = *r.F64("coverage");
        for (const hrv::MetricInfo* m : metrics) win.metrics.*(m->field) = *r.F64("metric");
      }
    }
    out.jobs.emplace_back(kind, std::move(output));
  }
  if (auto s = r.ExpectDone("result"); !s) return std::unexpected(s.error());
  return out;
}

Result<Bytes> MakeFile(Header header, ByteView payload, crypto::AesGcm* gcm) {
  header.flags = gcm ? kFlagEncrypted : 0;
  header.payload_size =
      static_cast<uint32_t>(payload.size() + (gcm ? crypto::AesGcm::kTagSize : 0));
  Bytes out;
  out.reserve(kHeaderSize + header.payload_size);
  header.Encode(&out);
  if (!gcm) {
    out.insert(out.end(), payload.begin(), payload.end());
    return out;
  }
  out.resize(kHeaderSize + header.payload_size);
  const auto nonce = Nonce(header.kind, header.seq);
  if (auto s = gcm->Seal(nonce, std::span(out).first(kHeaderSize), payload,
                         std::span(out).subspan(kHeaderSize));
      !s) {
    return std::unexpected(s.error());
  }
  return out;
}

Result<Opened> OpenFile(ByteView file, Kind expected, crypto::AesGcm* gcm) {
  MEDSTREAM_TRY(header, Header::Decode(file));
  if (header.kind != expected) {
    return Corrupt(expected == Kind::kBatch ? "expected a batch, got a result file"
                                            : "expected a result, got a batch file");
  }
  Opened o;
  o.header = header;
  const ByteView body = file.subspan(kHeaderSize);
  if (!header.encrypted()) {
    if (gcm) return Corrupt("plaintext file where an encrypted one is required");
    o.payload.assign(body.begin(), body.end());
    return o;
  }
  if (!gcm) return Corrupt("encrypted file but no key to open it");
  if (body.size() < crypto::AesGcm::kTagSize) return Corrupt("truncated ciphertext");
  o.payload.resize(body.size() - crypto::AesGcm::kTagSize);
  if (auto s = gcm->Open(Nonce(header.kind, header.seq), file.first(kHeaderSize), body, o.payload);
      !s) {
    return Corrupt(
        "authentication failed: the file was tampered with or encrypted under "
        "another key");
  }
  return o;
}

}  // namespace medstream::wire
