// The one HOST:PORT parser: strict ports, clear refusals, no exceptions.
#include "common/base/address.h"

#include <gtest/gtest.h>

namespace medstream {
namespace {

TEST(HostPort, ParsesAndRefusesWithACode) {
  auto a = ParseHostPort("127.0.0.1:1883", "--broker");
  ASSERT_TRUE(a.has_value());
  EXPECT_EQ(a->host, "127.0.0.1");
  EXPECT_EQ(a->port, 1883);
  EXPECT_EQ(ParseHostPort("broker", "--broker", {.default_port = 1883})->port, 1883);
  EXPECT_EQ(ParseHostPort("0.0.0.0:0", "--listen", {.allow_zero = true})->port, 0);
  // Once: std::stoi threw past CLI11 on "host:x" and the command aborted; atoi read it as 0.
  for (const char* bad :
       {"host:x", "host:", "host:1x", "host: 22", "host:-1", "host:+22", "host:65536",
        "host:99999999999999999999", ":22", "host:0", "ho st:22", "host", "h\nst:22"}) {
    auto r = ParseHostPort(bad, "--sftp");
    ASSERT_FALSE(r.has_value()) << bad;
    EXPECT_EQ(r.error().code(), Error::Code::kInvalidArgument) << bad;
  }
}

}  // namespace
}  // namespace medstream
