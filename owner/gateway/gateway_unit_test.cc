// The gateway in this process (gateway_unit_fixture.h): merging, malformed input, cutting by the
// injected clock, late messages, and a cluster worker slow to attest, as unit tests. After a crash,
// a power loss or a failing disk: gateway_crash_test.cc; cuts and uploads that fail:
// gateway_outage_test.cc. The fault tests in gateway_test.cc run the real processes and Mosquitto
// (integration).
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <limits>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "owner/gateway/gateway_unit_fixture.h"
#include "tests/wait.h"

namespace medstream::gateway {
namespace {

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
  void Attested(const std::string&) override {
    {
      std::lock_guard lock(mu_);
      attested_ = true;
    }
    cv_.notify_all();
  }

  // The test's side: whether a call waits now, and letting every call go.
  bool Waiting() {
    std::lock_guard lock(mu_);
    return waiting_;
  }
  // The gateway counts a worker attested before it tells the link (under its lock).
  bool AwaitAttested(std::chrono::seconds limit) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, limit, [this] { return attested_.load(); });
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

// A cluster of workers, some of which never answer (names a hostile holder of the worker role
// registered): their calls wait until the test lets them go, then time out. The others are the
// local server's enclave.
class SilentWorkersLink final : public ServerLink {
 public:
  SilentWorkersLink(std::unique_ptr<ServerLink> inner, std::set<std::string> silent,
                    std::vector<std::string> all)
      : inner_(std::move(inner)), silent_(std::move(silent)), all_(std::move(all)) {}
  Status Upload(const std::string& name, crypto::ByteView data) override {
    return inner_->Upload(name, data);
  }
  Result<crypto::Bytes> ReadResult(const std::string& name) override {
    return inner_->ReadResult(name);
  }
  Result<std::unique_ptr<host::EnclaveTransport>> Relay() override { return inner_->Relay(); }
  bool SingleEnclave() const override { return false; }
  Result<std::vector<std::string>> NewEnclaves() override {
    std::lock_guard lock(mu_);
    std::vector<std::string> out;
    for (const std::string& n : all_) {
      if (gone_.contains(n)) continue;
      if (!done_.contains(n)) out.push_back(n);
    }
    return out;
  }
  Result<std::unique_ptr<host::EnclaveTransport>> RelayTo(const std::string& name) override {
    if (!silent_.contains(name)) return inner_->Relay();
    return std::make_unique<Silent>(this);
  }
  void Attested(const std::string& name) override {
    std::lock_guard lock(mu_);
    done_.insert(name);
    cv_.notify_all();
  }
  bool AwaitDone(const std::string& name, std::chrono::seconds limit) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, limit, [&] { return done_.contains(name); });
  }
  size_t Held() {
    std::lock_guard lock(mu_);
    return held_;
  }
  void Release() {
    {
      std::lock_guard lock(mu_);
      released_ = true;
    }
    cv_.notify_all();
  }
  // The worker's registration expires: it is no longer named.
  void Unregister(const std::string& name) {
    std::lock_guard lock(mu_);
    gone_.insert(name);
  }

 private:
  class Silent final : public host::EnclaveTransport {
   public:
    explicit Silent(SilentWorkersLink* link) : link_(link) {}
    Result<crypto::Bytes> Call(enclave::Call, crypto::ByteView) override {
      std::unique_lock lock(link_->mu_);
      ++link_->held_;
      // Bounded, so that a gateway that attests one worker after another fails the test instead
      // of hanging it.
      link_->cv_.wait_for(lock, std::chrono::seconds(30), [this] { return link_->released_; });
      --link_->held_;
      return Fail(Error::Code::kDeadlineExceeded, "no answer (the test's silent worker)");
    }
    std::string_view backend() const override { return "silent"; }

   private:
    SilentWorkersLink* link_;
  };
  std::unique_ptr<ServerLink> inner_;
  const std::set<std::string> silent_;
  const std::vector<std::string> all_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::set<std::string> done_, gone_;
  size_t held_ = 0;
  bool released_ = false;
};

// Workers are attested several at once: a new worker no longer waits behind every worker that
// never answers (10 s each, one after another: behind six such names, a minute). Here the real
// worker comes last, behind six silent ones, and is attested while all six still wait; they are
// asked again later, not counted as attested nor refused.
TEST_F(GatewayUnit, ANewWorkerIsNotHeldUpByWorkersThatNeverAnswer) {
  std::set<std::string> silent;
  std::vector<std::string> all;
  for (int i = 1; i <= 6; ++i) {
    silent.insert("silent-" + std::to_string(i));
    all.push_back("silent-" + std::to_string(i));
  }
  all.push_back("real");
  auto link = std::make_unique<SilentWorkersLink>(LocalLink(options_.server_dir), silent, all);
  SilentWorkersLink* workers = link.get();
  auto started = Gateway::Start(options_, std::make_unique<Feed>(), std::move(link));
  ASSERT_TRUE(started) << started.error().message();
  std::unique_ptr<Gateway> g = std::move(*started);
  ASSERT_TRUE(workers->AwaitDone("real", std::chrono::seconds(20)));
  // Waited for, not read at once: a silent worker's thread may not have reached its call yet when
  // the real one is done (seen under ThreadSanitizer: 5 of 6). None of them can have returned, so
  // the real worker was attested while the others waited either way; this checks that all six were
  // asked at once rather than one after another.
  EXPECT_TRUE(testing::WaitFor([&] { return workers->Held() == 6u; }, 20))
      << workers->Held() << " of the 6 silent workers were being asked at once";
  EXPECT_EQ(g->stats().workers_attested, 1u);
  workers->Release();
  g.reset();  // joins the provisioning thread
}

// Registered workers that cannot be reached are counted (workers_unreachable in --stats-json) and
// asked again later; once their registration expires they are forgotten, so that names a hostile
// holder of the worker role makes up and drops do not pile up in the gateway.
TEST_F(GatewayUnit, WorkersThatCannotBeReachedAreCountedAndForgottenOnceGone) {
  const std::vector<std::string> names{"silent-1", "silent-2", "silent-3"};
  auto link = std::make_unique<SilentWorkersLink>(
      LocalLink(options_.server_dir), std::set<std::string>(names.begin(), names.end()), names);
  SilentWorkersLink* workers = link.get();
  workers->Release();  // every call times out at once
  auto started = Gateway::Start(options_, std::make_unique<Feed>(), std::move(link));
  ASSERT_TRUE(started) << started.error().message();
  std::unique_ptr<Gateway> g = std::move(*started);
  ASSERT_TRUE(testing::WaitFor([&] { return g->stats().workers_unreachable == 3; }, 20));
  for (const std::string& n : names) workers->Unregister(n);
  ASSERT_TRUE(testing::WaitFor([&] { return g->stats().workers_unreachable == 0; }, 20));
  EXPECT_EQ(g->stats().workers_attested, 0u);
  EXPECT_EQ(g->stats().workers_refused, 0u);
}

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
  ASSERT_TRUE(slow->AwaitAttested(std::chrono::seconds(20)));
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

// Options a clock or a cut cannot use are refused at start, with the option named: NaN went into
// a duration at the first cut (undefined behaviour), a negative age cut every message.
TEST_F(GatewayUnit, OptionsNoClockOrCutCanUseAreRefusedAtStart) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const double inf = std::numeric_limits<double>::infinity();
  const std::vector<std::function<void(Options&)>> bad{
      [&](Options& o) { o.batch_seconds = nan; },      [&](Options& o) { o.batch_seconds = -1; },
      [&](Options& o) { o.batch_seconds = inf; },      [&](Options& o) { o.late_grace_s = nan; },
      [&](Options& o) { o.late_grace_s = -5; },        [&](Options& o) { o.status_interval_s = 0; },
      [&](Options& o) { o.quarantine_check_s = nan; }, [](Options& o) { o.batch_beats = 0; },
      [](Options& o) { o.max_open_beats = 0; }};
  for (size_t i = 0; i < bad.size(); ++i) {
    Options o = options_;
    bad[i](o);
    auto g = Gateway::Start(o, std::make_unique<Feed>());
    ASSERT_FALSE(g) << "case " << i;
    EXPECT_EQ(g.error().code(), Error::Code::kInvalidArgument) << "case " << i;
  }
  EXPECT_TRUE(Gateway::Start(options_, std::make_unique<Feed>())) << "the fixture's own options";
}

}  // namespace
}  // namespace medstream::gateway
