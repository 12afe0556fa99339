#include "host/worker/partition_state.h"

#include <algorithm>

#include "common/base/bytes.h"
#include "common/wire/cluster.h"

namespace medstream::host {

namespace cl = wire::cluster;

namespace {

constexpr char kChunkedMagic[4] = {'M', 'S', 'P', 'C'};
constexpr char kPartsMagic[4] = {'M', 'S', 'P', 'M'};

class NatsBucket final : public StateBucket {
 public:
  explicit NatsBucket(nats::KeyValue& kv) : kv_(kv) {}
  Result<crypto::Bytes> Get(const std::string& key) override {
    MEDSTREAM_TRY(e, kv_.Get(key));
    return std::move(e.value);
  }
  Status Put(const std::string& key, crypto::ByteView value) override {
    MEDSTREAM_TRY(rev, kv_.Put(key, value));
    (void)rev;
    return {};
  }
  Status Delete(const std::string& key) override { return kv_.Delete(key); }
  Result<std::vector<std::string>> Keys() override { return kv_.Keys(); }

 private:
  nats::KeyValue& kv_;
};

}  // namespace

crypto::Bytes StateEntry::Encode() const {
  crypto::Bytes out;
  ByteWriter w(&out);
  w.U64(next_seq);
  w.U64(suspect_seq);
  w.U32(suspect_tries);
  w.U64(inflight_seq);
  w.U8(clean ? 1 : 0);
  w.Blob(crypto::AsBytes(consumer));
  w.Bytes(portable);
  return out;
}

Result<StateEntry> StateEntry::Decode(crypto::ByteView b) {
  ByteReader r(b);
  StateEntry e;
  MEDSTREAM_TRY(next, r.U64("next sequence"));
  MEDSTREAM_TRY(suspect, r.U64("suspect sequence"));
  MEDSTREAM_TRY(tries, r.U32("suspect tries"));
  MEDSTREAM_TRY(inflight, r.U64("in-flight sequence"));
  MEDSTREAM_TRY(clean, r.U8("clean flag"));
  MEDSTREAM_TRY(consumer, r.Blob("consumer", 256));
  MEDSTREAM_TRY(rest, r.Bytes(r.remaining(), "portable state"));
  e.next_seq = next;
  e.suspect_seq = suspect;
  e.suspect_tries = tries;
  e.inflight_seq = inflight;
  e.clean = clean == 1;
  // Counts what an owner that died left in flight as a try on that batch.
  if (e.inflight_seq != 0) {
    e.suspect_tries = e.suspect_seq == e.inflight_seq ? e.suspect_tries + 1 : 1;
    e.suspect_seq = e.inflight_seq;
    e.inflight_seq = 0;
  }
  e.consumer.assign(consumer.begin(), consumer.end());
  e.portable.assign(rest.begin(), rest.end());
  return e;
}

StatePieces ExportPartsPieces(const std::vector<crypto::Bytes>& parts, crypto::Bytes* framing) {
  framing->clear();
  if (parts.size() == 1) return {parts[0]};
  ByteWriter w(framing);
  w.Raw(kPartsMagic, 4);
  w.U32(static_cast<uint32_t>(parts.size()));
  for (const crypto::Bytes& p : parts) w.U64(p.size());
  // The framing is whole before any view into it is taken.
  const crypto::ByteView f(*framing);
  StatePieces pieces{f.first(8)};
  pieces.reserve(1 + 2 * parts.size());
  for (size_t i = 0; i < parts.size(); ++i) {
    pieces.push_back(f.subspan(8 + 8 * i, 8));
    pieces.push_back(parts[i]);
  }
  return pieces;
}

uint64_t TotalBytes(const StatePieces& pieces) {
  uint64_t total = 0;
  for (const crypto::ByteView p : pieces) total += p.size();
  return total;
}

crypto::Bytes Join(const StatePieces& pieces) {
  crypto::Bytes out;
  out.reserve(TotalBytes(pieces));
  for (const crypto::ByteView p : pieces) out.insert(out.end(), p.begin(), p.end());
  return out;
}

crypto::Bytes EncodeExportParts(const std::vector<crypto::Bytes>& parts) {
  crypto::Bytes framing;
  return Join(ExportPartsPieces(parts, &framing));
}

namespace {

// Reads a state held as pieces front to back without joining them.
class PiecesReader {
 public:
  explicit PiecesReader(const StatePieces& pieces)
      : pieces_(pieces), remaining_(TotalBytes(pieces)) {}
  uint64_t remaining() const { return remaining_; }
  // The next `n` bytes (at most remaining()) as views into the pieces.
  StatePieces Take(uint64_t n) {
    StatePieces out;
    remaining_ -= n;
    while (n > 0) {
      const crypto::ByteView piece = pieces_[index_].subspan(offset_);
      const size_t k = static_cast<size_t>(std::min<uint64_t>(n, piece.size()));
      if (k > 0) out.push_back(piece.first(k));
      n -= k;
      offset_ += k;
      if (offset_ == pieces_[index_].size()) {
        ++index_;
        offset_ = 0;
      }
    }
    return out;
  }
  // The next `n` bytes (a field of the framing, at most 8) copied out; kCorrupt past the end.
  Result<std::array<uint8_t, 8>> Field(size_t n, const char* what) {
    if (remaining_ < n) return Corrupt(std::string("truncated ") + what);
    std::array<uint8_t, 8> out{};
    size_t at = 0;
    for (const crypto::ByteView p : Take(n)) {
      std::copy(p.begin(), p.end(), out.begin() + at);
      at += p.size();
    }
    return out;
  }

 private:
  const StatePieces& pieces_;
  uint64_t remaining_;
  size_t index_ = 0;
  size_t offset_ = 0;
};

}  // namespace

Result<std::vector<StatePieces>> DecodeExportParts(const StatePieces& stored) {
  const uint64_t stored_bytes = TotalBytes(stored);
  PiecesReader r(stored);
  auto magic = r.Field(4, "magic");
  if (!magic || !std::equal(magic->begin(), magic->begin() + 4, std::begin(kPartsMagic)))
    return std::vector<StatePieces>{stored};  // not a container: the state itself, one part
  MEDSTREAM_TRY(count_bytes, r.Field(4, "export part count"));
  MEDSTREAM_TRY(count, ByteReader(count_bytes).U32("export part count"));
  // Each part takes at least its size: a count the bytes cannot hold is refused first.
  if (count == 0 || count > kMaxExportParts || count > r.remaining() / 8) {
    return Corrupt("a container of " + std::to_string(count) + " export parts in " +
                   std::to_string(stored_bytes) + " bytes");
  }
  constexpr uint64_t kMaxPart =
      enclave::MaxRequest(enclave::Call::kImportStreams) - enclave::kImportHeaderBytes;
  std::vector<StatePieces> parts;
  parts.reserve(count);
  for (uint32_t i = 0; i < count; ++i) {
    MEDSTREAM_TRY(size_bytes, r.Field(8, "export part size"));
    MEDSTREAM_TRY(size, ByteReader(size_bytes).U64("export part size"));
    if (size == 0 || size > kMaxPart) {
      return Corrupt("export part " + std::to_string(i) + " of " + std::to_string(size) +
                     " bytes (1 to " + std::to_string(kMaxPart) + ")");
    }
    if (size > r.remaining()) return Corrupt("truncated export part");
    parts.push_back(r.Take(size));
  }
  if (r.remaining() != 0) return Corrupt("export parts: bytes after the last");
  return parts;
}

bool ChunkManifest::Is(crypto::ByteView b) {
  return b.size() >= 4 && std::equal(b.begin(), b.begin() + 4, std::begin(kChunkedMagic));
}

crypto::Bytes ChunkManifest::Encode() const {
  crypto::Bytes out;
  ByteWriter w(&out);
  w.Raw(kChunkedMagic, 4);
  w.Bytes(writer);
  w.U8(slot);
  w.U32(chunks);
  w.U64(bytes);
  w.Bytes(sha);
  return out;
}

Result<ChunkManifest> ChunkManifest::Decode(crypto::ByteView b) {
  if (!Is(b)) return Corrupt("not a chunk manifest");
  ByteReader r(b.subspan(4));
  ChunkManifest m;
  MEDSTREAM_TRY(writer, r.Bytes(8, "chunk writer"));
  MEDSTREAM_TRY(slot, r.U8("chunk slot"));
  MEDSTREAM_TRY(chunks, r.U32("chunk count"));
  MEDSTREAM_TRY(bytes, r.U64("portable state size"));
  MEDSTREAM_TRY(sha, r.Bytes(32, "portable state digest"));
  if (r.remaining() != 0) return Corrupt("chunk manifest: bytes after its end");
  // Each chunk holds at least one byte; no state is larger than an import carries.
  if (slot > 1 || bytes > kMaxPortableBytes || chunks == 0 || chunks > bytes) {
    return Corrupt("chunk manifest of " + std::to_string(chunks) + " chunks for " +
                   std::to_string(bytes) + " bytes in slot " + std::to_string(slot));
  }
  std::copy(writer.begin(), writer.end(), m.writer.begin());
  std::copy(sha.begin(), sha.end(), m.sha.begin());
  m.slot = slot;
  m.chunks = chunks;
  m.bytes = bytes;
  return m;
}

std::string ChunkManifest::KeyPrefix(uint32_t partition) const {
  return cl::PartitionKey(partition) + ".s." + crypto::ToHex(writer) + "." + std::to_string(slot) +
         ".";
}

std::unique_ptr<StateBucket> NatsStateBucket(nats::KeyValue& kv) {
  return std::make_unique<NatsBucket>(kv);
}

Result<crypto::Bytes> ChunkStore::Store(uint32_t partition, const StatePieces& portable,
                                        crypto::ByteView written, size_t chunk_bytes) {
  const size_t chunk = std::max<size_t>(chunk_bytes, 1);
  const uint64_t total = TotalBytes(portable);
  if (total <= chunk) {
    crypto::Bytes whole = Join(portable);
    if (!ChunkManifest::Is(whole)) return whole;
  }
  if (total > kMaxPortableBytes) {
    return Fail(Error::Code::kResourceExhausted,
                "partition " + std::to_string(partition) + "'s state of " + std::to_string(total) +
                    " bytes is more than one partition may store (" +
                    std::to_string(kMaxPortableBytes) + " bytes)");
  }
  ChunkManifest m;
  m.writer = writer_;
  // The slot the entry as last written does not name (its chunks stay whole until replaced).
  if (ChunkManifest::Is(written)) {
    auto last = ChunkManifest::Decode(written);
    if (last && last->writer == m.writer) m.slot = 1 - last->slot;
  }
  m.bytes = total;
  m.chunks = static_cast<uint32_t>((total + chunk - 1) / chunk);
  crypto::Sha256Hasher sha;
  for (const crypto::ByteView p : portable) sha.Update(p);
  m.sha = sha.Peek();
  crypto::Bytes manifest = m.Encode();
  size_t piece = 0;   // where the next chunk starts: a piece,
  size_t offset = 0;  // and an offset in it
  crypto::Bytes assembled;
  for (uint32_t i = 0; i < m.chunks; ++i) {
    const size_t n = static_cast<size_t>(std::min<uint64_t>(chunk, total - uint64_t{i} * chunk));
    while (offset == portable[piece].size()) {  // a piece's end, or an empty piece
      ++piece;
      offset = 0;
    }
    crypto::ByteView data;
    if (portable[piece].size() - offset >= n) {
      data = portable[piece].subspan(offset, n);
      offset += n;
    } else {
      assembled.clear();
      while (assembled.size() < n) {
        if (offset == portable[piece].size()) {
          ++piece;
          offset = 0;
        }
        const size_t take = std::min(n - assembled.size(), portable[piece].size() - offset);
        const crypto::ByteView from = portable[piece].subspan(offset, take);
        assembled.insert(assembled.end(), from.begin(), from.end());
        offset += take;
      }
      data = assembled;
    }
    if (auto s = bucket_.Put(m.KeyPrefix(partition) + std::to_string(i), data); !s) {
      Delete(partition, manifest);
      return std::unexpected(std::move(s.error()).With("storing partition " +
                                                       std::to_string(partition) +
                                                       "'s state, chunk " + std::to_string(i)));
    }
  }
  return manifest;
}

Result<LoadedState> ChunkStore::Load(uint32_t partition, crypto::ByteView stored) {
  LoadedState out;
  if (!ChunkManifest::Is(stored)) {
    if (!stored.empty()) out.pieces.push_back(stored);
    return out;
  }
  MEDSTREAM_TRY(m, ChunkManifest::Decode(stored));
  crypto::Sha256Hasher sha;
  uint64_t have = 0;
  for (uint32_t i = 0; i < m.chunks; ++i) {
    const std::string key = m.KeyPrefix(partition) + std::to_string(i);
    auto chunk = bucket_.Get(key);
    if (!chunk) return std::unexpected(std::move(chunk.error()).With("chunk " + key));
    // Each chunk holds at least one byte, and all of them no more than the manifest says.
    if (chunk->empty() || chunk->size() > m.bytes - have) {
      return Corrupt("chunk " + key + " does not fit its manifest");
    }
    // Nothing is reserved for the manifest's claimed size or count (anyone can write a manifest,
    // up to 64 GiB): the state grows only with chunks that are there.
    sha.Update(*chunk);
    have += chunk->size();
    out.chunks.push_back(std::move(*chunk));
  }
  if (have != m.bytes || sha.Peek() != m.sha) {
    return Corrupt("the chunks of partition " + std::to_string(partition) +
                   "'s state do not match their manifest");
  }
  out.pieces.assign(out.chunks.begin(), out.chunks.end());
  return out;
}

void ChunkStore::Delete(uint32_t partition, crypto::ByteView stored) {
  if (!ChunkManifest::Is(stored)) return;
  auto m = ChunkManifest::Decode(stored);
  if (!m) return;
  for (uint32_t i = 0; i < m->chunks; ++i)
    (void)bucket_.Delete(m->KeyPrefix(partition) + std::to_string(i));
}

void ChunkStore::Sweep(uint32_t partition, crypto::ByteView current) {
  auto keys = bucket_.Keys();
  if (!keys) return;  // the next owner sweeps
  const std::string mine = cl::PartitionKey(partition) + ".s.";
  std::string keep;
  if (ChunkManifest::Is(current)) {
    if (auto m = ChunkManifest::Decode(current)) keep = m->KeyPrefix(partition);
  }
  for (const std::string& key : *keys) {
    if (key.starts_with(mine) && (keep.empty() || !key.starts_with(keep)))
      (void)bucket_.Delete(key);
  }
}

}  // namespace medstream::host
