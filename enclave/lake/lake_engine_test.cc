// The lake's engine directly, in this process: lake::Lake driven with common/lake_abi's messages
// (tested on their own in lake_abi_test.cc): roles and refusals by code, the audit chain and each
// owner's share of it, k-suppression, answers paid for, rollback-safe versions, blobs that load
// again. No enclave, no host, no store: the sealer is injected. The SQL subset and tables on
// their own: query_test.cc.
#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "common/lake_abi/csv.h"
#include "common/lake_abi/messages.h"
#include "enclave/lake/lake.h"
#include "enclave/lake/query.h"

namespace medstream {
namespace {

// ---- lake::Lake itself ----

// An engine to load what a test's lake stored: its "sealing" is a version prefix.
std::unique_ptr<lake::Lake> PlainLake() {
  return std::make_unique<lake::Lake>(
      [](crypto::ByteView p, uint64_t) -> Result<crypto::Bytes> {
        return crypto::Bytes(p.begin(), p.end());
      },
      [](crypto::ByteView blob) -> Result<std::pair<crypto::Bytes, uint64_t>> {
        ByteReader r(blob);
        MEDSTREAM_TRY(v, r.U64("version"));
        return std::pair{crypto::Bytes(blob.begin() + 8, blob.end()), v};
      },
      [] { return int64_t{0}; });
}

// What a host does at start: the latest blob of each key, the manifest first. nullptr (and a test
// failure) if the lake refuses one.
std::unique_ptr<lake::Lake> Reload(const std::map<std::string, crypto::Bytes>& latest) {
  auto l = PlainLake();
  auto manifest = latest.find("manifest");
  if (manifest == latest.end() || !l->LoadManifest(manifest->second)) {
    ADD_FAILURE() << "the manifest does not load";
    return nullptr;
  }
  for (const auto& [key, blob] : latest) {
    if (key == "manifest") continue;
    if (auto st = l->LoadPage(key, blob); !st) {
      ADD_FAILURE() << key << ": " << st.error().message();
      return nullptr;
    }
  }
  if (auto st = l->FinishLoad(); !st) {
    ADD_FAILURE() << st.error().message();
    return nullptr;
  }
  return l;
}

// One request to `l` from `key`'s identity, on a session of its own.
Result<crypto::Bytes> AskAs(lake::Lake& l, const crypto::EcKey& key, const lake::Request& m) {
  lake::Output out = l.Handle(9, lake::EncodeRequest(lake::HelloRequest{key.RawPublic()}));
  MEDSTREAM_TRY(hello_bytes, lake::DecodeReplyFrame(out.reply));
  MEDSTREAM_TRY(hello, lake::DecodeHelloReply(hello_bytes));
  MEDSTREAM_TRY(sig, key.Sign(lake::ProofMessage(hello.nonce, key.RawPublic())));
  out = l.Handle(9, lake::EncodeRequest(lake::ProveRequest{sig}));
  MEDSTREAM_TRY(proved, lake::DecodeReplyFrame(out.reply));
  (void)proved;
  return lake::DecodeReplyFrame(l.Handle(9, lake::EncodeRequest(m)).reply);
}

class LakeEngine : public ::testing::Test {
 protected:
  // Sealing is the enclave's (enclave/core); here a version prefix stands in for it.
  lake::Lake lake_{[this](crypto::ByteView plain, uint64_t version) -> Result<crypto::Bytes> {
                     if (seal_fails_) return IoError("sealing failed (injected)");
                     crypto::Bytes out;
                     ByteWriter w(&out);
                     w.U64(version);
                     w.Bytes(plain);
                     return out;
                   },
                   [](crypto::ByteView blob) -> Result<std::pair<crypto::Bytes, uint64_t>> {
                     ByteReader r(blob);
                     MEDSTREAM_TRY(version, r.U64("version"));
                     return std::pair{crypto::Bytes(blob.begin() + 8, blob.end()), version};
                   },
                   [this] { return now_; }};
  int64_t now_ = 1'700'000'000;
  bool seal_fails_ = false;  // the next blobs cannot be sealed (a test's failing enclave)
  std::vector<lake::Write> stored_;

  void SetUp() override { ASSERT_TRUE(lake_.FinishLoad()); }

  // One request on `session`; the reply's payload or its error. Writes are kept as a host would.
  Result<crypto::Bytes> Send(uint64_t session, const lake::Request& m) {
    lake::Output out = lake_.Handle(session, lake::EncodeRequest(m));
    for (auto& w : out.writes) stored_.push_back(std::move(w));
    return lake::DecodeReplyFrame(out.reply);
  }
  // Hello and Prove for `key` on `session`; returns the role the lake gives it.
  std::string Login(uint64_t session, const crypto::EcKey& key) {
    auto hello = Send(session, lake::HelloRequest{key.RawPublic()});
    EXPECT_TRUE(hello) << hello.error().message();
    auto h = lake::DecodeHelloReply(*hello);
    auto sig = key.Sign(lake::ProofMessage(h->nonce, key.RawPublic()));
    auto proved = Send(session, lake::ProveRequest{*sig});
    EXPECT_TRUE(proved) << proved.error().message();
    return proved ? lake::DecodeProveReply(*proved)->role : "";
  }
  Error::Code CodeOf(const Result<crypto::Bytes>& r) {
    return r ? Error::Code::kInternal : r.error().code();
  }

  crypto::EcKey admin_ = crypto::EcKey::Generate().value();
  crypto::EcKey hospital_ = crypto::EcKey::Generate().value();
  crypto::EcKey analyst_ = crypto::EcKey::Generate().value();
  crypto::EcKey stranger_ = crypto::EcKey::Generate().value();
};

TEST_F(LakeEngine, RolesAuditAndSmallGroupsWithCodesToBranchOn) {
  // Nothing before a proven identity.
  EXPECT_EQ(CodeOf(Send(1, lake::ListRequest{})), Error::Code::kPermissionDenied);
  EXPECT_EQ(Login(1, admin_), "unregistered");
  ASSERT_TRUE(Send(1, lake::InitRequest{"admin"}));
  EXPECT_EQ(lake_.version(), 1u);
  EXPECT_EQ(CodeOf(Send(1, lake::InitRequest{"again"})), Error::Code::kAlreadyExists);
  ASSERT_TRUE(Send(1, lake::GrantRequest{hospital_.RawPublic(), "hospital", "owner", {}}));
  ASSERT_TRUE(Send(1, lake::GrantRequest{analyst_.RawPublic(), "bob", "analyst", {"adm"}}));
  EXPECT_EQ(CodeOf(Send(1, lake::GrantRequest{stranger_.RawPublic(), "x", "superuser", {}})),
            Error::Code::kInvalidArgument);

  EXPECT_EQ(Login(2, hospital_), "owner");
  EXPECT_EQ(CodeOf(Send(2, lake::GrantRequest{stranger_.RawPublic(), "x", "analyst", {}})),
            Error::Code::kPermissionDenied);
  // 12 rows: 7 F and 5 M in ward a, and one M alone in ward b.
  ASSERT_TRUE(Send(2, lake::IngestBeginRequest{"adm",
                                               *lake::ParseSchema("age:integer:0..120,sex:"
                                                                  "categorical,ward:text"),
                                               5,
                                               {lake::Privacy::kExact, 1, 10}}));
  std::string csv;
  for (int i = 0; i < 7; ++i) csv += std::to_string(30 + i) + ",F,a\n";
  for (int i = 0; i < 5; ++i) csv += std::to_string(50 + i) + ",M,a\n";
  csv += "70,M,b\nnot-a-number,F,a\n";
  auto chunk = Send(2, lake::IngestChunkRequest{2, csv});
  ASSERT_TRUE(chunk) << chunk.error().message();
  EXPECT_EQ(lake::DecodeIngestChunkReply(*chunk)->refused, 1u);
  auto end = Send(2, lake::IngestEndRequest{});
  ASSERT_TRUE(end) << end.error().message();
  auto report = lake::DecodeIngestEndReply(*end);
  EXPECT_EQ(report->stored, 13u);
  ASSERT_EQ(report->bad_rows.size(), 1u);
  EXPECT_EQ(report->bad_rows[0].line, 15u);

  EXPECT_EQ(Login(3, analyst_), "analyst");
  EXPECT_EQ(
      CodeOf(Send(3,
                  lake::IngestBeginRequest{
                      "mine", *lake::ParseSchema("a:integer"), 5, {lake::Privacy::kExact, 1, 10}})),
      Error::Code::kPermissionDenied);
  EXPECT_EQ(CodeOf(Send(3, lake::QueryRequest{"SELECT age FROM adm", 0})),
            Error::Code::kFailedPrecondition);  // rows are for owners
  auto grouped = Send(3, lake::QueryRequest{"SELECT ward, COUNT(*) FROM adm GROUP BY ward", 0});
  ASSERT_TRUE(grouped) << grouped.error().message();
  auto rs = lake::DecodeResultSet(*grouped);
  ASSERT_EQ(rs->rows.size(), 1u);  // ward b (one patient) suppressed
  EXPECT_EQ(std::get<double>(rs->rows[0][1]), 12);
  // The owner's aggregates are suppressed alike, but the owner may read its rows.
  auto mine = Send(2, lake::QueryRequest{"SELECT age FROM adm WHERE ward = 'b'", 0});
  ASSERT_TRUE(mine) << mine.error().message();
  EXPECT_EQ(lake::DecodeResultSet(*mine)->rows.size(), 1u);
  // Not granted, or absent: the same code (names are not disclosed).
  Login(4, stranger_);
  EXPECT_EQ(CodeOf(Send(4, lake::QueryRequest{"SELECT COUNT(*) FROM adm", 0})),
            Error::Code::kPermissionDenied);
  EXPECT_EQ(CodeOf(Send(3, lake::QueryRequest{"SELECT COUNT(*) FROM nothing", 0})),
            Error::Code::kNotFound);

  // The audit log: the whole chain for the admin, the owner's share for the owner, none for the
  // analyst; every refused query is in it.
  EXPECT_EQ(CodeOf(Send(3, lake::AuditRequest{})), Error::Code::kPermissionDenied);
  auto whole = lake::DecodeAuditReply(*Send(1, lake::AuditRequest{}));
  ASSERT_TRUE(whole);
  EXPECT_TRUE(whole->whole);
  EXPECT_TRUE(lake::VerifyAuditChain(whole->entries));
  size_t refused = 0;
  for (const auto& e : whole->entries) refused += e.outcome.starts_with("refused");
  EXPECT_GE(refused, 4u);
  auto share = lake::DecodeAuditReply(*Send(2, lake::AuditRequest{}));
  ASSERT_TRUE(share);
  EXPECT_FALSE(share->whole);
  EXPECT_LT(share->entries.size(), whole->entries.size());
  EXPECT_TRUE(lake::VerifyAuditEntries(share->entries, share->length));
  // A tampered entry no longer verifies.
  whole->entries[1].detail += "x";
  EXPECT_FALSE(lake::VerifyAuditChain(whole->entries));

  // Deleting: only the owner.
  EXPECT_EQ(CodeOf(Send(3, lake::DeleteRequest{"adm"})), Error::Code::kPermissionDenied);
  ASSERT_TRUE(Send(2, lake::DeleteRequest{"adm"}));
  EXPECT_EQ(CodeOf(Send(2, lake::QueryRequest{"SELECT COUNT(*) FROM adm", 0})),
            Error::Code::kNotFound);
}

// Regression: a request that did not decode (a query past kMaxQueryBytes, an unknown operation)
// was refused before the lake saw who sent it, so a proven analyst could probe the edge without a
// trace in the audit log. Now it is audited as refused; before an identity is proven, nothing is
// (an unauthenticated peer could fill the log).
TEST_F(LakeEngine, AnUndecodableRequestFromAProvenIdentityIsAudited) {
  EXPECT_EQ(Login(1, admin_), "unregistered");
  ASSERT_TRUE(Send(1, lake::InitRequest{"admin"}));
  ASSERT_TRUE(Send(1, lake::GrantRequest{analyst_.RawPublic(), "bob", "analyst", {"adm"}}));
  auto count = [&] {
    auto audit = lake::DecodeAuditReply(*Send(1, lake::AuditRequest{}));
    EXPECT_TRUE(audit && lake::VerifyAuditChain(audit->entries));
    return audit ? audit->entries.size() : size_t{0};
  };
  auto raw = [&](uint64_t session, crypto::Bytes bytes) {
    lake::Output out = lake_.Handle(session, bytes);
    for (auto& w : out.writes) stored_.push_back(std::move(w));
    return lake::DecodeReplyFrame(out.reply);
  };
  const size_t before = count();
  // Not proven yet: refused, not recorded.
  EXPECT_EQ(CodeOf(raw(3, crypto::Bytes{0xee, 1, 2})), Error::Code::kInvalidArgument);
  EXPECT_EQ(count(), before);
  EXPECT_EQ(Login(3, analyst_), "analyst");
  const size_t stored_before = stored_.size();
  const std::string huge =
      "SELECT COUNT(*) FROM adm WHERE " + std::string(lake::kMaxQueryBytes, ' ') + "1 = 1";
  const crypto::Bytes oversized_request = lake::EncodeRequest(lake::QueryRequest{huge, 0});
  const auto decoded = lake::DecodeRequest(oversized_request);
  ASSERT_FALSE(decoded);
  EXPECT_EQ(CodeOf(raw(3, oversized_request)), decoded.error().code());
  EXPECT_EQ(CodeOf(raw(3, crypto::Bytes{0xee, 1, 2})), Error::Code::kInvalidArgument);
  EXPECT_GT(stored_.size(), stored_before);  // persisted, as any audited refusal
  auto audit = lake::DecodeAuditReply(*Send(1, lake::AuditRequest{}));
  ASSERT_TRUE(audit);
  const auto& e = audit->entries;
  ASSERT_EQ(e.size(), before + 2);
  const lake::AuditEntry& oversized = e[e.size() - 2];
  const lake::AuditEntry& unknown = e[e.size() - 1];
  EXPECT_EQ(oversized.op, "request");
  EXPECT_TRUE(oversized.who.starts_with("bob (")) << oversized.who;
  EXPECT_TRUE(oversized.outcome.starts_with("refused")) << oversized.outcome;
  EXPECT_LE(oversized.detail.size(), 100u);  // the size and operation, not the query
  EXPECT_EQ(unknown.op, "request");
  EXPECT_TRUE(unknown.outcome.starts_with("refused")) << unknown.outcome;
  EXPECT_TRUE(lake::VerifyAuditChain(e));
}

// A refused grant or delete whose audit entry cannot be stored says so (the sealing's error), as a
// refused query does; it was ignored, and the caller saw a plain refusal while the lake kept no
// durable record of it. The entry is stored with the next change that can be.
TEST_F(LakeEngine, ARefusalWhoseAuditCannotBeStoredSaysSo) {
  EXPECT_EQ(Login(1, admin_), "unregistered");
  ASSERT_TRUE(Send(1, lake::InitRequest{"admin"}));
  ASSERT_TRUE(Send(1, lake::GrantRequest{hospital_.RawPublic(), "h", "owner", {}}));
  ASSERT_TRUE(Send(1, lake::GrantRequest{analyst_.RawPublic(), "bob", "analyst", {}}));
  EXPECT_EQ(Login(2, hospital_), "owner");
  EXPECT_EQ(Login(3, analyst_), "analyst");
  ASSERT_TRUE(Send(
      2, lake::IngestBeginRequest{
             "adm", *lake::ParseSchema("age:integer:0..120"), 5, {lake::Privacy::kExact, 1, 10}}));
  ASSERT_TRUE(Send(2, lake::IngestChunkRequest{2, "40\n50\n"}));
  ASSERT_TRUE(Send(2, lake::IngestEndRequest{}));
  const lake::GrantRequest grant{stranger_.RawPublic(), "eve", "analyst", {"adm"}};
  const lake::DeleteRequest del{"adm"};
  // Stored: the plain refusals.
  EXPECT_EQ(CodeOf(Send(3, grant)), Error::Code::kPermissionDenied);
  EXPECT_EQ(CodeOf(Send(3, del)), Error::Code::kPermissionDenied);
  seal_fails_ = true;
  EXPECT_EQ(CodeOf(Send(3, grant)), Error::Code::kIo);
  EXPECT_EQ(CodeOf(Send(3, del)), Error::Code::kIo);
  seal_fails_ = false;
  const size_t stored_before = stored_.size();
  ASSERT_TRUE(Send(1, lake::GrantRequest{analyst_.RawPublic(), "bob", "analyst", {"adm"}}));
  EXPECT_GT(stored_.size(), stored_before);
  auto audit = lake::DecodeAuditReply(*Send(1, lake::AuditRequest{}));
  ASSERT_TRUE(audit);
  size_t refused = 0;
  for (const auto& e : audit->entries) refused += e.outcome.starts_with("refused");
  EXPECT_EQ(refused, 4u);
  EXPECT_TRUE(lake::VerifyAuditChain(audit->entries));
}

// Regression: an analyst's epsilon had only to be above 0. At 1e-300 the noise's scale passed what
// a 64-bit integer holds and its conversion was undefined behaviour (on x86 it came out as a
// scale of almost nothing: the exact count, for a budget of nothing). Epsilon below
// kMinQueryEpsilon is refused, and so is one that, split over a query's aggregates, would need
// more noise than the sampler can draw exactly.
// A dataset's name is 1 to kMaxDatasetNameBytes letters, digits and _: at the limit it is taken,
// one byte more is refused with a code, and so is an empty one.
TEST_F(LakeEngine, ADatasetNameHoldsItsLimitAtTheEdge) {
  EXPECT_EQ(Login(1, admin_), "unregistered");
  ASSERT_TRUE(Send(1, lake::InitRequest{"admin"}));
  ASSERT_TRUE(Send(1, lake::GrantRequest{hospital_.RawPublic(), "hospital", "owner", {}}));
  EXPECT_EQ(Login(2, hospital_), "owner");
  auto begin = [&](const std::string& name) {
    return Send(2, lake::IngestBeginRequest{
                       name, *lake::ParseSchema("a:integer"), 1, {lake::Privacy::kExact, 1, 10}});
  };
  for (const std::string& name :
       {std::string(lake::kMaxDatasetNameBytes + 1, 'd'), std::string(), std::string("9lives")}) {
    EXPECT_EQ(CodeOf(begin(name)), Error::Code::kInvalidArgument) << name.size();
  }
  auto at_limit = begin(std::string(lake::kMaxDatasetNameBytes, 'd'));
  ASSERT_TRUE(at_limit) << at_limit.error().message();
  ASSERT_TRUE(Send(2, lake::IngestChunkRequest{2, "1\n2\n"}));
  ASSERT_TRUE(Send(2, lake::IngestEndRequest{}));
}

TEST_F(LakeEngine, AnEpsilonTooSmallToSampleIsRefusedNotConverted) {
  Login(1, admin_);
  ASSERT_TRUE(Send(1, lake::InitRequest{"admin"}));
  ASSERT_TRUE(Send(1, lake::GrantRequest{hospital_.RawPublic(), "hospital", "owner", {}}));
  ASSERT_TRUE(Send(1, lake::GrantRequest{analyst_.RawPublic(), "bob", "analyst", {"adm"}}));
  Login(2, hospital_);
  ASSERT_TRUE(Send(
      2, lake::IngestBeginRequest{
             "adm", *lake::ParseSchema("age:integer:0..120"), 5, {lake::Privacy::kDp, 1, 10}}));
  std::string csv;
  for (int i = 0; i < 40; ++i) csv += std::to_string(30 + i) + "\n";
  ASSERT_TRUE(Send(2, lake::IngestChunkRequest{2, csv}));
  ASSERT_TRUE(Send(2, lake::IngestEndRequest{}));
  Login(3, analyst_);
  for (double eps : {1e-300, 1e-7, -1.0, 11.0, std::nan("")}) {
    EXPECT_EQ(CodeOf(Send(3, lake::QueryRequest{"SELECT COUNT(*) FROM adm", eps})),
              Error::Code::kInvalidArgument)
        << eps;
  }
  // The engine itself (below the lake's range check) refuses a scale it cannot sample.
  lake::Table t(*lake::ParseSchema("age:integer"));
  ASSERT_TRUE(t.AppendRow({"30"}));
  auto q = lake::ParseQuery("SELECT COUNT(*) FROM t");
  ASSERT_TRUE(q);
  uint64_t word = 1;
  lake::DpOptions dp{.epsilon = 1e-300, .delta = 1e-6, .rng = [&word] { return word *= 7; }};
  auto r = lake::Execute(*q, t, {.dp = &dp});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), Error::Code::kInvalidArgument);
  dp.epsilon = 1;
  EXPECT_TRUE(lake::Execute(*q, t, {.dp = &dp}));
  // The smallest epsilon still answers, with noise of its scale (not an exact count).
  auto tiny = Send(3, lake::QueryRequest{"SELECT COUNT(*) FROM adm", 1e-6});
  ASSERT_TRUE(tiny) << tiny.error().message();
  auto rs = lake::DecodeResultSet(*tiny);
  ASSERT_TRUE(rs);
  ASSERT_EQ(rs->rows.size(), 1u);
  EXPECT_NE(std::get<double>(rs->rows[0][0]), 40);  // noise of scale 1e6: exactly 40 about 1e-6
  // Owners' policies are held to the same range.
  EXPECT_FALSE((lake::PrivacyPolicy{lake::Privacy::kDp, 1e-9, 10}.Check()));
}

// An answer refused as too large says something about the data (how many groups it would show),
// so an analyst pays for it as for an answer: a dp query spends its epsilon, an exact query's row
// set joins the overlap history. Without that the refusal could be asked again and again for free.
TEST_F(LakeEngine, AnAnswerRefusedAsTooLargeIsPaidForAsAnAnswer) {
  Login(1, admin_);
  ASSERT_TRUE(Send(1, lake::InitRequest{"admin"}));
  ASSERT_TRUE(Send(1, lake::GrantRequest{hospital_.RawPublic(), "hospital", "owner", {}}));
  ASSERT_TRUE(
      Send(1, lake::GrantRequest{analyst_.RawPublic(), "bob", "analyst", {"private", "exact"}}));
  Login(2, hospital_);
  // Two groups of ten rows, with 600 kB keys: 63 copies of the key over both pass 64 MiB.
  for (const auto& [name, privacy] :
       {std::pair{"private", lake::Privacy::kDp}, std::pair{"exact", lake::Privacy::kExact}}) {
    ASSERT_TRUE(Send(2, lake::IngestBeginRequest{
                            name, *lake::ParseSchema("i:integer,g:text"), 5, {privacy, 1, 10}}));
    for (char key : {'a', 'b'}) {
      std::string csv;
      for (int i = 0; i < 10; ++i) {
        csv += std::to_string(key == 'a' ? i : 10 + i) + "," + std::string(600'000, key) + "\n";
      }
      auto chunk = Send(2, lake::IngestChunkRequest{2, csv});
      ASSERT_TRUE(chunk) << chunk.error().message();
    }
    ASSERT_TRUE(Send(2, lake::IngestEndRequest{}));
  }
  std::string items = "g";
  for (int i = 0; i < 62; ++i) items += ", g";
  Login(3, analyst_);
  auto spent = [&] {
    auto list = Send(3, lake::ListRequest{});
    EXPECT_TRUE(list);
    const auto reply = lake::DecodeListReply(*list);
    EXPECT_TRUE(reply);
    for (const auto& d : reply->datasets) {
      if (d.name == "private") return d.budget_spent;
    }
    return -1.0;
  };
  auto big =
      Send(3, lake::QueryRequest{"SELECT " + items + ", COUNT(*) FROM private GROUP BY g", 4});
  ASSERT_FALSE(big);
  EXPECT_EQ(big.error().code(), Error::Code::kResourceExhausted) << big.error().message();
  EXPECT_DOUBLE_EQ(spent(), 4);
  // The exact dataset: the refused query's rows are remembered, so one row fewer is refused.
  auto exact =
      Send(3, lake::QueryRequest{"SELECT " + items + ", COUNT(*) FROM exact GROUP BY g", 0});
  ASSERT_FALSE(exact);
  EXPECT_EQ(exact.error().code(), Error::Code::kResourceExhausted) << exact.error().message();
  auto differ = Send(3, lake::QueryRequest{"SELECT COUNT(*) FROM exact WHERE i <> 3", 0});
  ASSERT_FALSE(differ);
  EXPECT_EQ(differ.error().code(), Error::Code::kFailedPrecondition) << differ.error().message();
  // A query within the limits is answered.
  auto small = Send(3, lake::QueryRequest{"SELECT g, COUNT(*) FROM exact GROUP BY g", 0});
  ASSERT_TRUE(small) << small.error().message();
  EXPECT_EQ(lake::DecodeResultSet(*small)->rows.size(), 2u);
}

// Regression: the whole audit log went into every manifest, each entry with its query whole (up
// to 64 KiB). Anyone who could prove a key, registered or not, could send 1 100 long queries (each
// refused, each audited) and make the manifest pass the 64 MiB one lake_load may carry: the lake
// could then never be loaded again. Entries keep 1 KiB of a text now (and its SHA-256), and the log
// grows in sealed segments of kAuditSegmentEntries that the manifest pins by hash.
TEST_F(LakeEngine, TheAuditLogGrowsInSealedSegmentsAndTheManifestStaysSmall) {
  Login(1, admin_);
  ASSERT_TRUE(Send(1, lake::InitRequest{"admin"}));
  EXPECT_EQ(Login(2, stranger_), "unregistered");
  const std::string sql = "SELECT " + std::string(60'000, 'x');
  constexpr int kQueries = 600;
  for (int i = 0; i < kQueries; ++i) {
    EXPECT_EQ(CodeOf(Send(2, lake::QueryRequest{sql, 0})), Error::Code::kPermissionDenied);
  }
  // Every manifest stays small; the log is in the store as segments.
  size_t largest = 0;
  std::map<std::string, crypto::Bytes> latest;
  for (const auto& w : stored_) {
    if (w.key == "manifest") largest = std::max(largest, w.blob.size());
    latest[w.key] = w.blob;
  }
  EXPECT_LT(largest, size_t{1} << 20);
  EXPECT_TRUE(latest.contains("audit/00000000"));
  EXPECT_TRUE(latest.contains("audit/00000001"));
  // The long query is kept as its start and the SHA-256 of the whole.
  auto first = lake::DecodeAuditReply(*Send(1, lake::AuditRequest{}));
  ASSERT_TRUE(first);
  ASSERT_EQ(first->entries.size(), first->length);
  EXPECT_GE(first->length, static_cast<uint64_t>(kQueries) + 1);
  EXPECT_EQ(first->next, 0u);
  const std::string digest = crypto::ToHex(crypto::Sha256(crypto::AsBytes(sql)));
  const lake::AuditEntry& asked = first->entries.back();
  EXPECT_LE(asked.detail.size(), 1024u);
  EXPECT_NE(asked.detail.find(digest), std::string::npos) << asked.detail;
  EXPECT_TRUE(lake::VerifyAuditChain(first->entries));
  // From a later entry on: that entry first.
  auto later = lake::DecodeAuditReply(*Send(1, lake::AuditRequest{300}));
  ASSERT_TRUE(later);
  ASSERT_FALSE(later->entries.empty());
  EXPECT_EQ(later->entries.front().seq, 300u);
  EXPECT_EQ(later->entries.size(), first->length - 299);

  // A fresh engine loads the manifest and its segments into the same chain.
  auto again = Reload(latest);
  ASSERT_TRUE(again);
  auto twice = again->FinishLoad();  // once only
  ASSERT_FALSE(twice);
  EXPECT_EQ(twice.error().code(), Error::Code::kFailedPrecondition);
  auto audit = AskAs(*again, admin_, lake::AuditRequest{});
  ASSERT_TRUE(audit) << audit.error().message();
  auto reloaded = lake::DecodeAuditReply(*audit);
  ASSERT_TRUE(reloaded);
  EXPECT_EQ(reloaded->length, first->length);
  EXPECT_EQ(reloaded->entries.back().hash, first->entries.back().hash);
  // A segment missing, or another in its place, is refused.
  auto missing = PlainLake();
  ASSERT_TRUE(missing->LoadManifest(latest["manifest"]));
  ASSERT_TRUE(missing->LoadPage("audit/00000000", latest["audit/00000000"]));
  EXPECT_FALSE(missing->FinishLoad());
  auto swapped = PlainLake();
  ASSERT_TRUE(swapped->LoadManifest(latest["manifest"]));
  auto wrong = swapped->LoadPage("audit/00000000", latest["audit/00000001"]);
  ASSERT_FALSE(wrong);
  EXPECT_EQ(wrong.error().code(), Error::Code::kCorrupt);
}

// Regression: a chunk was one page whatever it held. 8 MiB of ",\n" (two empty numbers a line:
// 2 bytes of CSV, 16 of doubles) made a 64 MiB page, more than one lake_load carries: the lake
// would not have loaded again. A chunk is cut into pages of at most kPageFixedBytes of values now.
TEST_F(LakeEngine, AChunkOfEmptyNumbersIsStoredInPagesTheLakeCanLoadAgain) {
  Login(1, admin_);
  ASSERT_TRUE(Send(1, lake::InitRequest{"admin"}));
  ASSERT_TRUE(Send(
      1, lake::IngestBeginRequest{
             "empty", *lake::ParseSchema("a:integer,b:real"), 5, {lake::Privacy::kExact, 1, 10}}));
  std::string csv;
  for (size_t i = 0; i < lake::kMaxIngestChunkBytes / 2; ++i) csv += ",\n";
  auto chunk = Send(1, lake::IngestChunkRequest{2, csv});
  ASSERT_TRUE(chunk) << chunk.error().message();
  EXPECT_EQ(lake::DecodeIngestChunkReply(*chunk)->stored, lake::kMaxIngestChunkBytes / 2);
  ASSERT_TRUE(Send(1, lake::IngestEndRequest{}));
  std::map<std::string, crypto::Bytes> latest;
  size_t pages = 0;
  for (auto& w : stored_) {
    if (w.key.starts_with("page/")) {
      ++pages;
      EXPECT_LE(w.blob.size(), lake::kMaxStoredBlobBytes) << w.key;
    }
    latest[w.key] = std::move(w.blob);
  }
  EXPECT_GE(pages, 2u);
  auto again = Reload(latest);
  ASSERT_TRUE(again);
  auto count = AskAs(*again, admin_, lake::QueryRequest{"SELECT COUNT(*) FROM empty", 0});
  ASSERT_TRUE(count) << count.error().message();
  EXPECT_EQ(std::get<double>(lake::DecodeResultSet(*count)->rows.at(0).at(0)),
            static_cast<double>(lake::kMaxIngestChunkBytes / 2));
}

TEST_F(LakeEngine, TheStoredStateReloadsAndAnOlderManifestIsNotNewer) {
  Login(1, admin_);
  ASSERT_TRUE(Send(1, lake::InitRequest{"admin"}));
  ASSERT_TRUE(Send(1, lake::GrantRequest{hospital_.RawPublic(), "hospital", "owner", {}}));
  const uint64_t version = lake_.version();
  EXPECT_EQ(version, 2u);
  // A fresh engine loads what was stored (the manifest last written) and knows its version.
  crypto::Bytes manifest;
  for (const auto& w : stored_)
    if (w.key == "manifest") manifest = w.blob;
  ASSERT_FALSE(manifest.empty());
  auto again = PlainLake();
  ASSERT_TRUE(again->LoadManifest(manifest));
  ASSERT_TRUE(again->FinishLoad());
  EXPECT_EQ(again->version(), version);
}

}  // namespace
}  // namespace medstream
