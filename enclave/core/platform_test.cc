// The enclave's platform interface over the simulated platform: counters that persist and refuse
// to go backwards (what rollback detection rests on), one per identity.
#include "enclave/core/platform.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>

#include "common/attest/sim_platform.h"

namespace medstream::enclave {
namespace {

namespace fs = std::filesystem;

TEST(SimulatedPlatform, CountersPersistPerIdentityAndNeverGoBack) {
  const std::string dir =
      (fs::temp_directory_path() / ("platform-" + std::to_string(getpid()))).string();
  fs::remove_all(dir);
  ASSERT_TRUE(attest::InitPlatform({.dir = dir, .now = time(nullptr)}));
  const crypto::Digest me = crypto::Sha256(crypto::AsBytes("enclave a"));
  const crypto::Digest other = crypto::Sha256(crypto::AsBytes("enclave b"));
  {
    auto p = OpenSimulatedPlatform(dir, me);
    ASSERT_TRUE(p) << p.error().message();
    EXPECT_EQ((*p)->counter(CounterId::kCheckpoint), 0u);
    ASSERT_TRUE((*p)->AdvanceCounter(CounterId::kCheckpoint, 7));
    ASSERT_TRUE((*p)->AdvanceCounter(CounterId::kLake, 3));
    auto back = (*p)->AdvanceCounter(CounterId::kCheckpoint, 6);
    ASSERT_FALSE(back);
    EXPECT_EQ(back.error().code(), Error::Code::kFailedPrecondition);
    EXPECT_GT((*p)->Now(), 1'700'000'000);
  }
  auto again = OpenSimulatedPlatform(dir, me);
  ASSERT_TRUE(again);
  EXPECT_EQ((*again)->counter(CounterId::kCheckpoint), 7u);
  EXPECT_EQ((*again)->counter(CounterId::kLake), 3u);
  auto stranger = OpenSimulatedPlatform(dir, other);
  ASSERT_TRUE(stranger);
  EXPECT_EQ((*stranger)->counter(CounterId::kCheckpoint), 0u);
  EXPECT_EQ(OpenSimulatedPlatform(dir + "/absent", me).error().code(), Error::Code::kNotFound);
  fs::remove_all(dir);
}

}  // namespace
}  // namespace medstream::enclave
