// Helpers shared by the libFuzzer targets in this folder (see fuzz/README.md).
//
// Every target feeds bytes from outside a trust or process boundary to one parser, exactly as the
// production code calls it, and checks the invariants the parser promises (a refusal is fine; a
// crash, a hang, a leak, undefined behaviour or a broken invariant is a finding). Targets keep no
// state between inputs, so every finding reproduces from its input file alone.
#pragma once

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <span>
#include <string_view>

namespace medstream::fuzz {

inline std::span<const uint8_t> Bytes(const uint8_t* data, size_t size) {
  return {data, size};
}
inline std::string_view Text(const uint8_t* data, size_t size) {
  return {reinterpret_cast<const char*>(data), size};
}

// An invariant the code under test promises: a violation is a finding, like a crash.
#define MEDSTREAM_FUZZ_CHECK(cond)                                                        \
  do {                                                                                    \
    if (!(cond)) {                                                                        \
      std::fprintf(stderr, "%s:%d: invariant violated: %s\n", __FILE__, __LINE__, #cond); \
      std::abort();                                                                       \
    }                                                                                     \
  } while (0)

}  // namespace medstream::fuzz
