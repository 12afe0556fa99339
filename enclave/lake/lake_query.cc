// Queries: who may ask what of which dataset, the privacy policy's answer (dp noise and budget,
// or exact with k-suppression and query-set-overlap control), and the audit entry of each, asked
// or refused.
#include <algorithm>

#include <fmt/format.h>

#include "enclave/lake/lake.h"
#include "enclave/lake/lake_internal.h"

namespace medstream::lake {

using namespace internal;

Result<crypto::Bytes> Lake::On(Session& s, const QueryRequest& request, Output* out) {
  const std::string& sql = request.sql;
  const double asked_epsilon = request.epsilon;  // 0: the dataset's default
  const Role role = RoleOf(s);
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
  const bool granted = role == Role::kAnalyst && Granted(s, q->dataset);
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
    if (!(dp.epsilon >= kMinQueryEpsilon && dp.epsilon <= kMaxQueryEpsilon)) {
      return refuse(q->dataset, Error(Error::Code::kInvalidArgument,
                                      fmt::format("epsilon {} out of [{}, {}]", dp.epsilon,
                                                  kMinQueryEpsilon, kMaxQueryEpsilon)));
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
  // An answer too large to carry (query.h) is refused on what it would show: a dp query's noisy
  // groups, an exact query's rows past k. Such a refusal says something an answer would, so an
  // analyst pays for it as for one: the epsilon is spent, the row set passes the overlap control
  // and joins the history. (Otherwise a refusal on the exact number of groups could be asked again
  // and again, at no cost, about rows one at a time.)
  const bool too_large = !result && result.error().code() == Error::Code::kResourceExhausted;
  if (!result && !(analyst && too_large)) return refuse(q->dataset, result.error());
  if (spent) {
    *spent += dp.epsilon;
    if (too_large) {
      return refuse(q->dataset,
                    Error(Error::Code::kResourceExhausted,
                          fmt::format("{} (epsilon {:.6g} spent: the refusal depends on the "
                                      "noisy groups)",
                                      result.error().message(), dp.epsilon)));
    }
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
    if (too_large) return refuse(q->dataset, result.error());
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
