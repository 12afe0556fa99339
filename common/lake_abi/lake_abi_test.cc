// The lake's shared format (common/lake_abi): CSV records as the enclave reads them, and the typed
// messages between client and enclave, their round trips and what garbage gets (a code to branch
// on, never a crash or an allocation the bytes cannot back).
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "common/lake_abi/csv.h"
#include "common/lake_abi/messages.h"
#include "common/lake_abi/schema.h"

namespace medstream {
namespace {

// Regression (found by the lake_csv fuzzer): a record with more escaped-quote fields than the
// scratch space first held left views into strings the scratch vector had since moved (short
// strings live inside the vector). Every field must read back as written, however many there are.
TEST(LakeCsv, ManyEscapedQuoteFieldsInOneRecordStayValid) {
  for (const bool terminated : {true, false}) {
    std::string text;
    constexpr int kFields = 300;
    for (int c = 0; c < kFields; ++c) text += (c ? ",\"" : "\"") + std::to_string(c) + "\"\"q\"";
    text += terminated ? "\n" : ",\"open";
    size_t pos = 0;
    std::vector<std::string_view> f;
    std::vector<std::string> scratch;
    bool open = false;
    ASSERT_TRUE(lake::NextRecord(text, &pos, &f, &scratch, &open));
    EXPECT_EQ(open, !terminated);
    ASSERT_EQ(f.size(), static_cast<size_t>(kFields + (terminated ? 0 : 1)));
    for (int c = 0; c < kFields; ++c) EXPECT_EQ(f[c], std::to_string(c) + "\"q") << "field " << c;
    EXPECT_EQ(pos, text.size());
  }
}

// ---- the typed messages ----

std::vector<lake::Request> EveryRequest() {
  lake::PublicKey key{};
  key[0] = 7;
  lake::Signature sig{};
  sig[63] = 9;
  return {lake::HelloRequest{key},
          lake::ProveRequest{sig},
          lake::InitRequest{"admin"},
          lake::GrantRequest{key, "bob", "analyst", {"a", "b"}},
          lake::IngestBeginRequest{"adm", *lake::ParseSchema("age:integer:0..120,sex:categorical"),
                                   5, lake::PrivacyPolicy{lake::Privacy::kExact, 1, 10}},
          lake::IngestChunkRequest{2, "30,F\n40,M\n"},
          lake::IngestEndRequest{},
          lake::QueryRequest{"SELECT COUNT(*) FROM adm", 0.25},
          lake::DeleteRequest{"adm"},
          lake::AuditRequest{},
          lake::ListRequest{}};
}

TEST(LakeMessages, EveryRequestRoundTripsAndGarbageIsRefusedWithACode) {
  for (const lake::Request& m : EveryRequest()) {
    const crypto::Bytes bytes = lake::EncodeRequest(m);
    EXPECT_EQ(bytes[0], static_cast<uint8_t>(lake::OpOf(m)));
    auto back = lake::DecodeRequest(bytes);
    ASSERT_TRUE(back) << back.error().message();
    EXPECT_EQ(back->index(), m.index());
    EXPECT_EQ(lake::EncodeRequest(*back), bytes) << "op " << int(bytes[0]);
    // Every truncation fails cleanly; one byte too many is refused.
    for (size_t n = 0; n < bytes.size(); ++n) {
      auto cut = lake::DecodeRequest(crypto::ByteView(bytes).first(n));
      if (n > 0 && bytes.size() == 1) continue;
      EXPECT_FALSE(cut) << "op " << int(bytes[0]) << " cut at " << n;
    }
    crypto::Bytes longer = bytes;
    longer.push_back(0);
    auto extra = lake::DecodeRequest(longer);
    ASSERT_FALSE(extra);
    EXPECT_EQ(extra.error().code(), Error::Code::kCorrupt);
  }
  auto unknown = lake::DecodeRequest(crypto::Bytes{99});
  ASSERT_FALSE(unknown);
  EXPECT_EQ(unknown.error().code(), Error::Code::kInvalidArgument);
  // A grant naming more datasets than the cap is refused before they are read.
  crypto::Bytes grant = lake::EncodeRequest(lake::GrantRequest{{}, "x", "analyst", {}});
  const uint32_t huge = 1u << 30;
  std::memcpy(grant.data() + grant.size() - 4, &huge, 4);
  auto big = lake::DecodeRequest(grant);
  ASSERT_FALSE(big);
  EXPECT_EQ(big.error().code(), Error::Code::kResourceExhausted);
  // A privacy policy outside its bounds is refused at decoding.
  crypto::Bytes bad = lake::EncodeRequest(lake::IngestBeginRequest{
      "x", *lake::ParseSchema("a:integer"), 5, lake::PrivacyPolicy{lake::Privacy::kDp, 1e9, 1}});
  auto refused = lake::DecodeRequest(bad);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code(), Error::Code::kInvalidArgument);
}

// A query and an ingest chunk are read up to their limits (64 KiB, 8 MiB) and not a byte more:
// the limit is checked on the length before anything is set aside for it.
TEST(LakeMessages, AQueryAndAChunkAreReadUpToTheirLimitsAndNotAByteMore) {
  for (const bool past : {false, true}) {
    const std::string sql(lake::kMaxQueryBytes + past, ' ');
    auto q = lake::DecodeRequest(lake::EncodeRequest(lake::QueryRequest{sql, 0}));
    EXPECT_EQ(q.has_value(), !past) << "query, past: " << past;
    if (past) {
      EXPECT_EQ(q.error().code(), Error::Code::kCorrupt);
    }
    const std::string csv(lake::kMaxIngestChunkBytes + past, '\n');
    auto c = lake::DecodeRequest(lake::EncodeRequest(lake::IngestChunkRequest{1, csv}));
    EXPECT_EQ(c.has_value(), !past) << "chunk, past: " << past;
    if (past) {
      EXPECT_EQ(c.error().code(), Error::Code::kCorrupt);
    }
  }
}

TEST(LakeMessages, RepliesRoundTripAndFramesCarryTheCode) {
  lake::ListReply list;
  lake::DatasetInfo info;
  info.name = "adm";
  info.rows = 3;
  list.datasets.push_back(info);
  auto l = lake::DecodeListReply(lake::Encode(list));
  ASSERT_TRUE(l);
  ASSERT_EQ(l->datasets.size(), 1u);
  EXPECT_EQ(l->datasets[0].rows, 3u);
  lake::IngestEndReply end{.stored = 2, .refused = 1, .bad_rows = {{3, "no"}}, .schema = "a"};
  auto e = lake::DecodeIngestEndReply(lake::Encode(end));
  ASSERT_TRUE(e);
  EXPECT_EQ(e->bad_rows[0].line, 3u);
  crypto::Bytes trailing = lake::Encode(end);
  trailing.push_back(1);
  EXPECT_FALSE(lake::DecodeIngestEndReply(trailing));
  // Found by the lake_message fuzz target: 4 billion rows of no columns once allocated 3 GiB
  // before the bytes ran out. A count the bytes cannot hold is refused first.
  crypto::Bytes rows;
  ByteWriter rw(&rows);
  rw.U32(0);
  rw.U32(0xffffffff);
  auto no_columns = lake::DecodeResultSet(rows);
  ASSERT_FALSE(no_columns);
  EXPECT_EQ(no_columns.error().code(), Error::Code::kCorrupt);
  rows = {};
  rw.U32(1);
  rw.String("c");
  rw.U32(0xffffffff);
  auto too_many = lake::DecodeResultSet(rows);
  ASSERT_FALSE(too_many);
  EXPECT_EQ(too_many.error().code(), Error::Code::kCorrupt);
  // Frames: a payload, or an error whose code survives.
  auto ok = lake::DecodeReplyFrame(lake::EncodeReplyFrame(crypto::Bytes{1, 2}));
  ASSERT_TRUE(ok);
  EXPECT_EQ(*ok, (crypto::Bytes{1, 2}));
  auto denied = lake::DecodeReplyFrame(
      lake::EncodeReplyFrame(std::unexpected(Error(Error::Code::kPermissionDenied, "no"))));
  ASSERT_FALSE(denied);
  EXPECT_EQ(denied.error().code(), Error::Code::kPermissionDenied);
  auto unknown = lake::DecodeReplyFrame(crypto::Bytes{200, 0, 0, 0, 0});
  ASSERT_FALSE(unknown);
  EXPECT_EQ(unknown.error().code(), Error::Code::kInternal);  // the edge frames' convention
  auto truncated = lake::DecodeReplyFrame(crypto::Bytes{3, 9, 0});
  ASSERT_FALSE(truncated);
  EXPECT_EQ(truncated.error().code(), Error::Code::kCorrupt);
}

}  // namespace
}  // namespace medstream
