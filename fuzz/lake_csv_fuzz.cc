// CSV records as the lake enclave ingests them: records split by lake::NextRecord, rows checked
// against a schema (and a schema inferred from the same records, as the client does).
#include "common/lake_abi/csv.h"
#include "enclave/lake/table.h"
#include "fuzz/fuzz.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace medstream;
  const std::string_view text = fuzz::Text(data, size);
  static const lake::Schema schema =
      lake::ParseSchema("id:text,day:date,age:integer,sex:categorical,bp:real").value();
  lake::Table table(schema);
  std::vector<std::string_view> fields;
  std::vector<std::string> scratch;
  bool unterminated = false;
  size_t pos = 0;
  std::vector<std::vector<std::string>> sample;
  std::vector<std::string> header;
  while (lake::NextRecord(text, &pos, &fields, &scratch, &unterminated)) {
    MEDSTREAM_FUZZ_CHECK(pos <= text.size());
    if (header.empty()) header.assign(fields.begin(), fields.end());
    if (sample.size() < 50) sample.emplace_back(fields.begin(), fields.end());
    if (!unterminated) (void)table.AppendRow(fields);
  }
  MEDSTREAM_FUZZ_CHECK(lake::CompleteRecordsEnd(text) <= text.size());
  if (!header.empty()) (void)lake::InferSchema(header, sample);
  (void)lake::ParseSchema(text);
  return 0;
}
