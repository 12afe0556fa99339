#include "common/base/log_limit.h"

#include <fmt/format.h>

namespace medstream {

std::optional<uint64_t> LogLimiter::Admit(std::string_view kind, Clock::time_point now) {
  std::lock_guard lock(mu_);
  auto it = kinds_.find(kind);
  if (it == kinds_.end()) {
    // A kind never seen is said at once; past the bound, every new kind shares the "" entry.
    if (kinds_.size() >= max_kinds_) kind = {};
    it = kinds_.find(kind);
    if (it == kinds_.end()) {
      kinds_.emplace(std::string(kind), Kind{.said = now, .held = 0});
      return 0;
    }
  }
  Kind& k = it->second;
  if (now - k.said < interval_) {
    ++k.held;
    ++held_total_;
    return std::nullopt;
  }
  const uint64_t held = k.held;
  k = Kind{.said = now, .held = 0};
  return held;
}

uint64_t LogLimiter::held_back() const {
  std::lock_guard lock(mu_);
  return held_total_;
}

std::string HeldBackNote(uint64_t held) {
  if (held == 0) return {};
  return fmt::format(" ({} similar line{} held back)", held, held == 1 ? "" : "s");
}

}  // namespace medstream
