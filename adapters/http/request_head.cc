#include "adapters/http/request_head.h"

#include <algorithm>

namespace medstream::http {

namespace {

bool IsTokenChar(char c) {
  // RFC 9110 tchar.
  if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) return true;
  return std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

bool IsToken(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), IsTokenChar);
}

// A field value: visible characters, spaces and tabs, and obs-text (bytes past 0x7f).
bool IsFieldValue(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) {
    const auto u = static_cast<unsigned char>(c);
    return u == '\t' || (u >= 0x20 && u != 0x7f);
  });
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

}  // namespace

std::string RequestHead::Field(std::string_view lower_name) const {
  for (const auto& [name, value] : fields) {
    if (name == lower_name) return value;
  }
  return "";
}

std::optional<std::string> PercentDecode(std::string_view text, bool plus_is_space) {
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (c == '%') {
      if (i + 2 >= text.size()) return std::nullopt;
      const int hi = HexValue(text[i + 1]);
      const int lo = HexValue(text[i + 2]);
      if (hi < 0 || lo < 0) return std::nullopt;
      c = static_cast<char>(hi * 16 + lo);
      i += 2;
    } else if (c == '+' && plus_is_space) {
      c = ' ';
    }
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7f) return std::nullopt;
    out.push_back(c);
  }
  return out;
}

Result<RequestHead> ParseRequestHead(std::string_view head) {
  if (head.size() > kMaxHeadBytes) return InvalidArgument("request head too large");
  if (!head.ends_with("\r\n\r\n"))
    return InvalidArgument("request head not ended by an empty line");
  head.remove_suffix(2);  // the empty line; every line below ends with CRLF
  RequestHead out;
  bool first = true;
  while (!head.empty()) {
    const size_t end = head.find("\r\n");
    if (end == std::string_view::npos) return InvalidArgument("a line not ended by CRLF");
    const std::string_view line = head.substr(0, end);
    head.remove_prefix(end + 2);
    if (line.find_first_of("\r\n") != std::string_view::npos) {
      return InvalidArgument("a bare CR or LF in the request head");
    }
    if (first) {
      first = false;
      // METHOD SP TARGET SP HTTP/1.x
      const size_t a = line.find(' ');
      const size_t b = a == std::string_view::npos ? a : line.find(' ', a + 1);
      if (b == std::string_view::npos || line.find(' ', b + 1) != std::string_view::npos) {
        return InvalidArgument("the request line is not METHOD TARGET VERSION");
      }
      const std::string_view method = line.substr(0, a);
      const std::string_view target = line.substr(a + 1, b - a - 1);
      const std::string_view version = line.substr(b + 1);
      if (!IsToken(method)) return InvalidArgument("the method is not a token");
      if (version != "HTTP/1.1" && version != "HTTP/1.0") {
        return InvalidArgument("not HTTP/1.0 or HTTP/1.1");
      }
      if (!target.starts_with('/') || !std::all_of(target.begin(), target.end(), [](char c) {
            const auto u = static_cast<unsigned char>(c);
            return u > 0x20 && u < 0x7f;
          })) {
        return InvalidArgument("the target is not an absolute path");
      }
      const size_t q = target.find('?');
      auto path = PercentDecode(target.substr(0, q), false);
      if (!path) return InvalidArgument("a bad escape in the path");
      out.method = std::string(method);
      out.path = std::move(*path);
      if (q != std::string_view::npos) {
        std::string_view query = target.substr(q + 1);
        while (!query.empty()) {
          const size_t amp = query.find('&');
          const std::string_view pair = query.substr(0, amp);
          query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
          if (pair.empty()) continue;
          const size_t eq = pair.find('=');
          auto key = PercentDecode(pair.substr(0, eq), true);
          auto value = PercentDecode(
              eq == std::string_view::npos ? std::string_view() : pair.substr(eq + 1), true);
          if (!key || !value) return InvalidArgument("a bad escape in the query");
          out.params.emplace(std::move(*key), std::move(*value));  // the first wins
        }
      }
      continue;
    }
    if (line.empty()) return InvalidArgument("an empty line inside the head");
    if (line.front() == ' ' || line.front() == '\t') {
      return InvalidArgument("obsolete line folding");
    }
    const size_t colon = line.find(':');
    if (colon == std::string_view::npos || !IsToken(line.substr(0, colon))) {
      return InvalidArgument("a header field is not NAME: VALUE");
    }
    const std::string_view value = Trim(line.substr(colon + 1));
    if (!IsFieldValue(value)) return InvalidArgument("a control character in a field value");
    if (out.fields.size() == kMaxFields) return InvalidArgument("too many header fields");
    out.fields.emplace_back(Lower(line.substr(0, colon)), std::string(value));
  }
  if (first) return InvalidArgument("no request line");
  return out;
}

}  // namespace medstream::http
