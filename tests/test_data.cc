#include "tests/test_data.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <fstream>
#include <sstream>

#include "adapters/recording/recording.h"

namespace medstream::testing {

std::string TestDataPath(const std::string& relative) {
  return std::string(MEDSTREAM_TEST_DATA_DIR) + "/" + relative;
}

std::string ReadTestFile(const std::string& relative) {
  std::ifstream in(TestDataPath(relative), std::ios::binary);
  if (!in) {
    ADD_FAILURE() << "cannot open test data " << TestDataPath(relative);
    return "";
  }
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

std::vector<hrv::Beat> LoadBeats(const std::string& relative, const std::string& unit) {
  recording::ReadOptions options;
  options.unit = *recording::ParseUnit(unit);
  auto rec = recording::ReadRecording(TestDataPath(relative), options);
  if (!rec) {
    ADD_FAILURE() << rec.error().message();
    return {};
  }
  return rec->beats;
}

bool Close(double a, double b, double rel) {
  if (std::isnan(a) || std::isnan(b)) return std::isnan(a) && std::isnan(b);
  return std::fabs(a - b) <= rel * std::max(std::fabs(a), std::fabs(b)) + 1e-300;
}

bool Same(double a, double b) {
  if (std::isnan(a) || std::isnan(b)) return std::isnan(a) && std::isnan(b);
  return std::memcmp(&a, &b, sizeof a) == 0;
}

}  // namespace medstream::testing
