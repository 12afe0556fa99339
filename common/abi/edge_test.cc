// The edge ABI's tables: every call's caps and relay permissions are stated once, here.
#include "common/abi/edge.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <set>

namespace medstream::enclave {
namespace {

TEST(EdgeAbi, EveryCallIsListedOnceAndFoundById) {
  std::set<uint16_t> ids;
  for (const CallSpec& c : kCalls) {
    EXPECT_TRUE(ids.insert(static_cast<uint16_t>(c.call)).second) << c.name;
    EXPECT_EQ(FindCall(static_cast<uint16_t>(c.call)), &c);
    EXPECT_GT(c.budget_s, 0) << c.name;
  }
  EXPECT_EQ(FindCall(0), nullptr);
  EXPECT_EQ(FindCall(0x7fff), nullptr);
}

// A relay forwards what a remote client needs, and nothing that could change or roll back the
// host's state: the exact sets, so that a call added later must be placed on purpose.
TEST(EdgeAbi, RelaysForwardOnlyTheirClientsCalls) {
  std::set<Call> server, lake;
  for (const CallSpec& c : kCalls) {
    if (RelayMayForward(kServerRelay, static_cast<uint16_t>(c.call))) server.insert(c.call);
    if (RelayMayForward(kLakeRelay, static_cast<uint16_t>(c.call))) lake.insert(c.call);
  }
  EXPECT_EQ(server, (std::set{Call::kInfo, Call::kHandshake, Call::kChannel, Call::kStats}));
  EXPECT_EQ(lake, (std::set{Call::kInfo, Call::kHandshake, Call::kChannel, Call::kLakeRequest}));
  EXPECT_FALSE(RelayMayForward(kServerRelay, 0x7fff));
  EXPECT_FALSE(RelayMayForward(kHostOnly, static_cast<uint16_t>(Call::kInfo)));
}

// Each message has one codec, used by both sides: what one encodes the other decodes, and garbage
// is an error code, never a crash or a misread.
TEST(EdgeAbi, SessionRecordsRoundTripAndRefuseGarbage) {
  const crypto::Bytes record = {1, 2, 3, 4, 5};
  const crypto::Bytes wire = SessionRecord{0x0102030405060708, record}.Encode();
  auto back = SessionRecord::Decode(wire);
  ASSERT_TRUE(back) << back.error().message();
  EXPECT_EQ(back->session, 0x0102030405060708u);
  EXPECT_EQ(crypto::Bytes(back->record.begin(), back->record.end()), record);
  for (size_t n = 0; n < 8; ++n) {
    auto cut = SessionRecord::Decode(std::span(wire).first(n));
    ASSERT_FALSE(cut) << n;
    EXPECT_EQ(cut.error().code(), Error::Code::kCorrupt);
  }
}

TEST(EdgeAbi, CommitVersionsRoundTripAndRefuseGarbage) {
  const crypto::Bytes wire = CommitVersion{0x1122334455667788}.Encode();
  ASSERT_EQ(wire.size(), 8u);
  auto back = CommitVersion::Decode(wire);
  ASSERT_TRUE(back) << back.error().message();
  EXPECT_EQ(back->version, 0x1122334455667788u);
  for (size_t n : {0, 1, 7, 9, 16}) {
    crypto::Bytes b(n, 0x42);
    auto r = CommitVersion::Decode(b);
    ASSERT_FALSE(r) << n;
    EXPECT_EQ(r.error().code(), Error::Code::kCorrupt) << n;
  }
}

TEST(EdgeAbi, CheckpointPartsRoundTripAndRefuseGarbage) {
  auto request = CheckpointRequest::Decode(CheckpointRequest{77}.Encode());
  ASSERT_TRUE(request);
  EXPECT_EQ(request->part, 77u);
  for (size_t n : {0, 3, 5}) EXPECT_FALSE(CheckpointRequest::Decode(crypto::Bytes(n, 1))) << n;

  const crypto::Bytes sealed = {1, 2, 3, 4, 5};
  const crypto::Bytes wire = CheckpointPart{.last = true, .version = 9, .sealed = sealed}.Encode();
  auto part = CheckpointPart::Decode(wire);
  ASSERT_TRUE(part) << part.error().message();
  EXPECT_TRUE(part->last);
  EXPECT_EQ(part->version, 9u);
  EXPECT_TRUE(std::ranges::equal(part->sealed, sealed));
  crypto::Bytes bad_flag = wire;
  bad_flag[0] = 2;
  for (const crypto::Bytes& b :
       {bad_flag, crypto::Bytes(wire.begin(), wire.begin() + 9), crypto::Bytes(4, 0)}) {
    auto r = CheckpointPart::Decode(b);
    ASSERT_FALSE(r) << b.size();
    EXPECT_EQ(r.error().code(), Error::Code::kCorrupt);
  }

  for (bool complete : {false, true}) {
    auto back = RestoreProgress::Decode(RestoreProgress{complete}.Encode());
    ASSERT_TRUE(back);
    EXPECT_EQ(back->complete, complete);
  }
  for (const crypto::Bytes& b : {crypto::Bytes{}, crypto::Bytes{2}, crypto::Bytes{1, 1}}) {
    EXPECT_FALSE(RestoreProgress::Decode(b)) << b.size();
  }
}

TEST(EdgeAbi, ExportAndImportPartsRoundTripAndRefuseGarbage) {
  const ExportRequest req{.selector = {3, 16}, .part = 5, .part_bytes = 4096};
  auto back = ExportRequest::Decode(req.Encode());
  ASSERT_TRUE(back) << back.error().message();
  EXPECT_EQ(back->selector.partition, 3u);
  EXPECT_EQ(back->selector.partitions, 16u);
  EXPECT_EQ(back->part, 5u);
  EXPECT_EQ(back->part_bytes, 4096u);
  for (size_t n : {0, 8, 15, 17}) {
    auto r = ExportRequest::Decode(crypto::Bytes(n, 1));
    ASSERT_FALSE(r) << n;
    EXPECT_EQ(r.error().code(), Error::Code::kCorrupt) << n;
  }
  crypto::Bytes other_partition = req.Encode();
  other_partition[0] = 16;  // partition 16 of 16
  EXPECT_EQ(ExportRequest::Decode(other_partition).error().code(), Error::Code::kInvalidArgument);

  const crypto::Bytes portable = {'M', 'S', 'P', 'S', 9};
  const crypto::Bytes answer = ExportPart{.last = true, .portable = portable}.Encode();
  auto part = ExportPart::Decode(answer);  // views into `answer`
  ASSERT_TRUE(part) << part.error().message();
  EXPECT_TRUE(part->last);
  EXPECT_TRUE(std::ranges::equal(part->portable, portable));
  for (const crypto::Bytes& b : {crypto::Bytes{}, crypto::Bytes{0}, crypto::Bytes{2, 1}}) {
    EXPECT_EQ(ExportPart::Decode(b).error().code(), Error::Code::kCorrupt) << b.size();
  }

  const crypto::Bytes wire =
      ImportRequest{.selector = {1, 4}, .part = 2, .last = false, .portable = portable}.Encode();
  auto import = ImportRequest::Decode(wire);
  ASSERT_TRUE(import) << import.error().message();
  EXPECT_EQ(import->selector.partition, 1u);
  EXPECT_EQ(import->selector.partitions, 4u);
  EXPECT_EQ(import->part, 2u);
  EXPECT_FALSE(import->last);
  EXPECT_TRUE(std::ranges::equal(import->portable, portable));
  // From pieces (a state read back in chunks): the same bytes, wherever the pieces are cut.
  const crypto::ByteView whole = portable;
  for (size_t cut = 0; cut <= portable.size(); ++cut) {
    const std::vector<crypto::ByteView> pieces = {whole.first(cut), whole.subspan(cut)};
    EXPECT_EQ(ImportRequest::EncodePieces({1, 4}, 2, false, pieces), wire) << cut;
  }
  EXPECT_EQ(ImportRequest::EncodePieces({0, 1}, 0, true, {}),
            (ImportRequest{.selector = {0, 1}, .part = 0, .last = true, .portable = {}}.Encode()));
  const crypto::Bytes empty_wire =
      ImportRequest{.selector = {0, 1}, .part = 0, .last = true, .portable = {}}.Encode();
  auto empty = ImportRequest::Decode(empty_wire);
  ASSERT_TRUE(empty);
  EXPECT_TRUE(empty->portable.empty());
  crypto::Bytes bad_flag = wire;
  bad_flag[12] = 2;
  EXPECT_EQ(ImportRequest::Decode(bad_flag).error().code(), Error::Code::kCorrupt);
  EXPECT_EQ(ImportRequest::Decode(crypto::ByteView(wire).first(12)).error().code(),
            Error::Code::kCorrupt);
}

TEST(EdgeAbi, LakeLoadsRoundTripAndRefuseGarbage) {
  const crypto::Bytes blob(1000, 0xab);
  for (LakeLoadKind kind : {LakeLoadKind::kManifest, LakeLoadKind::kPage, LakeLoadKind::kDone}) {
    const crypto::Bytes wire = LakeLoad{kind, "page/3/7", blob}.Encode();
    auto back = LakeLoad::Decode(wire);
    ASSERT_TRUE(back) << back.error().message();
    EXPECT_EQ(back->kind, kind);
    EXPECT_EQ(back->key, "page/3/7");
    EXPECT_EQ(crypto::Bytes(back->blob.begin(), back->blob.end()), blob);
  }
  crypto::Bytes wire = LakeLoad{LakeLoadKind::kPage, "k", {}}.Encode();
  for (uint8_t bad : {0, 4, 255}) {
    wire[0] = bad;
    auto r = LakeLoad::Decode(wire);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code(), Error::Code::kInvalidArgument) << int{bad};
  }
  // A key longer than the ABI allows, and a key length past the end.
  auto long_key =
      LakeLoad::Decode(LakeLoad{LakeLoadKind::kPage, std::string(300, 'k'), {}}.Encode());
  EXPECT_FALSE(long_key);
  const crypto::Bytes truncated = {2, 0xff, 0xff, 0, 0};
  EXPECT_FALSE(LakeLoad::Decode(truncated));
  EXPECT_FALSE(LakeLoad::Decode({}));
}

}  // namespace
}  // namespace medstream::enclave
