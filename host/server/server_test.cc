// The server loop: processing, quarantine, and exactly-once results across a crash; the recovery
// tests are in server_recovery_test.cc (fixture: server_fixture.h).
#include "host/server/server_fixture.h"

namespace medstream::host {
namespace {

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
