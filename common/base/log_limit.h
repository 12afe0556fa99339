// log_limit: a limit on lines that can repeat at the rate of a loop or of incoming messages (a
// full disk fails every cut, every tick and every log flush). The first line of a kind is said;
// after it, at most one each interval, which carries how many of its kind were held back since.
// Kinds are limited apart, so one failing step does not silence another. Bounded: past
// `max_kinds` kinds, the new ones share one limit. Pure (the caller passes the time); thread-safe
// (one lock), so a message callback and a main loop can share one limiter.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

namespace medstream {

class LogLimiter {
 public:
  using Clock = std::chrono::steady_clock;
  explicit LogLimiter(Clock::duration interval, size_t max_kinds = 64)
      : interval_(interval), max_kinds_(max_kinds) {}

  // Whether a line of kind `kind` may be said at `now`: nullopt if it is held back, else how many
  // lines of its kind were held back since the last one said (0 for the first).
  std::optional<uint64_t> Admit(std::string_view kind, Clock::time_point now);
  // Lines held back so far, of every kind (said in a summary at exit).
  uint64_t held_back() const;

 private:
  struct Kind {
    Clock::time_point said;
    uint64_t held = 0;
  };
  const Clock::duration interval_;
  const size_t max_kinds_;
  mutable std::mutex mu_;
  std::map<std::string, Kind, std::less<>> kinds_;
  uint64_t held_total_ = 0;
};

// " (N similar lines held back)" for N > 0, else "": the tail of a line LogLimiter admitted.
std::string HeldBackNote(uint64_t held);

}  // namespace medstream
