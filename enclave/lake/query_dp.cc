// lake/query_dp: the differentially private form of an aggregate query (query_internal.h).
#include <algorithm>
#include <cmath>
#include <limits>

#include <fmt/format.h>

#include "enclave/lake/query_internal.h"
#include "enclave/lake/sql_ast.h"

namespace medstream::lake::query_internal {

// The differentially private form of an aggregate query (dp.h). Per group, one noisy count
// decides whether the group is shown, COUNT(*) is that count, COUNT(col) and SUM(col) are one
// measurement each, AVG(col) is a noisy sum over a noisy count: the query's epsilon is split evenly
// over these measurements, and groups are disjoint, so the query spends epsilon in all.
Result<ResultSet> ExecuteDp(const Query& q, const Table& t, const DpOptions& o,
                            const std::vector<int>& group_cols, const std::vector<int>& item_cols,
                            const std::vector<uint32_t>& gid, const std::vector<size_t>& first_row,
                            const std::vector<uint64_t>& rows_in) {
  if (!(o.epsilon > 0) || !(o.delta > 0 && o.delta < 1) || !o.rng) {
    return InvalidArgument("differential privacy needs epsilon > 0 and 0 < delta < 1");
  }
  const Schema& schema = t.schema();
  size_t measurements = 1;
  for (const SelectItem& item : q.items) {
    if (item.agg == Agg::kCount || item.agg == Agg::kSum || item.agg == Agg::kMedian ||
        item.agg == Agg::kPercentile) {
      measurements += 1;
    }
    if (item.agg == Agg::kAvg) measurements += 2;
    if (item.agg == Agg::kStddev) measurements += 3;
  }
  const double eps = o.epsilon / static_cast<double>(measurements);
  // A sum's noise has the largest scale; past dp::kMaxScale the sampler could not draw it exactly.
  if (!(dp::kSumGrid / eps <= dp::kMaxScale)) {
    return InvalidArgument(fmt::format(
        "epsilon {:.3g} split over this query's {} noisy measurements is too small to sample "
        "(ask for a larger epsilon or fewer aggregates)",
        o.epsilon, measurements));
  }
  const double count_scale = 1 / eps;
  const size_t groups = first_row.size();
  ResultSet out;
  out.dp = true;
  out.epsilon = o.epsilon;
  out.release_threshold = group_cols.empty() ? 0 : dp::ReleaseThreshold(count_scale, o.delta);
  for (const SelectItem& item : q.items) out.columns.push_back(item.label);
  // Values per group and column, for the sums.
  std::vector<double> noisy_rows(groups);
  std::vector<size_t> shown;
  for (size_t g = 0; g < groups; ++g) {
    noisy_rows[g] = dp::NoisyCount(rows_in[g], eps, o.rng);
    // Without GROUP BY the one group is always there: its existence says nothing.
    if (group_cols.empty() || noisy_rows[g] >= out.release_threshold) shown.push_back(g);
  }
  // Cells for the shown groups only. The answer's limits are checked on the noisy set, a
  // post-processing of it: the caller spends epsilon on a refusal too.
  MEDSTREAM_TRY(answer, ShownCells::Make(shown, groups, q.items.size()));
  auto& cells = answer.cells;
  const auto& slot = answer.slot;
  out.error95.assign(q.items.size(), 0);
  for (size_t k = 0; k < q.items.size(); ++k) {
    const SelectItem& item = q.items[k];
    const int c = item_cols[k];
    if (item.agg == Agg::kNone) {
      if (auto s = answer.PutKeys(t, c, k, shown, first_row); !s) return std::unexpected(s.error());
      continue;
    }
    if (item.agg == Agg::kCountStar) {
      for (size_t g : shown) cells[slot[g]][k] = std::max(0.0, noisy_rows[g]);
      out.error95[k] = dp::Error95(count_scale);
      continue;
    }
    // The column's values per shown group (non-missing only).
    const Type type = schema.columns[c].type;
    const bool textual = type == Type::kText || type == Type::kCategorical;
    std::vector<std::vector<double>> values(groups);
    std::vector<uint64_t> present(groups, 0);
    for (size_t i = 0; i < gid.size(); ++i) {
      if (gid[i] == UINT32_MAX) continue;
      if (textual) {
        present[gid[i]] += t.codes(c)[i] != Table::kNull;
      } else if (!std::isnan(t.numbers(c)[i])) {
        ++present[gid[i]];
        if (item.agg != Agg::kCount) values[gid[i]].push_back(t.numbers(c)[i]);
      }
    }
    const Column& col = schema.columns[c];
    std::vector<double> noisy_present(groups, 1);
    const double sensitivity = std::max(std::fabs(col.lo), std::fabs(col.hi));
    const double sum_scale = dp::kSumGrid / eps * (sensitivity / dp::kSumGrid);
    for (size_t g : shown) {
      if (item.agg == Agg::kCount) {
        cells[slot[g]][k] = std::max(0.0, dp::NoisyCount(present[g], eps, o.rng));
        continue;
      }
      if (item.agg == Agg::kMedian || item.agg == Agg::kPercentile) {
        const double p = item.agg == Agg::kMedian ? 50 : item.percentile;
        const double v = dp::NoisyPercentile(values[g], col.lo, col.hi, p, eps, o.rng);
        cells[slot[g]][k] = std::isnan(v) ? Value(std::monostate{}) : Value(v);
        continue;
      }
      if (item.agg == Agg::kStddev) {
        // Sample variance from a noisy n, sum and sum of squares of the values centred on the
        // bounds' midpoint (the variance does not move; the sensitivities shrink to half the
        // range and its square, and the cancellation in sum_sq - sum^2/n with them), in units
        // of that half range: the same grid and noise as in the column's units, but no square
        // can pass the largest double (bounds of 1e200 once made half * half infinite, and the
        // sum's grid position NaN).
        const double mid = col.lo / 2 + col.hi / 2, half = col.hi / 2 - col.lo / 2;
        std::vector<double> centred, squares;
        centred.reserve(values[g].size());
        squares.reserve(values[g].size());
        for (double v : values[g]) {
          const double x = half > 0 ? (std::clamp(v, col.lo, col.hi) - mid) / half : 0;
          centred.push_back(x);
          squares.push_back(x * x);
        }
        const double sum_c = dp::NoisySum(centred, -1, 1, eps, o.rng);
        const double sum_sq = dp::NoisySum(squares, 0, 1, eps, o.rng);
        const double n = dp::NoisyCount(present[g], eps, o.rng);
        if (n < 2) {
          cells[slot[g]][k] = std::monostate{};
          continue;
        }
        const double var = std::max(0.0, (sum_sq - sum_c * sum_c / n) / (n - 1));
        cells[slot[g]][k] = half * std::min(std::sqrt(var), std::sqrt(n / (n - 1)));
        continue;
      }
      const double sum = dp::NoisySum(values[g], col.lo, col.hi, eps, o.rng);
      if (item.agg == Agg::kSum) {
        cells[slot[g]][k] = sum;
        continue;
      }
      const double count = std::max(1.0, dp::NoisyCount(present[g], eps, o.rng));
      noisy_present[g] = count;
      cells[slot[g]][k] = std::clamp(sum / count, col.lo, col.hi);
    }
    if (item.agg == Agg::kCount) out.error95[k] = dp::Error95(count_scale);
    if (item.agg == Agg::kSum) out.error95[k] = dp::Error95(sum_scale);
    // No closed-form bound is stated for these (NaN: "not given").
    if (item.agg == Agg::kStddev || item.agg == Agg::kMedian || item.agg == Agg::kPercentile) {
      out.error95[k] = std::numeric_limits<double>::quiet_NaN();
    }
    if (item.agg == Agg::kAvg) {
      // First-order propagation at the smallest shown group: (err_sum + |avg| err_count) / count,
      // from the noisy counts only (an exact count in the bound would leak).
      double worst = 0;
      for (size_t g : shown) {
        const double count = noisy_present[g];
        worst = std::max(worst,
                         (dp::Error95(sum_scale) + sensitivity * dp::Error95(count_scale)) / count);
      }
      out.error95[k] = std::min(worst, col.hi - col.lo);
    }
  }
  for (size_t g : OrderByKey(t, group_cols, first_row, shown)) {
    out.rows.push_back(std::move(cells[answer.slot[g]]));
  }
  return out;
}

}  // namespace medstream::lake::query_internal
