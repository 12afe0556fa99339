// Running commands from tests: the medstream executable, helper scripts, `cat` of a log.
#pragma once

#include <string>

namespace medstream::testing {

struct ShellResult {
  int exit_code = -1;  // -1 if it did not exit normally
  std::string out;     // stdout and stderr together
};

// Runs `cmd` with /bin/sh and waits for it.
ShellResult Shell(const std::string& cmd);

}  // namespace medstream::testing
