// request_head: the parser of an HTTP/1.1 request head (the request line and the header fields,
// up to the empty line), which the server reads whole, at most kMaxHeadBytes, before it parses a
// byte of it. Strict, since every byte comes from an unauthenticated peer: CRLF line ends only,
// an origin-form target ("/path?query"), no obsolete line folding, header names that are tokens,
// at most kMaxFields fields; percent escapes must be whole and may not decode to a control
// character. Pure (no I/O); thread-safe.
#pragma once

#include <cstddef>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/base/result.h"

namespace medstream::http {

inline constexpr size_t kMaxHeadBytes = 16 * 1024;  // the request line, the fields, the CRLFs
inline constexpr size_t kMaxFields = 100;

struct RequestHead {
  std::string method;                                       // "GET"
  std::string path;                                         // decoded; starts with '/'
  std::map<std::string, std::string> params;                // the query, decoded; the first wins
  std::vector<std::pair<std::string, std::string>> fields;  // names in lower case, values trimmed
  // The first field named `lower_name`, or "".
  std::string Field(std::string_view lower_name) const;
};

// `head`: the bytes up to and including the empty line's CRLF. kInvalidArgument (a 400) for
// anything else than the grammar above, saying what.
Result<RequestHead> ParseRequestHead(std::string_view head);

// %XX decoded (and '+' as a space when `plus_is_space`, in a query); none for a broken escape
// or a decoded control character (below 0x20, or 0x7f).
std::optional<std::string> PercentDecode(std::string_view text, bool plus_is_space);

}  // namespace medstream::http
