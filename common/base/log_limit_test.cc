// The limit on repeated lines: the first of a kind said, then one an interval with the count held
// back; kinds apart; a bounded number of kinds.
#include "common/base/log_limit.h"

#include <gtest/gtest.h>

#include <string>

namespace medstream {
namespace {

using std::chrono::seconds;

TEST(LogLimiter, SaysTheFirstThenOneAnIntervalWithWhatItHeldBack) {
  LogLimiter limit(seconds(10));
  const auto t0 = LogLimiter::Clock::time_point{} + std::chrono::hours(1);
  EXPECT_EQ(limit.Admit("cut", t0), 0u);
  for (int i = 1; i <= 99; ++i) EXPECT_FALSE(limit.Admit("cut", t0 + std::chrono::milliseconds(i)));
  EXPECT_EQ(limit.Admit("cut", t0 + seconds(10)), 99u);
  EXPECT_FALSE(limit.Admit("cut", t0 + seconds(11)));
  EXPECT_EQ(limit.Admit("cut", t0 + seconds(25)), 1u);
  EXPECT_EQ(limit.Admit("cut", t0 + seconds(40)), 0u) << "nothing held back since";
  EXPECT_EQ(limit.held_back(), 100u);
}

TEST(LogLimiter, KindsAreLimitedApartAndTheirNumberIsBounded) {
  LogLimiter limit(seconds(10), /*max_kinds=*/3);
  const auto t0 = LogLimiter::Clock::time_point{} + std::chrono::hours(1);
  EXPECT_EQ(limit.Admit("cut", t0), 0u);
  EXPECT_EQ(limit.Admit("sync", t0), 0u) << "one failing step does not silence another";
  EXPECT_FALSE(limit.Admit("cut", t0));
  EXPECT_EQ(limit.Admit("user-1", t0), 0u);  // the third kind, the last with a limit of its own
  // Past the bound, new kinds share one limit: a stream of made-up kinds says one line.
  EXPECT_EQ(limit.Admit("user-2", t0), 0u);
  for (int i = 3; i < 1000; ++i) EXPECT_FALSE(limit.Admit("user-" + std::to_string(i), t0));
  EXPECT_EQ(limit.Admit("user-5000", t0 + seconds(10)), 997u);
  EXPECT_FALSE(limit.Admit("user-1", t0 + seconds(5))) << "its own limit still holds";
  EXPECT_EQ(limit.held_back(), 999u);
}

TEST(LogLimiter, TheNoteNamesWhatWasHeldBack) {
  EXPECT_EQ(HeldBackNote(0), "");
  EXPECT_NE(HeldBackNote(1), HeldBackNote(2));
  EXPECT_FALSE(HeldBackNote(7).empty());
}

}  // namespace
}  // namespace medstream
