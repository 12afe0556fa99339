#include "owner/lake_client/lake_client.h"

#include <cmath>
#include <cstring>
#include <random>

#include <fmt/format.h>

#include "common/base/file.h"
#include "common/lake_abi/csv.h"

namespace medstream::lakesvc {

Result<std::unique_ptr<LakeClient>> LakeClient::Connect(host::EnclaveTransport& t,
                                                        const client::AttestOptions& attest,
                                                        const crypto::EcKey& identity) {
  MEDSTREAM_TRY(session, client::Attest(t, attest));
  std::unique_ptr<LakeClient> c(new LakeClient(t, std::move(session)));
  const lake::PublicKey key = identity.RawPublic();
  MEDSTREAM_TRY(hello_reply, c->Call(lake::HelloRequest{key}));
  MEDSTREAM_TRY(hello, lake::DecodeHelloReply(hello_reply));
  MEDSTREAM_TRY(sig, identity.Sign(lake::ProofMessage(hello.nonce, key)));
  lake::ProveRequest prove;
  if (sig.size() != prove.signature.size())
    return Fail(Error::Code::kInternal, "the identity key's signature is not P-256");
  std::copy(sig.begin(), sig.end(), prove.signature.begin());
  MEDSTREAM_TRY(prove_reply, c->Call(prove));
  MEDSTREAM_TRY(proved, lake::DecodeProveReply(prove_reply));
  c->role_ = proved.role;
  return c;
}

Result<crypto::Bytes> LakeClient::Call(const lake::Request& message) {
  crypto::Bytes plain = lake::EncodeRequest(message);
  auto record = session_.records.Seal(channel::RecordType::kApplication, plain);
  crypto::Wipe(plain);
  if (!record) return std::unexpected(record.error());
  const crypto::Bytes request = enclave::SessionRecord{session_.id, *record}.Encode();
  MEDSTREAM_TRY(reply_record, t_.Call(enclave::Call::kLakeRequest, request));
  MEDSTREAM_TRY(reply, session_.records.Open(reply_record, channel::RecordType::kApplication));
  return lake::DecodeReplyFrame(reply);
}

Status LakeClient::Init(const std::string& name) {
  MEDSTREAM_TRY(r, Call(lake::InitRequest{name}));
  (void)r;
  return {};
}

Status LakeClient::Grant(const lake::PublicKey& key, const std::string& name,
                         const std::string& role, const std::vector<std::string>& datasets) {
  MEDSTREAM_TRY(r, Call(lake::GrantRequest{key, name, role, datasets}));
  (void)r;
  return {};
}

Result<IngestReport> LakeClient::Ingest(
    const std::string& dataset, const std::string& csv_path, const std::string& schema_spec,
    uint32_t k, const std::function<void(uint64_t done, uint64_t total)>& progress,
    const IngestOptions& options) {
  MEDSTREAM_TRY(text, ReadFileText(csv_path));
  // Header and schema (the client holds the plaintext: inference happens here).
  size_t pos = 0;
  std::vector<std::string_view> fields;
  std::vector<std::string> scratch;
  bool unterminated = false;
  if (!lake::NextRecord(text, &pos, &fields, &scratch, &unterminated) || fields.empty())
    return InvalidArgument(csv_path + ": empty file (a header row is needed)");
  std::vector<std::string> header(fields.begin(), fields.end());
  lake::Schema schema;
  if (!schema_spec.empty()) {
    MEDSTREAM_TRY(s, lake::ParseSchema(schema_spec));
    if (s.columns.size() != header.size())
      return InvalidArgument(fmt::format("--schema names {} columns, {} has {}", s.columns.size(),
                                         csv_path, header.size()));
    schema = s;
  } else {
    std::vector<std::vector<std::string>> sample;
    size_t p = pos;
    while (sample.size() < 2000 && lake::NextRecord(text, &p, &fields, &scratch, &unterminated))
      sample.emplace_back(fields.begin(), fields.end());
    schema = lake::InferSchema(header, sample);
  }
  if (auto s = lake::AnnotateSchema(&schema, options.attributes); !s) {
    return std::unexpected(std::move(s.error()).With("--attributes"));
  }
  MEDSTREAM_TRY(begin, Call(lake::IngestBeginRequest{dataset, schema, k, options.policy}));
  (void)begin;
  constexpr size_t kChunk = 4 << 20;
  static_assert(kChunk <= lake::kMaxIngestChunkBytes && lake::kMaxRecordBytes <= kChunk);
  uint64_t line = 2;
  while (pos < text.size()) {
    std::string_view rest = std::string_view(text).substr(pos);
    size_t len = rest.size();
    if (len > kChunk) len = lake::CompleteRecordsEnd(rest.substr(0, kChunk));
    const std::string_view chunk = rest.substr(0, len);
    // Every record must fit the limit (the enclave refuses larger chunks): find one that does not.
    for (size_t at = 0; at < chunk.size() || len == 0;) {
      const std::string_view tail = len == 0 ? rest.substr(at) : chunk.substr(at);
      const size_t end = lake::CompleteRecordsEnd(tail.substr(0, lake::kMaxRecordBytes + 1));
      if (end == 0 && (tail.size() > lake::kMaxRecordBytes || len == 0)) {
        const uint64_t at_line =
            line + static_cast<uint64_t>(std::count(rest.begin(), rest.begin() + at, '\n'));
        return ResourceExhausted(
            fmt::format("{} line {}: a record longer than {} bytes (the limit of one record)",
                        csv_path, at_line, lake::kMaxRecordBytes));
      }
      if (end == 0) break;  // the last record of the file, within the limit
      at += end;
      if (len != 0 && at >= chunk.size()) break;
    }
    MEDSTREAM_TRY(r, Call(lake::IngestChunkRequest{line, std::string(chunk)}));
    (void)r;
    line += static_cast<uint64_t>(std::count(chunk.begin(), chunk.end(), '\n'));
    pos += len;
    if (progress) progress(pos, text.size());
  }
  MEDSTREAM_TRY(end, Call(lake::IngestEndRequest{}));
  return lake::DecodeIngestEndReply(end);
}

Result<lake::ResultSet> LakeClient::Query(const std::string& sql, double epsilon) {
  // Refused here with the limit named: the enclave would refuse it too, as a message it cannot
  // read.
  if (sql.size() > lake::kMaxQueryBytes) {
    return InvalidArgument(fmt::format(
        "the query is {} bytes; a query may have at most {} bytes (64 KiB): split it into smaller "
        "queries",
        sql.size(), lake::kMaxQueryBytes));
  }
  MEDSTREAM_TRY(reply, Call(lake::QueryRequest{sql, epsilon}));
  return lake::DecodeResultSet(reply);
}

Status LakeClient::Delete(const std::string& dataset) {
  MEDSTREAM_TRY(r, Call(lake::DeleteRequest{dataset}));
  (void)r;
  return {};
}

Result<LakeClient::AuditView> LakeClient::Audit() {
  // Page by page (each at most lake::kMaxAuditReplyBytes); entries added meanwhile come along,
  // and the chain is verified over all of them at the end.
  AuditView v;
  for (uint64_t from = 1;;) {
    MEDSTREAM_TRY(reply, Call(lake::AuditRequest{from}));
    MEDSTREAM_TRY(page, lake::DecodeAuditReply(reply));
    if (from > 1 && page.whole != v.whole) return Corrupt("audit pages disagree on their view");
    v.whole = page.whole;
    v.length = page.length;
    if (v.entries.size() + page.entries.size() > lake::kMaxAuditEntries) {
      return Fail(Error::Code::kResourceExhausted,
                  fmt::format("the audit log has more than {} entries", lake::kMaxAuditEntries));
    }
    for (auto& e : page.entries) v.entries.push_back(std::move(e));
    if (page.next == 0) break;
    if (page.next <= from) return Corrupt("an audit page that does not move on");
    from = page.next;
  }
  const Status verified =
      v.whole ? lake::VerifyAuditChain(v.entries) : lake::VerifyAuditEntries(v.entries, v.length);
  if (!verified) return std::unexpected(verified.error());
  return v;
}

Result<std::vector<lake::DatasetInfo>> LakeClient::List() {
  MEDSTREAM_TRY(reply, Call(lake::ListRequest{}));
  MEDSTREAM_TRY(list, lake::DecodeListReply(reply));
  return std::move(list.datasets);
}

// ---- synthetic records ----

std::string SynthesizeAdmissions(uint64_t rows, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> age_n(58, 18);
  std::uniform_real_distribution<double> u(0, 1);
  static const char* kWards[] = {"cardiology", "internal", "surgery",
                                 "neurology",  "icu",      "oncology"};
  static const char* kDiag[] = {"I10", "I48", "I50", "E11", "J44", "N18", "I21", "C34", "S72"};
  std::string out =
      "patient_id,admission_date,age,sex,ward,diagnosis,systolic_bp,diastolic_bp,heart_rate,"
      "bmi,length_of_stay,readmitted\n";
  out.reserve(rows * 90 + out.size());
  for (uint64_t i = 0; i < rows; ++i) {
    const int age = std::clamp(static_cast<int>(std::lround(age_n(rng))), 18, 99);
    const bool male = u(rng) < 0.52;
    const double sbp = 105 + 0.45 * age + (male ? 4 : 0) + 14 * (u(rng) + u(rng) + u(rng) - 1.5);
    const double dbp = 60 + 0.12 * age + 8 * (u(rng) + u(rng) - 1);
    const int hr = static_cast<int>(std::lround(62 + 25 * u(rng)));
    const double bmi = 21 + 9 * u(rng) + 3 * (u(rng) - 0.5);
    const int day = static_cast<int>(u(rng) * 730);
    const int los = 1 + static_cast<int>(-std::log(1 - u(rng)) * 4);
    fmt::format_to(std::back_inserter(out), "P{:07},{},{},{},{},{},{:.0f},{:.0f},{},{:.1f},{},{}\n",
                   i + 1, lake::FormatDate(19358 + day), age, male ? "M" : "F",
                   kWards[static_cast<size_t>(u(rng) * 6)], kDiag[static_cast<size_t>(u(rng) * 9)],
                   sbp, dbp, hr, bmi, los, u(rng) < 0.12 ? "yes" : "no");
  }
  return out;
}

}  // namespace medstream::lakesvc
