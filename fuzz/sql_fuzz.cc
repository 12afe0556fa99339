// SQL as the lake enclave parses and runs it, over a small table: for an owner (exact, and rows)
// and for an analyst (differentially private, over bounded columns).
#include <array>
#include <cstdlib>

#include "common/lake_abi/messages.h"
#include "enclave/lake/query.h"
#include "enclave/lake/table.h"
#include "fuzz/fuzz.h"

namespace {

using Row = std::array<const char*, 5>;
using Rows = std::array<Row, 6>;
constexpr Rows kRows = {{{"30", "F", "120", "2024-01-01", "a"},
                         {"40", "M", "130.5", "2024-01-02", "b"},
                         {"50", "F", "", "2024-01-03", ""},
                         {"60", "M", "150", "2024-01-04", "a"},
                         {"", "F", "110", "2024-01-05", "c"},
                         {"-7", "X", "-1e300", "1970-01-01", "d"}}};

medstream::lake::Table Make(const char* schema, const Rows& rows) {
  medstream::lake::Table t(medstream::lake::ParseSchema(schema).value());
  for (const Row& r : rows) {
    if (!t.AppendRow({r[0], r[1], r[2], r[3], r[4]})) std::abort();
  }
  return t;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace medstream;
  static const lake::Table table =
      Make("age:integer,sex:categorical,bp:real,day:date,note:text", kRows);
  // The same columns with bounds, for the differentially private aggregates an analyst gets
  // (bp's bounds span every double, and rows sit on them: differences and squares of them must
  // not overflow).
  static const lake::Table bounded = [] {
    Rows rows = kRows;
    rows[1][2] = "1.7e308";
    rows[3][0] = "120";
    rows[3][2] = "-1.7e308";
    return Make("age:integer:0..120,sex:categorical,bp:real:-1.7e308..1.7e308,day:date,note:text",
                rows);
  }();
  auto q = lake::ParseQuery(fuzz::Text(data, size));
  if (!q) return 0;
  for (bool rows : {false, true}) {
    (void)lake::Execute(*q, table, {.min_group = rows ? 1u : 3u, .allow_rows = rows});
  }
  uint64_t word = 88172645463325252ull;  // xorshift64: the same noise for the same input
  for (double eps : {lake::kMinQueryEpsilon, 1.0, lake::kMaxQueryEpsilon}) {
    const lake::DpOptions dp{.epsilon = eps, .delta = 1e-6, .rng = [&word] {
                               word ^= word << 13;
                               word ^= word >> 7;
                               return word ^= word << 17;
                             }};
    (void)lake::Execute(*q, bounded, {.min_group = 1, .dp = &dp});
  }
  return 0;
}
