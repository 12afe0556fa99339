// lake/table: typed, columnar tables of patient records, inside the enclave.
//
// A dataset has a schema (column name and type). Values are kept per column: numbers (integer,
// real, and dates as days since 1970-01-01) as doubles with NaN for a missing value; text and
// categorical values as codes into the column's dictionary. Rows are validated as they are
// appended: a row that does not fit the schema is refused with its reason and changes nothing.
// Pure: no I/O, no crypto (the lake seals the encoded pages).
#pragma once

#include <cstdint>
#include <limits>
#include <map>
#include <string>
#include <string_view>
#include <unordered_map>
#include <variant>
#include <vector>

#include "common/base/bytes.h"
#include "common/base/result.h"
#include "common/lake_abi/schema.h"

namespace medstream::lake {

class Table {
 public:
  explicit Table(Schema schema);
  const Schema& schema() const { return schema_; }
  size_t rows() const { return rows_; }

  // Appends one row from its text fields; an empty field is a missing value.
  Status AppendRow(const std::vector<std::string_view>& fields);

  // Column access for the query engine.
  const std::vector<double>& numbers(int col) const { return cols_[col].numbers; }
  const std::vector<uint32_t>& codes(int col) const { return cols_[col].codes; }
  const std::vector<std::string>& dictionary(int col) const { return cols_[col].dict; }
  // Code of `text` in a text/categorical column, or kNoCode if it never occurs.
  uint32_t CodeOf(int col, std::string_view text) const;
  Value Get(int col, size_t row) const;
  static constexpr uint32_t kNull = UINT32_MAX;
  static constexpr uint32_t kNoCode = UINT32_MAX - 1;

  // Rows [from, to) as a page: schema-independent columnar encoding.
  void EncodeRows(size_t from, size_t to, ByteWriter* w) const;
  // Appends the rows of an encoded page (validated against this table's schema).
  Status AppendPage(ByteReader* r);

 private:
  struct Col {
    std::vector<double> numbers;
    std::vector<uint32_t> codes;
    std::vector<std::string> dict;
    // Transparent: looking a field up does not copy it into a std::string.
    struct Hash {
      using is_transparent = void;
      size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
    };
    std::unordered_map<std::string, uint32_t, Hash, std::equal_to<>> index;
  };
  uint32_t Intern(Col& c, std::string_view s);
  Schema schema_;
  std::vector<Col> cols_;
  size_t rows_ = 0;
};

}  // namespace medstream::lake
