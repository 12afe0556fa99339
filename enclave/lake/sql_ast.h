// lake/sql_ast: the parsed form of a WHERE condition, shared by the parser (sql_parser.cc) and
// the evaluator (query.cc). Internal to the lake module.
#pragma once

#include <memory>
#include <string>
#include <vector>

namespace medstream::lake {

struct Literal {
  bool is_string = false;
  bool is_null = false;
  double number = 0;
  std::string text;
  size_t pos = 0;
};

struct Expr {
  enum Kind { kAnd, kOr, kNot, kCmp, kIn, kBetween, kIsNull } kind = kCmp;
  std::shared_ptr<Expr> a, b;
  std::string column;  // left side: a column
  size_t column_pos = 0;
  std::string op;
  std::vector<Literal> values;  // right side(s)
  bool negated = false;
};

}  // namespace medstream::lake
