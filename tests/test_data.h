// Helpers for tests that read the bundled real recordings in tests/data.
#pragma once

#include <string>
#include <vector>

#include "algo/hrv/types.h"

namespace medstream::testing {

// Absolute path of a file under tests/data.
std::string TestDataPath(const std::string& relative);
// Whole-file contents; fails the calling test (ADD_FAILURE) and returns "" when unreadable.
std::string ReadTestFile(const std::string& relative);
// Beats of a bundled recording read with default options (auto format and unit), or with `unit`.
std::vector<hrv::Beat> LoadBeats(const std::string& relative, const std::string& unit = "auto");

// True when a and b agree to `rel` relative tolerance (NaN only matches NaN).
bool Close(double a, double b, double rel);
// Bitwise-equal or both NaN: the chunking-invariance contract.
bool Same(double a, double b);

}  // namespace medstream::testing
