#include "enclave/lake/query.h"
#include "enclave/lake/sql_ast.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <map>
#include <unordered_map>

#include <fmt/format.h>

namespace medstream::lake {

namespace {

// ---- tokens ----

enum class Tok { kIdent, kNumber, kString, kSymbol, kEnd };

struct Token {
  Tok kind;
  std::string text;  // identifiers upper-cased in `upper`
  std::string upper;
  double number = 0;
  size_t pos = 0;  // 1-based
};

Result<std::vector<Token>> Lex(std::string_view s) {
  std::vector<Token> out;
  size_t i = 0;
  auto err = [&](size_t at, const std::string& m) {
    return InvalidArgument(fmt::format("SQL error at position {}: {}", at + 1, m));
  };
  while (i < s.size()) {
    const char c = s[i];
    if (std::isspace(static_cast<unsigned char>(c))) {
      ++i;
      continue;
    }
    Token t;
    t.pos = i + 1;
    if (std::isalpha(static_cast<unsigned char>(c)) || c == '_') {
      size_t j = i;
      while (j < s.size() && (std::isalnum(static_cast<unsigned char>(s[j])) || s[j] == '_')) ++j;
      t.kind = Tok::kIdent;
      t.text = s.substr(i, j - i);
      i = j;
    } else if (c == '"') {  // quoted identifier
      const size_t end = s.find('"', i + 1);
      if (end == std::string_view::npos) return err(i, "unterminated quoted name");
      t.kind = Tok::kIdent;
      t.text = s.substr(i + 1, end - i - 1);
      i = end + 1;
    } else if (std::isdigit(static_cast<unsigned char>(c)) ||
               (c == '.' && i + 1 < s.size() &&
                std::isdigit(static_cast<unsigned char>(s[i + 1])))) {
      size_t j = i;
      while (j < s.size() &&
             (std::isalnum(static_cast<unsigned char>(s[j])) || s[j] == '.' ||
              ((s[j] == '-' || s[j] == '+') && (s[j - 1] == 'e' || s[j - 1] == 'E'))))
        ++j;
      auto [p, ec] = std::from_chars(s.data() + i, s.data() + j, t.number);
      if (ec != std::errc() || p != s.data() + j)
        return err(i, "'" + std::string(s.substr(i, j - i)) + "' is not a number");
      t.kind = Tok::kNumber;
      t.text = s.substr(i, j - i);
      i = j;
    } else if (c == '\'') {
      size_t j = i + 1;
      std::string v;
      for (;;) {
        if (j >= s.size()) return err(i, "unterminated string");
        if (s[j] == '\'') {
          if (j + 1 < s.size() && s[j + 1] == '\'') {
            v += '\'';
            j += 2;
            continue;
          }
          break;
        }
        v += s[j++];
      }
      t.kind = Tok::kString;
      t.text = v;
      i = j + 1;
    } else {
      static constexpr std::string_view kTwo[] = {"<=", ">=", "<>", "!="};
      t.kind = Tok::kSymbol;
      bool two = false;
      for (auto op : kTwo) {
        if (s.substr(i, 2) == op) {
          t.text = op;
          two = true;
        }
      }
      if (!two) {
        if (std::string_view("(),*=<>;-").find(c) == std::string_view::npos)
          return err(i, fmt::format("unexpected character '{}'", c));
        t.text = std::string(1, c);
      }
      i += t.text.size();
    }
    t.upper = t.text;
    if (t.kind == Tok::kIdent)
      for (char& ch : t.upper) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
    out.push_back(std::move(t));
  }
  out.push_back({Tok::kEnd, "", "", 0, s.size() + 1});
  return out;
}

bool IsKeyword(const std::string& upper) {
  static const char* kWords[] = {"SELECT", "FROM", "WHERE",   "GROUP", "BY",   "AND", "OR",
                                 "NOT",    "IN",   "BETWEEN", "IS",    "NULL", "AS"};
  return std::any_of(std::begin(kWords), std::end(kWords),
                     [&](const char* w) { return upper == w; });
}

class Parser {
 public:
  explicit Parser(std::vector<Token> t) : t_(std::move(t)) {}

  // The parser and everything that walks the tree it builds (evaluation, destruction) recurse
  // once per nesting level or condition, so both are bounded: a query is data from an analyst.
  static constexpr int kMaxNesting = 32;        // parentheses and NOT, nested
  static constexpr int kMaxConditions = 1024;   // predicates, AND, OR and NOT nodes in all
  static constexpr size_t kMaxInValues = 1024;  // each costs a comparison per row
  static constexpr size_t kMaxItems = 64;       // SELECT items, each an aggregate over the rows
  static constexpr size_t kMaxGroupBy = 16;

  Result<Query> Parse() {
    Query q;
    if (auto s = Expect("SELECT"); !s) return std::unexpected(s.error());
    for (;;) {
      MEDSTREAM_TRY(item, Item());
      q.items.push_back(std::move(item));
      if (q.items.size() > kMaxItems) {
        return ResourceExhausted(fmt::format("SQL error at position {}: more than {} SELECT items",
                                             Peek().pos, kMaxItems));
      }
      if (!Accept(",")) break;
    }
    if (auto s = Expect("FROM"); !s) return std::unexpected(s.error());
    MEDSTREAM_TRY(name, Name("a dataset name"));
    q.dataset = name;
    if (AcceptWord("WHERE")) {
      MEDSTREAM_TRY(e, Or());
      q.where = e;
    }
    if (AcceptWord("GROUP")) {
      if (auto s = Expect("BY"); !s) return std::unexpected(s.error());
      for (;;) {
        MEDSTREAM_TRY(col, Name("a column to group by"));
        q.group_by.push_back(col);
        if (q.group_by.size() > kMaxGroupBy) {
          return ResourceExhausted(fmt::format(
              "SQL error at position {}: more than {} GROUP BY columns", Peek().pos, kMaxGroupBy));
        }
        if (!Accept(",")) break;
      }
    }
    Accept(";");
    if (Peek().kind != Tok::kEnd) return Error("the end of the query");
    return q;
  }

 private:
  const Token& Peek() const { return t_[i_]; }
  const Token& Next() { return t_[i_ < t_.size() - 1 ? i_++ : i_]; }
  std::unexpected<medstream::Error> Error(const std::string& expected) const {
    const Token& t = Peek();
    const std::string got = t.kind == Tok::kEnd ? "the end of the query" : "'" + t.text + "'";
    return InvalidArgument(
        fmt::format("SQL error at position {}: expected {}, found {}", t.pos, expected, got));
  }
  bool Accept(std::string_view sym) {
    if (Peek().kind == Tok::kSymbol && Peek().text == sym) {
      ++i_;
      return true;
    }
    return false;
  }
  bool AcceptWord(std::string_view w) {
    if (Peek().kind == Tok::kIdent && Peek().upper == w) {
      ++i_;
      return true;
    }
    return false;
  }
  Status Expect(std::string_view w) {
    if (AcceptWord(w) || Accept(w)) return {};
    return Error(std::string(w));
  }
  Result<std::string> Name(const std::string& what) {
    if (Peek().kind != Tok::kIdent || IsKeyword(Peek().upper)) return Error(what);
    return Next().text;
  }

  Result<SelectItem> Item() {
    SelectItem item;
    const size_t start = i_;
    if (Accept("*")) {
      item.column = "*";
    } else {
      if (Peek().kind != Tok::kIdent || IsKeyword(Peek().upper))
        return Error(
            "a column or an aggregate (COUNT, SUM, AVG, MIN, MAX, STDDEV, MEDIAN, "
            "PERCENTILE)");
      static const std::map<std::string, Agg> kAggs = {
          {"COUNT", Agg::kCount},   {"SUM", Agg::kSum},
          {"AVG", Agg::kAvg},       {"MIN", Agg::kMin},
          {"MAX", Agg::kMax},       {"STDDEV", Agg::kStddev},
          {"MEDIAN", Agg::kMedian}, {"PERCENTILE", Agg::kPercentile}};
      auto agg = kAggs.find(Peek().upper);
      if (agg != kAggs.end() && t_[i_ + 1].kind == Tok::kSymbol && t_[i_ + 1].text == "(") {
        i_ += 2;
        item.agg = agg->second;
        if (item.agg == Agg::kCount && Accept("*")) {
          item.agg = Agg::kCountStar;
        } else {
          MEDSTREAM_TRY(col, Name("a column name"));
          item.column = col;
        }
        if (item.agg == Agg::kPercentile) {
          if (!Accept(",")) return Error("',' and a percentile (0 to 100)");
          if (Peek().kind != Tok::kNumber) return Error("a percentile (0 to 100)");
          item.percentile = Next().number;
          if (item.percentile < 0 || item.percentile > 100)
            return InvalidArgument(
                fmt::format("SQL error at position {}: a percentile is 0 to 100", t_[i_ - 1].pos));
        }
        if (!Accept(")")) return Error("')'");
      } else {
        item.column = Next().text;
      }
    }
    for (size_t k = start; k < i_; ++k) item.label += t_[k].text + (t_[k].text == "," ? " " : "");
    if (AcceptWord("AS")) {
      MEDSTREAM_TRY(alias, Name("an alias"));
      item.label = alias;
    }
    return item;
  }

  Result<std::shared_ptr<Expr>> Or() {
    MEDSTREAM_TRY(left, And());
    while (AcceptWord("OR")) {
      MEDSTREAM_TRY(right, And());
      MEDSTREAM_TRY(e, NewNode());
      e->kind = Expr::kOr;
      e->a = left;
      e->b = right;
      left = e;
    }
    return left;
  }
  Result<std::shared_ptr<Expr>> And() {
    MEDSTREAM_TRY(left, Not());
    while (AcceptWord("AND")) {
      MEDSTREAM_TRY(right, Not());
      MEDSTREAM_TRY(e, NewNode());
      e->kind = Expr::kAnd;
      e->a = left;
      e->b = right;
      left = e;
    }
    return left;
  }
  Result<std::shared_ptr<Expr>> Not() {
    if (AcceptWord("NOT")) {
      MEDSTREAM_TRY(d, Enter());
      MEDSTREAM_TRY(inner, Not());
      Leave(d);
      MEDSTREAM_TRY(e, NewNode());
      e->kind = Expr::kNot;
      e->a = inner;
      return e;
    }
    return Predicate();
  }
  // One level deeper (a parenthesis or NOT), refused past kMaxNesting.
  Result<int> Enter() {
    if (++depth_ > kMaxNesting) {
      return ResourceExhausted(fmt::format(
          "SQL error at position {}: nested deeper than {} levels (parentheses and NOT)",
          t_[i_ > 0 ? i_ - 1 : 0].pos, kMaxNesting));
    }
    return depth_;
  }
  void Leave(int) { --depth_; }
  Result<std::shared_ptr<Expr>> NewNode() {
    if (++nodes_ > kMaxConditions) {
      return ResourceExhausted(
          fmt::format("SQL error at position {}: more than {} conditions in the WHERE clause",
                      Peek().pos, kMaxConditions));
    }
    return std::make_shared<Expr>();
  }
  Result<Literal> Value() {
    Literal l;
    l.pos = Peek().pos;
    const bool minus = Accept("-");
    if (Peek().kind == Tok::kNumber) {
      l.number = (minus ? -1 : 1) * Next().number;
    } else if (!minus && Peek().kind == Tok::kString) {
      l.is_string = true;
      l.text = Next().text;
    } else if (!minus && AcceptWord("NULL")) {
      l.is_null = true;
    } else {
      return Error("a number or a 'string'");
    }
    return l;
  }
  Result<std::shared_ptr<Expr>> Predicate() {
    if (Accept("(")) {
      MEDSTREAM_TRY(d, Enter());
      MEDSTREAM_TRY(e, Or());
      Leave(d);
      if (!Accept(")")) return Error("')'");
      return e;
    }
    MEDSTREAM_TRY(e, NewNode());
    e->column_pos = Peek().pos;
    MEDSTREAM_TRY(col, Name("a column name"));
    e->column = col;
    if (AcceptWord("IS")) {
      e->kind = Expr::kIsNull;
      e->negated = AcceptWord("NOT");
      if (!AcceptWord("NULL")) return Error("NULL");
      return e;
    }
    e->negated = AcceptWord("NOT");
    if (AcceptWord("IN")) {
      e->kind = Expr::kIn;
      if (!Accept("(")) return Error("'(' and a list of values");
      for (;;) {
        MEDSTREAM_TRY(v, Value());
        e->values.push_back(v);
        if (e->values.size() > kMaxInValues) {
          return ResourceExhausted(fmt::format(
              "SQL error at position {}: more than {} values in one IN list", v.pos, kMaxInValues));
        }
        if (!Accept(",")) break;
      }
      if (!Accept(")")) return Error("')'");
      return e;
    }
    if (AcceptWord("BETWEEN")) {
      e->kind = Expr::kBetween;
      MEDSTREAM_TRY(lo, Value());
      if (!AcceptWord("AND")) return Error("AND");
      MEDSTREAM_TRY(hi, Value());
      e->values = {lo, hi};
      return e;
    }
    if (e->negated) return Error("IN or BETWEEN after NOT");
    static const char* kOps[] = {"=", "!=", "<>", "<", "<=", ">", ">="};
    for (const char* op : kOps) {
      if (Accept(op)) {
        e->op = op;
        MEDSTREAM_TRY(v, Value());
        e->values = {v};
        return e;
      }
    }
    return Error("a comparison (=, !=, <, <=, >, >=), IN, BETWEEN or IS NULL");
  }

  std::vector<Token> t_;
  size_t i_ = 0;
  int depth_ = 0;
  int nodes_ = 0;
};

}  // namespace

bool Query::Aggregates() const {
  return std::any_of(items.begin(), items.end(),
                     [](const SelectItem& i) { return i.agg != Agg::kNone; }) ||
         !group_by.empty();
}

Result<Query> ParseQuery(std::string_view sql) {
  if (sql.size() > 64 * 1024) return InvalidArgument("query longer than 64 KiB");
  MEDSTREAM_TRY(tokens, Lex(sql));
  return Parser(std::move(tokens)).Parse();
}

}  // namespace medstream::lake
