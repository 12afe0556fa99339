#include "common/lake_abi/messages.h"

#include "common/abi/edge.h"

#include <algorithm>

#include <fmt/format.h>

namespace medstream::lake {

std::string_view RoleName(Role r) {
  switch (r) {
    case Role::kAdmin:
      return "admin";
    case Role::kOwner:
      return "owner";
    case Role::kAnalyst:
      return "analyst";
    case Role::kNone:
      break;
  }
  return "unregistered";
}

Result<Role> ParseRole(std::string_view name) {
  for (Role r : {Role::kAdmin, Role::kOwner, Role::kAnalyst}) {
    if (RoleName(r) == name) return r;
  }
  return InvalidArgument("unknown role '" + std::string(name) + "': owner or analyst");
}

crypto::Bytes ProofMessage(std::span<const uint8_t> nonce, const PublicKey& key) {
  crypto::Bytes m;
  ByteWriter w(&m);
  w.String("medstream-lake-auth-v1");
  w.Bytes(nonce);
  w.Bytes(key);
  return m;
}

crypto::Digest AuditEntry::ComputeHash() const {
  crypto::Bytes b;
  ByteWriter w(&b);
  w.Bytes(prev);
  w.U64(seq);
  w.I64(time);
  w.String(who);
  w.String(op);
  w.String(dataset);
  w.String(detail);
  w.String(outcome);
  return crypto::Sha256(b);
}

void AuditEntry::Encode(ByteWriter* w) const {
  w->U64(seq);
  w->I64(time);
  w->String(who);
  w->String(op);
  w->String(dataset);
  w->String(detail);
  w->String(outcome);
  w->Bytes(prev);
  w->Bytes(hash);
}

Result<AuditEntry> AuditEntry::Decode(ByteReader* r) {
  AuditEntry e;
  MEDSTREAM_TRY(seq, r->U64("audit seq"));
  MEDSTREAM_TRY(time, r->I64("audit time"));
  MEDSTREAM_TRY(who, r->String("audit who", 4096));
  MEDSTREAM_TRY(op, r->String("audit op", 64));
  MEDSTREAM_TRY(dataset, r->String("audit dataset", 4096));
  MEDSTREAM_TRY(detail, r->String("audit detail", 1 << 20));
  MEDSTREAM_TRY(outcome, r->String("audit outcome", 1 << 16));
  MEDSTREAM_TRY(prev, r->Bytes(32, "audit prev"));
  MEDSTREAM_TRY(hash, r->Bytes(32, "audit hash"));
  e.seq = seq;
  e.time = time;
  e.who = who;
  e.op = op;
  e.dataset = dataset;
  e.detail = detail;
  e.outcome = outcome;
  std::copy(prev.begin(), prev.end(), e.prev.begin());
  std::copy(hash.begin(), hash.end(), e.hash.begin());
  return e;
}

Status VerifyAuditChain(const std::vector<AuditEntry>& entries) {
  crypto::Digest prev{};
  for (size_t i = 0; i < entries.size(); ++i) {
    const AuditEntry& e = entries[i];
    if (e.seq != i + 1 || e.prev != prev || e.ComputeHash() != e.hash) {
      return Corrupt(fmt::format("audit log broken at entry {}", i + 1));
    }
    prev = e.hash;
  }
  return {};
}

Status VerifyAuditEntries(const std::vector<AuditEntry>& entries, uint64_t length) {
  uint64_t last = 0;
  for (const AuditEntry& e : entries) {
    if (e.seq <= last || e.seq > length || e.ComputeHash() != e.hash) {
      return Corrupt(fmt::format("audit entry {} does not verify", e.seq));
    }
    last = e.seq;
  }
  return {};
}

void ResultSet::Encode(ByteWriter* w) const {
  const ResultSet& r = *this;
  w->U32(static_cast<uint32_t>(r.columns.size()));
  for (const auto& c : r.columns) w->String(c);
  w->U32(static_cast<uint32_t>(r.rows.size()));
  for (const auto& row : r.rows) {
    for (const Value& v : row) {
      if (const auto* d = std::get_if<double>(&v)) {
        w->U8(1);
        w->F64(*d);
      } else if (const auto* s = std::get_if<std::string>(&v)) {
        w->U8(2);
        w->String(*s);
      } else {
        w->U8(0);
      }
    }
  }
  w->U64(r.suppressed_groups);
  w->U8(r.dp ? 1 : 0);
  if (r.dp) {
    w->F64(r.epsilon);
    w->F64(r.budget_remaining);
    w->F64(r.release_threshold);
    for (size_t i = 0; i < r.columns.size(); ++i) w->F64(i < r.error95.size() ? r.error95[i] : 0);
  }
}

Result<ResultSet> ResultSet::Decode(ByteReader* r) {
  ResultSet out;
  MEDSTREAM_TRY(nc, r->U32("result columns"));
  if (nc > kMaxResultColumns) return Corrupt("too many result columns");
  for (uint32_t i = 0; i < nc; ++i) {
    MEDSTREAM_TRY(c, r->String("result column", 4096));
    out.columns.push_back(c);
  }
  MEDSTREAM_TRY(nr, r->U32("result rows"));
  // Each value takes at least its tag byte: a row count the bytes cannot hold, or more values than
  // an answer may carry (a value held takes 40 bytes: 128 MiB of tags would be 5 GB), is refused
  // before anything is allocated (and rows without columns are no rows).
  if ((nc == 0 && nr > 0) || (nc > 0 && nr > r->remaining() / nc) ||
      (nc > 0 && nr > kMaxAnswerCells / nc)) {
    return Corrupt(fmt::format("{} result rows of {} columns in {} bytes", nr, nc, r->remaining()));
  }
  for (uint32_t i = 0; i < nr; ++i) {
    std::vector<Value> row;
    for (uint32_t j = 0; j < nc; ++j) {
      MEDSTREAM_TRY(tag, r->U8("value tag"));
      if (tag == 1) {
        MEDSTREAM_TRY(d, r->F64("value"));
        row.emplace_back(d);
      } else if (tag == 2) {
        MEDSTREAM_TRY(s, r->String("value", 1 << 20));
        row.emplace_back(s);
      } else {
        row.emplace_back(std::monostate{});
      }
    }
    out.rows.push_back(std::move(row));
  }
  MEDSTREAM_TRY(sup, r->U64("suppressed groups"));
  out.suppressed_groups = sup;
  MEDSTREAM_TRY(dp, r->U8("privacy flag"));
  if (dp == 1) {
    out.dp = true;
    MEDSTREAM_TRY(eps, r->F64("epsilon"));
    MEDSTREAM_TRY(left, r->F64("budget remaining"));
    MEDSTREAM_TRY(threshold, r->F64("release threshold"));
    out.epsilon = eps;
    out.budget_remaining = left;
    out.release_threshold = threshold;
    for (uint32_t i = 0; i < nc; ++i) {
      MEDSTREAM_TRY(e, r->F64("error bound"));
      out.error95.push_back(e);
    }
  }
  return out;
}

std::string_view PrivacyName(Privacy p) {
  return p == Privacy::kDp ? "dp" : "exact";
}

Result<Privacy> ParsePrivacy(std::string_view name) {
  if (name == "dp") return Privacy::kDp;
  if (name == "exact") return Privacy::kExact;
  return InvalidArgument("privacy policy '" + std::string(name) + "': dp or exact");
}

Status PrivacyPolicy::Check() const {
  if (privacy != Privacy::kDp && privacy != Privacy::kExact) {
    return InvalidArgument("unknown privacy policy");
  }
  if (!(epsilon >= kMinQueryEpsilon && epsilon <= kMaxQueryEpsilon) ||
      !(budget > 0 && budget <= 1e6)) {
    return InvalidArgument(
        fmt::format("privacy: the epsilon per query must be in [{}, {}] and the budget in (0, 1e6]",
                    kMinQueryEpsilon, kMaxQueryEpsilon));
  }
  return {};
}

void PrivacyPolicy::Encode(ByteWriter* w) const {
  w->U8(static_cast<uint8_t>(privacy));
  w->F64(epsilon);
  w->F64(budget);
}

Result<PrivacyPolicy> PrivacyPolicy::Decode(ByteReader* r) {
  PrivacyPolicy p;
  MEDSTREAM_TRY(privacy, r->U8("privacy policy"));
  MEDSTREAM_TRY(eps, r->F64("epsilon"));
  MEDSTREAM_TRY(budget, r->F64("budget"));
  p.privacy = static_cast<Privacy>(privacy);
  p.epsilon = eps;
  p.budget = budget;
  if (auto s = p.Check(); !s) return std::unexpected(s.error());
  return p;
}

// ---- requests ----

namespace {

template <size_t N>
Result<std::array<uint8_t, N>> FixedBytes(ByteReader* r, const char* what) {
  MEDSTREAM_TRY(b, r->Bytes(N, what));
  std::array<uint8_t, N> out;
  std::copy(b.begin(), b.end(), out.begin());
  return out;
}

Status Done(const ByteReader& r, const char* what) {
  if (!r.done()) return Corrupt(fmt::format("{}: {} bytes too many", what, r.remaining()));
  return {};
}

struct RequestEncoder {
  ByteWriter* w;
  void operator()(const HelloRequest& m) const { w->Bytes(m.key); }
  void operator()(const ProveRequest& m) const { w->Bytes(m.signature); }
  void operator()(const InitRequest& m) const { w->String(m.name); }
  void operator()(const GrantRequest& m) const {
    w->Bytes(m.key);
    w->String(m.name);
    w->String(m.role);
    w->U32(static_cast<uint32_t>(m.datasets.size()));
    for (const auto& d : m.datasets) w->String(d);
  }
  void operator()(const IngestBeginRequest& m) const {
    w->String(m.dataset);
    m.schema.Encode(w);
    w->U32(m.k);
    m.policy.Encode(w);
  }
  void operator()(const IngestChunkRequest& m) const {
    w->U64(m.first_line);
    w->String(m.csv);
  }
  void operator()(const QueryRequest& m) const {
    w->String(m.sql);
    w->F64(m.epsilon);
  }
  void operator()(const DeleteRequest& m) const { w->String(m.dataset); }
  void operator()(const IngestEndRequest&) const {}
  void operator()(const AuditRequest& m) const { w->U64(m.from); }
  void operator()(const ListRequest&) const {}
};

Result<Request> DecodeFields(Op op, ByteReader* r) {
  switch (op) {
    case Op::kHello: {
      MEDSTREAM_TRY(key, FixedBytes<64>(r, "public key"));
      return HelloRequest{key};
    }
    case Op::kProve: {
      MEDSTREAM_TRY(sig, FixedBytes<64>(r, "signature"));
      return ProveRequest{sig};
    }
    case Op::kInit: {
      MEDSTREAM_TRY(name, r->String("name", kMaxNameBytes));
      return InitRequest{name};
    }
    case Op::kGrant: {
      GrantRequest g;
      MEDSTREAM_TRY(key, FixedBytes<64>(r, "public key"));
      MEDSTREAM_TRY(name, r->String("name", kMaxNameBytes));
      MEDSTREAM_TRY(role, r->String("role", 64));
      MEDSTREAM_TRY(n, r->U32("datasets"));
      if (n > kMaxGrantDatasets) {
        return ResourceExhausted(
            fmt::format("a grant names {} datasets, more than {}", n, kMaxGrantDatasets));
      }
      g.key = key;
      g.name = name;
      g.role = role;
      for (uint32_t i = 0; i < n; ++i) {
        MEDSTREAM_TRY(d, r->String("dataset", kMaxNameBytes));
        g.datasets.push_back(d);
      }
      return g;
    }
    case Op::kIngestBegin: {
      IngestBeginRequest b;
      MEDSTREAM_TRY(name, r->String("dataset", kMaxNameBytes));
      MEDSTREAM_TRY(schema, Schema::Decode(r));
      MEDSTREAM_TRY(k, r->U32("k"));
      MEDSTREAM_TRY(policy, PrivacyPolicy::Decode(r));
      b.dataset = name;
      b.schema = std::move(schema);
      b.k = k;
      b.policy = policy;
      return b;
    }
    case Op::kIngestChunk: {
      MEDSTREAM_TRY(first_line, r->U64("first line"));
      MEDSTREAM_TRY(csv, r->String("CSV chunk", kMaxIngestChunkBytes));
      return IngestChunkRequest{first_line, std::move(csv)};
    }
    case Op::kIngestEnd:
      return IngestEndRequest{};
    case Op::kQuery: {
      MEDSTREAM_TRY(sql, r->String("query", kMaxQueryBytes));
      MEDSTREAM_TRY(epsilon, r->F64("epsilon"));
      return QueryRequest{sql, epsilon};
    }
    case Op::kDelete: {
      MEDSTREAM_TRY(name, r->String("dataset", kMaxNameBytes));
      return DeleteRequest{name};
    }
    case Op::kAudit: {
      MEDSTREAM_TRY(from, r->U64("first audit entry"));
      return AuditRequest{from};
    }
    case Op::kList:
      return ListRequest{};
  }
  return InvalidArgument(fmt::format("unknown lake operation {}", static_cast<int>(op)));
}

}  // namespace

Op OpOf(const Request& request) {
  // The variant's alternatives are in the order of Op, from kHello = 1.
  return static_cast<Op>(request.index() + 1);
}

crypto::Bytes EncodeRequest(const Request& request) {
  crypto::Bytes out;
  ByteWriter w(&out);
  w.U8(static_cast<uint8_t>(OpOf(request)));
  std::visit(RequestEncoder{&w}, request);
  return out;
}

Result<Request> DecodeRequest(crypto::ByteView bytes) {
  ByteReader r(bytes);
  MEDSTREAM_TRY(op, r.U8("lake operation"));
  if (op < static_cast<uint8_t>(Op::kHello) || op > static_cast<uint8_t>(Op::kList)) {
    return InvalidArgument(fmt::format("unknown lake operation {}", op));
  }
  MEDSTREAM_TRY(request, DecodeFields(static_cast<Op>(op), &r));
  if (auto s = Done(r, "lake request"); !s) return std::unexpected(s.error());
  return request;
}

// ---- replies ----

crypto::Bytes Encode(const HelloReply& m) {
  crypto::Bytes out;
  ByteWriter w(&out);
  w.Bytes(m.nonce);
  w.U64(m.version);
  return out;
}

crypto::Bytes Encode(const ProveReply& m) {
  crypto::Bytes out;
  ByteWriter w(&out);
  w.String(m.role);
  w.String(m.name);
  w.U64(m.version);
  return out;
}

crypto::Bytes Encode(const IngestChunkReply& m) {
  crypto::Bytes out;
  ByteWriter w(&out);
  w.U64(m.stored);
  w.U64(m.refused);
  return out;
}

crypto::Bytes Encode(const IngestEndReply& m) {
  crypto::Bytes out;
  ByteWriter w(&out);
  w.U64(m.stored);
  w.U64(m.refused);
  w.U32(static_cast<uint32_t>(m.bad_rows.size()));
  for (const BadRow& b : m.bad_rows) {
    w.U64(b.line);
    w.String(b.reason);
  }
  w.String(m.schema);
  return out;
}

crypto::Bytes Encode(const ResultSet& m) {
  crypto::Bytes out;
  ByteWriter w(&out);
  m.Encode(&w);
  return out;
}

crypto::Bytes Encode(const AuditReply& m) {
  crypto::Bytes out;
  ByteWriter w(&out);
  w.U8(m.whole ? 1 : 0);
  w.U64(m.length);
  w.U32(static_cast<uint32_t>(m.entries.size()));
  for (const AuditEntry& e : m.entries) e.Encode(&w);
  w.U64(m.next);
  return out;
}

crypto::Bytes Encode(const ListReply& m) {
  crypto::Bytes out;
  ByteWriter w(&out);
  w.U32(static_cast<uint32_t>(m.datasets.size()));
  for (const DatasetInfo& d : m.datasets) {
    w.String(d.name);
    w.String(d.owner);
    w.U64(d.rows);
    w.String(d.schema);
    w.U32(d.k);
    d.policy.Encode(&w);
    w.F64(d.budget_spent);
  }
  return out;
}

Result<HelloReply> DecodeHelloReply(crypto::ByteView payload) {
  ByteReader r(payload);
  HelloReply m;
  MEDSTREAM_TRY(nonce, FixedBytes<32>(&r, "nonce"));
  MEDSTREAM_TRY(version, r.U64("lake version"));
  m.nonce = nonce;
  m.version = version;
  if (auto s = Done(r, "hello reply"); !s) return std::unexpected(s.error());
  return m;
}

Result<ProveReply> DecodeProveReply(crypto::ByteView payload) {
  ByteReader r(payload);
  ProveReply m;
  MEDSTREAM_TRY(role, r.String("role", 64));
  MEDSTREAM_TRY(name, r.String("name", kMaxNameBytes));
  MEDSTREAM_TRY(version, r.U64("lake version"));
  m.role = role;
  m.name = name;
  m.version = version;
  if (auto s = Done(r, "prove reply"); !s) return std::unexpected(s.error());
  return m;
}

Result<IngestChunkReply> DecodeIngestChunkReply(crypto::ByteView payload) {
  ByteReader r(payload);
  MEDSTREAM_TRY(stored, r.U64("rows stored"));
  MEDSTREAM_TRY(refused, r.U64("rows refused"));
  if (auto s = Done(r, "ingest chunk reply"); !s) return std::unexpected(s.error());
  return IngestChunkReply{stored, refused};
}

Result<IngestEndReply> DecodeIngestEndReply(crypto::ByteView payload) {
  ByteReader r(payload);
  IngestEndReply m;
  MEDSTREAM_TRY(stored, r.U64("rows stored"));
  MEDSTREAM_TRY(refused, r.U64("rows refused"));
  MEDSTREAM_TRY(n, r.U32("bad rows"));
  if (n > kMaxBadRowsReported) return Corrupt(fmt::format("{} bad rows reported", n));
  m.stored = stored;
  m.refused = refused;
  for (uint32_t i = 0; i < n; ++i) {
    MEDSTREAM_TRY(line, r.U64("line"));
    MEDSTREAM_TRY(reason, r.String("reason", 4096));
    m.bad_rows.push_back({line, reason});
  }
  MEDSTREAM_TRY(schema, r.String("schema", 1 << 16));
  m.schema = schema;
  if (auto s = Done(r, "ingest reply"); !s) return std::unexpected(s.error());
  return m;
}

Result<ResultSet> DecodeResultSet(crypto::ByteView payload) {
  ByteReader r(payload);
  MEDSTREAM_TRY(m, ResultSet::Decode(&r));
  if (auto s = Done(r, "query result"); !s) return std::unexpected(s.error());
  return m;
}

Result<AuditReply> DecodeAuditReply(crypto::ByteView payload) {
  ByteReader r(payload);
  AuditReply m;
  MEDSTREAM_TRY(whole, r.U8("whole chain"));
  MEDSTREAM_TRY(length, r.U64("chain length"));
  MEDSTREAM_TRY(n, r.U32("entries"));
  if (n > kMaxAuditEntries || n > length) {
    return Corrupt(fmt::format("{} audit entries of a chain of {}", n, length));
  }
  m.whole = whole == 1;
  m.length = length;
  for (uint32_t i = 0; i < n; ++i) {
    MEDSTREAM_TRY(e, AuditEntry::Decode(&r));
    m.entries.push_back(std::move(e));
  }
  MEDSTREAM_TRY(next, r.U64("next audit entry"));
  // A next page starts past this one's entries and within the chain.
  if (next != 0 && (next > length || (!m.entries.empty() && next <= m.entries.back().seq))) {
    return Corrupt(fmt::format("next audit entry {} of a chain of {}", next, length));
  }
  m.next = next;
  if (auto s = Done(r, "audit reply"); !s) return std::unexpected(s.error());
  return m;
}

Result<ListReply> DecodeListReply(crypto::ByteView payload) {
  ByteReader r(payload);
  ListReply m;
  MEDSTREAM_TRY(n, r.U32("datasets"));
  if (n > kMaxListedDatasets) return Corrupt(fmt::format("{} datasets listed", n));
  for (uint32_t i = 0; i < n; ++i) {
    DatasetInfo d;
    MEDSTREAM_TRY(name, r.String("name", kMaxNameBytes));
    MEDSTREAM_TRY(owner, r.String("owner", kMaxNameBytes));
    MEDSTREAM_TRY(rows, r.U64("rows"));
    MEDSTREAM_TRY(schema, r.String("schema", 1 << 16));
    MEDSTREAM_TRY(k, r.U32("k"));
    MEDSTREAM_TRY(policy, PrivacyPolicy::Decode(&r));
    MEDSTREAM_TRY(spent, r.F64("budget spent"));
    d.name = name;
    d.owner = owner;
    d.rows = rows;
    d.schema = schema;
    d.k = k;
    d.policy = policy;
    d.budget_spent = spent;
    m.datasets.push_back(std::move(d));
  }
  if (auto s = Done(r, "list reply"); !s) return std::unexpected(s.error());
  return m;
}

crypto::Bytes EncodeReplyFrame(const Result<crypto::Bytes>& reply) {
  crypto::Bytes out;
  ByteWriter w(&out);
  if (reply) {
    w.U8(0);
    w.Bytes(*reply);
  } else {
    // The error's code as the edge frames carry it, so the client can branch on it; the message
    // is for the person.
    w.U8(static_cast<uint8_t>(enclave::StatusFromError(reply.error())));
    w.String(reply.error().message());
  }
  return out;
}

Result<crypto::Bytes> DecodeReplyFrame(crypto::ByteView frame) {
  ByteReader r(frame);
  MEDSTREAM_TRY(status, r.U8("status"));
  if (status == 0) return crypto::Bytes(frame.begin() + 1, frame.end());
  MEDSTREAM_TRY(message, r.String("error", 1 << 20));
  return std::unexpected(enclave::ErrorFromStatus(status, message));
}

}  // namespace medstream::lake
