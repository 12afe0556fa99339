// The server loop: processing, quarantine, and exactly-once results across crashes.
#include "host/server/server.h"
#include "host/inproc/inproc.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <functional>
#include <thread>

#include "adapters/proc/proc.h"
#include "common/attest/identity.h"
#include "common/attest/sim_platform.h"
#include "common/base/file.h"
#include "owner/client/client.h"
#include "tests/test_data.h"
#include "tests/wait.h"

namespace medstream::host {
namespace {

namespace fs = std::filesystem;
using crypto::Bytes;

class ServerTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    // Short: the relay's unix socket path must fit in 108 bytes.
    static int n = 0;
    root_dir_ =
        (fs::temp_directory_path() / ("ms-" + std::to_string(getpid()) + "-" + std::to_string(n++)))
            .string();
    fs::remove_all(root_dir_);
    ASSERT_TRUE(attest::InitPlatform({.dir = platform(), .now = time(nullptr)}));
    ASSERT_TRUE(SignThisExecutableForInproc());
    ASSERT_TRUE(crypto::RandomBytes(data_key_.span()));
    const auto real = testing::LoadBeats("rr/rhenanbartels_exercise_rri_ms.txt");
    beats_ = real;
  }
  void TearDown() override {
    if (!HasFailure() && !std::getenv("MEDSTREAM_KEEP_TEST_DIRS")) fs::remove_all(root_dir_);
  }

  std::string platform() const { return root_dir_ + "/platform"; }
  std::string dir() const { return root_dir_ + "/server"; }

  ServerOptions Options() const {
    ServerOptions o;
    o.dir = dir();
    o.mode = GetParam();
    o.platform_dir = platform();
    o.enclave_path = MEDSTREAM_ENCLAVE_BINARY;
    o.checkpoint_every = 4;
    o.inproc = LaunchInproc;
    return o;
  }

  void Provision() {
    auto relay = ConnectRelay(dir() + "/enclave.sock");
    ASSERT_TRUE(relay.has_value()) << relay.error().message();
    auto info = GetInfo(**relay).value();
    attest::Policy policy;
    policy.mr_enclave = {info.mr_enclave};
    policy.allow_simulated = true;
    auto root =
        crypto::Certificate::FromPem(*ReadFileText(attest::SimPlatform::RootPath(platform())))
            .value();
    auto session = client::Attest(**relay, {.root = &root, .policy = policy});
    ASSERT_TRUE(session.has_value()) << session.error().message();
    enclave::ProvisionKey p;
    p.key_id = 1;
    p.key = data_key_;
    p.config.jobs = {hrv::JobKind::kSdnn};
    ASSERT_TRUE(client::Provision(**relay, *session, p));
  }

  std::span<const hrv::Beat> Chunk(uint64_t seq) const {
    const size_t from = (seq - 1) * 200;
    return std::span(beats_).subspan(from, std::min<size_t>(200, beats_.size() - from));
  }

  // A gateway's upload: temp name, then rename into the inbox.
  void Upload(uint64_t seq, Bytes file = {}, const std::string& name = "") {
    if (file.empty()) {
      auto sealer = client::StreamSealer::Create(data_key_, 1, kStream).value();
      file = sealer.SealBatch(seq, Chunk(seq)).value();
    }
    char n[64];
    std::snprintf(n, sizeof n, "s1-%06llu.batch", static_cast<unsigned long long>(seq));
    const std::string final_name = dir() + "/inbox/" + (name.empty() ? n : name);
    ASSERT_TRUE(WriteFileAtomic(final_name + ".tmp", file));
    fs::rename(final_name + ".tmp", final_name);
  }

  std::string ResultPath(uint64_t seq) const {
    return dir() + "/outbox/" + wire::StreamName(kStream) + "-" + std::to_string(seq) + ".result";
  }

  // Every result in the outbox, opened, in sequence order; checks there is one per sequence.
  std::vector<hrv::WindowResult> CollectResults(uint64_t last_seq) {
    auto sealer = client::StreamSealer::Create(data_key_, 1, kStream).value();
    std::vector<hrv::WindowResult> windows;
    size_t files = 0;
    for (const auto& e : fs::directory_iterator(dir() + "/outbox"))
      files += e.path().extension() == ".result";
    EXPECT_EQ(files, last_seq) << "one result per batch, no more, no fewer";
    for (uint64_t seq = 1; seq <= last_seq; ++seq) {
      auto bytes = ReadFileBytes(ResultPath(seq));
      EXPECT_TRUE(bytes.has_value()) << "missing result " << seq;
      if (!bytes) continue;
      uint64_t got = 0;
      auto r = sealer.OpenResult(*bytes, &got);
      EXPECT_TRUE(r.has_value()) << seq;
      EXPECT_EQ(got, seq);
      for (auto& w : r->jobs[0].second.windows) windows.push_back(w);
    }
    return windows;
  }

  std::vector<hrv::WindowResult> Offline(uint64_t last_seq) {
    hrv::MetricsEngine engine(hrv::SpectralOptions{}, hrv::JobSelection(hrv::JobKind::kSdnn));
    auto job = hrv::StreamJob::Create(hrv::JobKind::kSdnn, {}, {}).value();
    hrv::JobOutput out;
    for (uint64_t seq = 1; seq <= last_seq; ++seq) job.Push(Chunk(seq), engine, &out);
    return out.windows;
  }

  static void ExpectSame(const std::vector<hrv::WindowResult>& a,
                         const std::vector<hrv::WindowResult>& b) {
    ASSERT_EQ(a.size(), b.size());
    for (size_t i = 0; i < a.size(); ++i) {
      ASSERT_TRUE(testing::Same(a[i].metrics.sdnn_ms, b[i].metrics.sdnn_ms)) << i;
    }
  }

  static constexpr wire::StreamId kStream = {0x5e, 0x11};
  std::string root_dir_;
  crypto::Key256 data_key_;
  std::vector<hrv::Beat> beats_;
};

TEST_P(ServerTest, ProcessesQuarantinesAndStaysExactlyOnceAcrossACrash) {
  Bytes before_crash_9, before_crash_10;
  {
    auto server = Server::Start(Options());
    ASSERT_TRUE(server.has_value()) << server.error().message();
    Provision();
    for (uint64_t seq = 1; seq <= 10; ++seq) Upload(seq);
    // A tampered batch and a replay of batch 3 under another name.
    auto sealer = client::StreamSealer::Create(data_key_, 1, kStream).value();
    Bytes tampered = sealer.SealBatch(11, Chunk(11)).value();
    tampered[wire::kHeaderSize + 3] ^= 1;
    Upload(0, tampered, "s1-tampered.batch");
    Upload(0, *ReadFileBytes(dir() + "/inbox/s1-000003.batch"), "s1-zreplay.batch");
    auto n = (*server)->ProcessInbox();
    ASSERT_TRUE(n.has_value()) << n.error().message();
    EXPECT_EQ((*server)->counters().processed, 10u);
    EXPECT_EQ((*server)->counters().quarantined, 2u);
    EXPECT_NE(
        ReadFileText(dir() + "/quarantine/s1-tampered.batch.reason")->find("authentication failed"),
        std::string::npos);
    EXPECT_NE(ReadFileText(dir() + "/quarantine/s1-zreplay.batch.reason")->find("replayed"),
              std::string::npos);
    EXPECT_TRUE(FileExists(dir() + "/done/s1-000010.batch"));
    before_crash_9 = *ReadFileBytes(ResultPath(9));
    before_crash_10 = *ReadFileBytes(ResultPath(10));
    // The "crash": the server goes away without a final checkpoint (checkpoints were taken after
    // provisioning and after batches 4 and 8; 9 and 10 are only in the journal).
  }
  for (uint64_t seq = 11; seq <= 16; ++seq) Upload(seq);
  auto server = Server::Start(Options());
  ASSERT_TRUE(server.has_value()) << server.error().message();
  ASSERT_TRUE((*server)->ProcessInbox().has_value());
  EXPECT_EQ((*server)->counters().processed, 6u);
  EXPECT_EQ(*ReadFileBytes(ResultPath(9)), before_crash_9);  // rebuilt, byte for byte
  EXPECT_EQ(*ReadFileBytes(ResultPath(10)), before_crash_10);
  ExpectSame(CollectResults(16), Offline(16));
  // No plaintext sample value anywhere in the server's directories.
  for (const auto& e : fs::recursive_directory_iterator(dir())) {
    if (!e.is_regular_file()) continue;
    const Bytes bytes = *ReadFileBytes(e.path().string());
    for (uint64_t seq : {1, 7, 13}) {
      const double rr = Chunk(seq)[5].rr_ms, t = Chunk(seq)[5].t_s;
      for (const double* v : {&rr, &t}) {
        const auto* p = reinterpret_cast<const uint8_t*>(v);
        ASSERT_EQ(std::search(bytes.begin(), bytes.end(), p, p + 8), bytes.end())
            << "plaintext in " << e.path();
      }
    }
  }
}

// Regression: a batch the journal names (processed after the last checkpoint) that no longer
// opens when the journal is replayed, damaged since, stopped the server at every start. It is
// quarantined now, its result stands, and the server goes on.
TEST_P(ServerTest, AJournalledBatchDamagedSinceIsQuarantinedAtStartNotFatal) {
  Bytes result_10;
  {
    auto server = Server::Start(Options());
    ASSERT_TRUE(server.has_value()) << server.error().message();
    Provision();
    for (uint64_t seq = 1; seq <= 10; ++seq) Upload(seq);
    ASSERT_TRUE((*server)->ProcessInbox().has_value());
    result_10 = *ReadFileBytes(ResultPath(10));
  }  // gone without a final checkpoint: 9 and 10 are only in the journal
  const std::string done = dir() + "/done/s1-000010.batch";
  Bytes batch = *ReadFileBytes(done);
  batch[batch.size() / 2] ^= 0x5a;
  ASSERT_TRUE(WriteFileAtomic(done, batch, 0644));
  for (uint64_t seq = 11; seq <= 12; ++seq) Upload(seq);
  auto server = Server::Start(Options());
  ASSERT_TRUE(server.has_value()) << server.error().message();
  EXPECT_EQ((*server)->counters().quarantined_by_reason.at("damaged"), 1u);
  EXPECT_TRUE(FileExists(dir() + "/quarantine/s1-000010.batch"));
  EXPECT_TRUE(FileExists(dir() + "/quarantine/s1-000010.batch.reason"));
  EXPECT_FALSE(FileExists(done));
  EXPECT_EQ(*ReadFileBytes(ResultPath(10)), result_10);  // its result stands
  ASSERT_TRUE((*server)->ProcessInbox().has_value());
  EXPECT_EQ((*server)->counters().processed, 2u);
  EXPECT_TRUE(FileExists(ResultPath(12)));
}

// Regression: a batch the journal names that was gone at start (removed from done/) was skipped
// without a word, though its stream's later results then differ from what they would have been;
// one that was there but unreadable (here a folder in its place) was skipped at every start. The
// first is counted and said now, the second quarantined; the server goes on either way.
TEST_P(ServerTest, AJournalledBatchGoneOrUnreadableAtStartIsCountedOrQuarantined) {
  Bytes result_9, result_10;
  {
    auto server = Server::Start(Options());
    ASSERT_TRUE(server.has_value()) << server.error().message();
    Provision();
    for (uint64_t seq = 1; seq <= 10; ++seq) Upload(seq);
    ASSERT_TRUE((*server)->ProcessInbox().has_value());
    result_9 = *ReadFileBytes(ResultPath(9));
    result_10 = *ReadFileBytes(ResultPath(10));
  }  // gone without a final checkpoint: 9 and 10 are only in the journal
  ASSERT_EQ(std::remove((dir() + "/done/s1-000009.batch").c_str()), 0);
  const std::string done_10 = dir() + "/done/s1-000010.batch";
  ASSERT_EQ(std::remove(done_10.c_str()), 0);
  ASSERT_TRUE(MakeDirs(done_10, 0700));
  for (uint64_t seq = 11; seq <= 12; ++seq) Upload(seq);
  auto server = Server::Start(Options());
  ASSERT_TRUE(server.has_value()) << server.error().message();
  EXPECT_EQ((*server)->counters().replay_missing, 1u);
  EXPECT_EQ((*server)->counters().quarantined_by_reason.at("unreadable"), 1u);
  EXPECT_TRUE(FileExists(dir() + "/quarantine/s1-000010.batch.reason"));
  EXPECT_NE((*server)->MetricsText().find("medstream_server_replay_missing_total 1"),
            std::string::npos);
  EXPECT_EQ(*ReadFileBytes(ResultPath(9)), result_9);  // their results stand
  EXPECT_EQ(*ReadFileBytes(ResultPath(10)), result_10);
  ASSERT_TRUE((*server)->ProcessInbox().has_value());
  EXPECT_EQ((*server)->counters().processed, 2u);
  EXPECT_TRUE(FileExists(ResultPath(12)));
}

// Where the transport has no request buffer (inproc), batches are read into one buffer kept from
// batch to batch. A batch smaller than the one before must be read as itself, not with the tail
// of the larger one still in the buffer.
TEST_P(ServerTest, ABatchSmallerThanTheOneBeforeIsReadAsItself) {
  const std::vector<size_t> sizes = {1500, 40, 700, 3, 900};
  auto server = Server::Start(Options());
  ASSERT_TRUE(server.has_value()) << server.error().message();
  Provision();
  auto sealer = client::StreamSealer::Create(data_key_, 1, kStream).value();
  hrv::MetricsEngine engine(hrv::SpectralOptions{}, hrv::JobSelection(hrv::JobKind::kSdnn));
  auto job = hrv::StreamJob::Create(hrv::JobKind::kSdnn, {}, {}).value();
  hrv::JobOutput out;
  size_t from = 0;
  for (uint64_t seq = 1; seq <= sizes.size(); ++seq) {
    const auto beats = std::span(beats_).subspan(from, sizes[seq - 1]);
    from += beats.size();
    Upload(seq, sealer.SealBatch(seq, beats).value());
    job.Push(beats, engine, &out);
    // One at a time, so that each is read right after the one before.
    ASSERT_TRUE((*server)->ProcessInbox().has_value());
    EXPECT_EQ((*server)->counters().processed, seq);
  }
  EXPECT_EQ((*server)->counters().quarantined, 0u);
  ASSERT_GT(out.windows.size(), 0u);
  ExpectSame(CollectResults(sizes.size()), out.windows);
}

// Issue 11, item 1: beat times of +-1e25 (and NaN, and RR of 1e30) inside a sealed batch once sent
// the enclave into a ~2^64-step loop that survived restarts. Now the enclave counts them as invalid
// beats, the batch and the batches after it are processed, and the results equal the offline
// analysis of the same beats.
TEST_P(ServerTest, AHostileBeatTimeInABatchNeitherHangsNorLosesTheStream) {
  std::vector<hrv::Beat> bad(Chunk(2).begin(), Chunk(2).end());
  bad.insert(bad.begin() + 50, {1e25, 800});
  bad.insert(bad.begin() + 60, {-1e25, 800});
  bad.insert(bad.begin() + 70, {std::nan(""), 800});
  bad.insert(bad.begin() + 80, {bad[79].t_s + 0.5, 1e30});
  auto server = Server::Start(Options());
  ASSERT_TRUE(server.has_value()) << server.error().message();
  Provision();
  auto sealer = client::StreamSealer::Create(data_key_, 1, kStream).value();
  for (uint64_t seq = 1; seq <= 6; ++seq) {
    Upload(seq, seq == 2 ? sealer.SealBatch(2, bad).value() : Bytes{});
  }
  ASSERT_TRUE((*server)->ProcessInbox().has_value());
  EXPECT_EQ((*server)->counters().processed, 6u);
  EXPECT_EQ((*server)->counters().quarantined, 0u);
  hrv::MetricsEngine engine(hrv::SpectralOptions{}, hrv::JobSelection(hrv::JobKind::kSdnn));
  auto job = hrv::StreamJob::Create(hrv::JobKind::kSdnn, {}, {}).value();
  hrv::JobOutput out;
  for (uint64_t seq = 1; seq <= 6; ++seq) job.Push(seq == 2 ? bad : Chunk(seq), engine, &out);
  ASSERT_GT(out.windows.size(), 0u);
  ExpectSame(CollectResults(6), out.windows);
  EXPECT_EQ(job.report().invalid, 4u);
}

// Issue 11, item 3: files that once stopped the server on every start are quarantined with a
// reason that names them, the enclave never sees them, and the good batches around them go on.
TEST_P(ServerTest, PoisonFilesAreQuarantinedWithAReasonAndTheServerGoesOn) {
  auto server = Server::Start(Options());
  ASSERT_TRUE(server.has_value()) << server.error().message();
  Provision();
  const std::string inbox = dir() + "/inbox/";
  // 100 GB and 1 GB, sparse: the host must refuse them before allocating (edge cap 65 MiB).
  for (auto [name, size] : {std::pair{"s1-0-huge.batch", off_t{100} << 30},
                            std::pair{"s1-0-big.batch", off_t{1} << 30}}) {
    const int fd = open((inbox + name).c_str(), O_WRONLY | O_CREAT, 0644);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(ftruncate(fd, size), 0);
    close(fd);
  }
  const std::string long_name = "s1-" + std::string(240, 'x') + ".batch";  // NAME_MAX is 255
  ASSERT_TRUE(WriteFileAtomic(inbox + long_name, std::string_view("not a batch")));
  ASSERT_EQ(mkfifo((inbox + "s1-0-fifo.batch").c_str(), 0644), 0);
  fs::create_directory(inbox + "s1-0-dir.batch");
  for (uint64_t seq = 1; seq <= 4; ++seq) Upload(seq);
  auto n = (*server)->ProcessInbox();
  ASSERT_TRUE(n.has_value()) << n.error().message();
  EXPECT_EQ((*server)->counters().processed, 4u);
  EXPECT_EQ((*server)->counters().quarantined, 5u);
  EXPECT_EQ((*server)->counters().enclave_restarts, 0u) << "the host checks the caps itself";
  EXPECT_TRUE(fs::is_empty(dir() + "/inbox"));
  size_t reasons = 0;
  for (const auto& e : fs::directory_iterator(dir() + "/quarantine")) {
    if (e.path().extension() != ".reason") continue;
    ++reasons;
    EXPECT_LE(e.path().filename().string().size(), 255u);
    EXPECT_FALSE(ReadFileText(e.path().string())->empty());
  }
  EXPECT_EQ(reasons, 5u);
  // A restart finds nothing left to choke on.
  server->reset();
  server = Server::Start(Options());
  ASSERT_TRUE(server.has_value()) << server.error().message();
  ASSERT_TRUE((*server)->ProcessInbox().has_value());
  ExpectSame(CollectResults(4), Offline(4));
}

// Issue 11: a batch on which the server was killed (or the enclave died or hung) again and again
// must not come back forever after restarts: the tries are counted on disk and it is quarantined.
TEST_P(ServerTest, ABatchTriedTooOftenIsQuarantinedAfterARestart) {
  {
    auto server = Server::Start(Options());
    ASSERT_TRUE(server.has_value()) << server.error().message();
    Provision();
  }
  Upload(1);
  Upload(2);
  // What kMaxBatchAttempts deaths of the server while on batch 2 leave behind: its tries in the
  // journal.
  {
    std::FILE* f = std::fopen((dir() + "/state/journal").c_str(), "a");
    for (int i = 0; i < kMaxBatchAttempts; ++i) std::fputs("?s1-000002.batch\n", f);
    std::fclose(f);
  }
  Upload(3);
  auto server = Server::Start(Options());
  ASSERT_TRUE(server.has_value()) << server.error().message();
  ASSERT_TRUE((*server)->ProcessInbox().has_value());
  EXPECT_EQ((*server)->counters().processed, 2u);
  EXPECT_EQ((*server)->counters().quarantined, 1u);
  EXPECT_TRUE(FileExists(dir() + "/quarantine/s1-000002.batch.reason"));
}

// Issue 11, item 6: a second server directory on the same platform once made the first one's next
// start fail as a "rollback". Now the second is refused up front, naming the first.
// The server's machine injected (host/server/env.h): a step that fails between writing a result
// and moving its input to done/ (a full disk, a crash), or before the result is written, is
// finished exactly once at the next start; the injected clock times each batch.
class FaultEnv : public EnvWrapper {
 public:
  FaultEnv() : EnvWrapper(PosixServerEnv()) {}
  Status Rename(const std::string& from, const std::string& to) override {
    if (to.find("/done/") != std::string::npos && fail_done_moves > 0) {
      --fail_done_moves;
      return IoError("injected: cannot move " + from);
    }
    return EnvWrapper::Rename(from, to);
  }
  Status WriteAtomic(const std::string& path, crypto::ByteView data, int mode) override {
    if (path.ends_with(".result") && fail_results > 0) {
      --fail_results;
      return IoError("injected: disk full writing " + path);
    }
    return EnvWrapper::WriteAtomic(path, data, mode);
  }
  double NowSeconds() override { return now += 0.5; }
  // Half of a batch delivered, then a read error (the server is reading it while the enclave
  // already works on it).
  Result<bool> ReadFileInto(const std::string& path, uint64_t cap, std::span<uint8_t> dest,
                            size_t* read_bytes, const ReadProgress* progress) override {
    if (!path.ends_with(".batch") || !progress || fail_reads == 0) {
      return EnvWrapper::ReadFileInto(path, cap, dest, read_bytes, progress);
    }
    --fail_reads;
    MEDSTREAM_TRY(file, ReadFile(path, cap));
    if (auto s = progress->sized(file.size()); !s) return std::unexpected(s.error());
    std::memcpy(dest.data(), file.data(), file.size() / 2);
    progress->arrived(file.size() / 2);
    return IoError("injected: read error half-way through " + path);
  }
  int fail_done_moves = 0, fail_results = 0, fail_reads = 0;
  double now = 0;
};

TEST_P(ServerTest, AStepThatFailsIsFinishedExactlyOnceAtTheNextStart) {
  FaultEnv env;
  ServerOptions o = Options();
  o.env = &env;
  {
    auto server = Server::Start(o);
    ASSERT_TRUE(server.has_value()) << server.error().message();
    Provision();
    for (uint64_t seq = 1; seq <= 3; ++seq) Upload(seq);
    ASSERT_TRUE((*server)->ProcessInbox().has_value());
    // Each batch: its start, the enclave call's start and end, its end: 3 ticks of 0.5 s.
    ASSERT_EQ((*server)->counters().batch_s.size(), 3u);
    for (double s : (*server)->counters().batch_s) EXPECT_EQ(s, 1.5);
    // Batch 4's result is written and journalled, but its move to done/ fails.
    Upload(4);
    env.fail_done_moves = 1;
    auto failed = (*server)->ProcessInbox();
    ASSERT_FALSE(failed.has_value());
    EXPECT_EQ(failed.error().code(), Error::Code::kIo);
    EXPECT_TRUE(FileExists(dir() + "/inbox/s1-000004.batch"));
  }
  {
    // The next start finds batch 4 in the journal: moved to done/, not processed again.
    auto server = Server::Start(o);
    ASSERT_TRUE(server.has_value()) << server.error().message();
    EXPECT_TRUE(FileExists(dir() + "/done/s1-000004.batch"));
    ASSERT_TRUE((*server)->ProcessInbox().has_value());
    EXPECT_EQ((*server)->counters().processed, 0u);
    // Batch 5's result cannot be written: nothing is journalled, the batch stays in the inbox.
    Upload(5);
    env.fail_results = 1;
    auto failed = (*server)->ProcessInbox();
    ASSERT_FALSE(failed.has_value());
    EXPECT_EQ(failed.error().code(), Error::Code::kIo);
    EXPECT_FALSE(FileExists(ResultPath(5)));
  }
  Upload(6);
  auto server = Server::Start(o);
  ASSERT_TRUE(server.has_value()) << server.error().message();
  ASSERT_TRUE((*server)->ProcessInbox().has_value());
  EXPECT_EQ((*server)->counters().processed, 2u);  // 5 again, then 6
  ExpectSame(CollectResults(6), Offline(6));
}

// A step of the journal's replay that fails (a full disk) stops the start, as the same step stops
// a batch's processing, and the next start does it. It used to be ignored: a result the replay
// could not write again was gone for good once the next checkpoint emptied the journal, and a
// batch it could not move stayed in the inbox, to be refused later as a replay.
TEST_P(ServerTest, AReplayStepThatFailsStopsTheStartAndTheNextStartDoesIt) {
  FaultEnv env;
  ServerOptions o = Options();
  o.env = &env;
  Bytes result_9;
  {
    auto server = Server::Start(o);
    ASSERT_TRUE(server.has_value()) << server.error().message();
    Provision();
    for (uint64_t seq = 1; seq <= 9; ++seq) Upload(seq);
    ASSERT_TRUE((*server)->ProcessInbox().has_value());
    result_9 = *ReadFileBytes(ResultPath(9));
    // Batch 10 is processed and journalled, but its move to done/ fails.
    Upload(10);
    env.fail_done_moves = 1;
    ASSERT_FALSE((*server)->ProcessInbox().has_value());
  }  // 9 and 10 are only in the journal (checkpoints every 4)
  ASSERT_EQ(std::remove(ResultPath(9).c_str()), 0);  // the outbox lost batch 9's result
  env.fail_results = 1;
  auto failed = Server::Start(o);
  ASSERT_FALSE(failed.has_value());
  EXPECT_EQ(failed.error().code(), Error::Code::kIo);
  EXPECT_EQ(env.fail_results, 0);
  EXPECT_FALSE(FileExists(ResultPath(9)));
  env.fail_done_moves = 1;
  failed = Server::Start(o);
  ASSERT_FALSE(failed.has_value());
  EXPECT_EQ(failed.error().code(), Error::Code::kIo);
  EXPECT_EQ(*ReadFileBytes(ResultPath(9)), result_9);  // the same bytes, written again
  EXPECT_TRUE(FileExists(dir() + "/inbox/s1-000010.batch"));
  auto server = Server::Start(o);
  ASSERT_TRUE(server.has_value()) << server.error().message();
  EXPECT_TRUE(FileExists(dir() + "/done/s1-000010.batch"));
  Upload(11);
  ASSERT_TRUE((*server)->ProcessInbox().has_value());
  EXPECT_EQ((*server)->counters().processed, 1u);
  EXPECT_EQ((*server)->counters().quarantined, 0u);
  ExpectSame(CollectResults(11), Offline(11));
}

// The enclave's checkpoint file is its sealed parts in a row: a file cut short at a part's end,
// or with bytes after the last part, is refused at start (kCorrupt), never half restored.
TEST_P(ServerTest, ACheckpointFileWithAPartMissingOrBytesAfterItsLastIsRefusedAtStart) {
  {
    auto server = Server::Start(Options());
    ASSERT_TRUE(server.has_value()) << server.error().message();
    Provision();
    for (uint64_t seq = 1; seq <= 4; ++seq) Upload(seq);
    ASSERT_TRUE((*server)->ProcessInbox().has_value());
    ASSERT_GE((*server)->counters().checkpoints, 1u);
  }
  const std::string path = dir() + "/state/checkpoint.sealed";
  const Bytes whole = ReadFileBytes(path).value();
  // "MSCF" and its format, then each part as a u64 length and its bytes: the keys, the stream.
  ASSERT_GT(whole.size(), 8u);
  ASSERT_EQ(std::string(whole.begin(), whole.begin() + 4), "MSCF");
  std::vector<size_t> ends;
  for (size_t at = 8; at < whole.size();) {
    uint64_t n = 0;
    std::memcpy(&n, whole.data() + at, 8);
    at += 8 + n;
    ends.push_back(at);
  }
  ASSERT_EQ(ends.size(), 2u);
  ASSERT_EQ(ends.back(), whole.size());
  Bytes longer = whole;
  longer.push_back(0);
  for (const Bytes& bad : {Bytes(whole.begin(), whole.begin() + ends[0]), longer}) {
    ASSERT_TRUE(WriteFileAtomic(path, bad));
    auto refused = Server::Start(Options());
    ASSERT_FALSE(refused.has_value()) << bad.size();
    EXPECT_EQ(refused.error().code(), Error::Code::kCorrupt) << refused.error().message();
  }
  ASSERT_TRUE(WriteFileAtomic(path, whole));
  auto server = Server::Start(Options());
  ASSERT_TRUE(server.has_value()) << server.error().message();
  for (uint64_t seq = 5; seq <= 8; ++seq) Upload(seq);
  ASSERT_TRUE((*server)->ProcessInbox().has_value());
  EXPECT_EQ((*server)->counters().processed, 4u);
  ExpectSame(CollectResults(8), Offline(8));
}

TEST_P(ServerTest, ASecondServerOnOnePlatformIsRefusedNamingTheFirst) {
  {
    auto a = Server::Start(Options());
    ASSERT_TRUE(a.has_value()) << a.error().message();
    Provision();
    // While A runs, nothing else may use its counter, not even on the same directory.
    auto again = Server::Start(Options());
    ASSERT_FALSE(again.has_value());
    EXPECT_EQ(again.error().code(), Error::Code::kFailedPrecondition);
  }
  ServerOptions b = Options();
  b.dir = root_dir_ + "/other-server";
  auto refused = Server::Start(b);
  ASSERT_FALSE(refused.has_value());
  EXPECT_EQ(refused.error().code(), Error::Code::kFailedPrecondition);
  EXPECT_NE(refused.error().message().find(fs::weakly_canonical(dir()).string()), std::string::npos)
      << refused.error().message();
  // The first server comes back as it was.
  Upload(1);
  auto a = Server::Start(Options());
  ASSERT_TRUE(a.has_value()) << a.error().message();
  ASSERT_TRUE((*a)->ProcessInbox().has_value());
  EXPECT_EQ((*a)->counters().processed, 1u);
}

class ProcessServerTest : public ServerTest {};

// Issue 11: the watchdog. An enclave that stops answering (here: SIGSTOP, as a hang would look) is
// killed once the call's budget is spent, restarted from its sealed state, and the batch retried.
TEST_P(ProcessServerTest, AStuckEnclaveIsStoppedByTheWatchdogAndTheBatchRetried) {
  ServerOptions o = Options();
  o.call_budget_s = 2;
  auto server = Server::Start(o);
  ASSERT_TRUE(server.has_value()) << server.error().message();
  Provision();
  Upload(1);
  ASSERT_TRUE((*server)->ProcessInbox().has_value());
  ASSERT_EQ(kill((*server)->enclave_pid(), SIGSTOP), 0);
  Upload(2);
  Upload(3);
  const auto t0 = std::chrono::steady_clock::now();
  ASSERT_TRUE((*server)->ProcessInbox().has_value());
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(30));
  EXPECT_EQ((*server)->counters().enclave_restarts, 1u);
  EXPECT_EQ((*server)->counters().processed, 3u);
  EXPECT_EQ((*server)->counters().quarantined, 0u);
  ExpectSame(CollectResults(3), Offline(3));
}

// The server reads a batch into the enclave's shared region while the enclave already works on it.
// A read that fails half-way quarantines the batch as unreadable; the enclave, told the rest will
// not come, refuses it without being restarted and keeps the stream as it was: the same batch,
// put back by an operator, and the next one give the results of an undisturbed run.
TEST_P(ProcessServerTest, ABatchWhoseReadFailsWhileTheEnclaveWorksOnItIsQuarantinedAlone) {
  FaultEnv env;
  ServerOptions o = Options();
  o.env = &env;
  auto server = Server::Start(o);
  ASSERT_TRUE(server.has_value()) << server.error().message();
  Provision();
  const int pid = (*server)->enclave_pid();
  Upload(1);
  ASSERT_TRUE((*server)->ProcessInbox().has_value());
  Upload(2);
  env.fail_reads = 1;
  ASSERT_TRUE((*server)->ProcessInbox().has_value());  // cut short
  EXPECT_EQ(env.fail_reads, 0);
  EXPECT_EQ((*server)->counters().processed, 1u);
  EXPECT_EQ((*server)->counters().quarantined_by_reason.at("unreadable"), 1u);
  EXPECT_TRUE(FileExists(dir() + "/quarantine/s1-000002.batch.reason"));
  Upload(2);
  Upload(3);
  ASSERT_TRUE((*server)->ProcessInbox().has_value());
  EXPECT_EQ((*server)->counters().processed, 3u);
  EXPECT_EQ((*server)->counters().enclave_restarts, 0u);
  EXPECT_EQ((*server)->enclave_pid(), pid);
  ExpectSame(CollectResults(3), Offline(3));
}

TEST_P(ProcessServerTest, ADeadEnclaveIsRestartedFromItsSealedState) {
  auto server = Server::Start(Options());
  ASSERT_TRUE(server.has_value()) << server.error().message();
  Provision();
  for (uint64_t seq = 1; seq <= 6; ++seq) Upload(seq);
  ASSERT_TRUE((*server)->ProcessInbox().has_value());
  kill((*server)->enclave_pid(), SIGKILL);
  for (uint64_t seq = 7; seq <= 12; ++seq) Upload(seq);
  ASSERT_TRUE((*server)->ProcessInbox().has_value());
  EXPECT_EQ((*server)->counters().enclave_restarts, 1u);
  EXPECT_EQ((*server)->counters().processed, 12u);
  EXPECT_EQ((*server)->counters().quarantined, 0u);
  ExpectSame(CollectResults(12), Offline(12));
}

// The real thing: `medstream server` as a process, killed with SIGKILL mid-stream, restarted.
TEST_P(ProcessServerTest, KillMinusNineOfTheServerLosesAndDuplicatesNothing) {
  auto spawn = [&] {
    return proc::Spawn(
        {MEDSTREAM_BINARY, "server", "--dir", dir(), "--mode", "process", "--platform", platform(),
         "--enclave", MEDSTREAM_ENCLAVE_BINARY, "--checkpoint-every", "3"},
        root_dir_ + "/server.log");
  };
  auto wait_for = [](const std::function<bool()>& done) { return testing::WaitFor(done, 10); };
  auto results = [&] {
    size_t n = 0;
    for (const auto& e : fs::directory_iterator(dir() + "/outbox"))
      n += e.path().extension() == ".result";
    return n;
  };
  pid_t server = spawn();
  // Its relay answers once the enclave is attested and listening.
  ASSERT_TRUE(wait_for([&] { return ConnectRelay(dir() + "/enclave.sock").has_value(); }));
  Provision();
  const uint64_t total = beats_.size() / 200;  // 20 batches
  // Most batches first, so that the kill lands while many still wait (a fast idle machine cleared
  // half of them between two polls).
  const uint64_t first = total - 3;
  for (uint64_t seq = 1; seq <= first; ++seq) Upload(seq);
  // Mid-stream: some results out, some batches being processed or journalled, some waiting.
  ASSERT_TRUE(wait_for([&] { return results() >= 3; }));
  kill(server, SIGKILL);
  waitpid(server, nullptr, 0);
  const size_t at_kill = results();
  server = spawn();
  for (uint64_t seq = first + 1; seq <= total; ++seq) Upload(seq);
  ASSERT_TRUE(wait_for([&] { return results() >= total && fs::is_empty(dir() + "/inbox"); }))
      << *ReadFileText(root_dir_ + "/server.log");
  kill(server, SIGTERM);
  int status = 0;
  waitpid(server, &status, 0);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0)
      << *ReadFileText(root_dir_ + "/server.log");
  EXPECT_TRUE(fs::is_empty(dir() + "/quarantine"));
  EXPECT_LT(at_kill, first) << "the kill should land while batches are still waiting";
  ExpectSame(CollectResults(total), Offline(total));
}

// Built twice (tests/CMakeLists.txt): server_test runs the inproc backend in this process (a unit
// test), server_process_test the process backend and the `medstream server` tests (integration).
#ifdef MEDSTREAM_IN_PROCESS_ONLY
INSTANTIATE_TEST_SUITE_P(Modes, ServerTest, ::testing::Values("inproc"),
                         [](const auto& p) { return p.param; });
GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(ProcessServerTest);
#else
INSTANTIATE_TEST_SUITE_P(Modes, ServerTest, ::testing::Values("process"),
                         [](const auto& p) { return p.param; });
INSTANTIATE_TEST_SUITE_P(Process, ProcessServerTest, ::testing::Values("process"),
                         [](const auto& p) { return p.param; });
#endif

}  // namespace
}  // namespace medstream::host
