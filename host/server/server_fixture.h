// The fixture of the server's tests (server_test.cc, server_recovery_test.cc), each built twice
// (tests/CMakeLists.txt): the inproc backend in the test's process, then the process backend and
// the `medstream server` executable. A real platform, enclave and sealed batches of a real
// recording in a folder of the test's own; FaultEnv injects the server's failing machine.
// Thread-safety: a fixture is used from its test's thread.
#pragma once

#include "host/inproc/inproc.h"
#include "host/server/server.h"

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

#include "host/server/env.h"

namespace medstream::host {

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

class ProcessServerTest : public ServerTest {};

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

}  // namespace medstream::host
