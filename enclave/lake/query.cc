#include "enclave/lake/query.h"
#include "enclave/lake/query_internal.h"
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

}  // namespace

namespace query_internal {

// What query_internal.h declares.

bool LessValue(const Value& a, const Value& b) {
  if (a.index() != b.index()) return a.index() < b.index();
  if (std::holds_alternative<double>(a)) return std::get<double>(a) < std::get<double>(b);
  if (std::holds_alternative<std::string>(a))
    return std::get<std::string>(a) < std::get<std::string>(b);
  return false;
}

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

}  // namespace query_internal

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

using query_internal::CheckAnswerCells;
using query_internal::CountAnswerBytes;
using query_internal::ExecuteDp;
using query_internal::OrderByKey;
using query_internal::ShownCells;

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
