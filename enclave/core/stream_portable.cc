// The cluster's portable state (StreamService::ExportStreams, ImportStreams; docs/scale-out.md):
// a partition's streams leave the enclave in parts, each stream sealed under a key derived from
// its data key (not this machine's sealing key), and enter another enclave in parts, nothing used
// until the last part is in. Split from stream_service.cc; the same class.
#include <algorithm>
#include <cstring>

#include "enclave/core/stream_service.h"

namespace medstream::enclave {

namespace {

std::unexpected<Error> Refuse(std::string why) {
  return Fail(Error::Code::kFailedPrecondition, std::move(why));
}

constexpr std::string_view kPortableMagic = "MSPS";
constexpr uint16_t kPortableVersion = 1;
constexpr size_t kNonceBytes = 12, kTagBytes = 16;

Result<crypto::AesGcm> PortableCipher(const crypto::Key256& data_key, const wire::StreamId& id) {
  crypto::Key256 k;
  if (auto s = crypto::HkdfSha256(data_key.span(), id,
                                  crypto::AsBytes("medstream v1 portable state"), k.span());
      !s) {
    return std::unexpected(s.error());
  }
  return crypto::AesGcm::Create(k);
}

crypto::Bytes PortableAad(const wire::StreamId& id, uint32_t key_id) {
  crypto::Bytes aad;
  ByteWriter w(&aad);
  w.Bytes(crypto::AsBytes(kPortableMagic));
  w.Bytes(id);
  w.U32(key_id);
  return aad;
}

// A portable state: "MSPS" | version u16 | partition u32 | partitions u32 | stream count u32,
// then each stream: id (16 bytes) | key id u32 | sealed length u32 | nonce | sealed state.
constexpr size_t kPortableHeaderBytes = 4 + 2 + 4 + 4 + 4;
constexpr size_t kPortableEntryBytes = 16 + 4 + 4 + kNonceBytes + kTagBytes;  // beside the state
// A part gets streams while it is under its part size (at most kCheckpointPartBytes), so it holds
// at most that and one more stream, whose state is bounded (kMaxSavedStreamBytes): every part
// fits the export's answer and the import's request, however large the partition.
constexpr size_t kMaxExportPartBytes = kPortableHeaderBytes + kCheckpointPartBytes +
                                       kPortableEntryBytes +
                                       streams::StreamTable::kMaxSavedStreamBytes;
static_assert(1 + kMaxExportPartBytes <= MaxResponse(Call::kExportStreams),
              "an export part must fit the export_streams answer");
static_assert(kImportHeaderBytes + kMaxExportPartBytes <= MaxRequest(Call::kImportStreams),
              "an export part must fit the import_streams request");

bool SameSelector(const PartitionSelector& a, const PartitionSelector& b) {
  return a.partition == b.partition && a.partitions == b.partitions;
}

}  // namespace

Result<crypto::Bytes> StreamService::ExportStreams(crypto::ByteView request) {
  MEDSTREAM_TRY(req, ExportRequest::Decode(request));
  const size_t part_bytes = req.part_bytes == 0
                                ? kCheckpointPartBytes
                                : std::min<size_t>(req.part_bytes, kCheckpointPartBytes);
  if (req.part == 0) {
    ExportCursor c{.selector = req.selector,
                   .generation = generation_,
                   .ids = {},
                   .next_stream = 0,
                   .next_part = 0};
    for (const wire::StreamId& id : streams_.Ids()) {
      if (wire::PartitionOf(id, req.selector.partitions) == req.selector.partition) {
        c.ids.push_back(id);
      }
    }
    export_ = std::move(c);
  } else if (!export_ || !SameSelector(export_->selector, req.selector) ||
             export_->next_part != req.part || export_->generation != generation_) {
    export_.reset();
    return Fail(Error::Code::kFailedPrecondition,
                "export part " + std::to_string(req.part) +
                    " does not follow the last part of an export of these streams as they are "
                    "(start again at part 0)");
  }
  ExportCursor& c = *export_;
  // The answer (ExportPart) is written in place: its last-part flag, then the portable state.
  crypto::Bytes out;
  ByteWriter w(&out);
  w.U8(0);
  w.Bytes(crypto::AsBytes(kPortableMagic));
  w.U16(kPortableVersion);
  w.U32(c.selector.partition);
  w.U32(c.selector.partitions);
  const size_t count_at = out.size();
  w.U32(0);
  uint32_t count = 0;
  crypto::Bytes plain;
  auto fail = [&](Error e) -> Result<crypto::Bytes> {
    crypto::Wipe(plain);
    export_.reset();
    return std::unexpected(std::move(e));
  };
  while (c.next_stream < c.ids.size() && (count == 0 || out.size() < part_bytes)) {
    const wire::StreamId& id = c.ids[c.next_stream];
    plain.clear();
    ByteWriter pw(&plain);
    if (auto s = streams_.SaveStream(id, &pw); !s) return fail(s.error());
    uint32_t key_id = 0;
    {
      ByteReader peek(plain);
      (void)peek.Bytes(16, "");
      (void)peek.U64("");
      auto k = peek.U32("key id");
      if (!k) return fail(k.error());
      key_id = *k;
    }
    auto key = keys_.find(key_id);
    if (key == keys_.end()) {
      return fail(Error(Error::Code::kFailedPrecondition,
                        "stream without its key " + std::to_string(key_id)));
    }
    auto gcm = PortableCipher(key->second.key, id);
    if (!gcm) return fail(gcm.error());
    std::array<uint8_t, kNonceBytes> nonce{};
    if (auto s = crypto::RandomBytes(nonce); !s) return fail(s.error());
    auto sealed = gcm->Seal(nonce, PortableAad(id, key_id), plain);
    if (!sealed) return fail(sealed.error());
    w.Bytes(id);
    w.U32(key_id);
    w.U32(static_cast<uint32_t>(kNonceBytes + sealed->size()));
    w.Bytes(nonce);
    w.Bytes(*sealed);
    ++count;
    ++c.next_stream;
  }
  crypto::Wipe(plain);
  std::memcpy(out.data() + count_at, &count, sizeof count);  // little-endian, as ByteWriter
  const bool last = c.next_stream == c.ids.size();
  out[0] = last ? 1 : 0;
  ++c.next_part;
  if (last) export_.reset();
  return out;
}

Result<crypto::Bytes> StreamService::ImportStreams(crypto::ByteView request) {
  MEDSTREAM_TRY(req, ImportRequest::Decode(request));
  if (req.part == 0) {
    import_ = ImportStaging{.selector = req.selector,
                            .generation = generation_,
                            .next_part = 0,
                            .ids = {},
                            .streams = {}};
  } else if (!import_ || !SameSelector(import_->selector, req.selector) ||
             import_->next_part != req.part) {
    import_.reset();
    return Corrupt("import part " + std::to_string(req.part) +
                   " does not follow the last part imported (a part missing, out of order, or "
                   "for another partition)");
  } else if (import_->generation != generation_) {
    import_.reset();
    return Fail(Error::Code::kFailedPrecondition,
                "the streams changed between two parts of an import (start again at part 0)");
  }
  auto staged = StageImportPart(req);
  if (!staged) {
    import_.reset();
    return std::unexpected(staged.error());
  }
  ++import_->next_part;
  if (!req.last) return crypto::Bytes{};
  // The last part: the partition's streams become exactly the imported ones.
  for (const wire::StreamId& id : streams_.Ids()) {
    if (wire::PartitionOf(id, req.selector.partitions) == req.selector.partition) {
      streams_.Erase(id);
    }
  }
  for (auto& one : import_->streams) streams_.Put(std::move(one));
  import_.reset();
  ++generation_;
  return crypto::Bytes{};
}

Status StreamService::StageImportPart(const ImportRequest& req) {
  ImportStaging& staging = *import_;
  if (req.portable.empty()) {
    // Nothing: the partition starts afresh (an export always has its header).
    if (req.part == 0 && req.last) return {};
    return Corrupt("import part " + std::to_string(req.part) + " is empty");
  }
  ByteReader r(req.portable);
  MEDSTREAM_TRY(magic, r.Bytes(4, "portable state magic"));
  if (!std::equal(magic.begin(), magic.end(), kPortableMagic.begin())) {
    return Corrupt("not a portable state blob");
  }
  MEDSTREAM_TRY(version, r.U16("portable state version"));
  if (version != kPortableVersion) {
    return Corrupt("portable state version " + std::to_string(version) + " (this enclave reads " +
                   std::to_string(kPortableVersion) + ")");
  }
  MEDSTREAM_TRY(partition, r.U32("partition"));
  MEDSTREAM_TRY(partitions, r.U32("partition count"));
  if (partition != req.selector.partition || partitions != req.selector.partitions) {
    return Corrupt("portable state of partition " + std::to_string(partition) + " of " +
                   std::to_string(partitions) + " given for partition " +
                   std::to_string(req.selector.partition) + " of " +
                   std::to_string(req.selector.partitions));
  }
  MEDSTREAM_TRY(count, r.U32("stream count"));
  // Each entry takes at least its id, key id, length, nonce and tag: a count the bytes cannot
  // hold is refused before anything is allocated for it.
  if (count > r.remaining() / kPortableEntryBytes) {
    return Corrupt("portable state claims " + std::to_string(count) + " streams in " +
                   std::to_string(r.remaining()) + " bytes");
  }
  auto config_of = [&](uint32_t id) -> const StreamConfig* {
    auto it = keys_.find(id);
    return it == keys_.end() ? nullptr : &it->second.config;
  };
  staging.streams.reserve(staging.streams.size() + count);
  crypto::Bytes plain;
  for (uint32_t i = 0; i < count; ++i) {
    MEDSTREAM_TRY(idb, r.Bytes(16, "stream id"));
    wire::StreamId id;
    std::copy(idb.begin(), idb.end(), id.begin());
    MEDSTREAM_TRY(key_id, r.U32("key id"));
    MEDSTREAM_TRY(len, r.U32("sealed length"));
    if (len < kNonceBytes + kTagBytes) return Corrupt("portable state entry too short");
    MEDSTREAM_TRY(sealed, r.Bytes(len, "sealed stream"));
    if (wire::PartitionOf(id, partitions) != partition) {
      return Corrupt("portable state of partition " + std::to_string(partition) +
                     " holds a stream of another partition");
    }
    if (!staging.ids.insert(id).second) {
      return Corrupt("portable state gives stream " + wire::StreamName(id) + " twice");
    }
    auto key = keys_.find(key_id);
    if (key == keys_.end()) {
      return Refuse("portable state needs key " + std::to_string(key_id) +
                    ", not provisioned here (the data owner provisions it after attestation)");
    }
    MEDSTREAM_TRY(gcm, PortableCipher(key->second.key, id));
    auto opened = gcm.Open(sealed.subspan(0, kNonceBytes), PortableAad(id, key_id),
                           sealed.subspan(kNonceBytes));
    if (!opened)
      return Corrupt("portable state of stream " + wire::StreamName(id) +
                     " does not open (forged, damaged or another owner's)");
    plain = std::move(*opened);
    ByteReader pr(plain);
    auto one = streams_.LoadStream(&pr, config_of);
    if (!one || pr.remaining() != 0 || one->id != id || one->key_id() != key_id) {
      crypto::Wipe(plain);
      return Corrupt("portable state of stream " + wire::StreamName(id) + " is malformed");
    }
    crypto::Wipe(plain);
    staging.streams.push_back(std::move(*one));
  }
  if (r.remaining() != 0) return Corrupt("portable state: trailing bytes");
  return {};
}

}  // namespace medstream::enclave
