#include "owner/lake_client/lake_client.h"

#include <cmath>
#include <cstring>
#include <random>

#include <fmt/format.h>

#include "common/base/file.h"
#include "enclave/lake/csv.h"

namespace medstream::lakesvc {

Result<std::unique_ptr<LakeClient>> LakeClient::Connect(host::EnclaveTransport& t,
                                                        const client::AttestOptions& attest,
                                                        const crypto::EcKey& identity) {
  MEDSTREAM_TRY(session, client::Attest(t, attest));
  std::unique_ptr<LakeClient> c(new LakeClient(t, std::move(session)));
  const lake::PublicKey key = identity.RawPublic();
  MEDSTREAM_TRY(hello, c->Call(lake::Op::kHello, [&](ByteWriter* w) { w->Bytes(key); }));
  ByteReader r(hello);
  MEDSTREAM_TRY(nonce, r.Bytes(32, "nonce"));
  MEDSTREAM_TRY(sig, identity.Sign(lake::ProofMessage(nonce, key)));
  MEDSTREAM_TRY(proved, c->Call(lake::Op::kProve, [&](ByteWriter* w) { w->Bytes(sig); }));
  ByteReader pr(proved);
  MEDSTREAM_TRY(role, pr.String("role", 64));
  c->role_ = role;
  return c;
}

Result<crypto::Bytes> LakeClient::Call(lake::Op op, const std::function<void(ByteWriter*)>& args) {
  crypto::Bytes plain;
  ByteWriter w(&plain);
  w.U8(static_cast<uint8_t>(op));
  args(&w);
  auto record = session_.records.Seal(channel::RecordType::kApplication, plain);
  crypto::Wipe(plain);
  if (!record) return std::unexpected(record.error());
  const crypto::Bytes request = enclave::SessionRecord{session_.id, *record}.Encode();
  MEDSTREAM_TRY(reply_record, t_.Call(enclave::Call::kLakeRequest, request));
  MEDSTREAM_TRY(reply, session_.records.Open(reply_record, channel::RecordType::kApplication));
  ByteReader r(reply);
  MEDSTREAM_TRY(status, r.U8("status"));
  if (status != 0) {
    MEDSTREAM_TRY(message, r.String("error", 1 << 20));
    // 1 + Error::Code, the edge frames' convention (an unknown one is kInternal).
    return std::unexpected(enclave::ErrorFromStatus(status, message));
  }
  return crypto::Bytes(reply.begin() + 1, reply.end());
}

Status LakeClient::Init(const std::string& name) {
  MEDSTREAM_TRY(r, Call(lake::Op::kInit, [&](ByteWriter* w) { w->String(name); }));
  (void)r;
  return {};
}

Status LakeClient::Grant(const lake::PublicKey& key, const std::string& name,
                         const std::string& role, const std::vector<std::string>& datasets) {
  MEDSTREAM_TRY(r, Call(lake::Op::kGrant, [&](ByteWriter* w) {
                  w->Bytes(key);
                  w->String(name);
                  w->String(role);
                  w->U32(static_cast<uint32_t>(datasets.size()));
                  for (const auto& d : datasets) w->String(d);
                }));
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
  MEDSTREAM_TRY(begin, Call(lake::Op::kIngestBegin, [&](ByteWriter* w) {
                  w->String(dataset);
                  schema.Encode(w);
                  w->U32(k);
                  w->U8(static_cast<uint8_t>(options.policy.privacy));
                  w->F64(options.policy.epsilon);
                  w->F64(options.policy.budget);
                }));
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
    MEDSTREAM_TRY(r, Call(lake::Op::kIngestChunk, [&](ByteWriter* w) {
                    w->U64(line);
                    w->Blob({reinterpret_cast<const uint8_t*>(chunk.data()), chunk.size()});
                  }));
    (void)r;
    line += static_cast<uint64_t>(std::count(chunk.begin(), chunk.end(), '\n'));
    pos += len;
    if (progress) progress(pos, text.size());
  }
  MEDSTREAM_TRY(end, Call(lake::Op::kIngestEnd, [](ByteWriter*) {}));
  ByteReader r(end);
  IngestReport report;
  MEDSTREAM_TRY(stored, r.U64("stored"));
  MEDSTREAM_TRY(refused, r.U64("refused"));
  MEDSTREAM_TRY(n, r.U32("bad rows"));
  report.stored = stored;
  report.refused = refused;
  for (uint32_t i = 0; i < n; ++i) {
    MEDSTREAM_TRY(l, r.U64("line"));
    MEDSTREAM_TRY(reason, r.String("reason", 4096));
    report.bad_rows.push_back({l, reason});
  }
  MEDSTREAM_TRY(described, r.String("schema", 1 << 16));
  report.schema = described;
  return report;
}

Result<lake::ResultSet> LakeClient::Query(const std::string& sql, double epsilon) {
  MEDSTREAM_TRY(reply, Call(lake::Op::kQuery, [&](ByteWriter* w) {
                  w->String(sql);
                  w->F64(epsilon);
                }));
  ByteReader r(reply);
  return lake::DecodeResultSet(&r);
}

Status LakeClient::Delete(const std::string& dataset) {
  MEDSTREAM_TRY(r, Call(lake::Op::kDelete, [&](ByteWriter* w) { w->String(dataset); }));
  (void)r;
  return {};
}

Result<LakeClient::AuditView> LakeClient::Audit() {
  MEDSTREAM_TRY(reply, Call(lake::Op::kAudit, [](ByteWriter*) {}));
  ByteReader r(reply);
  AuditView v;
  MEDSTREAM_TRY(whole, r.U8("whole chain"));
  MEDSTREAM_TRY(length, r.U64("chain length"));
  MEDSTREAM_TRY(n, r.U32("entries"));
  v.whole = whole != 0;
  v.length = length;
  for (uint32_t i = 0; i < n; ++i) {
    MEDSTREAM_TRY(e, lake::AuditEntry::Decode(&r));
    v.entries.push_back(std::move(e));
  }
  const Status verified =
      v.whole ? lake::VerifyAuditChain(v.entries) : lake::VerifyAuditEntries(v.entries, v.length);
  if (!verified) return std::unexpected(verified.error());
  return v;
}

Result<std::vector<lake::DatasetInfo>> LakeClient::List() {
  MEDSTREAM_TRY(reply, Call(lake::Op::kList, [](ByteWriter*) {}));
  ByteReader r(reply);
  MEDSTREAM_TRY(n, r.U32("datasets"));
  std::vector<lake::DatasetInfo> out;
  for (uint32_t i = 0; i < n; ++i) {
    lake::DatasetInfo d;
    MEDSTREAM_TRY(name, r.String("name", 256));
    MEDSTREAM_TRY(owner, r.String("owner", 256));
    MEDSTREAM_TRY(rows, r.U64("rows"));
    MEDSTREAM_TRY(schema, r.String("schema", 1 << 16));
    MEDSTREAM_TRY(k, r.U32("k"));
    MEDSTREAM_TRY(privacy, r.U8("privacy policy"));
    MEDSTREAM_TRY(eps, r.F64("epsilon"));
    MEDSTREAM_TRY(budget, r.F64("budget"));
    MEDSTREAM_TRY(spent, r.F64("budget spent"));
    d.name = name;
    d.owner = owner;
    d.rows = rows;
    d.schema = schema;
    d.k = k;
    d.policy = {static_cast<lake::Privacy>(privacy), eps, budget};
    d.budget_spent = spent;
    out.push_back(std::move(d));
  }
  return out;
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
