// The gateway's batch assembler alone: at-least-once, out-of-order delivery merged into one batch
// in time order, each beat once; what was sealed is never taken again.
#include <gtest/gtest.h>

#include <vector>

#include "owner/gateway/open_batch.h"

namespace medstream::gateway {
namespace {

std::vector<hrv::Beat> Beats(std::initializer_list<double> times) {
  std::vector<hrv::Beat> out;
  for (double t : times) out.push_back({t, 800});
  return out;
}

std::vector<double> Times(const OpenBatch& b) {
  std::vector<double> out;
  for (const auto& x : b.beats()) out.push_back(x.t_s);
  return out;
}

TEST(OpenBatch, RedeliveredAndOvertakingMessagesMergeInOrderEachBeatOnce) {
  OpenBatch b;
  EXPECT_EQ(b.Merge(Beats({1, 2, 3})).added, 3u);
  EXPECT_EQ(b.Merge(Beats({7, 8})).added, 2u);
  // A message resent after a reconnection overtakes and repeats.
  const auto m = b.Merge(Beats({3, 4, 5, 6}));
  EXPECT_EQ(m.added, 3u);
  EXPECT_EQ(m.stale, 0u);
  EXPECT_EQ(Times(b), (std::vector<double>{1, 2, 3, 4, 5, 6, 7, 8}));
  EXPECT_EQ(b.newest(), 8);
}

TEST(OpenBatch, WhatWasSealedIsDroppedAsStale) {
  OpenBatch b;
  b.Merge(Beats({1, 2, 3}));
  b.Sealed();
  EXPECT_TRUE(b.empty());
  EXPECT_EQ(b.sealed_until(), 3);
  EXPECT_EQ(b.newest(), 3);
  const auto m = b.Merge(Beats({2, 3, 4}));
  EXPECT_EQ(m.added, 1u);
  EXPECT_EQ(m.stale, 2u);
  EXPECT_EQ(Times(b), (std::vector<double>{4}));
  // A restart learns the sealed boundary from STATE: it never moves back.
  OpenBatch r;
  r.SetSealedUntil(10);
  r.SetSealedUntil(5);
  EXPECT_EQ(r.Merge(Beats({9, 10, 11})).stale, 2u);
  // Sealing an empty batch changes nothing.
  OpenBatch e;
  e.Sealed();
  EXPECT_EQ(e.Merge(Beats({-1e9})).added, 1u);
}

// A batch too large for one file is sealed a piece at a time: each piece's beats leave the batch,
// the rest stay open, and a beat at or before the last piece sealed is stale.
TEST(OpenBatch, SealingThePiecesOfABatchLeavesTheRestOpen) {
  OpenBatch b;
  b.Merge(Beats({1, 2, 3, 4, 5}));
  b.SealedFirst(2);
  EXPECT_EQ(Times(b), (std::vector<double>{3, 4, 5}));
  EXPECT_EQ(b.sealed_until(), 2);
  EXPECT_EQ(b.newest(), 5);
  const auto m = b.Merge(Beats({2, 6}));
  EXPECT_EQ(m.stale, 1u);
  EXPECT_EQ(m.added, 1u);
  b.SealedFirst(10);  // more than it holds: all of it
  EXPECT_TRUE(b.empty());
  EXPECT_EQ(b.sealed_until(), 6);
  b.SealedFirst(1);  // nothing left: nothing changes
  EXPECT_EQ(b.sealed_until(), 6);
}

}  // namespace
}  // namespace medstream::gateway
