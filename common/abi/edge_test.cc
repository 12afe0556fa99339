// The edge ABI's tables: every call's caps and relay permissions are stated once, here.
#include "common/abi/edge.h"

#include <gtest/gtest.h>

#include <set>

namespace medstream::enclave {
namespace {

TEST(EdgeAbi, EveryCallIsListedOnceAndFoundById) {
  std::set<uint16_t> ids;
  for (const CallSpec& c : kCalls) {
    EXPECT_TRUE(ids.insert(static_cast<uint16_t>(c.call)).second) << c.name;
    EXPECT_EQ(FindCall(static_cast<uint16_t>(c.call)), &c);
    EXPECT_GT(c.budget_s, 0) << c.name;
  }
  EXPECT_EQ(FindCall(0), nullptr);
  EXPECT_EQ(FindCall(0x7fff), nullptr);
}

// A relay forwards what a remote client needs, and nothing that could change or roll back the
// host's state: the exact sets, so that a call added later must be placed on purpose.
TEST(EdgeAbi, RelaysForwardOnlyTheirClientsCalls) {
  std::set<Call> server, lake;
  for (const CallSpec& c : kCalls) {
    if (RelayMayForward(kServerRelay, static_cast<uint16_t>(c.call))) server.insert(c.call);
    if (RelayMayForward(kLakeRelay, static_cast<uint16_t>(c.call))) lake.insert(c.call);
  }
  EXPECT_EQ(server, (std::set{Call::kInfo, Call::kHandshake, Call::kChannel, Call::kStats}));
  EXPECT_EQ(lake, (std::set{Call::kInfo, Call::kHandshake, Call::kChannel, Call::kLakeRequest}));
  EXPECT_FALSE(RelayMayForward(kServerRelay, 0x7fff));
  EXPECT_FALSE(RelayMayForward(kHostOnly, static_cast<uint16_t>(Call::kInfo)));
}

}  // namespace
}  // namespace medstream::enclave
