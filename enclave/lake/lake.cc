#include "enclave/lake/lake.h"

#include <algorithm>
#include <cstdlib>
#include <deque>

#include <fmt/format.h>

#include "common/lake_abi/csv.h"
#include "enclave/lake/lake_internal.h"

namespace medstream::lake {

using namespace internal;

Lake::Lake(Sealer seal, Unsealer unseal, std::function<int64_t()> now)
    : seal_(std::move(seal)), unseal_(std::move(unseal)), now_(std::move(now)) {
  rng_ = [this] { return RandomWord(); };
}

uint64_t Lake::RandomWord() {
  uint64_t w = 0;
  // OpenSSL's CSPRNG; were it to fail, stop rather than answer with predictable noise.
  if (!crypto::RandomBytes({reinterpret_cast<uint8_t*>(&w), sizeof w})) std::abort();
  return w;
}
Lake::~Lake() = default;

Lake::Dataset* Lake::FindDataset(std::string_view name) {
  auto it = datasets_.find(std::string(name));
  return it == datasets_.end() ? nullptr : it->second.get();
}

std::string Lake::Who(const Session& s) const {
  auto it = identities_.find(s.key);
  const std::string name = it == identities_.end() ? "unregistered" : it->second.name;
  return name + " (" + Fingerprint(s.key) + ")";
}

void Lake::Audit(const Session& s, std::string op, std::string dataset, std::string detail,
                 std::string outcome) {
  AuditEntry e;
  e.seq = audit_.size() + 1;
  e.time = now_();
  e.who = Who(s);
  e.op = std::move(op);
  e.dataset = std::move(dataset);
  e.detail = std::move(detail);
  e.outcome = std::move(outcome);
  if (!audit_.empty()) e.prev = audit_.back().hash;
  e.hash = e.ComputeHash();
  audit_.push_back(std::move(e));
}

// ---- requests ----

void Lake::EndSession(uint64_t session) {
  sessions_.erase(session);
}

Output Lake::Handle(uint64_t session, crypto::ByteView request) {
  Output out;
  auto& slot = sessions_[session];
  if (!slot) slot = std::make_unique<Session>();
  Result<crypto::Bytes> reply = [&]() -> Result<crypto::Bytes> {
    MEDSTREAM_TRY(decoded, DecodeRequest(request));
    return Dispatch(*slot, decoded, &out);
  }();
  out.reply = EncodeReplyFrame(reply);
  return out;
}

Result<crypto::Bytes> Lake::Dispatch(Session& s, const Request& request, Output* out) {
  if (!loaded_) return Fail(Error::Code::kFailedPrecondition, "the lake is not loaded");
  crypto::Bytes reply;
  if (const auto* hello = std::get_if<HelloRequest>(&request)) {
    HelloReply m;
    if (auto st = crypto::RandomBytes(m.nonce); !st) return std::unexpected(st.error());
    s.key = hello->key;
    s.nonce.assign(m.nonce.begin(), m.nonce.end());
    s.hello = true;
    s.proven = false;
    m.version = version_;
    return Encode(m);
  }
  if (const auto* prove = std::get_if<ProveRequest>(&request)) {
    if (!s.hello)
      return Fail(Error::Code::kFailedPrecondition, "say hello (with your public key) first");
    MEDSTREAM_TRY(key, crypto::EcKey::FromRawPublic(s.key));
    if (auto st = key.Verify(ProofMessage(s.nonce, s.key), prove->signature); !st) {
      return Denied("identity proof failed: the signature does not match the public key");
    }
    s.proven = true;
    auto it = identities_.find(s.key);
    ProveReply m;
    m.role = RoleName(it == identities_.end() ? Role::kNone : it->second.role);
    m.name = it == identities_.end() ? "" : it->second.name;
    m.version = version_;
    return Encode(m);
  }
  if (!s.proven) return Denied("not authenticated: prove your identity first");
  auto me = identities_.find(s.key);
  const Role role = me == identities_.end() ? Role::kNone : me->second.role;
  switch (OpOf(request)) {
    case Op::kInit: {
      const std::string& name = std::get<InitRequest>(request).name;
      if (!identities_.empty())
        return Fail(Error::Code::kAlreadyExists, "the lake is already initialised");
      identities_[s.key] = {name, Role::kAdmin, {}};
      Audit(s, "init", "", "", "ok");
      if (auto st = Persist(out); !st) return std::unexpected(st.error());
      return reply;
    }
    case Op::kGrant: {
      const GrantRequest& g = std::get<GrantRequest>(request);
      const PublicKey& key = g.key;
      const std::string& name = g.name;
      const std::string& role_name = g.role;
      const std::vector<std::string>& granted = g.datasets;
      if (role != Role::kAdmin) {
        Audit(s, "grant", "", name, "refused: not the lake admin");
        (void)Persist(out);
        return Denied("only the lake's admin registers identities");
      }
      MEDSTREAM_TRY(new_role, ParseRole(role_name));
      if (new_role == Role::kAdmin) return Denied("there is one admin: the lake's creator");
      if (auto k = crypto::EcKey::FromRawPublic(key); !k)
        return InvalidArgument("not a P-256 public key");
      Identity& id = identities_[key];
      id.name = name;
      id.role = new_role;
      for (const auto& d : granted) {
        if (std::find(id.datasets.begin(), id.datasets.end(), d) == id.datasets.end())
          id.datasets.push_back(d);
      }
      Audit(s, "grant", fmt::format("{}", fmt::join(granted, ",")),
            name + " as " + std::string(RoleName(new_role)), "ok");
      if (auto st = Persist(out); !st) return std::unexpected(st.error());
      return reply;
    }
    case Op::kIngestBegin:
    case Op::kIngestChunk:
    case Op::kIngestEnd:
      return Ingest(s, request, out);
    case Op::kQuery:
      return RunQuery(s, std::get<QueryRequest>(request), out);
    case Op::kDelete: {
      const std::string& name = std::get<DeleteRequest>(request).dataset;
      Dataset* d = FindDataset(name);
      if (!d) return Fail(Error::Code::kNotFound, "no dataset '" + name + "'");
      if (d->owner != s.key) {
        Audit(s, "delete", name, "", "refused: not its owner");
        (void)Persist(out);
        return Denied("only the owner of dataset '" + name + "' may delete it");
      }
      for (const auto& p : d->pages) out->writes.push_back({p.key, {}});
      for (const auto& [analyst, h] : d->recent) out->writes.push_back({h.key, {}});
      datasets_.erase(name);
      Audit(s, "delete", name, "", "ok");
      if (auto st = Persist(out); !st) return std::unexpected(st.error());
      // The manifest must land before the pages go: put it first.
      std::rotate(out->writes.begin(), out->writes.end() - 1, out->writes.end());
      return reply;
    }
    case Op::kAudit: {
      if (role != Role::kAdmin && role != Role::kOwner)
        return Denied("the audit log is for the lake's admin and dataset owners");
      // The admin sees the whole chain; an owner the entries on its own datasets and its own
      // actions, never what others asked of others' data.
      const bool whole = role == Role::kAdmin;
      const std::string me_who = Who(s);
      auto owns = [&](const std::string& names) {
        for (size_t at = 0; at <= names.size();) {
          const size_t comma = std::min(names.find(',', at), names.size());
          auto d = datasets_.find(names.substr(at, comma - at));
          if (d != datasets_.end() && d->second->owner == s.key) return true;
          at = comma + 1;
        }
        return false;
      };
      AuditReply m;
      m.whole = whole;
      m.length = audit_.size();
      for (const auto& e : audit_) {
        if (whole || e.who == me_who || owns(e.dataset)) m.entries.push_back(e);
      }
      return Encode(m);
    }
    case Op::kList: {
      std::vector<const Dataset*> visible;
      for (const auto& [name, d] : datasets_) {
        const bool granted = me != identities_.end() &&
                             std::find(me->second.datasets.begin(), me->second.datasets.end(),
                                       name) != me->second.datasets.end();
        if (d->owner == s.key || granted || role == Role::kAdmin) visible.push_back(d.get());
      }
      ListReply m;
      for (const Dataset* d : visible) {
        auto o = identities_.find(d->owner);
        auto sp = d->spent.find(s.key);
        m.datasets.push_back({.name = d->name,
                              .owner = o == identities_.end() ? "?" : o->second.name,
                              .rows = d->table->rows(),
                              .schema = d->table->schema().Describe(),
                              .k = d->k,
                              .policy = d->policy,
                              .budget_spent = sp == d->spent.end() ? 0 : sp->second});
      }
      return Encode(m);
    }
    case Op::kHello:
    case Op::kProve:
      break;  // answered above
  }
  return InvalidArgument("unknown lake operation");
}

Result<crypto::Bytes> Lake::Ingest(Session& s, const Request& request, Output* out) {
  auto me = identities_.find(s.key);
  const Role role = me == identities_.end() ? Role::kNone : me->second.role;
  crypto::Bytes reply;
  if (const auto* begin = std::get_if<IngestBeginRequest>(&request)) {
    const std::string& name = begin->dataset;
    const Schema& schema = begin->schema;
    const uint32_t k = begin->k;
    const PrivacyPolicy& policy = begin->policy;
    if (role != Role::kAdmin && role != Role::kOwner) {
      return Denied(std::string("ingest refused: role ") + std::string(RoleName(role)) +
                    " may not upload (owners only)");
    }
    if (name.empty() || name.size() > 128 ||
        !std::all_of(
            name.begin(), name.end(),
            [](char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; }) ||
        std::isdigit(static_cast<unsigned char>(name[0]))) {
      return InvalidArgument("dataset name '" + name +
                             "': letters, digits and _ only, not starting with a digit");
    }
    if (k < 1) return InvalidArgument("k must be at least 1");
    auto st = std::make_unique<Session::IngestState>();
    st->dataset = name;
    st->k = k;
    st->policy = policy;
    if (Dataset* d = FindDataset(name)) {
      if (d->owner != s.key) return Denied("dataset '" + name + "' belongs to another owner");
      if (d->table->schema().Describe() != schema.Describe()) {
        return InvalidArgument("dataset '" + name + "' has schema " +
                               d->table->schema().Describe() + ", the upload has " +
                               schema.Describe());
      }
      st->id = d->id;
      st->next_page = d->next_page;
    } else {
      crypto::Bytes id(8);
      if (auto rs = crypto::RandomBytes(id); !rs) return std::unexpected(rs.error());
      st->id = crypto::ToHex(id);
      st->fresh = true;
    }
    st->schema = schema;
    st->staging = std::make_unique<Table>(schema);
    s.ingest = std::move(st);
    return reply;
  }
  if (!s.ingest)
    return Fail(Error::Code::kFailedPrecondition, "no upload in progress: begin one first");
  Session::IngestState& in = *s.ingest;
  if (const auto* chunk_request = std::get_if<IngestChunkRequest>(&request)) {
    const uint64_t first_line = chunk_request->first_line;
    const std::string_view text = chunk_request->csv;
    Table chunk(in.schema);
    std::vector<std::string_view> fields;
    std::vector<std::string> scratch;
    bool unterminated = false;
    size_t pos = 0;
    uint64_t line = first_line, bad = 0;
    while (NextRecord(text, &pos, &fields, &scratch, &unterminated)) {
      const uint64_t this_line = line++;
      if (fields.size() == 1 && fields[0].empty()) continue;  // blank line
      Status st =
          unterminated ? InvalidArgument("a quoted field never closes") : chunk.AppendRow(fields);
      if (!st) {
        ++bad;
        if (in.bad_rows.size() < kMaxBadRowsReported)
          in.bad_rows.push_back({this_line, st.error().message()});
      }
    }
    in.bad += bad;
    if (chunk.rows() > 0) {
      const uint32_t index = in.next_page++;
      crypto::Bytes page;
      ByteWriter pw(&page);
      pw.Raw(kPageMagic, 4);
      pw.String(in.id);
      pw.U32(index);
      pw.U64(version_ + 1);
      const size_t body = page.size();
      chunk.EncodeRows(0, chunk.rows(), &pw);
      ByteReader pr(crypto::ByteView(page).subspan(body));
      if (auto st = in.staging->AppendPage(&pr); !st) return std::unexpected(st.error());
      MEDSTREAM_TRY(sealed, seal_(page, version_ + 1));
      crypto::Wipe(page);
      Dataset::Page p;
      p.key = PageKey(in.id, index);
      p.hash = crypto::Sha256(sealed);
      p.rows = chunk.rows();
      p.loaded = true;
      in.pages.push_back(p);
      out->writes.push_back({p.key, std::move(sealed)});
    }
    return Encode(IngestChunkReply{chunk.rows(), bad});
  }
  // End: the staged rows join the dataset and the manifest names the new pages.
  Dataset* d = FindDataset(in.dataset);
  if (!d) {
    auto fresh = std::make_unique<Dataset>();
    fresh->id = in.id;
    fresh->name = in.dataset;
    fresh->owner = s.key;
    fresh->k = in.k;
    fresh->policy = in.policy;
    fresh->table = std::make_unique<Table>(in.schema);
    d = fresh.get();
    datasets_[in.dataset] = std::move(fresh);
  } else if (d->owner != s.key) {
    return Denied("dataset '" + in.dataset + "' belongs to another owner");
  }
  const uint64_t stored = in.staging->rows();
  if (d->table->rows() == 0) {
    d->table = std::move(in.staging);  // a new dataset: the staged table is the dataset
  } else {
    crypto::Bytes all;
    ByteWriter aw(&all);
    in.staging->EncodeRows(0, stored, &aw);
    ByteReader ar(all);
    if (auto st = d->table->AppendPage(&ar); !st) return std::unexpected(st.error());
    crypto::Wipe(all);
  }
  d->pages.insert(d->pages.end(), in.pages.begin(), in.pages.end());
  d->next_page = in.next_page;
  // The owner's upload sets the policy (only the owner uploads); spent budgets stay spent.
  d->policy = in.policy;
  d->k = in.k;
  Audit(s, "ingest", in.dataset, fmt::format("{} rows stored, {} refused", stored, in.bad), "ok");
  if (auto st = Persist(out); !st) return std::unexpected(st.error());
  IngestEndReply m{.stored = stored,
                   .refused = in.bad,
                   .bad_rows = std::move(in.bad_rows),
                   .schema = d->table->schema().Describe()};
  s.ingest.reset();
  return Encode(m);
}

Result<crypto::Bytes> Lake::RunQuery(Session& s, const QueryRequest& request, Output* out) {
  const std::string& sql = request.sql;
  const double asked_epsilon = request.epsilon;  // 0: the dataset's default
  auto me = identities_.find(s.key);
  const Role role = me == identities_.end() ? Role::kNone : me->second.role;
  auto refuse = [&](const std::string& dataset, Error e) -> Result<crypto::Bytes> {
    Audit(s, "query", dataset, sql, "refused: " + e.message());
    if (auto st = Persist(out); !st) return std::unexpected(st.error());
    return std::unexpected(std::move(e));
  };
  if (role == Role::kNone) {
    return refuse("", Error(Error::Code::kPermissionDenied,
                            "unregistered identity: ask the lake's admin for a grant"));
  }
  auto q = ParseQuery(sql);
  if (!q) return refuse("", q.error());
  Dataset* d = FindDataset(q->dataset);
  const bool owner = d && d->owner == s.key;
  const bool granted = me->second.role == Role::kAnalyst &&
                       std::find(me->second.datasets.begin(), me->second.datasets.end(),
                                 q->dataset) != me->second.datasets.end();
  if (!d || (!owner && !granted)) {
    // The same answer whether it is absent or not granted: names are not disclosed.
    return refuse(q->dataset, Error(Error::Code::kNotFound,
                                    "no dataset '" + q->dataset + "' that you may query"));
  }
  ExecOptions options;
  options.min_group = d->k;
  options.allow_rows = owner;
  // Owners (and the admin, who owns what it uploads) get exact answers on their own datasets;
  // an analyst gets what the dataset's policy gives.
  const bool analyst = !owner;
  options.forbid_identifiers = analyst;
  DpOptions dp;
  double* spent = nullptr;
  std::vector<uint8_t> rows;
  if (analyst && d->policy.privacy == Privacy::kDp) {
    dp.epsilon = asked_epsilon == 0 ? d->policy.epsilon : asked_epsilon;
    dp.delta = kDpDelta;
    dp.rng = rng_;
    if (!(dp.epsilon > 0 && dp.epsilon <= kMaxQueryEpsilon)) {
      return refuse(q->dataset, Error(Error::Code::kInvalidArgument,
                                      fmt::format("epsilon {} out of (0, {}]", asked_epsilon,
                                                  kMaxQueryEpsilon)));
    }
    spent = &d->spent[s.key];
    // Sequential composition: the budget is the sum of what every query spent.
    if (*spent + dp.epsilon > d->policy.budget + 1e-12) {
      return refuse(q->dataset,
                    Error(Error::Code::kResourceExhausted,
                          fmt::format("privacy budget exhausted on '{}': spent {:.6g} of {:.6g}, "
                                      "this query needs {:.6g}",
                                      q->dataset, *spent, d->policy.budget, dp.epsilon)));
    }
    options.dp = &dp;
  } else if (analyst) {
    options.selected_rows = &rows;
  }
  auto result = Execute(*q, *d->table, options);
  if (!result) return refuse(q->dataset, result.error());
  if (spent) {
    *spent += dp.epsilon;
    result->budget_remaining = std::max(0.0, d->policy.budget - *spent);
  }
  if (analyst && !spent) {
    // Query-set overlap: two answers whose row sets differ by a few rows give those rows away.
    Dataset::History& history = d->recent[s.key];
    const std::vector<uint8_t> bits = PackBits(rows);
    for (const auto& earlier : history.sets) {
      const uint64_t differ = Differ(bits, earlier);
      if (differ > 0 && differ < d->k) {
        return refuse(q->dataset,
                      Error(Error::Code::kFailedPrecondition,
                            fmt::format("refused: the rows this query selects differ from an "
                                        "earlier query of yours by fewer than k = {} rows: "
                                        "together they would single those rows out",
                                        d->k)));
      }
    }
    history.sets.push_back(bits);
    size_t total = 0;
    for (const auto& set : history.sets) total += set.size();
    while (history.sets.size() > kOverlapHistory ||
           (history.sets.size() > 1 && total > kMaxHistoryTotalBytes)) {
      total -= history.sets.front().size();
      history.sets.pop_front();
    }
    crypto::Bytes plain;
    ByteWriter hw(&plain);
    hw.Raw(kHistoryMagic, 4);
    hw.String(d->id);
    hw.U32(static_cast<uint32_t>(history.sets.size()));
    for (const auto& set : history.sets) hw.Blob(set);
    MEDSTREAM_TRY(sealed, seal_(plain, version_ + 1));
    history.key = "overlap/" + d->id + "/" + crypto::ToHex(crypto::Sha256(s.key));
    history.hash = crypto::Sha256(sealed);
    history.loaded = true;
    out->writes.push_back({history.key, std::move(sealed)});
    // A suppressed group and an empty one look the same to an analyst.
    result->suppressed_groups = 0;
  }
  Audit(s, "query", q->dataset, sql,
        result->dp ? fmt::format("ok (dp): {} rows, epsilon {:.6g}, budget left {:.6g}",
                                 result->rows.size(), result->epsilon, result->budget_remaining)
                   : fmt::format("ok: {} rows, {} groups suppressed", result->rows.size(),
                                 result->suppressed_groups));
  if (auto st = Persist(out); !st) return std::unexpected(st.error());
  return Encode(*result);
}

}  // namespace medstream::lake
