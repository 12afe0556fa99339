// The gateway in this process: an in-memory message source instead of the broker, and the server
// with its inproc enclave in this process too (the relay is a Unix socket served by a thread). No
// external process: merging, malformed input, cutting, results and recovery after a crash as unit
// tests (the fault tests in gateway_test.cc run the real processes and Mosquitto: integration).
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <set>
#include <sstream>
#include <thread>
#include <utility>

#include <nlohmann/json.hpp>

#include "common/attest/identity.h"
#include "common/attest/sim_platform.h"
#include "common/base/file.h"
#include "host/inproc/inproc.h"
#include "host/server/server.h"
#include "owner/gateway/gateway.h"
#include "owner/sensor/sensor.h"

namespace medstream::gateway {
namespace {

namespace fs = std::filesystem;

using Feed = FeedSource;

// A cluster of one worker whose relay is the local server's, reached through a call that waits
// until the test lets it go: a worker slow to answer (or one a hostile host registered that never
// answers).
class SlowWorkerLink final : public ServerLink {
 public:
  explicit SlowWorkerLink(std::unique_ptr<ServerLink> inner) : inner_(std::move(inner)) {}
  Status Upload(const std::string& name, crypto::ByteView data) override {
    return inner_->Upload(name, data);
  }
  Status UploadFile(const std::string& name, const std::string& path) override {
    return inner_->UploadFile(name, path);
  }
  Result<crypto::Bytes> ReadResult(const std::string& name) override {
    return inner_->ReadResult(name);
  }
  Result<std::unique_ptr<host::EnclaveTransport>> Relay() override { return inner_->Relay(); }
  bool SingleEnclave() const override { return false; }
  Result<std::vector<std::string>> NewEnclaves() override {
    if (attested_) return std::vector<std::string>{};
    return std::vector<std::string>{"w1"};
  }
  Result<std::unique_ptr<host::EnclaveTransport>> RelayTo(const std::string&) override {
    MEDSTREAM_TRY(relay, inner_->Relay());
    return std::make_unique<Held>(std::move(relay), this);
  }
  void Attested(const std::string&) override { attested_ = true; }

  // The test's side: whether a call waits now, and letting every call go.
  bool Waiting() {
    std::lock_guard lock(mu_);
    return waiting_;
  }
  bool AwaitWaiting(std::chrono::seconds limit) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, limit, [this] { return waiting_; });
  }
  void Release() {
    {
      std::lock_guard lock(mu_);
      released_ = true;
    }
    cv_.notify_all();
  }

 private:
  class Held final : public host::EnclaveTransport {
   public:
    Held(std::unique_ptr<host::EnclaveTransport> inner, SlowWorkerLink* link)
        : inner_(std::move(inner)), link_(link) {}
    Result<crypto::Bytes> Call(enclave::Call call, crypto::ByteView request) override {
      std::unique_lock lock(link_->mu_);
      link_->waiting_ = true;
      link_->cv_.notify_all();
      // Bounded, so that a gateway that waits for this under its lock fails the test, not hangs.
      link_->cv_.wait_for(lock, std::chrono::seconds(20), [this] { return link_->released_; });
      link_->waiting_ = false;
      lock.unlock();
      return inner_->Call(call, request);
    }
    std::string_view backend() const override { return inner_->backend(); }

   private:
    std::unique_ptr<host::EnclaveTransport> inner_;
    SlowWorkerLink* link_;
  };
  std::unique_ptr<ServerLink> inner_;
  std::atomic<bool> attested_{false};
  std::mutex mu_;
  std::condition_variable cv_;
  bool waiting_ = false, released_ = false;
};

class GatewayUnit : public ::testing::Test {
 protected:
  void SetUp() override {
    // Short: the relay's Unix socket path must fit in 108 bytes.
    dir_ = (fs::temp_directory_path() / ("gu-" + std::to_string(getpid()))).string();
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    ASSERT_TRUE(attest::InitPlatform({.dir = dir_ + "/platform", .now = time(nullptr)}));
    ASSERT_TRUE(host::SignThisExecutableForInproc());
    host::ServerOptions so;
    so.dir = dir_ + "/server";
    so.mode = "inproc";
    so.inproc = host::LaunchInproc;
    so.platform_dir = dir_ + "/platform";
    auto server = host::Server::Start(so);
    ASSERT_TRUE(server) << server.error().message();
    server_ = std::move(*server);
    options_.state_dir = dir_ + "/gateway";
    options_.results_dir = dir_ + "/results";
    options_.server_dir = dir_ + "/server";
    options_.site = "t";
    options_.batch_beats = 100;
    options_.batch_seconds = 3600;  // cut by size or by CutAll, never by the clock
    options_.root_ca = attest::SimPlatform::RootPath(dir_ + "/platform");
    options_.policy.mr_enclave = {attest::LoadIdentity(SelfPath().value())->mr_enclave};
    options_.policy.allow_simulated = true;
  }
  void TearDown() override {
    server_.reset();
    if (!HasFailure()) fs::remove_all(dir_);
  }
  std::unique_ptr<Gateway> Start(Feed** feed) {
    auto f = std::make_unique<Feed>();
    *feed = f.get();
    auto g = Gateway::Start(options_, std::move(f));
    EXPECT_TRUE(g) << g.error().message();
    return g ? std::move(*g) : nullptr;
  }
  // `n` beats of user `u` (a simulated device), in messages of 10 with their sequence numbers.
  std::vector<std::vector<uint8_t>> Messages(int u, size_t n, uint64_t session) {
    sensor::Generator gen(3, u, 1.7e9);
    std::vector<hrv::Beat> beats;
    while (beats.size() < n) {
      const hrv::Beat b = gen.Next();
      if (!gen.dropped()) beats.push_back(b);
    }
    std::vector<std::vector<uint8_t>> out;
    sensor::Sequence seq{session, 0, 0};
    for (size_t i = 0; i < n; i += 10) {
      const auto chunk = std::span(beats).subspan(i, std::min<size_t>(10, n - i));
      out.push_back(sensor::EncodePayload(seq, chunk));
      ++seq.seq;
      seq.first_beat += chunk.size();
    }
    return out;
  }
  // Cuts what is open, lets the server process the inbox, and reads every result.
  void Drain(Gateway& g) {
    ASSERT_TRUE(g.CutAll());
    for (int i = 0; i < 20 && g.outstanding() > 0; ++i) {
      ASSERT_TRUE(g.Tick());  // uploads the spool
      ASSERT_TRUE(server_->ProcessInbox());
      ASSERT_TRUE(g.Tick());  // reads the results
    }
    EXPECT_EQ(g.outstanding(), 0u);
  }
  size_t ResultLines(const std::string& user) {
    std::ifstream in(dir_ + "/results/" + user + ".jsonl");
    size_t n = 0;
    for (std::string line; std::getline(in, line);) n += !line.empty();
    return n;
  }
  std::string dir_;
  Options options_;
  std::unique_ptr<host::Server> server_;
};

TEST_F(GatewayUnit, MergesMessagesAndCountsWhatIsMalformed) {
  Feed* feed = nullptr;
  auto g = Start(&feed);
  ASSERT_TRUE(g);
  const std::string t1 = sensor::Topic("t", "user-0001"), t2 = sensor::Topic("t", "user-0002");
  for (const auto& m : Messages(1, 400, 11)) feed->Send(t1, m);
  for (const auto& m : Messages(2, 250, 22)) feed->Send(t2, m);
  // Hostile messages: garbage (read as a Bluetooth measurement of 770 bpm: refused), a beat out
  // of range, a topic that is no device's, a repeat.
  feed->Send(t1, {1, 2, 3});
  const hrv::Beat absurd{1.7e9 + 5000, 1e9};
  feed->Send(t1, sensor::EncodePayload({11, 40, 400}, std::span(&absurd, 1)));
  feed->Send("medstream/t/../rr", Messages(3, 10, 33)[0]);
  feed->Send(t2, Messages(2, 10, 22)[0]);
  Drain(*g);
  const Stats s = g->stats();
  EXPECT_EQ(s.beats_in, 650u);
  EXPECT_EQ(s.malformed, 3u);
  EXPECT_EQ(s.lost_beats, 0u);
  EXPECT_EQ(s.beats_processed, 650u);
  EXPECT_GE(s.batches_sealed, 7u);  // 100-beat batches
  EXPECT_GT(ResultLines("user-0001"), 0u);
  EXPECT_GT(ResultLines("user-0002"), 0u);
  EXPECT_TRUE(fs::is_empty(dir_ + "/server/quarantine"));
}

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

// Regression: a cluster's workers were attested inside Tick under the gateway's lock, each
// request allowed 30 s: one worker slow to answer (or workers a hostile host registers and never
// answers for) held up the sensors' messages and every user's cuts, uploads and results. They are
// attested on a thread of their own now; meanwhile everything else goes on.
TEST_F(GatewayUnit, AWorkerSlowToAttestHoldsUpNeitherMessagesNorBatches) {
  auto f = std::make_unique<Feed>();
  Feed* feed = f.get();
  auto link = std::make_unique<SlowWorkerLink>(LocalLink(options_.server_dir));
  SlowWorkerLink* slow = link.get();
  auto started = Gateway::Start(options_, std::move(f), std::move(link));
  ASSERT_TRUE(started) << started.error().message();
  std::unique_ptr<Gateway> g = std::move(*started);
  ASSERT_TRUE(slow->AwaitWaiting(std::chrono::seconds(20)));  // the worker's attestation waits
  for (const auto& m : Messages(1, 100, 5)) feed->Send(sensor::Topic("t", "user-0001"), m);
  ASSERT_TRUE(g->Tick());
  EXPECT_EQ(g->stats().beats_in, 100u);
  EXPECT_EQ(g->stats().batches_sealed, 1u);
  EXPECT_EQ(g->stats().batches_uploaded, 1u);
  EXPECT_TRUE(slow->Waiting());  // all of that while the attestation still waited
  EXPECT_EQ(g->stats().workers_attested, 0u);
  slow->Release();
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (g->stats().workers_attested == 0 && std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(std::chrono::milliseconds(2));  // polling the condition
  }
  ASSERT_EQ(g->stats().workers_attested, 1u);
  Drain(*g);  // the worker has the key now: the batch uploaded before is processed
  EXPECT_EQ(g->stats().beats_processed, 100u);
}

// The gateway's clock is injected: a batch is cut when it is batch_seconds old on that clock
// (here a hand-moved one, so nothing sleeps), and its latency is measured on it.
TEST_F(GatewayUnit, BatchesAreCutByAgeOnTheInjectedClock) {
  auto now = std::chrono::steady_clock::time_point{} + std::chrono::hours(1);
  options_.clock = [&now] { return now; };
  options_.batch_seconds = 10;
  options_.batch_beats = 1000;
  options_.stagger_cuts = false;
  Feed* feed = nullptr;
  auto g = Start(&feed);
  ASSERT_TRUE(g);
  const std::string t1 = sensor::Topic("t", "user-0001");
  for (const auto& m : Messages(1, 50, 5)) feed->Send(t1, m);
  now += std::chrono::seconds(9);
  ASSERT_TRUE(g->Tick());
  EXPECT_EQ(g->stats().batches_sealed, 0u);  // 9 s old: stays open
  now += std::chrono::seconds(2);
  ASSERT_TRUE(g->Tick());
  EXPECT_EQ(g->stats().batches_sealed, 1u);  // 11 s old: cut
  ASSERT_TRUE(server_->ProcessInbox());
  now += std::chrono::milliseconds(1500);
  ASSERT_TRUE(g->Tick());
  const Stats s = g->stats();
  EXPECT_EQ(s.results, 1u);
  ASSERT_EQ(s.latency_s.size(), 1u);
  EXPECT_DOUBLE_EQ(s.latency_s[0], 12.5);  // first beat in -> result read, on the fake clock
}

// Issue 17: users who start together are not all cut in the same tick (which put every user's
// batch through sealing, upload and the enclave at once: Stream-Big's tail latency), and late
// ticks do not make their cuts drift together again: each stream is cut on its own grid, an
// interval apart, the grids spread over the interval whatever the number of users.
TEST_F(GatewayUnit, UsersWhoStartTogetherAreCutAtSpreadTimesThatDoNotDrift) {
  const auto t0 = std::chrono::steady_clock::time_point{} + std::chrono::hours(1);
  auto now = t0;
  options_.clock = [&now] { return now; };
  options_.batch_seconds = 10;
  options_.batch_beats = 100000;
  Feed* feed = nullptr;
  auto g = Start(&feed);
  ASSERT_TRUE(g);
  constexpr int kUsers = 16, kIntervals = 12;
  constexpr auto kStep = std::chrono::milliseconds(100);
  auto name = [](int u) {
    char b[16];
    std::snprintf(b, sizeof b, "user-%04d", u);
    return std::string(b);
  };
  // A message (10 beats) per user every second, all users together.
  std::vector<std::vector<std::vector<uint8_t>>> messages;
  for (int u = 1; u <= kUsers; ++u) messages.push_back(Messages(u, 10 * (kIntervals * 10 + 1), 7));
  // Which stream each new file in the server's inbox belongs to, and when it was cut.
  std::map<std::string, std::vector<double>> cuts;
  std::set<std::string> seen;
  size_t most_in_one_tick_of_the_first_interval = 0;
  uint32_t jitter = 12345;
  size_t sent = 0;
  while (now < t0 + std::chrono::seconds(kIntervals * 10)) {
    // A message from every user once a second.
    const size_t due = static_cast<size_t>((now - t0) / std::chrono::seconds(1)) + 1;
    for (; sent < due; ++sent) {
      for (int u = 1; u <= kUsers; ++u) {
        feed->Send(sensor::Topic("t", name(u)), messages[u - 1][sent]);
      }
    }
    ASSERT_TRUE(g->Tick());
    size_t cut_now = 0;
    for (const auto& e : fs::directory_iterator(dir_ + "/server/inbox")) {
      const std::string f = e.path().filename().string();
      if (e.path().extension() != ".batch" || !seen.insert(f).second) continue;
      cuts[f.substr(0, f.find('-'))].push_back(std::chrono::duration<double>(now - t0).count());
      ++cut_now;
    }
    if (now < t0 + std::chrono::seconds(10)) {
      most_in_one_tick_of_the_first_interval =
          std::max(most_in_one_tick_of_the_first_interval, cut_now);
    }
    // Ticks 0.1 s apart; after the first interval, one in eight up to 0.7 s late (a large result
    // being written out).
    jitter = jitter * 1103515245 + 12345;
    const bool late = now >= t0 + std::chrono::seconds(10) && (jitter >> 16) % 8 == 0;
    now += kStep +
           (late ? std::chrono::milliseconds((jitter >> 8) % 700) : std::chrono::milliseconds(0));
  }
  ASSERT_EQ(cuts.size(), static_cast<size_t>(kUsers));
  // Spread: the sixteen first cuts in sixteen different ticks (at 0.1 s a tick; the golden-ratio
  // grids are at least 0.34 s apart). A uniform draw shares a tick with ~70 % probability.
  EXPECT_EQ(most_in_one_tick_of_the_first_interval, 1u);
  for (const auto& [stream, times] : cuts) {
    ASSERT_GE(times.size(), static_cast<size_t>(kIntervals - 1)) << stream;
    EXPECT_LE(times.front(), 10.0) << stream;  // the first batch within one interval
    // Later cuts an interval apart, give or take one late tick, and no drift: the last cut is
    // as close to its grid point as the second (cutting each batch an interval after its first
    // beat drifted by a late tick's delay at every cut).
    for (size_t i = 1; i < times.size(); ++i) {
      EXPECT_NEAR(times[i] - times[i - 1], 10.0, 0.75) << stream << " cut " << i;
    }
    const double drift = (times.back() - times[1]) - 10.0 * static_cast<double>(times.size() - 2);
    EXPECT_LT(std::abs(drift), 0.75) << stream;
  }
}

// Found by FaultTest.BrokerRestartMidStream: after a broker restart, messages of a device arrive
// out of order; a batch cut meanwhile sealed later beats, and the earlier ones, arriving after it,
// were dropped as "repeats" while the sequence check counted them as recovered: beats missing from
// the analysis and from the loss count. Now the batch waits while the gap is young
// (late_grace_s), and beats later than that count as lost (beats_too_late), not as repeats.
TEST_F(GatewayUnit, AReorderedMessageIsWaitedForAndOneTooLateCountsAsLost) {
  auto now = std::chrono::steady_clock::time_point{} + std::chrono::hours(1);
  options_.clock = [&now] { return now; };
  options_.batch_seconds = 1;
  options_.batch_beats = 30;
  options_.late_grace_s = 5;
  Feed* feed = nullptr;
  auto g = Start(&feed);
  ASSERT_TRUE(g);
  const std::string t1 = sensor::Topic("t", "user-0001");
  const auto m = Messages(1, 120, 9);  // 12 messages of 10 beats
  feed->Send(t1, m[0]);
  feed->Send(t1, m[1]);
  feed->Send(t1, m[4]);  // 2 and 3 are late: a gap opens
  feed->Send(t1, m[5]);
  EXPECT_EQ(g->stats().lost_beats, 20u);
  now += std::chrono::seconds(3);
  ASSERT_TRUE(g->Tick());
  EXPECT_EQ(g->stats().batches_sealed, 0u) << "held: 40 beats, 3 s old, but the gap is young";
  feed->Send(t1, m[2]);
  feed->Send(t1, m[3]);  // the gap is filled: the batch goes
  now += std::chrono::seconds(1);
  ASSERT_TRUE(g->Tick());
  EXPECT_EQ(g->stats().batches_sealed, 1u);
  EXPECT_EQ(g->stats().lost_beats, 0u);
  // A second gap that stays open past the grace: the batch goes without it, and the message that
  // arrives after that is lost for the analysis, and counted so.
  feed->Send(t1, m[6]);
  feed->Send(t1, m[8]);
  now += std::chrono::seconds(2);
  ASSERT_TRUE(g->Tick());
  EXPECT_EQ(g->stats().batches_sealed, 1u) << "held for the young gap";
  now += std::chrono::seconds(4);
  ASSERT_TRUE(g->Tick());
  EXPECT_EQ(g->stats().batches_sealed, 2u) << "the gap is older than the grace";
  feed->Send(t1, m[7]);
  Stats st = g->stats();
  EXPECT_EQ(st.beats_too_late, 10u);
  EXPECT_EQ(st.beats_stale, 0u) << "first arrivals are not repeats";
  EXPECT_EQ(st.lost_beats, 10u);
  for (size_t i = 9; i < m.size(); ++i) feed->Send(t1, m[i]);
  Drain(*g);
  st = g->stats();
  EXPECT_EQ(st.beats_processed, 110u);  // all but the message that came too late
  EXPECT_EQ(st.lost_beats, 10u);
}

// A batch the server quarantined (here: damaged in the inbox, so the enclave refuses it) once
// stalled its user's results for good: the gateway waited for a result that would never come.
// Now, once that result is quarantine_check_s late, the gateway asks the server, says so in the
// user's .jsonl and its counters, and reads the user's later results.
TEST_F(GatewayUnit, ABatchTheServerQuarantinedIsSaidAndItsUsersResultsGoOn) {
  auto now = std::chrono::steady_clock::time_point{} + std::chrono::hours(1);
  options_.clock = [&now] { return now; };
  options_.quarantine_check_s = 30;
  Feed* feed = nullptr;
  auto g = Start(&feed);
  ASSERT_TRUE(g);
  const std::string t1 = sensor::Topic("t", "user-0001");
  for (const auto& m : Messages(1, 400, 5)) feed->Send(t1, m);
  ASSERT_TRUE(g->CutAll());
  ASSERT_TRUE(g->Tick());  // uploads the 4 batches
  size_t damaged = 0;
  for (const auto& e : fs::directory_iterator(dir_ + "/server/inbox")) {
    if (!e.path().string().ends_with("00002.batch")) continue;
    // Flip bits rather than write a fixed byte: ciphertext holds any given byte value at one
    // offset in 256 runs, and writing it there changes nothing (this test once passed a batch
    // the enclave had no reason to refuse).
    std::fstream f(e.path(), std::ios::in | std::ios::out | std::ios::binary);
    f.seekg(100);
    const int byte = f.get();
    ASSERT_NE(byte, std::char_traits<char>::eof());
    f.seekp(100);
    f.put(static_cast<char>(byte ^ 0x5a));
    ++damaged;
  }
  ASSERT_EQ(damaged, 1u);
  ASSERT_TRUE(server_->ProcessInbox());
  ASSERT_EQ(server_->counters().quarantined, 1u);
  ASSERT_TRUE(g->Tick());
  EXPECT_EQ(g->stats().results, 1u) << "batch 2's result stalls the user's later ones";
  EXPECT_EQ(g->outstanding(), 3u);
  now += std::chrono::seconds(29);
  ASSERT_TRUE(g->Tick());
  EXPECT_EQ(g->outstanding(), 3u) << "not asked before quarantine_check_s";
  now += std::chrono::seconds(2);
  ASSERT_TRUE(g->Tick());
  const Stats s = g->stats();
  EXPECT_EQ(g->outstanding(), 0u);
  EXPECT_EQ(s.batches_quarantined, 1u);
  EXPECT_EQ(s.results, 3u);
  EXPECT_EQ(s.beats_processed, 300u);
  std::ifstream in(dir_ + "/results/user-0001.jsonl");
  int marked = 0;
  for (std::string line; std::getline(in, line);) {
    const auto j = nlohmann::json::parse(line);
    if (!j.contains("quarantined")) continue;
    ++marked;
    EXPECT_EQ(j.value("seq", 0), 2);
    EXPECT_FALSE(j.value("quarantined", "").empty());
  }
  EXPECT_EQ(marked, 1);
  // A restart does not wait for it again: the marker line says where the results stand.
  g.reset();
  g = Start(&feed);
  ASSERT_TRUE(g);
  EXPECT_EQ(g->outstanding(), 0u);
}

}  // namespace
}  // namespace medstream::gateway
