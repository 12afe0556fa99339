// lake/query: the SQL subset analysts use, parsed and evaluated inside the enclave.
//
//   SELECT item, ... FROM dataset [WHERE condition] [GROUP BY column, ...] [;]
//   item:      column | COUNT(*) | COUNT(col) | SUM|AVG|MIN|MAX|STDDEV|MEDIAN(col)
//              | PERCENTILE(col, p) (p in 0..100, linear interpolation)   [AS alias]
//   condition: comparisons (= != <> < <= > >=), AND, OR, NOT, parentheses,
//              col [NOT] IN (v, ...), col [NOT] BETWEEN a AND b, col IS [NOT] NULL
// Keywords are case-insensitive; strings are 'single-quoted' ('' escapes a quote); a string
// compared with a date column is read as YYYY-MM-DD. STDDEV is the sample standard deviation (N-1).
// Aggregates skip missing values; COUNT(*) counts rows. Errors name the position (1-based
// character) and what was expected there.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "lake/table.h"

namespace medstream::lake {

enum class Agg { kNone, kCount, kCountStar, kSum, kAvg, kMin, kMax, kStddev, kMedian, kPercentile };

struct SelectItem {
  Agg agg = Agg::kNone;
  std::string column;  // empty for COUNT(*)
  double percentile = 50;
  std::string label;  // as written, or the alias
};

struct Expr;  // a condition (see query.cc)

struct Query {
  std::vector<SelectItem> items;
  std::string dataset;
  std::shared_ptr<Expr> where;
  std::vector<std::string> group_by;
  bool Aggregates() const;  // every item is an aggregate or a GROUP BY column
};

Result<Query> ParseQuery(std::string_view sql);

struct ResultSet {
  std::vector<std::string> columns;
  std::vector<std::vector<Value>> rows;
  uint64_t suppressed_groups = 0;
};

struct ExecOptions {
  uint64_t min_group = 5;   // groups with fewer rows are suppressed (k)
  bool allow_rows = false;  // row-level SELECT (the dataset's owner only)
};

// Evaluates `q` over `table` (the dataset `q.dataset` names). Groups come out sorted by key.
Result<ResultSet> Execute(const Query& q, const Table& table, const ExecOptions& options);

std::string FormatValue(const Value& v);

}  // namespace medstream::lake
