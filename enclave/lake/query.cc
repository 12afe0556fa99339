#include "enclave/lake/query.h"
#include "enclave/lake/sql_ast.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <limits>
#include <map>
#include <unordered_map>

#include <fmt/format.h>

namespace medstream::lake {

namespace {

// Three-valued logic, as SQL: 0 false, 1 true, 2 unknown (a missing value was compared).
using Mask = std::vector<uint8_t>;
constexpr uint8_t kF = 0, kT = 1, kU = 2;

Result<int> ColumnOf(const Table& t, const std::string& name, size_t pos) {
  const int c = t.schema().Find(name);
  if (c < 0) {
    return InvalidArgument(fmt::format("SQL error at position {}: no column '{}' (columns: {})",
                                       pos, name, t.schema().Describe()));
  }
  return c;
}

// A literal as a number comparable with column c (dates from their text).
Result<double> NumberFor(const Table& t, int c, const Literal& l) {
  const Column& col = t.schema().columns[c];
  if (col.type == Type::kDate) {
    if (!l.is_string)
      return InvalidArgument(fmt::format(
          "SQL error at position {}: compare date column '{}' with a 'YYYY-MM-DD' string", l.pos,
          col.name));
    auto d = ParseDate(l.text);
    if (!d)
      return InvalidArgument(
          fmt::format("SQL error at position {}: '{}': {}", l.pos, l.text, d.error().message()));
    return static_cast<double>(*d);
  }
  if (l.is_string)
    return InvalidArgument(
        fmt::format("SQL error at position {}: column '{}' is {}, compared with a string", l.pos,
                    col.name, TypeName(col.type)));
  return l.number;
}

Result<Mask> Eval(const Expr& e, const Table& t) {
  const size_t n = t.rows();
  switch (e.kind) {
    case Expr::kAnd:
    case Expr::kOr: {
      MEDSTREAM_TRY(a, Eval(*e.a, t));
      MEDSTREAM_TRY(b, Eval(*e.b, t));
      const bool is_and = e.kind == Expr::kAnd;
      for (size_t i = 0; i < n; ++i) {
        const uint8_t x = a[i], y = b[i];
        if (is_and) {
          a[i] = (x == kF || y == kF) ? kF : (x == kU || y == kU) ? kU : kT;
        } else {
          a[i] = (x == kT || y == kT) ? kT : (x == kU || y == kU) ? kU : kF;
        }
      }
      return a;
    }
    case Expr::kNot: {
      MEDSTREAM_TRY(a, Eval(*e.a, t));
      for (auto& x : a) x = x == kU ? kU : (x == kT ? kF : kT);
      return a;
    }
    default:
      break;
  }
  MEDSTREAM_TRY(c, ColumnOf(t, e.column, e.column_pos));
  const Type type = t.schema().columns[c].type;
  const bool textual = type == Type::kText || type == Type::kCategorical;
  Mask m(n, kF);
  if (e.kind == Expr::kIsNull) {
    for (size_t i = 0; i < n; ++i) {
      const bool null = textual ? t.codes(c)[i] == Table::kNull : std::isnan(t.numbers(c)[i]);
      m[i] = null != e.negated ? kT : kF;
    }
    return m;
  }
  for (const Literal& l : e.values) {
    if (l.is_null)
      return InvalidArgument(fmt::format(
          "SQL error at position {}: comparing with NULL is never true; use IS NULL", l.pos));
  }
  const uint8_t yes = e.negated ? kF : kT, no = e.negated ? kT : kF;
  if (textual) {
    for (const Literal& l : e.values) {
      if (!l.is_string)
        return InvalidArgument(
            fmt::format("SQL error at position {}: column '{}' is text, compared with a number",
                        l.pos, e.column));
    }
    const auto& codes = t.codes(c);
    const auto& dict = t.dictionary(c);
    if (e.kind == Expr::kIn ||
        (e.kind == Expr::kCmp && (e.op == "=" || e.op == "!=" || e.op == "<>"))) {
      std::vector<uint8_t> hit(dict.size(), 0);
      for (const Literal& l : e.values) {
        const uint32_t code = t.CodeOf(c, l.text);
        if (code < hit.size()) hit[code] = 1;
      }
      const bool invert = e.kind == Expr::kCmp && e.op != "=";
      for (size_t i = 0; i < n; ++i) {
        if (codes[i] == Table::kNull) {
          m[i] = kU;
        } else {
          m[i] = (hit[codes[i]] != invert) ? yes : no;
        }
      }
      return m;
    }
    // Ordering on text: by bytes, per dictionary entry once.
    std::vector<uint8_t> verdict(dict.size());
    for (size_t k = 0; k < dict.size(); ++k) {
      const std::string& s = dict[k];
      bool v;
      if (e.kind == Expr::kBetween) {
        v = s >= e.values[0].text && s <= e.values[1].text;
      } else {
        const std::string& r = e.values[0].text;
        v = e.op == "<" ? s < r : e.op == "<=" ? s <= r : e.op == ">" ? s > r : s >= r;
      }
      verdict[k] = v;
    }
    for (size_t i = 0; i < n; ++i) {
      m[i] = codes[i] == Table::kNull ? kU : (verdict[codes[i]] ? yes : no);
    }
    return m;
  }
  std::vector<double> vals;
  for (const Literal& l : e.values) {
    MEDSTREAM_TRY(v, NumberFor(t, c, l));
    vals.push_back(v);
  }
  const auto& x = t.numbers(c);
  auto fill = [&](auto pred) {
    for (size_t i = 0; i < n; ++i) m[i] = std::isnan(x[i]) ? kU : (pred(x[i]) ? yes : no);
  };
  if (e.kind == Expr::kIn) {
    fill([&](double v) { return std::find(vals.begin(), vals.end(), v) != vals.end(); });
  } else if (e.kind == Expr::kBetween) {
    const double lo = vals[0], hi = vals[1];
    fill([&](double v) { return v >= lo && v <= hi; });
  } else {
    const double r = vals[0];
    if (e.op == "=") fill([&](double v) { return v == r; });
    if (e.op == "!=" || e.op == "<>") fill([&](double v) { return v != r; });
    if (e.op == "<") fill([&](double v) { return v < r; });
    if (e.op == "<=") fill([&](double v) { return v <= r; });
    if (e.op == ">") fill([&](double v) { return v > r; });
    if (e.op == ">=") fill([&](double v) { return v >= r; });
  }
  return m;
}

struct Acc {
  uint64_t count = 0;
  double sum = 0, mean = 0, m2 = 0;
  double min = INFINITY, max = -INFINITY;
  std::vector<double> values;  // median / percentile
};

double Percentile(std::vector<double>& v, double p) {
  if (v.empty()) return NAN;
  const double pos = p / 100 * static_cast<double>(v.size() - 1);
  const size_t lo = static_cast<size_t>(std::floor(pos));
  std::nth_element(v.begin(), v.begin() + static_cast<ptrdiff_t>(lo), v.end());
  const double a = v[lo];
  if (lo + 1 >= v.size()) return a;
  const double b = *std::min_element(v.begin() + static_cast<ptrdiff_t>(lo) + 1, v.end());
  return a + (b - a) * (pos - static_cast<double>(lo));
}

bool LessValue(const Value& a, const Value& b) {
  if (a.index() != b.index()) return a.index() < b.index();
  if (std::holds_alternative<double>(a)) return std::get<double>(a) < std::get<double>(b);
  if (std::holds_alternative<std::string>(a))
    return std::get<std::string>(a) < std::get<std::string>(b);
  return false;
}

// The limits of one answer (messages.h), checked before its cells are made: `rows` it would
// show, of `columns` values each.
Status CheckAnswerCells(size_t rows, size_t columns) {
  if (columns > kMaxResultColumns) {
    return ResourceExhausted(fmt::format(
        "the answer would have {} columns, more than the {} an answer may carry: select fewer",
        columns, kMaxResultColumns));
  }
  if (columns > 0 && rows > kMaxAnswerCells / columns) {
    return ResourceExhausted(fmt::format(
        "the answer would have {} rows of {} columns, more than the {} values an answer may "
        "carry: group more coarsely, select fewer columns or narrow the WHERE condition",
        rows, columns, kMaxAnswerCells));
  }
  return {};
}

// Adds v's encoded size (ResultSet::Encode: a tag byte, then 8 bytes, or a 4-byte length and the
// text) to *bytes, and refuses the answer once they pass kMaxAnswerBytes.
Status CountAnswerBytes(const Value& v, size_t* bytes) {
  if (const auto* text = std::get_if<std::string>(&v)) {
    *bytes += 5 + text->size();
  } else {
    *bytes += std::holds_alternative<double>(v) ? 9 : 1;
  }
  if (*bytes > kMaxAnswerBytes) {
    return ResourceExhausted(fmt::format(
        "the answer would be more than {} MiB: select fewer or shorter text columns, group more "
        "coarsely or narrow the WHERE condition",
        kMaxAnswerBytes >> 20));
  }
  return {};
}

// The cells of an answer's shown groups (group g's at slot[g]), made only once the answer's
// limits pass on them; the values' bytes are counted as the strings go in.
struct ShownCells {
  std::vector<uint32_t> slot;
  std::vector<std::vector<Value>> cells;
  size_t bytes = 0;

  static Result<ShownCells> Make(const std::vector<size_t>& shown, size_t groups, size_t columns) {
    if (auto s = CheckAnswerCells(shown.size(), columns); !s) return std::unexpected(s.error());
    ShownCells out;
    out.slot.assign(groups, UINT32_MAX);
    for (size_t j = 0; j < shown.size(); ++j) out.slot[shown[j]] = static_cast<uint32_t>(j);
    out.cells.assign(shown.size(), std::vector<Value>(columns));
    return out;
  }
  // Column k: the group key in table column c, from each shown group's first row.
  Status PutKeys(const Table& t, int c, size_t k, const std::vector<size_t>& shown,
                 const std::vector<size_t>& first_row) {
    for (size_t j = 0; j < shown.size(); ++j) {
      cells[j][k] = t.Get(c, first_row[shown[j]]);
      if (auto s = CountAnswerBytes(cells[j][k], &bytes); !s) return s;
    }
    return {};
  }
};

// Rows of the groups ordered by their key.
std::vector<size_t> OrderByKey(const Table& t, const std::vector<int>& group_cols,
                               const std::vector<size_t>& first_row, std::vector<size_t> order) {
  std::vector<std::vector<Value>> keys(first_row.size());
  for (size_t g : order) {
    if (first_row[g] == SIZE_MAX) continue;
    for (int c : group_cols) keys[g].push_back(t.Get(c, first_row[g]));
  }
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return std::lexicographical_compare(keys[a].begin(), keys[a].end(), keys[b].begin(),
                                        keys[b].end(), LessValue);
  });
  return order;
}

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

}  // namespace

namespace {

void ColumnsOf(const Expr& e, std::vector<std::string>* out) {
  if (e.a) ColumnsOf(*e.a, out);
  if (e.b) ColumnsOf(*e.b, out);
  if (!e.column.empty()) out->push_back(e.column);
}

// Every column the query names, in WHERE, GROUP BY and the select list.
std::vector<std::string> ReferencedColumns(const Query& q) {
  std::vector<std::string> cols = q.group_by;
  for (const SelectItem& item : q.items) {
    if (!item.column.empty() && item.column != "*") cols.push_back(item.column);
  }
  if (q.where) ColumnsOf(*q.where, &cols);
  return cols;
}

}  // namespace

Result<ResultSet> Execute(const Query& q, const Table& t, const ExecOptions& options) {
  const Schema& schema = t.schema();
  if (options.forbid_identifiers) {
    for (const std::string& name : ReferencedColumns(q)) {
      const int c = schema.Find(name);
      if (c >= 0 && schema.columns[c].identifier) {
        return Fail(Error::Code::kFailedPrecondition,
                    "column '" + name +
                        "' is a direct identifier: analysts may not select, filter or group on it");
      }
    }
    for (const SelectItem& item : q.items) {
      if (item.column == "*" && item.agg == Agg::kNone) {
        return Fail(Error::Code::kFailedPrecondition, "SELECT * is not for analysts");
      }
    }
  }
  if (options.dp) {
    for (const SelectItem& item : q.items) {
      if (item.agg == Agg::kMin || item.agg == Agg::kMax) {
        return Fail(Error::Code::kFailedPrecondition,
                    item.label +
                        ": this dataset answers analysts with differential privacy, which has no "
                        "MIN or MAX (one patient decides them); ask for a PERCENTILE near 0 or "
                        "100 instead");
      }
      if (item.agg != Agg::kNone && item.agg != Agg::kCount && item.agg != Agg::kCountStar) {
        const int c = schema.Find(item.column);
        if (c >= 0 && IsNumeric(schema.columns[c].type) && !schema.columns[c].bounded()) {
          return Fail(Error::Code::kFailedPrecondition,
                      item.label + ": column '" + item.column +
                          "' has no declared bounds, so its sensitivity is unknown (the owner "
                          "declares them at ingest: --attributes " +
                          item.column + ":LO..HI)");
        }
      }
    }
  }
  std::vector<int> group_cols;
  for (const std::string& g : q.group_by) {
    const int c = schema.Find(g);
    if (c < 0)
      return InvalidArgument("GROUP BY: no column '" + g + "' (columns: " + schema.Describe() +
                             ")");
    group_cols.push_back(c);
  }
  std::vector<int> item_cols;
  for (const SelectItem& item : q.items) {
    if (item.agg == Agg::kCountStar || item.column == "*") {
      item_cols.push_back(-1);
      continue;
    }
    const int c = schema.Find(item.column);
    if (c < 0)
      return InvalidArgument("no column '" + item.column + "' (columns: " + schema.Describe() +
                             ")");
    const Type type = schema.columns[c].type;
    switch (item.agg) {
      case Agg::kSum:
      case Agg::kAvg:
      case Agg::kStddev:
      case Agg::kMedian:
      case Agg::kPercentile:
        if (!IsNumeric(type))
          return InvalidArgument(fmt::format("{} needs a numeric column; '{}' is {}", item.label,
                                             item.column, TypeName(type)));
        break;
      case Agg::kMin:
      case Agg::kMax:
        if (!IsNumeric(type) && type != Type::kDate)
          return InvalidArgument(fmt::format("{} needs a numeric or date column; '{}' is {}",
                                             item.label, item.column, TypeName(type)));
        break;
      default:
        break;
    }
    item_cols.push_back(c);
  }
  const bool aggregate = q.Aggregates();
  if (aggregate) {
    for (size_t k = 0; k < q.items.size(); ++k) {
      const SelectItem& item = q.items[k];
      if (item.agg != Agg::kNone) continue;
      if (item.column == "*" ||
          std::find(group_cols.begin(), group_cols.end(), item_cols[k]) == group_cols.end()) {
        return InvalidArgument("column '" + item.column +
                               "' must appear in GROUP BY or inside an aggregate");
      }
    }
  } else if (!options.allow_rows) {
    return Fail(Error::Code::kFailedPrecondition,
                "row-level SELECT refused: analysts receive aggregates only (COUNT, SUM, AVG, MIN, "
                "MAX, STDDEV, MEDIAN, PERCENTILE, with GROUP BY)");
  }

  Mask where;
  if (q.where) {
    MEDSTREAM_TRY(m, Eval(*q.where, t));
    where = std::move(m);
  }
  const size_t n = t.rows();
  auto selected = [&](size_t i) { return where.empty() || where[i] == kT; };
  if (options.selected_rows) {
    options.selected_rows->assign(n, 0);
    for (size_t i = 0; i < n; ++i) (*options.selected_rows)[i] = selected(i) ? 1 : 0;
  }

  ResultSet out;
  for (size_t k = 0; k < q.items.size(); ++k) {
    if (!aggregate && q.items[k].column == "*") {
      for (const Column& c : schema.columns) out.columns.push_back(c.name);
    } else {
      out.columns.push_back(q.items[k].label);
    }
  }
  if (!aggregate) {
    constexpr size_t kMaxRows = 10000;
    size_t bytes = 0;
    for (size_t i = 0; i < n; ++i) {
      if (!selected(i)) continue;
      if (out.rows.size() >= kMaxRows)
        return ResourceExhausted("more than 10000 rows: narrow the WHERE condition");
      if (auto s = CheckAnswerCells(out.rows.size() + 1, out.columns.size()); !s) {
        return std::unexpected(s.error());
      }
      std::vector<Value> row;
      for (size_t k = 0; k < q.items.size(); ++k) {
        if (item_cols[k] < 0) {
          for (size_t c = 0; c < schema.columns.size(); ++c)
            row.push_back(t.Get(static_cast<int>(c), i));
        } else {
          row.push_back(t.Get(item_cols[k], i));
        }
      }
      for (const Value& v : row) {
        if (auto s = CountAnswerBytes(v, &bytes); !s) return std::unexpected(s.error());
      }
      out.rows.push_back(std::move(row));
    }
    return out;
  }

  // Group ids: the key is the group columns' codes / number bits.
  std::vector<uint32_t> gid(n, UINT32_MAX);
  std::vector<size_t> first_row;  // a representative row per group
  {
    std::unordered_map<std::string, uint32_t> groups;
    std::string key;
    for (size_t i = 0; i < n; ++i) {
      if (!selected(i)) continue;
      key.clear();
      for (int c : group_cols) {
        const Type type = schema.columns[c].type;
        uint64_t bits;
        if (type == Type::kText || type == Type::kCategorical) {
          bits = t.codes(c)[i];
        } else {
          const double v = t.numbers(c)[i];
          bits = std::isnan(v) ? ~uint64_t{0} : std::bit_cast<uint64_t>(v);
        }
        key.append(reinterpret_cast<const char*>(&bits), sizeof bits);
      }
      auto [it, fresh] = groups.emplace(key, static_cast<uint32_t>(first_row.size()));
      if (fresh) first_row.push_back(i);
      gid[i] = it->second;
    }
  }
  if (group_cols.empty() && first_row.empty()) first_row.push_back(SIZE_MAX);  // one empty group
  const size_t groups = first_row.size();
  std::vector<uint64_t> rows_in(groups, 0);
  for (size_t i = 0; i < n; ++i)
    if (gid[i] != UINT32_MAX) ++rows_in[gid[i]];

  if (options.dp) {
    return ExecuteDp(q, t, *options.dp, group_cols, item_cols, gid, first_row, rows_in);
  }
  // Small groups are suppressed; cells are made for the shown ones only (a group's at slot[g]),
  // after the answer's limits are checked on them (3 M groups of 64 items once took 8 GB for an
  // answer of no rows).
  std::vector<size_t> shown;
  for (size_t g = 0; g < groups; ++g) {
    if (rows_in[g] < options.min_group) {
      ++out.suppressed_groups;
    } else {
      shown.push_back(g);
    }
  }
  MEDSTREAM_TRY(answer, ShownCells::Make(shown, groups, q.items.size()));
  auto& cells = answer.cells;
  for (size_t k = 0; k < q.items.size(); ++k) {
    const SelectItem& item = q.items[k];
    const int c = item_cols[k];
    if (item.agg == Agg::kNone) {
      if (auto s = answer.PutKeys(t, c, k, shown, first_row); !s) return std::unexpected(s.error());
      continue;
    }
    if (item.agg == Agg::kCountStar) {
      for (size_t j = 0; j < shown.size(); ++j) {
        cells[j][k] = static_cast<double>(rows_in[shown[j]]);
      }
      continue;
    }
    const Type type = schema.columns[c].type;
    const bool textual = type == Type::kText || type == Type::kCategorical;
    std::vector<Acc> acc(groups);
    const bool keep = item.agg == Agg::kMedian || item.agg == Agg::kPercentile;
    for (size_t i = 0; i < n; ++i) {
      if (gid[i] == UINT32_MAX) continue;
      Acc& a = acc[gid[i]];
      if (textual) {
        if (t.codes(c)[i] != Table::kNull) ++a.count;
        continue;
      }
      const double v = t.numbers(c)[i];
      if (std::isnan(v)) continue;
      ++a.count;
      a.sum += v;
      const double d = v - a.mean;
      a.mean += d / static_cast<double>(a.count);
      a.m2 += d * (v - a.mean);
      a.min = std::min(a.min, v);
      a.max = std::max(a.max, v);
      if (keep) a.values.push_back(v);
    }
    for (size_t j = 0; j < shown.size(); ++j) {
      Acc& a = acc[shown[j]];
      Value v = std::monostate{};
      switch (item.agg) {
        case Agg::kCount:
          v = static_cast<double>(a.count);
          break;
        case Agg::kSum:
          if (a.count) v = a.sum;
          break;
        case Agg::kAvg:
          if (a.count) v = a.sum / static_cast<double>(a.count);
          break;
        case Agg::kStddev:
          if (a.count > 1) v = std::sqrt(a.m2 / static_cast<double>(a.count - 1));
          break;
        case Agg::kMin:
        case Agg::kMax:
          if (a.count) {
            const double x = item.agg == Agg::kMin ? a.min : a.max;
            v = type == Type::kDate ? Value(FormatDate(static_cast<int64_t>(x))) : Value(x);
          }
          break;
        case Agg::kMedian:
          if (a.count) v = Percentile(a.values, 50);
          break;
        case Agg::kPercentile:
          if (a.count) v = Percentile(a.values, item.percentile);
          break;
        default:
          break;
      }
      if (auto s = CountAnswerBytes(v, &answer.bytes); !s) return std::unexpected(s.error());
      cells[j][k] = std::move(v);
    }
  }
  for (size_t g : OrderByKey(t, group_cols, first_row, shown)) {
    out.rows.push_back(std::move(cells[answer.slot[g]]));
  }
  return out;
}

}  // namespace medstream::lake
