#include "common/lake_abi/csv.h"

#include <charconv>
#include <cmath>
#include <set>
#include <utility>

namespace medstream::lake {

bool NextRecord(std::string_view text, size_t* pos, std::vector<std::string_view>* fields,
                std::vector<std::string>* scratch, bool* unterminated) {
  fields->clear();
  scratch->clear();
  *unterminated = false;
  size_t i = *pos;
  if (i >= text.size()) return false;
  // Fields with escaped quotes live in `scratch`, which may reallocate as later fields are added
  // (moving short strings and so invalidating views into them), so their views are made only
  // once the record is complete: (field, scratch) index pairs until then.
  std::vector<std::pair<size_t, size_t>> unescaped;
  auto complete = [&] {
    for (const auto& [field, k] : unescaped) (*fields)[field] = (*scratch)[k];
    return true;
  };
  for (;;) {
    if (i < text.size() && text[i] == '"') {
      std::string* buf = nullptr;
      size_t j = i + 1, start = j;
      for (;;) {
        if (j >= text.size()) {
          *unterminated = true;
          fields->push_back(text.substr(start));
          *pos = text.size();
          return complete();
        }
        if (text[j] == '"') {
          if (j + 1 < text.size() && text[j + 1] == '"') {
            if (!buf) {
              scratch->emplace_back(text.substr(start, j - start));
              buf = &scratch->back();
            } else {
              buf->append(text.substr(start, j - start));
            }
            buf->push_back('"');
            j += 2;
            start = j;
            continue;
          }
          break;
        }
        ++j;
      }
      if (buf) {
        buf->append(text.substr(start, j - start));
        unescaped.emplace_back(fields->size(), scratch->size() - 1);
        fields->emplace_back();
      } else {
        fields->push_back(text.substr(start, j - start));
      }
      i = j + 1;
      while (i < text.size() && text[i] != ',' && text[i] != '\n') ++i;  // junk after a quote
    } else {
      size_t j = i;
      while (j < text.size() && text[j] != ',' && text[j] != '\n') ++j;
      std::string_view f = text.substr(i, j - i);
      if (!f.empty() && f.back() == '\r') f.remove_suffix(1);
      fields->push_back(f);
      i = j;
    }
    if (i >= text.size() || text[i] == '\n') {
      *pos = i < text.size() ? i + 1 : i;
      return complete();
    }
    ++i;  // the comma
  }
}

size_t CompleteRecordsEnd(std::string_view text) {
  bool quoted = false;
  size_t end = 0;
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '"') quoted = !quoted;
    if (text[i] == '\n' && !quoted) end = i + 1;
  }
  return end;
}

Schema InferSchema(const std::vector<std::string>& header,
                   const std::vector<std::vector<std::string>>& rows) {
  Schema s;
  for (size_t c = 0; c < header.size(); ++c) {
    bool integer = true, real = true, date = true;
    std::set<std::string> distinct;
    size_t present = 0;
    for (const auto& row : rows) {
      if (c >= row.size() || row[c].empty()) continue;
      const std::string& v = row[c];
      ++present;
      int64_t i;
      double d;
      auto [pi, ei] = std::from_chars(v.data(), v.data() + v.size(), i);
      integer = integer && ei == std::errc() && pi == v.data() + v.size();
      auto [pd, ed] = std::from_chars(v.data(), v.data() + v.size(), d);
      real = real && ed == std::errc() && pd == v.data() + v.size() && std::isfinite(d);
      date = date && ParseDate(v).has_value();
      if (distinct.size() <= 64) distinct.insert(v);
    }
    Type t = Type::kText;
    if (present == 0) {
      t = Type::kText;
    } else if (integer) {
      t = Type::kInteger;
    } else if (real) {
      t = Type::kReal;
    } else if (date) {
      t = Type::kDate;
    } else if (distinct.size() <= 64 && distinct.size() * 4 <= present) {
      t = Type::kCategorical;
    }
    s.columns.push_back({header[c], t});
  }
  return s;
}

}  // namespace medstream::lake
