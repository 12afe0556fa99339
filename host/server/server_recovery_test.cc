// The server's recovery: the journal replayed at start, steps that fail on a failing machine, a
// checkpoint cut short, the enclave or the server itself killed (fixture: server_fixture.h).
#include "host/server/server_fixture.h"

namespace medstream::host {
namespace {

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

}  // namespace
}  // namespace medstream::host
