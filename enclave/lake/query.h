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

#include "common/lake_abi/messages.h"
#include "enclave/lake/dp.h"
#include "enclave/lake/table.h"

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

struct DpOptions {
  double epsilon = 1;   // for the whole query (groups are disjoint: parallel composition)
  double delta = 1e-6;  // chance that a group of one row is shown at all
  dp::RandomSource rng;
};

struct ExecOptions {
  uint64_t min_group = 5;   // groups with fewer rows are suppressed (k)
  bool allow_rows = false;  // row-level SELECT (the dataset's owner only)
  // An analyst: identifier columns may not appear anywhere in the query.
  bool forbid_identifiers = false;
  // Differentially private aggregates instead of exact ones (and no k-suppression: groups are
  // shown when their noisy count passes the release threshold).
  const DpOptions* dp = nullptr;
  // When set: one byte per table row, 1 where the WHERE condition selected the row.
  std::vector<uint8_t>* selected_rows = nullptr;
};

// Evaluates `q` over `table` (the dataset `q.dataset` names). Groups come out sorted by key.
// kFailedPrecondition for what the options forbid (an identifier column, an aggregate that has no
// differentially private form, SUM/AVG of a column without declared bounds under dp).
// kResourceExhausted, and only for this: the answer would pass the limits of one answer
// (kMaxAnswerCells, kMaxAnswerBytes, kMaxResultColumns in messages.h; a row-level SELECT also
// 10 000 rows). It is decided on what the answer would show (under dp, the noisy set of groups),
// before the answer's cells are made, so the caller accounts for it as for an answer.
Result<ResultSet> Execute(const Query& q, const Table& table, const ExecOptions& options);

}  // namespace medstream::lake
