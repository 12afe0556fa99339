// SequenceTracker: what each device sent against what arrived (owner/gateway/sequence.h).
#include "owner/gateway/sequence.h"

#include <gtest/gtest.h>

namespace medstream::gateway {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

// Message `seq` of session `session`: 3 beats, 1 s apart, the first at 10 * seq.
Observation Send(SequenceTracker& t, uint64_t seq, uint64_t session = 1,
                 const std::string& device = "d") {
  return t.OnMessage(device, {.session = session, .seq = seq, .first_beat = 3 * seq}, 3, 10.0 * seq,
                     10.0 * seq + 2);
}

TEST(SequenceTracker, InOrderMessagesLoseNothing) {
  SequenceTracker t;
  for (uint64_t s = 0; s < 50; ++s) {
    const Observation o = Send(t, s);
    EXPECT_EQ(o.lost_beats, 0u);
    EXPECT_FALSE(o.repeat);
  }
  EXPECT_EQ(t.lost_beats(), 0u);
  EXPECT_EQ(t.lost_messages(), 0u);
  EXPECT_TRUE(t.devices().at("d").gaps.empty());
}

TEST(SequenceTracker, AGapCountsItsMessagesAndBeatsAndMarksTheTimesAroundIt) {
  SequenceTracker t;
  for (uint64_t s : {0, 1, 2, 5, 6}) Send(t, s);
  EXPECT_EQ(t.lost_messages(), 2u);
  EXPECT_EQ(t.lost_beats(), 6u);
  const Gap& g = t.devices().at("d").gaps.front();
  EXPECT_EQ(g.t_before, 22);  // the last beat of message 2
  EXPECT_EQ(g.t_after, 50);   // the first of message 5
  // Windows overlapping (22, 50) carry the six beats; others none.
  EXPECT_EQ(t.LostBeatsIn("d", 0, 22), 0u);
  EXPECT_EQ(t.LostBeatsIn("d", 10, 30), 6u);
  EXPECT_EQ(t.LostBeatsIn("d", 49, 80), 6u);
  EXPECT_EQ(t.LostBeatsIn("d", 50, 80), 0u);
  EXPECT_EQ(t.LostBeatsIn("other", 0, 100), 0u);
}

TEST(SequenceTracker, RepeatsChangeNothingAndLateMessagesFillTheirGap) {
  SequenceTracker t;
  for (uint64_t s : {0, 1, 2, 6}) Send(t, s);
  EXPECT_EQ(t.lost_beats(), 9u);
  EXPECT_TRUE(Send(t, 1).repeat);
  EXPECT_TRUE(Send(t, 6).repeat);
  EXPECT_EQ(t.lost_beats(), 9u);
  // Message 4 arrives late: the gap splits into 3 and 5.
  const Observation o = Send(t, 4);
  EXPECT_EQ(o.recovered_beats, 3u);
  EXPECT_EQ(t.lost_beats(), 6u);
  EXPECT_EQ(t.lost_messages(), 2u);
  EXPECT_EQ(t.devices().at("d").gaps.size(), 2u);
  EXPECT_TRUE(Send(t, 4).repeat);  // and again: a repeat now
  Send(t, 3);
  Send(t, 5);
  EXPECT_EQ(t.lost_beats(), 0u);
  EXPECT_EQ(t.lost_messages(), 0u);
  EXPECT_EQ(t.recovered_beats(), 9u);
  EXPECT_TRUE(t.devices().at("d").gaps.empty());
}

TEST(SequenceTracker, TheStatusRevealsALostTail) {
  SequenceTracker t;
  for (uint64_t s = 0; s < 10; ++s) Send(t, s);
  // The device says it sent 14 messages, 42 beats: the last four never came.
  const Observation o = t.OnStatus("d", {.session = 1, .messages = 14, .beats = 42, .final = true});
  EXPECT_EQ(o.lost_messages, 4u);
  EXPECT_EQ(o.lost_beats, 12u);
  EXPECT_EQ(t.LostBeatsIn("d", 1000, 2000), 12u);  // every later window: the tail is open
  // An older status (sent earlier) changes nothing; the late tail fills the gap.
  EXPECT_EQ(t.OnStatus("d", {.session = 1, .messages = 5, .beats = 15}).lost_beats, 0u);
  for (uint64_t s = 10; s < 14; ++s) Send(t, s);
  EXPECT_EQ(t.lost_beats(), 0u);
}

TEST(SequenceTracker, ANewSessionStartsAfreshAndItsPredecessorCanStillBeClosed) {
  SequenceTracker t;
  for (uint64_t s = 0; s < 5; ++s) Send(t, s, /*session=*/1);
  const Observation o = Send(t, 0, /*session=*/2);
  EXPECT_TRUE(o.new_session);
  EXPECT_EQ(t.lost_beats(), 0u);
  // Session 1's final status arrives late: it had sent 7 messages.
  t.OnStatus("d", {.session = 1, .messages = 7, .beats = 21, .final = true});
  EXPECT_EQ(t.lost_beats(), 6u);
  Send(t, 1, 2);  // session 2 goes on unaffected
  EXPECT_EQ(t.lost_beats(), 6u);
  EXPECT_EQ(t.devices().at("d").sessions, 2u);
  // A session first seen through its status (all its messages dropped so far).
  t.OnStatus("e", {.session = 9, .messages = 3, .beats = 9});
  EXPECT_EQ(t.devices().at("e").lost_beats, 9u);
  for (uint64_t s = 0; s < 3; ++s) Send(t, s, 9, "e");
  EXPECT_EQ(t.devices().at("e").lost_beats, 0u);
}

TEST(SequenceTracker, SaveAndLoadKeepEverything) {
  SequenceTracker t;
  for (uint64_t s : {0, 1, 4, 5}) Send(t, s);
  t.OnStatus("d", {.session = 1, .messages = 8, .beats = 24});
  Send(t, 0, 3, "x");
  auto back = SequenceTracker::Load(t.Save());
  ASSERT_TRUE(back) << back.error().message();
  EXPECT_EQ(back->Save(), t.Save());
  EXPECT_EQ(back->lost_beats(), t.lost_beats());
  EXPECT_EQ(back->devices().at("d").gaps.back().t_after, kInf);
  // Observing again what was observed changes nothing (the gateway replays its log this way).
  Send(*back, 5);
  EXPECT_EQ(back->Save(), t.Save());
  // Damage is refused, not half-read.
  EXPECT_EQ(SequenceTracker::Load("{\"device\":\"d\"}\n").error().code(), Error::Code::kCorrupt);
  EXPECT_EQ(SequenceTracker::Load("not json\n").error().code(), Error::Code::kCorrupt);
  // A count that is not a whole number is damage too (it was converted: wrapped if negative,
  // undefined behaviour if a huge float).
  const std::string saved = t.Save();
  const size_t at = saved.find("\"sessions\":");
  ASSERT_NE(at, std::string::npos) << saved;
  const size_t from = at + std::string("\"sessions\":").size();
  const size_t to = saved.find_first_not_of("0123456789", from);
  ASSERT_GT(to, from) << saved;
  for (const char* bad : {"1e30", "-1", "2.5", "\"3\""}) {
    const std::string damaged = saved.substr(0, from) + bad + saved.substr(to);
    auto r = SequenceTracker::Load(damaged);
    ASSERT_FALSE(r) << bad;
    EXPECT_EQ(r.error().code(), Error::Code::kCorrupt) << bad;
  }
}

// After the saved state was lost, devices start where they are first seen: what the gateway got
// before is not counted as lost, while a gap after that point is. Saved and loaded, the tracker
// keeps resuming devices it has not seen yet.
TEST(SequenceTracker, AResumingTrackerCountsEachDeviceFromWhereItIsFirstSeen) {
  SequenceTracker t = SequenceTracker::Resuming();
  EXPECT_EQ(Send(t, 5).lost_messages, 0u);
  EXPECT_EQ(Send(t, 7).lost_messages, 1u);  // message 6: lost after the resumption
  EXPECT_EQ(t.lost_beats(), 3u);
  // A device first heard of by its status: counted from what it says it has sent.
  EXPECT_EQ(t.OnStatus("s", {.session = 4, .messages = 10, .beats = 30}).lost_messages, 0u);
  EXPECT_EQ(Send(t, 11, 4, "s").lost_messages, 1u);
  auto back = SequenceTracker::Load(t.Save());
  ASSERT_TRUE(back) << back.error().message();
  EXPECT_EQ(back->Save(), t.Save());
  EXPECT_EQ(back->lost_messages(), 2u);
  EXPECT_EQ(Send(*back, 40, 1, "late").lost_messages, 0u);
  EXPECT_EQ(Send(*back, 8).lost_messages, 0u);  // a device it knows: counted as before
  // A tracker that is not resuming counts from message 0, and says nothing of resuming.
  SequenceTracker fresh;
  EXPECT_EQ(Send(fresh, 5).lost_messages, 5u);
  EXPECT_EQ(fresh.Save().find("resume_unknown"), std::string::npos);
  EXPECT_FALSE(SequenceTracker::Load("{\"known\":true}\n{\"resume_unknown\":true}\n"));
}

// The gateway's tracker of what is durable takes one device at a time from the live one: the
// others stay as they were, and a device the live tracker does not know is dropped.
TEST(SequenceTracker, CopyDeviceTakesOneDeviceAndLeavesTheOthers) {
  SequenceTracker live = SequenceTracker::Resuming(), durable;
  for (uint64_t s = 0; s < 3; ++s) {
    Send(live, s, 1, "a");
    Send(live, s, 1, "b");
  }
  durable.CopyDevice(live, "a");
  EXPECT_EQ(durable.devices().at("a").current.next_seq, 3u);
  EXPECT_FALSE(durable.devices().contains("b"));
  Send(live, 5, 1, "a");  // a gap of 2 in the live tracker only
  Send(durable, 0, 1, "c");
  durable.CopyDevice(live, "b");
  durable.CopyDevice(live, "c");  // unknown to the live tracker: dropped
  EXPECT_EQ(durable.devices().at("a").current.next_seq, 3u);
  EXPECT_EQ(durable.devices().at("b").current.next_seq, 3u);
  EXPECT_FALSE(durable.devices().contains("c"));
  EXPECT_EQ(durable.lost_messages(), 0u);
  // Saved and loaded, it resumes as the live one does (the flag came with the copy): an unknown
  // device starts where it is first seen.
  auto loaded = SequenceTracker::Load(durable.Save()).value();
  EXPECT_EQ(Send(loaded, 7, 1, "z").lost_messages, 0u);
}

TEST(SequenceTracker, GapsAreBoundedPerDevice) {
  SequenceTracker t;
  for (uint64_t s = 0; s < 3 * kMaxGapsPerDevice; s += 2) Send(t, s);  // every other one lost
  EXPECT_EQ(t.devices().at("d").gaps.size(), kMaxGapsPerDevice);
  EXPECT_EQ(t.lost_messages(), 3 * kMaxGapsPerDevice / 2 - 1);  // the counts stay exact
  t.ForgetGapsBefore("d", 1e9);
  EXPECT_TRUE(t.devices().at("d").gaps.empty());
  EXPECT_EQ(t.lost_messages(), 3 * kMaxGapsPerDevice / 2 - 1);
}

}  // namespace
}  // namespace medstream::gateway
