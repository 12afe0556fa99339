// The fixture of the gateway's in-process tests (gateway_unit_test.cc, gateway_crash_test.cc):
// an in-memory message source instead of the broker, and the server with its inproc enclave in
// this process too (the relay is a Unix socket served by a thread). No external process.
// Thread-safety: a fixture is used from its test's thread.
#pragma once

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

namespace fs = std::filesystem;

using Feed = FeedSource;

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
  // The gateway's disk failing for its spool: the folder replaced by a file, so that every cut
  // (and every spooled write) fails until MendSpool. The spool's batches are lost with it.
  void BreakSpool() {
    const std::string spool = options_.state_dir + "/spool";
    fs::remove_all(spool);
    std::ofstream(spool) << "not a folder";
  }
  // The disk back: the spool an empty private folder again.
  void MendSpool() {
    const std::string spool = options_.state_dir + "/spool";
    fs::remove(spool);
    fs::create_directory(spool);
    fs::permissions(spool, fs::perms::owner_all);
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

}  // namespace medstream::gateway
