#include "enclave/lake/table.h"

#include <algorithm>
#include <charconv>
#include <cmath>

#include <fmt/format.h>

namespace medstream::lake {

namespace {

constexpr size_t kMaxDictionary = 1 << 24;

}  // namespace

Table::Table(Schema schema) : schema_(std::move(schema)), cols_(schema_.columns.size()) {}

uint32_t Table::Intern(Col& c, std::string_view s) {
  auto it = c.index.find(s);
  if (it != c.index.end()) return it->second;
  const auto code = static_cast<uint32_t>(c.dict.size());
  c.dict.emplace_back(s);
  c.index.emplace(std::string(s), code);
  return code;
}

uint32_t Table::CodeOf(int col, std::string_view text) const {
  const auto& idx = cols_[col].index;
  auto it = idx.find(text);
  return it == idx.end() ? kNoCode : it->second;
}

Status Table::AppendRow(const std::vector<std::string_view>& fields) {
  const size_t n = schema_.columns.size();
  if (fields.size() != n) {
    return InvalidArgument(fmt::format("{} fields, the schema has {} columns", fields.size(), n));
  }
  // Validate everything first, so a refused row changes nothing.
  double nums[1024];
  for (size_t i = 0; i < n; ++i) {
    const std::string_view f = TrimField(fields[i]);
    const Column& c = schema_.columns[i];
    nums[i] = NAN;
    if (f.empty()) continue;
    switch (c.type) {
      case Type::kInteger: {
        int64_t v = 0;
        auto [p, ec] = std::from_chars(f.data(), f.data() + f.size(), v);
        if (ec != std::errc() || p != f.data() + f.size())
          return InvalidArgument(
              fmt::format("column '{}': '{}' is not an integer", c.name, std::string(f)));
        nums[i] = static_cast<double>(v);
        break;
      }
      case Type::kReal: {
        double v = 0;
        auto [p, ec] = std::from_chars(f.data(), f.data() + f.size(), v);
        if (ec != std::errc() || p != f.data() + f.size() || !std::isfinite(v))
          return InvalidArgument(
              fmt::format("column '{}': '{}' is not a number", c.name, std::string(f)));
        nums[i] = v;
        break;
      }
      case Type::kDate: {
        auto d = ParseDate(f);
        if (!d)
          return InvalidArgument(
              fmt::format("column '{}': '{}': {}", c.name, std::string(f), d.error().message()));
        nums[i] = static_cast<double>(*d);
        break;
      }
      case Type::kText:
      case Type::kCategorical:
        if (cols_[i].dict.size() >= kMaxDictionary && CodeOf(static_cast<int>(i), f) == kNoCode)
          return InvalidArgument(fmt::format("column '{}': too many distinct values", c.name));
        break;
    }
  }
  for (size_t i = 0; i < n; ++i) {
    const Type t = schema_.columns[i].type;
    if (t == Type::kText || t == Type::kCategorical) {
      const std::string_view f = TrimField(fields[i]);
      cols_[i].codes.push_back(f.empty() ? kNull : Intern(cols_[i], f));
    } else {
      cols_[i].numbers.push_back(nums[i]);
    }
  }
  ++rows_;
  return {};
}

Value Table::Get(int col, size_t row) const {
  const Type t = schema_.columns[col].type;
  if (t == Type::kText || t == Type::kCategorical) {
    const uint32_t code = cols_[col].codes[row];
    if (code == kNull) return std::monostate{};
    return cols_[col].dict[code];
  }
  const double v = cols_[col].numbers[row];
  if (std::isnan(v)) return std::monostate{};
  if (t == Type::kDate) return FormatDate(static_cast<int64_t>(v));
  return v;
}

// Page: rows u32, then per column: numbers as f64[rows], or texts as (u32 distinct, strings,
// u32 codes[rows]) with a page-local dictionary (pages stay self-contained).
void Table::EncodeRows(size_t from, size_t to, ByteWriter* w) const {
  w->U32(static_cast<uint32_t>(to - from));
  for (size_t i = 0; i < cols_.size(); ++i) {
    const Type t = schema_.columns[i].type;
    if (t == Type::kText || t == Type::kCategorical) {
      std::unordered_map<uint32_t, uint32_t> local;
      std::vector<uint32_t> order, codes;
      codes.reserve(to - from);
      for (size_t r = from; r < to; ++r) {
        const uint32_t c = cols_[i].codes[r];
        if (c == kNull) {
          codes.push_back(kNull);
          continue;
        }
        auto [it, fresh] = local.emplace(c, static_cast<uint32_t>(order.size()));
        if (fresh) order.push_back(c);
        codes.push_back(it->second);
      }
      w->U32(static_cast<uint32_t>(order.size()));
      for (uint32_t c : order) w->String(cols_[i].dict[c]);
      w->Raw(codes.data(), codes.size() * sizeof(uint32_t));
    } else {
      w->Raw(cols_[i].numbers.data() + from, (to - from) * sizeof(double));
    }
  }
}

Status Table::AppendPage(ByteReader* r) {
  MEDSTREAM_TRY(n, r->U32("page rows"));
  std::vector<Col> staged(cols_.size());
  for (size_t i = 0; i < cols_.size(); ++i) {
    const Type t = schema_.columns[i].type;
    if (t == Type::kText || t == Type::kCategorical) {
      MEDSTREAM_TRY(distinct, r->U32("page dictionary size"));
      if (distinct > n) return Corrupt("page dictionary larger than the page");
      std::vector<std::string> words;
      for (uint32_t k = 0; k < distinct; ++k) {
        MEDSTREAM_TRY(s, r->String("page dictionary entry", 1 << 20));
        words.push_back(std::move(s));
      }
      MEDSTREAM_TRY(raw, r->Bytes(size_t{n} * sizeof(uint32_t), "page codes"));
      staged[i].codes.resize(n);
      if (!raw.empty()) std::memcpy(staged[i].codes.data(), raw.data(), raw.size());
      for (uint32_t& c : staged[i].codes) {
        if (c == kNull) continue;
        if (c >= distinct) return Corrupt("page code out of range");
        c = Intern(cols_[i], words[c]);
      }
    } else {
      MEDSTREAM_TRY(raw, r->Bytes(size_t{n} * sizeof(double), "page numbers"));
      staged[i].numbers.resize(n);
      if (!raw.empty()) std::memcpy(staged[i].numbers.data(), raw.data(), raw.size());
    }
  }
  for (size_t i = 0; i < cols_.size(); ++i) {
    auto& dst = cols_[i];
    dst.numbers.insert(dst.numbers.end(), staged[i].numbers.begin(), staged[i].numbers.end());
    dst.codes.insert(dst.codes.end(), staged[i].codes.begin(), staged[i].codes.end());
  }
  rows_ += n;
  return {};
}

}  // namespace medstream::lake
