// Running commands from tests: the medstream executable, helper scripts, `cat` of a log. A
// command's failure is checked by its exit status (ExitStatus of the error's code), never by its
// wording.
#pragma once

#include <string>

#include "common/base/result.h"

namespace medstream::testing {

struct ShellResult {
  int exit_code = -1;  // -1 if it did not exit normally
  std::string out;     // stdout and stderr together
};

// Runs `cmd` with /bin/sh and waits for it.
ShellResult Shell(const std::string& cmd);

}  // namespace medstream::testing
