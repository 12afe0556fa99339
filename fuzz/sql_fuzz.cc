// SQL as the lake enclave parses and runs it for an analyst, over a small table.
#include "enclave/lake/query.h"
#include "enclave/lake/table.h"
#include "fuzz/fuzz.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace medstream;
  static const lake::Table table = [] {
    lake::Table t(
        lake::ParseSchema("age:integer,sex:categorical,bp:real,day:date,note:text").value());
    const char* rows[][5] = {
        {"30", "F", "120", "2024-01-01", "a"}, {"40", "M", "130.5", "2024-01-02", "b"},
        {"50", "F", "", "2024-01-03", ""},     {"60", "M", "150", "2024-01-04", "a"},
        {"", "F", "110", "2024-01-05", "c"},   {"-7", "X", "-1e300", "1970-01-01", "d"}};
    for (auto& r : rows) {
      if (!t.AppendRow({r[0], r[1], r[2], r[3], r[4]})) std::abort();
    }
    return t;
  }();
  auto q = lake::ParseQuery(fuzz::Text(data, size));
  if (!q) return 0;
  for (bool rows : {false, true}) {
    (void)lake::Execute(*q, table, {.min_group = rows ? 1u : 3u, .allow_rows = rows});
  }
  return 0;
}
