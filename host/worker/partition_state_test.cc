// A cluster partition's stored state, in-process: the state entry's codec and the chunk store's
// rules over an in-memory bucket (worker_test.cc runs them on a real cluster).
#include "host/worker/partition_state.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <map>

#include "common/base/bytes.h"
#include "common/wire/cluster.h"
#include "host/worker/memory_bucket.h"

namespace medstream::host {
namespace {

crypto::Bytes State(size_t n, uint8_t seed) {
  crypto::Bytes b(n);
  for (size_t i = 0; i < n; ++i) b[i] = static_cast<uint8_t>(seed + i * 7 + (i >> 8));
  b[0] = 'M';  // as a portable state starts ("MSPS")
  return b;
}

// The parts of a state held in one buffer, each joined.
Result<std::vector<crypto::Bytes>> Decode(crypto::ByteView stored) {
  MEDSTREAM_TRY(parts, DecodeExportParts({stored}));
  std::vector<crypto::Bytes> out;
  for (const StatePieces& p : parts) out.push_back(Join(p));
  return out;
}

constexpr std::array<uint8_t, 8> kWriterA{1, 2, 3, 4, 5, 6, 7, 8};
constexpr std::array<uint8_t, 8> kWriterB{9, 9, 9, 9, 9, 9, 9, 9};

TEST(StateEntry, RoundTripsAndCountsAnInFlightBatchAsATry) {
  StateEntry e{.next_seq = 42,
               .suspect_seq = 40,
               .suspect_tries = 1,
               .inflight_seq = 40,
               .clean = true,
               .consumer = "p3-wa-0011-7",
               .portable = State(100, 1)};
  auto d = StateEntry::Decode(e.Encode());
  ASSERT_TRUE(d) << d.error().message();
  EXPECT_EQ(d->next_seq, 42u);
  // The owner died with batch 40 in flight, which was suspect once: now twice.
  EXPECT_EQ(d->suspect_seq, 40u);
  EXPECT_EQ(d->suspect_tries, 2u);
  EXPECT_EQ(d->inflight_seq, 0u);
  EXPECT_TRUE(d->clean);
  EXPECT_EQ(d->consumer, e.consumer);
  EXPECT_EQ(d->portable, e.portable);
  // Another batch in flight than the suspect one: its first try.
  e.inflight_seq = 41;
  d = StateEntry::Decode(e.Encode());
  ASSERT_TRUE(d);
  EXPECT_EQ(d->suspect_seq, 41u);
  EXPECT_EQ(d->suspect_tries, 1u);
}

StateEntry WithConsumer(std::string consumer) {
  StateEntry e;
  e.consumer = std::move(consumer);
  return e;
}

TEST(StateEntry, GarbageIsRefusedAsCorrupt) {
  const crypto::Bytes whole = WithConsumer("c").Encode();  // no portable state: ends at the name
  ASSERT_TRUE(StateEntry::Decode(whole));
  for (size_t n = 0; n < whole.size(); ++n) {  // every cut inside the fields and the name
    auto d = StateEntry::Decode(crypto::ByteView(whole).first(n));
    ASSERT_FALSE(d) << n;
    EXPECT_EQ(d.error().code(), Error::Code::kCorrupt) << n;
  }
  // A consumer name past its 256 bytes.
  auto d = StateEntry::Decode(WithConsumer(std::string(300, 'c')).Encode());
  ASSERT_FALSE(d);
  EXPECT_EQ(d.error().code(), Error::Code::kCorrupt);
}

TEST(ChunkManifest, RoundTripsAndRefusesWhatNoWriterWrites) {
  ChunkManifest m{.writer = kWriterA, .slot = 1, .chunks = 3, .bytes = 300, .sha = {}};
  m.sha[0] = 7;
  auto d = ChunkManifest::Decode(m.Encode());
  ASSERT_TRUE(d) << d.error().message();
  EXPECT_EQ(d->writer, kWriterA);
  EXPECT_EQ(d->slot, 1);
  EXPECT_EQ(d->chunks, 3u);
  EXPECT_EQ(d->bytes, 300u);
  EXPECT_EQ(d->sha, m.sha);
  EXPECT_EQ(d->KeyPrefix(5), wire::cluster::PartitionKey(5) + ".s.0102030405060708.1.");
  auto refused = [](ChunkManifest bad) {
    auto r = ChunkManifest::Decode(bad.Encode());
    return !r && r.error().code() == Error::Code::kCorrupt;
  };
  EXPECT_TRUE(refused({.writer = kWriterA, .slot = 2, .chunks = 3, .bytes = 300, .sha = {}}));
  EXPECT_TRUE(refused({.writer = kWriterA, .slot = 0, .chunks = 0, .bytes = 300, .sha = {}}));
  EXPECT_TRUE(refused({.writer = kWriterA, .slot = 0, .chunks = 301, .bytes = 300, .sha = {}}));
  EXPECT_TRUE(refused(
      {.writer = kWriterA, .slot = 0, .chunks = 3, .bytes = kMaxPortableBytes + 1, .sha = {}}));
  crypto::Bytes longer = m.Encode();
  longer.push_back(0);
  EXPECT_EQ(ChunkManifest::Decode(longer).error().code(), Error::Code::kCorrupt);
  const crypto::Bytes whole = m.Encode();
  EXPECT_EQ(ChunkManifest::Decode(crypto::ByteView(whole).first(20)).error().code(),
            Error::Code::kCorrupt);
  EXPECT_FALSE(ChunkManifest::Is(State(100, 0)));  // "M..." is a state, not a manifest
}

TEST(ExportParts, OnePartIsStoredAsItIsAndMoreInAContainer) {
  const crypto::Bytes one = State(100, 1);
  EXPECT_EQ(EncodeExportParts({one}), one);  // as before parts
  auto back = Decode(one);
  ASSERT_TRUE(back);
  EXPECT_EQ(*back, std::vector<crypto::Bytes>{one});
  auto none = DecodeExportParts({});  // nothing stored yet: the partition starts afresh
  ASSERT_TRUE(none);
  ASSERT_EQ(none->size(), 1u);
  EXPECT_EQ(TotalBytes((*none)[0]), 0u);

  const std::vector<crypto::Bytes> parts = {State(100, 1), State(3, 2), State(5000, 3)};
  const crypto::Bytes stored = EncodeExportParts(parts);
  back = Decode(stored);
  ASSERT_TRUE(back) << back.error().message();
  EXPECT_EQ(*back, parts);
  EXPECT_FALSE(ChunkManifest::Is(stored));
}

// A state read back in chunks is decoded from the chunks as they are: wherever the chunks cut
// the framing or the parts (one byte each, at every point), the parts are the same, views into
// the chunks rather than copies.
TEST(ExportParts, AStateInPiecesDecodesAsTheWholeWhereverThePiecesAreCut) {
  const std::vector<crypto::Bytes> parts = {State(100, 1), State(3, 2), State(50, 3)};
  const crypto::Bytes stored = EncodeExportParts(parts);
  const crypto::ByteView whole = stored;
  auto check = [&](const StatePieces& pieces, const std::string& how) {
    auto back = DecodeExportParts(pieces);
    ASSERT_TRUE(back) << how << ": " << back.error().message();
    ASSERT_EQ(back->size(), parts.size()) << how;
    for (size_t i = 0; i < parts.size(); ++i) {
      EXPECT_EQ(Join((*back)[i]), parts[i]) << how << ", part " << i;
      for (const crypto::ByteView v : (*back)[i]) {
        EXPECT_TRUE(v.data() >= whole.data() && v.data() + v.size() <= whole.data() + whole.size())
            << how << ": a part copied out of the pieces";
      }
    }
  };
  for (size_t a = 0; a <= stored.size(); ++a) {
    for (size_t b = a; b <= stored.size(); b += 7) {
      check({whole.first(a), whole.subspan(a, b - a), whole.subspan(b)},
            "cut at " + std::to_string(a) + " and " + std::to_string(b));
    }
  }
  StatePieces bytes;
  for (size_t i = 0; i < stored.size(); ++i) bytes.push_back(whole.subspan(i, 1));
  check(bytes, "one byte a piece");
  // Not a container: the pieces themselves, one part.
  const crypto::Bytes one = State(30, 4);
  auto single =
      DecodeExportParts({crypto::ByteView(one).first(2), crypto::ByteView(one).subspan(2)});
  ASSERT_TRUE(single);
  ASSERT_EQ(single->size(), 1u);
  EXPECT_EQ(Join((*single)[0]), one);
}

TEST(ExportParts, AContainerThatDoesNotAddUpIsCorrupt) {
  const crypto::Bytes stored = EncodeExportParts({State(100, 1), State(30, 2)});
  auto corrupt = [](crypto::ByteView b) {
    auto r = DecodeExportParts({b});
    return !r && r.error().code() == Error::Code::kCorrupt;
  };
  for (size_t n = 4; n < stored.size(); ++n) {  // every cut, past the magic
    EXPECT_TRUE(corrupt(crypto::ByteView(stored).first(n))) << n;
  }
  crypto::Bytes longer = stored;
  longer.push_back(0);
  EXPECT_TRUE(corrupt(longer));
  crypto::Bytes zero_parts = stored;
  std::fill(zero_parts.begin() + 4, zero_parts.begin() + 8, 0);
  EXPECT_TRUE(corrupt(zero_parts));
  // A count past what the bytes hold is refused before anything is set aside for it.
  crypto::Bytes many = stored;
  std::fill(many.begin() + 4, many.begin() + 8, 0xff);
  EXPECT_TRUE(corrupt(many));
  // An empty part, and a part larger than one import carries.
  crypto::Bytes empty_part = stored;
  std::fill(empty_part.begin() + 8, empty_part.begin() + 16, 0);
  EXPECT_TRUE(corrupt(empty_part));
  crypto::Bytes huge_part = stored;
  std::fill(huge_part.begin() + 8, huge_part.begin() + 16, 0xff);
  EXPECT_TRUE(corrupt(huge_part));
}

TEST(ChunkStore, AStateThatFitsOneMessageIsStoredWhole) {
  MemoryBucket bucket;
  ChunkStore store(bucket, kWriterA);
  const crypto::Bytes state = State(1000, 3);
  auto stored = store.Store(4, state, {}, 1000);
  ASSERT_TRUE(stored) << stored.error().message();
  EXPECT_EQ(*stored, state);
  EXPECT_TRUE(bucket.values.empty());
  auto loaded = store.Load(4, *stored);
  ASSERT_TRUE(loaded);
  EXPECT_EQ(Join(loaded->pieces), state);
  // A state that would read as a manifest is chunked however small, so it is never mistaken.
  crypto::Bytes odd = State(10, 0);
  const std::string magic = "MSPC";
  std::copy(magic.begin(), magic.end(), odd.begin());
  auto chunked = store.Store(4, odd, {}, 1000);
  ASSERT_TRUE(chunked);
  EXPECT_NE(*chunked, odd);
  loaded = store.Load(4, *chunked);
  ASSERT_TRUE(loaded) << loaded.error().message();
  EXPECT_EQ(Join(loaded->pieces), odd);
}

// A state of many parts is stored from the parts themselves: the same chunks as its one-buffer
// container, a chunk within a part written straight from it, so the worker never holds the
// state twice.
TEST(ChunkStore, AStateOfManyPartsIsStoredFromThePartsWithoutAWholeCopy) {
  const std::vector<crypto::Bytes> parts = {State(2000, 1), State(1, 2), State(999, 3),
                                            State(3000, 4)};
  crypto::Bytes framing;
  const StatePieces pieces = ExportPartsPieces(parts, &framing);
  const crypto::Bytes whole = EncodeExportParts(parts);
  ASSERT_EQ(TotalBytes(pieces), whole.size());
  // Chunk sizes that cut inside the framing, at a part's edge, across several parts, and one
  // larger than the whole (stored in the entry).
  for (const size_t chunk : {size_t{5}, size_t{16}, size_t{700}, size_t{1000}, size_t{2024},
                             size_t{4000}, whole.size()}) {
    MemoryBucket from_pieces;
    MemoryBucket from_whole;
    auto a = ChunkStore(from_pieces, kWriterA).Store(3, pieces, {}, chunk);
    auto b = ChunkStore(from_whole, kWriterA).Store(3, whole, {}, chunk);
    ASSERT_TRUE(a && b) << chunk;
    EXPECT_EQ(*a, *b) << chunk;
    EXPECT_EQ(from_pieces.values, from_whole.values) << chunk;
    auto loaded = ChunkStore(from_pieces, kWriterA).Load(3, *a);
    ASSERT_TRUE(loaded) << chunk << ": " << loaded.error().message();
    EXPECT_EQ(Join(loaded->pieces), whole) << chunk;
    // Read back, the state is the chunks as they came, not a copy joined into one buffer.
    if (ChunkManifest::Is(*a)) {
      ASSERT_EQ(loaded->pieces.size(), loaded->chunks.size()) << chunk;
      for (size_t i = 0; i < loaded->chunks.size(); ++i) {
        EXPECT_EQ(loaded->pieces[i].data(), loaded->chunks[i].data()) << chunk;
      }
    }
  }
  // Chunks of 1000 bytes: chunk 1 (bytes 1000..1999 of the container) lies within part 0, which
  // starts at byte 16; chunk 2 spans parts 0 to 2.
  MemoryBucket bucket;
  auto m = ChunkStore(bucket, kWriterA).Store(3, pieces, {}, 1000);
  ASSERT_TRUE(m);
  const std::string prefix = ChunkManifest::Decode(*m)->KeyPrefix(3);
  EXPECT_EQ(bucket.put_from.at(prefix + "1"), parts[0].data() + 1000 - 16);
  const uint8_t* spanning = bucket.put_from.at(prefix + "2");
  for (const crypto::Bytes& p : parts) {
    EXPECT_FALSE(spanning >= p.data() && spanning < p.data() + p.size());
  }
  // One part is stored as it is, its pieces being that part alone.
  const std::vector<crypto::Bytes> one = {parts[2]};
  const StatePieces alone = ExportPartsPieces(one, &framing);
  ASSERT_EQ(alone.size(), 1u);
  EXPECT_EQ(alone[0].data(), one[0].data());
  EXPECT_EQ(alone[0].size(), one[0].size());
}

// A writer alternates between its two slots: the entry's chunks stay whole while the next state
// is written (an owner fenced without knowing it cannot spoil them).
TEST(ChunkStore, ALargeStateIsStoredInChunksInTheSlotTheEntryDoesNotName) {
  MemoryBucket bucket;
  ChunkStore store(bucket, kWriterA);
  const std::string prefix = wire::cluster::PartitionKey(7) + ".s.";
  const crypto::Bytes first = State(2500, 1);
  auto m1 = store.Store(7, first, {}, 1000);
  ASSERT_TRUE(m1) << m1.error().message();
  ASSERT_TRUE(ChunkManifest::Is(*m1));
  EXPECT_EQ(
      bucket.KeysStartingWith(prefix),
      (std::vector<std::string>{prefix + "0102030405060708.0.0", prefix + "0102030405060708.0.1",
                                prefix + "0102030405060708.0.2"}));
  const crypto::Bytes second = State(1500, 2);
  auto m2 = store.Store(7, second, *m1, 1000);
  ASSERT_TRUE(m2);
  EXPECT_EQ(ChunkManifest::Decode(*m2)->slot, 1);
  EXPECT_EQ(bucket.KeysStartingWith(prefix + "0102030405060708.1.").size(), 2u);
  // Both come back whole: the first's chunks were not touched.
  EXPECT_EQ(Join(store.Load(7, *m1)->pieces), first);
  EXPECT_EQ(Join(store.Load(7, *m2)->pieces), second);
  store.Delete(7, *m1);  // replaced
  EXPECT_EQ(bucket.KeysStartingWith(prefix).size(), 2u);
  EXPECT_EQ(Join(store.Load(7, *m2)->pieces), second);
  // The next one goes back to slot 0; another writer's entry does not move this writer's slot.
  auto m3 = store.Store(7, first, *m2, 1000);
  ASSERT_TRUE(m3);
  EXPECT_EQ(ChunkManifest::Decode(*m3)->slot, 0);
  ChunkStore other(bucket, kWriterB);
  auto m4 = other.Store(7, second, *m3, 1000);
  ASSERT_TRUE(m4);
  EXPECT_EQ(ChunkManifest::Decode(*m4)->slot, 0);
  EXPECT_EQ(ChunkManifest::Decode(*m4)->writer, kWriterB);
  EXPECT_EQ(Join(store.Load(7, *m3)->pieces), first);
  EXPECT_EQ(Join(other.Load(7, *m4)->pieces), second);
}

TEST(ChunkStore, AWriteThatFailsLeavesNoChunk) {
  MemoryBucket bucket;
  ChunkStore store(bucket, kWriterA);
  bucket.puts_left = 2;
  auto m = store.Store(1, State(5000, 1), {}, 1000);
  ASSERT_FALSE(m);
  EXPECT_EQ(m.error().code(), Error::Code::kIo);
  EXPECT_TRUE(bucket.values.empty());
}

TEST(ChunkStore, ChunksMissingChangedOrCutAreNeverTakenForTheState) {
  MemoryBucket bucket;
  ChunkStore store(bucket, kWriterA);
  const crypto::Bytes state = State(3000, 5);
  auto m = store.Store(2, state, {}, 1000);
  ASSERT_TRUE(m);
  const std::string key = ChunkManifest::Decode(*m)->KeyPrefix(2);
  const crypto::Bytes chunk1 = bucket.values.at(key + "1");

  bucket.values.at(key + "1")[10] ^= 1;  // one bit
  EXPECT_EQ(store.Load(2, *m).error().code(), Error::Code::kCorrupt);
  bucket.values.at(key + "1").pop_back();  // one byte short
  EXPECT_EQ(store.Load(2, *m).error().code(), Error::Code::kCorrupt);
  bucket.values.at(key + "1") = chunk1;
  bucket.values.at(key + "1").push_back(0);  // one byte more
  EXPECT_EQ(store.Load(2, *m).error().code(), Error::Code::kCorrupt);
  bucket.values.at(key + "1").clear();  // empty
  EXPECT_EQ(store.Load(2, *m).error().code(), Error::Code::kCorrupt);
  bucket.values.erase(key + "1");
  EXPECT_EQ(store.Load(2, *m).error().code(), Error::Code::kNotFound);
  bucket.values[key + "1"] = chunk1;
  ASSERT_TRUE(store.Load(2, *m));
  // The same chunks read as another partition's: not found (keys name their partition).
  EXPECT_EQ(store.Load(3, *m).error().code(), Error::Code::kNotFound);
  // A manifest that does not decode.
  crypto::Bytes bad = *m;
  bad[12] = 9;  // the slot
  EXPECT_EQ(store.Load(2, bad).error().code(), Error::Code::kCorrupt);
}

// Anyone with the worker role can write a manifest. One that claims the largest state and names
// chunks that are not there costs a lookup, not a 1 GiB allocation, at every try.
TEST(ChunkStore, AManifestAloneCostsOneLookup) {
  MemoryBucket bucket;
  ChunkStore store(bucket, kWriterB);
  ChunkManifest m{
      .writer = kWriterA, .slot = 0, .chunks = 1 << 20, .bytes = kMaxPortableBytes, .sha = {}};
  auto r = store.Load(0, m.Encode());
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), Error::Code::kNotFound);
  EXPECT_EQ(bucket.gets, 1);
}

TEST(ChunkStore, ASweepLeavesOnlyTheChunksTheEntryNames) {
  MemoryBucket bucket;
  ChunkStore a(bucket, kWriterA), b(bucket, kWriterB);
  auto old_owner = a.Store(1, State(2000, 1), {}, 1000);
  auto lost_write = a.Store(1, State(2000, 2), *old_owner, 1000);  // its compare-and-set lost
  auto current = b.Store(1, State(2000, 3), *old_owner, 1000);
  auto other_partition = a.Store(16, State(2000, 4), {}, 1000);  // "p16" starts like "p1"
  ASSERT_TRUE(old_owner && lost_write && current && other_partition);
  const std::string entry = wire::cluster::PartitionKey(1);
  bucket.values[entry] = {1};
  b.Sweep(1, *current);
  EXPECT_EQ(bucket.KeysStartingWith(entry + ".s.").size(), 2u);
  EXPECT_TRUE(b.Load(1, *current));
  EXPECT_EQ(bucket.KeysStartingWith(wire::cluster::PartitionKey(16) + ".s.").size(), 2u);
  EXPECT_EQ(bucket.values.count(entry), 1u);
  // An entry that holds its state whole: every chunk of the partition goes.
  b.Sweep(1, State(10, 0));
  EXPECT_TRUE(bucket.KeysStartingWith(entry + ".s.").empty());
  EXPECT_EQ(bucket.KeysStartingWith(wire::cluster::PartitionKey(16) + ".s.").size(), 2u);
}

}  // namespace
}  // namespace medstream::host
