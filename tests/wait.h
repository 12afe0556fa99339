// Waiting for a condition in tests, instead of sleeping for a guessed time: polls `done` every
// 10 ms until it holds or `seconds` pass, and says which. Thread-safe as `done` is.
#pragma once

#include <chrono>
#include <functional>
#include <thread>

namespace medstream::testing {

inline bool WaitFor(const std::function<bool()>& done, double seconds) {
  const auto until = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  while (!done()) {
    if (std::chrono::steady_clock::now() >= until) return done();
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return true;
}

}  // namespace medstream::testing
