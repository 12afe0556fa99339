// The server loop: processing, quarantine, and exactly-once results across crashes.
#include "host/server.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>

#include <filesystem>
#include <functional>
#include <thread>

#include "attest/sim_platform.h"
#include "base/file.h"
#include "client/client.h"
#include "enclave/identity.h"
#include "proc/proc.h"
#include "tests/test_data.h"

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
    auto key = crypto::EcKey::Generate().value();
    const std::string self = enclave::SelfPath().value();
    auto sig = enclave::SignMeasurement(enclave::MeasureFile(self).value(), key, 1, 1).value();
    ASSERT_TRUE(WriteFileAtomic(self + ".sig", sig));
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

class ProcessServerTest : public ServerTest {};

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
  auto wait_for = [](const std::function<bool()>& done) {
    for (int i = 0; i < 1000 && !done(); ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    return done();
  };
  auto results = [&] {
    size_t n = 0;
    for (const auto& e : fs::directory_iterator(dir() + "/outbox"))
      n += e.path().extension() == ".result";
    return n;
  };
  pid_t server = spawn();
  ASSERT_TRUE(wait_for([&] { return FileExists(dir() + "/enclave.sock"); }));
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  Provision();
  const uint64_t total = beats_.size() / 200;  // 20 batches
  for (uint64_t seq = 1; seq <= total / 2; ++seq) Upload(seq);
  // Mid-stream: some results out, some batches being processed or journalled, some waiting.
  ASSERT_TRUE(wait_for([&] { return results() >= 3; }));
  kill(server, SIGKILL);
  waitpid(server, nullptr, 0);
  const size_t at_kill = results();
  server = spawn();
  for (uint64_t seq = total / 2 + 1; seq <= total; ++seq) Upload(seq);
  ASSERT_TRUE(wait_for([&] { return results() >= total && fs::is_empty(dir() + "/inbox"); }))
      << *ReadFileText(root_dir_ + "/server.log");
  kill(server, SIGTERM);
  int status = 0;
  waitpid(server, &status, 0);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0)
      << *ReadFileText(root_dir_ + "/server.log");
  EXPECT_TRUE(fs::is_empty(dir() + "/quarantine"));
  EXPECT_LT(at_kill, total / 2) << "the kill should land while batches are still waiting";
  ExpectSame(CollectResults(total), Offline(total));
}

INSTANTIATE_TEST_SUITE_P(Modes, ServerTest, ::testing::Values("process", "inproc"),
                         [](const auto& p) { return p.param; });
INSTANTIATE_TEST_SUITE_P(Process, ProcessServerTest, ::testing::Values("process"),
                         [](const auto& p) { return p.param; });

}  // namespace
}  // namespace medstream::host
