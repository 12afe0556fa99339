// The one way a command ends on an error, and the checks of number options (commands.h).
#include <fmt/format.h>

#include <charconv>
#include <cmath>
#include <cstdio>
#include <functional>
#include <string>
#include <utility>

#include "apps/cli/commands.h"

namespace medstream::cli {

int ExitWithError(std::string_view command, const Error& error) {
  const std::string_view words = CodeWords(error.code());
  std::fprintf(stderr, "medstream %.*s: error (%.*s): %s\n", static_cast<int>(command.size()),
               command.data(), static_cast<int>(words.size()), words.data(),
               error.message().c_str());
  return ExitStatus(error.code());
}

int ExitWithError(std::string_view command, std::string_view usage_error) {
  return ExitWithError(command, Error(Error::Code::kInvalidArgument, std::string(usage_error)));
}

namespace {

CLI::Validator NumberCheck(std::string description, std::function<bool(double)> ok,
                           std::string expected) {
  return CLI::Validator(
      [ok = std::move(ok), expected = std::move(expected)](std::string& text) -> std::string {
        double v = 0;
        const char* end = text.data() + text.size();
        const auto [ptr, ec] = std::from_chars(text.data(), end, v);
        if (ec != std::errc() || ptr != end || !std::isfinite(v) || !ok(v)) {
          return "expected " + expected + ", got '" + text + "'";
        }
        return {};
      },
      std::move(description));
}

}  // namespace

CLI::Validator FiniteRange(double min, double max) {
  const std::string range = fmt::format("[{} - {}]", min, max);
  return NumberCheck(
      "in " + range, [min, max](double v) { return v >= min && v <= max; }, "a number in " + range);
}

CLI::Validator Positive() {
  return NumberCheck(
      "POSITIVE", [](double v) { return v > 0; }, "a number above 0");
}

CLI::Validator NonNegative() {
  return NumberCheck(
      "NONNEGATIVE", [](double v) { return v >= 0; }, "a number of 0 or more");
}

}  // namespace medstream::cli
