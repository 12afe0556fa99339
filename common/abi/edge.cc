#include "common/abi/edge.h"

#include <cstring>

namespace medstream::enclave {

const CallSpec* FindCall(uint16_t id) {
  for (const CallSpec& c : kCalls) {
    if (static_cast<uint16_t>(c.call) == id) return &c;
  }
  return nullptr;
}

bool RelayMayForward(Relay relay, uint16_t id) {
  const CallSpec* spec = FindCall(id);
  return spec != nullptr && (spec->relays & relay) != 0;
}

void EncodeFrameHeader(bool request, uint16_t call_or_status, uint64_t length, uint8_t* out) {
  std::memcpy(out, request ? "MSEQ" : "MSER", 4);
  const uint16_t version = kEdgeVersion;
  std::memcpy(out + 4, &version, 2);
  std::memcpy(out + 6, &call_or_status, 2);
  std::memcpy(out + 8, &length, 8);
}

Result<FrameHeader> DecodeFrameHeader(bool request, std::span<const uint8_t> in) {
  if (in.size() < kFrameHeaderSize) return Corrupt("short frame header");
  if (std::memcmp(in.data(), request ? "MSEQ" : "MSER", 4) != 0) return Corrupt("bad frame magic");
  uint16_t version;
  std::memcpy(&version, in.data() + 4, 2);
  if (version != kEdgeVersion) {
    return Corrupt("edge interface version " + std::to_string(version) + ", expected " +
                   std::to_string(kEdgeVersion) + " (host and enclave from different builds)");
  }
  FrameHeader h;
  std::memcpy(&h.call_or_status, in.data() + 6, 2);
  std::memcpy(&h.length, in.data() + 8, 8);
  return h;
}

Error ErrorFromStatus(uint16_t status, std::string_view message) {
  const auto code =
      static_cast<Error::Code>(status >= 1 && status - 1 <= static_cast<int>(Error::kLastCode)
                                   ? status - 1
                                   : static_cast<int>(Error::Code::kInternal));
  return Error(code, std::string(message));
}

uint16_t StatusFromError(const Error& e) {
  return static_cast<uint16_t>(static_cast<int>(e.code()) + 1);
}

hrv::AnalysisOptions StreamConfig::Analysis() const {
  hrv::AnalysisOptions o;
  o.cleaning.enabled = clean;
  o.spectral.method = spectral;
  return o;
}

void StreamConfig::Encode(ByteWriter* w) const {
  w->U8(static_cast<uint8_t>(jobs.size()));
  for (hrv::JobKind k : jobs) w->U8(static_cast<uint8_t>(k));
  w->F64(windows.window_s);
  w->F64(windows.step_s);
  w->F64(windows.min_coverage);
  w->U8(clean ? 1 : 0);
  w->U8(spectral == hrv::SpectralMethod::kLombScargle ? 1 : 0);
}

Result<StreamConfig> StreamConfig::Decode(ByteReader* r) {
  StreamConfig c;
  c.jobs.clear();
  MEDSTREAM_TRY(n, r->U8("job count"));
  if (n == 0 || n > hrv::kAllJobs.size()) return Corrupt("stream config: 1 to 4 jobs");
  for (int i = 0; i < n; ++i) {
    MEDSTREAM_TRY(k, r->U8("job"));
    if (k > static_cast<uint8_t>(hrv::JobKind::kHrvFull)) return Corrupt("stream config: bad job");
    c.jobs.push_back(static_cast<hrv::JobKind>(k));
  }
  MEDSTREAM_TRY(window, r->F64("window"));
  MEDSTREAM_TRY(step, r->F64("step"));
  MEDSTREAM_TRY(coverage, r->F64("coverage"));
  MEDSTREAM_TRY(clean, r->U8("clean"));
  MEDSTREAM_TRY(spectral, r->U8("spectral"));
  c.windows = {.window_s = window, .step_s = step, .min_coverage = coverage};
  c.clean = clean != 0;
  c.spectral = spectral ? hrv::SpectralMethod::kLombScargle : hrv::SpectralMethod::kWelch;
  if (auto s = hrv::Validate(c.windows); !s) return std::unexpected(s.error());
  return c;
}

crypto::Bytes ProvisionKey::Encode() const {
  crypto::Bytes out;
  ByteWriter w(&out);
  w.U8(static_cast<uint8_t>(ChannelMessage::kProvisionKey));
  w.U32(key_id);
  w.Bytes(key.span());
  config.Encode(&w);
  return out;
}

Result<ProvisionKey> ProvisionKey::Decode(std::span<const uint8_t> b) {
  ByteReader r(b);
  MEDSTREAM_TRY(type, r.U8("message type"));
  if (type != static_cast<uint8_t>(ChannelMessage::kProvisionKey)) {
    return Corrupt("not a key provisioning message");
  }
  ProvisionKey p;
  MEDSTREAM_TRY(id, r.U32("key id"));
  p.key_id = id;
  MEDSTREAM_TRY(key, r.Bytes(32, "key"));
  p.key = crypto::Key256(key);
  MEDSTREAM_TRY(config, StreamConfig::Decode(&r));
  p.config = std::move(config);
  if (auto s = r.ExpectDone("provisioning message"); !s) return std::unexpected(s.error());
  return p;
}

crypto::Bytes EnclaveInfo::Encode() const {
  crypto::Bytes out;
  ByteWriter w(&out);
  w.U16(edge_version);
  w.String(backend);
  w.U8(simulated);
  w.U8(debug);
  w.Bytes(mr_enclave);
  w.Bytes(mr_signer);
  w.U16(isv_prod_id);
  w.U16(isv_svn);
  w.String(note);
  return out;
}

Result<EnclaveInfo> EnclaveInfo::Decode(std::span<const uint8_t> b) {
  ByteReader r(b);
  EnclaveInfo i;
  MEDSTREAM_TRY(version, r.U16("edge version"));
  MEDSTREAM_TRY(backend, r.String("backend", 64));
  MEDSTREAM_TRY(simulated, r.U8("simulated"));
  MEDSTREAM_TRY(debug, r.U8("debug"));
  MEDSTREAM_TRY(mre, r.Bytes(32, "mrenclave"));
  MEDSTREAM_TRY(mrs, r.Bytes(32, "mrsigner"));
  MEDSTREAM_TRY(prod, r.U16("isv prod id"));
  MEDSTREAM_TRY(svn, r.U16("isv svn"));
  MEDSTREAM_TRY(note, r.String("note", 1024));
  i.edge_version = version;
  i.backend = backend;
  i.simulated = simulated;
  i.debug = debug;
  std::memcpy(i.mr_enclave.data(), mre.data(), 32);
  std::memcpy(i.mr_signer.data(), mrs.data(), 32);
  i.isv_prod_id = prod;
  i.isv_svn = svn;
  i.note = note;
  return i;
}

crypto::Bytes EnclaveStats::Encode() const {
  crypto::Bytes out;
  ByteWriter w(&out);
  for (uint64_t v :
       {batches_ok, batches_refused, beats, streams, sessions, keys, checkpoint_version}) {
    w.U64(v);
  }
  return out;
}

Result<EnclaveStats> EnclaveStats::Decode(std::span<const uint8_t> b) {
  ByteReader r(b);
  EnclaveStats s;
  for (uint64_t* v : {&s.batches_ok, &s.batches_refused, &s.beats, &s.streams, &s.sessions, &s.keys,
                      &s.checkpoint_version}) {
    MEDSTREAM_TRY(x, r.U64("counter"));
    *v = x;
  }
  return s;
}

crypto::Bytes LakeResponse::Encode() const {
  crypto::Bytes out;
  ByteWriter w(&out);
  w.Blob(record);
  w.U64(version);
  w.U8(mutated ? 1 : 0);
  w.U32(static_cast<uint32_t>(writes.size()));
  for (const auto& [key, blob] : writes) {
    w.String(key);
    w.Blob(blob);
  }
  return out;
}

crypto::Bytes SessionRecord::Encode() const {
  crypto::Bytes out;
  ByteWriter w(&out);
  w.U64(session);
  w.Bytes(record);
  return out;
}

Result<SessionRecord> SessionRecord::Decode(std::span<const uint8_t> b) {
  ByteReader r(b);
  SessionRecord out;
  MEDSTREAM_TRY(id, r.U64("session id"));
  out.session = id;
  out.record = b.subspan(b.size() - r.remaining());
  return out;
}

crypto::Bytes LakeLoad::Encode() const {
  crypto::Bytes out;
  ByteWriter w(&out);
  w.U8(static_cast<uint8_t>(kind));
  w.String(key);
  w.Bytes(blob);
  return out;
}

crypto::Bytes CommitVersion::Encode() const {
  crypto::Bytes out;
  ByteWriter(&out).U64(version);
  return out;
}

Result<CommitVersion> CommitVersion::Decode(std::span<const uint8_t> b) {
  ByteReader r(b);
  MEDSTREAM_TRY(version, r.U64("commit version"));
  if (r.remaining() != 0)
    return Corrupt("commit: " + std::to_string(r.remaining()) + " extra bytes");
  return CommitVersion{version};
}

crypto::Bytes CheckpointRequest::Encode() const {
  crypto::Bytes out;
  ByteWriter(&out).U32(part);
  return out;
}

Result<CheckpointRequest> CheckpointRequest::Decode(std::span<const uint8_t> b) {
  ByteReader r(b);
  MEDSTREAM_TRY(part, r.U32("checkpoint part"));
  if (r.remaining() != 0)
    return Corrupt("checkpoint request: " + std::to_string(r.remaining()) + " extra bytes");
  return CheckpointRequest{part};
}

crypto::Bytes CheckpointPart::Encode() const {
  crypto::Bytes out;
  out.reserve(9 + sealed.size());
  ByteWriter w(&out);
  w.U8(last ? 1 : 0);
  w.U64(version);
  w.Raw(sealed.data(), sealed.size());
  return out;
}

Result<CheckpointPart> CheckpointPart::Decode(std::span<const uint8_t> b) {
  ByteReader r(b);
  MEDSTREAM_TRY(last, r.U8("last-part flag"));
  MEDSTREAM_TRY(version, r.U64("checkpoint version"));
  if (last > 1) return Corrupt("checkpoint part: last-part flag " + std::to_string(last));
  if (r.remaining() == 0) return Corrupt("checkpoint part: no sealed bytes");
  return CheckpointPart{.last = last == 1, .version = version, .sealed = b.subspan(9)};
}

crypto::Bytes RestoreProgress::Encode() const {
  return crypto::Bytes{static_cast<uint8_t>(complete ? 1 : 0)};
}

Result<RestoreProgress> RestoreProgress::Decode(std::span<const uint8_t> b) {
  if (b.size() != 1 || b[0] > 1) return Corrupt("restore progress: not one byte of 0 or 1");
  return RestoreProgress{b[0] == 1};
}

crypto::Bytes PartitionSelector::Encode() const {
  crypto::Bytes out;
  ByteWriter w(&out);
  w.U32(partition);
  w.U32(partitions);
  return out;
}

Result<PartitionSelector> PartitionSelector::Decode(std::span<const uint8_t> b) {
  ByteReader r(b);
  MEDSTREAM_TRY(partition, r.U32("partition"));
  MEDSTREAM_TRY(partitions, r.U32("partition count"));
  if (r.remaining() != 0)
    return Corrupt("partition selector: " + std::to_string(r.remaining()) + " extra bytes");
  if (partitions == 0 || partitions > kMaxPartitions || partition >= partitions) {
    return InvalidArgument("partition " + std::to_string(partition) + " of " +
                           std::to_string(partitions) + " (1 to " + std::to_string(kMaxPartitions) +
                           " partitions)");
  }
  return PartitionSelector{partition, partitions};
}

crypto::Bytes ExportRequest::Encode() const {
  crypto::Bytes out = selector.Encode();
  ByteWriter w(&out);
  w.U32(part);
  w.U32(part_bytes);
  return out;
}

Result<ExportRequest> ExportRequest::Decode(std::span<const uint8_t> b) {
  if (b.size() != 16) {
    return Corrupt("export request: " + std::to_string(b.size()) + " bytes, not 16");
  }
  MEDSTREAM_TRY(selector, PartitionSelector::Decode(b.first(8)));
  ByteReader r(b.subspan(8));
  MEDSTREAM_TRY(part, r.U32("export part"));
  MEDSTREAM_TRY(part_bytes, r.U32("export part size"));
  return ExportRequest{.selector = selector, .part = part, .part_bytes = part_bytes};
}

crypto::Bytes ExportPart::Encode() const {
  crypto::Bytes out;
  out.reserve(1 + portable.size());
  out.push_back(last ? 1 : 0);
  out.insert(out.end(), portable.begin(), portable.end());
  return out;
}

Result<ExportPart> ExportPart::Decode(std::span<const uint8_t> b) {
  if (b.empty() || b[0] > 1) return Corrupt("export part: no last-part flag of 0 or 1");
  if (b.size() == 1) return Corrupt("export part: no portable state");
  return ExportPart{.last = b[0] == 1, .portable = b.subspan(1)};
}

crypto::Bytes ImportRequest::Encode() const {
  const crypto::ByteView whole = portable;
  return EncodePieces(selector, part, last, {&whole, 1});
}

crypto::Bytes ImportRequest::EncodePieces(const PartitionSelector& selector, uint32_t part,
                                          bool last, std::span<const crypto::ByteView> pieces) {
  size_t size = 0;
  for (const crypto::ByteView p : pieces) size += p.size();
  crypto::Bytes out = selector.Encode();
  out.reserve(kImportHeaderBytes + size);
  ByteWriter w(&out);
  w.U32(part);
  w.U8(last ? 1 : 0);
  for (const crypto::ByteView p : pieces) w.Raw(p.data(), p.size());
  return out;
}

Result<ImportRequest> ImportRequest::Decode(std::span<const uint8_t> b) {
  if (b.size() < kImportHeaderBytes) return Corrupt("import request: shorter than its header");
  MEDSTREAM_TRY(selector, PartitionSelector::Decode(b.first(8)));
  ByteReader r(b.subspan(8, 5));
  MEDSTREAM_TRY(part, r.U32("import part"));
  MEDSTREAM_TRY(last, r.U8("last-part flag"));
  if (last > 1) return Corrupt("import request: last-part flag " + std::to_string(last));
  return ImportRequest{.selector = selector,
                       .part = part,
                       .last = last == 1,
                       .portable = b.subspan(kImportHeaderBytes)};
}

Result<LakeLoad> LakeLoad::Decode(std::span<const uint8_t> b) {
  ByteReader r(b);
  LakeLoad out;
  MEDSTREAM_TRY(kind, r.U8("lake load kind"));
  if (kind < static_cast<uint8_t>(LakeLoadKind::kManifest) ||
      kind > static_cast<uint8_t>(LakeLoadKind::kDone)) {
    return InvalidArgument("lake_load: unknown kind " + std::to_string(kind));
  }
  out.kind = static_cast<LakeLoadKind>(kind);
  MEDSTREAM_TRY(key, r.String("lake key", kMaxLakeKey));
  out.key = std::move(key);
  out.blob = b.subspan(b.size() - r.remaining());
  return out;
}

Result<LakeResponse> LakeResponse::Decode(std::span<const uint8_t> b) {
  ByteReader r(b);
  LakeResponse out;
  MEDSTREAM_TRY(record, r.Blob("lake record"));
  MEDSTREAM_TRY(version, r.U64("lake version"));
  MEDSTREAM_TRY(mutated, r.U8("lake mutated"));
  MEDSTREAM_TRY(n, r.U32("lake writes"));
  out.record.assign(record.begin(), record.end());
  out.version = version;
  out.mutated = mutated != 0;
  for (uint32_t i = 0; i < n; ++i) {
    MEDSTREAM_TRY(key, r.String("lake key", 256));
    MEDSTREAM_TRY(blob, r.Blob("lake blob"));
    out.writes.emplace_back(key, crypto::Bytes(blob.begin(), blob.end()));
  }
  return out;
}

}  // namespace medstream::enclave
