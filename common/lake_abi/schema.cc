#include "common/lake_abi/schema.h"

#include <algorithm>
#include <charconv>
#include <cmath>

#include <fmt/format.h>

namespace medstream::lake {

namespace {

bool EqualsNoCase(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) ==
                  std::tolower(static_cast<unsigned char>(y));
         });
}

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r'))
    s.remove_suffix(1);
  return s;
}

// Howard Hinnant's days_from_civil.
int64_t DaysFromCivil(int64_t y, unsigned m, unsigned d) {
  y -= m <= 2;
  const int64_t era = (y >= 0 ? y : y - 399) / 400;
  const unsigned yoe = static_cast<unsigned>(y - era * 400);
  const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + static_cast<int64_t>(doe) - 719468;
}

}  // namespace

std::string_view TypeName(Type t) {
  switch (t) {
    case Type::kInteger:
      return "integer";
    case Type::kReal:
      return "real";
    case Type::kText:
      return "text";
    case Type::kDate:
      return "date";
    case Type::kCategorical:
      return "categorical";
  }
  return "?";
}

Result<Type> ParseType(std::string_view name) {
  for (Type t : {Type::kInteger, Type::kReal, Type::kText, Type::kDate, Type::kCategorical}) {
    if (EqualsNoCase(name, TypeName(t))) return t;
  }
  return InvalidArgument("unknown type '" + std::string(name) +
                         "': integer, real, text, date or categorical");
}

bool IsNumeric(Type t) {
  return t == Type::kInteger || t == Type::kReal;
}

int Schema::Find(std::string_view name) const {
  for (size_t i = 0; i < columns.size(); ++i) {
    if (EqualsNoCase(columns[i].name, name)) return static_cast<int>(i);
  }
  return -1;
}

std::string Schema::Describe() const {
  std::string out;
  for (const Column& c : columns) {
    if (!out.empty()) out += ",";
    out += c.name + ":" + std::string(TypeName(c.type));
    if (c.identifier) out += ":id";
    if (c.bounded()) out += fmt::format(":{}..{}", c.lo, c.hi);
  }
  return out;
}

// Schemas with attributes set the count's top bit and carry flags and bounds per column; those
// without are written as before, so older manifests read unchanged.
constexpr uint32_t kSchemaAttributes = 0x80000000u;

void Schema::Encode(ByteWriter* w) const {
  const bool attributes = std::any_of(columns.begin(), columns.end(), [](const Column& c) {
    return c.identifier || !std::isnan(c.lo) || !std::isnan(c.hi);
  });
  w->U32(static_cast<uint32_t>(columns.size()) | (attributes ? kSchemaAttributes : 0));
  for (const Column& c : columns) {
    w->String(c.name);
    w->U8(static_cast<uint8_t>(c.type));
    if (attributes) {
      w->U8(c.identifier ? 1 : 0);
      w->F64(c.lo);
      w->F64(c.hi);
    }
  }
}

Result<Schema> Schema::Decode(ByteReader* r) {
  MEDSTREAM_TRY(word, r->U32("column count"));
  const bool attributes = (word & kSchemaAttributes) != 0;
  const uint32_t n = word & ~kSchemaAttributes;
  if (n == 0 || n > 1024) return Corrupt("a schema has 1 to 1024 columns");
  Schema s;
  for (uint32_t i = 0; i < n; ++i) {
    MEDSTREAM_TRY(name, r->String("column name", 256));
    MEDSTREAM_TRY(type, r->U8("column type"));
    if (type < 1 || type > 5) return Corrupt("bad column type");
    Column c{name, static_cast<Type>(type)};
    if (attributes) {
      MEDSTREAM_TRY(flags, r->U8("column flags"));
      MEDSTREAM_TRY(lo, r->F64("column lower bound"));
      MEDSTREAM_TRY(hi, r->F64("column upper bound"));
      if (flags > 1 || std::isinf(lo) || std::isinf(hi) || lo > hi ||
          std::isnan(lo) != std::isnan(hi)) {
        return Corrupt("bad column attributes");
      }
      c.identifier = flags == 1;
      c.lo = lo;
      c.hi = hi;
    }
    s.columns.push_back(std::move(c));
  }
  return s;
}

namespace {

// One attribute of a column: "id" or "LO..HI".
Status ApplyAttribute(Column* c, std::string_view a) {
  if (EqualsNoCase(a, "id")) {
    c->identifier = true;
    return {};
  }
  const size_t dots = a.find("..");
  double lo = 0, hi = 0;
  auto number = [](std::string_view t, double* v) {
    const auto [end, ec] = std::from_chars(t.data(), t.data() + t.size(), *v);
    return ec == std::errc() && end == t.data() + t.size() && std::isfinite(*v);
  };
  if (dots == std::string_view::npos || !number(Trim(a.substr(0, dots)), &lo) ||
      !number(Trim(a.substr(dots + 2)), &hi) || lo > hi) {
    return InvalidArgument("column '" + c->name + "': attribute '" + std::string(a) +
                           "' is neither 'id' nor bounds LO..HI (LO <= HI, finite)");
  }
  if (!IsNumeric(c->type)) {
    return InvalidArgument("column '" + c->name + "' is " + std::string(TypeName(c->type)) +
                           ": only integer and real columns take bounds");
  }
  c->lo = lo;
  c->hi = hi;
  return {};
}

}  // namespace

Status AnnotateSchema(Schema* schema, std::string_view attributes) {
  size_t start = 0;
  while (start <= attributes.size()) {
    const size_t comma = std::min(attributes.find(',', start), attributes.size());
    const std::string_view item = Trim(attributes.substr(start, comma - start));
    start = comma + 1;
    if (item.empty()) continue;
    const size_t colon = item.find(':');
    if (colon == std::string_view::npos) {
      return InvalidArgument("attribute item '" + std::string(item) + "' is not NAME:ATTRIBUTE");
    }
    const int c = schema->Find(Trim(item.substr(0, colon)));
    if (c < 0) {
      return InvalidArgument("no column '" + std::string(Trim(item.substr(0, colon))) +
                             "' (columns: " + schema->Describe() + ")");
    }
    std::string_view rest = item.substr(colon + 1);
    for (;;) {
      const size_t next = rest.find(':');
      if (auto s = ApplyAttribute(&schema->columns[c], Trim(rest.substr(0, next))); !s) return s;
      if (next == std::string_view::npos) break;
      rest.remove_prefix(next + 1);
    }
  }
  return {};
}

Result<Schema> ParseSchema(std::string_view spec) {
  Schema s;
  size_t start = 0;
  while (start <= spec.size()) {
    const size_t comma = std::min(spec.find(',', start), spec.size());
    const std::string_view item = Trim(spec.substr(start, comma - start));
    start = comma + 1;
    if (item.empty()) continue;
    const size_t colon = item.find(':');
    if (colon == std::string_view::npos)
      return InvalidArgument("schema item '" + std::string(item) + "' is not NAME:TYPE");
    const std::string name(Trim(item.substr(0, colon)));
    std::string_view rest = item.substr(colon + 1);
    const size_t attr = rest.find(':');
    MEDSTREAM_TRY(type, ParseType(Trim(rest.substr(0, attr))));
    if (name.empty()) return InvalidArgument("schema item '" + std::string(item) + "' has no name");
    if (s.Find(name) >= 0) return InvalidArgument("column '" + name + "' declared twice");
    Column c{name, type};
    while (attr != std::string_view::npos && !rest.empty()) {
      rest.remove_prefix(rest.find(':') + 1);
      const size_t next = rest.find(':');
      if (auto st = ApplyAttribute(&c, Trim(rest.substr(0, next))); !st) {
        return std::unexpected(st.error());
      }
      if (next == std::string_view::npos) break;
    }
    s.columns.push_back(std::move(c));
  }
  if (s.columns.empty()) return InvalidArgument("empty schema");
  return s;
}

Result<int64_t> ParseDate(std::string_view s) {
  int y = 0;
  unsigned m = 0, d = 0;
  if (s.size() != 10 || s[4] != '-' || s[7] != '-') return InvalidArgument("not a YYYY-MM-DD date");
  auto num = [&](size_t at, size_t len, auto* out) {
    return std::from_chars(s.data() + at, s.data() + at + len, *out).ptr == s.data() + at + len;
  };
  if (!num(0, 4, &y) || !num(5, 2, &m) || !num(8, 2, &d)) return InvalidArgument("not a date");
  static constexpr unsigned kDays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  const bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
  if (m < 1 || m > 12 || d < 1 || d > kDays[m - 1] + (m == 2 && leap))
    return InvalidArgument("no such date");
  return DaysFromCivil(y, m, d);
}

std::string FormatDate(int64_t z) {
  z += 719468;
  const int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  const unsigned doe = static_cast<unsigned>(z - era * 146097);
  const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  const int64_t y = static_cast<int64_t>(yoe) + era * 400;
  const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const unsigned mp = (5 * doy + 2) / 153;
  const unsigned d = doy - (153 * mp + 2) / 5 + 1;
  const unsigned m = mp < 10 ? mp + 3 : mp - 9;
  return fmt::format("{:04}-{:02}-{:02}", y + (m <= 2), m, d);
}

std::string FormatValue(const Value& v) {
  if (std::holds_alternative<std::monostate>(v)) return "NULL";
  if (const auto* s = std::get_if<std::string>(&v)) return *s;
  const double d = std::get<double>(v);
  if (std::isnan(d)) return "NULL";
  if (d == std::floor(d) && std::fabs(d) < 1e15) return fmt::format("{}", static_cast<int64_t>(d));
  return fmt::format("{:.6g}", d);
}

std::string_view TrimField(std::string_view s) {
  return Trim(s);
}

}  // namespace medstream::lake
