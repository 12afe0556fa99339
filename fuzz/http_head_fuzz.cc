// The HTTP server's request head (adapters/http/request_head.h), as the server hands it over: at
// most kMaxHeadBytes, ending with the empty line. An accepted head has a token method, a path
// that starts with '/' and holds no control character, at most kMaxFields fields with lower-case
// names; decoding is whole or nothing.
#include "adapters/http/request_head.h"
#include "fuzz/fuzz.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace medstream;
  const std::string_view text = fuzz::Text(data, size);
  auto r = http::ParseRequestHead(text);
  if (r) {
    MEDSTREAM_FUZZ_CHECK(text.size() <= http::kMaxHeadBytes && text.ends_with("\r\n\r\n"));
    MEDSTREAM_FUZZ_CHECK(!r->method.empty() && r->path.starts_with('/'));
    for (const char c : r->path) MEDSTREAM_FUZZ_CHECK(static_cast<unsigned char>(c) >= 0x20);
    MEDSTREAM_FUZZ_CHECK(r->fields.size() <= http::kMaxFields);
    for (const auto& [name, value] : r->fields) {
      for (const char c : name) MEDSTREAM_FUZZ_CHECK(!(c >= 'A' && c <= 'Z'));
    }
  }
  // Decoding on its own: what it gives back holds no control character.
  for (const bool plus : {false, true}) {
    if (auto d = http::PercentDecode(text, plus)) {
      MEDSTREAM_FUZZ_CHECK(d->size() <= text.size());
      for (const char c : *d) {
        const auto u = static_cast<unsigned char>(c);
        MEDSTREAM_FUZZ_CHECK(u >= 0x20 && u != 0x7f);
      }
    }
  }
  return 0;
}
