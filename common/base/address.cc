#include "common/base/address.h"

#include <algorithm>
#include <charconv>

namespace medstream {

Result<HostPort> ParseHostPort(std::string_view text, std::string_view what,
                               const HostPortOptions& options) {
  auto bad = [&](std::string_view why) {
    std::string shown(text.substr(0, 80));
    std::replace_if(
        shown.begin(), shown.end(), [](char c) { return c < 0x20 || c == 0x7f; }, '?');
    return InvalidArgument(std::string(what) + " '" + shown + "': " + std::string(why) +
                           " (expected HOST:PORT" +
                           (options.allow_zero ? ", port 0 for any free port)" : ")"));
  };
  const size_t colon = text.rfind(':');
  HostPort out;
  std::string_view host = text;
  if (colon == std::string_view::npos) {
    if (options.default_port < 0) return bad("no port");
    out.port = options.default_port;
  } else {
    host = text.substr(0, colon);
    const std::string_view digits = text.substr(colon + 1);
    int port = -1;
    const auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), port);
    if (digits.empty() || ec != std::errc() || end != digits.data() + digits.size() ||
        !std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; })) {
      return bad("the port is not a number");
    }
    if (port > 65535 || (port == 0 && !options.allow_zero)) return bad("the port is out of range");
    out.port = port;
  }
  if (host.empty() || host.size() > 253 ||
      !std::all_of(host.begin(), host.end(), [](char c) { return c > 0x20 && c < 0x7f; })) {
    return bad("bad host");
  }
  out.host = std::string(host);
  return out;
}

}  // namespace medstream
