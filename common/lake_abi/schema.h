// lake_abi/schema: the types of the lake's records, shared by the owner's client (which infers
// and annotates a schema before it uploads) and the enclave (which validates every row against
// it). Pure: no I/O, no crypto. Thread-safe: free functions over values.
#pragma once

#include <cstdint>
#include <limits>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "common/base/bytes.h"
#include "common/base/result.h"

namespace medstream::lake {

enum class Type : uint8_t { kInteger = 1, kReal = 2, kText = 3, kDate = 4, kCategorical = 5 };
std::string_view TypeName(Type t);
Result<Type> ParseType(std::string_view name);
bool IsNumeric(Type t);  // integer, real (dates compare and group, but do not add up)

struct Column {
  std::string name;
  Type type = Type::kText;
  // A direct identifier (a patient id, a name): analysts may not use it anywhere in a query.
  bool identifier = false;
  // Owner-declared bounds of a numeric column: values are clamped into them before a
  // differentially private aggregate, which is what makes its sensitivity known. NaN: none.
  double lo = std::numeric_limits<double>::quiet_NaN();
  double hi = std::numeric_limits<double>::quiet_NaN();
  bool bounded() const { return lo <= hi; }  // false while either is NaN
};

struct Schema {
  std::vector<Column> columns;
  int Find(std::string_view name) const;  // -1 if absent (names compare case-insensitively)
  // "age:integer:0..120,sex:categorical,patient_id:text:id,...": the form ParseSchema reads.
  std::string Describe() const;
  void Encode(ByteWriter* w) const;
  static Result<Schema> Decode(ByteReader* r);
};
// "age:integer,sex:categorical" (the type may be omitted only by inference, not here), each item
// optionally followed by attributes: ":id" (a direct identifier) and ":LO..HI" (bounds of a
// numeric column), e.g. "patient_id:text:id,systolic_bp:integer:60..250".
Result<Schema> ParseSchema(std::string_view spec);
// Adds attributes to `schema`'s columns: "patient_id:id,systolic_bp:60..250" (no types).
Status AnnotateSchema(Schema* schema, std::string_view attributes);

// Days since 1970-01-01 of "YYYY-MM-DD", validated (month lengths, leap years).
Result<int64_t> ParseDate(std::string_view s);
std::string FormatDate(int64_t days);

// A value as queries see it: null, a number, or text.
using Value = std::variant<std::monostate, double, std::string>;

// A value as a person reads it: NULL, an integer without a decimal point, else 6 digits.
std::string FormatValue(const Value& v);

// Whitespace (space, tab, CR) trimmed from both ends of a CSV field.
std::string_view TrimField(std::string_view s);

}  // namespace medstream::lake
