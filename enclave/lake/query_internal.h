// lake/query_internal: what the SQL engine's two halves share (query.cc evaluates a query,
// query_dp.cc gives an aggregate query its differentially private form): the limits of one
// answer, checked before its cells are made, and the order of groups. Not part of the module's
// interface. Pure, no I/O; thread-compatible (no shared state).
#pragma once

#include <cstdint>
#include <vector>

#include "enclave/lake/query.h"

namespace medstream::lake::query_internal {

// Orders values as an answer's groups are sorted: by type first, then by value.
bool LessValue(const Value& a, const Value& b);
// The limits of one answer (messages.h), checked before its cells are made: `rows` it would
// show, of `columns` values each.
Status CheckAnswerCells(size_t rows, size_t columns);
// Adds v's encoded size (ResultSet::Encode: a tag byte, then 8 bytes, or a 4-byte length and the
// text) to *bytes, and refuses the answer once they pass kMaxAnswerBytes.
Status CountAnswerBytes(const Value& v, size_t* bytes);

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
                               const std::vector<size_t>& first_row, std::vector<size_t> order);

// The differentially private form of an aggregate query (query_dp.cc). `gid` is each row's group
// (UINT32_MAX: not selected), `first_row` each group's first row and `rows_in` its row count.
Result<ResultSet> ExecuteDp(const Query& q, const Table& t, const DpOptions& o,
                            const std::vector<int>& group_cols, const std::vector<int>& item_cols,
                            const std::vector<uint32_t>& gid, const std::vector<size_t>& first_row,
                            const std::vector<uint64_t>& rows_in);

}  // namespace medstream::lake::query_internal
