// The lake's administration: init, grants, deletion, the audit log's views, the dataset list.
#include <algorithm>

#include <fmt/format.h>

#include "enclave/lake/lake.h"
#include "enclave/lake/lake_internal.h"

namespace medstream::lake {

using namespace internal;

Result<crypto::Bytes> Lake::On(Session& s, const InitRequest& m, Output* out) {
  const std::string& name = m.name;
  if (!identities_.empty())
    return Fail(Error::Code::kAlreadyExists, "the lake is already initialised");
  identities_[s.key] = {name, Role::kAdmin, {}};
  Audit(s, "init", "", "", "ok");
  if (auto st = Persist(out); !st) return std::unexpected(st.error());
  return crypto::Bytes{};
}

Result<crypto::Bytes> Lake::On(Session& s, const GrantRequest& m, Output* out) {
  const Role role = RoleOf(s);
  const GrantRequest& g = m;
  const PublicKey& key = g.key;
  const std::string& name = g.name;
  const std::string& role_name = g.role;
  const std::vector<std::string>& granted = g.datasets;
  if (role != Role::kAdmin) {
    Audit(s, "grant", "", name, "refused: not the lake admin");
    // A refusal whose audit entry cannot be stored says that instead, as a refused query does:
    // the caller learns the lake could not keep its record.
    if (auto st = Persist(out); !st) return std::unexpected(st.error());
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
  return crypto::Bytes{};
}

Result<crypto::Bytes> Lake::On(Session& s, const DeleteRequest& m, Output* out) {
  const std::string& name = m.dataset;
  Dataset* d = FindDataset(name);
  if (!d) return Fail(Error::Code::kNotFound, "no dataset '" + name + "'");
  if (d->owner != s.key) {
    Audit(s, "delete", name, "", "refused: not its owner");
    if (auto st = Persist(out); !st) return std::unexpected(st.error());
    return Denied("only the owner of dataset '" + name + "' may delete it");
  }
  for (const auto& p : d->pages) out->writes.push_back({p.key, {}});
  for (const auto& [analyst, h] : d->recent) out->writes.push_back({h.key, {}});
  datasets_.erase(name);
  Audit(s, "delete", name, "", "ok");
  if (auto st = Persist(out); !st) return std::unexpected(st.error());
  // The manifest must land before the pages go: put it first.
  std::rotate(out->writes.begin(), out->writes.end() - 1, out->writes.end());
  return crypto::Bytes{};
}

Result<crypto::Bytes> Lake::On(Session& s, const AuditRequest& m, Output*) {
  const Role role = RoleOf(s);
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
  AuditReply reply;
  reply.whole = whole;
  reply.length = audit_.size();
  // From entry m.from (1-based) on, until the page is full: then `next` names where to go on.
  size_t bytes = 0;
  for (uint64_t i = std::max<uint64_t>(m.from, 1) - 1; i < audit_.size(); ++i) {
    const AuditEntry& e = audit_[i];
    if (!whole && e.who != me_who && !owns(e.dataset)) continue;
    crypto::Bytes one;
    ByteWriter w(&one);
    e.Encode(&w);
    if (!reply.entries.empty() && bytes + one.size() > kMaxAuditReplyBytes) {
      reply.next = e.seq;
      break;
    }
    bytes += one.size();
    reply.entries.push_back(e);
  }
  return Encode(reply);
}

Result<crypto::Bytes> Lake::On(Session& s, const ListRequest&, Output*) {
  const Role role = RoleOf(s);
  std::vector<const Dataset*> visible;
  for (const auto& [name, d] : datasets_) {
    const bool granted = Granted(s, name);
    if (d->owner == s.key || granted || role == Role::kAdmin) visible.push_back(d.get());
  }
  ListReply reply;
  for (const Dataset* d : visible) {
    auto o = identities_.find(d->owner);
    auto sp = d->spent.find(s.key);
    reply.datasets.push_back({.name = d->name,
                              .owner = o == identities_.end() ? "?" : o->second.name,
                              .rows = d->table->rows(),
                              .schema = d->table->schema().Describe(),
                              .k = d->k,
                              .policy = d->policy,
                              .budget_spent = sp == d->spent.end() ? 0 : sp->second});
  }
  return Encode(reply);
}

}  // namespace medstream::lake
