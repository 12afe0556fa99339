// The lake's engine directly, in this process: the SQL subset and tables, and lake::Lake itself
// driven with common/lake_abi's messages (tested on their own in lake_abi_test.cc): roles and
// refusals by code, the audit chain and each owner's share of it, k-suppression, answers' limits,
// rollback-safe versions, blobs that load again. No enclave, no host, no store: the sealer is
// injected.
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

// ---- unit tests of the SQL subset and tables ----

// Issue 11, item 2: recursion and work bounded by stated limits, refused with kResourceExhausted.
TEST(LakeQuery, DeepOrHugeQueriesAreRefusedNotACrash) {
  auto parse = [](const std::string& where) {
    return lake::ParseQuery("SELECT COUNT(*) FROM t WHERE " + where);
  };
  std::string nots;
  for (int i = 0; i < 10000; ++i) nots += "NOT ";
  std::string ands = "age = 1";
  for (int i = 0; i < 2000; ++i) ands += " AND age = 1";
  std::string in = "age IN (0";
  for (int i = 1; i < 2000; ++i) in += "," + std::to_string(i);
  in += ")";
  for (const std::string& where : {std::string(7000, '(') + "age = 1" + std::string(7000, ')'),
                                   nots + "age = 1", std::string(10000, '('), ands, in}) {
    auto q = parse(where);
    ASSERT_FALSE(q.has_value()) << where.substr(0, 40);
    EXPECT_EQ(q.error().code(), Error::Code::kResourceExhausted) << q.error().message();
  }
  // Within the limits: fine.
  EXPECT_TRUE(parse(std::string(30, '(') + "age = 1" + std::string(30, ')')));
  EXPECT_TRUE(parse(std::string("NOT NOT NOT age = 1")));
}

// The parser's stated limits hold at their edges: 64 SELECT items, 16 GROUP BY columns, 1024
// values in an IN list and 32 nested parentheses are parsed; one more of each is refused with
// kResourceExhausted.
TEST(LakeQuery, EachLimitHoldsAtItsEdge) {
  auto items = [](int n) {
    std::string sql = "SELECT COUNT(*)";
    for (int i = 1; i < n; ++i) sql += ", SUM(age)";
    return sql + " FROM t";
  };
  auto group_by = [](int n) {
    std::string sql = "SELECT COUNT(*) FROM t GROUP BY c0";
    for (int i = 1; i < n; ++i) sql += ", c" + std::to_string(i);
    return sql;
  };
  auto in_list = [](int n) {
    std::string sql = "SELECT COUNT(*) FROM t WHERE age IN (0";
    for (int i = 1; i < n; ++i) sql += "," + std::to_string(i);
    return sql + ")";
  };
  auto nested = [](int n) {
    return "SELECT COUNT(*) FROM t WHERE " + std::string(n, '(') + "age = 1" + std::string(n, ')');
  };
  struct Edge {
    const char* what;
    std::string at, past;
  };
  for (const Edge& e :
       {Edge{"SELECT items", items(64), items(65)},
        Edge{"GROUP BY columns", group_by(16), group_by(17)},
        Edge{"IN values", in_list(1024), in_list(1025)}, Edge{"nesting", nested(32), nested(33)}}) {
    auto at = lake::ParseQuery(e.at);
    EXPECT_TRUE(at) << e.what << ": " << at.error().message();
    auto past = lake::ParseQuery(e.past);
    ASSERT_FALSE(past) << e.what;
    EXPECT_EQ(past.error().code(), Error::Code::kResourceExhausted) << e.what;
  }
}

lake::Table Small() {
  lake::Table t(*lake::ParseSchema("age:integer,sex:categorical,bp:real,day:date"));
  const char* rows[][4] = {{"30", "F", "120", "2024-01-01"},
                           {"40", "M", "130", "2024-01-02"},
                           {"50", "F", "", "2024-01-03"},
                           {"60", "M", "150", "2024-01-04"},
                           {"", "F", "110", "2024-01-05"}};
  for (auto& r : rows) EXPECT_TRUE(t.AppendRow({r[0], r[1], r[2], r[3]}));
  return t;
}

lake::ResultSet Exec(const lake::Table& t, const std::string& sql, uint64_t k = 1) {
  auto q = lake::ParseQuery(sql);
  EXPECT_TRUE(q) << q.error().message();
  auto r = lake::Execute(*q, t, {.min_group = k, .allow_rows = true});
  EXPECT_TRUE(r) << r.error().message();
  return r ? *r : lake::ResultSet{};
}

TEST(LakeQuery, ThreeValuedLogicAndAggregates) {
  const lake::Table t = Small();
  // NOT (bp > 125) is unknown where bp is missing: not selected (as in SQL).
  auto r = Exec(t, "SELECT COUNT(*) FROM t WHERE NOT bp > 125");
  EXPECT_EQ(std::get<double>(r.rows[0][0]), 2);
  r = Exec(t, "select count(bp), avg(bp), stddev(age), median(age), percentile(age, 25) from t");
  EXPECT_EQ(std::get<double>(r.rows[0][0]), 4);
  EXPECT_DOUBLE_EQ(std::get<double>(r.rows[0][1]), 127.5);
  EXPECT_NEAR(std::get<double>(r.rows[0][2]), 12.909944487358056, 1e-12);
  EXPECT_DOUBLE_EQ(std::get<double>(r.rows[0][3]), 45);
  EXPECT_DOUBLE_EQ(std::get<double>(r.rows[0][4]), 37.5);
  r = Exec(t,
           "SELECT sex, MIN(day), MAX(day) FROM t WHERE day BETWEEN '2024-01-02' AND "
           "'2024-01-05' GROUP BY sex");
  ASSERT_EQ(r.rows.size(), 2u);
  EXPECT_EQ(std::get<std::string>(r.rows[0][1]), "2024-01-03");
  EXPECT_EQ(std::get<std::string>(r.rows[1][2]), "2024-01-04");
  r = Exec(t, "SELECT sex, COUNT(*) FROM t GROUP BY sex", 3);
  EXPECT_EQ(r.rows.size(), 1u);  // F has 3, M has 2: suppressed
  EXPECT_EQ(r.suppressed_groups, 1u);
}

TEST(LakeQuery, ErrorsNameThePosition) {
  const lake::Table t = Small();
  auto e = [&](const std::string& sql) {
    auto q = lake::ParseQuery(sql);
    if (!q) return q.error().message();
    auto r = lake::Execute(*q, t, {});
    return r ? std::string("ok") : r.error().message();
  };
  EXPECT_EQ(e("SELEC age FROM t"), "SQL error at position 1: expected SELECT, found 'SELEC'");
  EXPECT_EQ(e("SELECT age FROM t WHERE age = 'x' GROUP BY age"),
            "SQL error at position 31: column 'age' is integer, compared with a string");
  EXPECT_EQ(e("SELECT AVG(sex) FROM t"), "AVG(sex) needs a numeric column; 'sex' is categorical");
  EXPECT_EQ(e("SELECT sex, AVG(bp) FROM t"),
            "column 'sex' must appear in GROUP BY or inside an aggregate");
  EXPECT_EQ(e("SELECT COUNT(*) FROM t WHERE wt > 3").substr(0, 45),
            "SQL error at position 30: no column 'wt' (col");
  EXPECT_EQ(e("SELECT COUNT(*) FROM t WHERE day < '2024-13-01'"),
            "SQL error at position 36: '2024-13-01': no such date");
  EXPECT_EQ(e("SELECT age FROM t WHERE sex = 'F' AND"),
            "SQL error at position 38: expected a column name, found the end of the query");
  EXPECT_EQ(e("SELECT PERCENTILE(age, 101) FROM t"),
            "SQL error at position 24: a percentile is 0 to 100");
}

TEST(LakeTable, PagesRoundTripAndCsvRecords) {
  const lake::Table t = Small();
  crypto::Bytes page;
  ByteWriter w(&page);
  t.EncodeRows(1, 5, &w);
  lake::Table u(t.schema());
  ByteReader r(page);
  ASSERT_TRUE(u.AppendPage(&r));
  ASSERT_EQ(u.rows(), 4u);
  EXPECT_EQ(lake::FormatValue(u.Get(1, 0)), "M");
  EXPECT_EQ(lake::FormatValue(u.Get(2, 1)), "NULL");
  EXPECT_EQ(lake::FormatValue(u.Get(3, 3)), "2024-01-05");
  // RFC 4180: quoted commas, doubled quotes, CRLF.
  const std::string text = "a,\"b,c\",\"say \"\"hi\"\"\"\r\nx,y,z\n";
  size_t pos = 0;
  std::vector<std::string_view> f;
  std::vector<std::string> scratch;
  bool open = false;
  ASSERT_TRUE(lake::NextRecord(text, &pos, &f, &scratch, &open));
  ASSERT_EQ(f.size(), 3u);
  EXPECT_EQ(f[1], "b,c");
  EXPECT_EQ(f[2], "say \"hi\"");
  ASSERT_TRUE(lake::NextRecord(text, &pos, &f, &scratch, &open));
  EXPECT_EQ(f[2], "z");
  EXPECT_FALSE(lake::NextRecord(text, &pos, &f, &scratch, &open));
  EXPECT_EQ(lake::CompleteRecordsEnd("a,\"b\nc\"\nd"), 8u);
}

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
  lake::Lake lake_{[](crypto::ByteView plain, uint64_t version) -> Result<crypto::Bytes> {
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
  const lake::Table t = Small();
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

// Regression: bounds are any finite pair, but the private aggregates computed hi - lo and its
// square in the column's units. At bounds near +-1.7e308 a PERCENTILE put a value at the upper
// bound in bin NaN (a write far outside the histogram: a crash), and at bounds of 1e200 STDDEV's
// squares were infinite (a NaN grid position, then signed overflow summing it).
TEST(LakeQuery, PrivateAggregatesOverBoundsNearTheLargestDoubleStayFinite) {
  // Each with half its range: the values' standard deviation is 0.8 to 0.95 of it.
  for (const auto& [bounds, half] : std::vector<std::pair<const char*, double>>{
           {"-1.7e308..1.7e308", 1.7e308}, {"-1e200..1e200", 1e200}, {"0..1e300", 0.5e300}}) {
    lake::Table t(*lake::ParseSchema(std::string("x:real:") + bounds));
    for (int i = 0; i < 60; ++i) {
      ASSERT_TRUE(t.AppendRow({i % 3 == 0 ? "1.7e308" : i % 3 == 1 ? "-1.7e308" : "0"}));
    }
    auto q = lake::ParseQuery("SELECT STDDEV(x), PERCENTILE(x, 90), MEDIAN(x), AVG(x) FROM t");
    ASSERT_TRUE(q) << q.error().message();
    uint64_t word = 88172645463325252ull;
    lake::DpOptions dp{.epsilon = 1, .delta = 1e-6, .rng = [&word] {
                         word ^= word << 13;  // xorshift64
                         word ^= word >> 7;
                         return word ^= word << 17;
                       }};
    auto r = lake::Execute(*q, t, {.dp = &dp});
    ASSERT_TRUE(r) << bounds << ": " << r.error().message();
    ASSERT_EQ(r->rows.size(), 1u);
    for (size_t k = 0; k < 4; ++k) {
      const auto* v = std::get_if<double>(&r->rows[0][k]);
      ASSERT_TRUE(v) << bounds << " column " << k;
      EXPECT_TRUE(std::isfinite(*v)) << bounds << " column " << k << ": " << *v;
    }
    EXPECT_GT(std::get<double>(r->rows[0][0]), 0.3 * half) << bounds;  // not a NaN made 0
    EXPECT_LE(std::get<double>(r->rows[0][0]), 1.1 * half) << bounds;
  }
}

// Regression: an answer had no limit but the lake call's 128 MiB, met only once it was built: 600
// 000 groups of 61 aggregates (any analyst of an exact dataset could ask) ended in "response
// exceeds its cap" and a restarted enclave, and 3 M groups of 64 items took 8 GB of enclave memory
// for an answer whose groups were all suppressed. Rows x columns and the encoded bytes are checked
// now, on the groups the answer would show, before their cells are made.
TEST(LakeQuery, AnAnswerPastItsLimitsIsRefusedBeforeItsCellsAreMade) {
  std::string items = "g";
  for (int i = 0; i < 63; ++i) items += ", COUNT(*)";
  auto q = lake::ParseQuery("SELECT " + items + " FROM t GROUP BY g");
  ASSERT_TRUE(q) << q.error().message();
  const size_t groups = lake::kMaxAnswerCells / 64 + 1;  // 64 columns: one group too many
  lake::Table t(*lake::ParseSchema("g:integer,v:integer"));
  for (size_t i = 0; i < groups; ++i) {
    ASSERT_TRUE(t.AppendRow({std::to_string(i), std::to_string(i % 7)}));
  }
  auto over = lake::Execute(*q, t, {.min_group = 1});
  ASSERT_FALSE(over);
  EXPECT_EQ(over.error().code(), Error::Code::kResourceExhausted) << over.error().message();
  // Decided on the groups shown: with all of them suppressed the answer is empty, not refused.
  auto suppressed = lake::Execute(*q, t, {.min_group = 2});
  ASSERT_TRUE(suppressed) << suppressed.error().message();
  EXPECT_TRUE(suppressed->rows.empty());
  EXPECT_EQ(suppressed->suppressed_groups, groups);
  // Fewer columns over the same groups fit.
  auto two = lake::ParseQuery("SELECT g, SUM(v) FROM t GROUP BY g");
  ASSERT_TRUE(two);
  auto fits = lake::Execute(*two, t, {.min_group = 1});
  ASSERT_TRUE(fits) << fits.error().message();
  EXPECT_EQ(fits->rows.size(), groups);
  // Under dp alike, on the noisy set of groups.
  uint64_t word = 88172645463325252ull;
  lake::DpOptions dp{.epsilon = 10, .delta = 1e-6, .rng = [&word] {
                       word ^= word << 13;  // xorshift64
                       word ^= word >> 7;
                       return word ^= word << 17;
                     }};
  // Twice the groups, so that the few the noise hides cannot bring the answer under the limit.
  lake::Table many(*lake::ParseSchema("g:integer"));
  for (size_t i = 0; i < 2 * groups; ++i) {
    for (int r = 0; r < 3; ++r) ASSERT_TRUE(many.AppendRow({std::to_string(i)}));
  }
  auto star = lake::ParseQuery("SELECT g, COUNT(*) FROM t GROUP BY g");
  ASSERT_TRUE(star);
  auto shown = lake::Execute(*star, many, {.dp = &dp});
  ASSERT_TRUE(shown) << shown.error().message();
  EXPECT_GT(shown->rows.size(), groups);  // the threshold at epsilon 10 is under 3 rows
  std::string key_items = "g";
  for (int i = 0; i < 63; ++i) key_items += ", g";
  auto keys = lake::ParseQuery("SELECT " + key_items + " FROM t GROUP BY g");
  ASSERT_TRUE(keys);
  auto dp_over = lake::Execute(*keys, many, {.dp = &dp});
  ASSERT_FALSE(dp_over);
  EXPECT_EQ(dp_over.error().code(), Error::Code::kResourceExhausted);

  // Bytes: two groups whose 600 kB keys, 64 times over, pass kMaxAnswerBytes.
  lake::Table wide(*lake::ParseSchema("g:text,v:integer"));
  ASSERT_TRUE(wide.AppendRow({std::string(600'000, 'a'), "1"}));
  ASSERT_TRUE(wide.AppendRow({std::string(600'000, 'b'), "2"}));
  auto heavy = lake::Execute(*keys, wide, {.min_group = 1});
  ASSERT_FALSE(heavy);
  EXPECT_EQ(heavy.error().code(), Error::Code::kResourceExhausted);
  auto once = lake::ParseQuery("SELECT g, COUNT(*) FROM t GROUP BY g");
  ASSERT_TRUE(once);
  EXPECT_TRUE(lake::Execute(*once, wide, {.min_group = 1}));
  // An owner's rows alike, and the columns: 64 stars over 100 columns are 6400 (the client
  // refused more than 4096 as a corrupt answer).
  std::string stars = "*";
  for (int i = 0; i < 63; ++i) stars += ", *";
  auto rows = lake::ParseQuery("SELECT " + stars + " FROM t");
  ASSERT_TRUE(rows);
  auto row_bytes = lake::Execute(*rows, wide, {.allow_rows = true});
  ASSERT_FALSE(row_bytes);
  EXPECT_EQ(row_bytes.error().code(), Error::Code::kResourceExhausted);
  std::string hundred;
  for (int i = 0; i < 100; ++i) hundred += (i ? ",c" : "c") + std::to_string(i) + ":integer";
  lake::Table broad(*lake::ParseSchema(hundred));
  ASSERT_TRUE(broad.AppendRow(std::vector<std::string_view>(100, "1")));
  auto columns = lake::Execute(*rows, broad, {.allow_rows = true});
  ASSERT_FALSE(columns);
  EXPECT_EQ(columns.error().code(), Error::Code::kResourceExhausted);
  auto one_star = lake::ParseQuery("SELECT * FROM t");
  ASSERT_TRUE(one_star);
  EXPECT_TRUE(lake::Execute(*one_star, broad, {.allow_rows = true}));
  // And the client refuses an answer with more values than one may carry, before allocating.
  crypto::Bytes answer;
  ByteWriter w(&answer);
  w.U32(64);
  for (int i = 0; i < 64; ++i) w.String("c");
  w.U32(static_cast<uint32_t>(groups));
  answer.resize(answer.size() + groups * 64, 0);  // every value missing: one tag byte each
  auto decoded = lake::DecodeResultSet(answer);
  ASSERT_FALSE(decoded);
  EXPECT_EQ(decoded.error().code(), Error::Code::kCorrupt);
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
