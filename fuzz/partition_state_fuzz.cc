// A cluster partition's state as a worker reads it back from the state bucket
// (host/worker/partition_state.h), which any holder of the worker role can write: the state entry
// (StateEntry::Decode), the enclave's parts container (DecodeExportParts), a chunk manifest
// (ChunkManifest::Decode), and a state stored in chunks (ChunkStore::Load) whose chunks and
// manifest the input then damages, drops or replaces.
//
// Invariants: what decodes encodes back to the same bytes (the entry: decodes again to the same
// fields); a container's parts fill it exactly, within the import call's bound, and decode the
// same when its bytes come in pieces (as chunks read back do); a stored state
// comes back whole or not at all, so whatever Load returns is the state that was stored.
#include <fuzzer/FuzzedDataProvider.h>

#include "fuzz/fuzz.h"
#include "host/worker/memory_bucket.h"
#include "host/worker/partition_state.h"

namespace {

using namespace medstream;

void Entry(crypto::ByteView b) {
  auto e = host::StateEntry::Decode(b);
  if (!e) return;
  MEDSTREAM_FUZZ_CHECK(e->inflight_seq == 0 && e->consumer.size() <= 256);
  auto again = host::StateEntry::Decode(e->Encode());
  MEDSTREAM_FUZZ_CHECK(again.has_value());
  MEDSTREAM_FUZZ_CHECK(again->next_seq == e->next_seq && again->suspect_seq == e->suspect_seq &&
                       again->suspect_tries == e->suspect_tries && again->clean == e->clean &&
                       again->consumer == e->consumer && again->portable == e->portable);
}

void Parts(crypto::ByteView b) {
  auto parts = host::DecodeExportParts({b});
  // The same bytes in three pieces, as chunks read back hold them, decode to the same parts.
  const size_t cut1 = b.size() / 3;
  const size_t cut2 = std::min(b.size(), 2 * b.size() / 3 + 1);
  auto cut =
      host::DecodeExportParts({b.first(cut1), b.subspan(cut1, cut2 - cut1), b.subspan(cut2)});
  MEDSTREAM_FUZZ_CHECK(parts.has_value() == cut.has_value());
  if (!parts) return;
  MEDSTREAM_FUZZ_CHECK(cut->size() == parts->size());
  for (size_t i = 0; i < parts->size(); ++i)
    MEDSTREAM_FUZZ_CHECK(host::Join((*cut)[i]) == host::Join((*parts)[i]));
  MEDSTREAM_FUZZ_CHECK(!parts->empty() && parts->size() <= host::kMaxExportParts);
  if (parts->size() == 1 && parts->front().size() == 1 && parts->front()[0].data() == b.data() &&
      parts->front()[0].size() == b.size())
    return;  // not a container: the state itself
  uint64_t sum = 8 + 8 * uint64_t{parts->size()};
  std::vector<crypto::Bytes> copies;
  for (const host::StatePieces& part : *parts) {
    for (const crypto::ByteView p : part) {
      MEDSTREAM_FUZZ_CHECK(p.data() >= b.data() && p.data() + p.size() <= b.data() + b.size());
    }
    copies.push_back(host::Join(part));
    MEDSTREAM_FUZZ_CHECK(!copies.back().empty());
    sum += copies.back().size();
  }
  MEDSTREAM_FUZZ_CHECK(sum == b.size());
  if (copies.size() > 1)
    MEDSTREAM_FUZZ_CHECK(host::EncodeExportParts(copies) == crypto::Bytes(b.begin(), b.end()));
}

void Manifest(crypto::ByteView b) {
  auto m = host::ChunkManifest::Decode(b);
  if (!m) return;
  MEDSTREAM_FUZZ_CHECK(m->chunks >= 1 && m->chunks <= m->bytes &&
                       m->bytes <= host::kMaxPortableBytes);
  MEDSTREAM_FUZZ_CHECK(m->Encode() == crypto::Bytes(b.begin(), b.end()));
}

// A state stored in chunks, then the bucket changed as the input says; Load returns the state
// that was stored or refuses.
void Chunks(FuzzedDataProvider& in) {
  const uint32_t partition = in.ConsumeIntegralInRange<uint32_t>(0, 7);
  const size_t chunk = in.ConsumeIntegralInRange<size_t>(1, 64);
  const crypto::Bytes state = in.ConsumeBytes<uint8_t>(in.ConsumeIntegralInRange<size_t>(0, 512));
  host::MemoryBucket bucket;
  host::ChunkStore store(bucket, {1, 2, 3, 4, 5, 6, 7, 8});
  auto stored = store.Store(partition, state, {}, chunk);
  MEDSTREAM_FUZZ_CHECK(stored.has_value());
  auto loaded = store.Load(partition, *stored);
  MEDSTREAM_FUZZ_CHECK(loaded.has_value() && host::Join(loaded->pieces) == state);
  crypto::Bytes entry = *stored;
  for (int edits = 0; edits < 4 && in.remaining_bytes() > 0; ++edits) {
    std::vector<std::string> keys;
    for (const auto& [k, v] : bucket.values) keys.push_back(k);
    switch (in.ConsumeIntegralInRange<int>(0, 3)) {
      case 0:  // a chunk replaced
        if (!keys.empty()) {
          const std::string& k = keys[in.ConsumeIntegralInRange<size_t>(0, keys.size() - 1)];
          bucket.values[k] = in.ConsumeBytes<uint8_t>(in.ConsumeIntegralInRange<size_t>(0, 80));
        }
        break;
      case 1:  // a chunk dropped
        if (!keys.empty())
          bucket.values.erase(keys[in.ConsumeIntegralInRange<size_t>(0, keys.size() - 1)]);
        break;
      case 2:  // a chunk added, anywhere in the partition's key space
        bucket.values[in.ConsumeRandomLengthString(80)] = in.ConsumeBytes<uint8_t>(64);
        break;
      default:  // the entry's bytes flipped
        if (!entry.empty())
          entry[in.ConsumeIntegralInRange<size_t>(0, entry.size() - 1)] ^=
              in.ConsumeIntegralInRange<uint8_t>(1, 255);
    }
  }
  auto loaded_after = store.Load(partition, entry);
  if (!loaded_after) return;
  const crypto::Bytes after = host::Join(loaded_after->pieces);
  // Whole or not at all: a manifest's SHA-256 pins its state; an entry that is not a manifest is
  // the state itself.
  if (host::ChunkManifest::Is(entry)) {
    auto m = host::ChunkManifest::Decode(entry);
    MEDSTREAM_FUZZ_CHECK(m.has_value() && after.size() == m->bytes &&
                         crypto::Sha256(after) == m->sha);
    if (m->sha == host::ChunkManifest::Decode(*stored).value_or(host::ChunkManifest{}).sha)
      MEDSTREAM_FUZZ_CHECK(after == state);
  } else {
    MEDSTREAM_FUZZ_CHECK(after == entry);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const crypto::ByteView rest(data + 1, size - 1);
  switch (data[0] % 4) {
    case 0:
      Entry(rest);
      break;
    case 1:
      Parts(rest);
      break;
    case 2:
      Manifest(rest);
      break;
    default: {
      FuzzedDataProvider in(data + 1, size - 1);
      Chunks(in);
    }
  }
  return 0;
}
