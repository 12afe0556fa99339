#include "lakesvc/lakesvc.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sqlite3.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstring>
#include <mutex>
#include <random>
#include <thread>

#include <fmt/format.h>

#include "base/file.h"
#include "lake/csv.h"

namespace medstream::lakesvc {

namespace {

sqlite3* Db(void* p) {
  return static_cast<sqlite3*>(p);
}

std::unexpected<Error> SqlError(sqlite3* db, const std::string& what) {
  return IoError(what + ": " + sqlite3_errmsg(db));
}

}  // namespace

// The relay clients see: the handshake calls go to the enclave; lake_request is stored and
// committed here, and the enclave hands over its record only then. Nothing else passes.
class Relay : public host::EnclaveTransport {
 public:
  explicit Relay(LakeHost& host) : host_(host) {}
  Result<crypto::Bytes> Call(enclave::Call call, crypto::ByteView request) override {
    auto r = Forward(call, request);
    if (!r && (r.error().code() == Error::Code::kInternal ||
               r.error().code() == Error::Code::kDeadlineExceeded)) {
      // The enclave died on (or was stopped over) this request: the request fails, the service
      // does not. A fresh enclave is loaded from the store for whoever comes next.
      std::fprintf(stderr, "lake host: %s; restarting the enclave\n", r.error().message().c_str());
      ++host_.restarts_;
      if (auto s = host_.LaunchAndLoad(); !s) {
        std::fprintf(stderr, "lake host: restart failed: %s\n", s.error().message().c_str());
      }
    }
    return r;
  }
  std::string_view backend() const override {
    return host_.enclave_ ? host_.enclave_->backend() : "none";
  }
  int pid() const override { return host_.enclave_ ? host_.enclave_->pid() : -1; }

 private:
  Result<crypto::Bytes> Forward(enclave::Call call, crypto::ByteView request) {
    if (!host_.enclave_) {  // an earlier restart failed: try again
      if (auto s = host_.LaunchAndLoad(); !s) return std::unexpected(s.error());
    }
    host::EnclaveTransport& enclave = *host_.enclave_;
    switch (call) {
      case enclave::Call::kInfo:
      case enclave::Call::kHandshake:
      case enclave::Call::kChannel:
        return enclave.Call(call, request);
      case enclave::Call::kLakeRequest: {
        MEDSTREAM_TRY(raw, enclave.Call(call, request));
        MEDSTREAM_TRY(response, enclave::LakeResponse::Decode(raw));
        if (!response.writes.empty()) {
          if (auto s = host_.store_->Apply(response.writes); !s) return std::unexpected(s.error());
        }
        if (response.mutated) {
          // The enclave releases the reply of a request that changed the lake only once its
          // version is committed (enclave/core.h).
          crypto::Bytes v;
          ByteWriter(&v).U64(response.version);
          MEDSTREAM_TRY(held, enclave.Call(enclave::Call::kLakeCommit, v));
          if (response.record.empty()) return held;
        }
        return std::move(response.record);
      }
      default:
        return Fail(Error::Code::kFailedPrecondition, "call not available to lake clients");
    }
  }
  LakeHost& host_;
};

// ---- Store ----

Result<std::unique_ptr<Store>> Store::Open(const std::string& path) {
  sqlite3* db = nullptr;
  if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nullptr) !=
      SQLITE_OK) {
    auto e = SqlError(db, "cannot open " + path);
    sqlite3_close(db);
    return e;
  }
  std::unique_ptr<Store> s(new Store(db));
  const char* schema =
      "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;"
      "CREATE TABLE IF NOT EXISTS blobs (key TEXT PRIMARY KEY, data BLOB NOT NULL);";
  if (sqlite3_exec(db, schema, nullptr, nullptr, nullptr) != SQLITE_OK)
    return SqlError(db, "preparing " + path);
  return s;
}

Store::~Store() {
  sqlite3_close(Db(db_));
}

Result<std::vector<std::string>> Store::Keys() {
  sqlite3_stmt* st = nullptr;
  if (sqlite3_prepare_v2(Db(db_), "SELECT key FROM blobs ORDER BY key", -1, &st, nullptr) !=
      SQLITE_OK)
    return SqlError(Db(db_), "listing blobs");
  std::vector<std::string> keys;
  while (sqlite3_step(st) == SQLITE_ROW) {
    keys.emplace_back(reinterpret_cast<const char*>(sqlite3_column_text(st, 0)));
  }
  sqlite3_finalize(st);
  return keys;
}

Result<crypto::Bytes> Store::Get(const std::string& key) {
  sqlite3_stmt* st = nullptr;
  if (sqlite3_prepare_v2(Db(db_), "SELECT data FROM blobs WHERE key = ?", -1, &st, nullptr) !=
      SQLITE_OK)
    return SqlError(Db(db_), "reading " + key);
  sqlite3_bind_text(st, 1, key.c_str(), -1, SQLITE_TRANSIENT);
  Result<crypto::Bytes> out = NotFound("no blob " + key);
  if (sqlite3_step(st) == SQLITE_ROW) {
    const auto* p = static_cast<const uint8_t*>(sqlite3_column_blob(st, 0));
    out = crypto::Bytes(p, p + sqlite3_column_bytes(st, 0));
  }
  sqlite3_finalize(st);
  return out;
}

Status Store::Apply(const std::vector<std::pair<std::string, crypto::Bytes>>& writes) {
  sqlite3* db = Db(db_);
  if (sqlite3_exec(db, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr) != SQLITE_OK)
    return SqlError(db, "begin");
  sqlite3_stmt* put = nullptr;
  sqlite3_stmt* del = nullptr;
  sqlite3_prepare_v2(db, "INSERT OR REPLACE INTO blobs (key, data) VALUES (?, ?)", -1, &put,
                     nullptr);
  sqlite3_prepare_v2(db, "DELETE FROM blobs WHERE key = ?", -1, &del, nullptr);
  bool ok = put && del;
  for (const auto& [key, blob] : writes) {
    if (!ok) break;
    sqlite3_stmt* st = blob.empty() ? del : put;
    sqlite3_reset(st);
    sqlite3_bind_text(st, 1, key.c_str(), -1, SQLITE_TRANSIENT);
    if (!blob.empty()) sqlite3_bind_blob64(st, 2, blob.data(), blob.size(), SQLITE_STATIC);
    ok = sqlite3_step(st) == SQLITE_DONE;
  }
  sqlite3_finalize(put);
  sqlite3_finalize(del);
  if (!ok) {
    auto e = SqlError(db, "storing sealed blobs");
    sqlite3_exec(db, "ROLLBACK", nullptr, nullptr, nullptr);
    return e;
  }
  if (sqlite3_exec(db, "COMMIT", nullptr, nullptr, nullptr) != SQLITE_OK)
    return SqlError(db, "commit");
  return {};
}

// ---- LakeHost ----

Result<std::unique_ptr<LakeHost>> LakeHost::Start(const HostOptions& o) {
  std::unique_ptr<LakeHost> h(new LakeHost(o));
  MEDSTREAM_TRY(store, Store::Open(o.dir + "/lake.db"));
  h->store_ = std::move(store);
  if (auto s = h->LaunchAndLoad(); !s) return std::unexpected(s.error());
  h->relay_ = std::make_unique<Relay>(*h);
  return h;
}

Status LakeHost::LaunchAndLoad() {
  enclave_.reset();
  MEDSTREAM_TRY(t, host::LaunchEnclave({.backend = options_.mode,
                                        .platform_dir = options_.platform_dir,
                                        .enclave_path = options_.enclave_path,
                                        .call_budget_s = options_.call_budget_s}));
  enclave_ = std::move(t);
  if (!claim_) {
    MEDSTREAM_TRY(info, host::GetInfo(*enclave_));
    MEDSTREAM_TRY(claim, host::CounterClaim::Acquire(options_.platform_dir, info.mr_enclave, "lake",
                                                     options_.dir, "lake.db"));
    claim_.emplace(std::move(claim));
  }
  const std::string where = "loading " + options_.dir + "/lake.db";
  auto load = [&](uint8_t kind, const std::string& key, crypto::ByteView blob) -> Status {
    crypto::Bytes req;
    ByteWriter w(&req);
    w.U8(kind);
    w.String(key);
    w.Bytes(blob);
    MEDSTREAM_TRY(r, enclave_->Call(enclave::Call::kLakeLoad, req));
    (void)r;
    return {};
  };
  MEDSTREAM_TRY(keys, store_->Keys());
  if (std::find(keys.begin(), keys.end(), "manifest") != keys.end()) {
    MEDSTREAM_TRY(m, store_->Get("manifest"));
    if (auto s = load(1, "manifest", m); !s)
      return std::unexpected(std::move(s.error()).With(where));
  }
  for (const std::string& key : keys) {
    if (!key.starts_with("page/") && !key.starts_with("overlap/")) continue;
    MEDSTREAM_TRY(blob, store_->Get(key));
    if (auto s = load(2, key, blob); !s) return std::unexpected(std::move(s.error()).With(where));
  }
  if (auto s = load(3, "", {}); !s) return std::unexpected(std::move(s.error()).With(where));
  return {};
}

Status LakeHost::Serve(const std::string& address, int port, const std::atomic<bool>& stop,
                       const std::function<void(int port)>& on_listening) {
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  if (inet_pton(AF_INET, address.c_str(), &addr.sin_addr) != 1)
    return InvalidArgument("'" + address + "' is not an IPv4 address");
  const int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  const int one = 1;
  setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  socklen_t len = sizeof addr;
  if (lfd < 0 || bind(lfd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      listen(lfd, 16) != 0 || getsockname(lfd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    const std::string why = std::strerror(errno);
    if (lfd >= 0) close(lfd);
    return IoError("cannot listen on " + address + ":" + std::to_string(port) + ": " + why);
  }
  if (on_listening) on_listening(ntohs(addr.sin_port));
  std::mutex mu;  // the enclave takes one call at a time
  std::vector<std::thread> clients;
  std::vector<int> fds;
  while (!stop) {
    pollfd p{lfd, POLLIN, 0};
    if (poll(&p, 1, 200) <= 0) continue;
    const int fd = accept4(lfd, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) continue;
    fds.push_back(fd);
    clients.emplace_back([this, fd, &mu] {
      host::ServeFrames(fd, 64u << 20, [&](uint16_t call, crypto::ByteView request) {
        std::lock_guard lock(mu);
        return relay_->Call(static_cast<enclave::Call>(call), request);
      });
    });
  }
  for (int fd : fds) shutdown(fd, SHUT_RDWR);
  for (auto& t : clients) t.join();
  for (int fd : fds) close(fd);
  close(lfd);
  return {};
}

// ---- LakeClient ----

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
  crypto::Bytes request;
  ByteWriter rw(&request);
  rw.U64(session_.id);
  rw.Bytes(*record);
  MEDSTREAM_TRY(reply_record, t_.Call(enclave::Call::kLakeRequest, request));
  MEDSTREAM_TRY(reply, session_.records.Open(reply_record, channel::RecordType::kApplication));
  ByteReader r(reply);
  MEDSTREAM_TRY(status, r.U8("status"));
  if (status != 0) {
    MEDSTREAM_TRY(message, r.String("error", 1 << 20));
    return Fail(Error::Code::kFailedPrecondition, message);
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
