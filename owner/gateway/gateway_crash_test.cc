// The gateway's state after a crash, a power loss or a failing disk, in this process
// (gateway_unit_fixture.h): results files torn mid-append, damaged STATE files, write-ahead logs
// damaged, cut short by a power loss, or failing to take a message or to flush; in every case
// nothing is lost without being counted, and one damaged file holds up no other user.
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <utility>

#include <nlohmann/json.hpp>

#include "owner/gateway/gateway_unit_fixture.h"

namespace medstream::gateway {
namespace {

// A restarted gateway finds where a user's results stand from the last line of the user's .jsonl.
// A damaged last line with a "seq" that is not a whole number reads as a torn one (the results are
// read again from the outbox) instead of being converted: -1 wrapped to the largest count, so the
// gateway waited for result 0 for ever; 1e30 was undefined behaviour.
TEST_F(GatewayUnit, ADamagedLastResultLineIsReadAgainNotConverted) {
  const std::string t1 = sensor::Topic("t", "user-0001");
  const auto messages = Messages(1, 300, 5);
  size_t sent = 0;
  for (const char* damaged : {"{\"seq\":-1}\n", "{\"seq\":1e30}\n"}) {
    {
      Feed* feed = nullptr;
      auto g = Start(&feed);
      ASSERT_TRUE(g);
      for (size_t i = sent; i < sent + 10; ++i) feed->Send(t1, messages[i]);
      sent += 10;
      Drain(*g);
      ASSERT_EQ(g->outstanding(), 0u);
    }
    std::ofstream(dir_ + "/results/user-0001.jsonl", std::ios::app) << damaged;
  }
  Feed* feed = nullptr;
  auto g = Start(&feed);
  ASSERT_TRUE(g);
  for (size_t i = sent; i < sent + 10; ++i) feed->Send(t1, messages[i]);
  Drain(*g);
  EXPECT_EQ(g->outstanding(), 0u) << "the restarted gateway lost its place in the results";
  EXPECT_EQ(g->stats().lost_beats, 0u);
  // The last line is the newest batch's result (the third).
  std::ifstream in(dir_ + "/results/user-0001.jsonl");
  std::string line, last;
  while (std::getline(in, line))
    if (!line.empty()) last = line;
  EXPECT_EQ(nlohmann::json::parse(last).at("seq").get<uint64_t>(), 3u) << last;
  // And no result twice: the damaged lines went, and results 1 and 2 were not appended again
  // after them (they were, every one still on the server, when a damaged last line read as "no
  // result yet").
  EXPECT_EQ(ResultLines("user-0001"), 3u) << "one end marker per result";
}

// A crash or power loss mid-append leaves a results file ending inside a result's lines, or stops
// between a result's CSV and its jsonl append. At start the torn lines go and the result is read
// again for the files that lack it, so each file ends as it would have without the crash.
TEST_F(GatewayUnit, ResultFilesTornByACrashEndAsTheyWouldHaveWithoutIt) {
  options_.config.windows.window_s = 30;
  options_.config.windows.step_s = 10;
  const std::string t1 = sensor::Topic("t", "user-0001");
  const auto messages = Messages(1, 400, 8);
  const std::string jsonl = dir_ + "/results/user-0001.jsonl";
  const std::string csv = dir_ + "/results/user-0001.sdnn.csv";
  std::string whole_jsonl, whole_csv;
  {
    Feed* feed = nullptr;
    auto g = Start(&feed);
    ASSERT_TRUE(g);
    for (const auto& m : messages) feed->Send(t1, m);
    Drain(*g);
    whole_jsonl = ReadFileText(jsonl).value();
    whole_csv = ReadFileText(csv).value();
  }
  ASSERT_GT(std::count(whole_csv.begin(), whole_csv.end(), '\n'), 10);
  auto last_block_start = [](const std::string& text, const std::string& first_of_block) {
    return text.rfind(first_of_block);
  };
  const size_t jsonl_4 = last_block_start(whole_jsonl, "{\"seq\":4,");
  const size_t csv_4 = last_block_start(whole_csv, "\n4,") + 1;
  ASSERT_NE(jsonl_4, std::string::npos);
  ASSERT_NE(csv_4, std::string::npos + 1);
  struct Tear {
    size_t jsonl, csv;
  };
  for (const Tear& tear : {
           Tear{jsonl_4 + 30, whole_csv.size()},  // jsonl torn in result 4's first line
           Tear{jsonl_4 - 5, csv_4 + 7},          // both torn, in results 3 (jsonl) and 4 (csv)
           Tear{jsonl_4, whole_csv.size()},       // between the CSV's append and the jsonl's
           Tear{whole_jsonl.size() - 3, csv_4},   // the jsonl's marker torn, the CSV at a line
       }) {
    ASSERT_TRUE(WriteFileAtomic(jsonl, whole_jsonl.substr(0, tear.jsonl), 0600));
    ASSERT_TRUE(WriteFileAtomic(csv, whole_csv.substr(0, tear.csv), 0600));
    Feed* feed = nullptr;
    auto g = Start(&feed);
    ASSERT_TRUE(g);
    Drain(*g);
    EXPECT_EQ(ReadFileText(jsonl).value(), whole_jsonl) << tear.jsonl << " " << tear.csv;
    EXPECT_EQ(ReadFileText(csv).value(), whole_csv) << tear.jsonl << " " << tear.csv;
    EXPECT_EQ(g->stats().results_torn_gone, 0u);
  }
}

// Regression: STATE/seq was read with `>>` and strtod. "-1" became the largest count (the user's
// next batch would carry a sequence number the server never accepts), "1e30" became 1, and a
// sealed_until of "inf" would have dropped every later beat as already sealed. A damaged line is
// refused now; what the gateway writes (including -inf before a user's first cut, and the older
// two-field lines) is still read.
TEST_F(GatewayUnit, ADamagedSequenceFileIsRefusedNotWrapped) {
  const std::string t1 = sensor::Topic("t", "user-0001");
  {
    Feed* feed = nullptr;
    auto g = Start(&feed);
    ASSERT_TRUE(g);
    for (const auto& m : Messages(1, 30, 5)) feed->Send(t1, m);
    Drain(*g);
  }
  const std::string path = options_.state_dir + "/seq";
  const auto good = ReadFileText(path);
  ASSERT_TRUE(good);
  std::istringstream fields(*good);
  std::string user, next;
  ASSERT_TRUE(fields >> user >> next) << *good;
  ASSERT_EQ(user, "user-0001");
  for (const std::string& damaged : std::vector<std::string>{
           "user-0001 -1 5\n", "user-0001 1e30\n", "user-0001 +3\n", "user-0001 3.5\n",
           "user-0001 99999999999999999999\n", "user-0001 x\n", "user-0001 " + next + " inf\n",
           "user-0001 " + next + " nan\n", "user-0001 " + next + " 12abc\n"}) {
    ASSERT_TRUE(WriteFileAtomic(path, damaged, 0600));
    auto g = Gateway::Start(options_, std::make_unique<Feed>());
    ASSERT_FALSE(g) << damaged;
    EXPECT_EQ(g.error().code(), Error::Code::kCorrupt) << damaged << g.error().message();
  }
  for (const std::string& fine : std::vector<std::string>{*good, "user-0001 " + next + "\n",
                                                          "user-0001 " + next + " -inf\n"}) {
    ASSERT_TRUE(WriteFileAtomic(path, fine, 0600));
    auto g = Gateway::Start(options_, std::make_unique<Feed>());
    ASSERT_TRUE(g) << fine << g.error().message();
    EXPECT_EQ((*g)->outstanding(), 0u) << fine;
  }
}

// Regression: the gateway listed its spool with a throwing directory_iterator, so a spool folder
// removed under a running gateway killed it with an uncaught exception. It is an error now.
TEST_F(GatewayUnit, ASpoolFolderRemovedUnderARunningGatewayIsAnErrorNotACrash) {
  Feed* feed = nullptr;
  auto g = Start(&feed);
  ASSERT_TRUE(g);
  fs::remove_all(options_.state_dir + "/spool");
  const Status st = g->Tick();
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().code(), Error::Code::kIo) << st.error().message();
}

// A gateway that dies with batches open loses none of their beats: the next one replays its
// write-ahead log, and the messages the broker sends again are merged, not doubled.
TEST_F(GatewayUnit, ACrashLosesNoBeatAndDoublesNone) {
  const std::string t1 = sensor::Topic("t", "user-0001");
  const auto messages = Messages(1, 350, 7);
  {
    Feed* feed = nullptr;
    auto g = Start(&feed);
    ASSERT_TRUE(g);
    // 250 beats: two 100-beat batches sealed (not yet uploaded), 50 in the open batch.
    for (size_t i = 0; i < 25; ++i) feed->Send(t1, messages[i]);
  }  // gone without cutting the rest (as kill -9 would leave it)
  Feed* feed = nullptr;
  auto g = Start(&feed);
  ASSERT_TRUE(g);
  EXPECT_EQ(g->stats().beats_recovered, 50u);
  // The broker sends the last five again (unacknowledged at the crash), then the rest.
  for (size_t i = 20; i < messages.size(); ++i) feed->Send(t1, messages[i]);
  Drain(*g);
  const Stats s = g->stats();
  EXPECT_EQ(s.lost_beats, 0u);
  EXPECT_EQ(s.beats_in, 100u);         // the repeats were merged, not counted again
  EXPECT_EQ(s.beats_processed, 350u);  // every beat once: the spooled batches, the log, the rest
}

// Regression: one user's write-ahead log damaged before its end (power loss, a failing disk), or
// a stray file in the logs' folder, stopped the gateway at every start, for every user. Now that
// log's readable records are recovered, the rest is kept aside and counted, and the other users are
// not held up.
TEST_F(GatewayUnit, OneDamagedWriteAheadLogHoldsUpNoUserAndItsDamageIsCounted) {
  const std::string t1 = sensor::Topic("t", "user-0001"), t2 = sensor::Topic("t", "user-0002");
  {
    Feed* feed = nullptr;
    auto g = Start(&feed);
    ASSERT_TRUE(g);
    const auto m1 = Messages(1, 50, 5), m2 = Messages(2, 50, 6);
    for (size_t i = 0; i < m1.size(); ++i) {  // five messages each, all in open batches
      feed->Send(t1, m1[i]);
      feed->Send(t2, m2[i]);
    }
  }  // gone without cutting (as kill -9 would leave it)
  const std::string wal = options_.state_dir + "/wal/user-0001.wal";
  std::vector<uint8_t> bytes = ReadFileBytes(wal).value();
  ASSERT_EQ(bytes.size() % 5, 0u);  // five records of one size
  const size_t record = bytes.size() / 5;
  bytes[2 * record + 40] ^= 1;  // the third record
  ASSERT_TRUE(WriteFileAtomic(wal, bytes, 0600));
  // A file no gateway wrote, named as no user may be, stops no one either.
  const std::string stray = options_.state_dir + "/wal/not a user!.wal";
  ASSERT_TRUE(WriteFileAtomic(stray, std::string("junk"), 0600));
  Feed* feed = nullptr;
  auto g = Start(&feed);
  ASSERT_TRUE(g);
  EXPECT_EQ(g->stats().wal_bytes_damaged, record);
  EXPECT_EQ(g->stats().beats_recovered, 90u);  // user 2's 50, and user 1's four readable records
  size_t aside = 0;
  for (const auto& e : fs::directory_iterator(options_.state_dir + "/wal")) {
    aside += e.path().filename().string().starts_with("user-0001.wal.damaged-");
  }
  EXPECT_EQ(aside, 1u);
  EXPECT_TRUE(fs::exists(stray));
  Drain(*g);
  EXPECT_EQ(g->stats().beats_processed, 90u);
}

// Regression: a damaged STATE/devices (the devices' sequence state) stopped the gateway, for
// every user, at every start. It is set aside now and said, and loss counting starts again.
TEST_F(GatewayUnit, ADamagedDevicesStateIsSetAsideAndLossCountingStartsAgain) {
  const std::string t1 = sensor::Topic("t", "user-0001");
  const auto messages = Messages(1, 200, 9);
  {
    Feed* feed = nullptr;
    auto g = Start(&feed);
    ASSERT_TRUE(g);
    for (size_t i = 0; i < 5; ++i) feed->Send(t1, messages[i]);
    Drain(*g);
  }
  const std::string devices = options_.state_dir + "/devices";
  ASSERT_TRUE(fs::exists(devices));
  ASSERT_TRUE(WriteFileAtomic(devices, std::string("user-0001 not a number\n"), 0600));
  Feed* feed = nullptr;
  auto g = Start(&feed);
  ASSERT_TRUE(g);
  EXPECT_EQ(g->stats().devices_state_damaged, 1u);
  EXPECT_FALSE(fs::exists(devices));
  size_t aside = 0;
  for (const auto& e : fs::directory_iterator(options_.state_dir)) {
    aside += e.path().filename().string().starts_with("devices.damaged-");
  }
  EXPECT_EQ(aside, 1u);
  // Counting goes on from the next message: message 7 never arrives and is counted.
  for (size_t i = 5; i < 10; ++i) {
    if (i != 7) feed->Send(t1, messages[i]);
  }
  Drain(*g);
  EXPECT_EQ(g->stats().lost_messages, 1u);
  EXPECT_EQ(g->stats().lost_beats, 10u);
}

// Regression: a batch sealed just before a crash (in the spool, not yet in STATE/seq) that was
// found damaged stopped the gateway, for every user, at every start. Its beats are sealed again
// from the write-ahead log; the damaged file keeps its number and is refused by the enclave.
TEST_F(GatewayUnit, ADamagedBatchInTheSpoolIsSealedAgainFromTheLog) {
  auto now = std::chrono::steady_clock::time_point{} + std::chrono::hours(1);
  options_.clock = [&now] { return now; };
  options_.quarantine_check_s = 30;
  const std::string t1 = sensor::Topic("t", "user-0001");
  const auto messages = Messages(1, 100, 3);
  const std::string seq = options_.state_dir + "/seq";
  const std::string wal = options_.state_dir + "/wal/user-0001.wal";
  std::vector<uint8_t> wal_before;
  {
    Feed* feed = nullptr;
    auto g = Start(&feed);
    ASSERT_TRUE(g);
    for (size_t i = 0; i + 1 < messages.size(); ++i) feed->Send(t1, messages[i]);
    ASSERT_FALSE(fs::exists(seq));
    wal_before = ReadFileBytes(wal).value();
    feed->Send(t1, messages.back());  // the 100th beat: batch 1 is sealed into the spool
  }
  // As a crash between the spool's write and STATE/seq's would leave it (the last message not
  // yet acknowledged), with the sealed batch damaged.
  fs::remove(seq);
  ASSERT_TRUE(WriteFileAtomic(wal, wal_before, 0600));
  std::vector<fs::path> spooled;
  for (const auto& e : fs::directory_iterator(options_.state_dir + "/spool")) {
    spooled.push_back(e.path());
  }
  ASSERT_EQ(spooled.size(), 1u);
  std::vector<uint8_t> batch = ReadFileBytes(spooled[0]).value();
  batch[batch.size() / 2] ^= 0x5a;
  ASSERT_TRUE(WriteFileAtomic(spooled[0], batch, 0600));
  Feed* feed = nullptr;
  auto g = Start(&feed);
  ASSERT_TRUE(g);
  EXPECT_EQ(g->stats().spool_batches_damaged, 1u);
  EXPECT_EQ(g->stats().beats_recovered, 90u);
  feed->Send(t1, messages.back());  // sent again by the broker
  ASSERT_TRUE(g->CutAll());
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(g->Tick());
    ASSERT_TRUE(server_->ProcessInbox());
    now += std::chrono::seconds(31);
  }
  ASSERT_TRUE(g->Tick());
  const Stats s = g->stats();
  EXPECT_EQ(g->outstanding(), 0u);
  EXPECT_EQ(s.batches_quarantined, 1u);
  EXPECT_EQ(s.beats_processed, 100u);
  EXPECT_EQ(server_->counters().quarantined, 1u);
}

// Regression: a power loss costs the write-ahead logs what was appended since their last sync (up
// to a second), and that loss must show as a gap. STATE/devices was saved from the live tracker at
// every cut, any user's, so it recorded messages of other users whose log records were not yet
// durable: after the power loss they were neither replayed nor counted, lost without a word.
TEST_F(GatewayUnit, APowerLossCountsTheBeatsItTookFromTheLogsAsLost) {
  auto now = std::chrono::steady_clock::time_point{} + std::chrono::hours(1);
  options_.clock = [&now] { return now; };
  const std::string t1 = sensor::Topic("t", "user-0001"), t2 = sensor::Topic("t", "user-0002");
  const auto ones = Messages(1, 100, 5);
  const auto twos = Messages(2, 100, 6);
  const std::string wal2 = options_.state_dir + "/wal/user-0002.wal";
  uintmax_t synced = 0;
  {
    Feed* feed = nullptr;
    auto g = Start(&feed);
    ASSERT_TRUE(g);
    for (size_t i = 0; i < 5; ++i) feed->Send(t2, twos[i]);
    now += std::chrono::seconds(2);
    ASSERT_TRUE(g->Tick());  // the logs are synced: user 2's first 50 beats are durable
    synced = fs::file_size(wal2);
    for (size_t i = 5; i < 8; ++i) feed->Send(t2, twos[i]);  // in the page cache only
    for (const auto& m : ones) feed->Send(t1, m);            // user 1's 100th beat: a cut
    ASSERT_EQ(g->stats().batches_sealed, 1u);
  }
  // The power loss: what was written atomically (fsync'd) is there; user 2's log is as synced.
  fs::resize_file(wal2, synced);
  Feed* feed = nullptr;
  auto g = Start(&feed);
  ASSERT_TRUE(g);
  EXPECT_EQ(g->stats().beats_recovered, 50u);
  for (size_t i = 8; i < twos.size(); ++i) feed->Send(t2, twos[i]);
  Drain(*g);
  const Stats s = g->stats();
  EXPECT_EQ(s.lost_messages, 3u);
  EXPECT_EQ(s.lost_beats, 30u);
  EXPECT_EQ(s.beats_processed, 170u);  // user 1's 100, user 2's 50 + 20
}

// Regression: a message the write-ahead log could not take (a full disk) was said on stderr, but
// the next sync moved STATE/devices past it all the same; a crash before its batch was cut then
// lost its beats without counting them. Now that device's state waits for its cut, and a crash
// meanwhile counts the message as lost. (RLIMIT_FSIZE stands in for the full disk.)
TEST_F(GatewayUnit, AMessageTheLogCouldNotTakeIsCountedAsLostAfterACrash) {
  auto now = std::chrono::steady_clock::time_point{} + std::chrono::hours(1);
  options_.clock = [&now] { return now; };
  const std::string t1 = sensor::Topic("t", "user-0001"), t2 = sensor::Topic("t", "user-0002");
  const auto twos = Messages(2, 100, 6);
  const std::string wal2 = options_.state_dir + "/wal/user-0002.wal";
  {
    Feed* feed = nullptr;
    auto g = Start(&feed);
    ASSERT_TRUE(g);
    for (size_t i = 0; i < 5; ++i) feed->Send(t2, twos[i]);
    now += std::chrono::seconds(2);
    ASSERT_TRUE(g->Tick());
    // The disk is full for one message: the log cannot grow.
    std::signal(SIGXFSZ, SIG_IGN);
    rlimit before{};
    ASSERT_EQ(getrlimit(RLIMIT_FSIZE, &before), 0);
    rlimit full = before;
    full.rlim_cur = fs::file_size(wal2);
    ASSERT_EQ(setrlimit(RLIMIT_FSIZE, &full), 0);
    feed->Send(t2, twos[5]);
    ASSERT_EQ(setrlimit(RLIMIT_FSIZE, &before), 0);
    EXPECT_EQ(g->stats().wal_append_failed, 1u);
    for (size_t i = 6; i < 8; ++i) feed->Send(t2, twos[i]);
    now += std::chrono::seconds(2);
    ASSERT_TRUE(g->Tick());  // synced: the devices' durable state must not pass message 6
    for (const auto& m : Messages(1, 100, 5)) feed->Send(t1, m);  // user 1's cut saves it
    ASSERT_EQ(g->stats().batches_sealed, 1u);
  }  // the crash, before user 2's batch with message 6 was cut
  Feed* feed = nullptr;
  auto g = Start(&feed);
  ASSERT_TRUE(g);
  EXPECT_EQ(g->stats().beats_recovered, 70u);  // messages 1-5, 7 and 8 from the log
  for (size_t i = 8; i < twos.size(); ++i) feed->Send(t2, twos[i]);
  Drain(*g);
  const Stats s = g->stats();
  EXPECT_EQ(s.lost_messages, 1u);
  EXPECT_EQ(s.lost_beats, 10u);
  EXPECT_EQ(s.beats_processed, 190u);  // user 1's 100, user 2's 90
}

// Regression: a failed flush of a write-ahead log stopped the whole tick (every user's cuts,
// uploads and results) and was simply retried; the kernel reports such a failure once and may
// drop the pages it could not write, so the retry succeeded and STATE/devices then said the lost
// messages were safe. Now the other users go on, and that device's state waits for its cut: a
// power loss meanwhile counts the messages as lost.
TEST_F(GatewayUnit, AFailedFlushOfALogIsNotTakenBackByTheNextOne) {
  auto now = std::chrono::steady_clock::time_point{} + std::chrono::hours(1);
  options_.clock = [&now] { return now; };
  bool fail_next = false;
  options_.sync_file = [&fail_next](int fd) {
    if (std::exchange(fail_next, false)) {
      errno = EIO;
      return -1;
    }
    return ::fdatasync(fd);
  };
  const std::string t1 = sensor::Topic("t", "user-0001"), t2 = sensor::Topic("t", "user-0002");
  const auto twos = Messages(2, 100, 6);
  const std::string wal2 = options_.state_dir + "/wal/user-0002.wal";
  uintmax_t synced = 0;
  {
    Feed* feed = nullptr;
    auto g = Start(&feed);
    ASSERT_TRUE(g);
    for (size_t i = 0; i < 5; ++i) feed->Send(t2, twos[i]);
    now += std::chrono::seconds(2);
    ASSERT_TRUE(g->Tick());
    synced = fs::file_size(wal2);
    for (size_t i = 5; i < 8; ++i) feed->Send(t2, twos[i]);
    fail_next = true;  // the only log with something to flush: user 2's
    now += std::chrono::seconds(2);
    EXPECT_TRUE(g->Tick());  // said and counted, not a stop
    EXPECT_EQ(g->stats().wal_sync_failed, 1u);
    now += std::chrono::seconds(2);
    ASSERT_TRUE(g->Tick());  // this flush succeeds, without the pages the failed one dropped
    for (const auto& m : Messages(1, 100, 5)) feed->Send(t1, m);  // user 1's cut saves the state
    ASSERT_EQ(g->stats().batches_sealed, 1u);
  }
  // The power loss: user 2's log holds what the last good flush wrote.
  fs::resize_file(wal2, synced);
  Feed* feed = nullptr;
  auto g = Start(&feed);
  ASSERT_TRUE(g);
  EXPECT_EQ(g->stats().beats_recovered, 50u);
  for (size_t i = 8; i < twos.size(); ++i) feed->Send(t2, twos[i]);
  Drain(*g);
  const Stats s = g->stats();
  EXPECT_EQ(s.lost_messages, 3u);
  EXPECT_EQ(s.lost_beats, 30u);
  EXPECT_EQ(s.beats_processed, 170u);  // user 1's 100, user 2's 50 + 20
}

}  // namespace
}  // namespace medstream::gateway
