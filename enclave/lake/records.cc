// The lake's records that cross the boundary or the audit: roles, the identity proof, audit
// entries and their hash chain, query results.
#include <fmt/format.h>

#include "enclave/lake/lake.h"

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

void EncodeResultSet(const ResultSet& r, ByteWriter* w) {
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

Result<ResultSet> DecodeResultSet(ByteReader* r) {
  ResultSet out;
  MEDSTREAM_TRY(nc, r->U32("result columns"));
  if (nc > 4096) return Corrupt("too many result columns");
  for (uint32_t i = 0; i < nc; ++i) {
    MEDSTREAM_TRY(c, r->String("result column", 4096));
    out.columns.push_back(c);
  }
  MEDSTREAM_TRY(nr, r->U32("result rows"));
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

}  // namespace medstream::lake
