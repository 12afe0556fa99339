// The one way a command ends on an error (commands.h).
#include <cstdio>
#include <string>

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

}  // namespace medstream::cli
