// The gateway when its disk or its link fails, in this process (gateway_unit_fixture.h): cuts that
// fail (a full disk, a spool that is not a folder) and the beats that pile up meanwhile, batches
// the link cannot take, and the end of a run that cannot wait for every result. In every case the
// other users go on, nothing is lost without being counted, and a failure that repeats is said
// once in a while, not at every message.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "owner/gateway/gateway_unit_fixture.h"

namespace medstream::gateway {
namespace {

// A link that carries small files only, as a cluster's does (half NATS's max_payload): a file
// over its cap is refused at every upload.
class SmallFilesLink final : public ServerLink {
 public:
  SmallFilesLink(std::unique_ptr<ServerLink> inner, size_t cap)
      : inner_(std::move(inner)), cap_(cap) {}
  Status Upload(const std::string& name, crypto::ByteView data) override {
    if (data.size() > cap_) return InvalidArgument(name + " is larger than the link carries");
    return inner_->Upload(name, data);
  }
  Status UploadFile(const std::string& name, const std::string& path) override {
    std::error_code ec;
    if (fs::file_size(path, ec) > cap_ || ec) {
      return InvalidArgument(name + " is larger than the link carries");
    }
    return inner_->UploadFile(name, path);
  }
  Result<crypto::Bytes> ReadResult(const std::string& name) override {
    return inner_->ReadResult(name);
  }
  Result<std::unique_ptr<host::EnclaveTransport>> Relay() override { return inner_->Relay(); }
  size_t MaxBatchBytes() const override { return cap_; }

 private:
  std::unique_ptr<ServerLink> inner_;
  const size_t cap_;
};

// A link that refuses the uploads of the batches whose names start with a prefix, with a given
// error code, and counts the uploads tried.
class RefusingLink final : public ServerLink {
 public:
  explicit RefusingLink(std::unique_ptr<ServerLink> inner) : inner_(std::move(inner)) {}
  void Refuse(std::optional<std::string> prefix, Error::Code code = Error::Code::kIo) {
    prefix_ = std::move(prefix);
    code_ = code;
  }
  Status Upload(const std::string& name, crypto::ByteView data) override {
    ++tried;
    if (prefix_ && name.starts_with(*prefix_))
      return Fail(code_, "the test's link refuses " + name);
    return inner_->Upload(name, data);
  }
  Status UploadFile(const std::string& name, const std::string& path) override {
    ++tried;
    if (prefix_ && name.starts_with(*prefix_))
      return Fail(code_, "the test's link refuses " + name);
    return inner_->UploadFile(name, path);
  }
  Result<crypto::Bytes> ReadResult(const std::string& name) override {
    return inner_->ReadResult(name);
  }
  Result<std::unique_ptr<host::EnclaveTransport>> Relay() override { return inner_->Relay(); }
  size_t tried = 0;

 private:
  std::unique_ptr<ServerLink> inner_;
  std::optional<std::string> prefix_;
  Error::Code code_ = Error::Code::kIo;
};

// Regression: a cut that failed (a full disk, here a spool that is not a folder) ended the tick
// before the upload and the results: for as long as the cut kept failing no user's results were
// read, and the spool was not sent on (an upload over SFTP frees its space). Each stage runs now,
// and the tick returns the first failure.
TEST_F(GatewayUnit, ACutThatFailsDoesNotStopTheResultsBeingRead) {
  auto now = std::chrono::steady_clock::time_point{} + std::chrono::hours(1);
  options_.clock = [&now] { return now; };
  options_.batch_seconds = 10;
  options_.stagger_cuts = false;
  Feed* feed = nullptr;
  auto g = Start(&feed);
  ASSERT_TRUE(g);
  for (const auto& m : Messages(1, 100, 5)) feed->Send(sensor::Topic("t", "user-0001"), m);
  ASSERT_TRUE(g->Tick());  // user 1's batch, cut by size, is uploaded
  ASSERT_TRUE(server_->ProcessInbox());
  for (const auto& m : Messages(2, 50, 5)) feed->Send(sensor::Topic("t", "user-0002"), m);
  BreakSpool();
  now += std::chrono::seconds(11);  // user 2's batch is due, and cannot be cut
  EXPECT_FALSE(g->Tick());
  EXPECT_EQ(g->stats().results, 1u) << "user 1's result is read although user 2's cut failed";
  EXPECT_EQ(ResultLines("user-0001"), 1u);
  MendSpool();
  ASSERT_TRUE(g->Tick());  // the disk is back: user 2's batch is cut
  EXPECT_EQ(g->stats().batches_sealed, 2u);
  Drain(*g);
  EXPECT_EQ(g->stats().beats_processed, 150u);
  EXPECT_EQ(g->stats().lost_beats, 0u);
}

// Beats that pile up while cuts fail (a full disk; here a spool that is not a folder) are sealed,
// once the disk is back, in pieces the link can carry. They were sealed in one file over the
// link's cap, refused at every upload: the stream held for good, and with it every batch whose
// name sorts after it. The cut, tried again at every message, is said once, not at each.
TEST_F(GatewayUnit, BeatsThatPiledUpWhileCutsFailedAreSealedInPiecesTheLinkCarries) {
  constexpr size_t kCap = 64 << 10;  // 3 068 beats a file, with room for one more message
  auto source = std::make_unique<Feed>();
  Feed* feed = source.get();
  auto started =
      Gateway::Start(options_, std::move(source),
                     std::make_unique<SmallFilesLink>(LocalLink(options_.server_dir), kCap));
  ASSERT_TRUE(started) << started.error().message();
  std::unique_ptr<Gateway> g = std::move(*started);
  BreakSpool();
  ::testing::internal::CaptureStderr();
  for (const auto& m : Messages(1, 10'000, 5)) feed->Send(sensor::Topic("t", "user-0001"), m);
  const std::string said = ::testing::internal::GetCapturedStderr();
  EXPECT_LE(std::count(said.begin(), said.end(), '\n'), 2) << said.substr(0, 2000);
  EXPECT_EQ(g->stats().batches_sealed, 0u);
  MendSpool();
  Drain(*g);
  const Stats st = g->stats();
  EXPECT_EQ(st.batches_sealed, 4u) << "10 000 beats in files of at most 3 068";
  EXPECT_EQ(st.batches_uploaded, 4u);
  EXPECT_EQ(st.beats_processed, 10'000u);
  EXPECT_EQ(st.lost_beats, 0u);
  EXPECT_EQ(st.batches_quarantined, 0u);
  EXPECT_EQ(st.results, 4u);
}

// A batch that cannot be uploaded holds up its own stream's later batches (which must reach the
// enclave in order), not the other streams': on a cluster one partition's stream can be full
// while the others take batches. The spool went in name order and stopped at the first failure,
// so one stream's refused batch held up every batch whose name sorted after it. A failure that
// ran into the link's time limit says the link is down: it ends the pass at once.
TEST_F(GatewayUnit, ABatchThatCannotBeUploadedHoldsUpOnlyItsOwnStream) {
  auto source = std::make_unique<Feed>();
  Feed* feed = source.get();
  auto link = std::make_unique<RefusingLink>(LocalLink(options_.server_dir));
  RefusingLink* picky = link.get();
  picky->Refuse("");  // every batch, until the spool holds one of each user
  auto started = Gateway::Start(options_, std::move(source), std::move(link));
  ASSERT_TRUE(started) << started.error().message();
  std::unique_ptr<Gateway> g = std::move(*started);
  for (int u = 1; u <= 3; ++u) {
    for (const auto& m : Messages(u, 100, 5))
      feed->Send(sensor::Topic("t", "user-000" + std::to_string(u)), m);
  }
  ASSERT_TRUE(g->Tick()) << "an upload that fails is not the tick's failure";
  EXPECT_EQ(g->stats().batches_uploaded, 0u);
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir_ + "/gateway/spool"))
    names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  ASSERT_EQ(names.size(), 3u);
  picky->Refuse(names[0].substr(0, names[0].rfind('-')));  // the stream first in the spool
  ASSERT_TRUE(g->Tick());
  EXPECT_EQ(g->stats().batches_uploaded, 2u) << "the other two streams' batches went";
  ASSERT_TRUE(server_->ProcessInbox());
  ASSERT_TRUE(g->Tick());
  EXPECT_EQ(g->stats().results, 2u);
  // The link times out: one try, and the pass ends.
  for (int u = 1; u <= 3; ++u) {
    const auto next = Messages(u, 200, 5);  // the first 100 beats went above
    for (size_t i = 10; i < next.size(); ++i)
      feed->Send(sensor::Topic("t", "user-000" + std::to_string(u)), next[i]);
  }
  picky->Refuse("", Error::Code::kDeadlineExceeded);
  picky->tried = 0;
  ASSERT_TRUE(g->Tick());
  EXPECT_EQ(picky->tried, 1u);
  picky->Refuse(std::nullopt);
  Drain(*g);
  const Stats st = g->stats();
  EXPECT_EQ(st.batches_uploaded, 6u);
  EXPECT_EQ(st.beats_processed, 600u);
  EXPECT_EQ(st.lost_beats, 0u);
  EXPECT_EQ(st.batches_quarantined, 0u);
}

// While cuts fail (a full disk), the open batches grow with every message. Past
// Options::max_open_beats a message is dropped before its device's sequence is tracked, so it
// counts as lost as a message the broker dropped. The gateway grew until the kernel killed it,
// with every open beat. Once the disk is back, the next message's stream is cut to make room.
TEST_F(GatewayUnit, WhileCutsFailTheOpenBeatsAreBoundedAndWhatIsDroppedCountsAsLost) {
  options_.max_open_beats = 1000;
  Feed* feed = nullptr;
  auto g = Start(&feed);
  ASSERT_TRUE(g);
  const std::string t1 = sensor::Topic("t", "user-0001");
  BreakSpool();
  const auto all = Messages(1, 2010, 5);  // 201 messages of 10 beats
  for (size_t i = 0; i < 200; ++i) feed->Send(t1, all[i]);
  EXPECT_EQ(g->stats().beats_in, 1000u);
  EXPECT_EQ(g->stats().beats_dropped_backlog, 1000u);
  MendSpool();
  feed->Send(t1, all[200]);  // the device's next message shows the gap
  Drain(*g);
  const Stats st = g->stats();
  EXPECT_EQ(st.beats_processed, 1010u);
  EXPECT_EQ(st.lost_messages, 100u);
  EXPECT_EQ(st.lost_beats, 1000u);
  EXPECT_EQ(st.beats_dropped_backlog, 1000u);
}

// The end of a run (Gateway::Finish, what `medstream gateway` does on SIGTERM) counts what it
// leaves for the next start: batches whose results did not come back within the grace (and of
// those, the ones the server never had), and beats no batch holds because the final cut failed.
// The command used to ignore both and say nothing. The next start resumes every one of them.
TEST_F(GatewayUnit, AFinishThatCannotWaitCountsWhatItLeavesAndTheNextStartResumesIt) {
  const std::string t1 = sensor::Topic("t", "user-0001");
  const std::string t2 = sensor::Topic("t", "user-0002");
  const std::string inbox = dir_ + "/server/inbox";
  {
    Feed* feed = nullptr;
    auto g = Start(&feed);
    ASSERT_TRUE(g);
    // The server cannot be reached: the two batches cut by size, and the rest cut by Finish,
    // stay in the spool.
    fs::rename(inbox, inbox + ".away");
    for (const auto& m : Messages(1, 250, 5)) feed->Send(t1, m);
    Gateway::FinishReport r = g->Finish(std::chrono::seconds(0));
    ASSERT_TRUE(r.cut) << r.cut.error().message();
    EXPECT_EQ(r.batches_waiting, 3u);
    EXPECT_EQ(r.batches_unsent, 3u);
    EXPECT_EQ(r.beats_open, 0u);
    // The server is back but does not answer: uploaded, still waiting.
    fs::rename(inbox + ".away", inbox);
    r = g->Finish(std::chrono::milliseconds(120));
    ASSERT_TRUE(r.cut);
    EXPECT_EQ(r.batches_waiting, 3u);
    EXPECT_EQ(r.batches_unsent, 0u);
    // The final cut fails (the spool is not a folder): its beats stay open.
    for (const auto& m : Messages(2, 40, 5)) feed->Send(t2, m);
    BreakSpool();
    r = g->Finish(std::chrono::seconds(0));
    EXPECT_FALSE(r.cut);
    EXPECT_EQ(r.beats_open, 40u);
    EXPECT_EQ(r.users_open, 1u);
    EXPECT_EQ(r.batches_waiting, 3u);
  }
  MendSpool();
  Feed* feed = nullptr;
  auto g = Start(&feed);
  ASSERT_TRUE(g);
  Drain(*g);
  const Stats s = g->stats();
  EXPECT_EQ(s.beats_processed, 290u) << "every beat left at the end of the last run";
  EXPECT_EQ(s.lost_beats, 0u);
  EXPECT_EQ(ResultLines("user-0001"), 3u);
  EXPECT_EQ(ResultLines("user-0002"), 1u);
}

}  // namespace
}  // namespace medstream::gateway
